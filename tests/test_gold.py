"""Gold-side rates, Wilson intervals, squared error gain and PGR against numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_w2s.metrics.gold import GOLD_KEYS, GOLD_SQ_KEYS, GoldSquaredError, gold_rates, gold_squared_error, pgr
from lightning_w2s.metrics.gold_counts import CorrectionRates
from lightning_w2s.metrics.stats import wilson_interval

Z95 = 1.959963984540054


def np_wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Roots in p of (x/n − p)² = z² p(1 − p)/n (the interval's definition, not its closed form)."""
    ph = x / n
    roots = np.sort(np.real(np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph])))
    return max(0.0, roots[0]), min(1.0, roots[1])


def np_gold(s, w, y, cov) -> dict[str, tuple[int, int]]:
    """(successes, total) per rate, by a loop over points."""
    c = {k: [0, 0] for k in ("accuracy", "teacher_accuracy", "covered_accuracy", "covered_disagreement", "correction_rate", "imitation_rate", "coverage_accuracy")}
    for i in range(len(y)):
        if y[i] < 0:
            continue
        c["accuracy"][1] += 1
        c["accuracy"][0] += s[i] == y[i]
        if cov[i]:
            for k in ("teacher_accuracy", "covered_accuracy", "covered_disagreement"):
                c[k][1] += 1
            c["teacher_accuracy"][0] += w[i] == y[i]
            c["covered_accuracy"][0] += s[i] == y[i]
            c["covered_disagreement"][0] += s[i] != w[i]
            if w[i] != y[i]:
                c["correction_rate"][1] += 1
                c["imitation_rate"][1] += 1
                c["correction_rate"][0] += s[i] == y[i]
                c["imitation_rate"][0] += s[i] == w[i]
        else:
            c["coverage_accuracy"][1] += 1
            c["coverage_accuracy"][0] += s[i] == y[i]
    return {k: (int(v[0]), int(v[1])) for k, v in c.items()}


def rand_labels(seed: int, n: int = 308, k: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    w = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))  # a 70%-ish teacher
    s = np.where(rng.random(n) < 0.5, w, np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n)))
    y = np.where(rng.random(n) < 0.2, -1, y)  # unknown gold
    cov = rng.random(n) < 0.8
    return s, w, y, cov


def assert_matches_reference(out, s, w, y, cov):
    ref = np_gold(s, w, y, cov)
    assert set(out) == set(GOLD_KEYS)
    for key, (x, n) in ref.items():
        assert n > 0, key
        assert out[key].item() == pytest.approx(x / n, rel=1e-12), key
        lo, hi = np_wilson(x, n)
        assert out[f"{key}_lower"].item() == pytest.approx(lo, abs=1e-12), key
        assert out[f"{key}_upper"].item() == pytest.approx(hi, abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gold_rates_match_reference(seed):
    s, w, y, cov = rand_labels(seed)
    out = gold_rates(torch.from_numpy(s), torch.from_numpy(w), torch.from_numpy(y), torch.from_numpy(cov))
    assert_matches_reference(out, s, w, y, cov)
    assert out["correction_rate"].item() + out["imitation_rate"].item() <= 1.0


def test_streaming_equals_functional_uneven_batches_and_merge():
    s, w, y, cov = rand_labels(5)
    ts, tw, ty, tc = (torch.from_numpy(a) for a in (s, w, y, cov))
    # the streaming gold rates are CorrectionRates' pooled rates: one state counts every gold event
    m = CorrectionRates(3, warn=False)
    for lo, hi in ((0, 1), (1, 8), (8, 308)):
        m.update(ts[lo:hi], tw[lo:hi], ty[lo:hi], tc[lo:hi])  # the aggregator's positional call
    assert_matches_reference({k: m.compute()[k] for k in GOLD_KEYS}, s, w, y, cov)
    a, b = CorrectionRates(3, warn=False), CorrectionRates(3, warn=False)
    a.update(ts[:150], tw[:150], ty[:150], tc[:150])
    b.update(ts[150:], tw[150:], ty[150:], tc[150:])
    a.merge_state(b)
    assert_matches_reference({k: a.compute()[k] for k in GOLD_KEYS}, s, w, y, cov)


def test_covered_default_and_empty_sets_are_nan():
    y = torch.tensor([0, 1, -1])
    out = gold_rates(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), y)  # all covered, teacher right
    assert out["accuracy"].item() == 0.5 and out["teacher_accuracy"].item() == 1.0
    for key in ("correction_rate", "imitation_rate", "coverage_accuracy"):  # empty denominators
        assert math.isnan(out[key].item()) and math.isnan(out[f"{key}_lower"].item())


