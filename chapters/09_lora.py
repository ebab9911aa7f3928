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
# # Chapter 9 — LoRA and your own domain's text
#
# Fine-tuning a model on your own text usually means training all of its weights again: for
# GPT-2 124M that is 124 million gradients and two AdamW moments each, four copies of the model
# in memory, and a checkpoint of 124 million × 4 bytes ≈ 500 MB for every domain you adapt it
# to. **LoRA** (Hu et al.,
# 2021, "Low-Rank Adaptation of Large Language Models") freezes the model and learns, next to
# some of its weight matrices, a *low-rank* correction $\Delta W = BA$ with a few thousand
# parameters. In this chapter we build it from scratch, check it against the library most people
# use (Hugging Face's `peft`), and put it against full fine-tuning on a model that already
# knows a language: the course's pretrained base, adapted to *The Verdict*, chapter 5's short
# story, and to a domain every reader already has on disk, the source code of Python's own
# standard library.
#
# The plan:
#
# 1. **The low-rank update**: $Wx + \frac{\alpha}{r} BAx$, naive (build $\Delta W$) and efficient
#    (never build it), and what scaling the update by $\alpha / r$ does as the rank grows.
# 2. **`LoRALinear` and `apply_lora`**: wrap chosen linear layers (a tied head included),
#    freeze the rest, count what trains; merge the adapters back into a plain `GPT2`; save and load just the adapter.
# 3. **Against `peft`**: the same $A$ and $B$ in our model and in `peft`'s LoRA on Hugging Face's
#    `GPT2LMHeadModel` give the same logits.
# 4. **Your own text**: a folder of files becomes a corpus: documents joined by `<|endoftext|>`,
#    a train/validation split by document, and tokens streamed to a memory-mapped file on disk.
# 5. **The experiment**: full fine-tuning against LoRA on *The Verdict*, each tuned on the
#    same grid of learning rates (trainable parameters, peak memory, validation loss, a sample,
#    and the time of a step, measured side by side); where the gap that remains comes from;
#    then the standard library as a second domain, and two adapters sharing one base model.
#
# The LoRA code is exported to `gpt2scratch/lora.py`; the corpus code, file plumbing, is in
# [Appendix A](A_engineering.ipynb). The command line gains `train --data FOLDER --glob ... --lora-rank R`.

# %%
#| default_exp lora

