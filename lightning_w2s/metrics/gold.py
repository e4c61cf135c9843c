"""Gold-label quantities, where the probe has gold labels (``-1`` = unknown points are ignored).

- :func:`gold_rates`: the pooled gold rates with Wilson 95% intervals (``<key>_lower`` /
  ``<key>_upper``, :mod:`lightning_w2s.metrics.stats`) [definitions, exact]: ``accuracy = P(s = y)``
  over gold points; ``teacher_accuracy = P(w = y)`` over gold points the teacher covers
  (abstentions are not teacher predictions; Lang et al. 2024's covered set ``S``);
  ``covered_accuracy = P(s = y)`` and ``covered_disagreement = P(s ≠ w)`` on *the same* covered gold
  points, so that :func:`lightning_w2s.metrics.bounds.accuracy_band` (``|acc_s − acc_w| ≤
  disagreement``) holds exactly for ``covered_accuracy``; ``correction_rate = P(s = y | w ≠ y)`` and
  ``imitation_rate = P(s = w | w ≠ y)`` on covered gold points (Lang, Sontag, Vijayaraghavan 2024,
  docs/theory.md §2.5), pooled over classes (disjoint events: they sum to at most 1);
  ``coverage_accuracy = P(s = y)`` on uncovered gold points (Lang et al.'s coverage expansion ``T``).
  These count the same events as the per-class rates, so their streaming form is
  :class:`~lightning_w2s.metrics.gold_counts.CorrectionRates` (one state for both).
- :func:`accuracy_bounds`: the logged 0/1 bands (on all gold points, with the teacher's
  abstentions, and on covered gold points) and the gain still possible, from those rates.
- :class:`GoldSquaredError` (``err_sq`` of student and teacher against gold, for Charikar's
  measured gain) and :func:`pgr` (Burns et al. 2023).
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torchmetrics import Metric

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.bounds import accuracy_band, max_accuracy_gain
from lightning_w2s.metrics.gold_counts import GOLD_KEYS, correction_counts, gold_rates_from_counts
from lightning_w2s.metrics.stats import known_rows, ratio
from lightning_w2s.metrics.validation import as_tensor, check_choice, check_finite, check_labels, check_scalar, describe

__all__ = ["GOLD_KEYS", "GOLD_SQ_KEYS", "GoldSquaredError", "accuracy_bounds", "gold_rates", "gold_squared_error", "pgr"]


def gold_rates(student_pred, teacher_pred, gold, covered=None, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """The pooled gold rates (module docstring): 0-d float64 tensors under ``GOLD_KEYS``.

    ``student_pred``/``teacher_pred``/``gold``: ``(n,)`` int labels, ``gold = -1`` unknown;
    ``covered``: ``(n,)`` bool, ``False`` where the teacher abstains (``None`` = all covered);
    ``num_classes``: ``k`` (default: the largest label + 1). A rate over an empty set is ``NaN``
    (with ``NaN`` bounds).

    >>> out = gold_rates(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), torch.tensor([0, 1, -1]))
    >>> float(out["accuracy"]), float(out["teacher_accuracy"]), float(out["imitation_rate"])
    (1.0, 0.5, 0.0)
    """
    if num_classes is None:
        labels = [as_tensor(name, v) for name, v in (("student_pred", student_pred), ("teacher_pred", teacher_pred), ("gold", gold))]
        num_classes = max([2] + [int(t.max()) + 1 for t in labels if t.numel() and not t.is_floating_point()])
    return gold_rates_from_counts(correction_counts(student_pred, teacher_pred, gold, covered, num_classes))


def _defined(fn, n: int, *args, **kwargs):
    """``fn(*args, **kwargs)``, or ``n`` NaNs without calling it (no warning) when an input is NaN: an
    undefined rate makes the bound undefined, which the aggregator reports as a note."""
    if any(isinstance(x, float) and math.isnan(x) for x in (*args, *kwargs.values())):
        return math.nan if n == 1 else (math.nan,) * n
    return fn(*args, **kwargs)


def accuracy_bounds(rates: dict | None, teacher_score: float | None, disagreement: float, coverage: float, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """The logged 0/1 bands and the gain still possible (docs/theory.md §2.2) [derived bounds].

    ``rates``: the pooled gold rates of :class:`~lightning_w2s.metrics.gold_counts.CorrectionRates`
    (``None`` without gold); ``teacher_score``: the user's teacher accuracy (used without gold);
    ``disagreement``: the held-out student–teacher disagreement on covered probe points;
    ``coverage``: ``π``, the share of the probe the teacher covers; ``num_classes``: the task's classes
    (two classes tighten the lower ends to ``|a − d|``; ``None``: any number). Returns 0-d float64 tensors under
    the registry's names (:func:`~lightning_w2s.metrics.bounds.accuracy_band` and
    :func:`~lightning_w2s.metrics.bounds.max_accuracy_gain` give the proofs):

    - ``Q.MAX_GAIN`` = ``max_accuracy_gain(disagreement, coverage=π)`` (label-free, always);
    - with gold: ``a`` = teacher accuracy, ``d`` = covered disagreement (the same covered gold points),
      ``π_gold`` = the share of gold points the teacher covers: ``Q.ACCURACY_LOWER``/``UPPER`` =
      ``accuracy_band(a, d, coverage=π_gold)`` bounds the student's accuracy on all gold points
      (``Q.ACCURACY``) and ``Q.COVERED_ACCURACY_LOWER``/``UPPER`` = ``accuracy_band(a, d)`` bounds it
      on the covered gold points (``Q.COVERED_ACCURACY``), both exactly (counts on the same points);
    - without gold, with ``teacher_score``: ``Q.ACCURACY_LOWER``/``UPPER`` =
      ``accuracy_band(teacher_score, disagreement, coverage=π)``, up to the score's sampling error.

    An undefined input (NaN: an empty conditioning set) gives NaN values, without a warning.

    >>> rates = {"teacher_accuracy": 0.8, "covered_disagreement": 0.0, "n_covered_per_class": torch.tensor([25.0, 25.0]),
    ...          "n_uncovered_per_class": torch.tensor([20.0, 30.0])}
    >>> {k.split("/")[-1]: round(float(v), 6) for k, v in accuracy_bounds(rates, None, 0.0, 0.5).items()}
    {'max_gain': 0.5, 'accuracy_lower': 0.4, 'accuracy_upper': 0.9, 'covered_accuracy_lower': 0.8, 'covered_accuracy_upper': 0.8}
    """
    out = {Q.MAX_GAIN: _defined(max_accuracy_gain, 1, float(disagreement), coverage=coverage)}
    if rates is not None:
        a, d = float(rates["teacher_accuracy"]), float(rates["covered_disagreement"])
        n_cov, n_unc = float(rates["n_covered_per_class"].sum()), float(rates["n_uncovered_per_class"].sum())
        pi_gold = n_cov / (n_cov + n_unc) if n_cov + n_unc > 0 else math.nan
        out[Q.ACCURACY_LOWER], out[Q.ACCURACY_UPPER] = _defined(accuracy_band, 2, a, d, coverage=pi_gold, num_classes=num_classes)
        out[Q.COVERED_ACCURACY_LOWER], out[Q.COVERED_ACCURACY_UPPER] = _defined(accuracy_band, 2, a, d, num_classes=num_classes)
    elif teacher_score is not None:
        band = _defined(accuracy_band, 2, float(teacher_score), float(disagreement), coverage=coverage, num_classes=num_classes)
        out[Q.ACCURACY_LOWER], out[Q.ACCURACY_UPPER] = band
    return {name: torch.tensor(float(v), dtype=torch.float64) for name, v in out.items()}


# ----------------------------------------------------------------------------------------------
# squared error against gold (Charikar's measured gain)
# ----------------------------------------------------------------------------------------------
GOLD_SQ_KEYS = ("student_sq_error", "teacher_sq_error", "sq_gain")


def _real_values(name: str, value) -> torch.Tensor:
    """Real outputs or targets as float64: array-likes (Python lists, numpy arrays) convert *straight*
    to float64, never through torch's float32 default (which rounds ``1.0011`` before any float64
    cast); a tensor keeps its values (its precision is the caller's) and is cast to float64."""
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"`{name}` must hold real values, got {describe(value)}")
        return value.double()
    return as_tensor(name, value, dtype=torch.float64)


