"""Smoke tests for gpt2scratch.bench: it runs, checks the two models agree, and prints the ratio last.

Timings are never asserted (shared, noisy machines); only the report's shape is.
"""
import re

import pytest

pytest.importorskip("transformers")
from gpt2scratch import bench  # noqa: E402
from gpt2scratch.model import GPT2, GPT2Config  # noqa: E402


def test_train_flops_per_token_124m():
    model_cfg = GPT2Config()
    import torch

    with torch.device("meta"):
        model = GPT2(model_cfg)
    # 6 * (85,056,000 non-embedding + 38,597,376 lm_head) + 12 * 12 layers * 256 * 768
    assert bench.train_flops_per_token(model, 256) == 6 * (85_056_000 + 38_597_376) + 12 * 12 * 256 * 768


def test_bench_train_smoke(capsys):
    assert bench.main(["train", "--layers", "1", "--batch-size", "1", "--context-length", "8",
                       "--steps", "2", "--warmup", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "max |logits(ours) - logits(HF)|" in lines[0]
    assert re.fullmatch(r"ours/HF tok/s = \d+\.\d\d \(median of 2 pairs\)", lines[-1])


def test_bench_generate_smoke(capsys):
    assert bench.main(["generate", "--layers", "1", "--new-tokens", "2", "--prompt-tokens", "3",
                       "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "greedy continuations identical: True" in out
    assert re.search(r"the matmuls alone \(.*\): \d+\.\d tok/s = \d+\.\d% of the bound", out)
    assert re.search(r"of the bandwidth bound and \d+\.\d% of the matmuls-alone rate", out)
    assert re.search(r"ours/HF tok/s = \d+\.\d\d \(median of 1 pairs\)\n$", out)


def test_bench_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench.main(["train", "--steps", "0"])
    with pytest.raises(SystemExit):
        bench.main(["fly"])
