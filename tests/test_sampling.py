"""The sampling filters of chapter 8 (temperature, top-k, top-p, min-p, min_tokens_to_keep) and
SamplingSettings: Hugging Face's own warper test cases (transformers'
tests/generation/test_logits_process.py), ported, then the same warpers, installed, on random
logits over GPT-2's 50,257 tokens: the kept sets must be equal."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from gpt2scratch.generation import (
    SamplingSettings, min_p_filter, sample_next, top_k_filter, top_p_filter,
)

INF = float("-inf")


def kept(logits: torch.Tensor) -> torch.Tensor:
    return logits > INF


def ramp(batch: int, vocab: int) -> torch.Tensor:
    """HF's ramp: logits 0..vocab-1 on every row."""
    return torch.arange(vocab, dtype=torch.float).unsqueeze(0).repeat(batch, 1)


# --------------------------------------------------------------------------- HF's cases, ported
def test_temperature_hf_case():
    """test_temperature_dist_warper: uniform stays uniform; T < 1 sharpens, T > 1 smooths."""
    scores = torch.full((2, 20), 1 / 20)
    scores[1, 5] = 1 / 20 + 0.1  # a peak
    scores[1, 10] = 1 / 20 - 0.4  # a valley
    original = scores.clone()
    probs = F.softmax(scores, dim=-1)
    sharp = F.softmax(SamplingSettings(temperature=0.5).filter(scores), dim=-1)
    smooth = F.softmax(SamplingSettings(temperature=1.3).filter(scores), dim=-1)
    torch.testing.assert_close(probs[0], sharp[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(probs[0], smooth[0], rtol=1e-3, atol=1e-3)
    assert probs[1].max() < sharp[1].max() and probs[1].min() > sharp[1].min()
    assert probs[1].max() > smooth[1].max() and probs[1].min() < smooth[1].min()
    assert torch.equal(scores, original)  # not in place


def test_top_k_hf_case():
    """test_top_k_dist_warper: a ramp, a shifted ramp; min_tokens_to_keep overrides k."""
    logits = ramp(2, 10)
    logits[1:, :5] += 10  # row 1: the first five are the highest
    original = logits.clone()
    out = top_k_filter(logits, 3)
    assert (~kept(out[0])).tolist() == 7 * [True] + 3 * [False]
    assert (~kept(out[1])).tolist() == 2 * [True] + 3 * [False] + 5 * [True]
    assert torch.equal(logits, original)
    uniform = torch.full((2, 5), 1 / 5)
    assert kept(top_k_filter(uniform, 1, min_keep=3)).all()  # ties: a uniform row is unchanged
    assert kept(top_k_filter(ramp(2, 5), 1, min_keep=3)).sum(-1).tolist() == [3, 3]


def test_top_p_hf_case():
    """test_top_p_dist_warper: keep the fewest tokens whose sum reaches top_p; min_tokens_to_keep."""
    dist = torch.tensor([[0.3, 0.1, 0.1, 0.5], [0.15, 0.3, 0.3, 0.25]]).log()
    filtered = top_p_filter(dist, 0.8).exp()  # exp(-inf) = 0
    expected = torch.tensor([[0.3, 0.0, 0.0, 0.5], [0.0, 0.3, 0.3, 0.25]])
    torch.testing.assert_close(filtered, expected, rtol=1e-3, atol=1e-3)
    assert kept(top_p_filter(dist, 0.8)).tolist() == [[True, False, False, True], [False, True, True, True]]
    assert not torch.equal(top_p_filter(dist, 0.8), dist)  # not in place: dist is unchanged
    extreme = ramp(2, 10) - 5
    extreme[1] *= 100.0
    assert kept(top_p_filter(extreme, 0.9, min_keep=2)).sum(-1).tolist() == [3, 2]


def test_min_p_hf_case():
    """test_min_p_dist_warper: keep p >= min_p * p_max; min_tokens_to_keep."""
    dist = torch.tensor([[0.9, 0.0274, 0.047, 0.0274],  # 0.047 > 0.9 * 0.05 = 0.045
                         [0.15, 0.3, 0.3, 0.25],  # no token dominates: all stay
                         [0.97, 0.01, 0.01, 0.01]]).log()
    filtered = min_p_filter(dist, 0.05).exp()
    expected = torch.tensor([[0.9, 0.0, 0.047, 0.0], [0.15, 0.3, 0.3, 0.25], [0.97, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(filtered, expected, rtol=1e-3, atol=1e-3)
    extreme = ramp(2, 10) - 5
    extreme[1] *= 100.0
    assert kept(min_p_filter(extreme, 0.9, min_keep=2)).sum(-1).tolist() == [2, 2]


# --------------------------------------------------------------------------- the boundaries
def test_top_p_boundary_is_exact():
    """The issue's case: 0.5 + 0.3 reaches 0.8, so neither 0.1 token stays (the float32
    `cumsum - probs` gave 0.7999999523 < 0.8 and kept one). Just past a boundary, one more."""
    logits = torch.tensor([[0.3, 0.1, 0.1, 0.5]]).log()
    assert kept(top_p_filter(logits, 0.8))[0].tolist() == [True, False, False, True]
    assert kept(top_p_filter(logits, 0.5))[0].tolist() == [False, False, False, True]
    assert kept(top_p_filter(logits, 0.5001))[0].tolist() == [True, False, False, True]
    just_past = kept(top_p_filter(logits, 0.8001))[0]
    assert just_past[[0, 3]].all() and just_past[[1, 2]].sum() == 1  # one of the tied 0.1s
    assert kept(top_p_filter(logits, 0.9))[0].sum() == 3
    assert kept(top_p_filter(logits, 1e-9))[0].tolist() == [False, False, False, True]


def test_top_p_sums_the_tail_exactly():
    """2,000 tokens of 1e-5 below a top token of 0.98: top_p = 0.999055 needs 1,905.5 of them,
    so 1,906 stay; the tail's tiny probabilities must add up, not vanish against 0.98."""
    probs = torch.cat([torch.tensor([0.98]), torch.full((2000,), 1e-5)]).double()
    logits = probs.log().float()[None]
    keep = kept(top_p_filter(logits, 0.999055))[0]
    assert keep[0] and keep[1:].sum() == 1906


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 0.999, 0.9999])
@pytest.mark.parametrize("scale", [1.0, 3.0, 6.0])
def test_top_p_keeps_the_smallest_set_reaching_top_p_over_50257(top_p, scale):
    """In exact (float64) arithmetic: the kept mass reaches top_p, and without its least likely
    member it would not; the kept tokens are the likeliest."""
    logits = torch.randn(3, 50257, generator=torch.Generator().manual_seed(int(scale * 10))) * scale
    keep = kept(top_p_filter(logits, top_p))
    probs = F.softmax(logits.double(), dim=-1)
    mass = (probs * keep).sum(-1)
    smallest = probs.masked_fill(~keep, 2).amin(-1)
    largest_dropped = probs.masked_fill(keep, -1).amax(-1)
    assert (mass >= top_p - 1e-9).all(), mass
    assert (mass - smallest < top_p).all()
    assert (largest_dropped <= smallest).all()


def test_min_tokens_to_keep_applies_to_every_filter():
    peaked = torch.tensor([[10.0, 0.0, -1.0, -2.0, -3.0]])
    for settings in (SamplingSettings(top_k=1, min_tokens_to_keep=3),
                     SamplingSettings(top_p=0.5, min_tokens_to_keep=3),
                     SamplingSettings(min_p=0.9, min_tokens_to_keep=3),
                     SamplingSettings(top_k=1, top_p=0.1, min_p=0.9, min_tokens_to_keep=3)):
        assert kept(settings.filter(peaked))[0].tolist() == [True, True, True, False, False], settings
    assert kept(SamplingSettings(top_k=2, min_tokens_to_keep=9).filter(peaked)).all()  # > V: all


def test_filters_chain_in_hf_order():
    """Temperature first, then top-k, top-p, min-p: top-p renormalises what top-k left."""
    logits = torch.tensor([[3.0, 2.2, 1.8, 1.0, 0.2]])
    both = SamplingSettings(top_k=3, top_p=0.7).filter(logits)
    assert torch.equal(both, top_p_filter(top_k_filter(logits, 3), 0.7))
    hot = SamplingSettings(temperature=2.0, min_p=0.3).filter(logits)
    assert torch.equal(hot, min_p_filter(logits / 2.0, 0.3))


# --------------------------------------------------------------------------- against transformers
def _hf_warpers(settings: SamplingSettings):
    """HF's warpers for `settings`, in the order its generate() builds them."""
    tlp = pytest.importorskip("transformers.generation.logits_process")
    keep = settings.min_tokens_to_keep
    warpers = []
    if settings.temperature != 1.0:
        warpers.append(tlp.TemperatureLogitsWarper(settings.temperature))
    if settings.top_k is not None:
        warpers.append(tlp.TopKLogitsWarper(settings.top_k, min_tokens_to_keep=keep))
    if settings.top_p is not None and settings.top_p < 1:
        warpers.append(tlp.TopPLogitsWarper(settings.top_p, min_tokens_to_keep=keep))
    if settings.min_p:
        warpers.append(tlp.MinPLogitsWarper(settings.min_p, min_tokens_to_keep=keep))
    return warpers


HF_SETTINGS = [
    SamplingSettings(temperature=0.7),
    SamplingSettings(top_k=1), SamplingSettings(top_k=50), SamplingSettings(top_k=40_000),
    SamplingSettings(top_p=0.5), SamplingSettings(top_p=0.8), SamplingSettings(top_p=0.9),
    SamplingSettings(top_p=0.95), SamplingSettings(top_p=0.999),
    SamplingSettings(min_p=0.05), SamplingSettings(min_p=0.2), SamplingSettings(min_p=1.0),
    SamplingSettings(top_p=0.9, min_tokens_to_keep=100),
    SamplingSettings(min_p=0.5, min_tokens_to_keep=7),
    SamplingSettings(temperature=0.8, top_k=50, top_p=0.95),
    SamplingSettings(temperature=1.3, top_k=2000, top_p=0.9, min_p=0.02, min_tokens_to_keep=3),
]


@pytest.mark.parametrize("settings", HF_SETTINGS, ids=lambda s: ",".join(
    f"{f.name}={getattr(s, f.name)}" for f in dataclasses.fields(s)
    if getattr(s, f.name) != f.default))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_transformers_on_random_logits_over_50257(settings, seed):
    """Random logits (three scales: flat to peaked, 4 rows each) over GPT-2's vocabulary: our
    filtered logits equal HF's warpers' output, kept set and values."""
    warpers = _hf_warpers(settings)
    g = torch.Generator().manual_seed(seed)
    for scale in (1.0, 3.0, 8.0):
        logits = torch.randn(4, 50257, generator=g) * scale
        ours = settings.filter(logits)
        theirs = logits.clone()
        for warper in warpers:
            theirs = warper(None, theirs)
        assert torch.equal(kept(ours), kept(theirs)), (scale, kept(ours).sum(-1), kept(theirs).sum(-1))
        assert torch.equal(ours[kept(ours)], theirs[kept(theirs)])


# --------------------------------------------------------------------------- SamplingSettings
def test_settings_are_frozen_checked_and_normalised():
    s = SamplingSettings(temperature=1, top_p=1, min_p=0)
    assert isinstance(s.temperature, float) and isinstance(s.top_p, float) and s.min_p == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.temperature = 2.0
    assert SamplingSettings(temperature=0).greedy and not SamplingSettings().greedy
    greedy = SamplingSettings(temperature=0, top_k=3).filter(torch.tensor([[1.0, 3.0, 2.0, 3.0]]))
    assert kept(greedy).tolist() == [[False, True, False, True]]  # the top logits only, ties kept
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(SamplingSettings().filter(logits), logits)  # the defaults change nothing
    assert torch.equal(SamplingSettings(top_p=1.0, min_p=0.0).filter(logits), logits)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(min_p=-0.1), ValueError, "min_p must be finite and >= 0 and <= 1, got -0.1"),
    (dict(min_p=1.5), ValueError, "min_p must be finite and >= 0 and <= 1, got 1.5"),
    (dict(min_p="0.1"), TypeError, "min_p must be a number or None, got str '0.1'"),
    (dict(min_tokens_to_keep=0), ValueError, "min_tokens_to_keep must be >= 1, got 0"),
    (dict(min_tokens_to_keep=2.0), TypeError, "min_tokens_to_keep must be an int, got float 2.0"),
    (dict(min_tokens_to_keep=None), TypeError, "min_tokens_to_keep must be an int, got NoneType"),
    (dict(top_k=True), TypeError, "top_k must be an int or None, got bool True"),
    (dict(top_q=0.9), TypeError, "unexpected keyword argument 'top_q'"),
])
def test_settings_refuse_bad_values_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        SamplingSettings(**kwargs)


def test_greedy_skips_the_filters_and_sampling_stays_in_the_kept_set():
    logits = torch.tensor([[1.0, 3.0, 2.9, -1.0]]).expand(400, 4)
    assert (sample_next(logits, SamplingSettings(temperature=0, top_k=1, min_p=1.0)) == 1).all()
    draws = sample_next(logits, SamplingSettings(min_p=0.5), torch.Generator().manual_seed(0))
    assert set(draws.flatten().tolist()) == {1, 2}  # p(0) = e^-2 p(1) < 0.5 p(1)
