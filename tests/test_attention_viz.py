"""Tests for chapter 10's modules, gpt2scratch.attention_heads and gpt2scratch.attention_viz: maps,
head statistics, classification, the HTML dashboard (its data; tests/browser/test_attention_dashboard.py
clicks through it), the widget and the CLI."""
import base64
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2scratch.__main__ import main
from gpt2scratch.attention_heads import (
    THRESHOLDS, attention_maps, classify_heads, head_stats, induction_scores, position_scores,
    repeated_random_tokens,
)
from gpt2scratch.attention_viz import dashboard_html, write_dashboard
from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.model import GPT2
from conftest import tiny_config


def tiny(seed=0, **overrides):
    torch.manual_seed(seed)
    sizes = dict(vocab_size=60, context_length=24, d_model=16, dropout=0.1)
    return GPT2(tiny_config(**{**sizes, **overrides}))


def causal_uniform(T):
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_maps_shape_rows_and_causality(T, seed):
    model = tiny(seed)
    ids = torch.randint(0, 60, (T,), generator=torch.Generator().manual_seed(seed))
    tokens, w = attention_maps(model, ids)
    assert tokens == [f"#{i}" for i in ids.tolist()]
    assert w.shape == (2, 4, T, T) and w.dtype == torch.float32
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, T), atol=1e-5)
    assert (w.triu(1) == 0).all() and (w >= 0).all()


def test_maps_equal_a_hand_walk_and_restore_the_mode():
    model = tiny(dropout=0.5).train()
    ids = torch.arange(10)
    _, w = attention_maps(model, ids)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x = model.wte(ids[None]) + model.wpe(ids)
        for layer, block in enumerate(model.h):
            expected = block.attn.attention_weights(block.ln_1(x))[0]
            torch.testing.assert_close(w[layer], expected)
            x = block(x)
    assert not any(h for h in model.h[0].attn._forward_pre_hooks.values())  # hooks removed


def test_text_goes_through_the_tokenizer():
    class Letters:  # anything with encode / decode
        def encode(self, text):
            return [ord(c) - 97 for c in text]

        def decode(self, ids):
            return "".join(chr(i + 97) for i in ids)

    tokens, w = attention_maps(tiny(), "abcde", Letters())
    assert tokens == list("abcde") and w.shape[-1] == 5


# Bad text, not a GPT2: tests/test_bad_inputs.py


def test_stats_on_hand_made_maps():
    T = 8
    i = torch.arange(1, T).double()
    maps = torch.stack([
        causal_uniform(T),
        torch.diag(torch.ones(T - 1), -1) + torch.diag(torch.tensor([1.0] + [0] * (T - 1))),
        torch.eye(T),
        torch.zeros(T, T).index_fill_(1, torch.tensor([0]), 1.0),
    ])
    s = head_stats(maps)
    torch.testing.assert_close(s["entropy"][0].double(), torch.log(i + 1).mean(), rtol=0, atol=1e-6)
    torch.testing.assert_close(s["rel_entropy"], torch.tensor([1.0, 0, 0, 0]))
    torch.testing.assert_close(s["distance"], torch.tensor([(i / 2).mean().item(), 1.0, 0.0, 4.0]))
    torch.testing.assert_close(s["previous"][1:], torch.tensor([1.0, 0.0, 1 / 7]))
    torch.testing.assert_close(s["first"][1:], torch.tensor([1 / 7, 0.0, 1.0]))
    torch.testing.assert_close(s["previous"][0].double(), (1 / (i + 1)).mean(), rtol=0, atol=1e-6)


def test_stats_keep_leading_dimensions():  # bad shapes: tests/test_bad_inputs.py
    s = head_stats(causal_uniform(5).expand(3, 2, 5, 5))
    assert all(v.shape == (3, 2) for v in s.values())


