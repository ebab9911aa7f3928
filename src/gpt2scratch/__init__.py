"""gpt2scratch: GPT-2 rebuilt from scratch in PyTorch, exported from the chapters of the book.

Hand-written: the public API, re-exported from the generated modules, and nothing else.
"""
import os as _os

from gpt2scratch.tokenizer import GPT2Tokenizer, gpt2_encoding
from gpt2scratch.model import GPT2, GPT2Config

__all__ = ["GPT2", "GPT2Config", "GPT2Tokenizer", "gpt2_encoding", "quick"]


def quick() -> bool:
    """True under `make test` (GPT2SCRATCH_QUICK=1): chapters that train shrink their runs."""
    return _os.environ.get("GPT2SCRATCH_QUICK", "") not in ("", "0")
