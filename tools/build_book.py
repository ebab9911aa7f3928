"""Build the static book with Jupyter Book 1.0.4, driven by book.yml.

1. Write _toc.yml from book.yml's `toc` section (the TOC parser rejects config keys).
2. Stage the pages under _build/pages/: each chapter .ipynb with its committed outputs, minus the
   `#|` exporter directives and `NBVAL_*` markers, which are for tools, not readers, and minus any
   stored stderr stream (progress bars, warnings). `make check` already refuses stderr in the
   committed notebooks; dropping it here too keeps a stray one out of the published pages.
   Cell tags pass through: `hide-cell` folds a cell's code and outputs (exercise solutions),
   `hide-input` its code only (the code behind a figure). book.yml's `nb_merge_streams` makes
   a cell's consecutive prints one block (a training log) rather than one box per flush.
   The API reference page (`api` in the toc) is generated from the package's docstrings.
3. `jupyter-book build _build/pages --config book.yml --toc _toc.yml`; the site is _build/html.
4. Drop repeated inline <script> blocks from each page's <head>. Sphinx 7.4 emits a body-only script
   twice when an extension adds it after the builder starts (sphinx-thebe, sphinx-togglebutton), and
   the second `const THEBE_JS_URL = ...` throws "Identifier 'THEBE_JS_URL' has already been declared"
   in every reader's console. `make book-test` watches the console.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from api_page import api_markdown  # tools/api_page.py: the API reference page
from chapters import chapter_notebooks  # tools/chapters.py: which files are chapters

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
STAGE = ROOT / "_build" / "pages"
TOOL_LINE = re.compile(r"^\s*(#\|.*|#\s*NBVAL_\w+.*)$")
INLINE_SCRIPT = re.compile(r"\n[ \t]*<script>(?P<body>.*?)</script>", re.DOTALL)


def reader_source(source: str) -> str:
    """A cell's source without the lines meant for the exporter and nbval."""
    kept = [line for line in source.splitlines(keepends=True) if not TOOL_LINE.match(line)]
    return "".join(kept).lstrip("\n")


def reader_cell(cell: dict) -> dict | None:
    """The cell as a reader sees it, or None when nothing is left to see."""
    if cell["cell_type"] != "code":
        return cell
    cell["source"] = reader_source("".join(cell["source"]))
    cell["outputs"] = [out for out in cell.get("outputs", [])
                       if not (out.get("output_type") == "stream" and out.get("name") == "stderr")]
    if not cell["source"].strip() and not cell["outputs"]:
        return None  # e.g. a cell that only held `#| default_exp`
    return cell


def stage_notebook(src: Path, dst: Path) -> None:
    nb = json.loads(src.read_text(encoding="utf-8"))
    nb["cells"] = [kept for cell in nb["cells"] if (kept := reader_cell(cell)) is not None]
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def dedupe_inline_scripts(page: str) -> str:
    """The page with each repeated attribute-less inline <script> in its <head> kept once."""
    head_end = page.find("</head>")
    if head_end < 0:
        return page
    seen: set[str] = set()

    def keep_first(match: re.Match) -> str:
        body = match["body"].strip()
        if body in seen:
            return ""
        seen.add(body)
        return match[0]

    return INLINE_SCRIPT.sub(keep_first, page[:head_end]) + page[head_end:]


def main() -> int:
    config = yaml.safe_load((ROOT / "book.yml").read_text(encoding="utf-8"))
    toc = config["toc"]
    unlisted = [nb.name for nb in chapter_notebooks(CHAPTERS) if nb.stem not in toc["chapters"]]
    if unlisted:
        print(f"book.yml's toc does not list {', '.join(unlisted)}: add every chapter and appendix "
              "under toc: chapters, in book order", file=sys.stderr)
        return 1
    toc_entry = {"format": "jb-book", "root": toc["root"], "chapters": [{"file": c} for c in toc["chapters"]]}
    (ROOT / "_toc.yml").write_text("# Generated from book.yml by tools/build_book.py\n" + yaml.safe_dump(toc_entry, sort_keys=False))

    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    for name in [toc["root"], *toc["chapters"]]:
        if (CHAPTERS / f"{name}.ipynb").exists():
            stage_notebook(CHAPTERS / f"{name}.ipynb", STAGE / f"{name}.ipynb")
        elif (CHAPTERS / f"{name}.md").exists():
            shutil.copy(CHAPTERS / f"{name}.md", STAGE / f"{name}.md")
        elif name == "api":  # generated from the package's docstrings (tools/api_page.py)
            (STAGE / "api.md").write_text(api_markdown(), encoding="utf-8")
        else:
            print(f"book.yml lists {name!r}, but chapters/ has neither {name}.ipynb nor {name}.md", file=sys.stderr)
            return 1
    for extra in CHAPTERS.glob("*.png"):
        shutil.copy(extra, STAGE / extra.name)

    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(STAGE), "--config", str(ROOT / "book.yml"), "--toc", str(ROOT / "_toc.yml"),
           "--path-output", str(ROOT), "--warningiserror", "--keep-going"]
    print(" ".join(cmd))
    result = subprocess.run(cmd, cwd=ROOT, check=False)
    for page in (ROOT / "_build" / "html").rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if (fixed := dedupe_inline_scripts(text)) != text:
            page.write_text(fixed, encoding="utf-8")
    if result.returncode == 0:
        print(f"book built: {ROOT / '_build' / 'html' / 'index.html'}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
