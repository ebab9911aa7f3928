# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 116
"""The resumable training loop: `train_run()`, where a run is, checkpoints and resume.

Generated from Appendix A of the book. `train_run()` is chapter 5's `train()` with
what a long run needs: settings in one object, evaluation every `eval_every` steps,
callbacks, a progress bar, checkpoints, and `resume_from=`, which continues a run bit
for bit. Both loops take the same `train_step`.
"""

from __future__ import annotations

__all__ = ["epoch_seed", "epoch_batches", "train_run"]

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import RandomSampler
from tqdm import tqdm

from gpt2scratch import checkpoint, run, runtime  # package modules
from gpt2scratch.train import (
    History, WarmupCosine, autograd_backward, evaluate, train_step,
)  # fmt: skip


# %% chapters/A_engineering.ipynb cell 117
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shuffle: a function of (seed, epoch) alone."""
    return (seed * 1_000_003 + epoch) % 2**63


def epoch_batches(loader: Iterable, seed: int, epoch: int) -> Iterator:
    """One epoch of `loader`, in a shuffle order that depends on (seed, epoch) only."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        sampler.generator = generator  # the permutation of this epoch
        loader.generator = generator  # the loader's base seed: keep the global RNG out
    elif hasattr(sampler, "set_epoch"):  # e.g. DistributedSampler
        sampler.set_epoch(epoch)
    return iter(loader)


# %% chapters/A_engineering.ipynb cell 119
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
        ckpt = checkpoint.load_checkpoint(folder, model, optimizer, scheduler)
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
            runtime.set_rng_state(self.rng)
            self.rng = None
        return enumerate(batches, start=first)


# %% chapters/A_engineering.ipynb cell 121
@dataclass
class _Run:
    """One `train_run()` call: what the loop needs, and its bookkeeping."""

    model: nn.Module
    runner: nn.Module  # what the step trains through: the model, or a wrapper (DDP)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    s: run.TrainSettings
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
        with runtime.preserved_rng():  # a preview must not change the run
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
        state = self.at.state(epoch, batch)
        checkpoint.save_checkpoint(*args, train_state=state, rng=runtime.rng_state())

    def checkpoint_due(self, mid_epoch: bool) -> bool:
        every = self.s.checkpoint_every
        if self.checkpoint_dir is None or (every is None and mid_epoch):
            return False
        return every is None or self.at.step % every == 0


# %% chapters/A_engineering.ipynb cell 123
def _train_epoch(job: _Run, loader, epoch: int, callbacks, bar) -> tuple[bool, int]:
    """Train one epoch; return (stop, batches of the epoch done)."""
    at, s = job.at, job.s
    done = at.batch if epoch == at.epoch else 0
    for batch, (inputs, targets) in at.batches(loader, epoch):
        inputs, targets = inputs.to(job.device), targets.to(job.device)
        result = train_step(
            job.runner,
            inputs,
            targets,
            job.optimizer,
            scheduler=job.scheduler,
            grad_clip=s.grad_clip,
            backward=job.backward,
            step=at.step + 1,
        )
        at.step, at.tokens_seen = at.step + 1, at.tokens_seen + targets.numel()
        at.history.append(
            step_loss=result.loss, step_lr=result.lr, grad_norm=result.grad_norm
        )
        bar.update()
        bar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
        eval_every = s.eval_every or at.steps_per_epoch
        val = job.evaluate(result.lr) if at.step % eval_every == 0 else None
        info = {"step": at.step, "epoch": epoch, "loss": result.loss, "lr": result.lr}
        info.update(tokens_seen=at.tokens_seen, val_loss=val)
        stop = any([bool(callback(info)) for callback in callbacks])  # all see it
        done = batch + 1
        if stop or (s.max_steps is not None and at.step >= s.max_steps):
            return True, done
        if done < at.steps_per_epoch and job.checkpoint_due(mid_epoch=True):
            job.save(epoch, done)
    return False, done


# %% chapters/A_engineering.ipynb cell 125
def _say_if_replanned(job: _Run, scheduler, steps_per_epoch: int) -> None:
    """A resumed schedule keeps the plan it was saved with: say so if epochs changed."""
    plan = getattr(scheduler, "lr_lambdas", [None])[0]
    asked = job.s.epochs * steps_per_epoch
    if isinstance(plan, WarmupCosine) and plan.total_steps != asked:
        job.say(
            f"note: the learning-rate schedule keeps the plan it was saved with, "
            f"warm-up + cosine decay over {plan.total_steps} steps; {job.s.epochs} epochs are"
            f" {asked} steps, and steps after {plan.total_steps} run at"
            f" {plan.min_ratio:g} x the peak lr. For a schedule over {job.s.epochs}"
            " epochs, start a new run."
        )


# %% chapters/A_engineering.ipynb cell 127
def train_run(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer,
    settings: run.TrainSettings | None = None,
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
    """Train `model` for `settings.epochs` epochs over `train_loader`; return the
    History.

    `overrides` replace fields of `settings` (`train_run(..., epochs=3)`). `backward`
    fills the gradients (chapter 6); `wrap(model)` returns the module to train through
    (chapter 11's DDP). Each callback gets a dict after every step; returning True
    stops the run. `checkpoint_dir` saves checkpoints, `resume_from` continues one.
    """
    s = replace(settings or run.TrainSettings(), **overrides)
    device = torch.device(device) if device else next(model.parameters()).device
    model.to(device)
    steps = len(train_loader)
    if steps == 0:
        raise ValueError("train_loader yields no batches: the text is too short")
    at = _Progress(steps, s.seed)
    if resume_from is not None:
        at = _Progress.resume(resume_from, model, optimizer, scheduler, steps)
    runner = wrap(model) if wrap else model
    loaders = (runtime.in_order(train_loader), val_loader)
    job = _Run(model, runner, optimizer, scheduler, s, at, device, loaders)
    job.tokenizer, job.backward = tokenizer, backward
    job.checkpoint_dir = checkpoint_dir
    if at.step:
        job.say(f"resumed from {resume_from} at step {at.step} (epoch {at.epoch + 1})")
        _say_if_replanned(job, scheduler, steps)
    else:
        job.evaluate(optimizer.param_groups[0]["lr"])
    options = dict(
        total=s.epochs * steps, initial=at.step, desc="training", unit="step"
    )
    with tqdm(**options, disable=not s.progress, file=sys.stderr) as bar:
        for epoch in range(at.epoch, s.epochs):
            stop, done = _train_epoch(job, train_loader, epoch, callbacks, bar)
            finished = done == steps
            if finished and s.sample_prompt:
                job.sample(epoch)
            last = stop or epoch + 1 == s.epochs
            if checkpoint_dir and (last or (finished and job.checkpoint_due(False))):
                job.save(*((epoch + 1, 0) if finished else (epoch, done)))
            if stop:
                break
    return at.history
