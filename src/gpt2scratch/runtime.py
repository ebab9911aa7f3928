# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 104
"""Where a run computes and how it repeats itself: the device, seeds and random states.

Generated from Appendix A of the book. Chapter 5's `evaluate` leaves every random state
as it found it (`preserved_rng`) and reads a shuffled loader in order (`in_order`); a
checkpoint saves the random states (`rng_state`).
"""

from __future__ import annotations

__all__ = [
    "pick_device", "set_seed", "rng_state", "set_rng_state", "preserved_rng",
    "in_order",
]

import random
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from gpt2scratch import validation  # the package module (a module imports modules)


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to train on: `preferred` if given and usable, else cuda -> mps -> cpu,
    in that order.
    """
    if preferred is None or preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preferred!r} was asked for, but this PyTorch sees no "
                "CUDA GPU; use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preferred!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {preferred!r} was asked for, but MPS is not available; use "
            "'auto' or 'cpu'"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return device


# %% chapters/A_engineering.ipynb cell 106
def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA
    device too).
    """
    validation.check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each
    CUDA/MPS device.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` captured (device states only where that device
    exists).
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


@contextmanager
def preserved_rng():
    """Run a block without disturbing any random generator (evaluation, sampling a
    preview).
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def in_order(loader: Iterable) -> Iterable:
    """`loader`'s batches, unshuffled: each estimate reads the same windows."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        return DataLoader(loader.dataset, batch_size=loader.batch_size,
                          drop_last=loader.drop_last, collate_fn=loader.collate_fn)
    return loader
