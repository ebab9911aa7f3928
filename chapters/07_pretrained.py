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
# # Chapter 7 — Pretrained GPT-2 weights
#
# Chapter 5 trained GPT-2 on one short story, and it lost to a bigram counter. OpenAI trained the
# same architecture on about 40 GB of web text (Radford et al., 2019, *Language Models are
# Unsupervised Multitask Learners*), and published the weights. In this chapter you load
# those weights into the model of chapter 4, prove that the result computes exactly what Hugging
# Face's `GPT2LMHeadModel` computes, fine-tune it on *The Verdict*, and write it back in a form
# that Hugging Face loads. You build:
#
# 1. **`find_pretrained`**: where the weights live (a local folder, the Hugging Face cache,
#    `$GPT2SCRATCH_GPT2_DIR`, or a download);
# 2. a look **inside a checkpoint**: `config.json` and the safetensors format, read by hand;
# 3. **the name mapping** between our module tree and Hugging Face's, side by side, with the
#    one real difference (`Conv1D` stores its matrices transposed);
# 4. **`load_pretrained`**: strict (every missing, unexpected or misshapen tensor in one error),
#    pickle-free unless you opt in, and tied `wte`/`lm_head` sharing one matrix;
# 5. **proof of equality** with `transformers`: logits, and 20 greedy tokens;
# 6. **fine-tuning** on *The Verdict*: loss, perplexity and samples before and after;
# 7. **`save_pretrained`** and `python -m gpt2scratch export`: our models, loaded by Hugging Face;
# 8. a closing table: chapter 5's model, the pretrained one, and the fine-tuned one.
#
# **A note on this book's build.** The book is executed on a machine with no network, where
# OpenAI's weights are not available. Each cell below runs either way: when GPT-2 124M is found
# (section 7.1 says where it looks) the chapter uses it; otherwise it uses **the course's
# pretrained base**: a GPT-2-format model that this book trains with its own code on 42 plays
# and poems of Shakespeare (1.4 M tokens, [Appendix A.8](A_engineering.ipynb)), saved in
# Hugging Face's layout and loaded back through the same `load_pretrained` as OpenAI's weights.
# It is much smaller than GPT-2 and has read a thousandth of the text, but it has *learned a
# language*: it writes pseudo-Shakespeare, and fine-tuning starts from something. Every output
# that depends on the model names which one produced it, and the numbers for the real weights
# that this build cannot produce are quoted with their source.
#
# Everything marked `#| export` becomes `gpt2scratch/pretrained.py`, the one module that knows
# Hugging Face's names.

# %%
#| default_exp pretrained

# %%
#| export
"""Pretrained GPT-2 weights: the one name mapping between our GPT2 and Hugging Face's
GPT2LMHeadModel, `load_pretrained()` and `save_pretrained()`.

Generated from chapter 07 of the book. The package never imports `transformers`;
`huggingface_hub` is imported lazily, only to find or download a named model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gpt2scratch import files
from gpt2scratch.data import ChecksumMismatchError, check_sha256
from gpt2scratch.model import GPT2, HF_NAMES, GPT2Config

# %%
import contextlib
import io
import math
import re
import struct
import tempfile
import warnings

import matplotlib.pyplot as plt
import torch.nn as nn
from safetensors import safe_open

from gpt2scratch.__main__ import main as cli
from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.base_model import (
    held_out_plays,
    ngram_baselines,
    shakespeare_corpus,
    shakespeare_texts,
)
from gpt2scratch.corpus import corpus_loaders
from gpt2scratch.course import chapter5_model, pretrained_model
from gpt2scratch.data import verdict_text
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.run import make_loaders, split_text
from gpt2scratch.runtime import set_seed
from gpt2scratch.train import evaluate, perplexity
from gpt2scratch.trainer import train_run

with warnings.catch_warnings():  # keep stderr clean: tqdm warns that Jupyter
    warnings.simplefilter("ignore")  # widgets are missing when transformers loads
    import transformers
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()  # no progress bars in the book

torch.set_printoptions(precision=4, sci_mode=False)
tokenizer = gpt2_encoding()  # GPT-2's tokenizer, rebuilt offline in chapter 1
WORK = Path(tempfile.mkdtemp(prefix="ch07-"))  # scratch folder for this chapter's files


def show_error(err: Exception) -> None:
    """Print an error as a reader would see it, with the scratch folder as `work/`."""
    print(f"{type(err).__name__}: {str(err).replace(str(WORK), 'work')}")


# %% [markdown]
# ## 7.1 Where the weights come from
#
# Hugging Face hosts OpenAI's four GPT-2 sizes as the repositories `openai-community/gpt2`
# (124M), `-medium` (355M), `-large` (774M) and `-xl` (1558M). A repository holds a
# `config.json` (the hyper-parameters) and a `model.safetensors` (the tensors). The
# `huggingface_hub` library downloads them once into a cache folder
# (`~/.cache/huggingface/hub` by default) and finds them there afterwards.
#
# `find_pretrained` turns a name or a folder into the two files. It looks, in order:
#
# * for a **folder** you pass: its `config.json` and `model.safetensors`;
# * for the name `gpt2`: the folder named by **`$GPT2SCRATCH_GPT2_DIR`**, if set (chapters 7–10
#   all read it, so one line in your shell points the whole book at the real weights);
# * in the **Hugging Face cache**;
# * on the **network**, through `huggingface_hub`, unless `download=False` or `HF_HUB_OFFLINE=1`.
#
# When all of them fail, the error names the file it looked for and the three ways to get it.

# %%
#| export
HUB_REPOS = {name: f"openai-community/{name}" for name in HF_NAMES}  # gpt2 ... gpt2-xl
ENV_DIR = "GPT2SCRATCH_GPT2_DIR"  # a folder with GPT-2 124M: chapters 7-10 read it
CONFIG, WEIGHTS, PICKLE = "config.json", "model.safetensors", "pytorch_model.bin"


def find_pretrained(name_or_path, *, download: bool = True) -> tuple[Path, Path]:
    """(config.json, weights file) of a model name ("gpt2", ...) or a local folder.

    A name is looked up in $GPT2SCRATCH_GPT2_DIR (for "gpt2" only), then in the
    Hugging Face cache, then downloaded (when `download` and not HF_HUB_OFFLINE).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        kind = type(name_or_path).__name__
        raise TypeError(f"name_or_path must be a str or a path, got {kind}")
    if isinstance(name_or_path, str) and name_or_path in HUB_REPOS:
        if name_or_path == "gpt2" and os.environ.get(ENV_DIR):
            return _local_files(Path(os.environ[ENV_DIR]), f"${ENV_DIR} =")
        return _hub_files(HUB_REPOS[name_or_path], download)
    folder = Path(name_or_path)
    if not folder.is_dir():
        names = ", ".join(HUB_REPOS)
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a model name ({names}) nor a folder"
        )
    return _local_files(folder, "the folder")


