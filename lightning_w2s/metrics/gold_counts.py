"""The counter of gold events: per-class counts, the rates read from them (Lang, Sontag, Vijayaraghavan 2024).

Lang, Sontag, Vijayaraghavan, "Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS
2024 (arXiv 2405.16043); docs/theory.md §2.5. Notation: ``y`` gold label, ``ỹ`` teacher label, ``f`` the
student's prediction (argmax). The teacher *covers* ``S`` (it gives a label) and abstains on ``T``.
For a gold class ``i``: ``S_i = S ∩ {y = i}``, ``T_i = T ∩ {y = i}``, ``S_i^good = S_i ∩ {ỹ = y}``,
``S_i^bad = S_i ∩ {ỹ ≠ y}``. All probabilities are empirical over the probe's gold points.

One state counts every gold event once (:data:`CORRECTION_COUNTS`, ``(k,)`` float64 vectors per
gold class; :class:`CorrectionRates` streams them, :func:`correction_counts` counts one batch), and
two readings of the same counts live beside it [paper: definitions]:

- the per-class rates of Lang et al. (:func:`rates_from_counts`, :func:`correction_rates`):
  ``α_i = P(ỹ ≠ y | S_i)``, ``err(f, ỹ | S_i)``, ``err(f, y | S_i)``, correction rate
  ``P(f = y | S_i^bad)``, imitation rate ``P(f = ỹ | S_i^bad)``, coverage accuracy
  ``P(f = y | T_i)``, per class (``*_per_class``) and pooled over classes;
- the pooled gold rates with their Wilson intervals (:data:`GOLD_RATES`,
  :func:`gold_rates_from_counts`: the student's and the teacher's gold accuracy, the covered
  accuracy and disagreement behind the exact 0/1 band, ...), which
  :mod:`lightning_w2s.metrics.gold` reads.

Lang et al.'s predicted errors per class, fed with these rates, are
:func:`~lightning_w2s.metrics.correction.lang_bounds`.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from lightning_w2s.metrics.stats import F64 as _F64
from lightning_w2s.metrics.stats import rate_with_interval
from lightning_w2s.metrics.stats import ratio as _ratio
from lightning_w2s.metrics.validation import check_labels, check_mask, check_scalar

__all__ = ["CORRECTION_COUNTS", "GOLD_KEYS", "GOLD_RATES", "CorrectionRates", "correction_counts", "correction_rates", "gold_rates_from_counts", "rates_from_counts"]

#: count states of :class:`CorrectionRates`, each a ``(k,)`` float64 vector indexed by gold class.
CORRECTION_COUNTS = (
    "n_covered",  # |S_i|
    "n_bad",  # |S_i^bad| = #{ỹ ≠ y} on S_i
    "fit_errors",  # #{f ≠ ỹ} on S_i
    "gold_errors_covered",  # #{f ≠ y} on S_i
    "corrected",  # #{f = y} on S_i^bad
    "imitated",  # #{f = ỹ} on S_i^bad
    "n_uncovered",  # |T_i|
    "correct_uncovered",  # #{f = y} on T_i
)

#: rate = numerator / denominator (count names above); the same for per-class and pooled values.
CORRECTION_RATES = {
    "alpha": ("n_bad", "n_covered"),
    "err_teacher_fit": ("fit_errors", "n_covered"),
    "err_gold_covered": ("gold_errors_covered", "n_covered"),
    "correction_rate": ("corrected", "n_bad"),
    "imitation_rate": ("imitated", "n_bad"),
    "coverage_accuracy": ("correct_uncovered", "n_uncovered"),
}


#: pooled gold rates (each with a Wilson 95% interval ``<key>_lower``/``<key>_upper``) as
#: ``(successes, total)`` functions of the class-summed counts: accuracy ``P(s = y)`` over gold
#: points; the teacher's accuracy ``P(w = y)``, the student's accuracy and the disagreement
#: ``P(s ≠ w)`` on *the same* covered gold points (so that ``|acc_s − acc_w| ≤ disagreement``
#: holds exactly for ``covered_accuracy``); correction and imitation on covered gold points the
#: teacher gets wrong; coverage accuracy on uncovered gold points.
GOLD_RATES = {
    "accuracy": lambda c: (c["n_covered"] - c["gold_errors_covered"] + c["correct_uncovered"], c["n_covered"] + c["n_uncovered"]),
    "teacher_accuracy": lambda c: (c["n_covered"] - c["n_bad"], c["n_covered"]),
    "covered_accuracy": lambda c: (c["n_covered"] - c["gold_errors_covered"], c["n_covered"]),
    "covered_disagreement": lambda c: (c["fit_errors"], c["n_covered"]),
    "correction_rate": lambda c: (c["corrected"], c["n_bad"]),
    "imitation_rate": lambda c: (c["imitated"], c["n_bad"]),
    "coverage_accuracy": lambda c: (c["correct_uncovered"], c["n_uncovered"]),
}
#: every key of :func:`gold_rates_from_counts`.
GOLD_KEYS = tuple(k for r in GOLD_RATES for k in (r, f"{r}_lower", f"{r}_upper"))


def _warn_nan(what: str, empty: torch.Tensor, why: str) -> None:
    """One RuntimeWarning naming the classes where ``empty`` (a (k,) bool vector) is True."""
    empty = empty.nonzero().flatten().tolist()
    if empty:
        warnings.warn(f"{what} is NaN for class(es) {empty}: {why}", RuntimeWarning, stacklevel=3)


def correction_counts(student_pred, teacher_pred, gold, covered, num_classes: int) -> dict[str, torch.Tensor]:
    """Per-class counts (float64 ``(k,)`` vectors, :data:`CORRECTION_COUNTS`) of one batch.

    The per-batch math shared by :func:`correction_rates` and :class:`CorrectionRates`. Points
    with ``gold == -1`` are ignored; ``teacher_pred`` is read only where ``covered`` is True (it may
    be anything, e.g. ``-1``, where the teacher abstains).
    """
    k = check_scalar("num_classes", num_classes, int, min_val=2)
    hint = "; pass argmax predictions, e.g. `probs.argmax(dim=1)`"
    s = check_labels("student_pred", student_pred, None, k, allow_minus_one=False, hint=hint)
    n = s.shape[0]
    g = check_labels("gold", gold, n, k, allow_minus_one=True)
    cov = torch.ones(n, dtype=torch.bool, device=s.device) if covered is None else check_mask("covered", covered, n)
    t = check_labels("teacher_pred", teacher_pred, n, None, allow_minus_one=True, hint=hint)
    on_s = (g >= 0) & cov
    if on_s.any() and ((t[on_s] < 0).any() or (t[on_s] >= k).any()):
        raise ValueError(f"`teacher_pred` must lie in [0, {k - 1}] on covered points, got values in [{int(t[on_s].min())}, {int(t[on_s].max())}] there")
    return _counts(s, t, g, cov.to(s.device), k)


#: which outcome patterns each count of :data:`CORRECTION_COUNTS` adds up. A gold point's pattern
#: is ``covered | (ỹ = y) << 1 | (f = y) << 2 | (f = ỹ) << 3`` (16 patterns).
def _count_events() -> torch.Tensor:
    events = {
        "n_covered": lambda c, tr, sr, st: c,
        "n_bad": lambda c, tr, sr, st: c and not tr,
        "fit_errors": lambda c, tr, sr, st: c and not st,
        "gold_errors_covered": lambda c, tr, sr, st: c and not sr,
        "corrected": lambda c, tr, sr, st: c and not tr and sr,
        "imitated": lambda c, tr, sr, st: c and not tr and st,
        "n_uncovered": lambda c, tr, sr, st: not c,
        "correct_uncovered": lambda c, tr, sr, st: not c and sr,
    }
    bits = [tuple(bool(p >> b & 1) for b in range(4)) for p in range(16)]
    return torch.tensor([[float(events[name](*bit)) for bit in bits] for name in CORRECTION_COUNTS], dtype=_F64)


_EVENTS = _count_events()


def _counts(s: torch.Tensor, t: torch.Tensor, g: torch.Tensor, cov: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """:func:`correction_counts` on checked inputs: one ``(16, k)`` histogram of (outcome pattern,
    gold class) over the gold points, then each count as a sum of patterns (exact: integer counts in
    float64). No data-dependent shapes: points with unknown gold add weight 0, so nothing waits for
    the device."""
    pattern = cov.long() | (t == g).long() << 1 | (s == g).long() << 2 | (s == t).long() << 3
    hist = torch.zeros(16 * k, dtype=_F64, device=s.device)
    hist.index_add_(0, pattern * k + g.clamp_min(0), (g >= 0).to(_F64))
    counts = _EVENTS.to(s.device) @ hist.view(16, k)
    return dict(zip(CORRECTION_COUNTS, counts.unbind()))


def gold_rates_from_counts(counts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The pooled gold rates of :data:`GOLD_RATES` with Wilson 95% intervals (0-d float64; a rate
    over an empty set is NaN with NaN bounds) from :func:`correction_counts` sums [definitions]."""
    pooled = {name: value.sum() for name, value in counts.items()}
    successes, totals = zip(*(rate(pooled) for rate in GOLD_RATES.values()))
    rates = rate_with_interval("rate", torch.stack(successes), torch.stack(totals))  # all rates at once
    out: dict[str, torch.Tensor] = {}
    for i, key in enumerate(GOLD_RATES):
        out[key], out[f"{key}_lower"], out[f"{key}_upper"] = rates["rate"][i], rates["rate_lower"][i], rates["rate_upper"][i]
    return out


