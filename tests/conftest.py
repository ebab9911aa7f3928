"""Helpers shared by the tests: a character tokenizer and the tiny model's config.

Test modules import them by name (`from conftest import CharTokenizer, tiny_config`): tests/ is on
sys.path because it is not a package.
"""
from __future__ import annotations

import pytest
import torch

from gpt2scratch.dataset import create_dataloader
from gpt2scratch.generation import compile_unavailable
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.runtime import set_seed

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


TRAIN_TINY = tiny_config(d_model=16, n_heads=2, dropout=0.1)  # the training-loop tests' model


def random_ids(n=400, seed=0):
    """`n` random token ids below TRAIN_TINY's vocabulary."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TRAIN_TINY.vocab_size, (n,), generator=g)


def tiny_loaders(shuffle=True, batch_size=4, context_length=16, seed=123):
    """(train, val) loaders over random ids: 400 training tokens, 80 validation tokens."""
    train_loader = create_dataloader(random_ids(400), batch_size=batch_size,
                                     context_length=context_length, shuffle=shuffle, seed=seed)
    val_loader = create_dataloader(random_ids(80, seed=1), batch_size=2,
                                   context_length=context_length, shuffle=False, drop_last=False)
    return train_loader, val_loader


def fresh_model(config=TRAIN_TINY, lr=1e-2):
    """A seeded GPT2(config) and a torch AdamW over all its parameters."""
    set_seed(123)
    model = GPT2(config)
    return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)



WHY_NOT_COMPILE = compile_unavailable()  # None where torch.compile builds CPU kernels
needs_cpp_compiler = pytest.mark.skipif(WHY_NOT_COMPILE is not None, reason=str(WHY_NOT_COMPILE))
