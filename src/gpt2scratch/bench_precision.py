"""`python -m gpt2scratch bench precision` (hand-written): fp32 against bf16 on this device.

Chapter 11's CPU section reads its figures (`benchmarks/cpu_bf16.json`): a matmul, a training
step under bf16 autocast, and greedy generation with the weights in bf16, ours and Hugging
Face's, each pair interleaved in one process; and what `--precision auto` picks here, and why.
"""
from __future__ import annotations

import statistics

import torch

from gpt2scratch.bench_common import (device_name, hf_twin, median_ratio, median_rounds,
                                      preset_layers, timer, write_json)
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.scale import (PEAK_MATMUL_N, FastPath, cpu_bf16_flags, resolve_precision,
                               time_fast_paths)

__all__ = ["cpu_name", "bench_precision"]


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux, else what `platform` knows."""
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text(errors="replace").splitlines() if cpuinfo.is_file() else []
    names = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _generate_timers(base: GPT2, prompt: torch.Tensor, n: int) -> dict:
    """Greedy generate() of `n` tokens, ours and HF's twin, with the weights in fp32 and in
    bf16, as {name: a function that returns its seconds}."""
    timers = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ours = GPT2(base.config).to(prompt.device).eval()
        ours.load_state_dict(base.state_dict())
        hf = hf_twin(ours.to(dtype)).to(dtype).eval()
        timers[f"ours {name}"] = timer(
            lambda m=ours: m.generate(prompt, n, temperature=0), prompt.device)
        timers[f"HF {name}"] = timer(lambda m=hf: m.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
            do_sample=False), prompt.device)
    return timers


def bench_precision(args) -> dict:
    """fp32 against bf16 on this device, each pair interleaved in one process: one matmul, one
    training step (bf16 autocast, chapter 11's FastPath), greedy generation (the weights in
    bf16), ours and HF's; and what --precision auto picks here, and why."""
    import datetime

    device, rounds = torch.device(args.device), args.steps
    flags, (auto, why) = cpu_bf16_flags(), resolve_precision("auto", device)
    auto = "bf16" if auto == torch.bfloat16 else "fp32"
    where = cpu_name() + device_name(device)
    print(f"{where}, {torch.get_num_threads()} threads, torch {torch.__version__}; CPU flags: "
          + ", ".join(f"{k} {v}" for k, v in flags.items()) + f"; --precision auto: {auto} ({why})")
    n = args.matmul_size or PEAK_MATMUL_N["cuda" if device.type == "cuda" else "cpu"]
    mats = {k: [torch.randn(n, n, device=device).to(d) for _ in range(2)]
            for k, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    timers = [timer(lambda a=a, b=b: a @ b, device) for a, b in mats.values()]
    median_rounds(timers, max(1, args.warmup))
    times = dict(zip(mats, median_rounds(timers, 2 * rounds)))
    matmul = {f"{k}_flops": 2 * n**3 / min(t) for k, t in times.items()}
    matmul.update(n=n, rounds=2 * rounds, speedup=median_ratio(times["fp32"], times["bf16"]))
    print(f"matmul {n}x{n}: fp32 {matmul['fp32_flops'] / 1e9:,.0f} GFLOP/s, bf16 "
          f"{matmul['bf16_flops'] / 1e9:,.0f} GFLOP/s (best of {2 * rounds}); bf16 x"
          f"{matmul['speedup']:.2f} (median of the per-round ratios)")
    del mats, timers
    B, T = args.batch_size, args.context_length
    config = GPT2Config.preset(args.preset, dropout=args.dropout, context_length=T, **preset_layers(args))
    steps = time_fast_paths(config, {"fp32": FastPath(), "bf16 autocast": FastPath(bf16=True)},
                            batch_size=B, device=device, rounds=rounds, warmup=args.warmup)
    for k, r in steps.items():
        print(f"train step ({args.preset}, B={B}, T={T}, dropout {args.dropout}, fused AdamW, "
              f"loss in fp32) {k:<13}: {r['seconds'] * 1000:8.1f} ms {r['tok_s']:8.0f} tok/s")
    figures = dict(
        benchmark="precision", date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        cpu=cpu_name(), device=str(device) + device_name(device), cpu_flags=flags,
        auto=dict(precision=auto, why=why), torch=torch.__version__,
        threads=torch.get_num_threads(), matmul=matmul,
        train_step=dict(preset=args.preset, batch_size=B, context_length=T, dropout=args.dropout,
                        rounds=rounds, results=steps))
    if not args.no_generate:
        import transformers

        torch.manual_seed(0)
        base = GPT2(GPT2Config.preset(args.preset, dropout=0.0, **preset_layers(args))).eval()
        prompt = torch.randint(0, base.config.vocab_size, (1, args.prompt_tokens), device=device)
        timers = _generate_timers(base, prompt, args.new_tokens)
        median_rounds(list(timers.values()), args.warmup)
        t = dict(zip(timers, median_rounds(list(timers.values()), rounds)))
        gen = {k: dict(tok_s=args.new_tokens / statistics.median(v), seconds=v) for k, v in t.items()}
        gen.update({"ours bf16/fp32": median_ratio(t["ours fp32"], t["ours bf16"]),
                    "HF bf16/fp32": median_ratio(t["HF fp32"], t["HF bf16"]),
                    "ours/HF fp32": median_ratio(t["HF fp32"], t["ours fp32"]),
                    "ours/HF bf16": median_ratio(t["HF bf16"], t["ours bf16"])})
        print(f"greedy generation ({args.preset}, batch 1, {args.prompt_tokens} + "
              f"{args.new_tokens} tokens): " + ", ".join(
                  f"{k} {v['tok_s']:.1f}" for k, v in gen.items() if isinstance(v, dict))
              + " tok/s; " + ", ".join(f"{k} {v:.2f}" for k, v in gen.items() if
                                       not isinstance(v, dict)))
        figures["generate"] = dict(preset=args.preset, prompt_tokens=args.prompt_tokens,
                                   new_tokens=args.new_tokens, rounds=rounds,
                                   transformers=transformers.__version__, results=gen)
    if args.json:
        write_json(args.json, figures)
    print(f"bf16/fp32 training-step speed = {steps['bf16 autocast']['speedup']:.2f} "
          f"(median of {rounds} rounds)")
    return figures

