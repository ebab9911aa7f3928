"""Faults, with nothing lost: `python -m gpt2scratch train` killed or interrupted in the middle
of a checkpoint write, a full disk during a save, and a resume with a different --epochs.

Every run is a real subprocess. A small launcher wraps the command line and pauses it inside
the Nth checkpoint write (after a torn write of the weights file), so the test can kill it at
exactly that moment instead of hoping to hit a write that lasts milliseconds.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpt2scratch.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--model", "tiny", "--context-length", "32", "--batch-size", "4", "--eval-iters", "2",
         "--checkpoint-every", "1", "--no-progress", "--prompt", "", "--seed", "7",
         "--precision", "fp32"]

LAUNCHER = r'''
import errno, os, signal, sys, time
# A command started in the background by a non-interactive shell (as CI scripts do) inherits
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler: restore Ctrl-C's.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
import gpt2scratch.checkpoint as ckpt
from gpt2scratch.__main__ import main

mode, at, marker = os.environ["FAULT_MODE"], int(os.environ["FAULT_AT"]), Path(os.environ["FAULT_MARKER"])
real_write, real_save_file, saves = ckpt._write_folder, ckpt.save_file, []

def paused_write(folder, *args):
    saves.append(folder)
    real_write(folder, *args)
    if len(saves) == at:  # a torn weights file, then wait to be killed
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        marker.write_text(str(folder))
        time.sleep(600)

def full_disk(tensors, filename, metadata=None):
    saves.append(filename)
    if len(saves) > 2 * (at - 1):  # two files a checkpoint: fail inside the Nth save
        Path(filename).write_bytes(b"torn")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
    real_save_file(tensors, filename, metadata=metadata)

if mode == "pause":
    ckpt._write_folder = paused_write
elif mode == "full-disk":
    ckpt.save_file = full_disk
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ("the verdict jury story painter wife gallery portrait light frame morning said "
             "never quite always he she it was had".split())
    text = " ".join(rng.choice(words) for _ in range(2400)) + "."
    path = tmp_path_factory.mktemp("corpus") / "story.txt"
    path.write_text(text, encoding="utf-8")
    return path


def cli(args, tmp_path, mode="none", at=0, wait=True):
    env = {**os.environ, "FAULT_MODE": mode, "FAULT_AT": str(at),
           "FAULT_MARKER": str(tmp_path / "marker"), "PYTHONUNBUFFERED": "1"}
    launcher = tmp_path / "launcher.py"
    launcher.write_text(LAUNCHER)
    proc = subprocess.Popen([sys.executable, str(launcher), "train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = proc.communicate(timeout=300)
        return proc.returncode, out, err
    return proc


def wait_for_marker(proc, marker: Path) -> Path:
    deadline = time.monotonic() + 240
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=10) if proc.poll() is not None else ("", "")
            proc.kill()
            pytest.fail(f"the run never reached the paused save:\n{out}\n{err}")
        time.sleep(0.05)
    return Path(marker.read_text())


def history(folder: Path) -> dict:
    return load_checkpoint(folder).train_state["history"]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("whole")
    code, out, err = cli(["--data", str(corpus), "--epochs", "3", "--out", str(tmp / "run"),
                          *FLAGS], tmp)
    assert code == 0, err
    assert "keeps the plan" not in out  # nothing re-planned in a plain run
    return history(tmp / "run")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_in_a_checkpoint_write_resumes_with_the_same_losses(sig, corpus, tmp_path,
                                                                   uninterrupted):
    run = tmp_path / "run"
    args = ["--data", str(corpus), "--epochs", "3", "--out", str(run), *FLAGS]
    proc = cli(args, tmp_path, mode="pause", at=2, wait=False)
    torn = wait_for_marker(proc, tmp_path / "marker")
    assert torn.parent == run and torn.name.startswith(".tmp-step-")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)

    if sig == signal.SIGINT:  # Ctrl-C: the save cleans up and the message says how to resume
        assert proc.returncode == 130, err
        assert f"--resume {run}" in err and "Traceback" not in err
        assert not torn.exists()
    else:  # SIGKILL: no chance to clean up; the torn folder stays and is ignored
        assert proc.returncode == -signal.SIGKILL
        assert torn.exists()
    previous = load_checkpoint(run)  # the checkpoint of epoch 1 still loads
    steps_per_epoch = previous.train_state["steps_per_epoch"]
    assert previous.train_state["step"] == steps_per_epoch

    code, out, err = cli([*args, "--resume", str(run)], tmp_path)
    assert code == 0, err
    assert "keeps the plan" not in out  # the same --epochs: the same plan, no note
    assert history(run) == uninterrupted  # every loss, bit for bit
    assert not any(p.name.startswith(".tmp-step-") for p in run.iterdir())


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(corpus, tmp_path,
                                                                 uninterrupted):
    run = tmp_path / "run"
    args = ["--data", str(corpus), "--epochs", "3", "--out", str(run), *FLAGS]
    code, out, err = cli(args, tmp_path, mode="full-disk", at=2)
    assert code == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and f"--resume {run}" in err
    assert "is intact" in err
    previous = load_checkpoint(run)
    assert previous.train_state["step"] == previous.train_state["steps_per_epoch"]
    assert not any(p.name.startswith(".tmp-step-") for p in run.iterdir())

    code, out, err = cli([*args, "--resume", str(run)], tmp_path)  # space freed: go on
    assert code == 0, err
    assert history(run) == uninterrupted


def test_resume_with_more_epochs_says_the_schedule_keeps_its_plan(corpus, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(corpus), "--out", str(run), *FLAGS]
    code, _, err = cli([*args, "--epochs", "1"], tmp_path)
    assert code == 0, err
    steps = load_checkpoint(run).train_state["steps_per_epoch"]
    code, out, err = cli([*args, "--epochs", "3", "--resume", str(run)], tmp_path)
    assert code == 0, err
    note = next(line for line in out.splitlines() if "keeps the plan" in line)
    assert f"over {steps} steps" in note and f"3 epochs are {3 * steps} steps" in note
    lrs = history(run)["step_lr"]
    assert lrs[steps:] == [pytest.approx(0.1 * max(lrs))] * (2 * steps)  # the floor, as said
