# Generated from chapters/11_scaling.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/11_scaling.ipynb cell 4
"""Scaling up: the fast path on one device, and what it is measured against.

Generated from chapter 11 of the book. The fast path (bf16 autocast, flash attention,
torch.compile, fused AdamW, a vocabulary padded to a multiple of 128, gradient
accumulation) plugs into `trainer.train_run()` through its `wrap=` and `backward=`
seams; FLOPs per
token, the peak matmul rate and MFU measure it. Many processes: `gpt2scratch.ddp`.
"""

from __future__ import annotations

__all__ = [
    "train_flops_per_token", "mfu", "PEAK_MATMUL_N", "matmul_rate", "FastPath",
    "padded_vocab_size", "FastGPT2", "make_backward", "mean_over_processes",
    "set_adamw_kernel", "LADDER", "ladder", "time_fast_paths", "PRECISIONS",
    "cpu_bf16_flags", "bf16_units", "resolve_precision",
]

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import ENV, is_quick
from gpt2scratch.validation import check_bool, check_int


# %% chapters/11_scaling.ipynb cell 7
def train_flops_per_token(config: GPT2Config, seq_len: int) -> float:
    """Matmul FLOPs of one training step per token: 6N + 12·L·T·C.

    N counts the weights that multiply (every block's matrices and biases, the final
    LayerNorm, and the LM head's V·C); each is used in 1 multiply-add forward (2 FLOPs)
    and 2 backward (4 FLOPs). 12·L·T·C is q·kᵀ and att·v over the full T×T square.
    """
    C, L, V = config.d_model, config.n_layers, config.vocab_size
    per_block = 12 * C * C + 13 * C  # c_attn 3C², c_proj C², MLP 8C², biases, 2 LNs
    n_matmul = L * per_block + 2 * C + V * C  # + ln_f + lm_head
    return 6 * n_matmul + 12 * L * seq_len * C


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: the useful FLOP/s a run achieves over the peak rate."""
    return tokens_per_s * flops_per_token / peak_flops


PEAK_MATMUL_N = {"cuda": 8192, "cpu": 2048}  # the n of matmul_rate's square matmul


def matmul_rate(device, dtype=torch.float32, n: int | None = None, reps: int = 5):
    """The best FLOP/s of an (n, n) @ (n, n) matmul on `device`: the peak we divide by.

    n is PEAK_MATMUL_N's unless given: 8192 on a GPU, 2048 on a CPU, large enough for
    the kernel's full rate (a 1024 matmul leaves a CPU's bf16 units short of theirs),
    small enough to time in a second or so. `bench` measures its peaks here too.
    """
    device = torch.device(device)
    n = n or PEAK_MATMUL_N["cuda" if device.type == "cuda" else "cpu"]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for _ in range(reps + 1):  # the first is a warm-up
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# %% chapters/11_scaling.ipynb cell 22
@dataclass(frozen=True)
class FastPath:
    """Which parts of the fast path a run uses. `FastPath.auto(device, precision)`: all
    on a GPU, with bf16 as `precision` asks."""

    bf16: bool = False  # autocast matmuls to bfloat16 (the weights stay float32)
    flash: bool = True  # let SDPA pick its fused kernel (False: the math kernel)
    compile: bool = False  # torch.compile the model and its loss
    fused_adamw: bool = True  # one kernel updates every tensor (False: foreach)
    pad_vocab: bool = False  # the LM head computes 50304 logits, the loss sees 50257
    accum_steps: int = 1  # micro-batches per optimizer step

    def __post_init__(self):
        for name in ("bf16", "flash", "compile", "fused_adamw", "pad_vocab"):
            check_bool(name, getattr(self, name))
        check_int("accum_steps", self.accum_steps, minimum=1)

    @classmethod
    def auto(cls, device, precision: str = "fp32", **overrides) -> FastPath:
        """Compile and padding on for CUDA only (measured there, section 11.3); bf16
        autocast as `resolve_precision(precision, device)` decides: fp32 unless asked."""
        gpu = torch.device(device).type == "cuda"
        bf16 = resolve_precision(precision, device)[0] == torch.bfloat16
        return cls(**{**dict(bf16=bf16, compile=gpu, pad_vocab=gpu), **overrides})

    def autocast(self, device) -> contextlib.AbstractContextManager:
        """bf16 autocast on `device` if `bf16`, else nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def attention(self) -> contextlib.AbstractContextManager:
        """SDPA's default choice of kernel if `flash`, else the math kernel only."""
        return contextlib.nullcontext() if self.flash else sdpa_kernel(SDPBackend.MATH)