def _local_files(folder: Path, what: str) -> tuple[Path, Path]:
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{what} {folder} holds no {CONFIG}")
    for name in (WEIGHTS, PICKLE):
        if (folder / name).is_file():
            return folder / CONFIG, folder / name
    raise FileNotFoundError(f"{what} {folder} holds no {WEIGHTS} (nor {PICKLE})")


def _hub_cache() -> Path:
    """The hub's cache folder by the hub's own rules, read now (it reads them once)."""
    env = os.environ
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(cache).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(env.get("HF_HOME") or Path(xdg) / "huggingface").expanduser() / "hub"


def _offline() -> bool:
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag.upper() in ("1", "ON", "YES", "TRUE") for flag in flags)


# %% [markdown]
# The cache lookup and the download are `huggingface_hub`'s: `try_to_load_from_cache` answers
# from the disk alone, and `hf_hub_download` fetches a file once and checks it. We import the
# library inside the function, so that `import gpt2scratch` never needs it.

# %%
#| export
def _hub_files(repo: str, download: bool) -> tuple[Path, Path]:
    """config.json and model.safetensors of `repo`: from the cache, else downloaded."""
    try:
        import huggingface_hub as hub  # lazy: only names need it
    except ImportError:
        hub = None
    cache, found, reason = _hub_cache(), [], "huggingface_hub is not installed"
    for filename in (CONFIG, WEIGHTS):
        path = hub and hub.try_to_load_from_cache(repo, filename, cache_dir=cache)
        if hub and not isinstance(path, str):  # not in the cache
            path = None
            off = _offline()
            reason = "downloads are off (HF_HUB_OFFLINE)" if off else "download=False"
            if download and not off:
                try:
                    path = hub.hf_hub_download(repo, filename, cache_dir=cache)
                except Exception as err:  # no network, no such file, ...
                    reason = f"the download failed ({type(err).__name__})"
                else:
                    _check_lfs_blob(Path(path), f"{repo}/{filename}")
        if not path:
            raise FileNotFoundError(
                f"{repo}/{filename} is not in the Hugging Face cache ({cache}) and "
                f"{reason}. To get it: run once online (HF_HUB_OFFLINE unset), or "
                f"pass a folder with {CONFIG} + {WEIGHTS}, or set {ENV_DIR} to one "
                "(for gpt2)"
            )
        found.append(Path(path))
    return found[0], found[1]


def _check_lfs_blob(path: Path, what: str) -> None:
    """The hub names an LFS file's blob by its sha256 (a git file's by its sha1):
    check a downloaded blob against its name. A corrupt one leaves the cache, so that a
    retry fetches it again."""
    blob = path.resolve()
    if re.fullmatch("[0-9a-f]{64}", blob.name):
        try:
            fix = f"It was removed from the cache: load {what} again"
            check_sha256(blob, blob.name, fix=fix)
        except ChecksumMismatchError:
            path.unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise


# %% [markdown]
# Getting OpenAI's weights is one opt-in download: set `DOWNLOAD_GPT2 = True` in the next cell
# and run it. It fetches `openai-community/gpt2` from the Hugging Face hub into its cache (the
# cell says how large the files are) and checks the weights against their sha256. Once the files
# are in the cache, every chapter finds them.

# %%
DOWNLOAD_GPT2 = False  # True: download GPT-2 124M (548 MB) into the Hugging Face cache
HUB_SIZES = {CONFIG: "665 bytes", WEIGHTS: "548 MB"}  # as the hub lists them
if DOWNLOAD_GPT2:
    print("downloaded:", *find_pretrained("gpt2"))
else:
    sizes = ", ".join(f"{name} ({size})" for name, size in HUB_SIZES.items())
    print("DOWNLOAD_GPT2 is False: nothing fetched. True fetches "
          f"openai-community/gpt2: {sizes}")

# %% [markdown]
# One helper answers "the pretrained model" for chapters 7 to 10, `pretrained_model()`: OpenAI's
# GPT-2 124M when `find_pretrained("gpt2", download=False)` finds it, otherwise the course's
# Shakespeare base, which it trains once (about half an hour on a laptop's CPU; in quick mode a
# tiny version in seconds) and caches under `runs/`. Either way we only keep *where its files
# are*: everything after this cell reads the two files `find_pretrained` returns.

# %%
# NBVAL_IGNORE_OUTPUT
pretrained = pretrained_model()
REAL, LABEL = not pretrained.standin, pretrained.label
SOURCE = "gpt2" if REAL else pretrained.folder  # a name (cache or env var), or a folder
config_file, weights_file = find_pretrained(SOURCE)
print(f"GPT-2 124M found: {REAL}. This chapter uses: {LABEL}")
size = weights_file.stat().st_size
print(f"files: {config_file.name}, {weights_file.name} ({size:,} bytes)")
assert weights_file.name == "model.safetensors"

# %% [markdown]
# ## 7.2 Inside a checkpoint
#
# `config.json` is plain JSON: the hyper-parameters under Hugging Face's names (`n_embd` is our
# `d_model`, `n_positions` our `context_length`), plus a few that our model has no knob for
# because GPT-2 fixed them (the activation, LayerNorm's epsilon).

# %%
# NBVAL_IGNORE_OUTPUT
hf_config = json.loads(config_file.read_text(encoding="utf-8"))
keys = ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
keys += ("activation_function", "layer_norm_epsilon", "tie_word_embeddings")
for key in keys:
    print(f"{key:>20}: {hf_config.get(key, '(absent: default)')}")
assert hf_config["model_type"] == "gpt2" and hf_config["vocab_size"] == 50257

# %% [markdown]
# `model.safetensors` is simpler than it sounds. Its first 8 bytes are a little-endian integer
# $n$; the next $n$ bytes are a JSON header giving, for each tensor, its dtype, shape and the
# byte range of its data; the rest of the file is the raw data, back to back. No code runs when
# the file is read, which is the point: the older `pytorch_model.bin` is a Python *pickle*, and
# unpickling a file can execute whatever its author put in it. Let us read the header by hand:

# %%
# NBVAL_IGNORE_OUTPUT
with open(weights_file, "rb") as f:
    (header_len,) = struct.unpack("<Q", f.read(8))  # unsigned 64-bit, little-endian
    header = json.loads(f.read(header_len))
metadata = header.pop("__metadata__", {})
by_offset = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
print(f"{LABEL}: header {header_len:,} bytes, metadata {metadata}")
print(f"{len(header)} tensors, in the order of their bytes:")
for key, info in by_offset[:3] + by_offset[-2:]:
    shape, offsets = str(info["shape"]), info["data_offsets"]
    print(f"  {key:<36} {info['dtype']} {shape:<14} {offsets}")
