"""The package installs like a package, offline.

`python -m build --no-isolation` (build is pinned in requirements-dev.txt) makes an sdist and a
wheel from a copy of the project's packaging inputs (pyproject.toml, README.md, LICENSE, src/), so
the build leaves nothing in the working tree. The wheel's declared requirements are the runtime
and extras sections of requirements.txt, by name. Then the wheel goes into a fresh venv with
`--no-deps`, and the venv gets its dependencies from this environment without a download: a
folder of links to exactly the declared runtime requirements and what they require in turn, so
the tests' and the book's packages (pytest, transformers, jupyterlab, matplotlib) are not there.
In that venv, the `gpt2scratch` console command and `python -m gpt2scratch` print the same help,
and both generate the text the model gives in this process from a tiny checkpoint.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement  # a dependency of build

from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config

ROOT = Path(__file__).resolve().parent.parent
PACKAGING_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "src")
SECTION = re.compile(r"^#\s*==\s*(\w+)")
# Present in the project's environment, absent from a venv that has only the runtime closure.
NOT_RUNTIME = ("pytest", "transformers", "jupyterlab", "matplotlib", "huggingface_hub")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_sections(path: Path = ROOT / "requirements.txt") -> dict[str, set[str]]:
    """{section: package names} of requirements.txt, whose sections open with `# == name`."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if heading := SECTION.match(line):
            current = sections.setdefault(heading.group(1), set())
        elif line.strip() and not line.lstrip().startswith("#"):
            if current is None:
                raise AssertionError(f"{path.name}: {line!r} comes before any `# == section` line")
            current.add(normalized(Requirement(line).name))
    return sections


def wheel_requirements(wheel: Path) -> tuple[set[str], set[str]]:
    """(runtime names, extras' names) the wheel declares in its METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode("utf-8").splitlines()
    runtime, extras = set(), set()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.partition(":")[2].strip())
            is_extra = req.marker is not None and "extra" in str(req.marker)
            (extras if is_extra else runtime).add(normalized(req.name))
    return runtime, extras


def runtime_closure(names: set[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that `names` need: themselves and, recursively, their
    requirements whose markers hold here (extras left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = normalized(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in names:
                raise AssertionError(f"declared requirement {name!r} is not installed here") from None
            continue  # an optional dependency this environment does without
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def link_distributions(dists: dict[str, metadata.Distribution], folder: Path) -> None:
    """Symlink each distribution's top-level files and folders (its dist-info too) into folder."""
    folder.mkdir()
    for name, dist in dists.items():
        if not dist.files:
            raise AssertionError(f"{name} has no RECORD: cannot tell which files are its own")
        tops = {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(sdist, wheel) built offline from a copy of the packaging inputs."""
    work = tmp_path_factory.mktemp("build")
    src = work / "project"
    src.mkdir()
    for name in PACKAGING_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"),
                           str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sdists, wheels = sorted((work / "dist").glob("*.tar.gz")), sorted((work / "dist").glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in (work / "dist").iterdir())
    return sdists[0], wheels[0]


def test_wheel_declares_the_runtime_requirements(built):
    _, wheel = built
    sections = requirement_sections()
    assert set(sections) == {"runtime", "extras", "book"}, sorted(sections)
    runtime, extras = wheel_requirements(wheel)
    assert runtime == sections["runtime"], (
        f"pyproject.toml's dependencies {sorted(runtime)} differ from requirements.txt's runtime "
        f"section {sorted(sections['runtime'])}")
    assert extras == sections["extras"], (
        f"pyproject.toml's optional-dependencies {sorted(extras)} differ from requirements.txt's "
        f"extras section {sorted(sections['extras'])}")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "gpt2scratch/__main__.py" in names
    assert not [n for n in names if not n.startswith(("gpt2scratch/", "gpt2scratch-"))], names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "gpt2scratch = gpt2scratch.__main__:main" in zf.read(entry_points).decode()


def test_wheel_installs_and_its_command_generates(built, tmp_path):
    _, wheel = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python, command = venv / "bin" / "python", venv / "bin" / "gpt2scratch"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                           "--no-deps", "--no-index", "--no-cache-dir", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert command.is_file(), f"the wheel installed no console command: {sorted(os.listdir(venv / 'bin'))}"

    # The dependencies, without a download: only the runtime requirements' closure.
    deps = tmp_path / "runtime-deps"
    link_distributions(runtime_closure(requirement_sections()["runtime"]), deps)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(purelib) / "runtime_deps.pth").write_text(f"{deps}\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["COLUMNS"] = "100"

    def run(*argv: str) -> str:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    where = run(str(python), "-c", "import importlib.util as u, gpt2scratch; print(gpt2scratch.__file__); "
                f"print([n for n in {NOT_RUNTIME!r} if u.find_spec(n)])")
    assert where.splitlines() == [str(Path(purelib) / "gpt2scratch" / "__init__.py"), "[]"], where

    help_text = run(str(command), "--help")
    assert help_text == run(str(python), "-m", "gpt2scratch", "--help")
    assert all(name in help_text for name in ("train", "generate", "run", "bench"))

    torch.manual_seed(0)
    model = GPT2(GPT2Config(context_length=16, d_model=8, n_layers=1, n_heads=1))
    save_checkpoint(tmp_path / "ck", model)
    expected = model.generate("Hello", max_length=5, temperature=0.0)
    argv = ["generate", "--checkpoint", str(tmp_path / "ck"), "Hello", "--max-length", "5", "--temperature", "0"]
    assert run(str(command), *argv).rstrip("\n") == expected
    assert run(str(python), "-m", "gpt2scratch", *argv).rstrip("\n") == expected

