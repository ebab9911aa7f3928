"""Export `#| export` cells of the chapters into src/gpt2scratch/ (a tiny nbdev-style exporter).

Directives, each on its own line at the top of a code cell:
    #| default_exp tokenizer      the module this notebook exports to (once per notebook)
    #| export                     copy this cell verbatim into the default module
    #| export data                copy this cell into src/gpt2scratch/data.py instead

Like nbdev, each module gets an `__all__` of its public names (top-level functions, classes and
assignments not starting with `_`, in order; imported names are not its own), and each exported cell
is preceded by `# %% chapters/NN_topic.ipynb cell K`, K its 0-based index among the notebook's cells,
so that a reader of src/ finds the cell to edit.

A module's code comes from exactly one chapter. Usage:
    python tools/export.py           write the modules
    python tools/export.py --check   exit 1 if src/ differs from what the chapters export
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import sys
from pathlib import Path

from chapters import chapter_notebooks  # tools/chapters.py: which files are chapters

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
PACKAGE = ROOT / "src" / "gpt2scratch"
BANNER = '# Generated from chapters/{nb} — edit the notebook, then `make export`. Do not edit by hand.\n'


def directives(source: str) -> list[tuple[str, str]]:
    """The `#| name value` lines at the top of a cell, as (name, value) pairs."""
    found = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        name, _, value = line[2:].strip().partition(" ")
        found.append((name, value.strip()))
    return found


def strip_directives(source: str) -> str:
    lines = source.splitlines()
    while lines and lines[0].startswith("#|"):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


def collect(chapters: Path = CHAPTERS) -> dict[str, tuple[str, list[tuple[int, str]]]]:
    """Map module name -> (notebook name, [(cell index, exported source), ...])."""
    modules: dict[str, tuple[str, list[tuple[int, str]]]] = {}
    for nb_path in chapter_notebooks(chapters):
        cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        default = None
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            for name, value in directives(source):
                if name == "default_exp":
                    default = value
                elif name == "export":
                    module = value or default
                    if not module:
                        sys.exit(f"{nb_path.name}: `#| export` before any `#| default_exp`")
                    owner, parts = modules.setdefault(module, (nb_path.name, []))
                    if owner != nb_path.name:
                        sys.exit(f"module {module}.py is exported by both {owner} and {nb_path.name}; "
                                 "a module's code comes from exactly one chapter")
                    parts.append((index, strip_directives(source)))
    return modules


def public_names(code: str) -> list[str]:
    """Top-level functions, classes and assigned names not starting with `_`, in order of first
    definition; a name that an import binds is not the module's own."""
    tree = ast.parse(code)
    imported = {(alias.asname or alias.name).split(".")[0]
                for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found = [n.id for target in targets for n in ast.walk(target)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        else:
            continue
        names += [n for n in found if not n.startswith("_") and n not in imported and n not in names]
    return names


def all_statement(names: list[str], width: int = 88) -> str:
    """`__all__ = [...]`, packed into lines of at most `width` characters."""
    one_line = f"__all__ = [{', '.join(map(repr, names))}]".replace("'", '"')
    if len(one_line) <= width:
        return one_line
    lines, line = [], "   "
    for name in names:
        item = f' "{name}",'
        if len(line) + len(item) > width:
            lines.append(line)
            line = "   "
        line += item
    return "__all__ = [\n" + "\n".join([*lines, line]) + "\n]"


def with_all(first: str, names: list[str]) -> str:
    """The first exported cell with `__all__` after its docstring and `from __future__` imports
    (the statements that must come first)."""
    lines = first.splitlines()
    head = 0
    for node in ast.parse(first).body:
        is_docstring = (head == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, str))
        if not (is_docstring or (isinstance(node, ast.ImportFrom) and node.module == "__future__")):
            break
        head = node.end_lineno
    before, after = "\n".join(lines[:head]).rstrip("\n"), "\n".join(lines[head:]).strip("\n")
    return "\n\n".join(piece for piece in (before, all_statement(names), after) if piece)


def render(notebook: str, parts: list[tuple[int, str]]) -> str:
    for index, code in parts:
        try:
            ast.parse(code)
        except SyntaxError as err:
            sys.exit(f"chapters/{notebook} cell {index}: the exported code does not parse: {err}")
    names = public_names("\n\n".join(code for _, code in parts))
    codes = [code for _, code in parts]
    if names:
        codes[0] = with_all(codes[0], names)
    cells = [f"# %% chapters/{notebook} cell {index}\n{code}" for (index, _), code in zip(parts, codes)]
    return BANNER.format(nb=notebook) + "\n" + "\n\n\n".join(cells) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if src/ is stale instead of writing")
    args = parser.parse_args(argv)

    stale = []
    modules = collect(CHAPTERS)
    for module, (notebook, parts) in modules.items():
        target = PACKAGE / f"{module}.py"
        text = render(notebook, parts)
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(target)
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(),
                                        f"{target.relative_to(ROOT)} (on disk)", f"from chapters/{notebook}", lineterm="")
            print("\n".join(list(diff)[:40]))
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)} from chapters/{notebook}")
    # A generated module whose chapter no longer exports it is stale too.
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem not in modules and path.read_text(encoding="utf-8").startswith("# Generated from chapters/"):
            if args.check:
                stale.append(path)
                print(f"{path.relative_to(ROOT)} is generated but no chapter exports it any more")
            else:
                path.unlink()
                print(f"removed {path.relative_to(ROOT)}")
    if stale:
        print(f"\nsrc/ is stale in {len(stale)} file(s): run `make export` and commit.", file=sys.stderr)
        return 1
    if args.check:
        print(f"src/ is up to date with the chapters ({len(modules)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
