"""Tests for the command line `python -m gpt2scratch` (train, generate, run, bench)."""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from gpt2scratch.__main__ import build_parser, main
from gpt2scratch.checkpoint import load_checkpoint, save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config
from cli_run import run_main  # tests/cli_run.py

ROOT = Path(__file__).resolve().parent.parent
STORY = ("Justice is served when the jury has heard every word of the story, and not a moment before. " * 60)




# Bad input (a missing, non-UTF-8, empty or short text, bad options): tests/test_bad_inputs.py


def test_train_resume_and_generate_end_to_end(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text(STORY, encoding="utf-8")
    out = tmp_path / "run"
    common = ["--data", str(data), "--model", "tiny", "--context-length", "32", "--batch-size", "4",
              "--no-progress", "--eval-iters", "2", "--prompt", "Justice is", "--precision", "fp32"]
    code, stdout, err = run_main(["train", *common, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert "steps per epoch" in stdout and "val loss" in stdout and "sample after epoch 1" in stdout
    first = load_checkpoint(out).train_state
    assert first["epoch"] == 1 and first["step"] == first["steps_per_epoch"]

    code, stdout, err = run_main(["train", *common, "--epochs", "2", "--resume", str(out)], capsys)
    assert code == 0, err
    assert "resumed from" in stdout
    ckpt = load_checkpoint(out)
    assert ckpt.train_state["epoch"] == 2 and ckpt.config.d_model == 32 and ckpt.config.context_length == 32

    argv = ["generate", "--checkpoint", str(out), "Justice is", "--max-length", "8", "--seed", "3"]
    code, first_text, _ = run_main(argv, capsys)
    assert code == 0 and first_text.startswith("Justice is")
    assert run_main(argv, capsys)[1] == first_text  # seeded: reproducible


def test_generate_on_a_saved_tiny_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPT2(GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1))
    save_checkpoint(tmp_path / "ck", model)
    code, out, _ = run_main(["generate", "--checkpoint", str(tmp_path / "ck"), "Hello", "--max-length", "5",
                             "--temperature", "0"], capsys)
    expected = model.generate("Hello", max_length=5, temperature=0.0)
    assert code == 0 and out.rstrip("\n") == expected


def test_bench_is_dispatched_lazily(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("gpt2scratch.bench")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "gpt2scratch.bench", fake)
    import gpt2scratch

    monkeypatch.setattr(gpt2scratch, "bench", fake, raising=False)
    assert main(["bench", "train", "--device", "cpu"]) == 0 and calls == [["train", "--device", "cpu"]]


def test_run_defaults_are_the_chapter_settings():
    args = build_parser().parse_args(["run"])
    assert (args.epochs, args.batch_size, args.context_length, args.lr, args.weight_decay, args.dropout,
            args.model, args.seed, args.out) == (10, 2, 256, 4e-4, 0.1, 0.1, "124M", 123, "runs/verdict")
    assert (args.schedule, args.grad_clip, args.checkpoint_every) == ("cosine", 1.0, 5)  # section 5.9's recipe


def test_help_lists_every_command():
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "gpt2scratch", "--help"], capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).parent)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("train", "generate", "run", "bench"))


# Errors are handled in one place (gpt2scratch.__main__.main): what the user can fix is one line and
# exit code 2; anything else keeps its traceback. The bad-input cases: tests/test_bad_inputs.py.


def test_missing_optional_dependency_is_one_line_that_says_what_to_install(monkeypatch, capsys):
    """After `make run` only requirements.txt is installed; `bench` also needs transformers."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    pin = next(line for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
               if line.startswith("transformers=="))
    for benchmark in ("generate", "train"):
        code, out, err = run_main(["bench", benchmark, "--preset", "tiny", "--layers", "1"], capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"python -m gpt2scratch bench {benchmark}: error: "), err
        assert "'transformers'" in err and f"pip install {pin}" in err, err
        assert "pip install -r requirements-dev.txt" in err, err
        assert out == ""  # it stops before it measures anything


def test_a_module_no_requirements_file_names_keeps_its_traceback():
    """Our own module missing, or a typo: a bug, not something to pip install."""
    from gpt2scratch.__main__ import _one_line

    for name in ("transformerz", "gpt2scratch.nope"):
        assert _one_line(ModuleNotFoundError(f"No module named {name!r}", name=name)) is None


def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", GPT2(GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1)))
    return str(tmp_path / "ck")


def test_a_check_in_our_code_is_one_line_and_exit_2(tmp_path, capsys):
    from gpt2scratch.runtime import pick_device

    with pytest.raises(ValueError) as raised:  # the check, deep inside the command
        pick_device("gpu")
    code, _, err = run_main(["generate", "--checkpoint", tiny_checkpoint(tmp_path), "Hi", "--device", "gpu"],
                            capsys)
    assert code == 2 and "Traceback" not in err, err
    assert err == f"python -m gpt2scratch generate: error: {raised.value}\n"


def fail_inside_torch(monkeypatch, error):
    """Make every embedding lookup fail the way torch fails: raised inside torch, not by us."""
    def forward(self, ids):
        if error is RuntimeError:  # what a CUDA or NCCL failure is
            return torch.ones(2).view(3)
        return torch.nn.functional.cross_entropy(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                                                 reduction="bogus")  # a ValueError inside torch

    monkeypatch.setattr(torch.nn.Embedding, "forward", forward)


def test_an_unexpected_runtime_error_keeps_its_traceback(tmp_path, monkeypatch):
    ck = tiny_checkpoint(tmp_path)
    fail_inside_torch(monkeypatch, RuntimeError)
    with pytest.raises(RuntimeError, match="shape"):  # not swallowed into exit 2
        main(["generate", "--checkpoint", ck, "Hi", "--max-length", "2"])


def test_a_value_error_from_inside_torch_keeps_its_traceback(tmp_path, monkeypatch):
    ck = tiny_checkpoint(tmp_path)
    fail_inside_torch(monkeypatch, ValueError)
    with pytest.raises(ValueError, match="bogus"):
        main(["generate", "--checkpoint", ck, "Hi", "--max-length", "2"])


def test_a_bugs_type_error_in_our_code_keeps_its_traceback(tmp_path, monkeypatch):
    """A TypeError raised by an operation in our code (a bug), not by a check's `raise`."""
    import gpt2scratch.checkpoint as checkpoint

    ck = tiny_checkpoint(tmp_path)
    monkeypatch.setattr(checkpoint, "read_manifest", lambda directory: (Path(directory), None))
    with pytest.raises(TypeError, match="not subscriptable"):  # manifest["config"] on None
        main(["generate", "--checkpoint", ck, "Hi"])


def test_the_real_command_prints_the_traceback_of_an_unexpected_error(tmp_path):
    code = ("import sys, torch; from gpt2scratch.__main__ import main\n"
            "def fail(self, ids): raise RuntimeError('NCCL error: unhandled system error')\n"
            "torch.nn.Embedding.forward = fail\n"
            f"sys.exit(main(['generate', '--checkpoint', {tiny_checkpoint(tmp_path)!r}, 'Hi']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith("RuntimeError: NCCL error: unhandled system error")
