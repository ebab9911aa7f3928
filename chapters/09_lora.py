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
# use (Hugging Face's `peft`), and fine-tune on a domain every reader already has on disk: the
# source code of Python's own standard library.
#
# The plan:
#
# 1. **The low-rank update**: $Wx + \frac{\alpha}{r} BAx$, naive (build $\Delta W$) and efficient
#    (never build it), and why the update is scaled by $\alpha / r$.
# 2. **`LoRALinear` and `apply_lora`**: wrap chosen linear layers, freeze the rest, count what
#    trains; merge the adapters back into a plain `GPT2`; save and load just the adapter.
# 3. **Against `peft`**: the same $A$ and $B$ in our model and in `peft`'s LoRA on Hugging Face's
#    `GPT2LMHeadModel` give the same logits.
# 4. **Your own text**: a folder of files becomes a corpus: documents joined by `<|endoftext|>`,
#    a train/validation split by document, and tokens streamed to a memory-mapped file on disk.
# 5. **The experiment**: full fine-tuning against LoRA at ranks 4, 8 and 16 on the standard
#    library (trainable parameters, time per step, peak memory, validation loss, a sample), then
#    The Verdict as a second domain for the same base model.
#
# The LoRA code is exported to `gpt2scratch/lora.py`; the corpus code, file plumbing, is in
# [Appendix A](A_engineering.ipynb). The command line gains `train --data FOLDER --glob ... --lora-rank R`.

# %%
#| default_exp lora

# %%
#| export
"""LoRA (Hu et al., 2021): low-rank adapters on GPT-2's linear layers.

Generated from chapter 09 of the book. `apply_lora` wraps chosen `nn.Linear` layers in
`LoRALinear` and freezes everything else; `merge_lora` folds the adapters back into a
plain model; `save_adapter` / `load_adapter` keep just the adapter; `train_and_save`
loads a model, adds adapters (or not), trains and saves, for the chapter and the CLI.
"""

from __future__ import annotations

import json
import math
import statistics
import time
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
from gpt2scratch.train import History, Run, TrainSettings, prepare_run, set_seed, train
from gpt2scratch.validation import check_int, check_number

# %%
import copy
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np

from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.corpus import find_files, prepare_corpus
from gpt2scratch.course import chapter5_model, local_gpt2
from gpt2scratch.data import verdict_text
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.train import evaluate

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
# * The update is scaled by $\alpha / r$. Adam moves every entry of $B$ by about the learning
#   rate on its first steps, whatever the gradient's size, so the update $BA$, a sum over $r$
#   terms, grows with $r$. Dividing by $r$ cancels that: one learning rate works for every
#   rank, and $\alpha$ is a knob for the update's size that does not move when you change $r$.
#   (We check this below.)
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
# Now the scaling. We train a 64 → 64 `LoRALinear` for 100 Adam steps on a random regression
# target, for ranks 4 to 64, and measure how far the layer moved, $\|\Delta W\|$, with the scale
# $\alpha / r$ and with a fixed scale of 1 instead.


# %%
def update_size(rank: int, divide_by_rank: bool, steps: int = 100) -> float:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(64, 64), rank=rank, alpha=8)
    if not divide_by_rank:
        layer.scaling = 1.0
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=1e-3)
    x, target = torch.randn(32, 64), torch.randn(32, 64)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(layer(x), target).backward()
        opt.step()
    return layer.delta_weight().norm().item()  # B started at 0: all of it is update


sizes = {r: (update_size(r, True), update_size(r, False)) for r in (4, 8, 16, 32, 64)}
print("rank | ||delta W||, scale alpha/r | ||delta W||, scale 1")
for r, (scaled, fixed) in sizes.items():
    print(f"{r:4d} | {scaled:26.3f} | {fixed:.3f}")

