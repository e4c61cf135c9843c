"""Bounds (docs/theory.md §2.2, §2.5): paper table values, preconditions, and the derived bands holding on data."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lightning_w2s.metrics import bounds
from lightning_w2s.metrics.bounds import accuracy_band, ce_band, charikar_predicted_gain, lang_covered_bound, lang_uncovered_bound, lang_uncovered_bound_b3, max_accuracy_gain, squared_error_gain
from lightning_w2s.metrics.gold import gold_rates
from lightning_w2s.metrics.misfit import misfit


# ------------------------------------------------------------------------------------------------
# Lang, Sontag, Vijayaraghavan 2024: the paper's table values (docs/theory.md §2.5)
# ------------------------------------------------------------------------------------------------
def test_thm_b1_table_1_values():
    v1 = lang_covered_bound(0.12, 0.11, 0.848, 0.0)
    v2 = lang_covered_bound(0.29, 0.33, 0.497)
    # the 4/3-digit values of docs/theory.md §2.5, and the paper's Table 1 at 2 decimals
    assert round(v1, 4) == 0.0497 and round(v1, 2) == 0.05
    assert round(v2, 3) == 0.374 and round(v2, 2) == 0.37
    # by hand, step by step: c' = .848/(1-.11+.848*.11) = .848/.98328
    cp = 0.848 / 0.98328
    assert v1 == pytest.approx((0.12 - 0.11 * (2 * cp - 1)) / (1 - 2 * cp * 0.11), rel=1e-12)


def test_thm_b2_table_4_value():
    v = lang_uncovered_bound(0.29, 0.33, 0.75, 0.55, p_nonrobust=0.0, q=0.0)
    assert round(v, 3) == 0.338  # paper Table 4 prints 0.33
    assert v == pytest.approx((0.29 - 0.55 * 0.33) / (0.75 - 1.30 * 0.33), rel=1e-12)  # .1085/.321


def test_thm_b2_robustness_term_and_q():
    # c/c_bar = .55/.75; first coefficient 1 + .33/(.7333.. - .66)
    coef = 1 + 0.33 / (0.55 / 0.75 - 0.66)
    v = lang_uncovered_bound(0.29, 0.33, 0.75, 0.55, p_nonrobust=0.01)
    assert v == pytest.approx(coef * 0.01 + 0.1085 / 0.321, rel=1e-12)
    # q wins the max{q, ·} where the fit premise still holds: .05 < .75(1 - .2 - .33) = .3525
    assert lang_uncovered_bound(0.05, 0.33, 0.75, 0.55, q=0.2) == pytest.approx(0.2)
    # q = 0 and a negative second term: max{q, ·} = 0, the bound is the robustness term alone
    assert lang_uncovered_bound(0.05, 0.33, 0.75, 0.55, p_nonrobust=0.02) == pytest.approx(coef * 0.02, rel=1e-12)


def test_thm_b3_value():
    # 0.01 + max{0, 0.1/(0.8*(1-0.2))} = 0.01 + 0.15625
    assert lang_uncovered_bound_b3(0.1, 0.2, 0.8, p_nonrobust=0.01) == pytest.approx(0.16625, rel=1e-12)
    assert lang_uncovered_bound_b3(0.1, 0.2, 0.8, q=0.3) == pytest.approx(0.3)


def test_thm_b1_monotone_in_err_and_nonrobustness():
    errs = [lang_covered_bound(e, 0.2, 0.7) for e in (0.2, 0.25, 0.3)]
    assert errs[0] < errs[1] < errs[2]
    ps = [lang_covered_bound(0.25, 0.2, 0.7, p) for p in (0.0, 0.05, 0.1)]
    assert ps[0] < ps[1] < ps[2]


@pytest.mark.parametrize(
    ("fn", "args", "reason"),
    [
        (lang_covered_bound, (0.12, 0.5, 0.848), "alpha"),
        (lang_covered_bound, (0.12, 0.0, 0.848), "alpha"),  # §3: 0 < alpha_i (S_i^bad must exist)
        (lang_covered_bound, (0.12, 0.11, 0.0), "`c`"),
        (lang_covered_bound, (0.3, 0.4, 2.0), "1 - 2c'alpha"),  # c >= (1-a)/a = 1.5: the proof's divisor <= 0
        (lang_covered_bound, (1.5, 0.11, 0.848), "err_teacher_fit"),
        (lang_covered_bound, (0.12, 0.11, 0.848, -0.1), "p_nonrobust"),
        (lang_covered_bound, (float("nan"), 0.11, 0.848), "NaN"),
        (lang_covered_bound, (0.0, 0.11, 0.848), "< 0"),  # a student fitting the teacher: Prop 4.1
        # c/c_bar - 2alpha <= 0 matters only where it multiplies P(R̄) > 0
        (lang_uncovered_bound, (0.29, 0.30, 0.75, 0.30, 0.01), "c/c_bar - 2alpha"),  # .4 - .6 <= 0
        (lang_uncovered_bound, (0.29, 0.45, 1.0, 0.5, 0.01), "c/c_bar - 2alpha"),  # .5 - .9 <= 0
        (lang_uncovered_bound, (0.1, 0.2, 0.2, 1.0), "c1 - \\(c1 \\+ c2\\)alpha"),  # .2 - 1.2*.2 < 0
        (lang_uncovered_bound, (0.1, 0.2, 1.2, 0.5), "`c1`"),  # c1 <= 1 (proof of B.2, Case 3)
        (lang_uncovered_bound, (0.10, 0.05, 0.2, 0.2, 0.15), "premise"),  # .25 >= .19
        (lang_uncovered_bound, (0.1, 0.0, 0.75, 0.55), "alpha"),
        (lang_uncovered_bound_b3, (0.1, 0.6, 0.8), "alpha"),
        (lang_uncovered_bound_b3, (0.1, 0.0, 0.8), "alpha"),
        (lang_uncovered_bound_b3, (0.1, 0.2, -0.8), "`c`"),
        (accuracy_band, (1.2, 0.1), "teacher_accuracy"),
        (ce_band, (0.5, 0.1, 0.0), "eps"),
        (ce_band, (0.5, -0.1, 1e-3), "kl_teacher_student"),
        (ce_band, (1.0, 0.02, 0.5), "log\\(1/eps\\)"),  # a CE above log 2 cannot come from probabilities >= 0.5
        (charikar_predicted_gain, (-0.1,), "misfit_sq"),
        (squared_error_gain, (float("nan"), 0.1), "NaN"),
    ],
)
def test_violated_preconditions_give_nan_and_a_reason(fn, args, reason):
    with pytest.warns(RuntimeWarning, match=reason):
        out = fn(*args)
    values = out if isinstance(out, tuple) else (out,)
    assert all(math.isnan(v) for v in values)


def test_thm_b2_first_denominator_edge():
    # c1=1, c2=.95, alpha=.45: c/c_bar - 2alpha = .95 - .9 > 0, c1 - (c1+c2)alpha = 1 - .8775 > 0 -> valid
    assert math.isfinite(lang_uncovered_bound(0.5, 0.45, 1.0, 0.95))
    assert math.isfinite(lang_uncovered_bound(0.5, 0.45, 1.0, 0.95, p_nonrobust=0.01))
    # alpha=.49: c/c_bar - 2alpha = .95 - .98 < 0, but c1 - (c1+c2)alpha = .0445 > 0: with P(R̄) = 0 the
    # first factor multiplies 0 and the bound is (.5 - .95*.49)/.0445; with P(R̄) > 0 it is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lang_uncovered_bound(0.5, 0.49, 1.0, 0.95) == pytest.approx((0.5 - 0.95 * 0.49) / (1 - 1.95 * 0.49), rel=1e-12)
    with pytest.warns(RuntimeWarning, match="c/c_bar"):
        assert math.isnan(lang_uncovered_bound(0.5, 0.49, 1.0, 0.95, p_nonrobust=0.001))


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (lang_covered_bound, (0.12, 0.11, 0.848, 0.0, 1.0)),  # q < 1 (proof of Lemma B.3)
        (lang_covered_bound, (0.12, 0.11, 0.848, 0.0, -0.1)),
        (lang_uncovered_bound, (0.29, 0.33, 0.75, 0.55, 0.0, 1.5)),
        (lang_uncovered_bound_b3, (0.1, 0.2, 0.8, 0.0, float("nan"))),
    ],
)
def test_q_is_a_parameter_and_out_of_range_raises(fn, args):
    """``q`` is the expansion threshold the caller chooses, not a measurement: ValueError naming it."""
    with pytest.raises(ValueError, match="`q`"):
        fn(*args)


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1], torch.tensor([0.1, 0.2]), 1 + 2j])
def test_invalid_types_raise_type_error_naming_the_argument(bad):
    with pytest.raises(TypeError, match="alpha"):
        lang_covered_bound(0.12, bad, 0.848)
    with pytest.raises(TypeError, match="disagreement"):
        accuracy_band(0.7, bad)


def test_numeric_types_accepted():
    ref = lang_covered_bound(0.12, 0.11, 0.848)
    assert lang_covered_bound(torch.tensor(0.12), np.float32(0.11), torch.tensor([0.848], dtype=torch.float64)) == pytest.approx(ref, rel=1e-6)
    assert lang_covered_bound(np.array(0.12), 0.11, 0.848) == pytest.approx(ref, rel=1e-12)
    assert isinstance(ref, float)


# ------------------------------------------------------------------------------------------------
# reproductions (premises coded; a condition only where it matters)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "why"),
    [
        # B.2 premise err + P(R̄|T) < c1(1 - q - alpha): .10 + .15 = .25 >= .2 * .95 = .19
        (lang_uncovered_bound, (0.10, 0.05, 0.2, 0.2), {"p_nonrobust": 0.15}, "0.25 >= .*0.19"),
        # the same premise with q: .3 >= .9 * (1 - .6 - .1) = .27
        (lang_uncovered_bound, (0.3, 0.1, 0.9, 0.9, 0.0), {"q": 0.6}, "0.3 >= .*0.27"),
        # B.1 premise P(f != teacher or not robust | S) <= 1 - q - alpha: P(R̄|S) = .95 > .9 alone
        (lang_covered_bound, (0.05, 0.1, 0.05), {"p_nonrobust": 0.95}, "1 - q - alpha = 0.9"),
    ],
)
def test_failed_premises_give_nan_with_the_reason(fn, args, kwargs, why):
    with pytest.warns(RuntimeWarning, match="premise") as rec:
        value = fn(*args, **kwargs)
    assert math.isnan(value)
    assert any(__import__("re").search(why, str(w.message)) for w in rec), [str(w.message) for w in rec]


def test_condition_only_where_it_multiplies_nonrobustness():
    # c/c_bar - 2alpha = .16/.98 - .22 < 0 but P(R̄|T) = 0: the bound is the second term alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = lang_uncovered_bound(0.12, 0.11, 0.16, 0.98)
    assert round(v, 4) == 0.3526
    assert v == pytest.approx((0.12 - 0.98 * 0.11) / (0.16 - 1.14 * 0.11), rel=1e-12)
    print(f"\nD2: lang_uncovered_bound(0.12, 0.11, 0.16, 0.98) = {v:.6f}")
    with pytest.warns(RuntimeWarning, match="c/c_bar - 2alpha"):
        assert math.isnan(lang_uncovered_bound(0.12, 0.11, 0.16, 0.98, p_nonrobust=1e-3))


def test_expansion_constants_above_one_where_the_theorem_allows_them():
    # B.1 and B.3 state only c > 0; B.2 needs c1 <= 1 (its proof) but not c2 <= 1
    cp = 1.2 / (1 - 0.11 + 1.2 * 0.11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lang_covered_bound(0.2, 0.11, 1.2) == pytest.approx((0.2 - 0.11 * (2 * cp - 1)) / (1 - 2 * cp * 0.11), rel=1e-12)
        assert lang_uncovered_bound_b3(0.1, 0.2, 1.25) == pytest.approx(0.1 / (1.25 * 0.8), rel=1e-12)
        assert lang_uncovered_bound(0.2, 0.1, 0.9, 1.3) == pytest.approx((0.2 - 0.13) / (0.9 - 2.2 * 0.1), rel=1e-12)


def test_b1_premise_uses_q_and_is_inclusive():
    # err + P(R̄) <= 1 - q - alpha, with equality allowed: .5 + .2 = .7 = 1 - .2 - .1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(lang_covered_bound(0.5, 0.1, 0.9, 0.2, q=0.2))
    with pytest.warns(RuntimeWarning, match="premise"):
        assert math.isnan(lang_covered_bound(0.5, 0.1, 0.9, 0.2, q=0.21))


def test_lemma_b1_markov_bound():
    assert bounds.lang_nonrobust_bound(0.05, 0.5) == pytest.approx(0.1)
    assert bounds.lang_nonrobust_bound(0.3, 0.2) == 1.0  # clipped: a probability
    assert bounds.lang_nonrobust_bound(0.0, 0.5) == 0.0
    for gamma, eta, why in ((0.1, 0.0, "eta"), (-0.1, 0.5, "gamma"), (float("nan"), 0.5, "NaN")):
        with pytest.warns(RuntimeWarning, match=why):
            assert math.isnan(bounds.lang_nonrobust_bound(gamma, eta))


def test_docstring_examples():
    import doctest

    from lightning_w2s.metrics.bounds import gain as gain_bounds
    from lightning_w2s.metrics.bounds import lang as lang_theorems

    results = [doctest.testmod(module) for module in (bounds, gain_bounds, lang_theorems)]
    assert sum(r.attempted for r in results) >= 5 and sum(r.failed for r in results) == 0


def test_every_public_bound_is_listed():
    """``lightning_w2s.metrics.bounds`` is the public home (docs/architecture.md, public API) of the functions its two
    modules define: each is listed there and is the very same object."""
    from lightning_w2s.metrics.bounds import gain as gain_bounds
    from lightning_w2s.metrics.bounds import lang as lang_theorems

    assert set(bounds.__all__) >= {"lang_covered_bound", "lang_uncovered_bound", "accuracy_band"}
    assert set(bounds.__all__) == set(gain_bounds.__all__) | set(lang_theorems.__all__)
    for name in bounds.__all__:
        assert getattr(bounds, name) is getattr(gain_bounds, name, None) or getattr(bounds, name) is getattr(lang_theorems, name)


# ------------------------------------------------------------------------------------------------
# derived bands: they must hold on data
# ------------------------------------------------------------------------------------------------
def test_accuracy_band_values_and_clipping():
    assert accuracy_band(0.7, 0.2) == pytest.approx((0.5, 0.9))
    # disagreement beyond the teacher's errors (.3 > .1) must sit on points the teacher got right:
    # the top is 2 - a - d = .8, not min(1, a + d) = 1
    assert accuracy_band(0.9, 0.3) == pytest.approx((0.6, 0.8))
    assert accuracy_band(0.1, 0.3) == pytest.approx((0.0, 0.4))


def _random_labels(seed: int, min_n: int):
    """Gold ``y``, teacher ``w`` and student ``s`` labels with random agreement rates."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(min_n, 60)), int(rng.integers(2, 5))
    y = rng.integers(0, k, n)
    w = np.where(rng.random(n) < rng.random(), y, rng.integers(0, k, n))
    s = np.where(rng.random(n) < rng.random(), w, rng.integers(0, k, n))
    return rng, n, y, w, s