assert all(info["dtype"] == "F32" for info in header.values())

# %% [markdown]
# A tensor's bytes sit at `8 + n + start` to `8 + n + end`. Reading `wpe` ourselves, with
# nothing but `struct`, `json` and `torch.frombuffer`, gives exactly what the `safetensors`
# library returns:

# %%
# NBVAL_IGNORE_OUTPUT
wpe_key = next(k for k in header if k.endswith("wpe.weight"))
info = header[wpe_key]
start, end = info["data_offsets"]
with open(weights_file, "rb") as f:
    f.seek(8 + header_len + start)
    wpe_bytes = bytearray(f.read(end - start))
wpe_by_hand = torch.frombuffer(wpe_bytes, dtype=torch.float32).reshape(info["shape"])
with safe_open(weights_file, framework="pt") as f:
    wpe_library = f.get_tensor(wpe_key)
print(f"{wpe_key}: shape {tuple(wpe_by_hand.shape)}, identical to the library's:",
      torch.equal(wpe_by_hand, wpe_library))
assert torch.equal(wpe_by_hand, wpe_library)

# %% [markdown]
# Where do the bytes go? The token embedding alone is $50257 \times d$ numbers, which is why a
# small model's file is mostly `wte`:

# %%
# NBVAL_IGNORE_OUTPUT
groups = {"wte": 0, "wpe": 0, "blocks (h.*)": 0, "ln_f": 0, "lm_head": 0}
for key, info in header.items():
    name = key.removeprefix("transformer.")
    group = "blocks (h.*)" if name.startswith("h.") else name.split(".")[0]
    groups[group] += info["data_offsets"][1] - info["data_offsets"][0]
total = sum(groups.values())
fig, ax = plt.subplots(figsize=(8, 2.0))
left = 0
for (group, size), color in zip(groups.items(), plt.cm.tab10.colors):
    share = size / total
    ax.barh(0, share, left=left, color=color, label=f"{group} {share:.1%}")
    left += size / total
ax.set_yticks([])
ax.set_xlim(0, 1)
ax.set_title(f"where the bytes of model.safetensors go ({LABEL})")
ax.legend(ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25), fontsize=8)
plt.tight_layout()
plt.show()
print({group: f"{size / total:.1%}" for group, size in groups.items()})
assert groups["lm_head"] == 0  # tied: the output matrix is wte, stored once

# %% [markdown]
# `lm_head` takes no bytes: GPT-2 *ties* its output layer to the token embedding (chapter 4), and
# the file stores the shared matrix once, under `wte`.
#
# How much of a model is `wte` depends on its width and depth. For GPT-2 124M the shapes come
# from its config alone: built on the `meta` device (shapes, no memory), the embedding is about a
# third of the parameters, not most of them. The file OpenAI put on the hub also stores one
# `attn.bias` causal mask per layer (a $1024 \times 1024$ float32 buffer, 4 MB each), which our
# `save_pretrained` leaves out because the model rebuilds it:

# %%
with torch.device("meta"):  # shapes only: costs no memory
    gpt2_small = GPT2(GPT2Config.preset("124M"))
n_all = gpt2_small.num_params()
n_wte = gpt2_small.wte.weight.numel()
masks = gpt2_small.config.n_layers * gpt2_small.config.context_length**2 * 4
print(f"GPT-2 124M: {n_all:,} parameters, wte {n_wte:,} = {n_wte / n_all:.1%} of them")
n_masks = gpt2_small.config.n_layers
print(f"its hub file adds {n_masks} attn.bias masks: {masks / 1e6:.1f} MB")
assert 0.30 < n_wte / n_all < 0.32
#
# ## 7.3 The name mapping
#
# First the hyper-parameters. `config_from_hf` renames the five sizes and refuses, with one error
# that lists them all, the settings our `GPT2` cannot compute (another activation, another
# LayerNorm epsilon, a wider MLP, attention scaled by layer index). Dropout has one knob in our
# model and three in Hugging Face's; GPT-2 sets all three to 0.1, and we take `resid_pdrop`.
# `config_to_hf` goes the other way, for `save_pretrained`.

# %%
#| export
def config_from_hf(hf: dict, source="config.json") -> GPT2Config:
    """Our GPT2Config from Hugging Face's GPT-2 config.json (a dict); a ValueError
    lists every setting our GPT2 cannot represent."""
    sizes = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
    missing = [key for key in sizes if key not in hf]
    if missing:
        raise ValueError(f"{source} has no {missing}: not a GPT-2 config.json")
    fixed = {  # key: (HF's default, the values our GPT2 computes)
        "model_type": ("gpt2", ("gpt2",)),
        "activation_function": ("gelu_new", ("gelu_new", "gelu_pytorch_tanh")),
        "layer_norm_epsilon": (1e-5, (1e-5,)),
        "n_inner": (None, (None, 4 * hf["n_embd"])),
        "scale_attn_weights": (True, (True,)),
        "scale_attn_by_inverse_layer_idx": (False, (False,)),
        "add_cross_attention": (False, (False,)),
    }
    problems = [
        f"{key}={hf.get(key, default)!r} (ours: {' or '.join(map(repr, ok))})"
        for key, (default, ok) in fixed.items()
        if hf.get(key, default) not in ok
    ]
    if problems:
        raise ValueError(f"{source}: our GPT2 cannot represent {', '.join(problems)}")
    return GPT2Config(
        vocab_size=hf["vocab_size"],
        context_length=hf["n_positions"],
        d_model=hf["n_embd"],
        n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        dropout=hf.get("resid_pdrop", 0.1),
        tie_weights=hf.get("tie_word_embeddings", True),
    )


def config_to_hf(config: GPT2Config, dtype: torch.dtype = torch.float32) -> dict:
    """Hugging Face's config.json (a dict) for our GPT2Config."""
    if not config.qkv_bias:
        raise ValueError("Hugging Face's GPT-2 always has q, k, v biases: cannot "
                         "express qkv_bias=False")
    eot = 50256 if config.vocab_size > 50256 else None  # <|endoftext|>
    d = config.dropout
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        **dict(vocab_size=config.vocab_size, n_positions=config.context_length),
        **dict(n_embd=config.d_model, n_layer=config.n_layers, n_head=config.n_heads),
        **dict(n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5),
        **dict(resid_pdrop=d, embd_pdrop=d, attn_pdrop=d),
        "tie_word_embeddings": config.tie_weights,
        **dict(bos_token_id=eot, eos_token_id=eot),
        "dtype": str(dtype).removeprefix("torch."),
    }


# %% [markdown]
# Now the tensors. Chapter 4 named every module after Hugging Face's, so the two trees line up
# name for name. Building our model on PyTorch's `meta` device gives every tensor its shape
# without allocating or initialising it, which is all a comparison of names needs:

# %%
# NBVAL_IGNORE_OUTPUT
config = config_from_hf(hf_config, config_file.name)
with torch.device("meta"):
    skeleton = GPT2(config)
ours_shapes = {n: tuple(t.shape) for n, t in skeleton.state_dict().items()}
file_shapes = {k: tuple(info["shape"]) for k, info in header.items()}
print(f"{'ours (GPT2)':<24}{'shape':<14}{'key in model.safetensors':<36}shape")
for name in ours_shapes:
    if name.startswith("h.") and not name.startswith("h.0."):
        continue  # blocks 1.. look like block 0
    key = next((k for k in (f"transformer.{name}", name) if k in file_shapes), None)
    there = f"{key:<36}{file_shapes[key]}" if key else "(absent: tied to wte)"
    print(f"{name:<24}{str(ours_shapes[name]):<14}{there}")
print(f"... and the same for blocks 1 to {config.n_layers - 1}")
assert len(ours_shapes) == 5 + 12 * config.n_layers  # wte wpe ln_f(2) lm_head

# %% [markdown]
# Same names, same shapes, with two exceptions that the mapping must handle:
#
# * **The four projection matrices are transposed.** Hugging Face's GPT-2 keeps OpenAI's
#   original `Conv1D` layer, which computes `x @ W + b` with `W` stored as (in, out); our
#   `nn.Linear` computes `x @ W.T + b` with `W` stored as (out, in). Same numbers, other layout.
# * **Prefixes and extras.** `GPT2LMHeadModel` is a `GPT2Model` called `transformer` plus
#   `lm_head`, so its keys start with `transformer.`; OpenAI's files on the hub were written by a
#   `GPT2Model` and have no prefix, and older ones also store each block's causal mask as
#   `attn.bias` (and `attn.masked_bias`). The mask is computed, never learned: we skip it.
#
# A `Conv1D` and an `nn.Linear` holding the transposed matrix compute the same function:

# %%
torch.manual_seed(0)
conv = transformers.pytorch_utils.Conv1D(nf=12, nx=4)  # 4 inputs -> 12 outputs
linear = nn.Linear(4, 12)
with torch.no_grad():
    linear.weight.copy_(conv.weight.t())  # (4, 12) -> (12, 4)
    linear.bias.copy_(conv.bias)
x = torch.randn(2, 3, 4)
print(f"Conv1D weight {tuple(conv.weight.shape)}, "
      f"Linear weight {tuple(linear.weight.shape)}")
print("same outputs:", torch.allclose(conv(x), linear(x), atol=1e-6))
assert torch.allclose(conv(x), linear(x), atol=1e-6)

# %% [markdown]
# That is the whole mapping. `to_hf` gives our weights under Hugging Face's keys; `from_hf` reads
# a checkpoint's tensors into our names and is **strict**: a wrong file must fail loudly, and
# once, with every problem in one message, rather than load half a model. These two functions
# are the only place in the package that knows Hugging Face's names; the benchmarks and the tests
# use them too.