# %% [markdown]
# With a fixed scale, the same learning rate moves a rank-64 adapter 6.399 / 1.790 ≈ 3.6 times as
# far as a rank-4 one; with $\alpha / r$ the five ranks stay within 20% of each
# other (2.552 to 2.139). That is why LoRA recipes quote $\alpha$ and the learning rate once and
# then vary $r$ freely.
#
# ## 9.3 Adapting a whole model: `apply_lora` and `merge_lora`
#
# `apply_lora` walks the model, replaces every `nn.Linear` whose name ends with one of the
# `targets` by a `LoRALinear` around it, freezes every other parameter, and prints what trains.
# The default target is `attn.c_attn`, the fused query/key/value projection of every block (the
# original paper adapts the query and value projections; `peft` adapts `c_attn` for GPT-2 too).
# The language-model head is refused: its weight is tied to the token embeddings, so merging an
# update into it would silently change the embeddings as well.

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
            if name == "lm_head" or module is getattr(model, "lm_head", None):
                raise ValueError(
                    "LoRA on lm_head is not supported: its weight is tied "
                    "to the token embeddings wte"
                )
            if not isinstance(module, nn.Linear):
                raise TypeError(
                    f"LoRA target {name!r} is a {type(module).__name__}, "
                    "not an nn.Linear"
                )
            found.append(name)
    return sorted(set(found), key=found.index)


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
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model


# %% [markdown]
# We adapt the model chapter 5 trained on *The Verdict* (`chapter5_model()` loads the one
# `make run` saved, or trains a small stand-in once; the label says which). A rank-8 adapter on
# every block's `c_attn`:

# %%
course = chapter5_model()
print(course.label)
model = course.model
ids = torch.tensor([tokenizer.encode("Every effort moves you")])
with torch.no_grad():
    logits_before = model(ids)
apply_lora(model, rank=8, alpha=16)
print(model.h[0].attn.c_attn)
with torch.no_grad():
    print("unchanged at init:", torch.equal(model(ids), logits_before))

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
    "adapter changed the logits by up to",
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
# We save the adapter with its random values, load it into a fresh copy of the chapter-5 model,
# and compare logits and file sizes with a full checkpoint of the same model.

# %%
work = Path("../runs/ch09")  # git-ignored, like every run of the book
save_adapter(model, work / "demo-adapter")
fresh = load_adapter(chapter5_model().model, work / "demo-adapter")
with torch.no_grad():
    print("same logits after save/load:", torch.equal(fresh(ids), adapted))
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

# %% [markdown]
# ## 9.5 Checking against `peft`
#
# Hugging Face's `peft` is the library most LoRA fine-tuning goes through. To prove our adapter
# computes the same function, we build `transformers`' `GPT2LMHeadModel` with the chapter-5
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
hf = hf_twin(chapter5_model().model, attn_implementation="eager").eval()
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
print(f"max |ours - peft| logits: adapted {diff:.1e}, merged {merged_diff:.1e}")
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
# ## 9.7 The experiment: the standard library as a domain
#
# Every machine that runs this book has a code corpus on disk: the source of Python's standard
# library. We fine-tune the chapter-5 model on it four ways, fully and with LoRA at ranks 4, 8
# and 16, and measure each setting in a fresh Python process, so that its peak memory is its
# own.
#
# Every fine-tuning run is the same recipe: load a base model, add adapters (or train every
# weight), chapter 5's `prepare_run` and `train` (`prepare_run(model=...)` puts only the
# parameters that require a gradient into AdamW), then save the adapter alone, or checkpoints
# of the whole model. One exported function holds the recipe; the command line's `train`
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
    alpha: float = 16.0, out: str | Path | None = None,
    resume: str | Path | None = None, device=None,
    ready: Callable[[Run], None] | None = None,
    loop: Callable[..., History] = train, **train_options,
) -> tuple[Run, History]:  # fmt: skip
    """Load `base` (a model, or a folder or name for `load_base`; None: a new
    `settings.model`, or the checkpoint that `resume` continues), add rank-`rank` LoRA
    adapters (None: train every weight), train on `text` (90/10) or `loaders` = (train,
    val), and save into `out`: the adapter, or the whole model's checkpoints.

    `ready(run)` runs before the first step. `loop` is `train` or a loop with its
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
        apply_lora(model, rank, alpha)
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
# The worker that each fresh process runs is a thin wrapper: it times the steps through a
# callback, takes a greedy sample before the first step through `ready`, and reports what the
# table needs. Its peak memory comes from `peak_memory_mb` (section A.5 of
# [Appendix A](A_engineering.ipynb)): the most memory CUDA allocated on a GPU, the process's
# resident high-water mark on a CPU.


# %%
#| export
def finetune_and_measure(
    base: str, corpus_dir: str, *, rank: int | None, lr: float, steps: int,
    alpha: float = 16.0, batch_size: int = 8, context_length: int = 128,
    eval_batches: int = 20, prompt: str = "def ", seed: int = 123,
    save_to: str | None = None,
) -> dict:  # fmt: skip
    """Fine-tune the checkpoint `base` on a tokenised corpus folder for `steps` steps
    (>= 3), fully (rank None) or with LoRA, and measure it. Run it in a fresh process,
    so that the peak memory it reports is this run's."""
    corpus = Corpus.load(corpus_dir)
    loaders = corpus_loaders(corpus, context_length, batch_size, seed)
    settings = TrainSettings(
        context_length=context_length, batch_size=batch_size, dropout=0.0, lr=lr,
        weight_decay=0.0, grad_clip=1.0, eval_every=steps, eval_iters=eval_batches,
        max_steps=steps, seed=seed, progress=False, verbose=False,
    )  # fmt: skip
    options, before, times = dict(max_length=30, temperature=0), [], []  # greedy
    run, history = train_and_save(
        settings, base, loaders=loaders, rank=rank, alpha=alpha, out=save_to,
        ready=lambda run: before.append(run.model.generate(prompt, **options)),
        callbacks=[lambda info: times.append(time.perf_counter())],
    )  # fmt: skip
    # the time between step ends; the last step also evaluated, so it is left out
    step_s = statistics.median(b - a for a, b in zip(times[:-2], times[1:-1]))
    trainable, total = count_parameters(run.model)
    return dict(
        rank=rank, trainable=trainable, total=total, step_ms=1000 * step_s,
        peak_mb=peak_memory_mb(run.device), val_before=history.val_loss[0],
        val_after=history.val_loss[-1], sample_before=before[0],
        sample_after=run.model.generate(prompt, **options), device=str(run.device),
    )  # fmt: skip


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
# Now the real corpus: every `*.py` file of the standard library, without `site-packages` (which
# holds installed packages, not the standard library). We tokenise it in a fresh process, which
# reports its own peak memory; the parent then opens the same corpus from the cache.

