"""`python -m gpt2scratch eval`: the loss and perplexity of a checkpoint on a text file."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.tokenizer import gpt2_encoding
from cli_run import run_main as run  # tests/cli_run.py

TEXT = "Justice is served when the jury has heard every word of the story. " * 30




@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32))
    save_checkpoint(tmp_path / "ckpt", model)
    (tmp_path / "story.txt").write_text(TEXT, encoding="utf-8")
    return model, tmp_path


def test_eval_scores_every_token_of_every_window(checkpoint, capsys):
    model, tmp = checkpoint
    code, out, err = run(["eval", "--checkpoint", str(tmp / "ckpt"), "--data",
                          str(tmp / "story.txt"), "--batch-size", "3", "--device", "cpu"], capsys)
    assert code == 0, err
    ids = torch.tensor(gpt2_encoding().encode(TEXT))
    n = (len(ids) - 1) // 32  # whole windows of 32 inputs + the shifted targets
    inputs = ids[: n * 32].view(n, 32)
    targets = ids[1 : n * 32 + 1].view(n, 32)
    with torch.no_grad():
        expected = F.cross_entropy(model.eval()(inputs).flatten(0, 1), targets.flatten()).item()
    assert f"{n:,} windows of 32 tokens" in out
    # Compared with a tolerance: the last printed digit depends on the CPU's summation order.
    loss = float(re.search(r"loss (\d+\.\d+)", out)[1])
    perplexity = float(re.search(r"perplexity ([\d,]+\.\d+)", out)[1].replace(",", ""))
    assert loss == pytest.approx(expected, abs=2e-4)
    assert perplexity == pytest.approx(math.exp(expected), rel=2e-4)


# eval's bad input (a missing file, a long context, a short text, no model): tests/test_bad_inputs.py
