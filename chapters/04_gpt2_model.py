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
# # Chapter 4 — The GPT-2 model
#
# In this chapter you build GPT-2 itself: a `GPT2` module that reads token ids and returns, at
# every position, a score for every possible next token, plus a `generate` method that turns
# those scores into text. By the end, `GPT2(GPT2Config())` is OpenAI's 124M architecture,
# parameter for parameter, and its logits match Hugging Face's `GPT2LMHeadModel` holding the same
# weights.
#
# Chapter 3 gave us causal self-attention: a way for every position to look back at the positions
# before it. A language model needs a few more parts around it. We build each one, check it
# against PyTorch, and then assemble them:
#
# 1. **LayerNorm**, written with `mean` and `var`, proven equal to `nn.LayerNorm`;
# 2. **GELU**, the smooth ReLU GPT-2 uses, proven equal to `F.gelu(approximate="tanh")`;
# 3. the **MLP** (feed-forward network) that every block applies to each token on its own;
# 4. **residual connections**, and a measurement of what happens to gradients without them;
# 5. the **pre-LN transformer block**: attention + MLP, each wrapped in LayerNorm and a shortcut;
# 6. the **GPT2** model and its config, checked against Hugging Face `transformers`, with one
#    table of sizes (OpenAI's four and two small ones of ours), the parameter count of each
#    proven (124,439,808 for "124M"), and what they cost in memory;
# 7. **generation**: turning next-token logits into text, one token at a time, with the untrained
#    model (it writes gibberish, and we show it).
#
# The figure below, drawn by the folded cell after the imports, shows the whole stack with the
# shapes of the 124M model, from token ids at the bottom to logits at the top.
#
# Everything marked `#| export` below becomes `gpt2scratch/model.py`, which the rest of the book
# imports. Module and attribute names follow Hugging Face's `GPT2LMHeadModel` (`wte`,
# `h.0.attn.c_attn`, `ln_f`, ...) so that chapter 7 can load OpenAI's trained weights by name.

# %%
#| default_exp model

# %%
import importlib.util
import math
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.patches import FancyBboxPatch

from gpt2scratch.attention import CausalSelfAttention
from gpt2scratch.tokenizer import gpt2_encoding

torch.set_printoptions(precision=4, sci_mode=False)
enc = gpt2_encoding()  # GPT-2's tokenizer, rebuilt offline in chapter 1

# %% tags=["hide-input"]
STACK_COLORS = {"io": "white", "emb": "#d9f99d", "drop": "#e5e7eb", "norm": "#fde68a",
                "attn": "#fdba74", "mlp": "#93c5fd", "head": "#c4b5fd"}  # fmt: skip


def draw_stack(V=50257, n_ctx=1024, C=768, L=12, H=12):  # GPT-2 124M's sizes
    """GPT-2 from token ids (bottom) to logits (top), with the shape at each stage."""
    fig, ax = plt.subplots(figsize=(8, 10.5), layout="tight")

    def box(x, y, text, kind, width):
        corner = (x - width / 2, y - 0.32)
        style = dict(fc=STACK_COLORS[kind], ec="black", boxstyle="round,pad=0.05")
        ax.add_patch(FancyBboxPatch(corner, width, 0.64, **style))
        ax.text(x, y, text, ha="center", va="center", fontsize=9.5)

    def arrow(start, end, color="black", lw=1.5):
        style = dict(arrowstyle="-|>", color=color, lw=lw, shrinkA=0, shrinkB=0)
        ax.annotate("", end, start, arrowprops=style)

    embed = f"wte ({V:,}, {C})[ids] + wpe ({n_ctx:,}, {C})[0 … T-1] → (B, T, {C})"
    stack = [  # (height, text, kind), bottom-up
        (0.0, f"token ids  (B, T), integers below {V:,}", "io"),
        (1.2, embed, "emb"),
        (2.4, "dropout (training only)", "drop"),
        (10.8, f"ln_f: final LayerNorm  (B, T, {C})", "norm"),
        (12.0, f"lm_head, tied to wte (its transpose):  {C} → {V:,} scores", "head"),
        (13.2, f"logits  (B, T, {V:,})", "io"),
    ]
    for y, text, kind in stack:
        box(0, y, text, kind, width=6.4)
    for (y0, *_), (y1, *_) in zip(stack, stack[1:]):
        if y1 - y0 < 2:  # neighbours; the blocks fill the gap from dropout to ln_f
            arrow((0, y0 + 0.37), (0, y1 - 0.37))
    ax.add_patch(FancyBboxPatch((-3.6, 3.2), 7.2, 6.8, fc="#f8fafc", ec="gray", ls="--",
                                boxstyle="round,pad=0.1", zorder=0))  # fmt: skip
    ax.text(3.5, 9.5, f"× {L} blocks", ha="right", va="center", size=12, weight="bold")
    green = dict(color="tab:green", va="center", size=9)
    ax.text(-3.5, 9.5, f"residual stream\n(B, T, {C})", **green)
    arrow((-1.2, 2.72), (-1.2, 10.48), "tab:green", lw=2.5)  # the residual stream
    sublayers = [  # (height of the branch, LayerNorm, sub-layer, kind)
        (3.6, "ln_1", f"causal self-attention, {H} heads × {C // H}", "attn"),
        (6.6, "ln_2", f"MLP: {C} → {4 * C} → GELU → {C}", "mlp"),
    ]
    for y, norm, text, kind in sublayers:  # read the stream, normalise, transform, add
        ax.plot([-1.2, 1.4], [y, y], color="black", lw=1.2)
        arrow((1.4, y), (1.4, y + 0.18))
        box(1.4, y + 0.5, f"{norm}: LayerNorm", "norm", width=3.6)
        arrow((1.4, y + 0.82), (1.4, y + 1.28))
        box(1.4, y + 1.8, text, kind, width=3.6)
        ax.plot([1.4, 1.4], [y + 2.12, y + 2.6], color="black", lw=1.2)
        arrow((1.4, y + 2.6), (-1.05, y + 2.6))
        circle = dict(boxstyle="circle,pad=0.15", fc="white", ec="tab:green")  # the add
        ax.text(-1.2, y + 2.6, "+", ha="center", va="center", fontsize=13, bbox=circle)
        ax.text(-1.45, y + 2.6, f"x + {kind}({norm}(x))", ha="right", **green)
    title = f"GPT-2 124M, bottom to top: B sequences of T tokens, T ≤ {n_ctx:,}"
    ax.set(xlim=(-3.8, 3.8), ylim=(-0.6, 13.8), title=title)
    ax.axis("off")


draw_stack()
plt.show()

# %% [markdown]
# The exported module starts with its imports. Attention is the only piece of the model it takes
# from an earlier chapter; the argument checks come from [Appendix A](A_engineering.ipynb), which
# gives the whole package one error contract (a wrong type raises `TypeError`, a wrong value
# `ValueError`, and the message names the value).

