"""`python -m gpt2scratch bench train` and `bench fastpath` (hand-written): training steps timed.

`bench train` times our training step against `transformers.GPT2LMHeadModel`'s, with the same
weights and the same loss, in pairs; `bench fastpath` times chapter 11's ladder, one training
step as each part of the fast path is added. Both report MFU against the matmul rate that
chapter 11's `matmul_rate` measures on the same device, in the same precision.
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from gpt2scratch.bench_common import (device_name, hf_twin, median_rounds, preset_layers,
                                      report, write_json)
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.scale import (FastGPT2, _sync, ladder, matmul_rate, mfu, time_fast_paths,
                               train_flops_per_token)

__all__ = ["bench_train", "bench_fastpath"]


def bench_train(args) -> float:
    """Training steps, ours against HF's twin (and both compiled, if asked), interleaved in
    rounds; prints MFU against the measured matmul rate and returns the ours/HF ratio."""
    device = torch.device(args.device)
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16}[args.dtype]
    B, T = args.batch_size, args.context_length
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=args.dropout, **preset_layers(args))
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
    peak = matmul_rate(device, peak_dtype)  # chapter 11's peak, in the step's precision
    fpt = train_flops_per_token(config, T)
    pad = f"ours: LM head padded to {ours_module.padded_size}" if args.pad_vocab else "no padding"
    print(f"device {device}{device_name(device)}, {torch.get_num_threads()} threads, torch "
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
    times = median_rounds(list(steps.values()), args.steps)
    peak = max(peak, matmul_rate(device, peak_dtype))  # measured before and after: keep the better
    print(f"measured {dtype_name} matmul rate: {peak / 1e9:,.0f} GFLOP/s (best of before/after); "
          f"model: {fpt / 1e6:,.0f} MFLOP/token per training step (6N + 12LTC)")
    label = f"the {dtype_name} matmul rate" + (" (MFU)" if device.type == "cuda" else "")
    results = {}
    for name, t in zip(steps, times):
        med = statistics.median(t)
        results[name] = dict(ms_per_step=med * 1000, tok_s=B * T / med, warmup_s=warm[name],
                             mfu=mfu(B * T / med, fpt, peak))
    ratio = report("ours", "HF", times[0], times[1], B * T, fpt, peak, label)
    ratios = {"eager": ratio}
    if args.compile:
        print(f"ours/HF tok/s = {ratio:.2f} (eager, median of {args.steps} pairs)")
        ratios["compiled"] = report("ours compiled", "HF compiled", times[2], times[3], B * T, fpt,
                                    peak, label)
        label_last = "compiled, "
    else:
        label_last = ""
    if args.json:
        write_json(args.json, dict(
            benchmark="train", device=str(device), device_name=device_name(device).strip(" ()"),
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
    device = torch.device(args.device)
    config = GPT2Config.preset(args.preset, dropout=args.dropout, context_length=args.context_length,
                               **preset_layers(args))
    paths = ladder(*args.rungs)
    peak_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_rate(device, peak_dtype)
    print(f"device {device}{device_name(device)}, torch {torch.__version__}, preset {args.preset}, "
          f"B={args.batch_size}, T={args.context_length}, dropout {args.dropout}; "
          f"{str(peak_dtype).removeprefix('torch.')} matmul rate {peak / 1e9:,.0f} GFLOP/s")
    results = time_fast_paths(config, paths, batch_size=args.batch_size, device=device,
                              rounds=args.steps, warmup=args.warmup, peak=peak)
    for name, r in results.items():
        print(f"{name:<38} {r['seconds'] * 1000:9.1f} ms/step {r['tok_s']:10.0f} tok/s "
              f"MFU {r['mfu']:6.1%}  x{r['speedup']:.2f} (first calls {r['warmup_s']:.1f} s)")
    if args.json:
        write_json(args.json, dict(
            benchmark="fastpath", device=str(device), device_name=device_name(device).strip(" ()"),
            torch=torch.__version__, preset=args.preset, batch_size=args.batch_size,
            context_length=args.context_length, dropout=args.dropout, rounds=args.steps,
            warmup=args.warmup, peak_flops=peak, peak_dtype=str(peak_dtype).removeprefix("torch."),
            results=results))
    last = list(results)[-1]
    print(f"fast path MFU = {results[last]['mfu']:.1%} ({last.lstrip('+ ')}, median of {args.steps} rounds)")
    return results