def test_accuracy_band_holds_on_random_labels_many_seeds():
    """|acc_s − acc_w| ≤ P(s ≠ w) on the same points, for arbitrary (even adversarial-looking) labels."""
    for seed in range(200):
        rng, n, y, w, s = _random_labels(seed, 1)
        acc_s, acc_w, dis = np.mean(s == y), np.mean(w == y), np.mean(s != w)
        assert abs(acc_s - acc_w) <= dis + 1e-15
        lo, hi = accuracy_band(acc_w, dis)
        assert lo - 1e-15 <= acc_s <= hi + 1e-15
        # the same through the package's gold rates: covered_accuracy lies in the band from
        # teacher_accuracy and covered_disagreement (measured on the same covered gold points)
        cov = rng.random(n) < 0.7
        cov[0] = True
        g = gold_rates(torch.from_numpy(s), torch.from_numpy(w), torch.from_numpy(y), torch.from_numpy(cov))
        lo, hi = accuracy_band(g["teacher_accuracy"], g["covered_disagreement"])
        assert lo - 1e-15 <= g["covered_accuracy"].item() <= hi + 1e-15


def test_accuracy_band_with_misfit_disagreement_from_probabilities():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n, k = 40, 3
        ps = rng.dirichlet(np.ones(k) * 0.5, n)
        pw = rng.dirichlet(np.ones(k) * 0.5, n)
        y = rng.integers(0, k, n)
        d = misfit(torch.from_numpy(ps), torch.from_numpy(pw))["disagreement"]
        lo, hi = accuracy_band(float(np.mean(pw.argmax(1) == y)), d)
        assert lo - 1e-15 <= np.mean(ps.argmax(1) == y) <= hi + 1e-15


