# Generated from chapters/10_attention_maps.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/10_attention_maps.ipynb cell 2
"""Attention maps of a GPT-2 and numbers per head: statistics, induction and position
scores, and the kinds of head they pick out (Chapter 10 of the book)."""

from __future__ import annotations

__all__ = [
    "attention_maps", "STATS", "check_maps", "head_stats", "THRESHOLDS",
    "repeated_random_tokens", "induction_scores", "position_scores", "classify_heads",
    "head_report",
]

import torch

from gpt2scratch.model import GPT2
from gpt2scratch.tokenizer import encode_prompt


# %% chapters/10_attention_maps.ipynb cell 8
def _ids_and_tokens(model: GPT2, text, tokenizer) -> tuple[torch.Tensor, list[str]]:
    """Token ids (T,) on the model's device, and one label per token."""
    ids, tokenizer = encode_prompt(text, tokenizer, name="text")  # chapter 1
    n = model.config.context_length
    if len(ids) > n:
        raise ValueError(
            f"text is {len(ids)} tokens long, longer than the model's context of {n} "
            f"tokens; shorten it to at most {n} tokens"
        )
    labels = [f"#{i}" if tokenizer is None else tokenizer.decode([i]) for i in ids]
    device = next(model.parameters()).device
    return torch.tensor(ids, device=device), labels


@torch.no_grad()
def attention_maps(model: GPT2, text, tokenizer=None) -> tuple[list[str], torch.Tensor]:
    """(tokens, weights) for `text`: weights[l, h, i, j] is how much query i attends to
    key j in head h of layer l, shape (L, H, T, T), float32 on the CPU.

    `text` is a str (encoded with GPT-2's tokenizer, or `tokenizer` if given) or a
    sequence of token ids (labelled "#id" unless a tokenizer is given). Each row sums to
    1; entries above the diagonal are 0. Runs in eval mode (no dropout), then restores
    the model's mode.
    """
    if not isinstance(model, GPT2):
        raise TypeError(f"model must be a GPT2, got {type(model).__name__}")
    ids, tokens = _ids_and_tokens(model, text, tokenizer)
    inputs = []  # what each block's attention receives: ln_1(x), (1, T, C)
    hooks = [
        block.attn.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
        for block in model.h
    ]
    was_training = model.training
    model.eval()
    try:
        model.hidden_states(ids[None])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    maps = [blk.attn.attention_weights(x)[0] for blk, x in zip(model.h, inputs)]
    return tokens, torch.stack(maps).float().cpu()  # (L, H, T, T)


# %% chapters/10_attention_maps.ipynb cell 13
STATS = ("entropy", "rel_entropy", "distance", "previous", "first")


def check_maps(weights, name="weights", min_tokens=2, dims=None) -> torch.Tensor:
    """weights must be a (..., T, T) tensor (exactly `dims` dimensions if given)."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weights).__name__}")
    shape = "(L, H, T, T)" if dims == 4 else "(..., T, T)"
    square = weights.dim() >= 2 and weights.shape[-1] == weights.shape[-2]
    if not square or (dims is not None and weights.dim() != dims):
        raise ValueError(f"{name} must have shape {shape}, got {tuple(weights.shape)}")
    if weights.shape[-1] < min_tokens:
        raise ValueError(
            f"{name} needs >= {min_tokens} tokens, got T={weights.shape[-1]}"
        )
    return weights


def head_stats(weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four numbers of every map in `weights` (..., T, T), as tensors (...).

    Averaged over query positions i = 1..T-1: entropy (nats), rel_entropy (entropy /
    log(i + 1), 1 = uniform), distance (mean i - j under the weights), previous (weight
    on j = i - 1) and first (weight on j = 0, the attention sink).
    """
    w = check_maps(weights).double()
    T = w.shape[-1]
    i = torch.arange(1, T, device=w.device)
    rows = w[..., 1:, :]  # (..., T-1, T): query positions 1..T-1
    plogp = torch.where(rows > 0, rows * rows.clamp_min(1e-300).log(), 0.0)
    entropy = -plogp.sum(-1)  # (..., T-1)
    back = (i[:, None] - torch.arange(T, device=w.device)).clamp_min(0)  # (T-1, T)
    stats = {
        "entropy": entropy,
        "rel_entropy": entropy / torch.log(i + 1.0),
        "distance": (rows * back).sum(-1),
        "previous": w[..., i, i - 1],
        "first": rows[..., 0],
    }
    return {name: value.mean(-1).float() for name, value in stats.items()}


