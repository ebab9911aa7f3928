"""Benchmarks: our GPT-2 against Hugging Face `transformers`, interleaved in one process.

    python -m gpt2scratch bench train    [--device cpu|cuda] [--steps 10] [--batch-size 2] [--context-length 256]
    python -m gpt2scratch bench generate [--device cpu|cuda] [--steps 5] [--new-tokens 32]
    python -m gpt2scratch bench backward [--steps 10] [--no-memory]   (chapter 6: hand-written backward vs autograd)
    python -m gpt2scratch bench precision [--json benchmarks/cpu_bf16.json]   (chapter 11: fp32 vs bf16)

`--precision fp32|bf16|auto` (train, generate) means what it means for `python -m gpt2scratch train`.

Method (see CONTRIBUTING.md, "Benchmarks"): both models are built from the same config and hold the SAME
weights (ours are copied into HF's, transposing its Conv1D matrices), so they compute the same
function; the script checks that their logits agree. After a warm-up, it times pairs of steps,
alternating which model goes first, and reports the median over pairs of the per-pair speed ratio,
which cancels most of the drift a shared, noisy machine adds. The last line is the ratio.

Hand-written (not exported from a chapter). `transformers` is imported lazily: it is a
benchmark/test dependency only.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from gpt2scratch.model import GPT2, PRESETS, GPT2Config
from gpt2scratch.pretrained import config_to_hf, to_hf  # the one name mapping (chapter 07)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) matmul: the rate the hardware actually gives us."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_flops_per_token(model: GPT2, seq_len: int) -> float:
    """Matmul FLOPs of one training step per token (forward + backward = 3x forward).

    6 * (non-embedding params + lm_head's V*C) for the weight matmuls, plus 12 * L * T * C for
    q @ k^T and att @ v (counting the full T x T square, as PaLM and nanoGPT do).
    """
    cfg = model.config
    n_matmul = model.num_params(non_embedding=True) + cfg.vocab_size * cfg.d_model
    return 6 * n_matmul + 12 * cfg.n_layers * seq_len * cfg.d_model


def hf_twin(model: GPT2, attn_implementation: str = "sdpa"):
    """A transformers.GPT2LMHeadModel with the same config and a copy of `model`'s weights."""
    import transformers  # lazy: a benchmark-only dependency

    hf_cfg = {**config_to_hf(model.config), "bos_token_id": None, "eos_token_id": None}
    hf_cfg = transformers.GPT2Config(**hf_cfg, pad_token_id=None, attn_implementation=attn_implementation)
    hf = transformers.GPT2LMHeadModel(hf_cfg).to(model.wte.weight.device)
    hf.load_state_dict(to_hf(model))  # strict: every tensor, Conv1D ones transposed
    return hf


def _layers(args) -> dict:
    return {} if args.layers is None else {"n_layers": args.layers}


def _median_pairs(run_a, run_b, pairs: int) -> tuple[list[float], list[float]]:
    """Time `pairs` pairs of calls, alternating which goes first; return both lists of seconds."""
    times_a, times_b = [], []
    for i in range(pairs):
        order = [(run_a, times_a), (run_b, times_b)]
        for fn, times in order if i % 2 == 0 else order[::-1]:
            times.append(fn())
    return times_a, times_b


def _median_rounds(fns, rounds: int) -> list[list[float]]:
    """Time `rounds` rounds of calls to every fn, rotating which goes first; seconds per fn."""
    times = [[] for _ in fns]
    for r in range(rounds):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            times[i].append(fns[i]())
    return times


def _device_name(device: torch.device) -> str:
    return f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""


def _write_json(path: str, data: dict) -> None:
    """The benchmark's figures as JSON, written atomically."""
    import json
    from pathlib import Path

    from gpt2scratch.files import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))
    print(f"wrote {path}")


