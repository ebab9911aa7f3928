# Generated from chapters/05_training.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Training GPT-2: device and seeds, the loss, evaluation, the training loop, the learning-rate schedule.

Generated from chapter 05 of the book. `train()` is the loop; checkpoints live in `gpt2scratch.checkpoint`.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from gpt2scratch.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.validation import check_int, check_number


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to train on: `preferred` if given and usable, else cuda -> mps -> cpu, in that order."""
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
            f"unknown device {preferred!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {preferred!r} was asked for, but this PyTorch sees no CUDA GPU; "
                "use 'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preferred!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {preferred!r} was asked for, but MPS is not available; use 'auto' or 'cpu'"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {preferred!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    return device


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA device too)."""
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def calc_loss_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on one batch: inputs and targets are (B, T) token ids."""
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )  # (B*T, V) vs (B*T,)


def perplexity(loss: float) -> float:
    """exp(loss): the size of a uniform choice that would be as uncertain as the model."""
    return math.exp(loss)


def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_number(
        "train_ratio", train_ratio, minimum=0, maximum=1, min_open=True, max_open=True
    )
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
    """Train and validation loaders over a character split of `text`, windows of `context_length` tokens.

    Raises ValueError naming the token counts when a split is too short for one window (or, for the train
    split, for one batch).
    """
    train_text, val_text = split_text(text, train_ratio)
    encode = lambda s: tokenizer.encode(s, allowed_special={"<|endoftext|>"})  # noqa: E731
    train_ids, val_ids = encode(train_text), encode(val_text)
    total = len(train_ids) + len(val_ids)
    need = (
        context_length + 1
    )  # a window is context_length inputs + 1 more token for the last target
    for name, part, ratio in (
        ("train", train_ids, train_ratio),
        ("validation", val_ids, 1 - train_ratio),
    ):
        if len(part) < need:
            raise ValueError(
                f"the {name} split ({ratio:.0%} of the text) has {len(part)} tokens, but one window "
                f"of context_length {context_length} needs {need}; the whole text has {total} "
                f"tokens. Use a longer text or a smaller context length"
            )
    windows = (len(train_ids) - need) // context_length + 1
    if windows < batch_size:
        raise ValueError(
            f"the train split has {len(train_ids)} tokens = {windows} window(s) of {context_length}, "
            f"fewer than batch_size {batch_size}; use a longer text or a smaller batch size "
            "or context length"
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


def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each CUDA/MPS device."""
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
    """Restore what `rng_state()` captured (device states only where that device exists)."""
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
    """Run a block without disturbing any random generator (evaluation, sampling a preview)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
) -> float:
    """Mean loss over the first `max_batches` batches of `loader` (all if None), in eval mode (no dropout).

    Restores the model's train/eval mode and every random state afterwards.
    """
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with preserved_rng():
            for inputs, targets in loader:
                if max_batches is not None and n >= max_batches:
                    break
                total += calc_loss_batch(model, inputs, targets, device).item()
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no batches: nothing to evaluate")
    return total / n


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
    """Forward, loss, and backward with autograd: fills every `p.grad`, returns the loss."""
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
    """One optimizer step on one batch: gradients, divergence check, clipping, update."""
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


@dataclass
class History:
    """What `train()` records: per evaluation (first six lists) and per step (next three)."""

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

    def add_step(self, result: StepResult) -> None:
        self.step_loss.append(result.loss)
        self.step_lr.append(result.lr)
        self.grad_norm.append(result.grad_norm)


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """One epoch of `loader`, in a shuffle order that depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
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


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run. `train()` reads the loop's; `prepare_run()` the rest."""

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

    def save(self, folder, model, optimizer, scheduler, epoch: int, batch: int) -> None:
        state = {
            "step": self.step,
            "epoch": epoch,
            "batch": batch,
            "seed": self.seed,
            "tokens_seen": self.tokens_seen,
            "steps_per_epoch": self.steps_per_epoch,
            "history": self.history.to_dict(),
        }
        save_checkpoint(
            folder, model, optimizer, scheduler, train_state=state, rng=rng_state()
        )

    @classmethod
    def resume(cls, folder, model, optimizer, scheduler, steps_per_epoch: int):
        ckpt = load_checkpoint(folder, model, optimizer, scheduler)
        state = ckpt.train_state
        if state["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(
                f"the checkpoint {ckpt.path} was trained with {state['steps_per_epoch']} "
                f"batches per epoch, this loader has {steps_per_epoch}: resume with the "
                "same data, batch size and context length"
            )
        return cls(
            steps_per_epoch,
            state["seed"],
            state["step"],
            state["tokens_seen"],
            state["epoch"],
            state["batch"],
            History(**state["history"]),
            ckpt.rng,
        )

    def batches(self, loader, epoch: int) -> Iterator:
        """The epoch's batches; on resume, skip those already trained, then restore RNG."""
        first = self.batch if epoch == self.epoch else 0
        batches = epoch_batches(loader, self.seed, epoch)
        for _ in range(first):
            next(batches)
        if self.rng is not None:
            set_rng_state(self.rng)
            self.rng = None
        return enumerate(batches, start=first)


