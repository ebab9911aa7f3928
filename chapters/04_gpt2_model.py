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
# Chapter 3 gave us causal self-attention: a way for every position to look back at the positions
# before it. A language model needs a few more parts around it, and this chapter builds each one,
# checks it against PyTorch, and then assembles them into GPT-2:
#
# 1. **LayerNorm**, written with `mean` and `var`, proven equal to `nn.LayerNorm`;
# 2. **GELU**, the smooth ReLU GPT-2 uses, proven equal to `F.gelu(approximate="tanh")`;
# 3. the **MLP** (feed-forward network) that every block applies to each token on its own;
# 4. **residual connections**, and a measurement of what happens to gradients without them;
# 5. the **pre-LN transformer block**: attention + MLP, each wrapped in LayerNorm and a shortcut;
# 6. the **GPT2** model and its config, with OpenAI's four sizes, the parameter count of each proven
#    (124,439,808 for "124M"), and what they cost in memory;
# 7. **generation**: turning next-token logits into text, one token at a time, with the untrained
#    model (it writes gibberish, and we show it).
#
# ```
#   token ids (B, T)
#        │  wte (token embedding) + wpe (position embedding), dropout
#        ▼
#   ┌─────────── Block × n_layers ───────────┐
#   │  x = x + attn(ln_1(x))   (chapter 3)    │
#   │  x = x + mlp(ln_2(x))                   │
#   └─────────────────────────────────────────┘
#        │  ln_f, then lm_head (shares wte's weights)
#        ▼
#   logits (B, T, vocab_size): a score for every possible next token, at every position
# ```
#
# Everything marked `#| export` below becomes `gpt2scratch/model.py`, which the rest of the book imports.
# Module and attribute names follow Hugging Face's `GPT2LMHeadModel` (`wte`, `h.0.attn.c_attn`,
# `ln_f`, ...) so that chapter 7 can load OpenAI's trained weights by name.

# %%
#| default_exp model

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.attention import CausalSelfAttention
from gpt2scratch.tokenizer import gpt2_encoding

torch.set_printoptions(precision=4, sci_mode=False)
enc = gpt2_encoding()  # GPT-2's tokenizer, rebuilt offline in chapter 1

# %% [markdown]
# The exported module starts with its imports. Attention is the only piece it takes from an earlier
# chapter.

