"""Check that every chapter's .ipynb and its py:percent twin hold the same cells.

jupytext's own --diff exits 0 even when files differ, so compare (cell_type, source) lists here.
Also check that every code cell of the .ipynb was executed: nbval fails on unrun reference cells.
Exit 1 on any difference, naming the chapter and the first differing cell.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jupytext

from chapters import chapter_notebooks, chapter_sources  # which files are chapters

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"


def cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in notebook.cells if c.cell_type in ("code", "markdown")]


def check(ipynb: Path) -> list[str]:
    problems = []
    py = ipynb.with_suffix(".py")
    if not py.exists():
        return [f"{ipynb.name}: its pair {py.name} is missing"]
    nb = jupytext.read(ipynb)
    left, right = cells(nb), cells(jupytext.read(py))
    if left != right:
        for i, (a, b) in enumerate(zip(left, right)):
            if a != b:
                problems.append(f"{ipynb.name} and {py.name} differ at cell {i}:\n  ipynb: {a[1][:120]!r}\n  py:    {b[1][:120]!r}")
                break
        else:
            problems.append(f"{ipynb.name} has {len(left)} cells but {py.name} has {len(right)}")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None:
            problems.append(f"{ipynb.name}: code cell {i} was never executed (run `make execute`)")
            break
    return problems


def main() -> int:
    notebooks = chapter_notebooks(CHAPTERS)
    orphans = [p for p in chapter_sources(CHAPTERS) if not p.with_suffix(".ipynb").exists()]
    problems = [f"{p.name}: its pair {p.with_suffix('.ipynb').name} is missing" for p in orphans]
    for nb in notebooks:
        problems += check(nb)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("\nFix: edit one side, then `make sync NB=<name>` (py -> ipynb) and `make execute NB=<name>`.", file=sys.stderr)
        return 1
    print(f"{len(notebooks)} chapter pairs agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
