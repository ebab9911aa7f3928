# Generated from chapters/05_training.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/05_training.ipynb cell 2
"""Training GPT-2 (chapter 5): loss, evaluation, one step, AdamW, the loop, the schedule.
Long runs (checkpoints, resume) are `gpt2scratch.trainer`, from Appendix A."""

from __future__ import annotations

__all__ = [
    "calc_loss_batch", "perplexity", "evaluate", "StepResult", "autograd_backward",
    "train_step", "adamw", "History", "train", "WarmupCosine", "warmup_cosine",
]

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import clip_grads_with_norm_, get_total_norm
from torch.optim.lr_scheduler import LambdaLR

from gpt2scratch.runtime import in_order, preserved_rng
from gpt2scratch.validation import NonFiniteLossError, check_int


# %% chapters/05_training.ipynb cell 10
def calc_loss_batch(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    device=None) -> torch.Tensor:  # fmt: skip
    """Mean next-token cross-entropy of `model` on one batch of (B, T) token ids."""
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # B*T rows


def perplexity(loss: float) -> float:
    """exp(loss): the size of a uniform choice as uncertain as the model."""
    return math.exp(loss)


# %% chapters/05_training.ipynb cell 16
@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, max_batches: int | None = None,
             device=None, per_token: bool = False) -> float:  # fmt: skip
    """Mean loss over the first `max_batches` batches of `loader` (all if None), in eval
    mode (no dropout): the mean of the batch means, or with `per_token` the mean over
    every target token. Restores the model's mode and every random state afterwards."""
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


# %% chapters/05_training.ipynb cell 18
@dataclass
class StepResult:
    loss: float  # the batch's training loss (dropout on)
    grad_norm: float  # global gradient norm, before clipping
    lr: float  # the learning rate this step used


def autograd_backward(model: nn.Module, inputs, targets) -> torch.Tensor:
    """Forward, loss, backward with autograd: fills every `p.grad`, returns the loss."""
    loss = calc_loss_batch(model, inputs, targets)
    loss.backward()
    return loss.detach()


def train_step(model: nn.Module, inputs, targets, optimizer, *, scheduler=None,
               grad_clip: float | None = None, backward=autograd_backward,
               step: int | None = None) -> StepResult:  # fmt: skip
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


# %% chapters/05_training.ipynb cell 24
def adamw(model: nn.Module, lr: float, weight_decay: float = 0.1, *,
          decay_all: bool = False, **options) -> torch.optim.AdamW:  # fmt: skip
    """AdamW over the parameters that require grad. Weight decay applies to the tensors
    with two or more dimensions (weight matrices, embeddings), not to biases and
    LayerNorm parameters, as GPT-2-style training does; `decay_all=True` decays every
    tensor, like `torch.optim.AdamW(model.parameters())`. `options` go to AdamW."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if decay_all or p.dim() >= 2]
    rest = [p for p in params if not (decay_all or p.dim() >= 2)]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": rest, "weight_decay": 0.0}]  # fmt: skip
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, **options)


# %% chapters/05_training.ipynb cell 26
@dataclass
class History:
    """What a training run records: per evaluation (six lists), per step (three)."""

    step: list[int] = field(default_factory=list)  # optimizer steps done
    epoch: list[float] = field(default_factory=list)  # step / steps per epoch
    tokens_seen: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # eval mode
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)  # of the last step taken
    step_loss: list[float] = field(default_factory=list)  # every step (dropout on)
    step_lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    samples: list[list] = field(default_factory=list)  # [step, text] after each epoch

    def append(self, **values) -> None:  # one value to each named list
        for name, value in values.items():
            getattr(self, name).append(value)

    def to_dict(self) -> dict:
        return asdict(self)


# %% chapters/05_training.ipynb cell 27
def train(model, train_loader, val_loader, optimizer, epochs: int = 1, *,
          eval_iters: int | None = None, scheduler=None, grad_clip: float | None = None,
          prompt: str | None = None, backward=autograd_backward,
          verbose: bool = True) -> History:  # fmt: skip
    """Train for `epochs` epochs, one `train_step` per batch. Before the first step and
    after each epoch: evaluate (`eval_iters` batches of each split; None: all), print
    one line, and continue `prompt` greedily. Return the History."""
    check_int("epochs", epochs, minimum=1)
    device, steps = next(model.parameters()).device, len(train_loader)
    history, step, tokens = History(), 0, 0

    def record(lr: float) -> None:  # evaluate, keep, print
        train_loss = evaluate(model, in_order(train_loader), eval_iters)
        val_loss = evaluate(model, val_loader, eval_iters)
        history.append(step=step, epoch=step / steps, tokens_seen=tokens, lr=lr,
                       train_loss=train_loss, val_loss=val_loss)  # fmt: skip
        if verbose:
            print(f"epoch {step / steps:5.2f}  step {step:5d}  train {train_loss:.3f}"
                  f"  val {val_loss:.3f}")  # fmt: skip

    record(optimizer.param_groups[0]["lr"])
    for epoch in range(epochs):
        for inputs, targets in train_loader:
            result = train_step(model, inputs.to(device), targets.to(device), optimizer,
                                scheduler=scheduler, grad_clip=grad_clip,
                                backward=backward, step=step + 1)  # fmt: skip
            step, tokens = step + 1, tokens + targets.numel()
            history.append(step_loss=result.loss, step_lr=result.lr,
                           grad_norm=result.grad_norm)  # fmt: skip
        record(result.lr)
        if prompt:
            text = model.generate(prompt, max_length=25, temperature=0)  # greedy
            history.samples.append([step, text])
            if verbose:
                print(f"  sample after epoch {epoch + 1}: {text!r}")
    return history


# %% chapters/05_training.ipynb cell 63
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