# ------------------------------------------------------------------------------------------------
# the band and the gain with the teacher's abstentions (coverage expansion)
# ------------------------------------------------------------------------------------------------
def _abstaining_teacher_example():
    """A worked example: 20 gold points, the teacher labels 10 (8 right) and abstains on 10; the
    student copies the teacher where it speaks and is right on the 10 others."""
    y = torch.zeros(20, dtype=torch.long)
    w = torch.zeros(20, dtype=torch.long)
    w[:2] = 1  # teacher wrong on 2 of its 10 covered points: covered accuracy 0.8
    cov = torch.zeros(20, dtype=torch.bool)
    cov[:10] = True
    s = torch.where(cov, w, y)  # copies the teacher where it speaks, right where it abstains
    return s, w, y, cov


def test_band_and_gain_with_abstentions():
    s, w, y, cov = _abstaining_teacher_example()
    g = gold_rates(s, w, y, cov)
    acc, acc_w, d = g["accuracy"].item(), g["teacher_accuracy"].item(), g["covered_disagreement"].item()
    assert (acc, acc_w, d) == pytest.approx((0.9, 0.8, 0.0))
    # the covered-only band is right about covered points, and it does not bound the gold accuracy
    assert accuracy_band(acc_w, d) == pytest.approx((0.8, 0.8))
    assert g["covered_accuracy"].item() == pytest.approx(0.8)
    # with the coverage share the band bounds the accuracy on all gold points
    lo, hi = accuracy_band(acc_w, d, coverage=0.5)
    assert (lo, hi) == pytest.approx((0.4, 0.9)) and lo <= acc <= hi
    # a gain of 0.1 over the teacher is still possible (and is what happened); label-free: 0.5
    assert max_accuracy_gain(d, coverage=0.5, teacher_accuracy=acc_w) == pytest.approx(0.1)
    assert max_accuracy_gain(d, coverage=0.5) == pytest.approx(0.5)
    assert max_accuracy_gain(d, coverage=0.5) >= 0.05  # gain_exhausted[min_gain=.05] must not fire
    assert max_accuracy_gain(d) == 0.0  # what the old rule (full coverage) concluded: "exhausted"
    print(
        f"\nD6 example: gold accuracy {acc:.2f}, teacher {acc_w:.2f}, covered disagreement {d:.2f}: "
        f"band (coverage .5) [{lo:.2f}, {hi:.2f}], max gain {max_accuracy_gain(d, 0.5, acc_w):.2f} "
        f"(label-free {max_accuracy_gain(d, 0.5):.2f})"
    )