# %%
#| export
"""GPT-2 (Radford et al., 2019) in one file: config, LayerNorm, GELU, MLP, Block, GPT2.

Attribute names follow Hugging Face's `GPT2LMHeadModel`, so pretrained weights map
one-to-one (chapter 7). One difference: our `nn.Linear` layers store weights as
(out, in); HF's `Conv1D` stores (in, out), so chapter 7 transposes those matrices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.attention import CausalSelfAttention
from gpt2scratch.validation import check_bool, check_int, check_number

# %% [markdown]
# ## 1. The config: a few numbers describe GPT-2
#
# OpenAI released GPT-2 in four sizes. They share the vocabulary (50,257 tokens) and the context
# window (1,024 tokens) and differ only in width (`d_model`), depth (`n_layers`) and number of
# attention heads. One table holds every size the book uses: OpenAI's four, and two small ones of
# ours, "tiny" and "mini", for runs that must finish in seconds on a CPU. Hugging Face names
# OpenAI's sizes `gpt2`, `gpt2-medium`, ...; those names work too.

# %%
#| export
PRESETS = {  # name: (d_model, n_layers, n_heads)
    "tiny": (32, 2, 2),  # ours: quick runs and tests
    "mini": (128, 4, 4),  # ours: small experiments on a CPU
    "124M": (768, 12, 12),  # the four sizes OpenAI released
    "355M": (1024, 24, 16),
    "774M": (1280, 36, 20),
    "1558M": (1600, 48, 25),
}
HF_NAMES = {  # Hugging Face's names for OpenAI's sizes
    "gpt2": "124M",
    "gpt2-medium": "355M",
    "gpt2-large": "774M",
    "gpt2-xl": "1558M",
}

# %% [markdown]
# A frozen dataclass holds the numbers of one model. It checks them when it is made: a config
# with `d_model=768, n_heads=10` would otherwise fail deep inside attention with a reshape error.
# `GPT2Config.preset(name, **overrides)` looks a size up in the table.
#
# Its `dropout` defaults to 0.1, the value in Hugging Face's GPT-2 config, so that our
# `GPT2Config()` and theirs describe the same model, and a model loaded with their weights
# (chapter 7) trains as theirs does. It is not a number from OpenAI: the GPT-2 paper states no
# dropout, OpenAI's released `model.py` has none, and nanoGPT pretrains with 0 (see
# [chapter 3](03_attention.ipynb), section 4). Dropout acts only in training mode: `eval()`
# turns it off, and so does `generate`.


# %%
#| export
@dataclass(frozen=True)
class GPT2Config:
    """Hyper-parameters of a GPT-2 model. `GPT2Config()` is the 124M model."""

    vocab_size: int = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
    context_length: int = 1024  # longest sequence the model sees (rows of wpe)
    d_model: int = 768  # width of the residual stream
    n_layers: int = 12  # number of transformer blocks
    n_heads: int = 12  # attention heads per block; head size = d_model // n_heads
    dropout: float = 0.1  # Hugging Face's GPT-2 value; acts only in training mode
    qkv_bias: bool = True  # GPT-2's q, k, v projections have biases
    tie_weights: bool = True  # lm_head shares wte's weight matrix

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            check_int(name, getattr(self, name), minimum=1)
        check_number("dropout", self.dropout, minimum=0, maximum=1, max_open=True)
        check_bool("qkv_bias", self.qkv_bias)
        check_bool("tie_weights", self.tie_weights)
        if self.d_model % self.n_heads:
            raise ValueError(
                "d_model must be divisible by n_heads, "
                f"got d_model={self.d_model}, n_heads={self.n_heads}"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> GPT2Config:
        """A size from PRESETS ("tiny", ..., "1558M") or HF's name ("gpt2", ...)."""
        if not isinstance(name, str):
            raise TypeError(
                f"preset name must be a str, got {type(name).__name__} {name!r}"
            )
        size = HF_NAMES.get(name, name)
        if size not in PRESETS:
            valid = ", ".join([*PRESETS, *HF_NAMES])
            raise ValueError(f"unknown preset {name!r}; valid names: {valid}")
        d_model, n_layers, n_heads = PRESETS[size]
        sizes = dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads)
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPT2Config:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown GPT2Config keys {unknown}; valid keys are {valid}"
            )
        return cls(**d)


# %%
cfg = GPT2Config()
print(cfg)
print(GPT2Config.preset("gpt2-xl"))
print(GPT2Config.preset("tiny", context_length=64))  # overrides for a small experiment
assert GPT2Config.from_dict(cfg.to_dict()) == cfg  # round trip, used by checkpoints

# %% [markdown]
# A bad config fails at once, with a message that names the value and what would be valid:

# %%
for bad in (
    dict(d_model=768, n_heads=10),
    dict(dropout=1.5),
    dict(n_layers=0),
    dict(d_model=7.5),
):
    try:
        GPT2Config(**bad)
    except (TypeError, ValueError) as e:
        print(f"{bad}: {type(e).__name__}: {e}")
try:
    GPT2Config.preset("gpt5")
except ValueError as e:
    print(f"ValueError: {e}")

# %% [markdown]
# ## 2. LayerNorm
#
# Deep networks train badly when the scale of their activations drifts from layer to layer. Layer
# normalization fixes the scale of each token's vector: subtract its mean, divide by its standard
# deviation, so that every vector has mean 0 and variance 1 across its `d_model` features. Two learned
# vectors, a scale `weight` ($\gamma$, starts at 1) and a shift `bias` ($\beta$, starts at 0), let the
# network undo this wherever that helps:
#
# $$\mathrm{LayerNorm}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \cdot \gamma + \beta,
# \qquad \mu = \tfrac{1}{C}\textstyle\sum_i x_i,\quad \sigma^2 = \tfrac{1}{C}\sum_i (x_i - \mu)^2$$
#
# Unlike batch normalization it works on each token alone, so it behaves identically in training and in
# generation, for any batch size. Note $\sigma^2$ divides by $C$, not $C - 1$: the *biased* variance
# (`unbiased=False`), as PyTorch and GPT-2 do. The $\epsilon = 10^{-5}$ keeps a constant vector from
# dividing by zero.


# %%
class NaiveLayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1), divide by C
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


torch.manual_seed(123)
x = torch.randn(2, 5) * 3 + 2  # 2 tokens, 5 features, mean ~2, std ~3
with torch.no_grad():
    y = NaiveLayerNorm(5)(x)
print("x:\n", x.round(decimals=4))
# abs() only hides a "-0." in the printout
print("mean per token:", y.mean(dim=-1).round(decimals=4).abs())
print("var per token: ", y.var(dim=-1, unbiased=False).round(decimals=4))

