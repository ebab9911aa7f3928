"""Tests for gpt2scratch.checkpoint: round trips, tied weights, atomic writes, and bit-identical resume."""
import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import gpt2scratch.checkpoint as checkpoint
from gpt2scratch.checkpoint import (
    LATEST, load_checkpoint, pack, resolve_checkpoint, save_checkpoint, unpack,
)
from gpt2scratch.dataset import create_dataloader
from gpt2scratch.model import GPT2
from gpt2scratch.runtime import rng_state, set_seed
from gpt2scratch.train import warmup_cosine
from gpt2scratch.trainer import train_run
from conftest import tiny_config

TINY = tiny_config(d_model=16, n_heads=2, dropout=0.1)


def loaders():
    g = torch.Generator().manual_seed(0)
    train_loader = create_dataloader(torch.randint(0, 97, (300,), generator=g), batch_size=4, context_length=16,
                                     shuffle=True, seed=7)
    val_loader = create_dataloader(torch.randint(0, 97, (60,), generator=g), batch_size=2, context_length=16,
                                   shuffle=False, drop_last=False)
    return train_loader, val_loader


def fresh_run(steps):
    set_seed(123)
    model = GPT2(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    return model, optimizer, warmup_cosine(optimizer, 3, steps, 0.1)


def quiet(**kwargs):
    return {"progress": False, "verbose": False, "eval_every": 4, "grad_clip": 1.0, **kwargs}


def trained(tmp_path, steps=3):
    model, optimizer, scheduler = fresh_run(10)
    train_loader, val_loader = loaders()
    train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, max_steps=steps, **quiet())
    return model, optimizer, scheduler


def test_round_trip_is_exact_and_ties_weights_again(tmp_path):
    model, optimizer, scheduler = trained(tmp_path)
    rng = rng_state()
    folder = save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, train_state={"step": 3, "note": (1, 2)},
                             rng=rng)
    assert folder == tmp_path / "ck" / "step-00000003"
    with safe_open(folder / "model.safetensors", "pt") as f:  # the tied weight is stored once
        assert "wte.weight" in f.keys() and "lm_head.weight" not in f.keys()

    model2, optimizer2, scheduler2 = fresh_run(10)
    ckpt = load_checkpoint(tmp_path / "ck", model2, optimizer2, scheduler2)
    assert model2.lm_head.weight is model2.wte.weight
    for (name, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), name
    s1, s2 = optimizer.state_dict(), optimizer2.state_dict()
    assert s1["param_groups"] == s2["param_groups"] and isinstance(s2["param_groups"][0]["betas"], tuple)
    for i in s1["state"]:
        for k in s1["state"][i]:
            assert torch.equal(s1["state"][i][k], s2["state"][i][k]) and s1["state"][i][k].dtype == s2["state"][i][k].dtype
    assert scheduler.state_dict() == scheduler2.state_dict()
    assert ckpt.train_state == {"step": 3, "note": (1, 2)} and ckpt.config == TINY
    assert torch.equal(ckpt.rng["torch"], rng["torch"]) and ckpt.rng["python"] == rng["python"]
    assert ckpt.rng["numpy"][0] == "MT19937" and np.array_equal(ckpt.rng["numpy"][1], rng["numpy"][1])

    built = load_checkpoint(tmp_path / "ck").model  # no model given: built from the saved config
    assert built.config == TINY and all(torch.equal(a, b) for a, b in zip(built.state_dict().values(),
                                                                          model.state_dict().values()))


@settings(max_examples=40, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=3), children, max_size=3)
    | st.dictionaries(st.integers(0, 5), children, max_size=3),
    max_leaves=12))
def test_pack_unpack_round_trip(obj):
    tensors = {}
    data = json.loads(json.dumps(pack(obj, tensors, "x")))
    assert unpack(data, tensors) == obj and tensors == {}


def test_pack_moves_tensors_and_arrays():
    obj = {"a": torch.arange(3), "b": (np.arange(4, dtype=np.uint32), torch.tensor(2.5)), 0: [torch.ones(2, 2)]}
    tensors = {}
    back = unpack(json.loads(json.dumps(pack(obj, tensors, "s"))), tensors)
    assert len(tensors) == 3 and torch.equal(back["a"], obj["a"]) and torch.equal(back[0][0], obj[0][0])
    assert back["b"][1].item() == 2.5 and back["b"][0].dtype == np.uint32 and back["b"][0].tolist() == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="cannot store a set"):
        pack({"bad": {1, 2}}, {}, "s")


def _resume_case(tmp_path, stop_at):
    """(uninterrupted history, interrupted-then-resumed history) for a 3-epoch run stopped after `stop_at`."""
    train_loader, val_loader = loaders()
    steps = 3 * len(train_loader)
    model, optimizer, scheduler = fresh_run(steps)
    full = train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3, **quiet())

    model, optimizer, scheduler = fresh_run(steps)
    train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3, max_steps=stop_at,
          checkpoint_dir=tmp_path / "run", **quiet())
    torch.manual_seed(999)  # a new process starts with other random states, and a fresh loader
    train_loader, val_loader = loaders()
    model, optimizer, scheduler = fresh_run(steps)
    torch.manual_seed(999)
    resumed = train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3,
                    resume_from=tmp_path / "run", **quiet())
    return full, resumed, len(train_loader)


@pytest.mark.parametrize("where", ["mid-epoch", "epoch boundary"])
def test_resume_is_bit_identical(tmp_path, where):
    train_loader, _ = loaders()
    stop_at = len(train_loader) + 2 if where == "mid-epoch" else len(train_loader)
    full, resumed, _ = _resume_case(tmp_path, stop_at)
    assert len(full.step_loss) == len(resumed.step_loss) == 3 * len(train_loader)
    assert resumed.step_loss == full.step_loss  # exact float equality, every step
    assert resumed.to_dict() == full.to_dict()


