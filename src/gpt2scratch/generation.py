# Generated from chapters/08_generation.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/08_generation.ipynb cell 2
"""Sampling (temperature, top-k, top-p, min-p), the decode loop with a KV cache, and the
text wrapper behind `GPT2.generate` (Chapter 8 of the book).

About 500 lines, past the house's 400, for one idea: turning logits into tokens and
text. The settings object, its filters, the cache and the loops that use them (eager,
and static for a CUDA graph or torch.compile) change together (a new knob touches this
file, the CLI and a test), so they stay in one file.
"""

from __future__ import annotations

__all__ = [
    "top_k_filter", "min_p_filter", "top_p_filter", "SamplingSettings", "sample_next",
    "LayerKV", "KVCache", "next_logits", "decode", "generate_ids", "generate_text",
    "stream_text", "check_prompt", "check_decoding", "generate", "capture_cuda_graph",
    "compile_unavailable", "compile_static", "StaticDecoder",
]

import shutil
import sysconfig
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gpt2scratch.model import check_token_ids
from gpt2scratch.validation import check_bool, check_int, check_number


# %% chapters/08_generation.ipynb cell 10
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


# %% chapters/08_generation.ipynb cell 12
def top_p_filter(logits: torch.Tensor, top_p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep, per row of (B, V) logits, the smallest set of likeliest tokens whose
    probabilities sum to >= top_p, and at least min_keep tokens; the others get -inf."""
    ascending, order = torch.sort(logits, dim=-1)  # (B, V): the least likely first
    probs = F.softmax(ascending, dim=-1, dtype=torch.float64)
    tail = probs.cumsum(dim=-1).float()  # mass of each token and all less likely ones
    drop = tail <= 1 - top_p  # the likelier tokens hold >= top_p without these
    drop[:, -min_keep:] = False  # the min_keep likeliest always stay
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


# %% chapters/08_generation.ipynb cell 16
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


# %% chapters/08_generation.ipynb cell 18
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


# %% chapters/08_generation.ipynb cell 30
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


# %% chapters/08_generation.ipynb cell 34
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


# %% chapters/08_generation.ipynb cell 42
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


# %% chapters/08_generation.ipynb cell 44
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


# %% chapters/08_generation.ipynb cell 46
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


# %% chapters/08_generation.ipynb cell 47
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


# %% chapters/08_generation.ipynb cell 74
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


# %% chapters/08_generation.ipynb cell 76
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
