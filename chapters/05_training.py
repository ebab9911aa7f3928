# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5 — Training GPT-2 on *The Verdict*
#
# Chapter 4 built GPT-2; its weights are random, so it writes noise. In this chapter we train it. The
# recipe is the one every language model uses: show the model a window of text, ask it to predict every
# next token, measure how wrong it was with **cross-entropy**, and nudge all 124 million weights downhill
# with **AdamW**. We do it on a deliberately tiny corpus, Edith Wharton's short story *The Verdict*
# (4,612 tokens to train on, 534 to validate), so that the whole run fits on a laptop CPU, and so that we can watch what
# happens when a model far too big for its data learns it by heart.
#
# The plan:
#
# 1. **Loss and perplexity**: cross-entropy step by step (logits → log-softmax → negative log-likelihood),
#    checked against `F.cross_entropy`; why an untrained model scores $\ln 50257 \approx 10.8$.
# 2. **The training loop**: a 90/10 split, one `train_step`, a four-line naive loop around it, then
#    the exported `train()` with evaluation, samples, divergence checks and checkpoints, proven
#    equal to the naive loop; and AdamW written out by hand.
# 3. **The run**: GPT-2 124M, context 256, AdamW (lr 4e-4, weight decay 0.1), 30 epochs, visualised;
#    where it starts to overfit, and an honest comparison with the reference run of rasbt's
#    *LLMs-from-scratch* (same data, same model size, 10 epochs: train 0.391, val 6.452).
# 4. **Beyond the reference**: warm-up + cosine decay + gradient clipping, and what dropout and weight
#    decay actually do here, measured.
# 5. **Using the model**: checkpoints, the command line, and samples at three temperatures.
#
# Everything reusable is exported to `gpt2scratch/train.py`; the command line
# `python -m gpt2scratch train|generate|run` is built on top of it.

# %%
#| default_exp train

# %%
#| export
"""Training GPT-2: device and seeds, the loss, evaluation, the training loop, the
learning-rate schedule.

Generated from chapter 05 of the book. `train()` is the loop; checkpoints live in
`gpt2scratch.checkpoint`.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from gpt2scratch.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from gpt2scratch.dataset import check_window_fits, create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.validation import check_int, check_number

# %%
import copy
import io
import json
import os
import tempfile
import time
from collections import Counter
from contextlib import redirect_stderr

import matplotlib.pyplot as plt

from gpt2scratch.data import verdict_text
from gpt2scratch.quickmode import full_or_quick

torch.set_printoptions(precision=4, sci_mode=False)
tokenizer = gpt2_encoding()

# %% [markdown]
# Training 124M parameters for 30 epochs takes tens of minutes on two CPU cores; the run prints
# its own time (the stored run shared its two cores with other jobs). When the book's tests run (`make test`), one helper call in section 5.6 swaps in
# a tiny model and a few epochs; the outputs you read here come from the full run.

# %% [markdown]
# ## 5.1 Device and seeds
#
# Two small helpers come first. `pick_device()` takes the fastest device PyTorch can see (a CUDA GPU, then
# Apple's `mps`, then the CPU) and checks an explicit request instead of failing later inside torch.
# `set_seed()` seeds every random number generator a training run touches.


# %%
#| export
def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to train on: `preferred` if given and usable, else cuda -> mps -> cpu,
    in that order.
    """
    if preferred is None or preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preferred!r} was asked for, but this PyTorch sees no "
                "CUDA GPU; use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preferred!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {preferred!r} was asked for, but MPS is not available; use "
            "'auto' or 'cpu'"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return device


# %% [markdown]
# `set_seed()` seeds every random number generator a training run touches; `epoch_seed()` gives
# each epoch's shuffle a seed of its own, from the run's seed and the epoch alone (`train()` uses
# it, and so do chapter 11's processes, which must all draw the same order).


# %%
#| export
def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA
    device too).
    """
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle: a function of (seed, epoch) alone."""
    return (seed * 1_000_003 + epoch) % 2**63


# %%
# NBVAL_IGNORE_OUTPUT
device = pick_device()
print("training on", device)

# %% [markdown]
# ## 5.2 The loss: cross-entropy, step by step
#
# A GPT reads token ids `(B, T)` and returns **logits** `(B, T, V)`: for each of the `B·T` positions, one
# unnormalised score per vocabulary entry ($V = 50{,}257$). The *target* at position $t$ is simply the token at
# $t+1$. Training wants the target's probability to be high, so we minimise the average
# **negative log-likelihood** of the targets:
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{i=1}^{N} \log p_\theta(y_i \mid x_{\le i}),\qquad
#   p_\theta(\cdot \mid x_{\le i}) = \operatorname{softmax}(\text{logits}_i).$$
#
# Let's compute it by hand for two three-token inputs on the untrained 124M model (context 256, the size we
# train below).

# %%
torch.manual_seed(123)
course_config = GPT2Config(
    context_length=256
)  # GPT-2 124M, with the context trimmed to 256 as in rasbt's book
untrained = GPT2(course_config).eval()
inputs = torch.tensor(
    [tokenizer.encode(" every effort moves"), tokenizer.encode(" I really like")]
)  # (2, 3)
targets = torch.tensor(
    [tokenizer.encode(" effort moves you"), tokenizer.encode(" really like chocolate")]
)
print("inputs: ", inputs.tolist(), "\ntargets:", targets.tolist())
with torch.no_grad():
    logits = untrained(inputs)  # (B, T, V)
print("logits:", tuple(logits.shape))

# %% [markdown]
# Step 1, **log-softmax** turns each row of logits into log-probabilities (`log_softmax` is the stable
# form of `log(softmax(x))`: it subtracts the row maximum before exponentiating). Step 2 picks out the
# log-probability of each target. Step 3 averages and flips the sign.

# %%
log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V), each row sums to 1 in exp
target_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
print("log p(target):\n", target_log_probs.round(decimals=3))
loss_by_hand = -target_log_probs.mean()
loss_torch = F.cross_entropy(
    logits.flatten(0, 1), targets.flatten()
)  # (B*T, V) vs (B*T,)
print(f"by hand: {loss_by_hand.item():.4f}   F.cross_entropy: {loss_torch.item():.4f}")
torch.testing.assert_close(loss_by_hand, loss_torch)

# %% [markdown]
# `F.cross_entropy` fuses the same three steps (and wants the batch and time dimensions flattened into one).
# That flattening is all our exported loss function adds:


# %%
#| export
def calc_loss_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on one batch: inputs and targets are (B,
    T) token ids.
    """
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )  # (B*T, V) vs (B*T,)


def perplexity(loss: float) -> float:
    """exp(loss): the size of a uniform choice as uncertain as the model."""
    return math.exp(loss)


# %%
with torch.no_grad():
    torch.testing.assert_close(
        calc_loss_batch(untrained, inputs, targets), loss_by_hand
    )
print(f"perplexity of the untrained model: {perplexity(loss_by_hand.item()):,.0f}")

# %% [markdown]
# **Perplexity** is $e^{\mathcal{L}}$: a perplexity of $k$ means the model is as unsure as if it were choosing
# uniformly among $k$ tokens. The untrained model is therefore about as unsure as a uniform choice over
# the whole vocabulary, which is no accident. GPT-2 initialises every weight with a small standard
# deviation (0.02), so the logits start close to zero and nearly equal; the softmax of equal logits is the
# uniform distribution $1/V$, whose loss is
#
# $$-\log \tfrac{1}{V} = \ln 50257 \approx 10.825.$$
#
# It is a little above that in practice. If the logits are independent of the target with spread
# $\sigma$, then $\mathbb{E}[\mathcal{L}] = \mathbb{E}[\operatorname{logsumexp}(z)] - \mathbb{E}[z_y] \approx
# \ln V + \sigma^2/2$. Let's check that prediction on the first 2 × 256 = 512 tokens of the story:

# %%
ids = tokenizer.encode(verdict_text())
x = torch.tensor(ids[: 2 * 256]).view(2, 256)  # (2, 256)
y = torch.tensor(ids[1 : 2 * 256 + 1]).view(2, 256)
with torch.no_grad():
    z = untrained(x)  # (2, 256, V)
    loss0 = F.cross_entropy(z.flatten(0, 1), y.flatten()).item()
sigma = z.std().item()
print(f"ln V            = {math.log(50257):.3f}")
print(
    f"logit std sigma = {sigma:.3f}  ->  "
    f"ln V + sigma^2/2 = {math.log(50257) + sigma**2 / 2:.3f}"
)
print(f"measured loss   = {loss0:.3f}")
assert abs(loss0 - (math.log(50257) + sigma**2 / 2)) < 0.05

# %% [markdown]
# So **10.8 is the ceiling of ignorance**: it is what knowing nothing costs, and any model scoring
# above it is doing worse than guessing uniformly. Every number below is to be read against it.

# %% [markdown]
# ## 5.3 Data: a 90/10 split and the loaders
#
# We split *The Verdict* by **characters**, as rasbt's reference run does: the first 90% of the
# 20,479 characters train, the last 10% validate. (Splitting by tokens would move the boundary by at most
# one token; splitting by characters keeps us comparable.) Each part is then tokenized and cut into
# non-overlapping windows of 256 tokens (`stride = context_length`) by chapter 2's `create_dataloader`.
# The training loader shuffles and drops a short last batch; the validation loader does neither.


# %%
#| export
def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_number(
        "train_ratio", train_ratio, minimum=0, maximum=1, min_open=True, max_open=True
    )
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


# %% [markdown]
# The loaders cut each part into windows, with errors that give the token counts when the text
# is too short for one window (or, for the training split, for one batch).


# %%
#| export
def make_loaders(
    text: str,
    tokenizer,
    *,
    context_length: int = 256,
    batch_size: int = 2,
    train_ratio: float = 0.9,
    seed: int = 123,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders over a 90/10 character split of `text`."""
    train_text, val_text = split_text(text, train_ratio)
    encode = lambda s: tokenizer.encode(s, allowed_special={"<|endoftext|>"})
    train_ids, val_ids = encode(train_text), encode(val_text)
    need = (
        context_length + 1
    )  # a window is context_length inputs + 1 more token for the last target
    for name, part, ratio in (
        ("train", train_ids, train_ratio),
        ("validation", val_ids, 1 - train_ratio),
    ):
        check_window_fits(
            f"the {name} split ({ratio:.0%} of the text)", len(part), context_length
        )
    windows = (len(train_ids) - need) // context_length + 1
    if windows < batch_size:
        raise ValueError(
            f"the train split has {len(train_ids)} tokens = {windows} window(s) of "
            f"{context_length}, fewer than batch_size {batch_size}; "
            "use a longer text or a smaller batch size or context length"
        )
    train_loader = create_dataloader(
        train_ids,
        batch_size=batch_size,
        context_length=context_length,
        shuffle=True,
        drop_last=True,
        seed=seed,
    )
    val_loader = create_dataloader(
        val_ids,
        batch_size=batch_size,
        context_length=context_length,
        shuffle=False,
        drop_last=False,
    )
    return train_loader, val_loader