# %%
#| export
"""LoRA (Hu et al., 2021): low-rank adapters on GPT-2's linear layers.

Generated from chapter 09 of the book. `apply_lora` wraps chosen `nn.Linear` layers in
`LoRALinear` (a tied head also through `LoRAEmbedding`) and freezes everything else;
`merge_lora` folds the adapters back into a plain model; `save_adapter` /
`load_adapter` keep just the adapter; `train_and_save` loads a model, adds adapters
(or not), trains and saves, for the chapter and the CLI.

About 430 lines, past the house's 400: the adapter, its file format and the one recipe
that trains and measures it are read together in chapter 9, and the CLI uses all three.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gpt2scratch.checkpoint import LATEST, MANIFEST, load_checkpoint
from gpt2scratch.corpus import Corpus, corpus_loaders
from gpt2scratch.files import atomic_write
from gpt2scratch.measure import peak_memory_mb
from gpt2scratch.pretrained import load_pretrained
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.run import Run, TrainSettings, make_loaders, prepare_run
from gpt2scratch.runtime import set_seed
from gpt2scratch.train import History
from gpt2scratch.trainer import train_run
from gpt2scratch.validation import check_int, check_number

# %%
import copy
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np

from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.corpus import find_files, prepare_corpus
from gpt2scratch.course import pretrained_model
from gpt2scratch.data import verdict_text
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.bench_common import median_pairs, median_ratio
from gpt2scratch.train import evaluate, train_step

torch.set_printoptions(precision=4, sci_mode=False)
tokenizer = gpt2_encoding()

# %% [markdown]
# ## 9.1 The low-rank update
#
# A linear layer computes $y = Wx + b$ with $W$ of shape (out, in). Full fine-tuning learns a new
# $W' = W + \Delta W$, where $\Delta W$ has as many entries as $W$. The observation behind LoRA is
# that the change a fine-tuning run needs has a low *intrinsic rank*: it can be written as
# $\Delta W = BA$ with $B$ of shape (out, r), $A$ of shape (r, in), and a rank $r$ of 4 to 16
# instead of hundreds. The layer becomes
#
# $$y = Wx + b + \frac{\alpha}{r}\, B A x,$$
#
# with $W$ and $b$ frozen; only $A$ and $B$ train. A tiny example first, with numbers small
# enough to check by hand: a 4 → 6 layer and a rank-1 update.

# %%
torch.manual_seed(0)
W = torch.randn(6, 4)  # (out, in): the frozen weight
A = torch.randn(1, 4)  # (r, in)
B = torch.randn(6, 1)  # (out, r)
x = torch.randn(3, 4)  # 3 inputs

delta_W = B @ A  # naive: build the (out, in) update, then use it
naive = x @ (W + delta_W).T
efficient = x @ W.T + (x @ A.T) @ B.T  # never builds delta_W: (3, 1) then (3, 6)
print("rank of delta_W:", torch.linalg.matrix_rank(delta_W).item())
print(
    "entries in delta_W:",
    delta_W.numel(),
    " entries in A and B:",
    A.numel() + B.numel(),
)
print("max |naive - efficient|:", (naive - efficient).abs().max().item() < 1e-6)
assert torch.allclose(naive, efficient, atol=1e-6)

# %% [markdown]
# The efficient form never materialises $\Delta W$: it projects the input down to $r$ numbers
# with $A$ and back up with $B$. For GPT-2 124M's attention input projection `c_attn`
# (768 → 2,304) the saving is large, as the figure shows.

# %%
d_in, d_out = 768, 2304  # GPT-2 124M's attn.c_attn
ranks = [1, 2, 4, 8, 16, 32, 64]
lora_counts = [r * (d_in + d_out) for r in ranks]
for r, n in zip(ranks, lora_counts):
    if r in (4, 8, 16):
        print(
            f"rank {r:2d}: {n:7,} parameters = {n / (d_in * d_out):.2%} of {d_in * d_out:,}"
        )

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(ranks, lora_counts, "o-", label="LoRA: r (in + out)")
ax.axhline(d_in * d_out, color="C3", ls="--", label="full matrix: in x out")
ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="trainable parameters")
ax.set_xticks(ranks, [str(r) for r in ranks])
ax.set_title("One 768 x 2304 layer: what trains")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9.2 `LoRALinear`
#
# The module wraps an existing `nn.Linear` (the *base*), freezes it, and adds $A$ and $B$:
#
# * $B$ starts at **zero**, so $BA = 0$ and the wrapped layer computes exactly what the base did:
#   the model starts from the pretrained function, not from a perturbed one. $A$ starts random
#   (Kaiming-uniform, as `peft` does); if both started at zero, neither would get a gradient.
# * The update is scaled by $\alpha / r$. Adam moves every entry of $A$ and $B$ by about the
#   learning rate on its first steps, whatever the gradient's size, so the product $BA$, a sum
#   of $r$ rank-one terms, grows with $r$. The terms do not all point the same way, so the sum
#   grows more slowly than $r$, roughly like $\sqrt{r}$, and dividing by $r$ over-corrects: at
#   the same $\alpha$ and learning rate, a higher rank starts with a *smaller* update. The
#   LoRA paper chose $\alpha / r$ so that $\alpha$ need not be tuned again when $r$ changes;
#   rsLoRA (Kalajdzievski, 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with
#   LoRA") showed that $\alpha / \sqrt{r}$ is the scale that keeps the update's size stable as
#   $r$ grows, and `peft` offers it as `use_rslora=True`. We keep the paper's $\alpha / r$,
#   `peft`'s default, and measure all three scales below.
# * Optional dropout acts on the adapter's input only.


# %%
#| export
class LoRALinear(nn.Module):
    """`base(x) + (alpha / rank) * B(A(dropout(x)))`, with `base` frozen.

    A (rank, in) starts Kaiming-uniform and B (out, rank) at zero, so the layer starts
    as `base` exactly. `merge()` folds the update into base.weight; `unmerge()` takes
    it out again.
    """

    def __init__(
        self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        self.rank = check_int("rank", rank, minimum=1)
        self.alpha = check_number("alpha", alpha, minimum=0, min_open=True)
        dropout = check_number("dropout", dropout, minimum=0, maximum=1, max_open=True)
        self.scaling = self.alpha / self.rank
        self.base, self.merged = base, False
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(w.new_empty(rank, base.in_features))
        self.lora_B = nn.Parameter(w.new_zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft
        self.dropout = nn.Dropout(dropout)

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / rank) * B @ A, shaped like base.weight: (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:  # the update is already inside base.weight
            return y
        low = F.linear(self.dropout(x), self.lora_A)  # (..., rank)
        return y + self.scaling * F.linear(low, self.lora_B)  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


# %% [markdown]
# At initialisation the wrapped layer is the base layer, bit for bit, and only $A$ and $B$ train:

# %%
torch.manual_seed(0)
base = nn.Linear(16, 48)
layer = LoRALinear(base, rank=4, alpha=8)
x = torch.randn(2, 5, 16)
print(layer)
print("equal to the base at init:", torch.equal(layer(x), base(x)))
print("trainable:", [n for n, p in layer.named_parameters() if p.requires_grad])
assert torch.equal(layer(x), base(x))

# %% [markdown]
# Now the scaling. We train a 64 → 64 `LoRALinear` on a random regression target, for ranks 4
# to 64, and measure how far the layer moved, $\|\Delta W\|$, with three scales: a fixed 1,
# $8 / r$ (the paper's $\alpha / r$ with $\alpha = 8$) and $\sqrt{8 / r}$ (rsLoRA's
# $\alpha / \sqrt{r}$ with $\alpha = \sqrt{8}$), all three equal at rank 8. First after 10 Adam
# steps, while every step still moves each entry by about the learning rate, then after 100.


# %%
def update_size(rank: int, scaling: float, steps: int) -> float:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 64), rank=rank, alpha=8)
    layer.scaling = scaling  # instead of alpha / rank
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=1e-3)
    x, target = torch.randn(32, 64), torch.randn(32, 64)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(layer(x), target).backward()
        opt.step()
    return layer.delta_weight().norm().item()  # B started at 0: all of it is update


SCALES = {
    "1": lambda r: 1.0,
    "8/r": lambda r: 8 / r,
    "sqrt(8/r)": lambda r: (8 / r) ** 0.5,
}
for steps in (10, 100):
    sizes = {
        r: [update_size(r, s(r), steps) for s in SCALES.values()]
        for r in (4, 8, 16, 32, 64)
    }
    print(f"||delta W|| after {steps} Adam steps, with the scale")
    print(f"{'rank':>11} | " + " | ".join(f"{name:>9}" for name in SCALES))
    for r, row in sizes.items():
        print(f"{r:11d} | " + " | ".join(f"{v:9.3f}" for v in row))
    ratios = [big / small for small, big in zip(sizes[4], sizes[64])]
    print(f"{'rank 64 / 4':>11} | " + " | ".join(f"{v:9.2f}" for v in ratios))

# %% [markdown]
# After 10 steps, with a fixed scale, a rank-64 update is 5.47 times as large as a rank-4 one:
# the growth with $r$ is real, a little faster than $\sqrt{16} = 4$. Dividing by $r$ turns it
# into an update that *shrinks* with the rank, to 0.35 times: $\alpha / r$ over-corrects.
# rsLoRA's $\alpha / \sqrt{r}$ stays nearest to flat (1.38 times). After 100 steps the loss
# has started to pull every run toward the same fit of the target: the fixed scale's update
# still grows about like $\sqrt{r}$ (6.399 / 1.790 ≈ 3.58 times), $\alpha / r$ shrinks a
# little (0.84 times) and $\alpha / \sqrt{r}$ grows (1.77 times). No scale makes the rank
# irrelevant. With $\alpha / r$, a higher rank starts more slowly at the same learning rate:
# from rank 4 to rank 16 the early update about halves (0.189 to 0.103), and rsLoRA found that
# this keeps large ranks from paying off. We keep $\alpha / r$, as `peft` does by default, and
# tune the learning rate at rank 8.
#
# ## 9.3 Adapting a whole model: `apply_lora` and `merge_lora`
#
# `apply_lora` walks the model, replaces every `nn.Linear` whose name ends with one of the
# `targets` by a `LoRALinear` around it, freezes every other parameter, and prints what trains.
# The default target is `attn.c_attn`, the fused query/key/value projection of every block (the
# original paper adapts the query and value projections; `peft` adapts `c_attn` for GPT-2 too).
# The language-model head `lm_head` can be a target too, with one care: its weight is tied to
# the token embeddings `wte` (chapter 4), one (V, C) matrix that the embedding reads by rows and
# the head multiplies by. An adapter on the head alone would make the adapted model untied,
# and merging it would change the embeddings behind its back. So an adapter on a tied head is
# read by both, as below.

# %%
#| export
DEFAULT_TARGETS = ("attn.c_attn",)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRALinear modules by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a tied matrix counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(
        p.numel() for p in params
    )


def find_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Names of the nn.Linear modules whose name is, or ends with, one of `targets`."""
    if isinstance(targets, str) or not targets:
        raise TypeError(f"targets must be a non-empty tuple of names, got {targets!r}")
    found = []
    for target in targets:
        names = [
            n
            for n, m in model.named_modules()
            if n == target or n.endswith("." + target)
        ]
        if not names:
            linears = sorted(
                {
                    n.split(".", 2)[-1]
                    for n, m in model.named_modules()
                    if isinstance(m, nn.Linear)
                }
            )
            raise ValueError(
                f"LoRA target {target!r} matches no module; "
                f"linear layers are named {linears}"
            )
        for name in names:
            module = model.get_submodule(name)
            if not isinstance(module, nn.Linear):
                raise TypeError(
                    f"LoRA target {name!r} is a {type(module).__name__}, "
                    "not an nn.Linear"
                )
            found.append(name)
    return sorted(set(found), key=found.index)


# %% [markdown]
# The embedding's half of a tied adapter. With the head's adapter $A$ (r, C) and $B$ (V, r),
# the adapted matrix is $W + \frac{\alpha}{r} BA$; the embedding of token $i$ is its row $i$,
# $W_i + \frac{\alpha}{r} B_i A$: a lookup in $B$, then a product with $A$. `LoRAEmbedding`
# holds no parameters of its own, so the adapter is trained, saved and merged once, as the
# head's.


# %%
#| export
class LoRAEmbedding(nn.Module):
    """The token embedding of a model whose head is tied to it, read through the
    head's adapter `head` (a LoRALinear around lm_head): row i of
    W + (alpha / rank) * B @ A."""

    def __init__(self, base: nn.Embedding, head: LoRALinear):
        super().__init__()
        if head.base.weight is not base.weight:
            raise ValueError(
                "LoRAEmbedding is for a tied head: the head's weight is not wte's"
            )
        self.base = base
        self._head = [head]  # not a submodule: A and B are registered once, in lm_head

    @property
    def weight(self) -> torch.Tensor:
        """The shared matrix W, without the update (the model's device and dtype)."""
        return self.base.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        head, x = self._head[0], self.base(idx)  # x: (B, T, C)
        if head.merged:  # the update is already inside the shared matrix
            return x
        rows = F.embedding(idx, head.lora_B)  # (B, T, r): rows of B
        return x + head.scaling * (rows @ head.lora_A)  # (B, T, r) @ (r, C)


# %% [markdown]
# `apply_lora` itself, and its inverse `merge_lora`:


