"""Tests for gpt2scratch.attention (chapter 03).

The reference below recomputes attention the naive way with einsum and an explicit -inf mask,
from the module's own c_attn / c_proj weights, so the fused module is checked against the definition
softmax(q k^T / sqrt(hd) + causal mask) v, not against itself.
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.attention import CausalSelfAttention, merge_heads, split_heads


def reference(module: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Naive causal multi-head attention from the module's weights (no dropout)."""
    B, T, C = x.shape
    H = module.n_heads
    hd = C // H
    qkv = torch.einsum("btc,oc->bto", x, module.c_attn.weight)            # (B, T, 3C)
    if module.c_attn.bias is not None:
        qkv = qkv + module.c_attn.bias
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, H, hd) for i in range(3))  # (B, T, H, hd)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(hd)        # (B, H, T, T)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    y = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(B, T, C)      # heads concatenated
    return torch.einsum("btc,oc->bto", y, module.c_proj.weight) + module.c_proj.bias


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 9), n_heads=st.integers(1, 4), head_dim=st.integers(1, 8),
       qkv_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_equals_naive_reference(B, T, n_heads, head_dim, qkv_bias, seed):
    torch.manual_seed(seed)
    d_model = n_heads * head_dim
    module = CausalSelfAttention(d_model, n_heads, dropout=0.0, qkv_bias=qkv_bias).eval()
    x = torch.randn(B, T, d_model)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(module, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("B,T,d_model,n_heads", [(1, 1, 768, 12), (2, 1, 16, 1), (2, 17, 16, 1), (2, 33, 768, 12)])
def test_fused_equals_naive_reference_named_shapes(B, T, d_model, n_heads):
    torch.manual_seed(0)
    module = CausalSelfAttention(d_model, n_heads).eval()
    x = torch.randn(B, T, d_model)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(module, x), atol=1e-5, rtol=0)


def test_single_token_output_is_projection_of_its_value():
    """With T=1 the only allowed key is the token itself: weight 1, output = c_proj(v)."""
    torch.manual_seed(0)
    module = CausalSelfAttention(32, 4).eval()
    x = torch.randn(3, 1, 32)
    with torch.no_grad():
        v = module.c_attn(x)[..., 64:]                                     # (3, 1, 32)
        torch.testing.assert_close(module(x), module.c_proj(v), atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 10), n_heads=st.sampled_from([1, 2, 4]), seed=st.integers(0, 2**16), data=st.data())
def test_causality_future_tokens_never_change_the_past(T, n_heads, seed, data):
    t = data.draw(st.integers(0, T - 2), label="last position kept")
    torch.manual_seed(seed)
    module = CausalSelfAttention(16, n_heads).eval()
    x = torch.randn(2, T, 16)
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, T - t - 1, 16) * 10                    # rewrite the whole future
    with torch.no_grad():
        y, y2 = module(x), module(x2)
    torch.testing.assert_close(y[:, :t + 1], y2[:, :t + 1], atol=1e-6, rtol=0)
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])               # the future positions did change


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    module = CausalSelfAttention(32, 4, dropout=0.5)
    x = torch.randn(2, 8, 32)
    module.eval()
    with torch.no_grad():
        y_eval = module(x)
        torch.testing.assert_close(module(x), y_eval, atol=0, rtol=0)     # deterministic
        torch.testing.assert_close(y_eval, reference(module, x), atol=1e-5, rtol=0)
        module.train()
        y_train1, y_train2 = module(x), module(x)
    assert not torch.allclose(y_train1, y_eval, atol=1e-3)
    assert not torch.allclose(y_train1, y_train2, atol=1e-3)


def test_attention_dropout_is_applied_inside_attention():
    """resid_dropout off, attention dropout on: train output differs, but averages to the eval output."""
    torch.manual_seed(0)
    module = CausalSelfAttention(16, 2, dropout=0.3)
    module.resid_dropout.p = 0.0
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        y_eval = module.eval()(x)                                          # (1, 6, 16)
        module.train()
        samples = module(x.expand(20_000, 6, 16))                          # 20,000 independent dropout draws
    assert not torch.allclose(samples[:1], y_eval, atol=1e-3)
    # dropout rescales survivors by 1/(1-p), so the mean over many draws approaches the eval output
    torch.testing.assert_close(samples.mean(0, keepdim=True), y_eval, atol=0.02, rtol=0)


def test_dropout_zero_train_equals_eval():
    torch.manual_seed(0)
    module = CausalSelfAttention(32, 4, dropout=0.0)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(module.train()(x), module.eval()(x), atol=0, rtol=0)


@pytest.mark.parametrize("d_model,n_heads", [(768, 10), (10, 3), (7, 2)])
def test_indivisible_heads_raise_value_error_naming_both(d_model, n_heads):
    with pytest.raises(ValueError) as err:
        CausalSelfAttention(d_model, n_heads)
    assert f"d_model={d_model}" in str(err.value) and f"n_heads={n_heads}" in str(err.value)


