"""Check what a reader of the published book would trip over (standard library only).

    python tools/book_check.py                  every chapter and appendix notebook
    python tools/book_check.py chapters/X.ipynb just these

It reads the committed notebooks; it runs nothing. One line per problem, naming the notebook and the
0-based cell index, then exit 1; a one-line summary and exit 0 when the book is clean. The rules are
the house style of CONTRIBUTING.md:

- a code cell has at most 60 lines (`#|` exporter lines and `# NBVAL_` markers do not count);
- a notebook has at most 10 code lines wider than 88 characters (the book's code column);
- no stored stderr output (progress bars, warnings): the static book would print every chunk;
- no output shows a machine path (/tmp/..., /work/..., /home/..., /Users/...);
- no cell imports from gpt2scratch a name that the notebook itself defined earlier: the chapter runs
  the code it teaches, and an edit to the definition would otherwise be silently ignored. Where the
  package copy is really needed, a comment containing `reimport-ok: <why>` on the import (or on the
  line just above it) says why;
- the first markdown cell opens with `# Chapter N — Title` (N from the file name, 03_x -> 3), or
  `# Appendix X — Title` for an appendix X_topic;
- a numbered chapter has a `## Summary` heading and an `## Exercises` heading.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from chapters import CHAPTER_STEM, ROOT, chapter_notebooks, is_appendix, label

MAX_CELL_LINES = 60
MAX_WIDTH = 88
MAX_WIDE_LINES = 10
TOOL_LINE = re.compile(r"^\s*(#\|.*|#\s*NBVAL_\w+.*)$")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|Users|private|var/folders)/[^\s'\"<>)\]]*")
REIMPORT_OK = "reimport-ok:"
TITLE = re.compile(r"^# (?P<kind>Chapter|Appendix) (?P<label>\S+) — (?P<title>\S.*)$")
SUMMARY = re.compile(r"^##\s+Summary\b")
EXERCISES = re.compile(r"^##\s+Exercises\b")
PACKAGE = "gpt2scratch"


@dataclass(frozen=True)
class Problem:
    notebook: str
    cell: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.notebook} cell {self.cell}" if self.cell is not None else self.notebook
        return f"{where}: {self.message}"


def text_of(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def package_modules(root: Path = ROOT) -> set[str]:
    """Names of gpt2scratch's modules, so `from gpt2scratch import model` counts as a module alias."""
    return {p.stem for p in (root / "src" / PACKAGE).glob("*.py")}


# --- definitions and re-imports -----------------------------------------------------------------


def parse_cell(source: str) -> ast.Module | None:
    """The cell as Python, with IPython magics and shell lines blanked (line numbers stay)."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def top_level_definitions(body: list[ast.stmt]) -> dict[str, int]:
    """Names a cell binds at top level by def, class or assignment -> first line that binds them.

    Descends into if/for/while/with/try blocks, not into functions or classes.
    """
    found: dict[str, int] = {}

    def bind(name: str, line: int) -> None:
        found.setdefault(name, line)

    def targets(node: ast.AST, line: int) -> None:
        if isinstance(node, ast.Name):
            bind(node.id, line)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element, line)
        elif isinstance(node, ast.Starred):
            targets(node.value, line)

    def walk(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bind(node.name, node.lineno)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    targets(target, node.lineno)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                targets(node.target, node.lineno)
            for field in ("body", "orelse", "finalbody"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    walk(getattr(node, field, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                walk(handler.body)

    walk(body)
    return found


def is_package(module: str | None) -> bool:
    return module == PACKAGE or (module or "").startswith(PACKAGE + ".")


def package_uses(tree: ast.Module, modules: set[str]) -> list[tuple[str, int, int]]:
    """(name, first line, last line) for each name this cell takes from the package.

    Covers `from gpt2scratch.x import Name` and attribute access through a module alias, such as
    `gpt2scratch.x.Name` or `tok.Name` after `import gpt2scratch.tokenizer as tok`.
    """
    uses: list[tuple[str, int, int]] = []
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and is_package(node.module):
            for alias in node.names:
                if node.module == PACKAGE and alias.name in modules:
                    aliases.add(alias.asname or alias.name)
                else:
                    uses.append((alias.name, node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if is_package(alias.name):
                    aliases.add(alias.asname or alias.name.split(".")[0])
    if aliases:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in aliases:
                    uses.append((node.attr, node.lineno, node.end_lineno or node.lineno))
    return uses


def excused(lines: list[str], first: int, last: int) -> bool:
    """A `reimport-ok:` comment on the statement's lines or on the line just above (1-based)."""
    window = lines[max(first - 2, 0) : last]
    return any(REIMPORT_OK in line for line in window)


# --- the checks ---------------------------------------------------------------------------------


