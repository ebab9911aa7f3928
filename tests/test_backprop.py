"""Tests for gpt2scratch.backprop: each hand-written backward against torch.autograd (float64),
the whole model (tied, untied, dropout), AdamW, and `train --backward manual`."""
import copy
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.__main__ import main
from gpt2scratch.attention import merge_heads, split_heads
from gpt2scratch.backprop import (
    AdamW, attention_backward, attention_forward, cross_entropy_backward_, dropout_, dropout_mask,
    embedding_backward, gelu_backward, layer_norm_backward, layer_norm_forward, layer_norm_recompute,
    linear_backward, loss_and_gradients, manual_backward, model_forward, model_gradients,
)
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.train import autograd_backward

FAST = settings(max_examples=5, deadline=None)
D64 = torch.float64


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def grads_of(f, *inputs, dy):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    return torch.autograd.grad(f(*inputs), inputs, dy)


shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 12))


@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_gelu(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x, dy = torch.randn(shape, generator=g, dtype=D64) * 3, torch.randn(shape, generator=g, dtype=D64)
    (ref,) = grads_of(lambda x: F.gelu(x, approximate="tanh"), x, dy=dy)
    assert rel_err(gelu_backward(dy, x), ref) <= 1e-10


@FAST
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_layer_norm(shape, seed):
    g = torch.Generator().manual_seed(seed)
    C = shape[-1] + 1  # at least 2 features
    x, dy = (torch.randn(*shape[:-1], C, generator=g, dtype=D64) for _ in range(2))
    w, b = (torch.randn(C, generator=g, dtype=D64) for _ in range(2))
    ref = grads_of(lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), x, w, b, dy=dy)
    y, cache = layer_norm_forward(x, w, b)
    xhat, y_again = layer_norm_recompute(cache, w, b)
    assert torch.allclose(y, y_again, atol=1e-12)
    for ours, theirs in zip(layer_norm_backward(dy, xhat, cache[2], w), ref):
        assert rel_err(ours, theirs) <= 1e-10