def _report(name_a: str, name_b: str, times_a, times_b, tokens: int, flops_per_token: float | None,
            peak: float | None, peak_label: str, unit: str = "step") -> float:
    for name, times in ((name_a, times_a), (name_b, times_b)):
        med = statistics.median(times)
        line = f"{name:>5}: median {med * 1000:8.1f} ms/{unit}  {tokens / med:9.1f} tok/s"
        if flops_per_token and peak:
            achieved = flops_per_token * tokens / med
            line += f"  {achieved / 1e9:8.1f} GFLOP/s = {achieved / peak:5.1%} of {peak_label}"
        print(line)
    ratios = [tb / ta for ta, tb in zip(times_a, times_b)]  # tok/s ratio a/b within each pair
    print(f"per-pair {name_a}/{name_b} ratios: " + " ".join(f"{r:.2f}" for r in ratios))
    return statistics.median(ratios)


# ---------------------------------------------------------------------------------------------
# bench train
# ---------------------------------------------------------------------------------------------
def bench_train(args) -> float:
    device = torch.device(args.device)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16}[args.dtype]
    B, T = args.batch_size, args.context_length
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=args.dropout, **_layers(args))
    ours = GPT2(config).to(device)
    hf = hf_twin(ours)
    ours.eval(), hf.eval()
    x = torch.randint(0, config.vocab_size, (B, T + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]  # targets are the inputs shifted left by one
    with torch.no_grad():
        diff = (ours(inputs[:1, :32]) - hf(input_ids=inputs[:1, :32]).logits).abs().max().item()
    print(f"same weights: max |logits(ours) - logits(HF)| = {diff:.2e} (eval mode)")
    if diff > 1e-3:
        raise RuntimeError(f"our model and HF's disagree (max logit difference {diff}); refusing to compare")
    ours.train(), hf.train()
    from gpt2scratch.scale import FastGPT2  # chapter 11: padded LM head, loss inside

    class HFLoss(torch.nn.Module):  # HF's model with the same loss inside, for compile
        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, idx, tgt):
            logits = self.hf(input_ids=idx).logits  # (B, T, V)
            return F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten())

    def make_step(module):
        opt = torch.optim.AdamW(module.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                **{args.optimizer: True} if args.optimizer != "forloop" else {"foreach": False})

        def step() -> float:
            _sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                loss = module(inputs, targets)  # the mean cross-entropy, in float32
            loss.backward()
            opt.step()
            _sync(device)
            return time.perf_counter() - t0

        return step

    ours_module, hf_module = FastGPT2(ours, pad_vocab=args.pad_vocab), HFLoss()
    steps = {"ours": make_step(ours_module), "HF": make_step(hf_module)}
    if args.compile:  # dynamic=False: one graph for the one shape we time
        steps["ours compiled"] = make_step(torch.compile(ours_module, dynamic=False))
        steps["HF compiled"] = make_step(torch.compile(hf_module, dynamic=False))

    if device.type == "cpu":  # chapter 11.2: stop re-faulting the big blocks every step
        from gpt2scratch.measure import keep_freed_memory

        print(f"keep_freed_memory() (glibc keeps freed blocks, for both models): "
              f"{keep_freed_memory()}")
    peak_dtype = amp_dtype or torch.float32
    dtype_name = str(peak_dtype).removeprefix("torch.")
    peak = matmul_flops(device, peak_dtype)
    fpt = train_flops_per_token(ours, T)
    pad = f"ours: LM head padded to {ours_module.padded_size}" if args.pad_vocab else "no padding"
    print(f"device {device}{_device_name(device)}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, preset {args.preset} ({ours.num_params():,} params), B={B}, T={T}, "
          f"{args.dtype} ({args.precision_why}), dropout {args.dropout}, AdamW ({args.optimizer}), {pad}; "
          "loss = F.cross_entropy of the float32 logits for both")
    warm = {}
    for name, step in list(steps.items()):  # the first calls compile
        t0 = time.perf_counter()
        try:
            for _ in range(args.warmup):
                step()
        except Exception as err:  # a compiler failure must not lose the eager figures
            if "compiled" not in name:
                raise
            print(f"{name}: torch.compile failed, timing eager only: {type(err).__name__}: "
                  f"{str(err).splitlines()[0][:200]}")
            steps.pop("ours compiled"), steps.pop("HF compiled", None)
            args.compile = False
            break
        warm[name] = time.perf_counter() - t0
    times = _median_rounds(list(steps.values()), args.steps)
    peak = max(peak, matmul_flops(device, peak_dtype))  # measured before and after: keep the better
    print(f"measured {dtype_name} matmul rate: {peak / 1e9:,.0f} GFLOP/s (best of before/after); "
          f"model: {fpt / 1e6:,.0f} MFLOP/token per training step (6N + 12LTC)")
    label = f"the {dtype_name} matmul rate" + (" (MFU)" if device.type == "cuda" else "")
    results = {}
    for name, t in zip(steps, times):
        med = statistics.median(t)
        results[name] = dict(ms_per_step=med * 1000, tok_s=B * T / med, warmup_s=warm[name],
                             mfu=fpt * B * T / med / peak)
    ratio = _report("ours", "HF", times[0], times[1], B * T, fpt, peak, label)
    ratios = {"eager": ratio}
    if args.compile:
        print(f"ours/HF tok/s = {ratio:.2f} (eager, median of {args.steps} pairs)")
        ratios["compiled"] = _report("ours compiled", "HF compiled", times[2], times[3], B * T, fpt,
                                     peak, label)
        label_last = "compiled, "
    else:
        label_last = ""
    if args.json:
        _write_json(args.json, dict(
            benchmark="train", device=str(device), device_name=_device_name(device).strip(" ()"),
            torch=torch.__version__, preset=args.preset, params=ours.num_params(), batch_size=B,
            context_length=T, dtype=args.dtype, dropout=args.dropout, optimizer=args.optimizer,
            pad_vocab=args.pad_vocab, steps=args.steps, warmup=args.warmup,
            peak_flops=peak, peak_dtype=dtype_name, flops_per_token=fpt, results=results,
            ratios_ours_over_hf=ratios))
    ratio = ratios["compiled" if args.compile else "eager"]
    print(f"ours/HF tok/s = {ratio:.2f} ({label_last}median of {args.steps} pairs)")
    return ratio


