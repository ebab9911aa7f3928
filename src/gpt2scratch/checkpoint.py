# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 27
"""Checkpoints: model, optimizer, scheduler, random states and training progress, saved
atomically as safetensors + JSON (no pickle) and loaded back bit for bit.

Generated from Appendix A of the book. Layout of a checkpoint folder:

    latest.json                  {"checkpoint": "step-00000090", ...}: written last,
    atomically
    step-00000090/model.safetensors   weights (a tied weight stored once, its aliases in
    checkpoint.json)
    step-00000090/state.safetensors   optimizer and RNG tensors
    step-00000090/checkpoint.json     config, structure of the optimizer/scheduler
    state, train state, file sizes
"""
from __future__ import annotations

__all__ = [
    "FORMAT", "VERSION", "LATEST", "MANIFEST", "pack", "unpack", "unique_weights",
    "CheckpointWriteError", "save_checkpoint", "Checkpoint", "resolve_checkpoint",
    "read_manifest", "load_checkpoint",
]

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from gpt2scratch import files, validation  # package modules (a module imports modules)
from gpt2scratch.model import GPT2, GPT2Config

FORMAT = "gpt2scratch-checkpoint"
VERSION = 1
LATEST = "latest.json"
MANIFEST = "checkpoint.json"


# %% chapters/A_engineering.ipynb cell 29
def pack(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """`obj` as JSON-able data; its tensors are moved into `tensors` under names
    starting with `key`.
    """
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise ValueError(f"two tensors would be stored under the name {key!r}")
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {
            "__tuple__": [pack(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
        }
    if isinstance(obj, list):
        return [pack(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: pack(v, tensors, f"{key}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [pack(k, tensors, f"{key}.key{i}"), pack(v, tensors, f"{key}.{k}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(
        f"cannot store a {type(obj).__name__} (at {key!r}) in a checkpoint: only "
        "tensors, arrays, "
        "numbers, strings, None, lists, tuples and dicts"
    )


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `pack`."""
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        if set(obj) == {"__items__"}:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: unpack(v, tensors) for k, v in obj.items()}
    return obj


# %% chapters/A_engineering.ipynb cell 31
def unique_weights(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to store, {alias: stored name}): a weight shared by several names is
    stored once.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in model.state_dict().items():
        identity = (
            t.device,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            t.stride(),
            t.dtype,
        )
        if identity in seen:
            aliases[name] = seen[identity]
        else:
            seen[identity] = name
            tensors[name] = t.detach().to("cpu").contiguous()
    return tensors, aliases


# %% chapters/A_engineering.ipynb cell 33
def _write_folder(
    folder: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    train_state: dict | None,
    rng: dict | None,
) -> None:
    """Write model.safetensors, state.safetensors and checkpoint.json into `folder`."""
    weights, aliases = unique_weights(model)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    tensors: dict[str, torch.Tensor] = {}

    def packed(obj, key):
        return None if obj is None else pack(obj, tensors, key)

    def state(obj):
        return None if obj is None else obj.state_dict()

    config = getattr(model, "config", None)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict() if config is not None else None,
        "aliases": aliases,
        "optimizer": packed(state(optimizer), "optimizer"),
        "scheduler": packed(state(scheduler), "scheduler"),
        "rng": packed(rng, "rng"),
        "train_state": packed(train_state, "train_state"),
    }
    save_file(tensors, folder / "state.safetensors")
    names = ("model.safetensors", "state.safetensors")
    manifest["files"] = {name: (folder / name).stat().st_size for name in names}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    for name in (*names, MANIFEST):
        files.default_mode(folder / name)
        files.fsync_file(folder / name)
    files.default_mode(folder)
    files.fsync_dir(folder)


# %% chapters/A_engineering.ipynb cell 35
class CheckpointWriteError(OSError):
    """A save failed (a full disk, say); the previous checkpoint is left as it was."""

    def __init__(self, root: Path, previous: list[str], err: OSError):
        kept = f"the previous checkpoint {root / previous[0]} is intact" if previous else (
            "there is no earlier checkpoint")
        super().__init__(f"could not save a checkpoint in {root}: "
                         f"{err.strerror or err}; {kept}")


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer=None,
    scheduler=None,
    *,
    train_state: dict | None = None,
    rng: dict | None = None,
    keep: int = 1,
) -> Path:
    """Save a checkpoint into `directory` (created if needed); return its folder.

    `train_state` is anything JSON-like (step, epoch, history, ...); `rng` the random
    states to restore on resume. The newest `keep` checkpoints are kept.
    """
    validation.check_int("keep", keep, minimum=1)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    step = int((train_state or {}).get("step", 0))
    try:
        previous = json.loads((root / LATEST).read_text(encoding="utf-8")).get(
            "kept", []
        )
    except (OSError, ValueError, AttributeError):
        previous = []
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        _write_folder(tmp, model, optimizer, scheduler, train_state, rng)
        name, i = f"step-{step:08d}", 1
        while (root / name).exists():  # saved twice at one step: never overwrite
            name, i = f"step-{step:08d}.{i}", i + 1
        os.rename(tmp, root / name)
        files.fsync_dir(root)
        kept = [name] + [p for p in previous if p != name][: keep - 1]
        pointer = {"format": FORMAT, "checkpoint": name, "step": step, "kept": kept}
        write = lambda p: p.write_text(json.dumps(pointer), encoding="utf-8")  # noqa: E731
        files.atomic_write(root / LATEST, write)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):  # a full disk, say: name what is still there
            raise CheckpointWriteError(root, previous, err) from err
        raise
    # old checkpoints, and temp folders of interrupted saves
    for entry in root.iterdir():
        stale = entry.name.startswith("step-") and entry.name not in kept
        if entry.is_dir() and (stale or entry.name.startswith(".tmp-step-")):
            shutil.rmtree(entry, ignore_errors=True)
    return root / name


# %% chapters/A_engineering.ipynb cell 37
@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the model and the saved states."""

    path: Path
    model: nn.Module
    config: GPT2Config | None
    train_state: dict | None
    rng: dict | None


def _read_latest(root: Path) -> dict:
    try:
        pointer = json.loads((root / LATEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint pointer {root / LATEST} is unreadable ({err})"
        ) from None
    if pointer.get("format") != FORMAT or "checkpoint" not in pointer:
        raise ValueError(f"{root / LATEST} is not a {FORMAT} pointer file")
    return pointer


def resolve_checkpoint(directory: str | Path) -> Path:
    """The checkpoint folder `directory` means: its `latest.json` target, or itself."""
    root = Path(directory)
    if (root / LATEST).is_file():
        return root / _read_latest(root)["checkpoint"]
    if (root / MANIFEST).is_file():
        return root
    if not root.exists():
        raise FileNotFoundError(f"no checkpoint at {root}: the folder does not exist")
    raise FileNotFoundError(
        f"no checkpoint in {root}: expected {LATEST} (written by save_checkpoint) "
        f"or a checkpoint folder with {MANIFEST}"
    )


# %% chapters/A_engineering.ipynb cell 39
def read_manifest(directory: str | Path) -> tuple[Path, dict]:
    """(checkpoint folder, its checkpoint.json), checked: format, version, sizes."""
    path = resolve_checkpoint(directory)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"checkpoint manifest {path / MANIFEST} is unreadable ({err})"
        ) from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(
            f"{path / MANIFEST} is not a {FORMAT} version {VERSION} checkpoint"
        )
    for name, size in manifest["files"].items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            raise ValueError(
                f"checkpoint file {path / name} has {actual} bytes, the manifest "
                f"says {size}: it is missing, truncated or was changed after saving"
            )
    return path, manifest


# %% chapters/A_engineering.ipynb cell 41
def _read_weights(path: Path, aliases: dict, expected: dict) -> dict:
    """model.safetensors with its aliases restored, checked against the model."""
    file = path / "model.safetensors"
    weights = load_file(file)
    for alias, name in aliases.items():
        weights[alias] = weights[name]
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {file} does not fit this model: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    for name, t in weights.items():
        if t.shape != expected[name].shape:
            raise ValueError(
                f"checkpoint {file}: {name} has shape {tuple(t.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    return weights


# %% chapters/A_engineering.ipynb cell 43
def load_checkpoint(
    directory: str | Path,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Load the checkpoint in `directory` into `model` (built from the saved config, on
    `device`, if None), and into `optimizer` / `scheduler` if given. Random states are
    returned, not applied.
    """
    path, manifest = read_manifest(directory)
    config = manifest["config"] and GPT2Config.from_dict(manifest["config"])
    if model is None:
        if config is None:
            raise ValueError(
                f"{path} holds no model config: pass the model to load the weights into"
            )
        model = GPT2(config).to(device)

    model.load_state_dict(_read_weights(path, manifest["aliases"], model.state_dict()))

    tensors = load_file(path / "state.safetensors")
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            if manifest[what] is None:
                raise ValueError(
                    f"checkpoint {path} holds no {what} state, but a {what} was "
                    "passed to load it into"
                )
            state = unpack(manifest[what], tensors)
            saved = len(state.get("param_groups", []))
            if what == "optimizer" and saved != len(obj.param_groups):
                raise ValueError(
                    f"checkpoint {path} holds an optimizer with {saved} parameter "
                    f"group(s), the one passed has {len(obj.param_groups)}: build it as "
                    "the run that saved it did (chapter 5's adamw() makes two groups, one "
                    "with decay_all=True)"
                )
            obj.load_state_dict(state)
    return Checkpoint(
        path=path,
        model=model,
        config=config,
        train_state=unpack(manifest["train_state"], tensors),
        rng=unpack(manifest["rng"], tensors),
    )
