# Generated from chapters/04_gpt2_model.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/04_gpt2_model.ipynb cell 5
"""GPT-2 (Radford et al., 2019) in one file: config, LayerNorm, GELU, MLP, Block, GPT2.

Attribute names follow Hugging Face's `GPT2LMHeadModel`, so pretrained weights map
one-to-one (chapter 7). One difference: our `nn.Linear` layers store weights as
(out, in); HF's `Conv1D` stores (in, out), so chapter 7 transposes those matrices.
"""

from __future__ import annotations

__all__ = [
    "PRESETS", "HF_NAMES", "GPT2Config", "LayerNorm", "GELU", "MLP", "Block",
    "GenerationMixin", "GPT2", "check_token_ids",
]

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2scratch.attention import CausalSelfAttention
from gpt2scratch.validation import check_bool, check_int, check_number


# %% chapters/04_gpt2_model.ipynb cell 7
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


# %% chapters/04_gpt2_model.ipynb cell 9
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


# %% chapters/04_gpt2_model.ipynb cell 18
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


# %% chapters/04_gpt2_model.ipynb cell 27
class GELU(nn.Module):
    """GELU, GPT-2's tanh approximation: 0.5x (1 + tanh(√(2/π) (x + 0.044715x³)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # one fused kernel for the formula above


# %% chapters/04_gpt2_model.ipynb cell 30
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


# %% chapters/04_gpt2_model.ipynb cell 41
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


# %% chapters/04_gpt2_model.ipynb cell 45
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


# %% chapters/04_gpt2_model.ipynb cell 47
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


# %% chapters/04_gpt2_model.ipynb cell 49
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
