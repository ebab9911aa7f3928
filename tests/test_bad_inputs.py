"""Bad input, collected in one place (issue 14).

Each case is one line: what is called, with what, the error it must raise and a piece of the
message that names the offending value or path (a tuple: several pieces; a compiled regex where
the order of its pieces matters). `{tmp}` in an argument or a message is the folder the `files` fixture fills
with tiny models and broken files.

The CLI part runs every subcommand of `python -m gpt2scratch` in-process with a bad input:
exit code 2, the last line of stderr names the bad value, and no "Traceback". Errors that our
own checks raise are one line (gpt2scratch.__main__.main); argparse's own add a usage line.
"""
import functools
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from gpt2scratch.attention_heads import attention_maps, head_stats, position_scores
from gpt2scratch.attention_viz import dashboard_html, write_dashboard
from gpt2scratch.backprop import model_gradients
from gpt2scratch.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from gpt2scratch.corpus import NotTextError, TokenWindows, corpus_loaders, find_files, prepare_corpus, read_pieces
from gpt2scratch.data import load_text
from gpt2scratch.generation import generate
from gpt2scratch.lora import LoRAEmbedding, LoRALinear, apply_lora, load_adapter, save_adapter
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import config_from_hf, load_pretrained, save_pretrained
from gpt2scratch.tokenizer import GPT2Tokenizer
from gpt2scratch.runtime import pick_device
from cli_run import run_main  # tests/cli_run.py
from conftest import GPT2_VOCAB, CharTokenizer, tiny_config

TINY = tiny_config(vocab_size=GPT2_VOCAB, context_length=32, n_heads=2, dropout=0.1)  # the "tiny" preset
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
    (tmp / "config_only").mkdir()
    (tmp / "config_only" / "config.json").write_text((tmp / "hf" / "config.json").read_text())
    save_adapter(apply_lora(tiny(), verbose=False), tmp / "adapter")
    broken_hf_folders(tmp)
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
    (tmp / "nul.txt").write_bytes(b"abc\0def")
    for name, files_ in {"csv_only": {"x.csv": b"1,2"}, "binaries": {"x.txt": b"\0" * 40},
                         "corpus_tiny": {"a.txt": b"just a few words", "b.txt": b"and a few more"},
                         "corpus": {"a.txt": b"Alpha beta gamma. " * 40,
                                    "b.md": b"# Title\n\nSome notes here. " * 40}}.items():
        (tmp / name).mkdir()
        for file, data in files_.items():
            (tmp / name / file).write_bytes(data)
    return tmp