def test_coverage_band_and_max_gain_hold_on_random_labels_many_seeds():
    """Exact on the same points: accuracy over all gold points inside the coverage band, the realised
    gain over the teacher's covered accuracy at most max_accuracy_gain (with and without a)."""
    checked = 0
    for seed in range(300):
        rng, n, y, w, s = _random_labels(seed, 2)
        s = np.where(rng.random(n) < 0.3, y, s)  # some corrections
        cov = rng.random(n) < rng.uniform(0.1, 1.0)
        if not cov.any():
            continue
        t = {k_: torch.from_numpy(v) for k_, v in (("s", s), ("w", w), ("y", y), ("cov", cov))}
        g = gold_rates(t["s"], t["w"], t["y"], t["cov"])
        pi = float(cov[y >= 0].mean())
        a, d, acc = g["teacher_accuracy"].item(), g["covered_disagreement"].item(), g["accuracy"].item()
        lo, hi = accuracy_band(a, d, coverage=pi)
        assert lo - 1e-12 <= acc <= hi + 1e-12, (seed, lo, acc, hi)
        clo, chi = accuracy_band(a, d)
        assert clo - 1e-12 <= g["covered_accuracy"].item() <= chi + 1e-12
        assert acc - a <= max_accuracy_gain(d, coverage=pi, teacher_accuracy=a) + 1e-12
        assert max_accuracy_gain(d, coverage=pi, teacher_accuracy=a) <= max_accuracy_gain(d, coverage=pi) + 1e-12
        checked += 1
    assert checked > 250