# %%
#| export
CONV1D = (  # HF stores these (in, out): transpose
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
BUFFERS = (".attn.bias", ".attn.masked_bias")  # the causal mask: computed, not learned
PREFIX = "transformer."  # GPT2LMHeadModel = a GPT2Model called `transformer` + lm_head


def hf_key(name: str) -> str:
    """Our state_dict name -> its key in a GPT2LMHeadModel checkpoint."""
    return name if name.startswith("lm_head.") else PREFIX + name


def to_hf(model: GPT2) -> dict[str, torch.Tensor]:
    """Our weights under HF's keys, the Conv1D matrices transposed to (in, out).

    Includes lm_head.weight: the same tensor as wte's when the weights are tied.
    """
    return {
        hf_key(name): t.t() if name.endswith(CONV1D) else t
        for name, t in model.state_dict().items()
    }


def from_hf(tensors: dict, model: GPT2, source="checkpoint") -> dict:
    """A GPT2LMHeadModel or GPT2Model checkpoint's tensors -> `model`'s state_dict.

    Strict: one ValueError lists every missing key, unexpected key and wrong shape.
    """
    expected = {hf_key(n): t.shape for n, t in model.state_dict().items()}
    state, unexpected, wrong = {}, [], []
    for key, t in tensors.items():
        full = key if key.startswith(("lm_head.", PREFIX)) else PREFIX + key
        name = full.removeprefix(PREFIX)
        if name.endswith(BUFFERS):
            continue
        if full not in expected:
            unexpected.append(key)
            continue
        t = t.t() if name.endswith(CONV1D) and t.dim() == 2 else t  # to (out, in)
        if t.shape != expected[full]:
            flip = (lambda s: s[::-1]) if name.endswith(CONV1D) else (lambda s: s)
            need, got = tuple(flip(expected[full])), tuple(flip(t.shape))
            wrong.append(f"{key} is {got}, the model needs {need}")
        state[name] = t
    if model.config.tie_weights and "wte.weight" in state:
        head = state.get("lm_head.weight")  # a tied file usually leaves it out
        if head is not None and not torch.equal(head, state["wte.weight"]):
            wrong.append("lm_head.weight differs from wte.weight; the config ties them")
        state["lm_head.weight"] = state["wte.weight"]
    missing = [key for key in expected if key.removeprefix(PREFIX) not in state]
    problems = [f"missing keys {missing}"] * bool(missing)
    problems += [f"unexpected keys {unexpected}"] * bool(unexpected) + wrong
    if problems:
        c = model.config
        size = f"d_model {c.d_model}, {c.n_layers} layers, vocab {c.vocab_size}"
        raise ValueError(f"{source} does not fit GPT2({size}): " + "; ".join(problems))
    return state


# %% [markdown]
# ## 7.4 Loading, strictly
#
# `load_pretrained` puts the pieces together: find the files, turn `config.json` into a
# `GPT2Config`, read the tensors, map them, and hand them to the model. Two details:
#
# * the model is built on the `meta` device, then `load_state_dict(..., assign=True)` makes its
#   modules hold the loaded tensors themselves. No memory is spent on random weights that would be
#   overwritten at once (for `gpt2-xl`, 1,558M of them);
# * `assign=True` gives `lm_head` its own `Parameter`, so we tie it to `wte` again: one matrix,
#   one gradient, exactly as in chapter 4.
#
# A pickle file (`pytorch_model.bin`) is refused unless the caller opts in, and even then it is
# read with `torch.load(weights_only=True)`, which unpickles tensors and plain containers only.

# %%
#| export
def read_weights(file, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; of a pickle only with allow_pickle=True."""
    file = Path(file)
    if file.suffix != ".safetensors":
        if not allow_pickle:
            raise ValueError(
                f"{file} is a pickle: unpickling can run code hidden in the file. Use "
                f"a {WEIGHTS}, or pass allow_pickle=True for a file you trust (it is "
                "then read with torch.load(weights_only=True))"
            )
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, EOFError, RuntimeError, ...
            raise ValueError(f"{file} is not a weights-only pickle ({err})") from None
    try:
        return load_file(file)
    except SafetensorError as err:
        raise ValueError(
            f"{file} is not a readable safetensors file ({err}): it is truncated or "
            "corrupt; download or copy it again"
        ) from None


def load_pretrained(name_or_path, dtype=None, device=None, allow_pickle=False) -> GPT2:
    """GPT-2 from a name ("gpt2" ... "gpt2-xl") or a folder in Hugging Face's format.

    Returns our GPT2 in eval mode, with wte and lm_head sharing one matrix when the
    config ties them; `dtype` (default: the file's) and `device` (default: cpu).
    """
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    config_file, weights_file = find_pretrained(name_or_path)
    try:
        hf_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{config_file} is not readable JSON ({err})") from None
    config = config_from_hf(hf_config, config_file)
    tensors = read_weights(weights_file, allow_pickle)
    with torch.device("meta"):  # shapes only: no memory, no random init to discard
        model = GPT2(config)
    state = from_hf(tensors, model, weights_file)
    if dtype is not None:
        state = {name: t.to(dtype) for name, t in state.items()}
    model.load_state_dict(state, assign=True)  # the modules now hold these tensors
    if config.tie_weights:  # assign gave lm_head its own Parameter: share wte's again
        model.lm_head.weight = model.wte.weight
    return model.to(device or "cpu").eval()


# %% [markdown]
# Loading the checkpoint of section 7.1:

# %%
# NBVAL_IGNORE_OUTPUT
model = load_pretrained(SOURCE)
print(f"{LABEL}: {model.num_params():,} parameters, config {model.config}")
print("lm_head and wte are one Parameter:", model.lm_head.weight is model.wte.weight)
print("training mode:", model.training)
assert model.lm_head.weight is model.wte.weight and not model.training

# %% [markdown]
# Strictness is worth seeing fail. A tiny checkpoint (vocabulary 100, d_model 8) written by
# Hugging Face, then broken in five ways: cut short, a missing tensor, an extra one, a wrong
# shape, and saved as a pickle. Each load fails before the model sees a number, and says why:

# %%
def hf_checkpoint(folder, seed=123, **sizes):
    """A seeded random GPT2LMHeadModel, written by transformers' save_pretrained."""
    torch.manual_seed(seed)
    hf_model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes))
    hf_model.save_pretrained(folder)
    return Path(folder)


TINY = dict(n_embd=8, n_layer=1, n_head=2, n_positions=16, vocab_size=100)
tiny_dir = hf_checkpoint(WORK / "tiny", **TINY)
tiny = load_file(tiny_dir / WEIGHTS)


def broken(name, tensors=None, raw=None):
    """A copy of the tiny checkpoint, with these `tensors` (or raw bytes) as weights."""
    folder = WORK / name
    folder.mkdir()
    (folder / CONFIG).write_text((tiny_dir / CONFIG).read_text())
    if raw is not None:
        (folder / WEIGHTS).write_bytes(raw)
    else:
        save_file(tensors, folder / WEIGHTS, metadata={"format": "pt"})
    return folder


whole = (tiny_dir / WEIGHTS).read_bytes()
cases = {
    "truncated": broken("truncated", raw=whole[: len(whole) // 2]),
    "missing": broken("missing", {k: v for k, v in tiny.items() if "ln_f" not in k}),
    "extra": broken("extra", {**tiny, "transformer.h.0.adapter": torch.zeros(8)}),
    "shape": broken("shape", {**tiny, "transformer.wpe.weight": torch.zeros(32, 8)}),
}
cases["pickle"] = WORK / "pickle"
cases["pickle"].mkdir()
(cases["pickle"] / CONFIG).write_text((tiny_dir / CONFIG).read_text())
torch.save(tiny, cases["pickle"] / PICKLE)
for case, folder in cases.items():
    try:
        load_pretrained(folder)
        raise AssertionError(f"{case}: loaded a broken checkpoint")
    except ValueError as err:
        show_error(err)
print("with the opt-in:", load_pretrained(cases["pickle"], allow_pickle=True).config)

# %% [markdown]
# And the layout of OpenAI's own files on the hub: no `transformer.` prefix, with the causal-mask
# buffers. Rewriting the tiny checkpoint that way and loading both gives the same model:

# %%
hub_style = {k.removeprefix(PREFIX): v for k, v in tiny.items()}
hub_style["h.0.attn.bias"] = torch.ones(1, 1, 16, 16).tril()  # the mask OpenAI stored
hub_dir = broken("hub-layout", hub_style)
a, b = load_pretrained(tiny_dir), load_pretrained(hub_dir)
same = all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
print(f"keys in the hub-layout file: {sorted(hub_style)[:3]} ...; same weights: {same}")
assert same

# %% [markdown]
# ## 7.5 Checked against Hugging Face
#
# Loading without an error proves the shapes fit, not that the numbers went to the right places:
# a transposition forgotten on a square matrix (`attn.c_proj` is $d \times d$) would load
# silently and compute nonsense. The test that settles it: Hugging Face's `GPT2LMHeadModel`,
# loaded from the same folder by `transformers` itself, must give the same logits on the same
# tokens, and the same greedy continuation.

# %%
# NBVAL_IGNORE_OUTPUT
hf_model = transformers.GPT2LMHeadModel.from_pretrained(config_file.parent).eval()
torch.manual_seed(0)
ids = torch.randint(0, 50257, (2, 64))
with torch.no_grad():
    ours_logits, hf_logits = model(ids), hf_model(input_ids=ids).logits
diff_in = (ours_logits - hf_logits).abs().max().item()
print(f"{LABEL}, loaded by us and by transformers {transformers.__version__}:")
print(f"max |our logits - HF logits| = {diff_in:.1e}  "
      f"(largest |logit| {ours_logits.abs().max().item():.1f})")
assert diff_in < 1e-4

prompt = torch.tensor([tokenizer.encode("Every effort moves you")])
ours_greedy = model.generate(prompt, 20, temperature=0)
hf_greedy = hf_model.generate(
    prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
    do_sample=False, eos_token_id=None, pad_token_id=0,
)
print("20 greedy tokens identical:", torch.equal(ours_greedy, hf_greedy))
assert torch.equal(ours_greedy, hf_greedy)

# %% [markdown]
# The logits agree to float32 round-off (the last digits depend on the CPU's kernels), and the
# greedy tokens agree exactly. Our chapter-4 model, holding these weights, *is* this checkpoint.
#
# ## 7.6 Generating text
#
# This is where a pretrained model starts to write: chapter 4's `generate`, unchanged, on loaded
# weights. OpenAI's 124M model writes English prose; the Shakespeare base writes what it has
# read, verse with speaker names and stage directions. A prompt in the style of the plays, then
# the chapter's usual prompt, each sampled with three seeds (temperature 0.8, top-50):

# %%
# NBVAL_IGNORE_OUTPUT
PROMPT = "Every effort moves you"
STAGE = "KING.\nWhat news, my lord?"  # a speaker's name, then a line, as in the plays
samples = []
for prompt in (STAGE, PROMPT):
    for seed in (1, 2, 3):
        text = model.generate(
            prompt, max_length=40, temperature=0.8, top_k=50, seed=seed
        )
        samples.append(text[len(prompt) :])
        print(f"[{LABEL}] seed {seed}: {text!r}\n")
print(f"[{LABEL}] greedy:", repr(model.generate(PROMPT, max_length=20, temperature=0)))
assert all(isinstance(text, str) for text in samples)

# %% [markdown]
# Are those words, or plausible-looking strings? One check that needs no judgement: the share of
# the words in the samples that occur somewhere in the training texts (a word here is a run of
# letters and apostrophes, compared in lower case). A random-weight model's samples are made of
# subword pieces and score far lower. And the number that matters most, the loss on plays the
# base never saw, next to chapter 5's two counters fitted on the same split
# (`ngram_baselines`, Appendix A.8):

# %%
# NBVAL_IGNORE_OUTPUT
def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


held_out = set(held_out_plays())
known = set()
for path in shakespeare_texts().glob("*_gut.txt"):
    if path.name.removesuffix("_gut.txt") not in held_out:  # the training texts only
        known.update(words(path.read_text(encoding="utf-8")))
sample_words = [w for text in samples for w in words(text)]
share = sum(w in known for w in sample_words) / len(sample_words)
print(f"[{LABEL}] {share:.1%} of the {len(sample_words)} words in the samples occur "
      f"in the {len(known):,}-word vocabulary of the training texts")

corpus = shakespeare_corpus()
window = min(256, model.config.context_length)
_, plays_val = corpus_loaders(corpus, window, batch_size=8)
base_val = evaluate(model, plays_val, full_or_quick(None, 20))
yardsticks = ngram_baselines(corpus.ids("train"), corpus.ids("val"))
print(f"held-out plays, nats per token: {LABEL} {base_val:.3f} | bigram counter "
      f"{yardsticks['bigram']:.3f} | unigram counter {yardsticks['unigram']:.3f}")
assert 0 <= share <= 1 and math.isfinite(base_val)

# %% [markdown]
# ## 7.7 Fine-tuning on *The Verdict*
#
# Fine-tuning is chapter 5's training loop started from pretrained weights instead of random
# ones, usually with a smaller learning rate, so that a few steps adapt the model without erasing
# what it knows. Same data, same 90/10 split, same context of 256 tokens as chapter 5.
#
# First the starting point. For OpenAI's GPT-2 124M on exactly this split, Sebastian Raschka's
# *LLMs-from-scratch* (chapter 5, "Loading pretrained weights from OpenAI") measures a training
# loss of **3.75** and a validation loss of **3.56** before any fine-tuning; this build cannot
# measure them (no real weights here), so they are quoted, not printed. Chapter 5's model, trained
# on this story alone, reached a validation loss of 6.608 at best (quoted from
# [chapter 5](05_training.ipynb)).

# %%
# NBVAL_IGNORE_OUTPUT
EPOCHS, BATCHES = full_or_quick(  # BATCHES: per loss estimate (None: all of them)
    (10, None), (1, 2), "1 epoch of fine-tuning, losses on 2 batches"
)
LR, CONTEXT = 3e-4, min(256, model.config.context_length)
train_loader, val_loader = make_loaders(
    verdict_text(), tokenizer, context_length=CONTEXT, batch_size=2, seed=123
)
train_text, val_text = split_text(verdict_text())
train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
verdict_yardsticks = ngram_baselines(train_ids, val_ids)
print(f"The Verdict: {len(train_ids):,} train and {len(val_ids):,} val tokens; "
      f"fine-tuning at lr {LR:g} for up to {EPOCHS} epochs")
print(f"counters on the same split, val: bigram {verdict_yardsticks['bigram']:.3f}, "
      f"unigram {verdict_yardsticks['unigram']:.3f} (chapter 5's)")
before = {
    "train": evaluate(model, train_loader, BATCHES),
    "val": evaluate(model, val_loader, BATCHES),
}
for split, loss in before.items():
    print(f"[{LABEL}] before fine-tuning: {split} loss {loss:.3f}, "
          f"perplexity {perplexity(loss):,.1f}")
print("GPT-2 124M, quoted from LLMs-from-scratch: train 3.75, val 3.56")
if REAL:
    assert abs(before["val"] - 3.56) < 0.05
assert all(math.isfinite(loss) for loss in before.values())

# %% [markdown]
# A fresh copy of the pretrained model, AdamW at a learning rate of LR (printed above; chapter 5
# used $4 \times 10^{-4}$ from scratch), and the loop of chapter 5 as `train_run()` runs it
# ([Appendix A](A_engineering.ipynb), section A.9: the same step, with callbacks), which prints
# the losses and a greedy sample after every epoch. A story of 4,612 training tokens is soon memorised, so the
# validation loss falls for a few epochs and then rises again. **The stopping rule:** train for
# `EPOCHS` epochs, evaluate on the whole validation split after each, and keep the weights of
# the epoch with the lowest validation loss (a callback copies them). Choosing on the split we
# report flatters the number a little, exactly as chapter 5's "val minimum" does, so the two are
# compared like for like.

# %%
# NBVAL_IGNORE_OUTPUT
set_seed(123)
finetuned = load_pretrained(SOURCE)
optimizer = torch.optim.AdamW(finetuned.parameters(), lr=LR, weight_decay=0.1)
best = {"val_loss": math.inf}


def keep_best(info: dict) -> None:
    """A train_run() callback: copy the weights when the validation loss reaches a new low."""
    if info["val_loss"] is not None and info["val_loss"] < best["val_loss"]:
        state = {k: t.detach().clone() for k, t in finetuned.state_dict().items()}
        best.update(val_loss=info["val_loss"], epoch=info["epoch"] + 1, state=state)


history = train_run(
    finetuned, train_loader, val_loader, optimizer, epochs=EPOCHS, eval_iters=BATCHES,
    sample_prompt=PROMPT, seed=123, progress=False, callbacks=[keep_best],
)  # fmt: skip
finetuned.load_state_dict(best["state"])
finetuned.eval()
print(f"[{LABEL} + fine-tuned] kept epoch {best['epoch']} of {EPOCHS}: val loss "
      f"{best['val_loss']:.3f} (was {before['val']:.3f}), perplexity "
      f"{perplexity(best['val_loss']):,.1f}")
assert history.train_loss[-1] < history.train_loss[0]  # the same batches, before/after
assert best["val_loss"] == min(history.val_loss[1:])

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(history.epoch, history.train_loss, "o-", label="train")
ax.plot(history.epoch, history.val_loss, "s-", label="validation")
kept = "kept (lowest validation loss)"
ax.plot(best["epoch"], best["val_loss"], "k*", ms=14, label=kept)
bigram = verdict_yardsticks["bigram"]
ax.axhline(bigram, color="C3", ls=":", label="bigram counter, val")
if not REAL:  # the real model's starting point, for scale
    ax.axhline(3.56, color="gray", ls="--", label="GPT-2 124M val before (rasbt)")
ax.set_xlabel("epoch")
ax.set_ylabel("loss")
ax.set_title(f"fine-tuning on The Verdict: {LABEL}")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7.8 Back to Hugging Face: `save_pretrained`
#
# The other direction: write our model so that the Hugging Face ecosystem can load it. The files
# are the ones we read in section 7.2: `config.json` from `config_to_hf`, and `model.safetensors`
# with Hugging Face's keys and `Conv1D` layout from `to_hf`. A tied `lm_head` is left out, as
# `transformers` itself does (safetensors refuses two names for one tensor, and `transformers`
# ties it again on load). Each file is written atomically ([Appendix A](A_engineering.ipynb)): a
# crash mid-save leaves the old file, never half a new one.

# %%
#| export
def save_pretrained(model: GPT2, directory) -> Path:
    """Write `model` as config.json + model.safetensors in Hugging Face's
    GPT2LMHeadModel layout; return the folder.

    `transformers.GPT2LMHeadModel.from_pretrained(directory)` loads it.
    """
    if not isinstance(model, GPT2):
        raise TypeError(f"model must be a GPT2, got {type(model).__name__}")
    config = config_to_hf(model.config, model.wte.weight.dtype)
    tensors = {k: t.detach().cpu().contiguous() for k, t in to_hf(model).items()}
    if model.config.tie_weights:  # stored once, under wte; HF ties it again on load
        del tensors["lm_head.weight"]
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)

    def write_weights(tmp: Path) -> None:
        save_file(tensors, tmp, metadata={"format": "pt"})  # HF checks the format

    def write_config(tmp: Path) -> None:
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    files.atomic_write(folder / WEIGHTS, write_weights)
    files.atomic_write(folder / CONFIG, write_config)
    return folder


# %% [markdown]
# The fine-tuned model, saved by us and loaded by `transformers`:

# %%
# NBVAL_IGNORE_OUTPUT
export_dir = save_pretrained(finetuned, WORK / "export")
hf_back, info = transformers.GPT2LMHeadModel.from_pretrained(
    export_dir, output_loading_info=True
)
hf_back.eval()
with torch.no_grad():
    ours_logits, hf_logits = finetuned(ids), hf_back(input_ids=ids).logits
diff_out = (ours_logits - hf_logits).abs().max().item()
print("files:", sorted(p.name for p in export_dir.iterdir()))
print("transformers' loading report:", {k: v for k, v in info.items() if v})
print(f"max |our logits - HF logits| = {diff_out:.1e} (fine-tuned {LABEL})")
assert diff_out < 1e-4 and not any(info.values())

# %% [markdown]
# The command line does the same for a checkpoint of `python -m gpt2scratch train`:
# `export --checkpoint DIR --out DIR`. And `train --init` starts a run from pretrained weights,
# a name or a folder: `python -m gpt2scratch train --init gpt2 --data story.txt` fine-tunes
# GPT-2 124M on your story, and the run folder records where the weights came from. Here the
# fine-tuned model goes through a training checkpoint and out again (run in the scratch folder,
# so that the printed paths are short):

# %%
# NBVAL_IGNORE_OUTPUT
save_checkpoint(WORK / "run", finetuned)
with contextlib.chdir(WORK):
    cli(["export", "--checkpoint", "run", "--out", "hf-run"])
hf_run = transformers.GPT2LMHeadModel.from_pretrained(WORK / "hf-run").eval()
same = all(
    torch.equal(t, hf_run.state_dict()[k]) for k, t in to_hf(finetuned).items()
)
print("the exported tensors are the fine-tuned model's, bit for bit:", same)
assert same

# %% [markdown]
# ## 7.9 Three models side by side
#
# The chapter-5 model comes from one shared helper, `chapter5_model()`: the model that `make run`
# saves in `runs/verdict` when it is there, otherwise a small stand-in trained once (under a
# minute) and labelled as such. All three are scored on the same validation windows (the
# shorter of their contexts) and continue the same prompt with the same seed (temperature 0.8,
# top-50):

# %%
# NBVAL_IGNORE_OUTPUT
course = chapter5_model()
window = min(CONTEXT, course.model.config.context_length)
_, val_windows = make_loaders(
    verdict_text(), tokenizer, context_length=window, batch_size=2, seed=123
)
rows = [
    ("from scratch: " + course.label, course.model),
    ("pretrained: " + LABEL, model),
    ("pretrained + fine-tuned: " + LABEL, finetuned),
]
table = []
for name, m in rows:
    val = evaluate(m, val_windows)
    text = m.generate(PROMPT, max_length=30, temperature=0.8, top_k=50, seed=1)
    sample = text[len(PROMPT) :]
    table.append((name, val, sample))
    print(f"{name}\n    val loss {val:.3f} (context {window}); sample: {sample!r}")
assert all(math.isfinite(val) for _, val, _ in table)

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(8, 3.2))
short = ["chapter 5" + " (stand-in)" * course.standin, "pretrained", "fine-tuned"]
ax.barh(short[::-1], [val for _, val, _ in table][::-1], color=["C0", "C1", "C2"])
ax.axvline(3.56, color="gray", ls="--", label="GPT-2 124M, before fine-tuning (rasbt)")
ax.axvline(verdict_yardsticks["bigram"], color="C3", ls=":", label="bigram counter")
ax.axvline(verdict_yardsticks["unigram"], color="C4", ls="-.", label="unigram counter")
ax.set_xlabel(f"validation loss on The Verdict (context {window}); lower is better")
ax.set_title(f"pretrained = {LABEL}")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=8, ncol=3)
plt.tight_layout()
plt.show()

