"""Tests for the command line `python -m gpt2scratch` (train, generate, run, bench)."""
import os
import subprocess
import sys
import types
from pathlib import Path

import torch

from gpt2scratch.__main__ import build_parser, main
from gpt2scratch.checkpoint import load_checkpoint, save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config
from cli_run import run_main  # tests/cli_run.py

STORY = ("Justice is served when the jury has heard every word of the story, and not a moment before. " * 60)




# Bad input (a missing, non-UTF-8, empty or short text, bad options): tests/test_bad_inputs.py


def test_train_resume_and_generate_end_to_end(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text(STORY, encoding="utf-8")
    out = tmp_path / "run"
    common = ["--data", str(data), "--model", "tiny", "--context-length", "32", "--batch-size", "4",
              "--no-progress", "--eval-iters", "2", "--prompt", "Justice is"]
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
    assert (args.schedule, args.grad_clip, args.checkpoint_every) == ("cosine", 1.0, 5)  # section 5.8's recipe


def test_help_lists_every_command():
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "gpt2scratch", "--help"], capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).parent)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("train", "generate", "run", "bench"))
