"""`python -m gpt2scratch bench backward` (hand-written): chapter 6's hand-written backward
against autograd, in pairs of training steps on the same model, and their peak memory, each side
in a fresh process (a process's peak only ever rises).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from gpt2scratch.bench_common import median_pairs, preset_layers, report
from gpt2scratch.model import PRESETS, GPT2, GPT2Config
from gpt2scratch.scale import _sync

__all__ = ["add_backward_options", "bench_backward"]


def add_backward_options(p: argparse.ArgumentParser) -> None:
    """The flags of `bench backward` (its own: it compares two backward passes, not two models)."""
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
                               **preset_layers(args))
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
    """Child process: `--warmup` + 1 steps of one side; print the peak memory (MiB)."""
    from gpt2scratch.measure import peak_memory_mb  # VmHWM: ru_maxrss counts the parent's

    device = torch.device(args.device)
    model, opt, inputs, targets, sides = _backward_setup(args)
    base = peak_memory_mb(device)
    for _ in range(args.warmup + 1):  # AdamW's state appears in the first, so 2 steps suffice
        _backward_step(model, opt, inputs, targets, sides[args.side], device)
    peak = peak_memory_mb(device)
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
        print(f"peak memory (resident high-water mark, a fresh process per side, {args.warmup + 1} steps): "
              f"hand {hand:,.0f} MiB, autograd {auto:,.0f} MiB; hand/autograd = {hand / auto:.2f}")
        print(f"  above the model and batch ({hand0:,.0f} / {auto0:,.0f} MiB before the first step; "
              f"AdamW's state included): hand {hand - hand0:,.0f} MiB, autograd {auto - auto0:,.0f} MiB; "
              f"hand/autograd = {(hand - hand0) / (auto - auto0):.2f}")
    steps = {side: (lambda fn=fn: _backward_step(model, opt, inputs, targets, fn, device))
             for side, fn in sides.items()}
    for _ in range(args.warmup):
        steps["hand"](), steps["autograd"]()
    t_hand, t_auto = median_pairs(steps["hand"], steps["autograd"], args.steps)
    ratio = report("hand", "autograd", t_hand, t_auto, B * T, None, None, "")
    print(f"hand/autograd steps/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio

