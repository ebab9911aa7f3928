"""The built book, page by page, in headless Chromium (`make book-test` builds it first).

For the root page and every chapter in book.yml's toc, in order:
- the page renders: a title, an <h1>, a non-empty article; every image output of the notebook is an
  <img> in the page, and every image has loaded;
- the sidebar lists every chapter of book.yml, in book.yml's order;
- no `#|` exporter line, `NBVAL` marker, stderr block, machine path or progress bar is visible,
  and a cell's prints are one block (a training log is not one box per line);
- exercise solutions are folded: every code cell of the Exercises section is a `hide-cell` cell
  whose code and outputs stay hidden until clicked (one click is tried), and "Solution"
  admonitions are closed dropdowns; a `hide-input` cell (figure code) hides its code only;
- every relative link resolves to a file of the site, and its #fragment to an id on that page;
- the browser console shows no severe error.
One screenshot per page goes to _build/screenshots/ (a build artefact, not committed).

Without Chromium, chromedriver or selenium the module skips with a one-line reason; with CI=true in
the environment it fails instead, because CI must run it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml  # a dependency of jupyter-book, so present wherever the book builds
from book_check import MACHINE_PATH  # tools/ (on pytest's pythonpath)
from chapters import chapter_notebooks

import harness  # tests/browser/harness.py

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHAPTERS_DIR = ROOT / "chapters"


@pytest.fixture(scope="module", autouse=True)
def _browser_and_book():
    """Skip every test here without Chromium or the built book; fail instead under CI=true."""
    reason = harness.unavailable_reason()
    if reason is None and not (SITE / "intro.html").exists() and not (SITE / "index.html").exists():
        reason = "the book is not built; `make book-test` builds it, then runs this test"
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the browser test, but {reason}", pytrace=False)
        pytest.skip(reason)


TOC = yaml.safe_load((ROOT / "book.yml").read_text(encoding="utf-8"))["toc"]
ROOT_PAGE: str = TOC["root"]
CHAPTERS: list[str] = list(TOC["chapters"])
PAGES = [ROOT_PAGE, *CHAPTERS]

PROGRESS_BAR = re.compile(r"\d+%\||(it/s|s/it)\]")
TOOL_LINE = re.compile(r"^\s*#\|", re.MULTILINE)
# pydata-sphinx-theme logs this on a reader's first visit, before a colour mode is stored; harmless.
THEME_FIRST_VISIT = "Got invalid theme mode: . Resetting to auto."

# Everything the checks need from one page, in one round trip.
PAGE_FACTS = """
const article = document.querySelector('article') || document.querySelector('main');
const cells = Array.from(article.querySelectorAll('.cell_input, .cell_output'));
const body = el => Array.from(el.children).filter(c => !c.classList.contains('admonition-title'));
const shown = (cell, css) => Array.from(cell.querySelectorAll(css)).some(e => e.checkVisibility());
const exercises = Array.from(article.querySelectorAll('section')).find(s => {
  const h = s.querySelector(':scope > h2');
  return h && h.textContent.trim().startsWith('Exercises');
});
return {
  title: document.title,
  h1: (article.querySelector('h1') || {innerText: ''}).innerText.trim(),
  text: article.innerText,
  cellText: cells.map(c => c.textContent).join('\\n'),
  outputText: Array.from(article.querySelectorAll('.cell_output')).map(c => c.textContent).join('\\n'),
  stderr: article.querySelectorAll('.cell_output .stderr').length,
  // stdout boxes per cell: book.yml's nb_merge_streams makes a cell's prints one block
  streamBoxes: Array.from(article.querySelectorAll('.cell_output')).map(o =>
      o.querySelectorAll('.output.stream').length),
  images: Array.from(article.querySelectorAll('img')).map(i => [i.getAttribute('src'), i.naturalWidth]),
  home: Array.from(document.querySelectorAll('.bd-sidenav__home-link a')).map(a => a.getAttribute('href')),
  toc: Array.from(document.querySelectorAll(
      'nav.bd-docs-nav ul.bd-sidenav:not(.bd-sidenav__home-link) li.toctree-l1 > a'))
      .map(a => a.getAttribute('href')),
  folded: Array.from(article.querySelectorAll('.cell.tag_hide-input')).map(c => {
      const d = c.querySelector('details');
      return [!!d && !d.open, c.querySelector('.cell_input').checkVisibility()];
  }),
  foldedWhole: Array.from(article.querySelectorAll('.cell.tag_hide-cell')).map(c => {
      const d = c.querySelector('details');
      return [!!d && !d.open, shown(c, '.cell_input'), shown(c, '.cell_output')];
  }),
  // The code cells of the Exercises section: the solutions.
  exercises: (exercises ? Array.from(exercises.querySelectorAll('.cell')) : []).map(c =>
      [c.classList.contains('tag_hide-cell'), shown(c, '.cell_input'), shown(c, '.cell_output'),
       (c.querySelector('.cell_input') || {textContent: ''}).textContent.trim().slice(0, 60)]),
  solutions: Array.from(article.querySelectorAll('.admonition')).filter(a =>
      (a.querySelector('.admonition-title') || {innerText: ''}).innerText.trim().startsWith('Solution'))
      .map(a => [a.classList.contains('dropdown'),
                 body(a).reduce((h, c) => h + c.getBoundingClientRect().height, 0)]),
  links: Array.from(document.querySelectorAll('a[href], link[href], img[src], script[src]')).map(e =>
      [e.getAttribute('href') ?? e.getAttribute('src'),
       (typeof e.href === 'string' && e.href) || e.src || '']),
};
"""

# After a click on the first hide-cell cell: [its code is shown, its output is shown (or it has none)].
UNFOLDED = """
const cell = document.querySelector('.cell.tag_hide-cell');
const shown = css => Array.from(cell.querySelectorAll(css)).some(e => e.checkVisibility());
return [shown('.cell_input'), !cell.querySelector('.cell_output') || shown('.cell_output')];
"""


def source_facts(page: str) -> tuple[int, int, int]:
    """(image outputs, hide-input code cells, hide-cell code cells) in the page's source in chapters/."""
    notebook = CHAPTERS_DIR / f"{page}.ipynb"
    if not notebook.exists():
        source = CHAPTERS_DIR / f"{page}.md"
        if not source.exists():  # generated when the book is built (the API reference)
            source = ROOT / "_build" / "pages" / f"{page}.md"
        markdown = source.read_text(encoding="utf-8")
        return len(re.findall(r"!\[[^\]]*\]\(|<img\b", markdown)), 0, 0
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    images = sum(any(k.startswith("image/") for k in out.get("data", {}))
                 for cell in cells for out in cell.get("outputs", []))
    tags = [cell.get("metadata", {}).get("tags", []) for cell in cells if cell["cell_type"] == "code"]
    return images, sum("hide-input" in t for t in tags), sum("hide-cell" in t for t in tags)


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


