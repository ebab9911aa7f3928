"""Draw the book's chapter map (chapters/chapter_map.png): what each chapter builds on and needs.

    .venv/bin/python tools/chapter_map.py      rewrite chapters/chapter_map.png

The intro page shows it; README.md has the same map as a table.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "chapter_map.png"

# number: (title, needs, (x, y)); needs: "cpu", "weights" (uses GPT-2's weights when present,
# a stand-in otherwise) or "gpu" (figures from a GPU; runs small on a CPU)
CHAPTERS = {
    "1": ("Tokenization", "cpu", (0, 2)),
    "2": ("Text to tensors", "cpu", (1, 2)),
    "3": ("Attention", "cpu", (2, 2)),
    "4": ("The GPT-2 model", "cpu", (3, 2)),
    "5": ("Training", "cpu", (4, 2)),
    "6": ("Backprop by hand", "cpu", (5, 3)),
    "7": ("Pretrained weights", "weights", (5, 2)),
    "11": ("Scaling up on GPUs", "gpu", (5, 1)),
    "8": ("Sampling, KV cache", "weights", (6, 3)),
    "9": ("LoRA, your domain", "weights", (6, 2)),
    "10": ("Attention dashboards", "weights", (6, 1)),
    "A": ("Engineering notes", "cpu", (2, 0.6)),
}
EDGES = [("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"), ("5", "6"), ("5", "7"), ("5", "11"),
         ("7", "8"), ("7", "9"), ("7", "10")]
COLORS = {"cpu": "#cfe8cf", "weights": "#fde6b0", "gpu": "#f6c6c6"}
LEGEND = {"cpu": "a laptop CPU is enough",
          "weights": "CPU; uses GPT-2's pretrained weights when present (a stand-in otherwise)",
          "gpu": "shows GPU figures; its cells run small on a CPU"}


def draw(path: Path = OUT) -> Path:
    fig, ax = plt.subplots(figsize=(13, 4.6))
    w, h = 0.86, 0.5
    for number, (title, needs, (x, y)) in CHAPTERS.items():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                    facecolor=COLORS[needs], edgecolor="#555"))
        label = f"Appendix {number}" if number.isalpha() else f"Chapter {number}"
        ax.text(x, y + 0.08, label, ha="center", va="center", fontsize=8, color="#444")
        ax.text(x, y - 0.09, title, ha="center", va="center", fontsize=9, weight="bold")
    for a, b in EDGES:
        (xa, ya), (xb, yb) = CHAPTERS[a][2], CHAPTERS[b][2]
        ax.add_patch(FancyArrowPatch((xa + w / 2, ya), (xb - w / 2, yb), arrowstyle="-|>",
                                     mutation_scale=12, color="#777",
                                     connectionstyle="arc3,rad=0.0"))
    ax.text(2, 1.05, "verified data, atomic checkpoints, one error contract: used from chapter 1 on", ha="center", fontsize=8,
            color="#666", style="italic")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=COLORS[k], edgecolor="#555") for k in LEGEND]
    ax.legend(handles, LEGEND.values(), loc="lower right", fontsize=8, frameon=False)
    ax.set_xlim(-0.6, 6.6)
    ax.set_ylim(0.1, 3.5)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(draw())
