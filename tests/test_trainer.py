"""Tests for gpt2scratch.trainer (Appendix A.9): train_run, the loop the CLI and the later chapters use.
Checkpoints and resume: tests/test_checkpoint.py."""
import math

import pytest
import torch

from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.runtime import set_seed
from gpt2scratch.train import adamw, autograd_backward, train
from gpt2scratch.trainer import epoch_batches, train_run
from gpt2scratch.validation import NonFiniteLossError
from conftest import (
    GPT2_VOCAB, TRAIN_TINY, fresh_model, random_ids, tiny_loaders,
)

TINY, VOCAB = TRAIN_TINY, TRAIN_TINY.vocab_size
ids, loaders, fresh = random_ids, tiny_loaders, fresh_model


def quiet(**kwargs):
    return {"progress": False, "verbose": False, **kwargs}


def test_train_run_equals_chapter_5s_train_bit_for_bit():
    """Both loops take the same train_step: a tiny model, dropout on, 2 epochs, an evaluation and a
    greedy sample after each epoch; every field of the two histories is identical."""
    config = GPT2Config(vocab_size=GPT2_VOCAB, context_length=16, d_model=16, n_layers=2, n_heads=2,
                        dropout=0.1)
    data = torch.randint(0, GPT2_VOCAB, (600,), generator=torch.Generator().manual_seed(0))
    train_loader = create_dataloader(data[:500], batch_size=4, context_length=16, shuffle=False)
    val_loader = create_dataloader(data[500:], batch_size=2, context_length=16, shuffle=False, drop_last=False)
    histories = []
    for loop in ("train", "train_run"):
        set_seed(123)
        model = GPT2(config)
        optimizer = adamw(model, lr=1e-2, weight_decay=0.1)
        if loop == "train":
            history = train(model, train_loader, val_loader, optimizer, 2, eval_iters=3,
                            prompt="Justice is served when", verbose=False)
        else:
            history = train_run(model, train_loader, val_loader, optimizer, epochs=2, eval_iters=3,
                                sample_prompt="Justice is served when", **quiet())
        histories.append(history)
    a, b = histories
    assert len(a.step_loss) == 2 * len(train_loader) and len(a.samples) == 2
    assert a.step_loss == b.step_loss  # bit for bit, not approximately
    assert a.to_dict() == b.to_dict()


def test_nan_loss_stops_with_an_error_naming_step_and_value():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()

    def poison(info):  # after step 3, the weights become NaN: step 4's loss is NaN
        if info["step"] == 3:
            with torch.no_grad():
                model.ln_f.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4") as err:
        train_run(model, train_loader, val_loader, optimizer, epochs=3, callbacks=[poison], **quiet())
    assert err.value.step == 4 and math.isnan(err.value.value)


def test_history_records_evaluations_steps_and_lr():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    n = len(train_loader)
    history = train_run(model, train_loader, val_loader, optimizer, epochs=2, eval_every=3, eval_iters=2,
                        **quiet())
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
    history = train_run(model, train_loader, val_loader, optimizer, epochs=5,
                        callbacks=[lambda info: seen.append(info["step"]) or info["step"] == 4], **quiet())
    assert seen == [1, 2, 3, 4] and len(history.step_loss) == 4
    model, optimizer = fresh()
    assert len(train_run(model, train_loader, val_loader, optimizer, epochs=5, max_steps=7,
                         **quiet()).step_loss) == 7


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


def test_train_run_rejects_bad_arguments():
    model, optimizer = fresh()
    train_loader, val_loader = loaders()
    for kwargs, message in (({"epochs": 0}, "epochs must be"), ({"grad_clip": 0}, "grad_clip must be finite and > 0"),
                            ({"eval_every": 0}, "eval_every must be")):
        with pytest.raises(ValueError, match=message):
            train_run(model, train_loader, val_loader, optimizer, **quiet(**kwargs))
    with pytest.raises(TypeError, match="learning_rate"):
        train_run(model, train_loader, val_loader, optimizer, learning_rate=0.1, **quiet())


def test_end_of_epoch_sample_does_not_disturb_training():
    config = GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1)  # GPT-2's vocabulary
    data = torch.randint(0, 50257, (200,), generator=torch.Generator().manual_seed(0))
    train_loader = create_dataloader(data, batch_size=2, context_length=16, seed=1)
    runs = []
    for prompt in (None, "Justice is served when"):
        set_seed(0)
        model = GPT2(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        runs.append(train_run(model, train_loader, train_loader, optimizer, epochs=2, sample_prompt=prompt,
                              sample_tokens=3, **quiet()))
    assert runs[0].step_loss == runs[1].step_loss and runs[0].samples == []
    assert [s for s, _ in runs[1].samples] == [len(train_loader), 2 * len(train_loader)]
    assert all(text.startswith("Justice is served when") for _, text in runs[1].samples)


def test_backward_and_wrap_seams():
    """The seams later chapters use: a hand-written backward (ch06) and a model wrapper (ch11)."""
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
    plain = train_run(model, train_loader, val_loader, optimizer, **quiet())
    model, optimizer = fresh()
    seamed = train_run(model, train_loader, val_loader, optimizer, backward=counting_backward,
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
    optimizer = adamw(model, lr=1e-2)
    history = train_run(model, train_loader, val_loader, optimizer, grad_clip=0.5, **quiet())
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert history.step_loss[-1] < history.step_loss[0]
