# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 108
"""A training run from its settings: `TrainSettings`, the loaders, `prepare_run`.

Generated from Appendix A of the book. `prepare_run` builds the loaders, the model,
AdamW and the schedule that `trainer.train_run()` trains; the command line reads its
flags into a `TrainSettings`.
"""

from __future__ import annotations

__all__ = [
    "TrainSettings", "RECIPE", "split_text", "make_loaders", "Run", "prepare_run",
]

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from gpt2scratch import checkpoint, runtime, validation  # package modules
from gpt2scratch.dataset import check_window_fits, create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.train import adamw, warmup_cosine


# %% chapters/A_engineering.ipynb cell 109
@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run. `train_run()` reads the loop's; `prepare_run()`
    the rest.
    """

    model: str = "124M"  # a GPT2Config.preset name
    context_length: int = 256
    batch_size: int = 2
    dropout: float = 0.1
    lr: float = 4e-4  # AdamW's (peak) learning rate
    weight_decay: float = 0.1
    decay_all: bool = False  # decay every tensor, not only those with >= 2 dimensions
    schedule: str = "constant"  # or "cosine": 10% linear warm-up + cosine decay to 10%
    grad_clip: float | None = None  # clip the global gradient norm to this
    epochs: int = 1
    eval_every: int | None = None  # steps between evaluations (default: once per epoch)
    eval_iters: int | None = None  # batches per loss estimate (default: all)
    sample_prompt: str | None = None  # continued after each epoch
    sample_tokens: int = 25
    sample_temperature: float = 0.0  # 0 = greedy
    checkpoint_every: int | None = None  # steps between checkpoints (default: epoch)
    max_steps: int | None = None  # stop early
    seed: int = 123
    progress: bool = True  # a tqdm bar on stderr
    verbose: bool = True  # one line per evaluation on stdout

    def __post_init__(self):
        for name in ("context_length", "batch_size", "epochs", "sample_tokens"):
            validation.check_int(name, getattr(self, name), minimum=1)
        for name in ("eval_every", "eval_iters", "checkpoint_every", "max_steps"):
            validation.check_int(name, getattr(self, name), minimum=1, none_ok=True)
        validation.check_int("seed", self.seed)
        validation.check_number("dropout", self.dropout, minimum=0, maximum=1,
                                max_open=True)  # fmt: skip
        validation.check_number("lr", self.lr, minimum=0, min_open=True)
        validation.check_number("weight_decay", self.weight_decay, minimum=0)
        validation.check_bool("decay_all", self.decay_all)
        validation.check_number(
            "grad_clip", self.grad_clip, minimum=0, min_open=True, none_ok=True
        )
        temperature = self.sample_temperature
        validation.check_number("sample_temperature", temperature, minimum=0)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}"
            )


RECIPE = TrainSettings(epochs=10, schedule="cosine", grad_clip=1.0, eval_iters=5)


# %% chapters/A_engineering.ipynb cell 111
def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    validation.check_number("train_ratio", train_ratio, minimum=0, maximum=1,
                            min_open=True, max_open=True)  # fmt: skip
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


def make_loaders(
    text: str,
    tokenizer,
    *,
    context_length: int = 256,
    batch_size: int = 2,
    train_ratio: float = 0.9,
    seed: int = 123,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders over a 90/10 character split of `text`."""
    train_text, val_text = split_text(text, train_ratio)
    encode = lambda s: tokenizer.encode(s, allowed_special={"<|endoftext|>"})
    train_ids, val_ids = encode(train_text), encode(val_text)
    for name, part, ratio in (
        ("train", train_ids, train_ratio),
        ("validation", val_ids, 1 - train_ratio),
    ):
        check_window_fits(
            f"the {name} split ({ratio:.0%} of the text)", len(part), context_length
        )
    windows = (len(train_ids) - context_length - 1) // context_length + 1
    if windows < batch_size:
        raise ValueError(
            f"the train split has {len(train_ids)} tokens = {windows} window(s) of "
            f"{context_length}, fewer than batch_size {batch_size}; "
            "use a longer text or a smaller batch size or context length"
        )
    options = dict(batch_size=batch_size, context_length=context_length)
    train = create_dataloader(train_ids, shuffle=True, drop_last=True, seed=seed,
                              **options)  # fmt: skip
    return train, create_dataloader(val_ids, shuffle=False, drop_last=False, **options)


# %% chapters/A_engineering.ipynb cell 113
@dataclass
class Run:
    """What `prepare_run` builds: everything `train_run()` needs."""

    settings: TrainSettings
    config: GPT2Config
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None
    train_loader: DataLoader
    val_loader: DataLoader


def _config(settings: TrainSettings, resume, model) -> GPT2Config:
    """The model's config: the given model's, the checkpoint's, or the preset's."""
    if model is not None:
        if settings.context_length > model.config.context_length:
            raise ValueError(
                f"context_length {settings.context_length} is longer than the "
                f"model's context of {model.config.context_length} tokens"
            )
        return model.config
    if resume is not None:  # the checkpoint's model config wins
        _, manifest = checkpoint.read_manifest(resume)
        if manifest["config"] is None:
            raise ValueError(f"checkpoint {resume} holds no model config")
        return GPT2Config.from_dict(manifest["config"])
    return GPT2Config.preset(
        settings.model, context_length=settings.context_length, dropout=settings.dropout
    )


# %% chapters/A_engineering.ipynb cell 114
def prepare_run(
    settings: TrainSettings,
    text: str | None = None,
    *,
    device=None,
    resume: str | Path | None = None,
    model: nn.Module | None = None,
    loaders: tuple[DataLoader, DataLoader] | None = None,
) -> Run:
    """Loaders, model, AdamW and schedule for `settings` on `text` (90/10 split).

    `model` starts from given weights (fine-tuning, chapters 7 and 9): its config wins
    over `settings.model`, and only parameters that require grad go into AdamW.
    `loaders` = (train, val) replaces the split of `text` (a corpus, chapter 9).
    """
    device = runtime.pick_device(device)
    config = _config(settings, resume, model)
    if loaders is None:
        if text is None:
            raise ValueError("prepare_run needs a text or loaders=(train, val)")
        window = settings.context_length if model is not None else config.context_length
        loaders = make_loaders(
            text,
            gpt2_encoding(),
            context_length=window,
            batch_size=settings.batch_size,
            seed=settings.seed,
        )
    runtime.set_seed(settings.seed)
    model = (GPT2(config) if model is None else model).to(device)
    fused = device.type in ("cpu", "cuda", "mps")  # one kernel updates every tensor
    optimizer = adamw(model, settings.lr, settings.weight_decay,
                      decay_all=settings.decay_all, fused=fused)  # fmt: skip
    scheduler = None
    if settings.schedule == "cosine":
        total = settings.epochs * len(loaders[0])
        scheduler = warmup_cosine(optimizer, max(1, total // 10), total, 0.1)
    return Run(settings, config, device, model, optimizer, scheduler, *loaders)