# %% [markdown]
# The table is the chapter's point, read row by row (this build: the Shakespeare base).
#
# * **From scratch**, chapter 5's GPT-2 124M has seen only this story: 6.455 on its validation
#   windows, worse than the bigram counter (5.937), and its sample is the story's words in
#   scrambled order.
# * **Pretrained**, the base has read 1.4 M tokens of Shakespeare and not a word of this story.
#   It scores 6.828 here, worse than chapter 5's model: its English is three centuries older
#   than Wharton's, and it answers a modern prompt with verse and an `[Exit]`. On held-out plays it
#   scored 4.452 (section 7.6), far below that corpus's bigram counter (5.155).
# * **Pretrained + fine-tuned**: nine steps an epoch, five epochs kept by the stopping rule, and
#   the same base reaches 5.065: below the bigram counter and below everything chapter 5
#   reached from scratch (its best, 6.360, came with warm-up, cosine decay and clipping). The
#   sample is prose in the story's voice. What pretraining gave it is not the story
#   but the language: spelling, grammar and punctuation, which the story alone is too short to
#   teach.
#
# With OpenAI's weights the same code goes further, because GPT-2 has read 40 GB of modern web
# text: it starts at 3.56 on this split (quoted above) before any fine-tuning. Set
# `DOWNLOAD_GPT2 = True` in section 7.1, or `GPT2SCRATCH_GPT2_DIR`, and run the chapter again to
# see the table with it.
#
# ## Summary
#
# * **A checkpoint** in Hugging Face's format is a folder: `config.json` (hyper-parameters under
#   Hugging Face's names) and `model.safetensors` (8 bytes of header length, a JSON header, raw
#   tensor bytes; no code runs on load). We read the header and a tensor by hand and matched the
#   `safetensors` library bit for bit.
# * **Finding it**: `find_pretrained` takes a folder, or a name (`gpt2` ... `gpt2-xl`) that it
#   looks up in `$GPT2SCRATCH_GPT2_DIR` (for `gpt2`), in the Hugging Face cache, then on the
#   network unless `HF_HUB_OFFLINE` is set; its error says what it looked for and how to get it.
# * **The mapping** is short because chapter 4 used Hugging Face's names: add or drop the
#   `transformer.` prefix, skip the `attn.bias` mask buffers, transpose the four `Conv1D`
#   matrices, and tie `lm_head` to `wte`. `to_hf` and `from_hf` are the only place that knows it;
#   the benchmarks use them too.
# * **`load_pretrained`** builds the model on the `meta` device and assigns the loaded tensors,
#   refuses pickles without `allow_pickle=True`, and lists every missing, unexpected or
#   misshapen tensor in one error. Loaded by us and by `transformers`, the same checkpoint gave
#   logits equal to within $10^{-5}$ and the same 20 greedy tokens.
# * **`save_pretrained`** writes the same format back, atomically; `transformers` loaded our
#   fine-tuned model with an empty loading report and logits equal to within $10^{-5}$.
#   On the command line: `python -m gpt2scratch train --init gpt2 --data story.txt` fine-tunes,
#   and `python -m gpt2scratch export --checkpoint runs/story --out hf/story` exports.
# * **Fine-tuning** is chapter 5's loop started from loaded weights with a smaller learning rate.
#   GPT-2 124M starts at train 3.75 / val 3.56 on *The Verdict* (rasbt's measurement). This
#   build's Shakespeare base went from 6.828 to 5.065 in five epochs (the best of ten, chosen on
#   validation), below the bigram counter's 5.937 and chapter 5's from-scratch 6.455.
# * **The pretrained base** (Appendix A.8): when OpenAI's weights are not on the machine,
#   `pretrained_model()` trains a GPT-2-format model on Shakespeare once and loads it through the
#   same `load_pretrained`. It scored 4.452 on held-out plays, and 99.1% of the words it wrote
#   are words of its training texts.
#
# Next: [Chapter 8 — Sampling and fast generation](08_generation.ipynb) makes these models
# generate faster, with a KV cache, and better, with top-k and top-p sampling.
#
# ## Exercises
#
# **1. Sizes from the config alone.** Without downloading anything, how many parameters does
# `gpt2-medium` have, how many tensors does its checkpoint hold (ours, without the tied head),
# and how many bytes would its `model.safetensors` take in float32?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
with torch.device("meta"):  # shapes only: costs no memory
    medium = GPT2(GPT2Config.preset("gpt2-medium"))
