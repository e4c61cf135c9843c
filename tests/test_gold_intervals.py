"""Gold estimates with intervals: coverage where the truth is known, the PPI++ estimate against an
independent transcription of the authors' ``ppi_py.ppi_mean_ci``, exact sums under a split (DDP)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from scipy import stats

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import W2SMetrics
from lightning_w2s.metrics.gold_intervals import PPI_MIN_GOLD, PPI_SUMS, PredictionPoweredAccuracy, pgr_interval, ppi_effective_wilson, ppi_mean, ppi_mean_from_sums
from lightning_w2s.metrics.stats import wilson_interval


@pytest.mark.parametrize("n", [30, 100, 300])
def test_wilson_and_pgr_intervals_cover_at_their_nominal_rate(n):
    """Exact coverage (binomial pmf, no simulation) of the Wilson 95% interval of the accuracy and of
    the PGR interval mapped from it, over 181 true accuracies in [0.05, 0.95]: >= 94% on average (a
    true accuracy drawn uniformly), never under 92% (Wilson's coverage oscillates with p: 92.4% at
    n = 30, p = 0.885; Brown, Cai, DasGupta 2001); PGR's coverage equals the accuracy's at every p."""
    x = torch.arange(n + 1, dtype=torch.float64)
    lo, up = wilson_interval(x, torch.full_like(x, n))
    teacher, ceiling = 0.6, 0.9
    plo, pup = pgr_interval(lo, up, teacher, ceiling)
    covs = []
    for p in np.linspace(0.05, 0.95, 181):
        pmf = torch.from_numpy(stats.binom.pmf(np.arange(n + 1), n, p))
        cov = float((pmf * ((lo <= p) & (p <= up))).sum())
        true_pgr = (p - teacher) / (ceiling - teacher)
        cov_pgr = float((pmf * ((plo <= true_pgr + 1e-12) & (true_pgr - 1e-12 <= pup))).sum())
        assert cov_pgr == pytest.approx(cov, abs=1e-12), (n, p)
        covs.append(cov)
    assert np.mean(covs) >= 0.94 and min(covs) >= 0.92, (np.mean(covs), min(covs))


def test_pgr_interval_is_nan_without_a_gap():
    lo, up = pgr_interval(torch.tensor(0.5), torch.tensor(0.7), 0.8, 0.8)
    assert math.isnan(float(lo)) and math.isnan(float(up))


def _synthetic_sums(reps: int, n: int, N: int, p: float, q: float, seed: int) -> dict[str, torch.Tensor]:
    """``reps`` independent probes: Y ~ Bernoulli(p), the predictor f equals Y with probability q;
    n labelled points, N unlabelled ones; vectorised over the replicates."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(reps, n + N, generator=g) < p).double()
    flip = (torch.rand(reps, n + N, generator=g) >= q).double()
    f = (y + flip) % 2
    yl, fl, fu = y[:, :n], f[:, :n], f[:, n:]
    return {
        "n": torch.full((reps,), float(n), dtype=torch.float64),
        "sum_y": yl.sum(1),
        "sum_f": fl.sum(1),
        "sum_yy": (yl * yl).sum(1),
        "sum_ff": (fl * fl).sum(1),
        "sum_yf": (yl * fl).sum(1),
        "n_unlabelled": torch.full((reps,), float(N), dtype=torch.float64),
        "sum_fu": fu.sum(1),
        "sum_fufu": (fu * fu).sum(1),
    }


SETTINGS = [(0.7, 0.9), (0.8, 0.85), (0.9, 0.95), (0.95, 0.97), (0.6, 0.6), (0.95, 0.9), (0.5, 0.8)]


@pytest.mark.parametrize("p,q", SETTINGS)
def test_logged_ppi_interval_covers_the_true_accuracy(p, q):
    """4000 synthetic probes per setting (truth p known; 300 gold points, the fewest with which the
    monitor logs it, 2000 without): the logged interval (Wilson at PPI's effective sample size)
    covers p >= 93% of the time; with an informative predictor (q >= 0.75) it is narrower on average
    than the gold-only Wilson interval."""
    n, reps, N = PPI_MIN_GOLD, 4000, 2000
    s = _synthetic_sums(reps, n, N, p, q, seed=int(100 * p + 10 * q))
    est, lo, up = ppi_effective_wilson(ppi_mean_from_sums(s), s["n"] + s["n_unlabelled"])
    cover = ((lo <= p) & (p <= up)).double().mean().item()
    assert cover >= 0.93, cover
    wl, wu = wilson_interval(s["sum_y"], s["n"])
    if q >= 0.75:
        assert float((up - lo).mean()) < float((wu - wl).mean())


