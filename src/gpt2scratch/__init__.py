"""gpt2scratch: GPT-2 rebuilt from scratch in PyTorch, exported from the chapters of the book.

Hand-written: the public API, re-exported from the generated modules, and nothing else.
"""
from gpt2scratch.attention_heads import attention_maps
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import load_pretrained, save_pretrained
from gpt2scratch.quickmode import is_quick as quick  # noqa: F401 (for the chapters; not public API)
from gpt2scratch.tokenizer import GPT2Tokenizer, gpt2_encoding
from gpt2scratch.tokenizer_basics import BPETokenizer

__all__ = ["BPETokenizer", "GPT2", "GPT2Config", "GPT2Tokenizer", "attention_maps", "gpt2_encoding", "load_pretrained",
           "save_pretrained"]
