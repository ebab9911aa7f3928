# Generated from chapters/09_lora.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/09_lora.ipynb cell 2
"""LoRA (Hu et al., 2021): low-rank adapters on GPT-2's linear layers.

Generated from chapter 09 of the book. `apply_lora` wraps chosen `nn.Linear` layers in
`LoRALinear` and freezes everything else; `merge_lora` folds the adapters back into a
plain model; `save_adapter` / `load_adapter` keep just the adapter; `train_and_save`
loads a model, adds adapters (or not), trains and saves, for the chapter and the CLI.
"""

from __future__ import annotations

__all__ = [
    "LoRALinear", "DEFAULT_TARGETS", "lora_layers", "count_parameters", "find_targets",
    "apply_lora", "merge_lora", "ADAPTER_FILE", "CONFIG_FILE", "adapter_state",
    "save_adapter", "load_adapter", "load_base", "train_and_save",
    "finetune_and_measure",
]

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gpt2scratch.checkpoint import LATEST, MANIFEST, load_checkpoint
from gpt2scratch.corpus import Corpus, corpus_loaders
from gpt2scratch.files import atomic_write
from gpt2scratch.measure import peak_memory_mb
from gpt2scratch.pretrained import load_pretrained
from gpt2scratch.train import History, Run, TrainSettings, prepare_run, set_seed, train
from gpt2scratch.validation import check_int, check_number


