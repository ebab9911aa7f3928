"""What every benchmark of `python -m gpt2scratch bench` shares (hand-written).

Hugging Face's twin of our model (the same weights, so the two compute the same function), and
the timing: a call as a function that returns its seconds, pairs and rounds of calls in an
interleaved order, the median of the per-pair ratios, and the report. `transformers` is imported
lazily, inside `hf_twin`: it is a benchmark and test dependency only.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from gpt2scratch.model import GPT2
from gpt2scratch.pretrained import config_to_hf, to_hf  # the one name mapping (chapter 07)
from gpt2scratch.scale import _sync  # chapter 11: wait for a GPU's queued work

__all__ = ["hf_twin", "preset_layers", "device_name", "timer", "median_pairs", "median_rounds",
           "median_ratio", "report", "write_json"]


def hf_twin(model: GPT2, attn_implementation: str = "sdpa"):
    """A transformers.GPT2LMHeadModel with the same config and a copy of `model`'s weights."""
    import transformers  # lazy: a benchmark-only dependency

    hf_cfg = {**config_to_hf(model.config), "bos_token_id": None, "eos_token_id": None}
    hf_cfg = transformers.GPT2Config(**hf_cfg, pad_token_id=None, attn_implementation=attn_implementation)
    hf = transformers.GPT2LMHeadModel(hf_cfg).to(model.wte.weight.device)
    hf.load_state_dict(to_hf(model))  # strict: every tensor, Conv1D ones transposed
    return hf


def preset_layers(args) -> dict:
    """`--layers` as GPT2Config.preset's override: {} keeps the preset's n_layers."""
    return {} if args.layers is None else {"n_layers": args.layers}


def device_name(device: torch.device) -> str:
    """' (the GPU's name)' on CUDA, '' elsewhere: for the header line."""
    return f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""


def timer(fn: Callable, device: torch.device) -> Callable[[], float]:
    """`fn` as a function that returns the seconds of one call (without autograd)."""
    def run() -> float:
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        _sync(device)
        return time.perf_counter() - t0

    return run


def median_pairs(run_a, run_b, pairs: int) -> tuple[list[float], list[float]]:
    """Time `pairs` pairs of calls, alternating which goes first; return both lists of seconds."""
    times_a, times_b = [], []
    for i in range(pairs):
        order = [(run_a, times_a), (run_b, times_b)]
        for fn, times in order if i % 2 == 0 else order[::-1]:
            times.append(fn())
    return times_a, times_b


def median_rounds(fns, rounds: int) -> list[list[float]]:
    """Time `rounds` rounds of calls to every fn, rotating which goes first; seconds per fn."""
    times = [[] for _ in fns]
    for r in range(rounds):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            times[i].append(fns[i]())
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of slow / fast: how many times faster `fast` ran, round by round."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def report(name_a: str, name_b: str, times_a, times_b, tokens: int, flops_per_token: float | None,
           peak: float | None, peak_label: str, unit: str = "step") -> float:
    """One line per side (median time, tok/s, and with a peak its share of it), the per-pair
    a/b speed ratios; returns their median."""
    for name, times in ((name_a, times_a), (name_b, times_b)):
        med = statistics.median(times)
        line = f"{name:>5}: median {med * 1000:8.1f} ms/{unit}  {tokens / med:9.1f} tok/s"
        if flops_per_token and peak:
            achieved = flops_per_token * tokens / med
            line += f"  {achieved / 1e9:8.1f} GFLOP/s = {achieved / peak:5.1%} of {peak_label}"
        print(line)
    ratios = [tb / ta for ta, tb in zip(times_a, times_b)]  # tok/s ratio a/b within each pair
    print(f"per-pair {name_a}/{name_b} ratios: " + " ".join(f"{r:.2f}" for r in ratios))
    return median_ratio(times_b, times_a)


def write_json(path: str, data: dict) -> None:
    """The benchmark's figures as JSON, written atomically."""
    import json
    from pathlib import Path

    from gpt2scratch.files import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))
    print(f"wrote {path}")
