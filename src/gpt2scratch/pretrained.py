# Generated from chapters/07_pretrained.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/07_pretrained.ipynb cell 2
"""Pretrained GPT-2 weights: the one name mapping between our GPT2 and Hugging Face's
GPT2LMHeadModel, `load_pretrained()` and `save_pretrained()`.

Generated from chapter 07 of the book. The package never imports `transformers`;
`huggingface_hub` is imported lazily, only to find or download a named model.
"""

from __future__ import annotations

__all__ = [
    "HUB_REPOS", "ENV_DIR", "CONFIG", "WEIGHTS", "PICKLE", "find_pretrained",
    "config_from_hf", "config_to_hf", "CONV1D", "BUFFERS", "PREFIX", "hf_key", "to_hf",
    "from_hf", "read_weights", "load_pretrained", "save_pretrained",
]

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


# %% chapters/07_pretrained.ipynb cell 5
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


# %% chapters/07_pretrained.ipynb cell 7
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


# %% chapters/07_pretrained.ipynb cell 22
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


# %% chapters/07_pretrained.ipynb cell 28
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


# %% chapters/07_pretrained.ipynb cell 30
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


# %% chapters/07_pretrained.ipynb cell 49
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
