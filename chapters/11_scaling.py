# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 11 — Scaling up on GPUs
#
# Chapter 5 trained GPT-2 124M on *The Verdict*, 4,612 tokens, on a laptop CPU. A real corpus
# has billions of tokens, and at CPU speed one epoch of it would take years. In this chapter
# we make one training step as fast as the hardware allows, and then spread it over several
# GPUs with PyTorch's own distributed engine, **DDP**, launched by `torchrun`. Nothing here
# changes what the model computes: every trick is checked against the plain step of chapter 5.
#
# The plan:
#
# 1. **Counting the work**: the FLOPs of one training step per token, and **MFU**, the share of
#    the hardware's peak rate that a run turns into useful work, against two peaks: the data
#    sheet's and the matmul rate we measure on the card.
# 2. **Where the time goes** in a CPU training step, with `torch.profiler`, and one cost that
#    the profile cannot show: page faults on the large blocks that the memory allocator gives
#    back to the system every step, removed by two `mallopt` settings.
# 3. **The fast path, one step at a time**: bf16 autocast, flash attention, fused AdamW, a
#    vocabulary padded to 50,304, and `torch.compile`, each measured; and bf16 on a CPU that
#    has bf16 units, chosen from its capability flags.
# 4. **Gradient accumulation**: k small batches that add up to one big one, and why each loss
#    is divided by k.
# 5. **Many GPUs with DDP**: each process a replica on its share of every batch, gradients
#    averaged by an all-reduce that overlaps the backward pass; `torchrun`, rank 0 writes, and
#    a checkpoint that resumes on a different number of processes; two processes against one,
#    the same losses and weights. When FSDP is needed instead.
# 6. **The benchmark**: `python -m gpt2scratch bench train --device cuda`, ours against
#    Hugging Face's `GPT2LMHeadModel`, eager and compiled.
# 7. **Past one machine, on paper**: how long GPT-2 124M takes on 10 billion tokens on one and
#    on eight GPUs, what the all-reduce costs, and the `torchrun` command for several nodes.
#
# The code is exported to two modules: `gpt2scratch/scale.py`, the fast path on one device
# (sections 11.1 to 11.4), and `gpt2scratch/ddp.py`, many processes with DDP (section 11.5).
# It plugs into `train_run()`, the loop with checkpoints and resume of section A.9 of
# [Appendix A](A_engineering.ipynb), through two seams: `backward=` (how one batch fills the
# gradients, chapter 5's `train_step` takes it) and `wrap=` (the module to train through).
# `python -m gpt2scratch train` uses it.
#
# This book is built on a CPU. The cells below detect the device: without a GPU they run on the
# CPU at a tiny size and say so, and the GPU figures are read from the JSON files that
# `tools/gpu_bench.sh` writes into `benchmarks/` when it runs on a GPU.

# %%
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.train import calc_loss_batch

torch.set_printoptions(precision=4, sci_mode=False)
ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
BENCH = Path("..") / "benchmarks"  # the committed GPU and CPU figures
if ON_GPU:
    print(f"GPU: {torch.cuda.get_device_name()}; the timing cells run on it")
else:
    print("no GPU here: the timing cells run on the CPU at a tiny size;")
    print("GPU figures are read from benchmarks/*.json when a GPU run wrote them")

# %%
# NBVAL_IGNORE_OUTPUT
SIZES = full_or_quick(
    full=dict(profile="124M", ladder="tiny", rounds=3, compile=True),
    quick=dict(profile="mini", ladder="tiny", rounds=2, compile=False),
    what="the profile uses the mini model, the ladder skips torch.compile",
)
print({k: v for k, v in SIZES.items()})

# %%
#| default_exp scale

# %%
#| export
"""Scaling up: the fast path on one device, and what it is measured against.

Generated from chapter 11 of the book. The fast path (bf16 autocast, flash attention,
torch.compile, fused AdamW, a vocabulary padded to a multiple of 128, gradient
accumulation) plugs into `trainer.train_run()` through its `wrap=` and `backward=`
seams; FLOPs per
token, the peak matmul rate and MFU measure it. Many processes: `gpt2scratch.ddp`.
"""

from __future__ import annotations

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

# %%
#| export ddp
"""Many processes with PyTorch's DDP: each trains a replica on its share of every global
batch, and the gradients are averaged by an all-reduce (section 11.5 of chapter 11).

Generated from chapter 11 of the book. It plugs into `trainer.train_run()` through the
`wrap=` seam (GPT2 -> FastGPT2 -> torch.compile -> DistributedDataParallel) and a sampler
that gives
each process its rows of the same global batches; `gpt2scratch.scale` is the fast path
each process runs.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler, Sampler

from gpt2scratch.model import GPT2
from gpt2scratch.scale import FastGPT2, FastPath, make_backward, set_adamw_kernel
from gpt2scratch.runtime import pick_device
from gpt2scratch.train import History
from gpt2scratch.trainer import epoch_seed, train_run
from gpt2scratch.validation import check_int

# %% [markdown]
# ## 11.1 Counting the work: FLOPs per token and MFU
#
# Before making anything faster we need a yardstick. Almost all of a transformer's arithmetic is
# matrix multiplication, and a matmul of an (m, k) by a (k, n) matrix costs $2mkn$ floating-point
# operations (one multiply and one add per term). Per token, every weight matrix takes part in one
# multiply-add in the forward pass (2 FLOPs per weight) and two in the backward pass (4 more: one
# for the gradient of the input, one for the gradient of the weight). That is the classic
# **6N** FLOPs per token for a model with N weights that multiply. Attention adds the two matmuls
# that have no weights, $q k^\top$ and $\mathrm{att}\,v$: $2 \cdot 2 T C$ per token per layer
# forward, times 3 with the backward pass, so $12 L T C$ in all (counting the whole $T \times T$
# square, as PaLM and nanoGPT do, although the causal half is masked).
#
# N counts the weights inside the blocks and the LM head's $V \times C$ matrix (which is also the
# token embedding: a lookup costs no FLOPs, but the head's matmul does). It leaves out the position
# embedding, which is only added.


# %%
#| export
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


# %%
config = GPT2Config()  # 124M
C, L, V = config.d_model, config.n_layers, config.vocab_size
blocks = L * (12 * C * C + 13 * C) + 2 * C  # 4C² attention, 8C² MLP, biases, LNs
head = V * C
for T in (256, 1024):
    parts = {"blocks": 6 * blocks, "LM head": 6 * head, "attention": 12 * L * T * C}
    total = sum(parts.values())
    assert total == train_flops_per_token(config, T)
    shares = ", ".join(f"{k} {v / total:.1%}" for k, v in parts.items())
    print(f"T={T:4d}: {total / 1e6:,.0f} MFLOP per token ({shares})")
with torch.device("meta"):  # the same count from the parameters themselves
    n_matmul = GPT2(config).num_params(non_embedding=True) + V * C
print(f"6N with N = {n_matmul:,}: {6 * n_matmul / 1e6:,.0f} MFLOP")

# %%
fig, ax = plt.subplots(figsize=(7, 2.6))
for row, T in enumerate((256, 1024)):
    parts = {"blocks": 6 * blocks, "LM head": 6 * head, "attention": 12 * L * T * C}
    left = 0
    for (name, flops), color in zip(parts.items(), ("C0", "C1", "C2")):
        ax.barh(
            row, flops / 1e6, left=left, color=color, label=name if row == 0 else None
        )
        left += flops / 1e6
ax.set_yticks([0, 1], ["T = 256", "T = 1024"])
ax.set_xlabel("MFLOP per token, one training step (forward + backward)")
ax.set_title("GPT-2 124M: where the arithmetic is")
ax.legend(loc="lower right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The figure shows why GPT-2 trains as a dense, matmul-bound program: at T = 1024 the blocks'
# weights take 59.7% of the work, the LM head 27.1% and attention's own matmuls 13.2%; LayerNorm, GELU, softmax and
# the optimizer have no place in the count at all. They still take time, and that is the point
# of the next measure.
#
# **MFU**, model FLOPs utilisation, divides the FLOPs a run *needs* per second (tokens per
# second times FLOPs per token) by a peak rate. It ignores work the implementation adds
# (recomputation, padding) and counts only the model's: a trick that saves memory by
# recomputing activations does not raise it. Which peak? PaLM (Chowdhery et al., 2022), which
# named the measure, divides by the vendor's peak, the data sheet's figure for the chip, and
# that is the MFU to compare with published runs. No kernel quite reaches a data sheet's peak,
# so we print a second column as well, our own convention: the MFU against the best rate of one
# large square matmul that we measure on the same device, in the same precision, just before
# the run. It says how close a run comes to what the card delivers on the easiest matmul there
# is, and it is the larger of the two, by the ratio of the two peaks. An MFU of 100% against the
# data sheet would mean every cycle of every tensor core went into the model's matmuls.
#
# The tables below print the two side by side, as "of measured" and "of spec". A CPU has no
# data-sheet figure for a matmul on two shared cores, so on this machine only the measured
# column exists. For the H200 the peak is NVIDIA's H200 data sheet's bf16 tensor-core rate,
# dense: 989 TFLOP/s. The data sheet prints 1,979, a figure with 2:4 structured sparsity (two
# of every four weights zero), which dense training does not use.


# %%
DATASHEET_BF16 = {  # dense bf16 tensor-core peaks in FLOP/s (no sparsity)
    "NVIDIA H200": 989e12,  # NVIDIA H200 datasheet: 1,979 TFLOP/s with 2:4 sparsity
}


def mfu_columns(mfu_measured: float, measured_peak: float, device_name: str) -> str:
    """A run's MFU against the measured matmul rate, and the same run against the data
    sheet's dense bf16 peak (MFU x measured / data sheet), where the card has one."""
    sheet = DATASHEET_BF16.get(device_name)
    if sheet is None:
        return f"MFU {mfu_measured:5.1%} of measured  (no data-sheet peak)"
    spec = mfu_measured * measured_peak / sheet
    return f"MFU {mfu_measured:5.1%} of measured, {spec:5.1%} of spec"


print(mfu_columns(0.5, 790e12, "NVIDIA H200"), "(a run at 50% of 790 TFLOP/s)")
print(mfu_columns(0.5, 150e9, "cpu"), "(the same on a CPU)")

# %%
# NBVAL_IGNORE_OUTPUT
peak_cpu, n = matmul_rate("cpu", torch.float32), PEAK_MATMUL_N["cpu"]
print(
    f"this CPU: {peak_cpu / 1e9:,.0f} GFLOP/s (float32, best of 5 {n}x{n} matmuls, "
    f"{torch.get_num_threads()} threads, on a machine shared with other jobs)"
)
assert peak_cpu > 0

# %% [markdown]
# ## 11.2 Where the time goes on a CPU
#
# Counting tells us what a step must do; a profiler tells us what it does. `torch.profiler`
# records every ATen operator a step runs, with the time spent inside it. We run one training step
# of chapter 5's model (124M, B = 2, T = 256, dropout 0.1, fused AdamW) after a warm-up, and sort
# the operators into the parts of the model they belong to.

# %%
PARTS = {  # ATen operator -> the part of the step it belongs to
    "weight matmuls": ("aten::mm", "aten::addmm"),
    "attention": (
        "aten::bmm",
        "aten::_softmax",
        "aten::_softmax_backward_data",
        "aten::isneginf",
        "aten::all",
        "aten::tril",
        "aten::where",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    ),
    "dropout masks": ("aten::bernoulli_",),
    "LayerNorm": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "GELU": ("aten::gelu", "aten::gelu_backward"),
    "loss over 50,257 logits": (
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward",
        "aten::nll_loss_backward",
    ),
    "AdamW": ("aten::_fused_adamw_",),
    "embeddings": (
        "aten::embedding_dense_backward",
        "aten::index_select",
        "aten::index_add_",
        "aten::embedding",
    ),
    "copies and fills": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::cat"),
}
PART_OF = {op: part for part, ops in PARTS.items() for op in ops}

# %%


@contextlib.contextmanager
def quiet_stderr():
    """Send the process's stderr (file descriptor 2) to /dev/null for a while: the
    profiler's C++ side logs its start and stop there."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull), os.close(saved)


def profile_step(config, batch_size=2):
    """Self time per part of one training step (after a warm-up step), in seconds."""
    torch.manual_seed(0)
    model = GPT2(config)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1, fused=True)
    x = torch.randint(0, config.vocab_size, (batch_size, config.context_length + 1))

    def step():
        opt.zero_grad(set_to_none=True)
        calc_loss_batch(model, x[:, :-1], x[:, 1:]).backward()
        opt.step()

    step()
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    seconds = {}
    for event in prof.key_averages():
        part = PART_OF.get(event.key, "other (adds, multiplies, sums, ...)")
        seconds[part] = seconds.get(part, 0.0) + event.self_cpu_time_total / 1e6
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


# %%
# NBVAL_IGNORE_OUTPUT
profile_config = GPT2Config.preset(SIZES["profile"], context_length=256)
seconds = profile_step(profile_config)
total = sum(seconds.values())
print(f"{SIZES['profile']}, B=2, T=256: {total:.2f} s of operator time in one step")
for part, s in seconds.items():
    print(f"  {part:<36} {s / total:6.1%}")
assert abs(sum(s / total for s in seconds.values()) - 1) < 1e-9

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(7, 3.2))
names = list(seconds)[::-1]
ax.barh(names, [seconds[n] / total * 100 for n in names], color="C0")
ax.set_xlabel("% of the step's operator time")
ax.set_title(f"One training step on this CPU ({SIZES['profile']}, B=2, T=256)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The weight matmuls lead, as the FLOP count predicts, with most of the operator time, but the
# rest is not small: adds, multiplies and sums (bias gradients, the residual stream, dropout's
# scaling), attention, drawing dropout masks, copies and fills, AdamW, and the loss over the
# 50,257 logits each take a few percent. (The shares move from run to run with the machine's
# load; the table above is the run stored with this page.) Attention runs
# the *math* kernel here (materialised $T \times T$ scores, softmax, masks): with dropout on,
# PyTorch's fused CPU attention kernel does not apply. AdamW touches all 124M weights four times
# per step (weight, gradient, two moments): memory traffic, not arithmetic. None of these is a
# matmul, so none counts towards MFU, and on a CPU no flag of the fast path removes them.
#
# One cost is invisible in that table: the time the *kernel* spends for us. On a CPU, PyTorch
# takes every activation and gradient from `malloc`. glibc serves blocks larger than 32 MB
# (the logits, the embedding's gradient) with fresh `mmap`s and returns them to the system when
# they are freed, so at the next step every one of those pages is faulted in and zeroed again.
# Counting the process's minor page faults per step shows it, and two `mallopt` settings stop
# it. We count in a fresh process for each setting, on the mini model (d_model 128, 4 layers: its
# largest blocks, the logits and their gradients, are as large as 124M's), because the notebook
# runs its cells in a thread whose own malloc arena always maps blocks this large anew.
#
# The counting and the malloc settings ask the operating system, not the model, so they live in
# section A.5 of [Appendix A](A_engineering.ipynb) (`gpt2scratch.measure`): `page_faults()`
# reads the process's minor faults, `keep_freed_memory()` raises glibc's two thresholds through
# `mallopt`, and `step_page_faults(config, keep=...)` gives the faults and seconds of each
# training step (B=2, fused AdamW) after the first.


# %%
# NBVAL_IGNORE_OUTPUT
def in_fresh_process(size: str, keep: bool) -> list:
    """step_page_faults in a new Python process, whose main thread allocates as the
    command line's does (a notebook runs cells in a thread with its own malloc arena)."""
    code = (
        "import json; from gpt2scratch.model import GPT2Config; "
        "from gpt2scratch.measure import step_page_faults; "
        f"print(json.dumps(step_page_faults(GPT2Config.preset({size!r}, "
        f"context_length=256), keep={keep})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


before = in_fresh_process("mini", keep=False)
after = in_fresh_process("mini", keep=True)
for name, runs in (("glibc defaults", before), ("freed memory kept", after)):
    steps = ", ".join(
        f"{n:,} faults ({n * 4 / 1024:,.0f} MiB) in {s:.2f} s" for n, s in runs
    )
    print(f"mini, {name:>17}: {steps}")
assert min(n for n, _ in after) < min(n for n, _ in before) / 4  # steady state; one step may re-fault

# %% [markdown]
# With the defaults, every step maps and zeroes about 400 MiB anew; once freed memory is kept,
# the count falls to almost nothing once the heap has settled (one step may still re-fault, so
# the cell's check compares the steadiest step). The step times printed beside the counts come
# from a machine shared with other jobs, one after the other, so read them with care; the fault
# counts do not depend on the load. `python -m gpt2scratch train` and `bench train` call
# `keep_freed_memory()` when they run on a CPU. (On a GPU none of this applies: PyTorch's CUDA
# caching allocator keeps freed blocks itself.)

# %% [markdown]
# ## 11.3 The fast path, one step at a time
#
# On a GPU, five changes turn chapter 5's step into a fast one. None of them changes the model;
# each changes how the same function is computed. One frozen dataclass says which are on, so that
# a run, a benchmark and the command line's `--no-...` flags all speak about the same switches.


# %%
#| export
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


# %% [markdown]
# **bf16 autocast.** A GPU's tensor cores multiply 16-bit numbers many times faster than 32-bit
# ones (on an H100, about 990 TFLOP/s dense in bf16 against 67 in plain fp32, by NVIDIA's data sheet).
# *bfloat16* keeps float32's 8 exponent bits, so it has the same range and needs no loss scaling,
# but only 7 stored mantissa bits (8 with the implicit leading one): about 3 significant digits. `torch.autocast` runs the matmuls in bf16
# and keeps the precision-sensitive operations (softmax, LayerNorm, the loss) in float32; the
# weights, their gradients and AdamW's moments stay float32.

# %%
x = torch.tensor([1.0 + 2**-8, 3.0e38, 1e-30])
print("float32 :", x.tolist())
print("bfloat16:", x.to(torch.bfloat16).float().tolist())
print("float16 :", x.to(torch.float16).float().tolist())
a, b = (
    torch.randn(64, 256, generator=torch.Generator().manual_seed(0)),
    torch.randn(256, 64),
)
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = a @ b
err = ((y.float() - a @ b).norm() / (a @ b).norm()).item()
print(f"autocast matmul: dtype {y.dtype}, relative error {err:.1e} against float32")

# %% [markdown]
# bf16 rounds $1 + 2^{-8}$ to 1, but holds $3 \times 10^{38}$, where float16 overflows to
# infinity and flushes $10^{-30}$ to zero. A matmul under autocast differs from float32 by a few
# parts in a thousand, which training shrugs off.
#
# **Flash attention.** The attention of chapter 3 is one call, `F.scaled_dot_product_attention`,
# and PyTorch picks its kernel. The *math* kernel computes the $T \times T$ scores, writes them
# to memory, softmaxes them, and reads them back. FlashAttention (Dao et al., 2022) computes the
# same softmax in tiles that stay in the chip's fast on-chip memory, with a running maximum and
# sum, so the $T \times T$ matrix never exists; the backward pass recomputes it tile by tile.
# `FastPath(flash=False)` pins the math kernel, so that we can measure the difference.

# %%
B, H, T, hd = 16, 12, 1024, 64  # GPT-2 124M at T=1024, batch 16
per_layer = B * H * T * T * 2  # one bf16 T x T matrix per head
print(
    f"math kernel: {per_layer / 2**30:.2f} GiB per T x T tensor per layer, "
    f"x 12 layers = {12 * per_layer / 2**30:.1f} GiB (more for the backward)"
)
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, 4, 64, 16, generator=g) for _ in range(3))
outs = {}
for flash in (False, True):
    with FastPath(flash=flash).attention():
        outs[flash] = F.scaled_dot_product_attention(q, k, v, is_causal=True)
assert (outs[True] - outs[False]).abs().max().item() < 1e-5
print("math vs default kernel: max |difference| < 1e-5 (float32 round-off)")

# %% [markdown]
# **A vocabulary padded to 50,304.** The LM head's matmul is (B·T, 768) by (768, 50,257) in chapter 4's 124M model. GPU
# matmul kernels work in tiles of 64 or 128 columns; 50,257 is odd, so the last tile is ragged and
# some kernels fall back to slower paths. 50,304 = 393 × 128 is the next multiple of 128. nanoGPT
# pads the embedding matrix itself, and Hugging Face offers the same:
# `model.resize_token_embeddings(pad_to_multiple_of=128)` appends 47 rows to the (tied)
# embedding, initialised by default from the old rows' mean and covariance, and sets
# `config.vocab_size` to 50,304. Those rows are then parameters like any other: the model
# computes 50,304 logits, the softmax gives the 47 new ones some probability, sampling can draw
# an id the tokenizer cannot decode, and the checkpoint is saved with 50,304 rows. We pad only
# the *computation*: the head multiplies by `lm_head.weight` with 47 zero rows appended, and
# slices the 47 extra logits off at once. So no padded logit can be sampled or enter the loss,
# and the parameters, the optimizer state and every checkpoint keep their 50,257 rows: nothing
# to strip before an export.
#
# `FastGPT2` wraps a `GPT2` this way and also takes the targets, returning the loss: then
# `torch.compile` sees the head and the loss as one graph and can fuse the slice, the float32
# upcast and the log-softmax instead of writing the logits out several times.


# %%
#| export
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


# %%
torch.manual_seed(0)
tiny = GPT2(GPT2Config.preset("tiny", context_length=32, dropout=0.0)).eval()
fast_tiny = FastGPT2(tiny)
idx = torch.randint(0, 50257, (2, 32))
logits = fast_tiny(idx)
print(
    f"padded head: {fast_tiny.padded_size} rows computed, logits {tuple(logits.shape)}"
)
assert (logits - tiny(idx)).abs().max().item() < 1e-5
print("max |logits - GPT2's| < 1e-5")
loss = fast_tiny(idx[:, :-1], idx[:, 1:])
plain = calc_loss_batch(tiny, idx[:, :-1], idx[:, 1:])
assert abs(loss.item() - plain.item()) < 1e-5
print(f"loss {loss.item():.1f}, equal to chapter 5's calc_loss_batch within 1e-5")
shapes = {k: tuple(v.shape) for k, v in fast_tiny.state_dict().items() if "wte" in k}
print("saved embedding:", shapes)

# %% [markdown]
# **Fused AdamW.** An AdamW step updates every parameter tensor: GPT-2 124M has 148 of them. The
# plain implementation launches several small kernels per tensor; *foreach* groups the tensors
# into a few multi-tensor kernels; *fused* does the whole update, for every tensor, in one kernel
# that reads each weight, gradient and moment once. The arithmetic is the same, so the three agree
# up to rounding. Chapter 5's `prepare_run` already asks for the fused kernel;
# `set_adamw_kernel` switches an existing optimizer, which the ladder below uses.
#
# **torch.compile** traces the model's forward and backward into graphs and generates fused
# kernels for everything between the matmuls: LayerNorm, GELU, dropout, the residual adds and the
# loss become a few kernels instead of dozens, each reading its input once. The first step pays
# for the compilation (tens of seconds for 124M); every later step is faster.
#
# The step itself goes through chapter 5's `backward=` seam. `make_backward` runs the forward pass
# under autocast and the chosen attention kernel, calls `backward()`, and, for section 11.4,
# splits the batch into micro-batches.


# %%
#| export
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


# %%
def one_step(fused: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    set_adamw_kernel(opt, fused)
    step = make_backward(FastPath(fused_adamw=fused), "cpu")
    step(FastGPT2(model, pad_vocab=False), idx[:, :-1], idx[:, 1:])
    opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


diff = (one_step(True) - one_step(False)).abs().max().item()
with torch.device("meta"):
    print(f"GPT-2 124M: {len(list(GPT2(GPT2Config()).parameters()))} parameter tensors")
assert diff < 1e-6
print("fused vs foreach AdamW, one step: max |weight difference| < 1e-6")

# %% [markdown]
# **The ladder.** `time_fast_paths` builds one model per configuration and times their training
# steps *interleaved*: each round runs every configuration once, in a rotated order, so that a
# busy neighbour slows them all alike. `LADDER` adds one part of the fast path per rung, and each
# rung's speed-up is the median, over rounds, of its step time against the rung before.

# %%
#| export
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


# %%
#| export
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


# %%
# NBVAL_IGNORE_OUTPUT
if ON_GPU:
    ladder_config, ladder_batch = GPT2Config(context_length=1024), 16
else:  # a tiny model, to show the mechanics; the GPU figures follow below
    ladder_config = GPT2Config.preset(SIZES["ladder"], context_length=128)
    ladder_batch = 4
rungs = ladder() if SIZES["compile"] else ladder(0, 5)
peak = matmul_rate(DEVICE, torch.bfloat16 if ON_GPU else torch.float32)
here = time_fast_paths(
    ladder_config,
    rungs,
    batch_size=ladder_batch,
    device=DEVICE,
    rounds=SIZES["rounds"],
    warmup=2,
    peak=peak,
)
device_name = torch.cuda.get_device_name() if ON_GPU else "cpu"
print(
    f"{DEVICE.type}, {SIZES['ladder'] if not ON_GPU else '124M'}, B={ladder_batch}, "
    f"T={ladder_config.context_length}:"
)
for name, r in here.items():
    print(
        f"  {name:<36} {r['seconds'] * 1000:8.1f} ms/step  x{r['speedup']:.2f}  "
        + mfu_columns(r["mfu"], peak, device_name)
    )
assert len(here) == len(rungs)


# %%
def load_bench(name: str) -> dict | None:
    """A committed benchmark's JSON from benchmarks/, or None if no run wrote it."""
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


gpu_runs = {"B=16": "b16", "B=64": "b64", "B=64, dropout 0": "b64_dropout0"}
gpu_ladder = {k: load_bench(f"fastpath_cuda_{f}.json") for k, f in gpu_runs.items()}
for b, data in gpu_ladder.items():
    if data is None:
        print(
            f"benchmarks/fastpath_cuda_{gpu_runs[b]}.json: not there (no GPU run yet: "
            "tools/gpu_bench.sh writes it)"
        )
        continue
    measured, sheet = data["peak_flops"], DATASHEET_BF16.get(data["device_name"])
    spec = sheet and f", spec {sheet / 1e12:.0f} (measured/spec {measured / sheet:.2f})"
    print(
        f"{data['device_name']}, torch {data['torch']}, 124M, {b}, T=1024; bf16 matmul "
        f"rate measured {measured / 1e12:.0f} TFLOP/s{spec or ''}:"
    )
    for name, r in data["results"].items():
        print(
            f"  {name:<36} {r['seconds'] * 1000:8.1f} ms/step  x{r['speedup']:.2f}  "
            + mfu_columns(r["mfu"], measured, data["device_name"])
        )

# %%
# NBVAL_IGNORE_OUTPUT
panels = [("this machine: " + DEVICE.type, here)] + [
    (f"{d['device_name']}, {b}", d["results"])
    for b, d in list(gpu_ladder.items())[:2]
    if d
]
fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3), squeeze=False)
for ax, (title, results) in zip(axes[0], panels):
    names = list(results)[::-1]
    ax.barh(names, [results[n]["speedup"] for n in names], color="C2")
    ax.axvline(1, color="k", lw=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("speed-up over the rung before")
plt.tight_layout()
plt.show()

# %% [markdown]
# On a CPU, at this tiny size, the rungs say little about a real model: bf16 autocast does not
# pay in matmuls this small, even on a CPU with bf16 units, attention with dropout runs the math
# kernel either way, and the LM head's 47 padded rows are extra work with no tile to fill.
# `torch.compile` fuses the elementwise work, which is most of the work in a model this small,
# after paying for a compilation. `FastPath.auto` turns compile and padding on for CUDA, where
# they were measured to pay (below), and leaves bf16 to the `precision` it is given: on a CPU,
# whether bf16 pays depends on the chip and on the size of the matmuls, as the next subsection
# measures on GPT-2 124M. On a GPU each rung is measured by `tools/gpu_bench.sh`, and the figures
# above come from its JSON files.
#
# On the H200 every rung pays, and the printed speed-ups say by how much. bf16 autocast and flash
# attention each roughly double the speed: the matmuls move to the tensor cores' bf16 rate, and
# attention stops writing its T × T matrix to memory. Fused AdamW gains little at this size. The
# padded vocabulary is the surprise: 47 extra rows of zeros in the LM head speed up the *whole
# step* by a large factor, because a dimension of 50,257 (an odd number) leaves the matrix
# kernels with ragged tiles in the three largest matmuls of the step, and 50,304 = 393 × 128 does
# not. `torch.compile` then fuses the elementwise work (LayerNorm, GELU, dropout, the residual
# adds, the loss) into a few kernels. A bigger batch fills the GPU better still, and without
# dropout (how models of this size are pre-trained today) the step does less work per token:
# the last line of each ladder is the MFU that the goal of this chapter, 50% of the measured
# matmul rate, is measured on. The two MFU columns differ on every line by the same factor,
# the measured rate over the data sheet's, 0.77 to 0.81 across the three runs: the best line,
# 53.5% of the measured rate (B = 64, dropout 0), is 43.0% of the data sheet's 989 TFLOP/s.

# %% [markdown]
# ### bf16 on a CPU
#
# Many of today's CPUs multiply bf16 matrices in hardware too. **AVX512-BF16** (Intel Cooper
# Lake and later, AMD Zen 4 and later) has instructions that multiply pairs of bf16 numbers and
# add the products into float32, twice as many per instruction as a float32 multiply-add.
# **AMX** (Intel Sapphire Rapids and later) adds tile units that multiply whole blocks of bf16
# matrices. PyTorch's CPU kernels use them where they are. Without them, a bf16 matmul converts
# its inputs to float32 and back, and is slower than float32 itself.
#
# So the choice belongs to the hardware, and a run must not make it from a timing: the same
# command on the same machine must always train the same way, and a timing on a shared machine
# says as much about the neighbours as about the chip. PyTorch reads the CPU's capability flags
# (CPUID), and `resolve_precision` decides from them alone. It takes `"fp32"`, `"bf16"` (autocast,
# as on a GPU: the weights, AdamW's state and the loss stay float32) or `"auto"`: bf16 where the
# device has bf16 units. Quick mode (`make test`) pins `auto` to fp32, so that the tests and the
# checked outputs of this book compute the same on every machine. `python -m gpt2scratch train`
# and `run` take `--precision fp32|bf16|auto` (default `auto`) and print what they chose and why;
# `FastPath.auto(device)` in the library stays fp32 unless asked.


# %%
#| export
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


# %%
# NBVAL_IGNORE_OUTPUT
print(f"this CPU: {cpu_bf16_flags()}")
for requested in PRECISIONS:
    dtype, why = resolve_precision(requested, "cpu")
    print(f"  {requested:>4} -> {str(dtype).removeprefix('torch.')} ({why})")
n = 512 if is_quick() else PEAK_MATMUL_N["cpu"]  # quick: a CPU without bf16 units emulates it
rates = {d: matmul_rate("cpu", d, n) for d in (torch.float32, torch.bfloat16)}
print(
    f"{n}x{n} matmul: float32 {rates[torch.float32] / 1e9:,.0f} GFLOP/s, bfloat16 "
    f"{rates[torch.bfloat16] / 1e9:,.0f} GFLOP/s (best of 5 each, one after the other)"
)
assert all(rate > 0 for rate in rates.values())

# %% [markdown]
# How much faster, on a CPU that has them? `python -m gpt2scratch bench precision --json
# benchmarks/cpu_bf16.json` times fp32 against bf16 interleaved, in one process, so that a busy
# neighbour slows both alike: a 2048 × 2048 matmul, one training step of GPT-2 124M (B = 2,
# T = 256, dropout 0.1, fused AdamW, the loss in float32) under autocast, and greedy generation
# with the weights themselves in bf16, ours and Hugging Face's. Each speed-up is the median, over
# rounds, of the two timings of the same round. The cell prints the committed run, from the
# machine this book was built on:


# %%
cpu = load_bench("cpu_bf16.json")
if cpu is None:
    print("benchmarks/cpu_bf16.json: not there (bench precision --json writes it)")
else:
    flags = ", ".join(f"{k} {v}" for k, v in cpu["cpu_flags"].items())
    print(f"{cpu['cpu']} ({flags}), {cpu['threads']} threads, torch {cpu['torch']}")
    mm, step = cpu["matmul"], cpu["train_step"]
    print(
        f"  matmul {mm['n']}x{mm['n']}: float32 {mm['fp32_flops'] / 1e9:,.0f} GFLOP/s, "
        f"bfloat16 {mm['bf16_flops'] / 1e9:,.0f} GFLOP/s; bf16 x{mm['speedup']:.2f}"
    )
    for name, r in step["results"].items():
        print(
            f"  train step, {step['preset']}, B={step['batch_size']}, "
            f"T={step['context_length']}, {name:<13} {r['seconds'] * 1000:6,.0f} ms "
            f"x{r['speedup']:.2f}"
        )
    gen = cpu["generate"]["results"]
    for who in ("ours", "HF"):
        fp32, bf16 = gen[f"{who} fp32"]["tok_s"], gen[f"{who} bf16"]["tok_s"]
        print(
            f"  greedy generation, {who:<4}: float32 {fp32:5.1f} tok/s, bfloat16 "
            f"{bf16:5.1f} tok/s; bf16 x{gen[f'{who} bf16/fp32']:.2f}"
        )
    ratios = f"fp32 {gen['ours/HF fp32']:.2f}, bf16 {gen['ours/HF bf16']:.2f}"
    print(f"  ours/HF tok/s: {ratios}")

# %% [markdown]
# On this CPU, which has AMX, a bf16 matmul runs 5.63 times as fast as a float32 one, and the
# training step gains less, x1.71: the rest of the step (the elementwise work, attention's
# softmax, the loss over 50,257 logits in float32, AdamW's pass over 124M float32 weights) runs
# as before, and autocast adds a conversion of every weight to bf16 at each step. Generation at
# batch 1 reads every weight once per token; with the weights in bf16 ours reads half the bytes
# and gains x1.11, while Hugging Face's `generate()` does not (x0.91), so ours/HF moves from 1.14
# in float32 to 1.36 in bf16. On a CPU without bf16 units the same bf16 work runs slower than
# float32 instead, which is why `auto` reads the flags before it picks.

# %% [markdown]
# **What bf16 does to the logits.** Autocast rounds each matmul's inputs to bf16's 8 significant
# bits and adds the products in float32. Below, chapter 4's mini model (random weights, seeded)
# reads *The Verdict* twice, in float32 and under autocast, and we compare its 50,257 logits at
# every position: how far they move, and whether the likeliest next token changes.


# %%
from gpt2scratch.data import verdict_text  # noqa: E402
from gpt2scratch.tokenizer import gpt2_encoding  # noqa: E402

torch.manual_seed(0)
mini = GPT2(GPT2Config.preset("mini", context_length=128, dropout=0.0)).eval()
ids = torch.tensor(gpt2_encoding().encode(verdict_text()))
rows = (len(ids) - 1) // 128
x, y = ids[: rows * 128].view(rows, 128), ids[1 : rows * 128 + 1].view(rows, 128)
with torch.no_grad():
    logits = {"fp32": mini(x)}
    with FastPath(bf16=True).autocast("cpu"):
        logits["bf16"] = mini(x).float()
diff = (logits["bf16"] - logits["fp32"]).abs()
flipped = logits["bf16"].argmax(-1) != logits["fp32"].argmax(-1)
top2 = logits["fp32"].topk(2, dim=-1).values
gap = top2[..., 0] - top2[..., 1]  # how far ahead float32's likeliest token is
loss = {k: F.cross_entropy(z.flatten(0, 1), y.flatten()).item() for k, z in logits.items()}
spread = logits["fp32"].std().item()
assert diff.max() < 0.02 and diff.mean() < 0.002 and 0.2 < spread < 0.25
assert flipped.float().mean() < 0.02 and gap.median() > 0.1
assert gap[flipped].max() < 0.02
assert abs(loss["fp32"] - loss["bf16"]) < 1e-3
print(f"{x.numel():,} positions x 50,257 logits, standard deviation {spread:.2f}")
print("|bf16 - fp32| per logit: largest < 0.02, mean < 0.002")
print("the likeliest token is the same at more than 98% of the positions")
print("where it changes, float32's top two logits are < 0.02 apart (median gap > 0.1)")
print(f"loss {loss['fp32']:.2f} both ways (they differ by < 0.001)")

# %% [markdown]
# bf16 moves each logit by less than a tenth of their spread at the most, and by under a
# hundredth on average. The likeliest token changes only where float32 had two candidates within
# that distance of each other, a near-tie that bf16 settles the other way, and the loss does not
# notice. Training sees the same rounding as a little noise on each gradient; the master weights,
# AdamW's moments and the loss stay float32, so nothing accumulates in bf16. The package's test
# `tests/test_precision.py` trains a tiny model both ways and requires the losses of five steps
# to agree within 0.05 nats; the full check is chapter 5's recipe, run with `--precision fp32`
# and with `--precision bf16`, side by side.

# %% [markdown]
# ## 11.4 Gradient accumulation
#
# GPT-2 was trained on batches of 512 sequences of 1,024 tokens (the GPT-2 paper): half a million tokens per
# optimizer step, far more than fits in one GPU's memory at once. **Gradient accumulation** runs
# the batch as k micro-batches, lets `backward()` *add* each one's gradients into `p.grad`, and
# steps the optimizer once at the end.
#
# The only subtlety is the scale. The loss is a *mean* over the batch's $B \cdot T$ tokens:
# $\mathcal{L} = \frac{1}{BT}\sum_i \ell_i$. A micro-batch's loss is a mean over its own
# $BT/k$ tokens, so it is $k$ times too large a share of the whole; summing k such gradients gives
# $k$ times the true gradient. Dividing each micro-batch's loss by $k$ before `backward()` fixes it
# exactly:
# $\sum_{j=1}^{k} \frac{1}{k} \cdot \frac{k}{BT} \sum_{i \in j} \nabla \ell_i = \nabla \mathcal{L}$.
# (This needs micro-batches of equal size; `make_backward` refuses a batch that does not split
# evenly.) Below, one batch of 8 rows against the same batch in 2 and 4 micro-batches, and the
# naive version that forgets the division.

# %%
torch.manual_seed(0)
model = GPT2(GPT2Config.preset("tiny", context_length=32, dropout=0.0))
batch = torch.randint(0, 50257, (8, 33), generator=torch.Generator().manual_seed(1))


def gradients(k: int, divide: bool = True) -> torch.Tensor:
    model.zero_grad()
    if divide:
        make_backward(FastPath(accum_steps=k), "cpu")(
            FastGPT2(model, pad_vocab=False), batch[:, :-1], batch[:, 1:]
        )
    else:  # naive: add up the micro-batches' mean losses
        for x, y in zip(batch[:, :-1].chunk(k), batch[:, 1:].chunk(k)):
            calc_loss_batch(model, x, y).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


full = gradients(1)
for k in (2, 4):
    diff = (gradients(k) - full).abs().max().item()
    ratio = (gradients(k, divide=False).norm() / full.norm()).item()
    assert diff < 1e-6
    print(
        f"k={k}: max |difference| < 1e-6; without the division the gradient "
        f"is {ratio:.2f}x too large"
    )

# %% [markdown]
# The accumulated gradients equal the big batch's up to float32 rounding, and without the
# division they are exactly k times too large, which AdamW would mostly hide (it divides by the
# gradient's own scale) but plain SGD, gradient clipping and the logged loss would not. The
# command line splits each batch with `--accum-steps K`.

# %% [markdown]
# ## 11.5 Many GPUs with DDP
#
# With one GPU as fast as it goes, the next step is more GPUs. **Data parallelism** gives each
# GPU a full copy of the model and a different share of every batch. Each process runs forward
# and backward on its share; then the gradients are averaged across processes with an
# **all-reduce** (every process sends its gradients and receives the sum), so every copy takes the
# same optimizer step and the copies stay identical. The result is the step of one process on
# the whole batch.
#
# PyTorch's `DistributedDataParallel` (DDP) does this with one trick that matters: it does not
# wait for the backward pass to finish. It groups the parameters into buckets of about 25 MB, in
# the reverse order of the forward pass, and starts a bucket's all-reduce as soon as the backward
# pass has produced all of its gradients, while the backward pass goes on with earlier layers.
# Communication hides behind computation; only the last bucket's all-reduce is left at the end.

# %%
fig, ax = plt.subplots(figsize=(8, 2.4))
layers = 6
for rank in (0, 1):
    y = 1 - rank
    ax.broken_barh([(0, 4)], (y + 0.05, 0.35), color="C0")  # forward
    for i in range(layers):  # backward, last layer first
        ax.broken_barh(
            [(4 + i * 1.2, 1.2)], (y + 0.05, 0.35), color="C1", edgecolor="w"
        )
    for b in range(3):  # one bucket per two layers, all-reduced as soon as it is ready
        ax.broken_barh([(4 + (2 * b + 2) * 1.2, 1.5)], (y - 0.35, 0.3), color="C2")
    ax.broken_barh([(4 + 6 * 1.2 + 1.5, 0.8)], (y + 0.05, 0.35), color="C3")  # step
ax.set_yticks([-0.2, 0.22, 0.8, 1.22], ["all-reduce", "rank 1", "all-reduce", "rank 0"])
ax.set_xlabel("time")
ax.set_xticks([])
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("C0", "C1", "C2", "C3")]
ax.legend(
    handles,
    ["forward", "backward (last layer first)", "gradient bucket all-reduce", "AdamW"],
    fontsize=7,
    ncol=4,
    loc="upper center",
    bbox_to_anchor=(0.5, 1.3),
)
ax.set_title(
    "DDP: each bucket's all-reduce overlaps the rest of the backward pass", pad=28
)
plt.tight_layout()
plt.show()

# %% [markdown]
# DDP keeps a whole copy of the weights, gradients and AdamW state on every GPU: 16 bytes per
# parameter in float32 with AdamW, so about 2 GB for GPT-2 124M and 25 GB for 1.5B, before any
# activations. That is fine up to about a billion parameters on today's GPUs. Beyond that, or
# to fit bigger batches, **FSDP** (fully sharded data parallel, PyTorch's form of ZeRO) shards
# the weights, gradients and optimizer state across the processes too: each layer's full weights
# are gathered just before it runs and freed after, and gradients are reduce-scattered so each
# process keeps only its shard. It trades more communication for $1/N$ of the memory. For the
# models of this book DDP is the right tool.
#
# **Processes and ranks.** `torchrun --nproc_per_node N -m gpt2scratch train ...` starts N copies
# of the program and tells each, in environment variables, its `RANK` (0 to N-1), the
# `WORLD_SIZE` N, its `LOCAL_RANK` on the machine (which GPU to take) and where to meet
# (`MASTER_ADDR`, `MASTER_PORT`). On several machines the same command runs on each, with a
# rendezvous where the nodes meet (section 11.7 gives the command). `init_distributed`
# reads them and joins the process group: NCCL between GPUs, gloo between CPU processes, which is
# how the test suite runs DDP without a GPU.


