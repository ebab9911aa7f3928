"""The README's and the intro's snippet that loads `make run`'s model (runs/verdict) runs as
written, on a tiny checkpoint saved where `make run` saves, and prints what the model itself
generates with the same settings."""
import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from gpt2scratch import GPT2, GPT2Config
from gpt2scratch.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def loading_snippet(path: Path) -> str:
    blocks = [b for b in PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))
              if 'load_checkpoint("runs/verdict")' in b]
    assert len(blocks) == 1, f"{path.name}: expected one snippet loading runs/verdict, got {len(blocks)}"
    return blocks[0]


@pytest.mark.parametrize("doc", ["README.md", "chapters/intro.md"])
def test_the_runs_verdict_snippet_runs_as_written(doc, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=64))
    save_checkpoint(tmp_path / "runs" / "verdict", model)
    monkeypatch.chdir(tmp_path)  # the snippet's path is relative to the repository's folder
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(loading_snippet(ROOT / doc), doc, "exec"), {})  # noqa: S102 (our own docs)
    expected = model.generate("Justice is served when", max_new_tokens=50, temperature=0.8, seed=123)
    assert out.getvalue() == expected + "\n"
    assert expected.startswith("Justice is served when") and len(expected) > len("Justice is served when")