def test_ppi_clt_interval_is_short_with_few_gold_points():
    """Why the monitor waits for PPI_MIN_GOLD gold points: at 30 with a high accuracy the CLT interval
    (and the effective-size Wilson one) covers far less than 95%."""
    s = _synthetic_sums(4000, 30, 2000, 0.9, 0.95, seed=3)
    out = ppi_mean_from_sums(s)
    assert ((out["lower"] <= 0.9) & (0.9 <= out["upper"])).double().mean().item() < 0.9


def _ppi_py_reference(Y, Yhat, Yhat_unlabeled, alpha=0.05):
    """A transcription in plain numpy/Python of ``ppi_py.ppi.ppi_mean_ci(Y, Yhat, Yhat_unlabeled,
    alpha, lam=None)`` (ppi_python 0.2.3: ``_calc_lam_glm`` with ``clip=True``, ``optim_mode="overall"``,
    ``inv_hessian = I``, then the point estimate with that λ and statsmodels' ``_zconfint_generic``);
    written with loops, independently of the package's sum-state formulas."""
    Y, Yhat, Yu = (np.asarray(a, dtype=float) for a in (Y, Yhat, Yhat_unlabeled))
    n, N = len(Y), len(Yu)
    est1 = sum(Yu) / N + sum(Y[i] - Yhat[i] for i in range(n)) / n  # lam = 1
    grads = [Y[i] - est1 for i in range(n)]
    grads_hat = [Yhat[i] - est1 for i in range(n)]
    grads_hat_u = [Yu[j] - est1 for j in range(N)]
    mg, mgh = sum(grads) / n, sum(grads_hat) / n
    cov = (1 / n) * 2 * sum((grads[i] - mg) * (grads_hat[i] - mgh) for i in range(n))
    allh = grads_hat + grads_hat_u
    m_all = sum(allh) / len(allh)
    var = sum((h - m_all) ** 2 for h in allh) / (len(allh) - 1)  # np.cov: ddof 1
    lam = min(1.0, max(0.0, cov / (2 * (1 + n / N) * var)))
    est = sum(lam * Yu[j] for j in range(N)) / N + sum(Y[i] - lam * Yhat[i] for i in range(n)) / n
    mu = sum(lam * Yu[j] for j in range(N)) / N
    imputed_std = math.sqrt(sum((lam * Yu[j] - mu) ** 2 for j in range(N)) / N) / math.sqrt(N)  # np.std: ddof 0
    r = [Y[i] - lam * Yhat[i] for i in range(n)]
    mr = sum(r) / n
    rectifier_std = math.sqrt(sum((x - mr) ** 2 for x in r) / n) / math.sqrt(n)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    half = z * math.sqrt(imputed_std**2 + rectifier_std**2)
    return est, est - half, est + half, lam


@pytest.mark.parametrize("seed", range(5))
def test_ppi_mean_equals_the_authors_estimator(seed):
    rng = np.random.default_rng(seed)
    n, N = int(rng.integers(20, 200)), int(rng.integers(50, 500))
    y = (rng.random(n) < 0.7).astype(float)
    f = np.where(rng.random(n) < 0.8, y, 1 - y)
    fu = (rng.random(N) < 0.72).astype(float)
    if seed == 4:  # real-valued predictions and outcomes too (the estimator is for any mean)
        y, f, fu = rng.random(n), rng.random(n), rng.random(N)
    est, lo, up, lam = _ppi_py_reference(y, f, fu)
    out = ppi_mean(torch.from_numpy(y), torch.from_numpy(f), torch.from_numpy(fu))
    assert float(out["estimate"]) == pytest.approx(est, abs=1e-12)
    assert float(out["lower"]) == pytest.approx(lo, abs=1e-12)
    assert float(out["upper"]) == pytest.approx(up, abs=1e-12)
    assert float(out["lam"]) == pytest.approx(lam, abs=1e-12)