# %% [markdown]
# Each row now has mean 0 and variance 1 (up to $\epsilon$). Is it exactly `nn.LayerNorm`? Compare
# outputs and gradients on a GPT-2 sized input, with random (not default) $\gamma$ and $\beta$ so that
# every term is tested. The two compute the same formula in a different order, so we expect
# differences at the level of float32 round-off, not zero. Their digits depend on the CPU, so the
# cell prints the bounds that its asserts check:

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(123)
x = torch.randn(2, 4, 768) * 5 + 1
naive, ref = NaiveLayerNorm(768), nn.LayerNorm(768)
with torch.no_grad():
    for p in (naive.weight, naive.bias):
        p.normal_()
    ref.weight.copy_(naive.weight)
    ref.bias.copy_(naive.bias)
x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
out_naive, out_ref = naive(x1), ref(x2)
weights = torch.arange(768)  # an arbitrary scalar loss, so gradients are not trivial
(out_naive * weights).sum().backward()
(out_ref * weights).sum().backward()
print(f"largest |output|       : {out_ref.abs().max().item():.1f}")
output_diff = (out_naive - out_ref).abs().max().item()
print(f"max |output diff| < 1e-4: {output_diff < 1e-4}")
print(f"largest |grad x|       : {x2.grad.abs().max().item():.1f}")
grad_diff = (x1.grad - x2.grad).abs().max().item()
print(f"max |grad x diff| < 1e-3: {grad_diff < 1e-3}")
assert output_diff < 1e-4 and grad_diff < 1e-3
torch.testing.assert_close(out_naive, out_ref)
torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-3)
torch.testing.assert_close(naive.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-3)
torch.testing.assert_close(naive.bias.grad, ref.bias.grad)

# %% [markdown]
# The exported `LayerNorm` keeps our parameter names and initial values but calls `F.layer_norm`,
# which computes the same formula in one fused pass (and a hand-written backward), instead of the five
# separate tensor operations above. It is equal to the naive version:


# %%
#| export
class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim, biased variance.

    Equal to the mean/var version of chapter 4; `F.layer_norm` runs it as one kernel.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # "gamma": scale, starts at 1
        self.bias = nn.Parameter(torch.zeros(d_model))  # "beta": shift, starts at 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.weight.shape
        return F.layer_norm(x, shape, self.weight, self.bias, self.eps)  # (..., C)


# %%
ln = LayerNorm(768)
ln.load_state_dict(naive.state_dict())  # same names: weight, bias
torch.testing.assert_close(ln(x), naive(x))
print("LayerNorm == NaiveLayerNorm == nn.LayerNorm")

# %% [markdown]
# ## 3. GELU
#
# The MLP inside each block needs a non-linearity. GPT-2 uses GELU, the Gaussian error linear unit
# $\mathrm{GELU}(x) = x\,\Phi(x)$, where $\Phi$ is the standard normal CDF: the input times the
# probability that a standard normal variable is below it. GPT-2 was trained with a cheaper tanh
# approximation, and we must use the same one to reproduce its outputs exactly:
#
# $$\mathrm{GELU}(x) \approx \tfrac{1}{2}\,x\left(1 + \tanh\!\left[\sqrt{2/\pi}\,\left(x + 0.044715\,x^3\right)\right]\right)$$


# %%
def naive_gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


xs = torch.linspace(-4, 4, 1001)
exact = xs * 0.5 * (1 + torch.erf(xs / math.sqrt(2)))  # x * Phi(x)
approx_err = (naive_gelu(xs) - exact).abs().max().item()
print(f"max |tanh approx - exact GELU| on [-4, 4]: {approx_err:.5f}")
torch.testing.assert_close(naive_gelu(xs), F.gelu(xs, approximate="tanh"))
torch.testing.assert_close(F.gelu(xs), exact)  # PyTorch's default is the exact GELU

# %% [markdown]
# The approximation is within about 0.0005 of the exact GELU, but "close" is not "equal": a model
# trained with one and run with the other drifts. Our formula and PyTorch's tanh kernel, on the
# other hand, agree to float32 round-off:

# %%
kernel_diff = (naive_gelu(xs) - F.gelu(xs, approximate="tanh")).abs().max().item()
print(f"max |naive_gelu - F.gelu(tanh)| on [-4, 4] < 1e-5: {kernel_diff < 1e-5}")
assert kernel_diff < 1e-5

# %% [markdown]
# Beside ReLU, GELU is smooth, lets a little negative signal through (its minimum is about
# −0.17), and has a non-zero gradient for negative inputs, so a neuron that is "off" can still
# learn:

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
xs_grad = xs.clone().requires_grad_()
for name, fn in (
    ("GELU (tanh)", lambda t: F.gelu(t, approximate="tanh")),
    ("ReLU", F.relu),
):
    ys = fn(xs_grad)
    (grad,) = torch.autograd.grad(ys.sum(), xs_grad)
    axes[0].plot(xs, ys.detach(), label=name)
    axes[1].plot(xs, grad, label=name)
axes[0].set_title("activation")
axes[1].set_title("derivative")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
plt.tight_layout()
plt.show()
print("GELU minimum:", round(naive_gelu(xs).min().item(), 4))

# %% [markdown]
# The exported `GELU` calls the fused kernel; gradients agree too:


# %%
#| export
class GELU(nn.Module):
    """GELU, GPT-2's tanh approximation: 0.5x (1 + tanh(√(2/π) (x + 0.044715x³)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # one fused kernel for the formula above


# %%
a, b = xs.clone().requires_grad_(), xs.clone().requires_grad_()
GELU()(a).sum().backward()
naive_gelu(b).sum().backward()
torch.testing.assert_close(a.grad, b.grad)
print("GELU == naive_gelu, values and gradients")

# %% [markdown]
# ## 4. The MLP
#
# Attention moves information *between* positions. The MLP then processes each position on its own:
# widen the 768 features to 4 × 768 = 3,072, apply GELU, project back to 768. It is the largest
# part of each block, and of the model: in GPT-2 124M the twelve MLPs hold 45.5% of all
# parameters (section 8 counts them). The names `c_fc` and `c_proj` are Hugging Face's.


# %%
#| export
class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU, project back."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)  # adds into the residual stream
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c_proj(self.gelu(self.c_fc(x)))  # (B, T, 4C) -> (B, T, C)
        return self.dropout(x) if self.training else x  # eval: no call (ch. 8.6)


# %%
torch.manual_seed(123)
mlp = MLP(768)
x = torch.randn(2, 3, 768)
print(tuple(x.shape), "->", tuple(mlp(x).shape))
n_mlp = sum(p.numel() for p in mlp.parameters())
print(f"MLP parameters: {n_mlp:,} = 2 * 4 * 768^2 weights + (4 * 768 + 768) biases")
assert n_mlp == 8 * 768**2 + 5 * 768

# %% [markdown]
# Why does it act on each position alone? Changing the input at position 0 leaves positions 1 and 2
# untouched. All mixing across positions is attention's job:

# %%
x2 = x.clone()
x2[:, 0] += 1.0
print("positions changed:", (mlp(x2) != mlp(x)).any(dim=-1)[0].tolist())

# %% [markdown]
# ## 5. Residual connections: why gradients survive depth
#
# GPT-2 124M stacks 12 blocks, GPT-2 XL 48. Backpropagation multiplies one Jacobian per layer. If
# each layer shrinks the gradient a little, the product shrinks exponentially with depth and the
# early layers stop learning: the *vanishing gradient* problem. A residual (or *shortcut*) connection
# computes `x + f(x)` instead of `f(x)`. Its Jacobian is `I + f'(x)`, and the identity gives the
# gradient a path to every layer that no layer can shrink.
#
# We measure it: a stack of 24 layers (`Linear(64, 64)` + GELU, PyTorch's default initialization), once
# plain and once with shortcuts. Same weights, same input, same loss; we print the gradient norm of
# each layer's weight matrix.


# %%
class DeepStack(nn.Module):
    def __init__(self, depth, width, shortcut):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), GELU()) for _ in range(depth)
        )
        self.shortcut = shortcut

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x) if self.shortcut else layer(x)
        return x


def layer_grad_norms(shortcut, depth=24, width=64):
    torch.manual_seed(123)  # same weights and input for both stacks
    net = DeepStack(depth, width, shortcut)
    x = torch.randn(16, width)
    net(x).pow(2).mean().backward()
    return [layer[0].weight.grad.norm().item() for layer in net.layers]


plain, residual = layer_grad_norms(False), layer_grad_norms(True)
print("layer   plain      residual")
for i in (0, 5, 11, 17, 23):
    print(f"{i + 1:>5}   {plain[i]:.2e}   {residual[i]:.2e}")
ratio_plain, ratio_residual = plain[0] / plain[-1], residual[0] / residual[-1]
print(
    "first/last layer gradient ratio: "
    f"plain {ratio_plain:.1e}, residual {ratio_residual:.2f}"
)
assert ratio_plain < 1e-6 and ratio_residual > 0.1

# %%
plt.figure(figsize=(6, 3))
plt.semilogy(range(1, 25), plain, "o-", label="plain: x = f(x)")
plt.semilogy(range(1, 25), residual, "o-", label="residual: x = x + f(x)")
plt.xlabel("layer (1 = nearest the input)")
plt.ylabel("‖∂loss/∂W‖")
plt.legend()
plt.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# Without shortcuts the first layer's gradient is eleven orders of magnitude smaller than the last
# layer's (the printed ratio, 8.0e-12): those layers would not learn at all. With shortcuts every layer
# gets a gradient of the same order. The residual gradients are also *large*, because 24 unscaled
# additions make the output itself large. GPT-2 keeps that in check with two measures you will meet
# next: the LayerNorm in front of every sub-layer, and a smaller initialization for the layers that add
# into the sum. In GPT-2 the running sum `x` is called the **residual stream**: each block reads from it
# and *adds* its result back.

# %% [markdown]
# ## 6. The transformer block (pre-LN)
#
# A block has two sub-layers, each wrapped the same way: normalize, transform, add back.
#
# * `x = x + attn(ln_1(x))`: tokens exchange information (causal self-attention, chapter 3);
# * `x = x + mlp(ln_2(x))`: each token processes what it gathered.
#
# The original Transformer (2017) normalized *after* the addition (`x = ln(x + f(x))`, "post-LN").
# GPT-2 moved the LayerNorm to the *input* of each sub-layer ("pre-LN") and added one final
# LayerNorm after the last block. The figure puts the two side by side; the green lines are the
# shortcuts of section 5.


# %% tags=["hide-input"]
def draw_block(ax, title, steps, shortcuts):
    """Boxes bottom-up along the stream; each shortcut runs from a height to a "+"."""
    colors = {"norm": "#fde68a", "attn": "#fdba74", "mlp": "#93c5fd"}
    for y, (kind, label) in enumerate(steps):
        if kind == "add":
            box = dict(boxstyle="circle,pad=0.1", fc="white")
        else:
            box = dict(boxstyle="round,pad=0.45", fc=colors.get(kind, "white"))
            box["ec"] = "black" if kind in colors else "none"
        size = 14 if kind == "add" else 11
        ax.text(0, y, label, ha="center", va="center", bbox=box, fontsize=size)
        if y:
            arrow = dict(arrowstyle="-|>", color="black", shrinkA=0, shrinkB=0)
            ax.annotate("", (0, y - 0.3), (0, y - 0.7), arrowprops=arrow)
    green = dict(arrowstyle="-|>", color="tab:green", lw=2, shrinkA=0, shrinkB=0)
    for start, end in shortcuts:
        ax.plot([0, 1.5, 1.5], [start, start, end], color="tab:green", lw=2)
        ax.plot(0, start, "o", color="tab:green")
        ax.annotate("", (0.2, end), (1.5, end), arrowprops=green)
        middle = (start + end) / 2
        ax.text(1.6, middle, "residual", color="tab:green", rotation=90, va="center")
    ax.set(xlim=(-1.7, 1.9), ylim=(-0.5, len(steps) - 0.5), title=title)
    ax.axis("off")


stream_in, stream_out = ("in", "x  (B, T, C)"), ("out", "to the next block")
post_ln = [stream_in, ("attn", "attention"), ("add", "+"), ("norm", "LayerNorm")]
post_ln += [("mlp", "MLP"), ("add", "+"), ("norm", "LayerNorm"), stream_out]
pre_ln = [stream_in, ("norm", "LayerNorm  ln_1"), ("attn", "causal self-attention")]
pre_ln += [("add", "+"), ("norm", "LayerNorm  ln_2"), ("mlp", "MLP"), ("add", "+")]
pre_ln += [stream_out]
fig, (ax_post, ax_pre) = plt.subplots(1, 2, figsize=(9, 5.5))
draw_block(ax_post, "post-LN (Transformer, 2017)", post_ln, [(0.5, 2), (3.5, 5)])
draw_block(ax_pre, "pre-LN (GPT-2)", pre_ln, [(0.5, 3), (3.5, 6)])
plt.tight_layout()
plt.show()

# %% [markdown]
# On the left, every LayerNorm sits *on* the stream, so the gradient meets one at each step
# down. On the right, the stream itself is never normalized: the identity path of section 5
# runs untouched from the output back to the embeddings, and each sub-layer reads a normalized
# copy of the stream beside it. Xiong et al. (2020, "On Layer Normalization in the Transformer
# Architecture") found that this makes training less dependent on a careful learning-rate
# warm-up than post-LN. Less dependent is not independent: chapter 5 trains this model with a
# constant learning rate and then with warm-up, cosine decay and gradient clipping together, and
# the bundle gets much further in the same number of epochs. It runs the three together only, so
# it shows that the bundle helps, not how much of that the warm-up contributes on its own.


# %%
#| export
class Block(nn.Module):
    """A pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        C = config.d_model
        self.ln_1 = LayerNorm(C)
        self.attn = CausalSelfAttention(
            C, config.n_heads, config.dropout, config.qkv_bias
        )
        self.ln_2 = LayerNorm(C)
        self.mlp = MLP(C, config.dropout)

    def forward(self, x: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
        # cache, start_pos: chapter 8's KV cache for this block's attention
        x = x + self.attn(self.ln_1(x), cache, start_pos)  # (B, T, C): tokens talk
        x = x + self.mlp(self.ln_2(x))  # (B, T, C): each token thinks on its own
        return x


# %%
torch.manual_seed(123)
block = Block(GPT2Config())
x = torch.randn(2, 4, 768)
print(tuple(x.shape), "->", tuple(block(x).shape))
n_block = sum(p.numel() for p in block.parameters())
print(f"parameters per block: {n_block:,} = 12 * 768^2 + 13 * 768")
assert n_block == 12 * 768**2 + 13 * 768

# %% [markdown]
# A block maps `(B, T, C)` to `(B, T, C)`, so blocks stack like bricks. Its 7,087,872 parameters:
# attention has $C \times 3C$ (q, k, v) $+ C \times C$ (output) weights, the MLP $2 \times 4C^2$: that
# is $12C^2$ weights, and $13C$ biases and LayerNorm parameters.

# %% [markdown]
# ## 7. GPT-2
#
# The model puts it together:
#
# * `wte`: the token embedding, a (50257, 768) lookup table (chapter 2);
# * `wpe`: learned position embeddings, one 768-vector per position 0..1023 (chapter 2 added them
#   to the token embeddings: `wte + wpe`);
# * `drop`, then `h`: the list of blocks;
# * `ln_f`: the final LayerNorm that pre-LN needs;
# * `lm_head`: a linear map from 768 features back to 50,257 scores ("logits"), one per vocabulary
#   token. GPT-2 **ties** it to `wte`: the same matrix turns a token into a vector on the way in and
#   scores vectors against every token on the way out, which saves 38,597,376 parameters
#   (section 8).
#
# **Initialization** follows Hugging Face's GPT-2 and nanoGPT: every weight from
# $\mathcal N(0, 0.02^2)$, biases zero. The projections that *add* into the residual stream
# (`attn.c_proj`, `mlp.c_proj`) start smaller, with std $0.02/\sqrt{2 \cdot n_\text{layers}}$, as
# the GPT-2 paper describes (residual weights scaled by $1/\sqrt{N}$, $N$ the number of residual
# layers): the stream receives $2 n_\text{layers}$ such additions, each with $1/(2 n_\text{layers})$
# of the usual variance, so together they add about as much variance as one ordinary layer would,
# however deep the model. OpenAI's released `model.py`, which only runs the trained model, has
# other initialisers: `wpe` with `stddev=0.01`, every other weight with `stddev=0.02`, and no
# residual scaling. They matter only to a model trained from scratch; one that loads trained
# weights (chapter 7) never sees them. We keep Hugging Face's 0.02 for `wpe` as well.
#
# **Weight layout.** Our `nn.Linear` layers store weights as (out_features, in_features). Hugging Face's
# GPT-2 uses a `Conv1D` layer that stores (in, out). The numbers are the same matrices transposed, and
# chapter 7 transposes them when it loads OpenAI's weights.
#
# **Generation.** `GPT2` gets its `generate` method from a small mixin, the way Hugging Face's models
# get theirs from `transformers.GenerationMixin`. The method is thin: it hands the work to
# `gpt2scratch.generation`, the module that [Chapter 8](08_generation.ipynb) writes (sampling,
# the decode loop, the KV cache), and passes its keyword arguments on as they are, so that a new
# sampling setting in chapter 8 changes nothing here. It imports that module inside the method,
# when it is called: a later chapter's module cannot be imported at the top of an earlier one.
# Section 9 writes the simplest loop by hand.


# %%
#| export
class GenerationMixin:
    """Gives GPT2 its `generate` method; chapter 8's gpt2scratch.generation does the work."""

    def generate(
        self, prompt: str | torch.Tensor, max_new_tokens: int | None = None, **options
    ):
        """Continue `prompt`, a string or (B, T) ids, by at most max_new_tokens (alias
        max_length) NEW tokens; Hugging Face's max_length counts the prompt too.
        `options` (temperature=1.0, 0 is greedy; top_k, top_p, seed, eos_id, ...) go to
        gpt2scratch.generation.generate, which lists them all.
        """
        from gpt2scratch.generation import generate  # lazy: chapter 8's module

        return generate(self, prompt, max_new_tokens, **options)


# %% [markdown]
# Now the model itself. `forward` checks its input (a `TypeError` for float ids, a `ValueError`
# for a sequence longer than the context window, both before torch sees them) and returns logits;
# `hidden_states` stops before `lm_head`, which `generate` uses to score only the last position.
# Both take an optional `cache` and `start_pos` for [Chapter 8](08_generation.ipynb)'s KV cache:
# `idx` then holds only the tokens from position `start_pos` on, and the cache holds the keys
# and values of the positions before. Without them, nothing changes.


# %%
#| export
class GPT2(GenerationMixin, nn.Module):
    """GPT-2: token + position embeddings, n_layers blocks, final LayerNorm, LM head."""

    def __init__(self, config: GPT2Config | None = None):
        super().__init__()
        if config is None:
            config = GPT2Config()
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
        self.config = config
        C, V = config.d_model, config.vocab_size
        self.wte = nn.Embedding(V, C)  # token embeddings
        self.wpe = nn.Embedding(config.context_length, C)  # learned position embeddings
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        if config.tie_weights:  # one (V, C) matrix reads tokens in and writes them out
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        resid_std = 0.02 / math.sqrt(2 * config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # projections that add into the stream
                nn.init.normal_(p, mean=0.0, std=resid_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied matrix once); non_embedding=True drops wte and wpe."""
        n = sum(p.numel() for p in self.parameters())  # yields a shared tensor once
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
        """The residual stream after the final LayerNorm: (B, T) ids -> (B, T, C)."""
        check_token_ids(idx, context_length=self.config.context_length)
        pos = start_pos + torch.arange(idx.shape[1], device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C) + (T, C): broadcast
        if self.training:  # dropout; in eval mode no call at all (ch. 8.6)
            x = self.drop(x)
        caches = [None] * len(self.h) if cache is None else cache  # one per block
        for block, block_cache in zip(self.h, caches):
            x = block(x, block_cache, start_pos)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) logits for the token after each position."""
        return self.lm_head(self.hidden_states(idx, cache, start_pos))  # (B, T, V)


# %% [markdown]
# The input check is plumbing, kept out of the class; `generate` uses it too, with the extra
# condition that every id exists in the vocabulary:


# %%
#| export
def check_token_ids(idx, *, vocab_size=None, context_length=None) -> None:
    """TypeError unless `idx` is an integer tensor; ValueError unless it is (B, T) with
    T >= 1, T <= context_length and ids in [0, vocab_size) (the last two when given)."""
    if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int):
        got = idx.dtype if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise TypeError(f"idx must be an integer tensor of token ids, got {got}")
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(
            "idx must have shape (batch, seq_len) with seq_len >= 1, "
            f"got {tuple(idx.shape)}"
        )
    T = idx.shape[1]
    if context_length is not None and T > context_length:
        raise ValueError(f"sequence length {T} exceeds context_length {context_length}")
    if vocab_size is not None and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(
            f"token ids must be in [0, {vocab_size}), "
            f"got min {idx.min().item()}, max {idx.max().item()}"
        )


# %% [markdown]
# ### The first forward pass
#
# Build the 124M model and feed it two short sentences. The output has one row of 50,257 logits per
# input position: position $t$'s row scores every candidate for token $t + 1$.

# %%
torch.manual_seed(123)
model = GPT2(GPT2Config())
model.eval()  # dropout off, so outputs are deterministic
batch = torch.tensor(
    [enc.encode("Every effort moves you"), enc.encode("Every day holds a")]
)
print("input ids:\n", batch)
with torch.no_grad():
    logits = model(batch)
print("logits shape:", tuple(logits.shape))
print("logits[0, 0, :5]:", logits[0, 0, :5].round(decimals=4))

# %% [markdown]
# A sanity check that every implementation of a language model should pass: at initialization the
# model knows nothing, so its prediction should be close to uniform over the vocabulary, and the
# cross-entropy loss should be close to $\ln(50257) \approx 10.82$. A loss far above that at step 0
# means a bug or a bad initialization (for example logits that are too large):

# %%
targets = torch.tensor(
    [enc.encode(" effort moves you forward"), enc.encode(" day holds a lot")]
)
loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
print(f"loss at init: {loss.item():.2f}   ln(50257) = {math.log(50257):.2f}")
assert abs(loss.item() - math.log(50257)) < 0.5

# %% [markdown]
# ### Checked against Hugging Face
#
# Is this really GPT-2? Hugging Face's `transformers` has an independent implementation,
# `GPT2LMHeadModel`. `gpt2scratch.bench_common.hf_twin` builds one with our config and copies our
# weights into it (transposing the `Conv1D` matrices); both models must then give the same logits
# for the same tokens. `transformers` is a development dependency, so this cell skips the check,
# with one line, where it is not installed. The difference is float32 round-off, whose digits
# depend on the CPU, so the cell prints the bound that its assert checks:

# %%
# NBVAL_IGNORE_OUTPUT
if importlib.util.find_spec("transformers") is None:
    print("transformers is not installed: skipped the comparison with Hugging Face")
else:
    from gpt2scratch.bench_common import hf_twin  # the weight mapping, ours -> GPT2LMHeadModel

    with warnings.catch_warnings():  # keep stderr clean: tqdm warns that Jupyter
        warnings.simplefilter("ignore")  # widgets are missing when transformers loads
        import transformers

        transformers.logging.set_verbosity_error()
        hf_model = hf_twin(model).eval()
    with torch.no_grad():
        hf_logits = hf_model(input_ids=batch).logits
    diff = (logits - hf_logits).abs().max().item()
    print(f"transformers {transformers.__version__}, GPT2LMHeadModel, same weights:")
    print(
        f"max |our logits - HF logits| < 1e-4: {diff < 1e-4} (largest |logit|: "
        f"{logits.abs().max().item():.2f})"
    )
    assert diff < 1e-4
    del hf_model, hf_logits

# %% [markdown]
# ### Causality, checked
#
# A language model must not peek at the future: the logits at position $t$ may depend only on tokens
# $0..t$. Chapter 3's causal mask promises this for one attention layer; here we check it for the whole
# model. Change the last two tokens and compare:

# %%
torch.manual_seed(123)
changed = batch.clone()
changed[:, 2:] = torch.randint(0, 50257, (2, 2))
with torch.no_grad():
    logits2 = model(changed)
print("positions whose logits changed:", (logits2 != logits).any(dim=-1)[0].tolist())
assert torch.equal(logits2[:, :2], logits[:, :2])

# %% [markdown]
# And the guard rails: a sequence longer than the context window, or ids of the wrong type, fail with
# a message before any tensor operation runs:

# %%
for bad in (torch.zeros(1, 1025, dtype=torch.long), torch.zeros(1, 4)):
    try:
        model(bad)
    except (ValueError, TypeError) as e:
        print(f"{type(e).__name__}: {e}")

# %% [markdown]
# ## 8. Counting parameters: 124,439,808
#
# `num_params` sums the sizes of all parameters. PyTorch's `parameters()` yields a shared tensor only
# once, so the tied `lm_head`/`wte` matrix is counted once:

# %%
n_tied = model.num_params()
print(f"GPT-2 124M, tied weights: {n_tied:,}")
assert n_tied == 124_439_808

# %% [markdown]
# Where do they go? Per component, adding up the twelve blocks' attention, MLP and LayerNorm
# parameters separately:


# %%
def part_sizes(model):
    """Parameters per part of a GPT2: embeddings, attention, MLPs, LayerNorms."""

    def size(modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    blocks = model.h
    norms = [*(b.ln_1 for b in blocks), *(b.ln_2 for b in blocks), model.ln_f]
    head = 0 if model.config.tie_weights else model.lm_head.weight.numel()
    return {
        "wte (token embedding)": model.wte.weight.numel(),
        "wpe (positions)": model.wpe.weight.numel(),
        "attention (all blocks)": size(b.attn for b in blocks),
        "MLP (all blocks)": size(b.mlp for b in blocks),
        "LayerNorms": size(norms),
        "lm_head (0 when tied)": head,
    }


parts = part_sizes(model)
for name, n in parts.items():
    print(f"{name:<24}{n:>13,}  {n / n_tied:6.1%}")
print(f"{'total':<24}{sum(parts.values()):>13,}")
assert sum(parts.values()) == n_tied

# %% [markdown]
# The MLPs are the largest part, 45.5% of the model, though not a majority: almost a third
# (31.0%) is the token embedding, and attention holds 22.8%. Without weight tying, `lm_head` is
# a separate $768 \times 50257$ matrix, and the model has **163,037,184** parameters, 38,597,376
# more. (That is why some texts call this model "GPT-2 163M", and why OpenAI's published
# weights, which are tied, are 124M.) Counting does not need the numbers in the matrices, only
# their shapes, so we build the untied model on PyTorch's `meta` device, where tensors have a
# shape but no data:

# %%
with torch.device("meta"):
    untied = GPT2(GPT2Config(tie_weights=False))
print(f"untied: {untied.num_params():,} = {n_tied:,} + 50257 * 768 ({50257 * 768:,})")
assert untied.num_params() == 163_037_184 == n_tied + 50257 * 768
assert model.lm_head.weight is model.wte.weight
assert untied.lm_head.weight is not untied.wte.weight
del untied

# %% [markdown]
# ### Every size, without allocating it
#
# Building the 1558M model for real just to count it would take 5.8 GiB of memory (see the
# table). Two cheaper ways give the same answer:
#
# 1. **by formula**: $V C$ (wte) $+ T_\text{max} C$ (wpe) $+ L\,(12C^2 + 13C)$ (blocks) $+ 2C$ (ln_f),
#    plus another $V C$ if the head is untied;
# 2. **on the meta device**, as above: shapes without data.
#
# They must agree for every preset in the table, ours included:


# %%
def count_params(cfg: GPT2Config) -> int:
    V, T, C, L = cfg.vocab_size, cfg.context_length, cfg.d_model, cfg.n_layers
    untied_head = 0 if cfg.tie_weights else V * C
    return V * C + T * C + L * (12 * C**2 + 13 * C) + 2 * C + untied_head


header = ("preset", "HF name", "d_model", "layers", "heads", "params (tied)", "untied")
row = "{:<7}{:<13}{:>8}{:>7}{:>6}{:>15}{:>15}{:>10}{:>10}"
print(row.format(*header, "fp32", "bf16"))
hf_name = {size: hf for hf, size in HF_NAMES.items()}
counts = {}
for name in PRESETS:
    cfg = GPT2Config.preset(name)
    with torch.device("meta"):
        n = GPT2(cfg).num_params()
    assert n == count_params(cfg)
    counts[name] = n
    n_untied = count_params(GPT2Config.preset(name, tie_weights=False))
    print(
        f"{name:<7}{hf_name.get(name, '-'):<13}{cfg.d_model:>8}{cfg.n_layers:>7}"
        f"{cfg.n_heads:>6}{n:>15,}{n_untied:>15,}"
        f"{n * 4 / 2**30:>8.3f} G{n * 2 / 2**30:>8.3f} G"
    )
assert counts == {
    "tiny": 1_666_464,
    "mini": 7_357_312,
    "124M": 124_439_808,
    "355M": 354_823_168,
    "774M": 774_030_080,
    "1558M": 1_557_611_200,
}

# %% [markdown]
# The memory columns are for the weights alone: 4 bytes per parameter in fp32, 2 in bf16 (GiB,
# $2^{30}$ bytes). Training with AdamW needs far more: a gradient and two optimizer moments per
# parameter, so at least 16 bytes per parameter in fp32 before counting activations:

# %%
for name, n in counts.items():
    gib = 16 * n / 2**30
    print(f"{name:>6}: weights + grads + AdamW moments in fp32 = {gib:5.2f} GiB")

# %% [markdown]
# ## 9. Generating text
#
# The model outputs scores for the next token. To write text we pick one, append it, and run the model
# again on the longer sequence, until we have as many tokens as we want. The simplest rule is
# **greedy** decoding: always take the highest-scoring token. Here is that loop, written plainly:


# %%
def generate_greedy_naive(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -model.config.context_length :]  # at most 1,024 tokens
        with torch.no_grad():
            logits = model(idx_cond)  # (B, T, V)
        # the best-scoring token after the last position, (B, 1)
        next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)  # (B, T + 1)
    return idx


start = torch.tensor([enc.encode("Hello, I am")])
out_naive = generate_greedy_naive(model, start, 8)
print(out_naive)
print(repr(enc.decode(out_naive[0].tolist())))

# %% [markdown]
# Gibberish, as it should be: the weights are random. Chapter 5 trains them, and chapter 7 loads
# OpenAI's.
#
# This loop is the whole idea, and it has two limits. It always takes the likeliest token, and it
# is slow: every new token runs the model again over the whole sequence, although the keys and
# values of the earlier positions have not changed. [Chapter 8](08_generation.ipynb) lifts both.
# It samples with a temperature, top-k and top-p, and it keeps the keys and values in a **KV
# cache**, so that each step runs the model on one new token. Its module is what `model.generate`
# calls. At temperature 0 it picks the same tokens as the loop above:

# %%
out = model.generate(start, max_new_tokens=8, temperature=0)
print(out)
assert torch.equal(out, out_naive)

# %% [markdown]
# `generate` also takes a string. It encodes it with GPT-2's tokenizer, generates at most
# `max_length` **new** tokens, and returns the prompt followed by the continuation. Here it samples
# at temperature 0.8; `seed=` makes the sample repeatable:

# %%
prompt = "Justice is served when"
text = model.generate(prompt, max_length=12, temperature=0.8, seed=123)
print(repr(text))
assert text.startswith(prompt)
assert text == model.generate(prompt, max_length=12, temperature=0.8, seed=123)
greedy = model.generate(prompt, max_length=12, temperature=0)
print(repr(greedy))

# %% [markdown]
# ## 10. Speed notes
#
# Three choices in the exported code exist for speed, each checked equal to its naive twin above:
# the fused `F.layer_norm`, the fused `F.gelu(approximate="tanh")`, and, from chapter 3, one `c_attn`
# projection for q, k and v together plus `F.scaled_dot_product_attention`. Hugging Face's GPT-2 runs
# its GELU (`NewGELUActivation`) as the formula, one tensor operation at a time, like our `naive_gelu`:
# each operation reads and writes the whole `(B, T, 4C)` activation, and autograd keeps several of the
# intermediates for the backward pass. The fused kernel makes one pass each way. Here are the GELU
# alone and one MLP, forward and backward, at the benchmark's shapes (B=2, T=256), with each GELU.
# The two take turns, alternating which goes first, and each keeps its fastest of 10 runs: other
# work on the machine can only slow a run down. The times depend on the machine and on what else
# it is doing, so nbval does not compare them; read the ratio column.

# %%
# NBVAL_IGNORE_OUTPUT
import time
from functools import partial


class NaiveGELU(nn.Module):
    def forward(self, x):
        return naive_gelu(x)


def train_pass(module, x):
    """One forward and backward pass through `module`, as a training step makes it."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    module(x).square().mean().backward()


def fastest(fns, n_runs=10):
    """The fastest of n_runs calls of each function, in seconds, taking turns."""
    times = [[] for _ in fns]
    for run in range(n_runs):
        turns = list(zip(fns, times))
        for fn, seconds in turns if run % 2 == 0 else turns[::-1]:
            t0 = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - t0)
    return [min(seconds) for seconds in times]


torch.manual_seed(123)
mlp_fused = MLP(768)
mlp_naive = MLP(768)
mlp_naive.load_state_dict(mlp_fused.state_dict())
mlp_naive.gelu = NaiveGELU()
x = torch.randn(2, 256, 768, requires_grad=True)
h = torch.randn(2, 256, 4 * 768, requires_grad=True)  # what the GELU sees in the MLP
torch.testing.assert_close(mlp_fused(x), mlp_naive(x))
pairs = {  # name: (naive, fused)
    "GELU alone (2, 256, 3072)": (NaiveGELU(), GELU()),
    "MLP 768 -> 3072 -> 768": (mlp_naive, mlp_fused),
}
print("forward + backward, fastest of 10 runs each")
print(f"{'':<26}{'naive GELU':>12}{'fused GELU':>12}{'naive/fused':>13}")
for name, modules in pairs.items():
    inp = h if name.startswith("GELU") else x
    t_naive, t_fused = fastest([partial(train_pass, m, inp) for m in modules])
    print(
        f"{name:<26}{t_naive * 1e3:>9.1f} ms{t_fused * 1e3:>9.1f} ms"
        f"{t_naive / t_fused:>12.2f}x"
    )

# %% [markdown]
# On its own, the fused GELU is much faster than the formula. Inside the MLP the two
# matrix products take most of the time, so the same saving is a smaller share of the whole, and
# the MLP's ratio sits much closer to 1 than the GELU's. Both held in every run we made; the
# ratios themselves vary from run to run.

# %% [markdown]
# The package has a benchmark that times our whole training step (forward, cross-entropy, backward,
# AdamW) against Hugging Face's `GPT2LMHeadModel` with the same config and the same weights (it
# builds the twin with the same `hf_twin` as section 7, and checks that both give the same logits
# before it times anything), interleaved in one process:
#
# ```
# python -m gpt2scratch bench train                    # CPU: 124M, B=2, T=256, fp32
# python -m gpt2scratch bench train --device cuda      # GPU: B=16, T=1024, bf16 autocast, reports MFU
# python -m gpt2scratch bench generate                 # greedy generation, ours vs HF's generate()
# ```
#
# It prints both speeds in tokens per second, the fraction of the machine's measured matmul rate
# that each step reaches, and, last, the median over pairs of the ratio `ours/HF tok/s`. The
# matrix multiplications are the same in the two models, so a difference comes from the work
# around them, such as the GELU above. Machines differ, and so do runs on a shared machine: run it
# on yours rather than trusting a number printed here.

# %% [markdown]
# ## Summary
#
# * **LayerNorm** normalizes each token's vector to mean 0, variance 1 (biased variance, $\epsilon = 10^{-5}$)
#   and rescales it with learned $\gamma, \beta$. Ours equals `nn.LayerNorm`, values and gradients.
# * **GELU** (tanh approximation) is GPT-2's activation; ours equals `F.gelu(approximate="tanh")`.
# * The **MLP** widens to $4C$, applies GELU, projects back; it acts on each position alone, and
#   the twelve MLPs are the largest part of GPT-2 124M (45.5% of its parameters).
# * **Residual connections** give the gradient an identity path: without them a 24-layer stack's first
#   layer got a gradient eleven orders of magnitude smaller than its last.
# * A **pre-LN block** is `x + attn(ln_1(x))` then `x + mlp(ln_2(x))`, and has $12C^2 + 13C$
#   parameters; the residual stream is never normalized until `ln_f`.
# * **GPT2** = embeddings + blocks + `ln_f` + tied `lm_head`: 124,439,808 parameters for the 124M config
#   (163,037,184 untied), checked for every size in `PRESETS` by formula and on the meta device.
#   With the same weights, its logits match Hugging Face's `GPT2LMHeadModel` to float32 round-off.
# * An untrained model predicts an almost uniform distribution (loss ≈ ln 50257), is causal, and
#   **generates** gibberish, greedily or by sampling, from a tensor or from a string.
#
# Next: [Chapter 5 — Training GPT-2 on *The Verdict*](05_training.ipynb) trains it.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** DistilGPT-2 keeps GPT-2 124M's width and heads but has only 6 layers. How many
# parameters does it have? Compute it with the formula and check it on the meta device.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
distil = GPT2Config(n_layers=6)
with torch.device("meta"):
    n_distil = GPT2(distil).num_params()
print(f"6-layer GPT-2: {count_params(distil):,} by formula, {n_distil:,} on meta")
assert n_distil == count_params(distil) == 124_439_808 - 6 * (12 * 768**2 + 13 * 768)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Each of the 6 removed blocks had $12 \cdot 768^2 + 13 \cdot 768 = 7{,}087{,}872$ parameters,
# so the 6-layer model has $124{,}439{,}808 - 6 \cdot 7{,}087{,}872 = 81{,}912{,}576$, as the
# hidden cell above prints.
# ```
#
# **Exercise 2.** Show with gradients, not just outputs, that the model is causal: the logits at
# position 1 must have zero gradient with respect to the embeddings of positions 2 and 3, and a
# non-zero gradient with respect to positions 0 and 1. (Hint: run the blocks on an embedding
# tensor that requires gradients, and differentiate one position's logits.)

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
torch.manual_seed(123)
emb = model.wte(batch[:1]) + model.wpe(torch.arange(4))  # (1, 4, C)
emb = emb.detach().requires_grad_()
x = emb
for blk in model.h:
    x = blk(x)
model.lm_head(model.ln_f(x))[0, 1].sum().backward()  # logits at position 1
grad_norm = emb.grad[0].norm(dim=-1)  # (4,) one norm per input position
print("gradient norm per input position is non-zero:", (grad_norm > 0).tolist())
assert grad_norm[2:].eq(0).all() and grad_norm[:2].gt(0).all()
model.zero_grad(set_to_none=True)

# %% [markdown]
# **Exercise 3.** The MLPs hold 45.5% of GPT-2 124M. Use `part_sizes` on the meta device to
# print, for every size in `PRESETS`, the share of the token embedding, attention and the MLPs.
# Which share grows with size, which shrinks, and why? What does that mean for "tiny"?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
print(f"{'preset':<7}{'wte':>8}{'attention':>11}{'MLP':>8}")
for name in PRESETS:
    with torch.device("meta"):
        m = GPT2(GPT2Config.preset(name))
    sizes = part_sizes(m)
    keys = ("wte (token embedding)", "attention (all blocks)", "MLP (all blocks)")
    wte, attn, mlp_share = (sizes[key] / m.num_params() for key in keys)
    print(f"{name:<7}{wte:>8.1%}{attn:>11.1%}{mlp_share:>8.1%}")
    assert abs(mlp_share / attn - 2) < 0.05  # per block: 8C² + 5C against 4C² + 4C

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The blocks grow as $L \cdot 12C^2$, with both depth $L$ and the square of the width $C$; the
# token embedding grows as $V C$, with the width only, since the vocabulary stays at 50,257. So
# the embedding's share falls with size (31.0% in 124M, 5.2% in 1558M) and the MLPs' share
# rises (45.5% to 63.1%). Within every block the MLP has $8C^2$ weights and attention $4C^2$,
# so the MLPs hold about twice what attention holds at every size (the assert). In "tiny"
# (96.5%) and "mini" (87.4%) almost every parameter is in the token embedding: our small
# models are small in their blocks, not in their vocabulary.
# ```