# %%
# NBVAL_IGNORE_OUTPUT
EXP = full_or_quick(
    dict(
        packages=None,
        ranks=(None, 4, 8, 16),
        steps=60,
        batch_size=2,
        context_length=64,
        eval_batches=10,
    ),
    dict(
        packages=("json", "email"),
        ranks=(None, 8),
        steps=3,
        batch_size=1,
        context_length=32,
        eval_batches=1,
    ),
    "the json and email packages instead of the whole standard library; full "
    "fine-tuning and rank 8 only, 3 steps of 1 x 32 tokens instead of 60 of 2 x 64",
)
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
# The four settings run one after the other, each in its own process, from the same base
# checkpoint and on the same batches. Full fine-tuning uses a learning rate of 5e-4; LoRA, whose
# $B$ starts at zero and which has far fewer parameters to move, 2e-3 with $\alpha = 16$ (a
# common choice). Both use AdamW without weight decay, gradient clipping at 1, and no dropout.
# The prompt is the start of a Python function. The base is OpenAI's GPT-2 124M when its
# weights are on this machine (`GPT2SCRATCH_GPT2_DIR` or the Hugging Face cache, see
# [Chapter 7](07_pretrained.ipynb)); here they are not, so it is the chapter-5 model above,
# whose label says which one it is.

# %%
# NBVAL_IGNORE_OUTPUT
base_dir = work / "base"
base_model = local_gpt2()  # OpenAI's GPT-2 124M when it is on this machine (chapter 7)
if base_model is None:
    base_model = chapter5_model().model
save_checkpoint(base_dir, base_model)
FINETUNE = """
import json, sys
from gpt2scratch.lora import finetune_and_measure  # reimport-ok: a separate process
print(json.dumps(finetune_and_measure(**json.load(sys.stdin))))
"""
PROMPT = "def read_config(path):\n    "
common = {k: EXP[k] for k in ("steps", "batch_size", "context_length", "eval_batches")}
common.update(base=str(base_dir), corpus_dir=str(code_corpus.folder), prompt=PROMPT)
SETTINGS = {
    f"LoRA r={r}" if r else "full": (r, 2e-3 if r else 5e-4) for r in EXP["ranks"]
}
results = {}
for name, (rank, lr) in SETTINGS.items():
    save_to = str(work / "adapters" / f"code-r{rank}") if rank else None
    results[name] = run_fresh(FINETUNE, dict(common, rank=rank, lr=lr, save_to=save_to))
