# Generated from chapters/05_training.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/05_training.ipynb cell 2
"""Training GPT-2: device and seeds, the loss, evaluation, the training loop, the
learning-rate schedule.

Generated from chapter 05 of the book. `train()` is the loop; checkpoints live in
`gpt2scratch.checkpoint`.
"""

from __future__ import annotations

__all__ = [
    "pick_device", "set_seed", "epoch_seed", "calc_loss_batch", "perplexity",
    "split_text", "make_loaders", "rng_state", "set_rng_state", "preserved_rng",
    "evaluate", "NonFiniteLossError", "StepResult", "autograd_backward", "train_step",
    "History", "epoch_batches", "in_order", "TrainSettings", "RECIPE", "train",
    "WarmupCosine", "warmup_cosine", "Run", "prepare_run",
]

import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from gpt2scratch.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from gpt2scratch.dataset import check_window_fits, create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.validation import check_int, check_number


# %% chapters/05_training.ipynb cell 6
def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to train on: `preferred` if given and usable, else cuda -> mps -> cpu,
    in that order.
    """
    if preferred is None or preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preferred!r} was asked for, but this PyTorch sees no "
                "CUDA GPU; use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preferred!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {preferred!r} was asked for, but MPS is not available; use "
            "'auto' or 'cpu'"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {preferred!r}; "
            "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return device


# %% chapters/05_training.ipynb cell 8
def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA
    device too).
    """
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle: a function of (seed, epoch) alone."""
    return (seed * 1_000_003 + epoch) % 2**63


# %% chapters/05_training.ipynb cell 15
def calc_loss_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on one batch: inputs and targets are (B,
    T) token ids.
    """
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )  # (B*T, V) vs (B*T,)


def perplexity(loss: float) -> float:
    """exp(loss): the size of a uniform choice as uncertain as the model."""
    return math.exp(loss)


# %% chapters/05_training.ipynb cell 21
def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_number(
        "train_ratio", train_ratio, minimum=0, maximum=1, min_open=True, max_open=True
    )
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


# %% chapters/05_training.ipynb cell 23
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
    need = (
        context_length + 1
    )  # a window is context_length inputs + 1 more token for the last target
    for name, part, ratio in (
        ("train", train_ids, train_ratio),
        ("validation", val_ids, 1 - train_ratio),
    ):
        check_window_fits(
            f"the {name} split ({ratio:.0%} of the text)", len(part), context_length
        )
    windows = (len(train_ids) - need) // context_length + 1
    if windows < batch_size:
        raise ValueError(
            f"the train split has {len(train_ids)} tokens = {windows} window(s) of "
            f"{context_length}, fewer than batch_size {batch_size}; "
            "use a longer text or a smaller batch size or context length"
        )
    train_loader = create_dataloader(
        train_ids,
        batch_size=batch_size,
        context_length=context_length,
        shuffle=True,
        drop_last=True,
        seed=seed,
    )
    val_loader = create_dataloader(
        val_ids,
        batch_size=batch_size,
        context_length=context_length,
        shuffle=False,
        drop_last=False,
    )
    return train_loader, val_loader