# %%
text = verdict_text()
train_text, val_text = split_text(text, 0.9)
train_loader, val_loader = make_loaders(
    text, tokenizer, context_length=256, batch_size=2
)
n_train, n_val = len(train_loader.dataset.token_ids), len(val_loader.dataset.token_ids)
print(f"characters: {len(train_text):,} train + {len(val_text):,} val = {len(text):,}")
print(f"tokens:     {n_train:,} train + {n_val:,} val")
print(
    f"windows of 256: {len(train_loader.dataset)} train -> {len(train_loader)} "
    "batches of 2 per epoch; "
    f"{len(val_loader.dataset)} val -> {len(val_loader)} batch"
)
x, y = next(iter(val_loader))
print(
    "a batch:",
    tuple(x.shape),
    tuple(y.shape),
    "targets = inputs shifted by one:",
    torch.equal(x[:, 1:], y[:, :-1]),
)

# %% [markdown]
# One epoch is therefore 9 optimizer steps over 18 windows of 256 tokens; validation is 2 windows. Those
# 4,612 training tokens are all the model will ever learn from, four orders of magnitude fewer than its 124
# million parameters. We should expect memorisation.
#
# ## 5.4 Evaluation
#
# `evaluate()` averages the loss over (at most `max_batches`) batches in **eval mode**, so dropout is off and
# the number measures the model, not the noise. It also leaves every random generator as it found it:
# iterating a `DataLoader` quietly draws a seed from torch's global generator, and a training run whose
# dropout masks shift whenever we *look* at it could never be resumed bit for bit (section 5.10).


# %%
#| export
def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each
    CUDA/MPS device.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` captured (device states only where that device
    exists).
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


@contextmanager
def preserved_rng():
    """Run a block without disturbing any random generator (evaluation, sampling a
    preview).
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


# %% [markdown]
# The evaluation itself: eval mode, no gradients, random states untouched.


# %%
#| export
@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    per_token: bool = False,
) -> float:
    """Mean loss over the first `max_batches` batches of `loader` (all if None), in eval
    mode (no dropout): the mean of the batch means, or with `per_token` the mean over
    every target token, so that a last, shorter batch weighs by its size.

    Restores the model's train/eval mode and every random state afterwards.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, weight, n = 0.0, 0, 0
    try:
        with preserved_rng():
            for inputs, targets in loader:
                if max_batches is not None and n >= max_batches:
                    break
                w = targets.numel() if per_token else 1
                total += calc_loss_batch(model, inputs, targets, device).item() * w
                weight, n = weight + w, n + 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no batches: nothing to evaluate")
    return total / weight


# %%
train0, val0 = (
    evaluate(untrained, train_loader, max_batches=5),
    evaluate(untrained, val_loader),
)
print(
    f"untrained 124M: train loss {train0:.3f}, val loss {val0:.3f}, ln V = "
    f"{math.log(50257):.3f}"
)

# %% [markdown]
# ## 5.5 The training loop, naive first
#
# Here is the whole algorithm, the way rasbt's chapter 5 writes it. Per batch: forward, loss, zero
# the old gradients, backward, one AdamW step.
#
# ```python
# for epoch in range(epochs):
#     for inputs, targets in loader:
#         loss = calc_loss_batch(model, inputs, targets)
#         optimizer.zero_grad()
#         loss.backward()
#         optimizer.step()
# ```
#
# We keep the body of that loop as one function, `train_step`, so that every loop in the book (the
# naive one here, `train()` below, and the later chapters' variants) takes exactly the same step.
# It adds three things to the five lines above: an optional **gradient clip** and **scheduler**,
# and a **divergence check**: a NaN or infinite loss or gradient stops the run at once with
# `NonFiniteLossError`, naming the step and the value, instead of silently training on garbage.
#
# It also has one seam for later chapters: `backward` is the function that fills the gradients.
# The default runs autograd; chapter 6 passes its hand-written backward pass instead, and a
# wrapped model (chapter 11's DDP) or a model with frozen weights (chapter 9's LoRA) works
# unchanged, since only parameters that received a gradient are clipped.


# %%
#| export
class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite: the run has diverged."""

    def __init__(self, step: int | None, value: float, what: str = "loss"):
        self.step, self.value, self.what = step, value, what
        super().__init__(
            f"{what} is {value} at step {step}: training diverged. Lower the learning "
            "rate, clip gradients (grad_clip=1.0), or resume from an earlier checkpoint"
        )


@dataclass
class StepResult:
    loss: float  # the batch's training loss (dropout on)
    grad_norm: float  # global gradient norm, before clipping
    lr: float  # the learning rate this step used


def autograd_backward(model: nn.Module, inputs, targets) -> torch.Tensor:
    """Forward, loss, and backward with autograd: fills every `p.grad`, returns the
    loss.
    """
    loss = calc_loss_batch(model, inputs, targets)
    loss.backward()
    return loss.detach()


def train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    grad_clip: float | None = None,
    backward=autograd_backward,
    step: int | None = None,
) -> StepResult:
    """One optimizer step on one batch: gradients, divergence check, clip, update."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = backward(model, inputs, targets).item()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = get_total_norm([p.grad for p in params])
    if not math.isfinite(loss):
        raise NonFiniteLossError(step, loss)
    if not math.isfinite(norm.item()):
        raise NonFiniteLossError(step, norm.item(), "gradient norm")
    if grad_clip is not None:
        clip_grads_with_norm_(params, grad_clip, norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return StepResult(loss, norm.item(), lr)


# %% [markdown]
# With it, the naive loop is four lines:


# %%
def train_naive(model, loader, optimizer, epochs):
    losses = []
    for _ in range(epochs):
        for inputs, targets in loader:
            losses.append(train_step(model, inputs, targets, optimizer).loss)
    return losses


# %% [markdown]
# What a real run needs on top of that, and what the exported `train()` adds:
#
# * **evaluation** every `eval_every` steps (default: once per epoch) on `eval_iters` batches of
#   the training data, read in order, and on the validation data; and a **history** of
#   `(tokens_seen, train_loss, val_loss, lr)` at every evaluation, plus every step's training
#   loss and gradient norm;
# * a **sample** after each epoch, so we can read what the model has learned;
# * a progress bar (off in this book's outputs: we print one line per evaluation instead);
# * **checkpoints** every `checkpoint_every` steps (default: each epoch), and `resume_from=` to
#   continue one (section 5.10);
# * a data order that is a **function of (seed, epoch)** alone. A `DataLoader` keeps one random
#   generator for all epochs, so epoch 7's order depends on how many epochs ran *in this
#   process*; a run resumed at epoch 7 would see a different order. `epoch_batches()` reseeds the
#   shuffle for each epoch instead.
#
# First the records: the `History` of a run, and the two data-order helpers.


# %%
#| export
@dataclass
class History:
    """What `train()` records: per evaluation (first six lists) and per step (next
    three).
    """

    step: list[int] = field(default_factory=list)  # optimizer steps done when evaluated
    epoch: list[float] = field(default_factory=list)  # step / steps_per_epoch
    tokens_seen: list[int] = field(default_factory=list)
    train_loss: list[float] = field(
        default_factory=list
    )  # eval mode, eval_iters batches
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(
        default_factory=list
    )  # learning rate of the last step taken
    step_loss: list[float] = field(default_factory=list)  # every step (dropout on)
    step_lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    samples: list[list] = field(default_factory=list)  # [step, text] after each epoch

    def to_dict(self) -> dict:
        return asdict(self)

    def append(self, **values) -> None:
        """Append one value to each named list."""
        for name, value in values.items():
            getattr(self, name).append(value)

    def add_step(self, result: StepResult) -> None:
        self.append(
            step_loss=result.loss, step_lr=result.lr, grad_norm=result.grad_norm
        )


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """One epoch of `loader`, in a shuffle order that depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler.generator = generator  # the permutation of this epoch
        loader.generator = (
            generator  # the loader's base seed: keep the global RNG out of it
        )
    elif hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
        sampler.set_epoch(epoch)
    return iter(loader)


def in_order(loader: Iterable) -> Iterable:
    """The same batches as `loader`, unshuffled: evaluation reads the same windows."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            shuffle=False,
            drop_last=loader.drop_last,
            collate_fn=loader.collate_fn,
        )
    return loader


