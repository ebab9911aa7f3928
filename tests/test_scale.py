"""Tests for gpt2scratch.scale (chapter 11): the fast path computes what chapter 5 computes.

Also the parts of gpt2scratch.ddp that one process can check (the sampler, the batch split, a
world of one). Timings are never asserted. DDP across processes is in tests/test_ddp.py.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.ddp import DistInfo, ShardedSampler, check_batch_split, init_distributed
from gpt2scratch.scale import (
    FastGPT2,
    FastPath,
    ladder,
    make_backward,
    mfu,
    padded_vocab_size,
    set_adamw_kernel,
    train_flops_per_token,
)
from gpt2scratch.train import calc_loss_batch
from conftest import GPT2_VOCAB, tiny_config

TINY = tiny_config(vocab_size=GPT2_VOCAB, n_heads=2)  # the "tiny" preset at 16 positions, no dropout


def _tiny(seed: int = 0) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(TINY)


def _batch(rows: int = 4, seed: int = 1):
    x = torch.randint(0, TINY.vocab_size, (rows, 17), generator=torch.Generator().manual_seed(seed))
    return x[:, :-1], x[:, 1:]


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_padded_vocab_size():
    assert padded_vocab_size(50257) == 50304 == 393 * 128
    assert padded_vocab_size(128) == 128 and padded_vocab_size(129) == 256
    with pytest.raises(ValueError):
        padded_vocab_size(0)
    with pytest.raises(TypeError):
        padded_vocab_size(50257.0)


def test_fast_gpt2_equals_the_model_and_never_shows_padded_logits():
    model = _tiny().eval()
    fast = FastGPT2(model)
    inputs, targets = _batch()
    logits = fast(inputs)
    assert fast.padded_size == 50304 and logits.shape == (4, 16, TINY.vocab_size)
    assert torch.allclose(logits, model(inputs), atol=1e-6)
    assert torch.allclose(fast(inputs, targets), calc_loss_batch(model, inputs, targets), atol=1e-6)
    # the parameters (and so checkpoints) keep V rows; the padding is in the computation only
    assert {tuple(p.shape) for n, p in fast.state_dict().items() if "wte" in n} == {(50257, 32)}
    with pytest.raises(TypeError):
        FastGPT2(torch.nn.Linear(2, 2))


def test_padded_head_gradients_equal_the_plain_ones():
    inputs, targets = _batch()
    plain, padded = _tiny(), _tiny()
    calc_loss_batch(plain, inputs, targets).backward()
    FastGPT2(padded)(inputs, targets).backward()
    assert torch.allclose(_grads(plain), _grads(padded), atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(k=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**16))
def test_accumulating_k_micro_batches_equals_one_batch(k, seed):
    inputs, targets = _batch(rows=8, seed=seed)
    model = _tiny()
    make_backward(FastPath(), "cpu")(FastGPT2(model, pad_vocab=False), inputs, targets)
    full = _grads(model)
    model.zero_grad()
    loss = make_backward(FastPath(accum_steps=k), "cpu")(FastGPT2(model, pad_vocab=False),
                                                         inputs, targets)
    assert torch.allclose(_grads(model), full, atol=1e-6)
    assert abs(loss.item() - calc_loss_batch(model, inputs, targets).item()) < 1e-5


def test_accumulation_refuses_an_uneven_split():
    inputs, targets = _batch(rows=6)
    with pytest.raises(ValueError, match="accum_steps=4"):
        make_backward(FastPath(accum_steps=4), "cpu")(FastGPT2(_tiny()), inputs, targets)
    assert check_batch_split(16, 2, 4) == 2
    with pytest.raises(ValueError, match="multiple of 8"):
        check_batch_split(12, 2, 4)


def test_fused_and_foreach_adamw_agree():
    inputs, targets = _batch()
    weights = []
    for fused in (True, False):
        model = _tiny()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        set_adamw_kernel(opt, fused)
        assert opt.param_groups[0]["fused"] is (True if fused else None)
        calc_loss_batch(model, inputs, targets).backward()
        opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(*weights, atol=1e-6)


def test_fast_path_settings():
    assert FastPath.auto("cpu") == FastPath(bf16=False, compile=False, pad_vocab=False)
    assert FastPath.auto("cuda") == FastPath(bf16=False, compile=True, pad_vocab=True)  # fp32 unless asked
    gpu = FastPath.auto("cuda", precision="bf16", compile=False)
    assert gpu.bf16 and gpu.pad_vocab and not gpu.compile and gpu.fused_adamw and gpu.flash
    with pytest.raises(TypeError):
        FastPath(bf16=1)
    with pytest.raises(ValueError):
        FastPath(accum_steps=0)
    rungs = list(ladder().values())
    assert rungs[0] == FastPath(flash=False, fused_adamw=False) and rungs[-1] == FastPath.auto(
        "cuda", precision="bf16")
    assert len(ladder(3, 6)) == 3 and ladder(6) == {}


def test_math_and_default_attention_agree():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 8, 4, generator=g) for _ in range(3))
    outs = []
    for flash in (False, True):
        with FastPath(flash=flash).attention():
            outs.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert torch.allclose(*outs, atol=1e-5)


def test_flops_and_mfu():
    config = GPT2Config()  # 124M
    with torch.device("meta"):
        model = GPT2(config)
    n_matmul = model.num_params(non_embedding=True) + config.vocab_size * config.d_model
    assert n_matmul == 85_056_000 + 38_597_376  # the blocks and ln_f, then the LM head
    for T in (256, 1024):  # 6N, plus q·kᵀ and att·v over the full T×T square
        expected = 6 * n_matmul + 12 * config.n_layers * T * config.d_model
        assert train_flops_per_token(config, T) == expected
    assert mfu(1000.0, 1e9, 4e12) == pytest.approx(0.25)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 60), per=st.integers(1, 4), world=st.sampled_from([1, 2, 3, 4]),
       epoch=st.integers(0, 5))
def test_sharded_sampler_splits_every_global_batch(n, per, world, epoch):
    global_batch = per * world
    samplers = [ShardedSampler(n, global_batch, r, world, seed=3) for r in range(world)]
    one = ShardedSampler(n, global_batch, 0, 1, seed=3)
    for s in [*samplers, one]:
        s.set_epoch(epoch)
    shares = [list(s) for s in samplers]
    whole = list(one)
    steps = n // global_batch
    assert all(len(share) == steps * per == len(s) for share, s in zip(shares, samplers))
    for b in range(steps):  # rank r's slice of global batch b, in rank order, is the batch
        joined = [i for share in shares for i in share[b * per:(b + 1) * per]]
        assert joined == whole[b * global_batch:(b + 1) * global_batch]
    assert len(set(whole)) == len(whole)  # no window twice in an epoch


def test_sharded_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 2"):
        ShardedSampler(10, 3, 0, 2)
    with pytest.raises(ValueError, match="rank"):
        ShardedSampler(10, 4, 2, 2)


def test_without_torchrun_a_world_of_one(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(device=torch.device("cpu")) and info.is_main


def test_cli_trains_with_accumulation_and_refuses_an_uneven_split(tmp_path, capsys):
    from gpt2scratch.__main__ import main

    data = tmp_path / "story.txt"
    data.write_text("Every effort moves you, and the story goes on. " * 60, encoding="utf-8")
    common = ["train", "--data", str(data), "--model", "tiny", "--context-length", "16",
              "--epochs", "1", "--eval-iters", "1", "--prompt", "", "--no-progress",
              "--out", str(tmp_path / "run"), "--precision", "fp32"]
    with pytest.raises(SystemExit) as stop:
        main([*common, "--batch-size", "6", "--accum-steps", "4"])
    assert stop.value.code == 2
    assert "use a multiple of 4" in capsys.readouterr().err
    assert main([*common, "--batch-size", "4", "--accum-steps", "2"]) == 0
    assert (tmp_path / "run" / "latest.json").exists()
