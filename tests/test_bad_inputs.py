"""Bad input, collected in one place (issue 14).

Each case is one line: what is called, with what, the error it must raise and a piece of the
message that names the offending value or path. `{tmp}` in an argument or a message is the
folder the `files` fixture fills with tiny models and broken files.

The CLI part runs every subcommand of `python -m gpt2scratch` in-process with a bad input:
exit code 2, the last line of stderr names the bad value, and no "Traceback". Errors found
while preparing a command (`UsageError`) are one line; argparse's own add a usage line.
"""
import functools
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import torch

from gpt2scratch.attention_viz import write_dashboard
from gpt2scratch.backprop import model_gradients
from gpt2scratch.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from gpt2scratch.data import load_text
from gpt2scratch.lora import apply_lora, load_adapter
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import load_pretrained, save_pretrained
from gpt2scratch.tokenizer import GPT2Tokenizer
from gpt2scratch.train import pick_device
from cli_run import run_main  # tests/cli_run.py

TINY = GPT2Config.preset("tiny", context_length=32)  # the GPT-2 vocabulary, 32 dims, 2 layers
STORY = "Justice is served when the jury has heard every word of the story, and not a moment before. "


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with a tiny checkpoint (ck), the same weights as a Hugging Face folder (hf),
    and the broken files the cases below read."""
    tmp = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    model = GPT2(TINY)
    save_checkpoint(tmp / "ck", model)
    save_pretrained(model, tmp / "hf")
    truncated = save_checkpoint(tmp / "truncated", model)
    with open(truncated / "model.safetensors", "r+b") as f:
        f.truncate(100)
    (tmp / "badjson").mkdir()
    (tmp / "badjson" / "config.json").write_text("{", encoding="utf-8")
    (tmp / "badjson" / "model.safetensors").write_bytes(b"")
    (tmp / "notlora").mkdir()
    (tmp / "notlora" / "adapter_config.json").write_text('{"format": "other"}', encoding="utf-8")
    (tmp / "notlora" / "adapter.safetensors").write_bytes(b"")
    (tmp / "empty_dir").mkdir()
    (tmp / "f.txt").write_text("a file where a folder belongs", encoding="utf-8")
    (tmp / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "blank.txt").write_bytes(b" \n\t\n")
    (tmp / "short.txt").write_text("Justice is served when the story is long enough.", encoding="utf-8")
    (tmp / "story.txt").write_text(STORY * 60, encoding="utf-8")
    (tmp / "val_short.txt").write_text((STORY * 60)[:2000], encoding="utf-8")
    return tmp


def fill(value, tmp):
    """`value` with every `{tmp}` in its strings replaced by the fixture's folder."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, (list, tuple)):
        return type(value)(fill(v, tmp) for v in value)
    if isinstance(value, dict):
        return {k: fill(v, tmp) for k, v in value.items()}
    return value


def tiny():
    torch.manual_seed(0)
    return GPT2(TINY).eval()


@functools.lru_cache(maxsize=1)
def tok():
    return GPT2Tokenizer()