@FAST
@given(n=st.integers(1, 20), d_in=st.integers(1, 9), d_out=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_linear_and_embedding(n, d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    x, w, b = (torch.randn(s, generator=g, dtype=D64) for s in ((2, n, d_in), (d_out, d_in), (d_out,)))
    dy = torch.randn(2, n, d_out, generator=g, dtype=D64)
    for ours, theirs in zip(linear_backward(dy, x, w), grads_of(F.linear, x, w, b, dy=dy)):
        assert rel_err(ours, theirs) <= 1e-10
    idx = torch.randint(0, d_out, (2, n), generator=g)
    dout = torch.randn(2, n, d_in, generator=g, dtype=D64)
    (ref,) = grads_of(lambda w: F.embedding(idx, w), w, dy=dout)
    assert rel_err(embedding_backward(dout, idx, d_out), ref) <= 1e-10


@FAST
@given(n=st.integers(1, 30), vocab=st.integers(2, 60), seed=st.integers(0, 2**16))
def test_cross_entropy(n, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    z, t = torch.randn(n, vocab, generator=g, dtype=D64) * 3, torch.randint(0, vocab, (n,), generator=g)
    z_ref = z.clone().requires_grad_()
    loss_ref = F.cross_entropy(z_ref, t)
    loss_ref.backward()
    dz = z.clone()
    loss = cross_entropy_backward_(dz, t)
    assert abs(loss.item() - loss_ref.item()) <= 1e-12 * max(1.0, loss_ref.item())
    assert rel_err(dz / n, z_ref.grad) <= 1e-10


@FAST
@given(B=st.integers(1, 2), T=st.integers(1, 9), H=st.integers(1, 3), hd=st.integers(1, 5),
       p=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**16))
def test_attention(B, T, H, hd, p, seed):
    g = torch.Generator().manual_seed(seed)
    C = H * hd
    qkv, dy = torch.randn(B, T, 3 * C, generator=g, dtype=D64), torch.randn(B, T, C, generator=g, dtype=D64)

    def forward(qkv):  # autograd through our forward: the same dropout mask as ours
        return merge_heads(attention_forward(qkv, H, p, torch.Generator().manual_seed(seed))[0])

    (ref,) = grads_of(forward, qkv, dy=dy)
    y, cache = attention_forward(qkv, H, p, torch.Generator().manual_seed(seed))
    ours = attention_backward(split_heads(dy, H), y, cache, H, p)
    assert rel_err(ours, ref) <= 1e-10
    if p == 0:  # and the same forward as chapter 3's SDPA
        q, k, v = (split_heads(t, H) for t in qkv.split(C, dim=2))
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert torch.allclose(y, sdpa, atol=1e-12)


def test_dropout_backward_uses_the_forward_mask():
    x, dy = torch.randn(50, 40, dtype=D64), torch.randn(50, 40, dtype=D64)
    drop = dropout_mask(x.shape, 0.25, x, torch.Generator().manual_seed(0))
    assert drop.dtype == torch.bool and 0.2 < drop.float().mean() < 0.3
    (ref,) = grads_of(lambda x: x.masked_fill(drop, 0) / 0.75, x, dy=dy)
    assert rel_err(dropout_(dy.clone(), drop, 0.25), ref) <= 1e-12
    again = dropout_mask(x.shape, 0.25, x, torch.Generator().manual_seed(0))
    assert torch.equal(drop, again) and dropout_mask(x.shape, 0.0, x) is None


def small_model(tie, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=53, context_length=12, d_model=16, n_layers=2, n_heads=2,
                        dropout=dropout, tie_weights=tie)
    model = GPT2(config).double().train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def batch(seed=1, B=3, T=10, V=53):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


@pytest.mark.parametrize("tie", [True, False])
def test_whole_model_against_autograd(tie):
    model, (idx, targets) = small_model(tie), batch()
    model.zero_grad()
    loss_ref = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
    loss_ref.backward()
    loss, grads = loss_and_gradients(model, idx, targets)
    names = [name for name, _ in model.named_parameters()]
    assert list(grads) == names and ("lm_head.weight" in names) == (not tie)
    assert abs(loss.item() - loss_ref.item()) <= 1e-12
    for name, p in model.named_parameters():
        assert grads[name].shape == p.shape and rel_err(grads[name], p.grad) <= 1e-8, name


def test_whole_model_with_dropout_gets_the_same_masks_as_autograd():
    model, (idx, targets) = small_model(True, dropout=0.2), batch()
    logits, _ = model_forward(model, idx, torch.Generator().manual_seed(7))
    model.zero_grad()
    F.cross_entropy(logits, targets.flatten()).backward()
    grads = model_gradients(model, idx, targets, torch.Generator().manual_seed(7))
    for name, p in model.named_parameters():
        assert rel_err(grads[name], p.grad) <= 1e-8, name
    other = model_gradients(model, idx, targets, torch.Generator().manual_seed(8))
    assert rel_err(other["wte.weight"], grads["wte.weight"]) > 1e-3  # other masks, other grads
    model.eval()  # eval mode: no dropout, as in nn.Dropout
    assert torch.equal(model_gradients(model, idx, targets)["wpe.weight"],
                       model_gradients(model, idx, targets)["wpe.weight"])


def test_manual_backward_fills_grads_like_autograd_backward():
    model, (idx, targets) = small_model(False), batch()
    twin = copy.deepcopy(model)
    loss = manual_backward(model, idx, targets)
    loss_ref = autograd_backward(twin, idx, targets)
    assert abs(loss.item() - loss_ref.item()) <= 1e-12
    for p, q in zip(model.parameters(), twin.parameters()):
        assert rel_err(p.grad, q.grad) <= 1e-8


def test_bad_targets_are_refused():
    model, (idx, targets) = small_model(True), batch()
    with pytest.raises(ValueError, match="targets must have the shape"):
        model_gradients(model, idx, targets[:, :5])
    with pytest.raises(ValueError, match="token ids must be in"):
        model_gradients(model, idx, targets + 100)


def test_adamw_step_equals_torch():
    model, (idx, targets) = small_model(True), batch()
    twin = copy.deepcopy(model)
    ours = AdamW(model.named_parameters(), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    theirs = torch.optim.AdamW(twin.parameters(), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    for _ in range(2):
        grads = model_gradients(model, idx, targets)
        for name, p in twin.named_parameters():
            p.grad = grads[name].clone()
        ours.step(grads)
        theirs.step()
        for p, q in zip(model.parameters(), twin.parameters()):
            assert (p - q).abs().max().item() <= 1e-12


FP32_TOLERANCE = 1e-3  # the float32 tolerance chapter 6 measures and states


def test_cli_backward_manual_matches_autograd(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text("Justice is served when the jury has heard every word of the story. " * 25,
                    encoding="utf-8")
    losses = {}
    for backward in ("autograd", "manual"):
        argv = ["train", "--data", str(data), "--model", "tiny", "--context-length", "16",
                "--batch-size", "4", "--epochs", "1", "--dropout", "0", "--no-progress",
                "--eval-iters", "2", "--prompt", "", "--out", str(tmp_path / backward),
                "--backward", backward]
        assert main(argv) == 0
        out = capsys.readouterr().out
        losses[backward] = [float(v) for v in re.findall(r"(?:train|val) (\d+\.\d+)", out)]
    assert len(losses["manual"]) >= 4 and len(losses["manual"]) == len(losses["autograd"])
    for a, m in zip(losses["autograd"], losses["manual"]):
        assert abs(a - m) <= FP32_TOLERANCE


def test_cli_backward_refuses_bad_values(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text("word " * 400, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", str(data), "--backward", "numeric"])
    assert exit_.value.code == 2 and "--backward" in capsys.readouterr().err


def test_bench_backward_smoke(capsys):
    from gpt2scratch import bench

    bench.main(["backward", "--preset", "tiny", "--layers", "1", "--context-length", "8",
                "--steps", "1", "--warmup", "0", "--no-memory"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"hand/autograd steps/s = \d+\.\d\d \(median of 1 pairs\)", last), last


def test_bench_backward_memory_is_each_sides_own(capsys):
    """Each side's peak is its own process's: memory the parent holds when it starts the child
    does not count (ru_maxrss would inherit it across fork and exec; VmHWM does not)."""
    from gpt2scratch import bench

    ballast = torch.ones(2**28)  # 1 GiB, written, so resident in this (the parent) process
    bench.main(["backward", "--preset", "tiny", "--layers", "1", "--context-length", "8",
                "--steps", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    before = re.search(r"\(([\d,]+) / ([\d,]+) MiB before the first step", out)
    assert before is not None, out
    assert all(int(mib.replace(",", "")) < ballast.numel() * 4 / 2**20 for mib in before.groups()), out
    del ballast
