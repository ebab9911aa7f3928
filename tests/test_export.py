"""tools/export.py: `__all__` and the `# %% chapters/NN_topic.ipynb cell K` back-references, on a
synthetic chapter and on the real src/, and `--check` on a stale module."""
from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

import export  # tools/export.py (tools/ is on pytest's pythonpath)

BACKREF = re.compile(r"^# %% chapters/(?P<nb>\S+\.ipynb) cell (?P<index>\d+)$", re.MULTILINE)


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def code(text: str) -> dict:
    return {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], "source": text}


DEMO = [
    md("# Chapter 1 — Demo"),                                                              # cell 0
    code("#| default_exp demo\nimport math"),                                              # cell 1
    code('#| export\n"""A demo module."""\nfrom __future__ import annotations\n\nimport math\n'
         "from os import path as osp\n\nPI2: float = 2 * math.pi\n_SECRET = 1"),          # cell 2
    md("Some prose."),                                                                     # cell 3
    code("area(1.0)  # not exported"),                                                     # cell 4
    code("#| export\ndef area(r):\n    return PI2 * r * r\n\n\ndef _helper():\n    pass\n\n\n"
         "LOW, HIGH = 0, 1\nosp = None  # rebinds an imported name: not the module's own"),  # cell 5
    code("#| export other\nclass Thing:\n    inner = 3"),                                  # cell 6
    code("#| export\nasync def later():\n    pass\n\n\nPI2 = 6.28  # a second definition"),  # cell 7
]


