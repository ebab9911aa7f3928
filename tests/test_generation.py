"""Tests for gpt2scratch.generation (chapter 8): sampling, the KV cache, the decode loop, the API."""
import re
import shutil
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from gpt2scratch.generation import (
    KVCache, SamplingSettings, compile_unavailable, decode, generate_ids, next_logits, sample_next, stream_text, top_p_filter,
)
from gpt2scratch.model import GPT2, GPT2Config
from cli_run import run_main as _cli  # tests/cli_run.py
from conftest import CharTokenizer, needs_cpp_compiler, tiny_config

TINY = tiny_config()
GREEDY = SamplingSettings(temperature=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a busy 2-core machine: a second thread only adds barrier waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --------------------------------------------------------------------------- sample_next
def test_sample_next_greedy_top_k_and_cold():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 5.0, 0.0]])
    assert sample_next(logits, GREEDY).tolist() == [[0], [2]]
    filters = SamplingSettings(temperature=0, top_k=1, top_p=0.1, min_p=0.5)
    assert sample_next(logits, filters).tolist() == [[0], [2]]  # greedy ignores the filters
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits[:1].expand(500, 4), SamplingSettings(top_k=2), g)
    assert set(draws.flatten().tolist()) == {0, 1}
    cold = sample_next(logits[:1].expand(500, 4), SamplingSettings(temperature=0.05), g)
    assert set(cold.flatten().tolist()) == {0}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = lambda p: (top_p_filter(logits, p) > float("-inf"))[0].tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]  # 0.5 already reaches 0.5
    assert kept(0.51) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-9) == [True, False, False, False]  # the top token always stays
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits.expand(2000, 4), SamplingSettings(top_p=0.8), g)
    freq = torch.bincount(draws[:, 0], minlength=4) / 2000
    assert freq[2:].sum() == 0 and abs(freq[0].item() - 0.5 / 0.8) < 0.04  # renormalised


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12), st.floats(0.01, 1.0),
       st.integers(1, 12), st.floats(0.1, 3.0))
def test_filters_property(values, top_p, top_k, temperature):
    """The filtered set is a prefix of the sorted tokens, holds >= top_p of the tempered mass,
    and dropping its least likely member would fall below top_p."""
    logits = torch.tensor([values]) / temperature
    keep = top_p_filter(logits, top_p) > float("-inf")
    probs = F.softmax(logits, -1)[0]
    kept, dropped = probs[keep[0]], probs[~keep[0]]
    assert len(kept) >= 1
    assert len(dropped) == 0 or kept.min() >= dropped.max()  # the likeliest tokens (ties aside)
    kept_mass = kept.sum().item()
    assert kept_mass >= top_p - 1e-5 or len(dropped) == 0
    assert len(kept) == 1 or kept_mass - kept.min().item() < top_p + 1e-5  # the smallest such set
    g = torch.Generator().manual_seed(0)
    settings_ = SamplingSettings(temperature, min(top_k, len(values)), top_p)
    tok = sample_next(torch.tensor([values]), settings_, g).item()
    assert 0 <= tok < len(values)


# --------------------------------------------------------------------------- the KV cache
@pytest.mark.parametrize("settings_", [dict(temperature=0), dict(temperature=1.0, seed=3),
                                       dict(temperature=0.8, top_k=20, top_p=0.9, seed=5)])
@pytest.mark.parametrize("prompt_len", [1, 5, 16, 30])
def test_cache_gives_identical_tokens_across_the_boundary(tiny, settings_, prompt_len):
    """40 new tokens with context 16: the window fills and slides; cache or not, same tokens."""
    torch.manual_seed(prompt_len)
    idx = torch.randint(0, 97, (2, prompt_len))
    with_cache = tiny.generate(idx, 40, **settings_)
    without = tiny.generate(idx, 40, use_cache=False, **settings_)
    assert with_cache.shape == (2, prompt_len + 40)
    assert torch.equal(with_cache, without)
    if "seed" not in settings_:
        assert torch.equal(with_cache, naive_greedy(tiny, idx, 40))


