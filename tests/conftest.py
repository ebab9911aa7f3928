"""Helpers shared by the tests: a character tokenizer and the tiny model's config.

Test modules import them by name (`from conftest import CharTokenizer, tiny_config`): tests/ is on
sys.path because it is not a package.
"""
from __future__ import annotations

from gpt2scratch.model import GPT2Config

GPT2_VOCAB = 50257  # a tiny model with GPT-2's vocabulary reads real token ids


class CharTokenizer:
    """A stand-in tokenizer: one id per printable ASCII character (ids 0..94), eot id 96.

    Ids beyond 94 decode to "?", and a character outside printable ASCII encodes to an id that a
    model over `tiny_config()`'s 97 ids does not have (the generation checks need one)."""

    eot_token = 96

    def encode(self, text, allowed_special=()):
        return [ord(c) - 32 for c in text]

    def decode(self, ids):
        return "".join(chr(i + 32) if i < 95 else "?" for i in ids)


def tiny_config(**overrides) -> GPT2Config:
    """The tests' small GPT-2: 97 ids (CharTokenizer's), 16 positions, 32 dims, 2 layers, 4 heads,
    no dropout. A test that needs another size says which, e.g. tiny_config(d_model=16, n_heads=2)."""
    sizes = dict(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4, dropout=0.0)
    return GPT2Config(**{**sizes, **overrides})
