"""The aggregator's smooth-calibration family: the student's smCE, its bands, and Yao et al.'s CE gain (docs/theory.md §2.3).

One object with its own state (the probe's student predictions, :class:`SmoothCalibration`) and
the probe's teacher tensors, computing at a check, all on the same points:

- label-free, on covered probe points: the student's smCE against the teacher's labels and, from a
  teacher accuracy ``a`` (``teacher_score=`` or the gold one), band (B) at that plug-in accuracy —
  an **estimate** of where the student's smCE against gold lies;
- with gold, on the covered gold points seen at this check: the student's and the teacher's smCE
  against gold, band (A) around the teacher's and band (B) around the student's smCE against the
  teacher's labels — **derived bounds**, exact on those points
  (:func:`~lightning_w2s.metrics.smooth_calibration.teacher_band`,
  :func:`~lightning_w2s.metrics.smooth_calibration.label_band`);
- with gold, the gain in gold cross-entropy ``CE(w) − CE(s)`` on the same points (Yao et al. 2025
  [definition]) and its prediction ``KL(p_s ‖ p_w)`` there (their KL-Pythagorean result: a theorem
  for the reverse-KL projection onto a convex class containing the target, a prediction elsewhere).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.family import Family, Rows
from lightning_w2s.metrics.misfit import misfit_terms
from lightning_w2s.metrics.smooth_calibration import SmoothCalibration, _smce, label_band, teacher_band


class SmoothCalibrationFamily(Family):
    """smCE values, bands (A) and (B), and the CE gain of one probe (module docstring).

    ``teacher_probs`` ``(n, k)``, ``teacher_pred`` ``(n,)``, ``covered`` ``(n,)`` bool, ``gold``
    ``(n,)`` (``-1`` unknown) or ``None``; ``eps``: the probability clamp of the cross-entropies.

    >>> tp = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    >>> family = SmoothCalibrationFamily(tp, tp.argmax(1), torch.ones(3, dtype=torch.bool), torch.tensor([0, 1, 1]))
    >>> p = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.3, 0.7]], dtype=torch.float64)
    >>> family.update(Rows(torch.arange(3), p, p.argmax(1), None, None, None))
    >>> out = {name: float(v) for name, v in family.compute({"rates": None}).items()}
    >>> out[Q.CALIBRATION_LOWER] <= out[Q.SMCE_VS_GOLD] <= out[Q.CALIBRATION_UPPER]
    True
    """

    #: the names this family computes (the calibration section also holds the aggregator's binned ECE/MCE)
    NAMES = (
        Q.SMCE_VS_TEACHER,
        Q.CALIBRATION_ESTIMATE_LOWER,
        Q.CALIBRATION_ESTIMATE_UPPER,
        Q.SMCE_VS_GOLD,
        Q.TEACHER_SMCE_VS_GOLD,
        Q.CALIBRATION_LOWER,
        Q.CALIBRATION_UPPER,
        Q.CALIBRATION_VS_TEACHER_LOWER,
        Q.CALIBRATION_VS_TEACHER_UPPER,
        Q.CE_GAIN,
        Q.PREDICTED_CE_GAIN,
    )
    sections = ("calibration", "bounds", "gold")

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    teacher_probs: torch.Tensor
    gold: torch.Tensor

    def __init__(self, teacher_probs: torch.Tensor, teacher_pred: torch.Tensor, covered: torch.Tensor, gold: torch.Tensor | None, eps: float = 1e-6, teacher_score: float | None = None) -> None:
        super().__init__()
        self.num_classes, self.eps, self.has_gold = teacher_probs.shape[1], eps, gold is not None
        self.teacher_score = teacher_score
        self.register_buffer("teacher_probs", teacher_probs, persistent=False)
        self.register_buffer("gold", gold, persistent=False)
        labels = torch.where(covered, teacher_pred, torch.full_like(teacher_pred, -1))
        self.student = SmoothCalibration(labels, self.num_classes)
        # the teacher's smCE against gold on a set of rows is a constant of the probe: kept per row set
        self._teacher_smce: tuple[bytes, float] | None = None

    def owns(self, name: str) -> bool:
        return name in self.NAMES

    def update(self, rows: Rows) -> None:
        self.student.update(rows.student, rows.index)

    def compute(self, shared: dict) -> dict[str, torch.Tensor]:
        """The family's values as 0-d float64 tensors (NaN where undefined: no row to compute on).
        The label-free band's plug-in teacher accuracy ``a`` is the gold one (``shared["rates"]``)
        when the probe has gold, else ``teacher_score=``. Every DDP rank must call it (the state is
        synced). The probe's tensors cross to the host in one transfer."""
        rates = shared.get("rates")
        a = float(rates["teacher_accuracy"]) if rates is not None else self.teacher_score
        device = self.teacher_probs.device
        return {name: torch.tensor(value, dtype=torch.float64, device=device) for name, value in self._values(a).items()}

    def _values(self, teacher_accuracy: float | None) -> dict[str, float]:
        with self.student.sync_context():
            probs, seen = self.student.predictions()
            k = self.num_classes
            cols = [probs, seen[:, None].double(), self.student.labels[:, None].double(), self.teacher_probs.double()]
            if self.has_gold:
                cols.append(self.gold[:, None].double())
            table = torch.cat(cols, 1).cpu().numpy()
        p_s, seen, labels, p_w = table[:, :k], table[:, k] > 0, table[:, k + 1].astype(np.int64), table[:, k + 2 : 2 * k + 2]
        out = {}
        on_cov = seen & (labels >= 0)
        out[Q.SMCE_VS_TEACHER] = _smce(p_s[on_cov], labels[on_cov])
        gap = math.nan if teacher_accuracy is None else 2.0 / k * (1.0 - teacher_accuracy)
        out[Q.CALIBRATION_ESTIMATE_LOWER], out[Q.CALIBRATION_ESTIMATE_UPPER] = label_band(out[Q.SMCE_VS_TEACHER], gap)
        if self.has_gold:
            gold = table[:, 2 * k + 2].astype(np.int64)
            rows = on_cov & (gold >= 0)
            # the student's smCE against the teacher's labels on these rows: the label-free value when the
            # gold rows are the covered rows (the same inputs, the same number)
            vs_teacher = out[Q.SMCE_VS_TEACHER] if np.array_equal(rows, on_cov) else None
            out.update(self._on_gold(p_s[rows], p_w[rows], gold[rows], labels[rows], vs_teacher))
        return out

    def _on_gold(self, p_s: np.ndarray, p_w: np.ndarray, y: np.ndarray, t: np.ndarray, vs_teacher: float | None = None) -> dict[str, float]:
        """Both models on the same covered gold points: smCE values, bands (A) and (B), the CE gain and its prediction."""
        n, k = p_s.shape
        key = np.ascontiguousarray(y).tobytes() + np.ascontiguousarray(p_w).tobytes()
        if self._teacher_smce is None or self._teacher_smce[0] != key:
            self._teacher_smce = (key, _smce(p_w, y))
        out = {Q.SMCE_VS_GOLD: _smce(p_s, y), Q.TEACHER_SMCE_VS_GOLD: self._teacher_smce[1]}
        mean_abs = float(np.abs(p_s - p_w).mean()) if n else math.nan
        out[Q.CALIBRATION_LOWER], out[Q.CALIBRATION_UPPER] = teacher_band(out[Q.TEACHER_SMCE_VS_GOLD], mean_abs)
        label_gap = 2.0 / k * float((t != y).mean()) if n else math.nan
        out[Q.CALIBRATION_VS_TEACHER_LOWER], out[Q.CALIBRATION_VS_TEACHER_UPPER] = label_band(_smce(p_s, t) if vs_teacher is None else vs_teacher, label_gap)
        ce = lambda p: float(-np.log(np.maximum(p[np.arange(n), y], self.eps)).mean()) if n else math.nan  # noqa: E731
        out[Q.CE_GAIN] = ce(p_w) - ce(p_s)
        kl = misfit_terms(torch.from_numpy(p_s), torch.from_numpy(p_w), self.eps)["kl_student_teacher"]
        out[Q.PREDICTED_CE_GAIN] = float(kl.numpy().mean()) if n else math.nan
        return out
