# Generated from chapters/A_engineering.ipynb — edit the notebook, then `make export`. Do not edit by hand.

# %% chapters/A_engineering.ipynb cell 3
"""Argument checks shared by the whole package: one error contract.

A value of the wrong type raises TypeError, a value out of range raises ValueError, and
the message names the argument and the value it got; a training run whose loss stops
being finite raises NonFiniteLossError, naming the step and the value. Generated from
Appendix A of the book.
"""
from __future__ import annotations

__all__ = ["check_int", "check_number", "check_bool", "NonFiniteLossError"]

import math
import numbers


def _bounds(minimum, maximum, min_open: bool, max_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    return " and ".join(parts)


def check_int(name: str, value, *, minimum: int | None = None, none_ok: bool = False):
    """`value` if it is an int (not a bool) >= `minimum`; else TypeError/ValueError."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        allowed = "an int or None" if none_ok else "an int"
        raise TypeError(
            f"{name} must be {allowed}, got {type(value).__name__} {value!r}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# %% chapters/A_engineering.ipynb cell 5
def check_number(
    name: str,
    value,
    *,
    minimum=None,
    maximum=None,
    min_open: bool = False,
    max_open: bool = False,
    none_ok: bool = False,
):
    """`value` as a float if it is a finite real number (not a bool) within the bounds.

    `min_open` / `max_open` make a bound strict: minimum=0, min_open=True means "> 0".
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        allowed = "a number or None" if none_ok else "a number"
        raise TypeError(
            f"{name} must be {allowed}, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    below = minimum is not None and (value <= minimum if min_open else value < minimum)
    above = maximum is not None and (value >= maximum if max_open else value > maximum)
    if not math.isfinite(value) or below or above:
        rule = _bounds(minimum, maximum, min_open, max_open)
        raise ValueError(
            f"{name} must be finite{' and ' + rule if rule else ''}, got {value}"
        )
    return value


def check_bool(name: str, value) -> bool:
    """`value` if it is True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be True or False, got {type(value).__name__} {value!r}"
        )
    return value


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite: the run has diverged."""

    def __init__(self, step: int | None, value: float, what: str = "loss"):
        self.step, self.value, self.what = step, value, what
        super().__init__(
            f"{what} is {value} at step {step}: training diverged. Lower the learning "
            "rate, clip gradients (grad_clip=1.0), or resume from an earlier checkpoint"
        )