def bench_fastpath(args) -> dict:
    """Chapter 11's ladder: one training step as each part of the fast path is added."""
    from gpt2scratch.scale import ladder, time_fast_paths

    device = torch.device(args.device)
    config = GPT2Config.preset(args.preset, dropout=args.dropout, context_length=args.context_length,
                               **_layers(args))
    paths = ladder(*args.rungs)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_flops(device, peak_dtype)
    print(f"device {device}{_device_name(device)}, torch {torch.__version__}, preset {args.preset}, "
          f"B={args.batch_size}, T={args.context_length}, dropout {args.dropout}; "
          f"{str(peak_dtype).removeprefix('torch.')} matmul rate {peak / 1e9:,.0f} GFLOP/s")
    results = time_fast_paths(config, paths, batch_size=args.batch_size, device=device,
                              rounds=args.steps, warmup=args.warmup, peak=peak)
    for name, r in results.items():
        print(f"{name:<38} {r['seconds'] * 1000:9.1f} ms/step {r['tok_s']:10.0f} tok/s "
              f"MFU {r['mfu']:6.1%}  x{r['speedup']:.2f} (first calls {r['warmup_s']:.1f} s)")
    if args.json:
        _write_json(args.json, dict(
            benchmark="fastpath", device=str(device), device_name=_device_name(device).strip(" ()"),
            torch=torch.__version__, preset=args.preset, batch_size=args.batch_size,
            context_length=args.context_length, dropout=args.dropout, rounds=args.steps,
            warmup=args.warmup, peak_flops=peak, peak_dtype=str(peak_dtype).removeprefix("torch."),
            results=results))
    last = list(results)[-1]
    print(f"fast path MFU = {results[last]['mfu']:.1%} ({last.lstrip('+ ')}, median of {args.steps} rounds)")
    return results


# ---------------------------------------------------------------------------------------------
# bench generate
# ---------------------------------------------------------------------------------------------
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


def matmuls_alone_seconds(model: GPT2, reps: int = 5) -> float:
    """Seconds of one batch-1 step's matrix products and nothing else: F.linear of a
    one-row input through every nn.Linear of `model` in turn, lm_head included (best of
    `reps`). The ceiling that this BLAS's matrix-vector kernel puts on any model here."""
    w = model.lm_head.weight
    inputs = {n: torch.randn(1, n, device=w.device, dtype=w.dtype)
              for n in {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}}
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

    def chain() -> float:
        _sync(w.device)
        t0 = time.perf_counter()
        for m in linears:
            F.linear(inputs[m.in_features], m.weight, m.bias)
        _sync(w.device)
        return time.perf_counter() - t0

    with torch.no_grad():
        chain()  # warm-up
        return min(chain() for _ in range(reps))