@cache
def ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def broken_link(raw: str, absolute: str, base_url: str) -> str | None:
    """Why a relative link of the site is broken, or None when it resolves (or is not relative)."""
    if not raw or raw == "#" or raw.startswith("//") or re.match(r"^[a-zA-Z][\w+.-]*:", raw):
        return None  # empty, a bare '#' button, or another scheme/host: not ours to resolve offline
    if not absolute.startswith(base_url):
        return f"link {raw!r} leaves the site ({absolute})"
    parts = urlsplit(absolute)
    relative = unquote(parts.path[len(urlsplit(base_url).path):])
    target = SITE / relative
    if not relative or relative.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        return f"broken link {raw!r}: {relative or 'index.html'} does not exist"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in ids_of(target):
        return f"broken link {raw!r}: {target.name} has no id {fragment!r}"
    return None


def toc_name(href: str, page: str) -> str:
    return page if href in ("", "#") or href.startswith("#") else href.split("#")[0].removesuffix(".html")


@pytest.fixture(scope="module")
def book():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # no stale pictures of pages that are gone
    with harness.browser(SITE) as b:
        yield b


def test_every_chapter_is_in_the_toc():
    on_disk = [p.stem for p in chapter_notebooks(CHAPTERS_DIR)]
    missing = [name for name in on_disk if name not in CHAPTERS]
    assert not missing, f"chapters/ has {missing}, but book.yml's toc does not list them"
    assert len(set(CHAPTERS)) == len(CHAPTERS), f"book.yml lists a chapter twice: {CHAPTERS}"


