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

STORY = ("Justice is served when the jury has heard every word of the story, and not a moment before. " * 60)


def run_main(argv, capsys):
    """(exit code, stdout, stderr) of main(argv), whether it returns or raises SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_missing_file_is_a_one_line_error_from_the_real_command(tmp_path):
    missing = tmp_path / "nope.txt"
    proc = subprocess.run([sys.executable, "-m", "gpt2scratch", "train", "--data", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith("python -m gpt2scratch train: error: no such file:") and str(missing) in line


def test_non_utf8_text(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Un caf\xe9, s'il vous pla\xeet".encode("latin-1"))
    code, _, err = run_main(["train", "--data", str(path)], capsys)
    assert code == 2 and "is not UTF-8 text: invalid byte at offset 6" in one_line_error(err)


def test_empty_text(tmp_path, capsys):
    path = tmp_path / "empty.txt"
    path.write_text("  \n", encoding="utf-8")
    code, _, err = run_main(["train", "--data", str(path)], capsys)
    assert code == 2 and "is empty" in one_line_error(err)


def test_text_shorter_than_one_window_names_the_token_counts(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("Justice is served when the story is long enough.", encoding="utf-8")
    code, _, err = run_main(["train", "--data", str(path)], capsys)
    line = one_line_error(err)
    assert code == 2 and "the train split (90% of the text) has" in line and "needs 257" in line


def test_validation_split_too_short(tmp_path, capsys):
    path = tmp_path / "story.txt"
    path.write_text(STORY[:2000], encoding="utf-8")  # ~400 tokens: train fits a window of 256, val does not
    code, _, err = run_main(["train", "--data", str(path)], capsys)
    line = one_line_error(err)
    assert code == 2 and "the validation split (10% of the text) has" in line and "needs 257" in line
    assert "the whole text has" in line


def test_bad_options(tmp_path, capsys):
    path = tmp_path / "story.txt"
    path.write_text(STORY, encoding="utf-8")
    code, _, err = run_main(["train", "--data", str(path), "--model", "huge"], capsys)
    assert code == 2 and "unknown preset 'huge'" in one_line_error(err)
    code, _, err = run_main(["train", "--data", str(path), "--epochs", "0"], capsys)
    assert code == 2 and "expected a positive integer, got 0" in err  # argparse: usage line + message
    code, _, err = run_main(["train", "--data", str(path), "--dropout", "1.5", "--model", "tiny"], capsys)
    assert code == 2 and "dropout must be finite and >= 0 and < 1, got 1.5" in one_line_error(err)


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


def test_generate_errors(tmp_path, capsys):
    code, _, err = run_main(["generate", "--checkpoint", str(tmp_path / "nope"), "Hi"], capsys)
    assert code == 2 and "no checkpoint at" in one_line_error(err)
    code, _, err = run_main(["generate", "--checkpoint", str(tmp_path), "Hi", "--temperature", "-1"], capsys)
    assert code == 2 and "expected a finite number >= 0" in err


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
