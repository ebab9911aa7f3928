"""Tests for gpt2scratch.run (Appendix A.9): TrainSettings, the loaders and prepare_run."""
import pytest
import torch

from gpt2scratch.data import verdict_text
from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2
from gpt2scratch.run import RECIPE, TrainSettings, make_loaders, prepare_run, split_text
from gpt2scratch.tokenizer import gpt2_encoding
from conftest import CharTokenizer, tiny_config


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


def test_make_loaders_is_chapter_5s_split_and_loaders():
    """Chapter 5 cuts The Verdict at 90% of its characters and calls create_dataloader itself."""
    text, tokenizer = verdict_text(), gpt2_encoding()
    train_loader, val_loader = make_loaders(text, tokenizer, context_length=256, batch_size=2, seed=123)
    cut = int(0.9 * len(text))
    by_hand = (create_dataloader(tokenizer.encode(text[:cut]), batch_size=2, context_length=256, shuffle=True,
                                 drop_last=True, seed=123),
               create_dataloader(tokenizer.encode(text[cut:]), batch_size=2, context_length=256, shuffle=False,
                                 drop_last=False))
    for ours, theirs in zip((train_loader, val_loader), by_hand):
        assert [x.tolist() for x, _ in ours] == [x.tolist() for x, _ in theirs]


def test_settings_validate_and_recipe():
    assert RECIPE.schedule == "cosine" and RECIPE.grad_clip == 1.0 and RECIPE.epochs == 10
    assert TrainSettings().grad_clip is None  # chapter 5's plain loop
    assert not RECIPE.decay_all  # chapter 5's rule: decay the matrices and embeddings only
    for kwargs, error, message in (({"epochs": True}, TypeError, "epochs must be an int"),
                                   ({"lr": 0}, ValueError, "lr must be finite and > 0"),
                                   ({"decay_all": 1}, TypeError, "decay_all must be True or False"),
                                   ({"schedule": "linear"}, ValueError, "'linear'")):
        with pytest.raises(error, match=message):
            TrainSettings(**kwargs)


def test_prepare_run_builds_everything_from_settings():
    settings = TrainSettings(model="tiny", context_length=32, epochs=2, schedule="cosine")
    run = prepare_run(settings, "The quick brown fox jumps. " * 60, device="cpu")
    assert run.config.d_model == 32 and run.config.context_length == 32
    assert run.scheduler is not None and len(run.train_loader) >= 1
    assert [g["weight_decay"] for g in run.optimizer.param_groups] == [0.1, 0.0]
    every = prepare_run(TrainSettings(model="tiny", context_length=32, decay_all=True),
                        "The quick brown fox jumps. " * 60, device="cpu")
    assert [g["weight_decay"] for g in every.optimizer.param_groups] == [0.1]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        prepare_run(TrainSettings(model="huge"), "x" * 3000, device="cpu")
    with pytest.raises(ValueError, match="needs a text or loaders"):
        prepare_run(settings, device="cpu")


def test_prepare_run_with_a_model_trains_only_what_requires_grad():
    """The seam of chapters 7 and 9: given weights, frozen ones stay out of AdamW."""
    model = GPT2(tiny_config(vocab_size=50257, context_length=32))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("h.1."))
    run = prepare_run(TrainSettings(context_length=16), "The quick brown fox jumps. " * 60, model=model,
                      device="cpu")
    assert run.model is model and run.config is model.config
    in_adamw = {id(p) for g in run.optimizer.param_groups for p in g["params"]}
    assert in_adamw == {id(p) for p in model.parameters() if p.requires_grad}
    assert next(iter(run.train_loader))[0].shape[1] == 16  # the settings' window, within the model's
    with pytest.raises(ValueError, match="context_length 64 is longer than the model's context of 32"):
        prepare_run(TrainSettings(context_length=64), "x" * 3000, model=model, device="cpu")
    assert torch.equal(next(model.parameters()), next(model.parameters()))
