"""gpt2scratch.lora (chapter 09): LoRALinear, apply_lora / merge_lora, adapter files, and
equality with peft's LoRA on Hugging Face's GPT2LMHeadModel."""

import copy
import json

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.lora import (
    ADAPTER_FILE,
    CONFIG_FILE,
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

    from gpt2scratch.bench import hf_twin

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
