"""A chapter in JupyterLab, in headless Chromium: the book's MyST markup renders there too.

JupyterLab starts on a free port of 127.0.0.1 with a token (and `--allow-root` as root), with its
own settings folder: autosave off (the test must never rewrite a chapter), and every cell drawn at
once instead of only those scrolled into view. Chapter 1 opens, and then:
- no markdown cell shows a MyST directive as a fenced block (```{admonition});
- its "Solution" admonitions are HTML dropdowns (jupyterlab-myst, pinned in requirements.txt),
  closed until a reader opens one;
- its exercise solution code cells are collapsed, code and outputs (the cells' `jupyter`
  `source_hidden` / `outputs_hidden` metadata), so no answer shows before the reader asks.
Without Chromium it skips with a one-line reason; under CI=true it fails instead.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import harness  # tests/browser/harness.py

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHAPTER = "chapters/01_tokenizer.ipynb"
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
# What the page shows, in one round trip, once every cell is drawn.
LAB_FACTS = r"""
const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
const markdown = cells.filter(c => c.classList.contains('jp-MarkdownCell'));
const rendered = markdown.map(c => c.querySelector('.jp-RenderedMarkdown, .myst'))
    .filter(Boolean);
return {
  cells: cells.length,
  markdown: markdown.length,
  rendered: rendered.length,
  // A directive left as a code block: JupyterLab's own renderer keeps the info string
  // `{admonition}` as the code's class and shows the body, options included, as text.
  fenced: rendered.filter(r => r.querySelector('pre code[class*="{"]')
      || /\{admonition\}|:class: dropdown/.test(r.innerText)).length,
  solutions: rendered.flatMap(r => Array.from(r.querySelectorAll('details'))).filter(d =>
      (d.querySelector('summary') || {innerText: ''}).innerText.trim().startsWith('Solution'))
      .map(d => [d.open, d.querySelector('summary').getBoundingClientRect().height]),
  collapsed: cells.filter(c => c.classList.contains('jp-CodeCell')).map(c => [
      !!c.querySelector('.jp-InputPlaceholder'), !!c.querySelector('.jp-OutputPlaceholder'),
      Array.from(c.querySelectorAll('.jp-OutputArea-output')).some(o => o.checkVisibility())]),
};
"""


@pytest.fixture(scope="module", autouse=True)
def _browser():
    reason = harness.unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the JupyterLab browser test, but {reason}", pytrace=False)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(base: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 180 s:\n{log.read_text()[-3000:]}")


def solution_code_cells(notebook: Path) -> list[int]:
    """Indices, among the code cells, of the code cells after the `## Exercises` heading."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and any(line.startswith("## Exercises") for line in "".join(c["source"]).splitlines()))
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code"]
    return [k for k, i in enumerate(code) if i > start]


def wait_for(b: harness.Browser, condition: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not b.js(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"JupyterLab never reached: {condition}")
        time.sleep(0.5)


def test_a_chapter_renders_its_admonitions_and_folds_its_solutions(tmp_path):
    settings = tmp_path / "settings"
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values), encoding="utf-8")
    port, token, log = free_port(), secrets.token_hex(16), tmp_path / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--ip", "127.0.0.1", "--port", str(port),
             "--no-browser", *root_flag, "--notebook-dir", str(ROOT),
             f"--IdentityProvider.token={token}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, token, proc, log)
        with harness.browser(timeout=120) as b:
            b.open_page(f"{base}/lab/tree/{CHAPTER}?token={token}")
            wait_for(b, "return document.querySelectorAll('.jp-Notebook .jp-Cell').length > 50")
            wait_for(b, "return Array.from(document.querySelectorAll('.jp-MarkdownCell'))"
                        ".every(c => c.querySelector('.jp-RenderedMarkdown, .myst'))")
            b.screenshot(ROOT / "_build" / "screenshots" / "lab_01_tokenizer.png")
            facts = b.js(LAB_FACTS)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    assert facts["rendered"] == facts["markdown"] > 0, facts
    assert facts["fenced"] == 0, f"{facts['fenced']} markdown cells show ```{{admonition}} as text"
    assert facts["solutions"], "no 'Solution' dropdown rendered: is jupyterlab-myst installed?"
    assert all(not opened and height > 0 for opened, height in facts["solutions"]), facts["solutions"]
    solutions = solution_code_cells(ROOT / CHAPTER)
    assert solutions, f"{CHAPTER} has no code cell after its Exercises heading"
    for k in solutions:
        input_folded, output_folded, output_shown = facts["collapsed"][k]
        assert input_folded and output_folded and not output_shown, (k, facts["collapsed"][k])