# %% chapters/09_lora.ipynb cell 9
class LoRALinear(nn.Module):
    """`base(x) + (alpha / rank) * B(A(dropout(x)))`, with `base` frozen.

    A (rank, in) starts Kaiming-uniform and B (out, rank) at zero, so the layer starts
    as `base` exactly. `merge()` folds the update into base.weight; `unmerge()` takes
    it out again.
    """

    def __init__(
        self, base: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        self.rank = check_int("rank", rank, minimum=1)
        self.alpha = check_number("alpha", alpha, minimum=0, min_open=True)
        dropout = check_number("dropout", dropout, minimum=0, maximum=1, max_open=True)
        self.scaling = self.alpha / self.rank
        self.base, self.merged = base, False
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(w.new_empty(rank, base.in_features))
        self.lora_B = nn.Parameter(w.new_zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft
        self.dropout = nn.Dropout(dropout)

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / rank) * B @ A, shaped like base.weight: (out, in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:  # the update is already inside base.weight
            return y
        low = F.linear(self.dropout(x), self.lora_A)  # (..., rank)
        return y + self.scaling * F.linear(low, self.lora_B)  # (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


# %% chapters/09_lora.ipynb cell 15
DEFAULT_TARGETS = ("attn.c_attn",)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRALinear modules by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a tied matrix counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(
        p.numel() for p in params
    )


def find_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Names of the nn.Linear modules whose name is, or ends with, one of `targets`."""
    if isinstance(targets, str) or not targets:
        raise TypeError(f"targets must be a non-empty tuple of names, got {targets!r}")
    found = []
    for target in targets:
        names = [
            n
            for n, m in model.named_modules()
            if n == target or n.endswith("." + target)
        ]
        if not names:
            linears = sorted(
                {
                    n.split(".", 2)[-1]
                    for n, m in model.named_modules()
                    if isinstance(m, nn.Linear)
                }
            )
            raise ValueError(
                f"LoRA target {target!r} matches no module; "
                f"linear layers are named {linears}"
            )
        for name in names:
            module = model.get_submodule(name)
            if name == "lm_head" or module is getattr(model, "lm_head", None):
                raise ValueError(
                    "LoRA on lm_head is not supported: its weight is tied "
                    "to the token embeddings wte"
                )
            if not isinstance(module, nn.Linear):
                raise TypeError(
                    f"LoRA target {name!r} is a {type(module).__name__}, "
                    "not an nn.Linear"
                )
            found.append(name)
    return sorted(set(found), key=found.index)


# %% chapters/09_lora.ipynb cell 17
def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Sequence[str] = DEFAULT_TARGETS,
    verbose: bool = True,
) -> nn.Module:
    """Wrap the target linears in LoRALinear (in place), freeze everything else, and
    print the trainable parameters against the total. Returns `model`."""
    if lora_layers(model):
        raise ValueError("the model already has LoRA adapters: merge_lora() it first")
    names = find_targets(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent, _, child = name.rpartition(".")
        parent = model.get_submodule(parent)
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    model.lora_config = dict(
        rank=rank, alpha=float(alpha), dropout=float(dropout), targets=list(targets)
    )
    if verbose:
        trainable, total = count_parameters(model)
        print(
            f"LoRA rank {rank} on {len(names)} layers ({', '.join(targets)}): "
            f"{trainable:,} trainable of {total:,} parameters ({trainable / total:.2%})"
        )
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain nn.Linear back: the
    model is its original class again, with no adapter modules, all trainable."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base)
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model


# %% chapters/09_lora.ipynb cell 23
ADAPTER_FILE, CONFIG_FILE = "adapter.safetensors", "adapter_config.json"


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' A and B matrices, by name: `h.0.attn.c_attn.lora_A`, ..."""
    state = {}
    for name, layer in lora_layers(model).items():
        state[f"{name}.lora_A"], state[f"{name}.lora_B"] = layer.lora_A, layer.lora_B
    return state


def save_adapter(model: nn.Module, folder: str | Path) -> Path:
    """Write `adapter.safetensors` and `adapter_config.json` into `folder`; return it."""
    state = adapter_state(model)
    if not state:
        raise ValueError("the model has no LoRA adapters: apply_lora() it first")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    config = dict(format="gpt2scratch-lora", **model.lora_config)
    if hasattr(model, "config") and hasattr(model.config, "to_dict"):
        config["base_config"] = model.config.to_dict()
    folder = Path(folder)
    atomic_write(folder / ADAPTER_FILE, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(config, indent=2)
    atomic_write(
        folder / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8")
    )
    return folder


# %% chapters/09_lora.ipynb cell 25
def load_adapter(
    model: nn.Module, folder: str | Path, verbose: bool = False
) -> nn.Module:
    """Apply LoRA to `model` with the settings saved in `folder`, and load its A, B."""
    folder = Path(folder)
    for name in (CONFIG_FILE, ADAPTER_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"no LoRA adapter in {folder}: {name} is missing "
                "(save_adapter writes it)"
            )
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != "gpt2scratch-lora":
        raise ValueError(f"{folder / CONFIG_FILE} is not a gpt2scratch LoRA config")
    keys = ("rank", "alpha", "dropout", "targets")
    apply_lora(model, **{k: config[k] for k in keys}, verbose=verbose)
    saved, expected = load_file(str(folder / ADAPTER_FILE)), adapter_state(model)
    missing, unexpected = (
        sorted(set(expected) - set(saved)),
        sorted(set(saved) - set(expected)),
    )
    if missing or unexpected:
        merge_lora(model)  # B is still 0: merging leaves the weights as they were
        raise ValueError(
            f"adapter {folder / ADAPTER_FILE} does not fit this model: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    wrong = [n for n, t in expected.items() if saved[n].shape != t.shape]
    if wrong:
        merge_lora(model)  # B is still 0: merging leaves the weights as they were
        name = wrong[0]
        raise ValueError(
            f"adapter {name} has shape {tuple(saved[name].shape)}, "
            f"this model needs {tuple(expected[name].shape)}"
        )
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(saved[name])
    return model


# %% chapters/09_lora.ipynb cell 32
def load_base(base: str | Path) -> nn.Module:
    """The model in one of our checkpoint folders (chapter 5), else pretrained weights:
    a name such as "gpt2" or a Hugging Face folder (chapter 7)."""
    folder = Path(base)
    if (folder / LATEST).is_file() or (folder / MANIFEST).is_file():
        return load_checkpoint(folder).model
    return load_pretrained(base)


def train_and_save(
    settings: TrainSettings, base: nn.Module | str | Path | None = None, *,
    text: str | None = None, loaders: tuple | None = None, rank: int | None = None,
    alpha: float = 16.0, out: str | Path | None = None,
    resume: str | Path | None = None, device=None,
    ready: Callable[[Run], None] | None = None,
    loop: Callable[..., History] = train, **train_options,
) -> tuple[Run, History]:  # fmt: skip
    """Load `base` (a model, or a folder or name for `load_base`; None: a new
    `settings.model`, or the checkpoint that `resume` continues), add rank-`rank` LoRA
    adapters (None: train every weight), train on `text` (90/10) or `loaders` = (train,
    val), and save into `out`: the adapter, or the whole model's checkpoints.

    `ready(run)` runs before the first step. `loop` is `train` or a loop with its
    signature (chapter 11's fast path); `train_options` go to it.
    """
    if not isinstance(base, (nn.Module, str, Path, type(None))):
        raise TypeError(f"base must be a model, a folder or a name, got {base!r}")
    if base is not None and resume is not None:
        what = type(base).__name__ if isinstance(base, nn.Module) else repr(str(base))
        raise ValueError(
            f"base {what} starts from given weights and resume {str(resume)!r} "
            "continues a checkpoint: pass one of them"
        )
    if rank is not None and base is None:
        raise ValueError(f"LoRA (rank {rank}) adapts given weights: pass a base")
    model = load_base(base) if isinstance(base, (str, Path)) else base
    if rank is not None:  # adapters on the base weights, everything else frozen
        set_seed(settings.seed)  # A starts random: the same settings, the same adapters
        apply_lora(model, rank, alpha)
    run = prepare_run(
        settings, text, device=device, resume=resume, model=model, loaders=loaders
    )
    if ready is not None:
        ready(run)
    history = loop(
        run.model, run.train_loader, run.val_loader, run.optimizer, settings,
        scheduler=run.scheduler, checkpoint_dir=out if rank is None else None,
        resume_from=resume, **train_options,
    )  # fmt: skip
    if rank is not None and out is not None:
        save_adapter(run.model, out)
    return run, history


# %% chapters/09_lora.ipynb cell 34
def finetune_and_measure(
    base: str, corpus_dir: str, *, rank: int | None, lr: float, steps: int,
    alpha: float = 16.0, batch_size: int = 8, context_length: int = 128,
    eval_batches: int = 20, prompt: str = "def ", seed: int = 123,
    save_to: str | None = None,
) -> dict:  # fmt: skip
    """Fine-tune the checkpoint `base` on a tokenised corpus folder for `steps` steps
    (>= 3), fully (rank None) or with LoRA, and measure it. Run it in a fresh process,
    so that the peak memory it reports is this run's."""
    corpus = Corpus.load(corpus_dir)
    loaders = corpus_loaders(corpus, context_length, batch_size, seed)
    settings = TrainSettings(
        context_length=context_length, batch_size=batch_size, dropout=0.0, lr=lr,
        weight_decay=0.0, grad_clip=1.0, eval_every=steps, eval_iters=eval_batches,
        max_steps=steps, seed=seed, progress=False, verbose=False,
    )  # fmt: skip
    options, before, times = dict(max_length=30, temperature=0), [], []  # greedy
    run, history = train_and_save(
        settings, base, loaders=loaders, rank=rank, alpha=alpha, out=save_to,
        ready=lambda run: before.append(run.model.generate(prompt, **options)),
        callbacks=[lambda info: times.append(time.perf_counter())],
    )  # fmt: skip
    # the time between step ends; the last step also evaluated, so it is left out
    step_s = statistics.median(b - a for a, b in zip(times[:-2], times[1:-1]))
    trainable, total = count_parameters(run.model)
    return dict(
        rank=rank, trainable=trainable, total=total, step_ms=1000 * step_s,
        peak_mb=peak_memory_mb(run.device), val_before=history.val_loss[0],
        val_after=history.val_loss[-1], sample_before=before[0],
        sample_after=run.model.generate(prompt, **options), device=str(run.device),
    )  # fmt: skip