# %% [markdown]
# Then the settings. A run has many knobs; they live in one dataclass, `TrainSettings`, that both
# `train()` and the command line read, so a default is written down once. Its defaults are the
# plain loop of this section (constant learning rate, no clipping); `RECIPE` is the recommended
# run of section 5.8, which `python -m gpt2scratch train` uses.


# %%
#| export
@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run. `train()` reads the loop's; `prepare_run()` the
    rest.
    """

    model: str = "124M"  # a GPT2Config.preset name
    context_length: int = 256
    batch_size: int = 2
    dropout: float = 0.1
    lr: float = 4e-4  # AdamW's (peak) learning rate
    weight_decay: float = 0.1
    schedule: str = "constant"  # or "cosine": 10% linear warm-up + cosine decay to 10%
    grad_clip: float | None = None  # clip the global gradient norm to this
    epochs: int = 1
    eval_every: int | None = None  # steps between evaluations (default: once per epoch)
    eval_iters: int | None = None  # batches per loss estimate (default: all)
    sample_prompt: str | None = None  # continued after each epoch
    sample_tokens: int = 25
    sample_temperature: float = 0.0  # 0 = greedy
    checkpoint_every: int | None = (
        None  # steps between checkpoints (default: each epoch)
    )
    max_steps: int | None = None  # stop early
    seed: int = 123
    progress: bool = True  # a tqdm bar on stderr
    verbose: bool = True  # one line per evaluation on stdout

    def __post_init__(self):
        for name in ("context_length", "batch_size", "epochs", "sample_tokens"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("eval_every", "eval_iters", "checkpoint_every", "max_steps"):
            check_int(name, getattr(self, name), minimum=1, none_ok=True)
        check_int("seed", self.seed)
        check_number("dropout", self.dropout, minimum=0, maximum=1, max_open=True)
        check_number("lr", self.lr, minimum=0, min_open=True)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number(
            "grad_clip", self.grad_clip, minimum=0, min_open=True, none_ok=True
        )
        check_number("sample_temperature", self.sample_temperature, minimum=0)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}"
            )


RECIPE = TrainSettings(epochs=10, schedule="cosine", grad_clip=1.0, eval_iters=5)

# %% [markdown]
# Resuming needs the step, the epoch, the batch within it, and the random states saved with the
# checkpoint. `_Progress` carries them through the loop; it saves them, and restores them.


# %%
#| export
@dataclass
class _Progress:
    """Where a run is: what a checkpoint saves and a resume restores."""

    steps_per_epoch: int
    seed: int
    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0  # the epoch to start (or continue) with
    batch: int = 0  # batches of that epoch already trained
    history: History = field(default_factory=History)
    rng: dict | None = None  # random states to restore once the data order is replayed

    def state(self, epoch: int, batch: int) -> dict:
        keys = ("step", "seed", "tokens_seen", "steps_per_epoch")
        state = {key: getattr(self, key) for key in keys}
        return {
            **state,
            "epoch": epoch,
            "batch": batch,
            "history": self.history.to_dict(),
        }

    @classmethod
    def resume(cls, folder, model, optimizer, scheduler, steps_per_epoch: int):
        ckpt = load_checkpoint(folder, model, optimizer, scheduler)
        state = ckpt.train_state
        if state["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(
                f"the checkpoint {ckpt.path} was trained with "
                f"{state['steps_per_epoch']} batches per epoch, this loader has "
                f"{steps_per_epoch}: resume with the"
                " same data, batch size and context length"
            )
        keys = ("step", "tokens_seen", "epoch", "batch")
        progress = cls(steps_per_epoch, state["seed"], **{k: state[k] for k in keys})
        progress.history, progress.rng = History(**state["history"]), ckpt.rng
        return progress

    def batches(self, loader, epoch: int) -> Iterator:
        """The epoch's batches; on resume, skip those trained, then restore the RNG."""
        first = self.batch if epoch == self.epoch else 0
        batches = epoch_batches(loader, self.seed, epoch)
        for _ in range(first):
            next(batches)
        if self.rng is not None:
            set_rng_state(self.rng)
            self.rng = None
        return enumerate(batches, start=first)


# %% [markdown]
# One `train()` call needs many things at hand: the model (and the wrapper to train it through),
# the optimizer, the settings, the progress. `_Run` holds them, and does the bookkeeping:
# evaluate and record, print a sample, save a checkpoint.


# %%
#| export
@dataclass
class _Run:
    """One `train()` call: what the loop needs, and its bookkeeping."""

    model: nn.Module
    runner: nn.Module  # what the step trains through: the model, or a wrapper (DDP)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    s: TrainSettings
    at: _Progress
    device: torch.device
    loaders: tuple  # (training batches read in order, validation)
    tokenizer: Any = None
    checkpoint_dir: str | Path | None = None
    backward: Callable = autograd_backward

    def say(self, text: str) -> None:
        if self.s.verbose:
            tqdm.write(text)

    def evaluate(self, lr: float) -> float:
        at, (train_batches, val_batches) = self.at, self.loaders
        train_loss = evaluate(self.model, train_batches, self.s.eval_iters, self.device)
        val_loss = evaluate(self.model, val_batches, self.s.eval_iters, self.device)
        epoch = at.step / at.steps_per_epoch
        values = dict(step=at.step, epoch=epoch, tokens_seen=at.tokens_seen, lr=lr)
        at.history.append(**values, train_loss=train_loss, val_loss=val_loss)
        self.say(
            f"epoch {epoch:5.2f}  step {at.step:5d}  train {train_loss:.3f}  "
            f"val {val_loss:.3f}"
        )
        return val_loss

    def sample(self, epoch: int) -> None:
        s = self.s
        with preserved_rng():  # a preview must not change the run
            options = dict(tokenizer=self.tokenizer, seed=s.seed)
            text = self.model.generate(
                s.sample_prompt,
                max_length=s.sample_tokens,
                temperature=s.sample_temperature,
                **options,
            )
        self.at.history.samples.append([self.at.step, text])
        self.say(f"  sample after epoch {epoch + 1}: {text!r}")

    def save(self, epoch: int, batch: int) -> None:
        args = (self.checkpoint_dir, self.model, self.optimizer, self.scheduler)
        save_checkpoint(*args, train_state=self.at.state(epoch, batch), rng=rng_state())

    def checkpoint_due(self, mid_epoch: bool) -> bool:
        every = self.s.checkpoint_every
        if self.checkpoint_dir is None or (every is None and mid_epoch):
            return False
        return every is None or self.at.step % every == 0


# %% [markdown]
# One epoch (or, after a resume, the rest of one) is the naive loop plus that bookkeeping.


# %%
#| export
def _train_epoch(run: _Run, loader, epoch: int, callbacks, bar) -> tuple[bool, int]:
    """Train one epoch; return (stop, batches of the epoch done)."""
    at, s = run.at, run.s
    done = at.batch if epoch == at.epoch else 0
    for batch, (inputs, targets) in at.batches(loader, epoch):
        inputs, targets = inputs.to(run.device), targets.to(run.device)
        result = train_step(
            run.runner,
            inputs,
            targets,
            run.optimizer,
            scheduler=run.scheduler,
            grad_clip=s.grad_clip,
            backward=run.backward,
            step=at.step + 1,
        )
        at.step, at.tokens_seen = at.step + 1, at.tokens_seen + targets.numel()
        at.history.add_step(result)
        bar.update()
        bar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
        eval_every = s.eval_every or at.steps_per_epoch
        val = run.evaluate(result.lr) if at.step % eval_every == 0 else None
        info = {"step": at.step, "epoch": epoch, "loss": result.loss, "lr": result.lr}
        info.update(tokens_seen=at.tokens_seen, val_loss=val)
        stop = any([bool(callback(info)) for callback in callbacks])  # all see it
        done = batch + 1
        if stop or (s.max_steps is not None and at.step >= s.max_steps):
            return True, done
        if done < at.steps_per_epoch and run.checkpoint_due(mid_epoch=True):
            run.save(epoch, done)
    return False, done


# %% [markdown]
# A resumed run restores its learning-rate schedule too, with the plan it was saved with.
# Resumed with a different number of epochs, the run says so instead of changing the plan
# in silence:


# %%
#| export
def _say_if_replanned(run: _Run, scheduler, steps_per_epoch: int) -> None:
    """A resumed schedule keeps the plan it was saved with: say so if --epochs changed."""
    plan = getattr(scheduler, "lr_lambdas", [None])[0]
    asked = run.s.epochs * steps_per_epoch
    if isinstance(plan, WarmupCosine) and plan.total_steps != asked:
        run.say(
            f"note: the learning-rate schedule keeps the plan it was saved with, warm-up"
            f" + cosine decay over {plan.total_steps} steps; {run.s.epochs} epochs are"
            f" {asked} steps, and steps after {plan.total_steps} run at"
            f" {plan.min_ratio:g} x the peak lr. For a schedule over {run.s.epochs}"
            " epochs, start a new run."
        )


# %% [markdown]
# And the loop itself: evaluate once before the first step, then epochs; after each, a sample
# and a checkpoint.