@pytest.mark.parametrize("page", PAGES)
def test_page(book, page):
    book.open_page(f"{page}.html")
    book.screenshot(SCREENSHOTS / f"{page}.png")
    facts = book.js(PAGE_FACTS)
    images, hidden, hidden_whole = source_facts(page)
    problems: list[str] = []

    # It renders, with its figures.
    if not facts["title"].strip() or not facts["h1"]:
        problems.append(f"no title: document.title={facts['title']!r}, h1={facts['h1']!r}")
    if len(facts["text"].strip()) < 200:
        problems.append(f"the article shows only {len(facts['text'].strip())} characters")
    if len(facts["images"]) < images:
        problems.append(f"{len(facts['images'])} <img> in the page, but the notebook has {images} image outputs")
    problems += [f"image {src} did not load" for src, width in facts["images"] if not width]

    # The sidebar lists every chapter, in book.yml's order.
    toc = [toc_name(href, page) for href in facts["toc"]]
    if toc != CHAPTERS:
        problems.append(f"the sidebar lists {toc}, but book.yml's toc is {CHAPTERS}")
    if [toc_name(href, page) for href in facts["home"]] != [ROOT_PAGE]:
        problems.append(f"the sidebar's home link is {facts['home']}, not {ROOT_PAGE}.html")

    # No tool lines, stderr, machine paths or progress bars.
    if TOOL_LINE.search(facts["cellText"]):
        problems.append("a `#|` exporter line is visible in a code cell")
    if "NBVAL" in facts["cellText"]:
        problems.append("an NBVAL marker is visible in a code cell")
    if facts["stderr"]:
        problems.append(f"{facts['stderr']} stderr output block(s) are shown")
    if (boxes := max(facts["streamBoxes"], default=0)) > 1:
        problems.append(f"a cell prints in {boxes} separate boxes (nb_merge_streams makes them one)")
    if found := sorted(set(MACHINE_PATH.findall(facts["outputText"]))):
        problems.append(f"outputs show machine paths: {found[:5]}")
    if bars := PROGRESS_BAR.findall(facts["text"]):
        problems.append(f"{len(bars)} progress-bar fragment(s) are visible")

    # Solutions are folded, and a click unfolds one.
    if len(facts["folded"]) != hidden:
        problems.append(f"{len(facts['folded'])} folded code cells, but the notebook tags {hidden} hide-input")
    problems += [f"hide-input cell {i} is not folded" for i, (closed, shown) in enumerate(facts["folded"])
                 if not closed or shown]
    problems += [f"solution admonition {i} is not a closed dropdown" for i, (dropdown, height)
                 in enumerate(facts["solutions"]) if not dropdown or height > 0]
    if len(facts["foldedWhole"]) != hidden_whole:
        problems.append(f"{len(facts['foldedWhole'])} wholly folded cells, but the notebook tags "
                        f"{hidden_whole} hide-cell")
    problems += [f"hide-cell cell {i} is not folded (closed, code shown, output shown: "
                 f"{closed}, {code}, {output})" for i, (closed, code, output)
                 in enumerate(facts["foldedWhole"]) if not closed or code or output]
    problems += [f"exercise solution cell {i} ({start!r}) is not a hide-cell cell" for i, (whole, _, _, start)
                 in enumerate(facts["exercises"]) if not whole]
    problems += [f"exercise solution cell {i} ({start!r}) shows its {'output' if output else 'code'} "
                 "before it is unfolded" for i, (_, code, output, start) in enumerate(facts["exercises"])
                 if code or output]
    if facts["folded"]:
        book.click(".cell.tag_hide-input details summary")
        if not book.visible(".cell.tag_hide-input .cell_input"):
            problems.append("clicking a folded cell does not show its code")
    if facts["foldedWhole"]:
        book.click(".cell.tag_hide-cell details summary")
        code, output = book.js(UNFOLDED)
        if not (code and output):
            problems.append(f"clicking a wholly folded cell shows its code: {code}, its output: {output}")

    # Links resolve.
    for raw, absolute in sorted(set(map(tuple, facts["links"]))):
        if why := broken_link(raw, absolute, book.base_url):
            problems.append(why)

    # The console stays clean.
    errors = [e for e in book.console_errors() if THEME_FIRST_VISIT not in e]
    problems += [f"console error: {e[:300]}" for e in errors]

    assert not problems, f"{page}.html:\n  " + "\n  ".join(problems)