# %%
#| export
def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Sequence[str] = DEFAULT_TARGETS,
    verbose: bool = True,
) -> nn.Module:
    """Wrap the target linears in LoRALinear (in place), freeze everything else, and
    print the trainable parameters against the total. Returns `model`."""
    if lora_layers(model):
        raise ValueError("the model already has LoRA adapters: merge_lora() it first")
    names = find_targets(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent, _, child = name.rpartition(".")
        parent = model.get_submodule(parent)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    head = getattr(model, "lm_head", None)
    shared = getattr(getattr(model, "wte", None), "weight", None)
    if isinstance(head, LoRALinear) and head.base.weight is shared:
        model.wte = LoRAEmbedding(model.wte, head)  # tied: one adapter, read twice
    model.lora_config = dict(
        rank=rank, alpha=float(alpha), dropout=float(dropout), targets=list(targets)
    )
    if verbose:
        trainable, total = count_parameters(model)
        print(
            f"LoRA rank {rank} on {len(names)} layers ({', '.join(targets)}): "
            f"{trainable:,} trainable of {total:,} parameters ({trainable / total:.2%})"
        )
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain nn.Linear back: the
    model is its original class again, with no adapter modules, all trainable."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base)
    if isinstance(getattr(model, "wte", None), LoRAEmbedding):
        model.wte = model.wte.base  # the head's merge has updated the shared matrix
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model


# %% [markdown]
# LoRA adapts a model that already knows a language, so we need one. `pretrained_model()`
# ([Appendix A](A_engineering.ipynb)) answers "the pretrained model" for chapters 7 to 10:
# OpenAI's GPT-2 124M when its weights are on this machine (`GPT2SCRATCH_GPT2_DIR` or the
# Hugging Face cache, see [Chapter 7](07_pretrained.ipynb)), else the course's own base, a
# GPT-2-format model that the book's code trained on Shakespeare's plays (section A.8). Every
# output below that depends on the model starts with its label. A rank-8 adapter on every
# block's `c_attn`:

# %%
# NBVAL_IGNORE_OUTPUT
pm = pretrained_model()
LABEL = pm.label
print(LABEL)
model = copy.deepcopy(pm.model)  # pm.model stays the untouched base
ids = torch.tensor([tokenizer.encode("Every effort moves you")])
with torch.no_grad():
    logits_before = model(ids)
apply_lora(model, rank=8, alpha=16)
print(model.h[0].attn.c_attn)
with torch.no_grad():
    print("unchanged at init:", torch.equal(model(ids), logits_before))
cfg = model.config
assert count_parameters(model)[0] == cfg.n_layers * 8 * (cfg.d_model + 3 * cfg.d_model)
assert torch.equal(model(ids), logits_before)

# %% [markdown]
# Merging must not change what the model computes. We give the adapters random values (as if
# trained), then compare the adapted model, the same model with the updates merged in place,
# and after unmerging; `merge_lora` finally hands back a plain `GPT2`.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(1)
with torch.no_grad():
    for layer in lora_layers(model).values():
        layer.lora_B.normal_(std=0.02)
    adapted = model(ids)
    for layer in lora_layers(model).values():
        layer.merge()
    merged = model(ids)
    for layer in lora_layers(model).values():
        layer.unmerge()
    unmerged = model(ids)
print(
    f"[{LABEL}] adapter changed the logits by up to",
    round((adapted - logits_before).abs().max().item(), 4),
)
print("max |adapted - merged|  :", f"{(adapted - merged).abs().max().item():.1e}")
print("max |adapted - unmerged|:", f"{(adapted - unmerged).abs().max().item():.1e}")
assert torch.allclose(adapted, merged, atol=1e-4) and torch.allclose(
    adapted, unmerged, atol=1e-4
)

# %% [markdown]
# ## 9.4 Saving just the adapter
#
# The point of an adapter is that it is small: one base model, and a file of a few hundred
# kilobytes per domain. `save_adapter` writes the $A$ and $B$ matrices as safetensors and the
# LoRA settings as JSON, each atomically ([Appendix A](A_engineering.ipynb)); `load_adapter`
# applies LoRA to a plain model with the saved settings and loads the matrices, checking every
# name and shape.

# %%
#| export
ADAPTER_FILE, CONFIG_FILE = "adapter.safetensors", "adapter_config.json"


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' A and B matrices, by name: `h.0.attn.c_attn.lora_A`, ..."""
    state = {}
    for name, layer in lora_layers(model).items():
        state[f"{name}.lora_A"], state[f"{name}.lora_B"] = layer.lora_A, layer.lora_B
    return state


def save_adapter(model: nn.Module, folder: str | Path) -> Path:
    """Write `adapter.safetensors` and `adapter_config.json` into `folder`; return it."""
    state = adapter_state(model)
    if not state:
        raise ValueError("the model has no LoRA adapters: apply_lora() it first")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    config = dict(format="gpt2scratch-lora", **model.lora_config)
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        config["base_config"] = model.config.to_dict()
    folder = Path(folder)
    atomic_write(folder / ADAPTER_FILE, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(config, indent=2)
    atomic_write(
        folder / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8")
    )
    return folder


# %% [markdown]
# Loading checks the saved settings, every name and every shape before it copies anything:


# %%
#| export
def load_adapter(
    model: nn.Module, folder: str | Path, verbose: bool = False
) -> nn.Module:
    """Apply LoRA to `model` with the settings saved in `folder`, and load its A, B."""
    folder = Path(folder)
    for name in (CONFIG_FILE, ADAPTER_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"no LoRA adapter in {folder}: {name} is missing "
                "(save_adapter writes it)"
            )
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != "gpt2scratch-lora":
        raise ValueError(f"{folder / CONFIG_FILE} is not a gpt2scratch LoRA config")
    keys = ("rank", "alpha", "dropout", "targets")
    apply_lora(model, **{k: config[k] for k in keys}, verbose=verbose)
    saved, expected = load_file(str(folder / ADAPTER_FILE)), adapter_state(model)
    missing, unexpected = (
        sorted(set(expected) - set(saved)),
        sorted(set(saved) - set(expected)),
    )
    if missing or unexpected:
        merge_lora(model)  # B is still 0: merging leaves the weights as they were
        raise ValueError(
            f"adapter {folder / ADAPTER_FILE} does not fit this model: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    wrong = [n for n, t in expected.items() if saved[n].shape != t.shape]
    if wrong:
        merge_lora(model)  # B is still 0: merging leaves the weights as they were
        name = wrong[0]
        raise ValueError(
            f"adapter {name} has shape {tuple(saved[name].shape)}, "
            f"this model needs {tuple(expected[name].shape)}"
        )
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(saved[name])
    return model


# %% [markdown]
# We save the adapter with its random values, load it into a fresh copy of the base model,
# and compare logits and file sizes with a full checkpoint of the same model.

# %%
# NBVAL_IGNORE_OUTPUT
work = Path("../runs/ch09")  # git-ignored, like every run of the book
save_adapter(model, work / "demo-adapter")
fresh = load_adapter(copy.deepcopy(pm.model), work / "demo-adapter")
with torch.no_grad():
    print(f"[{LABEL}] same logits after save/load:", torch.equal(fresh(ids), adapted))
    assert torch.equal(fresh(ids), adapted)
save_checkpoint(work / "demo-full", merge_lora(copy.deepcopy(fresh)))
adapter_kb = (work / "demo-adapter" / ADAPTER_FILE).stat().st_size / 1024
full_kb = (
    sum(f.stat().st_size for f in (work / "demo-full").rglob("*.safetensors")) / 1024
)
print(
    f"adapter: {adapter_kb:,.0f} KB   full checkpoint: {full_kb:,.0f} KB "
    f"({full_kb / adapter_kb:.0f}x)"
)
print(json.loads((work / "demo-adapter" / CONFIG_FILE).read_text())["targets"])
assert full_kb > 10 * adapter_kb

# %% [markdown]
# ## 9.5 Checking against `peft`
#
# Hugging Face's `peft` is the library most LoRA fine-tuning goes through. To prove our adapter
# computes the same function, we build `transformers`' `GPT2LMHeadModel` with the base
# model's weights (the twin chapter 4 used to check our logits), wrap its `c_attn` layers with
# `peft`'s LoRA at the same rank and $\alpha$, and copy our $A$ and $B$ into it. One detail:
# Hugging Face's GPT-2 stores its linear layers as `Conv1D`, with the weight transposed
# (in, out). `peft` knows this (`fan_in_fan_out=True`): its $A$ and $B$ have the same shapes as
# ours, and only its merge transposes the update. So we compare both the adapted and the merged
# models.

# %%
# NBVAL_IGNORE_OUTPUT
from peft import LoraConfig, get_peft_model  # a test dependency, like transformers

from gpt2scratch.bench_common import hf_twin

# transformers 5.24 warns (FutureWarning) about a name it deprecated itself, inside peft
warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
hf = hf_twin(copy.deepcopy(pm.model), attn_implementation="eager").eval()
peft_config = LoraConfig(
    r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True
)
peft_model = get_peft_model(hf, peft_config)
with torch.no_grad():
    for name, layer in lora_layers(fresh).items():
        theirs = peft_model.base_model.model.transformer.get_submodule(name)
        theirs.lora_A["default"].weight.copy_(layer.lora_A)
        theirs.lora_B["default"].weight.copy_(layer.lora_B)
    peft_model.print_trainable_parameters()
    ours, peft_logits = fresh(ids), peft_model(ids).logits
    diff = (ours - peft_logits).abs().max().item()
    merged_hf = peft_model.merge_and_unload()
    merged_ours = merge_lora(copy.deepcopy(fresh))
    merged_diff = (merged_ours(ids) - merged_hf(ids).logits).abs().max().item()
print(
    f"[{LABEL}] max |ours - peft| logits: adapted {diff:.1e}, merged {merged_diff:.1e}"
)
assert diff < 1e-5 and merged_diff < 1e-5

# %% [markdown]
# ## 9.6 Your own domain's text
#
# Chapter 5 trained on one small file, read into memory and split 90/10 by characters. A domain
# corpus is different: many files (a folder of notes, a code base), possibly far more text than
# fits comfortably in memory as Python integers (a list of 100 million token ids takes
# 100 million × 36 bytes = 3.6 GB: a pointer and an int object per id).
#
# A corpus of files is read the way nanoGPT reads one: find the files (every `*.txt`, `*.md` and
# `*.py` under a folder, or a glob of your choice; a file that is not UTF-8 text is skipped and
# named), split them by document (whole files go to validation, so that it measures text the
# model has never seen), stream their tokens into a `uint16` file on disk (2 bytes a token,
# documents joined by `<|endoftext|>`), and read training windows from a memory map of that
# file. That is file plumbing, so its code is in section A.6 of
# [Appendix A](A_engineering.ipynb) (`gpt2scratch.corpus`). This chapter uses two of its
# functions: `prepare_corpus(paths)` tokenises the files once and caches the result next to
# them, and `corpus_loaders(corpus, context_length, batch_size)` gives the train and
# validation loaders.

# %% [markdown]
# First the corpus in small: three tiny documents in a folder, tokenised, and read back through
# the memory map. The ids 50256 are the `<|endoftext|>` separators between documents.

# %%
demo = work / "demo-corpus"
shutil.rmtree(demo, ignore_errors=True)
(demo / "notes").mkdir(parents=True)
(demo / "a.txt").write_text("The first document.")
(demo / "b.md").write_text("# The second one")
(demo / "notes" / "c.py").write_text("print('third')")
(demo / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")  # not *.txt/*.md/*.py
small = prepare_corpus(
    demo, val_fraction=0.3, cache_dir=work / "demo-cache", progress=False
)
print("files:", [str(f.relative_to(demo)) for f in find_files(demo)])
print("documents:", small.documents, " tokens:", small.tokens)
print("train ids:", small.ids("train").tolist())
print("as text:  ", tokenizer.decode(small.ids("train").tolist()))

# %% [markdown]
# And what a learner sees when the input is wrong. The binary file is skipped, not fatal: a
# folder of notes often holds a stray image or a file in another encoding, and one bad file
# should not stop a run. The corpus records each skipped file, and the command line prints a
# warning that names them.

# %%
(work / "empty").mkdir(exist_ok=True)
(demo / "notes" / "photo.txt").write_bytes(
    b"\xff\xd8\xff\xe0\0\x10JFIF"
)  # a JPEG, misnamed
attempts = {
    "empty folder": lambda: find_files(work / "empty"),
    "no match": lambda: find_files(demo, glob="*.rst"),
    "binary file": lambda: (
        prepare_corpus(demo, cache_dir=work / "demo-cache", progress=False).skipped
    ),
    "too small": lambda: corpus_loaders(small, context_length=256),
}
for what, attempt in attempts.items():
    try:
        print(f"{what}: skipped {attempt()}")
    except (ValueError, FileNotFoundError) as err:
        print(f"{what}: {type(err).__name__}: {err}")

# %% [markdown]
# ## 9.7 The experiment: LoRA against full fine-tuning on *The Verdict*
#
# Now the question this chapter is about: how close does a small adapter get to training every
# weight? The domain is *The Verdict*, chapter 5's short story, with chapter 5's 90/10 split by
# characters: modern English prose, close to but not the same as the Shakespeare the base has
# read. Both methods get the same batches and the same number of steps, AdamW without weight
# decay, gradient clipping at 1 and no dropout, and each is tuned on the same small grid of
# learning rates. Each run is measured in a fresh Python process, so that its peak memory is
# its own.
#
# Every fine-tuning run is the same recipe: load a base model, add adapters (or train every
# weight), `prepare_run` and `train_run` of [Appendix A](A_engineering.ipynb), section A.9
# (`prepare_run(model=...)` puts only the parameters that require a gradient into AdamW), then
# save the adapter alone, or checkpoints of the whole model. One exported function holds the recipe; the command line's `train`
# (section 9.9) calls it too, with chapter 11's fast path as its `loop`.


# %%
#| export
def load_base(base: str | Path) -> nn.Module:
    """The model in one of our checkpoint folders (chapter 5), else pretrained weights:
    a name such as "gpt2" or a Hugging Face folder (chapter 7)."""
    folder = Path(base)
    if (folder / LATEST).is_file() or (folder / MANIFEST).is_file():
        return load_checkpoint(folder).model
    return load_pretrained(base)


def train_and_save(
    settings: TrainSettings, base: nn.Module | str | Path | None = None, *,
    text: str | None = None, loaders: tuple | None = None, rank: int | None = None,
    alpha: float = 16.0, targets: Sequence[str] = DEFAULT_TARGETS,
    out: str | Path | None = None, resume: str | Path | None = None, device=None,
    ready: Callable[[Run], None] | None = None,
    loop: Callable[..., History] = train_run, **train_options,
) -> tuple[Run, History]:  # fmt: skip
    """Load `base` (a model, or a folder or name for `load_base`; None: a new
    `settings.model`, or the checkpoint that `resume` continues), add rank-`rank` LoRA
    adapters on `targets` (rank None: train every weight), train on `text` (90/10) or
    `loaders` = (train, val), and save into `out`: the adapter, or the whole model's
    checkpoints.

    `ready(run)` runs before the first step. `loop` is `train_run` or a loop with its
    signature (chapter 11's fast path); `train_options` go to it.
    """
    if not isinstance(base, (nn.Module, str, Path, type(None))):
        raise TypeError(f"base must be a model, a folder or a name, got {base!r}")
    if base is not None and resume is not None:
        what = type(base).__name__ if isinstance(base, nn.Module) else repr(str(base))
        raise ValueError(
            f"base {what} starts from given weights and resume {str(resume)!r} "
            "continues a checkpoint: pass one of them"
        )
    if rank is not None and base is None:
        raise ValueError(f"LoRA (rank {rank}) adapts given weights: pass a base")
    model = load_base(base) if isinstance(base, (str, Path)) else base
    if rank is not None:  # adapters on the base weights, everything else frozen
        set_seed(settings.seed)  # A starts random: the same settings, the same adapters
        apply_lora(model, rank, alpha, targets=targets)
    run = prepare_run(
        settings, text, device=device, resume=resume, model=model, loaders=loaders
    )
    if ready is not None:
        ready(run)
    history = loop(
        run.model, run.train_loader, run.val_loader, run.optimizer, settings,
        scheduler=run.scheduler, checkpoint_dir=out if rank is None else None,
        resume_from=resume, **train_options,
    )  # fmt: skip
    if rank is not None and out is not None:
        save_adapter(run.model, out)
    return run, history


# %% [markdown]
# The worker that each fresh process runs is a thin wrapper: it builds the loaders (a corpus
# folder, or one text split 90/10 as in chapter 5), trains for a given number of steps with
# an evaluation every `eval_every` steps, takes a greedy sample before the first step
# through `ready` and after the last, and reports what the table needs. Its peak memory
# comes from `peak_memory_mb` (section A.5 of [Appendix A](A_engineering.ipynb)): the most
# memory CUDA allocated on a GPU, the process's resident high-water mark on a CPU. It does
# not time the steps: runs in separate processes on a shared machine are not comparable.
# A full fine-tune can also keep chosen weights as they are (`frozen`, through a small
# `freeze`): we use it at the end of section 9.7 to ask what one frozen matrix costs.


# %%
#| export
def freeze(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Freeze the parameters `names` (as `named_parameters` spells them, such as
    "wte.weight"): `prepare_run` leaves them out of AdamW. Returns `model`."""
    params = dict(model.named_parameters())
    for name in names:
        if name not in params:
            raise ValueError(
                f"freeze names {name!r}, not a parameter of the model; "
                f"its parameters are named like {list(params)[:3]}"
            )
        params[name].requires_grad_(False)
    return model


# %% [markdown]
# And the worker itself:


# %%
#| export
def finetune_and_measure(
    base: str, corpus_dir: str | None = None, *, text: str | None = None,
    rank: int | None, lr: float, steps: int, alpha: float = 16.0,
    targets: Sequence[str] = DEFAULT_TARGETS, frozen: Sequence[str] = (),
    batch_size: int = 8, context_length: int = 128, eval_every: int | None = None,
    eval_batches: int | None = 20, prompt: str = "def ", seed: int = 123,
    save_to: str | None = None,
) -> dict:  # fmt: skip
    """Fine-tune the model `base` (a folder or name, as `load_base` reads) for `steps`
    steps on a tokenised corpus folder or on `text` (90/10), fully (rank None; the
    parameters named in `frozen` stay as they are) or with LoRA, with a validation loss
    every `eval_every` steps (default: at the end only). Run it in a fresh process, so
    that the peak memory it reports is this run's."""
    if (corpus_dir is None) == (text is None):
        given = (
            "neither" if corpus_dir is None else f"corpus_dir {corpus_dir!r} and text"
        )
        raise ValueError(f"pass exactly one of corpus_dir and text, got {given}")
    if frozen and rank is not None:
        raise ValueError(
            f"frozen {list(frozen)} is for full fine-tuning: LoRA (rank {rank}) "
            "already freezes every base weight"
        )
    check_int("steps", steps, minimum=1)
    every = check_int("eval_every", eval_every or steps, minimum=1)
    if steps % every:
        raise ValueError(f"steps {steps} is not a multiple of eval_every {every}")
    if corpus_dir is not None:
        corpus = Corpus.load(corpus_dir)
        loaders = corpus_loaders(corpus, context_length, batch_size, seed)
    else:
        enc, shape = gpt2_encoding(), dict(context_length=context_length, seed=seed)
        loaders = make_loaders(text, enc, batch_size=batch_size, **shape)
    settings = TrainSettings(
        context_length=context_length, batch_size=batch_size, dropout=0.0, lr=lr,
        weight_decay=0.0, grad_clip=1.0, epochs=math.ceil(steps / len(loaders[0])),
        eval_every=every, eval_iters=eval_batches, max_steps=steps, seed=seed,
        progress=False, verbose=False,
    )  # fmt: skip
    model = freeze(load_base(base), frozen)
    options, before = dict(max_length=30, temperature=0), []  # greedy
    run, history = train_and_save(
        settings, model, loaders=loaders, rank=rank, alpha=alpha, targets=targets,
        out=save_to,
        ready=lambda run: before.append(run.model.generate(prompt, **options)),
    )  # fmt: skip
    val = history.val_loss  # at history.step: 0, every, 2 * every, ..., steps
    best = min(range(len(val)), key=val.__getitem__)
    trainable, total = count_parameters(run.model)
    return dict(
        rank=rank, lr=lr, trainable=trainable, total=total,
        peak_mb=peak_memory_mb(run.device), eval_steps=history.step, val=val,
        val_before=val[0], val_after=val[-1], val_best=val[best],
        best_step=history.step[best], sample_before=before[0],
        sample_after=run.model.generate(prompt, **options), device=str(run.device),
    )  # fmt: skip


# %% [markdown]
# Each measurement runs in a fresh process through one small helper:


# %%
def run_fresh(code: str, payload: dict) -> dict:
    """Run `code` in a new Python process with `payload` as JSON on stdin; return the
    JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# %% [markdown]
# The settings. A step is a batch of two windows of 256 tokens, as in chapter 7's fine-tuning;
# the training split holds nine such batches, so the run reads it eight times, and the
# validation loss is measured after each pass. We report each run's best validation loss
# (the checkpoint early stopping would keep, with the step it came at) and its last. Eight
# passes are more than the best full fine-tuning run needs: it overfits before the end,
# and a LoRA run still improving at the end would show it in its best step.

# %%
# NBVAL_IGNORE_OUTPUT
EXP = full_or_quick(
    dict(lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), ranks=(4, 16), steps=72, eval_every=9,
         batch_size=2, context_length=256, pairs=5,
         packages=None, code_eval_batches=10),
    dict(lrs=(1e-2,), ranks=(4,), steps=4, eval_every=2,
         batch_size=2, context_length=32, pairs=1,
         packages=("json", "email"), code_eval_batches=1),
    "one learning rate, ranks 4 and 8, 4 steps of 2 x 32 tokens instead of 72 of "
    "2 x 256; the json and email packages instead of the whole standard library",
)  # fmt: skip
T, B = min(EXP["context_length"], pm.model.config.context_length), EXP["batch_size"]
BASE = str(pm.folder) if pm.folder else "gpt2"  # chapter 7's load_pretrained reads both

# %% [markdown]
# The grid: full fine-tuning and LoRA at rank 8, each at every learning rate of the grid.
# LoRA runs three ways: on `c_attn` only, our default; on all four linear layers of every
# block (`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`), which the QLoRA paper
# (Dettmers et al., 2023) found necessary to match full fine-tuning; and on those plus the
# tied head, `lm_head` (section 9.3), which is also the token embedding. The child process
# imports the exported `finetune_and_measure`: only a fresh process measures its own peak
# memory.

# %%
# NBVAL_IGNORE_OUTPUT
FINETUNE = """
import json, sys
from gpt2scratch.lora import finetune_and_measure  # reimport-ok: a separate process
print(json.dumps(finetune_and_measure(**json.load(sys.stdin))))
"""
verdict_loaders = make_loaders(
    verdict_text(), tokenizer, context_length=T, batch_size=B, seed=123
)  # the worker's loaders, for the timing and the adapters table below
verdict = dict(
    base=BASE, text=verdict_text(), steps=EXP["steps"], eval_every=EXP["eval_every"],
    batch_size=B, context_length=T, eval_batches=len(verdict_loaders[1]),  # all of val
    prompt="I had always thought",
)  # fmt: skip
ALL_LINEAR = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
METHODS = {  # name: (rank, targets); rank None trains every weight
    "full": (None, DEFAULT_TARGETS),
    "LoRA r=8": (8, DEFAULT_TARGETS),
    "LoRA r=8 all": (8, ALL_LINEAR),
    "LoRA r=8 all+head": (8, (*ALL_LINEAR, "lm_head")),
}
grid = {}
for method, (rank, targets) in METHODS.items():
    for lr in EXP["lrs"]:
        keep = method == "LoRA r=8"  # its adapters are used again in section 9.8
        save_to = str(work / "adapters" / f"verdict-r8-lr{lr:g}") if keep else None
        job = dict(verdict, rank=rank, targets=targets, lr=lr, save_to=save_to)
        grid[method, lr] = run_fresh(FINETUNE, job)
base_val = grid["full", EXP["lrs"][0]]["val_before"]
passes = EXP["steps"] / len(verdict_loaders[0])
print(
    f"[{LABEL}] The Verdict: {EXP['steps']} steps of {B} x {T} tokens, {passes:.2g} "
    f"passes over its {len(verdict_loaders[0])} training batches; validation: "
    f"{len(verdict_loaders[1].dataset)} windows"
)
print(f"validation loss of the base model: {base_val:.3f}")
print(f"{'setting':>17} | {'lr':>5} | best val (at step) | last val")
for (method, lr), r in grid.items():
    best = f"{r['val_best']:.3f} ({r['best_step']})"
    print(f"{method:>17} | {lr:5.0e} | {best:>18} | {r['val_after']:8.3f}")


def best_lr(method: str) -> float:
    """The grid's learning rate with the lowest best validation loss."""
    return min(EXP["lrs"], key=lambda lr: grid[method, lr]["val_best"])


print("best learning rate:", ", ".join(f"{m} {best_lr(m):g}" for m in METHODS))
assert all(math.isfinite(r["val_best"]) for r in grid.values())
assert all(r["val_before"] == base_val for r in grid.values())  # one base, one split

# %% [markdown]
# The grid as a picture: the best validation loss each learning rate reached, against the
# base model's loss before any fine-tuning.

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(6, 3.4))
labels = {
    "full": "full fine-tuning", "LoRA r=8": "LoRA r=8, c_attn",
    "LoRA r=8 all": "LoRA r=8, all linear", "LoRA r=8 all+head": "LoRA r=8, all + head",
}  # fmt: skip
for method, style in zip(METHODS, ("o-", "s-", "^-", "D-")):
    best = [grid[method, lr]["val_best"] for lr in EXP["lrs"]]
    ax.plot(EXP["lrs"], best, style, label=labels[method])
ax.axhline(base_val, color="C7", ls="--", label="the base, before")
ax.set(xscale="log", xlabel="learning rate", ylabel="best validation loss")
ax.set_title(f"The Verdict, {EXP['steps']} steps: {LABEL}", fontsize=9)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Then ranks 4 and 16 on `c_attn` at rank 8's best learning rate, and the table: what
# trains, the peak memory of each process, and where the validation loss ends.

# %%
# NBVAL_IGNORE_OUTPUT
results = {"full": grid["full", best_lr("full")]}
for rank in sorted((8, *EXP["ranks"])):
    job = dict(verdict, rank=rank, lr=best_lr("LoRA r=8"))
    results[f"LoRA r={rank}"] = (
        grid["LoRA r=8", job["lr"]] if rank == 8 else run_fresh(FINETUNE, job)
    )
for method in ("LoRA r=8 all", "LoRA r=8 all+head"):
    results[method] = grid[method, best_lr(method)]
print(f"[{LABEL}] The Verdict, each setting at its best learning rate")
print(
    f"{'setting':>17} | {'lr':>5} | {'trainable':>10} | {'share':>7} | {'peak MB':>7} | "
    f"{'best val':>8} | gain"
)
for name, r in results.items():
    print(
        f"{name:>17} | {r['lr']:5.0e} | {r['trainable']:>10,} | "
        f"{r['trainable'] / r['total']:7.2%} | {r['peak_mb']:7.0f} | "
        f"{r['val_best']:8.3f} | {base_val - r['val_best']:.3f}"
    )
full = results["full"]
lora_peak = min(r["peak_mb"] for n, r in results.items() if n != "full")
print(f"full fine-tuning gains {base_val - full['val_best']:.2f} nats over the base")
for name in ("LoRA r=8", "LoRA r=8 all", "LoRA r=8 all+head"):
    gap = results[name]["val_best"] - full["val_best"]
    print(f"{name} ends {gap:.2f} nats above full fine-tuning")
print(
    f"full fine-tuning's peak is {full['peak_mb'] - lora_peak:.0f} MB above the "
    "lowest LoRA peak"
)
assert full["trainable"] == full["total"]
C, V, L = cfg.d_model, cfg.vocab_size, cfg.n_layers
in_out = {"attn.c_attn": 4 * C, "attn.c_proj": 2 * C, "mlp.c_fc": 5 * C}
in_out["mlp.c_proj"] = 5 * C  # (in + out) of each layer: C + 3C, C + C, C + 4C, 4C + C
for name, r in results.items():  # rank * (in + out) for each adapted layer
    rank, targets = METHODS.get(name) or (int(name.split("=")[1]), DEFAULT_TARGETS)
    if rank is not None:
        blocks = L * sum(in_out[t] for t in targets if t != "lm_head")
        head = (C + V) * ("lm_head" in targets)  # one matrix, not one per block
        assert r["trainable"] == rank * (blocks + head), name

# %% [markdown]
# Full fine-tuning gains 1.73 nats over the base (6.828 → 5.094 at its best learning rate,
# 3e-4, best at step 45; after that it overfits the nine training batches and ends at 5.373).
# LoRA on `c_attn` alone ends 0.61 nats above it, and the rank hardly matters there (5.722,
# 5.701 and 5.712 at ranks 4, 8 and 16): more rank on the same layers buys nothing. Adapting
# all four linear layers of every block ends 0.34 nats above full fine-tuning, and adding the
# adapter on the tied head brings LoRA to 0.12 nats of it, with 700,040 trainable parameters,
# 2.28% of the model. The largest learning rates show the other side of the trade: full
# fine-tuning at 3e-3 and 1e-2 ends where it began (6.819 at 1e-2), while every LoRA setting
# stays near its best, because an adapter that starts at zero, with every base weight frozen,
# is hard to break. The validation split is short (2 windows of 256 tokens), so read
# differences of a few hundredths between settings as ties. Peak memory: 1117 MB for full
# fine-tuning against 875 to 946 MB for LoRA. At 30 million parameters most of a process's
# memory is Python, torch and the activations; the share that LoRA saves, the gradients and
# AdamW's two moments of every weight, grows with the model.
#
# The same numbers as a picture: what trains (log scale) against where the validation loss
# ends.

# %%
# NBVAL_IGNORE_OUTPUT
names = list(results)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
xs = np.arange(len(names))
ax1.bar(xs, [results[n]["trainable"] for n in names], color="C0")
ax1.set(yscale="log", ylabel="trainable parameters", title="What trains")
best = [results[n]["val_best"] for n in names]
ax2.bar(xs - 0.2, [base_val] * len(names), 0.4, label="the base, before", color="C7")
ax2.bar(xs + 0.2, best, 0.4, label="best after fine-tuning", color="C2")
for ax in (ax1, ax2):
    ax.set_xticks(xs, names, rotation=30, ha="right")
low, high = min(best) - 0.5, base_val + 0.2
ax2.set(ylabel="validation loss (The Verdict)", title="Where it ends", ylim=(low, high))
fig.suptitle(LABEL, fontsize=9)
fig.legend(loc="lower center", ncol=2, frameon=False)  # below the bars, hiding none
plt.tight_layout(rect=(0, 0.07, 1, 1))
plt.show()

# %% [markdown]
# What can full fine-tuning change that LoRA on the blocks cannot? With the blocks' targets,
# `apply_lora` adapts the linear layers inside the blocks; the token embedding `wte`, which is
# also the output head (the two share one matrix, chapter 4), stays frozen, and so do the
# position embedding and the layer norms. The embedding is where a change of vocabulary lands: a word of *The
# Verdict* that Shakespeare never used has the embedding, and the output row, of a word the
# base model hardly ever predicts. To measure how much of full fine-tuning's gain needs that
# matrix, we run full fine-tuning once more on the same grid with exactly one matrix frozen,
# `wte` (`finetune_and_measure(..., frozen=["wte.weight"])`), and set it beside the LoRA runs
# with and without an adapter on that matrix.

# %%
# NBVAL_IGNORE_OUTPUT
frozen = {
    lr: run_fresh(FINETUNE, dict(verdict, rank=None, lr=lr, frozen=["wte.weight"]))
    for lr in EXP["lrs"]
}
wte_share = pm.model.wte.weight.numel() / full["total"]
print(
    f"[{LABEL}] full fine-tuning with wte frozen ({wte_share:.0%} of the parameters: "
    "the token embedding, tied to the head)"
)
for lr, r in frozen.items():
    print(f"  lr {lr:5.0e}: best val {r['val_best']:.3f} (step {r['best_step']})")
no_wte = frozen[min(EXP["lrs"], key=lambda lr: frozen[lr]["val_best"])]
rows = {"full": full, "full, wte frozen": no_wte}
rows.update((n, results[n]) for n in ("LoRA r=8 all+head", "LoRA r=8 all", "LoRA r=8"))
print(f"{'setting':>17} | {'trainable':>10} | best val | above full")
for name, r in rows.items():
    gap = r["val_best"] - full["val_best"]
    print(f"{name:>17} | {r['trainable']:>10,} | {r['val_best']:8.3f} | {gap:10.2f}")
assert no_wte["trainable"] == full["total"] - pm.model.wte.weight.numel()
assert no_wte["val_before"] == base_val

# %% [markdown]
# Freezing one matrix, `wte`, costs full fine-tuning 0.35 nats (5.444 against 5.094): about as
# much as LoRA on the blocks' linear layers stays above it (0.34). With the tied matrix frozen,
# training every other weight (10,745,856 parameters) does no better than a rank-8 adapter on
# the blocks (294,912). So the gap was the vocabulary: a word that Wharton uses and Shakespeare
# does not has, in the base, the output row of a word it hardly ever predicts, and only the
# shared matrix can change that. The adapter on it (section 9.3) takes LoRA to 0.12 nats of
# full fine-tuning. That adapter is most of LoRA's trainable parameters here,
# $8 \times (50{,}257 + 384) = 405{,}128$ of 700,040, because the vocabulary is far wider than
# this small model; on GPT-2 124M it would be $8 \times (50{,}257 + 768) = 408{,}200$ next to
# 1,179,648 for the blocks' four linear layers (exercise 1).
#
# We did not time the runs above: separate processes on a shared machine are not comparable.
# To compare the speed of a step, we time one step of each kind in this process, alternating
# which goes first (pairs of steps, on the same batch), and take the median of the per-pair
# ratios.

# %%
# NBVAL_IGNORE_OUTPUT
x, y = next(iter(verdict_loaders[0]))


def step_timer(rank: int | None):
    """A function that runs one training step of a copy of the base and returns its
    seconds: every weight trains (rank None), or a rank-`rank` adapter."""
    m = copy.deepcopy(pm.model)
    if rank is not None:
        apply_lora(m, rank, verbose=False)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)

    def step() -> float:
        t0 = time.perf_counter()
        train_step(m, x, y, opt)
        return time.perf_counter() - t0

    step()  # warm-up
    return step


t_full, t_lora = median_pairs(step_timer(None), step_timer(8), EXP["pairs"])
print(
    f"[{LABEL}] a training step of {B} x {T} tokens: full / LoRA r=8 time = "
    f"{median_ratio(t_full, t_lora):.2f} (median of {len(t_full)} interleaved pairs)"
)

# %% [markdown]
# A full fine-tuning step takes 1.73 times as long as a step of LoRA on `c_attn`. LoRA still
# runs the whole forward pass and most of the backward (the gradient must flow through every
# frozen layer to reach the adapters below it), but it skips the weight gradients of the frozen
# matrices and AdamW's update of every weight.
#
# And the greedy continuation of the prompt, before (every setting starts from the same model)
# and after each setting's last step:

# %%
# NBVAL_IGNORE_OUTPUT
print(f"[{LABEL}] before:", repr(full["sample_before"]))
for name, r in results.items():
    print(f"{name + ':':13s}", repr(r["sample_after"]))
assert all(
    r["sample_after"].startswith("I had always thought") for r in results.values()
)

# %% [markdown]
# ## 9.8 A second domain: Python's standard library
#
# Every machine that runs this book has a code corpus on disk: the source of Python's standard
# library. For a model trained on Shakespeare, code is further away than *The Verdict*: new
# words, new symbols, indentation. Now the real corpus: every `*.py` file of the standard
# library, without `site-packages` (which holds installed packages, not the standard library).
# We tokenise it in a fresh process, which reports its own peak memory; the parent then opens
# the same corpus from the cache.

# %%
# NBVAL_IGNORE_OUTPUT
stdlib = Path(sysconfig.get_paths()["stdlib"])
files = [
    f
    for f in find_files(stdlib, glob="*.py")
    if f.relative_to(stdlib).parts[0] != "site-packages"
]
if EXP["packages"]:
    files = [f for f in files if f.relative_to(stdlib).parts[0] in EXP["packages"]]
size_mb = sum(f.stat().st_size for f in files) / 1e6
print(f"{len(files):,} files, {size_mb:.1f} MB of Python source")

# %%
# the child imports the exported copy: only a fresh process measures its own peak memory
# (its resident high-water mark, VmHWM, which starts afresh in a new program)
TOKENIZE = """
import json, sys, time, torch
from gpt2scratch.corpus import prepare_corpus
from gpt2scratch.measure import peak_memory_mb
args, t0 = json.load(sys.stdin), time.perf_counter()
if args["files"]:
    prepare_corpus(args["files"], cache_dir=args["cache"], progress=False)
peak = peak_memory_mb(torch.device("cpu"))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": peak}))
"""
shutil.rmtree(work / "corpus", ignore_errors=True)  # tokenise from scratch every time
baseline = run_fresh(TOKENIZE, {"files": [], "cache": str(work / "corpus")})
tokenized = run_fresh(
    TOKENIZE, {"files": list(map(str, files)), "cache": str(work / "corpus")}
)
t0 = time.perf_counter()
code_corpus = prepare_corpus(files, cache_dir=work / "corpus", progress=False)
cached_s = time.perf_counter() - t0

# %% [markdown]
# The corpus, the files it skipped, and what tokenising cost:

# %%
# NBVAL_IGNORE_OUTPUT
tokens = sum(code_corpus.tokens.values())
print(
    f"documents: {code_corpus.documents}; tokens: {code_corpus.tokens} ({tokens:,} in all)"
)
print(f"skipped {len(code_corpus.skipped)} files that are not UTF-8 text:")
for message in code_corpus.skipped:
    print("  ", message.replace(str(stdlib) + os.sep, ""))
print(
    f"tokenising took {tokenized['seconds']:.1f} s "
    f"({size_mb / tokenized['seconds']:.1f} MB/s); opening the cache took {cached_s:.3f} s"
)
print(
    f"peak memory of the process: {tokenized['peak_mb']:.0f} MB, of which "
    f"{baseline['peak_mb']:.0f} MB is Python + torch + the tokenizer before any text"
)
on_disk = sum(
    (code_corpus.folder / f"{s}.bin").stat().st_size for s in ("train", "val")
)
print(f"token files: {on_disk / 1e6:.1f} MB, 2 bytes a token")
assert tokenized["peak_mb"] - baseline["peak_mb"] < 200 and on_disk == 2 * tokens

# %% [markdown]
# Full fine-tuning and the two LoRA settings, each at the learning rate *The Verdict* chose
# for it, for the same number of steps; this corpus is large, so no batch comes twice. The
# prompt is the start of a Python function.

# %%
# NBVAL_IGNORE_OUTPUT
code_job = dict(
    base=BASE, corpus_dir=str(code_corpus.folder), steps=EXP["steps"],
    eval_every=EXP["eval_every"], batch_size=B, context_length=T,
    eval_batches=EXP["code_eval_batches"], prompt="def read_config(path):\n    ",
)  # fmt: skip
code_runs = {}
for method, (rank, targets) in METHODS.items():
    save_to = str(work / "adapters" / "code-r8") if method == "LoRA r=8" else None
    job = dict(
        code_job, rank=rank, targets=targets, lr=best_lr(method), save_to=save_to
    )
    code_runs[method] = run_fresh(FINETUNE, job)
print(f"[{LABEL}] the standard library: {EXP['steps']} steps of {B} x {T} tokens")
print(f"{'setting':>12} | {'lr':>5} | val before | best val | gain")
for name, r in code_runs.items():
    print(
        f"{name:>12} | {r['lr']:5.0e} | {r['val_before']:10.3f} | "
        f"{r['val_best']:8.3f} | {r['val_before'] - r['val_best']:.3f}"
    )
for name, r in code_runs.items():
    print(f"{name + ':':13s} {r['sample_after']!r}")
assert all(math.isfinite(r["val_best"]) for r in code_runs.values())

# %% [markdown]
# On code the base starts at 6.622, and full fine-tuning gains 2.604 nats in the same 72 steps.
# LoRA on `c_attn` gains 1.447, on all linear layers 1.676, and with the tied head 2.484: the
# head matters even more here, since the tokens of Python (runs of spaces, `self`, brackets)
# are the vocabulary that Shakespeare lacks most. The greedy continuations show little: after
# 72 steps every setting continues the function's first line with indentation alone, the
# corpus's most frequent tokens.
#
# The adapter machinery does not care what the text is. We now have two rank-8 adapters on
# disk, one for *The Verdict* (from its best learning rate, after the last step) and one for
# code. Each is loaded onto a fresh copy of the same base model and measured on both domains'
# validation text; each also continues a line of prose and a line of code (greedy).

# %%
# NBVAL_IGNORE_OUTPUT
code_val = corpus_loaders(code_corpus, T, B)[1]
domains = {  # (loader, batches): the code val split is large, The Verdict's is whole
    "code": (code_val, EXP["code_eval_batches"]),
    "Verdict": (verdict_loaders[1], None),
}
adapters = {
    "none (base)": None,
    "code r=8": work / "adapters" / "code-r8",
    "Verdict r=8": work / "adapters" / f"verdict-r8-lr{best_lr('LoRA r=8'):g}",
}
print(f"[{LABEL}] validation losses with each adapter")
table = {}
for name, folder in adapters.items():
    m = copy.deepcopy(pm.model)
    if folder is not None:
        load_adapter(m, folder)
    table[name] = {d: evaluate(m, v, n) for d, (v, n) in domains.items()}
    prose = m.generate("I had always thought", max_length=15, temperature=0)
    code = m.generate("import ", max_length=15, temperature=0)
    print(
        f"{name}: code val {table[name]['code']:.3f}, Verdict val "
        f"{table[name]['Verdict']:.3f}\n   {prose!r}\n   {code!r}"
    )
adapter_kb = (work / "adapters" / "code-r8" / ADAPTER_FILE).stat().st_size / 1024
print(f"each adapter file: {adapter_kb:,.0f} KB")
for domain, adapter in (("code", "code r=8"), ("Verdict", "Verdict r=8")):
    assert math.isfinite(table[adapter][domain]), adapter

# %% [markdown]
# Each adapter helps its own domain and costs the other a little: the code adapter takes code
# from 6.622 to 5.205 and The Verdict from 6.828 to 7.019; the Verdict adapter takes The
# Verdict to 5.701 and code to 6.865. One base model on disk serves both, and each adapter
# (rank 8 on `c_attn`) is a 289 KB file.
#
# ## 9.9 From the command line
#
# The command line puts the same pieces together. `--data` takes a file, several files, or
# folders (`--glob` chooses the files of a folder); `--init` loads the weights to start from
# (chapter 7); `--lora-rank` trains an adapter on them instead of every weight, and the run's
# folder then holds just the adapter (and `init.json`, which records the base weights).
# `--lora-targets` chooses the layers: `attn.c_attn` by default, as in `peft`, or this chapter's
# closest match to full fine-tuning, every block linear and the tied head:
#
# ```bash
# python -m gpt2scratch train --data ~/notes --glob "*.md" --init gpt2 --lora-rank 8 --out runs/notes
# python -m gpt2scratch train --data ~/notes --glob "*.md" --init gpt2 --lora-rank 8 \
#     --lora-targets attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj,lm_head --out runs/notes-all
# python -m gpt2scratch train --data a.txt b.txt c.txt --init gpt2 --epochs 3
# ```
#
# A corpus is tokenised once into `.gpt2scratch-cache/` next to the data (with a progress bar);
# a file that is not UTF-8 text is skipped with a warning that names it; an empty folder, a glob
# that matches nothing, or a corpus too small for one window stops the run with a one-line
# message before any model is built.
#
# ## Summary
#
# * **LoRA** replaces the update $\Delta W$ of a frozen weight by $\frac{\alpha}{r} BA$, with $B$
#   (out, r) starting at zero so that the adapted model starts as the base model. For one
#   768 → 2,304 layer, rank 8 trains 24,576 parameters instead of 1,769,472 (1.39%).
# * **The $\alpha / r$ scale** over-corrects. Without it, the early update grows about like
#   $\sqrt{r}$ (5.47 times from rank 4 to rank 64 after 10 Adam steps); with it, it shrinks
#   (0.35 times), so a higher rank starts more slowly. rsLoRA's $\alpha / \sqrt{r}$ stays nearest
#   to flat (1.38 times).
# * **`apply_lora`** wraps the chosen linears and freezes the rest; **`merge_lora`** folds the
#   adapters back into a plain `GPT2`, with the same outputs; **adapters** are saved on their own
#   as a small safetensors file and a JSON config.
# * **Against `peft`**, with the same $A$ and $B$ on Hugging Face's `GPT2LMHeadModel`, the logits
#   agree within $10^{-5}$, adapted and merged.
# * **A corpus** is found in folders and files, split by document, and streamed to a `uint16`
#   memory-mapped token file, cached next to the data; only one block of ids is ever held in
#   memory, so the corpus's size hardly changes the tokenising process's peak memory.
# * **A tied head** (`lm_head`, which shares its matrix with `wte`) gets one adapter that both
#   read: `LoRAEmbedding` looks up rows of $\frac{\alpha}{r} BA$, so the model stays tied,
#   adapted and merged.
# * **The experiment** on *The Verdict*, from the course's Shakespeare base (6.828): full
#   fine-tuning gains 1.73 nats (to 5.094). Rank-8 LoRA ends 0.61 nats above it on `c_attn`,
#   0.34 on all four linear layers of every block, and 0.12 with an adapter on the tied head
#   too, training 2.28% of the parameters. Full fine-tuning with `wte` frozen ends 0.35 above:
#   the gap was the vocabulary, which lives in the tied matrix. On the standard library's code
#   the order is the same (gains 2.604 full, 2.484 with the head, 1.447 on `c_attn`). Adapters
#   for two domains share one base model on disk, each a 289 KB file.
#
# Next: [Chapter 10 — Attention-map dashboards](10_attention_maps.ipynb) opens the model up and
# looks at what its attention heads attend to.
#
# ## Exercises
#
# **1. More targets.** Count the trainable parameters of rank-8 LoRA on GPT-2 124M's `c_attn`
# alone, and on all four linear layers of every block (`attn.c_attn`, `attn.c_proj`,
# `mlp.c_fc`, `mlp.c_proj`). Which layer type holds most of the adapter?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
big = GPT2(GPT2Config.preset("124M", context_length=64))
apply_lora(big, rank=8, targets=("attn.c_attn",))
merge_lora(big)
apply_lora(big, rank=8, targets=ALL_LINEAR)  # section 9.7's four layer types
for target in ALL_LINEAR:
    layer = lora_layers(big)[f"h.0.{target}"]
    print(f"{target:12s} {layer.lora_A.numel() + layer.lora_B.numel():7,} per block")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# A rank-$r$ adapter on an (out, in) layer has $r(\text{in} + \text{out})$ parameters, so the
# wide MLP layers (768 → 4 × 768 = 3,072 and back) hold the most: 30,720 each per block against 24,576
# for `c_attn` and 12,288 for `attn.c_proj`. Adapting all four layers trains about four times
# as many parameters as `c_attn` alone, still under 1% of the model.
# ```
#
# **2. Why is $B$, not $A$, zero at the start?** Would $A = 0$ with $B$ random also start as
# the identity? Would it train? And $A = B = 0$?
#
# ```{admonition} Solution
# :class: dropdown
# Either choice makes $BA = 0$, so the model starts unchanged. The gradients are
# $\partial L / \partial B = g\,(Ax)^\top$ and $\partial L / \partial A = B^\top g\,x^\top$, where
# $g$ is the gradient at the layer's output. With $B = 0$, $A$ gets no gradient on the first
# step but $B$ does, and after one step both move; with $A = 0$ it is the other way round, and
# it also trains. With both zero, both gradients are zero forever: nothing ever moves. That is
# why one of the two must start random.
# ```
#
# **3. Merging for inference.** After `merge_lora`, the adapted model runs exactly as fast as the
# base model. Why? And why might you *not* merge when serving many domains at once?
#
# ```{admonition} Solution
# :class: dropdown
# Merged, each adapted layer is again one matrix multiplication with $W + \frac{\alpha}{r}BA$:
# no extra work per token. Unmerged, each adapted layer does two more small matrix
# multiplications. But a merged model serves one domain only: to serve several domains from
# one copy of the base weights, keep the adapters separate and pick one per request (or swap
# them with `merge()` / `unmerge()`).
# ```