# --------------------------------------------------------------------------- the library
P = pytest.param
LIBRARY = [
    # tokenizer (moved from test_tokenizer.py)
    P(lambda ids: tok().decode(ids), ([1, 50257],), ValueError,
      "token id 50257 is out of range: valid ids are 0..50256", id="tokenizer-decode-id-too-big"),
    P(lambda ids: tok().decode(ids), ([-1],), ValueError, "token id -1 is out of range",
      id="tokenizer-decode-negative-id"),
    P(lambda ids: tok().decode(ids), ([1.5],), TypeError, "token ids must be ints, got 1.5",
      id="tokenizer-decode-float-id"),
    P(lambda ids: tok().decode(ids), ("hello",), TypeError, "got str", id="tokenizer-decode-str"),
    P(lambda text: tok().encode(text), (None,), TypeError, "encode expects a str, got NoneType",
      id="tokenizer-encode-none"),
    P(lambda text, allowed: tok().encode(text, allowed_special=allowed),
      ("hi", {"<|endoftxt|>"}), ValueError, "['<|endoftxt|>'], which are not special tokens",
      id="tokenizer-unknown-special-token"),
    # data files (moved from test_data.py)
    P(load_text, ("{tmp}/missing.txt",), FileNotFoundError, "no such file: {tmp}/missing.txt",
      id="data-missing-file"),
    P(load_text, ("{tmp}/empty_dir",), IsADirectoryError, "{tmp}/empty_dir is a folder",
      id="data-folder"),
    P(load_text, ("{tmp}/latin1.txt",), ValueError,
      "latin1.txt is not UTF-8 text: invalid byte at offset 3 (bytes e9", id="data-not-utf8"),
    P(load_text, ("{tmp}/empty.txt",), ValueError, "{tmp}/empty.txt is empty", id="data-empty"),
    P(load_text, ("{tmp}/blank.txt",), ValueError, "{tmp}/blank.txt is empty", id="data-blank"),
    # the model (moved from test_model.py)
    P(GPT2Config.preset, ("gpt5",), ValueError, "unknown preset 'gpt5'; valid names: tiny",
      id="model-unknown-preset"),
    P(lambda idx: tiny()(idx), (torch.zeros(1, 33, dtype=torch.long),), ValueError,
      "sequence length 33 exceeds context_length 32", id="model-too-long"),
    P(lambda idx: tiny()(idx), (torch.zeros(1, 4),), TypeError, "float32", id="model-float-ids"),
    P(pick_device, ("gpu",), ValueError, "unknown device 'gpu'", id="train-unknown-device"),
    # generation (moved from test_model.py; the sampling flags stay in test_generation.py)
    P(lambda p: tiny().generate(p, max_length=3), ("",), ValueError,
      "prompt must be a non-empty string, got ''", id="generate-empty-prompt"),
    P(lambda idx: tiny().generate(idx, 3), (torch.tensor([[1, 50300]]),), ValueError,
      "token ids must be in [0, 50257)", id="generate-id-out-of-range"),
    P(lambda idx: tiny().generate(idx, max_new_tokens=-1), (torch.tensor([[1]]),), ValueError,
      "max_new_tokens must be >= 0, got -1", id="generate-negative-length"),
    # the hand-written backward (chapter 6): ids are checked before torch indexes with them
    P(lambda idx: model_gradients(tiny(), idx, torch.tensor([[1, 2]])),
      (torch.tensor([[1, 60000]]),), ValueError, "token ids must be in [0, 50257), got min 1, max 60000",
      id="backprop-id-out-of-range"),
    # checkpoints (moved from test_checkpoint.py, with two new ones)
    P(load_checkpoint, ("{tmp}/nope",), FileNotFoundError,
      "no checkpoint at {tmp}/nope: the folder does not exist", id="checkpoint-missing"),
    P(load_checkpoint, ("{tmp}/empty_dir",), FileNotFoundError,
      "no checkpoint in {tmp}/empty_dir: expected latest.json", id="checkpoint-empty-folder"),
    P(load_checkpoint, ("{tmp}/f.txt",), FileNotFoundError, "no checkpoint in {tmp}/f.txt",
      id="checkpoint-is-a-file"),
    P(lambda path: load_checkpoint(path, GPT2(GPT2Config.preset("tiny", context_length=32, d_model=64))),
      ("{tmp}/ck",), ValueError, "the model expects", id="checkpoint-wrong-shape"),
    P(read_manifest, ("{tmp}/truncated",), ValueError, "has 100 bytes, the manifest says",
      id="checkpoint-truncated"),
    P(lambda path: save_checkpoint(path, tiny()), ("{tmp}/f.txt",), FileExistsError, "{tmp}/f.txt",
      id="checkpoint-save-onto-a-file"),
    # the pretrained loader (new: test_pretrained.py has the rest)
    P(load_pretrained, ("{tmp}/f.txt",), FileNotFoundError,
      "'{tmp}/f.txt' is neither a model name", id="pretrained-a-file"),
    P(load_pretrained, ("{tmp}/badjson",), ValueError,
      "{tmp}/badjson/config.json is not readable JSON", id="pretrained-bad-json"),
    P(lambda path: save_pretrained(tiny(), path), ("{tmp}/f.txt",), FileExistsError,
      "{tmp}/f.txt", id="pretrained-export-onto-a-file"),
    # LoRA (new: test_lora.py has LoRALinear's own checks and load_adapter's shapes)
    P(lambda rank: apply_lora(tiny(), rank), (0,), ValueError, "rank must be >= 1, got 0",
      id="lora-rank-zero"),
    P(lambda alpha: apply_lora(tiny(), 2, alpha), (-1.0,), ValueError,
      "alpha must be finite and > 0, got -1.0", id="lora-negative-alpha"),
    P(lambda path: load_adapter(tiny(), path), ("{tmp}/notlora",), ValueError,
      "{tmp}/notlora/adapter_config.json is not a gpt2scratch LoRA config", id="lora-not-an-adapter"),
    # the attention dashboard (new: test_attention_viz.py has the text and shape checks)
    P(lambda path: write_dashboard(path, ["a"], torch.ones(1, 1, 1, 1), None, "t"),
      ("{tmp}/f.txt/attention.html",), FileExistsError, "{tmp}/f.txt",
      id="dashboard-under-a-file"),
]


