"""Misfit family (docs/theory.md §2.1) against independent slow numpy references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_cohen_kappa
from torchmetrics.regression import MeanSquaredError

from lightning_w2s.metrics.misfit import MISFIT_ALL_KEYS, MISFIT_KEYS, Misfit, RegressionMisfit, misfit, misfit_terms, regression_misfit

Z95 = 1.959963984540054


# ------------------------------------------------------------------------------------------------
# independent references: plain loops over rows and classes
# ------------------------------------------------------------------------------------------------
def np_misfit(ps: np.ndarray, pt: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    n, k = ps.shape
    kl_ts = kl_st = dis = sq = hce = 0.0
    for i in range(n):
        hce -= math.log(max(ps[i, int(np.argmax(pt[i]))], eps))  # the teacher's hard label
        for c in range(k):
            if pt[i, c] > 0:
                kl_ts += pt[i, c] * (math.log(max(pt[i, c], eps)) - math.log(max(ps[i, c], eps)))
            if ps[i, c] > 0:
                kl_st += ps[i, c] * (math.log(max(ps[i, c], eps)) - math.log(max(pt[i, c], eps)))
            sq += (ps[i, c] - pt[i, c]) ** 2
        dis += float(int(np.argmax(ps[i])) != int(np.argmax(pt[i])))
    return {"kl_teacher_student": kl_ts / n, "kl_student_teacher": kl_st / n, "disagreement": dis / n, "sq": sq / n, "teacher_label_ce": hce / n}


def np_kappa(a: np.ndarray, b: np.ndarray, k: int) -> float:
    n = len(a)
    p_o = sum(1 for i in range(n) if a[i] == b[i]) / n
    p_e = sum((np.sum(a == c) / n) * (np.sum(b == c) / n) for c in range(k))
    return (p_o - p_e) / (1 - p_e)


def np_wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Roots in p of (x/n − p)² = z² p(1 − p)/n — the defining equation, not the closed form."""
    ph = x / n
    roots = np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph])
    roots = np.sort(np.real(roots))
    return max(0.0, roots[0]), min(1.0, roots[1])


def rand_probs(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * scale
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_misfit_matches_numpy_reference(k, seed):
    rng = np.random.default_rng(seed)
    ps, pt = rand_probs(rng, 120, k), rand_probs(rng, 120, k)
    pt[:10] = np.eye(k)[rng.integers(0, k, 10)]  # one-hot teacher rows: 0 log 0 terms
    ps[10:15] = np.eye(k)[rng.integers(0, k, 5)]  # one-hot student rows: eps clamp
    out = misfit(torch.from_numpy(ps), torch.from_numpy(pt))
    ref = np_misfit(ps, pt)
    assert set(out) == set(MISFIT_ALL_KEYS)
    for key in MISFIT_KEYS:
        assert out[key].dtype == torch.float64
        assert out[key].item() == pytest.approx(ref[key], rel=1e-12, abs=1e-14), key
    a, b = ps.argmax(1), pt.argmax(1)
    assert out["kappa"].item() == pytest.approx(np_kappa(a, b, k), rel=1e-12, abs=1e-14)
    lo, hi = np_wilson(int(round(ref["disagreement"] * 120)), 120)
    assert out["disagreement_lower"].item() == pytest.approx(lo, abs=1e-12)
    assert out["disagreement_upper"].item() == pytest.approx(hi, abs=1e-12)


def test_one_hot_teacher_kl_is_clamped_nll():
    ps = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3]], dtype=torch.float64)
    pt = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    terms = misfit_terms(ps, pt, eps=1e-6)
    assert terms["kl_teacher_student"].tolist() == pytest.approx([-math.log(1e-6), -math.log(0.5)], rel=1e-12)


def test_teacher_label_ce_is_the_kl_for_hard_teachers_and_the_hard_label_loss_for_soft_ones():
    """For a one-hot teacher the cross-entropy on its label is the KL (both clamped); for a soft
    teacher it is ``F.cross_entropy`` on the teacher's argmax (what a student trained on the
    teacher's labels minimises), not the KL."""
    rng = np.random.default_rng(5)
    ps = torch.from_numpy(rand_probs(rng, 50, 4))
    hard = torch.eye(4, dtype=torch.float64)[torch.from_numpy(rng.integers(0, 4, 50))]
    out = misfit(ps, hard)
    assert out["teacher_label_ce"].item() == out["kl_teacher_student"].item()
    soft = torch.from_numpy(rand_probs(rng, 50, 4, 0.5))
    out = misfit(ps, soft)
    want = torch.nn.functional.nll_loss(ps.log(), soft.argmax(1)).item()
    assert out["teacher_label_ce"].item() == pytest.approx(want, rel=1e-12)
    assert abs(out["teacher_label_ce"].item() - out["kl_teacher_student"].item()) > 0.1


def test_kappa_matches_torchmetrics_and_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    ps, pt = rand_probs(rng, 400, 4, 1.0), rand_probs(rng, 400, 4, 1.0)
    pt = 0.5 * pt + 0.5 * ps  # correlated raters: kappa clearly > 0
    out = misfit(torch.from_numpy(ps), torch.from_numpy(pt))["kappa"].item()
    a, b = ps.argmax(1), pt.argmax(1)
    assert out == pytest.approx(skm.cohen_kappa_score(a, b), rel=1e-10)
    tm = multiclass_cohen_kappa(torch.from_numpy(a), torch.from_numpy(b), num_classes=4).item()
    assert out == pytest.approx(tm, rel=1e-5)  # torchmetrics reduces in float32
    assert out > 0.2


