# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5 — Training GPT-2 on *The Verdict*
#
# Chapter 4 built GPT-2; its weights are random, so it writes noise. In this chapter we train it. The
# recipe is the one every language model uses: show the model a window of text, ask it to predict every
# next token, measure how wrong it was with **cross-entropy**, and nudge all 124 million weights downhill
# with **AdamW**. We do it on a deliberately tiny corpus, Edith Wharton's short story *The Verdict*
# (4,612 tokens to train on, 534 to validate), so that the whole run fits on a laptop CPU, and so that we can watch what
# happens when a model far too big for its data learns it by heart.
#
# The plan:
#
# 1. **Loss and perplexity**: cross-entropy step by step (logits → log-softmax → negative log-likelihood),
#    checked against `F.cross_entropy`; why an untrained model scores $\ln 50257 \approx 10.8$.
# 2. **One training step**: `train_step` (gradients, a divergence check, one optimizer step), then
#    the optimizer it steps, **AdamW**, written out by hand and checked against
#    `torch.optim.AdamW`, with weight decay on the weight matrices only.
# 3. **The run**: a one-screen `train()` (epochs, evaluation, a sample after each epoch) trains
#    GPT-2 124M, context 256, AdamW (lr 4e-4, weight decay 0.1), for 30 epochs.
# 4. **Reading the run**: the loss curves against two yardsticks that need no network (counting
#    tokens, counting pairs), where it starts to overfit, and an honest comparison with the
#    reference run of rasbt's *LLMs-from-scratch* (same data, same layers and widths, but an
#    untied output head; 10 epochs: train 0.391, val 6.452), with one run for each difference
#    between his model and ours.
# 5. **Beyond the reference**: warm-up + cosine decay + gradient clipping, and what dropout and weight
#    decay actually do here, measured.
# 6. **Sampling** from the trained model at three temperatures, several seeds each.
#
# Everything reusable is exported to `gpt2scratch/train.py`. What a long run needs on top of it
# (settings in one object, checkpoints, resuming bit for bit, the command line
# `python -m gpt2scratch train|generate|run`) is the subject of section A.9 of [Appendix A](A_engineering.ipynb).

# %%
#| default_exp train

# %%
#| export
"""Training GPT-2 (chapter 5): loss, evaluation, one step, AdamW, the loop, the schedule.
Long runs (checkpoints, resume) are `gpt2scratch.trainer`, from Appendix A."""

from __future__ import annotations

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

# %%
from gpt2scratch.data import verdict_text
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.quickmode import full_or_quick
from gpt2scratch.run import make_loaders, split_text
from gpt2scratch.runtime import pick_device, set_seed
from gpt2scratch.tokenizer import gpt2_encoding

torch.set_printoptions(precision=4, sci_mode=False)
tokenizer = gpt2_encoding()

# %% [markdown]
# Training 124M parameters for 30 epochs takes tens of minutes on two CPU cores; the run prints
# its own time (the stored run shared its two cores with other jobs). When the book's tests run
# (`make test`), one helper call in section 5.6 swaps in a tiny model and a few epochs; the
# outputs you read here come from the full run. Two helpers come from
# [Appendix A](A_engineering.ipynb): `pick_device()` takes the fastest device PyTorch can see (a
# CUDA GPU, then Apple's `mps`, then the CPU), and `set_seed()` seeds every random number
# generator a run touches.

# %% [markdown]
# ## 5.1 The loss: cross-entropy, step by step
#
# A GPT reads token ids `(B, T)` and returns **logits** `(B, T, V)`: for each of the `B·T` positions, one
# unnormalised score per vocabulary entry ($V = 50{,}257$). The *target* at position $t$ is simply the token at
# $t+1$. Training wants the target's probability to be high, so we minimise the average
# **negative log-likelihood** of the targets:
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{i=1}^{N} \log p_\theta(y_i \mid x_{\le i}),\qquad
#   p_\theta(\cdot \mid x_{\le i}) = \operatorname{softmax}(\text{logits}_i).$$
#
# Let's compute it by hand for two three-token inputs on the untrained 124M model (context 256, the size we
# train below).

# %%
torch.manual_seed(123)
course_config = GPT2Config(context_length=256)  # GPT-2 124M, rasbt's context of 256
untrained = GPT2(course_config).eval()
texts = [" every effort moves you", " I really like chocolate"]  # 4 tokens each
ids = torch.tensor([tokenizer.encode(t) for t in texts])  # (2, 4)
inputs, targets = ids[:, :-1], ids[:, 1:]  # (2, 3): each target is the next token
print("inputs: ", inputs.tolist(), "\ntargets:", targets.tolist())
with torch.no_grad():
    logits = untrained(inputs)  # (B, T, V)
print("logits:", tuple(logits.shape))

# %% [markdown]
# Step 1, **log-softmax** turns each row of logits into log-probabilities (`log_softmax` is the stable
# form of `log(softmax(x))`: it subtracts the row maximum before exponentiating). Step 2 picks out the
# log-probability of each target. Step 3 averages and flips the sign.

# %%
log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V), each row sums to 1 in exp
target_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
print("log p(target):\n", target_log_probs.round(decimals=3))
loss_by_hand = -target_log_probs.mean()
loss_torch = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # B*T rows
print(f"by hand: {loss_by_hand.item():.4f}   F.cross_entropy: {loss_torch.item():.4f}")
torch.testing.assert_close(loss_by_hand, loss_torch)

# %% [markdown]
# `F.cross_entropy` fuses the same three steps (and wants the batch and time dimensions flattened into one).
# That flattening is all our exported loss function adds:


# %%
#| export
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


# %%
torch.testing.assert_close(calc_loss_batch(untrained, inputs, targets), loss_by_hand)
print(f"perplexity of the untrained model: {perplexity(loss_by_hand.item()):,.0f}")

# %% [markdown]
# **Perplexity** is $e^{\mathcal{L}}$: a perplexity of $k$ means the model is as unsure as if it were choosing
# uniformly among $k$ tokens. The untrained model is therefore about as unsure as a uniform choice over
# the whole vocabulary, which is no accident. GPT-2 initialises every weight with a small standard
# deviation (0.02), so the logits start close to zero and nearly equal; the softmax of equal logits is the
# uniform distribution $1/V$, whose loss is
#
# $$-\log \tfrac{1}{V} = \ln 50257 \approx 10.825.$$
#
# So **10.8 is the ceiling of ignorance**: it is what knowing nothing costs, and any model scoring
# above it is doing worse than guessing uniformly. Every number below is to be read against it.
# (An untrained model scores a little above it; section 5.7 measures by how much, and why.)

# %% [markdown]
# ## 5.2 Data: a 90/10 split and the loaders
#
# We split *The Verdict* by **characters**, as rasbt's reference run does: the first 90% of the
# 20,479 characters train, the last 10% validate. (Splitting by tokens would move the boundary by at most
# one token; splitting by characters keeps us comparable.) Each part is then tokenized and cut into
# non-overlapping windows of 256 tokens (`stride = context_length`) by chapter 2's `create_dataloader`.
# The training loader shuffles and drops a short last batch; the validation loader does neither.
# `split_text` and `make_loaders` do exactly that, and check the sizes on the way, with errors that
# give the token counts when a text is too short for one window (section A.9 of
# [Appendix A](A_engineering.ipynb)).

# %%
text = verdict_text()
train_text, val_text = split_text(text, 0.9)
train_loader, val_loader = make_loaders(text, tokenizer, context_length=256)
n_train, n_val = len(train_loader.dataset.token_ids), len(val_loader.dataset.token_ids)
print(f"characters: {len(train_text):,} train + {len(val_text):,} val = {len(text):,}")
print(f"tokens:     {n_train:,} train + {n_val:,} val")
print(f"windows of 256: {len(train_loader.dataset)} train -> {len(train_loader)} "
      f"batches of 2; {len(val_loader.dataset)} val -> {len(val_loader)} batch")


# %% [markdown]
# One epoch is therefore 9 optimizer steps over 18 windows of 256 tokens; validation is 2 windows. Those
# 4,612 training tokens are all the model will ever learn from, four orders of magnitude fewer than its 124
# million parameters. We should expect memorisation.
#
# ## 5.3 Evaluation
#
# `evaluate()` averages the loss over (at most `max_batches`) batches in **eval mode**, so dropout is off and
# the number measures the model, not the noise. It also leaves every random generator as it found it
# (`preserved_rng`, section A.9): iterating a `DataLoader` quietly draws a seed from torch's global
# generator, and a training run whose dropout masks shifted whenever we *look* at it could never be
# resumed bit for bit. `in_order()`, from the same section, gives a shuffled loader's batches
# unshuffled, so that every estimate of the training loss reads the same windows. (The first
# line that the run of section 5.6 prints is this evaluation of the untrained model: both losses
# close to $\ln V$.)

# %%
#| export
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


# %% [markdown]
# ## 5.4 One training step
#
# Here is the whole algorithm, the way rasbt's chapter 5 writes it. Per batch: forward, loss, zero
# the old gradients, backward, one optimizer step.
#
# ```python
# for epoch in range(epochs):
#     for inputs, targets in loader:
#         loss = calc_loss_batch(model, inputs, targets)
#         optimizer.zero_grad()
#         loss.backward()
#         optimizer.step()
# ```
#
# We keep the body of that loop as one function, `train_step`, so that every loop in the book (this
# chapter's `train()`, the resumable loop of Appendix A that the command line uses, and the later
# chapters' variants) takes exactly the same step. It adds three things to the five lines above: an
# optional **gradient clip** and **scheduler**, and a **divergence check**: a NaN or infinite loss
# or gradient stops the run at once with `NonFiniteLossError` (the package's errors are in section
# A.1 of [Appendix A](A_engineering.ipynb)), naming the step and the value, instead of silently
# training on garbage.
#
# It also has one seam for later chapters: `backward` is the function that fills the gradients.
# The default runs autograd; [chapter 6](06_backprop.ipynb) passes its hand-written backward pass
# instead, and [chapter 11](11_scaling.ipynb) its fast path. A model with frozen weights (chapter
# 9's LoRA) works unchanged, since only parameters that received a gradient are clipped.

# %%
#| export
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


# %% [markdown]
# ## 5.5 AdamW, written out
#
# Every run below steps AdamW (Loshchilov & Hutter, 2019). For each weight $w$ with gradient $g_t$
# at step $t$ it keeps two running averages:
#
# * the **momentum** $m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t$, a smoothed gradient direction
#   ($\beta_1 = 0.9$);
# * the **second moment** $v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2$, a running estimate of the
#   gradient's scale for that one weight ($\beta_2 = 0.999$).
#
# Both start at 0, so for the first steps they are biased towards 0; **bias correction** divides
# them by $1-\beta^t$. The update is then
#
# $$w \leftarrow w - \eta\lambda\, w - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},
#   \qquad \hat m_t = \frac{m_t}{1-\beta_1^t},\ \hat v_t = \frac{v_t}{1-\beta_2^t}.$$
#
# Dividing by $\sqrt{\hat v_t}$ gives every weight a step of about $\eta$, whatever the size of its
# gradient. The **decoupled** weight decay $\eta\lambda w$ is the "W": it is not added to the
# gradient (as L2 regularisation in plain Adam is), so it is not divided by $\sqrt{\hat v_t}$, and
# every decayed weight shrinks by the same factor $1 - \eta\lambda$ per step.
#
# $\beta_2 = 0.999$ is PyTorch's default and the reference run's. GPT-style pre-training uses
# $\beta_2 = 0.95$ (Brown et al., 2020, appendix B; nanoGPT): $v_t$ then averages over about
# $1/(1-0.95) = 20$ steps instead of $1/(1-0.999) = 1000$, so it follows the gradient's scale as
# a long run changes it, and a large gradient arriving after many small ones is not divided by a
# stale, small $\sqrt{\hat v_t}$. Our
# runs are 90 to 270 steps long; we keep 0.999 to stay comparable with the reference, and section
# 5.9 shows where that long memory matters. Written out by hand (a teaching version; chapter 6
# exports one):

# %%
def adamw_step(params, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
    """One AdamW step by hand, in place. `state` holds m, v and the step count."""
    beta1, beta2 = betas
    state["t"] = t = state.get("t", 0) + 1
    for i, w in enumerate(params):
        g = w.grad
        m = state.setdefault(("m", i), torch.zeros_like(w))
        v = state.setdefault(("v", i), torch.zeros_like(w))
        m.mul_(beta1).add_(g, alpha=1 - beta1)  # momentum
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # second moment
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # bias correction
        with torch.no_grad():
            w.mul_(1 - lr * weight_decay)  # decoupled weight decay
            w.sub_(lr * m_hat / (v_hat.sqrt() + eps))


# %% [markdown]
# Three steps on a tiny model in float64, against `torch.optim.AdamW` on an identical copy, with
# the validation batch as data and both models in eval mode (no dropout, so both see the same
# loss):

# %%
import copy

torch.manual_seed(123)
by_hand = GPT2(GPT2Config.preset("tiny", context_length=256)).double().eval()
by_torch = copy.deepcopy(by_hand)
opt_torch = torch.optim.AdamW(by_torch.parameters(), lr=1e-3, weight_decay=0.1)
state, (x, y) = {}, next(iter(val_loader))
for _ in range(3):
    for m in (by_hand, by_torch):
        m.zero_grad()
        calc_loss_batch(m, x, y).backward()
    adamw_step(list(by_hand.parameters()), state, lr=1e-3)
    opt_torch.step()
pairs = zip(by_hand.parameters(), by_torch.parameters())
diff = max((a - b).abs().max().item() for a, b in pairs)
assert diff < 1e-12  # float64: the two differ only in the order of a few roundings
print("after 3 steps: max |by hand - torch.optim.AdamW| < 1e-12")


# %% [markdown]
# ### Which weights decay
#
# `torch.optim.AdamW(model.parameters(), weight_decay=0.1)` decays every tensor, the biases and
# LayerNorm's gains and shifts included. GPT-2-style training decays only the tensors with two or
# more dimensions: the weight matrices and the two embeddings (nanoGPT's `configure_optimizers`:
# "all weight tensors in matmuls + embeddings decay, all biases and layernorms don't"). A
# LayerNorm gain starts at 1, where the layer leaves its normalised input alone, and decay would
# pull it towards 0, where the layer outputs nothing; a bias has one number per channel and cannot
# memorise much. `adamw()` builds the two groups, and its `decay_all=True` gives back the plain
# call; section 5.10 lists the two groups of the 124M model.

# %%
#| export
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


# %% [markdown]
# ## 5.6 The training loop, and the run
#
# The loop is the five lines above, around `train_step`, with what we need to watch a run: before
# the first step and after each epoch it **evaluates** (on `eval_iters` batches of the training data,
# read in order, and of the validation data), prints one line, and continues a prompt greedily, so
# that we can read what the model has learned. A `History` keeps the numbers for the plots: one
# entry per evaluation, and the loss, learning rate and gradient norm of every step.

# %%
#| export
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


# %%
#| export
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


# %% [markdown]
# That is all of `train()`. A run of hours needs more: settings in one object, a progress bar,
# evaluation every so many steps, callbacks, and checkpoints to resume from after a crash.
# Section A.9 of [Appendix A](A_engineering.ipynb) builds that loop, `train_run()`, around the
# same `train_step`, and checks that on the same data the two give the same losses, bit for bit.
#
# ### GPT-2 124M on *The Verdict*, 30 epochs
#
# The settings are rasbt's: context 256, batch size 2, AdamW with learning rate $4\cdot10^{-4}$ and weight
# decay 0.1 (on the weight matrices and embeddings), dropout 0.1, seed 123, 5 batches to estimate the
# training loss. Two differences in the bookkeeping: we evaluate once per epoch (every 9 steps; rasbt
# evaluates every 5), and we train for 30 epochs instead of 10, to see the whole overfitting story. After
# each epoch the model continues "Justice is served when" greedily. `fused=True` asks AdamW for its
# single-kernel implementation (the same update rule, one kernel for every tensor instead of a
# loop over them); [chapter 11](11_scaling.ipynb) profiles a CPU step, where AdamW is a few percent of the
# time.

# %%
# NBVAL_IGNORE_OUTPUT
device = pick_device()  # the fastest device PyTorch sees
# 124M: the main run, 10-epoch comparisons, 6-epoch single changes, 3-epoch ablations
MODEL, EPOCHS, COMPARE_EPOCHS, ONE_CHANGE_EPOCHS, STUDY_EPOCHS = full_or_quick(
    full=(course_config, 30, 10, 6, 3),
    quick=(GPT2Config.preset("tiny", context_length=256), 2, 1, 1, 1),
    what="a tiny model (d_model 32, 2 layers), 2 epochs, 1-epoch comparison runs",
)
LR, WEIGHT_DECAY, PROMPT = 4e-4, 0.1, "Justice is served when"

# %%
# NBVAL_IGNORE_OUTPUT
import time

set_seed(123)
model = GPT2(MODEL).to(device)
optimizer = adamw(model, lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
print(
    f"{sum(p.numel() for p in model.parameters()):,} parameters, {EPOCHS} epochs of "
    f"{len(train_loader)} steps"
)
t0 = time.perf_counter()
history = train(
    model, train_loader, val_loader, optimizer, EPOCHS, eval_iters=5, prompt=PROMPT
)
elapsed = time.perf_counter() - t0
tok_s = history.tokens_seen[-1] / elapsed
print(
    f"{history.step[-1]} steps, {history.tokens_seen[-1]:,} tokens "
    f"in {elapsed / 60:.1f} min "
    f"({tok_s:.0f} tokens/s, evaluation and samples included, on {device})"
)
assert history.train_loss[-1] < history.train_loss[0] and math.isfinite(
    history.val_loss[-1]
)
assert min(history.val_loss) < history.val_loss[0]

# %% [markdown]
# The model has 123.8M parameters rather than GPT-2's 124.4M, and the difference is exactly the
# position table: with a context of 256, `wpe` has 256 rows instead of 1,024.

# %%
with torch.device("meta"):  # shapes only, no memory
    n_1024 = GPT2(GPT2Config()).num_params()
    n_256 = GPT2(course_config).num_params()
rows = GPT2Config().context_length - course_config.context_length
print(f"context 1024: {n_1024:,} parameters; context 256: {n_256:,}")
print(
    f"difference {n_1024 - n_256:,} = {rows} position rows x {course_config.d_model} "
    "dims"
)
assert n_1024 - n_256 == rows * course_config.d_model

# %% [markdown]
# The greedy samples tell the story before any plot does. For the first epochs the model
# continues with the most frequent tokens of the story, commas, newlines, "the", "I", over and
# over: it has learned which tokens are common, and greedy decoding repeats the likeliest one.
# Later the story's names appear, and by the last epoch it strings together fragments of
# Wharton's phrases. When does each name first appear in a sample?

# %%
# NBVAL_IGNORE_OUTPUT
for name in ("Gisburn", "Jack", "Mrs."):
    epoch = next((i + 1 for i, (_, t) in enumerate(history.samples) if name in t), None)
    print(f"{name!r:10} first appears in the sample after epoch {epoch}")

# %% [markdown]
# Sampled at temperature 0.8 instead of greedily, the trained model writes (a fixed seed, so the
# text is reproducible on this machine):

# %%
# NBVAL_IGNORE_OUTPUT
print(model.generate(PROMPT, max_length=50, temperature=0.8, seed=123))

# %% [markdown]
# ## 5.7 Reading the run: two yardsticks, and where it overfits
#
# A loss of 6 means little on its own. First where the run starts, then two yardsticks that need
# no neural network; the figure then shows the run against them.
#
# ### Where the run starts
#
# The run's first line, the untrained model, scores a little above $\ln 50257 = 10.825$, the
# uniform guess of section 5.1. If the logits are independent of the target with spread
# $\sigma$, then $\mathbb{E}[\mathcal{L}] = \mathbb{E}[\operatorname{logsumexp}(z)] - \mathbb{E}[z_y] \approx
# \ln V + \sigma^2/2$. Let's check that prediction on the untrained model of section 5.1 and the
# first 2 × 256 = 512 tokens of the story:

# %%
ids = tokenizer.encode(verdict_text())
x = torch.tensor(ids[: 2 * 256]).view(2, 256)  # (2, 256)
y = torch.tensor(ids[1 : 2 * 256 + 1]).view(2, 256)
with torch.no_grad():
    z = untrained(x)  # (2, 256, V)
    loss0 = F.cross_entropy(z.flatten(0, 1), y.flatten()).item()
sigma, ln_v = z.std().item(), math.log(50257)
print(f"ln V = {ln_v:.3f}; logit std sigma = {sigma:.3f}, so ln V + sigma^2/2 = "
      f"{ln_v + sigma**2 / 2:.3f}; measured loss = {loss0:.3f}")  # fmt: skip
assert abs(loss0 - (ln_v + sigma**2 / 2)) < 0.05

# %% [markdown]
# Random weights cost a little on top of knowing nothing: the logits' spread $\sigma$ adds
# $\sigma^2/2$ to the uniform guess's loss.

# %%
from collections import Counter

import matplotlib.pyplot as plt

# %% [markdown]
# ### What does a validation loss of 6 mean?
#
# Before reading the curve, a yardstick that needs no neural network at all: predict every token with its
# frequency in the training split, ignoring what came before it (a **unigram** model). Its cross-entropy on
# the validation split is the loss of "knowing which tokens are common, and nothing about order". Tokens
# that never occur in the training split need some probability, or one of them costs an infinite loss: we
# add a pseudo-count $\alpha$ to every vocabulary entry.

# %%
train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
counts = Counter(train_ids)
V = 50257


def unigram_loss(ids, alpha):
    return -sum(
        math.log((counts[t] + alpha) / (len(train_ids) + alpha * V)) for t in ids
    ) / len(ids)


unseen = sum(counts[t] == 0 for t in val_ids)
print(
    f"{len(counts):,} distinct tokens in the train split; {unseen} of the "
    f"{len(val_ids)} val tokens never occur in it"
)
for alpha in (1.0, 0.1, 0.01):
    print(
        f"unigram, alpha = {alpha:<4}: train {unigram_loss(train_ids, alpha):.3f}, "
        f"val {unigram_loss(val_ids, alpha):.3f}"
    )
unigram_val = unigram_loss(val_ids, 0.01)

# %% [markdown]
# ### Against a bigram counter
#
# A second yardstick, one step up from word counts: predict each token from the one before it by
# counting pairs in the training split. A pair seen once in 4,612 tokens says little, so the
# estimate is mixed with the unigram one:
# $p(b \mid a) = \lambda\, \frac{n(a, b)}{n(a)} + (1 - \lambda)\, p_{\text{unigram}}(b)$.

# %%
pairs = Counter(zip(train_ids[:-1], train_ids[1:]))


def bigram_loss(ids, lam, alpha=0.01):
    total = 0.0
    for a, b in zip(ids[:-1], ids[1:]):
        p_bigram = pairs[a, b] / counts[a] if counts[a] else 0.0
        p_unigram = (counts[b] + alpha) / (len(train_ids) + alpha * V)
        total -= math.log(lam * p_bigram + (1 - lam) * p_unigram)
    return total / (len(ids) - 1)


for lam in (0.3, 0.5, 0.7):
    print(
        f"bigram, lambda = {lam}: train {bigram_loss(train_ids, lam):.3f}, "
        f"val {bigram_loss(val_ids, lam):.3f}"
    )
bigram_val = bigram_loss(val_ids, 0.3)


# %% [markdown]
# ### The loss curves
#
# Two x-axes: tokens seen (what the model has actually consumed) below, epochs above. The dotted
# lines are the yardsticks on the validation split: the uniform guess ($\ln 50257$), the unigram
# counter and the bigram counter; the star marks the validation minimum. The right panel zooms in
# on the band where the validation loss lives.

# %%
def plot_losses(history, title, ax=None, label="", style="-"):
    ax = ax or plt.gca()
    ax.plot(history.tokens_seen, history.train_loss, style, color="C0",
            label=f"train{label}")  # fmt: skip
    ax.plot(history.tokens_seen, history.val_loss, style, color="C1",
            label=f"val{label}")  # fmt: skip
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    tokens_per_epoch = history.tokens_seen[-1] / history.epoch[-1]
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda t: t / tokens_per_epoch, lambda e: e * tokens_per_epoch),
    )
    top.set_xlabel("epochs")
    ax.legend()


yardsticks = (
    (math.log(50257), "uniform guess, ln 50257", "grey"),
    (unigram_val, "unigram counter, val", "C2"),
    (bigram_val, "bigram counter, val", "C3"),
)
best = min(range(len(history.val_loss)), key=history.val_loss.__getitem__)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for ax, title in zip(axes, ("GPT-2 124M on The Verdict", "zoomed in on validation")):
    plot_losses(history, title, ax)
    for y, name, color in yardsticks:
        ax.axhline(y, color=color, lw=0.9, ls=":", label=name)
    ax.plot(history.tokens_seen[best], history.val_loss[best], "k*", ms=12,
            label=f"val minimum, epoch {history.epoch[best]:.0f}")  # fmt: skip
    ax.legend(fontsize=8)
axes[1].set_ylim(bigram_val - 0.75, max(history.val_loss[1:]) + 0.25)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Where does it overfit?


# %%
# NBVAL_IGNORE_OUTPUT
def describe(h, label):
    best = min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
    print(
        f"{label}: val minimum {h.val_loss[best]:.3f} at epoch {h.epoch[best]:.0f} "
        f"(step {h.step[best]}, "
        f"{h.tokens_seen[best]:,} tokens), train loss there {h.train_loss[best]:.3f}"
    )
    return best


def first_epochs(h, epochs):
    """The History of the first `epochs` epochs of a run evaluated once per epoch."""
    d, steps = h.to_dict(), epochs * len(train_loader)
    return History(
        **{
            k: d[k][: epochs + 1]
            for k in ("step", "epoch", "tokens_seen", "train_loss", "val_loss", "lr")
        },
        **{k: d[k][:steps] for k in ("step_loss", "step_lr", "grad_norm")},
        samples=d["samples"][:epochs],
    )


best = describe(history, "main run")
after = history.val_loss[best + 1 : best + 4]
print(f"next evaluations after the minimum: {[round(v, 3) for v in after]}")
gap = next(
    (
        i
        for i, (t, v) in enumerate(zip(history.train_loss, history.val_loss))
        if v - t > 1.0
    ),
    None,
)
print(
    f"val exceeds train by > 1 nat from epoch {history.epoch[gap]:.0f} on"
    if gap is not None
    else "no gap > 1 nat"
)
at10 = history.epoch.index(10) if 10 in history.epoch else len(history.epoch) - 1
print(
    f"epoch {history.epoch[at10]:.0f}: train {history.train_loss[at10]:.3f}, val "
    f"{history.val_loss[at10]:.3f}"
)
print(
    f"epoch {history.epoch[-1]:.0f}: train {history.train_loss[-1]:.3f}, val "
    f"{history.val_loss[-1]:.3f} "
    f"(perplexity {perplexity(history.train_loss[-1]):.2f} / "
    f"{perplexity(history.val_loss[-1]):,.0f})"
)
assert history.val_loss[best] <= history.val_loss[0]

# %% [markdown]
# The run has three phases.
#
# 1. **Epochs 0–2: word frequencies.** The loss falls from 10.9 to 6.215 (train) and 6.636 (val). That is
#    the unigram model's level (train 6.108, val 6.646 with $\alpha = 0.01$): the model has learned which tokens
#    are common and little else, which is exactly what the greedy samples showed.
# 2. **Epochs 3–13: a plateau.** Validation reaches its minimum at once, **6.608 at epoch 3** (step 27),
#    then wanders between 6.628 and 6.815 while the training loss creeps from 6.054 to 5.332. Even at its
#    best, the model predicts the held-out text barely better than word counts do (6.646).
# 3. **Epochs 14–30: memorisation.** Validation turns steadily up while the training loss drops to
#    **3.328** at epoch 30, a perplexity of 27.88 on a text the model has seen 30 times. Validation ends at
#    **7.869** (perplexity 2,616), worse than the unigram model, and from epoch 10 on it exceeds the
#    training loss by more than a nat. The model has stopped learning English and started learning this
#    text.
#
# Validation is only two windows of 256 tokens, so its curve is noisy: read the wiggles between evaluations
# (6.721, 6.714, 6.712 right after the minimum) as noise, the trend as signal.

# %%
# NBVAL_IGNORE_OUTPUT
print(f"GPT-2 124M, best val loss of the run: {min(history.val_loss):.3f}")
print(f"bigram counter (lambda 0.3), val:     {bigram_val:.3f}")
print(f"unigram counter (alpha 0.01), val:    {unigram_val:.3f}")

# %% [markdown]
# Said plainly: **our 124M-parameter GPT-2 loses to counting pairs of tokens.** Its best
# validation loss, 6.608, is worse than the bigram counter's 5.937, and only a little better than
# the unigram counter's 6.646. The reason is the data, not the model: 4,612 training tokens are
# far too few for 124 million parameters to learn English from, so the model learns the order of
# *this* text instead and memorises it. Two things fix that, and later chapters do both: far more
# text (chapter 9 trains on a corpus of your own), and weights that were already trained on
# billions of tokens (chapter 7 loads OpenAI's GPT-2). The counts overfit too: the more we trust
# them (larger $\lambda$), the lower the training loss and the higher the validation loss.

# %% [markdown]
# ## 5.8 Against the reference run
#
# Our run and rasbt's use the same text, split, context, batch size, optimizer settings, dropout and
# number of layers, heads and widths. After 10 epochs his model has memorised the training text
# (train 0.391); ours is still on the plateau (5.722):

# %%
# NBVAL_IGNORE_OUTPUT
rows = [
    ("rasbt, LLMs-from-scratch ch. 5", "10", "0.391", "6.452", "≈ 6.1"),
    (
        f"this chapter, epoch {history.epoch[at10]:.0f}",
        f"{history.epoch[at10]:.0f}",
        f"{history.train_loss[at10]:.3f}",
        f"{history.val_loss[at10]:.3f}",
        f"{min(history.val_loss[: at10 + 1]):.3f}",
    ),
    (
        f"this chapter, epoch {history.epoch[-1]:.0f}",
        f"{history.epoch[-1]:.0f}",
        f"{history.train_loss[-1]:.3f}",
        f"{history.val_loss[-1]:.3f}",
        f"{min(history.val_loss):.3f}",
    ),
]
print(f"{'run':34} {'epochs':>6} {'train':>7} {'val':>7} {'val min':>8}")
for row in rows:
    print(f"{row[0]:34} {row[1]:>6} {row[2]:>7} {row[3]:>7} {row[4]:>8}")


# %% [markdown]
# ### Why the gap: three differences
#
# Three things differ between rasbt's `GPTModel` and our `GPT2`:
#
# * his output head is a separate matrix (162.4M parameters at context 256); ours is tied to the token
#   embedding (123.8M);
# * his q/k/v projections have no bias;
# * he keeps **PyTorch's default initialisation**: `nn.Embedding` draws from $\mathcal{N}(0, 1)$ and
#   `nn.Linear` from a Kaiming-uniform distribution, while GPT-2 (and our chapter 4) draws every weight
#   from $\mathcal{N}(0, 0.02)$ and scales the residual projections down further.
#
# `variant()` builds our `GPT2` with any of his three choices; the cell prints each model's size and
# the scale of its token embedding. His token embeddings start 50 times larger: each row has norm
# 27.7 instead of 0.55. A tied matrix has one initialisation, though: PyTorch's defaults reset the
# output head last, so a tied model ends with the head's small Kaiming-uniform matrix as its
# embedding too. The large embedding and the untied head come together.

# %%
def pytorch_default_init(model):
    """Re-initialise like a plain PyTorch model (rasbt's GPTModel): N(0, 1) embeddings,
    Kaiming-uniform linears.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.reset_parameters()
    return model


def variant(config, init="gpt2", tie=True, qkv_bias=True):
    """Our GPT2 on `config` with rasbt's choices where asked: init="pytorch" (PyTorch's
    defaults), tie=False (a separate output head), qkv_bias=False."""
    set_seed(123)
    choices = {"tie_weights": tie, "qkv_bias": qkv_bias}
    model = GPT2(GPT2Config(**{**config.to_dict(), **choices}))
    return pytorch_default_init(model) if init == "pytorch" else model


VARIANTS = {  # name: (init, tie, qkv_bias)
    "ours (GPT-2)": ("gpt2", True, True),
    "rasbt": ("pytorch", False, False),
    "rasbt + GPT-2 init": ("gpt2", False, False),
    "rasbt + tied head": ("pytorch", True, False),
    "rasbt + q/k/v bias": ("pytorch", False, True),
}
for name, choices in VARIANTS.items():
    m = variant(course_config, *choices)
    size = sum(p.numel() for p in m.parameters()) / 1e6
    row_norm = m.wte.weight.norm(dim=1).mean().item()
    head_std = m.lm_head.weight.std().item()
    print(f"{name:19}: {size:5.1f}M parameters, token embedding row norm "
          f"{row_norm:5.2f}, lm_head std {head_std:.3f}")  # fmt: skip
del m

# %% [markdown]
# A token embedding of norm 27.7 dominates the residual stream from the first step: every token arrives as
# a large, nearly orthogonal random vector, a ready-made key that the layers above only have to wire to the
# next token. That is ideal for memorising a short text. With GPT-2's small initialisation, the tied
# embedding must first grow, while doubling as the output matrix, and for the first 90 steps the model sits
# on the word-frequency plateau. To check that this, and not a bug, explains the gap, we rebuild rasbt's
# model (untied, no q/k/v bias, PyTorch's default initialisation) from our own modules and train it with
# everything else unchanged, for 10 epochs:

# %%
# NBVAL_IGNORE_OUTPUT
model_r = variant(MODEL, *VARIANTS["rasbt"]).to(device)
optimizer_r = adamw(model_r, lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
t0 = time.perf_counter()
history_r = train(
    model_r, train_loader, val_loader, optimizer_r, COMPARE_EPOCHS, eval_iters=5,
    prompt=PROMPT,
)  # fmt: skip
print(f"{COMPARE_EPOCHS} epochs in {(time.perf_counter() - t0) / 60:.1f} min")
assert history_r.train_loss[-1] < history_r.train_loss[0] and math.isfinite(
    history_r.val_loss[-1]
)

# %%
# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(7, 4.2))
plot_losses(
    first_epochs(history, COMPARE_EPOCHS),
    f"first {COMPARE_EPOCHS} epochs",
    ax,
    label=" (GPT-2 init)",
    style="--",
)
plot_losses(
    history_r,
    f"first {COMPARE_EPOCHS} epochs",
    ax,
    label=" (PyTorch default init, untied)",
)
ax.axhline(unigram_loss(train_ids, 0.01), color="grey", lw=0.8, ls=":")
ax.text(
    0,
    unigram_loss(train_ids, 0.01) + 0.15,
    "unigram model, train",
    color="grey",
    fontsize=8,
)
plt.tight_layout()
plt.show()
describe(history_r, "PyTorch default init, untied")
print(
    f"epoch {history_r.epoch[-1]:.0f}: train {history_r.train_loss[-1]:.3f}, val "
    f"{history_r.val_loss[-1]:.3f}   "
    f"(rasbt: train 0.391, val 6.452, val minimum about 6.1)"
)

# %% [markdown]
# With rasbt's initialisation our code reproduces his run closely: after 10 epochs, train 0.337 and val
# 6.600 (his: 0.391 and 6.452), with the validation minimum, 6.235, at epoch 5 (his: about
# 6.1), and samples that stitch together the story's own phrases ("a little wild--I felt nervous and
# uncertain" is Wharton's). Close, not equal: at epoch 10 the training loss is still falling fast (0.602 at
# epoch 9, 0.337 at epoch 10), so a small difference in pace shows up as a visible gap, and the pace depends
# on things we did not copy: his batch order and dropout masks come from other random streams, and he
# estimates the training loss on 5 *random* batches every 5 steps where we use 5 fixed batches once per
# epoch.
#
# ### One difference at a time
#
# Which of the three differences makes the gap? Each run below starts from rasbt's model and puts
# back one of ours, for the first 6 epochs (where the two runs part ways), and the table sets them
# beside the first 6 epochs of the two runs above. The tied run carries the caveat of the cell
# above: tying also takes away the large embedding, so that run measures the two together.

# %%
# NBVAL_IGNORE_OUTPUT
one_change = {
    "ours (GPT-2)": first_epochs(history, ONE_CHANGE_EPOCHS),
    "rasbt": first_epochs(history_r, ONE_CHANGE_EPOCHS),
}
for name in ("rasbt + GPT-2 init", "rasbt + tied head", "rasbt + q/k/v bias"):
    m = variant(MODEL, *VARIANTS[name]).to(device)
    t0 = time.perf_counter()
    optimizer_1 = adamw(m, lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
    one_change[name] = train(
        m, train_loader, val_loader, optimizer_1, ONE_CHANGE_EPOCHS, eval_iters=5,
        verbose=False,
    )  # fmt: skip
    minutes = (time.perf_counter() - t0) / 60
    print(f"{name}: {ONE_CHANGE_EPOCHS} epochs in {minutes:.1f} min")
del m
print(f"\nafter {ONE_CHANGE_EPOCHS} epochs     train     val  val min")
for name, h in one_change.items():
    last = f"{h.train_loss[-1]:7.3f} {h.val_loss[-1]:7.3f}"
    print(f"{name:19} {last} {min(h.val_loss):8.3f}")
    assert h.train_loss[-1] < h.train_loss[0] and math.isfinite(h.val_loss[-1])


# %% [markdown]
# The q/k/v bias is not it: with the bias, rasbt's model trains as fast as without (after 6 epochs
# train 3.321 and val minimum 6.198, against 2.631 and 6.235). The GPT-2 initialisation alone
# brings back our slow start (5.930 and 6.667; ours 5.915 and 6.608), and so does the tied head
# alone (6.057 and 6.637). Those two are one cause, not two: tying gives the embedding the head's
# small initialisation (row norm 0.58 instead of 27.70, in the cell before the runs), so both runs
# shrink the token embeddings at the start. The gap is the scale of the token embeddings at
# initialisation.
#
# Which initialisation is "right"? For memorising 4,612 tokens, the large one, plainly; it also reaches the
# lower validation loss (6.235 against 6.608). GPT-2's small initialisation is the one OpenAI trained with on
# its large web corpus, and its pretrained weights (chapter 7) assume our architecture with tied embeddings;
# on one short story it simply learns more slowly. And neither model predicts the last 10% of the story from
# the first 90% much better than the unigram yardstick (6.646); the bigram counter of section 5.7 does
# better than both.

# %% [markdown]
# ## 5.9 Beyond the reference: warm-up, cosine decay and gradient clipping
#
# A constant learning rate is the simplest choice, not the usual one. GPT-3 (Brown et al., 2020,
# appendix B) and nanoGPT use the three ingredients below; the GPT-2 paper does not state its
# schedule.
#
# * **linear warm-up**: start near 0 and ramp up over the first steps, while Adam's second-moment estimates
#   are still poor and the first gradients are the largest;
# * **cosine decay** from the peak down to a floor (here 10% of the peak) at the last step, so the final
#   steps take small, careful moves;
# * **gradient clipping**: rescale the whole gradient when its norm exceeds a threshold (1.0), so one
#   outlier batch cannot throw the weights far away.
#
# The schedule is a multiplier for PyTorch's `LambdaLR`. It is a small class rather than a lambda because
# `LambdaLR.state_dict()` saves a callable object's attributes (and nothing of a lambda), which is what lets
# a checkpoint restore the schedule.

# %%
#| export
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


# %%
# NBVAL_IGNORE_OUTPUT
total_steps = COMPARE_EPOCHS * len(train_loader)
warmup_steps = max(1, total_steps // 10)
schedule = WarmupCosine(warmup_steps, total_steps, 0.1)
lrs = [LR * schedule(s) for s in range(total_steps)]
print(
    f"{total_steps} steps, {warmup_steps} of warm-up: lr {lrs[0]:.1e} -> "
    f"{max(lrs):.1e} -> {lrs[-1]:.1e}"
)
plt.figure(figsize=(6, 2.5))
plt.plot(range(1, total_steps + 1), lrs)
plt.xlabel("step")
plt.ylabel("learning rate")
plt.title("linear warm-up + cosine decay")
plt.tight_layout()
plt.show()

# %% [markdown]
# The comparison run trains the same model from the same initial weights, on the same batches in the same
# order, for the first 10 epochs (90 steps, the reference run's length), with the same peak learning rate.
# Only the schedule and the clipping differ. The constant-rate run needs no rerun: with a constant learning
# rate, the first 10 epochs of the 30-epoch run above *are* a 10-epoch run.

# %%
# NBVAL_IGNORE_OUTPUT
set_seed(123)
model_s = GPT2(MODEL).to(device)
optimizer_s = adamw(model_s, lr=LR, weight_decay=WEIGHT_DECAY, fused=True)
t0 = time.perf_counter()
history_s = train(
    model_s, train_loader, val_loader, optimizer_s, COMPARE_EPOCHS, eval_iters=5,
    scheduler=warmup_cosine(optimizer_s, warmup_steps, total_steps, 0.1), grad_clip=1.0,
    prompt=PROMPT,
)  # fmt: skip
print(f"{COMPARE_EPOCHS} epochs in {(time.perf_counter() - t0) / 60:.1f} min")
assert history_s.train_loss[-1] < history_s.train_loss[0] and math.isfinite(
    history_s.val_loss[-1]
)

# %%
# NBVAL_IGNORE_OUTPUT
plain = first_epochs(
    history, COMPARE_EPOCHS
)  # the constant-lr run, cut at COMPARE_EPOCHS
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
plot_losses(
    plain, f"first {COMPARE_EPOCHS} epochs", ax1, label=" (constant lr)", style="--"
)
plot_losses(
    history_s, f"first {COMPARE_EPOCHS} epochs", ax1, label=" (warm-up + cosine + clip)"
)
ax2.plot(plain.grad_norm, "--", color="grey", label="constant lr")
ax2.plot(history_s.grad_norm, color="C2", label="warm-up + cosine + clip")
ax2.axhline(1.0, color="black", lw=0.8, ls=":")
ax2.set_yscale("log")
ax2.set_xlabel("step")
ax2.set_ylabel("gradient norm (before clipping)")
ax2.legend()
plt.tight_layout()
plt.show()
best_p, best_s = (
    describe(plain, "constant lr         "),
    describe(history_s, "warm-up+cosine+clip "),
)
for label, h in (("constant lr         ", plain), ("warm-up+cosine+clip ", history_s)):
    clipped = sum(g > 1.0 for g in h.grad_norm)
    norms = sorted(h.grad_norm)
    print(
        f"{label}: final train {h.train_loss[-1]:.3f}, val {h.val_loss[-1]:.3f}; "
        "gradient norm > 1 in "
        f"{clipped}/{len(norms)} steps (min {norms[0]:.2f}, "
        f"median {norms[len(norms) // 2]:.2f}, max {norms[-1]:.2f})"
    )

# %% [markdown]
# With the same peak learning rate, the warm-up + cosine + clipping run gets much further in 10 epochs:
# train 3.773 instead of 5.722, validation 6.430 instead of 6.815, and a validation minimum of 6.360 (epoch 8)
# instead of 6.608.
#
# Which ingredient did it? The printout holds a clue. The gradient norm was above 1.0 at every one of the 90
# steps in both runs (median 1.64 and 2.83, largest 31.09), so clipping rescaled every single gradient. A
# rescaling that were the same at every step would cancel in AdamW, which divides each gradient by the
# root-mean-square of past gradients; a rescaling that varies does not. With $\beta_2 = 0.999$, AdamW's
# second-moment estimate is, over a run of only 90 steps, close to the plain average of *all* squared
# gradients so far, so a few large early gradients keep every later update small. Clipping caps those
# gradients; warm-up keeps the early steps small while the estimates rest on a handful of gradients; the
# cosine decay makes the last steps careful. All three push the same way, and with one run each we cannot
# say how much each contributed (that would take more 124M runs than this CPU affords), only that together
# they clearly helped here. This is also where $\beta_2 = 0.95$ would differ: its second moment
# forgets a gradient after a few dozen steps, so the large early gradients would stop shrinking the
# later updates even without clipping.
#
# ### When a run diverges
#
# Clipping guards against one outlier batch; `train_step`'s divergence check guards against a run
# that has already gone wrong. A learning rate of $10^{6}$ blows the weights up within a couple of
# steps; the run stops at the first non-finite loss and says where:

# %%
from gpt2scratch.dataset import create_dataloader

tiny = GPT2Config.preset("tiny", context_length=64)
small_loader = create_dataloader(tokenizer.encode(train_text), batch_size=2,
                                 context_length=64, shuffle=False)  # fmt: skip
small_val = create_dataloader(
    tokenizer.encode(val_text), batch_size=2, context_length=64, shuffle=False,
    drop_last=False,
)  # fmt: skip
set_seed(123)
m = GPT2(tiny)
try:
    train(m, small_loader, small_val, torch.optim.SGD(m.parameters(), lr=1e6),
          verbose=False)  # fmt: skip
except NonFiniteLossError as err:
    print(f"{type(err).__name__}: {err}")
    assert err.step <= 5

# %% [markdown]
# ## 5.10 Dropout and weight decay, measured
#
# Two regularisers are on in every run above: dropout 0.1 and weight decay 0.1. Weight decay, as
# `adamw()` of section 5.5 sets it up, shrinks the matrices and embeddings only. On the 124M model
# the two groups hold these tensors (the 12 blocks folded into `h.*`):

# %%
names = {id(p): name for name, p in untrained.named_parameters()}
for group in adamw(untrained, lr=4e-4, weight_decay=0.1).param_groups:
    params = [names[id(p)] for p in group["params"]]
    kinds = sorted({"h.*." + n.split(".", 2)[2] if n.startswith("h.") else n
                    for n in params})  # fmt: skip
    count = sum(p.numel() for p in group["params"])
    print(f"weight decay {group['weight_decay']}: {len(params)} tensors, "
          f"{count:,} parameters")  # fmt: skip
    print("   ", ", ".join(kinds))

# %% [markdown]
# What do the two regularisers buy? A quick calculation first. AdamW's decoupled weight decay
# multiplies every decayed weight by $(1 - \text{lr}\cdot\lambda)$ each step, independent of the
# gradient:

# %%
shrink_ref = (1 - LR * WEIGHT_DECAY) ** 90
shrink_long = (1 - LR * WEIGHT_DECAY) ** 270
print(
    f"(1 - lr*wd)^steps: after 90 steps {shrink_ref:.4f}, after 270 steps "
    f"{shrink_long:.4f}"
)

# %% [markdown]
# Weight decay can shrink the weights by at most about 1% over the whole 30-epoch run, and the gradient
# pushes back every step. Decay is a regulariser for runs of hundreds of thousands of steps. Dropout, on the
# other hand, changes every step. To measure instead of guess, we train the same 124M model twice more,
# once without dropout and once without weight decay, for 3 epochs each (what we can afford: 124M steps are
# slow here), and compare with the first 3 epochs of the main run: same initial weights, same batches in the
# same order.

# %%
# NBVAL_IGNORE_OUTPUT
study = {(0.1, 0.1): first_epochs(history, STUDY_EPOCHS)}
for dropout, weight_decay in ((0.0, 0.1), (0.1, 0.0)):
    set_seed(123)
    m = GPT2(GPT2Config(**{**MODEL.to_dict(), "dropout": dropout})).to(device)
    opt = adamw(m, lr=LR, weight_decay=weight_decay, fused=True)
    t0 = time.perf_counter()
    study[dropout, weight_decay] = train(
        m, train_loader, val_loader, opt, STUDY_EPOCHS, eval_iters=5, verbose=False
    )
    print(
        f"dropout {dropout}, weight decay {weight_decay}: {STUDY_EPOCHS} epochs in "
        f"{(time.perf_counter() - t0) / 60:.1f} min"
    )
print(f"{'':28}" + "".join(f"{'epoch ' + str(e):>9}" for e in range(STUDY_EPOCHS + 1)))
for (dropout, weight_decay), h in study.items():
    label = f"dropout {dropout}, wd {weight_decay}"
    print(f"{label + ', val':28}" + "".join(f"{v:9.3f}" for v in h.val_loss))
    print(f"{label + ', train':28}" + "".join(f"{v:9.3f}" for v in h.train_loss))
    assert h.train_loss[-1] < h.train_loss[0] and math.isfinite(h.val_loss[-1])

# %% [markdown]
# Over these first 3 epochs neither switch makes a measurable difference: the losses differ by
# less than a twentieth of a nat (epoch 3 val: 6.608 with both, 6.652 without dropout, 6.657
# without weight decay), inside the noise of a two-window validation set. That is all this
# experiment shows, and it is a statement about the first 3 epochs only. Weight decay did what
# the arithmetic predicted. Dropout's job is to make memorisation harder, so if it matters it
# will show in the memorisation phase (from epoch 14 here), which we cannot afford to train
# three more times on two CPU cores; we have not measured that, so we do not claim it.
#
# ## 5.11 Sampling from the trained model
#
# The model ends the chapter as a next-token distribution: logits, divided by a **temperature**
# $T$, then softmax. $T < 1$ sharpens the distribution towards the likeliest tokens, $T > 1$
# flattens it. Three samples of the main run's model at each temperature, each with its own seed:

# %%
# NBVAL_IGNORE_OUTPUT
for temperature in (0.7, 1.0, 1.2):
    for seed in (1, 2, 3):
        text = model.generate(PROMPT, max_length=20, temperature=temperature, seed=seed)
        print(f"T = {temperature}, seed {seed}: {text[len(PROMPT):]!r}")
    print()

# %% [markdown]
# Why a seed per sample: with one seed, every temperature draws the same random numbers, and
# `torch.multinomial` picks the token with the largest $p_i / q_i$ for noise $q_i$ drawn from that
# seed, so a token that drew favourable noise wins at every temperature and the samples share
# their first tokens; only several seeds per temperature show the spread that $T$ controls.
#
# Where that spread comes from: the probabilities of the ten likeliest next tokens after the
# prompt, at each temperature.

# %%
# NBVAL_IGNORE_OUTPUT
model.eval()
with torch.no_grad():
    prompt_ids = torch.tensor([tokenizer.encode(PROMPT)], device=device)
    next_logits = model(prompt_ids)[0, -1].float().cpu()  # (V,)
top = next_logits.topk(10).indices
labels = [repr(tokenizer.decode([int(i)])) for i in top]
fig, ax = plt.subplots(figsize=(9, 3.2))
for k, temperature in enumerate((0.7, 1.0, 1.2)):
    probs = torch.softmax(next_logits / temperature, dim=-1)[top]
    ax.bar(
        [i + 0.27 * (k - 1) for i in range(10)],
        probs,
        width=0.27,
        label=f"T = {temperature}",
    )
    print(
        f"T = {temperature}: top-10 tokens hold {probs.sum().item():.0%} of the "
        "probability"
    )
ax.set_xticks(range(10), labels, rotation=30)
ax.set_ylabel("probability")
ax.set_title(f"next token after {PROMPT!r}")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Chapter 8 measures this trade-off properly (diversity against coherence, with top-k and top-p)
# and makes generation fast with a KV cache.
#
# ## 5.12 Long runs: checkpoints, resume and the command line
#
# A run of hours must survive a crash or a Ctrl-C, and should not be started from a notebook.
# [Appendix A](A_engineering.ipynb), section A.9, builds what that takes around this chapter's
# `train_step`: `TrainSettings` (every setting of a run in one object), `train_run()` (the loop
# with a progress bar, callbacks, and checkpoints that hold the weights, AdamW's moments, the
# schedule, every random state and the position in the shuffled data, so that a resumed run
# continues **bit for bit**), and `prepare_run()`, which builds loaders, model, AdamW and schedule
# from the settings for the command line `python -m gpt2scratch train|generate|run` (`make run`
# trains this chapter's model with the schedule of section 5.9). Section A.7 gives chapters 7 to
# 10 "the chapter-5 model": the checkpoint `make run` leaves in `runs/verdict`, or a small stand-in
# trained once and cached.

# %% [markdown]
# ## Summary
#
# * **The loss** is the mean negative log-likelihood of the next token: log-softmax, pick the
#   target, average, negate (`F.cross_entropy` fuses the steps). An untrained GPT-2 scores about
#   $\ln V + \sigma^2/2$ (10.939 measured, 10.978 predicted, $\ln 50257 = 10.825$), the ceiling of
#   ignorance; perplexity $e^{\mathcal{L}}$ turns it into "choosing among how many tokens".
# * **One step** is `train_step`: gradients, a NaN/inf check, an optional clip, one AdamW step.
#   AdamW, written out by hand, matches `torch.optim.AdamW` in float64; weight decay applies to
#   the weight matrices and embeddings only. `train()` is that step in a loop, with an evaluation
#   and a greedy sample after each epoch.
# * **GPT-2 124M on 4,612 tokens** learns word frequencies in 2 epochs, sits on a plateau until
#   its validation minimum (6.608, epoch 3) and for ten epochs after it, then memorises: train
#   3.328, val 7.869 after 30 epochs. It loses to a bigram counter (5.937): this corpus is far too small.
# * **Against rasbt's reference** (train 0.391, val 6.452 after 10 epochs) his model, rebuilt from
#   ours (PyTorch's initialisation, untied head, no q/k/v bias), gives 0.337 and 6.600; one run
#   per difference shows that the gap is the token embeddings' small initial scale (which the
#   tied head also imposes), not the q/k/v bias.
# * **Warm-up + cosine decay + clipping** reaches train 3.773 / val 6.430 in 10 epochs instead of
#   5.722 / 6.815; dropout and weight decay made no measurable difference in the first 3 epochs.
# * **Sampling** at a temperature needs a seed per sample: one shared seed couples the samples.
#
# Next: [Chapter 6](06_backprop.ipynb) computes the gradients that `loss.backward()` gave us here by hand, and
# [Appendix A](A_engineering.ipynb) shows the engineering around `train_step`: settings, checkpoints
# and resume, verified data files, and one error contract.
#
# ## Exercises
#
# **1. Temperature on a trained model.** Sample 5 continuations of the prompt at each of
# T = 0.5, 1.0 and 1.5 from the main run's model, and count the distinct tokens in each group.
# How does the count change with T, and why?

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
for temperature in (0.5, 1.0, 1.5):
    tokens = set()
    for seed in range(5):
        text = model.generate(PROMPT, max_length=30, temperature=temperature, seed=seed)
        tokens.update(tokenizer.encode(text))
    print(f"T = {temperature}: {len(tokens)} distinct tokens in 5 samples")


# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# Dividing the logits by a small T magnifies their differences, so the softmax piles its mass on
# a few tokens and the samples repeat them; a large T shrinks the differences, so rare tokens are
# drawn too and the count of distinct tokens grows. On an *untrained* model the logits are all
# nearly equal, so T changes almost nothing: that is why this exercise needs a trained model.
# ```
#
# **2. Early stopping.** Write a loop that trains epoch by epoch, stops when the validation loss
# has not improved for 3 epochs, and keeps a copy of the best weights (`train_step` and `evaluate`
# are all it needs). Try it on the tiny model.

# %% jupyter={"outputs_hidden": true, "source_hidden": true} tags=["hide-cell"]
# NBVAL_IGNORE_OUTPUT
def train_with_patience(model, optimizer, patience=3, max_epochs=40):
    """Train until `patience` epochs bring no new validation minimum; return the last
    epoch and (val loss, epoch, weights) of the best one."""
    best, bad = (math.inf, 0, None), 0
    for epoch in range(1, max_epochs + 1):
        for x, y in train_loader:
            train_step(model, x, y, optimizer)
        val = evaluate(model, val_loader)
        if val < best[0]:
            weights = {k: v.clone() for k, v in model.state_dict().items()}
            best, bad = (val, epoch, weights), 0
        else:
            bad += 1
            if bad == patience:
                break
    return epoch, best


set_seed(123)
m = GPT2(GPT2Config.preset("tiny", context_length=256))
stopped, (best_val, best_epoch, weights) = train_with_patience(
    m, adamw(m, lr=4e-3, weight_decay=0.1)
)
print(f"stopped after epoch {stopped}; best val {best_val:.3f} at epoch {best_epoch}")
m.load_state_dict(weights)
assert abs(evaluate(m, val_loader) - best_val) < 1e-4
assert best_epoch < stopped < 40

# %% [markdown]
# ```{admonition} Solution
# :class: dropdown
# The loop evaluates after every epoch, counts the epochs without a new minimum, and stops at
# `patience` of them. Restoring the kept weights gives back the model of the best epoch (checked
# above by evaluating it again). `state_dict()` returns references to the live tensors: the
# `.clone()` is what keeps the best weights from being overwritten by later steps.
# Appendix A's `train_run()` takes callbacks, which can do the same inside its loop.
# ```
