"""Gold estimates with their intervals: PGR with an interval, and a prediction-powered estimate of the
student's gold accuracy (pure torch; docs/gold.md gives the formulas and which is which).

- The student's gold accuracy (``Q.ACCURACY``) and its **Wilson 95% interval** (gold points
  only) are the gold family's (:func:`lightning_w2s.metrics.gold.gold_rates`); nothing here repeats them.
- :func:`pgr_interval` — PGR ``(acc − T)/(C − T)`` (Burns et al. 2023, §3) for a user-given teacher
  score ``T`` and ceiling ``C`` is an increasing affine map of the accuracy, so the Wilson interval of
  the accuracy maps onto an interval of PGR with the **same coverage** [derived: exact transformation;
  ``T`` and ``C`` are taken as known constants, their own sampling error is not in the interval].
- :func:`ppi_mean` / :class:`PredictionPoweredAccuracy` — the **PPI++ mean estimate** (Angelopoulos,
  Bates, Fannjiang, Jordan, Zrnic, *Science* 2023, "Prediction-powered inference"; power tuning:
  Angelopoulos, Duchi, Zrnic 2023, "PPI++: Efficient prediction-powered inference", eq. for the mean
  with the plug-in ``λ̂``) of the student's accuracy: the outcome on a gold point is
  ``Y = 1[student = gold]``, the predictor on every probe point is ``f = 1[student = teacher label]``
  (``0`` where the teacher abstains), the gold points are the labelled sample and the probe points
  without gold the unlabelled one::

      θ̂_λ = λ·mean_N(f̃) + mean_n(Y − λ f)
      λ̂   = clip( cov_n(Y, f) / ((1 + n/N)·var_{n+N}(f)), 0, 1 )
      se² = λ̂²·var_N(f̃)/N + var_n(Y − λ̂ f)/n,     interval θ̂ ± z·se

  (``cov_n``/``var_N``/``var_n``: divisor ``n``/``N``; ``var_{n+N}``: the pooled predictions, divisor
  ``n + N − 1`` — the conventions of the authors' ``ppi_py.ppi_mean_ci``, which the tests reproduce;
  :func:`ppi_mean_from_sums` returns that CLT interval) [paper: asymptotic], valid when the gold points
  are a uniformly random subset of the probe. ``λ̂ = 0`` (no probe point without gold, or a predictor
  uncorrelated with correctness) gives the classical mean.

  The **logged** interval (:class:`PredictionPoweredAccuracy`) is the Wilson interval at PPI's
  effective sample size ``n_eff = θ̂(1 − θ̂)/se²`` (at most ``n + N``): Kish's design effect carried
  into a score interval for a proportion, as Korn & Graubard (1998, "Confidence intervals for
  proportions with small expected number of positive counts estimated from survey data") do for
  survey estimates [heuristic: our construction on the paper's estimator]. Measured (the tests, 4000
  synthetic probes per setting): the CLT interval covers 92-95% at 300 gold points, 79-93% at 30 when
  the accuracy is high (0.9 to 0.95); the effective-size Wilson interval covers 94-96% at 300 but
  still 58-94% at 30 and 91-95% at 100. So the interval is logged from :data:`PPI_MIN_GOLD` gold
  points on; below that only the gold-only Wilson interval is. The estimate (unbiased at any ``n``)
  is logged from 2 gold points on.

Every state is a sum (counts and sums of products), so a DDP sync of the states is exact and the
values after it equal those of one process holding every point.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torchmetrics import Metric

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.stats import F64, wilson_interval
from lightning_w2s.metrics.validation import check_scalar

__all__ = ["PPI_MIN_GOLD", "PPI_SUMS", "PredictionPoweredAccuracy", "pgr_interval", "ppi_mean", "ppi_effective_wilson", "ppi_mean_from_sums", "ppi_sums"]


def _z(confidence: float) -> float:
    """``Φ^-1((1 + confidence)/2)``."""
    confidence = check_scalar("confidence", confidence, float, min_val=0.0, max_val=1.0, include_boundaries="neither")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


#: the fewest gold points with which the PPI interval is logged (module docstring: coverage measured below that is short)
PPI_MIN_GOLD = 300
#: the sum states of :func:`ppi_mean_from_sums`: labelled count and sums of Y, f, Y², f², Y·f; unlabelled count and sums of f̃, f̃²
PPI_SUMS = ("n", "sum_y", "sum_f", "sum_yy", "sum_ff", "sum_yf", "n_unlabelled", "sum_fu", "sum_fufu")


def ppi_mean_from_sums(sums: dict[str, torch.Tensor], confidence: float = 0.95, lam: float | None = None) -> dict[str, torch.Tensor]:
    """The PPI++ mean estimate and its interval (module docstring) from the sum states :data:`PPI_SUMS`.

    Returns float64 tensors ``estimate``, ``lower``, ``upper``, ``lam``, ``se`` (broadcast over the
    states: a batch of problems is one call). ``lam=None``: the power-tuned ``λ̂``; a float fixes it
    (``1``: plain PPI, ``0``: the classical mean). ``NaN`` where ``n < 2`` (no variance). With no
    unlabelled point (``N = 0``) the tuned ``λ̂`` is ``0``.
    """
    s = {k: torch.as_tensor(sums[k], dtype=F64) for k in PPI_SUMS}
    n, N = s["n"], s["n_unlabelled"]
    ok = n >= 2
    n_ = torch.where(ok, n, torch.full_like(n, 2.0))
    has_u = N > 0
    N_ = torch.where(has_u, N, torch.ones_like(N))
    my, mf = s["sum_y"] / n_, s["sum_f"] / n_
    mfu = torch.where(has_u, s["sum_fu"] / N_, torch.zeros_like(N))
    cov_yf = s["sum_yf"] / n_ - my * mf
    var_f = (s["sum_ff"] / n_ - mf * mf).clamp_min(0.0)
    var_y = (s["sum_yy"] / n_ - my * my).clamp_min(0.0)
    var_fu = torch.where(has_u, (s["sum_fufu"] / N_ - mfu * mfu).clamp_min(0.0), torch.zeros_like(N))
    if lam is None:
        tot = n_ + N
        m_all = (s["sum_f"] + s["sum_fu"]) / tot
        ss_all = (s["sum_ff"] + s["sum_fufu"] - tot * m_all * m_all).clamp_min(0.0)
        var_all = ss_all / (tot - 1.0)
        den = (1.0 + n_ / N_) * var_all
        lam_t = torch.where(has_u & (den > 0), cov_yf / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
        lam_t = lam_t.clamp(0.0, 1.0)
    else:
        lam_t = torch.full_like(n, float(lam))
        lam_t = torch.where(has_u, lam_t, torch.zeros_like(lam_t))
    est = lam_t * mfu + my - lam_t * mf
    var_rect = (var_y - 2.0 * lam_t * cov_yf + lam_t * lam_t * var_f).clamp_min(0.0)
    se = torch.sqrt(lam_t * lam_t * var_fu / N_ + var_rect / n_)
    z = _z(confidence)
    nan = torch.full_like(est, math.nan)
    out = {"estimate": est, "lower": est - z * se, "upper": est + z * se, "lam": lam_t, "se": se}
    return {k: torch.where(ok, v, nan) for k, v in out.items()}


def ppi_sums(y: torch.Tensor, f: torch.Tensor, f_unlabelled: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sum states of one sample: outcomes ``y`` and predictions ``f`` on the labelled points,
    predictions ``f_unlabelled`` on the unlabelled ones (float64 0-d tensors)."""
    y, f, fu = (torch.as_tensor(t, dtype=F64).reshape(-1) for t in (y, f, f_unlabelled))
    if y.shape != f.shape:
        raise ValueError(f"`y` and `f` must have the same length, got {y.numel()} and {f.numel()}")
    return {
        "n": torch.tensor(float(y.numel()), dtype=F64),
        "sum_y": y.sum(),
        "sum_f": f.sum(),
        "sum_yy": (y * y).sum(),
        "sum_ff": (f * f).sum(),
        "sum_yf": (y * f).sum(),
        "n_unlabelled": torch.tensor(float(fu.numel()), dtype=F64),
        "sum_fu": fu.sum(),
        "sum_fufu": (fu * fu).sum(),
    }


