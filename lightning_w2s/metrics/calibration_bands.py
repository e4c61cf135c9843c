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
from torch import nn

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.misfit import misfit_terms
from lightning_w2s.metrics.smooth_calibration import SmoothCalibration, _smce, label_band, teacher_band


class SmoothCalibrationFamily(nn.Module):
    """smCE values, bands (A) and (B), and the CE gain of one probe (module docstring).

    ``teacher_probs`` ``(n, k)``, ``teacher_pred`` ``(n,)``, ``covered`` ``(n,)`` bool, ``gold``
    ``(n,)`` (``-1`` unknown) or ``None``; ``eps``: the probability clamp of the cross-entropies.

    >>> tp = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    >>> family = SmoothCalibrationFamily(tp, tp.argmax(1), torch.ones(3, dtype=torch.bool), torch.tensor([0, 1, 1]))
    >>> family.update(torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.3, 0.7]], dtype=torch.float64), torch.arange(3))
    >>> out = family.compute(teacher_accuracy=None)
    >>> out[Q.CALIBRATION_LOWER] <= out[Q.SMCE_VS_GOLD] <= out[Q.CALIBRATION_UPPER]
    True
    """

    def __init__(self, teacher_probs: torch.Tensor, teacher_pred: torch.Tensor, covered: torch.Tensor,
                 gold: torch.Tensor | None, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_classes, self.eps, self.has_gold = teacher_probs.shape[1], eps, gold is not None
        self.register_buffer("teacher_probs", teacher_probs, persistent=False)
        self.register_buffer("gold", gold, persistent=False)
        labels = torch.where(covered, teacher_pred, torch.full_like(teacher_pred, -1))
        self.student = SmoothCalibration(labels, self.num_classes)

    def update(self, probs: torch.Tensor, index: torch.Tensor) -> None:
        self.student.update(probs, index)

    def reset(self) -> None:
        self.student.reset()

    def compute(self, teacher_accuracy: float | None) -> dict[str, float]:
        """The family's values as host floats (NaN where undefined: no row to compute on).
        ``teacher_accuracy``: the plug-in ``a`` of the label-free band, or ``None``. Every DDP rank
        must call it (the state is synced). The probe's tensors cross to the host in one transfer."""
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
            out.update(self._on_gold(p_s[rows], p_w[rows], gold[rows], labels[rows]))
        return out

    def _on_gold(self, p_s: np.ndarray, p_w: np.ndarray, y: np.ndarray, t: np.ndarray) -> dict[str, float]:
        """Both models on the same covered gold points: smCE values, bands (A) and (B), the CE gain and its prediction."""
        n, k = p_s.shape
        out = {Q.SMCE_VS_GOLD: _smce(p_s, y), Q.TEACHER_SMCE_VS_GOLD: _smce(p_w, y)}
        mean_abs = float(np.abs(p_s - p_w).mean()) if n else math.nan
        out[Q.CALIBRATION_LOWER], out[Q.CALIBRATION_UPPER] = teacher_band(out[Q.TEACHER_SMCE_VS_GOLD], mean_abs)
        label_gap = 2.0 / k * float((t != y).mean()) if n else math.nan
        out[Q.CALIBRATION_VS_TEACHER_LOWER], out[Q.CALIBRATION_VS_TEACHER_UPPER] = label_band(_smce(p_s, t), label_gap)
        ce = lambda p: float(-np.log(np.maximum(p[np.arange(n), y], self.eps)).mean()) if n else math.nan  # noqa: E731
        out[Q.CE_GAIN] = ce(p_w) - ce(p_s)
        kl = misfit_terms(torch.from_numpy(p_s), torch.from_numpy(p_w), self.eps)["kl_student_teacher"]
        out[Q.PREDICTED_CE_GAIN] = float(kl.numpy().mean()) if n else math.nan
        return out