# %%
#| export
def train(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer,
    settings: TrainSettings | None = None,
    *,
    scheduler=None,
    device=None,
    tokenizer=None,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir=None,
    resume_from=None,
    backward=autograd_backward,
    wrap=None,
    **overrides,
) -> History:
    """Train `model` for `settings.epochs` epochs over `train_loader`; return the History.

    `overrides` replace fields of `settings` (`train(..., epochs=3)`). `backward` fills
    the gradients (chapter 6); `wrap(model)` returns the module to train through
    (chapter 11's DDP). Each callback gets a dict after every step; returning True
    stops the run. `checkpoint_dir` saves checkpoints, `resume_from` continues one.
    """
    s = replace(settings or TrainSettings(), **overrides)
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device)
    steps = len(train_loader)
    if steps == 0:
        raise ValueError("train_loader yields no batches: the text is too short")
    at = _Progress(steps, s.seed)
    if resume_from is not None:
        at = _Progress.resume(resume_from, model, optimizer, scheduler, steps)
    runner = wrap(model) if wrap else model
    loaders = (in_order(train_loader), val_loader)
    run = _Run(model, runner, optimizer, scheduler, s, at, device, loaders)
    run.tokenizer, run.backward = tokenizer, backward
    run.checkpoint_dir = checkpoint_dir
    if at.step:
        run.say(f"resumed from {resume_from} at step {at.step} (epoch {at.epoch + 1})")
        _say_if_replanned(run, scheduler, steps)
    else:
        run.evaluate(optimizer.param_groups[0]["lr"])
    options = dict(
        total=s.epochs * steps, initial=at.step, desc="training", unit="step"
    )
    with tqdm(**options, disable=not s.progress, file=sys.stderr) as bar:
        for epoch in range(at.epoch, s.epochs):
            stop, done = _train_epoch(run, train_loader, epoch, callbacks, bar)
            finished = done == steps
            if finished and s.sample_prompt:
                run.sample(epoch)
            last = stop or epoch + 1 == s.epochs
            if checkpoint_dir and (last or (finished and run.checkpoint_due(False))):
                run.save(*((epoch + 1, 0) if finished else (epoch, done)))
            if stop:
                break
    return at.history


# %% [markdown]
# Is `train()` the naive loop plus bookkeeping, and nothing else? On a tiny model with dropout on (so the
# random number stream matters too) and an unshuffled loader (so both see the same order), the two loss
# sequences must agree **exactly**, not just to rounding:

# %%
tiny = GPT2Config.preset("tiny", context_length=64)
small_loader = create_dataloader(
    tokenizer.encode(train_text), batch_size=2, context_length=64, shuffle=False
)
small_val = create_dataloader(
    tokenizer.encode(val_text),
    batch_size=2,
    context_length=64,
    shuffle=False,
    drop_last=False,
)

set_seed(123)
m = GPT2(tiny)
naive_losses = train_naive(
    m,
    small_loader,
    torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1),
    epochs=2,
)

set_seed(123)
m = GPT2(tiny)
h = train(
    m,
    small_loader,
    small_val,
    torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.1),
    epochs=2,
    progress=False,
    verbose=False,
)
print(
    f"{len(naive_losses)} steps; "
    f"first 4 losses: {[round(v, 3) for v in naive_losses[:4]]}"
)
print("train() == train_naive(), bit for bit:", h.step_loss == naive_losses)
assert h.step_loss == naive_losses

# %% [markdown]
# And the divergence check. A learning rate of $10^{6}$ blows the weights up within a couple of steps; the
# run stops at the first non-finite loss and says where:

# %%
set_seed(123)
m = GPT2(tiny)
try:
    train(
        m,
        small_loader,
        small_val,
        torch.optim.SGD(m.parameters(), lr=1e6),
        progress=False,
        verbose=False,
    )
except NonFiniteLossError as err:
    print(f"{type(err).__name__}: {err}")
    assert err.step <= 5

# %% [markdown]
# ### AdamW, written out
#
# Every run below uses AdamW (Loshchilov & Hutter, 2019). For each weight $w$ with gradient $g_t$
# at step $t$ it keeps two running averages:
#
# * the **momentum** $m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t$, a smoothed gradient direction
#   ($\beta_1 = 0.9$);
# * the **second moment** $v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2$, a running estimate of the
#   gradient's scale for that one weight ($\beta_2 = 0.999$).
#
# Both start at 0, so for the first steps they are biased towards 0; **bias correction** divides
# them by $1-\beta^t$. The update is then
#
# $$w \leftarrow w - \eta\lambda\, w - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},
#   \qquad \hat m_t = \frac{m_t}{1-\beta_1^t},\ \hat v_t = \frac{v_t}{1-\beta_2^t}.$$
#
# Dividing by $\sqrt{\hat v_t}$ gives every weight a step of about $\eta$, whatever the size of its
# gradient. The **decoupled** weight decay $\eta\lambda w$ is the "W": it is not added to the
# gradient (as L2 regularisation in plain Adam is), so it is not divided by $\sqrt{\hat v_t}$, and
# every weight shrinks by the same factor $1 - \eta\lambda$ per step. Written out by hand (a
# teaching version; chapter 6 exports one):


# %%
def adamw_step(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
    """One AdamW step by hand, in place. `state` holds m, v and the step count."""
    beta1, beta2 = betas
    state["t"] = t = state.get("t", 0) + 1
    for i, w in enumerate(params):
        g = w.grad
        m = state.setdefault(("m", i), torch.zeros_like(w))
        v = state.setdefault(("v", i), torch.zeros_like(w))
        m.mul_(beta1).add_(g, alpha=1 - beta1)  # momentum
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # second moment
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # bias correction
        with torch.no_grad():
            w.mul_(1 - lr * weight_decay)  # decoupled weight decay
            w.sub_(lr * m_hat / (v_hat.sqrt() + eps))


# %% [markdown]
# Three steps on the tiny model in float64, against `torch.optim.AdamW` on an identical copy:

# %%
torch.manual_seed(123)
by_hand = GPT2(tiny).double().eval()  # eval: no dropout, so both see the same loss
by_torch = copy.deepcopy(by_hand)
opt_torch = torch.optim.AdamW(by_torch.parameters(), lr=1e-3, weight_decay=0.1)
state, (x, y) = {}, next(iter(small_loader))
for _ in range(3):
    for m in (by_hand, by_torch):
        m.zero_grad()
        calc_loss_batch(m, x, y).backward()
    adamw_step(list(by_hand.parameters()), state, lr=1e-3)
    opt_torch.step()
pairs = zip(by_hand.parameters(), by_torch.parameters())
diff = max((a - b).abs().max().item() for a, b in pairs)
assert diff < 1e-12  # float64: the two differ only in the order of a few roundings
print("after 3 steps: max |by hand - torch.optim.AdamW| < 1e-12")

# %% [markdown]
# ## 5.6 The run: GPT-2 124M on *The Verdict*, 30 epochs
#
# The settings are rasbt's: context 256, batch size 2, AdamW with learning rate $4\cdot10^{-4}$ and weight
# decay 0.1, dropout 0.1, seed 123, 5 batches to estimate the training loss. Two differences in the
# bookkeeping: we evaluate once per epoch (every 9 steps; rasbt evaluates every 5), and we train for 30
# epochs instead of 10, to see the whole overfitting story. After each epoch the model continues
# "Justice is served when" greedily.
#
# The model has 123.8M parameters rather than GPT-2's 124.4M, and the difference is exactly the
# position table: with a context of 256, `wpe` has 256 rows instead of 1,024.

# %%
with torch.device("meta"):  # shapes only, no memory
    n_1024 = GPT2(GPT2Config()).num_params()
    n_256 = GPT2(course_config).num_params()
rows = GPT2Config().context_length - course_config.context_length
print(f"context 1024: {n_1024:,} parameters; context 256: {n_256:,}")
print(
    f"difference {n_1024 - n_256:,} = {rows} position rows x {course_config.d_model} "
    "dims"
)
assert n_1024 - n_256 == rows * course_config.d_model

# %% [markdown]
# One speed setting: `fused=True` makes AdamW update all 12 × 12 + 4 = 148 parameter tensors (12 per
# block, plus the two embeddings and the final LayerNorm's two) in one kernel instead of a Python
# loop over them. Same update rule, less overhead; on a CPU the difference is noticeable.

# %%
# NBVAL_IGNORE_OUTPUT
# 124M: the main run (30 epochs), two 10-epoch comparison runs, two 3-epoch ablations
MODEL, EPOCHS, COMPARE_EPOCHS, STUDY_EPOCHS = full_or_quick(
    full=(course_config, 30, 10, 3),
    quick=(GPT2Config.preset("tiny", context_length=256), 2, 1, 1),
    what="a tiny model (d_model 32, 2 layers), 2 epochs, 1-epoch comparison runs",
)
LR, WEIGHT_DECAY, PROMPT = 4e-4, 0.1, "Justice is served when"

# %%
# NBVAL_IGNORE_OUTPUT
set_seed(123)
model = GPT2(MODEL).to(device)
optimizer = torch.optim.AdamW(
    model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True
)
print(
    f"{sum(p.numel() for p in model.parameters()):,} parameters, {EPOCHS} epochs of "
    f"{len(train_loader)} steps"
)
t0 = time.perf_counter()
history = train(
    model,
    train_loader,
    val_loader,
    optimizer,
    epochs=EPOCHS,
    eval_iters=5,
    sample_prompt=PROMPT,
    seed=123,
    progress=False,  # one printed line per epoch instead of a progress bar
)
elapsed = time.perf_counter() - t0
tok_s = history.tokens_seen[-1] / elapsed
print(
    f"{history.step[-1]} steps, {history.tokens_seen[-1]:,} tokens "
    f"in {elapsed / 60:.1f} min "
    f"({tok_s:.0f} tokens/s, evaluation and samples included, on {device})"
)
assert history.train_loss[-1] < history.train_loss[0] and math.isfinite(
    history.val_loss[-1]
)
assert min(history.val_loss) < history.val_loss[0]

# %% [markdown]
# The greedy samples tell the story before any plot does. For the first epochs the model
# continues with the most frequent tokens of the story, commas, newlines, "the", "I", over and
# over: it has learned which tokens are common, and greedy decoding repeats the likeliest one.
# Later the story's names appear, and by the last epoch it strings together fragments of
# Wharton's phrases. When does each name first appear in a sample?

# %%
# NBVAL_IGNORE_OUTPUT
for name in ("Gisburn", "Jack", "Mrs."):
    epoch = next((i + 1 for i, (_, t) in enumerate(history.samples) if name in t), None)
    print(f"{name!r:10} first appears in the sample after epoch {epoch}")

# %% [markdown]
# Sampled at temperature 0.8 instead of greedily, the trained model writes (a fixed seed, so the
# text is reproducible on this machine):

# %%
# NBVAL_IGNORE_OUTPUT
print(model.generate(PROMPT, max_length=50, temperature=0.8, seed=123))

# %% [markdown]
# ## 5.7 Loss curves
#
# Two x-axes: tokens seen (what the model has actually consumed) below, epochs above. The right panel shows
# the same numbers as perplexity on a log scale.


# %%
def plot_losses(history, title, ax=None, label="", style="-"):
    ax = ax or plt.gca()
    ax.plot(
        history.tokens_seen,
        history.train_loss,
        style,
        color="C0",
        label=f"train{label}",
    )
    ax.plot(
        history.tokens_seen, history.val_loss, style, color="C1", label=f"val{label}"
    )
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    tokens_per_epoch = history.tokens_seen[-1] / history.epoch[-1]
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda t: t / tokens_per_epoch, lambda e: e * tokens_per_epoch),
    )
    top.set_xlabel("epochs")
    ax.legend()


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
plot_losses(history, "GPT-2 on The Verdict: loss", ax1)
ax1.axhline(math.log(50257), color="grey", lw=0.8, ls=":")
ax1.text(
    0, math.log(50257) + 0.15, "ln 50257 (uniform guess)", color="grey", fontsize=8
)
ax2.semilogy(
    history.tokens_seen,
    [perplexity(v) for v in history.train_loss],
    color="C0",
    label="train",
)
ax2.semilogy(
    history.tokens_seen,
    [perplexity(v) for v in history.val_loss],
    color="C1",
    label="val",
)
ax2.set_xlabel("tokens seen")
ax2.set_ylabel("perplexity (log scale)")
ax2.set_title("perplexity")
ax2.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### What does a validation loss of 6 mean?
#
# Before reading the curve, a yardstick that needs no neural network at all: predict every token with its
# frequency in the training split, ignoring what came before it (a **unigram** model). Its cross-entropy on
# the validation split is the loss of "knowing which tokens are common, and nothing about order". Tokens
# that never occur in the training split need some probability, or one of them costs an infinite loss: we
# add a pseudo-count $\alpha$ to every vocabulary entry.

