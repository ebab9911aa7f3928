"""Probe runs for the course's pretrained base (Appendix A.8): which size trains best in a fixed time.

Each candidate size is timed over its first steps, given the number of steps that fills the same
wall-clock budget, and trained with `base_model.train_base` (bf16 where `auto` picks it). The
table goes to benchmarks/base_probes.json; Appendix A.8 prints it and `BASE` takes the best size.
Usage: python tools/base_probes.py [BUDGET_SECONDS (default 180)]
"""

import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from gpt2scratch import measure
from gpt2scratch.base_model import BaseRecipe, shakespeare_corpus, train_base
from gpt2scratch.corpus import corpus_loaders
from gpt2scratch.model import GPT2
from gpt2scratch.scale import FastGPT2, FastPath, make_backward
from gpt2scratch.train import train_step

SIZES = [(256, 4, 4), (384, 6, 6), (512, 8, 8), (192, 3, 3)]  # (d_model, n_layers, n_heads)
OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "base_probes.json"


def step_seconds(recipe: BaseRecipe, loader, timed: int = 6) -> float:
    """Seconds per optimizer step on this machine, after 2 warm-up steps."""
    torch.manual_seed(0)
    model = GPT2(recipe.config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    backward = make_backward(FastPath.auto("cpu", precision="auto"), "cpu")
    runner, batches = FastGPT2(model, pad_vocab=False), iter(loader)
    for i in range(2 + timed):
        if i == 2:
            start = time.perf_counter()
        inputs, targets = next(batches)
        train_step(runner, inputs, targets, optimizer, backward=backward, step=i + 1)
    return (time.perf_counter() - start) / timed


def main(budget: float) -> None:
    measure.keep_freed_memory()
    corpus, rows = shakespeare_corpus(), []
    for d_model, n_layers, n_heads in SIZES:
        recipe = BaseRecipe(d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            context_length=256, batch_size=8, steps=10, lr=1e-3, warmup=10,
                            eval_every=10, eval_iters=20, final_eval_batches=40)
        loader, _ = corpus_loaders(corpus, recipe.context_length, recipe.batch_size, 0)
        step_s = step_seconds(recipe, loader)
        steps = int(budget / step_s)
        recipe = replace(recipe, steps=steps, warmup=max(1, steps // 20), eval_every=steps)
        card = json.loads((train_base(recipe, precision="auto") / "card.json").read_text())
        rows.append(dict(
            d_model=d_model, n_layers=n_layers, n_heads=n_heads,
            params_M=sum(p.numel() for p in GPT2(recipe.config()).parameters()) / 1e6,
            step_s=step_s, steps=steps, tokens=steps * recipe.batch_size * recipe.context_length,
            train_s=card["training_seconds"], val=card["val_loss"],
            last_train=card["history"]["train_loss"][-1],
        ))
        print(rows[-1], flush=True)
    meta = dict(budget_s=budget, cpu=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), torch=torch.__version__,
                val="mean loss on the first 40 batches of the held-out plays")
    OUT.write_text(json.dumps(dict(meta=meta, probes=rows), indent=1) + "\n")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 180.0)