@pytest.fixture
def demo(tmp_path):
    """A chapters/ folder with one notebook that exports to `demo` and `other`."""
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    nb = {"cells": DEMO, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (chapters / "01_demo.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    return chapters


def test_collect_keeps_each_cell_index(demo):
    modules = export.collect(demo)
    assert set(modules) == {"demo", "other"}
    notebook, parts = modules["demo"]
    assert notebook == "01_demo.ipynb" and [index for index, _ in parts] == [2, 5, 7]
    assert parts[1][1].startswith("def area(r):")  # the directive line is gone
    assert modules["other"] == ("01_demo.ipynb", [(6, "class Thing:\n    inner = 3")])


def test_public_names_in_order_without_private_or_imported_names():
    source = "\n\n".join(export.strip_directives(cell["source"]) for cell in DEMO
                           if cell["source"].startswith("#| export\n"))  # the cells of `demo`
    assert export.public_names(source) == ["PI2", "area", "LOW", "HIGH", "later"]
    assert export.public_names("import numpy.linalg\nnumpy = 1\nfrom a import b as c\nc = 2\nd = 3") == ["d"]
    assert export.public_names("if True:\n    hidden = 1\nfor i in range(2):\n    pass") == []


def test_render_writes_all_and_back_references(demo):
    notebook, parts = export.collect(demo)["demo"]
    text = export.render(notebook, parts)
    lines = text.splitlines()
    assert lines[0] == export.BANNER.format(nb="01_demo.ipynb").rstrip("\n")
    assert lines[2] == "# %% chapters/01_demo.ipynb cell 2"
    assert [(m["nb"], int(m["index"])) for m in BACKREF.finditer(text)] == [
        ("01_demo.ipynb", 2), ("01_demo.ipynb", 5), ("01_demo.ipynb", 7)]
    # each back-reference sits right above the first line of that cell's code
    for match in BACKREF.finditer(text):
        first_line = DEMO[int(match["index"])]["source"].split("\n")[1]
        assert text[match.end() + 1:].startswith(first_line + "\n"), first_line
    # __all__ comes after the docstring and the __future__ import, which must stay first
    assert lines[3:7] == ['"""A demo module."""', "from __future__ import annotations", "",
                          '__all__ = ["PI2", "area", "LOW", "HIGH", "later"]']
    namespace: dict = {}
    exec(compile(text, "demo.py", "exec"), namespace)
    assert namespace["__doc__"] == "A demo module."
    assert namespace["__all__"] == ["PI2", "area", "LOW", "HIGH", "later"]
    assert all(name in namespace for name in namespace["__all__"])


def test_a_cell_without_docstring_gets_all_on_top_and_no_names_no_all():
    text = export.render("02_x.ipynb", [(4, "import os\n\nX = os.sep")])
    assert text.splitlines()[2:5] == ["# %% chapters/02_x.ipynb cell 4", '__all__ = ["X"]', ""]
    assert "__all__" not in export.render("02_x.ipynb", [(4, "import os")])


def test_long_all_is_wrapped_at_88_characters():
    names = [f"function_number_{i}" for i in range(12)]
    statement = export.all_statement(names)
    assert all(len(line) <= 88 for line in statement.splitlines()) and len(statement.splitlines()) > 3
    assert ast.literal_eval(statement.split("=", 1)[1].strip()) == names


def test_a_cell_that_does_not_parse_names_the_cell():
    with pytest.raises(SystemExit, match=r"chapters/02_x.ipynb cell 9: the exported code does not parse"):
        export.render("02_x.ipynb", [(3, "X = 1"), (9, "def broken(:\n    pass")])


def test_check_finds_a_hand_edit_and_an_orphan(demo, tmp_path, monkeypatch, capsys):
    package = tmp_path / "src" / "gpt2scratch"
    package.mkdir(parents=True)
    monkeypatch.setattr(export, "ROOT", tmp_path)
    monkeypatch.setattr(export, "CHAPTERS", demo)
    monkeypatch.setattr(export, "PACKAGE", package)
    assert export.main(["--check"]) == 1  # nothing written yet
    assert export.main([]) == 0 and sorted(p.name for p in package.iterdir()) == ["demo.py", "other.py"]
    assert export.main(["--check"]) == 0
    capsys.readouterr()
    demo_py = package / "demo.py"
    demo_py.write_text(demo_py.read_text().replace("PI2 * r * r", "PI2 * r"), encoding="utf-8")
    (package / "gone.py").write_text(export.BANNER.format(nb="01_demo.ipynb"), encoding="utf-8")
    assert export.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "-    return PI2 * r\n+    return PI2 * r * r" in out.out
    assert "src/gpt2scratch/gone.py is generated but no chapter exports it any more" in out.out
    assert "stale in 2 file(s)" in out.err


def generated_modules() -> list[Path]:
    return sorted(p for p in export.PACKAGE.glob("*.py")
                  if p.read_text(encoding="utf-8").startswith("# Generated from chapters/"))


@pytest.mark.parametrize("path", generated_modules(), ids=lambda p: p.stem)
def test_src_module_points_at_its_cells_and_exports_its_names(path):
    text = path.read_text(encoding="utf-8")
    refs = list(BACKREF.finditer(text))
    notebook = text.splitlines()[0].split("chapters/")[1].split(" ")[0]
    assert refs and {m["nb"] for m in refs} == {notebook}
    cells = json.loads((export.CHAPTERS / notebook).read_text(encoding="utf-8"))["cells"]
    for match in refs:
        cell = cells[int(match["index"])]
        source = "".join(cell["source"])
        assert cell["cell_type"] == "code" and export.directives(source), match.group()
        assert text[match.end() + 1:].startswith(export.strip_directives(source).splitlines()[0])
    module = importlib.import_module(f"gpt2scratch.{path.stem}")
    assert module.__all__ and len(set(module.__all__)) == len(module.__all__)
    imported = {(alias.asname or alias.name).split(".")[0] for node in ast.parse(text).body
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    for name in module.__all__:
        assert hasattr(module, name) and not name.startswith("_") and name not in imported, name
    defined = [node.name for node in ast.parse(text).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert [n for n in defined if not n.startswith("_")] == [n for n in module.__all__ if n in defined]
