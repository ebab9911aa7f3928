"""Benchmarks: our GPT-2 against Hugging Face `transformers`, interleaved in one process.

    python -m gpt2scratch bench train    [--device cpu|cuda] [--steps 10] [--batch-size 2] [--context-length 256]
    python -m gpt2scratch bench generate [--device cpu|cuda] [--steps 5] [--new-tokens 32]

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

    def make_step(model, forward):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                **{args.optimizer: True} if args.optimizer != "forloop" else {"foreach": False})

        def step() -> float:
            _sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
                logits = forward(inputs)  # (B, T, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
            loss.backward()
            opt.step()
            _sync(device)
            return time.perf_counter() - t0

        return step

    step_ours = make_step(ours, ours)
    step_hf = make_step(hf, lambda idx: hf(input_ids=idx).logits)

    peak_dtype = amp_dtype or torch.float32
    dtype_name = str(peak_dtype).removeprefix("torch.")
    peak = matmul_flops(device, peak_dtype)
    fpt = train_flops_per_token(ours, T)
    print(f"device {device}, {torch.get_num_threads()} threads, preset {args.preset} "
          f"({ours.num_params():,} params), B={B}, T={T}, {args.dtype}, dropout {args.dropout}, "
          f"AdamW ({args.optimizer}); loss = F.cross_entropy on the same logits/targets for both")
    for _ in range(args.warmup):
        step_ours(), step_hf()
    t_ours, t_hf = _median_pairs(step_ours, step_hf, args.steps)
    peak = max(peak, matmul_flops(device, peak_dtype))  # measured before and after: keep the better
    print(f"measured {dtype_name} matmul rate: {peak / 1e9:,.0f} GFLOP/s (best of before/after); "
          f"model: {fpt / 1e6:,.0f} MFLOP/token per training step (6N + 12LTC)")
    label = f"the {dtype_name} matmul rate" + (" (MFU)" if device.type == "cuda" else "")
    ratio = _report("ours", "HF", t_ours, t_hf, B * T, fpt, peak, label)
    print(f"ours/HF tok/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio


# ---------------------------------------------------------------------------------------------
# bench generate
# ---------------------------------------------------------------------------------------------
def bench_generate(args) -> float:
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = GPT2Config.preset(args.preset, dropout=0.0, **_layers(args))
    ours = GPT2(config).to(device).eval()
    hf = hf_twin(ours).eval()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_tokens), device=device)
    n = args.new_tokens

    def gen_ours():
        return ours.generate(prompt, n, temperature=0)

    def gen_hf(use_cache):
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, use_cache=use_cache)

    same = torch.equal(gen_ours(), gen_hf(True))
    print(f"same weights: greedy continuations identical: {same}")

    def timed(fn):
        def run() -> float:
            _sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            _sync(device)
            return time.perf_counter() - t0
        return run

    print(f"device {device}, {torch.get_num_threads()} threads, preset {args.preset}, greedy, prompt {args.prompt_tokens} tokens, {n} new tokens")
    for _ in range(args.warmup):
        timed(gen_ours)(), timed(lambda: gen_hf(True))(), timed(lambda: gen_hf(False))()
    t_ours, t_nocache = _median_pairs(timed(gen_ours), timed(lambda: gen_hf(False)), args.steps)
    r_nocache = _report("ours", "HF-no-KV-cache", t_ours, t_nocache, n, None, None, "", unit="call")
    print(f"ours/HF(use_cache=False) tok/s = {r_nocache:.2f} (same algorithm: full recompute each token)")
    t_ours, t_hf = _median_pairs(timed(gen_ours), timed(lambda: gen_hf(True)), args.steps)
    ratio = _report("ours", "HF", t_ours, t_hf, n, None, None, "", unit="call")
    print("(ours has no KV cache yet: chapter 8 adds one; HF's generate uses its cache by default)")
    print(f"ours/HF tok/s = {ratio:.2f} (median of {args.steps} pairs)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2scratch bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("train", "time training steps: ours vs transformers.GPT2LMHeadModel"),
                           ("generate", "time greedy generation: ours vs transformers' generate()")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        p.add_argument("--preset", default="124M",
                       help=f"model size, a GPT2Config preset: {', '.join(PRESETS)}")
        p.add_argument("--layers", type=int, default=None, help="override the preset's n_layers (quick smoke runs)")
        p.add_argument("--steps", type=int, default=10, help="timed pairs (ours, HF)")
        p.add_argument("--warmup", type=int, default=2, help="untimed pairs first")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    train = sub.choices["train"]
    train.add_argument("--batch-size", type=int, default=None, help="default 2 on cpu, 16 on cuda")
    train.add_argument("--context-length", type=int, default=None, help="tokens per row; default 256 on cpu, 1024 on cuda")
    train.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="bf16 = autocast; default fp32 on cpu, bf16 on cuda")
    train.add_argument("--dropout", type=float, default=0.1)
    train.add_argument("--optimizer", choices=["fused", "foreach", "forloop"], default="fused",
                       help="AdamW implementation, the same for both models")
    gen = sub.choices["generate"]
    gen.add_argument("--prompt-tokens", type=int, default=16)
    gen.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.command == "train":
        on_gpu = args.device == "cuda"
        args.batch_size = args.batch_size or (16 if on_gpu else 2)
        args.context_length = args.context_length or (1024 if on_gpu else 256)
        args.dtype = args.dtype or ("bf16" if on_gpu else "fp32")
        bench_train(args)
    else:
        bench_generate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
