"""Quick mode: `make test` sets GPT2SCRATCH_QUICK=1 and the chapters that train shrink their runs.

Hand-written. A chapter calls `full_or_quick(...)` once; it prints one line when it shrinks.
"""
from __future__ import annotations

import os

ENV = "GPT2SCRATCH_QUICK"


def is_quick() -> bool:
    """True under `make test` (GPT2SCRATCH_QUICK=1)."""
    return os.environ.get(ENV, "") not in ("", "0")


def full_or_quick(full, quick, what: str = "smaller runs"):
    """`full` normally; `quick` under `make test`, after printing one line that says so."""
    if is_quick():
        print(f"quick mode ({ENV}=1, as under `make test`): {what}; "
              "the book's numbers come from the full run")
        return quick
    return full
