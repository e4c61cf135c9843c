"""Hypothesis property tests: random shapes, extreme logits, one class, batch of 1 — no crash, no
NaN on valid input, values in their ranges, streaming = functional for any split."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lightning_w2s.metrics import bounds
from lightning_w2s.metrics.calibration import Calibration, calibration_error
from lightning_w2s.metrics.gold import GOLD_KEYS, gold_rates
from lightning_w2s.metrics.gold_counts import CorrectionRates
from lightning_w2s.metrics.misfit import MISFIT_ALL_KEYS, Misfit, misfit

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXTREME = st.one_of(st.floats(-1e4, 1e4), st.sampled_from([-1e4, 1e4, 0.0]))


@st.composite
def logits(draw, k=None):
    n = draw(st.integers(1, 24))
    k = k or draw(st.integers(1, 6))
    return torch.from_numpy(draw(arrays(np.float64, (n, k), elements=EXTREME)))


@st.composite
def prob_pairs(draw):
    a = draw(logits())
    b = torch.from_numpy(draw(arrays(np.float64, tuple(a.shape), elements=EXTREME)))
    return a.softmax(dim=1), b.softmax(dim=1)


def _both_constant(s: torch.Tensor, t: torch.Tensor) -> bool:
    """Kappa's only undefined case: both raters put every point in one and the same class."""
    a, b = s.argmax(1), t.argmax(1)
    return bool((a == a[0]).all() and (b == a[0]).all())


@SETTINGS
@given(prob_pairs())
def test_misfit_finite_and_in_range(pair):
    s, t = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the documented kappa warning
        out = misfit(s, t)
    assert set(out) == set(MISFIT_ALL_KEYS)
    for key, v in out.items():
        if key == "kappa" and _both_constant(s, t):
            assert math.isnan(v.item())
            continue
        assert math.isfinite(v.item()), (key, v)
    assert out["kl_teacher_student"] >= -1e-12 and out["kl_student_teacher"] >= -1e-12
    assert out["kl_teacher_student"] <= -math.log(1e-6) + 1e-9  # clamped log: KL ≤ log(1/eps)
    assert 0.0 <= out["sq"] <= 2.0 + 1e-12
    assert 0.0 <= out["disagreement_lower"] <= out["disagreement"] <= out["disagreement_upper"] <= 1.0
    if not _both_constant(s, t):
        assert -1.0 - 1e-12 <= out["kappa"] <= 1.0 + 1e-12


@SETTINGS
@given(prob_pairs(), st.data())
def test_misfit_streaming_equals_functional_any_split(pair, data):
    s, t = pair
    n = s.shape[0]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    m = Misfit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for lo, hi in zip([0, *cuts], [*cuts, n]):
            m.update(s[lo:hi], t[lo:hi])
        got, want = m.compute(), misfit(s, t)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-10, atol=1e-12, equal_nan=True)


@SETTINGS
@given(logits(), st.data())
def test_calibration_finite_and_bounded(lg, data):
    p = lg.softmax(dim=1)
    y = torch.tensor(data.draw(st.lists(st.integers(0, p.shape[1] - 1), min_size=p.shape[0], max_size=p.shape[0])))
    ece = calibration_error(p, y).item()
    mce = calibration_error(p, y, norm="max").item()
    assert 0.0 <= ece <= mce + 1e-12 <= 1.0 + 1e-12
    m = Calibration()
    m.update(p[:1], y[:1])  # a batch of one
    m.update(p[1:], y[1:])
    out = m.compute()
    assert math.isclose(out["ece"].item(), ece, rel_tol=1e-10, abs_tol=1e-14)
    assert int(m.histogram()["count"].sum()) == p.shape[0]


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 5), st.data())
def test_gold_rates_consistent(n, k, data):
    lab = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    s, w = torch.tensor(data.draw(lab)), torch.tensor(data.draw(lab))
    y = torch.tensor(data.draw(st.lists(st.integers(-1, k - 1), min_size=n, max_size=n)))
    cov = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    out = gold_rates(s, w, y, cov)
    known, c = y >= 0, (y >= 0) & cov
    empty = {"accuracy": not known.any(), "teacher_accuracy": not c.any(), "coverage_accuracy": not (known & ~cov).any(), "correction_rate": not (c & (w != y)).any()}
    for key, is_empty in empty.items():
        v = out[key].item()
        assert math.isnan(v) if is_empty else (0.0 <= out[f"{key}_lower"].item() <= v <= out[f"{key}_upper"].item() <= 1.0)
    if not empty["correction_rate"]:
        assert out["correction_rate"] + out["imitation_rate"] <= 1.0 + 1e-12
    if not empty["teacher_accuracy"]:  # the 0/1 band, on the same points
        lo, hi = bounds.accuracy_band(out["teacher_accuracy"], out["covered_disagreement"])
        assert lo - 1e-12 <= out["covered_accuracy"].item() <= hi + 1e-12
    m = CorrectionRates(max(k, 2), warn=False)
    m.update(s[:1], w[:1], y[:1], cov[:1])
    m.update(s[1:], w[1:], y[1:], cov[1:])
    streamed = m.compute()
    for key in GOLD_KEYS:
        torch.testing.assert_close(streamed[key], out[key], equal_nan=True, rtol=1e-12, atol=0)


PROB = st.floats(0.0, 1.0)


@SETTINGS
@given(PROB, st.floats(0.0, 0.4999), st.floats(1e-3, 1.0), PROB)
def test_lang_b1_number_or_nan_with_reason(err, alpha, c, p):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        v = bounds.lang_covered_bound(err, alpha, c, p)
    if math.isnan(v):
        assert rec and "precondition" in str(rec[-1].message)
    else:
        assert 0.0 <= v <= 1.0 and not rec


@SETTINGS
@given(PROB, st.floats(0.0, 0.4999), st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), PROB, PROB)
def test_lang_b2_b3_number_or_nan_with_reason(err, alpha, c1, c2, p, q):
    for fn, args in ((bounds.lang_uncovered_bound, (err, alpha, c1, c2, p, q)), (bounds.lang_uncovered_bound_b3, (err, alpha, c1, p, q))):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            v = fn(*args)
        if math.isnan(v):
            assert rec and "precondition" in str(rec[-1].message)
        else:
            assert max(q, 0.0) - 1e-12 <= v <= 1.0 and not rec


@SETTINGS
@given(PROB, PROB)
def test_accuracy_band_contains_teacher_accuracy(acc, dis):
    lo, hi = bounds.accuracy_band(acc, dis)
    assert 0.0 <= lo <= hi <= 1.0 and lo <= acc
    # the top is min(a + d, 2 - a - d): it contains the teacher's accuracy unless the disagreement
    # exceeds twice the teacher's error (then the student must be worse than the teacher)
    assert (acc <= hi + 1e-12) == (dis <= 2 * (1 - acc) + 1e-12) or abs(dis - 2 * (1 - acc)) < 1e-9
