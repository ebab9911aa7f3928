"""gpt2scratch.lora (chapter 09): LoRALinear, apply_lora / merge_lora, adapter files, and
equality with peft's LoRA on Hugging Face's GPT2LMHeadModel."""

import copy
import json
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from gpt2scratch.lora import (
    ADAPTER_FILE,
    CONFIG_FILE,
    LoRAEmbedding,
    LoRALinear,
    adapter_state,
    apply_lora,
    count_parameters,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
)
from gpt2scratch.model import GPT2, GPT2Config

CONFIG = GPT2Config.preset("tiny", context_length=32, dropout=0.0)


def tiny(seed=0):
    torch.manual_seed(seed)
    return GPT2(CONFIG).eval()


def randomize(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(std=0.05)
    return model


IDS = torch.randint(0, CONFIG.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))


def test_lora_linear_starts_as_the_base_and_freezes_it():
    base = nn.Linear(8, 12)
    layer = LoRALinear(base, rank=2, alpha=4)
    x = torch.randn(3, 8)
    assert torch.equal(layer(x), base(x))
    assert layer.scaling == 2.0
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    assert layer.lora_A.shape == (2, 8) and layer.lora_B.shape == (12, 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.floats(0.5, 32), st.integers(0, 1000))
def test_lora_linear_equals_w_plus_scaled_ba(rank, alpha, seed):
    torch.manual_seed(seed)
    base = nn.Linear(7, 5)
    layer = LoRALinear(base, rank=rank, alpha=alpha)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 7, dtype=torch.float64)
    layer.double()
    W = base.weight + (alpha / rank) * layer.lora_B @ layer.lora_A
    expected = x @ W.T + base.bias
    assert torch.allclose(layer(x), expected, atol=1e-10)
    layer.merge()
    assert torch.allclose(layer(x), expected, atol=1e-10)
    layer.unmerge()
    assert torch.allclose(layer(x), expected, atol=1e-10)


# LoRALinear's bad arguments, apply_lora's bad targets: tests/test_bad_inputs.py


def test_apply_lora_freezes_and_counts(capsys):
    model = tiny()
    before = model(IDS)
    apply_lora(model, rank=4, alpha=8)
    out = capsys.readouterr().out
    trainable, total = count_parameters(model)
    assert trainable == CONFIG.n_layers * 4 * (CONFIG.d_model + 3 * CONFIG.d_model)
    assert f"{trainable:,} trainable of {total:,}" in out
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {f"h.{i}.attn.c_attn.lora_{m}" for i in range(2) for m in "AB"}
    assert torch.equal(model(IDS), before)  # B = 0: the identity (applied twice: test_bad_inputs.py)


def test_apply_lora_targets():
    model = apply_lora(tiny(), targets=("attn.c_attn", "mlp.c_fc"), verbose=False)
    assert len(lora_layers(model)) == 4


def test_training_moves_only_the_adapters():
    model = apply_lora(tiny(), rank=2, verbose=False)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(IDS).logsumexp(-1).mean().backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(layer.lora_B.abs().sum() > 0 for layer in lora_layers(model).values())


def test_merge_unmerge_and_merge_lora_give_the_same_outputs():
    model = randomize(apply_lora(tiny(), rank=4, verbose=False))
    adapted = model(IDS)
    original = {n: p.clone() for n, p in model.named_parameters() if "base" in n}
    for layer in lora_layers(model).values():
        layer.merge()
    assert torch.allclose(model(IDS), adapted, atol=1e-5)
    for layer in lora_layers(model).values():
        layer.unmerge()
    assert torch.allclose(model(IDS), adapted, atol=1e-5)
    for n, p in model.named_parameters():
        if n in original:
            assert torch.allclose(p, original[n], atol=1e-6)
    merged = merge_lora(model)
    assert type(merged) is GPT2
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert set(merged.state_dict()) == set(tiny().state_dict())
    assert not hasattr(merged, "lora_config")
    assert torch.allclose(merged(IDS), adapted, atol=1e-5)
    assert all(p.requires_grad for p in merged.parameters())