class _Log:
    """Evaluation, samples, checkpoint timing and the progress bar of one `train()` run."""

    def __init__(
        self,
        model,
        eval_train,
        val_loader,
        s: TrainSettings,
        at: _Progress,
        device,
        tokenizer,
    ):
        self.model, self.eval_train, self.val_loader = model, eval_train, val_loader
        self.s, self.at, self.device, self.tokenizer = s, at, device, tokenizer
        self.eval_every = s.eval_every or at.steps_per_epoch
        self.say = tqdm.write if s.verbose else (lambda *_: None)
        self.bar = tqdm(
            total=s.epochs * at.steps_per_epoch,
            initial=at.step,
            unit="step",
            desc="training",
            disable=not s.progress,
            mininterval=2.0,
            file=sys.stderr,
        )
        if at.step:
            self.say(
                f"resumed at step {at.step} (epoch {at.epoch + 1}, batch {at.batch})"
            )

    def evaluate(self, lr: float) -> float:
        at, iters = self.at, self.s.eval_iters
        train_loss = evaluate(self.model, self.eval_train, iters, self.device)
        val_loss = evaluate(self.model, self.val_loader, iters, self.device)
        epoch = at.step / at.steps_per_epoch
        for name, value in (
            ("step", at.step),
            ("epoch", epoch),
            ("lr", lr),
            ("tokens_seen", at.tokens_seen),
            ("train_loss", train_loss),
            ("val_loss", val_loss),
        ):
            getattr(at.history, name).append(value)
        self.say(
            f"epoch {epoch:5.2f}  step {at.step:5d}  train {train_loss:.3f}  "
            f"val {val_loss:.3f}"
        )
        return val_loss

    def checkpoint_due(self, mid_epoch: bool) -> bool:
        every = self.s.checkpoint_every
        if every is None:  # default: at the end of each epoch only
            return not mid_epoch
        return self.at.step % every == 0

    def progress(self, loss: float) -> None:
        self.bar.update()
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def sample(self, epoch: int) -> None:
        s = self.s
        if not s.sample_prompt:
            return
        with preserved_rng():  # a preview must not change the run
            text = self.model.generate(
                s.sample_prompt,
                max_length=s.sample_tokens,
                temperature=s.sample_temperature,
                tokenizer=self.tokenizer,
                seed=s.seed,
            )
        self.at.history.samples.append([self.at.step, text])
        self.say(f"  sample after epoch {epoch + 1}: {text!r}")

    def close(self) -> None:
        self.bar.close()


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
    callbacks: Sequence[Callable[[dict], bool | None]] = (),
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    backward=autograd_backward,
    wrap: Callable | None = None,
    **overrides,
) -> History:
    """Train `model` for `settings.epochs` passes over `train_loader`; return the History.

    `overrides` replace fields of `settings` (`train(..., epochs=3)`). `backward` fills the
    gradients (chapter 6); `wrap(model)` returns the module to train through (chapter 11's
    DDP). A callback gets a dict after every step and stops the run by returning True.
    """
    s = replace(settings or TrainSettings(), **overrides)
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device)
    runner = wrap(model) if wrap else model
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(
            "train_loader yields no batches: the text is shorter than one batch"
        )
    at = (
        _Progress.resume(resume_from, model, optimizer, scheduler, steps_per_epoch)
        if resume_from is not None
        else _Progress(steps_per_epoch, s.seed)
    )
    log = _Log(model, in_order(train_loader), val_loader, s, at, device, tokenizer)
    if at.step == 0:
        log.evaluate(optimizer.param_groups[0]["lr"])
    stop = False
    for epoch in range(at.epoch, s.epochs):
        batch = at.batch - 1 if epoch == at.epoch else -1
        for batch, (inputs, targets) in at.batches(train_loader, epoch):
            inputs, targets = inputs.to(device), targets.to(device)
            result = train_step(
                runner,
                inputs,
                targets,
                optimizer,
                scheduler=scheduler,
                grad_clip=s.grad_clip,
                backward=backward,
                step=at.step + 1,
            )
            at.step, at.tokens_seen = at.step + 1, at.tokens_seen + targets.numel()
            at.history.add_step(result)
            val = log.evaluate(result.lr) if at.step % log.eval_every == 0 else None
            info = {
                "step": at.step,
                "epoch": epoch,
                "loss": result.loss,
                "lr": result.lr,
                "tokens_seen": at.tokens_seen,
                "val_loss": val,
            }
            stop = any([bool(callback(info)) for callback in callbacks])  # all see it
            stop = stop or (s.max_steps is not None and at.step >= s.max_steps)
            log.progress(result.loss)
            if stop:
                break
            if (
                checkpoint_dir
                and batch + 1 < steps_per_epoch
                and log.checkpoint_due(True)
            ):
                at.save(checkpoint_dir, model, optimizer, scheduler, epoch, batch + 1)
        finished = batch + 1 == steps_per_epoch
        if finished:
            log.sample(epoch)
        last = stop or epoch + 1 == s.epochs
        if checkpoint_dir and (last or (finished and log.checkpoint_due(False))):
            where = (epoch + 1, 0) if finished else (epoch, batch + 1)
            at.save(checkpoint_dir, model, optimizer, scheduler, *where)
        if stop:
            break
    log.close()
    return at.history