# %% chapters/10_attention_maps.ipynb cell 16
THRESHOLDS = {"previous": 0.4, "induction": 0.3, "position": 0.9, "rel_entropy": 0.9}


def repeated_random_tokens(n: int, vocab_size: int, *, batch: int = 1, seed: int = 0):
    """(batch, 2n) token ids: n random ids, then the same n again."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(0, vocab_size, (batch, n), generator=g)
    return torch.cat([half, half], dim=1)


def induction_scores(model: GPT2, n: int = 32, *, batch: int = 4, seed: int = 0):
    """(L, H): mean weight from query i (second half) to key i - n + 1 (the token
    after the earlier copy), on `batch` sequences of n random tokens repeated twice."""
    n = min(n, model.config.context_length // 2)
    seqs = repeated_random_tokens(n, model.config.vocab_size, batch=batch, seed=seed)
    w = torch.stack([attention_maps(model, s)[1] for s in seqs]).mean(0)
    i = torch.arange(n, 2 * n)
    return w[..., i, i - n + 1].mean(-1)  # (L, H)


def position_scores(model: GPT2, text_a, text_b, tokenizer=None) -> torch.Tensor:
    """(L, H): 1 - mean total-variation distance between the rows of the maps of two
    inputs of equal token length; 1 means the head ignores what the tokens are."""
    _, a = attention_maps(model, text_a, tokenizer)
    _, b = attention_maps(model, text_b, tokenizer)
    if a.shape != b.shape:
        raise ValueError(
            f"text_a and text_b must have the same token length, got {a.shape[-1]} "
            f"and {b.shape[-1]}"
        )
    return 1 - 0.5 * (a - b)[..., 1:, :].abs().sum(-1).mean(-1)


# %% chapters/10_attention_maps.ipynb cell 18
def classify_heads(scores: dict, thresholds: dict | None = None) -> dict[str, list]:
    """Heads of each kind, as lists of (layer, head), from (L, H) score tensors:
    "previous-token" (scores["previous"]), "induction" (scores["induction"]),
    "positional" (scores["position"], excluding near-uniform heads) and "near-uniform"
    (scores["rel_entropy"]). A kind whose score is missing is left out."""
    t = {**THRESHOLDS, **(thresholds or {})}
    kinds = {}
    uniform = (
        scores["rel_entropy"] >= t["rel_entropy"] if "rel_entropy" in scores else None
    )
    if "previous" in scores:
        kinds["previous-token"] = scores["previous"] >= t["previous"]
    if "induction" in scores:
        kinds["induction"] = scores["induction"] >= t["induction"]
    if "position" in scores:
        positional = scores["position"] >= t["position"]
        kinds["positional"] = positional if uniform is None else positional & ~uniform
    if uniform is not None:
        kinds["near-uniform"] = uniform
    return {
        k: [tuple(ix) for ix in mask.nonzero().tolist()] for k, mask in kinds.items()
    }


def head_report(model: GPT2, text, other_text=None, tokenizer=None, n: int = 32):
    """All scores of all heads: head_stats on `text`, induction scores (n random tokens
    repeated), and position scores against `other_text` (same token length) if given."""
    tokens, weights = attention_maps(model, text, tokenizer)
    scores = head_stats(weights)
    scores["induction"] = induction_scores(model, n)
    if other_text is not None:
        scores["position"] = position_scores(model, text, other_text, tokenizer)
    return tokens, weights, scores
