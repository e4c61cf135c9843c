"""Misfit between student and teacher (Charikar et al. 2024; Yao et al. 2025) — label-free.

docs/theory.md §2.1. For student probabilities ``p_s`` and teacher probabilities ``p_w`` (k classes):

- ``kl_teacher_student = mean KL(p_w ‖ p_s)`` — the soft-label cross-entropy objective minus the
  teacher's entropy;
- ``kl_student_teacher = mean KL(p_s ‖ p_w)`` — the direction of the KL Pythagorean inequality;
- ``disagreement = mean 1[argmax p_s ≠ argmax p_w]``, with a Wilson 95% interval
  (``disagreement_lower``, ``disagreement_upper``; :mod:`lightning_w2s.metrics.stats`);
- ``sq = mean ‖p_s − p_w‖²`` — Charikar et al.'s misfit (Thm 1 uses it for squared loss);
- ``teacher_label_ce = mean −log max(p_s[y_w], eps)``, ``y_w = argmax p_w`` — the student's
  cross-entropy on the teacher's hard label: the training objective of a student fitted to the
  teacher's labels, on held-out points (a noisy-validation loss; equal to ``kl_teacher_student``
  for a one-hot teacher);
- ``kappa`` — Cohen's kappa between the student's and the teacher's argmax labels
  (chance-corrected agreement, Cohen 1960), from a ``k × k`` agreement-count state (the counts of
  torchmetrics' ``multiclass_confusion_matrix``, see :func:`agreement_counts`).

Regression (real outputs ``f_s, f_w`` of shape ``(n,)`` or ``(n, m)``): :func:`regression_misfit` /
:class:`RegressionMisfit` give ``sq = mean ‖f_s − f_w‖²`` (Charikar's misfit for real outputs; for
``m = 1`` it equals torchmetrics' ``MeanSquaredError`` between the two).

Probabilities are clamped at ``eps`` (default ``1e-6``) before logarithms; terms with ``p = 0`` in
the first argument of the KL contribute exactly 0 (``0 log 0 = 0``), so a one-hot teacher gives
``KL(p_w ‖ p_s) = −log max(p_s[y], eps)``. These are definitions (exact), not bounds.

Degenerate values: with no data every value is ``NaN``. Kappa is undefined (``0/0``) when the
chance agreement is 1 — both student and teacher put every point in the same single class — and
is then ``NaN`` with a warning saying so.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from lightning_w2s.metrics.stats import rate_with_interval, ratio
from lightning_w2s.metrics.validation import as_tensor, check_finite, check_probabilities, check_scalar, describe

MISFIT_KEYS = ("kl_teacher_student", "kl_student_teacher", "disagreement", "sq", "teacher_label_ce")
#: every key :func:`misfit` and :meth:`Misfit.compute` return (``MISFIT_KEYS`` first).
MISFIT_ALL_KEYS = MISFIT_KEYS + ("disagreement_lower", "disagreement_upper", "kappa")


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _check_eps(eps) -> float:
    return check_scalar("eps", eps, float, min_val=0.0, max_val=0.5, include_boundaries="neither")


def _check_pair(student_probs, teacher_probs, validate_args: bool) -> tuple[torch.Tensor, torch.Tensor]:
    s = as_tensor("student_probs", student_probs)
    t = as_tensor("teacher_probs", teacher_probs)
    for name, v in (("student_probs", s), ("teacher_probs", t)):
        if not v.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point (n, num_classes) tensor of probabilities, got {describe(v)}")
    if s.ndim != 2 or s.shape != t.shape or s.shape[1] < 1:
        raise ValueError(f"`student_probs` and `teacher_probs` must both be (n, k) with the same shape and k >= 1, got {tuple(s.shape)} and {tuple(t.shape)}")
    if validate_args:
        check_probabilities("student_probs", s, hint="apply softmax to logits first")
        check_probabilities("teacher_probs", t, hint="apply softmax to logits first")
    return s, t


# ----------------------------------------------------------------------------------------------
# shared math (per sample / per batch), used by both the functional and the Metric
# ----------------------------------------------------------------------------------------------
def _kl_rows(p: torch.Tensor, q: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-wise KL(p ‖ q) with logs of ``clamp(·, eps)`` and ``0 log 0 = 0``."""
    log_ratio = p.clamp_min(eps).log() - q.clamp_min(eps).log()
    return torch.where(p > 0, p * log_ratio, torch.zeros_like(p)).sum(dim=1)


