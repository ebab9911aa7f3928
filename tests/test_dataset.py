"""Tests for gpt2scratch.dataset: sliding windows lose and duplicate nothing beyond what the stride implies."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.dataset import GPTDataset, check_window_fits, create_dataloader, sinusoidal_positions
from gpt2scratch.tokenizer import gpt2_encoding


@st.composite
def stream_and_windows(draw):
    """(n_tokens, context_length, stride, batch_size) with at least one window."""
    context_length = draw(st.integers(1, 40))
    n_tokens = draw(st.integers(context_length + 1, 300))
    stride = draw(st.integers(1, 50))
    batch_size = draw(st.integers(1, 9))
    return n_tokens, context_length, stride, batch_size


def load_all(data, **kwargs):
    """Every (inputs, targets) row of an unshuffled loader that keeps its last short batch, stacked."""
    loader = create_dataloader(data, shuffle=False, drop_last=False, **kwargs)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


@settings(max_examples=150, deadline=None)
@given(stream_and_windows())
def test_loader_loses_and_duplicates_only_what_the_stride_implies(params):
    n_tokens, context_length, stride, batch_size = params
    # Ids = positions (offset so they do not start at 0), so every id names the position it came from.
    positions = torch.arange(n_tokens) + 1000
    x, y = load_all(positions, batch_size=batch_size, context_length=context_length, stride=stride)

    # Window count, against enumerating every start that leaves room for context_length + 1 tokens.
    starts = [s for s in range(n_tokens) if s + context_length + 1 <= n_tokens and s % stride == 0]
    assert len(x) == len(starts) == (n_tokens - context_length - 1) // stride + 1
    assert x.shape == y.shape == (len(starts), context_length)
    # Another window would not fit: the tokens left over are fewer than one more stride needs.
    assert (len(starts)) * stride + context_length + 1 > n_tokens

    # Each row is the contiguous run of positions starting at its window's start; targets shifted by one.
    assert torch.equal(x[:, 0] - 1000, torch.tensor(starts))
    assert torch.equal(x, positions[torch.tensor(starts)[:, None] + torch.arange(context_length)])
    assert torch.equal(y, x + 1)

    # Each position occurs as an input exactly as often as the number of windows covering it.
    counts = torch.bincount(x.flatten() - 1000, minlength=n_tokens)
    expected = torch.tensor([sum(s <= p < s + context_length for s in starts) for p in range(n_tokens)])
    assert torch.equal(counts, expected)
    if stride == context_length:  # no overlap: the covered prefix appears exactly once, nothing else
        covered = len(starts) * context_length
        assert (counts[:covered] == 1).all() and (counts[covered:] == 0).all()
        assert n_tokens - covered <= context_length  # at most one window's worth is left over
    if stride < context_length:  # overlap: no gaps in the covered range
        assert (counts[:starts[-1] + context_length] >= 1).all()


@settings(max_examples=40, deadline=None)
@given(n_tokens=st.integers(2, 200), context_length=st.integers(1, 20), stride=st.integers(1, 25),
       batch_size=st.integers(1, 8))
def test_drop_last_keeps_only_full_batches(n_tokens, context_length, stride, batch_size):
    if n_tokens < context_length + 1:
        return
    n_windows = (n_tokens - context_length - 1) // stride + 1
    if n_windows < batch_size:
        with pytest.raises(ValueError, match="would yield no batch"):
            create_dataloader(list(range(n_tokens)), batch_size=batch_size, context_length=context_length,
                              stride=stride)
        return
    loader = create_dataloader(list(range(n_tokens)), batch_size=batch_size, context_length=context_length,
                               stride=stride, seed=0)
    sizes = [len(x) for x, _ in loader]
    assert sizes == [batch_size] * (n_windows // batch_size)


def test_real_ids_targets_are_inputs_shifted():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50257, size=1000)
    ds = GPTDataset(ids, context_length=32, stride=7)
    for i in (0, 1, len(ds) - 1):
        x, y = ds[i]
        assert torch.equal(x, torch.as_tensor(ids[7 * i:7 * i + 32]))
        assert torch.equal(y, torch.as_tensor(ids[7 * i + 1:7 * i + 33]))
        assert x.dtype == y.dtype == torch.int64


def test_dataset_stores_the_ids_once():
    ds = GPTDataset(torch.arange(10_000), context_length=256, stride=1)
    assert len(ds) == 10_000 - 256
    assert ds.windows.untyped_storage().data_ptr() == ds.token_ids.untyped_storage().data_ptr()


@pytest.mark.parametrize("ids", [list(range(50)), tuple(range(50)), range(50), np.arange(50),
                                 np.arange(50, dtype=np.int32), torch.arange(50, dtype=torch.int32)])
def test_accepts_sequences_arrays_and_tensors(ids):
    x, y = load_all(ids, batch_size=2, context_length=8)
    assert torch.equal(x.flatten(), torch.arange(48)) and torch.equal(y, x + 1)


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_text_input_equals_ids_input(text):
    text = text + " <|endoftext|> and then some more words to be long enough"
    ids = gpt2_encoding().encode(text, allowed_special={"<|endoftext|>"})
    assert 50256 in ids
    x_text, y_text = load_all(text, batch_size=3, context_length=5, stride=3)
    x_ids, y_ids = load_all(ids, batch_size=3, context_length=5, stride=3)
    assert torch.equal(x_text, x_ids) and torch.equal(y_text, y_ids)


def test_seed_makes_shuffling_reproducible():
    data = torch.arange(401)

    def order(loader):
        return torch.cat([x[:, 0] for x, _ in loader]).tolist()

    a = create_dataloader(data, batch_size=4, context_length=4, seed=7)
    b = create_dataloader(data, batch_size=4, context_length=4, seed=7)
    c = create_dataloader(data, batch_size=4, context_length=4, seed=8)
    first = order(a)
    assert first == order(b)                    # same seed, same order
    assert first != order(c)                    # another seed, another order
    assert order(a) != first                    # a new epoch draws a new order
    assert sorted(first) == list(range(0, 400, 4))  # a permutation of all windows
    # The loader's own generator leaves the global random state alone.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    order(create_dataloader(data, batch_size=4, context_length=4, seed=7))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(context_length=0), "context_length must be >= 1, got 0"),
    (dict(context_length=-3), "context_length must be >= 1, got -3"),
    (dict(stride=0), "stride must be >= 1, got 0"),
    (dict(batch_size=0), "batch_size must be >= 1, got 0"),
    (dict(num_workers=-1), "num_workers must be >= 0, got -1"),
])
def test_bad_numbers_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_dataloader(list(range(1000)), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(context_length=4.0), dict(stride="2"), dict(batch_size=True),
                                    dict(seed=1.5), dict(num_workers=None)])
def test_bad_types_raise_type_error(kwargs):
    with pytest.raises(TypeError, match="must be an int"):
        create_dataloader(list(range(1000)), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(shuffle=1), dict(drop_last="yes"), dict(shuffle=None)])
def test_flags_must_be_bools(kwargs):
    with pytest.raises(TypeError, match="must be True or False, got"):
        create_dataloader(list(range(1000)), **kwargs)


def test_seed_type_error_names_the_value():
    with pytest.raises(TypeError, match=r"^seed must be an int or None, got float 1\.5$"):
        create_dataloader(list(range(1000)), seed=1.5)


@pytest.mark.parametrize("data", [None, 42, {1, 2, 3}, b"bytes", [0.5, 1.5], torch.ones(10),
                                  torch.ones(10, dtype=torch.bool), ["a", "b"], (i for i in range(10))])
def test_bad_data_raises_type_error(data):
    with pytest.raises(TypeError):
        create_dataloader(data, context_length=2, batch_size=1)


def test_bad_shapes_and_values_raise_value_error():
    with pytest.raises(ValueError, match=r"1-D .* got shape \(2, 50\)"):
        GPTDataset(torch.zeros(2, 50, dtype=torch.long), context_length=4, stride=4)
    with pytest.raises(ValueError, match="token ids must be >= 0, got -1"):
        GPTDataset([1, 2, -1, 3, 4], context_length=2, stride=1)


def test_too_short_text_names_the_numbers():
    n = len(gpt2_encoding().encode("Every effort moves you"))
    assert n == 4
    with pytest.raises(ValueError, match=r"^text has 4 tokens, too short for one window of context_length 4, "
                                         r"which needs 5 tokens \(4 inputs and one more for the last target\); "
                                         "use a longer text or a smaller context_length$"):
        create_dataloader("Every effort moves you", context_length=4)
    with pytest.raises(ValueError, match="^token_ids has 4 tokens, too short for one window of context_length 4"):
        create_dataloader([1, 2, 3, 4], context_length=4)
    with pytest.raises(ValueError, match="^the train split has 1,024 tokens, .* context_length 1024, which needs 1,025"):
        check_window_fits("the train split", 1024, 1024)
    check_window_fits("text", 1025, 1024)  # exactly one window fits
    with pytest.raises(ValueError, match="has 0 tokens"):
        create_dataloader([], context_length=4)
    # Exactly context_length + 1 tokens is one window.
    x, y = load_all([1, 2, 3, 4, 5], context_length=4, batch_size=1)
    assert x.tolist() == [[1, 2, 3, 4]] and y.tolist() == [[2, 3, 4, 5]]


def test_workers_give_the_same_batches():
    data = torch.arange(300)
    kwargs = dict(batch_size=4, context_length=8, stride=5, shuffle=False, drop_last=False)
    one = [x for x, _ in create_dataloader(data, num_workers=0, **kwargs)]
    two = [x for x, _ in create_dataloader(data, num_workers=2, **kwargs)]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 300), half_d=st.integers(1, 64))
def test_sinusoidal_positions_match_the_paper(T, half_d):
    d = 2 * half_d
    pe = sinusoidal_positions(T, d)
    assert pe.shape == (T, d) and pe.dtype == torch.float32
    for pos in {0, T // 2, T - 1}:
        for i in {0, half_d // 2, half_d - 1}:
            angle = pos / 10000 ** (2 * i / d)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    torch.testing.assert_close(pe.double().norm(dim=1), torch.full((T,), math.sqrt(half_d), dtype=torch.float64))


def test_sinusoidal_positions_validation():
    with pytest.raises(ValueError, match="d_model must be even"):
        sinusoidal_positions(10, 7)
    with pytest.raises(ValueError, match="T must be >= 1, got 0"):
        sinusoidal_positions(0, 8)
    with pytest.raises(TypeError, match="d_model must be an int"):
        sinusoidal_positions(10, 8.0)
