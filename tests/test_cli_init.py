"""`generate` and `attention` take `--init NAME_OR_DIR` (pretrained weights), as `train` and
`eval` do: here a tiny Hugging Face folder written by save_pretrained."""
import pytest
import torch

from gpt2scratch import save_pretrained
from gpt2scratch.__main__ import main
from gpt2scratch.model import GPT2, GPT2Config


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32)).eval()
    folder = tmp_path_factory.mktemp("init") / "hf"
    save_pretrained(model, folder)
    return model, folder


def test_generate_init_folder_equals_the_model(hf_folder, capsys):
    model, folder = hf_folder
    argv = ["generate", "--init", str(folder), "Every effort moves", "--max-length", "6",
            "--seed", "2", "--device", "cpu"]
    assert main(argv) == 0
    expected = model.generate("Every effort moves", max_length=6, temperature=0.8, seed=2)
    assert capsys.readouterr().out.rstrip("\n") == expected
    assert main([*argv, "--stream", "--no-cache"]) == 0  # the streaming path loads it too
    assert capsys.readouterr().out.rstrip("\n") == expected


def test_attention_init_folder_writes_the_dashboard(hf_folder, tmp_path, capsys):
    _, folder = hf_folder
    out = tmp_path / "maps.html"
    assert main(["attention", "--init", str(folder), "Every effort moves you", "--out", str(out)]) == 0
    assert "2 layers x 2 heads, 4 tokens" in capsys.readouterr().out
    assert f"Attention maps: {folder}" in out.read_text(encoding="utf-8")


# Both --init and --checkpoint: tests/test_bad_inputs.py