@pytest.mark.parametrize("fn, args, error, message", LIBRARY)
def test_library_bad_input(files, fn, args, error, message):
    with pytest.raises(error) as err:
        fn(*fill(args, files))
    assert fill(message, files) in str(err.value)


# --------------------------------------------------------------------------- the CLI


TRAIN = ["--model", "tiny", "--context-length", "32", "--no-progress"]
# (argv, the message's piece that names the bad value, one line: True for UsageError's path)
CLI = [
    # train (moved from test_cli.py, with new ones)
    P(["train", "--data", "{tmp}/latin1.txt"], "latin1.txt is not UTF-8 text: invalid byte at offset 3",
      True, id="train-not-utf8"),
    P(["train", "--data", "{tmp}/empty.txt"], "{tmp}/empty.txt is empty", True, id="train-empty"),
    P(["train", "--data", "{tmp}/short.txt"], "needs 257", True, id="train-shorter-than-a-window"),
    P(["train", "--data", "{tmp}/val_short.txt"], "the validation split (10% of the text) has",
      True, id="train-val-split-too-short"),
    P(["train", "--data", "{tmp}/story.txt", "--model", "huge"], "unknown preset 'huge'", True,
      id="train-unknown-model"),
    P(["train", "--data", "{tmp}/story.txt", "--epochs", "0"], "expected a positive integer, got 0",
      False, id="train-zero-epochs"),
    P(["train", "--data", "{tmp}/story.txt", "--dropout", "1.5", "--model", "tiny"],
      "dropout must be finite and >= 0 and < 1, got 1.5", True, id="train-dropout"),
    P(["train", "--data", "{tmp}/story.txt", *TRAIN, "--device", "gpu"], "unknown device 'gpu'",
      True, id="train-unknown-device"),
    P(["train", "--data", "{tmp}/story.txt", *TRAIN, "--resume", "{tmp}/nope"],
      "no checkpoint at {tmp}/nope", True, id="train-resume-missing"),
    P(["train", "--data", "{tmp}/story.txt", *TRAIN, "--out", "{tmp}/f.txt"],
      "--out {tmp}/f.txt is a file", True, id="train-out-is-a-file"),
    P(["train", "--data", "{tmp}/story.txt", "--init", "{tmp}/f.txt"],
      "'{tmp}/f.txt' is neither a model name", True, id="train-init-a-file"),
    P(["train", "--data", "{tmp}/nope_dir", "{tmp}/story.txt"], "no such file or folder: {tmp}/nope_dir",
      True, id="train-corpus-missing-folder"),
    P(["train", "--data", "{tmp}/story.txt", "--lora-rank", "2"], "--lora-rank", True,
      id="train-lora-without-init"),
    # generate (the first two moved from test_cli.py)
    P(["generate", "--checkpoint", "{tmp}/nope", "Hi"], "no checkpoint at {tmp}/nope", True,
      id="generate-missing-checkpoint"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--temperature", "-1"],
      "expected a finite number >= 0, got -1", False, id="generate-negative-temperature"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--device", "gpu"], "unknown device 'gpu'",
      True, id="generate-unknown-device"),
    P(["generate", "--checkpoint", "{tmp}/ck", ""], "prompt must be a non-empty string, got ''",
      True, id="generate-empty-prompt"),
    P(["generate", "--init", "{tmp}/ck", "Hi"], "the folder {tmp}/ck holds no config.json", True,
      id="generate-init-not-hf"),
    P(["generate", "Hi"], "one of the arguments --checkpoint --init is required", False,
      id="generate-no-model"),
    # run
    P(["run", "--model", "huge"], "unknown preset 'huge'", True, id="run-unknown-model"),
    P(["run", "--device", "gpu"], "unknown device 'gpu'", True, id="run-unknown-device"),
    P(["run", "--batch-size", "x"], "expected a positive integer, got 'x'", False,
      id="run-batch-size-not-a-number"),
    # eval (test_eval_cli.py has a missing file, a long context and a short text)
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/empty_dir"], "{tmp}/empty_dir is a folder",
      True, id="eval-data-folder"),
    P(["eval", "--init", "{tmp}/empty_dir", "--data", "{tmp}/story.txt"],
      "the folder {tmp}/empty_dir holds no config.json", True, id="eval-init-empty-folder"),
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/story.txt", "--batch-size", "0"],
      "expected a positive integer, got 0", False, id="eval-zero-batch"),
    # export (test_pretrained.py has a missing checkpoint)
    P(["export", "--checkpoint", "{tmp}/ck", "--out", "{tmp}/f.txt"], "--out {tmp}/f.txt is a file",
      True, id="export-out-is-a-file"),
    P(["export", "--checkpoint", "{tmp}/f.txt", "--out", "{tmp}/o"], "no checkpoint in {tmp}/f.txt",
      True, id="export-checkpoint-is-a-file"),
    # attention (test_attention_viz.py has an empty/long text, a missing checkpoint, --out a folder)
    P(["attention", "--checkpoint", "{tmp}/ck", "hi", "--device", "gpu"], "unknown device 'gpu'",
      True, id="attention-unknown-device"),
    P(["attention", "--checkpoint", "{tmp}/ck", "hi", "--out", "{tmp}/f.txt/a.html"], "{tmp}/f.txt",
      True, id="attention-out-under-a-file"),
    P(["attention", "--init", "{tmp}/f.txt", "hi"], "'{tmp}/f.txt' is neither a model name", True,
      id="attention-init-a-file"),
    # bench and its benchmarks
    P(["bench", "train", "--preset", "huge"], "unknown preset 'huge'", False, id="bench-train-preset"),
    P(["bench", "train", "--preset", "tiny", "--context-length", "5000"],
      "--context-length 5000 is longer than preset tiny's context", False,
      id="bench-train-context-length"),
    P(["bench", "generate", "--preset", "tiny", "--new-tokens", "0"], "--new-tokens must be >= 1, got 0",
      False, id="bench-generate-new-tokens"),
    P(["bench", "fastpath", "--rungs", "x"], "--rungs must look like 4:6, got 'x'", False,
      id="bench-fastpath-rungs"),
    P(["bench", "fastpath", "--preset", "tiny", "--layers", "0"], "--layers must be >= 1, got 0",
      False, id="bench-fastpath-layers"),
    P(["bench", "backward", "--preset", "tiny", "--batch-size", "0", "--no-memory"],
      "--batch-size must be >= 1, got 0", False, id="bench-backward-batch-size"),
    P(["bench", "backward", "--preset", "tiny", "--dropout", "2", "--no-memory"],
      "dropout must be finite and >= 0 and < 1, got 2.0", False, id="bench-backward-dropout"),
    P(["bench", "nope"], "invalid choice: 'nope'", False, id="bench-unknown-benchmark"),
    P(["nope"], "invalid choice: 'nope'", False, id="unknown-subcommand"),
]


@pytest.mark.parametrize("argv, message, one_line", CLI)
def test_cli_bad_input(files, capsys, argv, message, one_line):
    code, _, err = run_main(fill(argv, files), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert fill(message, files) in lines[-1], err
    assert lines[-1].startswith("python -m gpt2scratch"), err  # the command, then what is wrong
    if one_line:
        assert len(lines) == 1, err


def subcommands(argv, capsys):
    """The subcommands that `argv --help` lists in its usage line's {a,b,c}."""
    code, out, _ = run_main([*argv, "--help"], capsys)
    assert code == 0
    return set(re.search(r"\{([\w,]+)\}", out).group(1).split(","))


def test_cli_covers_every_subcommand_and_benchmark(capsys):
    commands = subcommands([], capsys)
    assert commands >= {"train", "generate", "run", "eval", "export", "attention", "bench"}
    assert commands == {p.values[0][0] for p in CLI if p.values[0][0] != "nope"}
    benchmarks = subcommands(["bench"], capsys)
    assert benchmarks >= {"train", "generate", "fastpath", "backward"}
    assert benchmarks == {p.values[0][1] for p in CLI if p.values[0][0] == "bench"} - {"nope"}


def test_run_offline_without_a_mirror_says_how_to_get_the_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPT2SCRATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(tmp_path / "typo"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = run_main(["run", "--model", "tiny", "--context-length", "32"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "the-verdict.txt is not in" in lines[0] and f"the mirror folder {tmp_path / 'typo'}" in lines[0]


def test_missing_file_is_a_one_line_error_from_the_real_command(tmp_path):
    """Moved from test_cli.py: the real `python -m gpt2scratch`, not main() in-process."""
    missing = tmp_path / "nope.txt"
    proc = subprocess.run([sys.executable, "-m", "gpt2scratch", "train", "--data", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"python -m gpt2scratch train: error: no such file: {missing}"


def test_at_least_25_cases():
    assert len(LIBRARY) >= 25 and len(CLI) >= 25
    for cases in (LIBRARY, CLI):
        assert len({p.id for p in cases}) == len(cases)  # distinct names
