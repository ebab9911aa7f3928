# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 16
"""Data files for the book: where they live, how they are fetched, and how they are
verified.

Generated from Appendix A of the book.
"""
from __future__ import annotations

__all__ = [
    "VERDICT_URL", "VERDICT_SHA256", "VERDICT_FILENAME", "ChecksumMismatchError",
    "DataUnavailableError", "repo_root", "data_dir", "sha256_file", "check_sha256",
    "fetch_verified", "verdict_path", "verdict_text", "load_text",
]

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


# %% chapters/A_engineering.ipynb cell 18
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


# %% chapters/A_engineering.ipynb cell 20
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


# %% chapters/A_engineering.ipynb cell 21
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


# %% chapters/A_engineering.ipynb cell 23
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
