# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 77
"""The course model: what chapters 7-10 call "the chapter-5 model".

Generated from Appendix A of the book. `chapter5_model()` loads the checkpoint that
`make run` saves in runs/verdict, else trains a small stand-in once and caches it.
"""

from __future__ import annotations

__all__ = [
    "COURSE_RUN", "STANDIN", "CourseModel", "chapter5_model", "local_gpt2",
    "pretrained_model",
]

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from gpt2scratch import checkpoint, data  # package modules (a module imports modules)
from gpt2scratch.base_model import train_base
from gpt2scratch.model import GPT2
from gpt2scratch.pretrained import find_pretrained, load_pretrained
from gpt2scratch.quickmode import is_quick
from gpt2scratch.run import TrainSettings, prepare_run
from gpt2scratch.runtime import pick_device
from gpt2scratch.trainer import train_run

COURSE_RUN = Path("runs") / "verdict"  # where `make run` saves the course model
STANDIN = TrainSettings(  # small enough to train in well under a minute on 2 cores
    model="mini", context_length=128, batch_size=4, dropout=0.0, lr=2e-3,
    schedule="cosine", grad_clip=1.0, epochs=4, eval_iters=2,
    progress=False, verbose=False,
)  # fmt: skip


@dataclass
class CourseModel:
    """The chapter-5 model as chapters 7-10 use it, with a label for their outputs."""

    model: GPT2
    label: str
    standin: bool  # not OpenAI's weights, nor make run's model
    folder: Path | None = None  # where it was loaded from, when it is a saved model


# %% chapters/A_engineering.ipynb cell 79
def chapter5_model(device=None) -> CourseModel:
    """`make run`'s model from runs/verdict, else a small stand-in (trained once, cached).

    Quick mode (`make test`) always takes the stand-in: the same model on every machine.
    """
    device = pick_device(device)
    root = data.repo_root() or Path.cwd()
    if not is_quick() and (root / COURSE_RUN / "latest.json").is_file():
        model = checkpoint.load_checkpoint(root / COURSE_RUN, device=device).model
        label = "chapter-5 model (make run: GPT-2 124M, runs/verdict)"
        return CourseModel(model.eval(), label, standin=False)
    recipe = json.dumps(asdict(STANDIN), sort_keys=True).encode()
    cache = root / "runs" / f"chapter5-standin-{hashlib.sha256(recipe).hexdigest()[:8]}"
    if (cache / "latest.json").is_file():
        model = checkpoint.load_checkpoint(cache, device=device).model
    else:
        run = prepare_run(STANDIN, data.verdict_text(), device=device)
        loaders = (run.train_loader, run.val_loader)
        train_run(run.model, *loaders, run.optimizer, STANDIN, scheduler=run.scheduler)
        model = run.model
        checkpoint.save_checkpoint(cache, model)
    label = (
        f"stand-in chapter-5 model ({STANDIN.model} preset, {STANDIN.epochs} epochs; "
        "`make run` trains the real one)"
    )
    return CourseModel(model.eval(), label, standin=True)


# %% chapters/A_engineering.ipynb cell 81
def local_gpt2(device=None) -> GPT2 | None:
    """OpenAI's GPT-2 124M if its weights are on this machine ($GPT2SCRATCH_GPT2_DIR or
    the Hugging Face cache; nothing is downloaded), else None."""
    try:
        config_file, _ = find_pretrained("gpt2", download=False)
    except FileNotFoundError:
        return None
    return load_pretrained(config_file.parent, device=device)


# %% chapters/A_engineering.ipynb cell 102
def pretrained_model(device=None) -> CourseModel:
    """OpenAI's GPT-2 124M if it is on this machine, else the Shakespeare base (trained
    once by `base_model.train_base`; quick mode: its tiny quick recipe)."""
    gpt2 = local_gpt2(device)
    if gpt2 is not None:
        return CourseModel(gpt2.eval(), "GPT-2 124M (OpenAI's weights)", standin=False)
    folder = train_base(device=device)
    model = load_pretrained(folder, device=device)
    layers = model.config.n_layers
    size = f"d_model {model.config.d_model}, {layers} layer{'s' * (layers != 1)}"
    quick = "quick " if is_quick() else ""
    label = f"{quick}Shakespeare base ({size}; Appendix A.8)"
    return CourseModel(model.eval(), label, standin=True, folder=folder)