def check_notebook(path: Path, modules: set[str] | None = None) -> list[Problem]:
    path = Path(path)
    name = path.name
    modules = package_modules() if modules is None else modules
    problems: list[Problem] = []
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError) as error:
        return [Problem(name, None, f"cannot read the notebook: {error}")]

    defined: dict[str, int] = {}  # name -> index of the cell that first defined it
    wide: dict[int, int] = {}  # cell index -> number of wide lines
    headings: list[str] = []
    first_markdown: tuple[int, str] | None = None
    for index, cell in enumerate(cells):
        source = text_of(cell.get("source"))
        kind = cell.get("cell_type")
        if kind == "markdown":
            if first_markdown is None:
                first_markdown = (index, source)
            headings += [line.strip() for line in source.splitlines() if line.startswith("#")]
            continue
        if kind != "code":
            continue
        lines = source.splitlines()
        shown = [line for line in lines if not TOOL_LINE.match(line)]
        if len(shown) > MAX_CELL_LINES:
            problems.append(Problem(name, index, f"code cell has {len(shown)} lines (at most "
                                    f"{MAX_CELL_LINES}); split it into steps with prose between them"))
        if n_wide := sum(len(line) > MAX_WIDTH for line in shown):
            wide[index] = n_wide

        tree = parse_cell(source)
        if tree is not None:
            here = top_level_definitions(tree.body)
            for used, first, last in package_uses(tree, modules):
                earlier = used in defined or (used in here and here[used] < first)
                if earlier and not excused(lines, first, last):
                    where = f"cell {defined[used]}" if used in defined else "this cell"
                    problems.append(Problem(
                        name, index, f"re-imports {used!r} from {PACKAGE}, but {where} defined it: "
                        f"use the chapter's own definition (or say why with a `# {REIMPORT_OK} ...` "
                        "comment on the import)"))
            for defined_name in here:
                defined.setdefault(defined_name, index)

        stderr = 0
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                stderr += 1
            for found in sorted(set(MACHINE_PATH.findall(output_text(output)))):
                problems.append(Problem(name, index, f"output shows the machine path {found!r}"))
        if stderr:
            problems.append(Problem(name, index, f"{stderr} stored stderr output(s) (progress bars or "
                                    "warnings): store outputs with them off"))

    if sum(wide.values()) > MAX_WIDE_LINES:
        worst = sorted(wide.items(), key=lambda item: (-item[1], item[0]))[:8]
        cells_text = ", ".join(f"{index} ({n})" for index, n in worst)
        more = ", ..." if len(wide) > len(worst) else ""
        problems.append(Problem(name, None, f"{sum(wide.values())} code lines wider than {MAX_WIDTH} "
                                f"characters (at most {MAX_WIDE_LINES}); cells (lines): {cells_text}{more}"))

    problems += check_title(path, first_markdown)
    if not is_appendix(path) and CHAPTER_STEM.match(path.stem):
        if not any(SUMMARY.match(h) for h in headings):
            problems.append(Problem(name, None, "no `## Summary` heading"))
        if not any(EXERCISES.match(h) for h in headings):
            problems.append(Problem(name, None, "no `## Exercises` heading"))
    return problems


def output_text(output: dict) -> str:
    """Everything a reader could see of one output, as text (images left out)."""
    if output.get("output_type") == "stream":
        return text_of(output.get("text"))
    if output.get("output_type") == "error":
        return "\n".join([output.get("evalue", ""), *output.get("traceback", [])])
    parts = []
    for mime, value in (output.get("data") or {}).items():
        if not mime.startswith("image/") and isinstance(value, (str, list)):
            parts.append(text_of(value))
    return "\n".join(parts)


def check_title(path: Path, first_markdown: tuple[int, str] | None) -> list[Problem]:
    name = path.name
    if not CHAPTER_STEM.match(path.stem):
        return []
    kind = "Appendix" if is_appendix(path) else "Chapter"
    want = f"# {kind} {label(path)} — Title"
    if first_markdown is None:
        return [Problem(name, None, f"no markdown cell; the first one should open with `{want}`")]
    index, source = first_markdown
    first_line = next((line.strip() for line in source.splitlines() if line.strip()), "")
    match = TITLE.match(first_line)
    if match is None or match["kind"] != kind or match["label"] != label(path):
        return [Problem(name, index, f"title {first_line!r} should have the form `{want}` "
                        "(an em dash between number and title)")]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter and appendix")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or chapter_notebooks()
    if not notebooks:
        print("book_check: no chapter notebooks found under chapters/", file=sys.stderr)
        return 2
    modules = package_modules()
    problems = [p for nb in notebooks for p in check_notebook(nb, modules)]
    for problem in problems:
        print(problem)
    if problems:
        bad = len({p.notebook for p in problems})
        print(f"\nbook_check: {len(problems)} problem(s) in {bad} of {len(notebooks)} notebooks; "
              "the house style is in CONTRIBUTING.md", file=sys.stderr)
        return 1
    print(f"book_check: {len(notebooks)} notebooks OK (cells <= {MAX_CELL_LINES} lines, <= {MAX_WIDE_LINES} "
          f"wide lines, no stderr, no machine paths, no re-imports, titles, summary and exercises)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