def test_coverage_band_is_attained_with_three_classes():
    """Both ends are reached by some student (k = 3), so the band cannot be narrowed from (a, d, π)."""
    y = np.zeros(100, dtype=int)
    cov = np.arange(100) < 60  # the teacher labels 60 of 100 points
    w = np.where(np.arange(100) < 12, 1, 0)  # 12 of the 60 covered wrong: a = 0.8
    a, pi = 0.8, 0.6
    for d in (0.1, 0.3):
        m = int(round(d * 60))
        # top: correct the teacher's errors first (d <= 1 - a) or beyond them flip right points
        s_top = w.copy()
        s_top[: min(m, 12)] = 0
        if m > 12:
            s_top[12:m] = 2
        s_top[~cov] = 0
        # bottom: disagree on points the teacher got right, wrong on every uncovered point
        s_bot = w.copy()
        s_bot[12 : 12 + m] = 2
        s_bot[~cov] = 1
        g_top = gold_rates(*(torch.from_numpy(v) for v in (s_top, w, y, cov)))
        g_bot = gold_rates(*(torch.from_numpy(v) for v in (s_bot, w, y, cov)))
        assert g_top["covered_disagreement"].item() == pytest.approx(d) == g_bot["covered_disagreement"].item()
        lo, hi = accuracy_band(a, d, coverage=pi)
        assert g_top["accuracy"].item() == pytest.approx(hi) and g_bot["accuracy"].item() == pytest.approx(lo)


