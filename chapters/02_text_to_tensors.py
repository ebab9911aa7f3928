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
# # Chapter 2 — Text to tensors
#
# In this chapter you build the bridge between chapter 1's tokenizer and chapter 3's attention: a
# `Dataset` that cuts one long list of token ids into (input, target) training windows, a `DataLoader`
# that shuffles and batches them, and the two embedding tables that turn every id into a vector and tell
# the model where each token stands. At the end, a piece of text becomes the tensor `x` of shape
# `(B, T, d_model)` that GPT-2's first transformer block reads:
#
# ```
#  text ──tokenizer──▶ ids (N,)
#       ──sliding windows──▶ inputs, targets (B, T)
#       ──wte + wpe──▶ x (B, T, d_model) ──▶ chapter 3
# ```
#
# 1. **next-token prediction**: why one window of `T + 1` tokens holds `T` training examples;
# 2. **sliding windows and the stride**: how many windows a text gives, and how much they overlap;
# 3. **`GPTDataset` and `create_dataloader`** (exported to `gpt2scratch.dataset`): the text stored once,
#    the windows a zero-copy view of it, checked against a naive version that stores every window;
# 4. **token embeddings**: `nn.Embedding` is a lookup, which we prove equals a one-hot matrix product;
# 5. **positions**: GPT-2's learned position table, and the fixed sinusoids of *Attention is all you
#    need*, side by side.

# %%
#| default_exp dataset

# %%
import math
import time

import matplotlib.pyplot as plt
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

from gpt2scratch.data import verdict_text
from gpt2scratch.tokenizer import gpt2_encoding

torch.set_printoptions(linewidth=110)

# %% [markdown]
# ## 2.1 The Verdict as token ids
#
# Our running text is the short story from chapter 1. We encode it with GPT-2's tokenizer
# (`gpt2_encoding()`, the exact `tiktoken` encoding, built offline in chapter 1). We allow the special
# token `<|endoftext|>`: when several documents are concatenated into one training stream, GPT-2
# separates them with it (id 50256).

# %%
text = verdict_text()
enc = gpt2_encoding()
ids = enc.encode(text, allowed_special={"<|endoftext|>"})

print(
    f"{len(text):,} characters -> {len(ids):,} tokens "
    f"({len(text) / len(ids):.2f} characters per token)"
)
print("first 10 ids:", ids[:10])
print("as text:     ", [enc.decode([i]) for i in ids[:10]])
assert len(ids) == 5145
eot = enc.encode("<|endoftext|>", allowed_special={"<|endoftext|>"})
print("<|endoftext|> ->", eot)
assert eot == [50256]

# %% [markdown]
# ## 2.2 Next-token prediction: one window, many examples
#
# A GPT learns one thing: given the tokens so far, predict the next one. Take five consecutive tokens
# from the story. They hold not one but **four** training examples, one per prefix:

# %%
sample = ids[50:55]
for i in range(1, len(sample)):
    context, desired = sample[:i], sample[i]
    as_text = f"{enc.decode(context)!r:>22} ----> {enc.decode([desired])!r}"
    print(f"{str(context):>26} ----> {desired:<5}   {as_text}")

# %% [markdown]
# The model predicts all four at once. We feed it the first four tokens as **inputs** `x` and ask it to
# produce, at every position `t`, the token at position `t + 1`. Those answers, the **targets** `y`, are
# the same window shifted left by one. A window of `T + 1` tokens gives `T` inputs, `T` targets and `T`
# predictions. (How the model at position `t` is kept from peeking at `t + 1` is chapter 3's *causal
# mask*.)

# %%
T = 4
x, y = sample[:T], sample[1 : T + 1]
print("x:", x)
print("y:", y)
assert y[:-1] == x[1:]  # targets are the inputs shifted by one

# %% [markdown]
# ## 2.3 Sliding windows and the stride
#
# A text of `N` tokens gives many windows. We slide a window of `context_length + 1` tokens along the
# ids, moving its start by `stride` tokens each time. Window `i` starts at `i * stride`, and the last
# start `s` must leave room for `context_length` inputs plus one extra target: `s + context_length + 1
# <= N`. So the starts are `0, stride, 2*stride, ...` up to `N - context_length - 1`. Writing `T` for
# `context_length` and `s` for `stride`:
#
# $$ \text{number of windows} = \left\lfloor \frac{N - T - 1}{s} \right\rfloor + 1 \qquad (N \ge T + 1). $$
#
# Small numbers first: 12 tokens, numbered by their position so we can see where each window comes
# from.


# %%
def num_windows(n_tokens: int, context_length: int, stride: int) -> int:
    """How many (input, target) windows fit in n_tokens."""
    return (n_tokens - context_length - 1) // stride + 1


toy = torch.arange(12)
context_length = 4
for stride in (1, 2, 4, 5):
    starts = range(0, len(toy) - context_length, stride)
    n = num_windows(len(toy), context_length, stride)
    print(f"stride={stride}: {len(starts)} windows (formula: {n})")
    for s in starts:
        window = toy[s : s + context_length + 1]
        print(f"    x={window[:-1].tolist()}  y={window[1:].tolist()}")
    assert len(starts) == n

# %% [markdown]
# The stride sets the overlap. With `stride = 1` consecutive windows share `context_length - 1` tokens:
# the most windows, but nearly identical ones. With `stride = context_length` there is no overlap: each
# token is an input exactly once per epoch. With `stride > context_length` tokens are skipped. The
# picture below marks, for 16 tokens and `context_length = 4`, which positions each window uses as
# inputs (dark) and the one extra position it needs as a target only (light).


