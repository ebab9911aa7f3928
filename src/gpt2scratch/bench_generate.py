"""`python -m gpt2scratch bench generate` (hand-written): greedy decoding at batch 1, timed.

Ours without and with the KV cache, and with the static cache (its step compiled on a CPU,
replayed as a CUDA graph on a GPU; chapter 8.7), against
Hugging Face's `generate()`, with the same weights, in rounds; and the two ceilings a decode step
at batch 1 meets: the memory bandwidth (every weight is read once per token) and the rate of the
matrix products alone.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from gpt2scratch.bench_common import (device_name, hf_twin, median_rounds, preset_layers,
                                      timer, write_json)
from gpt2scratch.generation import StaticDecoder
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.scale import _sync

__all__ = ["read_bandwidth", "matmul_weight_bytes", "matmuls_alone", "bench_generate"]


def read_bandwidth(device: torch.device, nbytes: int | None = None, reps: int = 5) -> float:
    """Bytes/s of a read-only sweep (x.sum() over a 1 GiB fp32 tensor, best of `reps`); not a copy,
    which also writes."""
    n = (nbytes or 2**30) // 4
    x = torch.ones(n, device=device)
    x.sum()  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        x.sum()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return x.nbytes / best


def matmul_weight_bytes(model: GPT2, bytes_per_param: int = 4) -> int:
    """Bytes of every matmul weight, lm_head included (tied: read again as the head), read once per
    generated token at batch 1."""
    return bytes_per_param * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmuls_alone(model: GPT2, reps: int = 1):
    """A function that runs `reps` batch-1 steps' matrix products and nothing else: F.linear
    of a one-row input through every nn.Linear of `model` in turn, lm_head included. Its
    rate is the ceiling that this BLAS's matrix-vector kernel puts on any model here."""
    w = model.lm_head.weight
    inputs = {n: torch.randn(1, n, device=w.device, dtype=w.dtype)
              for n in {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}}
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def chain() -> None:
        for _ in range(reps):
            for m in linears:
                F.linear(inputs[m.in_features], m.weight, m.bias)

    return chain


def _generate_contenders(ours: GPT2, hf, prompt: torch.Tensor, n: int, on_gpu: bool,
                         static=None) -> dict:
    """The greedy generate() calls that bench generate times, by name; each returns the ids.
    `static`: a StaticDecoder of `ours` whose cache holds the prompt and n tokens, or None."""
    from gpt2scratch.generation import SamplingSettings

    def hf_generate(**kw):
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                           min_new_tokens=n, do_sample=False, **kw)

    contenders = {}
    if not on_gpu:
        contenders["no cache"] = lambda: ours.generate(prompt, n, temperature=0, use_cache=False)
    contenders["ours"] = lambda: ours.generate(prompt, n, temperature=0)
    if static is not None:  # the CUDA graph on a GPU, torch.compile on a CPU (section 8.7)
        contenders[_static_name(on_gpu)] = lambda: static.generate(
            prompt, n, SamplingSettings(temperature=0))
    contenders["HF"] = lambda: hf_generate(use_cache=True)
    if on_gpu:
        contenders["HF static"] = lambda: hf_generate(cache_implementation="static")
    return contenders


def _static_name(on_gpu: bool) -> str:
    return "ours static+graph" if on_gpu else "ours static+compiled"


def _skip(skipped: dict, dtype_name: str, name: str, err: Exception) -> None:
    """Record and print why contender `name` is left out (the error's first line)."""
    skipped[name] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    print(f"[{dtype_name}] skipped {name}: {skipped[name]}")