def padded_vocab_size(vocab_size: int, multiple: int = 128) -> int:
    """The next multiple of `multiple`: 50257 -> 50304 = 393 x 128."""
    check_int("vocab_size", vocab_size, minimum=1)
    check_int("multiple", multiple, minimum=1)
    return -(-vocab_size // multiple) * multiple


# %% chapters/11_scaling.ipynb cell 28
class FastGPT2(nn.Module):
    """Trains a GPT2 through a padded LM head, with the loss inside the module.

    `forward(idx)` returns (B, T, V) logits; `forward(idx, targets)` the mean
    cross-entropy in float32, so that `torch.compile` fuses the loss with the head.
    The padding lives in the computation only: the head multiplies by `lm_head.weight`
    with zero rows appended, and the extra columns are dropped at once. No padded logit
    is sampled or enters the loss, and the parameters (and so every checkpoint) keep
    their V rows.
    """

    def __init__(self, model: GPT2, pad_vocab: bool = True, multiple: int = 128):
        super().__init__()
        if not isinstance(model, GPT2):
            raise TypeError(f"model must be a GPT2, got {type(model).__name__}")
        self.model = model
        self.vocab_size = model.config.vocab_size
        V = self.vocab_size
        self.padded_size = padded_vocab_size(V, multiple) if pad_vocab else V

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        h = self.model.hidden_states(idx)  # (B, T, C)
        head = self.model.lm_head
        if type(head) is not nn.Linear:  # a wrapped head (chapter 9's LoRA) runs as it is
            logits = head(h)  # (B, T, V), unpadded
        else:
            weight = head.weight  # (V, C)
            extra = self.padded_size - self.vocab_size
            if extra:
                weight = F.pad(weight, (0, 0, 0, extra))  # (Vp, C): zero rows at the end
            logits = F.linear(h, weight)[..., : self.vocab_size]  # (B, T, V): a view
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


# %% chapters/11_scaling.ipynb cell 31
def make_backward(fast: FastPath, device) -> Callable:
    """The `backward=` seam of `train_step`: forward and backward of one batch, in
    `fast.accum_steps` micro-batches, under bf16 autocast and the attention kernel that
    `fast` picks. Returns the batch's mean loss (averaged over every process under DDP).

    Each micro-batch's loss is a mean over its B/k rows; dividing it by k before
    `backward()` makes the summed gradients those of the mean over all B rows. Under
    DDP the first k-1 backward passes skip the all-reduce (`no_sync`): the gradients
    are averaged across processes once, after the last.
    """
    device = torch.device(device)

    def backward(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
        k = fast.accum_steps
        if inputs.shape[0] % k:
            raise ValueError(
                f"a batch of {inputs.shape[0]} rows does not split into "
                f"accum_steps={k} equal micro-batches"
            )
        total = torch.zeros((), device=inputs.device)
        micro = list(zip(inputs.chunk(k), targets.chunk(k)))
        for j, (x, y) in enumerate(micro):
            last = j == k - 1
            skip_sync = not last and hasattr(model, "no_sync")
            with model.no_sync() if skip_sync else contextlib.nullcontext():
                with fast.autocast(device), fast.attention():
                    loss = model(x, y)  # a FastGPT2 returns the mean loss
                (loss / k).backward()
            total += loss.detach()
        return mean_over_processes(total / k)

    return backward


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """`value` averaged over every process of the DDP group (itself when alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.clone()
    dist.all_reduce(value)  # a sum: gloo has no average
    return value / dist.get_world_size()


def set_adamw_kernel(optimizer: torch.optim.Optimizer, fused: bool) -> None:
    """Switch an Adam/AdamW between the fused kernel and the foreach one."""
    check_bool("fused", fused)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True, None) if fused else (None, True)


# %% chapters/11_scaling.ipynb cell 34
LADDER = (  # each rung adds one part of the fast path to the one before
    ("fp32, math attention, foreach AdamW", {}),
    ("+ bf16 autocast", {"bf16": True}),
    ("+ flash attention", {"flash": True}),
    ("+ fused AdamW", {"fused_adamw": True}),
    ("+ vocab padded to 50304", {"pad_vocab": True}),
    ("+ torch.compile", {"compile": True}),
)


def ladder(start: int = 0, stop: int | None = None) -> dict[str, FastPath]:
    """The rungs of LADDER[start:stop] as {name: FastPath}, each with all before it."""
    fast, rungs = FastPath(flash=False, fused_adamw=False), {}
    for name, change in LADDER:
        fast = replace(fast, **change)
        rungs[name] = fast
    return dict(list(rungs.items())[start:stop])


def _timed_step(config, fast, inputs, targets, device, seed) -> Callable[[], float]:
    """A function that runs one training step of a fresh GPT2 and returns its seconds."""
    torch.manual_seed(seed)
    model = GPT2(config).to(device)
    runner = FastGPT2(model, pad_vocab=fast.pad_vocab)
    runner = torch.compile(runner) if fast.compile else runner
    kernel = dict(fused=True) if fast.fused_adamw else dict(foreach=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, **kernel)
    backward = make_backward(fast, device)

    def step() -> float:
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        backward(runner, inputs, targets)
        opt.step()
        _sync(device)
        return time.perf_counter() - t0

    return step


# %% chapters/11_scaling.ipynb cell 35
def time_fast_paths(
    config: GPT2Config,
    paths: dict[str, FastPath],
    *,
    batch_size: int,
    device="cpu",
    rounds: int = 5,
    warmup: int = 2,
    peak: float | None = None,
    seed: int = 0,
) -> dict[str, dict]:
    """Time a training step of `config` under each FastPath, interleaved: each round
    runs every path once, in a rotated order. Per path: the median seconds, tok/s, MFU
    (against `peak`), and the median over rounds of its speed-up over the path before.
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    T = config.context_length
    x = torch.randint(0, config.vocab_size, (batch_size, T + 1), generator=g)
    inputs, targets = x[:, :-1].to(device), x[:, 1:].to(device)
    steps = {
        k: _timed_step(config, f, inputs, targets, device, seed)
        for k, f in paths.items()
    }
    names = list(paths)
    first = {k: [steps[k]() for _ in range(warmup)] for k in names}  # compiles here
    times = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            times[k].append(steps[k]())
    fpt, results = train_flops_per_token(config, T), {}
    for i, k in enumerate(names):
        med = statistics.median(times[k])
        ratios = [a / b for a, b in zip(times[names[i - 1]], times[k])] if i else [1.0]
        results[k] = dict(
            seconds=med,
            tok_s=batch_size * T / med,
            warmup_s=sum(first[k]),
            mfu=mfu(batch_size * T / med, fpt, peak) if peak else None,
            speedup=statistics.median(ratios),
            fast=asdict(paths[k]),
        )
    return results


# %% chapters/11_scaling.ipynb cell 41
PRECISIONS = ("fp32", "bf16", "auto")


def cpu_bf16_flags() -> dict[str, bool]:
    """This CPU's bf16 units, as PyTorch reads them (CPUID): AVX512-BF16 instructions
    (Intel Cooper Lake and later, AMD Zen 4 and later) and AMX tiles (Intel Sapphire
    Rapids and later)."""
    return {
        "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
        "amx": torch.cpu._is_amx_tile_supported(),
    }


def bf16_units(device) -> tuple[bool, str]:
    """Whether `device` multiplies bf16 in hardware, and the reason in words."""
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False
        )
        return ok, "this GPU " + ("supports bf16" if ok else "has no bf16 units")
    if device.type != "cpu":
        return False, f"auto keeps {device.type} in fp32"
    flags = cpu_bf16_flags()
    if flags["amx"]:
        return True, "this CPU has AMX bf16 units"
    if flags["avx512_bf16"]:
        return True, "this CPU has AVX512-BF16 units"
    return False, "this CPU has no bf16 units (neither AVX512-BF16 nor AMX)"


def resolve_precision(requested: str, device) -> tuple[torch.dtype, str]:
    """(the dtype of a run's matmuls, why) for "fp32", "bf16" (autocast) or "auto": bf16
    where `device` has bf16 units, by its capability flags alone (never a timing), and
    fp32 in quick mode, so that `make test` computes the same on every machine."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be fp32, bf16 or auto, got {requested!r}")
    ok, units = bf16_units(device)
    if requested == "fp32":
        return torch.float32, "requested"
    if requested == "bf16":
        return torch.bfloat16, "requested" + ("" if ok else f"; {units}")
    if is_quick():
        return torch.float32, f"auto: quick mode, {ENV}=1, pins fp32"
    return (torch.bfloat16 if ok else torch.float32), f"auto: {units}"