def ppi_mean(y, f, f_unlabelled, confidence: float = 0.95, lam: float | None = None) -> dict[str, torch.Tensor]:
    """:func:`ppi_mean_from_sums` of one sample (``y``, ``f``: labelled outcomes and predictions;
    ``f_unlabelled``: predictions on the unlabelled points).

    >>> out = ppi_mean(torch.tensor([1., 0., 1., 1.]), torch.tensor([1., 0., 1., 0.]), torch.tensor([1., 1., 0., 1.]))
    >>> round(float(out["estimate"]), 4), round(float(out["lam"]), 4)
    (0.8083, 0.2333)
    """
    return ppi_mean_from_sums(ppi_sums(y, f, f_unlabelled), confidence, lam)


def pgr_interval(lower, upper, teacher_score: float, ceiling_score: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``((L − T)/(C − T), (U − T)/(C − T))``: an accuracy interval ``[L, U]`` mapped onto PGR (module
    docstring) [derived: exact for known ``T < C``]; ``NaN`` when ``C ≤ T`` (PGR undefined)."""
    lo, up = torch.as_tensor(lower, dtype=F64), torch.as_tensor(upper, dtype=F64)
    gap = float(ceiling_score) - float(teacher_score)
    if not gap > 0:
        return torch.full_like(lo, math.nan), torch.full_like(up, math.nan)
    return (lo - teacher_score) / gap, (up - teacher_score) / gap


class PredictionPoweredAccuracy(Metric):
    """Streaming PPI++ estimate of the student's gold accuracy (module docstring): sum states only.

    ``update(student_pred, teacher_pred, gold, covered)`` with ``(b,)`` labels (``gold = -1``:
    unknown, an unlabelled point); ``compute()`` returns ``{Q.ACCURACY_PPI, Q.ACCURACY_PPI_LOWER,
    Q.ACCURACY_PPI_UPPER}`` (the interval ``NaN`` under :data:`PPI_MIN_GOLD` gold points, the estimate under 2).

    >>> m = PredictionPoweredAccuracy()
    >>> student, teacher = torch.tensor([0, 1, 1, 0] * 100), torch.tensor([0, 1, 0, 0] * 100)
    >>> gold = torch.tensor([0, 1, 1, 1] * 80 + [-1] * 80)  # 320 gold points, 80 without gold
    >>> m.update(student, teacher, gold, torch.ones(400, dtype=torch.bool))
    >>> {k.split("/")[-1]: round(float(v), 3) for k, v in m.compute().items()}
    {'accuracy_ppi': 0.75, 'accuracy_ppi_lower': 0.7, 'accuracy_ppi_upper': 0.794}
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, confidence: float = 0.95, **kwargs) -> None:
        super().__init__(**kwargs)
        _z(confidence)
        self.confidence = confidence
        for name in PPI_SUMS:
            self.add_state(name, torch.tensor(0.0, dtype=F64), dist_reduce_fx="sum")

    def update(self, student_pred: torch.Tensor, teacher_pred: torch.Tensor, gold: torch.Tensor, covered: torch.Tensor) -> None:
        f = ((student_pred == teacher_pred) & covered).to(F64)
        known = gold >= 0
        y = (student_pred == gold).to(F64)[known]
        fl, fu = f[known], f[~known]
        self.n += known.sum().to(F64)
        self.sum_y += y.sum()
        self.sum_f += fl.sum()
        self.sum_yy += (y * y).sum()
        self.sum_ff += (fl * fl).sum()
        self.sum_yf += (y * fl).sum()
        self.n_unlabelled += (~known).sum().to(F64)
        self.sum_fu += fu.sum()
        self.sum_fufu += (fu * fu).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        """The estimate and the effective-sample-size Wilson interval (module docstring); the
        interval ``NaN`` under :data:`PPI_MIN_GOLD` gold points."""
        sums = {k: getattr(self, k) for k in PPI_SUMS}
        out = ppi_mean_from_sums(sums, self.confidence)
        est, lower, upper = ppi_effective_wilson(out, self.n + self.n_unlabelled, self.confidence)
        nan = torch.full_like(est, math.nan)
        enough = self.n >= PPI_MIN_GOLD
        return {Q.ACCURACY_PPI: est, Q.ACCURACY_PPI_LOWER: torch.where(enough, lower, nan), Q.ACCURACY_PPI_UPPER: torch.where(enough, upper, nan)}


def ppi_effective_wilson(ppi: dict[str, torch.Tensor], total, confidence: float = 0.95) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(θ̂, lower, upper)``: the Wilson interval of a proportion estimate ``θ̂ = ppi["estimate"]``
    (clamped to [0, 1]) at the effective sample size ``θ̂(1 − θ̂)/se²``, capped to ``[1, total]``
    (``total``: every probe point; ``se = 0`` gives ``total``) — module docstring [heuristic]."""
    est, se = ppi["estimate"].clamp(0.0, 1.0), ppi["se"]
    total = torch.as_tensor(total, dtype=F64)
    n_eff = torch.where(se > 0, est * (1.0 - est) / torch.where(se > 0, se * se, torch.ones_like(se)), total)
    n_eff = torch.minimum(n_eff, total).clamp_min(1.0)
    lower, upper = wilson_interval(est * n_eff, n_eff, confidence)
    nan = torch.full_like(est, math.nan)
    ok = torch.isfinite(ppi["estimate"])
    return torch.where(ok, est, nan), torch.where(ok, lower, nan), torch.where(ok, upper, nan)
