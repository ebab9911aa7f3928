"""gpt2scratch.corpus (Appendix A; chapter 09 trains on it): files and folders, the split by
document, streamed tokenising to a memory-mapped uint16 file, the cache, and the window dataset."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.corpus import (
    CACHE_DIR,
    TokenWindows,
    corpus_loaders,
    find_files,
    prepare_corpus,
    read_pieces,
    safe_cut,
    split_documents,
)
from gpt2scratch.tokenizer import gpt2_encoding
from cli_run import run_main as run_cli  # tests/cli_run.py

ENC = gpt2_encoding()
EOT = ENC.eot_token


def encode(text):
    return ENC.encode(text, allowed_special={"<|endoftext|>"})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Alpha beta gamma. " * 40)
    (tmp_path / "b.md").write_text("# Title\n\nSome notes here. " * 40)
    (tmp_path / "sub" / "c.py").write_text("def f(x):\n    return x + 1\n" * 40)
    (tmp_path / "skip.csv").write_text("1,2,3\n")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h.txt").write_text("hidden")
    return tmp_path


def test_find_files_defaults_glob_and_lists(folder):
    names = [f.relative_to(folder).as_posix() for f in find_files(folder)]
    assert names == ["a.txt", "b.md", "sub/c.py"]  # sorted, hidden and *.csv left out
    assert [f.name for f in find_files(folder, glob="*.csv")] == ["skip.csv"]
    both = find_files([folder / "b.md", folder / "a.txt", folder / "b.md"])
    assert [f.name for f in both] == ["b.md", "a.txt"]  # order kept, no duplicates


# find_files' errors: tests/test_bad_inputs.py


TEXT = st.lists(
    st.sampled_from(list("ab Z\n\t\r'.,:é€ 😀") + ["<|endoftext|>", "  ", "'s", "word"]),
    max_size=120,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(TEXT, st.integers(2, 40))
def test_pieces_encode_like_the_whole_text(tmp_path_factory, text, block):
    path = tmp_path_factory.mktemp("p") / "t.txt"
    path.write_bytes(text.encode())
    pieces = list(read_pieces(path, block=block))
    assert "".join(t for t, _ in pieces) == text
    assert sum(n for _, n in pieces) == len(text.encode())
    assert [i for t, _ in pieces for i in encode(t)] == encode(text)


def test_safe_cut():
    assert safe_cut(b"one two") == 3
    assert safe_cut(b"one two three") == 7
    assert safe_cut(b"one  two") == 0  # two spaces: a whitespace piece
    assert safe_cut(b"one\n\ntwo") == 0


def test_bom_is_dropped(tmp_path):  # binary and latin-1 files: test_bad_inputs.py
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffHello there".encode())
    assert "".join(t for t, _ in read_pieces(bom)) == "Hello there"


def test_split_by_document(folder):
    files = find_files(folder)
    train, val = split_documents(files, val_fraction=0.3, seed=0)
    assert len(val) >= 1 and len(train) >= 1
    assert sorted(p for p, _, _ in train + val) == sorted(files)
    assert all(start == 0 and stop == p.stat().st_size for p, start, stop in train + val)
    assert split_documents(files, 0.3, seed=0) == (train, val)  # seeded


def test_single_document_keeps_the_90_10_cut(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("word " * 1000)
    (_, s0, e0), = split_documents([path])[0]
    (_, s1, e1), = split_documents([path])[1]
    assert (s0, e0, s1, e1) == (0, 4500, 4500, 5000)
    utf = tmp_path / "utf.txt"
    utf.write_text("é" * 10)  # 20 bytes; 90% = 18 is a character start
    assert split_documents([utf])[0][0][2] % 2 == 0
    utf.write_text("aé" * 10)  # 30 bytes; 27 is inside a character
    cut = split_documents([utf])[0][0][2]
    utf.read_bytes()[:cut].decode()  # a character boundary


def test_prepare_corpus_tokens_eot_and_cache(folder):
    corpus = prepare_corpus(folder, val_fraction=0.3, seed=1, progress=False)
    assert corpus.folder.parent == folder / CACHE_DIR
    texts = {f: f.read_text() for f in find_files(folder)}
    train, val = split_documents(list(texts), 0.3, seed=1)
    for split, ranges in (("train", train), ("val", val)):
        expected = []
        for i, (path, _, _) in enumerate(ranges):
            expected += ([EOT] if i else []) + encode(texts[path])
        ids = corpus.ids(split)
        assert ids.dtype == np.uint16 and ids.tolist() == expected
        assert corpus.tokens[split] == len(expected)
        assert corpus.documents[split] == len(ranges)
    again = prepare_corpus(folder, val_fraction=0.3, seed=1, progress=False)
    assert again == corpus  # read from corpus.json
    (folder / "a.txt").write_text("changed text " * 50)
    assert prepare_corpus(folder, val_fraction=0.3, seed=1, progress=False).folder != corpus.folder


def test_binary_file_is_skipped_and_named(folder, tmp_path_factory):
    (folder / "photo.txt").write_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF" * 10)
    corpus = prepare_corpus(folder, cache_dir=tmp_path_factory.mktemp("c"), progress=False)
    assert len(corpus.skipped) == 1 and "photo.txt" in corpus.skipped[0]
    assert sum(corpus.documents.values()) == 3
    for split in ("train", "val"):  # the skipped file left no tokens behind
        assert corpus.ids(split).tolist().count(EOT) == corpus.documents[split] - 1


# Only binary files: tests/test_bad_inputs.py


def test_token_windows_match_chapter_2_windows():
    from gpt2scratch.dataset import GPTDataset

    ids = np.arange(1000, dtype=np.uint16)
    ours, theirs = TokenWindows(ids, 64), GPTDataset(ids.astype(np.int64), 64, 64)
    assert len(ours) == len(theirs)
    for i in (0, 5, len(ours) - 1):
        assert all(torch.equal(a, b) for a, b in zip(ours[i], theirs[i]))
    assert ours[0][0].dtype == torch.int64
    with pytest.raises(IndexError):
        ours[len(ours)]
    # fewer tokens than one window: test_bad_inputs.py


def test_corpus_loaders(folder):
    corpus = prepare_corpus(folder, val_fraction=0.3, progress=False)
    train, val = corpus_loaders(corpus, context_length=16, batch_size=4, seed=0)
    x, y = next(iter(train))
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert len(val.dataset) == (corpus.tokens["val"] - 1) // 16
    # a context or a batch too big for the corpus: test_bad_inputs.py


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path):
    """Tokenising 4x more text must not cost 4x the memory: ids stream to disk."""
    line = "Some words of text, and a number 12345 in between them.\n"
    peaks = []
    for n, mb in ((1, 2), (2, 8)):
        folder = tmp_path / f"c{n}"
        folder.mkdir()
        (folder / "big.txt").write_text(line * (mb * 2**20 // len(line)))
        code = (  # VmHWM, not ru_maxrss: that one counts pytest's memory at the fork
            "import sys, torch; from gpt2scratch.corpus import prepare_corpus; "
            "from gpt2scratch.measure import peak_memory_mb; "
            "prepare_corpus(sys.argv[1], progress=False); "
            "print(peak_memory_mb(torch.device('cpu')))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(folder)], check=True,
                             capture_output=True, text=True, env=os.environ)
        peaks.append(float(out.stdout.split()[-1]))
    # 6 MB more text = 1.5M more ids (54 MB as a Python list); the stream adds a few MB
    assert peaks[1] - peaks[0] < 25, peaks


# --- the command line: train --data FOLDER / several files / --glob -------------------




TINY_RUN = ["--model", "tiny", "--context-length", "16", "--batch-size", "2", "--epochs",
            "1", "--no-progress", "--prompt", "", "--eval-iters", "1", "--device", "cpu",
            "--precision", "fp32"]


def test_cli_trains_on_a_folder(folder, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("run")
    (folder / "photo.txt").write_bytes(b"\0\1binary")
    code, stdout, err = run_cli(["train", "--data", str(folder), "--out", str(out),
                                 *TINY_RUN], capsys)
    assert code == 0, err
    assert "corpus: 4 files" in stdout and "train +" in stdout
    assert "warning: skipped" in err and "photo.txt" in err  # skipped, and named
    assert (out / "latest.json").is_file()


def test_cli_several_files_and_glob(folder, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("run")
    files = [str(folder / "a.txt"), str(folder / "b.md")]
    code, stdout, err = run_cli(["train", "--data", *files, "--out", str(out), *TINY_RUN],
                                capsys)
    assert code == 0, err
    assert "corpus: 2 files" in stdout
    code, stdout, err = run_cli(["train", "--data", str(folder), "--glob", "*.py", "--out",
                                 str(out / "g"), *TINY_RUN], capsys)
    assert code == 0, err
    assert "corpus: 1 files" in stdout  # sub/c.py alone, cut 90/10 as one document


# The CLI's bad corpus input (empty, no match, too small, --lora-rank): tests/test_bad_inputs.py
