# Generated from chapters/03_attention.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/03_attention.ipynb cell 3
"""Causal multi-head self-attention, GPT-2 style: one fused q/k/v projection and
`F.scaled_dot_product_attention` (Chapter 3 of the book)."""

from __future__ import annotations

__all__ = ["split_heads", "merge_heads", "CausalSelfAttention"]

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.validation import check_bool, check_int, check_number


# %% chapters/03_attention.ipynb cell 48
def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C // H): give each head its own (T, hd) matrix."""
    B, T, C = t.shape
    return t.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """(B, H, T, hd) -> (B, T, H * hd): concatenate the heads again."""
    B, H, T, hd = t.shape
    return t.transpose(1, 2).contiguous().view(B, T, H * hd)


# %% chapters/03_attention.ipynb cell 51
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


# %% chapters/03_attention.ipynb cell 53
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
