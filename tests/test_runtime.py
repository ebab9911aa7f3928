"""Tests for gpt2scratch.runtime (Appendix A.9): the device, seeds and random states."""
import random

import numpy as np
import pytest
import torch

from gpt2scratch.runtime import pick_device, preserved_rng, rng_state, set_rng_state, set_seed


def test_pick_device_and_set_seed():
    auto = pick_device()
    assert auto.type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert auto.type in ("mps", "cpu")
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            pick_device("cuda")
    assert pick_device("cpu") == torch.device("cpu")
    # an unknown device: tests/test_bad_inputs.py
    with pytest.raises(TypeError, match="seed must be an int"):
        set_seed(1.5)


def test_rng_state_round_trip_and_preserved_rng():
    set_seed(5)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(5))
    set_rng_state(state)
    assert (random.random(), np.random.rand()) == first[:2] and torch.equal(torch.rand(5), first[2])
    set_rng_state(state)
    random.random(), np.random.rand(), torch.rand(3)
    with preserved_rng():  # whatever happens inside does not move the streams outside
        torch.rand(100), random.random(), np.random.rand(7)
    assert torch.equal(torch.rand(2), first[2][3:])
