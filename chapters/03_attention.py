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
# # Chapter 3 — Attention
#
# In this chapter you build `CausalSelfAttention`, the module that lets every token in GPT-2 look
# back at the tokens before it. It takes the `x` of shape `(B, T, 768)` that
# [Chapter 2](02_text_to_tensors.ipynb) produced (token plus position embeddings, `wte + wpe`) and
# returns a tensor of the same shape, in which every position has pulled in information from itself and
# the positions before it. Chapter 4 stacks twelve of these modules, with an MLP after each, into GPT-2.
#
# Why does a language model need this? It must predict the next token, and each position therefore
# needs a way to *look back* and pull in whatever is useful: "it" needs to find the noun it stands for,
# "--though" needs the clause it qualifies. **Attention** is that mechanism. Every position asks a
# question (a *query*), every position advertises what it holds (a *key*), and each position receives a
# weighted average of the others' *values*, weighted by how well query and key match.
#
# We build it in six steps, each one a small change to the last, and watch the numbers at every step:
#
# 1. **simplified self-attention**: no trainable weights, a 6-word toy sentence, loops first, then
#    matrices;
# 2. **scaled dot-product attention** with trainable query/key/value projections, and why we divide
#    by $\sqrt{d_k}$;
# 3. the **causal mask**: why $-\infty$ goes in *before* the softmax;
# 4. **dropout** on the attention weights;
# 5. **multi-head attention**, 12 heads × 64 dimensions = 768, first as a list of single heads, then
#    batched, with a figure of the reshape that makes the head a batch dimension;
# 6. one fused q/k/v projection and PyTorch's `F.scaled_dot_product_attention`: the
#    `CausalSelfAttention` module that the GPT-2 model of Chapter 4 uses.
#
# Then we **prove** that steps 5 and 6 compute the same function (to within float32 round-off), look at
# attention maps for a sentence of *The Verdict*, and time naive against fused.
#
# Only the final module is exported to `gpt2scratch/attention.py`; everything else is scaffolding for
# understanding, and it is checked against the exported version.

# %%
#| default_exp attention