def test_an_adapter_on_the_tied_head_is_read_by_the_embedding_too():
    """GPT-2's head and token embedding share one matrix W: an adapter on lm_head adapts
    W itself, so the adapted model equals a plain model holding W + (alpha / r) B A in
    both places, and merging keeps the two tied."""
    model = apply_lora(tiny(), rank=3, alpha=6, targets=("lm_head",), verbose=False)
    assert torch.equal(model(IDS), tiny()(IDS))  # B = 0: unchanged at the start
    assert isinstance(model.wte, LoRAEmbedding) and set(adapter_state(model)) == {
        "lm_head.lora_A", "lm_head.lora_B"}
    V, C = CONFIG.vocab_size, CONFIG.d_model
    assert count_parameters(model)[0] == 3 * (V + C)  # one adapter, counted once
    randomize(model)
    expected = tiny()
    with torch.no_grad():
        expected.wte.weight += model.lm_head.delta_weight()  # tied: the head sees it too
    adapted = model(IDS)
    assert torch.allclose(adapted, expected(IDS), atol=1e-5)
    emb = model.wte(IDS)
    merged = merge_lora(copy.deepcopy(model))
    assert type(merged.wte) is nn.Embedding and merged.lm_head.weight is merged.wte.weight
    assert torch.allclose(merged.wte(IDS), emb, atol=1e-6)
    assert torch.allclose(merged(IDS), adapted, atol=1e-5)


def test_the_tied_head_adapter_trains_saves_and_loads(tmp_path):
    model = apply_lora(tiny(), rank=2, targets=("attn.c_attn", "lm_head"), verbose=False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(IDS).logsumexp(-1).mean().backward()  # through the embedding and the head
        opt.step()
    assert model.lm_head.lora_B.abs().sum() > 0 and torch.equal(model.wte.base.weight, tiny().wte.weight)
    save_adapter(model, tmp_path / "ad")
    loaded = load_adapter(tiny(), tmp_path / "ad")
    assert isinstance(loaded.wte, LoRAEmbedding) and torch.equal(loaded(IDS), model(IDS))
    assert loaded.wte.weight is loaded.lm_head.base.weight  # the shared matrix, as before
    ids = loaded.generate(IDS[:1, :4], max_new_tokens=3, temperature=0)  # the cached path
    assert ids.shape == (1, 7) and torch.equal(ids[:, :4], IDS[:1, :4])


def test_an_untied_head_gets_a_plain_adapter():
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32, tie_weights=False))
    apply_lora(model, targets=("lm_head",), verbose=False)
    assert isinstance(model.lm_head, LoRALinear) and type(model.wte) is nn.Embedding


def test_save_and_load_adapter(tmp_path):
    model = randomize(apply_lora(tiny(), rank=3, alpha=6, verbose=False))
    save_adapter(model, tmp_path / "ad")
    config = json.loads((tmp_path / "ad" / CONFIG_FILE).read_text())
    assert config["rank"] == 3 and config["alpha"] == 6.0
    assert config["targets"] == ["attn.c_attn"] and config["base_config"]["d_model"] == 32
    assert not list((tmp_path / "ad").glob("*.tmp"))  # atomic writes left no temp file
    loaded = load_adapter(tiny(), tmp_path / "ad")
    assert torch.equal(loaded(IDS), model(IDS))
    assert set(adapter_state(loaded)) == set(adapter_state(model))
    # just the adapter: far smaller than the model
    size = (tmp_path / "ad" / ADAPTER_FILE).stat().st_size
    assert size < 0.05 * sum(p.numel() * 4 for p in tiny().parameters())


