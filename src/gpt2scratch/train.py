# Generated from chapters/05_training.ipynb — edit the notebook, then `make export`. Do not edit by hand.

"""Training GPT-2: device and seeds, the loss, evaluation, the training loop, the learning-rate schedule.

Generated from chapter 05 of the book. `train()` is the loop; checkpoints live in `gpt2scratch.checkpoint`.
"""
from __future__ import annotations

import math
import numbers
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from gpt2scratch.checkpoint import load_checkpoint, save_checkpoint
from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2Config


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
        raise ValueError(f"unknown device {preferred!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} was asked for, but this PyTorch sees no CUDA GPU; "
                             "use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {preferred!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {preferred!r} was asked for, but MPS is not available; use 'auto' or 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {preferred!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (torch's covers every CUDA device too)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def calc_loss_batch(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on one batch: inputs and targets are (B, T) token ids."""
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)                                                # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())       # (B*T, V) vs (B*T,)


def perplexity(loss: float) -> float:
    """exp(loss): the size of a uniform choice that would be as uncertain as the model."""
    return math.exp(loss)


MODEL_SIZES = {"tiny": (32, 2, 2), "mini": (128, 4, 4)}  # name: (d_model, n_layers, n_heads), for fast runs


def model_config(size: str = "124M", **overrides) -> GPT2Config:
    """GPT2Config by size name: OpenAI's "124M", "355M", ... or our small "tiny" / "mini" for quick runs."""
    if size in MODEL_SIZES:
        d_model, n_layers, n_heads = MODEL_SIZES[size]
        return GPT2Config(**{"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, **overrides})
    try:
        return GPT2Config.preset(size, **overrides)
    except ValueError:
        raise ValueError(f"unknown model size {size!r}; choose one of "
                         f"{list(MODEL_SIZES) + ['124M', '355M', '774M', '1558M']}") from None


def split_text(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """(train, val): the first `train_ratio` of the characters, and the rest."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio must be strictly between 0 and 1, got {train_ratio}")
    cut = int(train_ratio * len(text))
    return text[:cut], text[cut:]


def make_loaders(text: str, tokenizer, *, context_length: int = 256, batch_size: int = 2,
                 train_ratio: float = 0.9, seed: int = 123) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders over a character split of `text`, windows of `context_length` tokens.

    Raises ValueError naming the token counts when a split is too short for one window (or, for the train
    split, for one batch).
    """
    train_text, val_text = split_text(text, train_ratio)
    encode = lambda s: tokenizer.encode(s, allowed_special={"<|endoftext|>"})  # noqa: E731
    train_ids, val_ids = encode(train_text), encode(val_text)
    total = len(train_ids) + len(val_ids)
    need = context_length + 1  # a window is context_length inputs + 1 more token for the last target
    for name, part, ratio in (("train", train_ids, train_ratio), ("validation", val_ids, 1 - train_ratio)):
        if len(part) < need:
            raise ValueError(f"the {name} split ({ratio:.0%} of the text) has {len(part)} tokens, but one window "
                             f"of context_length {context_length} needs {need}; the whole text has {total} "
                             f"tokens. Use a longer text or a smaller context length")
    windows = (len(train_ids) - need) // context_length + 1
    if windows < batch_size:
        raise ValueError(f"the train split has {len(train_ids)} tokens = {windows} window(s) of {context_length}, "
                         f"fewer than batch_size {batch_size}; use a longer text or a smaller batch size "
                         "or context length")
    train_loader = create_dataloader(train_ids, batch_size=batch_size, context_length=context_length,
                                     shuffle=True, drop_last=True, seed=seed)
    val_loader = create_dataloader(val_ids, batch_size=batch_size, context_length=context_length,
                                   shuffle=False, drop_last=False)
    return train_loader, val_loader


def rng_state() -> dict:
    """Every random state a training step can touch: Python, NumPy, torch's CPU and each CUDA/MPS device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
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
def evaluate(model: nn.Module, loader: Iterable, max_batches: int | None = None,
             device: torch.device | str | None = None) -> float:
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

    def __init__(self, step: int, value: float, what: str = "loss"):
        self.step, self.value, self.what = step, value, what
        super().__init__(f"{what} is {value} at step {step}: training diverged. Lower the learning rate, clip "
                         "gradients (grad_clip=1.0), or resume from an earlier checkpoint")


@dataclass
class History:
    """What `train()` records: one entry per evaluation in the first six lists, one per step in the next three."""

    step: list[int] = field(default_factory=list)  # optimizer steps done when evaluated
    epoch: list[float] = field(default_factory=list)  # step / steps_per_epoch
    tokens_seen: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # eval mode, first eval_iters batches in order
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # learning rate of the last step taken
    step_loss: list[float] = field(default_factory=list)  # training loss of every step (dropout on)
    step_lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm, before clipping
    samples: list[list] = field(default_factory=list)  # [step, text] after each epoch

    def to_dict(self) -> dict:
        return asdict(self)


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """An iterator over one epoch of `loader` whose shuffle order depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
        sampler.generator = generator  # the permutation of this epoch
        loader.generator = generator  # DataLoader draws a base seed from it too: keep the global RNG out of it
    elif hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
        sampler.set_epoch(epoch)
    return iter(loader)


def in_order(loader: Iterable) -> Iterable:
    """The same batches as `loader`, unshuffled: evaluation always reads the same training windows."""
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, RandomSampler):
        return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False,
                          drop_last=loader.drop_last, collate_fn=loader.collate_fn)
    return loader


def train(model: nn.Module, train_loader: Iterable, val_loader: Iterable, optimizer: torch.optim.Optimizer, *,
          epochs: int = 1, device: torch.device | str | None = None, scheduler=None, grad_clip: float | None = None,
          eval_every: int | None = None, eval_iters: int | None = None,
          sample_prompt: str | None = None, sample_tokens: int = 25, sample_temperature: float = 0.0,
          tokenizer=None, callbacks: Sequence[Callable[[dict], bool | None]] = (),
          checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
          resume_from: str | Path | None = None, seed: int = 123, max_steps: int | None = None,
          progress: bool = True, verbose: bool = True) -> History:
    """Train `model` for `epochs` passes over `train_loader`; return the History.

    Every `eval_every` steps (default once per epoch, and once before the first step) it records the mean
    train loss over the first `eval_iters` training batches and the val loss, both in eval mode. After each
    epoch it samples `sample_tokens` tokens after `sample_prompt` (greedy unless `sample_temperature` > 0).
    `scheduler` is stepped after every optimizer step; `grad_clip` clips the global gradient norm. Each
    callback gets a dict (step, epoch, loss, lr, tokens_seen, val_loss or None) after every step; one that
    returns True stops the run, as does reaching `max_steps`. With `checkpoint_dir` it saves every
    `checkpoint_every` steps (default: every epoch) and when it stops; `resume_from` continues from such a
    checkpoint (bit-identically on CPU). A NaN or inf loss raises NonFiniteLossError naming the step.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 (or None for no clipping), got {grad_clip}")
    for name, value in (("eval_every", eval_every), ("eval_iters", eval_iters),
                        ("checkpoint_every", checkpoint_every), ("max_steps", max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("train_loader yields no batches: the training text is shorter than one batch")
    eval_every = eval_every or steps_per_epoch
    say = tqdm.write if verbose else (lambda *_: None)

    history, step, tokens_seen, start_epoch, skip, saved_rng = History(), 0, 0, 0, 0, None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, model, optimizer, scheduler)
        state = ckpt.train_state
        if state["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(f"the checkpoint was trained with {state['steps_per_epoch']} batches per epoch, this "
                             f"loader has {steps_per_epoch}: resume with the same data, batch size and context")
        history = History(**state["history"])
        step, tokens_seen, seed = state["step"], state["tokens_seen"], state["seed"]
        start_epoch, skip, saved_rng = state["epoch"], state["batch"], ckpt.rng
        say(f"resumed from {ckpt.path} at step {step} (epoch {start_epoch + 1}, batch {skip})")
    last_lr = optimizer.param_groups[0]["lr"]
    eval_train_loader = in_order(train_loader)

    def record() -> float:
        train_loss = evaluate(model, eval_train_loader, eval_iters, device)
        val_loss = evaluate(model, val_loader, eval_iters, device)
        for name, value in (("step", step), ("epoch", step / steps_per_epoch), ("tokens_seen", tokens_seen),
                            ("train_loss", train_loss), ("val_loss", val_loss), ("lr", last_lr)):
            getattr(history, name).append(value)
        say(f"epoch {step / steps_per_epoch:5.2f}  step {step:5d}  train {train_loss:.3f}  val {val_loss:.3f}")
        return val_loss

    def save(epoch: int, batch: int) -> None:
        state = {"step": step, "epoch": epoch, "batch": batch, "tokens_seen": tokens_seen, "seed": seed,
                 "steps_per_epoch": steps_per_epoch, "history": history.to_dict()}
        save_checkpoint(checkpoint_dir, model, optimizer, scheduler, train_state=state, rng=rng_state())

    if step == 0:
        record()
    bar = tqdm(total=epochs * steps_per_epoch, initial=step, desc="training", unit="step",
               disable=not progress, mininterval=2.0, file=sys.stderr)
    stop = False
    for epoch in range(start_epoch, epochs):
        first = skip if epoch == start_epoch else 0
        batches = epoch_batches(train_loader, seed, epoch)
        for _ in range(first):  # resuming mid-epoch: replay the order, skip what was already trained
            next(batches)
        if saved_rng is not None:  # ... and only then restore the random state of the interrupted run
            set_rng_state(saved_rng)
            saved_rng = None
        batch = first - 1
        for batch, (inputs, targets) in enumerate(batches, start=first):
            model.train()
            loss = calc_loss_batch(model, inputs, targets, device)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLossError(step + 1, value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norm = get_total_norm(grads)
            if not math.isfinite(norm.item()):
                raise NonFiniteLossError(step + 1, norm.item(), "gradient norm")
            if grad_clip is not None:
                clip_grads_with_norm_(model.parameters(), grad_clip, norm)
            last_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            tokens_seen += targets.numel()
            history.step_loss.append(value)
            history.step_lr.append(last_lr)
            history.grad_norm.append(norm.item())
            bar.update()
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
            val_loss = record() if step % eval_every == 0 else None
            info = {"step": step, "epoch": epoch, "loss": value, "lr": last_lr, "tokens_seen": tokens_seen,
                    "val_loss": val_loss}
            stop = any([bool(callback(info)) for callback in callbacks])  # every callback sees every step
            stop = stop or (max_steps is not None and step >= max_steps)
            if stop:
                break
            if (checkpoint_dir is not None and checkpoint_every is not None and step % checkpoint_every == 0
                    and batch + 1 < steps_per_epoch):
                save(epoch, batch + 1)
        finished = batch + 1 == steps_per_epoch
        if finished and sample_prompt:
            with preserved_rng():
                text = model.generate(sample_prompt, max_length=sample_tokens, temperature=sample_temperature,
                                      tokenizer=tokenizer, seed=seed)
            history.samples.append([step, text])
            say(f"  sample after epoch {epoch + 1}: {text!r}")
        due = checkpoint_every is None or step % checkpoint_every == 0
        if checkpoint_dir is not None and (stop or epoch + 1 == epochs or (finished and due)):
            save(epoch + 1, 0) if finished else save(epoch, batch + 1)
        if stop:
            break
    bar.close()
    return history


class WarmupCosine:
    """Learning-rate multiplier: linear warm-up to 1 over `warmup_steps`, cosine decay to `min_ratio` at
    `total_steps`, then flat. Use through `warmup_cosine()` (a LambdaLR)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.1):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got warmup_steps "
                             f"{warmup_steps} and total_steps {total_steps}")
        if not 0 <= min_ratio <= 1:
            raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # never exactly 0: the first step already learns
        if step >= self.total_steps:
            return self.min_ratio
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)  # in [0, 1)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_ratio: float = 0.1) -> LambdaLR:
    """Linear warm-up + cosine decay of every param group's learning rate, stepped once per optimizer step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))