# %%
#| export
"""GPT-2 (Radford et al., 2019) in one file: config, LayerNorm, GELU, MLP, Block, GPT2 and generate.

Attribute names follow Hugging Face's `GPT2LMHeadModel`, so pretrained weights map one-to-one
(chapter 7). One difference: our `nn.Linear` layers store weights as (out, in); HF's `Conv1D`
stores (in, out), so chapter 7 transposes those matrices when it loads them.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.attention import CausalSelfAttention

# %% [markdown]
# ## 1. The config: six numbers describe GPT-2
#
# OpenAI released GPT-2 in four sizes. They share the vocabulary (50,257 tokens) and the context
# window (1,024 tokens) and differ only in width (`d_model`), depth (`n_layers`) and number of
# attention heads. A frozen dataclass holds these numbers. It checks them when it is made: a config
# with `d_model=768, n_heads=10` would otherwise fail deep inside attention with a reshape error.

# %%
#| export
PRESETS = {  # name: (d_model, n_layers, n_heads), the four sizes OpenAI released
    "124M": (768, 12, 12),
    "355M": (1024, 24, 16),
    "774M": (1280, 36, 20),
    "1558M": (1600, 48, 25),
}
HF_NAMES = {"gpt2": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1558M"}


@dataclass(frozen=True)
class GPT2Config:
    """Hyper-parameters of a GPT-2 model. `GPT2Config()` is the 124M model."""

    vocab_size: int = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
    context_length: int = 1024  # longest sequence the model sees (rows of wpe)
    d_model: int = 768  # width of the residual stream
    n_layers: int = 12  # number of transformer blocks
    n_heads: int = 12  # attention heads per block; head size = d_model // n_heads
    dropout: float = 0.1  # GPT-2 used 0.1 in pre-training; 0.0 for inference
    qkv_bias: bool = True  # GPT-2's q, k, v projections have biases
    tie_weights: bool = True  # lm_head shares wte's weight matrix

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={self.d_model}, n_heads={self.n_heads}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real):
            raise TypeError(f"dropout must be a float, got {self.dropout!r}")
        if not 0 <= self.dropout < 1:  # also false for NaN
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("qkv_bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def preset(cls, name: str, **overrides) -> GPT2Config:
        """One of OpenAI's sizes by name ("124M", "355M", "774M", "1558M", or HF's "gpt2", ...)."""
        size = HF_NAMES.get(name, name)
        if size not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS) + list(HF_NAMES)}")
        d_model, n_layers, n_heads = PRESETS[size]
        return cls(**{"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPT2Config:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown GPT2Config keys {unknown}; valid keys are {[f.name for f in fields(cls)]}")
        return cls(**d)


# %%
cfg = GPT2Config()
print(cfg)
print(GPT2Config.preset("gpt2-xl"))
print(GPT2Config.preset("124M", context_length=256, dropout=0.0))  # overrides for a small experiment
assert GPT2Config.from_dict(cfg.to_dict()) == cfg  # round trip, used by checkpoints (chapter 5)

# %% [markdown]
# A bad config fails at once, with a message that names the value and what would be valid:

# %%
for bad in (dict(d_model=768, n_heads=10), dict(dropout=1.5), dict(n_layers=0)):
    try:
        GPT2Config(**bad)
    except ValueError as e:
        print(f"{bad}: ValueError: {e}")
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
print("mean per token:", y.mean(dim=-1).round(decimals=4).abs())  # abs() only hides a "-0."
print("var per token: ", y.var(dim=-1, unbiased=False).round(decimals=4))

# %% [markdown]
# Each row now has mean 0 and variance 1 (up to $\epsilon$). Is it exactly `nn.LayerNorm`? Compare
# outputs and gradients on a GPT-2 sized input, with random (not default) $\gamma$ and $\beta$ so that
# every term is tested:

# %%
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
(out_naive * torch.arange(768)).sum().backward()  # an arbitrary scalar, so gradients are not trivial
(out_ref * torch.arange(768)).sum().backward()
print("max |out diff|     :", (out_naive - out_ref).abs().max().item() < 1e-5)
print("max |grad x diff|  :", (x1.grad - x2.grad).abs().max().item() < 1e-3 * x2.grad.abs().max().item())
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
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dim, with the biased variance.

    Equal to the mean/var version built in chapter 4; `F.layer_norm` runs it as one fused kernel.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # "gamma": scale, starts as identity
        self.bias = nn.Parameter(torch.zeros(d_model))  # "beta": shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)  # (..., C)


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
print("max |tanh approx - exact GELU| on [-4, 4]:", round((naive_gelu(xs) - exact).abs().max().item(), 5))
print("max |naive - F.gelu(tanh)|:", (naive_gelu(xs) - F.gelu(xs, approximate="tanh")).abs().max().item() < 1e-6)
torch.testing.assert_close(naive_gelu(xs), F.gelu(xs, approximate="tanh"))
torch.testing.assert_close(F.gelu(xs), exact)  # the default F.gelu is the exact erf version

# %% [markdown]
# The approximation is within about 0.0005 of the exact GELU, but "close" is not "equal": a model
# trained with one and run with the other drifts. Beside ReLU, GELU is smooth, lets a little
# negative signal through (its minimum is about −0.17), and has a non-zero gradient for negative inputs,
# so a neuron that is "off" can still learn:

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
xs_grad = xs.clone().requires_grad_()
for name, fn in (("GELU (tanh)", lambda t: F.gelu(t, approximate="tanh")), ("ReLU", F.relu)):
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
    """GELU, tanh approximation (what GPT-2 used): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

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
# widen the 768 features to 4 × 768 = 3,072, apply GELU, project back to 768. Most of GPT-2's
# parameters live here. The names `c_fc` and `c_proj` are Hugging Face's.