# %%
def coverage(n_tokens: int, context_length: int, stride: int) -> torch.Tensor:
    """(windows, n_tokens) grid: 2 where a window reads a position as an input,
    1 at the extra position it needs only as its last target."""
    grid = torch.zeros(num_windows(n_tokens, context_length, stride), n_tokens)
    for i in range(len(grid)):
        s = i * stride
        grid[i, s : s + context_length] = 2
        grid[i, s + context_length] = 1
    return grid


fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
for ax, stride in zip(axes, (1, 2, 4, 6)):
    grid = coverage(16, 4, stride)
    padded = torch.cat([grid, torch.zeros(13 - len(grid), 16)])  # same height for all
    ax.imshow(padded, cmap="Blues", vmin=0, vmax=2.2)
    ax.set_title(f"stride={stride}: {len(grid)} windows")
    ax.set_xlabel("token position")
    ax.set_xticks(range(0, 16, 3))  # positions and windows are whole numbers
axes[0].set_yticks(range(0, 12, 2))
axes[0].set_ylabel("window")
fig.tight_layout()
plt.show()

# %% [markdown]
# On the whole story, with the context length of 256 tokens that our training chapters use, the stride
# decides how many windows an epoch has, and how often each token is seen as an input:

# %%
N, context_length = len(ids), 256
print(f"N = {N} tokens, context_length = {context_length}")
print(
    f"{'stride':>7} {'windows':>8} {'input tokens':>13}",
    f"{'times each token is seen':>25}",
)
for stride in (1, 64, 128, 256, 512):
    n = num_windows(N, context_length, stride)
    print(
        f"{stride:>7} {n:>8} {n * context_length:>13,} {n * context_length / N:>25.2f}"
    )