def gold_squared_error_terms(student_out: torch.Tensor, teacher_out: torch.Tensor, target: torch.Tensor, task: str = "classification") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample ``‖f_s − y‖²`` and ``‖f_w − y‖²`` on the rows with a known target, and their count.

    ``task="classification"``: ``(n, k)`` probabilities against the one-hot gold ``e_y`` (the Brier
    score, summed over classes); ``target`` int, ``-1`` = unknown (dropped).
    ``task="regression"``: ``(n,)`` or ``(n, m)`` real outputs against a real ``target`` of the same
    shape; ``NaN`` in ``target`` = unknown (dropped).
    Computed in float64; array-like outputs (and real targets) are converted straight to float64.
    """
    check_choice("task", task, ("classification", "regression"))
    s = _real_values("student_out", student_out)
    w = _real_values("teacher_out", teacher_out)
    # class-index targets stay integers (their checks reject floats); real targets go to float64
    y = as_tensor("target", target) if task == "classification" else _real_values("target", target)
    if s.shape != w.shape:
        raise ValueError(f"`student_out` and `teacher_out` must have the same shape, got {tuple(s.shape)} and {tuple(w.shape)}")
    check_finite("student_out", s)
    check_finite("teacher_out", w)
    if task == "classification":
        if s.ndim != 2:
            raise ValueError(f"`student_out` must be (n, k) probabilities for task='classification', got {describe(s)}")
        y = check_labels("target", y, s.shape[0], s.shape[1], allow_minus_one=True)
        known = y >= 0
        onehot = torch.nn.functional.one_hot(y[known], s.shape[1]).double()
        es = (s[known] - onehot).pow(2).sum(dim=1)
        ew = (w[known] - onehot).pow(2).sum(dim=1)
    else:
        if s.ndim not in (1, 2) or y.shape != s.shape:
            raise ValueError(f"`target` must have the shape of `student_out` ((n,) or (n, m)), got {describe(y)} and {describe(s)}")
        known = known_rows(y)
        ds, dw = s[known] - y[known], w[known] - y[known]
        es = ds.pow(2) if ds.ndim == 1 else ds.pow(2).sum(dim=1)
        ew = dw.pow(2) if dw.ndim == 1 else dw.pow(2).sum(dim=1)
    return es, ew, known.sum().to(torch.float64)


def _sq_compute(sum_s: torch.Tensor, sum_w: torch.Tensor, n: torch.Tensor) -> dict[str, torch.Tensor]:
    es, ew = ratio(sum_s, n), ratio(sum_w, n)  # NaN without a known gold row, no host read
    return {"student_sq_error": es, "teacher_sq_error": ew, "sq_gain": ew - es}


def gold_squared_error(student_out: torch.Tensor, teacher_out: torch.Tensor, target: torch.Tensor, task: str = "classification") -> dict[str, torch.Tensor]:
    """``err_sq(s)``, ``err_sq(w)`` (mean squared distance to gold) and ``sq_gain = err_sq(w) − err_sq(s)``.

    The measured side of Charikar et al. 2024, Thm 1 (compare with
    :func:`lightning_w2s.metrics.bounds.charikar_predicted_gain` of the misfit ``sq``) [definition].
    Keys ``GOLD_SQ_KEYS``; ``NaN`` when no row has a known target.
    """
    es, ew, n = gold_squared_error_terms(student_out, teacher_out, target, task)
    return _sq_compute(es.sum(), ew.sum(), n)


class GoldSquaredError(Metric):
    """Streaming :func:`gold_squared_error` (float64 sum states).

    >>> m = GoldSquaredError()
    >>> m.update(torch.tensor([[0.8, 0.2]]), torch.tensor([[0.5, 0.5]]), torch.tensor([0]))
    >>> {k: round(float(v), 4) for k, v in m.compute().items()}
    {'student_sq_error': 0.08, 'teacher_sq_error': 0.5, 'sq_gain': 0.42}
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, task: str = "classification", **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice("task", task, ("classification", "regression"))
        self.task = task
        for name in ("sum_student", "sum_teacher", "total"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, student_out: torch.Tensor, teacher_out: torch.Tensor, target: torch.Tensor) -> None:
        es, ew, n = gold_squared_error_terms(student_out, teacher_out, target, self.task)
        self.sum_student += es.sum()
        self.sum_teacher += ew.sum()
        self.total += n

    def compute(self) -> dict[str, torch.Tensor]:
        return _sq_compute(self.sum_student, self.sum_teacher, self.total)


