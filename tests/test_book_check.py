"""tools/book_check.py on small synthetic notebooks: each rule fails alone, a clean notebook passes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import book_check  # tools/ (on pytest's pythonpath)
import chapters

MODULES = {"tokenizer", "model", "data"}
CLEAN_END = ["## Summary\n\nWe built it.\n\nNext: [Chapter 4](04_next.ipynb)", "## Exercises\n\n1. Try it."]


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text: str, outputs: list | None = None, tags: list | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": 1, "metadata": meta, "outputs": outputs or [],
            "source": text}


def stream(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def write(tmp_path: Path, name: str, cells: list[dict]) -> Path:
    path = tmp_path / name
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def chapter(tmp_path: Path, *cells: dict, name: str = "03_demo.ipynb", end: bool = True) -> Path:
    body = [md("# Chapter 3 — Demo\n\nIn this chapter you will build a demo."), *cells]
    return write(tmp_path, name, body + ([md(t) for t in CLEAN_END] if end else []))


def problems(path: Path) -> list[str]:
    return [str(p) for p in book_check.check_notebook(path, MODULES)]


def test_clean_chapter_passes(tmp_path):
    path = chapter(
        tmp_path,
        code("#| export\n" + "x = 1\n" * 60 + "# NBVAL_IGNORE_OUTPUT\n",
             outputs=[stream("4 tokens\n"),
                      {"output_type": "display_data", "metadata": {},
                       "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]),
        code("from gpt2scratch.tokenizer import GPT2Tokenizer\nimport gpt2scratch.model as model\n"
             "m = model.GPT2()\n"),
        code("def solution():\n    return 1\n", tags=["hide-input"]),
    )
    assert problems(path) == []
    assert book_check.main([str(path)]) == 0


def test_clean_appendix_needs_no_summary_or_exercises(tmp_path):
    path = write(tmp_path, "B_notes.ipynb", [md("# Appendix B — Notes\n\nPlumbing."), code("x = 1")])
    assert problems(path) == []


def test_long_cell_fails(tmp_path):
    path = chapter(tmp_path, code("x = 1\n" * 61))
    assert problems(path) == [("03_demo.ipynb cell 1: code cell has 61 lines (at most 60); "
                               "split it into steps with prose between them")]


def test_more_than_ten_wide_lines_fail(tmp_path):
    wide = "y = '" + "a" * 90 + "'\n"
    assert problems(chapter(tmp_path, code(wide * 10))) == []
    found = problems(chapter(tmp_path, code(wide * 6), code(wide * 5)))
    assert len(found) == 1
    assert found[0].startswith("03_demo.ipynb: 11 code lines wider than 88 characters")
    assert "cells (lines): 1 (6), 2 (5)" in found[0]


def test_stderr_output_fails(tmp_path):
    bar = stream(" 45%|████▌     | 9/20 [00:01<00:01,  8.00it/s]", name="stderr")
    found = problems(chapter(tmp_path, code("train()", outputs=[bar, bar])))
    assert found == [("03_demo.ipynb cell 1: 2 stored stderr output(s) (progress bars or warnings): "
                      "store outputs with them off")]


@pytest.mark.parametrize("shown", [
    stream("saved to /tmp/ch05-x1/model.safetensors\n"),
    {"output_type": "execute_result", "execution_count": 1, "metadata": {},
     "data": {"text/plain": "PosixPath('/work/main/chapters')"}},
    {"output_type": "error", "ename": "FileNotFoundError", "evalue": "/home/ann/data.txt", "traceback": []},
    stream("cache in /Users/ann/x and /var/folders/zz/T/y\n"),
])
def test_machine_path_in_output_fails(tmp_path, shown):
    found = problems(chapter(tmp_path, code("f()", outputs=[shown])))
    assert found and all("output shows the machine path" in p for p in found)
    assert all(p.startswith("03_demo.ipynb cell 1:") for p in found)


def test_urls_and_relative_paths_are_not_machine_paths(tmp_path):
    shown = stream("https://example.org/home/x data/the-verdict.txt ./tmp/x PATH\n")
    assert problems(chapter(tmp_path, code("f()", outputs=[shown]))) == []


def test_reimport_of_defined_name_fails(tmp_path):
    path = chapter(tmp_path,
                   code("class SimpleTokenizer:\n    pass\n"),
                   code("from gpt2scratch.tokenizer import SimpleTokenizer\n"))
    assert problems(path) == [(
        "03_demo.ipynb cell 2: re-imports 'SimpleTokenizer' from gpt2scratch, but cell 1 defined it: "
        "use the chapter's own definition (or say why with a `# reimport-ok: ...` comment on the import)")]


@pytest.mark.parametrize("later", [
    "from gpt2scratch import PATTERN",  # an assignment counts as a definition
    "import gpt2scratch.tokenizer as tok\ntok.PATTERN.findall('a b')",
    "from gpt2scratch import tokenizer\nprint(tokenizer.PATTERN)",
    "import gpt2scratch\nprint(gpt2scratch.tokenizer.PATTERN)",
])
def test_reimport_forms_fail(tmp_path, later):
    found = problems(chapter(tmp_path, code("PATTERN = r'\\w+'"), code(later)))
    assert len(found) == 1 and "re-imports 'PATTERN'" in found[0]


def test_reimport_in_the_defining_cell_after_the_definition_fails(tmp_path):
    found = problems(chapter(tmp_path, code("def f():\n    pass\n\nfrom gpt2scratch.model import f\n")))
    assert len(found) == 1 and "but this cell defined it" in found[0]


def test_reimport_with_reason_passes(tmp_path):
    same_line = "from gpt2scratch.model import f  # reimport-ok: pickling needs the package's class"
    line_above = "# reimport-ok: the exported module imports its sibling\nfrom gpt2scratch.model import (\n    f,\n)"
    for later in (same_line, line_above):
        assert problems(chapter(tmp_path, code("def f():\n    pass"), code(later))) == []


def test_importing_earlier_chapters_is_fine(tmp_path):
    path = chapter(tmp_path,
                   code("from gpt2scratch.tokenizer import GPT2Tokenizer\ntok = GPT2Tokenizer()"),
                   code("%timeit tok.encode('a')\n!ls\nfrom gpt2scratch.tokenizer import GPT2Tokenizer"))
    assert problems(path) == []


@pytest.mark.parametrize("title", [
    "# 03 · Demo",
    "# Chapter 3 - Demo",  # a hyphen, not an em dash
    "# Chapter 4 — Demo",  # the file says 3
    "# Appendix 3 — Demo",
    "## Chapter 3 — Demo",
    "Intro text\n# Chapter 3 — Demo",
])
def test_bad_title_fails(tmp_path, title):
    path = write(tmp_path, "03_demo.ipynb", [md(title), *[md(t) for t in CLEAN_END]])
    found = problems(path)
    assert len(found) == 1 and found[0].startswith("03_demo.ipynb cell 0: title ")
    assert "`# Chapter 3 — Title`" in found[0]


def test_appendix_title(tmp_path):
    assert problems(write(tmp_path, "A_eng.ipynb", [md("# Appendix A — Engineering notes")])) == []
    found = problems(write(tmp_path, "A_eng.ipynb", [md("# Appendix B — Engineering notes")]))
    assert len(found) == 1 and "`# Appendix A — Title`" in found[0]
    found = problems(write(tmp_path, "A_eng.ipynb", [md("# Chapter A — Engineering notes")]))
    assert len(found) == 1


@pytest.mark.parametrize("missing, message", [(0, "no `## Summary` heading"), (1, "no `## Exercises` heading")])
def test_missing_summary_or_exercises_fails(tmp_path, missing, message):
    end = [md(t) for i, t in enumerate(CLEAN_END) if i != missing]
    path = write(tmp_path, "03_demo.ipynb", [md("# Chapter 3 — Demo"), *end])
    assert problems(path) == [f"03_demo.ipynb: {message}"]


def test_main_prints_one_line_per_problem_and_exits_1(tmp_path, capsys):
    path = chapter(tmp_path, code("x = 1\n" * 61), end=False)
    assert book_check.main([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(line.startswith("03_demo.ipynb") for line in out)


def test_chapter_names(tmp_path):
    for name in ["01_a.ipynb", "12_b.ipynb", "A_c.ipynb", "B_d.ipynb", "01_a.py", "A_c.py",
                 "intro.md", "1_x.ipynb", "AB_x.ipynb", "a_x.ipynb", "notes.ipynb", "_x.ipynb"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in chapters.chapter_notebooks(tmp_path)] == [
        "01_a.ipynb", "12_b.ipynb", "A_c.ipynb", "B_d.ipynb"]
    assert [p.name for p in chapters.chapter_sources(tmp_path)] == ["01_a.py", "A_c.py"]
    assert chapters.label(Path("03_x.ipynb")) == "3" and chapters.label(Path("A_x.py")) == "A"
    assert chapters.is_appendix(Path("B_d.ipynb")) and not chapters.is_appendix(Path("12_b.ipynb"))