@pytest.mark.parametrize("kwargs", [dict(d_model=0, n_heads=1), dict(d_model=8, n_heads=0),
                                    dict(d_model=8, n_heads=2, dropout=-0.1), dict(d_model=8, n_heads=2, dropout=1.5),
                                    dict(d_model=8, n_heads=2, dropout=float("nan"))])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        CausalSelfAttention(**kwargs)


def test_bad_input_shapes_raise_before_torch():
    module = CausalSelfAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(2, 3, 4\)"):
        module(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        module(torch.randn(3, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        module([[0.0] * 8])


def test_layout_matches_contract():
    module = CausalSelfAttention(768, 12, qkv_bias=True)
    assert tuple(module.c_attn.weight.shape) == (2304, 768) and tuple(module.c_attn.bias.shape) == (2304,)
    assert tuple(module.c_proj.weight.shape) == (768, 768) and module.c_proj.bias is not None
    assert isinstance(module.resid_dropout, torch.nn.Dropout)
    assert CausalSelfAttention(768, 12, qkv_bias=False).c_attn.bias is None
    assert sorted(module.state_dict()) == ["c_attn.bias", "c_attn.weight", "c_proj.bias", "c_proj.weight"]


def test_qkv_layout_q_then_k_then_v_heads_contiguous():
    """Only head 1's value slice is nonzero -> only c_proj columns of head 1 see anything."""
    torch.manual_seed(0)
    C, H, hd = 12, 3, 4
    module = CausalSelfAttention(C, H).eval()
    with torch.no_grad():
        module.c_attn.weight.zero_()
        module.c_attn.bias.zero_()
        module.c_attn.weight[2 * C + hd:2 * C + 2 * hd] = torch.randn(hd, C)   # v block, head 1
        module.c_proj.weight.copy_(torch.eye(C))
        module.c_proj.bias.zero_()
        x = torch.randn(1, 5, C)
        y = module(x)
    assert y[..., :hd].abs().max() == 0 and y[..., 2 * hd:].abs().max() == 0
    # with q = k = 0 all allowed weights are equal: head 1 averages its values over the prefix
    v = x @ module.c_attn.weight[2 * C + hd:2 * C + 2 * hd].T                    # (1, 5, hd)
    prefix_mean = v.cumsum(1) / torch.arange(1, 6).view(1, 5, 1)
    torch.testing.assert_close(y[..., hd:2 * hd], prefix_mean, atol=1e-6, rtol=0)


def test_gradients_flow_to_every_parameter_and_the_input():
    torch.manual_seed(0)
    module = CausalSelfAttention(32, 4, dropout=0.1).train()
    x = torch.randn(2, 7, 32, requires_grad=True)
    module(x).pow(2).sum().backward()
    for name, p in list(module.named_parameters()) + [("x", x)]:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradients_match_naive_reference():
    torch.manual_seed(0)
    module = CausalSelfAttention(24, 3).eval()
    x = torch.randn(2, 6, 24)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    module(x1).pow(2).sum().backward()
    fused_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    reference(module, x2).pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    for g, p in zip(fused_grads, module.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)


def test_attention_weights_are_causal_normalised_and_consistent_with_forward():
    torch.manual_seed(0)
    module = CausalSelfAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        w = module.attention_weights(x)                                    # (B, H, T, T)
        assert tuple(w.shape) == (2, 4, 9, 9)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 9), atol=1e-6, rtol=0)
        assert (w[..., torch.ones(9, 9, dtype=torch.bool).triu(1)] == 0).all()
        v = module.c_attn(x)[..., 64:].view(2, 9, 4, 8).transpose(1, 2)   # (B, H, T, hd)
        y = module.c_proj((w @ v).transpose(1, 2).reshape(2, 9, 32))
        torch.testing.assert_close(y, module(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs,name", [(dict(d_model=768.0, n_heads=12), "d_model"),
                                         (dict(d_model=768, n_heads=True), "n_heads"),
                                         (dict(d_model=8, n_heads=2, dropout="0.1"), "dropout"),
                                         (dict(d_model=8, n_heads=2, qkv_bias=1), "qkv_bias")])
def test_wrong_types_raise_type_error_naming_the_argument(kwargs, name):
    """One error contract: a wrong type is a TypeError (bools are not ints), naming the argument."""
    with pytest.raises(TypeError, match=name):
        CausalSelfAttention(**kwargs)


def test_split_heads_gives_each_head_its_own_columns_and_merge_heads_inverts_it():
    torch.manual_seed(0)
    t = torch.randn(2, 5, 12)                                              # (B, T, C), 3 heads of 4
    heads = split_heads(t, 3)                                              # (B, H, T, hd)
    assert tuple(heads.shape) == (2, 3, 5, 4)
    for h in range(3):
        assert torch.equal(heads[:, h], t[..., 4 * h:4 * (h + 1)])         # head h = features 4h..4h+3
    assert torch.equal(merge_heads(heads), t)