def test_cache_logits_match_full_forward(tiny):
    """Prefill, then one token at a time, then a chunk: the logits match a full forward pass."""
    ids = torch.randint(0, 97, (3, 14), generator=torch.Generator().manual_seed(1))
    cache = KVCache(tiny, batch_size=3)
    with torch.no_grad():
        full = tiny(ids)  # (3, 14, V)
        torch.testing.assert_close(next_logits(tiny, ids[:, :6], cache, 0), full[:, 5])
        for t in range(6, 9):
            torch.testing.assert_close(next_logits(tiny, ids[:, t:t + 1], cache, t), full[:, t])
        torch.testing.assert_close(next_logits(tiny, ids[:, 9:14], cache, 9), full[:, 13])
        logits = tiny(ids[:, 9:14], cache, 9)  # every position of a chunk, through forward
    torch.testing.assert_close(logits, full[:, 9:14])


def test_static_positions_match_dynamic(tiny):
    """The static-shape path (start_pos as a tensor, for CUDA graphs) gives the same logits."""
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(2))
    cache = KVCache(tiny)
    with torch.no_grad():
        full = tiny(ids)
        next_logits(tiny, ids[:, :4], cache, 0)
        for t in range(4, 10):
            out = next_logits(tiny, ids[:, t:t + 1], cache, torch.tensor(t))
            torch.testing.assert_close(out, full[:, t])


def test_cache_is_preallocated_and_overflow_is_refused(tiny):
    cache = KVCache(tiny, batch_size=2)
    assert cache.k.shape == (2, 2, 4, 16, 8) and len(list(cache)) == 2
    assert cache.nbytes == 2 * 2 * 2 * 4 * 16 * 8 * 4
    short = KVCache(tiny, batch_size=2, max_len=8)
    with pytest.raises(ValueError, match="the cache holds 8 positions; cannot write 3 at start_pos=6"):
        with torch.no_grad():
            tiny(torch.zeros(2, 3, dtype=torch.long), short, 6)


def test_decode_yields_one_column_per_step_and_restores_mode():
    torch.manual_seed(0)
    m = GPT2(tiny_config(dropout=0.5)).train()
    steps = list(decode(m, torch.tensor([[1, 2]]), 7, GREEDY))
    assert len(steps) == 7 and all(s.shape == (1, 1) for s in steps)
    assert m.training
    m.eval()
    assert torch.equal(torch.cat(steps, 1), naive_greedy(m, torch.tensor([[1, 2]]), 7)[:, 2:])


class _TorchCalls(TorchFunctionMode):
    """Counts, by name, the torch functions and tensor methods called inside the `with` block."""

    def __init__(self):
        super().__init__()
        self.names = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names[getattr(func, "__name__", repr(func))] += 1
        return func(*args, **(kwargs or {}))


def test_a_cached_decode_step_runs_the_math_and_no_dropout_or_mask():
    """One token through the cache, in eval mode with dropout > 0: per block 2 layer norms, 4
    matmuls, 1 attention kernel, 2 cache writes and 1 GELU, and no dropout call, mask or new
    tensor of zeros (on a CPU every op after a weight read costs tens of microseconds: ch. 8.6)."""
    torch.manual_seed(0)
    model = GPT2(tiny_config(dropout=0.1)).eval()
    L = model.config.n_layers
    cache = KVCache(model, 1, 8)
    with torch.inference_mode():
        next_logits(model, torch.tensor([[1, 2, 3]]), cache, 0)
        with _TorchCalls() as calls:
            next_logits(model, torch.tensor([[4]]), cache, 3)
    n = calls.names
    assert n["linear"] == 4 * L + 1 and n["layer_norm"] == 2 * L + 1  # + lm_head and ln_f
    assert n["scaled_dot_product_attention"] == L and n["copy_"] == 2 * L and n["gelu"] == L
    assert not {"dropout", "ones", "zeros", "tril", "cat"} & set(n), n