# With stride 1, how many windows read a given position as an input?
starts = torch.arange(num_windows(N, context_length, 1))
for p in (0, 100, N // 2, N - 2):
    seen = ((starts <= p) & (p < starts + context_length)).sum().item()
    print(f"stride=1: the token at position {p:>4} is an input in {seen:>3} windows")

# %% [markdown]
# With `stride = 1` an epoch shows each token about 243 times on average: 256 times for a token in the
# middle of the story, fewer near its ends. Consecutive windows differ by one token, so on a text this
# small that is a fast road to memorising it, and one "epoch" is as long as 243 reads of the story. We
# default to `stride = context_length`, as Raschka's book does for training, and make the overlap a
# knob. (nanoGPT takes a third way: it draws each window's start at random, so an "epoch" has no fixed
# meaning there.)

# %% [markdown]
# ## 2.4 A Dataset that stores the text once
#
# PyTorch feeds training loops through two classes. A `Dataset` answers `len(ds)` and `ds[i]`; a
# `DataLoader` draws indices (in order or shuffled), fetches the items and stacks them into batches.
#
# The straightforward dataset, the one most tutorials write, builds every window up front as two lists
# of tensors:


# %%
class NaiveGPTDataset(torch.utils.data.Dataset):
    """Every window materialised: 2 * windows * context_length stored ids."""

    def __init__(self, token_ids, context_length, stride):
        self.inputs, self.targets = [], []
        for start in range(0, len(token_ids) - context_length, stride):
            window = token_ids[start : start + context_length + 1]
            self.inputs.append(torch.tensor(window[:-1]))
            self.targets.append(torch.tensor(window[1:]))

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return self.inputs[i], self.targets[i]


naive = NaiveGPTDataset(ids, context_length=4, stride=4)
print(len(naive), "windows; the first two:")
print(naive[0])
print(naive[1])

# %% [markdown]
# It works, but it stores each token `2 * context_length / stride` times over, and builds thousands of
# small tensors in a Python loop. Our version keeps **one** flat tensor of ids and lets PyTorch describe
# the windows as a *view* of it: `ids.unfold(0, size, step)` returns a `(windows, size)` tensor whose
# rows start `step` elements apart in the same memory. Nothing is copied until the `DataLoader` stacks
# a batch, which it must do anyway.

# %%
flat = torch.arange(12)
windows = flat.unfold(0, 4 + 1, 2)  # size = context_length + 1, step = stride
print(windows)
shared = windows.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
print(
    "shape", tuple(windows.shape), "strides", windows.stride(), "| same memory:", shared
)
assert windows.shape[0] == num_windows(12, 4, 2) and shared

# %% [markdown]
# Rows of the view are windows of `context_length + 1` tokens; `window[:-1]` is `x`, `window[1:]` is
# `y`. That is the whole idea of the exported dataset.
#
# Before the dataset touches its input, it checks it, so that a mistake fails with a message that names
# the bad value rather than deep inside PyTorch (`torch.tensor(["a"])` fails with a far less helpful
# one). Those checks are plumbing, not part of the idea. The integer checks come from
# `gpt2scratch.validation`, whose error contract (wrong type: `TypeError`, wrong value: `ValueError`)
# [Appendix A](A_engineering.ipynb) explains; the module's imports, the helper that reads the ids
# into one flat tensor, and `check_window_fits` (every loader of the book checks with it that its
# text holds one window) sit in the folded cell below.

# %% tags=["hide-input"]
#| export
"""Text to tensors: sliding-window (input, target) batches for next-token prediction,
and the fixed sinusoidal positions of "Attention is all you need"."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.validation import check_bool, check_int


def _as_token_ids(token_ids) -> torch.Tensor:
    """token_ids (ints in a sequence, an array or a 1-D tensor) as one int64 tensor.

    TypeError for anything that is not integers; ValueError for a wrong shape or a
    negative id.
    """
    kind = type(token_ids).__name__
    array_like = hasattr(token_ids, "__array__")  # a numpy array, for example
    if isinstance(token_ids, (str, bytes)) or not (
        isinstance(token_ids, (Sequence, torch.Tensor)) or array_like
    ):
        raise TypeError(
            f"token_ids must be a sequence of ints or a 1-D integer tensor, got {kind}"
        )
    empty = torch.zeros(0, dtype=torch.long)  # as_tensor([]) would give float32
    try:
        ids = torch.as_tensor(token_ids) if len(token_ids) else empty
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise TypeError(
            f"token_ids must hold ints; cannot read the {kind}: {err}"
        ) from None
    if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise TypeError(f"token_ids must be integers, got dtype {ids.dtype}")
    if ids.ndim != 1:
        shape = tuple(ids.shape)
        raise ValueError(
            f"token_ids must be 1-D (one stream of tokens), got shape {shape}"
        )
    if len(ids) and ids.min() < 0:
        raise ValueError(f"token ids must be >= 0, got {ids.min().item()}")
    return ids.long()


def check_window_fits(what: str, n_tokens: int, context_length: int) -> None:
    """ValueError unless `n_tokens` tokens hold one window: context_length inputs and
    one more token, the last target. `what` names the tokens in the message."""
    need = context_length + 1
    if n_tokens < need:
        raise ValueError(
            f"{what} has {n_tokens:,} tokens, too short for one window of "
            f"context_length {context_length}, which needs {need:,} tokens "
            f"({context_length:,} inputs and one more for the last target); "
            "use a longer text or a smaller context_length"
        )


# %% [markdown]
# The dataset itself: `len` is the window formula of section 2.3, which `unfold` computes for us, and an
# item is one row of the view, split into inputs and targets.


# %%
#| export
class GPTDataset(Dataset):
    """Next-token-prediction windows over one long stream of token ids.

    Item i is (inputs, targets): with s = i * stride,
    inputs = token_ids[s : s + context_length], and targets the same window shifted one
    token to the right. The ids are stored once, as one flat int64 tensor; the windows
    are a strided view of it (`Tensor.unfold`), so memory stays at N ids whatever the
    stride.
    """

    def __init__(
        self, token_ids: Sequence[int] | torch.Tensor, context_length: int, stride: int
    ):
        self.context_length = check_int("context_length", context_length, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.token_ids = _as_token_ids(token_ids)  # (N,)
        check_window_fits("token_ids", len(self.token_ids), self.context_length)
        # Row i = token_ids[i*stride : i*stride + context_length + 1], a view: no copy.
        size = self.context_length + 1
        self.windows = self.token_ids.unfold(0, size, self.stride)  # (n_windows, T+1)

    def __len__(self) -> int:
        return self.windows.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.windows[i]  # (T+1,)
        return window[:-1], window[1:]  # inputs (T,), targets (T,)


# %% [markdown]
# Is it the same dataset as the naive one? For every combination of context length and stride below,
# on the whole story, item by item:

# %%
pairs = 0
for context_length in (1, 4, 64, 256):
    for stride in (1, 3, context_length, context_length + 7):
        naive = NaiveGPTDataset(ids, context_length, stride)
        ours = GPTDataset(ids, context_length, stride)
        assert len(ours) == len(naive) == num_windows(len(ids), context_length, stride)
        for (a, b), (c, d) in zip(naive, ours):
            assert torch.equal(a, c) and torch.equal(b, d)
        pairs += 1
print(f"GPTDataset == NaiveGPTDataset for {pairs} (context_length, stride) pairs")

# %% [markdown]
# And the memory it saves, counted from the tensors themselves, for the most overlapping setting
# (`stride = 1`, `context_length = 256`):

# %%
naive, ours = NaiveGPTDataset(ids, 256, 1), GPTDataset(ids, 256, 1)
naive_tensors = naive.inputs + naive.targets
naive_bytes = sum(t.numel() * t.element_size() for t in naive_tensors)
ours_bytes = ours.token_ids.untyped_storage().nbytes()
storage = ours.token_ids.untyped_storage()
assert ours.windows.untyped_storage().data_ptr() == storage.data_ptr()
print(f"{len(ours)} windows")
print(f"naive: {naive_bytes:>12,} bytes in {len(naive_tensors):,} tensors")
ratio = naive_bytes / ours_bytes
print(f"ours:  {ours_bytes:>12,} bytes in 1 tensor  ({ratio:.0f}x less)")

# %% [markdown]
# Building it is faster too. Timings vary from machine to machine and from run to run, so the test
# suite does not compare this cell's output; what the cell asserts is only that both builds give the
# same windows.


# %%
# NBVAL_IGNORE_OUTPUT
def best_of(build, repeat=3):
    """(fastest of `repeat` build times in seconds, the last thing built)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        built = build()
        times.append(time.perf_counter() - t0)
    return min(times), built


t_naive, naive = best_of(lambda: NaiveGPTDataset(ids, 256, 1))
t_ours, ours = best_of(lambda: GPTDataset(ids, 256, 1))
print(
    f"build, stride=1: naive {t_naive * 1e3:.1f} ms, ours {t_ours * 1e3:.2f} ms "
    f"({t_naive / t_ours:.0f}x faster on this machine, in this run)"
)
assert torch.equal(torch.stack(naive.inputs), ours.windows[:, :-1])
assert torch.equal(torch.stack(naive.targets), ours.windows[:, 1:])

# %% [markdown]
# ## 2.5 `create_dataloader`: batches, shuffling and errors you can act on
#
# `create_dataloader` takes either text (encoded with GPT-2's tokenizer, `<|endoftext|>` allowed) or
# ids, builds a `GPTDataset`, and wraps it in a `DataLoader`. Three decisions are worth spelling out:
#
# * `stride` defaults to `context_length`: no overlap, every token an input once per epoch.
# * `drop_last=True` drops a final short batch, so every training step sees the same batch size. If
#   that would leave *no* batch at all, a silent empty loop is the worst outcome, so we raise instead.
# * `seed` gives the shuffle its own `torch.Generator`, so the order of batches is reproducible without
#   touching the global random state.


# %%
#| export
def create_dataloader(
    data: str | Sequence[int] | torch.Tensor,
    batch_size: int = 4,
    context_length: int = 256,
    stride: int | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
) -> DataLoader:
    """Batches of (inputs, targets), each (batch_size, context_length).

    data: text (encoded with GPT-2's tokenizer, `<|endoftext|>` allowed) or token ids
    (a sequence of ints or a 1-D integer tensor). stride defaults to context_length:
    windows do not overlap. With a seed, the shuffle uses its own torch.Generator, so
    the batch order is reproducible.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    context_length = check_int("context_length", context_length, minimum=1)
    if stride is None:
        stride = context_length
    shuffle = check_bool("shuffle", shuffle)
    drop_last = check_bool("drop_last", drop_last)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    seed = check_int("seed", seed, none_ok=True)
    if isinstance(data, str):
        data = gpt2_encoding().encode(data, allowed_special={"<|endoftext|>"})
        check_window_fits("text", len(data), context_length)
    dataset = GPTDataset(data, context_length, stride)
    if drop_last and len(dataset) < batch_size:
        raise ValueError(
            f"only {len(dataset)} window(s) of context_length={context_length} with "
            f"stride={stride} fit in {len(dataset.token_ids)} tokens, fewer than "
            f"batch_size={batch_size}: with drop_last=True the loader would yield no "
            "batch; lower batch_size or context_length, or pass drop_last=False"
        )
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
    )


# %% [markdown]
# A small batch, in order, straight from the text: 8 windows of 4 tokens, no overlap. Each row of
# `targets` is its row of `inputs` moved one token left.

# %%
loader = create_dataloader(text, batch_size=8, context_length=4, shuffle=False)
inputs, targets = next(iter(loader))
print("inputs:\n", inputs)
print("targets:\n", targets)
assert torch.equal(inputs[:, 1:], targets[:, :-1])
assert inputs.shape == targets.shape == (8, 4) and inputs.dtype == torch.int64

# %% [markdown]
# With the defaults (`context_length=256`, `stride=256`, `batch_size=4`) the story gives 20 windows, so
# 5 batches per epoch. Read in order with `drop_last=False`, the inputs are exactly the first
# `20 * 256 = 5120` tokens, each once: nothing lost, nothing repeated. The other 25 tokens do not fill a
# window; the first of them is still used, as the target of the last input.

# %%
loader = create_dataloader(ids, shuffle=False, drop_last=False)
batches = list(loader)
all_inputs = torch.cat([x for x, _ in batches]).flatten()
all_targets = torch.cat([y for _, y in batches]).flatten()
n_in = len(all_inputs)
shape = tuple(batches[0][0].shape)
print(f"{len(loader.dataset)} windows -> {len(loader)} batches of shape {shape}")
print(f"inputs cover {n_in} of {len(ids)} tokens; {len(ids) - n_in} left over")
assert torch.equal(all_inputs, torch.tensor(ids[:n_in]))
assert all_targets[-1] == ids[n_in]

# %% [markdown]
# Shuffling changes the order of the windows, never their content. With a seed the order is
# reproducible, and each new epoch (each new `iter(loader)`) draws a fresh order from the loader's own
# generator. To see the order, we feed positions instead of real ids, so each window announces its own
# index: `x[0] // 4`.


# %%
def window_order(loader):
    return [int(x[0]) // 4 for batch, _ in loader for x in batch]


positions = torch.arange(41)  # 10 windows of 4 tokens
a = create_dataloader(positions, batch_size=2, context_length=4, seed=123)
b = create_dataloader(positions, batch_size=2, context_length=4, seed=123)
epoch1, epoch2 = window_order(a), window_order(a)
print("seed 123, epoch 1:", epoch1)
print("seed 123, epoch 2:", epoch2)
again = window_order(b)
print("same seed again:  ", again)
assert again == epoch1 and epoch2 != epoch1
assert sorted(epoch1) == list(range(10))

# %% [markdown]
# Bad input fails early, with a message that names the value and what would work:

# %%
for call in [
    lambda: create_dataloader(text, context_length=0),
    lambda: create_dataloader(text, stride=-2),
    lambda: create_dataloader(text, batch_size=2.5),
    lambda: create_dataloader("Every effort moves you", context_length=4),
    lambda: create_dataloader(ids[:300], context_length=256, batch_size=4),
    lambda: create_dataloader([0.5, 1.5, 2.5]),
    lambda: create_dataloader({"text": text}),
]:
    try:
        call()
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")
    else:
        raise AssertionError("expected an error")

# %% [markdown]
# ## 2.6 Token embeddings: a lookup table
#
# A neural network computes with vectors. The first layer of GPT-2, `wte` ("word token embedding"),
# gives every token id a learned vector of `d_model` numbers: a matrix `W` of shape
# `(vocab_size, d_model)`, whose row `i` is token `i`'s vector. `nn.Embedding` is that matrix plus a
# lookup. Tiny numbers first: a vocabulary of 6 and vectors of 3.

# %%
torch.manual_seed(123)
embedding = nn.Embedding(num_embeddings=6, embedding_dim=3)
print(embedding.weight.detach().round(decimals=4))

# %%
token_ids = torch.tensor([2, 3, 5, 1])
print(embedding(token_ids).detach().round(decimals=4))

# %% [markdown]
# Rows 2, 3, 5 and 1 of the matrix, in that order. Formally, the lookup *is* a matrix product: write
# each id as a one-hot row vector (a 1 at position `id`, 0 elsewhere); multiplying by `W` selects row
# `id`. The two agree exactly, bit for bit, and so does plain indexing `W[ids]`:

# %%
one_hot = F.one_hot(token_ids, num_classes=6).float()  # (4, 6)
print(one_hot)
W = embedding.weight
assert torch.equal(one_hot @ W, embedding(token_ids))
assert torch.equal(W[token_ids], embedding(token_ids))
print("embedding(ids) == one_hot(ids) @ W == W[ids]")

# %% [markdown]
# `nn.Embedding` does the lookup instead of the product, because with GPT-2's vocabulary the product
# would multiply all but one of the 50,257 rows by zero, for every token. The matrix view still tells us
# what training does: the gradient of `one_hot @ W` with respect to `W` is non-zero only in the rows of
# tokens that occur in the batch. Through the input lookup, a token that never appears gets no update
# at all. (GPT-2 also reuses this matrix as its output layer, chapter 4, and that use does touch every
# row at every step: it learns to push unseen tokens' scores down.)

# %%
embedding.weight.grad = None
embedding(torch.tensor([2, 3, 5, 1, 2])).sum().backward()
print(embedding.weight.grad)  # row 2 occurs twice, rows 0 and 4 never
grad = embedding.weight.grad
assert grad[[0, 4]].abs().sum() == 0 and (grad[2] == 2).all()

# %% [markdown]
# Now real sizes. GPT-2 124M uses `vocab_size = 50257` and `d_model = 768`; to keep the printout small
# we embed the batch from section 2.5 into 256 dimensions, as Raschka's book does. Every id becomes a
# vector: `(B, T)` ids become `(B, T, d_model)` numbers.

# %%
vocab_size, d_model = 50257, 256
torch.manual_seed(123)
wte = nn.Embedding(vocab_size, d_model)
loader = create_dataloader(text, batch_size=8, context_length=4, shuffle=False)
inputs, targets = next(iter(loader))
tok_emb = wte(inputs)
print("inputs", tuple(inputs.shape), "-> token embeddings", tuple(tok_emb.shape))
GPT2_124M_PARAMS = 124_439_808  # with wte shared by the output layer (chapter 4)
print(
    f"GPT-2 124M's wte: {50257:,} x {768} = {50257 * 768:,} parameters, "
    f"{50257 * 768 / GPT2_124M_PARAMS:.1%} of the model's {GPT2_124M_PARAMS:,}"
)

# %% [markdown]
# ## 2.7 Where is each token? Learned positional embeddings
#
# A token embedding does not know *where* its token is. The same token gets the same vector at every
# position. Here ` cat` appears twice:

# %%
ids_cat = torch.tensor([enc.encode("The cat saw another cat")])
print(ids_cat, [enc.decode([i]) for i in ids_cat[0].tolist()])
emb_cat = wte(ids_cat)
assert ids_cat[0, 1] == ids_cat[0, 4]
same = torch.equal(emb_cat[0, 1], emb_cat[0, 4])
print("' cat' at position 1 == ' cat' at position 4:", same)

# %% [markdown]
# Self-attention, chapter 3, is blind to order too: without a mask, permute its input vectors and its
# outputs come out permuted the same way, so "dog bites man" and "man bites dog" would look alike. (The
# causal mask leaks a little order, but GPT-2, like most models, is told positions outright.) So GPT-2
# adds a second table, `wpe` ("word position embedding"), with one learned vector per *position*
# `0 .. context_length - 1`, and feeds the model the sum `x = wte[ids] + wpe[positions]`. The position
# vectors have shape `(T, d_model)`; broadcasting adds the same `T` vectors to every row of the batch.

# %%
context_length = 1024  # GPT-2's maximum sequence length
torch.manual_seed(123)
wpe = nn.Embedding(context_length, d_model)
T = inputs.shape[1]
pos_emb = wpe(torch.arange(T))  # (T, d_model)
x = tok_emb + pos_emb  # (B, T, d_model) + (T, d_model) -> (B, T, d_model)
shapes = [tuple(t.shape) for t in (tok_emb, pos_emb, x)]
print("token {} + position {} -> {}".format(*shapes))
# x[b, t] = wte[ids[b, t]] + wpe[t]
assert torch.equal(x, wte.weight[inputs] + wpe.weight[:T])

x_cat = wte(ids_cat) + wpe(torch.arange(ids_cat.shape[1]))
same = torch.equal(x_cat[0, 1], x_cat[0, 4])
print("after adding positions, the two ' cat's are equal:", same)

# %% [markdown]
# The learned table has a price: it has exactly `context_length` rows. There is no vector for position
# 1024, so GPT-2 cannot read a 1025th token, however long the text:

# %%
print(
    f"GPT-2 124M's wpe: {1024:,} x {768} = {1024 * 768:,} parameters, "
    f"{1024 * 768 / GPT2_124M_PARAMS:.1%} of the model"
)
try:
    wpe(torch.tensor([context_length]))
except IndexError as err:
    print(f"position {context_length}: IndexError: {err}")

# %% [markdown]
# Both tables start random and are learned by gradient descent with the rest of the model. What
# GPT-2's *trained* `wpe` looks like we can only show once we load OpenAI's weights, in chapter 7. Here
# we compare the untrained table with the alternative the original Transformer used.

# %% [markdown]
# ## 2.8 Sinusoidal positions: the fixed alternative
#
# *Attention is all you need* (Vaswani et al., 2017, section 3.5) does not learn positions. It writes
# each position as `d_model / 2` sine–cosine pairs of geometrically spaced frequencies:
#
# $$ PE_{(pos,\,2i)} = \sin\!\left(\frac{pos}{10000^{2i/d_{model}}}\right), \qquad
#    PE_{(pos,\,2i+1)} = \cos\!\left(\frac{pos}{10000^{2i/d_{model}}}\right). $$
#
# First the formula as written, one number at a time:


# %%
def sinusoidal_naive(T, d_model):
    def pe(pos, j):
        if j % 2 == 0:
            return math.sin(pos / 10000 ** (j / d_model))
        return math.cos(pos / 10000 ** ((j - 1) / d_model))

    return torch.tensor([[pe(pos, j) for j in range(d_model)] for pos in range(T)])


print(sinusoidal_naive(4, 6).round(decimals=4))

# %% [markdown]
# The exported version computes all angles at once as an outer product `positions x frequencies`. It
# works in float64 and rounds to float32 only at the end, because float32 is too coarse for large
# angles: it keeps about 7 significant digits, so an angle near 8000 radians keeps only about 3
# decimals, and the sines built from it inherit the error. The two cells after the function check it
# against the formula and measure that error.


# %%
#| export
def sinusoidal_positions(T: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed positional encoding of "Attention is all you need" (section 3.5).

    Shape (T, d_model): PE[pos, 2i] = sin(pos / base^(2i/d_model)) and
    PE[pos, 2i+1] = cos(pos / base^(2i/d_model)).
    """
    T = check_int("T", T, minimum=1)
    d_model = check_int("d_model", d_model, minimum=2)
    if d_model % 2:
        raise ValueError(f"d_model must be even (sine-cosine pairs), got {d_model}")
    pos = torch.arange(T, dtype=torch.float64)  # (T,)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d_model/2,)
    inv_freq = base ** (-two_i / d_model)  # (d_model/2,)
    angles = torch.outer(pos, inv_freq)  # (T, d_model/2)
    pe = torch.empty(T, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()  # (T, d_model)


# %%
print(sinusoidal_positions(4, 6).round(decimals=4))
for T_, d in [(4, 6), (50, 64), (1024, 768)]:
    table, paper = sinusoidal_positions(T_, d), sinusoidal_naive(T_, d)
    torch.testing.assert_close(table, paper, rtol=0, atol=1e-6)
print(
    "sinusoidal_positions == the paper's formula, number by number, up to (1024, 768)"
)

# %% [markdown]
# Now the precision argument, with numbers: how fine float32 is near 1 and near 8000, and how far the
# same table drifts when it is computed in float32 throughout.

# %%
one, angle = torch.tensor(1.0), torch.tensor(8000.0)
inf = torch.tensor(math.inf)
step_one = (torch.nextafter(one, inf) - one).item()
step_angle = (torch.nextafter(angle, inf) - angle).item()
print(f"float32 step after 1.0: {step_one:.2e} (about 7 significant digits)")
print(f"float32 step after 8000.0: {step_angle:.6f} (about 3 decimals)")

pos32 = torch.arange(8192, dtype=torch.float32)
inv_freq32 = 10000.0 ** (-torch.arange(0, 64, 2, dtype=torch.float32) / 64)
angles32 = torch.outer(pos32, inv_freq32)
pe32 = torch.stack([angles32.sin(), angles32.cos()], dim=-1).flatten(1)  # sin, cos, ...
err = (pe32 - sinusoidal_positions(8192, 64)).abs().max(dim=1).values  # per position
near, far = err[:100].max().item(), err[8000:].max().item()
assert near < 1e-5 and 1e-4 < far < 1e-3 and far > 10 * near
# The digits of these errors depend on the CPU's sin/cos kernels; their sizes do not.
print("float32 throughout, max error at positions 0-99:      below 1e-5")
print("float32 throughout, max error at positions 8000-8191: between 1e-4 and 1e-3")

# %% [markdown]
# Three properties make this encoding attractive, and each can be checked:
#
# 1. **Every position has the same length**, `sqrt(d_model / 2)`, since each pair contributes
#    `sin² + cos² = 1`. Adding it never swamps a token vector at far positions.
# 2. **A shift is a rotation.** For a fixed offset `k`, `PE[pos + k] = PE[pos] @ M_k` for one matrix
#    `M_k` that does not depend on `pos`: each sine–cosine pair is rotated by the angle
#    `k * frequency`. This is the paper's argument that a linear layer can learn to "attend by relative
#    position".
# 3. **The dot product depends only on the distance**: `PE[p] · PE[q] = sum_i cos(w_i (p - q))`.

# %%
T_, d = 64, 16
pe = sinusoidal_positions(T_, d).double()
norms = pe.norm(dim=1)
root = math.sqrt(d / 2)
print(
    f"norms: min {norms.min():.4f}, max {norms.max():.4f}, sqrt(d_model/2) = {root:.4f}"
)
torch.testing.assert_close(norms, torch.full((T_,), root, dtype=torch.float64))

inv_freq = 10000 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
k = 5
M_k = torch.zeros(d, d, dtype=torch.float64)
for i, w in enumerate(inv_freq):  # rotate the pair (sin, cos) by the angle k * w
    c, s = math.cos(k * w), math.sin(k * w)
    M_k[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]])
