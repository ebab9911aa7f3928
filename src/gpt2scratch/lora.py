# Generated from chapters/09_lora.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/09_lora.ipynb cell 2
"""LoRA (Hu et al., 2021): low-rank adapters on GPT-2's linear layers.

Generated from chapter 09 of the book. `apply_lora` wraps chosen `nn.Linear` layers in
`LoRALinear` (a tied head also through `LoRAEmbedding`) and freezes everything else;
`merge_lora` folds the adapters back into a plain model; `save_adapter` /
`load_adapter` keep just the adapter; `train_and_save` loads a model, adds adapters
(or not), trains and saves, for the chapter and the CLI.

About 430 lines, past the house's 400: the adapter, its file format and the one recipe
that trains and measures it are read together in chapter 9, and the CLI uses all three.
"""

from __future__ import annotations

__all__ = [
    "LoRALinear", "DEFAULT_TARGETS", "lora_layers", "count_parameters", "find_targets",
    "LoRAEmbedding", "apply_lora", "merge_lora", "ADAPTER_FILE", "CONFIG_FILE",
    "adapter_state", "save_adapter", "load_adapter", "load_base", "train_and_save",
    "freeze", "finetune_and_measure",
]

import json
import math
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
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.run import Run, TrainSettings, make_loaders, prepare_run
from gpt2scratch.runtime import set_seed
from gpt2scratch.train import History
from gpt2scratch.trainer import train_run
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
            if not isinstance(module, nn.Linear):
                raise TypeError(
                    f"LoRA target {name!r} is a {type(module).__name__}, "
                    "not an nn.Linear"
                )
            found.append(name)
    return sorted(set(found), key=found.index)


# %% chapters/09_lora.ipynb cell 17
class LoRAEmbedding(nn.Module):
    """The token embedding of a model whose head is tied to it, read through the
    head's adapter `head` (a LoRALinear around lm_head): row i of
    W + (alpha / rank) * B @ A."""

    def __init__(self, base: nn.Embedding, head: LoRALinear):
        super().__init__()
        if head.base.weight is not base.weight:
            raise ValueError(
                "LoRAEmbedding is for a tied head: the head's weight is not wte's"
            )
        self.base = base
        self._head = [head]  # not a submodule: A and B are registered once, in lm_head

    @property
    def weight(self) -> torch.Tensor:
        """The shared matrix W, without the update (the model's device and dtype)."""
        return self.base.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        head, x = self._head[0], self.base(idx)  # x: (B, T, C)
        if head.merged:  # the update is already inside the shared matrix
            return x
        rows = F.embedding(idx, head.lora_B)  # (B, T, r): rows of B
        return x + head.scaling * (rows @ head.lora_A)  # (B, T, r) @ (r, C)


# %% chapters/09_lora.ipynb cell 19
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
    head = getattr(model, "lm_head", None)
    shared = getattr(getattr(model, "wte", None), "weight", None)
    if isinstance(head, LoRALinear) and head.base.weight is shared:
        model.wte = LoRAEmbedding(model.wte, head)  # tied: one adapter, read twice
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
    if isinstance(getattr(model, "wte", None), LoRAEmbedding):
        model.wte = model.wte.base  # the head's merge has updated the shared matrix
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model


# %% chapters/09_lora.ipynb cell 25
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


# %% chapters/09_lora.ipynb cell 27
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


