"""gpt2scratch.course (Appendix A): the chapter-5 model that chapters 7-10 use."""
import pytest
import torch

from gpt2scratch import course, data
from gpt2scratch.checkpoint import save_checkpoint
from gpt2scratch.model import GPT2, GPT2Config
from gpt2scratch.pretrained import ENV_DIR, save_pretrained
from gpt2scratch.quickmode import ENV
from gpt2scratch.run import TrainSettings

TINY = TrainSettings(model="tiny", context_length=32, batch_size=2, dropout=0.0, epochs=1,
                     max_steps=2, eval_iters=1, progress=False, verbose=False)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout in tmp_path, a tiny stand-in recipe and a short text: nothing touches runs/."""
    monkeypatch.setattr(data, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(data, "verdict_text", lambda: "It was a story about a painter. " * 100)
    monkeypatch.setattr(course, "STANDIN", TINY)
    return tmp_path


def test_the_stand_in_is_trained_once_then_loaded(checkout, monkeypatch):
    monkeypatch.setenv(ENV, "1")
    first = course.chapter5_model(device="cpu")
    assert first.standin and "tiny preset, 1 epochs" in first.label
    (cache,) = (checkout / "runs").glob("chapter5-standin-*")
    prepare_run = course.prepare_run
    monkeypatch.setattr(course, "prepare_run", lambda *a, **k: pytest.fail("trained again"))
    second = course.chapter5_model(device="cpu")
    pairs = zip(first.model.state_dict().values(), second.model.state_dict().values())
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not second.model.training
    monkeypatch.setattr(course, "prepare_run", prepare_run)
    monkeypatch.setattr(course, "STANDIN", TrainSettings(**{**vars(TINY), "lr": 1e-3}))
    course.chapter5_model(device="cpu")  # another recipe: another cache folder
    assert len(list((checkout / "runs").glob("chapter5-standin-*"))) == 2 and cache.is_dir()


def test_make_runs_checkpoint_wins_outside_quick_mode(checkout, monkeypatch):
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32))
    save_checkpoint(checkout / course.COURSE_RUN, model)
    monkeypatch.delenv(ENV, raising=False)
    found = course.chapter5_model(device="cpu")
    assert not found.standin and "runs/verdict" in found.label
    assert torch.equal(found.model.wte.weight, model.wte.weight)
    monkeypatch.setenv(ENV, "1")  # quick mode: the same stand-in on every machine
    assert course.chapter5_model(device="cpu").standin


def test_local_gpt2_loads_the_weights_on_this_machine_and_downloads_nothing(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", ENV_DIR, "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # an empty cache
    assert course.local_gpt2() is None
    torch.manual_seed(0)
    model = GPT2(GPT2Config.preset("tiny", context_length=32))
    monkeypatch.setenv(ENV_DIR, str(save_pretrained(model, tmp_path / "gpt2")))
    found = course.local_gpt2()
    assert torch.equal(found.wte.weight, model.wte.weight) and not found.training
