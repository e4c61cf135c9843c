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
        must call it (the state is synced)."""
        with self.student.sync_context():
            probs, seen = (t.detach().cpu() for t in self.student.predictions())
        labels = self.student.labels.cpu()
        k, out = self.num_classes, {}
        on_cov = seen & (labels >= 0)
        out[Q.SMCE_VS_TEACHER] = _smce(probs[on_cov], labels[on_cov])
        gap = math.nan if teacher_accuracy is None else 2.0 / k * (1.0 - teacher_accuracy)
        out[Q.CALIBRATION_ESTIMATE_LOWER], out[Q.CALIBRATION_ESTIMATE_UPPER] = label_band(out[Q.SMCE_VS_TEACHER], gap)
        if self.has_gold:
            out.update(self._on_gold(probs, labels, on_cov & (self.gold.cpu() >= 0)))
        return out

    def _on_gold(self, probs: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
        p_s, p_w, y, t = probs[rows], self.teacher_probs.cpu()[rows], self.gold.cpu()[rows], labels[rows]
        k, out = self.num_classes, {}
        out[Q.SMCE_VS_GOLD], out[Q.TEACHER_SMCE_VS_GOLD] = _smce(p_s, y), _smce(p_w, y)
        n = int(rows.sum())
        mean_abs = float((p_s - p_w).abs().sum()) / (n * k) if n else math.nan
        out[Q.CALIBRATION_LOWER], out[Q.CALIBRATION_UPPER] = teacher_band(out[Q.TEACHER_SMCE_VS_GOLD], mean_abs)
        label_gap = 2.0 / k * float((t != y).double().mean()) if n else math.nan
        out[Q.CALIBRATION_VS_TEACHER_LOWER], out[Q.CALIBRATION_VS_TEACHER_UPPER] = label_band(_smce(p_s, t), label_gap)
        ce = lambda p: float(-p.gather(1, y[:, None]).clamp_min(self.eps).log().mean()) if n else math.nan  # noqa: E731
        out[Q.CE_GAIN] = ce(p_w) - ce(p_s)
        out[Q.PREDICTED_CE_GAIN] = float(misfit_terms(p_s, p_w, self.eps)["kl_student_teacher"].mean()) if n else math.nan
        return out
