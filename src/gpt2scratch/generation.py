# Generated from chapters/08_generation.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/08_generation.ipynb cell 2
"""Sampling (temperature, top-k, top-p), the decode loop with a KV cache, and the text
wrapper behind `GPT2.generate` (Chapter 8 of the book)."""

from __future__ import annotations

__all__ = [
    "top_p_filter", "sample_next", "LayerKV", "KVCache", "next_logits", "decode",
    "generate_ids", "generate_text", "stream_text", "check_prompt", "check_sampling",
    "generate", "StaticDecoder",
]

from contextlib import closing

import torch
import torch.nn.functional as F

from gpt2scratch.model import check_token_ids
from gpt2scratch.validation import check_bool, check_int, check_number


# %% chapters/08_generation.ipynb cell 10
def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep, per row of (B, V) logits, the smallest set of likeliest tokens whose
    probabilities sum to >= top_p; the others get -inf. The top token always stays."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = F.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # mass of the likelier tokens
    sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
    return logits.scatter(-1, order, sorted_logits)  # back to vocabulary order


# %% chapters/08_generation.ipynb cell 12
def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B, 1) next token ids.

    Temperature 0 is greedy (the argmax; top_k and top_p then change nothing). Otherwise
    a sample from softmax(logits / temperature), restricted to the top_k likeliest
    tokens and then to the top_p nucleus. `generator` makes the draw repeatable.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # greedy
    logits = logits / temperature  # < 1 sharpens the distribution, > 1 flattens it
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[:, -1:]  # (B, 1) k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


# %% chapters/08_generation.ipynb cell 24
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
        self.k[:, :, start_pos:end] = k  # in place: nothing new is allocated
        self.v[:, :, start_pos:end] = v
        mask = None  # one new token: it may see every position so far
        if T > 1:  # query i sits at start_pos + i: it sees keys 0..start_pos + i
            mask = torch.ones(T, end, dtype=torch.bool, device=k.device).tril(start_pos)
        return self.k[:, :, :end], self.v[:, :, :end], mask


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


# %% chapters/08_generation.ipynb cell 28
def next_logits(model, new_ids: torch.Tensor, cache=None, start_pos=0) -> torch.Tensor:
    """(B, V) float32 logits for the token after the last of new_ids (B, T), which sit
    at positions start_pos..; the cache holds the positions before them."""
    x = model.hidden_states(new_ids, cache, start_pos)[:, -1]  # (B, C): last only
    return model.lm_head(x).float()


def decode(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
):
    """Yield max_new_tokens (B, 1) tensors of next ids for the (B, T) prompt idx.

    The model sees the last context_length tokens. With the cache it runs on the new
    token only; when the cache is full it crops and recomputes (absolute positions).
    Runs in eval mode and restores the model's mode when the generator finishes.
    """
    ctx = model.config.context_length
    cache = KVCache(model, idx.shape[0]) if use_cache else None
    window = idx[:, -ctx:]  # the tokens the model sees
    new, pos = window, 0  # run `new` at positions pos..; the cache holds 0..pos-1
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        for _ in range(max_new_tokens):
            with torch.inference_mode():
                logits = next_logits(model, new, cache, pos)  # (B, V)
                next_id = sample_next(logits, temperature, top_k, top_p, generator)
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


# %% chapters/08_generation.ipynb cell 36
def generate_ids(
    model, idx, max_new_tokens, *, eos_id=None, **sampling
) -> torch.Tensor:
    """(B, T) ids -> (B, T + n) ids, n <= max_new_tokens: fewer only when every row has
    produced `eos_id`; a finished row is padded with `eos_id`."""
    done = torch.zeros(idx.shape[0], 1, dtype=torch.bool, device=idx.device)
    out = [idx]
    with closing(decode(model, idx, max_new_tokens, **sampling)) as steps:
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
    model, prompt, max_new_tokens, tokenizer=None, *, eos_id=None, **sampling
):
    """`prompt` + at most max_new_tokens new tokens of text, cut at <|endoftext|>."""
    tokenizer, eos_id, idx = _encode(model, prompt, tokenizer, eos_id)
    new = generate_ids(model, idx, max_new_tokens, eos_id=eos_id, **sampling)
    new = new[0, idx.shape[1] :].tolist()
    if eos_id in new:
        new = new[: new.index(eos_id)]
    return prompt + tokenizer.decode(new)


