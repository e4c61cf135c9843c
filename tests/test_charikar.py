"""Charikar et al. 2024, Thm 1 on synthetic data where its assumptions hold exactly.

Squared loss, strong class = linear functions of frozen features ``Z`` (a subspace), realizable
target ``f* = Z a``, student = the least-squares fit of the teacher's outputs (an unregularised
linear head). Then ``f_s − f*`` lies in the span and ``f_w − f_s`` is orthogonal to it, so on the
sample ``‖f_w − f*‖² = ‖f_w − f_s‖² + ‖f_s − f*‖²`` exactly (Pythagoras): the measured gain
``err(w) − err(s)`` equals the predicted gain ``misfit``. Computed here through the package's
streaming metrics and ``bounds`` helpers; a non-realizable control shows the check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_w2s.metrics.bounds import charikar_predicted_gain, squared_error_gain
from lightning_w2s.metrics.gold import GoldSquaredError
from lightning_w2s.metrics.misfit import RegressionMisfit

N, D = 20000, 8


def batches(n: int):
    return ((0, 1), (1, 8), (8, 308), (308, n))


def features(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, D))
    return np.hstack([z, np.ones((N, 1))])  # an intercept column: the head has a bias


def weak_teacher(z: np.ndarray, f_star: np.ndarray, seed: int) -> np.ndarray:
    """The target plus errors that are partly inside, partly outside the span of the features."""
    rng = np.random.default_rng(seed + 1000)
    noise = 0.7 * np.sin(3 * z[:, :1]) + 0.5 * z[:, 1:2] ** 2 + 0.3 * z[:, 2:3] + 0.4 * rng.normal(size=(N, 1))
    return f_star + noise * rng.uniform(0.5, 1.5, size=(1, f_star.shape[1]))


def measured_and_predicted(f_s: np.ndarray, f_w: np.ndarray, f_star: np.ndarray) -> tuple[float, float]:
    """Stream through the package metrics in uneven batches; return (gain, predicted_gain)."""
    squeeze = f_s.shape[1] == 1
    to = (lambda a: torch.from_numpy(a[:, 0])) if squeeze else torch.from_numpy
    s, w, y = to(f_s), to(f_w), to(f_star)
    mis, gold = RegressionMisfit(), GoldSquaredError(task="regression")
    for lo, hi in batches(s.shape[0]):
        mis.update(s[lo:hi], w[lo:hi])
        gold.update(s[lo:hi], w[lo:hi], y[lo:hi])
    g = gold.compute()
    gain = squared_error_gain(g["teacher_sq_error"], g["student_sq_error"])
    assert gain == pytest.approx(g["sq_gain"].item(), rel=1e-12)
    return gain, charikar_predicted_gain(mis.compute()["sq"])


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_gain_equals_misfit_least_squares_head(outputs, seed):
    z = features(seed)
    a = np.random.default_rng(seed + 7).normal(size=(D + 1, outputs))
    f_star = z @ a  # realizable
    f_w = weak_teacher(z, f_star, seed)
    coef, *_ = np.linalg.lstsq(z, f_w, rcond=None)  # the unregularised linear head fitted to the teacher
    f_s = z @ coef
    gain, predicted = measured_and_predicted(f_s, f_w, f_star)
    assert gain > 0.05 * outputs  # a real gain, not 0 = 0
    assert abs(gain - predicted) <= 1e-6, (gain, predicted)
    # independent of the package: the three squared distances straight from numpy
    err_w = np.sum((f_w - f_star) ** 2) / N
    err_s = np.sum((f_s - f_star) ** 2) / N
    mis = np.sum((f_s - f_w) ** 2) / N
    assert abs((err_w - err_s) - mis) <= 1e-9 * err_w
    assert gain == pytest.approx(err_w - err_s, rel=1e-10)


def test_gain_equals_misfit_trained_linear_head():
    """The same with an ``nn.Linear`` head trained on the teacher's outputs (full-batch L-BFGS, MSE)."""
    torch.manual_seed(0)
    z = features(3)
    a = np.random.default_rng(3).normal(size=(D + 1, 2))
    f_star = z @ a
    f_w = weak_teacher(z, f_star, 3)
    zt, wt = torch.from_numpy(z[:, :D]), torch.from_numpy(f_w)
    head = torch.nn.Linear(D, 2, dtype=torch.float64)
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=200, tolerance_grad=1e-14, tolerance_change=1e-16, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((head(zt) - wt) ** 2).sum(dim=1).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        f_s = head(zt).numpy()
    gain, predicted = measured_and_predicted(f_s, f_w, f_star)
    assert gain > 0.1
    assert abs(gain - predicted) <= 1e-6, (gain, predicted)


def test_non_realizable_control_breaks_the_equality():
    """Target outside the span: err(w) − err(s) ≠ misfit, so the equality test above can fail."""
    z = features(4)
    a = np.random.default_rng(4).normal(size=(D + 1, 1))
    f_star = z @ a + 0.8 * np.cos(2 * z[:, 3:4])  # not a linear function of the features
    f_w = weak_teacher(z, f_star, 4)
    coef, *_ = np.linalg.lstsq(z, f_w, rcond=None)
    gain, predicted = measured_and_predicted(z @ coef, f_w, f_star)
    assert abs(gain - predicted) > 1e-2, (gain, predicted)


def test_convex_cone_class_gives_the_inequality():
    """Strong class = nonnegative combinations of features (convex, not a subspace), realizable target,
    student = the projection of the teacher onto it (NNLS): err(s) ≤ err(w) − misfit, i.e. gain ≥ misfit."""
    nnls = pytest.importorskip("scipy.optimize").nnls
    n = 3000
    strict = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        z = np.abs(rng.normal(size=(n, 6)))
        a = rng.uniform(0, 1, size=6) * (rng.random(6) < 0.6)  # some coefficients on the cone's boundary
        f_star = z @ a
        f_w = f_star + 0.8 * np.sin(3 * z[:, 0]) + 0.5 * rng.normal(size=n)
        coef, _ = nnls(z, f_w)
        f_s = z @ coef
        gain, predicted = measured_and_predicted(f_s[:, None], f_w[:, None], f_star[:, None])
        assert gain >= predicted - 1e-9, (seed, gain, predicted)
        assert gain == pytest.approx(np.mean((f_w - f_star) ** 2) - np.mean((f_s - f_star) ** 2), rel=1e-10)
        strict += gain - predicted > 1e-3
    assert strict >= 1  # off a subspace the inequality can be strict (4 of these 5 seeds when written)