# %%
#| export
class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU, project back."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)  # residual projection: scaled init
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)


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
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), GELU()) for _ in range(depth))
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
print(f"first/last layer gradient ratio: plain {plain[0] / plain[-1]:.1e}, residual {residual[0] / residual[-1]:.2f}")
assert plain[0] / plain[-1] < 1e-6 and residual[0] / residual[-1] > 0.1

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
# GPT-2 moved the LayerNorm to the *input* of each sub-layer ("pre-LN") and added one final LayerNorm
# after the last block. The residual stream itself is then never normalized, so the identity path of
# section 5 stays clean from the output to the embeddings, and deep stacks train without a careful
# learning-rate warm-up.

# %%
#| export
class Block(nn.Module):
    """A pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config.d_model, config.n_heads, config.dropout, config.qkv_bias)
        self.ln_2 = LayerNorm(config.d_model)
        self.mlp = MLP(config.d_model, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C): tokens talk to each other
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
# * `wpe`: learned position embeddings, one 768-vector per position 0..1023;
# * `drop`, then `h`: the list of blocks;
# * `ln_f`: the final LayerNorm that pre-LN needs;
# * `lm_head`: a linear map from 768 features back to 50,257 scores ("logits"), one per vocabulary
#   token. GPT-2 **ties** it to `wte`: the same matrix turns a token into a vector on the way in and
#   scores vectors against every token on the way out, which saves 38.6M parameters.
#
# **Initialization** follows GPT-2: every weight from $\mathcal N(0, 0.02^2)$, biases zero. The
# projections that *add* into the residual stream (`attn.c_proj`, `mlp.c_proj`) start smaller, with
# std $0.02/\sqrt{2 \cdot n_\text{layers}}$: the stream receives $2 n_\text{layers}$ such additions, and
# this keeps its variance at initialization independent of depth.
#
# **Weight layout.** Our `nn.Linear` layers store weights as (out_features, in_features). Hugging Face's
# GPT-2 uses a `Conv1D` layer that stores (in, out). The numbers are the same matrices transposed, and
# chapter 7 transposes them when it loads OpenAI's weights.
#
# `forward` checks its input (a `TypeError` for float ids, a `ValueError` for a sequence longer than
# the context window, both before torch sees them) and returns logits. The `generate` method at the
# end is explained in section 9.

# %%
#| export
class GPT2(nn.Module):
    """GPT-2: token + position embeddings, `n_layers` blocks, a final LayerNorm, and the LM head."""

    def __init__(self, config: GPT2Config | None = None):
        super().__init__()
        if config is None:
            config = GPT2Config()
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)  # token embeddings
        self.wpe = nn.Embedding(config.context_length, config.d_model)  # learned position embeddings
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # one (V, C) matrix reads tokens in and writes them out
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # projections that add into the residual stream
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, a tied matrix counted once; non_embedding=True leaves out wte and wpe."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        if non_embedding:
            n -= self.wte.weight.numel() + self.wpe.weight.numel()
        return n

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream after the final LayerNorm: (B, T) token ids -> (B, T, C)."""
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.long, torch.int):
            kind = f"a tensor of {idx.dtype}" if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise TypeError(f"idx must be an integer tensor (torch.long) of token ids, got {kind}")
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must have shape (batch, seq_len) with seq_len >= 1, got {tuple(idx.shape)}")
        B, T = idx.shape
        if T > self.config.context_length:
            raise ValueError(f"sequence length {T} exceeds context_length {self.config.context_length}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C) + (T, C) broadcasts over B
        for block in self.h:
            x = block(x)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab_size) logits for the token after each position."""
        return self.lm_head(self.hidden_states(idx))  # (B, T, V)

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens: int | None = None, temperature: float = 1.0,
                 top_k: int | None = None, eos_id: int | None = None, generator: torch.Generator | None = None,
                 *, max_length: int | None = None, tokenizer=None, seed: int | None = None):
        """Continue `prompt` one token at a time; temperature 0 is greedy (argmax).

        Tensor level: `generate(idx, max_new_tokens)` takes (B, T) token ids and returns (B, T + n)
        ids, n <= max_new_tokens (fewer only when every row has produced `eos_id`; a finished row is
        padded with `eos_id`).
        Text level: `generate("Justice is served when", max_length=100, temperature=0.8)` returns
        the prompt followed by at most `max_length` NEW tokens of text, stopping early at
        <|endoftext|> (which is not included). It encodes with GPT-2's tokenizer unless `tokenizer=`
        (anything with encode/decode) is given.
        The model only ever sees the last `context_length` tokens, so a prompt longer than the
        context window is cropped to its end; the returned ids/text still start with the whole prompt.
        `seed` (or a torch.Generator) makes sampling reproducible. Runs in eval mode, then restores
        the mode the model was in.
        """
        if max_new_tokens is not None and max_length is not None:
            raise TypeError("pass max_new_tokens or max_length (same meaning: new tokens), not both")
        n_new = max_length if max_length is not None else max_new_tokens
        name = "max_length" if max_length is not None else "max_new_tokens"
        if isinstance(n_new, bool) or not isinstance(n_new, int):
            raise TypeError(f"{name} must be an int (number of new tokens), got {n_new!r}")
        _check_sampling(temperature, top_k, eos_id, generator, seed, self.config.vocab_size)
        if isinstance(prompt, str):
            if n_new <= 0:
                raise ValueError(f"{name} must be > 0, got {n_new}")
            if not prompt:
                raise ValueError("prompt must be a non-empty string, got ''")
            if tokenizer is None:
                from gpt2scratch.tokenizer import gpt2_encoding  # lazy: model.py doesn't need it otherwise

                tokenizer = gpt2_encoding()
            ids = tokenizer.encode(prompt)
            if eos_id is None:
                eos_id = getattr(tokenizer, "eot_token", None)  # 50256 for GPT-2's tokenizer
            idx = torch.tensor([ids], dtype=torch.long, device=self.wte.weight.device)
            out = self.generate(idx, n_new, temperature, top_k, eos_id, generator, seed=seed)
            new = out[0, len(ids):].tolist()
            if eos_id in new:
                new = new[: new.index(eos_id)]
            return prompt + tokenizer.decode(new)
        if not isinstance(prompt, torch.Tensor):
            raise TypeError(f"prompt must be a str or a (B, T) tensor of token ids, got {type(prompt).__name__}")
        idx = prompt
        if n_new < 0:
            raise ValueError(f"{name} must be >= 0, got {n_new}")
        if idx.dtype not in (torch.long, torch.int) or idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be a (B, T) integer tensor with T >= 1, got {idx.dtype} {tuple(idx.shape)}")
        if idx.min() < 0 or idx.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), got min {idx.min().item()}, "
                             f"max {idx.max().item()}")
        if seed is not None:
            generator = torch.Generator(device=idx.device).manual_seed(seed)
        was_training = self.training
        self.eval()  # no dropout while generating
        try:
            done = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
            for _ in range(n_new):
                idx_cond = idx[:, -self.config.context_length:]  # crop to the context window
                x = self.hidden_states(idx_cond)[:, -1, :]  # (B, C): only the last position predicts
                logits = self.lm_head(x).float()  # (B, V)
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1) greedy
                else:
                    logits = logits / temperature
                    if top_k is not None and top_k < logits.shape[-1]:
                        kth = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1) k-th largest logit
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    probs = F.softmax(logits, dim=-1)  # (B, V)
                    next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
                if eos_id is not None:
                    next_id = next_id.masked_fill(done, eos_id)  # finished rows keep emitting eos
                    done = done | (next_id == eos_id)
                idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)  # (B, T + 1)
                if eos_id is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return idx


def _check_sampling(temperature, top_k, eos_id, generator, seed, vocab_size: int) -> None:
    """Raise TypeError/ValueError for bad generate() arguments before torch sees them."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number, got {temperature!r}")
    if not temperature >= 0:  # `not >=` also catches NaN
        raise ValueError(f"temperature must be >= 0, got {float(temperature)}")
    if math.isinf(temperature):
        raise ValueError("temperature must be finite, got inf (use a large number for near-uniform sampling)")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise TypeError(f"top_k must be an int or None, got {top_k!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for no top-k), got {top_k}")
    if eos_id is not None:
        if isinstance(eos_id, bool) or not isinstance(eos_id, int):
            raise TypeError(f"eos_id must be an int or None, got {eos_id!r}")
        if not 0 <= eos_id < vocab_size:
            raise ValueError(f"eos_id must be in [0, {vocab_size}), got {eos_id}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if generator is not None:
            raise ValueError("pass seed or generator, not both")


# %% [markdown]
# ### The first forward pass
#
# Build the 124M model and feed it two short sentences. The output has one row of 50,257 logits per
# input position: position $t$'s row scores every candidate for token $t + 1$.

# %%
torch.manual_seed(123)
model = GPT2(GPT2Config())
model.eval()  # dropout off, so outputs are deterministic
batch = torch.tensor([enc.encode("Every effort moves you"), enc.encode("Every day holds a")])
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
targets = torch.tensor([enc.encode(" effort moves you forward"), enc.encode(" day holds a lot")])
loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
print(f"loss at init: {loss.item():.2f}   ln(50257) = {math.log(50257):.2f}")
assert abs(loss.item() - math.log(50257)) < 0.5

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
# Where do they go? Per component:

# %%
groups = {
    "wte (token embedding)": model.wte.weight.numel(),
    "wpe (positions)": model.wpe.weight.numel(),
    "12 blocks": sum(p.numel() for p in model.h.parameters()),
    "ln_f": sum(p.numel() for p in model.ln_f.parameters()),
    "lm_head (tied to wte)": 0,
}
for name, n in groups.items():
    print(f"{name:<24}{n:>13,}  {n / n_tied:6.1%}")
print(f"{'total':<24}{sum(groups.values()):>13,}")
assert sum(groups.values()) == n_tied

# %% [markdown]
# Almost a third of the "124M" model is the token embedding. Without weight tying, `lm_head` is a
# separate $768 \times 50257$ matrix, and the model has **163,037,184** parameters, 38,597,376 more.
# (That is why some texts call this model "GPT-2 163M", and why OpenAI's published weights, which are
# tied, are 124M.)

# %%
torch.manual_seed(123)
untied = GPT2(GPT2Config(tie_weights=False))
print(f"untied: {untied.num_params():,} = {n_tied:,} + 50257 * 768 ({50257 * 768:,})")
assert untied.num_params() == 163_037_184 == n_tied + 50257 * 768
assert model.lm_head.weight is model.wte.weight and untied.lm_head.weight is not untied.wte.weight
del untied

# %% [markdown]
# ### All four sizes, without allocating them
#
# Building the 1558M model just to count it would take 5.8 GiB of memory (see the table) and a minute of random
# initialization. Two cheaper ways give the same answer:
#
# 1. **by formula**: $V C$ (wte) $+ T_\text{max} C$ (wpe) $+ L\,(12C^2 + 13C)$ (blocks) $+ 2C$ (ln_f),
#    plus another $V C$ if the head is untied;
# 2. **on the meta device**: PyTorch builds the module with tensors that have shapes but no data
#    (`with torch.device("meta"):`), in milliseconds.
#
# They must agree for every preset:

# %%
def count_params(cfg: GPT2Config) -> int:
    V, T, C, L = cfg.vocab_size, cfg.context_length, cfg.d_model, cfg.n_layers
    return V * C + T * C + L * (12 * C**2 + 13 * C) + 2 * C + (0 if cfg.tie_weights else V * C)


print(f"{'preset':<7}{'HF name':<13}{'d_model':>8}{'layers':>7}{'heads':>6}{'params (tied)':>16}"
      f"{'untied':>16}{'fp32':>10}{'bf16':>10}")
hf_name = {v: k for k, v in HF_NAMES.items()}
counts = {}
for name in PRESETS:
    cfg = GPT2Config.preset(name)
    with torch.device("meta"):
        n = GPT2(cfg).num_params()
    assert n == count_params(cfg)
    counts[name] = n
    print(f"{name:<7}{hf_name[name]:<13}{cfg.d_model:>8}{cfg.n_layers:>7}{cfg.n_heads:>6}{n:>16,}"
          f"{count_params(GPT2Config.preset(name, tie_weights=False)):>16,}"
          f"{n * 4 / 2**30:>8.2f} G{n * 2 / 2**30:>8.2f} G")
assert counts == {"124M": 124_439_808, "355M": 354_823_168, "774M": 774_030_080, "1558M": 1_557_611_200}

# %% [markdown]
# The memory columns are for the weights alone: 4 bytes per parameter in fp32, 2 in bf16 (GiB,
# $2^{30}$ bytes). Training with AdamW needs far more: a gradient and two optimizer moments per
# parameter, so at least 16 bytes per parameter in fp32 before counting activations:

# %%
for name, n in counts.items():
    print(f"{name:>6}: weights + grads + AdamW moments in fp32 = {16 * n / 2**30:5.1f} GiB")

# %% [markdown]
# ## 9. Generating text
#
# The model outputs scores for the next token. To write text we pick one, append it, and run the model
# again on the longer sequence, until we have as many tokens as we want. The simplest rule is
# **greedy** decoding: always take the highest-scoring token. Here is that loop, written plainly:

# %%
def generate_greedy_naive(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -model.config.context_length:]  # the model sees at most 1,024 tokens
        with torch.no_grad():
            logits = model(idx_cond)  # (B, T, V)
        next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (B, 1): best token after the last position
        idx = torch.cat([idx, next_id], dim=1)  # (B, T + 1)
    return idx


start = torch.tensor([enc.encode("Hello, I am")])
out_naive = generate_greedy_naive(model, start, 10)
print(out_naive)
print(repr(enc.decode(out_naive[0].tolist())))

# %% [markdown]
# Gibberish, as it should be: the weights are random. Chapter 5 trains them, and chapter 7 loads
# OpenAI's.
#
# The exported `generate` method runs the same loop with four additions:
#
# * it computes `lm_head` only for the **last position** (`hidden_states(...)[:, -1]`), the only one the
#   loop uses: 1 row of 50,257 logits per step instead of T rows;
# * **temperature** divides the logits before a softmax, and the next token is *sampled* from the
#   result; `temperature=0` means greedy. **top-k** keeps only the k highest-scoring tokens (chapter 8
#   studies both, and more);
# * it stops early when every sequence has produced `eos_id` (`<|endoftext|>`);
# * it switches the model to eval mode (no dropout) and `torch.no_grad()`, and restores the mode after.
#
# With `temperature=0` it must produce exactly what the naive loop produced:

# %%
out = model.generate(start, max_new_tokens=10, temperature=0)
print(out)
assert torch.equal(out, out_naive)

# %% [markdown]
# ### The text-level call
#
# For everyday use, `generate` also takes a string. It encodes it with GPT-2's tokenizer (or any
# `tokenizer=` with `encode`/`decode`), generates at most `max_length` **new** tokens, stops early at
# `<|endoftext|>`, and returns the prompt followed by the continuation. A prompt longer than the context
# window is cropped to its last 1,024 tokens for the model; the returned text still starts with the
# whole prompt. `seed=` makes sampling repeatable:

# %%
text = model.generate("Justice is served when", max_length=20, temperature=0.8, seed=123)
print(repr(text))
assert text.startswith("Justice is served when")
assert text == model.generate("Justice is served when", max_length=20, temperature=0.8, seed=123)
greedy = model.generate("Justice is served when", max_length=20, temperature=0)
print(repr(greedy))

# %% [markdown]
# Bad arguments are rejected with a message that says what would be valid:

# %%
for kwargs in (dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=0), dict(max_length=0)):
    try:
        model.generate("Justice is served when", **{"max_length": 5, **kwargs})
    except ValueError as e:
        print(f"{kwargs}: ValueError: {e}")