torch.testing.assert_close(pe[:-k] @ M_k, pe[k:], rtol=0, atol=1e-6)
print(f"PE[pos + {k}] == PE[pos] @ M_{k} for all {T_ - k} positions pos")

dots = pe @ pe.T
dist = torch.arange(T_)[:, None] - torch.arange(T_)[None, :]
by_distance = torch.cos(dist[..., None] * inv_freq).sum(-1)
torch.testing.assert_close(dots, by_distance, rtol=0, atol=1e-6)
print("PE[p] . PE[q] == sum_i cos(w_i (p - q)) for all", T_ * T_, "pairs")

# %% [markdown]
# Side by side, the sinusoidal table and a freshly initialised learned one (128 positions, 64
# dimensions). Each row is a position. The sinusoids are smooth: left columns oscillate fast, right
# columns slowly, so neighbouring positions get similar vectors. The learned table starts as noise;
# only training can give it structure.

# %%
T_, d = 128, 64
torch.manual_seed(123)
learned = nn.Embedding(T_, d).weight.detach()
tables = [
    (sinusoidal_positions(T_, d), "sinusoidal (fixed)"),
    (learned / learned.abs().max(), "learned, at initialisation (scaled)"),
]
style = dict(cmap="RdBu_r", center=0, vmin=-1, vmax=1, xticklabels=8, yticklabels=16)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, (table, title) in zip(axes, tables):
    sns.heatmap(table.numpy(), ax=ax, **style)
    ax.set_title(title)
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
fig.tight_layout()
plt.show()

