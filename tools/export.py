"""Export `#| export` cells of the chapters into src/gpt2scratch/ (a tiny nbdev-style exporter).

Directives, each on its own line at the top of a code cell:
    #| default_exp tokenizer      the module this notebook exports to (once per notebook)
    #| export                     copy this cell verbatim into the default module
    #| export data                copy this cell into src/gpt2scratch/data.py instead

A module's code comes from exactly one chapter. Usage:
    python tools/export.py           write the modules
    python tools/export.py --check   exit 1 if src/ differs from what the chapters export
"""
from __future__ import annotations

import argparse
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


def collect(chapters: Path = CHAPTERS) -> dict[str, tuple[str, list[str]]]:
    """Map module name -> (notebook name, list of exported cell sources)."""
    modules: dict[str, tuple[str, list[str]]] = {}
    for nb_path in chapter_notebooks(chapters):
        cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        default = None
        for cell in cells:
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
                    parts.append(strip_directives(source))
    return modules


def render(notebook: str, parts: list[str]) -> str:
    return BANNER.format(nb=notebook) + "\n" + "\n\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if src/ is stale instead of writing")
    args = parser.parse_args()

    stale = []
    modules = collect()
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