def test_gold_rates_bad_input():
    with pytest.raises(TypeError, match="gold"):
        gold_rates(torch.tensor([0]), torch.tensor([0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="teacher_pred.*n = 2"):
        gold_rates(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="covered"):
        gold_rates(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0.5, 1.0]))


# ------------------------------------------------------------------------------------------------
# Wilson interval
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "n"), [(0, 10), (10, 10), (3, 10), (81, 263), (1, 1), (500, 1000)])
def test_wilson_against_quadratic_roots(x, n):
    lo, hi = wilson_interval(x, n)
    rlo, rhi = np_wilson(x, n)
    assert lo.item() == pytest.approx(rlo, abs=1e-12) and hi.item() == pytest.approx(rhi, abs=1e-12)
    assert 0.0 <= lo.item() <= x / n <= hi.item() <= 1.0


def test_wilson_closed_forms_at_the_ends_and_other_levels():
    n = 10
    lo, hi = wilson_interval(0, n)
    assert lo.item() == 0.0 and hi.item() == pytest.approx(Z95**2 / (n + Z95**2), rel=1e-12)
    z90 = 1.6448536269514722
    lo, hi = wilson_interval(4, 20, confidence=0.90)
    rlo, rhi = np_wilson(4, 20, z90)
    assert (lo.item(), hi.item()) == pytest.approx((rlo, rhi), abs=1e-12)
    lo, hi = wilson_interval(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0]))
    assert math.isnan(lo[0].item()) and math.isnan(hi[0].item()) and math.isfinite(lo[1].item())
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


# ------------------------------------------------------------------------------------------------
# squared error against gold
# ------------------------------------------------------------------------------------------------
def test_gold_squared_error_classification_reference_and_streaming():
    rng = np.random.default_rng(8)
    n, k = 308, 4
    ps = rng.dirichlet(np.ones(k), n)
    pw = rng.dirichlet(np.ones(k), n)
    y = rng.integers(-1, k, n)
    es = ew = 0.0
    cnt = 0
    for i in range(n):
        if y[i] < 0:
            continue
        cnt += 1
        for c in range(k):
            target = 1.0 if c == y[i] else 0.0
            es += (ps[i, c] - target) ** 2
            ew += (pw[i, c] - target) ** 2
    ref = {"student_sq_error": es / cnt, "teacher_sq_error": ew / cnt, "sq_gain": (ew - es) / cnt}
    ts, tw, ty = torch.from_numpy(ps), torch.from_numpy(pw), torch.from_numpy(y)
    out = gold_squared_error(ts, tw, ty)
    m = GoldSquaredError()
    for lo, hi in ((0, 1), (1, 8), (8, 308)):
        m.update(ts[lo:hi], tw[lo:hi], ty[lo:hi])
    streamed = m.compute()
    for key in GOLD_SQ_KEYS:
        assert out[key].item() == pytest.approx(ref[key], rel=1e-12), key
        assert streamed[key].item() == pytest.approx(ref[key], rel=1e-12), key


def test_gold_squared_error_regression_drops_nan_targets():
    fs = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    fw = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    y = torch.tensor([1.5, float("nan"), 2.0], dtype=torch.float64)
    out = gold_squared_error(fs, fw, y, task="regression")
    assert out["student_sq_error"].item() == pytest.approx((0.25 + 1.0) / 2)
    assert out["teacher_sq_error"].item() == pytest.approx((2.25 + 4.0) / 2)
    assert out["sq_gain"].item() == pytest.approx((6.25 - 1.25) / 2)
    with pytest.raises(ValueError, match="task"):
        gold_squared_error(fs, fw, y, task="ranking")