@pytest.mark.parametrize("num_classes", [None, 5])
def test_streaming_equals_functional_uneven_batches(num_classes):
    rng = np.random.default_rng(4)
    ps, pt = rand_probs(rng, 308, 5), rand_probs(rng, 308, 5)
    s, t = torch.from_numpy(ps), torch.from_numpy(pt)
    m = Misfit(num_classes=num_classes)
    for lo, hi in ((0, 1), (1, 8), (8, 308)):
        m.update(s[lo:hi], t[lo:hi])
    got, want = m.compute(), misfit(s, t)
    assert set(got) == set(want)
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-12, abs=1e-15), key


def test_two_rank_merge_is_exact():
    """Sum states: merging two shards' states (what a DDP sync does) equals the whole."""
    rng = np.random.default_rng(5)
    s, t = torch.from_numpy(rand_probs(rng, 99, 3)), torch.from_numpy(rand_probs(rng, 99, 3))
    a, b = Misfit(num_classes=3), Misfit(num_classes=3)
    a.update(s[:40], t[:40])
    b.update(s[40:], t[40:])
    a.merge_state(b)
    got, want = a.compute(), misfit(s, t)
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-12), key


def test_forward_and_reset_with_lazy_class_count():
    rng = np.random.default_rng(6)
    s, t = torch.from_numpy(rand_probs(rng, 30, 4)), torch.from_numpy(rand_probs(rng, 30, 4))
    m = Misfit()
    batch = m(s[:10], t[:10])  # forward: batch value, and the state accumulates
    assert batch["kappa"].item() == pytest.approx(misfit(s[:10], t[:10])["kappa"].item(), rel=1e-12)
    m(s[10:], t[10:])
    assert m.compute()["kappa"].item() == pytest.approx(misfit(s, t)["kappa"].item(), rel=1e-12)
    m.reset()
    m.update(s[:3], t[:3])
    assert m.compute()["sq"].item() == pytest.approx(misfit(s[:3], t[:3])["sq"].item(), rel=1e-12)


def test_class_count_mismatch_raises():
    m = Misfit(num_classes=3)
    p = torch.full((2, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match="4 classes"):
        m.update(p, p)
    with pytest.raises(ValueError, match="num_classes"):
        Misfit(num_classes=0)


def test_kappa_undefined_when_both_constant_warns_nan():
    p = torch.tensor([[0.9, 0.1]] * 5, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="kappa is undefined"):
        out = misfit(p, p)
    assert math.isnan(out["kappa"].item())
    assert out["disagreement"].item() == 0.0 and out["sq"].item() == 0.0  # the rest stays defined


def test_empty_input_is_nan_without_crash():
    e = torch.zeros(0, 3, dtype=torch.float64)
    out = misfit(e, e)
    assert all(math.isnan(v.item()) for v in out.values())


@pytest.mark.parametrize(
    ("s", "t", "exc", "match"),
    [
        (torch.full((3, 2), 0.5), torch.full((3, 3), 1 / 3), ValueError, "same shape"),
        (torch.full((3, 2), 0.7), torch.full((3, 2), 0.5), ValueError, "student_probs.*sum to 1"),
        (torch.full((3, 2), 0.5), torch.tensor([[2.0, -1.0]] * 3), ValueError, "teacher_probs.*\\[0, 1\\]"),
        (torch.ones(3, 2, dtype=torch.int64), torch.full((3, 2), 0.5), TypeError, "student_probs"),
        (torch.tensor([[float("nan"), 1.0]]), torch.tensor([[0.5, 0.5]]), ValueError, "student_probs.*non-finite"),
        ("abc", torch.tensor([[0.5, 0.5]]), TypeError, "student_probs"),
    ],
)
def test_bad_input_names_argument(s, t, exc, match):
    with pytest.raises(exc, match=match):
        misfit(s, t)


# ------------------------------------------------------------------------------------------------
# regression
# ------------------------------------------------------------------------------------------------
def np_regression_sq(fs: np.ndarray, fw: np.ndarray) -> float:
    total = 0.0
    for i in range(fs.shape[0]):
        row = np.atleast_1d(fs[i] - fw[i])
        total += sum(float(v) ** 2 for v in row)
    return total / fs.shape[0]


@pytest.mark.parametrize("shape", [(308,), (308, 3)])
def test_regression_misfit_reference_and_streaming(shape):
    rng = np.random.default_rng(7)
    fs, fw = rng.normal(size=shape) * 3, rng.normal(size=shape)
    s, t = torch.from_numpy(fs), torch.from_numpy(fw)
    want = np_regression_sq(fs, fw)
    assert regression_misfit(s, t)["sq"].item() == pytest.approx(want, rel=1e-12)
    m = RegressionMisfit()
    for lo, hi in ((0, 1), (1, 8), (8, 308)):
        m.update(s[lo:hi], t[lo:hi])
    assert m.compute()["sq"].item() == pytest.approx(want, rel=1e-12)
    if len(shape) == 1:  # scalar outputs: the same number as torchmetrics' MSE
        mse = MeanSquaredError()
        mse.update(s, t)
        assert m.compute()["sq"].item() == pytest.approx(mse.compute().item(), rel=1e-6)


def test_regression_misfit_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        regression_misfit(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="student_values.*non-finite"):
        regression_misfit(torch.tensor([1.0, float("inf")]), torch.zeros(2))
    with pytest.raises(ValueError, match="student_values"):
        regression_misfit(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2))
    assert math.isnan(regression_misfit(torch.zeros(0), torch.zeros(0))["sq"].item())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns that compute() precedes update()
        assert math.isnan(RegressionMisfit().compute()["sq"].item())