def test_max_gain_full_coverage_reduces_to_the_disagreement_rule():
    for d in (0.0, 0.01, 0.2, 0.7):
        assert max_accuracy_gain(d) == pytest.approx(d)
        # with a known teacher accuracy: never more than d, and negative once d exceeds 2(1 - a)
        for a in (0.3, 0.6, 0.9):
            assert max_accuracy_gain(d, teacher_accuracy=a) == pytest.approx(min(d, 2 - 2 * a - d))
    with pytest.warns(RuntimeWarning, match="coverage"):
        assert math.isnan(max_accuracy_gain(0.1, coverage=1.5))
    with pytest.raises(TypeError, match="teacher_accuracy"):
        max_accuracy_gain(0.1, teacher_accuracy="0.8")


def test_ce_band_holds_when_probabilities_are_at_least_eps():
    eps = 0.02
    for seed in range(100):
        rng = np.random.default_rng(seed)
        n, k = 50, int(rng.integers(2, 6))
        mix = rng.random()
        ps = (1 - k * eps) * rng.dirichlet(np.ones(k) * 0.3, n) + eps  # every entry >= eps
        pw = (1 - k * eps) * (mix * ps + (1 - mix) * rng.dirichlet(np.ones(k) * 0.3, n)) + eps
        y = rng.integers(0, k, n)
        ce_s = float(np.mean(-np.log(ps[np.arange(n), y])))
        ce_w = float(np.mean(-np.log(pw[np.arange(n), y])))
        kl = misfit(torch.from_numpy(ps), torch.from_numpy(pw), eps=eps)["kl_teacher_student"]
        lo, hi = ce_band(ce_w, kl, eps)
        assert lo <= ce_s <= hi, (seed, lo, ce_s, hi)
        assert abs(ce_s - ce_w) <= math.sqrt(kl.item() / 2) / eps


def test_ce_band_formula_and_clipping():
    lo, hi = ce_band(1.5, 0.0008, 0.1)  # width = sqrt(0.0004)/0.1 = 0.2
    assert (lo, hi) == pytest.approx((1.3, 1.7))
    lo, hi = ce_band(0.1, 0.5, 0.1)  # width 5: lower clipped at 0, upper at log(1/eps)
    assert lo == 0.0 and hi == pytest.approx(math.log(10))


def test_charikar_and_gain_helpers():
    assert charikar_predicted_gain(0.25) == 0.25
    assert squared_error_gain(0.5, 0.3) == pytest.approx(0.2)
    assert squared_error_gain(torch.tensor(0.3), 0.5) == pytest.approx(-0.2)  # a loss is a negative gain
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid input: no warning
        charikar_predicted_gain(0.0)
        lang_covered_bound(0.12, 0.11, 0.848)
