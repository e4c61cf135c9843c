"""The representation family of a check (``w2s/representation/...``; docs/theory.md §2.4).

Xue et al. 2025: with the teacher's features of the probe, the gap between the student's and the
teacher's representations (:class:`~lightning_w2s.metrics.representation.RepresentationGap`: the
gap's Frobenius and operator norms, CKA, the student's effective rank and, with labels,
``pred_gap_gold``); without them, only the student's effective rank
(:class:`~lightning_w2s.metrics.representation.EffectiveRank`, one-sided sums). The formulas, and
whether each value is a theorem's quantity or our construction, are in
:mod:`lightning_w2s.metrics.representation`; this component owns the states, the teacher's features
(a buffer: it moves with the aggregator) and the naming.
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.family import Family, Rows
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, EffectiveRank, GapConstruction, RepresentationGap

__all__ = ["RepresentationFamily"]


class RepresentationFamily(Family):
    """The representation gap (with ``teacher_features``) or the student's effective rank.

    Args:
        teacher_features: ``(n, d_w)`` the teacher's representation of the probe, or ``None``.
        construction: the gap's construction (default :data:`DEFAULT_CONSTRUCTION`).
        **labels: ``num_classes=k`` (class labels, ``-1`` unknown) or ``label_dim=m`` (real targets,
            ``NaN`` unknown) when the rows carry gold: turns on ``pred_gap_gold``.

    >>> family = RepresentationFamily(None)
    >>> family.update(Rows(torch.arange(3), torch.zeros(3, 1), None, None, torch.ones(3, dtype=torch.bool),
    ...                    torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])))
    >>> list(family.compute({})) == [Q.EFFECTIVE_RANK]
    True
    """

    sections = ("representation",)

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    teacher_features: torch.Tensor

    def __init__(self, teacher_features: torch.Tensor | None, construction: GapConstruction = DEFAULT_CONSTRUCTION, **labels: Any) -> None:
        super().__init__()
        self.register_buffer("teacher_features", teacher_features, persistent=False)
        self.gap: RepresentationGap | None = None
        self.student_rank: EffectiveRank | None = None
        if teacher_features is not None:
            self.gap = RepresentationGap(teacher_dim=teacher_features.shape[1], teacher_reference=teacher_features.double().mean(0), products=construction.products, **labels, **construction.kwargs())
        else:
            self.student_rank = EffectiveRank(products=construction.products)

    def provides(self) -> set[str]:
        return {Q.Need.TEACHER_FEATURES} if self.gap is not None else set()

    def update(self, rows: Rows) -> None:
        if rows.features is None:  # (the aggregator drops the features when this check leaves the family out)
            return
        if self.gap is not None:
            self.gap.update(rows.features, self.teacher_features[rows.index].double(), rows.gold)
        else:
            self.student_rank.update(rows.features)

    def compute(self, shared: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.student_rank is not None:
            return {Q.EFFECTIVE_RANK: self.student_rank.compute()} if self.student_rank.update_count else {}
        if not self.gap.update_count:
            return {}
        rep = self.gap.compute()
        out = {Q.EFFECTIVE_RANK: rep["effective_rank"], Q.GAP_FRO: rep["fro"], Q.GAP_OP: rep["op"], Q.CKA: rep["cka"]}
        if "pred_gap" in rep:
            out[Q.PRED_GAP_GOLD] = rep["pred_gap"]
        return out
