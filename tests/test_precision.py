"""Tests for the precision of a run (chapter 11's `resolve_precision`, `--precision fp32|bf16|auto`).

`auto` decides from the capability flags alone, so the tests set the flags (monkeypatched) both ways.
Timings are never asserted; `python -m gpt2scratch bench precision` measures them.
"""
from __future__ import annotations

import math

import pytest
import torch

from gpt2scratch.checkpoint import load_checkpoint
from gpt2scratch.model import GPT2
from gpt2scratch.quickmode import ENV
from gpt2scratch.scale import FastGPT2, FastPath, make_backward, resolve_precision
from cli_run import run_main  # tests/cli_run.py
from conftest import GPT2_VOCAB, tiny_config

TINY = tiny_config(vocab_size=GPT2_VOCAB, n_heads=2)


@pytest.fixture
def cpu_flags(monkeypatch):
    """Set this CPU's capability flags as PyTorch reports them; quick mode off."""
    monkeypatch.delenv(ENV, raising=False)

    def set_flags(avx512_bf16: bool, amx: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    return set_flags


@pytest.mark.parametrize("avx512_bf16, amx, dtype, why", [
    (False, False, torch.float32, "auto: this CPU has no bf16 units"),
    (True, False, torch.bfloat16, "auto: this CPU has AVX512-BF16 units"),
    (False, True, torch.bfloat16, "auto: this CPU has AMX bf16 units"),
    (True, True, torch.bfloat16, "auto: this CPU has AMX bf16 units"),
])
def test_auto_follows_the_cpu_flags(cpu_flags, avx512_bf16, amx, dtype, why):
    cpu_flags(avx512_bf16, amx)
    chosen, reason = resolve_precision("auto", "cpu")
    assert chosen == dtype and reason.startswith(why), reason
    assert FastPath.auto("cpu", precision="auto").bf16 == (dtype == torch.bfloat16)


@pytest.mark.parametrize("units", [False, True])
def test_fp32_and_bf16_are_what_they_say_whatever_the_flags(cpu_flags, units):
    cpu_flags(units, units)
    assert resolve_precision("fp32", "cpu") == (torch.float32, "requested")
    dtype, reason = resolve_precision("bf16", "cpu")
    assert dtype == torch.bfloat16 and reason.startswith("requested")
    assert ("no bf16 units" in reason) == (not units)
    assert not FastPath.auto("cpu").bf16  # the library's default is fp32, flags or not


def test_quick_mode_pins_fp32(cpu_flags, monkeypatch):
    cpu_flags(True, True)
    monkeypatch.setenv(ENV, "1")
    dtype, reason = resolve_precision("auto", "cpu")
    assert dtype == torch.float32 and "quick mode" in reason and ENV in reason
    assert resolve_precision("bf16", "cpu")[0] == torch.bfloat16  # asked for: honoured


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "float32"])
def test_a_bad_precision_is_a_value_error_that_names_it(bad):
    with pytest.raises(ValueError, match=f"precision must be fp32, bf16 or auto, got {bad!r}"):
        resolve_precision(bad, "cpu")


def test_a_tiny_model_trains_under_cpu_autocast_with_fp32_master_weights():
    inputs = torch.randint(0, TINY.vocab_size, (4, 17), generator=torch.Generator().manual_seed(1))
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = GPT2(TINY)
        runner = FastGPT2(model, pad_vocab=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
        fast = FastPath(bf16=bf16)
        with fast.autocast("cpu"):
            assert runner(inputs[:, :-1]).dtype == (torch.bfloat16 if bf16 else torch.float32)
        step = make_backward(fast, "cpu")
        losses[bf16] = []
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            loss = step(runner, inputs[:, :-1], inputs[:, 1:])
            assert loss.dtype == torch.float32  # the loss is computed in fp32
            opt.step()
            losses[bf16].append(loss.item())
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
                   for p in model.parameters())
        state = [t for s in opt.state.values() for t in s.values() if t.is_floating_point()]
        assert state and all(t.dtype == torch.float32 for t in state)  # AdamW's moments
    assert all(math.isfinite(x) for x in losses[True]) and losses[True][-1] < losses[True][0]
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True])) < 0.05  # nats


def test_train_auto_prints_its_choice_and_trains_in_bf16(cpu_flags, tmp_path, capsys):
    cpu_flags(False, True)
    data = tmp_path / "story.txt"
    data.write_text("Every effort moves you, and the story goes on. " * 60, encoding="utf-8")
    out = tmp_path / "run"
    code, stdout, err = run_main(["train", "--data", str(data), "--model", "tiny", "--epochs", "1",
                                  "--context-length", "16", "--batch-size", "4", "--eval-iters",
                                  "1", "--prompt", "", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    assert "precision: bf16 (auto: this CPU has AMX bf16 units)\n" in stdout
    weights = load_checkpoint(out).model.state_dict().values()
    assert all(w.dtype == torch.float32 for w in weights if w.is_floating_point())


@pytest.mark.parametrize("argv", [
    ["train", "--data", "{data}", "--model", "tiny", "--precision", "fp16"],
    ["run", "--model", "tiny", "--precision", "fp16"],
    ["bench", "train", "--preset", "tiny", "--precision", "fp16"],
    ["bench", "generate", "--preset", "tiny", "--precision", "fp16"],
], ids=["train", "run", "bench-train", "bench-generate"])
def test_a_bad_precision_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys, argv):
    data = tmp_path / "story.txt"
    data.write_text("Every effort moves you, and the story goes on. " * 60, encoding="utf-8")
    if argv[0] == "bench":
        pytest.importorskip("transformers")
    code, _, err = run_main([a.replace("{data}", str(data)) for a in argv], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m gpt2scratch ") and err.endswith(
        "error: precision must be fp32, bf16 or auto, got 'fp16'\n"), err


def test_manual_backward_refuses_bf16_in_one_line(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text("Every effort moves you, and the story goes on. " * 60, encoding="utf-8")
    code, _, err = run_main(["train", "--data", str(data), "--model", "tiny", "--backward", "manual",
                             "--precision", "bf16"], capsys)
    assert code == 2 and err.count("\n") == 1 and "use --precision fp32 or auto" in err, err
