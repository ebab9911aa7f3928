"""Write the book's API reference page from the package's docstrings.

Every public function and class of every `gpt2scratch` module (the names the module defines
itself, without a leading underscore), with its signature, its docstring, and the chapter it
comes from. `tools/build_book.py` stages the page as `api.md`; nothing is committed.

    python tools/api_page.py            print the page (Markdown, MyST)
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys

HAND_WRITTEN = {"__main__": "the command line", "bench": "the benchmarks' command",
                "bench_common": "what the benchmarks share", "bench_train": "a benchmark",
                "bench_generate": "a benchmark", "bench_precision": "a benchmark",
                "bench_backward": "a benchmark", "quickmode": "quick mode for the chapters"}
# A program, not an API: `python -m gpt2scratch --help` documents it.
SKIP = {"__main__", "cli_train", "cli_use"}
GENERATED = re.compile(r"^# Generated from chapters/(?P<nb>[\w.-]+)\.ipynb")


def chapter_of(module) -> str:
    """'chapters/NN_name' for a generated module, else what the hand-written one is."""
    source = inspect.getsource(module)
    match = GENERATED.match(source)
    if match:
        return f"[{match['nb']}]({match['nb']}.ipynb)"
    return f"hand-written ({HAND_WRITTEN.get(module.__name__.rsplit('.', 1)[-1], 'support code')})"


def public_members(module) -> list[tuple[str, object]]:
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            found.append((name, obj))
    return found


class _Source(str):
    """An annotation kept as source text (`from __future__ import annotations`), unquoted."""

    def __repr__(self) -> str:
        return str(self)


def signature(name: str, obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params = [p.replace(annotation=_Source(p.annotation)) if isinstance(p.annotation, str) else p
              for p in sig.parameters.values()]
    ret = sig.return_annotation
    sig = sig.replace(parameters=params,
                      return_annotation=_Source(ret) if isinstance(ret, str) else ret)
    return f"{name}{sig}"


def entry(name: str, obj, level: str = "###") -> list[str]:
    kind = "class" if inspect.isclass(obj) else "def"
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines = [f"{level} `{name}`", "", "```python", f"{kind} {signature(name, obj)}", "```", "",
             "```text", doc, "```", ""]
    if inspect.isclass(obj):
        for meth_name, meth in vars(obj).items():
            if meth_name.startswith("_") or not inspect.isfunction(meth) or not meth.__doc__:
                continue
            lines += [f"- `{signature(meth_name, meth)}`: {inspect.getdoc(meth).splitlines()[0]}"]
        lines.append("")
    return lines


def api_markdown() -> str:
    import gpt2scratch

    lines = ["# API reference", "",
             "Every public function and class of the `gpt2scratch` package, generated from the "
             "docstrings when the book is built. The names `from gpt2scratch import ...` offers "
             f"directly: {', '.join(f'`{n}`' for n in gpt2scratch.__all__)}. The command line is "
             "documented by `python -m gpt2scratch --help`.", ""]
    for info in sorted(pkgutil.iter_modules(gpt2scratch.__path__), key=lambda m: m.name):
        if info.name in SKIP:
            continue
        module = importlib.import_module(f"gpt2scratch.{info.name}")
        members = public_members(module)
        if not members:
            continue
        summary = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
        lines += [f"## `gpt2scratch.{info.name}`", "", f"From {chapter_of(module)}. {summary}", ""]
        for name, obj in members:
            lines += entry(name, obj)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(api_markdown())
