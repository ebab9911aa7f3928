# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 52
"""Measuring a process: its peak memory, its page faults, and the glibc malloc settings
that decide how many page faults a training step pays on a CPU.

Generated from Appendix A of the book. Chapter 9 reports peak memory; chapter 11 counts
page faults and keeps freed memory.
"""

from __future__ import annotations

__all__ = ["peak_memory_mb", "keep_freed_memory", "page_faults", "step_page_faults"]

import ctypes
import time

import torch
import torch.nn.functional as F

from gpt2scratch.model import GPT2, GPT2Config


def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory so far: CUDA's peak allocation; else the resident
    high-water mark (VmHWM: ru_maxrss would count the parent's memory at fork)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:  # Linux
            kib = next(line for line in f if line.startswith("VmHWM:")).split()[1]
        return int(kib) / 1024
    except (OSError, StopIteration):  # macOS: ru_maxrss is in bytes there
        import resource  # Unix only

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# %% chapters/A_engineering.ipynb cell 53
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (Linux only; False elsewhere).

    On a CPU, PyTorch takes every activation and gradient from malloc, and glibc maps
    blocks over 32 MB (the logits, the embedding's gradient) fresh from the kernel and
    unmaps them when freed: every page is faulted in and zeroed again at the next step.
    Raising the mmap and trim thresholds keeps those pages for the next step.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    mmap_ok = mallopt(M_MMAP_THRESHOLD, 1 << 30)  # 1 GiB
    return bool(mmap_ok) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def page_faults() -> int:
    """Minor page faults of this process so far (Linux/macOS): pages the kernel mapped."""
    import resource  # Unix only

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# %% chapters/A_engineering.ipynb cell 55
def step_page_faults(config: GPT2Config, steps: int = 4, keep: bool = False) -> list:
    """[page faults, seconds] of each training step after the first (B=2, fused AdamW),
    with glibc's defaults, or after `keep_freed_memory()` if `keep`."""
    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    model = GPT2(config)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, fused=True)
    x = torch.randint(0, config.vocab_size, (2, config.context_length + 1))
    out = []
    for _ in range(steps):
        f0, t0 = page_faults(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        out.append([page_faults() - f0, time.perf_counter() - t0])
    return out[1:]
