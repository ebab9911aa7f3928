"""Tests for gpt2scratch.data: verified fetching (disk, mirror, download), the Verdict, load_text."""
from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import gpt2scratch.data as data
from gpt2scratch.data import (
    VERDICT_SHA256, ChecksumMismatchError, DataUnavailableError, data_dir, fetch_verified, load_text,
    sha256_file, verdict_path, verdict_text,
)

CONTENT = "A small test file.\nWith two lines, and ünïcödé.\n".encode("utf-8")
SHA = hashlib.sha256(CONTENT).hexdigest()
URL = "https://example.invalid/test-file.txt"
REAL_MIRROR = os.environ.get("GPT2SCRATCH_DATA_MIRROR")  # read before the fixture clears it


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """An empty data dir and an empty mirror, and a network that always fails (unless a test patches it)."""
    data_path, mirror = tmp_path / "data", tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("GPT2SCRATCH_DATA_DIR", str(data_path))
    monkeypatch.delenv("GPT2SCRATCH_DATA_MIRROR", raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return data_path, mirror


def leftovers(folder: Path) -> list[str]:
    """Temp files a failed atomic write would leave behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] if folder.exists() else []


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT * 50_000)  # several 1 MiB chunks
    assert sha256_file(path) == hashlib.sha256(CONTENT * 50_000).hexdigest()


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT2SCRATCH_DATA_DIR", str(tmp_path / "x"))
    assert data_dir() == tmp_path / "x"
    monkeypatch.delenv("GPT2SCRATCH_DATA_DIR")
    repo = Path(data.__file__).resolve().parents[2]
    assert data_dir() == repo / "data"   # the tests run from a source checkout


def test_existing_good_file_is_used(dirs):
    data_path, _ = dirs
    data_path.mkdir()
    (data_path / "f.txt").write_bytes(CONTENT)
    assert fetch_verified("f.txt", URL, SHA) == data_path / "f.txt"


def test_existing_corrupt_file_is_rejected(dirs):
    data_path, mirror = dirs
    data_path.mkdir()
    (data_path / "f.txt").write_bytes(CONTENT[:-5])  # truncated
    (mirror / "f.txt").write_bytes(CONTENT)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch_verified("f.txt", URL, SHA)
    message = str(err.value)
    assert str(data_path / "f.txt") in message and SHA in message
    assert hashlib.sha256(CONTENT[:-5]).hexdigest() in message and "rm '" in message
    assert (data_path / "f.txt").read_bytes() == CONTENT[:-5]  # never silently replaced
    assert isinstance(err.value, ValueError)


def test_mirror_copy(dirs, monkeypatch):
    data_path, mirror = dirs
    (mirror / "f.txt").write_bytes(CONTENT)
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(mirror))
    path = fetch_verified("f.txt", URL, SHA)
    assert path == data_path / "f.txt" and path.read_bytes() == CONTENT
    assert leftovers(data_path) == []


def test_relative_mirror_is_resolved_against_cwd(dirs, monkeypatch, tmp_path):
    data_path, mirror = dirs
    (mirror / "f.txt").write_bytes(CONTENT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", "mirror")
    assert fetch_verified("f.txt", URL, SHA).read_bytes() == CONTENT


def test_relative_mirror_falls_back_to_repo_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                  # no ./src here, but the repository has one
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", "src")
    assert data._mirror_dir() == Path(data.__file__).resolve().parents[2] / "src"


def test_corrupt_mirror_is_rejected(dirs, monkeypatch):
    data_path, mirror = dirs
    (mirror / "f.txt").write_bytes(b"not the right bytes")
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(mirror))
    with pytest.raises(ChecksumMismatchError, match=rf"mirror file .*f\.txt has sha256 .*expected {SHA}"):
        fetch_verified("f.txt", URL, SHA)
    assert not (data_path / "f.txt").exists() and leftovers(data_path) == []


def test_offline_without_mirror_explains_what_to_do(dirs, monkeypatch):
    data_path, mirror = dirs
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(mirror))  # set, but without the file
    with pytest.raises(DataUnavailableError) as err:
        fetch_verified("f.txt", URL, SHA)
    message = str(err.value)
    for needed in ("GPT2SCRATCH_DATA_MIRROR", URL, str(data_path / "f.txt"), SHA, "no network in tests", str(mirror)):
        assert needed in message
    assert isinstance(err.value, RuntimeError)
    assert not (data_path / "f.txt").exists()
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(mirror / "typo"))
    with pytest.raises(DataUnavailableError, match="the mirror folder .*typo does not exist"):
        fetch_verified("f.txt", URL, SHA)


def test_download_is_verified_and_atomic(dirs, monkeypatch):
    data_path, _ = dirs
    seen = []

    def fake_urlopen(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(CONTENT)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    assert fetch_verified("f.txt", URL, SHA).read_bytes() == CONTENT
    assert seen == [(URL, 30.0)]                     # a timeout is always set
    assert fetch_verified("f.txt", URL, SHA)         # second call: from disk, no download
    assert len(seen) == 1 and leftovers(data_path) == []


def test_corrupt_download_is_rejected(dirs, monkeypatch):
    data_path, _ = dirs
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(CONTENT[:10]))
    with pytest.raises(ChecksumMismatchError, match=rf"download of {URL} has sha256"):
        fetch_verified("f.txt", URL, SHA)
    assert not (data_path / "f.txt").exists() and leftovers(data_path) == []


def test_verdict_from_mirror(dirs, monkeypatch):
    if not REAL_MIRROR or not (Path(REAL_MIRROR) / "the-verdict.txt").is_file():
        pytest.skip("set GPT2SCRATCH_DATA_MIRROR to a folder holding the-verdict.txt")
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", REAL_MIRROR)
    text = verdict_text()
    assert len(text) == 20479 and text.startswith("I HAD always thought Jack Gisburn")
    assert sha256_file(verdict_path()) == VERDICT_SHA256


def test_corrupt_verdict_is_rejected(dirs):
    data_path, _ = dirs
    data_path.mkdir()
    (data_path / "the-verdict.txt").write_text("I HAD always thought", encoding="utf-8")
    with pytest.raises(ChecksumMismatchError, match=f"expected {VERDICT_SHA256}"):
        verdict_text()


def test_verdict_offline(dirs):
    with pytest.raises(DataUnavailableError, match="the-verdict.txt.*raw.githubusercontent.com"):
        verdict_path()


# --- load_text ------------------------------------------------------------------------------------

def test_load_text(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_bytes("\ufeffHello, wörld!\n".encode("utf-8"))  # with a byte-order mark
    assert load_text(path) == "Hello, wörld!\n"
    assert load_text(str(path)) == "Hello, wörld!\n"


# load_text's errors (missing, a folder, not UTF-8, empty, blank): tests/test_bad_inputs.py
