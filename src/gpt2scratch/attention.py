# Generated from chapters/03_attention.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Causal multi-head self-attention, GPT-2 style: one fused q/k/v projection and
`F.scaled_dot_product_attention` (chapter 03 of the book)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused q/k/v projection, as in GPT-2.

    Args:
        d_model: width of the residual stream C (768 for GPT-2 124M).
        n_heads: number of heads H; each head works in d_model // n_heads dimensions.
        dropout: drop probability for the attention weights (inside the kernel) and for the output
            (`resid_dropout`); both act only in training mode.
        qkv_bias: whether `c_attn` has a bias (GPT-2: yes).

    Parameters are named and laid out like Hugging Face's GPT-2 `attn` block: `c_attn` maps C -> 3C with
    q, k, v concatenated in that order and the heads contiguous within each; `c_proj` maps C -> C.
    HF's Conv1D stores weights as (in, out), nn.Linear as (out, in): transpose to convert.

    `forward(x)` takes (B, T, C) and returns (B, T, C). `attention_weights(x)` returns the (B, H, T, T)
    softmax weights, recomputed the naive way for visualisation; `forward` never materialises them.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, qkv_bias: bool = True):
        super().__init__()
        if d_model <= 0 or n_heads <= 0:
            raise ValueError(f"d_model and n_heads must be positive, got d_model={d_model}, n_heads={n_heads}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads} "
                             f"(remainder {d_model % n_heads}); e.g. n_heads=12 for d_model=768")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout                                           # attention-weight dropout probability
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=qkv_bias)     # q, k, v for all heads at once
        self.c_proj = nn.Linear(d_model, d_model)                        # mixes the heads' outputs
        self.resid_dropout = nn.Dropout(dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project x (B, T, C) to queries, keys and values, each (B, H, T, hd)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, T, {self.d_model}), got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                          # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)     # (B, H, T, hd)
        k = k.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)     # (B, H, T, hd)
        v = v.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)     # (B, H, T, hd)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)                                            # 3 x (B, H, T, hd)
        B, T, C = x.shape
        # softmax(q k^T / sqrt(hd) + causal mask) v in one fused kernel; dropout on the weights only when training
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)                # (B, H, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                  # (B, T, C): concatenate the heads
        return self.resid_dropout(self.c_proj(y))                         # (B, T, C)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The causal attention weights softmax(q k^T / sqrt(hd)) for x (B, T, C), as (B, H, T, T).

        Computed the naive way, without dropout, for inspection and plots; rows sum to 1 and entries above
        the diagonal are exactly 0. Wrap the call in `torch.no_grad()` if you do not need gradients.
        """
        q, k, v = self._qkv(x)                                            # 3 x (B, H, T, hd)
        T = x.shape[1]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)       # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)  # (B, H, T, T)
