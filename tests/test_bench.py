"""Smoke tests for gpt2scratch.bench: it runs, checks the two models agree, and prints the ratio last.

Timings are never asserted (shared, noisy machines); only the report's shape is.
"""
import re

import pytest

pytest.importorskip("transformers")
from gpt2scratch import bench  # noqa: E402

# The FLOPs per token and the peak matmul rate that bench divides by are chapter 11's:
# tests/test_scale.py.


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