def rates_from_counts(counts: dict[str, torch.Tensor], warn: bool = True) -> dict[str, torch.Tensor]:
    """Per-class and pooled rates from :func:`correction_counts` sums [paper: definitions].

    Keys (each rate also as ``<name>_per_class``, a ``(k,)`` float64 vector; pooled values are 0-d):
    ``alpha``, ``err_teacher_fit``, ``err_gold_covered``, ``correction_rate``,
    ``imitation_rate``, ``coverage_accuracy``, ``err_gold_uncovered`` (``1 − coverage_accuracy``),
    the counts ``n_covered_per_class``, ``n_bad_per_class``, ``n_uncovered_per_class``, and the
    pooled gold rates with Wilson intervals of :func:`gold_rates_from_counts` (:data:`GOLD_KEYS`).
    A rate whose conditioning set is empty is NaN (and, with ``warn``, a RuntimeWarning names the
    classes).
    """
    out: dict[str, torch.Tensor] = {}
    nums = torch.stack([counts[num] for num, _ in CORRECTION_RATES.values()])
    dens = torch.stack([counts[den] for _, den in CORRECTION_RATES.values()])
    per_class, pooled = _ratio(nums, dens), _ratio(nums.sum(dim=1), dens.sum(dim=1))  # all rates at once
    for i, name in enumerate(CORRECTION_RATES):
        out[f"{name}_per_class"], out[name] = per_class[i], pooled[i]
    out["err_gold_uncovered_per_class"] = 1.0 - out["coverage_accuracy_per_class"]
    out["err_gold_uncovered"] = 1.0 - out["coverage_accuracy"]
    for c in ("n_covered", "n_bad", "n_uncovered"):
        out[f"{c}_per_class"] = counts[c].clone()
    out.update(gold_rates_from_counts(counts))
    if warn:
        _warn_nan("alpha / err_teacher_fit / err_gold_covered", counts["n_covered"] == 0, "no covered gold points of that class")
        _warn_nan("correction_rate / imitation_rate", (counts["n_bad"] == 0) & (counts["n_covered"] > 0), "the teacher makes no mistake on covered gold points of that class (S_i^bad is empty)")
        _warn_nan("coverage_accuracy", counts["n_uncovered"] == 0, "no uncovered gold points of that class (T_i is empty)")
    return out