# %% [markdown]
# The similarity between two positions, as a function of how far apart they are, makes the difference
# plain. We plot the cosine similarity (the dot product of the two vectors divided by their lengths)
# between position 0 and position `k`. For the sinusoids it falls with distance (and, by property 3, it
# is the same curve from any starting position), with ripples from the fast frequencies that fade as
# `d_model` grows: the curve falls without a rise for longer at `d_model = 768` than at 64. For the
# untrained learned table the similarity is noise around zero, with the spread that any two random
# vectors of 64 numbers have, whatever the distance: nothing in it says which positions are near.


# %%
def similarity_to_first(table):
    table = F.normalize(table.double(), dim=1)
    return table @ table[0]


T_ = 256
torch.manual_seed(123)
learned = nn.Embedding(T_, 64).weight.detach()
fig, ax = plt.subplots(figsize=(9, 3.8))
for d in (64, 768):
    sim = similarity_to_first(sinusoidal_positions(T_, d))
    ax.plot(sim, label=f"sinusoidal, d_model={d}")
ax.plot(similarity_to_first(learned), label="learned at init, d_model=64", alpha=0.7)
ax.axhline(0, color="gray", lw=0.5)
ax.set_xlabel("distance k (positions)")
ax.set_ylabel("cosine similarity of PE[0], PE[k]")
ax.legend()
plt.show()