def test_an_adapter_that_does_not_fit_leaves_the_model_as_it_came(tmp_path):
    # the other adapter errors: tests/test_bad_inputs.py
    model = randomize(apply_lora(tiny(), verbose=False))
    save_adapter(model, tmp_path / "ad")
    bigger = GPT2(GPT2Config.preset("tiny", context_length=32, n_layers=3))
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(bigger, tmp_path / "ad")
    assert not lora_layers(bigger)  # left as it came


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5.24, inside peft
def test_logits_equal_peft_on_hf_gpt2():
    """Same A and B: our adapted GPT2 and peft's LoRA on GPT2LMHeadModel agree."""
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from gpt2scratch.bench_common import hf_twin

    torch.manual_seed(0)
    config = GPT2Config.preset("mini", context_length=64, dropout=0.0)
    base = GPT2(config).eval()
    ours = randomize(apply_lora(copy.deepcopy(base), rank=8, alpha=16, verbose=False))
    hf = hf_twin(base, attn_implementation="eager").eval()
    peft_model = get_peft_model(hf, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                               target_modules=["c_attn"],
                                               fan_in_fan_out=True))
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            theirs = peft_model.base_model.model.transformer.get_submodule(name)
            theirs.lora_A["default"].weight.copy_(layer.lora_A)
            theirs.lora_B["default"].weight.copy_(layer.lora_B)
        ids = torch.randint(0, config.vocab_size, (2, 64))
        adapted = ours(ids)
        assert (adapted - base(ids)).abs().max() > 1e-3  # the adapters do something
        assert (adapted - peft_model(ids).logits).abs().max() < 1e-5
        merged_hf = peft_model.merge_and_unload()
        merged = merge_lora(ours)
        assert (merged(ids) - merged_hf(ids).logits).abs().max() < 1e-5


# train_and_save: load, optionally add LoRA, train, save -- the one recipe of chapter 9 and the CLI

TEXT = "Every effort moves you closer to the end of the story, one word at a time. " * 40
QUICK = dict(model="tiny", context_length=16, batch_size=4, dropout=0.0, lr=1e-2, weight_decay=0.0,
             eval_iters=2, eval_every=4, max_steps=4, progress=False, verbose=False, seed=3)


@pytest.fixture
def base_dir(tmp_path):
    from gpt2scratch.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "base", GPT2(CONFIG))
    return tmp_path / "base"


def test_train_and_save_lora_saves_an_adapter_that_rebuilds_the_trained_model(base_dir, tmp_path):
    from gpt2scratch.checkpoint import load_checkpoint
    from gpt2scratch.lora import train_and_save
    from gpt2scratch.run import TrainSettings

    seen = []
    run, history = train_and_save(TrainSettings(**QUICK), str(base_dir), text=TEXT, rank=2, alpha=4,
                                  out=tmp_path / "ad", ready=lambda run: seen.append(run.model))
    assert seen == [run.model] and history.step[-1] == 4  # ready came before the steps
    assert count_parameters(run.model)[0] == sum(t.numel() for t in adapter_state(run.model).values())
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == [ADAPTER_FILE, CONFIG_FILE]
    base = load_checkpoint(base_dir).model
    rebuilt = load_adapter(copy.deepcopy(base), tmp_path / "ad").eval()
    assert torch.equal(rebuilt(IDS), run.model.eval()(IDS))
    assert not torch.equal(rebuilt(IDS), base.eval()(IDS))  # it trained


def test_train_and_save_lora_is_reproducible_in_a_fresh_process(base_dir, tmp_path):
    """A's random start comes from settings.seed: torch 2.13 seeds its generator at random
    in each new process, so an unseeded adapter trained differently every time."""
    code = ("import sys, torch; from gpt2scratch.lora import train_and_save; "
            "from gpt2scratch.run import TrainSettings; "
            f"torch.manual_seed(int(sys.argv[1])); "  # whatever happened before the call
            f"train_and_save(TrainSettings(**{QUICK!r}), {str(base_dir)!r}, text={TEXT!r}, rank=2, "
            "out=sys.argv[2])")
    for seed in (1, 2):
        subprocess.run([sys.executable, "-c", code, str(seed), str(tmp_path / f"ad{seed}")], check=True,
                       capture_output=True, timeout=120)
    first, second = (load_file(tmp_path / f"ad{seed}" / ADAPTER_FILE) for seed in (1, 2))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_train_and_save_without_lora_writes_checkpoints_that_resume(tmp_path):
    from gpt2scratch.checkpoint import load_checkpoint
    from gpt2scratch.lora import train_and_save
    from gpt2scratch.run import TrainSettings

    per_epoch = {**QUICK, "max_steps": None, "eval_every": None}
    settings = TrainSettings(**per_epoch, epochs=1)
    train_and_save(settings, text=TEXT, out=tmp_path / "run")  # a new tiny model
    assert load_checkpoint(tmp_path / "run").train_state["epoch"] == 1
    _, history = train_and_save(TrainSettings(**per_epoch, epochs=2), text=TEXT,
                                out=tmp_path / "run", resume=tmp_path / "run")
    assert load_checkpoint(tmp_path / "run").train_state["epoch"] == 2
    assert history.epoch[-1] == 2


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(base="b", resume="r"), ValueError, "pass one of them"),
    (dict(rank=2), ValueError, "LoRA (rank 2) adapts given weights: pass a base"),
    (dict(base=3), TypeError, "base must be a model, a folder or a name, got 3"),
])
def test_train_and_save_bad_input(kwargs, error, message):
    from gpt2scratch.lora import train_and_save
    from gpt2scratch.run import TrainSettings

    with pytest.raises(error, match=re.escape(message)):
        train_and_save(TrainSettings(**QUICK), text=TEXT, **kwargs)


