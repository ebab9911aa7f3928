"""Tests for gpt2scratch.train: loss, evaluation, the training loop, the schedule, device and seeds."""
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.train import (
    NonFiniteLossError, WarmupCosine, calc_loss_batch, epoch_batches, evaluate, make_loaders,
    perplexity, pick_device, preserved_rng, rng_state, set_rng_state, set_seed, split_text, train, warmup_cosine,
)
from conftest import CharTokenizer, tiny_config

TINY = tiny_config(d_model=16, n_heads=2, dropout=0.1)
VOCAB = TINY.vocab_size


def ids(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n,), generator=g)


def loaders(shuffle=True, batch_size=4, context_length=16, seed=123):
    train_loader = create_dataloader(ids(400), batch_size=batch_size, context_length=context_length,
                                     shuffle=shuffle, seed=seed)
    val_loader = create_dataloader(ids(80, seed=1), batch_size=2, context_length=context_length,
                                   shuffle=False, drop_last=False)
    return train_loader, val_loader


def fresh(config=TINY, lr=1e-2):
    set_seed(123)
    model = GPT2(config)
    return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)


def quiet(**kwargs):
    return {"progress": False, "verbose": False, **kwargs}


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


def test_loss_falls_when_overfitting_one_batch():
    model, optimizer = fresh(lr=3e-3)
    batch = next(iter(loaders()[0]))
    history = train(model, [batch] * 60, [batch], optimizer, eval_iters=1, **quiet())
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
    history = train(model, train_loader, val_loader, optimizer, epochs=2, **quiet())
    assert history.step_loss == naive


def test_nan_loss_stops_with_an_error_naming_step_and_value():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()

    def poison(info):  # after step 3, the weights become NaN: step 4's loss is NaN
        if info["step"] == 3:
            with torch.no_grad():
                model.ln_f.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4") as err:
        train(model, train_loader, val_loader, optimizer, epochs=3, callbacks=[poison], **quiet())
    assert err.value.step == 4 and math.isnan(err.value.value)


def test_divergence_from_a_huge_learning_rate_is_caught():
    model, _ = fresh()
    train_loader, val_loader = loaders()
    with pytest.raises(NonFiniteLossError, match=r"at step \d+: training diverged"):
        train(model, train_loader, val_loader, torch.optim.SGD(model.parameters(), lr=1e8), epochs=20, **quiet())


def test_history_records_evaluations_steps_and_lr():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    n = len(train_loader)
    history = train(model, train_loader, val_loader, optimizer, epochs=2, eval_every=3, eval_iters=2, **quiet())
    assert history.step == list(range(0, 2 * n + 1, 3))
    assert history.tokens_seen == [s * 4 * 16 for s in history.step]
    assert history.epoch == [s / n for s in history.step]
    assert len(history.step_loss) == len(history.grad_norm) == len(history.step_lr) == 2 * n
    assert all(lr == 1e-2 for lr in history.lr)
    assert all(math.isfinite(v) for v in history.train_loss + history.val_loss)


def test_callback_and_max_steps_stop_the_run():
    train_loader, val_loader = loaders()
    model, optimizer = fresh()
    seen = []
    history = train(model, train_loader, val_loader, optimizer, epochs=5,
                    callbacks=[lambda info: seen.append(info["step"]) or info["step"] == 4], **quiet())
    assert seen == [1, 2, 3, 4] and len(history.step_loss) == 4
    model, optimizer = fresh()
    assert len(train(model, train_loader, val_loader, optimizer, epochs=5, max_steps=7, **quiet()).step_loss) == 7


def test_epoch_order_depends_on_seed_and_epoch_only_and_leaves_global_rng_alone():
    def order(loader, seed, epoch):
        return [x[:, 0].tolist() for x, _ in epoch_batches(loader, seed, epoch)]

    a, _ = loaders()
    b, _ = loaders(seed=999)  # the loader's own seed does not matter any more
    order(a, 1, 0), order(a, 1, 1)  # a has run two epochs, b none
    before = torch.get_rng_state()
    assert order(a, 1, 2) == order(b, 1, 2)
    assert torch.equal(before, torch.get_rng_state())
    assert order(a, 1, 2) != order(a, 1, 3) and order(a, 1, 2) != order(a, 2, 2)
    assert sorted(sum(order(a, 1, 2), [])) == sorted(sum(order(a, 1, 3), []))  # same windows, new order


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


def test_rng_state_round_trip_and_preserved_rng():
    set_seed(5)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(5))
    set_rng_state(state)
    assert (random.random(), np.random.rand()) == first[:2] and torch.equal(torch.rand(5), first[2])
    set_rng_state(state)
    random.random(), np.random.rand(), torch.rand(3)
    with preserved_rng():  # whatever happens inside does not move the streams outside
        torch.rand(100), random.random(), np.random.rand(7)
    assert torch.equal(torch.rand(2), first[2][3:])


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


def test_pick_device_and_set_seed():
    auto = pick_device()
    assert auto.type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert auto.type in ("mps", "cpu")
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            pick_device("cuda")
    assert pick_device("cpu") == torch.device("cpu")
    # an unknown device: tests/test_bad_inputs.py
    with pytest.raises(TypeError, match="seed must be an int"):
        set_seed(1.5)


def test_split_text_is_by_characters():
    train_text, val_text = split_text("abcdefghij", 0.9)
    assert (train_text, val_text) == ("abcdefghi", "j")
    with pytest.raises(ValueError, match="train_ratio must be finite and > 0 and < 1"):
        split_text("abc", 1.0)