def test_gold_squared_error_of_python_lists_is_float64():
    """Lists and numpy arrays go straight to float64 (lists used to go through torch's float32
    default, a 1e-4 relative error on a small gain). Reference: exact rational arithmetic."""
    from fractions import Fraction

    y, w, s = [1.0, 2.5, -3.25], [1.0015, 2.4987, -3.2489], [1.0005, 2.5011, -3.2502]
    exact = {"student_sq_error": sum((Fraction(a) - Fraction(c)) ** 2 for a, c in zip(s, y)) / 3, "teacher_sq_error": sum((Fraction(a) - Fraction(c)) ** 2 for a, c in zip(w, y)) / 3}
    exact["sq_gain"] = exact["teacher_sq_error"] - exact["student_sq_error"]
    for args in ((s, w, y), (np.array(s), np.array(w), np.array(y)), ([s], [w], [y])):  # lists, arrays, (1, m)
        out = gold_squared_error(*args, task="regression")
        scale = 1 if len(args[0]) == 3 else 3  # the (1, m) row sums its m outputs
        for key in GOLD_SQ_KEYS:
            assert out[key].dtype == torch.float64
            assert out[key].item() == pytest.approx(float(exact[key]) * scale, rel=1e-12), key
    # the float32 path this replaced is visibly off at this scale: the test can fail
    f32 = gold_squared_error(torch.tensor(s), torch.tensor(w), torch.tensor(y), task="regression")["sq_gain"].item()
    assert abs(f32 - float(exact["sq_gain"])) > 1e-5 * float(exact["sq_gain"])
    print(f"\nsq_gain from lists: {gold_squared_error(s, w, y, task='regression')['sq_gain'].item():.10e} (exact {float(exact['sq_gain']):.10e}; through float32 {f32:.10e})")
    # class-index targets stay integers: a float target is still rejected for classification
    probs = [[0.8001, 0.1999], [0.3, 0.7]]
    assert gold_squared_error(probs, [[0.8, 0.2], [0.4, 0.6]], [0, 1])["sq_gain"].dtype == torch.float64
    with pytest.raises(TypeError, match="target"):
        gold_squared_error(probs, [[0.8, 0.2], [0.4, 0.6]], [0.0, 1.0])
    with pytest.raises(TypeError, match="student_out"):
        gold_squared_error(torch.tensor([True, False]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), task="regression")


# ------------------------------------------------------------------------------------------------
# PGR (Burns et al. 2023)
# ------------------------------------------------------------------------------------------------
def test_pgr_values():
    assert pgr(0.8, 0.7, 0.9).item() == pytest.approx(0.5)
    assert pgr(0.7, 0.7, 0.9).item() == pytest.approx(0.0)
    assert pgr(0.95, 0.7, 0.9).item() == pytest.approx(1.25)  # above the ceiling: > 1, not clipped
    assert pgr(torch.tensor(0.6), 0.7, 0.9).item() == pytest.approx(-0.5)
    out = pgr(torch.tensor([0.8, 0.9]), 0.7, torch.tensor([0.9, 1.0]))
    assert out.tolist() == pytest.approx([0.5, 2 / 3])


def test_pgr_undefined_when_ceiling_not_above_teacher():
    with pytest.warns(RuntimeWarning, match=r"ceiling_score=0\.7 <= teacher_score=0\.75"):
        out = pgr(0.8, 0.75, 0.7)
    assert math.isnan(out.item())
    with pytest.warns(RuntimeWarning, match="ceiling_score"):
        assert math.isnan(pgr(0.8, 0.7, 0.7).item())


def test_pgr_bad_types():
    with pytest.raises(TypeError, match="teacher_score"):
        pgr(0.8, "0.7", 0.9)
    with pytest.raises(TypeError, match="ceiling_score"):
        pgr(0.8, 0.7, None)
    with pytest.raises(TypeError, match="student_score"):
        pgr(True, 0.7, 0.9)