for prompt in ("", 42):
    try:
        model.generate(prompt, max_length=5)
    except (ValueError, TypeError) as e:
        print(f"{prompt!r}: {type(e).__name__}: {e}")

# %% [markdown]
# ## 10. Speed notes
#
# Three choices in the exported code exist for speed, each checked equal to its naive twin above:
# the fused `F.layer_norm`, the fused `F.gelu(approximate="tanh")`, and, from chapter 3, one `c_attn`
# projection for q, k and v together plus `F.scaled_dot_product_attention`. Hugging Face's GPT-2 runs
# its GELU (`NewGELUActivation`) as the formula, one tensor operation at a time, like our `naive_gelu`:
# each operation reads and writes the whole `(B, T, 4C)` activation, and autograd keeps several of the
# intermediates for the backward pass. The fused kernel makes one pass each way. Here is one MLP, forward
# and backward, at the benchmark's shapes (B=2, T=256), with each GELU (timings vary from machine to
# machine and run to run):

# %%
# NBVAL_IGNORE_OUTPUT
import time


class NaiveGELU(nn.Module):
    def forward(self, x):
        return naive_gelu(x)


def time_mlp(mlp, x, reps=7):
    times = []
    for _ in range(reps):
        mlp.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        mlp(x).square().mean().backward()
        times.append(time.perf_counter() - t0)
    return sorted(times)[reps // 2]  # median


torch.manual_seed(123)
mlp_fused = MLP(768)
mlp_naive = MLP(768)
mlp_naive.load_state_dict(mlp_fused.state_dict())
mlp_naive.gelu = NaiveGELU()
x = torch.randn(2, 256, 768)
torch.testing.assert_close(mlp_fused(x), mlp_naive(x))
time_mlp(mlp_fused, x), time_mlp(mlp_naive, x)  # warm-up
t_naive, t_fused = time_mlp(mlp_naive, x), time_mlp(mlp_fused, x)
print(f"MLP forward+backward, B=2, T=256: naive GELU {t_naive * 1e3:.1f} ms, fused GELU {t_fused * 1e3:.1f} ms "
      f"(x 12 blocks per training step)")

# %% [markdown]
# The package has a benchmark that times our whole training step (forward, cross-entropy, backward,
# AdamW) against Hugging Face's `GPT2LMHeadModel` with the same config and the same weights (it checks
# that both give the same logits before it times anything), interleaved in one process:
#
# ```
# python -m gpt2scratch bench train                    # CPU: 124M, B=2, T=256, fp32
# python -m gpt2scratch bench train --device cuda      # GPU: B=16, T=1024, bf16 autocast, reports MFU
# python -m gpt2scratch bench generate                 # greedy generation, ours vs HF's generate()
# ```
#
# It prints both speeds in tokens per second, the fraction of the machine's measured matmul rate that
# each step reaches, and, last, the median over pairs of the ratio `ours/HF tok/s`. What to expect:
# the matrix multiplications are identical in the two models and take most of a CPU step, so the
# difference there comes from the element-wise work around them, such as the GELU above; on a GPU,
# where the matmuls are fast and every extra pass over memory shows, that work weighs more. On a
# machine shared with other jobs, two threads can wait on each other; `--threads 1` then often gives
# steadier numbers.

# %% [markdown]
# ## Summary
#
# * **LayerNorm** normalizes each token's vector to mean 0, variance 1 (biased variance, $\epsilon = 10^{-5}$)
#   and rescales it with learned $\gamma, \beta$. Ours equals `nn.LayerNorm`, values and gradients.
# * **GELU** (tanh approximation) is GPT-2's activation; ours equals `F.gelu(approximate="tanh")`.
# * The **MLP** widens to $4C$, applies GELU, projects back; it acts on each position alone.
# * **Residual connections** give the gradient an identity path: without them a 24-layer stack's first
#   layer got a gradient many orders of magnitude smaller than its last.
# * A **pre-LN block** is `x + attn(ln_1(x))` then `x + mlp(ln_2(x))`, and has $12C^2 + 13C$ parameters.
# * **GPT2** = embeddings + blocks + `ln_f` + tied `lm_head`: 124,439,808 parameters for the 124M config
#   (163,037,184 untied), checked for all four sizes by formula and on the meta device.
# * An untrained model predicts an almost uniform distribution (loss ≈ ln 50257), is causal, and
#   **generates** gibberish, greedily or by sampling, from a tensor or from a string.
#
# Next, chapter 5 trains it on *The Verdict*.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** DistilGPT-2 keeps GPT-2 124M's width and heads but has only 6 layers. How many
# parameters does it have? Compute it with the formula and check it on the meta device.

# %%
distil = GPT2Config(n_layers=6)
with torch.device("meta"):
    n_distil = GPT2(distil).num_params()
print(f"6-layer GPT-2: {count_params(distil):,} by formula, {n_distil:,} on the meta device")
assert n_distil == count_params(distil) == 124_439_808 - 6 * (12 * 768**2 + 13 * 768)

# %% [markdown]
# *Solution.* Each of the 6 removed blocks had $12 \cdot 768^2 + 13 \cdot 768 = 7{,}087{,}872$
# parameters, so the 6-layer model has $124{,}439{,}808 - 6 \cdot 7{,}087{,}872 = 81{,}912{,}576$.
#
# **Exercise 2.** Show with gradients, not just outputs, that the model is causal: the logits at
# position 1 must have zero gradient with respect to the embeddings of positions 2 and 3, and a
# non-zero gradient with respect to positions 0 and 1.
#
# *Solution.* Run the blocks on an embedding tensor that requires gradients, and differentiate one
# position's logits:

# %%
torch.manual_seed(123)
emb = (model.wte(batch[:1]) + model.wpe(torch.arange(4))).detach().requires_grad_()  # (1, 4, C)
x = emb
for blk in model.h:
    x = blk(x)
model.lm_head(model.ln_f(x))[0, 1].sum().backward()  # logits at position 1
grad_norm = emb.grad[0].norm(dim=-1)  # (4,) one norm per input position
print("gradient norm per input position:", (grad_norm > 0).tolist())
assert grad_norm[2:].eq(0).all() and grad_norm[:2].gt(0).all()

# %% [markdown]
# **Exercise 3.** Temperature rescales logits before the softmax. For the untrained model's
# next-token distribution after "Every effort moves you", compute the probability of the most likely
# token and the entropy (in nats) at temperatures 0.5, 1 and 2. Which temperature makes sampling
# closest to greedy?
#
# *Solution.* Lower temperature sharpens the distribution (higher top probability, lower entropy);
# as $T \to 0$ all the mass goes to the argmax, which is greedy decoding:

# %%
with torch.no_grad():
    last = model(batch[:1])[0, -1]  # (V,) logits after "Every effort moves you"
for temp in (0.5, 1.0, 2.0):
    p = F.softmax(last / temp, dim=-1)
    entropy = -(p * p.log()).sum()
    print(f"T={temp}: top probability {p.max().item():.6f}, entropy {entropy.item():.4f} nats")
print(f"uniform over 50,257 tokens: top probability {1 / 50257:.6f}, entropy {math.log(50257):.4f} nats")