def test_make_loaders_explains_short_splits():  # one token per character: easy counts
    tok = CharTokenizer()
    with pytest.raises(ValueError, match=r"the train split \(90% of the text\) has 90 tokens, too short for "
                                         r"one window of context_length 256, which needs 257 tokens"):
        make_loaders("x" * 100, tok, context_length=256)
    with pytest.raises(ValueError, match=r"the validation split \(10% of the text\) has 30 tokens, .* needs 33"):
        make_loaders("x" * 300, tok, context_length=32)
    with pytest.raises(ValueError, match=r"has 900 tokens = 14 window\(s\) of 64, fewer than batch_size 16"):
        make_loaders("x" * 1000, tok, context_length=64, batch_size=16)
    train_loader, val_loader = make_loaders("x" * 1000, tok, context_length=32, batch_size=2)
    assert len(train_loader.dataset.token_ids) == 900 and len(val_loader.dataset.token_ids) == 100


def test_settings_validate_and_recipe():
    from gpt2scratch.train import RECIPE, TrainSettings

    assert RECIPE.schedule == "cosine" and RECIPE.grad_clip == 1.0 and RECIPE.epochs == 10
    assert TrainSettings().grad_clip is None  # train()'s defaults: the plain loop
    for kwargs, error, message in (({"epochs": True}, TypeError, "epochs must be an int"),
                                   ({"lr": 0}, ValueError, "lr must be finite and > 0"),
                                   ({"schedule": "linear"}, ValueError, "'linear'")):
        with pytest.raises(error, match=message):
            TrainSettings(**kwargs)


def test_prepare_run_builds_everything_from_settings():
    from gpt2scratch.train import TrainSettings, prepare_run

    settings = TrainSettings(model="tiny", context_length=32, epochs=2, schedule="cosine")
    run = prepare_run(settings, "The quick brown fox jumps. " * 60, device="cpu")
    assert run.config.d_model == 32 and run.config.context_length == 32
    assert run.scheduler is not None and len(run.train_loader) >= 1
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        prepare_run(TrainSettings(model="huge"), "x" * 3000, device="cpu")


def test_train_rejects_bad_arguments():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    for kwargs, message in (({"epochs": 0}, "epochs must be"), ({"grad_clip": 0}, "grad_clip must be finite and > 0"),
                            ({"eval_every": 0}, "eval_every must be")):
        with pytest.raises(ValueError, match=message):
            train(model, train_loader, val_loader, optimizer, **quiet(**kwargs))


def test_end_of_epoch_sample_does_not_disturb_training():
    config = GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1)  # GPT-2's vocabulary
    data = torch.randint(0, 50257, (200,), generator=torch.Generator().manual_seed(0))
    train_loader = create_dataloader(data, batch_size=2, context_length=16, seed=1)
    runs = []
    for prompt in (None, "Justice is served when"):
        set_seed(0)
        model = GPT2(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        runs.append(train(model, train_loader, train_loader, optimizer, epochs=2, sample_prompt=prompt,
                          sample_tokens=3, **quiet()))
    assert runs[0].step_loss == runs[1].step_loss and runs[0].samples == []
    assert [s for s, _ in runs[1].samples] == [len(train_loader), 2 * len(train_loader)]
    assert all(text.startswith("Justice is served when") for _, text in runs[1].samples)


def test_grad_clip_bounds_the_update():
    train_loader, val_loader = loaders()
    model, optimizer = fresh()
    history = train(model, train_loader, val_loader, optimizer, epochs=1, grad_clip=1e-3, **quiet())
    assert all(g > 1e-3 for g in history.grad_norm)  # norms are recorded before clipping
    model, _ = fresh()
    before = [p.detach().clone() for p in model.parameters()]
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    train(model, [next(iter(train_loader))], val_loader, sgd, grad_clip=1e-3, **quiet())
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert step.item() == pytest.approx(1e-3, rel=1e-3)  # SGD step = lr * clipped gradient


def test_train_equals_a_loop_of_train_step_bit_for_bit():
    from gpt2scratch.train import train_step

    train_loader, val_loader = loaders(shuffle=False)
    model, optimizer = fresh()
    by_hand = [train_step(model, x, y, optimizer).loss for _ in range(2) for x, y in train_loader]
    model, optimizer = fresh()
    history = train(model, train_loader, val_loader, optimizer, epochs=2, **quiet())
    assert history.step_loss == by_hand


def test_backward_and_wrap_seams():
    """The seams later chapters use: a hand-written backward (ch06) and a model wrapper (ch11)."""
    from gpt2scratch.train import autograd_backward

    calls = {"backward": 0, "wrap": 0}

    def counting_backward(model, inputs, targets):
        calls["backward"] += 1
        return autograd_backward(model, inputs, targets)

    class Wrapper(torch.nn.Module):  # like DistributedDataParallel: forwards to the module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, idx):
            return self.module(idx)

    def wrap(model):
        calls["wrap"] += 1
        return Wrapper(model)

    train_loader, val_loader = loaders(shuffle=False)
    model, optimizer = fresh()
    plain = train(model, train_loader, val_loader, optimizer, **quiet())
    model, optimizer = fresh()
    seamed = train(model, train_loader, val_loader, optimizer, backward=counting_backward,
                   wrap=wrap, **quiet())
    assert calls == {"backward": len(train_loader), "wrap": 1}
    assert seamed.step_loss == plain.step_loss


def test_frozen_weights_stay_frozen_and_are_not_clipped():
    """LoRA's case (ch09): only parameters that get a gradient are clipped and updated."""
    train_loader, val_loader = loaders(shuffle=False)
    model, _ = fresh()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("h.1."))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    history = train(model, train_loader, val_loader, optimizer, grad_clip=0.5, **quiet())
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert history.step_loss[-1] < history.step_loss[0]


def test_train_rejects_unknown_settings():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    with pytest.raises(TypeError, match="learning_rate"):
        train(model, train_loader, val_loader, optimizer, learning_rate=0.1, **quiet())