# %%
train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
counts = Counter(train_ids)
V = 50257


def unigram_loss(ids, alpha):
    return -sum(
        math.log((counts[t] + alpha) / (len(train_ids) + alpha * V)) for t in ids
    ) / len(ids)


unseen = sum(counts[t] == 0 for t in val_ids)
print(
    f"{len(counts):,} distinct tokens in the train split; {unseen} of the "
    f"{len(val_ids)} val tokens never occur in it"
)
for alpha in (1.0, 0.1, 0.01):
    print(
        f"unigram, alpha = {alpha:<4}: train {unigram_loss(train_ids, alpha):.3f}, "
        f"val {unigram_loss(val_ids, alpha):.3f}"
    )
unigram_val = unigram_loss(val_ids, 0.01)

# %% [markdown]
# ### Where does it overfit?


# %%
# NBVAL_IGNORE_OUTPUT
def describe(h, label):
    best = min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
    print(
        f"{label}: val minimum {h.val_loss[best]:.3f} at epoch {h.epoch[best]:.0f} "
        f"(step {h.step[best]}, "
        f"{h.tokens_seen[best]:,} tokens), train loss there {h.train_loss[best]:.3f}"
    )
    return best


def first_epochs(h, epochs):
    """The History of the first `epochs` epochs of a run evaluated once per epoch."""
    d, steps = h.to_dict(), epochs * len(train_loader)
    return History(
        **{
            k: d[k][: epochs + 1]
            for k in ("step", "epoch", "tokens_seen", "train_loss", "val_loss", "lr")
        },
        **{k: d[k][:steps] for k in ("step_loss", "step_lr", "grad_norm")},
        samples=d["samples"][:epochs],
    )


best = describe(history, "main run")
after = history.val_loss[best + 1 : best + 4]
print(f"next evaluations after the minimum: {[round(v, 3) for v in after]}")
gap = next(
    (
        i
        for i, (t, v) in enumerate(zip(history.train_loss, history.val_loss))
        if v - t > 1.0
    ),
    None,
)
print(
    f"val exceeds train by > 1 nat from epoch {history.epoch[gap]:.0f} on"
    if gap is not None
    else "no gap > 1 nat"
)
at10 = history.epoch.index(10) if 10 in history.epoch else len(history.epoch) - 1
print(
    f"epoch {history.epoch[at10]:.0f}: train {history.train_loss[at10]:.3f}, val "
    f"{history.val_loss[at10]:.3f}"
)
print(
    f"epoch {history.epoch[-1]:.0f}: train {history.train_loss[-1]:.3f}, val "
    f"{history.val_loss[-1]:.3f} "
    f"(perplexity {perplexity(history.train_loss[-1]):.2f} / "
    f"{perplexity(history.val_loss[-1]):,.0f})"
)
assert history.val_loss[best] <= history.val_loss[0]

# %% [markdown]
# The run has three phases.
#
# 1. **Epochs 0–2: word frequencies.** The loss falls from 10.9 to 6.35 (train) and 6.69 (val). That is
#    the unigram model's level (train 6.108, val 6.646 with $\alpha = 0.01$): the model has learned which tokens
#    are common and little else, which is exactly what the greedy samples showed.
# 2. **Epochs 3–13: a plateau.** The training loss creeps from 6.17 to 5.50; the validation loss wanders
#    between 6.555 and 6.856 and reaches its minimum, **6.555 at epoch 13** (step 117). Even at its best, the
#    model predicts the held-out text barely better than word counts do (6.646).
# 3. **Epochs 13–30: memorisation.** From the minimum on, validation turns up (6.596, 6.634, 6.575 at the
#    next evaluations, then steadily higher) while the training loss drops to **1.366** at epoch 30, a
#    perplexity of 3.92: at each position the model hesitates between about four tokens of a text it has
#    seen 30 times. Validation ends at **7.836** (perplexity 2,530), worse than the unigram model, and
#    from epoch 13 on it exceeds the training loss by more than a nat. The model has stopped learning
#    English and started learning this text.
#
# Validation is only two windows of 256 tokens, so its curve is noisy: read the wiggles between evaluations
# (6.555, 6.596, 6.634, 6.575 around the minimum) as noise, the trend as signal.

# %% [markdown]
# ### Against a bigram counter
#
# A second yardstick, one step up from word counts: predict each token from the one before it by
# counting pairs in the training split. A pair seen once in 4,612 tokens says little, so the
# estimate is mixed with the unigram one:
# $p(b \mid a) = \lambda\, \frac{n(a, b)}{n(a)} + (1 - \lambda)\, p_{\text{unigram}}(b)$.

# %%
pairs = Counter(zip(train_ids[:-1], train_ids[1:]))


def bigram_loss(ids, lam, alpha=0.01):
    total = 0.0
    for a, b in zip(ids[:-1], ids[1:]):
        p_bigram = pairs[a, b] / counts[a] if counts[a] else 0.0
        p_unigram = (counts[b] + alpha) / (len(train_ids) + alpha * V)
        total -= math.log(lam * p_bigram + (1 - lam) * p_unigram)
    return total / (len(ids) - 1)


for lam in (0.3, 0.5, 0.7):
    print(
        f"bigram, lambda = {lam}: train {bigram_loss(train_ids, lam):.3f}, "
        f"val {bigram_loss(val_ids, lam):.3f}"
    )
bigram_val = bigram_loss(val_ids, 0.3)

# %%
# NBVAL_IGNORE_OUTPUT
print(f"GPT-2 124M, best val loss of the run: {min(history.val_loss):.3f}")
print(f"bigram counter (lambda 0.3), val:     {bigram_val:.3f}")
print(f"unigram counter (alpha 0.01), val:    {unigram_val:.3f}")

# %% [markdown]
# Said plainly: **our 124M-parameter GPT-2 loses to counting pairs of tokens.** Its best
# validation loss, 6.555, is worse than the bigram counter's 5.937, and only a little better than
# the unigram counter's 6.646. The reason is the data, not the model: 4,612 training tokens are
# far too few for 124 million parameters to learn English from, so the model learns the order of
# *this* text instead and memorises it. Two things fix that, and later chapters do both: far more
# text (chapter 9 trains on a corpus of your own), and weights that were already trained on
# billions of tokens (chapter 7 loads OpenAI's GPT-2). The counts overfit too: the more we trust
# them (larger $\lambda$), the lower the training loss and the higher the validation loss.