def test_finetune_and_measure_reports_what_the_table_needs(base_dir, tmp_path):
    """Chapter 9's worker, in this process (the chapter runs it in a fresh one)."""
    from gpt2scratch.corpus import prepare_corpus
    from gpt2scratch.lora import finetune_and_measure

    (tmp_path / "docs").mkdir()
    for i in range(4):
        (tmp_path / "docs" / f"{i}.txt").write_text(TEXT, encoding="utf-8")
    corpus = prepare_corpus(tmp_path / "docs", cache_dir=tmp_path / "cache", progress=False)
    common = dict(lr=1e-2, steps=4, eval_every=2, batch_size=2, context_length=16, eval_batches=2,
                  prompt="Every")
    lora = finetune_and_measure(str(base_dir), str(corpus.folder), rank=2, save_to=str(tmp_path / "ad"),
                                **common)
    full = finetune_and_measure(str(base_dir), str(corpus.folder), rank=None, **common)
    assert full["trainable"] == full["total"] > 100 * lora["trainable"] > 0
    for r in (lora, full):
        assert r["eval_steps"] == [0, 2, 4] and len(r["val"]) == 3 and r["peak_mb"] > 0
        assert r["val_before"] == r["val"][0] and r["val_after"] == r["val"][-1]
        assert r["val_best"] == min(r["val"]) == r["val"][r["eval_steps"].index(r["best_step"])]
        assert r["val_after"] < r["val_before"]
        assert r["sample_before"].startswith("Every") and r["sample_after"].startswith("Every")
    assert lora["sample_before"] == full["sample_before"]  # the same base, greedy
    assert lora["val_before"] == full["val_before"]  # the same batches
    assert (tmp_path / "ad" / ADAPTER_FILE).is_file()


def test_finetune_and_measure_on_a_text_splits_it_as_chapter_5_and_loops_over_it(base_dir):
    """One text (The Verdict in chapter 9): chapter 5's 90/10 split, as many passes over the
    training batches as the steps need, and the same validation loss as chapter 5's loaders."""
    from gpt2scratch.checkpoint import load_checkpoint
    from gpt2scratch.lora import finetune_and_measure
    from gpt2scratch.tokenizer import gpt2_encoding
    from gpt2scratch.run import make_loaders
    from gpt2scratch.train import evaluate

    loaders = make_loaders(TEXT, gpt2_encoding(), context_length=16, batch_size=2, seed=123)
    steps = 2 * len(loaders[0]) + 2  # more than two passes
    r = finetune_and_measure(str(base_dir), text=TEXT, rank=2, lr=1e-2, steps=steps,
                             batch_size=2, context_length=16, eval_batches=None, prompt="Every")
    assert r["eval_steps"] == [0, steps] and r["val_after"] < r["val_before"]
    base = load_checkpoint(base_dir).model
    assert r["val_before"] == pytest.approx(evaluate(base, loaders[1]), abs=1e-6)