for d in (64, 768):
    sim = similarity_to_first(sinusoidal_positions(T_, d))
    first_rise = int((sim.diff() >= 0).nonzero()[0])
    at = [round(sim[k].item(), 3) for k in (1, 4, 16, 64, 255)]
    print(f"sinusoidal d_model={d}: similarity at k = 1, 4, 16, 64, 255: {at}")
    print(f"    strictly falling up to k = {first_rise}")
    assert (sim[2:] < sim[1]).all() and (sim[1:] > 0).all()  # nearest is most similar
sim = similarity_to_first(learned)[1:]
chance = 1 / math.sqrt(64)  # the spread of cos(u, v) for random 64-d vectors
print(
    f"learned at init, k >= 1: mean {sim.mean():.3f}, std {sim.std():.3f} "
    f"(random vectors: 1/sqrt(64) = {chance:.3f}), max |.| {sim.abs().max():.3f}"
)
assert abs(sim.mean()) < 0.05 and 0.8 < sim.std() / chance < 1.2

# %% [markdown]
# Vaswani et al. tried both and "found that the two versions produced nearly identical results"; they
# kept the sinusoids in the hope that they extrapolate past the training length. GPT-2, like GPT-1 and
# BERT, learns its table instead: 786,432 parameters (0.6% of the 124M model) buy a model that can
# shape its own notion of position, at the price of the hard limit of 1024 tokens. Modern models mostly
# do neither: they *rotate* queries and keys inside attention (RoPE), an idea that grows directly out of
# property 2.