# %% [markdown]
# ### Against the reference run
#
# Our run and rasbt's use the same text, split, context, batch size, optimizer settings, dropout and number
# of layers and heads. After 10 epochs his model has memorised the training text (train 0.391); ours is
# still on the plateau (5.883):

# %%
# NBVAL_IGNORE_OUTPUT
rows = [
    ("rasbt, LLMs-from-scratch ch. 5", "10", "0.391", "6.452", "≈ 6.1"),
    (
        f"this chapter, epoch {history.epoch[at10]:.0f}",
        f"{history.epoch[at10]:.0f}",
        f"{history.train_loss[at10]:.3f}",
        f"{history.val_loss[at10]:.3f}",
        f"{min(history.val_loss[: at10 + 1]):.3f}",
    ),
    (
        f"this chapter, epoch {history.epoch[-1]:.0f}",
        f"{history.epoch[-1]:.0f}",
        f"{history.train_loss[-1]:.3f}",
        f"{history.val_loss[-1]:.3f}",
        f"{min(history.val_loss):.3f}",
    ),
]
print(f"{'run':34} {'epochs':>6} {'train':>7} {'val':>7} {'val min':>8}")
for row in rows:
    print(f"{row[0]:34} {row[1]:>6} {row[2]:>7} {row[3]:>7} {row[4]:>8}")

# %% [markdown]
# ### Why the gap: initialisation
#
# Three things differ between rasbt's `GPTModel` and our `GPT2`, and the cell below prints the one that
# matters:
#
# * his output head is a separate matrix (162.4M parameters at context 256); ours is tied to the token
#   embedding (123.8M);
# * his q/k/v projections have no bias;
# * he keeps **PyTorch's default initialisation**: `nn.Embedding` draws from $\mathcal{N}(0, 1)$ and
#   `nn.Linear` from a Kaiming-uniform distribution, while GPT-2 (and our chapter 4) draws every weight
#   from $\mathcal{N}(0, 0.02)$ and scales the residual projections down further.
#
# So his token embeddings start 50 times larger: each row has norm 27.7 instead of 0.55.


