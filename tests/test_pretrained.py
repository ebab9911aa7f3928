"""Tests for gpt2scratch.pretrained (chapter 07): HF checkpoints in, HF checkpoints out."""
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from gpt2scratch import load_pretrained, save_pretrained
from gpt2scratch.checkpoint import load_checkpoint, save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import (
    ENV_DIR,
    PREFIX,
    find_pretrained,
    from_hf,
    to_hf,
)
from cli_run import run_main  # tests/cli_run.py
from conftest import tiny_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

OURS = tiny_config(vocab_size=100, context_length=32, d_model=16, n_heads=2, dropout=0.1)
# The same sizes in Hugging Face's names, for transformers.GPT2Config.
TINY = dict(vocab_size=OURS.vocab_size, n_positions=OURS.context_length, n_embd=OURS.d_model,
            n_layer=OURS.n_layers, n_head=OURS.n_heads)
STORY = ("Justice is served when the jury has heard every word of the story, and not a moment before. " * 40)


def hf_checkpoint(folder, seed=0, **sizes):
    """A seeded random GPT2LMHeadModel saved by transformers' own save_pretrained."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**TINY, **sizes})).eval()
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture
def tiny(tmp_path):
    return hf_checkpoint(tmp_path / "tiny")


def max_diff(ours, hf, ids):
    with torch.no_grad():
        return (ours(ids) - hf(input_ids=ids).logits).abs().max().item()


def copy_with(folder, src, tensors=None, raw=None):
    """A copy of the checkpoint `src` whose weights are `tensors` (or these raw bytes)."""
    folder.mkdir()
    (folder / "config.json").write_text((src / "config.json").read_text())
    if raw is not None:
        (folder / "model.safetensors").write_bytes(raw)
    else:
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


# --- HF -> ours ---------------------------------------------------------------------------------
def test_hf_checkpoint_loads_with_equal_logits(tiny):
    folder, hf = tiny
    ours = load_pretrained(folder)
    torch.manual_seed(1)
    ids = torch.randint(0, TINY["vocab_size"], (3, TINY["n_positions"]))
    assert max_diff(ours, hf, ids) <= 1e-5
    assert ours.config == OURS
    assert not ours.training


def test_tied_head_is_one_parameter(tiny):
    ours = load_pretrained(tiny[0])
    assert ours.lm_head.weight is ours.wte.weight
    assert ours.num_params() == sum(p.numel() for p in tiny[1].parameters())


def test_greedy_20_tokens_identical_to_hf_generate(tiny):
    folder, hf = tiny
    ours = load_pretrained(folder)
    torch.manual_seed(2)
    prompt = torch.randint(0, TINY["vocab_size"], (1, 5))
    hf_ids = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    ours_ids = ours.generate(prompt, 20, temperature=0)
    assert ours_ids.shape == (1, 25) and torch.equal(ours_ids, hf_ids)


def test_untied_hf_checkpoint(tmp_path):
    folder, hf = hf_checkpoint(tmp_path / "untied", tie_word_embeddings=False)
    ours = load_pretrained(folder)
    assert ours.config.tie_weights is False and ours.lm_head.weight is not ours.wte.weight
    ids = torch.randint(0, TINY["vocab_size"], (2, 16))
    assert max_diff(ours, hf, ids) <= 1e-5


def test_openai_hub_layout_without_prefix_and_with_mask_buffers(tiny, tmp_path):
    folder, hf = tiny
    tensors = {k.removeprefix(PREFIX): v for k, v in load_file(folder / "model.safetensors").items()}
    for i in range(TINY["n_layer"]):
        tensors[f"h.{i}.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = load_pretrained(copy_with(tmp_path / "hub", folder, tensors))
    assert max_diff(ours, hf, torch.randint(0, 100, (1, 32))) <= 1e-5


def test_dtype_and_device(tiny):
    ours = load_pretrained(tiny[0], dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    assert ours.lm_head.weight is ours.wte.weight  # a dtype that is a str: test_bad_inputs.py


# --- ours -> HF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [True, False])
def test_export_loads_in_hf_with_equal_logits(tmp_path, tie):
    torch.manual_seed(3)
    ours = GPT2(dataclasses.replace(OURS, tie_weights=tie)).eval()
    folder = save_pretrained(ours, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    hf.eval()
    assert max_diff(ours, hf, torch.randint(0, 100, (3, 32))) <= 1e-5
    assert (hf.lm_head.weight is hf.transformer.wte.weight) == tie
    again = load_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), again.state_dict().values()))


# What Hugging Face cannot express (qkv_bias=False, not a GPT2): tests/test_bad_inputs.py


@settings(max_examples=8, deadline=None)
@given(d_head=st.integers(1, 4), heads=st.integers(1, 3), layers=st.integers(1, 3), tie=st.booleans())
def test_to_hf_then_from_hf_is_the_identity(d_head, heads, layers, tie):
    config = GPT2Config(vocab_size=11, context_length=7, d_model=d_head * heads, n_layers=layers,
                        n_heads=heads, tie_weights=tie)
    torch.manual_seed(0)
    model = GPT2(config)
    state = from_hf({k: v.clone() for k, v in to_hf(model).items()}, model)
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


# --- clear errors -------------------------------------------------------------------------------
# Weights cut short, of the wrong shape, missing or extra, several problems at once: test_bad_inputs.py


def test_pickle_loads_with_the_opt_in(tiny, tmp_path):  # without it, or a pickle of code: test_bad_inputs.py
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny[0] / "config.json").read_text())
    torch.save(load_file(tiny[0] / "model.safetensors"), folder / "pytorch_model.bin")
    ours = load_pretrained(folder, allow_pickle=True)
    assert max_diff(ours, tiny[1], torch.randint(0, 100, (1, 8))) <= 1e-5


# A config we cannot represent: tests/test_bad_inputs.py


@pytest.fixture
def offline_empty_cache(monkeypatch, tmp_path):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", ENV_DIR, "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf-home"


def test_not_cached_while_offline_says_what_and_how(offline_empty_cache):
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained("gpt2")
    text = str(err.value)
    assert "openai-community/gpt2/config.json" in text and str(offline_empty_cache / "hub") in text
    assert "HF_HUB_OFFLINE" in text and ENV_DIR in text and "folder with config.json" in text


# An unknown name, a name that is not a str: tests/test_bad_inputs.py


def test_env_dir_is_used_for_gpt2(tiny, offline_empty_cache, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tiny[0]))
    assert find_pretrained("gpt2")[1] == tiny[0] / "model.safetensors"
    assert load_pretrained("gpt2").config.d_model == 16
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
        load_pretrained("gpt2-medium")  # the variable names gpt2 (124M) only


def test_found_in_the_hugging_face_cache(tiny, offline_empty_cache):
    snapshot = offline_empty_cache / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((tiny[0] / name).read_bytes())
    assert find_pretrained("gpt2") == (snapshot / "config.json", snapshot / "model.safetensors")
    assert max_diff(load_pretrained("gpt2"), tiny[1], torch.randint(0, 100, (1, 8))) <= 1e-5


# A folder without config.json or without weights: tests/test_bad_inputs.py


# --- the command line ---------------------------------------------------------------------------


def test_train_init_from_a_folder_then_export(tmp_path, capsys):
    folder, _ = hf_checkpoint(tmp_path / "init", vocab_size=50257, n_embd=8, n_layer=1, n_positions=32)
    start = load_pretrained(folder)
    data = tmp_path / "story.txt"
    data.write_text(STORY, encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "--init", str(folder), "--data", str(data), "--context-length", "16",
            "--batch-size", "4", "--epochs", "1", "--eval-iters", "1", "--no-progress",
            "--prompt", "", "--out", str(out), "--device", "cpu", "--precision", "fp32"]
    code, stdout, err = run_main(argv, capsys)
    assert code == 0, err
    assert "initialised from pretrained weights" in stdout
    record = json.loads((out / "init.json").read_text())
    assert record["init"] == str(folder) and record["weights_file"] == str(folder / "model.safetensors")
    ckpt = load_checkpoint(out)
    assert ckpt.config == start.config  # the pretrained config, not --model's preset
    trained = ckpt.model.state_dict()
    assert not torch.equal(trained["h.0.mlp.c_fc.weight"], start.state_dict()["h.0.mlp.c_fc.weight"])

    code, stdout, err = run_main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "hf")], capsys)
    assert code == 0, err and "model.safetensors" in stdout
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert max_diff(ckpt.model.eval(), hf, torch.randint(0, 50257, (2, 16))) <= 1e-5


# The CLI's --init and export errors: tests/test_bad_inputs.py


def test_export_of_a_saved_checkpoint_round_trips(tmp_path, capsys):
    torch.manual_seed(4)
    model = GPT2(GPT2Config(vocab_size=100, context_length=16, d_model=8, n_layers=1, n_heads=2))
    save_checkpoint(tmp_path / "ck", model)
    code, _, err = run_main(["export", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "hf")],
                            capsys)
    assert code == 0, err
    again = load_pretrained(tmp_path / "hf")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_the_name_mapping_lives_in_one_module():
    """bench.py and every other module use gpt2scratch.pretrained; none keeps its own copy."""
    import gpt2scratch

    package = Path(gpt2scratch.__file__).parent
    for module in package.glob("*.py"):
        if module.name != "pretrained.py":
            text = module.read_text(encoding="utf-8")
            assert "CONV1D" not in text, module  # the Conv1D list is pretrained.CONV1D
            assert '"transformer."' not in text and "'transformer.'" not in text, module