def test_classification_thresholds():
    scores = {
        "previous": torch.tensor([[THRESHOLDS["previous"], 0.39, 0.0]]),
        "induction": torch.tensor([[0.0, THRESHOLDS["induction"], 0.29]]),
        "position": torch.tensor([[0.95, 0.5, 0.99]]),
        "rel_entropy": torch.tensor([[0.1, 0.5, 0.95]]),
    }
    kinds = classify_heads(scores)
    assert kinds == {"previous-token": [(0, 0)], "induction": [(0, 1)], "positional": [(0, 0)],
                     "near-uniform": [(0, 2)]}
    assert "induction" not in classify_heads({"previous": scores["previous"]})
    assert classify_heads(scores, {"previous": 0.3})["previous-token"] == [(0, 0), (0, 1)]


def test_induction_score_finds_a_hand_made_induction_pattern():
    seq = repeated_random_tokens(5, 60, batch=2, seed=1)
    assert seq.shape == (2, 10) and torch.equal(seq[:, :5], seq[:, 5:])
    model = tiny()
    scores = induction_scores(model, n=8)
    assert scores.shape == (2, 4) and ((scores >= 0) & (scores <= 1)).all()
    # position_scores: a model compared with itself on the same text scores 1
    same = position_scores(model, [1, 2, 3, 4], [1, 2, 3, 4])
    torch.testing.assert_close(same, torch.ones(2, 4))  # texts of two lengths: test_bad_inputs.py


def _data(page):
    return json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])


def test_dashboard_is_self_contained_and_compact():
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(12, 12, 64, 64).masked_fill(
        torch.ones(64, 64, dtype=torch.bool).triu(1), -math.inf), -1)
    tokens = [f"t{i}" for i in range(64)]
    page = dashboard_html(tokens, w, head_stats(w), "big")
    assert len(page.encode()) < 5e6
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert page.count("href=") == 1 and 'href="data:,"' in page  # the inline favicon
    data = _data(page)
    q = torch.frombuffer(bytearray(base64.b64decode(data["weights"])), dtype=torch.uint8)
    decoded = q.float().reshape(w.shape) / 255
    assert (decoded - w).abs().max() <= 1 / 510 + 1e-6
    assert data["layers"] == 12 and data["heads"] == 12 and data["tokens"] == tokens
    assert set(data["stats"]) == {"entropy", "rel_entropy", "distance", "previous", "first"}


def test_dashboard_escapes_tokens():  # maps that do not fit the tokens: test_bad_inputs.py
    w = causal_uniform(3).expand(1, 1, 3, 3)
    page = dashboard_html(["</script>", "$DATA", "<b>"], w, title="<i>t</i>")
    assert page.count("</script>") == 2 and "<i>t</i>" not in page
    assert _data(page)["tokens"] == ["</script>", "$DATA", "<b>"]
    dashboard_html(["only"], torch.ones(1, 1, 1, 1))  # a one-token text still has a page


def test_write_dashboard(tmp_path):
    w = causal_uniform(4).expand(2, 3, 4, 4)
    path = write_dashboard(tmp_path / "sub" / "a.html", list("abcd"), w)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["a.html"]  # no temp file left


def test_widget_updates_in_place():
    pytest.importorskip("ipywidgets")
    from gpt2scratch.attention_viz import attention_widget

    _, w = attention_maps(tiny(), list(range(12)))
    view = attention_widget([str(i) for i in range(12)], w)
    first = view.image.value
    view.layer.value = 1
    assert view.image.value != first
    second = view.image.value
    view.query.value = 3
    assert view.image.value != second and "query 3" in view.children[-1].value


def test_cli_writes_a_dashboard(tmp_path, capsys):
    save_checkpoint(tmp_path / "ck", tiny(vocab_size=50257))
    out = tmp_path / "attention.html"
    assert main(["attention", "--checkpoint", str(tmp_path / "ck"), "Every effort moves you",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 layers x 4 heads, 4 tokens" in printed
    assert _data(out.read_text(encoding="utf-8"))["tokens"] == ["Every", " effort", " moves", " you"]


# The CLI's bad input: tests/test_bad_inputs.py