# %%
def pytorch_default_init(model):
    """Re-initialise like a plain PyTorch model (rasbt's GPTModel): N(0, 1) embeddings,
    Kaiming-uniform linears.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.reset_parameters()
    return model


rasbt_config = GPT2Config(
    **{**MODEL.to_dict(), "tie_weights": False, "qkv_bias": False}
)
torch.manual_seed(123)
ours, theirs = (
    GPT2(course_config),
    pytorch_default_init(
        GPT2(
            GPT2Config(
                **{**course_config.to_dict(), "tie_weights": False, "qkv_bias": False}
            )
        )
    ),
)
for name, m in (("GPT-2 init (ours)", ours), ("PyTorch default init (rasbt)", theirs)):
    row_norm = m.wte.weight.norm(dim=1).mean().item()
    print(
        f"{name:29}: {sum(p.numel() for p in m.parameters()) / 1e6:5.1f}M parameters, "
        "token embedding std "
        f"{m.wte.weight.std().item():.3f} (row norm {row_norm:5.2f}), lm_head std "
        f"{m.lm_head.weight.std().item():.3f}"
    )
del ours, theirs

# %% [markdown]
# A token embedding of norm 27.7 dominates the residual stream from the first step: every token arrives as
# a large, nearly orthogonal random vector, a ready-made key that the layers above only have to wire to the
# next token. That is ideal for memorising a short text. With GPT-2's small initialisation, the tied
# embedding must first grow, while doubling as the output matrix, and for the first 90 steps the model sits
# on the word-frequency plateau. To check that this, and not a bug, explains the gap, we rebuild rasbt's
# model (untied, no q/k/v bias, PyTorch's default initialisation) from our own modules and train it with
# everything else unchanged, for 10 epochs:

# %%
# NBVAL_IGNORE_OUTPUT
set_seed(123)
model_r = pytorch_default_init(GPT2(rasbt_config)).to(device)
optimizer_r = torch.optim.AdamW(
    model_r.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True
)
t0 = time.perf_counter()
history_r = train(
    model_r,
    train_loader,
    val_loader,
    optimizer_r,
    epochs=COMPARE_EPOCHS,
    eval_iters=5,
    sample_prompt=PROMPT,
    seed=123,
    progress=False,
)
print(f"{COMPARE_EPOCHS} epochs in {(time.perf_counter() - t0) / 60:.1f} min")
assert history_r.train_loss[-1] < history_r.train_loss[0] and math.isfinite(
    history_r.val_loss[-1]
)

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(7, 4.2))
plot_losses(
    first_epochs(history, COMPARE_EPOCHS),
    f"first {COMPARE_EPOCHS} epochs",
    ax,
    label=" (GPT-2 init)",
    style="--",
)
plot_losses(
    history_r,
    f"first {COMPARE_EPOCHS} epochs",
    ax,
    label=" (PyTorch default init, untied)",
)
ax.axhline(unigram_loss(train_ids, 0.01), color="grey", lw=0.8, ls=":")
ax.text(
    0,
    unigram_loss(train_ids, 0.01) + 0.15,
    "unigram model, train",
    color="grey",
    fontsize=8,
)
plt.tight_layout()
plt.show()
describe(history_r, "PyTorch default init, untied")
print(
    f"epoch {history_r.epoch[-1]:.0f}: train {history_r.train_loss[-1]:.3f}, val "
    f"{history_r.val_loss[-1]:.3f}   "
    f"(rasbt: train 0.391, val 6.452, val minimum about 6.1)"
)

# %% [markdown]
# With rasbt's initialisation our code reproduces his run closely: after 10 epochs, train 0.560 and val
# 6.484 (his: 0.391 and 6.452), with the validation minimum, 6.182, at epoch 5 (his: about
# 6.1), and samples that stitch together the story's own phrases ("a little wild--I felt nervous and
# uncertain" is Wharton's). Close, not equal: at epoch 10 the training loss is still falling fast (0.917 at
# epoch 9, 0.560 at epoch 10), so a small difference in pace shows up as a visible gap, and the pace depends
# on things we did not copy: his batch order and dropout masks come from other random streams, and he estimates the training
# loss on 5 *random* batches every 5 steps where we use 5 fixed batches once per epoch.
#
# Which initialisation is "right"? For memorising 4,612 tokens, the large one, plainly; it also reaches the
# lower validation loss (6.182 against 6.555). GPT-2's small initialisation is the one OpenAI trained with on
# its large web corpus, and its pretrained weights (chapter 7) assume our architecture with tied embeddings;
# on one short story it simply learns more slowly. And neither model predicts the last 10% of the story from
# the first 90% much better than the unigram yardstick (6.646); exercise 1 shows that counting pairs of
# tokens does better than both.

# %% [markdown]
# ## 5.8 Beyond the reference: warm-up, cosine decay and gradient clipping
#
# A constant learning rate is the simplest choice, not the usual one. GPT-3 (Brown et al., 2020,
# appendix B) and nanoGPT use the three ingredients below; the GPT-2 paper does not state its
# schedule.
#
# * **linear warm-up**: start near 0 and ramp up over the first steps, while Adam's second-moment estimates
#   are still poor and the first gradients are the largest;
# * **cosine decay** from the peak down to a floor (here 10% of the peak) at the last step, so the final
#   steps take small, careful moves;
# * **gradient clipping**: rescale the whole gradient when its norm exceeds a threshold (1.0), so one
#   outlier batch cannot throw the weights far away.
#
# The schedule is a multiplier for PyTorch's `LambdaLR`. It is a small class rather than a lambda because
# `LambdaLR.state_dict()` saves a callable object's attributes (and nothing of a lambda), which is what lets
# a checkpoint restore the schedule.


# %%
#| export
class WarmupCosine:
    """Learning-rate multiplier: linear warm-up to 1 over `warmup_steps`, cosine decay
    to `min_ratio` at `total_steps`, then flat. Use through `warmup_cosine()` (a
    LambdaLR).
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(
                "need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                f"got warmup_steps {warmup_steps} and total_steps {total_steps}"
            )
        if not 0 <= min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
        self.warmup_steps, self.total_steps, self.min_ratio = (
            warmup_steps,
            total_steps,
            min_ratio,
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (
                step + 1
            ) / self.warmup_steps  # never exactly 0: the first step already learns
        if step >= self.total_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / (
            self.total_steps - self.warmup_steps
        )  # in [0, 1)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warm-up + cosine decay of every param group's learning rate, stepped once
    per optimizer step.
    """
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))


# %%
# NBVAL_IGNORE_OUTPUT
total_steps = COMPARE_EPOCHS * len(train_loader)
warmup_steps = max(1, total_steps // 10)
schedule = WarmupCosine(warmup_steps, total_steps, 0.1)
lrs = [LR * schedule(s) for s in range(total_steps)]
print(
    f"{total_steps} steps, {warmup_steps} of warm-up: lr {lrs[0]:.1e} -> "
    f"{max(lrs):.1e} -> {lrs[-1]:.1e}"
)
plt.figure(figsize=(6, 2.5))
plt.plot(range(1, total_steps + 1), lrs)
plt.xlabel("step")
plt.ylabel("learning rate")
plt.title("linear warm-up + cosine decay")
plt.tight_layout()
plt.show()

# %% [markdown]
# The comparison run trains the same model from the same initial weights, on the same batches in the same
# order, for the first 10 epochs (90 steps, the reference run's length), with the same peak learning rate.
# Only the schedule and the clipping differ. The constant-rate run needs no rerun: with a constant learning
# rate, the first 10 epochs of the 30-epoch run above *are* a 10-epoch run.

# %%
# NBVAL_IGNORE_OUTPUT
set_seed(123)
model_s = GPT2(MODEL).to(device)
optimizer_s = torch.optim.AdamW(
    model_s.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=True
)
t0 = time.perf_counter()
history_s = train(
    model_s,
    train_loader,
    val_loader,
    optimizer_s,
    epochs=COMPARE_EPOCHS,
    eval_iters=5,
    scheduler=warmup_cosine(optimizer_s, warmup_steps, total_steps, 0.1),
    grad_clip=1.0,
    sample_prompt=PROMPT,
    seed=123,
    progress=False,
)
print(f"{COMPARE_EPOCHS} epochs in {(time.perf_counter() - t0) / 60:.1f} min")
assert history_s.train_loss[-1] < history_s.train_loss[0] and math.isfinite(
    history_s.val_loss[-1]
)

# %%
# NBVAL_IGNORE_OUTPUT
plain = first_epochs(
    history, COMPARE_EPOCHS
)  # the constant-lr run, cut at COMPARE_EPOCHS
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
plot_losses(
    plain, f"first {COMPARE_EPOCHS} epochs", ax1, label=" (constant lr)", style="--"
)
plot_losses(
    history_s, f"first {COMPARE_EPOCHS} epochs", ax1, label=" (warm-up + cosine + clip)"
)
ax2.plot(plain.grad_norm, "--", color="grey", label="constant lr")
ax2.plot(history_s.grad_norm, color="C2", label="warm-up + cosine + clip")
ax2.axhline(1.0, color="black", lw=0.8, ls=":")
ax2.set_yscale("log")
ax2.set_xlabel("step")
ax2.set_ylabel("gradient norm (before clipping)")
ax2.legend()
plt.tight_layout()
plt.show()
best_p, best_s = (
    describe(plain, "constant lr         "),
    describe(history_s, "warm-up+cosine+clip "),
)
for label, h in (("constant lr         ", plain), ("warm-up+cosine+clip ", history_s)):
    clipped = sum(g > 1.0 for g in h.grad_norm)
    norms = sorted(h.grad_norm)
    print(
        f"{label}: final train {h.train_loss[-1]:.3f}, val {h.val_loss[-1]:.3f}; "
        "gradient norm > 1 in "
        f"{clipped}/{len(norms)} steps (min {norms[0]:.2f}, "
        f"median {norms[len(norms) // 2]:.2f}, max {norms[-1]:.2f})"
    )

# %% [markdown]
# With the same peak learning rate, the warm-up + cosine + clipping run gets much further in 10 epochs:
# train 4.137 instead of 5.883, validation 6.405 instead of 6.696, and a validation minimum of 6.391 (epoch 8)
# instead of 6.682.
#
# Which ingredient did it? The printout holds a clue. The gradient norm was above 1.0 at every one of the 90
# steps in both runs (median 1.52 and 2.65, largest 17.34), so clipping rescaled every single gradient. A
# rescaling that were the same at every step would cancel in AdamW, which divides each gradient by the
# root-mean-square of past gradients; a rescaling that varies does not. With $\beta_2 = 0.999$, AdamW's
# second-moment estimate is, over a run of only 90 steps, close to the plain average of *all* squared
# gradients so far, so a few large early gradients keep every later update small. Clipping caps those
# gradients; warm-up keeps the early steps small while the estimates rest on a handful of gradients; the
# cosine decay makes the last steps careful. All three push the same way, and with one run each we cannot
# say how much each contributed (that would take more 124M runs than this CPU affords), only that together
# they clearly helped here.
#
# ## 5.9 Dropout and weight decay, measured
#
# Two regularisers are on in every run above: dropout 0.1 and weight decay 0.1. What do they buy? A quick
# calculation first. AdamW's decoupled weight decay multiplies every weight by $(1 - \text{lr}\cdot\lambda)$
# each step, independent of the gradient:

# %%
shrink_ref = (1 - LR * WEIGHT_DECAY) ** 90
shrink_long = (1 - LR * WEIGHT_DECAY) ** 270
print(
    f"(1 - lr*wd)^steps: after 90 steps {shrink_ref:.4f}, after 270 steps "
    f"{shrink_long:.4f}"
)

# %% [markdown]
# Weight decay can shrink the weights by at most about 1% over the whole 30-epoch run, and the gradient
# pushes back every step. Decay is a regulariser for runs of hundreds of thousands of steps. Dropout, on the
# other hand, changes every step. To measure instead of guess, we train the same 124M model twice more,
# once without dropout and once without weight decay, for 3 epochs each (what we can afford: 124M steps are
# slow here), and compare with the first 3 epochs of the main run: same initial weights, same batches in the
# same order.

# %%
# NBVAL_IGNORE_OUTPUT
study = {(0.1, 0.1): first_epochs(history, STUDY_EPOCHS)}
for dropout, weight_decay in ((0.0, 0.1), (0.1, 0.0)):
    set_seed(123)
    m = GPT2(GPT2Config(**{**MODEL.to_dict(), "dropout": dropout})).to(device)
    opt = torch.optim.AdamW(
        m.parameters(), lr=LR, weight_decay=weight_decay, fused=True
    )
    t0 = time.perf_counter()
    study[dropout, weight_decay] = train(
        m,
        train_loader,
        val_loader,
        opt,
        epochs=STUDY_EPOCHS,
        eval_iters=5,
        seed=123,
        verbose=False,
        progress=False,
    )
    print(
        f"dropout {dropout}, weight decay {weight_decay}: {STUDY_EPOCHS} epochs in "
        f"{(time.perf_counter() - t0) / 60:.1f} min"
    )
print(f"{'':28}" + "".join(f"{'epoch ' + str(e):>9}" for e in range(STUDY_EPOCHS + 1)))
for (dropout, weight_decay), h in study.items():
    label = f"dropout {dropout}, wd {weight_decay}"
    print(f"{label + ', val':28}" + "".join(f"{v:9.3f}" for v in h.val_loss))
    print(f"{label + ', train':28}" + "".join(f"{v:9.3f}" for v in h.train_loss))
    assert h.train_loss[-1] < h.train_loss[0] and math.isfinite(h.val_loss[-1])

# %% [markdown]
# Over these first 3 epochs neither switch makes a measurable difference: the losses differ in
# the third decimal at most (epoch 3 val: 6.699 with both, 6.693 without dropout, 6.700 without
# weight decay), well inside the noise of a two-window validation set. That is all this
# experiment shows, and it is a statement about the first 3 epochs only. Weight decay did what
# the arithmetic predicted. Dropout's job is to make memorisation harder, so if it matters it
# will show in the memorisation phase (after epoch 13 here), which we cannot afford to train
# three more times on two CPU cores; we have not measured that, so we do not claim it.
#
# ## 5.10 Checkpoints and resume
#
# A long run must survive a crash or a Ctrl-C. `train()` saves a checkpoint every epoch (or every
# `checkpoint_every` steps) with `checkpoint_dir=`, and `resume_from=` continues from one. A
# checkpoint holds everything the next step depends on: the weights, AdamW's two moments, the
# schedule, every random state (dropout masks) and the position in the shuffled data. Resumed,
# the run continues **bit for bit** as if it had never stopped. The files are safetensors + JSON
# (no pickle, so loading a checkpoint cannot run code), written atomically so that a crash in the
# middle of a save leaves the previous checkpoint intact. How, and the experiments that prove it,
# are in [Appendix A](A_engineering.ipynb), section A.4.

# %% [markdown]
# ## 5.11 The command line
#
# `python -m gpt2scratch` wraps all of this. Its defaults are `RECIPE`, the run of section 5.8
# (warm-up + cosine decay, clipping at 1.0); `--schedule constant --grad-clip 0` gives the plain
# run of section 5.6.
#
# ```
# python -m gpt2scratch train --data story.txt --model 124M --epochs 10 --out runs/story
# python -m gpt2scratch train --data story.txt --epochs 10 --resume runs/story
# python -m gpt2scratch generate --checkpoint runs/story "Justice is served when" \
#     --max-length 100 --temperature 0.8
# python -m gpt2scratch run      # = make run: the course model on The Verdict, then a sample
# ```
#
# Between the parsed arguments and `train()` sits one function, `prepare_run`: from a
# `TrainSettings` and a text it builds the loaders, the model, AdamW and the schedule, or, given
# a checkpoint to resume, the model its config describes. Everything that can fail on bad input
# fails here, before any training.


# %%
#| export
@dataclass
class Run:
    """What `prepare_run` builds: everything `train()` needs."""

    settings: TrainSettings
    config: GPT2Config
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None
    train_loader: DataLoader
    val_loader: DataLoader


# %% [markdown]
# `model=` starts from weights you already have (fine-tuning, chapters 7 and 9), and
# `loaders=` from a corpus that is not one text (chapter 9).

# %%
#| export
def prepare_run(
    settings: TrainSettings,
    text: str | None = None,
    *,
    device=None,
    resume: str | Path | None = None,
    model: nn.Module | None = None,
    loaders: tuple[DataLoader, DataLoader] | None = None,
) -> Run:
    """Loaders, model, AdamW and schedule for `settings` on `text` (90/10 split).

    `model` starts from given weights (fine-tuning, chapters 7 and 9): its config wins
    over `settings.model`, and only parameters that require grad go into AdamW.
    `loaders` = (train, val) replaces the split of `text` (a corpus, chapter 9).
    """
    device = pick_device(device)
    if model is not None:
        config = model.config
        if settings.context_length > config.context_length:
            raise ValueError(
                f"context_length {settings.context_length} is longer than the "
                f"model's context of {config.context_length} tokens"
            )
    elif resume is not None:  # the checkpoint's model config wins
        _, manifest = read_manifest(resume)
        if manifest["config"] is None:
            raise ValueError(f"checkpoint {resume} holds no model config")
        config = GPT2Config.from_dict(manifest["config"])
    else:
        config = GPT2Config.preset(
            settings.model,
            context_length=settings.context_length,
            dropout=settings.dropout,
        )
    if loaders is None:
        if text is None:
            raise ValueError("prepare_run needs a text or loaders=(train, val)")
        window = settings.context_length if model is not None else config.context_length
        loaders = make_loaders(
            text,
            gpt2_encoding(),
            context_length=window,
            batch_size=settings.batch_size,
            seed=settings.seed,
        )
    set_seed(settings.seed)
    model = (GPT2(config) if model is None else model).to(device)
    optimizer = torch.optim.AdamW(  # fused: one kernel updates every tensor
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        fused=device.type in ("cpu", "cuda", "mps"),
    )
    scheduler = None
    if settings.schedule == "cosine":
        total = settings.epochs * len(loaders[0])
        scheduler = warmup_cosine(optimizer, max(1, total // 10), total, 0.1)
    return Run(settings, config, device, model, optimizer, scheduler, *loaders)


# %% [markdown]
# Bad input fails with one line and exit code 2, before any model is built (paths are printed
# relative to a scratch folder):

# %%
from gpt2scratch.__main__ import main  # noqa: E402

scratch = Path(tempfile.mkdtemp(prefix="ch05-cli-"))
(scratch / "short.txt").write_text("Justice is served when the story is long. " * 40)
(scratch / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
for name in ("missing.txt", "latin1.txt", "short.txt"):
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            main(["train", "--data", str(scratch / name)])
        except SystemExit as exit_:
            code = exit_.code
    print(f"exit {code}: {err.getvalue().strip().replace(str(scratch), '<scratch>')}")
    assert code == 2

# %% [markdown]
# ## 5.12 Sampling from the trained model
#
# The model ends the chapter as a next-token distribution: logits, divided by a **temperature**
# $T$, then softmax. $T < 1$ sharpens the distribution towards the likeliest tokens, $T > 1$
# flattens it. Three samples of the main run's model from the same prompt and the same seed:

# %%
# NBVAL_IGNORE_OUTPUT
for temperature in (0.7, 1.0, 1.2):
    text = model.generate(PROMPT, max_length=30, temperature=temperature, seed=123)
    print(f"T = {temperature}: {text!r}\n")

# %% [markdown]
# Where that difference comes from: the probabilities of the ten likeliest next tokens after the
# prompt, at each temperature.

# %%
# NBVAL_IGNORE_OUTPUT
model.eval()
with torch.no_grad():
    prompt_ids = torch.tensor([tokenizer.encode(PROMPT)], device=device)
    next_logits = model(prompt_ids)[0, -1].float().cpu()  # (V,)
top = next_logits.topk(10).indices
labels = [repr(tokenizer.decode([int(i)])) for i in top]
fig, ax = plt.subplots(figsize=(9, 3.2))
for k, temperature in enumerate((0.7, 1.0, 1.2)):
    probs = torch.softmax(next_logits / temperature, dim=-1)[top]
    ax.bar(
        [i + 0.27 * (k - 1) for i in range(10)],
        probs,
        width=0.27,
        label=f"T = {temperature}",
    )
    print(
        f"T = {temperature}: top-10 tokens hold {probs.sum().item():.0%} of the "
        "probability"
    )
ax.set_xticks(range(10), labels, rotation=30)
ax.set_ylabel("probability")
ax.set_title(f"next token after {PROMPT!r}")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Chapter 8 measures this trade-off properly (diversity against coherence, with top-k and top-p)
# and makes generation fast with a KV cache.
#
# ## 5.13 The model the next chapters start from
#
# Chapters 7 to 10 compare, sample and inspect "the chapter-5 model". They all get it from one
# function, `chapter5_model()`, so that the phrase means one thing: the checkpoint that `make run`
# leaves in `runs/verdict`, or else a small stand-in trained once on *The Verdict* and cached,
# with a label that says which one it is. Section A.7 of [Appendix A](A_engineering.ipynb) shows
# it.

# %% [markdown]
# ## Summary
#
# * **The loss** is the mean negative log-likelihood of the next token: log-softmax, pick the
#   target, average, negate (`F.cross_entropy` fuses the steps). An untrained GPT-2 scores about
#   $\ln V + \sigma^2/2$ (10.939 measured, 10.978 predicted, $\ln 50257 = 10.825$), the ceiling of
#   ignorance; perplexity $e^{\mathcal{L}}$ turns it into "choosing among how many tokens".
# * **The loop** is one `train_step` (forward, backward, clip, AdamW step) in a loop; the exported
#   `train()` adds evaluation in eval mode, samples, a schedule, a NaN/inf check and checkpoints,
#   and is asserted bit-identical to the naive loop. AdamW, written out by hand, matches
#   `torch.optim.AdamW` in float64.
# * **GPT-2 124M on 4,612 tokens** learns word frequencies in 2 epochs, sits on a plateau until
#   its validation minimum (6.555, epoch 13), then memorises: train 1.366, val 7.836 after 30
#   epochs. It loses to a bigram counter (5.937): this corpus is far too small.
# * **Against rasbt's reference** (train 0.391, val 6.452 after 10 epochs) the gap is the
#   initialisation: with his (PyTorch's defaults, untied head) our code gives 0.560 and 6.484.
# * **Warm-up + cosine decay + clipping** reaches train 4.137 / val 6.405 in 10 epochs instead of
#   5.883 / 6.696; dropout and weight decay made no measurable difference in the first 3 epochs.
# * **Checkpoints** resume a run bit for bit ([Appendix A](A_engineering.ipynb)), and the command
#   line `python -m gpt2scratch train|generate|run` wraps it all.
#
# Next: [Chapter 6](06_backprop.ipynb) computes the gradients that `loss.backward()` gave us here by hand, and
# [Appendix A](A_engineering.ipynb) shows the engineering under `train()`: atomic checkpoints,
# verified data files, and one error contract.
#
# ## Exercises
#
# **1. Temperature on a trained model.** Sample 5 continuations of the prompt at each of
# T = 0.5, 1.0 and 1.5 from the main run's model, and count the distinct tokens in each group.
# How does the count change with T, and why?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
for temperature in (0.5, 1.0, 1.5):
    tokens = set()
    for seed in range(5):
        text = model.generate(PROMPT, max_length=30, temperature=temperature, seed=seed)
        tokens.update(tokenizer.encode(text))
    print(f"T = {temperature}: {len(tokens)} distinct tokens in 5 samples")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Dividing the logits by a small T magnifies their differences, so the softmax piles its mass on
# a few tokens and the samples repeat them; a large T shrinks the differences, so rare tokens are
# drawn too and the count of distinct tokens grows. On an *untrained* model the logits are all
# nearly equal, so T changes almost nothing: that is why this exercise needs a trained model.
# ```
#
# **2. Early stopping.** Write a callback for `train()` that stops the run when the validation
# loss has not improved for 3 evaluations, and keeps a copy of the best weights. Try it on the
# tiny model.


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
class EarlyStopping:
    def __init__(self, model, patience=3):
        self.model, self.patience = model, patience
        self.best, self.best_step, self.bad, self.best_state = math.inf, None, 0, None

    def __call__(self, info):
        if info["val_loss"] is None:  # no evaluation at this step
            return False
        if info["val_loss"] < self.best:
            self.best, self.best_step, self.bad = info["val_loss"], info["step"], 0
            self.best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad += 1
        return self.bad >= self.patience


set_seed(123)
m = GPT2(GPT2Config.preset("tiny", context_length=256))
stopper = EarlyStopping(m)
opt = torch.optim.AdamW(m.parameters(), lr=4e-3, weight_decay=0.1)
h = train(
    m,
    train_loader,
    val_loader,
    opt,
    epochs=40,
    callbacks=[stopper],
    progress=False,
    verbose=False,
)
print(
    f"stopped after {h.step[-1]} steps (epoch {h.epoch[-1]:.0f}); "
    f"best val {stopper.best:.3f} at step {stopper.best_step}"
)
m.load_state_dict(stopper.best_state)
assert abs(evaluate(m, val_loader) - stopper.best) < 1e-4
assert h.step[-1] < 40 * len(train_loader)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The callback sees `val_loss` only at steps where `train()` evaluated; it counts evaluations
# without improvement and returns `True` to stop. Restoring `best_state` gives back the model of
# the best evaluation (checked above by re-evaluating it). `state_dict()` returns references:
# the `.clone()` is what keeps the best weights from being overwritten by later steps.
# ```
#
# **3. Resume with a different batch size.** Why does `train(..., resume_from=...)` refuse a
# loader with a different number of batches per epoch, instead of carrying on?
#
# ```{admonition} Solution
# :class: dropdown
# The checkpoint's position is "epoch $e$, batch $b$" in the order given by (seed, epoch). With
# another batch size the same $(e, b)$ names different windows: some would be trained twice in
# that epoch and others not at all, and the loss sequence could no longer match any
# uninterrupted run. Failing loudly, with a message that names both batch counts, is the honest
# behaviour.
# ```
