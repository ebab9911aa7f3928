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
# # Chapter 8 — Sampling and fast generation
#
# In this chapter you build `gpt2scratch.generation`, the module behind `model.generate(...)`:
# the rules that turn the model's next-token scores into a token (greedy, temperature, top-k,
# top-p), a decode loop that runs the model on **one new token per step** thanks to a
# **KV cache**, and the text-level call of **our target**.
#
# Our target is the one this book set itself for generation, in two parts: a call as short as
# `model.generate("Justice is served when", max_length=100, temperature=0.8)`, and the claim that
# a temperature between 0.7 and 1.2 gives outputs that are both stable and diverse. The chapter
# builds the first and tests the second.
#
# [Chapter 4](04_gpt2_model.ipynb) wrote the simplest loop: run the whole sequence through the
# model, take the likeliest token, append it, repeat. That loop has two problems. It only ever
# takes the likeliest token, which makes a small model repeat itself; and it recomputes every
# earlier position at every step, so token $t$ costs $t$ times the work of one position. We will
# make the temperature's trade-off visible, then measure it:
#
# 1. **temperature**: `softmax(logits / T)`, from greedy ($T = 0$) to nearly uniform, drawn on a
#    toy vocabulary;
# 2. **top-k**, **top-p** (nucleus) and **min-p** sampling, alone and combined, first on the toy
#    vocabulary, then on the pretrained model of [Chapter 7](07_pretrained.ipynb), with the
#    knobs in one checked settings object;
# 3. the **KV cache**: what the loop recomputes, how to keep it instead, why GPT-2's absolute
#    positions force us to crop and recompute when the context window is full, and a proof that
#    the cache changes no token;
# 4. the complete `generate` API, with its argument checks and a streaming variant;
# 5. the **trade-off, measured** on the pretrained model's samples: for each temperature, top-k
#    and top-p setting, samples drawn with several seeds, scored for diversity (distinct-1,
#    distinct-2) and quality (repetition, the model's own log-probability of its samples, the
#    share of their words found in its training text), with the spread over the seeds, and a
#    recommendation drawn from the data;
# 6. **speed**: our cached loop against Hugging Face's `generate` and against the limit set by
#    the memory bandwidth, and, on a GPU, a static cache replayed as a CUDA graph.
#
# Everything marked `#| export` becomes `gpt2scratch/generation.py`.

# %%
#| default_exp generation

# %%
#| export
"""Sampling (temperature, top-k, top-p, min-p), the decode loop with a KV cache, and the
text wrapper behind `GPT2.generate` (Chapter 8 of the book).

About 500 lines, past the house's 400, for one idea: turning logits into tokens and
text. The settings object, its filters, the cache and the loops that use them (eager,
and static for a CUDA graph or torch.compile) change together (a new knob touches this
file, the CLI and a test), so they stay in one file.
"""

from __future__ import annotations

import shutil
import sysconfig
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gpt2scratch.model import check_token_ids
from gpt2scratch.validation import check_bool, check_int, check_number

# %%
import json
import re
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from gpt2scratch.base_model import shakespeare_corpus
from gpt2scratch.course import pretrained_model
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.tokenizer import gpt2_encoding

torch.set_printoptions(precision=4, sci_mode=False, linewidth=88)
enc = gpt2_encoding()  # GPT-2's tokenizer, rebuilt offline in chapter 1

# %% [markdown]
# ## 8.1 Temperature: one knob from greedy to uniform
#
# At every step the model hands us a vector of **logits**, one score per vocabulary token. The
# softmax turns scores into probabilities. Dividing the logits by a **temperature** $T$ before the
# softmax reshapes that distribution without changing the order of the tokens:
#
# $$p_i(T) = \frac{e^{z_i / T}}{\sum_j e^{z_j / T}}$$
#
# $T = 1$ is the model's own distribution. $T < 1$ stretches the gaps between scores, so the
# likeliest tokens take more of the mass; as $T \to 0$ all of it goes to the top token, which is
# greedy decoding (we define $T = 0$ as the argmax, since we cannot divide by 0). $T > 1$ shrinks
# the gaps, and as $T \to \infty$ every token gets $1/V$.
#
# A toy vocabulary of eight words, with scores a model might give after "The cat sat on the":

# %%
words = ["mat", "floor", "sofa", "roof", "dog", "moon", "idea", "of"]
toy = torch.tensor([3.0, 2.2, 1.8, 1.0, 0.2, -0.5, -1.5, -2.5])  # (V,) logits


def tempered(logits: torch.Tensor, T: float) -> torch.Tensor:
    """softmax(logits / T); T = 0 puts all the mass on the argmax (greedy)."""
    if T == 0:
        return F.one_hot(logits.argmax(), logits.shape[-1]).float()
    return F.softmax(logits / T, dim=-1)


temperatures = [0, 0.7, 0.8, 1.0, 1.2, 5.0]
for T in temperatures:
    p = tempered(toy, T)
    print(f"T = {T:<4}: " + " ".join(f"{x:.3f}" for x in p.tolist()))

# %%
fig, axes = plt.subplots(1, len(temperatures), figsize=(15, 2.8), sharey=True)
for ax, T in zip(axes, temperatures):
    ax.bar(words, tempered(toy, T).numpy(), color="C0" if T else "C3")
    ax.set_title("T = 0 (greedy)" if T == 0 else f"T = {T}")
    ax.tick_params(axis="x", rotation=90)
axes[0].set_ylabel("probability")
fig.suptitle("softmax(logits / T) on a toy vocabulary of 8 words", y=1.02)
plt.show()

# %% [markdown]
# At $T = 0.7$ "mat" gets 0.632 of the mass, at $T = 1$ it gets 0.502, at $T = 1.2$ 0.443, and
# at $T = 5$ the distribution is nearly flat: "of", a word that cannot follow "on the", gets 0.065
# instead of 0.002. Our target's range, 0.7 to 1.2, sits between these extremes. What it buys is
# easier to see with two numbers per temperature: the **entropy** of the distribution (in bits;
# 0 for greedy, $\log_2 8 = 3$ for uniform) and the mass left on the tail (the four least likely
# words):

# %%
for T in temperatures:
    p = tempered(toy, T)
    entropy = -(p * p.clamp_min(1e-12).log2()).sum().item()
    print(f"T = {T:<4}: entropy {entropy:.2f} bits, tail mass {p[4:].sum().item():.3f}")

# %% [markdown]
# ## 8.2 Top-k, top-p and min-p: cut the tail, then sample
#
# Temperature alone cannot stop a sample from landing in the long tail: with 50,257 tokens, even
# tiny probabilities add up. Three filters cut the tail before sampling:
#
# * **top-k** keeps the $k$ highest-scoring tokens (ties at the $k$-th score included) and sets
#   the others' logits to $-\infty$;
# * **top-p**, or *nucleus* sampling (Holtzman et al., 2019), sorts the tokens by probability and
#   keeps the smallest prefix whose probabilities sum to at least $p$. Unlike top-k, the number
#   of tokens it keeps adapts to the distribution: few when the model is sure, many when it is not;
# * **min-p** (Nguyen et al., 2024) keeps the tokens whose probability is at least $p_\min$ times
#   that of the likeliest token: it too adapts, with a threshold that rises with the model's
#   confidence.
#
# All three act on the tempered logits, temperature first, then top-k, top-p and min-p, as in
# Hugging Face's `generate`, and each keeps at least `min_keep` tokens (Hugging Face's
# `min_tokens_to_keep`, 1 by default). Top-k and min-p are one comparison each:


# %%
#| export
def top_k_filter(logits: torch.Tensor, top_k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep, per row of (B, V) logits, the max(top_k, min_keep) highest (ties with the
    last one included); the others get -inf."""
    k = min(max(top_k, min_keep), logits.shape[-1])
    kth = torch.topk(logits, k).values[:, -1:]  # (B, 1) the k-th largest logit
    return logits.masked_fill(logits < kth, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep, per row of (B, V) logits, the tokens at least min_p times as likely as the
    likeliest, and at least the min_keep likeliest; the others get -inf."""
    probs = F.softmax(logits, dim=-1)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)  # the top one always stays
    if min_keep > 1:
        likeliest = torch.topk(logits, min(min_keep, logits.shape[-1])).indices
        drop = drop.scatter(-1, likeliest, False)
    return logits.masked_fill(drop, float("-inf"))


# %% [markdown]
# Top-p needs a running sum of probabilities, and where it stops is decided by rounding. Summed
# from the likeliest token down in float32, the sum near 1 moves in steps too coarse for the
# tail: over 50,257 tokens with $p = 0.999$, such a filter kept less than 0.999 of the mass. And
# the test "the mass of the likelier tokens is still below $p$" put a float32 subtraction
# (`cumsum - probs`) right at the boundary: on the probabilities `[0.3, 0.1, 0.1, 0.5]` with
# $p = 0.8$ it found 0.5 + 0.3 a hair below 0.8 and kept a 0.1 token as well. So the filter below
# works the other way round, as Hugging Face's `TopPLogitsWarper` does: it sorts the tokens from
# the *least* likely up and sums the tail, in float64, so that tiny probabilities add up exactly.
# A token goes when it and every less likely token together hold at most $1 - p$: the tokens
# above it then hold at least $p$ without it. The tail's mass is rounded to float32, the
# precision of the logits, before that comparison, so that a sum that is $1 - p$ up to float32
# round-off counts as $1 - p$:


# %%
#| export
def top_p_filter(logits: torch.Tensor, top_p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep, per row of (B, V) logits, the smallest set of likeliest tokens whose
    probabilities sum to >= top_p, and at least min_keep tokens; the others get -inf."""
    ascending, order = torch.sort(logits, dim=-1)  # (B, V): the least likely first
    probs = F.softmax(ascending, dim=-1, dtype=torch.float64)
    tail = probs.cumsum(dim=-1).float()  # mass of each token and all less likely ones
    drop = tail <= 1 - top_p  # the likelier tokens hold >= top_p without these
    drop[:, -min_keep:] = False  # the min_keep likeliest always stay
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


# %% [markdown]
# Hugging Face's own test of its warper uses that example; it keeps exactly 0.5 and 0.3, and so
# does ours. At $p = 0.999$ on random logits over 50,257 tokens, the kept mass reaches $p$, and
# dropping the least likely kept token would fall below it:

# %%
example = torch.tensor([[0.3, 0.1, 0.1, 0.5]]).log()
kept = top_p_filter(example, 0.8).exp()  # exp(-inf) = 0: the removed tokens
print("top-p 0.8 of [0.3, 0.1, 0.1, 0.5] keeps",
      [round(x, 3) for x in kept[0].tolist()])
assert torch.allclose(kept, torch.tensor([[0.3, 0.0, 0.0, 0.5]]))
wide = torch.randn(4, 50257, generator=torch.Generator().manual_seed(0)) * 3  # 4 rows
probs = F.softmax(wide.double(), dim=-1)
keep = top_p_filter(wide, 0.999) > float("-inf")
mass = (probs * keep).sum(-1)  # float64: the kept mass per row
smallest = probs.masked_fill(~keep, 1).amin(-1)  # the least likely kept token
print(f"p = 0.999, 4 rows of 50,257: kept mass >= 0.999: {(mass >= 0.999).tolist()}")
print(f"  without the least likely kept token < 0.999: {(mass - smallest < 0.999).tolist()}")
assert (mass >= 0.999).all() and (mass - smallest < 0.999).all()

# %% [markdown]
# The knobs travel together in one frozen object, `SamplingSettings`, which checks its values
# when it is made (with the shared checks of [Appendix A](A_engineering.ipynb)): a loop can then
# use it at every step without checking again, and a new knob is one more field here. Its
# `filter` method applies the temperature and the three filters in order:


# %%
#| export
@dataclass(frozen=True)
class SamplingSettings:
    """How `sample_next` picks the next token; frozen, and checked when made.

    temperature 0 is greedy (the argmax; the filters then change nothing). Otherwise
    the logits are divided by the temperature, then filtered in Hugging Face's order:
    top_k keeps the k likeliest tokens, top_p the smallest set whose probabilities
    reach top_p, min_p those at least min_p times as likely as the likeliest; each
    filter keeps at least min_tokens_to_keep tokens. None (or top_p 1, min_p 0)
    switches a filter off.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    min_tokens_to_keep: int = 1

    def __post_init__(self):
        checked = {
            "temperature": check_number("temperature", self.temperature, minimum=0),
            "top_k": check_int("top_k", self.top_k, minimum=1, none_ok=True),
            "top_p": check_number(
                "top_p", self.top_p, minimum=0, maximum=1, min_open=True, none_ok=True
            ),
            "min_p": check_number(
                "min_p", self.min_p, minimum=0, maximum=1, none_ok=True
            ),
            "min_tokens_to_keep": check_int(
                "min_tokens_to_keep", self.min_tokens_to_keep, minimum=1
            ),
        }
        for name, value in checked.items():  # frozen: each field is set once, checked
            object.__setattr__(self, name, value)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def filter(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) logits -> the tempered, filtered logits that sampling draws from
        (greedy: the top logits only)."""
        if self.greedy:
            return logits.masked_fill(logits < logits.amax(-1, keepdim=True), float("-inf"))
        logits = logits / self.temperature  # < 1 sharpens, > 1 flattens
        keep = self.min_tokens_to_keep
        if self.top_k is not None:
            logits = top_k_filter(logits, self.top_k, keep)
        if self.top_p is not None and self.top_p < 1:
            logits = top_p_filter(logits, self.top_p, keep)
        if self.min_p:  # None or 0: no cut
            logits = min_p_filter(logits, self.min_p, keep)
        return logits


# %% [markdown]
# Then the function that the loop calls once per step. It returns one token id per row; when
# the settings are greedy, it skips the softmax over the vocabulary altogether:


# %%
#| export
def sample_next(
    logits: torch.Tensor,
    settings: SamplingSettings | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B, 1) next token ids: the argmax when `settings` (default
    SamplingSettings()) is greedy, else a draw from softmax(settings.filter(logits)).
    `generator` makes the draw repeatable."""
    settings = SamplingSettings() if settings is None else settings
    if settings.greedy:
        return logits.argmax(dim=-1, keepdim=True)
    probs = F.softmax(settings.filter(logits), dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


# %% [markdown]
# What each filter keeps on the toy vocabulary, at $T = 1$ (the softmax of the filtered logits;
# the removed words get exactly 0):

# %%
rows = {
    "T=1": SamplingSettings(),
    "top-k=3": SamplingSettings(top_k=3),
    "top-p=0.9": SamplingSettings(top_p=0.9),
    "min-p=0.2": SamplingSettings(min_p=0.2),
    "top-k=3, top-p=0.7": SamplingSettings(top_k=3, top_p=0.7),
}


def filtered(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """The distribution sample_next draws from, for plotting: (V,) -> (V,)."""
    return F.softmax(settings.filter(logits[None]), dim=-1)[0]


cumulative = [round(x, 3) for x in F.softmax(toy, dim=-1).cumsum(0).tolist()]
print("mass of the likeliest words, cumulated:", cumulative)
for name, settings in rows.items():
    p = filtered(toy, settings)
    kept = [w for w, x in zip(words, p.tolist()) if x > 0]
    print(f"{name:<19} keeps {len(kept)}: {', '.join(kept)}")

# %% [markdown]
# With $p = 0.9$ the nucleus needs four words: "mat", "floor" and "sofa" hold 0.879 of the mass,
# short of 0.9, and "roof" brings it to 0.947. Min-p at 0.2 keeps the words at least a fifth as
# likely as "mat", which are the same three as top-k's. Combined, top-k runs first and top-p
# then works on what is left, renormalised. Sampling from these distributions many times, with a
# seeded generator so that the counts are repeatable, shows the filters at work:

# %%
gen = torch.Generator().manual_seed(123)
n_draws = 10_000
counts = {}
for name, settings in rows.items():
    draws = sample_next(toy.expand(n_draws, 8), settings, gen)  # (n, 1)
    counts[name] = torch.bincount(draws[:, 0], minlength=8) / n_draws
    print(f"{name:<19}", " ".join(f"{x:.3f}" for x in counts[name].tolist()))
    expected = filtered(toy, settings)
    assert (counts[name] - expected).abs().max() < 0.02  # sampling matches the formula
greedy = SamplingSettings(temperature=0)
assert sample_next(toy[None], greedy).item() == 0  # greedy: "mat"

# %%
fig, axes = plt.subplots(1, len(rows), figsize=(15, 2.8), sharey=True)
for ax, (name, settings) in zip(axes, rows.items()):
    ax.bar(words, filtered(toy, settings).numpy(), color="C0", label="formula")
    ax.plot(words, counts[name].numpy(), "k.", label=f"{n_draws:,} samples")
    ax.set_title(name)
    ax.tick_params(axis="x", rotation=90)
axes[0].set_ylabel("probability")
axes[0].legend()
plt.show()

# %% [markdown]
# ### On the pretrained model
#
# A real distribution has 50,257 entries, not 8. We take the pretrained model of
# [Chapter 7](07_pretrained.ipynb): OpenAI's GPT-2 124M where its weights are on this machine,
# else the course's own base, a small GPT-2 that the book's code trained on the plays and poems
# of Shakespeare ([Appendix A](A_engineering.ipynb)). `pretrained_model()` downloads nothing
# and names the model it found in a label, which every output below that depends on the model
# prints. Since those outputs depend on which model was found, the cells check properties
# rather than exact numbers.

# %%
# NBVAL_IGNORE_OUTPUT
pretrained = pretrained_model(device="cpu")  # GPT-2 124M if it is here, else the base
model = pretrained.model.eval()
print(pretrained.label)
print(f"{model.num_params():,} parameters, context {model.config.context_length}")
if pretrained.folder is not None:  # a saved model with its model card (Appendix A)
    card = json.loads((pretrained.folder / "card.json").read_text())
    print(f"its model card: val loss {card['val_loss']:.2f} on held-out plays")

# %%
# NBVAL_IGNORE_OUTPUT
prompt = "To be, or not to be, that is the"
ids = torch.tensor([enc.encode(prompt)])
with torch.no_grad():
    logits = model(ids)[0, -1]  # (V,) scores for the next token
print(f"{pretrained.label}; after {prompt!r}:")
for T in [0.7, 1.0, 1.2]:
    p = F.softmax(logits / T, dim=-1)
    top = torch.topk(p, 5)
    cands = ", ".join(
        f"{enc.decode([i])!r} {x:.2f}" for x, i in zip(top.values, top.indices.tolist())
    )
    n90 = (top_p_filter(logits[None] / T, 0.9) > float("-inf")).sum().item()
    print(f"T = {T}: top 5: {cands}; top-p 0.9 keeps {n90:,} tokens")
assert abs(F.softmax(logits, -1).sum().item() - 1) < 1e-4

# %% [markdown]
# In the run stored above, the base has not learned the line by heart: "question" is not among
# its five guesses, which are nouns that fit the grammar. The nucleus adapts where a fixed $k$
# cannot: a sharper distribution ($T = 0.7$) needs fewer tokens to reach 0.9 of the mass than
# the model's own ($T = 1$), and a flatter one ($T = 1.2$) needs more: 201, 1,372 and 2,817
# tokens here. The figure shows the sorted distribution, on a log scale, out to the largest of
# the three nuclei, with the size of the 0.9-nucleus marked for each temperature:

# %%
# NBVAL_IGNORE_OUTPUT
nuclei = {T: int((top_p_filter(logits[None] / T, 0.9) > float("-inf")).sum())
          for T in (0.7, 1.0, 1.2)}  # fmt: skip
ranks = min(2 * max(nuclei.values()), logits.numel())  # every marker inside the plot
fig, ax = plt.subplots(figsize=(9, 3.5))
for (T, n90), color in zip(nuclei.items(), ["C0", "C1", "C2"]):
    p = F.softmax(logits / T, dim=-1).sort(descending=True).values
    ax.plot(range(1, ranks + 1), p[:ranks].numpy(), color=color,
            label=f"T = {T} (nucleus {n90:,})")  # fmt: skip
    ax.axvline(n90, color=color, ls=":")
ax.set_xlabel("rank of the token")
ax.set_ylabel("probability")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_title(f"next token after {prompt!r}\n{pretrained.label}", fontsize=9)
ax.legend()
plt.show()
assert all(1 <= n <= ranks for n in nuclei.values())

# %% [markdown]
# ## 8.3 The decode loop, and what it recomputes
#
# Chapter 4's loop runs the whole sequence through the model at every step. Look at what one
# attention layer computes at step $t$: queries, keys and values for positions $0..t$, and
# attention of every query over the keys before it. But only the **last** position's output is
# used, and the keys and values of positions $0..t-1$ are the same numbers as at the step before:
# position $i$'s key depends only on tokens $0..i$ (the causal mask) and on the position
# embedding of $i$. So a loop can keep, in every layer, the keys and values computed so far, and
# at each step run the model on the new token alone: its query attends over the cached keys
# plus its own. That is the **KV cache**.
#
# Per step, the work drops from $t$ positions to 1, and for a 124M model at batch 1 the step then
# costs about one read of the weights: the forward pass becomes a chain of matrix-*vector*
# products.
#
# The cache needs the model to take it. Chapters [3](03_attention.ipynb) and
# [4](04_gpt2_model.ipynb) gave `CausalSelfAttention.forward`, `Block.forward` and
# `GPT2.forward` two optional arguments for this: `cache`, one entry per block with an
# `update(k, v, start_pos)` method, and `start_pos`, the absolute position of the first token
# passed in. The attention layer hands its new keys and values to `update` and gets back the keys,
# values and mask to attend over. Everything else is here. The cache is **preallocated** (to the
# positions a run can fill, at most the context length), so a step writes into it in place and
# allocates nothing:


# %%
#| export
class LayerKV:
    """One block's keys and values, preallocated: k and v are (B, H, max_len, hd)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v

    def update(self, k: torch.Tensor, v: torch.Tensor, start_pos):
        """Write k, v (B, H, T, hd) at positions start_pos..start_pos+T-1; return the
        keys and values of positions 0..start_pos+T-1 and the attention mask (None:
        every query may see every key)."""
        T = k.shape[2]
        if isinstance(
            start_pos, torch.Tensor
        ):  # one token, static shapes (section 8.7)
            self.k.index_copy_(2, start_pos.view(1), k)
            self.v.index_copy_(2, start_pos.view(1), v)
            seen = torch.arange(self.k.shape[2], device=k.device) <= start_pos
            return self.k, self.v, seen.view(1, 1, 1, -1)  # (1, 1, 1, max_len)
        end = start_pos + T
        if end > self.k.shape[2]:
            raise ValueError(
                f"the cache holds {self.k.shape[2]} positions; cannot write {T} "
                f"at start_pos={start_pos}"
            )
        self.k.narrow(2, start_pos, T).copy_(k)  # in place: nothing new is allocated
        self.v.narrow(2, start_pos, T).copy_(v)
        mask = None  # one new token: it may see every position so far
        if T > 1:  # query i sits at start_pos + i: it sees keys 0..start_pos + i
            mask = torch.ones(T, end, dtype=torch.bool, device=k.device).tril(start_pos)
        return self.k.narrow(2, 0, end), self.v.narrow(2, 0, end), mask


class KVCache:
    """Keys and values for every block of `model`, for batch_size rows, preallocated
    to max_len positions (default: the context length). Iterating gives one LayerKV
    per block, which is what GPT2.forward(idx, cache, start_pos) expects."""

    def __init__(self, model, batch_size: int = 1, max_len: int | None = None):
        cfg = model.config
        max_len = cfg.context_length if max_len is None else max_len
        shape = (
            cfg.n_layers,
            batch_size,
            cfg.n_heads,
            max_len,
            cfg.d_model // cfg.n_heads,
        )
        w = model.wte.weight
        # zeros, not empty: masked-out slots must hold finite numbers (0 * nan = nan)
        self.k = torch.zeros(shape, dtype=w.dtype, device=w.device)
        self.v = torch.zeros_like(self.k)
        self.layers = [LayerKV(k, v) for k, v in zip(self.k, self.v)]

    def __iter__(self):
        return iter(self.layers)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


# %% [markdown]
# How big is it? Two tensors of $L \times B \times H \times T_\text{max} \times d_\text{head}$
# numbers: for GPT-2 124M at batch 1 and 1,024 positions in float32, that is
# $2 \cdot 12 \cdot 12 \cdot 1024 \cdot 64 \cdot 4$ bytes:

# %%
with torch.device("meta"):
    gpt2_124m = GPT2(GPT2Config())
cache_124m = KVCache(gpt2_124m, batch_size=1)
print(
    "KV cache, GPT-2 124M, batch 1, 1,024 positions:",
    f"{cache_124m.nbytes / 2**20:.0f} MiB",
)
print(f"the weights themselves: {gpt2_124m.num_params() * 4 / 2**20:.0f} MiB")
del gpt2_124m, cache_124m

# %% [markdown]
# 72 MiB against 475 MiB of weights: cheap at batch 1, though it grows with the batch and the
# context, and at batch 8 it is already bigger than the model.
#
# ### The boundary of the context window
#
# A model with a window of $T_\text{max}$ positions sees only the last $T_\text{max}$ tokens. When
# the sequence grows past it, the window slides, and every token in it moves one position to the
# left. GPT-2's position embeddings are **absolute**: the key of a token at position 5 was
# computed from `wte + wpe[5]`, and after the slide the same token sits at position 4. Every
# cached key and value is now wrong, so a cache cannot simply drop its oldest entry and roll on.
# *Relative* positions, such as rotary embeddings, remove only this first cause. The second
# holds for every model deeper than one layer: from the second block on, a kept key or value
# was computed from hidden states that attended to the evicted token, and a window without that
# token gives other numbers. So a rolled cache is exact for no model deeper than one layer,
# rotary or not. Schemes that roll anyway accept an approximation, and StreamingLLM
# (Xiao et al., 2023) works only because it never evicts the first few tokens, the "attention
# sinks" on which trained models park much of their attention. The loop does the correct thing
# instead: when the cache is full, it **crops** the sequence to the last
# $T_\text{max}$ tokens and **recomputes** them from position 0. From then on every step needs
# that recomputation, so past the boundary the cache no longer saves work, but it gives exactly
# the tokens that a loop without a cache gives.
#
# The loop is a Python generator: it yields one `(B, 1)` tensor of new ids per step, so that the
# callers below can stop early at `<|endoftext|>` or print tokens as they come. It runs in
# `torch.inference_mode()`, and computes `lm_head` for the last position only, the one whose
# scores it uses: one row of 50,257 logits per step instead of $T$ rows.


# %%
#| export
def next_logits(model, new_ids: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
    """(B, V) float32 logits for the token after the last of new_ids (B, T), which sit
    at positions start_pos..; the cache holds the positions before them."""
    x = model.hidden_states(new_ids, cache, start_pos)[:, -1]  # (B, C): last only
    return model.lm_head(x).float()


def decode(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    settings: SamplingSettings | None = None,
    *,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
):
    """Yield max_new_tokens (B, 1) tensors of next ids for the (B, T) prompt idx, each
    picked by sample_next with `settings` (default SamplingSettings()).

    The model sees the last context_length tokens. With the cache it runs on the new
    token only; when the cache is full it crops and recomputes (absolute positions).
    Runs in eval mode and restores the model's mode when the generator finishes.
    """
    ctx = model.config.context_length
    window = idx[:, -ctx:]  # the tokens the model sees
    n_pos = min(ctx, window.shape[1] + max_new_tokens)  # positions this run can fill
    cache = KVCache(model, idx.shape[0], n_pos) if use_cache else None
    new, pos = window, 0  # run `new` at positions pos..; the cache holds 0..pos-1
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        for _ in range(max_new_tokens):
            with torch.inference_mode():
                logits = next_logits(model, new, cache, pos)  # (B, V)
                next_id = sample_next(logits, settings, generator)
            yield next_id  # (B, 1)
            pos += new.shape[1]
            window = torch.cat([window, next_id.to(window.dtype)], dim=1)
            if cache is not None and pos < ctx:  # room left: run the new token only
                new = next_id
            else:  # no cache, or a full one: crop to the window, recompute from 0
                window = window[:, -ctx:]
                new, pos = window, 0
    finally:
        model.train(was_training)


# %% [markdown]
# Does the cache change anything? It must not: with the same weights, the same prompt and the same
# seed, the tokens with and without it must be identical, for greedy decoding and for sampling.
# To cross the boundary quickly we use a small model with a context of only 16 positions and ask
# for 40 tokens, so that the window is full after 11 of them:

# %%
torch.manual_seed(123)
small = GPT2(GPT2Config.preset("tiny", context_length=16)).eval()
start = torch.tensor([[1, 2, 3, 4, 5]])  # 5 tokens of prompt
for settings in [dict(temperature=0), dict(temperature=1.0, top_k=50, top_p=0.95)]:
    outs = {}
    for use_cache in (False, True):
        gen = torch.Generator().manual_seed(123)
        steps = decode(small, start, 40, SamplingSettings(**settings), generator=gen,
                       use_cache=use_cache)
        outs[use_cache] = torch.cat(list(steps), dim=1)  # (1, 40)
    same = torch.equal(outs[False], outs[True])
    print(f"{settings}: identical with and without the cache: {same}")
    assert same
print("last 12 tokens (sampled):", outs[True][0, -12:].tolist())

# %% [markdown]
# And what goes wrong with a cache that *rolls*, dropping its oldest entry and keeping the
# others? Build it by hand for the same small model: at the boundary, keep the cached keys and
# values of the last 15 positions, shift them left, and run the new token at position 15. The
# keys carry their old positions, and those of the second block were computed while attending to
# the dropped token, so the logits drift away from the recomputed ones:

# %%
with torch.inference_mode():
    seq = torch.cat(
        [start, outs[False][:, :12]], dim=1
    )  # 17 tokens: one past the window
    cache = KVCache(small, 1)
    next_logits(small, seq[:, :16], cache, 0)  # fill the cache with positions 0..15
    for layer in cache:  # roll: drop position 0, shift the rest left
        layer.k[:, :, :15] = layer.k[:, :, 1:16].clone()
        layer.v[:, :, :15] = layer.v[:, :, 1:16].clone()
    rolled = next_logits(small, seq[:, 16:], cache, 15)
    recomputed = next_logits(small, seq[:, -16:])  # crop and recompute
diff = (rolled - recomputed).abs().max().item()
print(f"max |logits(rolled cache) - logits(recomputed)| = {diff:.3f}")
assert diff > 1e-3

# %% [markdown]
# ### How much faster?
#
# Time both loops on the pretrained model for a growing number of new tokens, at batch 1,
# interleaved in one process (timings vary with the machine and its load, so nbval does not
# compare them):


# %%
# NBVAL_IGNORE_OUTPUT
def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


lengths = full_or_quick([16, 64, 128], [8, 16], what="shorter generations")
prompt_ids = torch.tensor([enc.encode("KING.\nMy lords, I")])
ctx = model.config.context_length
print(f"{pretrained.label}, greedy, prompt {prompt_ids.shape[1]} tokens, batch 1, "
      f"window {ctx} positions")  # fmt: skip
for n in lengths:
    times = {False: [], True: []}
    for use_cache in [False, True, True, False]:  # interleaved, each twice
        run = decode(model, prompt_ids, n, greedy, use_cache=use_cache)
        times[use_cache].append(seconds(lambda: list(run)))
    t_no, t_yes = min(times[False]), min(times[True])
    print(
        f"{n:>4} new tokens: no cache {n / t_no:6.1f} tok/s, cache {n / t_yes:6.1f} "
        f"tok/s, speed-up x{t_no / t_yes:.1f}"
    )

# %% [markdown]
# In theory the speed-up grows with the number of tokens: without the cache, step $t$ processes
# $P + t$ positions ($P$ is the prompt), so the total work grows with the square of the length;
# with it, every step costs about the same. In the run stored above it does grow, from 1.5 to
# 2.8 times, but stays far below what counting positions predicts. For a model this small, a
# step's time goes mostly to the fixed cost of calling some hundred small operations, which the
# cache does not remove. (The longest run here, 7 + 128 = 135 positions, stays inside the
# window of 256; where a run fills the window, both loops recompute it from then on.) Section 8.6
# measures a bigger model against Hugging Face's `generate` and against the machine's memory
# bandwidth.
#
# ## 8.4 The complete API
#
# Three thin layers sit on the loop. `generate_ids` works on tensors: it collects the steps,
# stops when every row has produced `eos_id`, and pads finished rows with it. `stream_text` and
# `generate_text` work on strings: they encode the prompt (GPT-2's tokenizer unless
# `tokenizer=` gives another), stop at `<|endoftext|>`, and decode. `stream_text` yields the text
# piece by piece as tokens arrive, holding back a piece that ends inside a multi-byte character.


# %%
#| export
def generate_ids(
    model, idx, max_new_tokens, *, eos_id=None, **decoding
) -> torch.Tensor:
    """(B, T) ids -> (B, T + n) ids, n <= max_new_tokens: fewer only when every row has
    produced `eos_id`; a finished row is padded with `eos_id`. `decoding`: decode's
    settings, generator and use_cache."""
    done = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    out = [idx]
    with closing(decode(model, idx, max_new_tokens, **decoding)) as steps:
        for next_id in steps:
            if eos_id is not None:
                next_id = next_id.masked_fill(done, eos_id)  # finished rows repeat eos
                done = done | (next_id == eos_id)
            out.append(next_id.to(idx.dtype))
            if eos_id is not None and bool(done.all()):
                break
    return torch.cat(out, dim=1)  # (B, T + n)


def _encode(model, prompt: str, tokenizer, eos_id):
    from gpt2scratch.tokenizer import encode_prompt  # lazy: only text needs it

    ids, tokenizer = encode_prompt(prompt, tokenizer)  # GPT-2's tokenizer by default
    if eos_id is None:
        eos_id = getattr(tokenizer, "eot_token", None)  # 50256 for GPT-2's tokenizer
    idx = torch.tensor([ids], device=model.wte.weight.device)
    check_token_ids(idx, vocab_size=model.config.vocab_size)
    return tokenizer, eos_id, idx


def generate_text(
    model, prompt, max_new_tokens, tokenizer=None, *, eos_id=None, **decoding
):
    """`prompt` + at most max_new_tokens new tokens of text, cut at <|endoftext|>."""
    tokenizer, eos_id, idx = _encode(model, prompt, tokenizer, eos_id)
    new = generate_ids(model, idx, max_new_tokens, eos_id=eos_id, **decoding)
    new = new[0, idx.shape[1] :].tolist()
    if eos_id in new:
        new = new[: new.index(eos_id)]
    return prompt + tokenizer.decode(new)


# %% [markdown]
# The streaming variant decodes all the new tokens again after each step and yields what was not
# shown yet. It holds back text that ends in the replacement character `\ufffd`: GPT-2's tokens
# are bytes, and a character such as "é" can arrive in two tokens.


# %%
#| export
def stream_text(
    model, prompt, max_new_tokens, tokenizer=None, *, eos_id=None, **decoding
):
    """Yield the continuation of `prompt` piece by piece, as tokens are generated."""
    tokenizer, eos_id, idx = _encode(model, prompt, tokenizer, eos_id)
    new, shown = [], ""
    with closing(decode(model, idx, max_new_tokens, **decoding)) as steps:
        for next_id in steps:
            if next_id.item() == eos_id:
                break
            new.append(next_id.item())
            text = tokenizer.decode(new)
            if not text.endswith("\ufffd"):  # else wait: a character is split
                yield text[len(shown) :]
                shown = text
    text = tokenizer.decode(new)
    if text != shown:
        yield text[len(shown) :]


# %% [markdown]
# Last, the argument checks and the entry point that `GPT2.generate` calls. The checks are
# plumbing, with the shared helpers of [Appendix A](A_engineering.ipynb): a wrong type raises
# `TypeError`, a wrong value `ValueError`, and the message names the value and what would be
# valid. `SamplingSettings` checks its own fields; `seed=` becomes a `torch.Generator` on the
# model's device. `generate` takes the sampling settings as keywords and hands them to
# `SamplingSettings`, so a new knob is a new field there and nothing here or in
# [Chapter 4](04_gpt2_model.ipynb)'s method changes.


# %%
#| export
def check_prompt(model, prompt, max_new_tokens, max_length) -> int:
    """Check the prompt and its length argument; return the number of new tokens."""
    if max_new_tokens is not None and max_length is not None:
        raise TypeError("pass max_new_tokens or max_length (same meaning), not both")
    name = "max_new_tokens" if max_length is None else "max_length"
    n_new = max_new_tokens if max_length is None else max_length
    is_text = isinstance(prompt, str)
    n_new = check_int(name, n_new, minimum=1 if is_text else 0)
    if is_text:
        if not prompt:
            raise ValueError("prompt must be a non-empty string, got ''")
    elif isinstance(prompt, torch.Tensor):
        check_token_ids(prompt, vocab_size=model.config.vocab_size)
    else:
        kind = type(prompt).__name__
        raise TypeError(
            f"prompt must be a str or a (B, T) tensor of token ids, got {kind}"
        )
    return n_new


def check_decoding(model, eos_id, generator, seed, use_cache) -> dict:
    """Check the arguments of a run besides the sampling settings; return them as
    keywords for generate_ids (a seed becomes a generator)."""
    vocab_size = model.config.vocab_size
    eos_id = check_int("eos_id", eos_id, minimum=0, none_ok=True)
    if eos_id is not None and eos_id >= vocab_size:
        raise ValueError(f"eos_id must be in [0, {vocab_size}), got {eos_id}")
    if generator is not None and not isinstance(generator, torch.Generator):
        kind = type(generator).__name__
        raise TypeError(f"generator must be a torch.Generator, got {kind}")
    seed = check_int("seed", seed, none_ok=True)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    if seed is not None:  # the same seed, the same tokens
        generator = torch.Generator(model.wte.weight.device).manual_seed(seed)
    return dict(
        eos_id=eos_id, generator=generator, use_cache=check_bool("use_cache", use_cache)
    )


# %%
#| export
def generate(
    model,
    prompt: str | torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    max_length: int | None = None,
    tokenizer=None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    **sampling,
):
    """Continue `prompt` one token at a time; what `GPT2.generate` calls.

    Tensor level: (B, T) ids -> (B, T + n) ids, n <= max_new_tokens (fewer only when
    every row has produced `eos_id`; a finished row is padded with `eos_id`).
    Text level: `generate(model, "Justice is", max_length=100, temperature=0.8)`
    returns the prompt followed by at most `max_length` NEW tokens of text, stopping at
    <|endoftext|> (not included); GPT-2's tokenizer unless `tokenizer=` is given.
    `max_length` and `max_new_tokens` both count new tokens only; Hugging Face's
    `max_length` counts the prompt too. `sampling` holds the fields of SamplingSettings:
    temperature (1.0; 0 is greedy), top_k, top_p, min_p, min_tokens_to_keep.
    `seed` (or a torch.Generator) makes sampling repeatable. `use_cache=False` runs
    the whole window at every step (same tokens, slower). The model sees the last
    context_length tokens; the result still starts with the whole prompt.
    """
    n_new = check_prompt(model, prompt, max_new_tokens, max_length)
    settings = SamplingSettings(**sampling)
    run = check_decoding(model, eos_id, generator, seed, use_cache)
    if isinstance(prompt, str):
        return generate_text(model, prompt, n_new, tokenizer, settings=settings, **run)
    return generate_ids(model, prompt, n_new, settings=settings, **run)


# %% [markdown]
# Our target's call, on the pretrained model, with and without top-p, and the same call
# streamed:

# %%
# NBVAL_IGNORE_OUTPUT
print(pretrained.label)
target = model.generate(
    "Justice is served when", max_length=100, temperature=0.8, seed=123
)
print(target, "\n")
nucleus = model.generate(
    "Justice is served when", max_length=100, temperature=0.8, top_p=0.9, seed=123
)
print(nucleus, "\n")
gen = torch.Generator().manual_seed(123)  # what seed=123 makes
pieces = list(
    stream_text(model, "Justice is served when", 100, generator=gen,
                settings=SamplingSettings(temperature=0.8))
)
print(f"streamed in {len(pieces)} pieces, first {pieces[:4]}")
assert "Justice is served when" + "".join(pieces) == target
assert target == generate(
    model, "Justice is served when", 100, temperature=0.8, use_cache=False, seed=123
)

# %% [markdown]
# Bad arguments are refused before any tensor is touched, with a message that names the value:

# %%
bad_arguments = [
    dict(temperature=-1.0),
    dict(temperature=float("nan")),
    dict(top_k=0),
    dict(top_p=0.0),
    dict(top_p=1.5),
    dict(min_p=-0.1),
    dict(min_tokens_to_keep=0),
    dict(max_length=0),
    dict(use_cache="yes"),
]
for kwargs in bad_arguments:
    try:
        model.generate("Justice is served when", **{"max_length": 5, **kwargs})
    except (TypeError, ValueError) as e:
        print(f"{kwargs}: {type(e).__name__}: {e}")
print("a tensor prompt accepts 0 new tokens:", tuple(model.generate(ids, 0).shape))

# %% [markdown]
# ## 8.5 Stable or diverse? The trade-off, measured
#
# Our target asks for "stable and diverse" outputs and suggests a temperature between 0.7 and
# 1.2. Both words can be measured on the pretrained model's own samples. A **setting** is a
# temperature alone, or a top-k or top-p filter at $T = 1$, or the two combined. For each setting
# and each of several **seeds**, we draw $N$ samples of $L$ new tokens after each of a few
# Shakespeare-like prompts (one batch of $N$ rows per prompt, each row with its own random
# draws), and score them with cheap statistics, no second model needed:
#
# * **diversity**: *distinct-1* and *distinct-2*, the number of different tokens and different
#   token pairs divided by the number of tokens and pairs (Li et al., 2016), pooled over the $N$
#   samples of a prompt;
# * **repetition**: the share of each sample's 4-grams that already appeared earlier in the same
#   sample, which catches loops such as "the the the" or a line written twice;
# * **likelihood**: the mean log-probability that the model, at $T = 1$ and unfiltered, gives to
#   the tokens of its own samples: how plausible the model finds what it wrote. Greedy text wins
#   this by construction, so the number is read against real text the model did not train on;
# * **corpus words**: [Chapter 7](07_pretrained.ipynb)'s check, the share of the samples' words
#   (runs of letters and apostrophes, in lower case) that occur somewhere in the model's
#   training text. A sampler that strays into the long tail of 50,257 tokens writes fragments
#   that are no word at all.
#
# Each statistic is computed per prompt and averaged over the prompts; then the seeds give a
# mean and a spread (their standard deviation), which says which differences between settings
# are larger than the luck of the draw.

# %%
def words_of(ids: list[int]) -> list[str]:
    """The words of the text that token ids decode to, as chapter 7 counts them: runs
    of letters and apostrophes, in lower case."""
    return re.findall(r"[a-z']+", enc.decode(ids).lower())


corpus = shakespeare_corpus()  # the base's training text, tokenised (Appendix A)
known = set(words_of(corpus.ids("train").tolist()))  # every word of the training plays
print(f"{len(known):,} different words in the training split")


def sample_stats(model, prompt_ids, samples: torch.Tensor) -> dict:
    """Diversity and quality of (N, L) new tokens sampled after prompt_ids (1, P)."""
    N, L = samples.shape
    pairs = [tuple(s[i : i + 2]) for s in samples.tolist() for i in range(L - 1)]
    repeats = []
    for s in samples.tolist():
        grams = [tuple(s[i : i + 4]) for i in range(L - 3)]
        repeats.append(sum(g in grams[:i] for i, g in enumerate(grams)) / len(grams))
    full = torch.cat([prompt_ids.expand(N, -1), samples], dim=1)  # (N, P + L)
    with torch.no_grad():
        logp = F.log_softmax(model(full[:, :-1]).float(), dim=-1)  # (N, P + L - 1, V)
    P = prompt_ids.shape[1]
    own = logp[:, P - 1 :].gather(-1, samples.unsqueeze(-1))  # (N, L, 1)
    said = [w for s in samples.tolist() for w in words_of(s)]
    in_corpus = sum(w in known for w in said) / len(said) if said else float("nan")
    return {
        "distinct-1": samples.unique().numel() / samples.numel(),
        "distinct-2": len(set(pairs)) / len(pairs),
        "repetition": sum(repeats) / N,
        "log-prob": own.mean().item(),
        "corpus words": in_corpus,  # nan: the samples hold no word at all
    }


# %% [markdown]
# The run: every setting, every seed, every prompt. The seed of a draw depends on the seed and
# the prompt only, so two settings see the same random numbers (which makes their difference
# less noisy), and greedy decoding, which draws none, gives the same samples with every seed.


# %%
def tradeoff(model, prompts, settings, seeds, n_samples, n_tokens) -> pd.DataFrame:
    """One row per (setting, seed): sample_stats averaged over the prompts."""
    device = model.wte.weight.device
    rows = []
    for name, knobs in settings.items():
        for seed in seeds:
            per_prompt = []
            for j, prompt in enumerate(prompts):
                ids = torch.tensor([enc.encode(prompt)], device=device)  # (1, P)
                out = model.generate(ids.expand(n_samples, -1), n_tokens,
                                     seed=100 * seed + j, **knobs)  # fmt: skip
                per_prompt.append(sample_stats(model, ids, out[:, ids.shape[1] :]))
            mean = pd.DataFrame(per_prompt).mean()  # over the prompts
            rows.append({"setting": name, "seed": seed, **mean})
    return pd.DataFrame(rows)


families = {  # the settings, grouped by the knob that varies
    "temperature": {
        "greedy": dict(temperature=0),
        **{f"T={T}": dict(temperature=T) for T in (0.5, 0.7, 0.8, 1.0, 1.2, 1.5)},
    },
    "top-k, T=1": {f"top-k={k}": dict(top_k=k) for k in (10, 50, 200)},
    "top-p, T=1": {f"top-p={p}": dict(top_p=p) for p in (0.5, 0.8, 0.9, 0.95)},
    "both": {"T=0.8, top-p=0.9": dict(temperature=0.8, top_p=0.9)},
}
settings = {name: knobs for members in families.values() for name, knobs in members.items()}
prompts = [
    "KING.\nMy lords, I",
    "JULIET.\nO Romeo, Romeo,",
    "First Citizen.\nWhat says the",
]

# %%
# NBVAL_IGNORE_OUTPUT
n_seeds, n_samples, n_tokens = full_or_quick(
    (4, 8, 40), (2, 4, 16), what="2 seeds of 4 samples x 16 tokens"
)
runs = tradeoff(model, prompts, settings, range(n_seeds), n_samples, n_tokens)
summary = runs.drop(columns="seed").groupby("setting", sort=False).agg(["mean", "std"])
print(f"{pretrained.label}: per setting, {n_seeds} seeds x {len(prompts)} prompts x "
      f"{n_samples} samples x {n_tokens} tokens; mean ± sd over the seeds")  # fmt: skip
stats = summary.columns.get_level_values(0).unique()  # in the order of sample_stats
table = pd.DataFrame({stat: [f"{m:.3f} ± {s:.3f}" for m, s in summary[stat].to_numpy()]
                      for stat in stats}, index=summary.index)  # fmt: skip
print(table.to_string())
means = summary.xs("mean", axis=1, level=1)
cold, hot = means.loc["greedy"], means.loc["T=1.5"]
assert cold["distinct-1"] < hot["distinct-1"]  # hotter: more diverse,
assert cold["log-prob"] > hot["log-prob"]  # ... less plausible to the model,
assert cold["repetition"] > hot["repetition"]  # ... and greedy loops more
greedy_spread = summary.loc["greedy"].xs("std", level=1).fillna(0)  # nan: no word
assert (greedy_spread < 1e-6).all()  # greedy decoding: the seeds change nothing

# %% [markdown]
# A yardstick for the last two columns: how does **real** text that the model did not train on
# score? The base's validation split holds whole plays (Appendix A); we score windows of the
# model's context length spread over it, and count its words found in the training split:

# %%
# NBVAL_IGNORE_OUTPUT
val = torch.from_numpy(corpus.ids("val").astype("int64"))  # the held-out plays
ctx = model.config.context_length
starts = torch.linspace(0, len(val) - ctx - 1, 16).long().tolist()  # 16 windows
with torch.no_grad():
    losses = [
        F.cross_entropy(model(val[None, s : s + ctx])[0].float(), val[s + 1 : s + ctx + 1])
        for s in starts
    ]
real_logp = -torch.stack(losses).mean().item()
real_words = words_of(val.tolist())
real_share = sum(w in known for w in real_words) / len(real_words)
print(f"{pretrained.label}: held-out plays, {len(starts)} windows of {ctx} tokens: "
      f"mean log-prob {real_logp:.2f} per token")  # fmt: skip
print(f"{real_share:.1%} of the held-out plays' words occur in the training split")
assert 0.9 < real_share < 1

# %% [markdown]
# The figure puts diversity (distinct-2) across and one measure of quality up each panel; each
# point is a setting, its bars the spread over the seeds, and the dotted lines the held-out
# plays. The last panel zooms in on the settings that sample, and names them all; its dashed
# line is the 95% that the rule below asks for:

# %%
# NBVAL_IGNORE_OUTPUT
panels = [  # (statistic, label, zoomed in on the sampled settings)
    ("log-prob", "log-prob of its own samples", False),
    ("corpus words", "share of words in the training text", False),
    ("corpus words", "the same, zoomed in", True),
]
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), width_ratios=[1, 1, 1.4],
                         layout="constrained")  # fmt: skip
for ax, (stat, ylabel, zoom) in zip(axes, panels):
    for family, members in families.items():
        rows = summary.loc[list(members)]
        bars = ax.errorbar(rows["distinct-2", "mean"], rows[stat, "mean"],
                           xerr=rows["distinct-2", "std"], yerr=rows[stat, "std"],
                           marker="o", ms=4, capsize=2, label=family)  # fmt: skip
        for name in members if zoom or family == "temperature" else []:
            xy = (rows.loc[name, ("distinct-2", "mean")], rows.loc[name, (stat, "mean")])
            ax.annotate(name, xy, xytext=(4, 4), textcoords="offset points", fontsize=7,
                        color=bars[0].get_color())  # fmt: skip
    ax.set_xlabel("distinct-2 (diversity)")
    ax.set_ylabel(ylabel)
axes[0].axhline(real_logp, color="k", ls=":", lw=1, label="held-out plays")
for ax in axes[1:]:
    ax.axhline(real_share, color="k", ls=":", lw=1)
sampled = summary.drop(index="greedy")["distinct-2", "mean"]
axes[2].set_xlim(sampled.min() - 0.03, 1)
axes[2].set_ylim(0.93, 1)  # around the rule's 95% below
axes[2].axhline(0.95, color="0.5", ls="--", lw=1)
axes[0].legend(fontsize=8)
fig.suptitle(f"diversity against quality, mean ± sd over {n_seeds} seeds per setting\n"
             f"{pretrained.label}")  # fmt: skip
plt.show()

# %% [markdown]
# Read the table and the figure together; the numbers below are those of the run stored above.
# Greedy decoding writes one sample $N$ times per prompt, the same with every seed (its spread is
# 0): by the model's own measure the most plausible text (a log-prob of -1.649 per token), the
# least diverse (distinct-2 0.078), and it loops: 0.234 of its 4-grams are repeats. Raising $T$
# moves a setting right and down. From $T = 0.5$ to $T = 1.5$, distinct-2 rises from 0.593 to
# 0.984, while the log-prob falls from -1.907 to -8.292 and the share of corpus words from
# 0.989 to 0.745: at $T = 1.5$ a quarter of what the model writes is fragments. The spread over
# the seeds is small next to these steps, so the trend is no accident of the draw.
#
# Top-k and top-p at $T = 1$ cut the tail instead of reshaping the whole distribution, and the
# zoomed panel shows what that buys. Top-k = 200 reaches a distinct-2 of 0.836, well above
# $T = 0.8$'s 0.773 (several times the spread of either), with as many corpus words (0.972
# against 0.971). On the model's own log-probability the filters gain little: in the first
# panel every setting lies close to one curve, top-k = 200 at -3.176, between $T = 0.8$ (-2.776)
# and $T = 1.0$ (-3.887). Adding top-p = 0.9 to $T = 0.8$ trades a little diversity (0.748) for
# fewer fragments (0.986 corpus words).
#
# A rule from the data: keep the settings whose samples **repeat little** (repetition under
# 5%), that the model finds **at least as plausible as real text it has not seen** (log-prob
# above the dotted line), and whose words are **words of the corpus** (at least 95%); of those,
# the most diverse is the one to use:

# %%
# NBVAL_IGNORE_OUTPUT
stable = means["repetition"] < 0.05
plausible = means["log-prob"] >= real_logp
wordy = means["corpus words"] >= 0.95
good = means.index[stable & plausible & wordy].tolist()
print(f"{pretrained.label}:")
print(f"  repetition < 5%: {means.index[stable].tolist()}")
print(f"  log-prob >= held-out plays ({real_logp:.2f}):",
      means.index[plausible].tolist())  # fmt: skip
print(f"  corpus words >= 95%: {means.index[wordy].tolist()}")
best = means.loc[good, "distinct-2"].idxmax() if good else None
print(f"  all three: {good}; the most diverse of them: {best}")
assert not stable.loc["greedy"]  # greedy loops

# %% [markdown]
# For the base, the rule keeps $T$ = 0.7 and 0.8 among the temperatures alone, every top-k,
# top-p from 0.8 up, and the combination. At the cold end, $T = 0.5$ and top-p = 0.5 still loop
# (0.064 and 0.063 of their 4-grams are repeats). At the hot end, $T = 1.0$ repeats little and
# is plausible enough, but only 93.8% of its words are words of the corpus, and $T = 1.2$ fails
# both of those tests. The most diverse setting that passes, top-p = 0.95, keeps 95.7% corpus words, close to the bar, and top-p = 0.9
# (96.8%) leaves a margin. Of our target's range, 0.7 to 1.2, only the **lower end** suits this
# base; a hotter sample needs a tail cut. The better a model's probabilities match real text,
# the hotter it can sample before its text falls apart: a model that has read far more than the
# base (GPT-2 124M, which `pretrained_model()` takes where its weights are on the machine) can
# go further up that range. Which settings pass depends on the model, which is why every output
# above names it.

# %% [markdown]
# ## 8.6 How fast can it be? The memory-bandwidth bound
#
# At batch 1, one step with the cache multiplies a single vector by every weight matrix of the
# model: the $q, k, v$ and output projections and the two MLP matrices of every block, and the
# 50,257 × 768 `lm_head`. Each weight is read from memory once and used for one multiply-add.
# A CPU does billions of multiply-adds per second but reads only some gigabytes per second, so
# the step waits for memory, and the fastest possible decoding is
#
# $$\text{tok/s}_\text{max} = \frac{\text{read bandwidth (bytes/s)}}{\text{bytes of the matmul weights}}$$
#
# For GPT-2 124M in float32 the weights that go through a matrix product are 123,532,032 numbers
# (the embedding lookups `wte` and `wpe` read one row each and do not count; `lm_head` does, even
# though it shares `wte`'s matrix), 494 MB per token (the cell below counts them). The benchmark measures the read bandwidth
# with a read-only sweep (`x.sum()` over a 1 GiB tensor; a copy would also write), and times, on
# the same weights and prompt and interleaved in one process: our loop without the cache, with
# it, and Hugging Face's `generate` with its cache:
#
# ```
# python -m gpt2scratch bench generate                  # CPU: 124M, fp32, batch 1, greedy
# python -m gpt2scratch bench generate --device cuda    # GPU: adds the static cache (below)
# ```
#
# %%
# the benchmark is hand-written, not a chapter's export
from gpt2scratch import bench, bench_generate

with torch.device("meta"):
    gpt2_124m = GPT2(GPT2Config())
n_bytes = bench_generate.matmul_weight_bytes(gpt2_124m)
print(f"matmul weights of GPT-2 124M: {n_bytes // 4:,} numbers, {n_bytes / 1e6:.0f} MB")
assert n_bytes // 4 == 12 * 12 * 768**2 + 50257 * 768  # blocks: 12 C^2 each; lm_head

# %% [markdown]
# Here is the same measurement on a two-layer version of GPT-2 124M, small enough for this
# notebook; the full model takes minutes, so run the command above to measure it on your machine:

# %%
# NBVAL_IGNORE_OUTPUT
with warnings.catch_warnings():  # transformers' import warns about missing widgets
    warnings.simplefilter("ignore")
    steps, warmup, n = full_or_quick((5, 2, 16), (1, 0, 4), what="1 round of 4 tokens")
    argv = ["generate", "--layers", "2", "--prompt-tokens", "4", "--new-tokens", str(n)]
    code = bench.main(argv + ["--steps", str(steps), "--warmup", str(warmup)])
assert code == 0

# %% [markdown]
# Read the line "the matmuls alone" before blaming the model. It times nothing but `F.linear`
# of a one-row input through every weight matrix in turn: no attention, no LayerNorm, no
# Python loop. On a CPU that is PyTorch's BLAS library (Intel's MKL in the standard wheels)
# doing matrix-vector products, and on many CPUs it reads the weights more slowly than the plain
# `x.sum()` sweep. That rate, not our code, is the ceiling of any PyTorch model on such a CPU, so
# the benchmark prints both fractions: of the bandwidth bound, and of the matmuls-alone rate.
# (A fraction above 100% of the bound is no paradox: the bound comes from a 1 GiB sweep through
# memory, and a CPU whose last-level cache holds much of the two-layer model's 211 MB of weights
# reads them faster than that.)
# It also times one decode step alone, the prompt's prefill excluded (`(t(n) - t(1)) / (n - 1)`
# for a call with $n$ new tokens), for ours and for Hugging Face's `generate`: what a step spends
# beyond the matrix products goes to Python and to the small kernels between them (LayerNorm,
# attention, the cache). They cost more than their arithmetic: a matrix product streams megabytes
# of weights through the core's caches and evicts the code and data of the interpreter and of the
# next kernels, so every small operation after it starts cold (on the CPU this book was built on,
# five to ten times slower than the same operation in a tight loop). A step therefore does as few of
# them as it can: the cache is preallocated, a one-token step builds no mask, and in eval mode the
# blocks do not even call their dropout layers, which would return their input unchanged
# (chapters 3 and 4 skip the call; a test counts the operations of a step).
# Here is the full 124M model, measured with the command above on the machine this book was
# built on, and saved to `benchmarks/generate_cpu.json` ("ours static+compiled" is section 8.7's
# compiled step):

# %% tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
root = Path.cwd().parent if Path.cwd().name == "chapters" else Path.cwd()


def print_generate_bench(name: str) -> None:
    """The figures of a committed `bench generate --json` run, one line per contender."""
    path = root / "benchmarks" / name
    if not path.is_file():
        print(f"benchmarks/{name} is not in this checkout")
        return
    figures = json.loads(path.read_text())
    print(f"{figures['device']}, torch {figures['torch']}, {figures['preset']}, batch 1:")
    for dtype, row in figures["results"].items():
        alone = row.get("matmuls_alone_tok_s")
        print(f"  {dtype}: {row['weight_bytes'] / 1e6:.0f} MB of weights per token, "
              f"bound {row['bound_tok_s']:.0f} tok/s"
              + (f", the matmuls alone {alone:.1f} tok/s" if alone else "")
              + f"; same tokens as HF: {row['identical']}")
        for k, v in row.items():
            if isinstance(v, dict) and "tok_s" in v:
                print(f"    {k:<20} {v['tok_s']:8.1f} tok/s  "
                      f"{v['fraction_of_bound']:6.1%} of the bound")
        print(f"    best ours / best HF = {row['ours/HF']:.2f}")
        for k, t in row.get("per_step_s", {}).items():  # prefill excluded
            print(f"    one decode step, {k:<20} {t * 1e3:6.1f} ms = "
                  f"{1 / alone / t:.0%} of the matmuls-alone rate")


print_generate_bench("generate_cpu.json")

# %% [markdown]
# Is the matrix-vector product slower than the sweep? Time both on one matrix the size of
# `lm_head` (50,257 × 768 × 4 bytes = 154 MB, larger than most CPUs' caches), with one thread
# and with all of them:

# %%
# NBVAL_IGNORE_OUTPUT
W = torch.randn(50257, 768)  # the size of lm_head
x = torch.randn(1, 768)  # one row: batch 1, one token
threads = torch.get_num_threads()
rates = {}  # threads -> (GB/s of the product, GB/s of the sweep)
for n in sorted({1, threads}):
    torch.set_num_threads(n)
    t_matvec = min(seconds(lambda: F.linear(x, W)) for _ in range(5))
    t_sweep = min(seconds(lambda: W.sum()) for _ in range(5))
    rates[n] = W.nbytes / t_matvec / 1e9, W.nbytes / t_sweep / 1e9
    print(f"{n} thread(s): F.linear of one row reads {rates[n][0]:5.1f} GB/s, "
          f"W.sum() {rates[n][1]:5.1f} GB/s")
torch.set_num_threads(threads)
if threads > 1:
    gains = [rates[threads][i] / rates[1][i] for i in (0, 1)]
    print(f"{threads} threads against 1: the product x{gains[0]:.1f}, the sweep x{gains[1]:.1f}")

# %% [markdown]
# The sweep, which PyTorch splits among its threads, reads faster with two threads than with
# one. Whether the matrix-vector product does too depends on the CPU: on some, MKL runs a
# one-row product on one core, and one core cannot pull what the whole memory system can; on
# others it splits the product as well (the last line above says which). Where it does not,
# splitting the matrix's rows among threads by hand helps the products alone, but in the decode
# loop the hand-offs between threads cost most of the gain (exercise 4). On a GPU the bound is a
# different story.

# %% [markdown]
# ## 8.7 Static shapes: a CUDA graph on a GPU, a compiled step on a CPU
#
# On a GPU the picture changes. Reading the 247 MB of bf16 weights (the figures below print
# it) at a few terabytes per second takes well under a tenth of a millisecond, but one step
# launches well over a hundred small kernels (about a dozen per block), and launching a kernel
# from Python costs several microseconds. The step is then bound by the launches, not by memory. A **CUDA graph** records the whole sequence of kernels once and
# replays it with one launch. It needs every tensor to keep its shape and address between
# replays, so the cache cannot hand out a growing slice. Instead:
#
# * the cache is allocated once (`KVCache`, as before), and a step writes its key and value at
#   the position held in a **tensor** (`index_copy_`), not a Python int;
# * attention runs over the **whole** preallocated cache, with a mask that hides the positions
#   not written yet: `LayerKV.update` already does both when `start_pos` is a tensor;
# * the new token and its position live in fixed tensors that the loop overwrites before each
#   replay.
#
# A CPU has no kernel launches to save, but it has their cousin, which section 8.6 measured: the
# small operations between the matrix products, each started cold, each dispatched from Python.
# The same static step lets `torch.compile` help there. With shapes that never change, it traces
# the step once into one graph, fuses each run of small operations (the residual add and the next
# LayerNorm, the cache write and the mask) into one C++ loop, leaves the matrix products to the
# BLAS library, and, with its `cpp_wrapper` option, calls the whole sequence from C++: one call
# from Python per token, where the eager step dispatches every small operation from Python one by
# one. Since the shapes never change, the step also skips the checks (`torch.compile`'s guards)
# that would pick among several compiled versions. Compiling takes seconds to tens of seconds the
# first time (torch keeps the result in a cache on disk) and needs a C++ compiler, so it is an
# option, `compile=True`, for long generations.
#
# Two functions turn a step (a function of no arguments that returns the logits, reading the
# fixed tensors) into a fast one. On a GPU, `capture_cuda_graph` runs it a few times, so that
# kernels are chosen and memory allocated, then records it; on a CPU, `compile_static` compiles it
# once, for fixed shapes, and runs it without the guards. The C++ that `torch.compile` writes for
# a CPU needs a compiler and Python's headers; `compile_unavailable` says which one is missing.


# %%
#| export
def capture_cuda_graph(step):
    """Warm `step` up on a side stream, then record it as a CUDA graph. Returns
    (graph, out): graph.replay() reruns every kernel and refills the tensor `out`."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm up: kernels chosen, memory allocated
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out


def compile_unavailable() -> str | None:
    """Why torch.compile cannot build CPU kernels here (no C++ compiler, or no
    Python.h), or None when it can."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = get_cpp_compiler()  # $CXX, else g++ / clang++
    except Exception as err:  # noqa: BLE001 - not found, whichever way torch says it
        return f"torch.compile finds no C++ compiler ({type(err).__name__}); set CXX"
    if shutil.which(compiler) is None:
        return f"torch.compile finds no C++ compiler ({compiler!r}); set CXX"
    header = Path(sysconfig.get_paths()["include"], "Python.h")
    if not header.is_file():
        missing = f"{header} is missing (python3-dev)"
        return f"torch.compile needs Python's headers: {missing}"
    return None


def compile_static(step):
    """`step` compiled by torch.compile for shapes that never change, its Python
    wrapper too (cpp_wrapper: the kernels run back to back from C++). Compiles now
    (seconds; a C++ compiler is needed on a CPU); the function it returns skips the
    guards, which would only pick among compiled versions, and there is one."""
    compiled = torch.compile(step, dynamic=False, options={"cpp_wrapper": True})
    with torch.no_grad():  # the grad mode of every later call
        compiled()

    def run():
        with torch.no_grad(), torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            return compiled()

    return run


# %% [markdown]
# `StaticDecoder` captures one decode step as a graph on CUDA, compiles it with `compile=True`,
# and otherwise runs the same static path eagerly, which lets us check here that every variant
# gives the same tokens.


# %%
#| export
class StaticDecoder:
    """Decoding with static shapes: one KVCache, the position as a tensor, and the
    one-token step either captured once as a CUDA graph and replayed (`graph`, the
    default on CUDA) or compiled once by `torch.compile` (`compile=True`, for a CPU:
    the small operations between the matrix products fused). Section 8.7. Both are
    built for the model as it is: after moving it or changing its dtype, build anew."""

    def __init__(
        self, model, batch_size: int = 1, max_len: int | None = None, graph=None,
        compile: bool = False,
    ):
        check_bool("compile", compile)
        self.model = model.eval()
        device = model.wte.weight.device
        self.cache = KVCache(model, batch_size, max_len)
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        if graph is None:
            graph = device.type == "cuda" and not compile
        if graph and compile:
            raise ValueError(
                "graph=True and compile=True: pick one (torch.compile's "
                "mode='reduce-overhead' compiles and captures a graph)"
            )
        self.fast_step = None  # the step as a graph replay or compiled, or None
        if compile and device.type == "cpu" and (why_not := compile_unavailable()):
            raise RuntimeError(why_not)
        if compile:  # its first run writes slot 0, which the prompt overwrites
            self.fast_step = compile_static(self._step)
        if graph:
            cuda_graph, logits = capture_cuda_graph(self._step)
            self.fast_step = lambda: (cuda_graph.replay(), logits)[1]

    @torch.no_grad()
    def _step(self) -> torch.Tensor:
        return next_logits(self.model, self.token, self.cache, self.pos)  # (B, V)

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits (B, V) after `token` (B, 1) at position `pos`."""
        self.token.copy_(token)
        self.pos.fill_(pos)
        return self._step() if self.fast_step is None else self.fast_step()

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, settings=None, generator=None):
        """(B, T) ids -> (B, T + max_new_tokens), picked by sample_next(logits, settings,
        generator); the whole run must fit the cache."""
        T, max_len = idx.shape[1], self.cache.k.shape[3]
        if T + max_new_tokens > max_len:
            raise ValueError(
                f"prompt {T} + {max_new_tokens} new tokens exceed the cache ({max_len})"
            )
        logits = next_logits(self.model, idx, self.cache, 0)  # the prompt, at once
        out = [idx]
        for pos in range(T, T + max_new_tokens):
            out.append(sample_next(logits, settings, generator))  # (B, 1)
            if pos + 1 < T + max_new_tokens:
                logits = self.step(out[-1], pos)
        return torch.cat(out, dim=1)


# %%
torch.manual_seed(123)
decoders = {"eager": StaticDecoder(small, max_len=16, graph=False)}  # CPU: static path
if compile_unavailable() is None:  # and compiled, where a C++ compiler is found
    decoders["compiled"] = StaticDecoder(small, max_len=16, compile=True)
for settings in [dict(temperature=0), dict(temperature=1.0, top_p=0.9)]:
    ref = small.generate(start, 11, seed=123, **settings)
    for name, static in decoders.items():
        gen = torch.Generator().manual_seed(123)
        out = static.generate(start, 11, SamplingSettings(**settings), gen)
        assert torch.equal(out, ref), (name, settings)
    print(f"{settings}: StaticDecoder == generate: True")

# %%
# NBVAL_IGNORE_OUTPUT
why_not = compile_unavailable() or "torch.compile works"
print("checked here:", ", ".join(decoders), "|", why_not)

# %% [markdown]
# On the CPU this book was built on, the 124M figures printed in section 8.6 show what compiling
# buys: a decode step reaches 91% of the matmuls-alone rate, against 80% for the eager loop with
# the cache and 69% for Hugging Face's `generate`. What is left is the cold start of the few fused
# loops and of the attention kernel between the matrix products, and the keys and values that
# attention reads from the cache.

# %% [markdown]
# The benchmark on a GPU compares our cache (eager, and static with the CUDA graph) against
# Hugging Face's `generate` with its default dynamic cache and with
# `cache_implementation="static"`, in bf16 and in float32, and writes its figures to
# `benchmarks/generate_cuda.json`. Where that file is in this checkout, the cell prints them:

# %%
# NBVAL_IGNORE_OUTPUT
print_generate_bench("generate_cuda.json")
log = root / "benchmarks" / "gpu_bench_h200.log"  # the same run's log: each contender
if log.is_file():
    lines = log.read_text().splitlines()
    print("\n".join(line for line in lines if "identical:" in line))

# %% [markdown]
# On the H200 that ran it, the graph is what matters. Our eager loop with the cache is already
# faster than Hugging Face's default `generate` (each `generate` step of theirs does more
# Python work), but both stay at a few percent of the bandwidth bound at most (3.3% for ours in
# float32): a 124M model at batch 1 is bound by kernel launches on a GPU. Replaying one
# captured step per token multiplies our speed several times over, and beats HF's static cache
# (which `transformers` compiles with `torch.compile` behind the scenes) by the "best ours /
# best HF" ratio printed above. Even the graph reaches only 7.9% (bf16) and 12.3% (float32) of
# the bound: a step's hundred-odd kernels are each too small to fill the GPU, which is why
# large-batch serving, not batch 1, is how GPUs are used for generation. In float32 every
# contender's greedy tokens are exactly those of HF's default `generate`; in bf16 they are not,
# and the run's log (`benchmarks/gpu_bench_h200.log`, its lines printed last above) shows that
# neither are those of HF's own static cache ("HF static: False"): rounding differs between
# kernels (our fused q/k/v projection against HF's, for one; HF's compiled static path against
# its eager one), and in bf16 a close race between two tokens can end either way.

# %% [markdown]
# ## Summary
#
# * **Temperature** divides the logits before the softmax: $T < 1$ sharpens the distribution,
#   $T > 1$ flattens it, $T = 0$ is greedy. **Top-k** keeps the $k$ likeliest tokens; **top-p**
#   keeps the smallest set whose probabilities reach $p$, and **min-p** the tokens at least
#   $p_\min$ times as likely as the top one, so the number of candidates adapts to how sure the
#   model is. Top-p sums the tail from the least likely token up, in float64, so that it keeps
#   what Hugging Face's warper keeps. One frozen `SamplingSettings` holds the knobs and checks
#   them once; `sample_next` applies them in that order, and a seeded `torch.Generator` (or
#   `seed=`) makes every sample repeatable.
# * The **trade-off**, measured on the pretrained model's samples with several seeds per
#   setting: as $T$ rises, distinct-1 and distinct-2 rise, and the model's log-probability of
#   its own samples falls; greedy decoding loops. The measured rule (little repetition, no less
#   plausible than real text, words of the corpus) picks the settings printed in section 8.5, to
#   compare with our target's 0.7 to 1.2.
# * The **KV cache** keeps every block's keys and values, preallocated (at most to the context
#   length), so that each step runs the model on one token. It changes no token: the outputs with and
#   without it are identical, for greedy decoding and seeded sampling, and across the context
#   boundary, where GPT-2's absolute positions force a crop and a recomputation.
# * At batch 1 a cached step reads every weight once: the memory bandwidth sets the speed limit.
#   `python -m gpt2scratch bench generate` prints our speed against that bound and against
#   Hugging Face's `generate`. On a GPU, a static cache replayed as a CUDA graph removes the
#   launch overhead that dominates there; on a CPU, the same static step compiled by
#   `torch.compile` (`StaticDecoder(model, compile=True)`) fuses the small operations between the
#   matrix products and brings a step close to the rate of the products alone.
# * `model.generate(prompt, max_length=100, temperature=0.8, top_p=0.9)` is a thin method that
#   calls this chapter's `generate`; `stream_text` and the CLI's `--stream` print tokens as they
#   come.
#
# Next: [Chapter 9 — LoRA and your own domain's text](09_lora.ipynb) adapts the pretrained
# model to a new text by training a few small matrices instead of all 124M weights.
#
# ## Exercises
#
# **1. Top-k or top-p?** Build a peaked distribution (one logit of 10, the rest 0) and a flat one
# (all logits 0) over 1,000 tokens. How many tokens do `top_k=40` and `top_p=0.9` keep in each?
# Which filter does what you would want?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
peaked = torch.zeros(1, 1000)
peaked[0, 0] = 10.0
flat = torch.zeros(1, 1000)
for name, logits_ in [("peaked", peaked), ("flat", flat)]:
    top_mass = F.softmax(logits_, -1)[0, 0].item()
    kept = (top_p_filter(logits_, 0.9) > float("-inf")).sum().item()
    print(
        f"{name}: top token holds {top_mass:.3f};",
        f"top-k 40 keeps 40, top-p 0.9 keeps {kept}",
    )

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Top-k keeps 40 tokens in both cases: far too many when the model is sure (it lets 40 − 1 = 39
# near-impossible tokens back in), and too few when it is not (it cuts 1,000 − 40 = 960 tokens
# that are exactly as likely as the 40 it keeps). Top-p keeps one token in the peaked case, where the top
# token alone holds 0.957 of the mass, and 900 in the flat one: it adapts.
# ```
#
# **2. The cache of a big model.** How much memory does the KV cache of GPT-2 1558M (48 layers,
# 25 heads of 64) take for a batch of 8 sequences of 1,024 tokens in bf16? Compare it with the
# weights in bf16. Use `KVCache` on the meta device.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
with torch.device("meta"):
    xl = GPT2(GPT2Config.preset("1558M")).to(torch.bfloat16)
    xl_cache = KVCache(xl, batch_size=8)
print(f"1558M, batch 8, 1,024 positions, bf16: cache {xl_cache.nbytes / 2**30:.2f} GiB")
print(f"weights in bf16: {xl.num_params() * 2 / 2**30:.2f} GiB")
assert xl_cache.nbytes == 2 * 48 * 8 * 25 * 1024 * 64 * 2

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# $2 \cdot 48 \cdot 8 \cdot 25 \cdot 1024 \cdot 64 \cdot 2$ bytes = 2.34 GiB, against 2.90 GiB
# of weights: at this batch the cache is nearly as big as the model, and it grows with every
# sequence added to the batch. That is why servers share cache memory between requests in pages (vLLM's
# PagedAttention) rather than preallocating the full context for each.
# ```
#
# **3. Crop by half.** Past the context boundary, our loop recomputes the whole window at every
# step. A common alternative crops the sequence to its last *half* window, recomputes that once,
# and then uses the cache again for half a window of steps. Count the positions the model
# processes for 200 new tokens after a 10-token prompt with a 64-token window, for both
# strategies. What does the cheaper one give up?


# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
def positions_processed(prompt: int, new: int, window: int, keep: int) -> int:
    """Positions run through the model; at the boundary, crop to the last `keep`."""
    total, filled = prompt, prompt  # the prompt runs once
    for _ in range(new - 1):  # each later step runs 1 token, or a recomputed window
        if filled < window:
            total, filled = total + 1, filled + 1
        else:
            total, filled = total + keep, keep
    return total


exact = positions_processed(10, 200, 64, keep=64)
half = positions_processed(10, 200, 64, keep=32)
print(
    f"exact crop: {exact:,} positions; half-window crop: {half:,} (x{exact / half:.1f})"
)

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Exact cropping processes 9,344 positions, the half-window crop 364, about 26 times fewer: it
# recomputes 32 positions once every 32 + 1 = 33 steps (one crop, then 32 cached steps) instead of
# 64 positions at every step.
# It gives up context: right after a crop, the model sees only the last 32 tokens, not 64, so
# its tokens differ from those of a model that always sees the full window.
# ```
#
# **4. Two cores, one product.** On some CPUs MKL computes the one-row `F.linear` of section 8.6
# on one core. Split `W`'s rows in two halves, compute one half in a helper thread
# (`concurrent.futures.ThreadPoolExecutor`; PyTorch releases Python's lock inside its kernels)
# and the other in the main thread, and concatenate. Is it faster? Are the numbers the same?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
from concurrent.futures import ThreadPoolExecutor

half_rows = -(-W.shape[0] // 2 // 64) * 64  # a multiple of 64 rows: identical numbers
top, bottom = W[:half_rows], W[half_rows:]  # views: no copy
with ThreadPoolExecutor(1) as helper, torch.inference_mode():

    def split_linear():
        pending = helper.submit(F.linear, x, bottom)  # the helper thread's half
        return torch.cat([F.linear(x, top), pending.result()], dim=-1)

    split, plain = split_linear(), F.linear(x, W)
    same = torch.equal(split, plain)  # True on one thread; MKL's threads may re-order sums
    t_plain = min(seconds(lambda: F.linear(x, W)) for _ in range(5))
    t_split = min(seconds(split_linear) for _ in range(5))
print(f"identical: {same}; plain {W.nbytes / t_plain / 1e9:.1f} GB/s, "
      f"split in two threads {W.nbytes / t_split / 1e9:.1f} GB/s")
assert torch.allclose(split, plain, rtol=0, atol=1e-5)  # equal up to float32 rounding

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Where MKL runs the product on one core, the split product reads faster than the plain one,
# because each core streams its own half; where MKL already splits it, the gain is small. The
# two results agree up to float32 rounding. Whether they are bit-identical depends
# on the CPU and the thread count: with one thread per product, a split at a multiple of 64 rows
# gave identical bits on the machine that wrote this chapter, but where MKL splits the full
# product across its own threads it sums some dot products in another order, and the last bits
# differ. So the check is a tolerance, not equality. In a whole decode step the gain shrinks: the step has ~50 such
# products, each hand-off costs microseconds, and PyTorch's own threads for the other ops
# compete with the helper for the two cores.
# ```