# ----------------------------------------------------------------------------------------------
# PGR
# ----------------------------------------------------------------------------------------------
def _score(name: str, value) -> torch.Tensor:
    """``value`` as a float64 tensor, converted *directly* to float64.

    A Python/numpy scalar goes through :func:`check_scalar` (``TypeError`` naming ``name``; NaN passes:
    a score may be undefined) and then ``torch.tensor(float, dtype=float64)``; an array-like through
    ``as_tensor(..., dtype=float64)``. Never via torch's float32 default: ``torch.as_tensor(0.80001)``
    is float32 and rounds the score before any float64 cast (docs/theory.md §2.2). A tensor
    keeps its values (a float32 tensor's precision is the caller's) and is cast to float64.
    """
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"`{name}` must be real-valued, got {describe(value)}")
        return value.to(torch.float64)
    if isinstance(value, numbers.Number) or not hasattr(value, "__array__"):
        if not (isinstance(value, float) and math.isnan(value)):
            value = check_scalar(name, value, float)
        return torch.tensor(float(value), dtype=torch.float64)
    if getattr(getattr(value, "dtype", None), "kind", "") not in "fiu":
        raise TypeError(f"`{name}` must be real-valued, got {describe(value)}")
    return as_tensor(name, value, dtype=torch.float64)