# %% [markdown]
# ## 2.9 What flows into chapter 3
#
# Putting the pieces together, one batch from text to the tensor the first transformer block reads:

# %%
B, T = 8, 4
torch.manual_seed(123)
wte, wpe = nn.Embedding(50257, 256), nn.Embedding(1024, 256)
loader = create_dataloader(text, batch_size=B, context_length=T, seed=123)
inputs, targets = next(iter(loader))
tok_emb, pos_emb = wte(inputs), wpe(torch.arange(T))
x = tok_emb + pos_emb
assert x.shape == (B, T, 256)

rows = [  # name, symbolic shape, tensor here, its shape in GPT-2 124M (B=8, T=1024)
    ("inputs, targets", "(B, T)", inputs, (8, 1024)),
    ("wte.weight", "(V, d_model)", wte.weight, (50257, 768)),
    ("wte(inputs)", "(B, T, d_model)", tok_emb, (8, 1024, 768)),
    ("wpe.weight", "(T_max, d_model)", wpe.weight, (1024, 768)),
    ("wpe(arange(T))", "(T, d_model)", pos_emb, (1024, 768)),
    ("x = sum", "(B, T, d_model)", x, (8, 1024, 768)),
]
header = ["tensor", "shape", "dtype", "this chapter", "GPT-2 124M (B=8, T=1024)"]
print("{:<16}{:<18}{:<9}{:<17}{}".format(*header))
for name, shape, t, theirs in rows:
    dtype = str(t.dtype).removeprefix("torch.")
    print(f"{name:<16}{shape:<18}{dtype:<9}{str(tuple(t.shape)):<17}{theirs}")

