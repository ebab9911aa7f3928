# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/01_tokenizer.ipynb cell 11
"""Tokenizers built from a text: words, then byte-pair encoding (BPE) trained from
scratch; and the pieces that GPT-2's tokenizer (`gpt2scratch.tokenizer`) reuses.

About 450 lines, past the house's 400, and still one idea: the tokenizers that chapter
1 trains from a text, with what using them needs (special tokens, batches). Their file
format, the other idea, is `gpt2scratch.tokenizer_io`."""

from __future__ import annotations

__all__ = [
    "ENDOFTEXT", "WORD_SPLIT", "split_words", "join_words", "build_vocab",
    "special_token_splitter", "SimpleTokenizer", "GPT2_SPLIT_PATTERN", "Symbol",
    "NEVER", "merge_pair", "utf8_bytes", "check_ids", "ByteLevelBPE",
    "check_new_specials", "split_specials", "BPETokenizer", "train_bpe",
]

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


# %% chapters/01_tokenizer.ipynb cell 15
WORD_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')


def split_words(text: str) -> list[str]:
    """Cut text into word and punctuation pieces, dropping the whitespace."""
    return [piece for piece in WORD_SPLIT.split(text) if piece.strip()]


def join_words(pieces: Iterable[str]) -> str:
    """Join pieces with spaces, then remove the space in front of punctuation."""
    return re.sub(r'\s+([,.:;?_!"()\'])', r"\1", " ".join(pieces))


# %% chapters/01_tokenizer.ipynb cell 18
def build_vocab(
    pieces: Iterable[str], special_tokens: Sequence[str] = ()
) -> dict[str, int]:
    """Token -> id: the sorted distinct pieces, then the special tokens they lack."""
    distinct = sorted(set(pieces))
    extra = [s for s in special_tokens if s not in distinct]
    return {tok: i for i, tok in enumerate(distinct + extra)}


# %% chapters/01_tokenizer.ipynb cell 21
def special_token_splitter(tokens: Iterable[str]) -> regex.Pattern:
    """A pattern whose `split` puts each of `tokens` at the odd positions of its result.

    Longest first, so that a special token that is a prefix of another cannot cut it.
    """
    by_length = sorted(tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")")


# %% chapters/01_tokenizer.ipynb cell 24
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


# %% chapters/01_tokenizer.ipynb cell 37
# GPT-2's pre-tokenization pattern, as written in OpenAI's encoder.py.
GPT2_SPLIT_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"  # English contractions (lowercase only)
    r"| ?\p{L}+"  # letters, with an optional leading space
    r"| ?\p{N}+"  # digits, likewise
    r"| ?[^\s\p{L}\p{N}]+"  # anything else but whitespace, likewise
    r"|\s+(?!\S)"  # whitespace, but leave its last space to the word after it
    r"|\s+"  # the rest: whitespace that \s+(?!\S) leaves, e.g. "\n" before a word
)


# %% chapters/01_tokenizer.ipynb cell 41
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


# %% chapters/01_tokenizer.ipynb cell 43
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


# %% chapters/01_tokenizer.ipynb cell 44
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


# %% chapters/01_tokenizer.ipynb cell 48
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


# %% chapters/01_tokenizer.ipynb cell 50
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


# %% chapters/01_tokenizer.ipynb cell 52
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


# %% chapters/01_tokenizer.ipynb cell 54
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
