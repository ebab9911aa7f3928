"""Which files under chapters/ are chapters: the one place that says so (standard library only).

A chapter is `NN_topic` (two digits: 01_tokenizer) or an appendix `X_topic` (one capital letter:
A_engineering). Every tool asks here, so the exporter, the pair checker, the book check and the
Makefile (`python3 tools/chapters.py py`) cannot disagree about the appendix.

    python3 tools/chapters.py [ipynb|py]    print the chapter files, one per line, in book order
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
# Numbered chapters first, then appendices: "0" < "9" < "A" in a plain sort, which is book order.
CHAPTER_STEM = re.compile(r"^(?:(?P<number>[0-9]{2})|(?P<letter>[A-Z]))_.+$")


def is_chapter(path: Path) -> bool:
    return CHAPTER_STEM.match(Path(path).stem) is not None


def is_appendix(path: Path) -> bool:
    match = CHAPTER_STEM.match(Path(path).stem)
    return match is not None and match["letter"] is not None


def label(path: Path) -> str:
    """"3" for 03_attention, "A" for A_engineering: what the title says after Chapter/Appendix."""
    match = CHAPTER_STEM.match(Path(path).stem)
    if match is None:
        raise ValueError(f"{Path(path).name} is not a chapter file name (NN_topic or X_topic)")
    return match["letter"] or str(int(match["number"]))


def chapter_files(suffix: str, chapters: Path = CHAPTERS) -> list[Path]:
    """The chapter files with this suffix (".ipynb" or ".py"), sorted in book order."""
    return sorted(p for p in Path(chapters).glob(f"*{suffix}") if p.is_file() and is_chapter(p))


def chapter_notebooks(chapters: Path = CHAPTERS) -> list[Path]:
    return chapter_files(".ipynb", chapters)


def chapter_sources(chapters: Path = CHAPTERS) -> list[Path]:
    """The py:percent twins."""
    return chapter_files(".py", chapters)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "ipynb"
    if kind not in ("ipynb", "py"):
        sys.exit(f"usage: python3 tools/chapters.py [ipynb|py], got {kind!r}")
    for path in chapter_files("." + kind):
        print(path.relative_to(ROOT))
