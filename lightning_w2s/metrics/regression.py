"""The aggregator of a regression probe: a teacher with real outputs (Charikar et al. 2024; Yao et al. 2025).

docs/theory.md §2.1-§2.2, §2.4. A regression probe (``W2SProbe(inputs, teacher_values=..., gold=...)``) holds
the teacher's real outputs ``f_w`` of shape ``(n,)`` or ``(n, m)`` and, optionally, real gold ``y``
of the same shape (``NaN`` = unknown). The student's output on the probe is read as real values
``f_s`` of the same shape. :class:`RegressionMetrics` is that probe's aggregator (the counterpart of
:class:`~lightning_w2s.metrics.aggregator.W2SMetrics`; both share the skeleton
:class:`~lightning_w2s.metrics.base.ProbeMetrics`, and
:func:`~lightning_w2s.metrics.aggregator.metrics_for_probe` picks this one for a regression probe);
every state is a torchmetrics sum state (exact under DDP). It logs, under
the registry's names (:mod:`lightning_w2s.metrics.quantities`, task "both"):

- ``Q.SQ`` = ``mean ‖f_s − f_w‖²`` (summed over the ``m`` outputs): Charikar's misfit
  [definition]; on a train probe its train twin;
- ``Q.PREDICTED_GAIN`` = the misfit — Charikar, Pabbaraju, Shiragur 2024, Thm 1: for squared
  loss, a convex strong class that contains the target, and the student the projection of the
  teacher onto it, ``err(s) ≤ err(w) − misfit``, with **equality** when the class is a linear
  subspace (a least-squares head on frozen features). On the probe itself the equality is exact
  (Pythagoras) when the head is the least-squares fit of the teacher's values *on the probe's
  points* and the gold target lies in the head's span [derived]; anywhere else it is a
  **prediction** [paper: gist; exact form recalled, docs/theory.md §2.2];
- with gold: ``Q.SQ_GAIN`` = ``err_sq(w) − err_sq(s)``, ``Q.STUDENT_SQ_ERROR``,
  ``Q.TEACHER_SQ_ERROR`` (means of ``‖f − y‖²`` over the gold points) [definitions];
- the representation family (Xue et al. 2025; ``Q.PRED_GAP_GOLD`` with the real gold as ``y``) or,
  without teacher features, the student's effective rank
  (:class:`~lightning_w2s.metrics.representation_family.RepresentationFamily`, as for classification).

Classification-only families (KL, disagreement, calibration, the gold rates, Lang et al.'s
statistics, the 0/1 band) are not logged for a regression probe, and :meth:`expected_names` says
exactly what is.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics import validation as v
from lightning_w2s.metrics.base import ProbeMetrics
from lightning_w2s.metrics.bounds import charikar_predicted_gain
from lightning_w2s.metrics.family import Rows
from lightning_w2s.metrics.gold import GoldSquaredError
from lightning_w2s.metrics.misfit import RegressionMisfit
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, GapConstruction
from lightning_w2s.metrics.representation_family import RepresentationFamily
from lightning_w2s.metrics.stats import known_rows

__all__ = ["RegressionMetrics"]

Need = Q.Need
#: the classification aggregator's options, accepted (the monitor passes them to both) and unused here
CLASSIFICATION_OPTIONS = frozenset({"eps", "neighbours", "eta", "n_bins", "expansion_history"})


class RegressionMetrics(ProbeMetrics):
    """All metric states of one regression probe, fed batch by batch, computed into logged names.

    Args:
        teacher_values: ``(n,)`` or ``(n, m)`` real teacher outputs (finite).
        gold: real targets of the same shape, ``NaN`` = unknown, or ``None``.
        teacher_features: ``(n, d_w)`` or ``None`` (the representation gap needs them).
        train: a train probe: only the misfit, logged under its train twin (``Q.train_name(Q.SQ)``).
        teacher_score, ceiling_score: must stay ``None`` — they are 0/1 accuracy scores (PGR, the
            accuracy band) and a regression probe has no accuracy (``ValueError`` otherwise).
        representation: the gap's construction (default :data:`DEFAULT_CONSTRUCTION`).
        chunk_bytes: queued rows fed to the states at once (as in
            :class:`~lightning_w2s.metrics.aggregator.W2SMetrics`).
        **classification_options: ``eps``, ``neighbours``, ``eta``, ``n_bins``, ``expansion_history``
            of the classification aggregator, accepted and unused (no probabilities, no class labels).

    >>> metrics = RegressionMetrics(torch.tensor([0.0, 1.0, 2.0]), gold=torch.tensor([0.5, 1.0, float("nan")]))
    >>> metrics.update(torch.tensor([0.2, 1.2, 1.8]), None, torch.arange(3), torch.ones(3, dtype=torch.bool))
    >>> values = metrics.compute()
    >>> [round(float(values[name]), 4) for name in (Q.SQ, Q.PREDICTED_GAIN, Q.STUDENT_SQ_ERROR, Q.TEACHER_SQ_ERROR, Q.SQ_GAIN)]
    [0.04, 0.04, 0.065, 0.125, 0.06]
    """

    task = "regression"
    misfit_name = Q.SQ
    coverage = 1.0  # a regression teacher gives a value for every point
    teacher_score = ceiling_score = None

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    teacher_values: torch.Tensor
    gold: torch.Tensor

    def __init__(
        self,
        teacher_values: torch.Tensor,
        gold: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        *,
        train: bool = False,
        teacher_score: float | None = None,
        ceiling_score: float | None = None,
        representation: GapConstruction = DEFAULT_CONSTRUCTION,
        chunk_bytes: int = 32 * 2**20,
        **classification_options: Any,
    ) -> None:
        unknown = sorted(set(classification_options) - CLASSIFICATION_OPTIONS)
        if unknown:
            raise TypeError(f"RegressionMetrics() got unexpected keyword argument(s) {unknown}")
        for name, score in (("teacher_score", teacher_score), ("ceiling_score", ceiling_score)):
            if score is not None:
                raise ValueError(f"`{name}`={score!r} is a 0/1 accuracy score (for PGR and the accuracy band), but the probe is a regression probe (`teacher_values=`), which has no accuracy: drop it")
        tv = v.as_tensor("teacher_values", teacher_values, dtype=torch.float64)
        if tv.ndim not in (1, 2):
            raise ValueError(f"`teacher_values` must be (n,) or (n, m) real outputs, got {v.describe(tv)}")
        super().__init__(tv.shape[0], 0, train=train, chunk_bytes=chunk_bytes)
        self.output_dim = 1 if tv.ndim == 1 else tv.shape[1]
        self.register_buffer("teacher_values", tv.reshape(self.n, self.output_dim), persistent=False)
        g = None if gold is None or self.is_train_probe else v.as_tensor("gold", gold, dtype=torch.float64).reshape(self.n, self.output_dim)
        self.has_gold = g is not None and bool(known_rows(g).any())
        self.register_buffer("gold", g if self.has_gold else None, persistent=False)
        self.covered = None  # a regression teacher gives a value everywhere
        self.misfit = RegressionMisfit(validate_args=False)
        self.gold_sq = GoldSquaredError(task="regression") if self.has_gold else None
        if not self.is_train_probe:
            family = RepresentationFamily(teacher_features, representation, label_dim=self.output_dim if self.has_gold else None)
            self.add_family("representation", family)

    def _provides_own(self) -> set[str]:
        return {Need.GOLD} if self.has_gold else set()

    # ------------------------------------------------------------------ the student's output
    def read_student(self, output: torch.Tensor, student_output: str) -> torch.Tensor:
        """The student's float64 output on a probe batch, read as real values as it is
        (``student_output`` is for class probabilities and is not used)."""
        return output

    def check_student(self, output: torch.Tensor) -> None:
        """``ValueError`` unless ``output`` is ``(batch,)`` or ``(batch, m)`` like the teacher's values
        (:meth:`student_values`)."""
        self.student_values(output)

    def student_values(self, output: torch.Tensor) -> torch.Tensor:
        """The student's output as ``(b, m)`` float64 real values; ``ValueError`` naming the expected
        shape (``(b,)`` or ``(b, m)`` like the teacher's values) otherwise."""
        out = torch.as_tensor(output)
        m = self.output_dim
        if not out.is_floating_point():
            raise TypeError(f"the student's output must be real values (a floating-point tensor), got {v.describe(out)}")
        if out.ndim == 1 and m == 1 or out.ndim == 2 and out.shape[1] == m:
            return out.double().reshape(out.shape[0], m)
        want = "(batch,) or (batch, 1)" if m == 1 else f"(batch, {m})"
        raise ValueError(
            f"the student's output has shape {tuple(out.shape)} on the probe but the regression teacher's values are "
            f"{'(n,)' if m == 1 else f'(n, {m})'}; expected {want}. Use `forward_fn=` if the model's forward does not "
            "return the predicted values"
        )

    # ------------------------------------------------------------------ streaming
    def _device(self) -> torch.device:
        return self.teacher_values.device

    def _student_rows(self, student: torch.Tensor) -> torch.Tensor:
        return self.student_values(student)

    def _update_own(self, rows: Rows) -> None:
        teacher = self.teacher_values[rows.index]
        self.misfit.update(rows.student, teacher)
        if self.is_train_probe or rows.gold is None:
            return
        known = known_rows(rows.gold)
        self.gold_sq.update(rows.student[known], teacher[known], rows.gold[known])

    # ------------------------------------------------------------------ values
    def _compute_own(self, out: dict[str, torch.Tensor]) -> dict[str, Any]:
        out[Q.SQ] = self.misfit.compute()["sq"]
        if self.is_train_probe:
            return {}
        sq = float(out[Q.SQ])
        out[Q.PREDICTED_GAIN] = torch.tensor(charikar_predicted_gain(sq) if math.isfinite(sq) else math.nan, dtype=torch.float64)
        if self.gold_sq is not None:
            g = self.gold_sq.compute()
            out[Q.SQ_GAIN], out[Q.STUDENT_SQ_ERROR], out[Q.TEACHER_SQ_ERROR] = (g["sq_gain"], g["student_sq_error"], g["teacher_sq_error"])
        return {}
