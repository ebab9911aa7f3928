# Generated from chapters/04_gpt2_model.ipynb — edit the notebook, then `make export`. Do not edit by hand.

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


class GELU(nn.Module):
    """GELU, GPT-2's tanh approximation: 0.5x (1 + tanh(√(2/π) (x + 0.044715x³)))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # one fused kernel for the formula above


class MLP(nn.Module):
    """Position-wise feed-forward network: widen 4x, GELU, project back."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)  # adds into the residual stream
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C): tokens talk to each other
        x = x + self.mlp(self.ln_2(x))  # (B, T, C): each token thinks on its own
        return x


class GenerationMixin:
    """Gives GPT2 its `generate` method; the work is done by section 9's functions."""

    def generate(
        self,
        prompt: str | torch.Tensor,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        *,
        max_length: int | None = None,
        tokenizer=None,
        seed: int | None = None,
    ):
        """Continue `prompt` one token at a time; temperature 0 is greedy (argmax).

        Tensor level: `generate(idx, max_new_tokens)` takes (B, T) token ids and
        returns (B, T + n) ids, n <= max_new_tokens (fewer only when every row has
        produced `eos_id`; a finished row is padded with `eos_id`).
        Text level: `generate("Justice is", max_length=100, temperature=0.8)` returns
        the prompt followed by at most `max_length` NEW tokens of text, stopping early
        at <|endoftext|> (not included). It encodes with GPT-2's tokenizer unless
        `tokenizer=` (anything with encode/decode) is given.
        The model only sees the last `context_length` tokens, so a longer prompt is
        cropped to its end; the returned ids/text still start with the whole prompt.
        `seed` (or a torch.Generator) makes sampling reproducible. Runs in eval mode,
        then restores the mode the model was in.
        """
        n_new = check_prompt(self, prompt, max_new_tokens, max_length)
        sampling = check_sampling(self, temperature, top_k, eos_id, generator, seed)
        if isinstance(prompt, str):
            return generate_text(self, prompt, n_new, tokenizer, **sampling)
        return generate_ids(self, prompt, n_new, **sampling)


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

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream after the final LayerNorm: (B, T) ids -> (B, T, C)."""
        check_token_ids(idx, context_length=self.config.context_length)
        pos = torch.arange(idx.shape[1], device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C) + (T, C): broadcast
        for block in self.h:
            x = block(x)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) logits for the token after each position."""
        return self.lm_head(self.hidden_states(idx))  # (B, T, V)


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


def sample_next_token(logits, temperature=1.0, top_k=None, generator=None):
    """(B, V) logits -> (B, 1) token ids: the argmax at temperature 0, else a sample."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[:, [-1]]  # (B, 1) k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))  # drop the others
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


@torch.no_grad()
def generate_ids(
    model,
    idx,
    max_new_tokens,
    temperature=1.0,
    top_k=None,
    eos_id=None,
    generator=None,
    seed=None,
):
    """(B, T) ids -> (B, T + n) ids, n <= max_new_tokens (GPT2.generate checks args).

    Fewer than max_new_tokens only when every row has produced `eos_id`; a finished row
    is padded with `eos_id`. Runs in eval mode, then restores the model's mode.
    """
    if seed is not None:  # the same seed, the same tokens
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        done = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -model.config.context_length :]  # the context window
            x = model.hidden_states(idx_cond)[:, -1, :]  # (B, C): last position only
            logits = model.lm_head(x).float()  # (B, V)
            next_id = sample_next_token(logits, temperature, top_k, generator)  # (B, 1)
            if eos_id is not None:
                next_id = next_id.masked_fill(done, eos_id)  # finished rows repeat eos
                done = done | (next_id == eos_id)
            idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)  # (B, T + 1)
            if eos_id is not None and bool(done.all()):
                break
    finally:
        model.train(was_training)
    return idx


def generate_text(
    model, prompt, max_new_tokens, tokenizer=None, *, eos_id=None, **sampling
):
    """`prompt` + at most max_new_tokens new tokens of text, cut at <|endoftext|>."""
    if tokenizer is None:
        from gpt2scratch.tokenizer import gpt2_encoding  # lazy: only text needs it

        tokenizer = gpt2_encoding()
    if eos_id is None:
        eos_id = getattr(tokenizer, "eot_token", None)  # 50256 for GPT-2's tokenizer
    ids = tokenizer.encode(prompt)
    idx = torch.tensor([ids], dtype=torch.long, device=model.wte.weight.device)
    check_token_ids(idx, vocab_size=model.config.vocab_size)
    out = generate_ids(model, idx, max_new_tokens, eos_id=eos_id, **sampling)
    new = out[0, len(ids) :].tolist()
    if eos_id in new:
        new = new[: new.index(eos_id)]
    return prompt + tokenizer.decode(new)


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


def check_sampling(model, temperature, top_k, eos_id, generator, seed) -> dict:
    """Check the sampling arguments; return them as keywords for generate_ids."""
    vocab_size = model.config.vocab_size
    temperature = check_number("temperature", temperature, minimum=0)
    top_k = check_int("top_k", top_k, minimum=1, none_ok=True)
    eos_id = check_int("eos_id", eos_id, minimum=0, none_ok=True)
    if eos_id is not None and eos_id >= vocab_size:
        raise ValueError(f"eos_id must be in [0, {vocab_size}), got {eos_id}")
    if generator is not None and not isinstance(generator, torch.Generator):
        kind = type(generator).__name__
        raise TypeError(f"generator must be a torch.Generator, got {kind}")
    seed = check_int("seed", seed, none_ok=True)
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    return dict(
        temperature=temperature,
        top_k=top_k,
        eos_id=eos_id,
        generator=generator,
        seed=seed,
    )