def test_resume_without_restoring_rng_differs(tmp_path):
    """The control experiment: the bit-identity above is not an accident of a too-simple setup."""
    train_loader, val_loader = loaders()
    steps = 3 * len(train_loader)
    model, optimizer, scheduler = fresh_run(steps)
    full = train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3, **quiet())
    model, optimizer, scheduler = fresh_run(steps)
    train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3, max_steps=5,
          checkpoint_dir=tmp_path / "run", **quiet())
    original = checkpoint.unpack

    def forget_rng(obj, tensors):
        out = original(obj, tensors)
        if isinstance(out, dict) and "torch" in out and "python" in out:
            out["torch"] = torch.manual_seed(999).get_state()
        return out

    model, optimizer, scheduler = fresh_run(steps)
    checkpoint.unpack = forget_rng
    try:
        resumed = train_run(model, train_loader, val_loader, optimizer, scheduler=scheduler, epochs=3,
                        resume_from=tmp_path / "run", **quiet())
    finally:
        checkpoint.unpack = original
    assert resumed.step_loss[:5] == full.step_loss[:5] and resumed.step_loss[5] != full.step_loss[5]


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = trained(tmp_path)
    save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, train_state={"step": 3})
    real = checkpoint.save_file
    calls = []

    def crash_on_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:
                f.write(b"torn")
            raise KeyboardInterrupt("killed mid-write")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", crash_on_second)
    saved = model.wte.weight.detach().clone()
    with torch.no_grad():
        model.wte.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, train_state={"step": 9})
    monkeypatch.setattr(checkpoint, "save_file", real)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [LATEST, "step-00000003"]
    ckpt = load_checkpoint(tmp_path / "ck")
    assert ckpt.train_state == {"step": 3}
    assert torch.equal(ckpt.model.wte.weight, saved) and not torch.equal(saved, model.wte.weight)


def test_crash_before_the_pointer_moves_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = trained(tmp_path)
    save_checkpoint(tmp_path / "ck", model, optimizer, train_state={"step": 3})
    real_replace = os.replace

    def die(src, dst):
        raise KeyboardInterrupt("killed before the pointer moved")

    monkeypatch.setattr(checkpoint.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", model, optimizer, train_state={"step": 4})
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    # the new folder is complete but unreferenced; the pointer still names the old one
    assert (tmp_path / "ck" / "step-00000004").is_dir()
    assert load_checkpoint(tmp_path / "ck").train_state == {"step": 3}
    (tmp_path / "ck" / ".tmp-step-00000005-abc").mkdir()  # what a SIGKILL mid-save leaves behind
    save_checkpoint(tmp_path / "ck", model, optimizer, train_state={"step": 6})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [LATEST, "step-00000006"]


def test_keep_and_repeated_steps(tmp_path):
    model, optimizer, _ = trained(tmp_path)
    for step in (1, 2, 2, 3):
        save_checkpoint(tmp_path / "ck", model, optimizer, train_state={"step": step}, keep=2)
    pointer = json.loads((tmp_path / "ck" / LATEST).read_text())
    assert pointer["checkpoint"] == "step-00000003" and pointer["kept"] == ["step-00000003", "step-00000002.1"]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [LATEST, "step-00000002.1", "step-00000003"]
    assert resolve_checkpoint(tmp_path / "ck" / "step-00000002.1") == tmp_path / "ck" / "step-00000002.1"
    assert load_checkpoint(tmp_path / "ck" / "step-00000002.1").train_state == {"step": 2}


def test_clear_errors(tmp_path):
    # a missing or empty folder, a wrong shape, a truncated file: tests/test_bad_inputs.py
    model, optimizer, _ = trained(tmp_path)
    save_checkpoint(tmp_path / "ck", model, train_state={"step": 1})
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "ck", GPT2(TINY), optimizer)
    deeper = GPT2(tiny_config(d_model=16, n_layers=3, n_heads=2, dropout=0.1))
    with pytest.raises(ValueError, match=r"missing keys \['h.2"):
        load_checkpoint(tmp_path / "ck", deeper)


def test_files_are_not_private(tmp_path):
    model, _, _ = trained(tmp_path)
    folder = save_checkpoint(tmp_path / "ck", model)
    umask = os.umask(0)
    os.umask(umask)
    assert (folder.stat().st_mode & 0o777) == 0o777 & ~umask
    assert ((folder / "model.safetensors").stat().st_mode & 0o777) == 0o666 & ~umask
    assert ((tmp_path / "ck" / LATEST).stat().st_mode & 0o777) == 0o666 & ~umask


def test_an_optimizer_with_other_parameter_groups_is_refused_with_the_reason(tmp_path):
    """A checkpoint of decay on every tensor (one group) does not load into chapter 5's adamw()
    (two groups): the error says so instead of torch's bare 'different number of groups'."""
    from gpt2scratch.train import adamw

    model = GPT2(TINY)
    save_checkpoint(tmp_path, model, adamw(model, lr=1e-3, decay_all=True))
    with pytest.raises(ValueError, match=r"holds an optimizer with 1 parameter group\(s\), the one passed has 2"):
        load_checkpoint(tmp_path, GPT2(TINY), adamw(model, lr=1e-3))
    load_checkpoint(tmp_path, GPT2(TINY), adamw(model, lr=1e-3, decay_all=True))  # the same groups: loads