# %% chapters/05_training.ipynb cell 26
def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each
    CUDA/MPS device.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` captured (device states only where that device
    exists).
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


@contextmanager
def preserved_rng():
    """Run a block without disturbing any random generator (evaluation, sampling a
    preview).
    """
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


# %% chapters/05_training.ipynb cell 28
@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    per_token: bool = False,
) -> float:
    """Mean loss over the first `max_batches` batches of `loader` (all if None), in eval
    mode (no dropout): the mean of the batch means, or with `per_token` the mean over
    every target token, so that a last, shorter batch weighs by its size.

    Restores the model's train/eval mode and every random state afterwards.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, weight, n = 0.0, 0, 0
    try:
        with preserved_rng():
            for inputs, targets in loader:
                if max_batches is not None and n >= max_batches:
                    break
                w = targets.numel() if per_token else 1
                total += calc_loss_batch(model, inputs, targets, device).item() * w
                weight, n = weight + w, n + 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no batches: nothing to evaluate")
    return total / weight


# %% chapters/05_training.ipynb cell 31
class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite: the run has diverged."""

    def __init__(self, step: int | None, value: float, what: str = "loss"):
        self.step, self.value, self.what = step, value, what
        super().__init__(
            f"{what} is {value} at step {step}: training diverged. Lower the learning "
            "rate, clip gradients (grad_clip=1.0), or resume from an earlier checkpoint"
        )


@dataclass
class StepResult:
    loss: float  # the batch's training loss (dropout on)
    grad_norm: float  # global gradient norm, before clipping
    lr: float  # the learning rate this step used


def autograd_backward(model: nn.Module, inputs, targets) -> torch.Tensor:
    """Forward, loss, and backward with autograd: fills every `p.grad`, returns the
    loss.
    """
    loss = calc_loss_batch(model, inputs, targets)
    loss.backward()
    return loss.detach()


def train_step(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    grad_clip: float | None = None,
    backward=autograd_backward,
    step: int | None = None,
) -> StepResult:
    """One optimizer step on one batch: gradients, divergence check, clip, update."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = backward(model, inputs, targets).item()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = get_total_norm([p.grad for p in params])
    if not math.isfinite(loss):
        raise NonFiniteLossError(step, loss)
    if not math.isfinite(norm.item()):
        raise NonFiniteLossError(step, norm.item(), "gradient norm")
    if grad_clip is not None:
        clip_grads_with_norm_(params, grad_clip, norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return StepResult(loss, norm.item(), lr)


# %% chapters/05_training.ipynb cell 35
@dataclass
class History:
    """What `train()` records: per evaluation (first six lists) and per step (next
    three).
    """

    step: list[int] = field(default_factory=list)  # optimizer steps done when evaluated
    epoch: list[float] = field(default_factory=list)  # step / steps_per_epoch
    tokens_seen: list[int] = field(default_factory=list)
    train_loss: list[float] = field(
        default_factory=list
    )  # eval mode, eval_iters batches
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(
        default_factory=list
    )  # learning rate of the last step taken
    step_loss: list[float] = field(default_factory=list)  # every step (dropout on)
    step_lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    samples: list[list] = field(default_factory=list)  # [step, text] after each epoch

    def to_dict(self) -> dict:
        return asdict(self)

    def append(self, **values) -> None:
        """Append one value to each named list."""
        for name, value in values.items():
            getattr(self, name).append(value)

    def add_step(self, result: StepResult) -> None:
        self.append(
            step_loss=result.loss, step_lr=result.lr, grad_norm=result.grad_norm
        )


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """One epoch of `loader`, in a shuffle order that depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler.generator = generator  # the permutation of this epoch
        loader.generator = (
            generator  # the loader's base seed: keep the global RNG out of it
        )
    elif hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
        sampler.set_epoch(epoch)
    return iter(loader)


def in_order(loader: Iterable) -> Iterable:
    """The same batches as `loader`, unshuffled: evaluation reads the same windows."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            shuffle=False,
            drop_last=loader.drop_last,
            collate_fn=loader.collate_fn,
        )
    return loader


# %% chapters/05_training.ipynb cell 37
@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run. `train()` reads the loop's; `prepare_run()` the
    rest.
    """

    model: str = "124M"  # a GPT2Config.preset name
    context_length: int = 256
    batch_size: int = 2
    dropout: float = 0.1
    lr: float = 4e-4  # AdamW's (peak) learning rate
    weight_decay: float = 0.1
    schedule: str = "constant"  # or "cosine": 10% linear warm-up + cosine decay to 10%
    grad_clip: float | None = None  # clip the global gradient norm to this
    epochs: int = 1
    eval_every: int | None = None  # steps between evaluations (default: once per epoch)
    eval_iters: int | None = None  # batches per loss estimate (default: all)
    sample_prompt: str | None = None  # continued after each epoch
    sample_tokens: int = 25
    sample_temperature: float = 0.0  # 0 = greedy
    checkpoint_every: int | None = (
        None  # steps between checkpoints (default: each epoch)
    )
    max_steps: int | None = None  # stop early
    seed: int = 123
    progress: bool = True  # a tqdm bar on stderr
    verbose: bool = True  # one line per evaluation on stdout

    def __post_init__(self):
        for name in ("context_length", "batch_size", "epochs", "sample_tokens"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("eval_every", "eval_iters", "checkpoint_every", "max_steps"):
            check_int(name, getattr(self, name), minimum=1, none_ok=True)
        check_int("seed", self.seed)
        check_number("dropout", self.dropout, minimum=0, maximum=1, max_open=True)
        check_number("lr", self.lr, minimum=0, min_open=True)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number(
            "grad_clip", self.grad_clip, minimum=0, min_open=True, none_ok=True
        )
        check_number("sample_temperature", self.sample_temperature, minimum=0)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}"
            )


RECIPE = TrainSettings(epochs=10, schedule="cosine", grad_clip=1.0, eval_iters=5)


# %% chapters/05_training.ipynb cell 39
@dataclass
class _Progress:
    """Where a run is: what a checkpoint saves and a resume restores."""

    steps_per_epoch: int
    seed: int
    step: int = 0
    tokens_seen: int = 0
    epoch: int = 0  # the epoch to start (or continue) with
    batch: int = 0  # batches of that epoch already trained
    history: History = field(default_factory=History)
    rng: dict | None = None  # random states to restore once the data order is replayed

    def state(self, epoch: int, batch: int) -> dict:
        keys = ("step", "seed", "tokens_seen", "steps_per_epoch")
        state = {key: getattr(self, key) for key in keys}
        return {
            **state,
            "epoch": epoch,
            "batch": batch,
            "history": self.history.to_dict(),
        }

    @classmethod
    def resume(cls, folder, model, optimizer, scheduler, steps_per_epoch: int):
        ckpt = load_checkpoint(folder, model, optimizer, scheduler)
        state = ckpt.train_state
        if state["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(
                f"the checkpoint {ckpt.path} was trained with "
                f"{state['steps_per_epoch']} batches per epoch, this loader has "
                f"{steps_per_epoch}: resume with the"
                " same data, batch size and context length"
            )
        keys = ("step", "tokens_seen", "epoch", "batch")
        progress = cls(steps_per_epoch, state["seed"], **{k: state[k] for k in keys})
        progress.history, progress.rng = History(**state["history"]), ckpt.rng
        return progress

    def batches(self, loader, epoch: int) -> Iterator:
        """The epoch's batches; on resume, skip those trained, then restore the RNG."""
        first = self.batch if epoch == self.epoch else 0
        batches = epoch_batches(loader, self.seed, epoch)
        for _ in range(first):
            next(batches)
        if self.rng is not None:
            set_rng_state(self.rng)
            self.rng = None
        return enumerate(batches, start=first)


# %% chapters/05_training.ipynb cell 41
@dataclass
class _Run:
    """One `train()` call: what the loop needs, and its bookkeeping."""

    model: nn.Module
    runner: nn.Module  # what the step trains through: the model, or a wrapper (DDP)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    s: TrainSettings
    at: _Progress
    device: torch.device
    loaders: tuple  # (training batches read in order, validation)
    tokenizer: Any = None
    checkpoint_dir: str | Path | None = None
    backward: Callable = autograd_backward

    def say(self, text: str) -> None:
        if self.s.verbose:
            tqdm.write(text)

    def evaluate(self, lr: float) -> float:
        at, (train_batches, val_batches) = self.at, self.loaders
        train_loss = evaluate(self.model, train_batches, self.s.eval_iters, self.device)
        val_loss = evaluate(self.model, val_batches, self.s.eval_iters, self.device)
        epoch = at.step / at.steps_per_epoch
        values = dict(step=at.step, epoch=epoch, tokens_seen=at.tokens_seen, lr=lr)
        at.history.append(**values, train_loss=train_loss, val_loss=val_loss)
        self.say(
            f"epoch {epoch:5.2f}  step {at.step:5d}  train {train_loss:.3f}  "
            f"val {val_loss:.3f}"
        )
        return val_loss

    def sample(self, epoch: int) -> None:
        s = self.s
        with preserved_rng():  # a preview must not change the run
            options = dict(tokenizer=self.tokenizer, seed=s.seed)
            text = self.model.generate(
                s.sample_prompt,
                max_length=s.sample_tokens,
                temperature=s.sample_temperature,
                **options,
            )
        self.at.history.samples.append([self.at.step, text])
        self.say(f"  sample after epoch {epoch + 1}: {text!r}")

    def save(self, epoch: int, batch: int) -> None:
        args = (self.checkpoint_dir, self.model, self.optimizer, self.scheduler)
        save_checkpoint(*args, train_state=self.at.state(epoch, batch), rng=rng_state())

    def checkpoint_due(self, mid_epoch: bool) -> bool:
        every = self.s.checkpoint_every
        if self.checkpoint_dir is None or (every is None and mid_epoch):
            return False
        return every is None or self.at.step % every == 0


# %% chapters/05_training.ipynb cell 43
def _train_epoch(run: _Run, loader, epoch: int, callbacks, bar) -> tuple[bool, int]:
    """Train one epoch; return (stop, batches of the epoch done)."""
    at, s = run.at, run.s
    done = at.batch if epoch == at.epoch else 0
    for batch, (inputs, targets) in at.batches(loader, epoch):
        inputs, targets = inputs.to(run.device), targets.to(run.device)
        result = train_step(
            run.runner,
            inputs,
            targets,
            run.optimizer,
            scheduler=run.scheduler,
            grad_clip=s.grad_clip,
            backward=run.backward,
            step=at.step + 1,
        )
        at.step, at.tokens_seen = at.step + 1, at.tokens_seen + targets.numel()
        at.history.add_step(result)
        bar.update()
        bar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
        eval_every = s.eval_every or at.steps_per_epoch
        val = run.evaluate(result.lr) if at.step % eval_every == 0 else None
        info = {"step": at.step, "epoch": epoch, "loss": result.loss, "lr": result.lr}
        info.update(tokens_seen=at.tokens_seen, val_loss=val)
        stop = any([bool(callback(info)) for callback in callbacks])  # all see it
        done = batch + 1
        if stop or (s.max_steps is not None and at.step >= s.max_steps):
            return True, done
        if done < at.steps_per_epoch and run.checkpoint_due(mid_epoch=True):
            run.save(epoch, done)
    return False, done


# %% chapters/05_training.ipynb cell 45
def _say_if_replanned(run: _Run, scheduler, steps_per_epoch: int) -> None:
    """A resumed schedule keeps the plan it was saved with: say so if --epochs changed."""
    plan = getattr(scheduler, "lr_lambdas", [None])[0]
    asked = run.s.epochs * steps_per_epoch
    if isinstance(plan, WarmupCosine) and plan.total_steps != asked:
        run.say(
            f"note: the learning-rate schedule keeps the plan it was saved with, warm-up"
            f" + cosine decay over {plan.total_steps} steps; {run.s.epochs} epochs are"
            f" {asked} steps, and steps after {plan.total_steps} run at"
            f" {plan.min_ratio:g} x the peak lr. For a schedule over {run.s.epochs}"
            " epochs, start a new run."
        )


# %% chapters/05_training.ipynb cell 47
def train(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer,
    settings: TrainSettings | None = None,
    *,
    scheduler=None,
    device=None,
    tokenizer=None,
    callbacks: Sequence[Callable] = (),
    checkpoint_dir=None,
    resume_from=None,
    backward=autograd_backward,
    wrap=None,
    **overrides,
) -> History:
    """Train `model` for `settings.epochs` epochs over `train_loader`; return the History.

    `overrides` replace fields of `settings` (`train(..., epochs=3)`). `backward` fills
    the gradients (chapter 6); `wrap(model)` returns the module to train through
    (chapter 11's DDP). Each callback gets a dict after every step; returning True
    stops the run. `checkpoint_dir` saves checkpoints, `resume_from` continues one.
    """
    s = replace(settings or TrainSettings(), **overrides)
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device)
    steps = len(train_loader)
    if steps == 0:
        raise ValueError("train_loader yields no batches: the text is too short")
    at = _Progress(steps, s.seed)
    if resume_from is not None:
        at = _Progress.resume(resume_from, model, optimizer, scheduler, steps)
    runner = wrap(model) if wrap else model
    loaders = (in_order(train_loader), val_loader)
    run = _Run(model, runner, optimizer, scheduler, s, at, device, loaders)
    run.tokenizer, run.backward = tokenizer, backward
    run.checkpoint_dir = checkpoint_dir
    if at.step:
        run.say(f"resumed from {resume_from} at step {at.step} (epoch {at.epoch + 1})")
        _say_if_replanned(run, scheduler, steps)
    else:
        run.evaluate(optimizer.param_groups[0]["lr"])
    options = dict(
        total=s.epochs * steps, initial=at.step, desc="training", unit="step"
    )
    with tqdm(**options, disable=not s.progress, file=sys.stderr) as bar:
        for epoch in range(at.epoch, s.epochs):
            stop, done = _train_epoch(run, train_loader, epoch, callbacks, bar)
            finished = done == steps
            if finished and s.sample_prompt:
                run.sample(epoch)
            last = stop or epoch + 1 == s.epochs
            if checkpoint_dir and (last or (finished and run.checkpoint_due(False))):
                run.save(*((epoch + 1, 0) if finished else (epoch, done)))
            if stop:
                break
    return at.history


# %% chapters/05_training.ipynb cell 85
class WarmupCosine:
    """Learning-rate multiplier: linear warm-up to 1 over `warmup_steps`, cosine decay
    to `min_ratio` at `total_steps`, then flat. Use through `warmup_cosine()` (a
    LambdaLR).
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(
                "need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                f"got warmup_steps {warmup_steps} and total_steps {total_steps}"
            )
        if not 0 <= min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
        self.warmup_steps, self.total_steps, self.min_ratio = (
            warmup_steps,
            total_steps,
            min_ratio,
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (
                step + 1
            ) / self.warmup_steps  # never exactly 0: the first step already learns
        if step >= self.total_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / (
            self.total_steps - self.warmup_steps
        )  # in [0, 1)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warm-up + cosine decay of every param group's learning rate, stepped once
    per optimizer step.
    """
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))


# %% chapters/05_training.ipynb cell 96
@dataclass
class Run:
    """What `prepare_run` builds: everything `train()` needs."""

    settings: TrainSettings
    config: GPT2Config
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None
    train_loader: DataLoader
    val_loader: DataLoader


# %% chapters/05_training.ipynb cell 98
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
    device = pick_device(device)
    if model is not None:
        config = model.config
        if settings.context_length > config.context_length:
            raise ValueError(
                f"context_length {settings.context_length} is longer than the "
                f"model's context of {config.context_length} tokens"
            )
    elif resume is not None:  # the checkpoint's model config wins
        _, manifest = read_manifest(resume)
        if manifest["config"] is None:
            raise ValueError(f"checkpoint {resume} holds no model config")
        config = GPT2Config.from_dict(manifest["config"])
    else:
        config = GPT2Config.preset(
            settings.model,
            context_length=settings.context_length,
            dropout=settings.dropout,
        )
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
    set_seed(settings.seed)
    model = (GPT2(config) if model is None else model).to(device)
    optimizer = torch.optim.AdamW(  # fused: one kernel updates every tensor
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        fused=device.type in ("cpu", "cuda", "mps"),
    )
    scheduler = None
    if settings.schedule == "cosine":
        total = settings.epochs * len(loaders[0])
        scheduler = warmup_cosine(optimizer, max(1, total // 10), total, 0.1)
    return Run(settings, config, device, model, optimizer, scheduler, *loaders)