def bench_generate(args) -> float:
    """Greedy generation at batch 1, tok/s: ours without and with the KV cache, with the static
    cache (compiled on a CPU, a CUDA graph on a GPU), and HF generate()."""
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    dtypes = args.dtypes  # ["fp32"], ["bf16"] or both, from --precision
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=0.0, **preset_layers(args))
    base = GPT2(config).eval()
    n, figures = args.new_tokens, {}
    print(f"device {device}{device_name(device)}, {torch.get_num_threads()} threads, preset {args.preset} "
          f"({base.num_params():,} params), greedy, batch 1, prompt {args.prompt_tokens} tokens, {n} new tokens; "
          f"{' and '.join(dtypes)} ({args.precision_why})")
    bandwidth = max(read_bandwidth(device), read_bandwidth(device))
    print(f"read bandwidth (x.sum() over 1 GiB of fp32, best of 2x5): {bandwidth / 1e9:.1f} GB/s")
    ratio = None
    for dtype_name in dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        ours = GPT2(config).to(device).eval()
        ours.load_state_dict(base.state_dict())
        ours.to(dtype)
        hf = hf_twin(ours).to(dtype).eval()
        prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), device=device)
        outs, skipped, static = {}, {}, None
        try:  # captures the CUDA graph / compiles the step once; a failure drops it only
            static = StaticDecoder(ours, max_len=prompt.shape[1] + n, compile=not on_gpu)
        except Exception as err:  # noqa: BLE001 - report it and go on with the others
            _skip(skipped, dtype_name, _static_name(on_gpu), err)
        contenders = _generate_contenders(ours, hf, prompt, n, on_gpu, static)
        for name, fn in list(contenders.items()):
            try:  # a failure in the first call drops that contender only
                with torch.no_grad():
                    outs[name] = fn()
            except Exception as err:  # noqa: BLE001 - report it and go on with the others
                if name in ("ours", "HF"):
                    raise
                _skip(skipped, dtype_name, name, err)
                del contenders[name]
        same = all(torch.equal(out, outs["HF"]) for out in outs.values())
        print(f"[{dtype_name}] same weights: greedy continuations identical: {same}"
              + ("" if same else " (" + ", ".join(f"{k}: {torch.equal(v, outs['HF'])}" for k, v in outs.items()) + ")"))

        # each cached contender for 1 new token too, and the matmuls alone of n - 1 steps, in
        # the same rounds: a decode step is (t(n) - t(1)) / (n - 1), the prefill excluded
        firsts = {k: fn for k, fn in _generate_contenders(ours, hf, prompt, 1, on_gpu, static).items()
                  if k in contenders and k != "no cache" and n > 1}
        reps = max(n - 1, 1)
        fns = [timer(fn, device) for fn in
               [*contenders.values(), *firsts.values(), matmuls_alone(ours, reps)]]
        median_rounds(fns, args.warmup)
        timed = median_rounds(fns, args.steps)
        times = dict(zip(contenders, timed))
        first_times = dict(zip(firsts, timed[len(contenders):-1]))
        alone = statistics.median(timed[-1]) / reps  # seconds of one step's matmuls
        weight_bytes = matmul_weight_bytes(ours, 2 if dtype_name == "bf16" else 4)
        bound = bandwidth / weight_bytes
        print(f"[{dtype_name}] matmul weights {weight_bytes / 1e6:.1f} MB read per token "
              f"-> bandwidth bound {bound:.1f} tok/s")
        print(f"[{dtype_name}] the matmuls alone (F.linear through every weight, batch 1, "
              f"median of {args.steps} rounds of {reps} steps): "
              f"{1 / alone:.1f} tok/s = {1 / alone / bound:.1%} of the bound; they read "
              f"{weight_bytes / alone / 1e9:.1f} GB/s")
        row = {}
        for name, ts in times.items():
            tok_s = n / statistics.median(ts)
            row[name] = {"tok_s": tok_s, "seconds": ts, "fraction_of_bound": tok_s / bound}
            print(f"[{dtype_name}] {name:>20}: median {statistics.median(ts) * 1000:8.1f} ms/call "
                  f"{tok_s:9.1f} tok/s  {tok_s / bound:6.1%} of the bandwidth bound")
        best_ours = max((k for k in times if k.startswith("ours")), key=lambda k: row[k]["tok_s"])
        best_hf = max((k for k in times if k.startswith("HF")), key=lambda k: row[k]["tok_s"])
        ratios = [hf_t / ours_t for ours_t, hf_t in zip(times[best_ours], times[best_hf])]
        ratio = statistics.median(ratios)
        if "no cache" in times:
            vs_nocache = statistics.median(nc / t for t, nc in zip(times["ours"], times["no cache"]))
            print(f"[{dtype_name}] ours/no-cache tok/s = {vs_nocache:.2f}")
            row["ours/no cache"] = vs_nocache
        figures[dtype_name] = {"identical": same, "skipped": skipped, "weight_bytes": weight_bytes,
                               "bound_tok_s": bound, "matmuls_alone_tok_s": 1 / alone,
                               "best_ours": best_ours, "best_hf": best_hf, "ours/HF": ratio, **row}
        print(f"[{dtype_name}] {best_ours}/{best_hf} per-round ratios: " + " ".join(f"{r:.2f}" for r in ratios))
        print(f"[{dtype_name}] ours reaches {row[best_ours]['fraction_of_bound']:.1%} of the bandwidth bound "
              f"and {row[best_ours]['tok_s'] * alone:.1%} of the matmuls-alone rate")
        if first_times:
            steps = {k: (statistics.median(times[k]) - statistics.median(ts)) / (n - 1)
                     for k, ts in first_times.items()}
            figures[dtype_name]["per_step_s"] = steps
            print(f"[{dtype_name}] per decode step, prefill excluded ((t({n}) - t(1)) / {n - 1}): "
                  + ", ".join(f"{k} {t * 1e3:.2f} ms = {alone / t:.1%} of the matmuls-alone rate"
                              for k, t in steps.items()))
        del ours, hf, contenders, fns
    if args.json:
        import transformers

        write_json(args.json, {
            "benchmark": "generate", "device": str(device) + device_name(device), "preset": args.preset,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "prompt_tokens": args.prompt_tokens, "new_tokens": n,
            "steps": args.steps, "read_bandwidth_bytes_s": bandwidth, "results": figures})
    print(f"ours/HF tok/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio
