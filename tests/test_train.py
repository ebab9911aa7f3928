"""Tests for gpt2scratch.train (chapter 5): the loss, evaluation, train_step, AdamW's groups, the
teaching train() loop and the schedule."""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.runtime import in_order, rng_state, set_seed
from gpt2scratch.train import (
    WarmupCosine, adamw, autograd_backward, calc_loss_batch, evaluate, perplexity, train,
    train_step, warmup_cosine,
)
from gpt2scratch.validation import NonFiniteLossError
from conftest import (
    GPT2_VOCAB, TRAIN_TINY, fresh_model, random_ids, tiny_loaders,
)

TINY, VOCAB = TRAIN_TINY, TRAIN_TINY.vocab_size
ids, loaders, fresh = random_ids, tiny_loaders, fresh_model


def test_calc_loss_batch_is_mean_negative_log_likelihood():
    model, _ = fresh()
    model.eval()  # no dropout: two forward passes must agree
    x, y = next(iter(loaders()[0]))
    with torch.no_grad():
        log_probs = torch.log_softmax(model(x), dim=-1)
        by_hand = -log_probs.gather(-1, y.unsqueeze(-1)).mean()
        torch.testing.assert_close(calc_loss_batch(model, x, y), by_hand)
    assert perplexity(0.0) == 1.0 and math.isclose(perplexity(math.log(VOCAB)), VOCAB)


def test_untrained_loss_is_close_to_ln_vocab():
    config = GPT2Config(vocab_size=5000, context_length=16, d_model=32, n_layers=2, n_heads=2)
    model, _ = fresh(config)
    x = torch.randint(0, 5000, (4, 16), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5000, (4, 16), generator=torch.Generator().manual_seed(1))
    assert abs(evaluate(model, [(x, y)]) - math.log(5000)) < 0.1


# --- train_step ------------------------------------------------------------------------------


def test_nan_loss_stops_with_an_error_naming_step_and_value():
    model, optimizer = fresh()
    x, y = next(iter(loaders()[0]))
    train_step(model, x, y, optimizer, step=1)
    with torch.no_grad():
        model.ln_f.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 2") as err:
        train_step(model, x, y, optimizer, step=2)
    assert err.value.step == 2 and math.isnan(err.value.value)


def test_grad_clip_bounds_the_update_and_norms_are_recorded_before_clipping():
    model, _ = fresh()
    x, y = next(iter(loaders()[0]))
    before = [p.detach().clone() for p in model.parameters()]
    result = train_step(model, x, y, torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1e-3)
    assert result.grad_norm > 1e-3
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert step.item() == pytest.approx(1e-3, rel=1e-3)  # SGD step = lr * clipped gradient


def test_frozen_weights_stay_frozen_and_are_not_clipped():
    """LoRA's case (ch09): only parameters that get a gradient are clipped and updated."""
    model, _ = fresh()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("h.1."))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = adamw(model, lr=1e-2)
    train_loader, _ = loaders(shuffle=False)
    losses = [train_step(model, x, y, optimizer, grad_clip=0.5).loss for _ in range(3) for x, y in train_loader]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert losses[-1] < losses[0]


# --- adamw: weight decay on tensors with two or more dimensions --------------------------------


def test_adamw_decays_matrices_and_embeddings_only():
    model, _ = fresh()
    groups = adamw(model, lr=1e-3, weight_decay=0.1).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and all(p.dim() < 2 for p in groups[1]["params"])
    n = len(list(model.parameters()))  # the tied head counts once
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == n
    names = {id(p): name for name, p in model.named_parameters()}
    kept = {names[id(p)].split(".")[-1] for p in groups[1]["params"]}
    assert kept <= {"bias", "weight", "scale", "shift"}  # biases and LayerNorm parameters
    assert any("ln_" in names[id(p)] for p in groups[1]["params"])
    assert {names[id(p)] for p in groups[0]["params"]} >= {"wte.weight", "wpe.weight"}


def test_adamw_decay_all_is_plain_adamw_bit_for_bit():
    torch.manual_seed(0)
    a, b = GPT2(TINY).eval(), GPT2(TINY).eval()
    b.load_state_dict(a.state_dict())
    ours, plain = adamw(a, lr=1e-2, weight_decay=0.1, decay_all=True), torch.optim.AdamW(b.parameters(), lr=1e-2,
                                                                                          weight_decay=0.1)
    assert len(ours.param_groups) == 1
    x, y = next(iter(loaders(shuffle=False)[0]))
    for _ in range(3):
        for model, opt in ((a, ours), (b, plain)):
            opt.zero_grad()
            calc_loss_batch(model, x, y).backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_without_a_gradient_only_the_decayed_tensors_shrink():
    model, _ = fresh()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adamw(model, lr=0.1, weight_decay=0.5).step()
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p, before[name]), name  # a LayerNorm gain stays at 1


def test_adamw_takes_only_trainable_parameters_and_passes_options():
    model, _ = fresh()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("h.0."))
    opt = adamw(model, lr=1e-3, betas=(0.9, 0.95))
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="empty parameter list"):
        adamw(model, lr=1e-3)


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_restores_mode_and_every_random_state():
    model, _ = fresh()
    model.train()
    train_loader, _ = loaders()
    state = rng_state()
    evaluate(model, train_loader, max_batches=2)
    assert model.training
    after = rng_state()
    assert torch.equal(state["torch"], after["torch"]) and state["python"] == after["python"]
    assert np.array_equal(state["numpy"][1], after["numpy"][1])
    model.eval()
    evaluate(model, train_loader, max_batches=1)
    assert not model.training
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [])


def test_evaluate_means_batches_or_every_token():
    model, _ = fresh()
    x = torch.randint(0, VOCAB, (4, 17), generator=torch.Generator().manual_seed(3))
    batches = [(x[:3, :-1], x[:3, 1:]), (x[3:, :-1], x[3:, 1:])]  # 3 rows, then 1
    with torch.no_grad():
        means = [calc_loss_batch(model.eval(), a, b).item() for a, b in batches]
        every_token = calc_loss_batch(model, x[:, :-1], x[:, 1:]).item()
    assert evaluate(model, batches) == pytest.approx(sum(means) / 2, abs=1e-6)  # the default
    assert evaluate(model, batches, per_token=True) == pytest.approx(every_token, abs=1e-6)
    assert abs(sum(means) / 2 - every_token) > 1e-3  # the two weightings differ here


def test_in_order_reads_the_same_windows_every_time_and_leaves_the_shuffle_alone():
    train_loader, _ = loaders()
    fixed = in_order(train_loader)
    first = [x.tolist() for x, _ in fixed]
    state = train_loader.generator.get_state()
    assert [x.tolist() for x, _ in in_order(train_loader)] == first
    assert torch.equal(train_loader.generator.get_state(), state)  # the next epoch's order is untouched
    assert sorted(sum(first, [])) == sorted(sum([x.tolist() for x, _ in train_loader], []))
    assert in_order([1, 2]) == [1, 2]  # not a shuffled DataLoader: as it is


# --- the teaching train() ----------------------------------------------------------------------


def test_loss_falls_when_overfitting_one_batch():
    model, optimizer = fresh(lr=3e-3)
    batch = next(iter(loaders()[0]))
    history = train(model, [batch] * 60, [batch], optimizer, eval_iters=1, verbose=False)
    assert history.step_loss[-1] < 0.5 * history.step_loss[0]
    assert history.train_loss[-1] < history.train_loss[0] and len(history.step_loss) == 60


def test_train_equals_the_naive_loop_bit_for_bit():
    train_loader, val_loader = loaders(shuffle=False)
    model, optimizer = fresh()
    naive = []
    model.train()
    for _ in range(2):
        for x, y in train_loader:
            loss = calc_loss_batch(model, x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            naive.append(loss.item())
    model, optimizer = fresh()
    history = train(model, train_loader, val_loader, optimizer, 2, verbose=False)
    assert history.step_loss == naive


def test_history_records_one_evaluation_per_epoch_and_every_step(capsys):
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    n = len(train_loader)
    history = train(model, train_loader, val_loader, optimizer, 2, eval_iters=2)
    assert history.step == [0, n, 2 * n] and history.epoch == [0.0, 1.0, 2.0]
    assert history.tokens_seen == [s * 4 * 16 for s in history.step]
    assert len(history.step_loss) == len(history.grad_norm) == len(history.step_lr) == 2 * n
    assert all(lr == 1e-2 for lr in history.lr + history.step_lr)
    assert all(math.isfinite(v) for v in history.train_loss + history.val_loss)
    assert len(capsys.readouterr().out.splitlines()) == 3  # one line per evaluation


def test_the_samples_after_each_epoch_do_not_disturb_training():
    config = GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1, dropout=0.1)
    data = torch.randint(0, GPT2_VOCAB, (200,), generator=torch.Generator().manual_seed(0))
    runs = []
    for prompt in (None, "Justice is served when"):
        train_loader = create_dataloader(data, batch_size=2, context_length=16, seed=1)  # the same order
        set_seed(0)
        model = GPT2(config)
        runs.append(train(model, train_loader, train_loader, adamw(model, lr=1e-3), 2, prompt=prompt,
                          verbose=False))
    assert runs[0].step_loss == runs[1].step_loss and runs[0].samples == []
    assert [s for s, _ in runs[1].samples] == [len(train_loader), 2 * len(train_loader)]
    assert all(text.startswith("Justice is served when") for _, text in runs[1].samples)


def test_divergence_from_a_huge_learning_rate_is_caught():
    model, _ = fresh()
    train_loader, val_loader = loaders()
    with pytest.raises(NonFiniteLossError, match=r"at step \d+: training diverged"):
        train(model, train_loader, val_loader, torch.optim.SGD(model.parameters(), lr=1e8), 20, verbose=False)


def test_train_takes_a_backward_a_scheduler_and_a_clip():
    """The seam chapter 6 uses: a hand-written backward fills the gradients."""
    calls = []

    def counting_backward(model, inputs, targets):
        calls.append(1)
        return autograd_backward(model, inputs, targets)

    train_loader, val_loader = loaders(shuffle=False)
    model, optimizer = fresh()
    plain = train(model, train_loader, val_loader, optimizer, verbose=False)
    model, optimizer = fresh()
    seamed = train(model, train_loader, val_loader, optimizer, backward=counting_backward, verbose=False)
    assert len(calls) == len(train_loader) and seamed.step_loss == plain.step_loss
    model, optimizer = fresh()
    scheduler = warmup_cosine(optimizer, 2, len(train_loader))
    clipped = train(model, train_loader, val_loader, optimizer, scheduler=scheduler, grad_clip=1e-3, verbose=False)
    assert clipped.step_lr[:2] == [0.005, 0.01] and clipped.step_loss != plain.step_loss


def test_train_rejects_bad_arguments():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    for epochs, error in ((0, ValueError), (1.5, TypeError)):
        with pytest.raises(error, match="epochs must be"):
            train(model, train_loader, val_loader, optimizer, epochs, verbose=False)
    with pytest.raises(TypeError, match="learning_rate"):
        train(model, train_loader, val_loader, optimizer, learning_rate=0.1)


# --- the schedule --------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(warmup=st.integers(0, 50), extra=st.integers(0, 200), min_ratio=st.floats(0, 1))
def test_warmup_cosine_shape(warmup, extra, min_ratio):
    total = warmup + extra
    assume(total >= 1)
    f = WarmupCosine(warmup, total, min_ratio)
    values = [f(s) for s in range(total + 5)]
    assert all(0 <= v <= 1 for v in values) and all(v > 0 for v in values[:warmup])
    assert all(v >= min_ratio - 1e-12 for v in values[warmup:])  # the warm-up ramp may start below the floor
    assert values[:warmup] == [(s + 1) / warmup for s in range(warmup)]  # linear ramp, never 0
    decay = values[warmup:total + 1]
    assert all(a >= b - 1e-12 for a, b in zip(decay, decay[1:]))  # non-increasing after warm-up
    assert values[total:] == [min_ratio] * 5  # the floor at total_steps, flat after it
    if extra:
        assert values[warmup] == 1.0  # decay starts from the peak


def test_warmup_cosine_drives_the_optimizer_lr_and_rejects_bad_settings():
    model, optimizer = fresh(lr=1.0)
    scheduler = warmup_cosine(optimizer, 4, 20, 0.1)
    lrs = []
    for _ in range(22):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and math.isclose(lrs[20], 0.1) and lrs[21] == lrs[20]
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        WarmupCosine(0, 0)
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        WarmupCosine(10, 5)
    with pytest.raises(ValueError, match="min_ratio"):
        WarmupCosine(1, 5, 1.5)
