"""Benchmarks: our GPT-2 against Hugging Face `transformers`, interleaved in one process.

    python -m gpt2scratch bench train    [--device cpu|cuda] [--steps 10] [--batch-size 2] [--context-length 256]
    python -m gpt2scratch bench generate [--device cpu|cuda] [--steps 5] [--new-tokens 32]
    python -m gpt2scratch bench backward [--steps 10] [--no-memory]   (chapter 6: hand-written backward vs autograd)
    python -m gpt2scratch bench fastpath [--rungs 4:6] [--json PATH]   (chapter 11: the fast path's ladder)
    python -m gpt2scratch bench precision [--json benchmarks/cpu_bf16.json]   (chapter 11: fp32 vs bf16)

`--precision fp32|bf16|auto` (train, generate) means what it means for `python -m gpt2scratch train`.

Method (see CONTRIBUTING.md, "Benchmarks"): both models are built from the same config and hold the SAME
weights (ours are copied into HF's, transposing its Conv1D matrices), so they compute the same
function; the script checks that their logits agree. After a warm-up, it times pairs of steps,
alternating which model goes first, and reports the median over pairs of the per-pair speed ratio,
which cancels most of the drift a shared, noisy machine adds. The last line is the ratio.

Hand-written (not exported from a chapter). This module is the command: its flags and their
checks. Each benchmark lives in its own module: `bench_train` (train, fastpath),
`bench_generate`, `bench_precision`, `bench_backward`; what they share (HF's twin of our model,
timing in pairs and rounds, the report) in `bench_common`. The peak matmul rate and the FLOPs of a
training step are chapter 11's (`scale.matmul_rate`, `scale.train_flops_per_token`).
`transformers` is imported lazily: it is a benchmark/test dependency only.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import torch

from gpt2scratch.bench_backward import add_backward_options, bench_backward
from gpt2scratch.bench_common import preset_layers
from gpt2scratch.bench_generate import bench_generate
from gpt2scratch.bench_precision import bench_precision
from gpt2scratch.bench_train import bench_fastpath, bench_train
from gpt2scratch.model import PRESETS, GPT2Config
from gpt2scratch.scale import PEAK_MATMUL_N, ladder, resolve_precision


def build_parser() -> argparse.ArgumentParser:
    """`python -m gpt2scratch bench`'s flags: one subcommand per benchmark."""
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
    precision.add_argument("--matmul-size", type=int, default=None, metavar="N",
                           help="the timed matmul is N x N by N x N (default: scale.matmul_rate's, "
                                f"{PEAK_MATMUL_N['cpu']} on cpu, {PEAK_MATMUL_N['cuda']} on cuda)")
    precision.add_argument("--prompt-tokens", type=int, default=16)
    precision.add_argument("--new-tokens", type=int, default=32)
    precision.add_argument("--no-generate", action="store_true", help="skip the generation timing")
    add_backward_options(sub.add_parser("backward", help="time training steps: chapter 6's hand-written "
                                                         "backward vs autograd, and their peak memory"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and check the flags, then run the benchmark they name."""
    parser = build_parser()
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
    config = GPT2Config.preset(args.preset, dropout=getattr(args, "dropout", 0.0), **preset_layers(args))
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