def broken_hf_folders(tmp):
    """Copies of the hf folder with broken weights: cut short, wrong or missing tensors, pickles."""
    config = (tmp / "hf" / "config.json").read_text()
    whole = (tmp / "hf" / "model.safetensors").read_bytes()
    good = load_file(tmp / "hf" / "model.safetensors")

    def copy(name, tensors=None, raw=None):
        (tmp / name).mkdir()
        (tmp / name / "config.json").write_text(config)
        if raw is not None:
            (tmp / name / "model.safetensors").write_bytes(raw)
        else:
            save_file(tensors, tmp / name / "model.safetensors", metadata={"format": "pt"})
        return tmp / name

    for name, n in {"cut-empty": 0, "cut-5": 5, "cut-half": len(whole) // 2, "cut-last": len(whole) - 1}.items():
        copy(name, raw=whole[:n])
    copy("wpe-too-long", {**good, "transformer.wpe.weight": torch.zeros(64, 32)})
    copy("c-attn-transposed", {**good, "transformer.h.0.attn.c_attn.weight": torch.zeros(96, 32)})
    copy("no-ln-f-bias", {k: v for k, v in good.items() if k != "transformer.ln_f.bias"})
    copy("extra-key", {**good, "transformer.h.0.adapter.weight": torch.zeros(2)})
    copy("untied-head", {**good, "lm_head.weight": torch.zeros(50257, 32)})
    every = {k: v for k, v in good.items() if k not in ("transformer.ln_f.bias", "transformer.h.1.ln_2.weight")}
    copy("every-problem", {**every, "extra": torch.zeros(1), "transformer.wpe.weight": torch.zeros(5, 32)})
    for name, content in {"pickled": good, "pickled-module": {"not": nn.Linear(2, 2)}}.items():  # a module: code
        folder = copy(name, raw=b"")
        (folder / "model.safetensors").unlink()
        torch.save(content, folder / "pytorch_model.bin")


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


def hf_config(tmp, **changes):
    """The Hugging Face config.json of the fixture's hf folder, changed (None deletes a key)."""
    config = {**json.loads((tmp / "hf" / "config.json").read_text()), **changes}
    return {k: v for k, v in config.items() if v is not None}


@functools.lru_cache(maxsize=1)
def corpus(folder):
    return prepare_corpus(folder, val_fraction=0.3, cache_dir=f"{folder}/../corpus_cache", progress=False)


@functools.lru_cache(maxsize=1)
def char_model():
    """A model over CharTokenizer's 97 ids: the sampling errors name the vocabulary size."""
    torch.manual_seed(0)
    return GPT2(tiny_config()).eval()


# --------------------------------------------------------------------------- the library
P = pytest.param
LIBRARY = [
    # tokenizer
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
    # data files
    P(load_text, ("{tmp}/missing.txt",), FileNotFoundError, "no such file: {tmp}/missing.txt",
      id="data-missing-file"),
    P(load_text, ("{tmp}/empty_dir",), IsADirectoryError, "{tmp}/empty_dir is a folder",
      id="data-folder"),
    P(load_text, ("{tmp}/latin1.txt",), ValueError,
      "latin1.txt is not UTF-8 text: invalid byte at offset 3 (bytes e9", id="data-not-utf8"),
    P(load_text, ("{tmp}/empty.txt",), ValueError, "{tmp}/empty.txt is empty", id="data-empty"),
    P(load_text, ("{tmp}/blank.txt",), ValueError, "{tmp}/blank.txt is empty", id="data-blank"),
    # the model
    P(GPT2Config.preset, ("gpt5",), ValueError, "unknown preset 'gpt5'; valid names: tiny",
      id="model-unknown-preset"),
    P(lambda idx: tiny()(idx), (torch.zeros(1, 33, dtype=torch.long),), ValueError,
      "sequence length 33 exceeds context_length 32", id="model-too-long"),
    P(lambda idx: tiny()(idx), (torch.zeros(1, 4),), TypeError, "float32", id="model-float-ids"),
    P(pick_device, ("gpu",), ValueError, "unknown device 'gpu'", id="train-unknown-device"),
    # generation
    P(lambda p: tiny().generate(p, max_length=3), ("",), ValueError,
      "prompt must be a non-empty string, got ''", id="generate-empty-prompt"),
    P(lambda idx: tiny().generate(idx, 3), (torch.tensor([[1, 50300]]),), ValueError,
      "token ids must be in [0, 50257)", id="generate-id-out-of-range"),
    P(lambda idx: tiny().generate(idx, max_new_tokens=-1), (torch.tensor([[1]]),), ValueError,
      "max_new_tokens must be >= 0, got -1", id="generate-negative-length"),
    # generation's lengths and prompts (the sampling flags are SAMPLING below)
    P(lambda: char_model().generate("hi", max_length=0, tokenizer=CharTokenizer()), (), ValueError,
      "max_length must be >= 1, got 0", id="generate-max-length-zero"),
    P(lambda: char_model().generate("hi", max_length=2.0, tokenizer=CharTokenizer()), (), TypeError,
      "max_length must be an int", id="generate-max-length-float"),
    P(lambda: char_model().generate(torch.tensor([[1]])), (), TypeError, "max_new_tokens must be an int",
      id="generate-no-length"),
    P(lambda: char_model().generate("hi", 3, max_length=3, tokenizer=CharTokenizer()), (), TypeError,
      "not both", id="generate-two-lengths"),
    P(lambda: char_model().generate([1, 2], max_new_tokens=3), (), TypeError, "prompt must be a str or a",
      id="generate-list-prompt"),
    P(lambda: char_model().generate("~~~é", max_length=3, tokenizer=CharTokenizer()), (), ValueError,
      "token ids must be in", id="generate-prompt-outside-the-vocabulary"),  # 'é' encodes to an id >= 97
    P(lambda: char_model().generate(torch.tensor([1, 2]), 3), (), ValueError,
      re.compile(r"idx must have shape \(batch, seq_len\).*\(2,\)"), id="generate-1d-tensor"),
    P(lambda: char_model().generate(torch.zeros(1, 3), 3), (), TypeError,
      re.compile("integer tensor.*float32"), id="generate-float-tensor"),
    # the hand-written backward (chapter 6): ids are checked before torch indexes with them
    P(lambda idx: model_gradients(tiny(), idx, torch.tensor([[1, 2]])),
      (torch.tensor([[1, 60000]]),), ValueError, "token ids must be in [0, 50257), got min 1, max 60000",
      id="backprop-id-out-of-range"),
    # checkpoints
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
    # the pretrained loader, and weight files cut short, wrong, missing or pickled
    P(load_pretrained, ("{tmp}/f.txt",), FileNotFoundError,
      "'{tmp}/f.txt' is neither a model name", id="pretrained-a-file"),
    P(load_pretrained, ("{tmp}/badjson",), ValueError,
      "{tmp}/badjson/config.json is not readable JSON", id="pretrained-bad-json"),
    P(lambda path: save_pretrained(tiny(), path), ("{tmp}/f.txt",), FileExistsError,
      "{tmp}/f.txt", id="pretrained-export-onto-a-file"),
    P(load_pretrained, ("gpt5",), FileNotFoundError,
      re.compile("'gpt5' is neither a model name .*gpt2-xl.* nor a folder"), id="pretrained-unknown-name"),
    P(load_pretrained, (124,), TypeError, "name_or_path must be a str or a path, got int",
      id="pretrained-not-a-path"),
    P(load_pretrained, ("{tmp}/empty_dir",), FileNotFoundError, "the folder {tmp}/empty_dir holds no config.json",
      id="pretrained-folder-without-config"),
    P(load_pretrained, ("{tmp}/config_only",), FileNotFoundError,
      "the folder {tmp}/config_only holds no model.safetensors", id="pretrained-folder-without-weights"),
    P(lambda path: load_pretrained(path, dtype="float16"), ("{tmp}/hf",), TypeError,
      "dtype must be a torch.dtype", id="pretrained-dtype-a-string"),
    *[P(load_pretrained, (f"{{tmp}}/{name}",), ValueError,
        ("not a readable safetensors file", f"{{tmp}}/{name}/model.safetensors"), id=f"pretrained-{name}")
      for name in ("cut-empty", "cut-5", "cut-half", "cut-last")],
    *[P(load_pretrained, (f"{{tmp}}/{name}",), ValueError, (message, f"{{tmp}}/{name}/model.safetensors"),
        id=f"pretrained-{name}") for name, message in [
        ("wpe-too-long", "transformer.wpe.weight is (64, 32), the model needs (32, 32)"),
        ("c-attn-transposed", "transformer.h.0.attn.c_attn.weight is (96, 32), the model needs (32, 96)"),
        ("no-ln-f-bias", "missing keys ['transformer.ln_f.bias']"),
        ("extra-key", "unexpected keys ['transformer.h.0.adapter.weight']"),
        ("untied-head", "lm_head.weight differs from wte.weight"),
    ]],
    P(load_pretrained, ("{tmp}/every-problem",), ValueError,  # every problem in one error
      ("transformer.h.1.ln_2.weight", "transformer.ln_f.bias", "unexpected keys ['extra']",
       "transformer.wpe.weight is (5, 32)"), id="pretrained-every-problem"),
    P(load_pretrained, ("{tmp}/pickled",), ValueError, re.compile("is a pickle.*allow_pickle=True"),
      id="pretrained-pickle-without-the-opt-in"),
    P(lambda path: load_pretrained(path, allow_pickle=True), ("{tmp}/pickled-module",), ValueError,
      "not a weights-only pickle", id="pretrained-pickle-of-code"),
    P(lambda path: save_pretrained(GPT2(GPT2Config(vocab_size=100, context_length=8, d_model=8, n_layers=1,
                                                   n_heads=1, qkv_bias=False)), path),
      ("{tmp}/x",), ValueError, "qkv_bias=False", id="pretrained-export-without-qkv-bias"),
    P(lambda path: save_pretrained(nn.Linear(2, 2), path), ("{tmp}/y",), TypeError, "model must be a GPT2",
      id="pretrained-export-not-a-gpt2"),
    P(lambda tmp: config_from_hf(hf_config(Path(tmp), activation_function="relu", layer_norm_epsilon=1e-6)),
      ("{tmp}",), ValueError, re.compile("activation_function='relu'.*layer_norm_epsilon=1e-06"),
      id="pretrained-config-we-cannot-represent"),
    P(lambda tmp: config_from_hf(hf_config(Path(tmp), n_head=None)), ("{tmp}",), ValueError,
      "has no ['n_head']", id="pretrained-config-without-n-head"),
    # LoRA (test_lora.py keeps an adapter that does not fit, which must leave the model as it came)
    P(lambda rank: apply_lora(tiny(), rank), (0,), ValueError, "rank must be >= 1, got 0",
      id="lora-rank-zero"),
    P(lambda alpha: apply_lora(tiny(), 2, alpha), (-1.0,), ValueError,
      "alpha must be finite and > 0, got -1.0", id="lora-negative-alpha"),
    P(lambda path: load_adapter(tiny(), path), ("{tmp}/notlora",), ValueError,
      "{tmp}/notlora/adapter_config.json is not a gpt2scratch LoRA config", id="lora-not-an-adapter"),
    P(LoRALinear, (nn.Conv1d(2, 2, 1),), TypeError, "nn.Linear", id="lora-linear-not-a-linear"),
    P(lambda rank: LoRALinear(nn.Linear(2, 2), rank=rank), (0,), ValueError, "rank must be >= 1",
      id="lora-linear-rank-zero"),
    P(lambda rank: LoRALinear(nn.Linear(2, 2), rank=rank), (True,), TypeError, "rank must be an int",
      id="lora-linear-rank-bool"),
    P(lambda alpha: LoRALinear(nn.Linear(2, 2), alpha=alpha), (0,), ValueError, "alpha",
      id="lora-linear-alpha-zero"),
    P(lambda dropout: LoRALinear(nn.Linear(2, 2), dropout=dropout), (1.0,), ValueError, "dropout",
      id="lora-linear-dropout-one"),
    P(lambda: apply_lora(apply_lora(tiny(), verbose=False)), (), ValueError, "already has LoRA",
      id="lora-applied-twice"),
    P(lambda targets: apply_lora(tiny(), targets=targets, verbose=False), (("attn.q_proj",),), ValueError,
      re.compile("matches no module.*c_fc"), id="lora-target-matches-nothing"),
    P(lambda emb: LoRAEmbedding(emb, LoRALinear(nn.Linear(2, 4))), (nn.Embedding(4, 2),), ValueError,
      "for a tied head", id="lora-embedding-of-an-untied-head"),
    P(lambda targets: apply_lora(tiny(), targets=targets, verbose=False), (("ln_1",),), TypeError,
      "not an nn.Linear", id="lora-target-not-a-linear"),
    P(lambda targets: apply_lora(tiny(), targets=targets, verbose=False), ("attn.c_attn",), TypeError,
      "tuple of names", id="lora-targets-a-str"),
    P(lambda path: load_adapter(tiny(), path), ("{tmp}/empty_dir",), FileNotFoundError, "no LoRA adapter",
      id="lora-no-adapter"),
    P(lambda path: load_adapter(GPT2(GPT2Config(vocab_size=50257, context_length=32, d_model=64, n_layers=2,
                                                n_heads=2)), path),
      ("{tmp}/adapter",), ValueError, "shape", id="lora-adapter-of-another-width"),
    P(lambda path: save_adapter(tiny(), path), ("{tmp}/none",), ValueError, "no LoRA adapters",
      id="lora-save-without-adapters"),
    # the attention dashboard
    P(lambda path: write_dashboard(path, ["a"], torch.ones(1, 1, 1, 1), None, "t"),
      ("{tmp}/f.txt/attention.html",), FileExistsError, "{tmp}/f.txt",
      id="dashboard-under-a-file"),
    # attention maps, head statistics, the page
    P(lambda text: attention_maps(tiny(), text), ("",), ValueError, "must not be empty",
      id="attention-maps-empty-text"),
    P(lambda text: attention_maps(tiny(), text), ([],), ValueError, "must not be empty",
      id="attention-maps-no-ids"),
    P(lambda text: attention_maps(tiny(), text), (list(range(33)),), ValueError,
      "33 tokens long, longer than the model's context of 32", id="attention-maps-too-long"),
    P(lambda text: attention_maps(tiny(), text), ([[1, 2]],), ValueError, "1-D sequence of int token ids",
      id="attention-maps-2d-ids"),
    P(attention_maps, (nn.Linear(2, 2), [1, 2]), TypeError, "model must be a GPT2",
      id="attention-maps-not-a-gpt2"),
    P(head_stats, (torch.ones(1, 1),), ValueError, re.compile("at least|>= 2 tokens"),
      id="head-stats-one-token"),
    P(head_stats, (torch.ones(3, 4),), ValueError, "(..., T, T)", id="head-stats-not-square"),
    P(head_stats, ([[1.0]],), TypeError, "torch.Tensor", id="head-stats-a-list"),
    P(lambda a, b: position_scores(tiny(), a, b), ([1, 2, 3], [1, 2]), ValueError, "same token length",
      id="position-scores-different-lengths"),
    P(dashboard_html, (["a", "b"], torch.ones(1, 1, 3, 3)), ValueError, "got 2 tokens for maps of T=3",
      id="dashboard-token-count"),
    P(dashboard_html, (["a", "b", "c"], torch.ones(1, 3, 3)), ValueError, "(L, H, T, T)",
      id="dashboard-3d-maps"),
    # a corpus of many files
    P(find_files, ("{tmp}/empty_dir",), ValueError, "empty", id="corpus-empty-folder"),
    P(lambda folder: find_files(folder, glob="*.txt"), ("{tmp}/csv_only",), ValueError,
      re.compile(r"no file under .* matches \*\.txt"), id="corpus-glob-matches-nothing"),
    P(find_files, ("{tmp}/missing",), FileNotFoundError, "no such file or folder", id="corpus-missing"),
    P(find_files, ([],), ValueError, "no data", id="corpus-empty-list"),
    P(lambda path: list(read_pieces(path)), ("{tmp}/nul.txt",), NotTextError, re.compile("binary.*offset 3"),
      id="corpus-binary-file"),
    P(lambda path: list(read_pieces(path)), ("{tmp}/latin1.txt",), NotTextError, "not UTF-8",
      id="corpus-latin1-file"),
    P(lambda folder: prepare_corpus(folder, cache_dir=f"{folder}/c", progress=False), ("{tmp}/binaries",),
      ValueError, "none of the 1 files is UTF-8 text", id="corpus-only-binary-files"),
    P(TokenWindows, (np.arange(64, dtype=np.uint16), 64), ValueError,
      "token_ids has 64 tokens, too short for one window of context_length 64", id="corpus-fewer-than-one-window"),
    P(lambda folder: corpus_loaders(corpus(folder), context_length=4096), ("{tmp}/corpus",), ValueError,
      re.compile("the corpus's (train|val) split has .* too short .* needs 4,097"), id="corpus-loaders-context-too-long"),
    P(lambda folder: corpus_loaders(corpus(folder), context_length=16, batch_size=10**6), ("{tmp}/corpus",),
      ValueError, "fewer than batch_size", id="corpus-loaders-batch-too-big"),
]


@pytest.mark.parametrize("fn, args, error, message", LIBRARY)
def test_library_bad_input(files, fn, args, error, message):
    with pytest.raises(error) as err:
        fn(*fill(args, files))
    if isinstance(message, re.Pattern):
        assert message.search(str(err.value)), err.value
    else:
        for piece in message if isinstance(message, tuple) else (message,):
            assert fill(piece, files) in str(err.value), err.value


# The sampling flags, each through the three ways in: GPT2.generate on ids and on text, and
# generation.generate.
SAMPLING = [
    P(dict(temperature=-1.0), ValueError, r"^temperature must be finite and >= 0, got -1.0$", id="temperature-negative"),
    P(dict(temperature=float("nan")), ValueError, "temperature must be finite and >= 0, got nan",
      id="temperature-nan"),
    P(dict(temperature=float("inf")), ValueError, "temperature must be finite and >= 0, got inf",
      id="temperature-inf"),
    P(dict(temperature="hot"), TypeError, "temperature must be a number, got str 'hot'", id="temperature-str"),
    P(dict(temperature=True), TypeError, "temperature must be a number, got bool True", id="temperature-bool"),
    P(dict(top_k=0), ValueError, "top_k must be >= 1, got 0", id="top-k-zero"),
    P(dict(top_k=2.5), TypeError, "top_k must be an int or None, got float 2.5", id="top-k-float"),
    P(dict(top_p=0.0), ValueError, r"top_p must be finite and > 0 and <= 1, got 0.0", id="top-p-zero"),
    P(dict(top_p=1.5), ValueError, r"top_p must be finite and > 0 and <= 1, got 1.5", id="top-p-above-one"),
    P(dict(top_p=float("nan")), ValueError, "top_p must be finite", id="top-p-nan"),
    P(dict(top_p="0.9"), TypeError, "top_p must be a number or None", id="top-p-str"),
    P(dict(min_p=1.5), ValueError, r"^min_p must be finite and >= 0 and <= 1, got 1.5$", id="min-p-above-one"),
    P(dict(min_tokens_to_keep=0), ValueError, r"^min_tokens_to_keep must be >= 1, got 0$",
      id="min-tokens-to-keep-zero"),
    P(dict(top_q=0.9), TypeError, "unexpected keyword argument 'top_q'", id="unknown-setting"),
    P(dict(use_cache="yes"), TypeError, "use_cache", id="use-cache-str"),
    P(dict(eos_id=97), ValueError, r"eos_id must be in \[0, 97\), got 97", id="eos-id-too-big"),
    P(dict(eos_id=-1), ValueError, "eos_id must be >= 0, got -1", id="eos-id-negative"),
    P(dict(seed="1"), TypeError, "seed must be an int or None, got str '1'", id="seed-str"),
    P(dict(seed=1, generator=torch.Generator()), ValueError, "seed or generator, not both",
      id="seed-and-generator"),
    P(dict(generator=3), TypeError, "torch.Generator", id="generator-an-int"),
]


@pytest.mark.parametrize("kwargs, error, message", SAMPLING)
def test_sampling_bad_input(kwargs, error, message):
    model, chars = char_model(), CharTokenizer()
    with pytest.raises(error, match=message):
        model.generate(torch.tensor([[1, 2]]), 3, **kwargs)
    with pytest.raises(error, match=message):
        model.generate("hi", 3, tokenizer=chars, **kwargs)
    with pytest.raises(error, match=message):
        generate(model, "hi", max_length=3, tokenizer=chars, **kwargs)


# --------------------------------------------------------------------------- the CLI


TRAIN = ["--model", "tiny", "--context-length", "32", "--no-progress"]
CORPUS_RUN = ["--model", "tiny", "--context-length", "16", "--batch-size", "2", "--epochs", "1", "--no-progress",
              "--prompt", "", "--eval-iters", "1", "--device", "cpu"]
# (argv, the message's piece that names the bad value, one line: True where our checks raise it)
CLI = [
    # train
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
    P(["train", "--data", "{tmp}/story.txt", "--lora-rank", "2"], "--lora-rank adapts pretrained weights",
      True, id="train-lora-without-init"),
    P(["train", "--data", "{tmp}/story.txt", "--lora-targets", "mlp.c_fc"], "pass --lora-rank R too",
      True, id="train-lora-targets-without-rank"),
    P(["train", "--data", "{tmp}/story.txt", "--lora-targets", "attn.c_attn,,mlp.c_fc"],
      "expected comma-separated layer names, got 'attn.c_attn,,mlp.c_fc'", False,
      id="train-lora-targets-empty-name"),
    P(["train", "--init", "{tmp}/nope", "--data", "{tmp}/story.txt"], "'{tmp}/nope' is neither a model name",
      True, id="train-init-missing"),
    P(["train", "--init", "gpt2", "--resume", "{tmp}/ck", "--data", "{tmp}/story.txt"], "pass one of them",
      True, id="train-init-and-resume"),
    # a corpus folder
    P(["train", "--data", "{tmp}/empty_dir", "--out", "{tmp}/o", *CORPUS_RUN], "is empty", True,
      id="train-corpus-empty-folder"),
    P(["train", "--data", "{tmp}/csv_only", "--glob", "*.txt", "--out", "{tmp}/o", *CORPUS_RUN],
      "matches *.txt", True, id="train-corpus-glob-matches-nothing"),
    P(["train", "--data", "{tmp}/corpus_tiny", "--out", "{tmp}/o", *CORPUS_RUN], "too short for one window", True,
      id="train-corpus-too-small"),
    # generate
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
    P(["generate", "hi", "--init", "{tmp}/hf", "--checkpoint", "{tmp}/ck"],
      "argument --checkpoint: not allowed with argument --init", False, id="generate-two-models"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--top-p", "0"], "expected a number in (0, 1], got 0",
      False, id="generate-top-p-zero"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--top-p", "1.5"], "expected a number in (0, 1], got 1.5",
      False, id="generate-top-p-above-one"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--top-p", "x"], "expected a number in (0, 1], got 'x'",
      False, id="generate-top-p-not-a-number"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--min-p", "1.5"],
      "min_p must be finite and >= 0 and <= 1, got 1.5", True, id="generate-min-p-above-one"),
    P(["generate", "--checkpoint", "{tmp}/ck", "Hi", "--min-tokens-to-keep", "0"],
      "min_tokens_to_keep must be >= 1, got 0", True, id="generate-min-tokens-to-keep-zero"),
    # run
    P(["run", "--model", "huge"], "unknown preset 'huge'", True, id="run-unknown-model"),
    P(["run", "--device", "gpu"], "unknown device 'gpu'", True, id="run-unknown-device"),
    P(["run", "--batch-size", "x"], "expected a positive integer, got 'x'", False,
      id="run-batch-size-not-a-number"),
    # eval
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/empty_dir"], "{tmp}/empty_dir is a folder",
      True, id="eval-data-folder"),
    P(["eval", "--init", "{tmp}/empty_dir", "--data", "{tmp}/story.txt"],
      "the folder {tmp}/empty_dir holds no config.json", True, id="eval-init-empty-folder"),
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/story.txt", "--batch-size", "0"],
      "expected a positive integer, got 0", False, id="eval-zero-batch"),
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/missing.txt"], "no such file: {tmp}/missing.txt",
      True, id="eval-missing-file"),
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/story.txt", "--context-length", "64"],
      "longer than the model's context", True, id="eval-context-too-long"),
    P(["eval", "--checkpoint", "{tmp}/ck", "--data", "{tmp}/short.txt"], "too short for one window of context_length 32, which needs 33",
      True, id="eval-text-too-short"),
    P(["eval", "--data", "{tmp}/story.txt"], "one of the arguments --checkpoint --init is required", False,
      id="eval-no-model"),
    # export
    P(["export", "--checkpoint", "{tmp}/nope", "--out", "{tmp}/o"], "no checkpoint at {tmp}/nope", True,
      id="export-missing-checkpoint"),
    P(["export", "--checkpoint", "{tmp}/ck", "--out", "{tmp}/f.txt"], "--out {tmp}/f.txt is a file",
      True, id="export-out-is-a-file"),
    P(["export", "--checkpoint", "{tmp}/f.txt", "--out", "{tmp}/o"], "no checkpoint in {tmp}/f.txt",
      True, id="export-checkpoint-is-a-file"),
    # attention
    P(["attention", "--checkpoint", "{tmp}/ck", ""], "text must not be empty", True, id="attention-empty-text"),
    P(["attention", "--checkpoint", "{tmp}/ck", "word " * 40], "longer than the model's context of 32", True,
      id="attention-text-too-long"),
    P(["attention", "--checkpoint", "{tmp}/nope", "hi"], "no checkpoint at {tmp}/nope", True,
      id="attention-missing-checkpoint"),
    P(["attention", "--checkpoint", "{tmp}/ck", "hi", "--out", "{tmp}/empty_dir"], "is a folder", True,
      id="attention-out-is-a-folder"),
    P(["attention", "hi", "--init", "{tmp}/hf", "--checkpoint", "{tmp}/ck"],
      "argument --checkpoint: not allowed with argument --init", False, id="attention-two-models"),
    P(["attention", "--checkpoint", "{tmp}/ck", "hi", "--device", "gpu"], "unknown device 'gpu'",
      True, id="attention-unknown-device"),
    P(["attention", "--checkpoint", "{tmp}/ck", "hi", "--out", "{tmp}/f.txt/a.html"], "{tmp}/f.txt",
      True, id="attention-out-under-a-file"),
    P(["attention", "--init", "{tmp}/f.txt", "hi"], "'{tmp}/f.txt' is neither a model name", True,
      id="attention-init-a-file"),
    # bench and its benchmarks
    P(["bench", "train", "--preset", "huge"], "unknown preset 'huge'", True, id="bench-train-preset"),
    P(["bench", "train", "--preset", "tiny", "--context-length", "5000"],
      "--context-length 5000 is longer than preset tiny's context", False,
      id="bench-train-context-length"),
    P(["bench", "generate", "--preset", "tiny", "--new-tokens", "0"], "--new-tokens must be >= 1, got 0",
      False, id="bench-generate-new-tokens"),
    P(["bench", "precision", "--preset", "tiny", "--matmul-size", "0"], "--matmul-size must be >= 1, got 0",
      False, id="bench-precision-matmul-size"),
    P(["bench", "fastpath", "--rungs", "x"], "--rungs must look like 4:6, got 'x'", False,
      id="bench-fastpath-rungs"),
    P(["bench", "fastpath", "--preset", "tiny", "--layers", "0"], "--layers must be >= 1, got 0",
      False, id="bench-fastpath-layers"),
    P(["bench", "backward", "--preset", "tiny", "--batch-size", "0", "--no-memory"],
      "--batch-size must be >= 1, got 0", False, id="bench-backward-batch-size"),
    P(["bench", "backward", "--preset", "tiny", "--dropout", "2", "--no-memory"],
      "dropout must be finite and >= 0 and < 1, got 2.0", True, id="bench-backward-dropout"),
    P(["tokenizer", "train", "--data", "{tmp}/nope", "--vocab-size", "300", "--out", "{tmp}/tok"],
      "no such file or folder: {tmp}/nope", True, id="tokenizer-train-missing-data"),
    P(["tokenizer", "train", "--data", "{tmp}/f.txt", "--vocab-size", "255", "--out", "{tmp}/tok"],
      "--vocab-size must be >= 256, got 255", True, id="tokenizer-train-vocab-size"),
    P(["tokenizer", "train", "--data", "{tmp}/f.txt", "--vocab-size", "300", "--out", "{tmp}/f.txt"],
      "--out {tmp}/f.txt is a file", True, id="tokenizer-train-out-is-a-file"),
    P(["tokenizer", "nope"], "invalid choice: 'nope'", False, id="tokenizer-unknown-command"),
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
    """The real `python -m gpt2scratch`, not main() in-process."""
    missing = tmp_path / "nope.txt"
    proc = subprocess.run([sys.executable, "-m", "gpt2scratch", "train", "--data", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"python -m gpt2scratch train: error: no such file: {missing}"


def test_case_names_are_distinct():  # pytest would run a repeated id, suffixed, without a word
    for cases in (LIBRARY, CLI, SAMPLING):
        assert len({p.id for p in cases}) == len(cases)