# %%
#| export
"""Causal multi-head self-attention, GPT-2 style: one fused q/k/v projection and
`F.scaled_dot_product_attention` (Chapter 3 of the book)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.validation import check_bool, check_int, check_number

# %%
import time

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, Rectangle

from gpt2scratch.quickmode import full_or_quick

torch.set_printoptions(sci_mode=False, linewidth=88)

# %% [markdown]
# ## 1 · Simplified self-attention: a weighted average, nothing more
#
# Take the sentence *"the cat sat on the mat"*, one token per word, and give each word a hand-made
# 3-dimensional embedding. (Real embeddings are the learned 768-dimensional `wte + wpe` vectors of
# [Chapter 2](02_text_to_tensors.ipynb); three hand-picked numbers are easier to follow.) Read the three
# dimensions loosely as *animal*, *action*, *object/place*:

# %%
words = ["the", "cat", "sat", "on", "the", "mat"]
X = torch.tensor(
    [
        [0.1, 0.0, 0.2],  # the
        [0.9, 0.1, 0.3],  # cat
        [0.2, 0.9, 0.1],  # sat
        [0.0, 0.3, 0.5],  # on
        [0.1, 0.0, 0.2],  # the  (same word, same embedding)
        [0.1, 0.0, 0.9],  # mat
    ]
)
T, d = X.shape  # (6, 3)
print(T, "tokens of", d, "dimensions")

# %% [markdown]
# Self-attention turns each input vector $x_i$ into a **context vector** $z_i$ in three steps:
#
# 1. **scores**: how similar is $x_i$ to every $x_j$? The simplest similarity is the dot product
#    $s_{ij} = x_i \cdot x_j = \sum_d x_{id} x_{jd}$;
# 2. **weights**: turn the scores of row $i$ into positive numbers that sum to 1 with the softmax
#    $w_{ij} = e^{s_{ij}} / \sum_k e^{s_{ik}}$;
# 3. **context**: average the inputs with those weights, $z_i = \sum_j w_{ij} x_j$.
#
# First with plain Python loops, so that nothing is hidden. The softmax subtracts the row maximum
# before exponentiating; that changes nothing mathematically ($e^{s-m}/\sum e^{s-m} = e^{s}/\sum e^{s}$)
# but keeps `exp` from overflowing (we show why below).


# %%
def dot(a: list[float], b: list[float]) -> float:
    return sum(ai * bi for ai, bi in zip(a, b))


def softmax_list(row: list[float]) -> list[float]:
    m = max(row)
    exps = [math.exp(s - m) for s in row]
    total = sum(exps)
    return [e / total for e in exps]


x = X.tolist()
scores_loop = [[dot(x[i], x[j]) for j in range(T)] for i in range(T)]
weights_loop = [softmax_list(row) for row in scores_loop]
context_loop = [
    [sum(weights_loop[i][j] * x[j][c] for j in range(T)) for c in range(d)]
    for i in range(T)
]

i = words.index("sat")  # follow one query: "sat"
print("scores  of 'sat':", [round(s, 4) for s in scores_loop[i]])
print("weights of 'sat':", [round(w, 4) for w in weights_loop[i]])
print("sum of the weights:", round(sum(weights_loop[i]), 4))
print("context of 'sat':", [round(z, 4) for z in context_loop[i]])

# %% [markdown]
# "sat" scores highest against itself (0.86), next against "on" (0.32) and "cat" (0.3). A word is
# not always its own best match, though: a dot product also grows with the length of the other
# vector, and below "the" scores the longer "mat" above itself. After the softmax the weights are
# still fairly flat, because the scores are small numbers; the context vector of "sat" is a blend
# of all six words, tilted towards "sat".
#
# The same three steps as matrix operations: all scores at once are $S = XX^\top$, the softmax runs
# along each row, and all context vectors are $Z = WX$.

# %%
S = X @ X.T  # (6, 6)  S[i, j] = x_i · x_j
W = torch.softmax(S, dim=-1)  # (6, 6)  each row sums to 1
Z = W @ X  # (6, 3)  row i = sum_j W[i, j] x_j

assert torch.allclose(S, torch.tensor(scores_loop))
assert torch.allclose(W, torch.tensor(weights_loop))
assert torch.allclose(Z, torch.tensor(context_loop))
print("attention weights W:\n", W.round(decimals=4))
print("row sums:", W.sum(dim=-1).round(decimals=4))
print("context vectors Z:\n", Z.round(decimals=4))

# %% [markdown]
# Loops and matrices agree. Two things are worth noticing already:
#
# * the two rows for **"the"** (rows 0 and 4) are identical. Attention compares *contents*; it has no
#   idea where a token sits. That is why [Chapter 2](02_text_to_tensors.ipynb) added a position
#   embedding `wpe` to every token embedding: without it, GPT-2 could not tell "the" at position 0 from
#   "the" at position 4, and apart from the causal mask of step 3, the order of the words would not
#   matter;
# * "the" gives its largest weight to "mat" (0.1827), not to itself: a dot product also grows with the
#   *length* of the other vector, and "mat" is long. Raw dot products of raw embeddings are a crude
#   similarity. Step 2 fixes this by letting the model learn *what* to compare.
#
# **Why subtract the maximum in the softmax?** `exp` overflows float32 between 88 and 89, where it
# passes float32's largest number, about 3.4e38. Scores of a few hundred are rare at initialisation but
# not impossible during training:

# %%
e88, e89 = torch.exp(torch.tensor([88.0, 89.0])).tolist()
print(f"in float32: exp(88) = {e88:.2e}, exp(89) = {e89}")
print(f"largest float32: {torch.finfo(torch.float32).max:.2e}")
big = torch.tensor([1000.0, 999.0])
naive = torch.exp(big) / torch.exp(big).sum()
print("naive softmax:", naive)  # inf / inf = nan
print("torch.softmax:", torch.softmax(big, dim=-1).round(decimals=4))  # max first
assert torch.isnan(naive).all()

# %% [markdown]
# ## 2 · Scaled dot-product attention with trainable weights
#
# GPT-2 does not compare the embeddings directly. It first maps each input through three learned
# matrices:
#
# * the **query** $q_i = x_i W_q$: what position $i$ is looking for;
# * the **key** $k_j = x_j W_k$: what position $j$ offers to be found by;
# * the **value** $v_j = x_j W_v$: what position $j$ hands over when it is chosen.
#
# Scores become $q_i \cdot k_j$, and the context vector averages the values: $z_i = \sum_j w_{ij} v_j$.
# Because $W_q \neq W_k$, "$i$ looks for $j$" no longer has to equal "$j$ looks for $i$": the score
# matrix stops being symmetric. We use `nn.Linear(..., bias=False)` for the three matrices; it stores
# $W^\top$ and computes `x @ weight.T`, which is the same thing.

# %%
torch.manual_seed(123)
d_in, d_k = 3, 2  # project 3-d inputs to 2-d queries/keys/values
W_q = nn.Linear(d_in, d_k, bias=False)
W_k = nn.Linear(d_in, d_k, bias=False)
W_v = nn.Linear(d_in, d_k, bias=False)

with torch.no_grad():
    Q, K, V = W_q(X), W_k(X), W_v(X)  # each (6, 2)
    scores = Q @ K.T  # (6, 6)
    weights = torch.softmax(scores / math.sqrt(d_k), dim=-1)  # (6, 6)
    context = weights @ V  # (6, 2)

print("queries Q:\n", Q.round(decimals=4))
print("scores Q K^T:\n", scores.round(decimals=4))
print("largest |score|:", round(scores.abs().max().item(), 4))
print("symmetric?", torch.allclose(scores, scores.T))
print("context vectors:\n", context.round(decimals=4))

# %% [markdown]
# The projections are random for now, so the scores are small (the largest is 0.2624 in absolute
# value), the weights nearly uniform and the six context vectors nearly alike. Training is what will
# make $W_q$ and $W_k$ pick out useful pairs.
#
# ### Why divide by $\sqrt{d_k}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, the dot product
# $q\cdot k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of $d_k$ terms of variance 1, so its **standard
# deviation is $\sqrt{d_k}$**. In GPT-2 each head has $d_k = 64$, so raw scores are spread 8× wider than
# at $d_k=1$. The softmax of widely spread scores is nearly one-hot: one key takes (almost) all the
# weight, and the gradient of the softmax, $J = \mathrm{diag}(w) - w w^\top$, is then nearly zero:
# learning stalls. Dividing by $\sqrt{d_k}$ brings the scores back to unit standard deviation whatever
# the head size.
#
# Measured on random unit-variance queries against 8 random keys each:

# %%
torch.manual_seed(123)
n, n_keys = 2000, 8
print(f"{'':>15} | {'raw scores':^18} | {'scaled by 1/sqrt(d_k)':^21}")
print(
    f"{'d_k':>5} {'std(q·k)':>9} | {'max weight':>10} {'|J|':>7} "
    f"| {'max weight':>10} {'|J|':>10}"
)
for dk in [1, 2, 64, 768]:
    q = torch.randn(n, 1, dk)
    k = torch.randn(n, n_keys, dk)
    s = (q * k).sum(-1)  # (n, 8) raw scores
    cols = []
    for scaled in (False, True):
        w = torch.softmax(s / math.sqrt(dk) if scaled else s, dim=-1)  # (n, 8)
        # the softmax Jacobian diag(w) - w w^T, one (8, 8) matrix per query
        J = torch.diag_embed(w) - w.unsqueeze(-1) * w.unsqueeze(-2)
        max_w = w.max(-1).values.mean().item()
        cols.append(f"{max_w:>10.3f} {J.norm(dim=(-2, -1)).mean().item():>7.3f}")
    print(f"{dk:>5} {s.std().item():>9.2f} | {cols[0]} | {cols[1]:>21}")

# %% [markdown]
# The standard deviation of the raw scores grows like $\sqrt{d_k}$ (1.00, 1.42, 8.08, 27.83). Without
# scaling, the largest of 8 weights averages 0.881 at $d_k=64$ and 0.962 at $d_k=768$: nearly one-hot.
# The average norm of the softmax Jacobian (how strongly the weights react to a change in the scores,
# which is what gradients flow through) drops from 0.349 at $d_k=1$ to 0.145 and 0.051. With scaling,
# the largest weight stays between 0.300 and 0.363 and the Jacobian norm between 0.349 and 0.366
# whatever $d_k$: the softmax stays in its responsive range. That is the whole reason for the "scaled"
# in *scaled dot-product attention*, $\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V$.

# %% [markdown]
# ## 3 · The causal mask: $-\infty$ before the softmax
#
# GPT-2 is trained to predict token $t+1$ from tokens $1..t$. If position $t$ could attend to position
# $t+1$, it could simply copy the answer, and it would learn nothing useful. So each query $i$ may only
# look at keys $j \le i$: the weights above the diagonal must be **exactly zero**.
#
# We mark the forbidden entries with a boolean matrix, `True` strictly above the diagonal:

# %%
# (6, 6), True = future = forbidden
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
print(mask.int())
s = scores / math.sqrt(d_k)  # the scaled scores from step 2, (6, 6)

# %% [markdown]
# There are three tempting ways to apply it. Let us compare them on the scores of step 2.
#
# **(a) softmax, then zero the future, then renormalise** each row so it sums to 1 again:

# %%
w_a = torch.softmax(s, dim=-1)  # (6, 6) every key gets weight
w_a = w_a.masked_fill(mask, 0.0)  # drop the future
w_a = w_a / w_a.sum(dim=-1, keepdim=True)  # rows sum to 1 again
print(w_a.round(decimals=4))

# %% [markdown]
# **(b) put $-\infty$ on the future scores, then softmax**: $e^{-\infty} = 0$, so the future gets
# weight exactly 0 and the normalising sum only runs over the allowed keys. One step:

# %%
w_b = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)  # (6, 6)
print(w_b.round(decimals=4))
print("max |a - b| < 1e-6:", (w_a - w_b).abs().max().item() < 1e-6)
print("future weights exactly zero:", bool((w_b[mask] == 0).all()))

# %% [markdown]
# (a) and (b) agree, and not by accident. For an allowed key $j$, (a) computes
# $\frac{e^{s_j}/Z}{\sum_{k\le i} e^{s_k}/Z}$ where $Z$ sums over *all* keys: the $Z$ cancels, leaving
# $e^{s_j}/\sum_{k\le i}e^{s_k}$, which is what (b) computes directly. So why prefer (b)?
#
# * it is **one pass** instead of three, with no extra $T\times T$ temporaries, and fused kernels can
#   skip the masked blocks altogether;
# * it is **exact** even when (a) falls apart: if a *future* key dominates, the allowed weights
#   underflow to 0 in the first softmax, and the renormalisation divides 0 by 0:

# %%
row = torch.tensor(
    [[0.0, 200.0]]
)  # query 0 may see key 0 only; future key 1 scores 200
future = torch.tensor([[False, True]])
a = torch.softmax(row, dim=-1).masked_fill(future, 0.0)
print("(a) softmax-then-mask:", a / a.sum(-1, keepdim=True))  # 0/0 = nan
b = torch.softmax(row.masked_fill(future, float("-inf")), dim=-1)
print("(b) -inf-then-softmax:", b)

# %% [markdown]
# **(c) put 0 on the future scores, then softmax** looks similar but is wrong: a score of 0 is an
# ordinary score, and $e^0 = 1$ gives the future a sizeable share of the weight:

# %%
w_c = torch.softmax(s.masked_fill(mask, 0.0), dim=-1)  # WRONG: masks with 0, not -inf
print(w_c.round(decimals=4))
leak = w_c.masked_fill(~mask, 0).sum(-1)
print("weight that leaks to the future, per row:", leak.round(decimals=4))

# %% [markdown]
# Row 0 ("the") should put all of its weight on itself; (c) gives 0.83 of it (about 5/6) to the five
# words that follow. A leak is easy to *prove* rather than eyeball: change a future token and see
# whether an earlier output moves. We replace the last word "mat" by "cat" and compare the outputs at
# positions 0–4, which must not depend on position 5:

# %%
X2 = X.clone()
X2[5] = X[1]  # "the cat sat on the cat"
with torch.no_grad():
    V2, K2 = W_v(X2), W_k(X2)
    s2 = Q @ K2.T / math.sqrt(d_k)  # the queries of positions 0..5 are unchanged
    for name, fill in [("-inf (b)", float("-inf")), ("0    (c)", 0.0)]:
        before = torch.softmax(s.masked_fill(mask, fill), dim=-1) @ V
        after = torch.softmax(s2.masked_fill(mask, fill), dim=-1) @ V2
        change = (after - before)[:5].abs().max().item()
        print(f"mask with {name}: max change at positions 0-4 = {change:.4f}")

# %% [markdown]
# With $-\infty$ the first five outputs do not move at all; with 0 they change, so they had been
# peeking at the last word.
#
# One caveat about $-\infty$: a row whose keys are *all* masked becomes $0/0$ = `nan`. With a causal
# mask this cannot happen (the diagonal is always allowed), but it can with padding masks, which is why
# some code uses a large finite negative number instead.

# %%
print(torch.softmax(torch.tensor([float("-inf"), float("-inf")]), dim=-1))

# %% [markdown]
# ## 4 · Dropout on the attention weights
#
# Dropout randomly zeroes, during training, a fraction $p$ of the attention weights (and of a few
# other activations), so that the model cannot rely on any single connection. `nn.Dropout(p)`
# zeroes each entry with probability $p$ and multiplies the survivors by $1/(1-p)$, so that the
# *expected* value of every entry is unchanged: $(1-p)\cdot \frac{w}{1-p} + p\cdot 0 = w$. With
# $p = 0.5$ the survivors double:

# %%
torch.manual_seed(123)
dropout = nn.Dropout(p=0.5)
print(dropout(torch.ones(6, 6)))

# %% [markdown]
# On the causal attention weights of step 3, rows no longer sum to 1 after dropout, but they do *on
# average*; and in `eval()` mode dropout is the identity:

# %%
torch.manual_seed(123)
dropped = dropout(w_b)  # (6, 6)
print(dropped.round(decimals=4))
print("row sums after dropout:", dropped.sum(-1).round(decimals=4))
mean = torch.stack([dropout(w_b) for _ in range(20_000)]).mean(0)
gap = (mean - w_b).abs().max().item()
print("average over 20,000 draws equals the original within", round(gap, 2))
assert gap < 0.05
dropout.eval()
print("eval() mode leaves the weights unchanged:", torch.equal(dropout(w_b), w_b))
assert torch.equal(dropout(w_b), w_b)  # no dropout at inference

# %% [markdown]
# **How much dropout did GPT-2 use?** That is not on record. The GPT-2 paper states no dropout,
# and OpenAI's released `model.py`, which only runs the trained model, has none. The value 0.1
# comes from Hugging Face's GPT-2 config (`attn_pdrop`, `resid_pdrop` and `embd_pdrop`), which
# inherited GPT-1's rate; nanoGPT pretrains with $p = 0$ and suggests dropout for fine-tuning.
# The modules of this chapter take $p$ as an argument and default to 0; chapter 4's model
# defaults to Hugging Face's value, so that a model loaded from their weights trains the same way.
#
# Everything so far fits in one small module: a single causal attention **head**. It takes inputs of
# width `d_in` and returns context vectors of width `d_head`. We keep the mask as a *buffer*: it moves
# with the module to the GPU and lands in the `state_dict`... which is exactly what we will avoid in
# the final version (see step 6).


# %%
class CausalHead(nn.Module):
    """One causal attention head, computed the naive way (teaching version)."""

    def __init__(
        self,
        d_in: int,
        d_head: int,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.W_q = nn.Linear(d_in, d_head, bias=qkv_bias)
        self.W_k = nn.Linear(d_in, d_head, bias=qkv_bias)
        self.W_v = nn.Linear(d_in, d_head, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        ones = torch.ones(context_length, context_length, dtype=torch.bool)
        self.register_buffer("mask", torch.triu(ones, 1))  # True = future

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, d_in)
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # each (B, T, d_head)
        scores = q @ k.transpose(1, 2) / math.sqrt(k.shape[-1])  # (B, T, T)
        scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))  # (B, T, T)
        return weights @ v  # (B, T, d_head)


torch.manual_seed(123)
head = CausalHead(d_in=3, d_head=2, context_length=6)
batch = torch.stack([X, X2])  # (2, 6, 3): both sentences as one batch
print(head(batch).shape)
print("state_dict keys:", list(head.state_dict()))

# %% [markdown]
# ## 5 · Multi-head attention
#
# One head computes one pattern of weights per position: it can look for *one* kind of thing. GPT-2
# runs **12 heads in parallel**, each with its own $W_q, W_k, W_v$ projecting the 768-dimensional input
# down to $768/12 = 64$ dimensions, concatenates the 12 outputs back to 768, and mixes them with one
# more linear layer, the **output projection** (`c_proj` in GPT-2's naming). Together the 12 heads'
# projections have as many parameters as one 768-dimensional head would (12 blocks of 768×64 make one
# 768×768 matrix), but the model gets 12 independent attention patterns.
#
# ### 5a · As a list of single heads
#
# The most literal implementation: 12 `CausalHead`s and a `torch.cat`.


# %%
class MultiHeadWrapper(nn.Module):
    """Multi-head attention as n_heads separate CausalHeads (teaching version; slow)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        d_head = d_model // n_heads
        self.heads = nn.ModuleList(
            CausalHead(d_model, d_head, context_length, dropout, qkv_bias)
            for _ in range(n_heads)
        )
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # n_heads x (B, T, hd) -> (B, T, C)
        y = torch.cat([head(x) for head in self.heads], dim=-1)
        return self.c_proj(y)  # (B, T, C)