# %%
#| export ddp
@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank r of world_size, on `device`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank within this machine: which GPU to use
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device=None) -> DistInfo:
    """Join the process group that `torchrun` describes in the environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL between GPUs, gloo between
    CPU processes. Without torchrun: a world of one, no process group.
    """
    device = pick_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=device)
    env = {k: int(os.environ.get(k, 0)) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    rank, world, local = env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]
    if device.type == "cuda":
        device = torch.device("cuda", local)  # one GPU per process
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world)
        atexit.register(_leave_group)
    return DistInfo(rank, world, local, device)


def _leave_group() -> None:
    """At exit: leave the process group cleanly, unless the program already did."""
    if dist.is_initialized():
        dist.destroy_process_group()


# %% [markdown]
# **Sharding the data.** Each process must see a different share of every batch, and together
# they must see what one process would. `ShardedSampler` draws one permutation of the windows per
# epoch, from the seed and the epoch alone (`epoch_seed` of Appendix A, the seed of
# `epoch_batches`, so every process draws the same one), cuts it into global batches, and
# hands rank r its slice of each. The number of steps per epoch is the number of global
# batches, whatever the number of processes: a checkpoint written by 2 processes resumes on 1
# or 4, at the same step of the same epoch.


# %%
#| export ddp
class ShardedSampler(Sampler[int]):
    """This process's rows of every global batch.

    An epoch is a permutation of the n windows that depends on (seed, epoch) only, the
    same in every process, cut into global batches of `global_batch` rows; rank r takes
    rows [r·g, (r+1)·g) of each, g = global_batch / world_size. The epoch has
    n // global_batch steps whatever the world size, so a checkpoint resumes on any
    number of processes, and the processes together see what one process would.
    """

    def __init__(self, n: int, global_batch: int, rank=0, world_size=1, seed=123):
        check_int("n", n, minimum=0)
        check_int("world_size", world_size, minimum=1)
        check_int("rank", rank, minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size {world_size}, got {rank}")
        check_int("global_batch", global_batch, minimum=1)
        if global_batch % world_size:
            raise ValueError(
                f"the batch size {global_batch} does not split evenly over "
                f"{world_size} processes; use a multiple of {world_size}"
            )
        self.n, self.global_batch, self.seed = n, global_batch, check_int("seed", seed)
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.per_rank = global_batch // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # chapter 5's epoch_batches calls this

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=generator)  # the same in every process
        for b in range(self.n // self.global_batch):
            start = b * self.global_batch + self.rank * self.per_rank
            yield from order[start : start + self.per_rank].tolist()

    def __len__(self) -> int:
        return self.n // self.global_batch * self.per_rank


def shard_loader(loader: DataLoader, info: DistInfo, seed: int) -> DataLoader:
    """`loader` (batches of B rows, shuffled) as this process's share: B / world rows
    of each of the same global batches."""
    B = loader.batch_size
    sampler = ShardedSampler(len(loader.dataset), B, info.rank, info.world_size, seed)
    return DataLoader(
        loader.dataset,
        batch_size=sampler.per_rank,
        sampler=sampler,
        collate_fn=loader.collate_fn,
        generator=torch.Generator(),  # keep the global RNG out of the loader's seed
    )


# %% [markdown]
# One more check before a run starts: the batch must split evenly over the processes and, in
# each, over the micro-batches of section 11.4.


# %%
#| export ddp
def check_batch_split(
    batch_size: int, world_size: int = 1, accum_steps: int = 1
) -> int:
    """The micro-batch: `batch_size` rows per optimizer step split over `world_size`
    processes and `accum_steps` micro-batches each; ValueError unless they divide."""
    for name, value in (("batch_size", batch_size), ("world_size", world_size)):
        check_int(name, value, minimum=1)
    check_int("accum_steps", accum_steps, minimum=1)
    if batch_size % (world_size * accum_steps):
        raise ValueError(
            f"batch_size {batch_size} does not split into {world_size} process(es) x "
            f"{accum_steps} micro-batch(es); use a multiple of {world_size * accum_steps}"
        )
    return batch_size // (world_size * accum_steps)


# %%
for world in (1, 2, 4):
    samplers = [
        ShardedSampler(16, global_batch=4, rank=r, world_size=world, seed=0)
        for r in range(world)
    ]
    rows = [list(s) for s in samplers]
    per = 4 // world
    first = [rows[r][:per] for r in range(world)]
    print(
        f"{world} process(es): first global batch as rank shares {first}; "
        f"{len(rows[0]) // per} steps per epoch"
    )

# %% [markdown]
# `make_wrap` is the `wrap=` seam: it puts the model behind `FastGPT2`, compiles it, and wraps it
# in DDP, each where asked. `train_distributed` then calls Appendix A's `train_run()` with both
# seams and this process's share of the data. Only rank 0 logs and writes checkpoints (the others get no
# checkpoint folder and quiet settings), every process reads the checkpoint it resumes from, and
# `make_backward` averages the logged loss over the processes, so that rank 0 prints the loss of
# the whole batch.


# %%
#| export ddp
def make_wrap(fast: FastPath, info: DistInfo) -> Callable[[GPT2], nn.Module]:
    """The `wrap=` seam of `train_run()`: GPT2 -> FastGPT2 (padded head, loss inside)
    -> torch.compile -> DistributedDataParallel, each where `fast` and `info` ask."""

    def wrap(model: GPT2) -> nn.Module:
        runner = FastGPT2(model, pad_vocab=fast.pad_vocab)
        if fast.compile:
            runner = torch.compile(runner)
        if info.world_size > 1:
            on_gpu = info.device.type == "cuda"
            ids = [info.device.index] if on_gpu else None
            runner = DistributedDataParallel(runner, device_ids=ids)
        return runner

    return wrap


def train_distributed(
    model,
    train_loader,
    val_loader,
    optimizer,
    settings,
    *,
    info: DistInfo,
    fast: FastPath | None = None,
    checkpoint_dir=None,
    **kwargs,
) -> History:
    """`train_run()` (Appendix A) on this process's share of the data, through the fast
    path: only rank 0 logs and writes checkpoints; all resume from `resume_from`.
    """
    fast = fast or FastPath.auto(info.device)
    set_adamw_kernel(optimizer, fast.fused_adamw)
    if info.world_size > 1 or (dist.is_available() and dist.is_initialized()):
        if not isinstance(getattr(train_loader, "sampler", None), RandomSampler):
            raise ValueError(
                "DDP shards chapter 5's shuffled DataLoader; got a loader "
                f"with {type(getattr(train_loader, 'sampler', None)).__name__}"
            )
        train_loader = shard_loader(train_loader, info, settings.seed)
    if not info.is_main:
        quiet = dict(verbose=False, progress=False, sample_prompt=None)
        settings, checkpoint_dir = replace(settings, **quiet), None
    history = train_run(
        model,
        train_loader,
        val_loader,
        optimizer,
        settings,
        device=info.device,
        checkpoint_dir=checkpoint_dir,
        wrap=make_wrap(fast, info),
        backward=make_backward(fast, info.device),
        **kwargs,
    )
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing its last checkpoint
    return history


# %% [markdown]
# **torchrun on this machine.** Two CPU processes on gloo train the tiny model on *The Verdict*
# for one epoch, and one process trains the same run alone, with the same global batches of 8
# rows. Dropout is off in both (`--dropout 0`): each process draws its dropout masks from its own
# random stream, so with dropout on, the two runs would differ by design. The command is the one
# a GPU machine would run (with `--nproc_per_node 8`, say); only rank 0's output appears.

# %%
# NBVAL_IGNORE_OUTPUT
import shutil  # noqa: E402  (only this cell needs it)

ROOT, demo = Path(".."), Path("runs") / "ch11"
(ROOT / demo).mkdir(parents=True, exist_ok=True)
(ROOT / demo / "verdict.txt").write_text(verdict_text(), encoding="utf-8")
for folder in ("ddp", "one"):
    shutil.rmtree(ROOT / demo / folder, ignore_errors=True)
train_args = [
    *("-m", "gpt2scratch", "train", "--data", str(demo / "verdict.txt")),
    *("--model", "tiny", "--context-length", "32", "--batch-size", "8"),
    *("--dropout", "0", "--eval-iters", "2", "--prompt", "", "--no-progress"),
    *("--precision", "fp32", "--device", "cpu"),  # gloo on CPU processes
]


def torchrun(nproc: int, out: str, *extra: str) -> str:
    command = [sys.executable, "-m", "torch.distributed.run"]
    command += ["--nproc_per_node", str(nproc), *train_args]
    command += ["--out", str(demo / out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


run_line = "$ torchrun --nproc_per_node {} -m gpt2scratch train ... {}"
print(run_line.format(2, f"--epochs 1 --out {demo / 'ddp'}"))
print(torchrun(2, "ddp", "--epochs", "1"))
print(run_line.format(1, f"--epochs 1 --out {demo / 'one'}"))
one_process = torchrun(1, "one", "--epochs", "1")  # compared below, by its checkpoint

# %% [markdown]
# Both runs wrote a checkpoint at step 18. Its `history` holds the loss of every step (under
# DDP, the mean over the processes, which `make_backward` takes), and its weights are what the
# 18 AdamW steps made of them. We compare both, with the tolerance of the package's test
# `tests/test_ddp.py`. It cannot be zero: one process averages the gradient over all 8 rows in
# one reduction, while DDP averages each rank's 4 rows and then adds the two halves in the
# all-reduce. Float32 addition is not associative, so the two orders differ in the last bits
# (about $10^{-7}$ relative), and a few AdamW steps carry that forward without amplifying it
# much.

# %%
from gpt2scratch.checkpoint import load_checkpoint  # noqa: E402

TOL = "1e-5"  # tests/test_ddp.py's bound: float32 sums taken in another order
runs = {name: load_checkpoint(ROOT / demo / name) for name in ("ddp", "one")}
losses = {
    k: torch.tensor(c.train_state["history"]["step_loss"]) for k, c in runs.items()
}
weights = {
    k: torch.cat([p.detach().flatten() for p in c.model.parameters()])
    for k, c in runs.items()
}
assert len(losses["ddp"]) == len(losses["one"]) == 18
loss_gap = (losses["ddp"] - losses["one"]).abs().max().item()
weight_gap = (weights["ddp"] - weights["one"]).abs().max().item()
assert loss_gap < float(TOL) and weight_gap < float(TOL)
assert losses["one"][0] - losses["one"][-1] > 0.05  # it trains: the loss falls
print(f"{len(losses['one'])} steps, 2 processes against 1 (the same global batches):")
print(f"  the step losses agree: max |difference| < {TOL}")
print(f"  all {len(weights['one']):,} weights agree: max |difference| < {TOL}")
print("  the loss falls by more than 0.05 over the epoch in both")

# %% [markdown]
# Two processes and one make the same run, to float32 rounding: AdamW moves a weight by up to
# its learning rate, 4e-4, at each step, forty times the bound. (The `train` column that rank 0
# logs above is its estimate on its own share of the batches, not a mean over the processes as
# the step losses are, so it is not compared.) Now **one** process resumes the two processes'
# checkpoint for a second epoch:

# %%
# NBVAL_IGNORE_OUTPUT
print(run_line.format(1, f"--epochs 2 --resume {demo / 'ddp'}"))
print(torchrun(1, "ddp", "--epochs", "2", "--resume", str(demo / "ddp")))

# %% [markdown]
# The resumed run continues at step 18 of 36, on half as many processes, with the same global
# batches. The package's test `tests/test_ddp.py` checks the same in the test suite, with
# `mp.spawn` instead of `torchrun`: two gloo processes against one, then a one-process resume of
# their checkpoint that must continue the one-process run within the same $10^{-5}$.

# %% [markdown]
# ## 11.6 The benchmark
#
# `python -m gpt2scratch bench train --device cuda` puts it together on a GPU: it measures the
# card's bf16 matmul rate, builds our GPT-2 124M and a Hugging Face `GPT2LMHeadModel` holding the
# same weights, checks that their logits agree, and times training steps at B = 16, T = 1024 in
# bf16, eager and under `torch.compile`, interleaved, printing tok/s and MFU against the measured
# rate for each and ours/HF as the last line; the cell below adds the data sheet's column.
# `--json PATH` writes the figures. `tools/gpu_bench.sh` runs it together with
# the ladder of section 11.3 at B = 16 and 64, and a B = 64 run without dropout (how models of this
# size are pre-trained today); its JSON files go into `benchmarks/`. On a CPU the same command
# compares the eager steps at B = 2, T = 256 in float32.

# %%
for name in ("train_cuda.json", "train_cpu.json"):
    data = load_bench(name)
    if data is None:
        print(f"benchmarks/{name}: not there (no run wrote it yet)")
        continue
    where = data["device_name"] or data["device"]
    print(
        f"benchmarks/{name}: {where}, torch {data['torch']}, {data['preset']}, "
        f"B={data['batch_size']}, T={data['context_length']}, {data['dtype']}, "
        f"{data['peak_dtype']} matmul rate {data['peak_flops'] / 1e9:,.0f} GFLOP/s"
    )
    for variant, r in data["results"].items():
        print(
            f"  {variant:<14} {r['ms_per_step']:9.1f} ms/step {r['tok_s']:9.0f} tok/s  "
            + mfu_columns(r["mfu"], data["peak_flops"], where)
        )
    ratios = ", ".join(f"{k} {v:.2f}" for k, v in data["ratios_ours_over_hf"].items())
    print(f"  ours/HF tok/s: {ratios}")

# %% [markdown]
# The GPU figures come from one run of `tools/gpu_bench.sh` on an H200 (its log is
# `benchmarks/gpu_bench_h200.log`). Two things stand out. Eager, ours is about twice as fast
# as HF's. Part of that is the padded LM head, worth about 1.4 times on its own in the ladder
# above, which the benchmark does not give HF's model: HF could pad with
# `resize_token_embeddings(pad_to_multiple_of=128)`, but that changes the model itself (47 new
# trainable rows, in the softmax and in the checkpoint, section 11.3), while the benchmark times
# both models as they are published, with 50,257 rows each; ours pads only the computation. The
# rest is per-layer overhead of HF's eager code.
# Compiled, the gap shrinks to the ratio printed above: `torch.compile` removes most of what
# separates two implementations of the same maths, and the padding still counts. The compiled
# HF model's MFU printed above is the fair baseline: it runs in the same process, on the same card,
# with the same weights.
#
# The CPU figures come from one `bench train --device cpu --steps 10 --warmup 1 --json
# benchmarks/train_cpu.json` run on the machine this book was built on, with its other jobs
# paused. Even so, single pairs of steps differ by up to 20% in either direction (the run's
# output lists them), so the two models are level on this CPU: the same weights, the same
# kernels (MKL's matrix products do most of the work for both), and about two-thirds of the
# float32 matmul rate each. The rest goes to what is not a large matrix product: attention's
# math kernel (the only one that supports dropout on a CPU), LayerNorm, GELU, the softmax over
# 50,257 logits, and AdamW's pass over 124M parameters.

# %% [markdown]
# ## 11.7 Past one machine, on paper
#
# This book has no cluster, so we plan a real pre-training run on paper, from the committed
# single-GPU figure. The target is llm.c's public reproduction of GPT-2 124M (Karpathy,
# "Reproducing GPT-2 (124M) in llm.c in 90 minutes for $20", llm.c discussion #481): 10 billion
# tokens of FineWeb, in optimizer steps of 524,288 tokens (64 rows of 1,024 tokens on each of
# 8 GPUs); llm.c trains it in 90 minutes on 8 A100s. One H200 runs our fastest step (B = 64,
# T = 1024, dropout 0, compiled) at the rate `benchmarks/fastpath_cuda_b64_dropout0.json`
# records. On one GPU, a step of 524,288 tokens is 8 micro-batches of 64 rows
# (`--accum-steps 8`); on eight, each GPU takes 64 rows and DDP all-reduces the gradients once
# per step.
#
# **The scaling assumption.** Each of the N GPUs does exactly the work of the single-GPU step,
# so N GPUs process N times the tokens per second, less the time the all-reduce adds. DDP
# reduces the gradients in the parameters' dtype, float32 here (autocast keeps the weights in
# float32): 4 bytes for each of 124M parameters. A ring all-reduce over N GPUs sends and
# receives $2(N-1)/N$ times that buffer per GPU. Within one node the H200s talk over NVLink,
# 900 GB/s per GPU with both directions together by NVIDIA's H200 data sheet, so 450 GB/s each
# way. Past one node the gradients also cross InfiniBand, one 400 Gb/s (50 GB/s) adapter per
# GPU in NVIDIA's DGX H200 data sheet. Both are peak rates; NCCL reaches most, not all, of them.
# The cell bounds the time from both sides: the all-reduce fully hidden behind the backward
# pass (DDP's overlap at its best), or fully exposed after it.

# %%
run = load_bench("fastpath_cuda_b64_dropout0.json")
assert run is not None, "benchmarks/fastpath_cuda_b64_dropout0.json is missing"
tok_s = run["results"]["+ torch.compile"]["tok_s"]  # one H200, B=64, T=1024, dropout 0
TOKENS, STEP_TOKENS, ROWS = 10e9, 524_288, 64  # llm.c's run: 10B tokens, 0.5M per step
step_s = ROWS * 1024 / tok_s  # one GPU's 64 rows: forward, backward, AdamW
with torch.device("meta"):
    n_params = GPT2(GPT2Config()).num_params()
grad_bytes = 4 * n_params  # float32 gradients, as DDP all-reduces them
print(f"one H200: {tok_s:,.0f} tok/s, {step_s * 1000:.1f} ms per step of 64 x 1,024")
steps = TOKENS / STEP_TOKENS
print(f"{TOKENS / 1e9:.0f}B tokens = {steps:,.0f} steps of {STEP_TOKENS:,} tokens")
print(f"1 H200: {TOKENS / tok_s / 3600:.1f} h (8 micro-batches of 64 rows per step)")
LINKS = {  # (GPUs, bytes/s per GPU in one direction)
    "8 H200s, NVLink": (8, 450e9),  # NVIDIA H200 data sheet: 900 GB/s both ways
    "2 nodes x 8, InfiniBand": (16, 50e9),  # DGX H200: a 400 Gb/s adapter per GPU
}
for name, (n, bandwidth) in LINKS.items():
    sent = 2 * (n - 1) / n * grad_bytes  # ring all-reduce, per GPU
    comm = sent / bandwidth
    print(
        f"{name}: all-reduce of {grad_bytes / 1e6:,.0f} MB of gradients sends "
        f"{sent / 1e6:,.0f} MB per GPU, {comm * 1000:.1f} ms = {comm / step_s:.1%} "
        f"of a 64-row step (bf16 gradients: half)"
    )
n, (_, bandwidth) = 8, LINKS["8 H200s, NVLink"]
comm = 2 * (n - 1) / n * grad_bytes / bandwidth
hidden, exposed = TOKENS / (n * tok_s), TOKENS / (n * tok_s) * (1 + comm / step_s)
print(f"8 H200s: {hidden / 60:.0f} min (all-reduce hidden) to {exposed / 60:.0f} min")
assert comm / step_s < 0.02 and hidden < exposed < TOKENS / tok_s / 7

# %% [markdown]
# On one node the all-reduce is small beside the step: 1.5% of it even if none of it overlapped
# with the backward pass, so eight H200s are close to eight times one, and the 10 billion tokens
# take well under an hour, against the 5.6 hours of one H200 (and llm.c's 90 minutes on 8 A100s,
# whose data sheet gives a third of the H200's dense bf16 rate). Past one node the same
# all-reduce takes 14% of a 64-row step if nothing hid it. DDP's
# overlap hides much of that, but it is the first cost to watch: keeping llm.c's 524,288 tokens
# per step on 16 GPUs halves each GPU's share of the work while its all-reduce stays the same.
# Gradients in bf16 (DDP's `bf16_compress_hook`) halve the bytes, and FSDP or a larger batch per
# step change the balance again. Measure before you buy: the plan's inputs are one GPU's
# measured rate and two data-sheet bandwidths.
#
# **The command.** `torchrun` starts the processes on each node and, through a *rendezvous*,
# lets the nodes find each other: with the `c10d` backend, one node hosts a small key-value
# store at the endpoint, every node's torchrun joins it under the same job id, and together
# they assign the ranks (no `--node_rank` to set by hand). The same command runs on every node,
# here 2 nodes of 8 GPUs with a global batch of 512 rows of 1,024 tokens (32 per GPU), as llm.c:
#
# ```bash
# torchrun --nnodes 2 --nproc_per_node 8 \
#     --rdzv_backend c10d --rdzv_endpoint node0.example.com:29500 --rdzv_id gpt2-124m \
#     -m gpt2scratch train --data fineweb/ --model 124M --context-length 1024 \
#     --batch-size 512 --dropout 0 --precision bf16 --device cuda --epochs 1 \
#     --out runs/fineweb
# ```
#
# `node0.example.com` is any one of the nodes, reachable from the others on that port. Each
# process takes the GPU of its `LOCAL_RANK`, NCCL finds the InfiniBand adapters itself, rank 0
# (on whichever node the rendezvous makes it) writes the checkpoints, and every node must see
# the same `--data` folder, and the same `--out` folder for `--resume` (a shared file system),
# since every process reads the checkpoint it resumes from.

# %% [markdown]
# ## Summary
#
# * **MFU** is tokens/s × FLOPs per token ÷ a peak rate: the data sheet's (PaLM's definition,
#   the one to compare with published runs) or the best matmul rate measured on the card (ours,
#   larger by the ratio of the two peaks); the chapter prints both. A training step of GPT-2
#   costs $6N + 12LTC$ FLOPs per token: 770 MFLOP at T = 256 and 855 MFLOP at T = 1024 for 124M,
#   almost all of it in the weight matmuls.
# * **The profile** of a CPU step shows the matmuls first, then attention's math kernel, the
#   optimizer's memory traffic and the loss over 50,257 logits; and, outside it, hundreds of MiB
#   of page faults per step, which `keep_freed_memory()` removes.
# * **The fast path** (`FastPath`): bf16 autocast, flash attention, fused AdamW, the LM head padded
#   to 50,304 (in the computation only: nothing padded is sampled, in the loss or saved) and
#   `torch.compile`, each switchable and each checked against the plain step.
# * **bf16 on a CPU** pays where the CPU has bf16 units (AVX512-BF16, AMX): `resolve_precision`
#   decides from the capability flags alone, `--precision auto` uses it, and quick mode pins
#   fp32. On this book's CPU it made a 124M training step x1.71 faster; the logits move by less
#   than a tenth of their spread, and only near-ties change their likeliest token.
# * **Gradient accumulation** divides each of k micro-batch losses by k, and equals one batch k
#   times larger up to rounding.
# * **DDP** averages gradients with an all-reduce that overlaps the backward pass; `torchrun`
#   starts the processes, `ShardedSampler` gives each its share of the same global batches, rank
#   0 writes, and a checkpoint resumes on any number of processes. Two gloo processes and one
#   give the same step losses and weights within $10^{-5}$. FSDP shards the model too, for
#   models that do not fit on one GPU.
# * **Measured on an H200** (sections 11.3 and 11.6, from `benchmarks/`): the whole fast path
#   passes 50% MFU against the measured matmul rate for 124M at T = 1024 once the batch is
#   large enough: 53.5% of the measured rate at B = 64 without dropout, which is 43.0% of the
#   data sheet's 989 TFLOP/s. Our compiled step is faster than HF's compiled one in the same run.
# * **Past one machine, on paper**: at that rate, llm.c's 10 billion tokens take 5.6 hours on
#   one H200 and 42 to 43 minutes on eight, whose NVLink all-reduce of the float32 gradients
#   costs 1.5% of a step; across nodes the same all-reduce costs 14.2%, and
#   `torchrun --rdzv_backend c10d` starts the run on every node.
#
# Next: [Appendix A — Engineering](A_engineering.ipynb) shows the plumbing under `train_run()`:
# atomic checkpoints, verified data files, and one error contract.

# %% [markdown]
# ## Exercises
#
# **1. MFU by hand.** A run of GPT-2 124M at T = 1024 processes 400,000 tokens per second on a
# GPU whose measured bf16 matmul rate is 790 TFLOP/s. What is its MFU against that rate, and
# against the data sheet's 989 TFLOP/s of an H200? How many tokens per second would 50% MFU
# against the measured rate need?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
flops = train_flops_per_token(GPT2Config(), 1024)
print(mfu_columns(mfu(400_000, flops, 790e12), 790e12, "NVIDIA H200"))
print(f"50% of the measured rate needs {0.5 * 790e12 / flops:,.0f} tokens/s")

# %% [markdown]
# **2. Why not pad the embedding?** nanoGPT pads the embedding matrix itself to 50,304 rows. What
# would that change for the loss, for sampling, and for a checkpoint exported to Hugging Face?
#
# ```{admonition} Solution
# :class: dropdown
# The 47 extra rows are real parameters then. Their logits enter the softmax, so the loss
# spreads a little probability onto tokens that never occur (training pushes them down, but they
# are never exactly zero); sampling can draw an id the tokenizer cannot decode unless it masks
# them; and an export must cut the rows off, or the checkpoint no longer matches GPT-2's
# 50,257-row layout. Padding only the computation, as `FastGPT2` does, keeps the speed of the
# aligned matmul and none of these problems.
# ```
#
# **3. Accumulation under DDP.** With `--accum-steps 4` on 8 GPUs, how many all-reduces of the
# gradients does one optimizer step need, and why does `make_backward` use `no_sync()`?
#
# ```{admonition} Solution
# :class: dropdown
# One. Without `no_sync()`, DDP would all-reduce after each of the 4 micro-batches' backward
# passes: 4 times the communication for the same result, since averaging is linear. Inside
# `no_sync()` the gradients just accumulate locally, and the last micro-batch's backward pass
# all-reduces the sum, overlapped with its computation as in the figure of section 11.5.
# ```