def correction_rates(student_pred, teacher_pred, gold, covered, num_classes: int, warn: bool = True) -> dict[str, torch.Tensor]:
    """Functional pseudolabel-correction / coverage rates (Lang et al. 2024, §2.5) [paper: definitions].

    Args:
        student_pred: ``(n,)`` student argmax predictions.
        teacher_pred: ``(n,)`` teacher labels (argmax); read only where ``covered``.
        gold: ``(n,)`` gold labels, ``-1`` = unknown (ignored).
        covered: ``(n,)`` bool, False where the teacher abstains (the uncovered set ``T``); ``None``
            = all covered.
        num_classes: ``k``.
        warn: emit a RuntimeWarning naming the classes whose rates are NaN (empty sets).

    Returns:
        see :func:`rates_from_counts`. The pooled ``coverage_accuracy``, ``correction_rate`` and
        ``imitation_rate`` are the logged gold rates of the same names
        (:data:`lightning_w2s.metrics.quantities.GOLD_RATES`).
    """
    return rates_from_counts(correction_counts(student_pred, teacher_pred, gold, covered, num_classes), warn=warn)


class CorrectionRates(Metric):
    """Streaming :func:`correction_rates`: ``(k,)`` float64 count vectors, ``dist_reduce_fx="sum"``.

    Memory is ``8k`` numbers whatever the probe size; a DDP sync is exact. ``update`` takes the
    valid (non-padding) rows of a probe batch. ``compute`` also returns the pooled gold rates with
    Wilson intervals (:data:`GOLD_KEYS`), which count the same events.

    >>> m = CorrectionRates(num_classes=2, warn=False)
    >>> m.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, -1]),
    ...          torch.tensor([True, True, True, False]))
    >>> out = m.compute()
    >>> float(out["accuracy"]), float(out["teacher_accuracy"]), float(out["correction_rate"])
    (1.0, 0.6666666666666666, 1.0)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, num_classes: int, warn: bool = True, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_scalar("num_classes", num_classes, int, min_val=2)
        self.warn = warn
        self.validate_args = validate_args
        for name in CORRECTION_COUNTS:
            self.add_state(name, torch.zeros(self.num_classes, dtype=_F64), dist_reduce_fx="sum")

    def update(self, student_pred, teacher_pred, gold, covered=None) -> None:
        """Add a batch. With ``validate_args=False`` the inputs must already be int64 tensors on the
        states' device (``covered`` a bool tensor): no checks, no host synchronisation."""
        if self.validate_args:
            counts = correction_counts(student_pred, teacher_pred, gold, covered, self.num_classes)
        else:
            cov = torch.ones_like(gold, dtype=torch.bool) if covered is None else covered
            counts = _counts(student_pred, teacher_pred, gold, cov, self.num_classes)
        for name, value in counts.items():
            getattr(self, name).add_(value.to(getattr(self, name).device))  # in place: no module attribute churn

    def compute(self) -> dict[str, torch.Tensor]:
        return rates_from_counts({name: getattr(self, name) for name in CORRECTION_COUNTS}, warn=self.warn)
