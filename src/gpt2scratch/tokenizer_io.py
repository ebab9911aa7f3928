# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/01_tokenizer.ipynb cell 67
"""A trained BPE tokenizer on disk: minbpe's `.model` format, which `load` reads, and
a `.vocab` file beside it that lists every token for people to read."""

from __future__ import annotations

__all__ = ["MODEL_VERSION", "render_token", "write_bpe_files", "read_bpe_model"]

import re
import unicodedata
from pathlib import Path

import regex

from gpt2scratch.files import atomic_write

MODEL_VERSION = "minbpe v1"  # the first line of a .model file


def render_token(token: bytes) -> str:
    """A token as readable text: bad UTF-8 as U+FFFD, control characters as \\uXXXX."""
    text = token.decode("utf-8", errors="replace")
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c)[0] == "C" else c for c in text
    )


def write_bpe_files(prefix: str | Path, tokenizer) -> tuple[Path, Path]:
    """Write a BPETokenizer's `prefix`.model and `prefix`.vocab (each atomically)."""
    if str(prefix).endswith(("/", "\\")) or Path(prefix).is_dir():
        raise ValueError(f"{prefix} is a folder; give a prefix such as {prefix}/tok")
    specials = tokenizer.special_tokens
    for text in [tokenizer.pattern, *specials]:
        if "\n" in text or "\r" in text:
            raise ValueError(f"{text!r} holds a line break; a .model file cannot")
    merges = sorted(tokenizer.merges.items(), key=lambda kv: kv[1])
    model = [MODEL_VERSION, tokenizer.pattern, str(len(specials))]
    model += [f"{token} {i}" for token, i in specials.items()]
    model += [f"{a} {b}" for (a, b), _ in merges]
    shown = {i: render_token(token) for i, token in tokenizer.vocab.items()}
    vocab = [f"[{shown[i]}] {i}" for i in range(256)]  # the bytes, then the merges:
    vocab += [f"[{shown[a]}][{shown[b]}] -> [{shown[i]}] {i}" for (a, b), i in merges]
    vocab += [f"[{shown[i]}] {i}" for i in specials.values()]
    paths = Path(f"{prefix}.model"), Path(f"{prefix}.vocab")
    for path, lines in zip(paths, [model, vocab]):
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        atomic_write(path, lambda tmp, data=data: tmp.write_bytes(data))
    return paths


# %% chapters/01_tokenizer.ipynb cell 69
def read_bpe_model(
    path: str | Path,
) -> tuple[dict[tuple[int, int], int], str, dict[str, int]]:
    """(merges, pattern, special_tokens) of a .model file, every line checked."""
    path = Path(path)
    if path.is_dir():
        inside = ", ".join(str(p) for p in sorted(path.glob("*.model"))) or "none"
        raise IsADirectoryError(f"{path} is a folder; pass a .model file ({inside} here)")
    if path.suffix != ".model":
        raise ValueError(f"{path} is not a .model file (what BPETokenizer.save writes)")
    if not path.is_file():
        raise FileNotFoundError(f"no such tokenizer file: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        where = f"byte {err.start}"
        raise ValueError(f"{path} is not a .model file: not UTF-8 ({where})") from None
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]

    def bad(n: int, why: str) -> ValueError:
        return ValueError(f"{path}, line {n}: {why}")

    if lines[0] != MODEL_VERSION:
        raise bad(1, f"expected {MODEL_VERSION!r}: this is not a tokenizer .model file")
    if len(lines) < 3 or not re.fullmatch(r"\d+", lines[2], re.ASCII):
        raise bad(3, "expected the number of special tokens")
    pattern, n_specials = lines[1], int(lines[2])
    if not pattern:  # it would cut every text into nothing
        raise bad(2, "the split pattern is empty; (?s).+ means no pre-tokenization")
    try:
        regex.compile(pattern)
    except regex.error as err:
        raise bad(2, f"the split pattern {pattern!r} is not valid: {err}") from None
    specials, merges = {}, {}
    for n, line in enumerate(lines[3:], start=4):
        if len(specials) < n_specials:
            token, _, i = line.rpartition(" ")
            if not token or token in specials or not re.fullmatch(r"\d+", i, re.ASCII):
                raise bad(n, f"expected a new special token and its id, got {line!r}")
            specials[token] = int(i)
            continue
        new_id, m = 256 + len(merges), re.fullmatch(r"(\d+) (\d+)", line, re.ASCII)
        pair = (int(m[1]), int(m[2])) if m else (new_id, new_id)
        if max(pair) >= new_id or pair in merges:
            raise bad(
                n, f"expected a new merge of two ids below {new_id}, got {line!r}"
            )
        merges[pair] = new_id
    first = 256 + len(merges)
    if len(specials) < n_specials:
        raise bad(len(lines), f"the file ends before its {n_specials} special tokens")
    if sorted(specials.values()) != list(range(first, first + n_specials)):
        raise bad(4, f"the special tokens' ids must follow the merges: {first}, ...")
    return merges, pattern, specials