class WarmupCosine:
    """Learning-rate multiplier: linear warm-up to 1 over `warmup_steps`, cosine decay to `min_ratio` at
    `total_steps`, then flat. Use through `warmup_cosine()` (a LambdaLR)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got warmup_steps "
                f"{warmup_steps} and total_steps {total_steps}"
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
    """Linear warm-up + cosine decay of every param group's learning rate, stepped once per optimizer step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))


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


def prepare_run(
    settings: TrainSettings, text: str, *, device=None, resume: str | Path | None = None
) -> Run:
    """Loaders, model, AdamW and schedule for `settings` on `text` (90/10 split)."""
    device = pick_device(device)
    if resume is not None:  # the checkpoint's model config wins
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
    train_loader, val_loader = make_loaders(
        text,
        gpt2_encoding(),
        context_length=config.context_length,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    set_seed(settings.seed)
    model = GPT2(config).to(device)
    optimizer = torch.optim.AdamW(  # fused: one kernel updates every tensor
        model.parameters(),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        fused=device.type in ("cpu", "cuda", "mps"),
    )
    scheduler = None
    if settings.schedule == "cosine":
        total = settings.epochs * len(train_loader)
        scheduler = warmup_cosine(optimizer, max(1, total // 10), total, 0.1)
    return Run(
        settings, config, device, model, optimizer, scheduler, train_loader, val_loader
    )
