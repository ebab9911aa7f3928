"""Tests for gpt2scratch.model (chapter 4): config, building blocks, GPT2, generate."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.model import (
    GELU, GPT2, HF_NAMES, MLP, PRESETS, Block, GPT2Config, LayerNorm,
)
from conftest import CharTokenizer, tiny_config

TINY = tiny_config()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GPT2(TINY).eval()


def naive_greedy(model, idx, n):
    for _ in range(n):
        with torch.no_grad():
            logits = model(idx[:, -model.config.context_length:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


# --------------------------------------------------------------------------- config
def test_default_config_is_gpt2_small():
    c = GPT2Config()
    assert (c.vocab_size, c.context_length, c.d_model, c.n_layers, c.n_heads) == (50257, 1024, 768, 12, 12)
    assert GPT2Config.preset("124M") == GPT2Config.preset("gpt2") == c


@pytest.mark.parametrize("hf, ours", [("gpt2-medium", "355M"), ("gpt2-large", "774M"), ("gpt2-xl", "1558M")])
def test_hf_preset_names(hf, ours):
    assert GPT2Config.preset(hf) == GPT2Config.preset(ours)


def test_preset_overrides_and_unknown():
    c = GPT2Config.preset("355M", context_length=128, dropout=0.0)
    assert (c.d_model, c.n_layers, c.n_heads, c.context_length, c.dropout) == (1024, 24, 16, 128, 0.0)
    # an unknown name: tests/test_bad_inputs.py
    with pytest.raises(TypeError, match="preset name must be a str, got int 124"):
        GPT2Config.preset(124)


def test_one_table_holds_every_size():
    assert list(PRESETS) == ["tiny", "mini", "124M", "355M", "774M", "1558M"]
    assert set(HF_NAMES.values()) <= set(PRESETS)
    for name, (d_model, n_layers, n_heads) in PRESETS.items():
        c = GPT2Config.preset(name)
        assert (c.d_model, c.n_layers, c.n_heads) == (d_model, n_layers, n_heads)
    assert GPT2Config.preset("tiny", context_length=64).context_length == 64
    assert (GPT2Config.preset("tiny").d_model, GPT2Config.preset("mini").d_model) == (32, 128)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(d_model=768, n_heads=10), ValueError, "d_model=768, n_heads=10"),
    (dict(n_layers=0), ValueError, "n_layers must be >= 1, got 0"),
    (dict(vocab_size=-5), ValueError, "got -5"),
    (dict(d_model=768.0), TypeError, "d_model must be an int, got float 768.0"),
    (dict(n_heads=True), TypeError, "n_heads"),
    (dict(dropout=1.0), ValueError, r"dropout must be finite and >= 0 and < 1, got 1.0"),
    (dict(dropout=-0.1), ValueError, "got -0.1"),
    (dict(dropout=float("nan")), ValueError, "got nan"),
    (dict(dropout="0.1"), TypeError, "dropout must be a number, got str '0.1'"),
    (dict(tie_weights=1), TypeError, "tie_weights must be True or False, got int 1"),
    (dict(qkv_bias="yes"), TypeError, "qkv_bias must be True or False"),
])
def test_config_validation(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        GPT2Config(**kwargs)


def test_config_dict_round_trip_and_frozen():
    c = GPT2Config.preset("774M", dropout=0.0, tie_weights=False)
    assert GPT2Config.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown GPT2Config keys \\['n_embd'\\]"):
        GPT2Config.from_dict({**c.to_dict(), "n_embd": 1280})
    with pytest.raises(Exception):
        c.d_model = 1  # frozen


# --------------------------------------------------------------------------- building blocks
def test_layernorm_matches_torch_values_and_grads():
    torch.manual_seed(0)
    ours, ref = LayerNorm(48), nn.LayerNorm(48)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
        ref.weight.copy_(ours.weight), ref.bias.copy_(ours.bias)
    x = (torch.randn(3, 5, 48) * 4 + 2).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    torch.testing.assert_close(ours(x), ref(x2))
    ours(x).pow(2).sum().backward()
    ref(x2).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


def test_layernorm_normalizes_each_vector():
    torch.manual_seed(0)
    y = LayerNorm(64)(torch.randn(4, 64) * 10 - 3).detach()
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_gelu_is_the_tanh_formula():
    x = torch.linspace(-6, 6, 2001)
    formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), formula)
    torch.testing.assert_close(GELU()(x), F.gelu(x, approximate="tanh"))
    assert not torch.allclose(GELU()(x), F.gelu(x), atol=1e-5)  # the exact erf GELU is different


def test_mlp_and_block_shapes_and_param_counts():
    C = 32
    assert sum(p.numel() for p in MLP(C).parameters()) == 8 * C * C + 5 * C
    block = Block(TINY)
    assert sum(p.numel() for p in block.parameters()) == 12 * C * C + 13 * C
    x = torch.randn(2, 7, C)
    assert block(x).shape == (2, 7, C)


# --------------------------------------------------------------------------- GPT2
PUBLISHED = {"124M": 124_439_808, "355M": 354_823_168, "774M": 774_030_080, "1558M": 1_557_611_200}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_param_counts_of_presets_meta_device(name):
    with torch.device("meta"):
        tied = GPT2(GPT2Config.preset(name))
        untied = GPT2(GPT2Config.preset(name, tie_weights=False))
    assert tied.num_params() == PUBLISHED[name]
    assert untied.num_params() == PUBLISHED[name] + 50257 * tied.config.d_model
    assert tied.num_params(non_embedding=True) == PUBLISHED[name] - (50257 + 1024) * tied.config.d_model


def test_untied_124m_is_163m():
    with torch.device("meta"):
        assert GPT2(GPT2Config(tie_weights=False)).num_params() == 163_037_184


def test_tied_weights_share_storage(tiny):
    assert tiny.lm_head.weight is tiny.wte.weight
    untied = GPT2(tiny_config(tie_weights=False))
    assert untied.lm_head.weight is not untied.wte.weight


def test_hf_attribute_names(tiny):
    names = set(dict(tiny.named_parameters()))
    for expected in ("wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias",
                     "h.0.attn.c_proj.weight", "h.0.ln_2.bias", "h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.bias",
                     "ln_f.weight", "ln_f.bias"):
        assert expected in names
    assert tiny.h[0].attn.c_attn.weight.shape == (3 * 32, 32)  # nn.Linear: (out, in)


def test_gpt2_init_statistics():
    torch.manual_seed(0)
    m = GPT2(GPT2Config(vocab_size=1000, context_length=64, d_model=256, n_layers=8, n_heads=8))
    resid_std = torch.cat([b.attn.c_proj.weight.flatten() for b in m.h] + [b.mlp.c_proj.weight.flatten() for b in m.h]).std()
    other_std = torch.cat([b.mlp.c_fc.weight.flatten() for b in m.h] + [m.wte.weight.flatten()]).std()
    assert abs(resid_std.item() - 0.02 / math.sqrt(16)) < 2e-4
    assert abs(other_std.item() - 0.02) < 2e-4
    assert all(b.mlp.c_fc.bias.abs().sum() == 0 for b in m.h)
    assert torch.equal(m.ln_f.weight, torch.ones(256))


def test_forward_shape_and_uniform_loss_at_init(tiny):
    torch.manual_seed(0)
    idx = torch.randint(0, 97, (3, 16))
    logits = tiny(idx)
    assert logits.shape == (3, 16, 97)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten())
    assert abs(loss.item() - math.log(97)) < 0.2  # near-uniform predictions at init


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(0, 14))
def test_causality_future_tokens_never_change_past_logits(tiny, seed, t):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 97, (2, 16), generator=g)
    changed = idx.clone()
    changed[:, t + 1:] = torch.randint(0, 97, (2, 15 - t), generator=g)
    with torch.no_grad():
        a, b = tiny(idx), tiny(changed)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    m = GPT2(tiny_config(dropout=0.5))
    idx = torch.randint(0, 97, (2, 8))
    m.train()
    assert not torch.equal(m(idx), m(idx))
    m.eval()
    assert torch.equal(m(idx), m(idx))


def test_forward_errors(tiny):
    # too long, float ids: tests/test_bad_inputs.py
    with pytest.raises(TypeError, match="got list"):
        tiny([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"\(batch, seq_len\).*\(4,\)"):
        tiny(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="GPT2Config"):
        GPT2({"d_model": 32})


def test_matches_huggingface_gpt2():
    """Same weights (copied, Conv1D transposed) -> same logits and same gradients as HF's GPT2LMHeadModel."""
    pytest.importorskip("transformers")
    from gpt2scratch.bench_common import hf_twin

    torch.manual_seed(0)
    ours = GPT2(TINY)
    hf = hf_twin(ours, attn_implementation="eager")  # HF's plain attention, independent of SDPA
    idx = torch.randint(0, 97, (2, 16))
    logits_ours, logits_hf = ours(idx), hf(input_ids=idx).logits
    torch.testing.assert_close(logits_ours, logits_hf, rtol=1e-4, atol=1e-5)
    logits_ours.square().mean().backward()
    logits_hf.square().mean().backward()
    torch.testing.assert_close(ours.h[0].attn.c_attn.weight.grad, hf.transformer.h[0].attn.c_attn.weight.grad.t(),
                               rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(ours.wte.weight.grad, hf.transformer.wte.weight.grad, rtol=1e-3, atol=1e-6)


# --------------------------------------------------------------------------- generate
def test_greedy_generate_is_deterministic_and_equals_naive_loop(tiny):
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = tiny.generate(idx, max_new_tokens=10, temperature=0)
    assert out.shape == (2, 13) and torch.equal(out[:, :3], idx)
    assert torch.equal(out, tiny.generate(idx, 10, temperature=0))
    assert torch.equal(out, naive_greedy(tiny, idx, 10))


def test_generate_zero_new_tokens_returns_input(tiny):
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(tiny.generate(idx, 0), idx)


def test_long_prompt_is_cropped_to_context(tiny):
    torch.manual_seed(1)
    idx = torch.randint(0, 97, (1, 40))  # context_length is 16
    out = tiny.generate(idx, 5, temperature=0)
    assert out.shape == (1, 45) and torch.equal(out[:, :40], idx)
    # the model saw only the last 16 tokens: the same continuation as from those alone
    assert torch.equal(out[:, 40:], tiny.generate(idx[:, -16:], 5, temperature=0)[:, 16:])


def test_text_level_generate_returns_prompt_plus_continuation(tiny):
    tok = CharTokenizer()
    text = tiny.generate("Hello", max_length=8, temperature=0, tokenizer=tok)
    assert isinstance(text, str) and text.startswith("Hello")
    ids = naive_greedy(tiny, torch.tensor([tok.encode("Hello")]), 8)[0, 5:].tolist()
    expected = ids[: ids.index(96)] if 96 in ids else ids
    assert text == "Hello" + tok.decode(expected)
    long_prompt = "x" * 50  # longer than the 16-token context
    long_text = tiny.generate(long_prompt, max_length=3, temperature=0, tokenizer=tok)
    assert long_text.startswith(long_prompt) and len(long_text) <= 53


def test_text_level_default_tokenizer_gpt2():
    torch.manual_seed(0)
    model = GPT2(GPT2Config(context_length=32, d_model=16, n_layers=1, n_heads=2))
    text = model.generate("Justice is served when", max_length=5, temperature=0.8, seed=1)
    assert isinstance(text, str) and text.startswith("Justice is served when")
    assert text == model.generate("Justice is served when", max_length=5, temperature=0.8, seed=1)


def test_eos_stops_generation(tiny):
    tok = CharTokenizer()
    idx = torch.tensor([tok.encode("abc")])
    first = tiny.generate(idx, 1, temperature=0)[0, -1].item()
    out = tiny.generate(idx, 10, temperature=0, eos_id=first)  # the first new token is "eos": stop
    assert out.shape == (1, 4)
    tok.eot_token = first
    assert tiny.generate("abc", max_length=10, temperature=0, tokenizer=tok) == "abc"  # eos not included


def test_eos_pads_finished_rows(tiny):
    idx = torch.tensor([[1, 2, 3], [7, 8, 9]])
    greedy = tiny.generate(idx, 6, temperature=0)
    eos = greedy[0, 3].item()  # row 0 emits it at once
    out = tiny.generate(idx, 6, temperature=0, eos_id=eos)
    assert (out[0, 3:] == eos).all()
    row1 = greedy[1, 3:].tolist()
    stop = row1.index(eos) + 1 if eos in row1 else 6
    assert torch.equal(out[1, 3:3 + stop], greedy[1, 3:3 + stop])


def test_sampling_is_reproducible_with_seed_or_generator(tiny):
    idx = torch.tensor([[5, 6, 7]])
    a = tiny.generate(idx, 12, temperature=1.5, seed=3)
    assert torch.equal(a, tiny.generate(idx, 12, temperature=1.5, seed=3))
    assert torch.equal(a, tiny.generate(idx, 12, temperature=1.5, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, tiny.generate(idx, 12, temperature=1.5, seed=4))


def test_top_k_1_is_greedy(tiny):
    idx = torch.tensor([[5, 6, 7]])
    assert torch.equal(tiny.generate(idx, 8, temperature=1.0, top_k=1, seed=0), tiny.generate(idx, 8, temperature=0))


def test_top_k_restricts_tokens(tiny):
    idx = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        allowed = set(tiny(idx)[0, -1].topk(3).indices.tolist())
    for seed in range(20):
        assert tiny.generate(idx, 1, temperature=2.0, top_k=3, seed=seed)[0, -1].item() in allowed


def test_generate_restores_training_mode():
    torch.manual_seed(0)
    m = GPT2(tiny_config(dropout=0.5))
    m.train()
    out = m.generate(torch.tensor([[1, 2]]), 5, temperature=0)
    assert m.training
    m.eval()
    assert torch.equal(out, m.generate(torch.tensor([[1, 2]]), 5, temperature=0))  # dropout was off
    assert not m.training


# generate's bad arguments (sampling flags, lengths, prompts): tests/test_bad_inputs.py


def test_generate_signature_and_brief_call():
    """generate stays a method of GPT2 that forwards its keywords to chapter 8 without naming
    them (a new sampling setting changes nothing in chapter 4); the brief's call works."""
    import inspect

    params = inspect.signature(GPT2.generate).parameters
    assert list(params) == ["self", "prompt", "max_new_tokens", "options"]
    assert params["options"].kind is inspect.Parameter.VAR_KEYWORD
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32))
    text = model.generate("Justice is served when", max_length=100, temperature=0.8)
    assert isinstance(text, str) and text.startswith("Justice is served when")