print(
    f"{len(results)} settings, {EXP['steps']} steps each of {EXP['batch_size']} x "
    f"{EXP['context_length']} tokens, on {results['full']['device']}"
)

# %%
# NBVAL_IGNORE_OUTPUT
print(
    f"{'setting':>10} | {'trainable':>11} | {'share':>6} | {'ms/step':>7} | "
    f"{'peak MB':>7} | {'val before':>10} | {'val after':>9}"
)
for name, r in results.items():
    print(
        f"{name:>10} | {r['trainable']:>11,} | {r['trainable'] / r['total']:6.2%} | "
        f"{r['step_ms']:7.0f} | {r['peak_mb']:7.0f} | {r['val_before']:10.3f} | "
        f"{r['val_after']:9.3f}"
    )
full = results["full"]
lora_peak = min(r["peak_mb"] for n, r in results.items() if n != "full")
print(
    f"full fine-tuning's peak is {full['peak_mb'] - lora_peak:.0f} MB above the "
    "lowest LoRA peak"
)
assert full["trainable"] == full["total"]
for name, r in results.items():
    assert r["val_after"] < r["val_before"], name
    if name != "full":
        assert r["trainable"] < 0.01 * full["trainable"], name

# %% [markdown]
# Full fine-tuning trains all 7,242,624 parameters and takes the validation loss on code from
# 10.857 to 6.451 in 60 steps; LoRA trains 0.11% to 0.45% of them and ends near 9.9 whatever the
# rank (9.886, 9.891, 9.938). That is not a failure of LoRA but of the match between method and
# base model: LoRA assumes that the change a new domain needs is small and of low rank, on top
# of a model that already knows the language. Our stand-in base model has only ever read
# *The Verdict*; Python source is a new vocabulary for it, and the token embeddings and the
# output head, where most of that learning would go, are exactly what LoRA on `c_attn` leaves
# frozen. With a pretrained GPT-2 (chapter 7) as the base, the same code runs unchanged.
#
# The memory column measures each process's resident high-water mark: full fine-tuning keeps a
# gradient and two AdamW moments for every weight, LoRA only for $A$ and $B$ (the line under the
# table prints the difference). The time per step comes from separate processes on a shared
# machine, so differences of less than about 2x between settings there are noise.
#
# The same numbers as a picture: what trains (log scale) against where the validation loss ends.

# %%
# NBVAL_IGNORE_OUTPUT
names = list(results)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.bar(names, [results[n]["trainable"] for n in names], color="C0")
ax1.set(yscale="log", ylabel="trainable parameters", title="What trains")
before = [results[n]["val_before"] for n in names]
after = [results[n]["val_after"] for n in names]
xs = np.arange(len(names))
ax2.bar(xs - 0.2, before, 0.4, label="before", color="C7")
ax2.bar(xs + 0.2, after, 0.4, label="after", color="C2")
ax2.set_xticks(xs, names)
ax2.set(
    ylabel="validation loss (code)", title="Where it ends", ylim=(0, max(before) * 1.1)
)
ax2.legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# And the greedy continuation of the prompt, before (every setting starts from the same model)
# and after each setting:

# %%
# NBVAL_IGNORE_OUTPUT
print("before:    ", repr(results["full"]["sample_before"]))
for name, r in results.items():
    print(f"{name + ':':11s}", repr(r["sample_after"]))

# %% [markdown]
# ## 9.8 A second domain: *The Verdict*
#
# The adapter machinery does not care what the text is. We train a second rank-8 adapter, this
# time on *The Verdict* (one document, so chapter 5's 90/10 cut), in this process with the same
# `train_and_save`, and save it next to the code adapter. One base model on disk, two small
# files, two domains.

# %%
# NBVAL_IGNORE_OUTPUT
verdict_file = work / "verdict" / "the-verdict.txt"
if not verdict_file.is_file():
    verdict_file.parent.mkdir(parents=True, exist_ok=True)
    verdict_file.write_text(verdict_text(), encoding="utf-8")
verdict_corpus = prepare_corpus(verdict_file, cache_dir=work / "corpus", progress=False)
print("The Verdict:", verdict_corpus.documents, verdict_corpus.tokens)