d_model, n_heads, context_length = 768, 12, 1024
torch.manual_seed(123)
x = torch.randn(2, 6, d_model)  # (B=2, T=6, C=768)
wrapper = MultiHeadWrapper(d_model, n_heads, context_length).eval()
print("input ", tuple(x.shape))
print("one head ->", tuple(wrapper.heads[0](x).shape))
print("output", tuple(wrapper(x).shape))
print(f"parameters: {sum(p.numel() for p in wrapper.parameters()):,}")

# %% [markdown]
# ### 5b · All heads in one batched computation
#
# The 12 heads do identical work on different slices, so we can stack their weights: one
# `nn.Linear(768, 768)` for all queries (its output features 0–63 are head 0's query, features 64–127 head 1's,
# and so on), the same for keys and values. Then we only need to *reshape* so that the head becomes a
# batch dimension, and one matrix multiplication computes all 12 score matrices.
#
# The reshape is the part that trips people up, so first a picture, with toy sizes (4 tokens, 3 heads
# of 2 features). Panel 1: the same `x` goes through three projections, and within each of q, k and v
# every head owns a band of adjacent columns. Panel 2: `.view` regroups each token's row into one row
# per head without moving any memory, and `.transpose` then brings the head to the front, so that each
# head holds its own `(T, hd)` matrix and attention can treat the heads like a batch.