def test_finetune_and_measure_keeps_frozen_parameters_out_of_the_update(base_dir):
    """Full fine-tuning with the tied embedding (and so the head) frozen: section 9.7's
    question of how much of full fine-tuning's gain the embedding holds."""
    from gpt2scratch.checkpoint import load_checkpoint
    from gpt2scratch.lora import finetune_and_measure

    base = load_checkpoint(base_dir).model
    common = dict(text=TEXT, rank=None, lr=1e-2, steps=4, batch_size=2, context_length=16,
                  eval_batches=None, prompt="Every")
    full = finetune_and_measure(str(base_dir), **common)
    frozen = finetune_and_measure(str(base_dir), frozen=["wte.weight"], **common)
    assert full["trainable"] == full["total"] == frozen["total"]
    assert frozen["trainable"] == full["total"] - base.wte.weight.numel()
    assert frozen["val_before"] == full["val_before"] and frozen["val_after"] < frozen["val_before"]
    assert frozen["val_after"] != full["val_after"]  # a different run, from the same start


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "pass exactly one of corpus_dir and text, got neither"),
    (dict(corpus_dir="c", text="t"), "pass exactly one of corpus_dir and text, got corpus_dir 'c'"),
    (dict(text=TEXT, steps=5, eval_every=2), "steps 5 is not a multiple of eval_every 2"),
    (dict(text=TEXT, steps=0), "steps must be"),
    (dict(text=TEXT, frozen=["wte.weight"]), "frozen ['wte.weight'] is for full fine-tuning: LoRA (rank 2)"),
    (dict(text=TEXT, rank=None, frozen=["wte"], context_length=16), "freeze names 'wte', not a parameter of the model"),
])
def test_finetune_and_measure_bad_input(base_dir, kwargs, message):
    from gpt2scratch.lora import finetune_and_measure

    kwargs = dict(dict(rank=2, lr=1e-2, steps=4), **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        finetune_and_measure(str(base_dir), **kwargs)


def test_cli_lora_run_saves_the_adapter_and_where_the_base_came_from(tmp_path, capsys):
    from cli_run import run_main

    from gpt2scratch.pretrained import save_pretrained

    save_pretrained(GPT2(CONFIG), tmp_path / "hf")
    (tmp_path / "story.txt").write_text(TEXT, encoding="utf-8")
    code, out, err = run_main(["train", "--data", str(tmp_path / "story.txt"), "--init", str(tmp_path / "hf"),
                               "--lora-rank", "2", "--context-length", "16", "--batch-size", "4",
                               "--epochs", "1", "--eval-iters", "1", "--no-progress", "--prompt", "",
                               "--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert "LoRA rank 2 on 2 layers" in out and "LoRA adapter:" in out and "initialised from" in out
    assert {p.name for p in (tmp_path / "run").iterdir()} == {ADAPTER_FILE, CONFIG_FILE, "init.json"}
    assert json.loads((tmp_path / "run" / "init.json").read_text())["init"] == str(tmp_path / "hf")


def test_cli_lora_targets_choose_the_adapted_layers(tmp_path, capsys):
    """--lora-targets reaches apply_lora: chapter 9's best set (every block linear and the tied
    head) is what the saved adapter holds; an unknown layer is one clear line and exit 2."""
    from cli_run import run_main

    from gpt2scratch.lora import load_adapter
    from gpt2scratch.pretrained import save_pretrained

    save_pretrained(GPT2(CONFIG), tmp_path / "hf")
    (tmp_path / "story.txt").write_text(TEXT, encoding="utf-8")
    targets = "attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj,lm_head"
    argv = ["train", "--data", str(tmp_path / "story.txt"), "--init", str(tmp_path / "hf"),
            "--lora-rank", "2", "--context-length", "16", "--batch-size", "4", "--epochs", "1",
            "--eval-iters", "1", "--no-progress", "--prompt", "", "--device", "cpu"]
    code, out, err = run_main([*argv, "--lora-targets", targets, "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert f"LoRA rank 2 on {4 * CONFIG.n_layers + 1} layers ({targets.replace(',', ', ')})" in out
    config = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert config["targets"] == targets.split(",")
    adapted = load_adapter(GPT2(CONFIG), tmp_path / "run")
    assert sum(isinstance(m, LoRALinear) for m in adapted.modules()) == 4 * CONFIG.n_layers + 1
    code, out, err = run_main([*argv, "--lora-targets", "attn.q_proj", "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "attn.q_proj" in err and len(err.strip().splitlines()) == 1, err