def misfit_terms(student_probs: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 1e-6) -> dict[str, torch.Tensor]:
    """Per-sample misfit terms (float64), shared by :func:`misfit` and :class:`Misfit`.

    Keys ``MISFIT_KEYS``; each value has shape ``(n,)``. Only shapes are checked here.
    """
    if student_probs.shape != teacher_probs.shape or student_probs.ndim != 2:
        raise ValueError(f"`student_probs` and `teacher_probs` must both be (n, k) with the same shape, got {tuple(student_probs.shape)} and {tuple(teacher_probs.shape)}")
    s = student_probs.double()
    t = teacher_probs.double()
    return {
        "kl_teacher_student": _kl_rows(t, s, eps),
        "kl_student_teacher": _kl_rows(s, t, eps),
        "disagreement": (s.argmax(dim=1) != t.argmax(dim=1)).double(),
        "sq": (s - t).pow(2).sum(dim=1),
        "teacher_label_ce": -s.gather(1, t.argmax(dim=1, keepdim=True)).squeeze(1).clamp_min(eps).log(),
    }


def agreement_counts(student_labels: torch.Tensor, teacher_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(k, k)`` float64 counts ``C[teacher class, student class]`` — torchmetrics'
    ``multiclass_confusion_matrix(student, teacher)`` (the tests' oracle), counted here with one
    ``index_add_`` into a fixed-size vector: ``torch.bincount`` (inside torchmetrics) reads the largest
    label back to the host on a GPU, at every batch."""
    k = num_classes
    counts = torch.zeros(k * k, dtype=torch.float64, device=student_labels.device)
    counts.index_add_(0, teacher_labels.long() * k + student_labels.long(), torch.ones_like(counts[:1]).expand(student_labels.shape[0]))
    return counts.view(k, k)


def cohen_kappa_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Cohen's kappa ``(p_o − p_e)/(1 − p_e)`` from a ``(k, k)`` count matrix (Cohen 1960) [definition].

    Computed as ``(N·tr C − Σ_c r_c k_c) / (N² − Σ_c r_c k_c)`` (row sums ``r``, column sums ``k``),
    which is exact in float64 for integer counts, so the degenerate case ``p_e = 1`` is detected
    exactly. Equal to torchmetrics' unweighted ``cohen_kappa`` and scikit-learn's
    ``cohen_kappa_score``. Written out here (three lines) because torchmetrics' reducer is private
    and returns a silent ``NaN`` when ``p_e = 1``; here that case warns. No data: ``NaN``.
    """
    counts = counts.to(torch.float64)
    if counts.ndim != 2:  # never updated (lazy state): no data
        return torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
    n = counts.sum()
    chance = (counts.sum(dim=1) * counts.sum(dim=0)).sum()
    num = n * counts.diagonal().sum() - chance
    den = n * n - chance
    defined = (n > 0) & (den != 0)
    if bool((n > 0) & (den == 0)):  # one host read, for the warning
        warnings.warn(
            f"Cohen's kappa is undefined (chance agreement p_e = 1: student and teacher put all {int(n.item())} points in the same single class); returning NaN", RuntimeWarning, stacklevel=2
        )
    return torch.where(defined, num / torch.where(defined, den, torch.ones_like(den)), torch.full_like(den, float("nan")))


def _misfit_batch(s: torch.Tensor, t: torch.Tensor, eps: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Sums of the per-sample terms and the agreement counts of one batch."""
    sums = {k: v.sum() for k, v in misfit_terms(s, t, eps).items()}
    counts = agreement_counts(s.argmax(dim=1), t.argmax(dim=1), s.shape[1])
    return sums, counts


def _misfit_compute(sums: dict[str, torch.Tensor], total: torch.Tensor, counts: torch.Tensor) -> dict[str, torch.Tensor]:
    total = torch.as_tensor(total, dtype=torch.float64)
    out = {k: ratio(sums[k], total) for k in MISFIT_KEYS}  # no host read: NaN without data
    out.update({k: v for k, v in rate_with_interval("disagreement", sums["disagreement"], total).items() if k != "disagreement"})
    out["kappa"] = cohen_kappa_from_counts(counts)
    return out


# ----------------------------------------------------------------------------------------------
# classification
# ----------------------------------------------------------------------------------------------
def misfit(student_probs: torch.Tensor, teacher_probs: torch.Tensor, eps: float = 1e-6, *, validate_args: bool = True) -> dict[str, torch.Tensor]:
    """Functional misfit (docs/theory.md §2.1; docs/architecture.md) — definitions, exact.

    Args:
        student_probs, teacher_probs: ``(n, k)`` probabilities (rows in ``[0, 1]`` summing to 1).
        eps: clamp for logarithms.
        validate_args: check finiteness / range / row sums (set ``False`` in hot loops).

    Returns:
        0-d float64 tensors under ``MISFIT_ALL_KEYS``: ``kl_teacher_student``,
        ``kl_student_teacher``, ``disagreement``, ``sq``, ``teacher_label_ce``, ``disagreement_lower``,
        ``disagreement_upper`` (Wilson 95%), ``kappa``. ``NaN`` for an empty input.
    """
    eps = _check_eps(eps)
    s, t = _check_pair(student_probs, teacher_probs, validate_args)
    sums, counts = _misfit_batch(s, t, eps)
    return _misfit_compute(sums, torch.tensor(float(s.shape[0]), dtype=torch.float64, device=s.device), counts)


class Misfit(Metric):
    """Streaming :func:`misfit` with sum states (exact under DDP, memory independent of n).

    States (float64, ``dist_reduce_fx="sum"``): the sum of each per-sample term, ``total`` and the
    ``k × k`` agreement counts for kappa.

    Args:
        eps: probability clamp for logarithms.
        num_classes: ``k``. If ``None`` it is taken from the first batch (the count state starts as
            a scalar 0 and broadcasts to ``k × k``); pass it explicitly under DDP so that every
            rank's state has the same shape even if a rank sees no batch.
        validate_args: check the probabilities at every ``update`` (one host sync per batch).

    >>> m = Misfit(num_classes=2)
    >>> m.update(torch.tensor([[0.9, 0.1], [0.4, 0.6]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    >>> out = m.compute()
    >>> float(out["disagreement"]), round(float(out["sq"]), 4)  # (0.02 + 0.72) / 2
    (0.5, 0.37)
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    total: torch.Tensor
    agreement: torch.Tensor

    def __init__(self, eps: float = 1e-6, num_classes: int | None = None, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_scalar("num_classes", num_classes, int, min_val=1, allow_none=True)
        self.eps = _check_eps(eps)
        self.num_classes = num_classes
        self.validate_args = validate_args
        for key in MISFIT_KEYS:
            self.add_state(f"sum_{key}", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        default = torch.tensor(0.0, dtype=torch.float64) if num_classes is None else torch.zeros(num_classes, num_classes, dtype=torch.float64)
        self.add_state("agreement", default, dist_reduce_fx="sum")

    def update(self, student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> None:
        s, t = _check_pair(student_probs, teacher_probs, self.validate_args)
        k = s.shape[1]
        if self.agreement.ndim == 2 and self.agreement.shape[0] != k:
            raise ValueError(f"`student_probs` has {k} classes but this Misfit counts {self.agreement.shape[0]} (num_classes={self.num_classes}); got {describe(s)}")
        sums, counts = _misfit_batch(s, t, self.eps)
        for key, value in sums.items():
            getattr(self, f"sum_{key}").add_(value)  # in place: no module attribute churn
        self.total.add_(s.shape[0])
        if self.agreement.ndim == 2:
            self.agreement.add_(counts)
        else:
            self.agreement = self.agreement + counts  # broadcasts a never-updated scalar state to (k, k)

    def compute(self) -> dict[str, torch.Tensor]:
        return _misfit_compute({k: getattr(self, f"sum_{k}") for k in MISFIT_KEYS}, self.total, self.agreement)


# ----------------------------------------------------------------------------------------------
# regression
# ----------------------------------------------------------------------------------------------
def _check_values(student_values, teacher_values, validate_args: bool) -> tuple[torch.Tensor, torch.Tensor]:
    s = as_tensor("student_values", student_values)
    t = as_tensor("teacher_values", teacher_values)
    for name, v in (("student_values", s), ("teacher_values", t)):
        if not (v.is_floating_point() or v.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"`{name}` must be a real-valued (n,) or (n, m) tensor, got {describe(v)}")
        if v.ndim not in (1, 2):
            raise ValueError(f"`{name}` must be (n,) or (n, m) real outputs, got {describe(v)}")
    if s.shape != t.shape:
        raise ValueError(f"`student_values` and `teacher_values` must have the same shape, got {tuple(s.shape)} and {tuple(t.shape)}")
    if validate_args:
        check_finite("student_values", s)
        check_finite("teacher_values", t)
    return s, t


def regression_misfit_terms(student_values: torch.Tensor, teacher_values: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖f_s(x) − f_w(x)‖²`` (float64, shape ``(n,)``); ``(n,)`` inputs are scalar outputs."""
    d = student_values.double() - teacher_values.double()
    return d.pow(2) if d.ndim == 1 else d.pow(2).sum(dim=1)


def regression_misfit(student_values: torch.Tensor, teacher_values: torch.Tensor, *, validate_args: bool = True) -> dict[str, torch.Tensor]:
    """Charikar et al.'s misfit for real outputs: ``{"sq": mean ‖f_s − f_w‖²}`` [definition].

    The quantity in Charikar et al. 2024, Thm 1 (``err(s) ≤ err(w) − misfit``; see
    :func:`lightning_w2s.metrics.bounds.charikar_predicted_gain`). ``NaN`` for an empty input.
    """
    s, t = _check_values(student_values, teacher_values, validate_args)
    terms = regression_misfit_terms(s, t)
    n = terms.shape[0]
    return {"sq": terms.sum() / n if n else torch.tensor(float("nan"), dtype=torch.float64)}


class RegressionMisfit(Metric):
    """Streaming :func:`regression_misfit` (sum states ``sum_sq``, ``total``; float64).

    >>> m = RegressionMisfit()
    >>> m.update(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0]))
    >>> float(m.compute()["sq"])
    0.125
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    sum_sq: torch.Tensor
    total: torch.Tensor

    def __init__(self, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("sum_sq", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, student_values: torch.Tensor, teacher_values: torch.Tensor) -> None:
        s, t = _check_values(student_values, teacher_values, self.validate_args)
        self.sum_sq += regression_misfit_terms(s, t).sum()
        self.total += s.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        return {"sq": ratio(self.sum_sq, self.total)}  # NaN without data, no host read


# ----------------------------------------------------------------------------------------------
# predicted class distribution (collapse detector)
# ----------------------------------------------------------------------------------------------
class PredictionShares(Metric):
    """Share of the probe that the student (and the teacher) put in each class — label-free.

    ``max_class_share`` near 1 while the teacher's is not means the student's predictions have
    collapsed to one class (a heuristic alarm, not a theorem). States: two ``(k,)`` count vectors.

    >>> m = PredictionShares(2)
    >>> m.update(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 0, 1]))
    >>> {k: float(v) for k, v in m.compute().items()}
    {'max_class_share': 0.75, 'teacher_max_class_share': 0.5}
    """

    full_state_update = False
    is_differentiable = False

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    student_counts: torch.Tensor
    teacher_counts: torch.Tensor

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("student_counts", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("teacher_counts", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, student_pred: torch.Tensor, teacher_pred: torch.Tensor) -> None:
        for state, labels in ((self.student_counts, student_pred), (self.teacher_counts, teacher_pred)):
            # labels outside [0, k) are not counted (a fixed-size count: no host sync on a GPU)
            inside = (labels >= 0) & (labels < self.num_classes)
            state.index_add_(0, labels.long().clamp(0, self.num_classes - 1), inside.to(torch.float64))

    def compute(self) -> dict[str, torch.Tensor]:
        return {"max_class_share": self.student_counts.max() / self.student_counts.sum(), "teacher_max_class_share": self.teacher_counts.max() / self.teacher_counts.sum()}