# %% tags=["hide-input"]
T_fig, H_fig, hd_fig = 4, 3, 2  # toy sizes: 4 tokens, 3 heads of 2 features, C = 6
C_fig = H_fig * hd_fig
head_colors = plt.cm.Set2.colors[:H_fig]
tokens = [f"t{t}" for t in range(T_fig)]


def note(ax, x, y, text, **kw):
    ax.text(x, y, text, **{"ha": "center", "va": "top", "fontsize": 9, **kw})


def block(ax, x0, y0, shape, color, title=None, rows=None):
    """Draw a (rows, cols) block of unit cells with its top-left corner at (x0, y0).

    color(r, c) is the colour of cell (r, c); rows labels the rows on the left.
    """
    n_rows, n_cols = shape
    for r in range(n_rows):
        for c in range(n_cols):
            xy = (x0 + c, y0 - r - 1)
            ax.add_patch(Rectangle(xy, 1, 1, fc=color(r, c), ec="white", lw=1.5))
    if title:
        note(ax, x0 + n_cols / 2, y0 + 0.3, title, va="bottom", fontsize=10)
    for r, text in enumerate(rows or []):
        note(ax, x0 - 0.2, y0 - r - 0.5, text, ha="right", va="center", fontsize=8)


def arrow(ax, x0, x1, text, y=-T_fig / 2):
    style = dict(arrowstyle="-|>", mutation_scale=15, color="0.3")
    ax.add_patch(FancyArrowPatch((x0, y), (x1, y), **style))
    note(ax, (x0 + x1) / 2, y + 0.3, text, va="bottom")


def solid(color):
    return lambda r, c: color


def by_column(r, c):  # column c belongs to head c // hd
    return head_colors[c // hd_fig]


def by_row(r, c):  # row r is head r
    return head_colors[r]


# %% tags=["hide-input"]
fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7))
# panel 1: x -> q, k, v, each (T, C); every head owns hd adjacent columns of each
block(top, 0, 0, (T_fig, C_fig), solid("0.85"), "x  (T, C)", tokens)
arrow(top, C_fig + 0.3, C_fig + 3.3, "W_q, W_k, W_v")
for i, (name, edge) in enumerate(zip("qkv", ["#d62728", "#1f77b4", "#2ca02c"])):
    x0 = C_fig + 4 + i * (C_fig + 1)
    block(top, x0, 0, (T_fig, C_fig), by_column, f"{name} = x W_{name}  (T, C)")
    top.add_patch(Rectangle((x0, -T_fig), C_fig, T_fig, fill=False, ec=edge, lw=3))
caption = "side by side, [q | k | v] is the (T, 3C) output of step 6's c_attn"
note(top, C_fig + 4, -T_fig - 0.6, caption + "; colours mark the heads", ha="left")
# panel 2: q (T, C) -> .view -> (T, H, hd) -> .transpose -> (H, T, hd)
block(bottom, 0, 0, (T_fig, C_fig), by_column, "q  (T, C)", tokens)
arrow(bottom, C_fig + 0.3, C_fig + 2.8, ".view(T, H, hd)")
x0 = C_fig + 3.4
for t in range(T_fig):  # token t: an (H, hd) matrix, one row per head
    block(bottom, x0 + t * (hd_fig + 0.6), 0, (H_fig, hd_fig), by_row, tokens[t])
x1 = x0 + T_fig * (hd_fig + 0.6)
note(bottom, (x0 + x1) / 2, -T_fig - 0.3, "(T, H, hd): same memory, no copy")
arrow(bottom, x1, x1 + 2.8, ".transpose(0, 1)")
for h in range(H_fig):  # head h: a (T, hd) matrix, one row per token
    xh = x1 + 3.8 + h * (hd_fig + 1.4)
    block(bottom, xh, 0, (T_fig, hd_fig), solid(head_colors[h]), f"head {h}", tokens)
x_mid = x1 + 3.6 + H_fig * (hd_fig + 1.4) / 2
note(bottom, x_mid, -T_fig - 0.3, "(H, T, hd): the head is a batch dimension")
titles = [
    "1 · three projections of the same x",
    "2 · the head reshape of q (k, v alike)",
]
for ax, title in zip([top, bottom], titles):
    ax.set(xlim=(-1.2, 33), ylim=(-T_fig - 1.6, 1.6), aspect="equal")
    ax.axis("off")
    ax.set_title(title, loc="left")
sizes = f"toy sizes T={T_fig}, H={H_fig}, hd={hd_fig} (GPT-2: H=12, hd=64, C=768)"
fig.suptitle(sizes + "; the batch dimension B is left out", fontsize=10, y=0.02)
plt.tight_layout()
plt.show()

# %% [markdown]
# The same reshape in code, with the batch dimension and GPT-2's sizes, one line at a time and the
# shape of each tensor. (To keep the lines about shapes, the scores here are $qq^\top$ without scaling
# or mask; the module below does it properly.)

# %%
torch.manual_seed(123)
B, T_, C = x.shape  # (2, 6, 768)
H, hd = n_heads, d_model // n_heads  # 12 heads of 64
W_query = nn.Linear(C, C)
with torch.no_grad():
    q = W_query(x)  # (B, T, C)      = (2, 6, 768)
    q = q.view(B, T_, H, hd)  # (B, T, H, hd)  = (2, 6, 12, 64): split C into heads
    q = q.transpose(1, 2)  # (B, H, T, hd)  = (2, 12, 6, 64): heads act like batch
    att = q @ q.transpose(-2, -1)  # (B, H, T, T)   = (2, 12, 6, 6): one per head
    y = att @ q  # (B, H, T, hd)  = (2, 12, 6, 64)
    y = y.transpose(1, 2)  # (B, T, H, hd)  = (2, 6, 12, 64)
    y = y.contiguous().view(B, T_, C)  # (B, T, C) = (2, 6, 768): heads concatenated
print(tuple(q.shape), tuple(att.shape), tuple(y.shape))
print("is the transposed tensor contiguous?", q.is_contiguous())

# %% [markdown]
# `view` only reinterprets the memory, so it needs a tensor whose memory is laid out in the order of
# its shape; after `transpose` it is not, hence `.contiguous()` (a copy) before the final `view`. The
# module:


# %%
class MultiHeadAttention(nn.Module):
    """Batched causal multi-head attention with separate q/k/v and an explicit mask."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        context_length: int,
        dropout: float = 0.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.W_query = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.W_key = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.W_value = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.c_proj = nn.Linear(d_model, d_model)
        ones = torch.ones(context_length, context_length, dtype=torch.bool)
        self.register_buffer("mask", torch.triu(ones, 1))  # True = future

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H, hd = self.n_heads, self.head_dim
        q = self.W_query(x).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = self.W_key(x).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        v = self.W_value(x).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)  # (B, H, T, T)
        scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
        weights = self.attn_dropout(torch.softmax(scores, dim=-1))  # (B, H, T, T)
        y = weights @ v  # (B, H, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)  # (B, T, C)


batched = MultiHeadAttention(d_model, n_heads, context_length).eval()
print("output", tuple(batched(x).shape))
print(f"parameters: {sum(p.numel() for p in batched.parameters()):,}")

# %% [markdown]
# Same parameter count as the wrapper, 2,362,368, as it must be: 12 heads of 768×64 weights are one
# 768×768 matrix.
#
# ## 6 · Fused q/k/v and `F.scaled_dot_product_attention`: the exported module
#
# Two last changes give the version the rest of the book uses.
#
# **One projection for q, k and v.** Three `Linear(768, 768)` layers become one `Linear(768, 2304)`,
# called `c_attn` as in GPT-2. Its 2304 output features are *q, k, v concatenated in that order*, and
# within each block the heads are contiguous (features 0–63 of the q block are head 0): exactly panel 1
# of the figure, read as one wide matrix. One larger matrix multiplication replaces three smaller ones,
# and the layout is exactly OpenAI's: Hugging Face's `attn.c_attn.weight` has shape (768, 2304) because
# its `Conv1D` stores (in, out); ours is `nn.Linear`'s (out, in) = (2304, 768), so pretrained weights
# load with a single transpose (Chapter 7).
#
# **A fused attention kernel.** `F.scaled_dot_product_attention(q, k, v, is_causal=True)` computes
# $\mathrm{softmax}(QK^\top/\sqrt{d_k} + \text{mask})\,V$ in one call. Depending on the device and dtype
# it dispatches to a FlashAttention-style kernel that processes the keys in blocks with an online
# softmax and never materialises the $T\times T$ weight matrix: memory grows linearly in $T$ instead of
# quadratically, and the causal blocks above the diagonal are skipped. `is_causal=True` also means no
# mask buffer: nothing of size `context_length`² to store, move or save.
#
# First, the reshape of panel 2 and its inverse, as two small functions that the module calls:


# %%
#| export
def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C // H): give each head its own (T, hd) matrix."""
    B, T, C = t.shape
    return t.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, H, T, hd) -> (B, T, H * hd): concatenate the heads again."""
    B, H, T, hd = t.shape
    return t.transpose(1, 2).contiguous().view(B, T, H * hd)


# %%
with torch.no_grad():
    q_5b = W_query(x).view(B, T_, H, hd).transpose(1, 2)  # the lines of step 5b
    q_split = split_heads(W_query(x), n_heads)
print("split_heads:", tuple(W_query(x).shape), "->", tuple(q_split.shape))
print("same as step 5b:", torch.equal(q_split, q_5b))
print("merge_heads undoes it:", torch.equal(merge_heads(q_split), W_query(x)))
assert torch.equal(q_split, q_5b) and torch.equal(merge_heads(q_split), W_query(x))

# %% [markdown]
# The module also checks its arguments before torch sees them, with the package's one error
# contract: a wrong type raises `TypeError`, a wrong value `ValueError`, and the message names the bad
# value. The checks use the shared helpers of [Appendix A](A_engineering.ipynb); they are plumbing,
# not attention, so their cell is folded.


# %% tags=["hide-input"]
#| export
def _check_args(d_model: int, n_heads: int, dropout: float, qkv_bias: bool) -> None:
    """Refuse bad hyperparameters before torch sees them, naming the bad value."""
    check_int("d_model", d_model, minimum=1)
    check_int("n_heads", n_heads, minimum=1)
    if d_model % n_heads != 0:
        raise ValueError(
            f"d_model must be divisible by n_heads, got d_model={d_model}, "
            f"n_heads={n_heads} (remainder {d_model % n_heads}); "
            "e.g. n_heads=12 for d_model=768"
        )
    check_number("dropout", dropout, minimum=0.0, maximum=1.0)
    check_bool("qkv_bias", qkv_bias)


def _check_input(x: torch.Tensor, d_model: int) -> None:
    """x must be a tensor of shape (B, T, d_model)."""
    if not isinstance(x, torch.Tensor):
        kind = type(x).__name__
        raise TypeError(
            f"x must be a torch.Tensor of shape (B, T, {d_model}), got {kind}"
        )
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"x must have shape (B, T, {d_model}), got {tuple(x.shape)}")


# %% [markdown]
# Now the module itself. Dropout is passed to the kernel as `dropout_p`, and only in training mode;
# after the output projection comes a second, ordinary dropout (`resid_dropout`), where
# Hugging Face's GPT-2 has its `resid_pdrop` (OpenAI's released code has neither). For
# visualisation, the module also has `attention_weights(x)`, which recomputes the weights the
# naive way (they are exactly what the fused kernel avoids storing). `forward` never uses it.
# `forward` also takes an optional `cache` and `start_pos`: the hook with which
# [Chapter 8](08_generation.ipynb) generates text without recomputing the keys and values of
# earlier positions. This chapter never passes them, and the cache's logic lives in chapter 8.


# %%
#| export
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused q/k/v projection, as in GPT-2.

    Args:
        d_model: width of the residual stream C (768 for GPT-2 124M).
        n_heads: number of heads H; each head works in d_model // n_heads dimensions.
        dropout: drop probability for the attention weights (inside the kernel) and
            for the output (`resid_dropout`); both act only in training mode.
        qkv_bias: whether `c_attn` has a bias (GPT-2: yes).

    Named and laid out like Hugging Face's GPT-2 `attn` block: `c_attn` maps C -> 3C,
    q, k, v in that order, heads contiguous within each; `c_proj` maps C -> C. HF's
    Conv1D stores weights as (in, out), nn.Linear as (out, in): transpose to convert.
    `forward(x)` maps (B, T, C) -> (B, T, C) (`cache`, `start_pos`: chapter 8's KV
    cache); `attention_weights(x)` recomputes the (B, H, T, T) weights naively.
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, qkv_bias: bool = True
    ):
        super().__init__()
        _check_args(d_model, n_heads, dropout, qkv_bias)
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout  # drop probability for the attention weights
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=qkv_bias)  # q, k, v at once
        self.c_proj = nn.Linear(d_model, d_model)  # mixes the heads' outputs
        self.resid_dropout = nn.Dropout(dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project x (B, T, C) to queries, keys and values, each (B, H, T, hd)."""
        _check_input(x, self.d_model)
        q, k, v = self.c_attn(x).split(self.d_model, dim=2)  # 3 x (B, T, C)
        return tuple(split_heads(t, self.n_heads) for t in (q, k, v))

    def forward(self, x: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
        q, k, v = self._qkv(x)  # 3 x (B, H, T, hd)
        p = self.dropout if self.training else 0.0  # dropout only when training
        if cache is None:  # softmax(q k^T / sqrt(hd) + causal mask) v, one kernel
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:  # chapter 8: x holds positions start_pos.. only; the cache has the rest
            k, v, mask = cache.update(k, v, start_pos)  # keys/values of all positions
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = self.c_proj(merge_heads(y))  # (B, T, C)
        return self.resid_dropout(y) if self.training else y  # eval: no call (ch. 8.6)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The causal weights softmax(q k^T / sqrt(hd)) of x (B, T, C), as (B, H, T, T).

        Naive and without dropout, for inspection and plots: rows sum to 1 and entries
        above the diagonal are exactly 0. Call it under `torch.no_grad()` if you do not
        need gradients.
        """
        q, k, _ = self._qkv(x)  # 2 x (B, H, T, hd)
        T = x.shape[1]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


# %%
torch.manual_seed(123)
attn = CausalSelfAttention(d_model=768, n_heads=12).eval()
print(attn)
print("output", tuple(attn(x).shape))
print(f"parameters: {sum(p.numel() for p in attn.parameters()):,}")
print("state_dict keys:", list(attn.state_dict()))

# %% [markdown]
# The same 2,362,368 parameters as the two naive versions, and no mask in the `state_dict`, unlike
# `CausalHead`'s. Bad arguments fail before torch sees them, with messages that say what would be
# valid:

# %%
bad_args = [
    dict(d_model=768, n_heads=10),
    dict(d_model=768, n_heads=12, dropout=1.5),
    dict(d_model=768, n_heads=12.0),
]
for bad in bad_args:
    try:
        CausalSelfAttention(**bad)
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")
try:
    attn(torch.randn(2, 6, 512))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Proof: naive and fused compute the same function
#
# Three implementations, three weight layouts. To compare them we copy one set of weights through all
# of them:
#
# * **wrapper → batched**: head $h$'s `W_q` is rows $64h \ldots 64h+63$ of `W_query`, so stacking the
#   12 heads' weights along the output dimension (`torch.cat(..., dim=0)`) gives `W_query`; same for
#   keys, values and the biases. `c_proj` is shared as is.
# * **batched → fused**: `c_attn` is `W_query`, `W_key`, `W_value` stacked along the output dimension.
#
# We also check PyTorch's own `nn.MultiheadAttention`, whose `in_proj_weight` uses the same q/k/v
# stacking as `c_attn`.

# %%
torch.manual_seed(123)
wrapper = MultiHeadWrapper(d_model, n_heads, context_length).eval()
batched = MultiHeadAttention(d_model, n_heads, context_length).eval()
fused = CausalSelfAttention(d_model, n_heads).eval()
torch_mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True).eval()

with torch.no_grad():
    for name in ["query", "key", "value"]:
        for p in ["weight", "bias"]:  # W_q / W_k / W_v inside each head
            parts = [getattr(getattr(h, f"W_{name[0]}"), p) for h in wrapper.heads]
            getattr(getattr(batched, f"W_{name}"), p).copy_(torch.cat(parts, dim=0))
    batched.c_proj.load_state_dict(wrapper.c_proj.state_dict())
    for p in ["weight", "bias"]:
        parts = [
            getattr(getattr(batched, f"W_{n}"), p) for n in ["query", "key", "value"]
        ]
        getattr(fused.c_attn, p).copy_(torch.cat(parts, dim=0))  # (2304, 768) / (2304,)
    fused.c_proj.load_state_dict(batched.c_proj.state_dict())
    torch_mha.in_proj_weight.copy_(fused.c_attn.weight)
    torch_mha.in_proj_bias.copy_(fused.c_attn.bias)
    torch_mha.out_proj.load_state_dict(fused.c_proj.state_dict())

# %% [markdown]
# Then we feed the same input through all of them (in `eval()` mode, so dropout is off) and measure the
# largest absolute difference. Round-off depends on the CPU's vector instructions, so the printed
# differences are not checked by the tests; the asserts are.

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(123)
x = torch.randn(4, 64, d_model)  # (B=4, T=64, C=768)
with torch.no_grad():
    y_wrapper, y_batched, y_fused = wrapper(x), batched(x), fused(x)
    causal = torch.ones(64, 64, dtype=torch.bool).triu(1)
    y_torch, _ = torch_mha(x, x, x, attn_mask=causal, need_weights=False)

diffs = {
    "wrapper vs batched": (y_wrapper - y_batched).abs().max().item(),
    "batched vs fused": (y_batched - y_fused).abs().max().item(),
    "wrapper vs fused": (y_wrapper - y_fused).abs().max().item(),
    "fused vs nn.MultiheadAttention": (y_fused - y_torch).abs().max().item(),
}
scale = y_fused.abs().max().item()
print(f"output scale: max |y| = {scale:.3f}")
for name, diff in diffs.items():
    print(f"max abs diff {name:32s} {diff:.1e}")
    assert diff <= 1e-5, (name, diff)
worst = max(diffs.values())
print(
    f"the largest diff is {1e-5 / worst:.0f}x below the 1e-5 bound "
    f"and {scale / worst:.1e}x below the output scale"
)

# %% [markdown]
# The differences are float32 round-off: the largest is well below the 1e-5 bound and millions of
# times below the output scale (the cell prints both ratios). (The wrapper and the batched module even agree
# exactly here: they do the same multiplications, only grouped differently.) The gradients agree
# too: backpropagating the same loss through the naive wrapper and the fused module gives the same
# gradient with respect to the input and to the projection weights.

# %%
# NBVAL_IGNORE_OUTPUT
xg1, xg2 = x.clone().requires_grad_(), x.clone().requires_grad_()
wrapper(xg1).pow(2).mean().backward()
fused(xg2).pow(2).mean().backward()
grad_diff = (xg1.grad - xg2.grad).abs().max().item()
proj_diff = (wrapper.c_proj.weight.grad - fused.c_proj.weight.grad).abs().max().item()
x_scale = xg2.grad.abs().max().item()
proj_scale = fused.c_proj.weight.grad.abs().max().item()
print(f"max abs diff of d loss / d x:      {grad_diff:.1e}  (grad scale {x_scale:.1e})")
print(
    f"max abs diff of d loss / d c_proj: {proj_diff:.1e}  (grad scale {proj_scale:.1e})"
)
assert grad_diff <= 1e-5 * x_scale and proj_diff <= 1e-5 * proj_scale

# %% [markdown]
# Finally, `attention_weights` is consistent with `forward`: multiplying its weights by the values and
# projecting reproduces the fused output.

# %%
with torch.no_grad():
    w = fused.attention_weights(x)  # (4, 12, 64, 64)
    _, _, v = fused._qkv(x)  # (4, 12, 64, 64) values
    y_from_w = fused.c_proj(merge_heads(w @ v))
rows_sum_to_1 = torch.allclose(w.sum(-1), torch.ones(1))
print(
    "weights",
    tuple(w.shape),
    "| rows sum to 1:",
    rows_sum_to_1,
    "| future weights all zero:",
    bool((w[..., causal] == 0).all()),
)
assert rows_sum_to_1 and (y_from_w - y_fused).abs().max() <= 1e-5
print("max abs diff forward vs weights @ values <= 1e-5")

# %% [markdown]
# ## Looking at attention maps
#
# What do the weights look like on real text? We take the first words of *The Verdict*, tokenise them
# with GPT-2's tokenizer ([Chapter 1](01_tokenizer.ipynb)), and give each token a random
# 768-dimensional vector, the same vector wherever the token occurs. That is a token embedding `wte`
# without training and without [Chapter 2](02_text_to_tensors.ipynb)'s position embedding `wpe`: we
# leave positions out here so that a repeated token is an exact copy of its earlier occurrence.

# %%
from gpt2scratch.data import verdict_text
from gpt2scratch.tokenizer import gpt2_encoding

enc = gpt2_encoding()
ids = enc.encode(verdict_text())[:20]
labels = [enc.decode([t]) for t in ids]
print(len(ids), "tokens:", labels)

torch.manual_seed(123)
unique, index = torch.unique(torch.tensor(ids), return_inverse=True)
emb = torch.randn(len(unique), d_model)[index].unsqueeze(0)  # (1, 20, 768)

# %% [markdown]
# An **untrained** attention module has small random weights, so the scores $q\cdot k/\sqrt{64}$ are
# small and every row of the softmax is roughly *uniform over the allowed positions*: row $i$ gives each
# of its $i+1$ keys about $1/(i+1)$, give or take random noise. There is nothing to see yet. To make
# structure visible, we also build one head by hand: set head 0's query and key projections to copy
# the same slice of the input ($W_q = W_k = I$ on dimensions 0–63, all else 0), so that $q_i\cdot k_j$
# is large exactly when tokens $i$ and $j$ are the *same* token. That is a "duplicate-token head", a
# pattern that trained models do learn.

# %%
torch.manual_seed(123)
untrained = CausalSelfAttention(d_model, n_heads).eval()
handset = CausalSelfAttention(d_model, n_heads).eval()
with torch.no_grad():
    handset.c_attn.weight.zero_()
    handset.c_attn.bias.zero_()
    eye = torch.eye(64)  # head 0: q = k = x[..., 0:64]
    handset.c_attn.weight[0:64, 0:64] = eye  # query block, head 0
    handset.c_attn.weight[768:832, 0:64] = eye  # key block, head 0
    w_untrained = untrained.attention_weights(emb)[0, 0]  # (20, 20) head 0
    w_handset = handset.attention_weights(emb)[0, 0]  # (20, 20) head 0
    q, k, _ = untrained._qkv(emb)
    scores_untrained = q @ k.transpose(-2, -1) / math.sqrt(64)  # (1, 12, 20, 20)

# %% [markdown]
# How far from uniform is the untrained head, and where does the hand-set head look?

# %%
uniform = torch.tril(torch.ones(20, 20)) / torch.arange(1, 21).unsqueeze(1)  # 1/(i+1)
allowed = uniform > 0
score_std = scores_untrained[..., allowed].std().item()
rel_dev = ((w_untrained - uniform).abs() / uniform)[allowed].mean().item()
print(
    f"untrained: scores q·k/8 have std {score_std:.2f}; head 0's weights differ "
    f"from uniform by {100 * rel_dev:.0f}% on average"
)
last = w_untrained[-1]
print(
    f"untrained head 0, last row: weights from {last.min().item():.3f} to "
    f"{last.max().item():.3f} (uniform: {1 / 20:.3f})"
)
repeats = [(i, j) for i in range(20) for j in range(i) if ids[i] == ids[j]]
print("repeated tokens (later, earlier):", [(labels[i], i, j) for i, j in repeats])
print(
    "hand-set head, weight from the later to the earlier copy:",
    [round(w_handset[i, j].item(), 3) for i, j in repeats],
)
firsts = [i for i in range(20) if ids[i] not in ids[:i]]  # first occurrences
diag = w_handset.diagonal()[firsts]
print(
    f"hand-set head, weight on itself at the {len(firsts)} first occurrences: "
    f"min {diag.min().item():.3f}"
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
ticks = [label.strip() for label in labels]
panels = [
    (axes[0], w_untrained, "untrained module, head 0: roughly uniform, no structure"),
    (axes[1], w_handset, "hand-set head: attends to earlier copies of the same token"),
]
for ax, w, title in panels:
    sns.heatmap(
        w.numpy(),
        ax=ax,
        cmap="viridis",
        vmin=0,
        vmax=1,
        square=True,
        xticklabels=ticks,
        yticklabels=ticks,
        cbar_kws={"shrink": 0.7},
    )
    ax.set_title(title)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: the honest picture of an untrained module. The upper triangle is exactly 0 (the causal mask)
# and the rows fade from 1 (the first token can only see itself) towards 1/20 = 0.050. The scores
# have a standard deviation of only 0.34, so the weights wobble randomly around uniform (by 33% of the
# uniform value on average; the last row ranges from 0.022 to 0.085 around 0.050) without any pattern
# that means anything. Right: the hand-set head puts nearly all of its weight on the diagonal (at
# least 0.885 at each of the 18 first occurrences: every token is its own best match), except at the
# second " a" and the second "--", which split it between themselves and their earlier copy (0.463
# and 0.487 on the earlier copy). Trained heads learn patterns that mean something, such as heads
# that attend to the previous token, and induction heads that find an earlier copy of the current
# token and attend to the token after it. [Chapter 10](10_attention_maps.ipynb) computes head
# statistics for trained models, to find such heads: a small model trained on a controlled task
# (random tokens that repeat, which only such heads can predict), and the course's pretrained base.
#
# ## Timing: naive versus fused
#
# The three versions compute the same thing; how long do they take? We time them interleaved in one
# process (taking turns, and alternating who goes first), forward only, on one sequence ($B = 1$) of
# growing length $T$, so that only $T$ changes. Of several runs of each we keep the fastest: other
# work on a shared machine can only slow a run down, so the minimum is the least disturbed
# measurement. What carries over to another machine is the ratio to the fused kernel, which the
# table prints next to the times; nbval does not compare this output, and the cell asserts only
# that the versions agree. Last, the table prints the memory of the $(H, T, T)$ float32 weight
# tensor that the naive versions store and the fused kernel does not.


# %%
# NBVAL_IGNORE_OUTPUT
def fastest_ms(fns: dict, x: torch.Tensor, n_runs: int) -> dict:
    """The fastest of n_runs forward passes of each function, in ms, taking turns."""
    times = {name: [] for name in fns}
    with torch.no_grad():
        for fn in fns.values():
            fn(x)  # warm-up
        for run in range(n_runs):
            turns = list(fns.items())
            for name, fn in turns if run % 2 == 0 else turns[::-1]:  # interleaved
                t0 = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - t0)
    return {name: 1000 * min(t) for name, t in times.items()}


n_runs = full_or_quick(10, 1, what="one timing run instead of 10")
print(f"B=1, fastest of {n_runs} runs, {torch.get_num_threads()} threads; times in ms")
print(
    f"{'T':>5} | {'wrapper':>8} {'batched':>8} {'fused':>8} | "
    f"{'batched/fused':>13} {'wrapper/fused':>13} | {'weights MiB':>11}"
)
fns = {"wrapper": wrapper, "batched": batched, "fused": fused}
for T_time in [128, 256, 512, 1024]:
    torch.manual_seed(123)
    xt = torch.randn(1, T_time, d_model)
    with torch.no_grad():  # the same function at this length too
        assert (batched(xt) - fused(xt)).abs().max() <= 1e-5
        assert (wrapper(xt) - fused(xt)).abs().max() <= 1e-5
    ms = fastest_ms(fns, xt, n_runs)
    w, b, f = ms["wrapper"], ms["batched"], ms["fused"]
    mib = n_heads * T_time**2 * 4 / 2**20  # (H, T, T) float32 weights, one layer
    print(
        f"{T_time:>5} | {w:>8.1f} {b:>8.1f} {f:>8.1f} | "
        f"{b / f:>13.2f} {w / f:>13.2f} | {mib:>11.1f}"
    )

# %% [markdown]
# Read the ratio columns rather than the milliseconds, which depend on the machine and on what else
# it is doing. Across repeated runs on a shared 2-core machine, what held every time is this. At
# the short lengths, $T = 128$ and $256$, the batched naive version and the fused kernel are close,
# and either may win a given run. From $T = 512$ on, the fused kernel is faster than both naive
# versions, and its lead grows with $T$. The 12-head wrapper, with its twelve small matrix products
# per projection, is slower than the fused kernel at every length. Run the cell again to see your
# own machine.
#
# What does not vary is memory. The naive versions write and read the whole $H\times T\times T$
# weight tensor, which grows with the square of $T$: 0.8 MiB per sequence and per layer at
# $T = 128$, 48 MiB at $T = 1024$. The fused kernel streams through the keys in blocks and never
# stores it.
#
# ## Summary
#
# * Self-attention replaces each token vector with a **weighted average** of (projections of) the
#   token vectors; the weights are a softmax of **query·key** scores.
# * The queries, keys and values are learned projections $W_q, W_k, W_v$. Scores are divided by
#   $\sqrt{d_k}$ because the dot product of $d_k$-dimensional random vectors has standard deviation
#   $\sqrt{d_k}$; unscaled, the softmax saturates and its gradient vanishes.
# * The **causal mask** fills future scores with $-\infty$ *before* the softmax: exact zeros in one
#   step. Renormalising after the softmax gives the same numbers but can produce 0/0; masking with 0
#   leaks the future into the past.
# * **Dropout** zeroes weights at random in training and scales the survivors by $1/(1-p)$, preserving
#   the expectation; in `eval()` it does nothing.
# * **Multi-head** attention runs $H$ heads of size $C/H$ in parallel; reshaping
#   $(B,T,C)\to(B,T,H,C/H)\to(B,H,T,C/H)$ (`split_heads`) makes the head a batch dimension. GPT-2
#   124M: 12 heads × 64 = 768.
# * The exported `CausalSelfAttention` fuses the three projections into `c_attn` (HF GPT-2 layout) and
#   calls `F.scaled_dot_product_attention(..., is_causal=True)`. It agrees with the 12-head wrapper,
#   the batched version and `nn.MultiheadAttention` to within float32 round-off (max abs diffs printed
#   above), in outputs and in gradients.
# * Attention itself is blind to order apart from the causal mask; GPT-2 gets positions from the `wpe`
#   embedding of [Chapter 2](02_text_to_tensors.ipynb).
#
# Next: [Chapter 4 — The GPT-2 model](04_gpt2_model.ipynb) wraps this module in LayerNorm, an MLP and
# residual connections, and stacks twelve such blocks into GPT-2.
#
# ## Exercises
#
# Try each one before you unfold its solution.
#
# **1. Count the parameters by hand.** How many parameters does `CausalSelfAttention(768, 12)` have?
# Does the number of heads change it? How many parameters sit in the attention modules of all 12 layers
# of GPT-2 124M?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
by_hand = (768 * 2304 + 2304) + (768 * 768 + 768)
for heads in [1, 12, 768]:
    counted = sum(p.numel() for p in CausalSelfAttention(768, heads).parameters())
    print(f"n_heads={heads:>3}: {counted:,} parameters")
    assert counted == by_hand
print(f"by hand: {by_hand:,}; 12 layers: {12 * by_hand:,}")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# `c_attn` has a 768×2304 weight and 2304 biases, `c_proj` a 768×768 weight and 768 biases: 2,362,368
# in all. The head count only decides how the 768 dimensions are split, so it does not change the
# count. Twelve layers hold 28,348,416. The cell above checks this; Chapter 4 counts the rest of the
# model.
# ```
#
# **2. Local (sliding-window) attention.** Change the mask so that every token sees only itself and the
# previous $w-1$ tokens (as in Mistral or Longformer). Implement it with an explicit $-\infty$ mask on
# the naive computation, check it against `F.scaled_dot_product_attention` with a boolean `attn_mask`
# (where `True` means *may attend*), and verify that outputs ignore tokens more than $w-1$ steps back.


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
def local_mask(T: int, window: int) -> torch.Tensor:
    """True where query i may attend to key j: i - window < j <= i."""
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    return (j <= i) & (j > i - window)


print(local_mask(6, window=3).int())
torch.manual_seed(123)
q, k, v = torch.randn(3, 1, 2, 6, 8).unbind(0)  # 3 x (B=1, H=2, T=6, hd=8)
allowed = local_mask(6, window=3)
scores_local = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~allowed, -math.inf)
naive = torch.softmax(scores_local, dim=-1) @ v
kernel = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
assert (naive - kernel).abs().max() <= 1e-6
print("naive vs SDPA with attn_mask: max abs diff <= 1e-6")
k2, v2 = k.clone(), v.clone()
k2[..., 0, :], v2[..., 0, :] = 100.0, 100.0  # change token 0 drastically
out2 = F.scaled_dot_product_attention(q, k2, v2, attn_mask=allowed)
print(
    "outputs at positions >= 3 unchanged:",
    torch.equal(out2[..., 3:, :], kernel[..., 3:, :]),
)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Allowed pairs satisfy $i-w < j \le i$: the causal mask *and* a band. The cell above builds that mask,
# checks the naive computation against the kernel, and changes token 0 drastically: with $w = 3$ the
# outputs from position 3 on do not move.
# ```
#
# **3. Order blindness.** Show that *without* the causal mask, self-attention is
# *permutation-equivariant*: shuffling the input tokens shuffles the outputs in the same way and
# changes nothing else. Then show that the causal mask breaks this symmetry. Inside attention, the mask
# is the only thing that tells positions apart; in GPT-2 the other is the position embedding `wpe` that
# [Chapter 2](02_text_to_tensors.ipynb) adds to the input.


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
def bidirectional(module: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    q, k, v = module._qkv(x)  # 3 x (B, H, T, hd)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # all see all
    return module.c_proj(merge_heads(y))  # (B, T, C)


torch.manual_seed(123)
xs = torch.randn(1, 8, d_model)
perm = torch.randperm(8)
with torch.no_grad():
    no_mask = bidirectional(fused, xs)[:, perm] - bidirectional(fused, xs[:, perm])
    with_mask = fused(xs)[:, perm] - fused(xs[:, perm])
no_mask, with_mask = no_mask.abs().max().item(), with_mask.abs().max().item()
assert no_mask <= 1e-5 and with_mask > 1e-2
print("no mask:     max |f(x)[perm] - f(x[perm])| <= 1e-5 (round-off) -> equivariant")
print(f"causal mask: max |f(x)[perm] - f(x[perm])| = {with_mask:.1f}  -> order matters")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Use the module's own projections with `is_causal=False`, then compare with `forward`. Without the
# mask, `f(x)[perm]` and `f(x[perm])` agree to round-off; with it, they differ by order 1.
# ```
#
# **4. The one-step reshape.** A tempting shortcut for `split_heads` is `t.view(B, H, T, hd)` in one
# step, with no transpose. It runs without error and gives the right shape. Using panel 2 of the
# figure, predict what "head 0" then holds at positions 0 to 5 when $T = 6$, and show with the test
# of step 3 (change the last token, watch the earlier outputs) that the shortcut breaks causality.


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
class OneStepReshape(CausalSelfAttention):
    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        return tuple(t.reshape(B, self.n_heads, T, self.head_dim) for t in (q, k, v))


torch.manual_seed(123)
t6 = torch.randn(1, 6, d_model)  # (B, T, C) with T = 6
head0 = t6.view(1, n_heads, 6, 64)[0, 0]  # "head 0" of the shortcut, (6, 64)
same = torch.equal(head0, t6[0, 0, :384].view(6, 64))
print("shortcut's head 0 = token 0's features 0-383:", same)
assert same
shortcut = OneStepReshape(d_model, n_heads).eval()
shortcut.load_state_dict(fused.state_dict())
x1 = torch.randn(1, 6, d_model)
x2 = x1.clone()
x2[:, -1] = torch.randn(d_model)  # change the last token only
with torch.no_grad():
    for name, module in [("split_heads", fused), ("one-step view", shortcut)]:
        change = (module(x2) - module(x1))[:, :-1].abs().max().item()
        print(f"{name:>13}: max change at positions 0-4 = {change:.4f}")
        assert change <= 1e-6 if module is fused else change > 1e-3

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# `view(B, H, T, hd)` cuts each sequence's $T \times C$ numbers, token after token, into $H$ consecutive
# pieces of $T \cdot hd$ numbers. With $T = 6$ and $C = 768$ each piece is half a token: "head 0"
# holds features 0–383 of token 0, 64 at each "position", and in general "head $h$" holds features
# of token $h // 2$ only. The last token therefore sits in heads 10 and 11 at every position, the
# causal mask no longer lines up with the tokens, and changing the last token moves the earlier
# outputs. The cell above checks the first claim and overrides `_qkv` with the shortcut.
# ```