# --------------------------------------------------------------------------- the API
def test_generate_ids_stops_at_eos_and_pads(tiny):
    idx = torch.tensor([[1, 2, 3], [7, 8, 9]])
    greedy = generate_ids(tiny, idx, 6, settings=GREEDY)
    eos = greedy[0, 3].item()
    out = generate_ids(tiny, idx, 6, settings=GREEDY, eos_id=eos)
    assert (out[0, 3:] == eos).all()
    row1 = greedy[1, 3:].tolist()
    stop = row1.index(eos) + 1 if eos in row1 else 6
    assert torch.equal(out[1, 3:3 + stop], greedy[1, 3:3 + stop])


def test_stream_text_joins_to_generate(tiny):
    tok = CharTokenizer()
    text = tiny.generate("Hello", max_length=30, temperature=1.0, seed=7, tokenizer=tok, top_p=0.95)
    pieces = list(stream_text(tiny, "Hello", 30, tok, settings=SamplingSettings(top_p=0.95),
                              generator=torch.Generator().manual_seed(7)))
    assert "Hello" + "".join(pieces) == text
    assert len(pieces) >= 1


def test_stream_text_holds_split_characters(monkeypatch):
    """GPT-2's byte-level tokens can split a character: no piece ends in a replacement char."""
    class ByteTokenizer:
        eot_token = None

        def encode(self, text):
            return list(text.encode())

        def decode(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")

    import gpt2scratch.generation as gen

    def fake_decode(model, idx, n, **kw):  # the bytes of "é" (0xC3 0xA9), one per step
        for byte in [0xC3, 0xA9] * (n // 2):
            yield torch.tensor([[byte]])

    monkeypatch.setattr(gen, "decode", fake_decode)
    m = GPT2(GPT2Config(vocab_size=256, context_length=16, d_model=16, n_layers=1, n_heads=2))
    pieces = list(stream_text(m, "a", 8, ByteTokenizer(), settings=GREEDY))
    assert "".join(pieces) == "éééé" and not any(p.endswith("\ufffd") for p in pieces)
    assert len(pieces) == 4


def test_brief_call_and_top_p():
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32))
    text = model.generate("Justice is served when", max_length=100, temperature=0.8)
    assert isinstance(text, str) and text.startswith("Justice is served when")
    a = model.generate("Justice is served when", max_length=100, temperature=0.8, top_p=0.9, seed=1)
    assert a == model.generate("Justice is served when", max_length=100, temperature=0.8, top_p=0.9,
                               seed=1, use_cache=False)


# The sampling flags' and prompts' bad values: tests/test_bad_inputs.py


def test_a_tensor_prompt_accepts_length_zero(tiny):  # a text prompt refuses it: test_bad_inputs.py
    idx = torch.tensor([[1, 2]])
    assert torch.equal(tiny.generate(idx, 0), idx)  # a tensor prompt still accepts 0
    assert torch.equal(tiny.generate(idx, max_length=0), idx)


# --------------------------------------------------------------------------- the CLI


def test_cli_generate_top_p_no_cache_and_stream(tmp_path, capsys):
    from gpt2scratch.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = GPT2(GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1))
    save_checkpoint(tmp_path / "ck", model)
    base = ["generate", "--checkpoint", str(tmp_path / "ck"), "Hello", "--max-length", "20",
            "--seed", "3", "--top-p", "0.9", "--temperature", "0.9"]
    expected = model.generate("Hello", max_length=20, temperature=0.9, top_p=0.9, seed=3)
    for extra in ([], ["--no-cache"], ["--stream"], ["--stream", "--no-cache"]):
        code, out, err = _cli(base + extra, capsys)
        assert code == 0 and out.rstrip("\n") == expected, (extra, err)
    min_p = ["--min-p", "0.3", "--min-tokens-to-keep", "2"]  # chapter 8's newest knobs
    expected = model.generate("Hello", max_length=20, temperature=0.9, top_p=0.9, seed=3, min_p=0.3,
                              min_tokens_to_keep=2)
    for extra in ([], ["--stream"]):
        code, out, err = _cli(base + min_p + extra, capsys)
        assert code == 0 and out.rstrip("\n") == expected, (extra, err)


# --top-p out of range: tests/test_bad_inputs.py


