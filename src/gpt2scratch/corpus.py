# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 59
"""Your own text as a corpus: files and folders, documents joined by <|endoftext|>, a
train/val split by document, and tokens streamed to a memory-mapped uint16 file (as
nanoGPT does), cached next to the data.

Generated from Appendix A of the book.
"""

from __future__ import annotations

__all__ = [
    "TEXT_GLOBS", "CACHE_DIR", "BLOCK_BYTES", "NotTextError", "find_files", "safe_cut",
    "read_pieces", "split_documents", "EOT_TEXT", "Corpus", "prepare_corpus",
    "TokenWindows", "corpus_loaders",
]

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


# %% chapters/A_engineering.ipynb cell 61
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


# %% chapters/A_engineering.ipynb cell 63
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


# %% chapters/A_engineering.ipynb cell 65
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


# %% chapters/A_engineering.ipynb cell 67
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


# %% chapters/A_engineering.ipynb cell 69
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


# %% chapters/A_engineering.ipynb cell 71
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


# %% chapters/A_engineering.ipynb cell 73
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