T, B = EXP["context_length"], EXP["batch_size"]
settings = TrainSettings(
    context_length=T,
    batch_size=B,
    dropout=0.0,
    lr=2e-3,
    weight_decay=0.0,
    grad_clip=1.0,
    max_steps=EXP["steps"],
    eval_every=EXP["steps"],
    eval_iters=EXP["eval_batches"],
    progress=False,
    verbose=False,
)
verdict_loaders = corpus_loaders(verdict_corpus, T, B)
voice = chapter5_model().model  # the same base model as the code adapters
out = work / "adapters" / "verdict-r8"
train_and_save(settings, voice, loaders=verdict_loaders, rank=8, alpha=16, out=out)
print(f"adapters on disk: {sorted(p.name for p in (work / 'adapters').iterdir())}")

# %% [markdown]
# Now each adapter is loaded onto a fresh copy of the same base model and measured on both
# domains' validation text; each also continues a line of prose and a line of code (greedy).

# %%
# NBVAL_IGNORE_OUTPUT
code_val = corpus_loaders(code_corpus, T, B)[1]
domains = {"code": code_val, "Verdict": verdict_loaders[1]}
adapters = {
    "none (base)": None,
    "code r=8": work / "adapters" / "code-r8",
    "Verdict r=8": work / "adapters" / "verdict-r8",
}
table = {}
for name, folder in adapters.items():
    m = chapter5_model().model
    if folder is not None:
        load_adapter(m, folder)
    table[name] = {d: evaluate(m, v, EXP["eval_batches"]) for d, v in domains.items()}
    prose = m.generate("I had always thought", max_length=15, temperature=0)
    code = m.generate("import ", max_length=15, temperature=0)
    print(
        f"{name}: code val {table[name]['code']:.3f}, Verdict val "
        f"{table[name]['Verdict']:.3f}\n   {prose!r}\n   {code!r}"
    )
assert table["code r=8"]["code"] < table["none (base)"]["code"]

# %% [markdown]
# The code adapter lowers the loss on code (10.857 to 9.891) and raises it on *The Verdict*
# (6.573 to 7.563): it has moved the model's voice toward code, and its prose sample changes.
# The Verdict adapter changes almost nothing (6.573 to 6.571), because the stand-in base model
# was trained on *The Verdict* already. All three rows share one base model file; switching
# domains is loading a different 65 KB adapter.
#
# ## 9.9 From the command line
#
# The command line puts the same pieces together. `--data` takes a file, several files, or
# folders (`--glob` chooses the files of a folder); `--init` loads the weights to start from
# (chapter 7); `--lora-rank` trains an adapter on them instead of every weight, and the run's
# folder then holds just the adapter (and `init.json`, which records the base weights):
#
# ```bash
# python -m gpt2scratch train --data ~/notes --glob "*.md" --init gpt2 --lora-rank 8 --out runs/notes
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
# * **The $\alpha / r$ scale** keeps the size of the learned update nearly independent of the rank
#   (2.552 to 2.139 over ranks 4 to 64 after 100 Adam steps, against 1.790 to 6.399 without it).
# * **`apply_lora`** wraps the chosen linears and freezes the rest; **`merge_lora`** folds the
#   adapters back into a plain `GPT2`, with the same outputs; **adapters** are saved on their own
#   as a small safetensors file and a JSON config.
# * **Against `peft`**, with the same $A$ and $B$ on Hugging Face's `GPT2LMHeadModel`, the logits
#   agree within $10^{-5}$, adapted and merged.
# * **A corpus** is found in folders and files, split by document, and streamed to a `uint16`
#   memory-mapped token file, cached next to the data; only one block of ids is ever held in
#   memory, so the corpus's size hardly changes the tokenising process's peak memory.
# * **The experiment** shows the trade: LoRA trains 0.11% to 0.45% of the parameters and keeps
#   the base model intact, but on a base model that has never seen code it learns far less in
#   60 steps than full fine-tuning (validation loss 9.886 to 9.938
#   against 6.451, from 10.857). Adapters
#   for two domains then share one base model on disk, each a 65 KB file.
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
ALL = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
apply_lora(big, rank=8, targets=("attn.c_attn",))
merge_lora(big)
apply_lora(big, rank=8, targets=ALL)
for target in ALL:
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
