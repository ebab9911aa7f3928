"""gpt2scratch: GPT-2 rebuilt from scratch in PyTorch, exported from the chapters of the book.

Hand-written: the public API, re-exported from the generated modules, and nothing else.
"""
import os as _os


def quick() -> bool:
    """True under `make test` (GPT2SCRATCH_QUICK=1): chapters that train shrink their runs."""
    return _os.environ.get("GPT2SCRATCH_QUICK", "") not in ("", "0")