# %% [markdown]
# In GPT-2, `x` goes through dropout and then into the first transformer block, whose heart, causal
# self-attention, is chapter 3. The `targets` wait until chapter 5, where the model's predictions at
# each of the `B x T` positions are scored against them.
#
# ## Summary
#
# * A window of `T + 1` tokens is `T` next-token-prediction examples: inputs `x = w[:-1]`, targets
#   `y = w[1:]`.
# * Sliding a window with stride `s` over `N` tokens gives `floor((N - T - 1) / s) + 1` windows.
#   `s = T` uses each token as an input exactly once per epoch; `s < T` repeats tokens in overlapping
#   windows.
# * `GPTDataset` stores the ids once and describes the windows as a zero-copy `unfold` view: equal item
#   by item to the naive list-of-tensors dataset, using 1 tensor instead of thousands (hundreds of times
#   less memory at `stride = 1`).
# * `create_dataloader` accepts text or ids, checks its arguments with messages you can act on, and
#   shuffles reproducibly with `seed`.
# * `nn.Embedding` is a lookup that equals `one_hot(ids) @ W` exactly; only the rows of tokens in the
#   batch get gradients.
# * Token embeddings carry no position. GPT-2 adds a learned `(1024, 768)` position table; the original
#   Transformer adds fixed sinusoids, in which a shift is a rotation and similarity depends only on
#   distance.
# * Into chapter 3 flows `x` of shape `(B, T, d_model)`.
#
# Next: [Chapter 3 — Attention](03_attention.ipynb), where each position of `x` learns to look back at
# the positions before it.
#
# ## Exercises
#
# Try each one before you open its solution.
#
# **Exercise 2.1 — counting an epoch.** With `create_dataloader(text, batch_size=4, context_length=256,
# stride=128)` (shuffled, `drop_last=True`), how many batches does one epoch over The Verdict have, and
# how many next-token predictions does the model make in it? Work it out with the formula, then check
# with the loader.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
n = num_windows(len(ids), 256, 128)
n_batches = n // 4
loader = create_dataloader(text, batch_size=4, context_length=256, stride=128, seed=1)
predictions = sum(y.numel() for _, y in loader)
print(
    f"formula: {n} windows -> {n_batches} batches ({n - 4 * n_batches} windows dropped)"
)
print(f"    -> {n_batches} x {4 * 256:,} = {n_batches * 4 * 256:,} predictions")
print(f"loader:  {len(loader)} batches, {predictions:,} predictions")
assert len(loader) == n_batches and predictions == n_batches * 4 * 256

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# `floor((5145 - 256 - 1) / 128) + 1 = 38 + 1 = 39` windows; `drop_last` keeps `floor(39 / 4) = 9`
# full batches (3 windows are dropped, a different 3 each epoch since the order is shuffled); each batch
# makes `4 * 256 = 1024` predictions, so 9,216 in all. The folded cell above checks it with the loader.
# ```
#
# **Exercise 2.2 — an embedding is a linear layer.** Build an `nn.Linear(6, 3, bias=False)` that gives
# the same outputs as the `embedding` of section 2.6 when fed one-hot vectors, and show that its
# gradient is the same as the embedding's too. (Mind the layout: `nn.Linear` stores its weight as
# `(out, in)`.)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
linear = nn.Linear(6, 3, bias=False)
with torch.no_grad():
    linear.weight.copy_(embedding.weight.T)  # (out=3, in=6)
ids_ex = torch.tensor([2, 3, 5, 1, 2])
embedding.weight.grad, linear.weight.grad = None, None
out_emb, out_lin = embedding(ids_ex), linear(F.one_hot(ids_ex, 6).float())
assert torch.equal(out_emb, out_lin)
(out_emb**2).sum().backward()
(out_lin**2).sum().backward()
torch.testing.assert_close(linear.weight.grad, embedding.weight.grad.T)
print("same outputs and same gradients; gradient of the linear layer:")
print(linear.weight.grad.round(decimals=4))

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Copy the transposed table into the linear layer. Outputs agree exactly; so do the gradients, which
# are zero in the rows (columns, for the linear layer) of unused tokens. The folded cell above shows it.
# ```
#
# **Exercise 2.3 — sines first, cosines second.** Many codebases (for example tensor2tensor, from the
# paper's own authors, which also spaces its frequencies slightly differently) do not interleave sines
# and cosines: they put all the sines in the first half of the vector and all the cosines in the
# second. Implement that layout with `torch.cat`, show it is a fixed permutation of the columns of
# `sinusoidal_positions`, and explain why a model cannot tell the two apart.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
T_, d = 50, 16
two_i = torch.arange(0, d, 2, dtype=torch.float64)
angles = torch.outer(torch.arange(T_, dtype=torch.float64), 10000 ** (-two_i / d))
concat = torch.cat([angles.sin(), angles.cos()], dim=1).float()
perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # new j <- old perm[j]
pe = sinusoidal_positions(T_, d)
assert torch.equal(concat, pe[:, perm])
torch.testing.assert_close(concat @ concat.T, pe @ pe.T)
print("column order:", perm.tolist())
print("same vectors, permuted columns; same dot products between positions")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Column `2i` (sine `i`) moves to `i`, column `2i + 1` (cosine `i`) to `d_model/2 + i`. A fixed
# reordering of the `d_model` features changes nothing a model can learn: reorder the token table's
# columns and the weights that read those features the same way, and every output is unchanged. The dot
# products between positions, all the structure of section 2.8, do not change either, as the folded
# cell above checks.
# ```