def pgr(student_score, teacher_score, ceiling_score) -> torch.Tensor:
    """Performance gap recovered, ``(P_s − P_w)/(P_ceiling − P_w)`` (Burns et al. 2023, §3) [paper: code].

    ``P`` is any score where higher is better (gold accuracy, AUROC). Undefined when
    ``P_ceiling ≤ P_w`` (the strong ceiling does not beat the teacher): ``NaN`` and a
    ``RuntimeWarning`` naming the values. ``NaN`` inputs give ``NaN`` (no extra warning).
    Inputs broadcast; computed in float64 throughout, and Python floats are converted straight to
    float64 (``pgr(0.80001, 0.8, 0.9)`` is ``1e-4`` to 1e-12 relative); returns a float64 tensor
    (0-d for scalar inputs).
    """
    s = _score("student_score", student_score)
    w = _score("teacher_score", teacher_score)
    c = _score("ceiling_score", ceiling_score)
    s, w, c = torch.broadcast_tensors(s, w, c)
    gap = c - w
    bad = gap <= 0
    if bad.any():
        i = tuple(bad.nonzero()[0].tolist())
        warnings.warn(
            f"PGR undefined: ceiling_score={c[i].item():.6g} <= teacher_score={w[i].item():.6g} (the ceiling must beat the teacher; {int(bad.sum())} value(s)); returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.where(bad, torch.full_like(gap, math.nan), (s - w) / torch.where(bad, torch.ones_like(gap), gap))
