"""The shared argument checks (Appendix A) and the atomic writer that data files and checkpoints use."""
import math
import os
import stat

import pytest

from gpt2scratch.files import atomic_write
from gpt2scratch.quickmode import full_or_quick, is_quick
from gpt2scratch.validation import check_bool, check_int, check_number


@pytest.mark.parametrize("value", [True, 1.0, "3", None])
def test_check_int_refuses_non_ints_with_type_error(value):
    with pytest.raises(TypeError, match=r"epochs must be an int, got \w+ "):
        check_int("epochs", value)


def test_check_int_bounds_and_none():
    assert check_int("n", 3, minimum=1) == 3
    assert check_int("n", None, none_ok=True) is None
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int("n", 0, minimum=1)
    with pytest.raises(TypeError, match="an int or None"):
        check_int("n", 2.5, none_ok=True)


@pytest.mark.parametrize(("kwargs", "value", "message"), [
    ({"minimum": 0, "min_open": True}, 0, "lr must be finite and > 0, got 0.0"),
    ({"minimum": 0, "maximum": 1, "max_open": True}, 1, "lr must be finite and >= 0 and < 1, got 1.0"),
    ({}, math.nan, "lr must be finite, got nan"),
    ({}, math.inf, "lr must be finite, got inf"),
])
def test_check_number_value_errors(kwargs, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_number("lr", value, **kwargs)


def test_check_number_types_and_result():
    assert check_number("lr", 3, minimum=0) == 3.0 and isinstance(check_number("lr", 3), float)
    assert check_number("lr", None, none_ok=True) is None
    for value in (True, "0.1", None):
        with pytest.raises(TypeError, match="lr must be a number"):
            check_number("lr", value)


def test_check_bool():
    assert check_bool("flag", False) is False
    with pytest.raises(TypeError, match="flag must be True or False, got int 1"):
        check_bool("flag", 1)


def test_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write(target, lambda p: p.write_text("one"))
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda p: (p.write_text("tw"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert target.read_text() == "one"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_write_gives_default_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "g.txt", lambda p: p.write_text("x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600


def test_quick_mode_helper(monkeypatch, capsys):
    monkeypatch.delenv("GPT2SCRATCH_QUICK", raising=False)
    assert not is_quick() and full_or_quick("full", "quick") == "full"
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("GPT2SCRATCH_QUICK", "1")
    assert full_or_quick("full", "quick", "tiny runs") == "quick"
    assert "quick mode" in capsys.readouterr().out