def _generate_contenders(ours: GPT2, hf, prompt: torch.Tensor, n: int, on_gpu: bool) -> dict:
    """The greedy generate() calls that bench generate times, by name; each returns the ids."""
    from gpt2scratch.generation import StaticDecoder

    def hf_generate(**kw):
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                           min_new_tokens=n, do_sample=False, **kw)

    contenders = {}
    if not on_gpu:
        contenders["no cache"] = lambda: ours.generate(prompt, n, temperature=0, use_cache=False)
    contenders["ours"] = lambda: ours.generate(prompt, n, temperature=0)
    if on_gpu:
        def ours_static():
            if not hasattr(ours_static, "decoder"):  # captures the CUDA graph once
                ours_static.decoder = StaticDecoder(ours, max_len=prompt.shape[1] + n)
            return ours_static.decoder.generate(prompt, n, temperature=0)

        contenders["ours static+graph"] = ours_static
    contenders["HF"] = lambda: hf_generate(use_cache=True)
    if on_gpu:
        contenders["HF static"] = lambda: hf_generate(cache_implementation="static")
    return contenders


def bench_generate(args) -> float:
    """Greedy generation at batch 1, tok/s: ours without and with the KV cache and HF generate()."""
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    dtypes = args.dtypes  # ["fp32"], ["bf16"] or both, from --precision
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=0.0, **_layers(args))
    base = GPT2(config).eval()
    n, figures = args.new_tokens, {}
    print(f"device {device}{_device_name(device)}, {torch.get_num_threads()} threads, preset {args.preset} "
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
        contenders = _generate_contenders(ours, hf, prompt, n, on_gpu)
        outs, skipped = {}, {}
        for name, fn in list(contenders.items()):
            try:  # the first call also compiles / captures; a failure drops that contender only
                with torch.no_grad():
                    outs[name] = fn()
            except Exception as err:  # noqa: BLE001 - report it and go on with the others
                if name in ("ours", "HF"):
                    raise
                skipped[name] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                print(f"[{dtype_name}] skipped {name}: {skipped[name]}")
                del contenders[name]
        same = all(torch.equal(out, outs["HF"]) for out in outs.values())
        print(f"[{dtype_name}] same weights: greedy continuations identical: {same}"
              + ("" if same else " (" + ", ".join(f"{k}: {torch.equal(v, outs['HF'])}" for k, v in outs.items()) + ")"))

        def timed(fn):
            def run() -> float:
                _sync(device)
                t0 = time.perf_counter()
                with torch.no_grad():
                    fn()
                _sync(device)
                return time.perf_counter() - t0
            return run

        fns = [timed(fn) for fn in contenders.values()]
        _median_rounds(fns, args.warmup)
        times = dict(zip(contenders, _median_rounds(fns, args.steps)))
        weight_bytes = matmul_weight_bytes(ours, 2 if dtype_name == "bf16" else 4)
        bound = bandwidth / weight_bytes
        print(f"[{dtype_name}] matmul weights {weight_bytes / 1e6:.1f} MB read per token "
              f"-> bandwidth bound {bound:.1f} tok/s")
        alone = matmuls_alone_seconds(ours)
        print(f"[{dtype_name}] the matmuls alone (F.linear through every weight, batch 1): "
              f"{1 / alone:.1f} tok/s = {1 / alone / bound:.1%} of the bound; they read "
              f"{weight_bytes / alone / 1e9:.1f} GB/s")
        row = {}
        for name, ts in times.items():
            tok_s = n / statistics.median(ts)
            row[name] = {"tok_s": tok_s, "seconds": ts, "fraction_of_bound": tok_s / bound}
            print(f"[{dtype_name}] {name:>17}: median {statistics.median(ts) * 1000:8.1f} ms/call "
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
        del ours, hf, contenders, fns
    if args.json:
        import transformers

        _write_json(args.json, {
            "benchmark": "generate", "device": str(device) + _device_name(device), "preset": args.preset,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "prompt_tokens": args.prompt_tokens, "new_tokens": n,
            "steps": args.steps, "read_bandwidth_bytes_s": bandwidth, "results": figures})
    print(f"ours/HF tok/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio


# ---------------------------------------------------------------------------------------------
# bench precision (chapter 11): fp32 against bf16 on this device
# ---------------------------------------------------------------------------------------------
def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux, else what `platform` knows."""
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _timer(fn, device: torch.device):
    """`fn` as a function that returns the seconds of one call (without autograd)."""
    def run() -> float:
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        _sync(device)
        return time.perf_counter() - t0

    return run


def _generate_timers(base: GPT2, prompt: torch.Tensor, n: int) -> dict:
    """Greedy generate() of `n` tokens, ours and HF's twin, with the weights in fp32 and in
    bf16, as {name: a function that returns its seconds}."""
    timers = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ours = GPT2(base.config).to(prompt.device).eval()
        ours.load_state_dict(base.state_dict())
        hf = hf_twin(ours.to(dtype)).to(dtype).eval()
        timers[f"ours {name}"] = _timer(
            lambda m=ours: m.generate(prompt, n, temperature=0), prompt.device)
        timers[f"HF {name}"] = _timer(lambda m=hf: m.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
            do_sample=False), prompt.device)
    return timers


def _median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median over rounds of slow / fast: how many times faster `fast` ran, round by round."""
    return statistics.median(s / f for s, f in zip(slow, fast))


def bench_precision(args) -> dict:
    """fp32 against bf16 on this device, each pair interleaved in one process: one matmul, one
    training step (bf16 autocast, chapter 11's FastPath), greedy generation (the weights in
    bf16), ours and HF's; and what --precision auto picks here, and why."""
    import datetime

    from gpt2scratch.scale import FastPath, cpu_bf16_flags, resolve_precision, time_fast_paths

    device, rounds = torch.device(args.device), args.steps
    flags, (auto, why) = cpu_bf16_flags(), resolve_precision("auto", device)
    auto = "bf16" if auto == torch.bfloat16 else "fp32"
    where = cpu_name() + _device_name(device)
    print(f"{where}, {torch.get_num_threads()} threads, torch {torch.__version__}; CPU flags: "
          + ", ".join(f"{k} {v}" for k, v in flags.items()) + f"; --precision auto: {auto} ({why})")
    n = args.matmul_size
    mats = {k: [torch.randn(n, n, device=device).to(d) for _ in range(2)]
            for k, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    timers = [_timer(lambda a=a, b=b: a @ b, device) for a, b in mats.values()]
    _median_rounds(timers, max(1, args.warmup))
    times = dict(zip(mats, _median_rounds(timers, 2 * rounds)))
    matmul = {f"{k}_flops": 2 * n**3 / min(t) for k, t in times.items()}
    matmul.update(n=n, rounds=2 * rounds, speedup=_median_ratio(times["fp32"], times["bf16"]))
    print(f"matmul {n}x{n}: fp32 {matmul['fp32_flops'] / 1e9:,.0f} GFLOP/s, bf16 "
          f"{matmul['bf16_flops'] / 1e9:,.0f} GFLOP/s (best of {2 * rounds}); bf16 x"
          f"{matmul['speedup']:.2f} (median of the per-round ratios)")
    del mats, timers
    B, T = args.batch_size, args.context_length
    config = GPT2Config.preset(args.preset, dropout=args.dropout, context_length=T, **_layers(args))
    steps = time_fast_paths(config, {"fp32": FastPath(), "bf16 autocast": FastPath(bf16=True)},
                            batch_size=B, device=device, rounds=rounds, warmup=args.warmup)
    for k, r in steps.items():
        print(f"train step ({args.preset}, B={B}, T={T}, dropout {args.dropout}, fused AdamW, "
              f"loss in fp32) {k:<13}: {r['seconds'] * 1000:8.1f} ms {r['tok_s']:8.0f} tok/s")
    figures = dict(
        benchmark="precision", date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        cpu=cpu_name(), device=str(device) + _device_name(device), cpu_flags=flags,
        auto=dict(precision=auto, why=why), torch=torch.__version__,
        threads=torch.get_num_threads(), matmul=matmul,
        train_step=dict(preset=args.preset, batch_size=B, context_length=T, dropout=args.dropout,
                        rounds=rounds, results=steps))
    if not args.no_generate:
        import transformers

        torch.manual_seed(0)
        base = GPT2(GPT2Config.preset(args.preset, dropout=0.0, **_layers(args))).eval()
        prompt = torch.randint(0, base.config.vocab_size, (1, args.prompt_tokens), device=device)
        timers = _generate_timers(base, prompt, args.new_tokens)
        _median_rounds(list(timers.values()), args.warmup)
        t = dict(zip(timers, _median_rounds(list(timers.values()), rounds)))
        gen = {k: dict(tok_s=args.new_tokens / statistics.median(v), seconds=v) for k, v in t.items()}
        gen.update({"ours bf16/fp32": _median_ratio(t["ours fp32"], t["ours bf16"]),
                    "HF bf16/fp32": _median_ratio(t["HF fp32"], t["HF bf16"]),
                    "ours/HF fp32": _median_ratio(t["HF fp32"], t["ours fp32"]),
                    "ours/HF bf16": _median_ratio(t["HF bf16"], t["ours bf16"])})
        print(f"greedy generation ({args.preset}, batch 1, {args.prompt_tokens} + "
              f"{args.new_tokens} tokens): " + ", ".join(
                  f"{k} {v['tok_s']:.1f}" for k, v in gen.items() if isinstance(v, dict))
              + " tok/s; " + ", ".join(f"{k} {v:.2f}" for k, v in gen.items() if
                                       not isinstance(v, dict)))
        figures["generate"] = dict(preset=args.preset, prompt_tokens=args.prompt_tokens,
                                   new_tokens=args.new_tokens, rounds=rounds,
                                   transformers=transformers.__version__, results=gen)
    if args.json:
        _write_json(args.json, figures)
    print(f"bf16/fp32 training-step speed = {steps['bf16 autocast']['speedup']:.2f} "
          f"(median of {rounds} rounds)")
    return figures


# ---------------------------------------------------------------------------------------------
# bench backward (chapter 6): the hand-written backward against autograd
# ---------------------------------------------------------------------------------------------
def _backward_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--preset", default="124M", help=f"model size, a GPT2Config preset: {', '.join(PRESETS)}")
    p.add_argument("--layers", type=int, default=None, help="override the preset's n_layers (quick smoke runs)")
    p.add_argument("--steps", type=int, default=10, help="timed pairs (hand, autograd)")
    p.add_argument("--warmup", type=int, default=1, help="untimed pairs first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--context-length", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1, help="as in training (default 0.1)")
    p.add_argument("--no-memory", action="store_true", help="skip the two peak-memory subprocesses")
    p.add_argument("--side", choices=["hand", "autograd"], default=None, help=argparse.SUPPRESS)


def _backward_setup(args):
    """The model (train mode), one fused torch AdamW, a batch, and the two backward functions."""
    from gpt2scratch.backprop import manual_backward  # lazy: chapter 6's module
    from gpt2scratch.train import autograd_backward

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=args.dropout, context_length=args.context_length,
                               **_layers(args))
    model = GPT2(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1, fused=True)
    x = torch.randint(0, config.vocab_size, (args.batch_size, args.context_length + 1), device=device)
    return model, opt, x[:, :-1], x[:, 1:], {"hand": manual_backward, "autograd": autograd_backward}


def _backward_step(model, opt, inputs, targets, backward, device) -> float:
    """One training step (zero_grad, forward + backward, AdamW step); returns its seconds."""
    _sync(device)
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    backward(model, inputs, targets)
    opt.step()
    _sync(device)
    return time.perf_counter() - t0


def _backward_peak(args) -> None:
    """Child process: `--warmup` + 1 steps of one side; print the peak resident memory."""
    import resource

    model, opt, inputs, targets, sides = _backward_setup(args)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    for _ in range(args.warmup + 1):  # AdamW's state appears in the first, so 2 steps suffice
        _backward_step(model, opt, inputs, targets, sides[args.side], torch.device(args.device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_mib {peak:.1f} base_mib {base:.1f}")


def _peak_in_subprocess(argv: list[str], side: str) -> tuple[float, float]:
    """(peak, before the first step) in MiB, from a fresh process that runs one side only."""
    import subprocess

    cmd = [sys.executable, "-m", "gpt2scratch", "bench", "backward", *argv, "--side", side]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    return float(out[-3]), float(out[-1])


def bench_backward(args, argv: list[str]) -> float:
    if args.side is not None:
        _backward_peak(args)
        return 0.0
    device = torch.device(args.device)
    model, opt, inputs, targets, sides = _backward_setup(args)
    B, T = inputs.shape
    print(f"device {device}, {torch.get_num_threads()} threads, preset {args.preset} "
          f"({model.num_params():,} params), B={B}, T={T}, fp32, dropout {args.dropout}; "
          "one training step = zero_grad + forward + backward + fused torch AdamW step")
    if hasattr(os, "getloadavg"):  # a shared machine slows both sides; the ratio is what counts
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.no_memory:
        peaks = {side: _peak_in_subprocess(argv, side) for side in sides}
        (hand, hand0), (auto, auto0) = peaks["hand"], peaks["autograd"]
        print(f"peak memory (ru_maxrss, a fresh process per side, {args.warmup + 1} steps): "
              f"hand {hand:,.0f} MiB, autograd {auto:,.0f} MiB; hand/autograd = {hand / auto:.2f}")
        print(f"  above the model and batch ({hand0:,.0f} / {auto0:,.0f} MiB before the first step; "
              f"AdamW's state included): hand {hand - hand0:,.0f} MiB, autograd {auto - auto0:,.0f} MiB; "
              f"hand/autograd = {(hand - hand0) / (auto - auto0):.2f}")
    steps = {side: (lambda fn=fn: _backward_step(model, opt, inputs, targets, fn, device))
             for side, fn in sides.items()}
    for _ in range(args.warmup):
        steps["hand"](), steps["autograd"]()
    t_hand, t_auto = _median_pairs(steps["hand"], steps["autograd"], args.steps)
    ratio = _report("hand", "autograd", t_hand, t_auto, B * T, None, None, "")
    print(f"hand/autograd steps/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2scratch bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("train", "time training steps: ours vs transformers.GPT2LMHeadModel"),
                           ("generate", "time greedy generation: ours vs transformers' generate()"),
                           ("fastpath", "time our training step as each part of chapter 11's fast path is "
                                        "added"),
                           ("precision", "time fp32 against bf16: a matmul, a training step (autocast) "
                                         "and generation (bf16 weights), ours and HF's (chapter 11)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        p.add_argument("--preset", default="124M",
                       help=f"model size, a GPT2Config preset: {', '.join(PRESETS)}")
        p.add_argument("--layers", type=int, default=None, help="override the preset's n_layers (quick smoke runs)")
        p.add_argument("--steps", type=int, default=10, help="timed pairs (ours, HF)")
        p.add_argument("--warmup", type=int, default=2, help="untimed pairs first")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    for train in (sub.choices["train"], sub.choices["fastpath"], sub.choices["precision"]):
        train.add_argument("--batch-size", type=int, default=None, help="default 2 on cpu, 16 on cuda")
        train.add_argument("--context-length", type=int, default=None,
                           help="tokens per row; default 256 on cpu, 1024 on cuda")
        train.add_argument("--dropout", type=float, default=0.1)
        train.add_argument("--json", metavar="PATH", default=None, help="also write the figures to PATH")
    fastpath = sub.choices["fastpath"]
    fastpath.add_argument("--rungs", default=None, metavar="A:B",
                          help="time only rungs A..B-1 of the ladder (scale.LADDER), e.g. 4:6")
    train = sub.choices["train"]
    train.add_argument("--precision", default=None, metavar="fp32|bf16|auto",
                       help="bf16 = autocast; auto = bf16 where the CPU has bf16 units or the GPU "
                            "supports bf16 (as python -m gpt2scratch train); default fp32 on cpu, "
                            "bf16 on cuda, so that CPU figures compare across machines")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="also time both models under torch.compile (default: on cuda only)")
    train.add_argument("--pad-vocab", action=argparse.BooleanOptionalAction, default=None,
                       help="ours: LM head padded to a multiple of 128 (default: on cuda only)")
    train.add_argument("--optimizer", choices=["fused", "foreach", "forloop"], default="fused",
                       help="AdamW implementation, the same for both models")
    gen = sub.choices["generate"]
    gen.add_argument("--prompt-tokens", type=int, default=16)
    gen.add_argument("--new-tokens", type=int, default=None, help="default 32 on cpu, 128 on cuda")
    gen.add_argument("--precision", default=None, metavar="fp32|bf16|auto|both",
                     help="weights and cache dtype: fp32, bf16, auto (bf16 where the CPU has bf16 "
                          "units or the GPU supports bf16), or both in turn; default fp32 on cpu, "
                          "both on cuda")
    gen.add_argument("--json", metavar="PATH", default=None, help="also write the figures to PATH")
    precision = sub.choices["precision"]
    precision.add_argument("--matmul-size", type=int, default=2048, metavar="N",
                           help="the timed matmul is N x N by N x N (default 2048)")
    precision.add_argument("--prompt-tokens", type=int, default=16)
    precision.add_argument("--new-tokens", type=int, default=32)
    precision.add_argument("--no-generate", action="store_true", help="skip the generation timing")
    _backward_options(sub.add_parser("backward", help="time training steps: chapter 6's hand-written "
                                                      "backward vs autograd, and their peak memory"))
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    for name in ("layers", "batch_size", "context_length", "prompt_tokens", "new_tokens", "matmul_size"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    # a bad --preset, --layers or --dropout raises ValueError: one line (python -m gpt2scratch)
    config = GPT2Config.preset(args.preset, dropout=getattr(args, "dropout", 0.0), **_layers(args))
    if args.command in ("train", "precision") and (args.context_length or 0) > config.context_length:
        parser.error(f"--context-length {args.context_length} is longer than preset {args.preset}'s "
                     f"context of {config.context_length} tokens")
    if args.command == "backward":
        bench_backward(args, list(sys.argv[1:] if argv is None else argv)[1:])
        return 0
    on_gpu = args.device == "cuda"
    if args.command in ("train", "generate") or (args.command == "precision" and not args.no_generate):
        importlib.import_module("transformers")  # the peer they time ours against: fail now, not minutes in
    if args.command in ("train", "fastpath", "precision"):
        args.batch_size = args.batch_size or (16 if on_gpu else 2)
        args.context_length = args.context_length or (1024 if on_gpu else 256)
    if args.command in ("train", "generate"):  # a bad --precision is one line (ValueError)
        from gpt2scratch.scale import resolve_precision

        gpu_default = "bf16" if args.command == "train" else "both"
        args.precision = args.precision or (gpu_default if on_gpu else "fp32")
        both = args.command == "generate" and args.precision == "both"
        dtype, why = resolve_precision("bf16" if both else args.precision, args.device)
        args.dtypes = ["bf16", "fp32"] if both else ["bf16" if dtype == torch.bfloat16 else "fp32"]
        args.dtype, args.precision_why = args.dtypes[0], "both in turn" if both else why
    if args.command == "train":
        args.compile = on_gpu if args.compile is None else args.compile
        args.pad_vocab = on_gpu if args.pad_vocab is None else args.pad_vocab
        bench_train(args)
    elif args.command == "fastpath":
        try:
            start, _, stop = (args.rungs or ":").partition(":")
            args.rungs = (int(start) if start else 0, int(stop) if stop else None)
        except ValueError:
            parser.error(f"--rungs must look like 4:6, got {args.rungs!r}")
        from gpt2scratch.scale import ladder

        if not ladder(*args.rungs):
            parser.error(f"--rungs {start}:{stop} selects no rung of the ladder")
        bench_fastpath(args)
    elif args.command == "precision":
        bench_precision(args)
    else:
        args.new_tokens = args.new_tokens or (128 if on_gpu else 32)
        if args.prompt_tokens < 1 or args.new_tokens < 1:
            parser.error(f"--prompt-tokens and --new-tokens must be >= 1, got {args.prompt_tokens} "
                         f"and {args.new_tokens}")
        bench_generate(args)
    return 0


if __name__ == "__main__":  # through the command line's error handling
    from gpt2scratch.__main__ import main as cli

    sys.exit(cli(["bench", *sys.argv[1:]]))