# %% chapters/08_generation.ipynb cell 38
def stream_text(
    model, prompt, max_new_tokens, tokenizer=None, *, eos_id=None, **sampling
):
    """Yield the continuation of `prompt` piece by piece, as tokens are generated."""
    tokenizer, eos_id, idx = _encode(model, prompt, tokenizer, eos_id)
    new, shown = [], ""
    with closing(decode(model, idx, max_new_tokens, **sampling)) as steps:
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


# %% chapters/08_generation.ipynb cell 40
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


def check_sampling(
    model, temperature, top_k, top_p, eos_id, generator, seed, use_cache
) -> dict:
    """Check the sampling arguments; return them as keywords for generate_ids."""
    vocab_size = model.config.vocab_size
    temperature = check_number("temperature", temperature, minimum=0)
    top_k = check_int("top_k", top_k, minimum=1, none_ok=True)
    top_p = check_number(
        "top_p", top_p, minimum=0, maximum=1, min_open=True, none_ok=True
    )
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
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_id=eos_id,
        generator=generator,
        use_cache=check_bool("use_cache", use_cache),
    )


# %% chapters/08_generation.ipynb cell 41
def generate(
    model,
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
    top_p: float | None = None,
    use_cache: bool = True,
):
    """Continue `prompt` one token at a time; what `GPT2.generate` calls.

    Tensor level: (B, T) ids -> (B, T + n) ids, n <= max_new_tokens (fewer only when
    every row has produced `eos_id`; a finished row is padded with `eos_id`).
    Text level: `generate(model, "Justice is", max_length=100, temperature=0.8)`
    returns the prompt followed by at most `max_length` NEW tokens of text, stopping at
    <|endoftext|> (not included); GPT-2's tokenizer unless `tokenizer=` is given.
    `max_length` and `max_new_tokens` both count new tokens only; Hugging Face's
    `max_length` counts the prompt too. Temperature 0 is greedy; `top_k` keeps the k
    likeliest tokens, `top_p` the smallest set whose probabilities reach top_p;
    `seed` (or a torch.Generator) makes sampling repeatable. `use_cache=False` runs
    the whole window at every step (same tokens, slower). The model sees the last
    context_length tokens; the result still starts with the whole prompt.
    """
    n_new = check_prompt(model, prompt, max_new_tokens, max_length)
    sampling = check_sampling(
        model, temperature, top_k, top_p, eos_id, generator, seed, use_cache
    )
    if isinstance(prompt, str):
        return generate_text(model, prompt, n_new, tokenizer, **sampling)
    return generate_ids(model, prompt, n_new, **sampling)


# %% chapters/08_generation.ipynb cell 68
class StaticDecoder:
    """Decoding with static shapes: one KVCache, the position as a tensor, and on CUDA
    the one-token step captured once as a CUDA graph and replayed (section 8.7)."""

    def __init__(
        self, model, batch_size: int = 1, max_len: int | None = None, graph=None
    ):
        self.model = model.eval()
        device = model.wte.weight.device
        self.cache = KVCache(model, batch_size, max_len)
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.graph = None
        if device.type == "cuda" if graph is None else graph:
            self._capture()

    @torch.no_grad()
    def _step(self) -> torch.Tensor:
        return next_logits(self.model, self.token, self.cache, self.pos)  # (B, V)

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up: kernels chosen, memory allocated
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._step()  # replay() refills this tensor

    def step(self, token: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits (B, V) after `token` (B, 1) at position `pos`."""
        self.token.copy_(token)
        self.pos.fill_(pos)
        if self.graph is None:
            return self._step()
        self.graph.replay()
        return self.logits

    @torch.no_grad()
    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, **sampling
    ) -> torch.Tensor:
        """(B, T) ids -> (B, T + max_new_tokens); the whole run must fit the cache."""
        T, max_len = idx.shape[1], self.cache.k.shape[3]
        if T + max_new_tokens > max_len:
            raise ValueError(
                f"prompt {T} + {max_new_tokens} new tokens exceed the cache ({max_len})"
            )
        logits = next_logits(self.model, idx, self.cache, 0)  # the prompt, at once
        out = [idx]
        for pos in range(T, T + max_new_tokens):
            out.append(sample_next(logits, **sampling))  # (B, 1)
            if pos + 1 < T + max_new_tokens:
                logits = self.step(out[-1], pos)
        return torch.cat(out, dim=1)
