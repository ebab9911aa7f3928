"""Chapter 10's HTML attention dashboard in headless Chromium (tests/browser/harness.py).

The page is written by `write_dashboard` for a tiny model and opened from a folder served on
127.0.0.1. Checks: it renders with no console error; it fetches nothing (the Resource Timing list is
empty and no element points at a URL); clicking a grid cell, the layer/head/query selects and a
table row change the map shown; clicking a table header sorts the table.

Marked `browser`, like every test here: `make book-test` runs it, `make test` leaves it out. Without
Chromium, chromedriver or selenium it skips with a one-line reason (it fails under CI=true, where the
browser must be there).
"""
from __future__ import annotations

import os

import pytest
import torch

import harness  # tests/browser/harness.py
from gpt2scratch.attention_heads import attention_maps, head_stats
from gpt2scratch.attention_viz import write_dashboard
from gpt2scratch.model import GPT2, GPT2Config

pytestmark = pytest.mark.browser

PAGE_STATE = """
const d = document.getElementById('detail').dataset;
return {layer: +d.layer, head: +d.head, query: +d.query,
        title: document.getElementById('detail-title').textContent,
        pixels: document.getElementById('map').toDataURL()};
"""


def _browser_or_skip():
    reason = harness.unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the browser test, but {reason}", pytrace=False)
        pytest.skip(reason)


def _dashboard(folder):
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=50, context_length=16, d_model=16, n_layers=3, n_heads=2))
    tokens, weights = attention_maps(model, list(range(10, 22)))
    tokens[3] = "</script><b>x</b>"  # a hostile label must stay text
    write_dashboard(folder / "attention.html", tokens, weights, head_stats(weights), "test")
    return weights


def test_dashboard_in_chromium(tmp_path):
    _browser_or_skip()
    _dashboard(tmp_path)
    with harness.browser(tmp_path) as b:
        b.open_page("attention.html")
        first = b.js(PAGE_STATE)
        assert (first["layer"], first["head"], first["query"]) == (0, 0, 11)
        assert len(b.find_all("#grid canvas")) == 3 * 2
        assert len(b.find_all("#stats tbody tr")) == 3 * 2
        assert b.find_all("b") == []  # the hostile token did not become markup

        b.click('#grid canvas[data-layer="2"][data-head="1"]')
        clicked = b.js(PAGE_STATE)
        assert (clicked["layer"], clicked["head"]) == (2, 1)
        assert clicked["title"].startswith("layer 2, head 1")
        assert clicked["pixels"] != first["pixels"]

        b.js("const s = document.getElementById('head'); s.value = '0';"
             "s.dispatchEvent(new Event('change'));")
        assert b.js(PAGE_STATE)["head"] == 0
        b.js("const s = document.getElementById('query'); s.value = '4';"
             "s.dispatchEvent(new Event('change'));")
        picked = b.js(PAGE_STATE)
        assert picked["query"] == 4 and picked["pixels"] != clicked["pixels"]
        assert b.text("#row").startswith("query 4")

        b.click('#stats th[data-key="previous"]')
        column = [float(v) for v in b.js(
            "return [...document.querySelectorAll('#stats tbody tr')]"
            ".map(r => r.cells[5].textContent);")]
        assert column == sorted(column, reverse=True)
        b.click('#stats tbody tr:last-child')
        last = b.js(PAGE_STATE)
        assert b.js("return document.querySelector('#stats tbody tr:last-child')"
                    ".classList.contains('on');")

        assert b.console_errors(external=True) == []
        assert b.js("return performance.getEntriesByType('resource').length;") == 0
        links = b.js("return [...document.querySelectorAll('[src], [href]')]"
                     ".map(e => e.getAttribute('src') || e.getAttribute('href'));")
        assert links == ["data:,"]  # the favicon is inline too, so Chromium asks for none
        assert last["pixels"].startswith("data:image/png")