# --------------------------------------------------------------------------- static shapes, bench
@pytest.mark.parametrize("settings_", [dict(temperature=0), dict(temperature=1.0, top_k=30, top_p=0.9)])
def test_static_decoder_matches_generate(tiny, settings_):
    """The CUDA-graph decoder's static path, run eagerly on the CPU, gives generate's tokens."""
    from gpt2scratch.generation import StaticDecoder

    dec = StaticDecoder(tiny, batch_size=2, graph=False)
    idx = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(4))
    for _ in range(2):  # reusable: a second run overwrites the cache
        out = dec.generate(idx, 12, SamplingSettings(**settings_), torch.Generator().manual_seed(9))
        assert torch.equal(out, tiny.generate(idx, 12, seed=9, **settings_))
    with pytest.raises(ValueError, match="exceed the cache"):
        dec.generate(idx, 13)


@needs_cpp_compiler
def test_compiled_static_decoder_matches_generate(tiny):
    """compile=True (torch.compile of the one-token step, the CPU's stand-in for the CUDA
    graph) gives generate's tokens, greedy and sampled, and refuses a graph as well."""
    from gpt2scratch.generation import StaticDecoder

    dec = StaticDecoder(tiny, batch_size=2, max_len=16, compile=True)
    idx = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(4))
    for settings_ in [dict(temperature=0), dict(temperature=1.0, top_k=30, top_p=0.9)]:
        out = dec.generate(idx, 12, SamplingSettings(**settings_), torch.Generator().manual_seed(9))
        assert torch.equal(out, tiny.generate(idx, 12, seed=9, **settings_))
    with pytest.raises(ValueError, match="pick one"):
        StaticDecoder(tiny, graph=True, compile=True)
    with pytest.raises(TypeError, match="compile"):
        StaticDecoder(tiny, compile="yes")


def test_compile_without_python_headers_is_one_clear_error(tiny, tmp_path, monkeypatch):
    """Where torch.compile cannot build CPU kernels (here: no Python.h), compile=True stops
    before compiling, with the missing piece named; the eager decoder still works."""
    import sysconfig

    from gpt2scratch.generation import StaticDecoder

    from torch._inductor import config

    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    monkeypatch.setattr(config.cpp, "cxx", (shutil.which("true"),))  # a "compiler" is found
    message = compile_unavailable()
    assert message == f"torch.compile needs Python's headers: {tmp_path / 'Python.h'} is missing (python3-dev)"
    with pytest.raises(RuntimeError, match=re.escape(message)):
        StaticDecoder(tiny, compile=True)
    StaticDecoder(tiny, max_len=8).generate(torch.tensor([[1, 2]]), 3)
    monkeypatch.setattr(config.cpp, "cxx", (str(tmp_path / "no-such-c++"),))
    assert "finds no C++ compiler" in compile_unavailable()


def test_bench_generate_json(tmp_path, capsys):
    pytest.importorskip("transformers")
    import json

    from gpt2scratch import bench

    path = tmp_path / "g.json"
    assert bench.main(["generate", "--layers", "1", "--new-tokens", "3", "--prompt-tokens", "2",
                       "--steps", "1", "--warmup", "0", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "greedy continuations identical: True" in out and "of the bandwidth bound" in out
    figures = json.loads(path.read_text())
    row = figures["results"]["fp32"]
    compiled = set() if compile_unavailable() else {"ours static+compiled"}  # else skipped, said
    assert {"no cache", "ours", "HF"} | compiled <= set(row) and row["best_hf"] == "HF"
    assert set(row["skipped"]) == {"ours static+compiled"} - compiled
    assert row["identical"]  # the compiled step's tokens are HF's too
    assert row["weight_bytes"] == 4 * (1 * 12 * 768 * 768 + 50257 * 768)  # one block + lm_head
    assert "per decode step, prefill excluded" in out and set(row["per_step_s"]) == {"ours", "HF"} | compiled
    assert all(t > 0 for t in row["per_step_s"].values())
    assert out.rstrip().splitlines()[-1].startswith("ours/HF tok/s = ")