# %% chapters/09_lora.ipynb cell 38
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
    alpha: float = 16.0, targets: Sequence[str] = DEFAULT_TARGETS,
    out: str | Path | None = None, resume: str | Path | None = None, device=None,
    ready: Callable[[Run], None] | None = None,
    loop: Callable[..., History] = train_run, **train_options,
) -> tuple[Run, History]:  # fmt: skip
    """Load `base` (a model, or a folder or name for `load_base`; None: a new
    `settings.model`, or the checkpoint that `resume` continues), add rank-`rank` LoRA
    adapters on `targets` (rank None: train every weight), train on `text` (90/10) or
    `loaders` = (train, val), and save into `out`: the adapter, or the whole model's
    checkpoints.

    `ready(run)` runs before the first step. `loop` is `train_run` or a loop with its
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
        apply_lora(model, rank, alpha, targets=targets)
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


# %% chapters/09_lora.ipynb cell 40
def freeze(model: nn.Module, names: Sequence[str]) -> nn.Module:
    """Freeze the parameters `names` (as `named_parameters` spells them, such as
    "wte.weight"): `prepare_run` leaves them out of AdamW. Returns `model`."""
    params = dict(model.named_parameters())
    for name in names:
        if name not in params:
            raise ValueError(
                f"freeze names {name!r}, not a parameter of the model; "
                f"its parameters are named like {list(params)[:3]}"
            )
        params[name].requires_grad_(False)
    return model


# %% chapters/09_lora.ipynb cell 42
def finetune_and_measure(
    base: str, corpus_dir: str | None = None, *, text: str | None = None,
    rank: int | None, lr: float, steps: int, alpha: float = 16.0,
    targets: Sequence[str] = DEFAULT_TARGETS, frozen: Sequence[str] = (),
    batch_size: int = 8, context_length: int = 128, eval_every: int | None = None,
    eval_batches: int | None = 20, prompt: str = "def ", seed: int = 123,
    save_to: str | None = None,
) -> dict:  # fmt: skip
    """Fine-tune the model `base` (a folder or name, as `load_base` reads) for `steps`
    steps on a tokenised corpus folder or on `text` (90/10), fully (rank None; the
    parameters named in `frozen` stay as they are) or with LoRA, with a validation loss
    every `eval_every` steps (default: at the end only). Run it in a fresh process, so
    that the peak memory it reports is this run's."""
    if (corpus_dir is None) == (text is None):
        given = (
            "neither" if corpus_dir is None else f"corpus_dir {corpus_dir!r} and text"
        )
        raise ValueError(f"pass exactly one of corpus_dir and text, got {given}")
    if frozen and rank is not None:
        raise ValueError(
            f"frozen {list(frozen)} is for full fine-tuning: LoRA (rank {rank}) "
            "already freezes every base weight"
        )
    check_int("steps", steps, minimum=1)
    every = check_int("eval_every", eval_every or steps, minimum=1)
    if steps % every:
        raise ValueError(f"steps {steps} is not a multiple of eval_every {every}")
    if corpus_dir is not None:
        corpus = Corpus.load(corpus_dir)
        loaders = corpus_loaders(corpus, context_length, batch_size, seed)
    else:
        enc, shape = gpt2_encoding(), dict(context_length=context_length, seed=seed)
        loaders = make_loaders(text, enc, batch_size=batch_size, **shape)
    settings = TrainSettings(
        context_length=context_length, batch_size=batch_size, dropout=0.0, lr=lr,
        weight_decay=0.0, grad_clip=1.0, epochs=math.ceil(steps / len(loaders[0])),
        eval_every=every, eval_iters=eval_batches, max_steps=steps, seed=seed,
        progress=False, verbose=False,
    )  # fmt: skip
    model = freeze(load_base(base), frozen)
    options, before = dict(max_length=30, temperature=0), []  # greedy
    run, history = train_and_save(
        settings, model, loaders=loaders, rank=rank, alpha=alpha, targets=targets,
        out=save_to,
        ready=lambda run: before.append(run.model.generate(prompt, **options)),
    )  # fmt: skip
    val = history.val_loss  # at history.step: 0, every, 2 * every, ..., steps
    best = min(range(len(val)), key=val.__getitem__)
    trainable, total = count_parameters(run.model)
    return dict(
        rank=rank, lr=lr, trainable=trainable, total=total,
        peak_mb=peak_memory_mb(run.device), eval_steps=history.step, val=val,
        val_before=val[0], val_after=val[-1], val_best=val[best],
        best_step=history.step[best], sample_before=before[0],
        sample_after=run.model.generate(prompt, **options), device=str(run.device),
    )  # fmt: skip