def test_ppi_without_unlabelled_points_is_the_classical_mean_and_nan_below_two_points():
    y = torch.tensor([1.0, 0.0, 1.0, 1.0])
    out = ppi_mean(y, torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.zeros(0))
    assert float(out["lam"]) == 0.0 and float(out["estimate"]) == 0.75
    half = NormalDist().inv_cdf(0.975) * math.sqrt(0.75 * 0.25 / 4)
    assert float(out["upper"]) == pytest.approx(0.75 + half, abs=1e-12)
    assert math.isnan(float(ppi_mean(torch.tensor([1.0]), torch.tensor([1.0]), torch.ones(3))["estimate"]))


def test_ppi_states_are_exact_sums_under_a_split():
    """Two 'ranks' each see half the probe; the sum of their states equals one process's states, so
    the values after a DDP sync equal the single-process values."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randint(0, 3, (1001,), generator=g), torch.randint(0, 3, (1001,), generator=g)
    gold = torch.randint(0, 3, (1001,), generator=g)
    gold[torch.rand(1001, generator=g) < 0.5] = -1
    cov = torch.rand(1001, generator=g) < 0.8
    whole, a, b = PredictionPoweredAccuracy(), PredictionPoweredAccuracy(), PredictionPoweredAccuracy()
    whole.update(s, t, gold, cov)
    a.update(s[:500], t[:500], gold[:500], cov[:500])
    b.update(s[500:], t[500:], gold[500:], cov[500:])
    for name in PPI_SUMS:
        assert torch.equal(getattr(a, name) + getattr(b, name), getattr(whole, name)), name
        setattr(a, name, getattr(a, name) + getattr(b, name))
    values = list(whole.compute().values())
    assert all(torch.isfinite(v) for v in values)
    assert all(torch.equal(x, y) for x, y in zip(a.compute().values(), values))


@pytest.mark.parametrize("n_gold", [PPI_MIN_GOLD + 50, PPI_MIN_GOLD - 1])
def test_monitor_logs_the_estimates_under_registered_names(n_gold):
    g = torch.Generator().manual_seed(1)
    n = 700
    teacher = torch.softmax(torch.randn(n, 2, generator=g), 1)
    gold = torch.randint(0, 2, (n,), generator=g)
    gold[n_gold:] = -1
    m = W2SMetrics(teacher, gold=gold, neighbours=0, teacher_score=0.6, ceiling_score=0.9)
    m.reset()
    student = torch.softmax(torch.randn(n, 2, generator=g) + 2 * teacher, 1)
    m.update(student, None, torch.arange(n), torch.ones(n, dtype=torch.bool))
    out = m.compute()
    acc_lo, acc_up = float(out[Q.lower(Q.ACCURACY)]), float(out[Q.upper(Q.ACCURACY)])
    assert Q.lookup(Q.PGR_LOWER).kind == "interval"
    assert float(out[Q.PGR_LOWER]) == pytest.approx((acc_lo - 0.6) / 0.3) and float(out[Q.PGR_UPPER]) == pytest.approx((acc_up - 0.6) / 0.3)
    if n_gold < PPI_MIN_GOLD:
        assert Q.ACCURACY_PPI in out and Q.ACCURACY_PPI_LOWER not in out and any(Q.ACCURACY_PPI_LOWER in note for note in m.notes)
    else:
        assert float(out[Q.ACCURACY_PPI_LOWER]) <= float(out[Q.ACCURACY_PPI]) <= float(out[Q.ACCURACY_PPI_UPPER])
    for name, kind in ((Q.ACCURACY_PPI, "estimate"), (Q.ACCURACY_PPI_LOWER, "interval"), (Q.ACCURACY_PPI_UPPER, "interval")):
        assert Q.lookup(name).kind == kind
    s_pred, t_pred = student.argmax(1), teacher.argmax(1)
    k = n_gold
    ref = _ppi_py_reference((s_pred[:k] == gold[:k]).double().numpy(), (s_pred[:k] == t_pred[:k]).double().numpy(), (s_pred[k:] == t_pred[k:]).double().numpy())
    assert float(out[Q.ACCURACY_PPI]) == pytest.approx(ref[0], abs=1e-12)
