# Generated from chapters/04_gpt2_model.ipynb — edit the notebook, then `make export`. Do not edit by hand.

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


class GELU(nn.Module):
    """GELU, tanh approximation (what GPT-2 used): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # one fused kernel for the formula above


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