n = medium.num_params()
tensors_stored = len(medium.state_dict()) - 1  # lm_head.weight is wte.weight
masks = medium.config.n_layers * medium.config.context_length**2 * 4  # attn.bias
print(f"gpt2-medium: {n:,} parameters in {tensors_stored} stored tensors, "
      f"{n * 4 / 1e9:.2f} GB in float32; the hub's file adds {medium.config.n_layers} "
      f"masks: {(n * 4 + masks) / 1e9:.2f} GB")

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The `meta` device builds the model's shapes without allocating them: 354,823,168 parameters in
# 292 tensors, 1.42 GB of float32 (plus the JSON header). That is what
# `load_pretrained("gpt2-medium")` would allocate, and what our `save_pretrained` would write.
# The file on the hub is larger, 1.52 GB, because OpenAI's export also stores one `attn.bias`
# causal mask per layer, 24 buffers of $1024 \times 1024$ floats that the model rebuilds anyway.
# ```
#
# **2. Half the bytes.** Load the checkpoint with `dtype=torch.bfloat16`. How far do the logits
# move from float32, and how often does the most likely next token change?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
half = load_pretrained(SOURCE, dtype=torch.bfloat16)
with torch.no_grad():
    full_logits, half_logits = model(ids), half(ids).float()
moved = (half_logits - full_logits).abs().max().item()
same_top = (half_logits.argmax(-1) == full_logits.argmax(-1)).float().mean().item()
print(f"[{LABEL}] bfloat16: max |logit change| {moved:.3f}; "
      f"same top token at {same_top:.1%} of positions")
assert half.wte.weight.dtype == torch.bfloat16
assert half.lm_head.weight is half.wte.weight

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# bfloat16 keeps float32's exponent but only 7 stored mantissa bits (8 with the implicit leading
# one), so every weight is rounded to
# about 2–3 significant digits, and the logits move with them (by up to 0.073 on the
# Shakespeare base); the most likely token still agrees at most positions (99.2% here),
# and where it changes the two candidates were nearly tied. For inference that is usually
# acceptable; for the equality proofs of this chapter it is not, which is why they run in
# float32.
# ```
#
# **3. Why leave `lm_head` out?** `save_pretrained` deletes `lm_head.weight` from the file when
# the weights are tied. What would go wrong if it stored it, and what does `from_hf` do when a
# file has it anyway?
#
# ```{admonition} Solution
# :class: dropdown
# `safetensors` refuses to save two names that share one storage (it cannot express aliasing),
# so storing it would need a copy: twice the bytes for the largest matrix, and a file in which the
# two copies could drift apart. `transformers` expects the tied key to be missing and ties it
# again on load. `from_hf` accepts a file that has it, checks that it equals `wte.weight`, and
# raises if it does not: a tied model cannot hold two different matrices.
# ```
