"""The aggregator of a regression probe: a teacher with real outputs (Charikar et al. 2024; Yao et al. 2025).

docs/theory.md §2.1-§2.2, §2.4. A regression probe (``W2SProbe(inputs, teacher_values=..., gold=...)``) holds
the teacher's real outputs ``f_w`` of shape ``(n,)`` or ``(n, m)`` and, optionally, real gold ``y``
of the same shape (``NaN`` = unknown). The student's output on the probe is read as real values
``f_s`` of the same shape. :class:`RegressionMetrics` is that probe's aggregator (the counterpart of
:class:`~lightning_w2s.metrics.aggregator.W2SMetrics`, which
:meth:`W2SMetrics.from_probe <lightning_w2s.metrics.aggregator.W2SMetrics.from_probe>` hands
regression probes to); every state is a torchmetrics sum state (exact under DDP). It logs, under
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
  without teacher features, the student's effective rank.

Classification-only families (KL, disagreement, calibration, the gold rates, Lang et al.'s
statistics, the 0/1 band) are not logged for a regression probe, and :meth:`expected_names` says
exactly what is.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from lightning_w2s import validation as v
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.stats import known_rows
from lightning_w2s.metrics.bounds import charikar_predicted_gain
from lightning_w2s.metrics.gold import GoldSquaredError
from lightning_w2s.metrics.misfit import RegressionMisfit
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, EffectiveRank, GapConstruction, RepresentationGap

__all__ = ["RegressionMetrics"]

Need = Q.Need
#: the classification aggregator's options, accepted (the monitor passes them to both) and unused here
CLASSIFICATION_OPTIONS = frozenset({"eps", "neighbours", "eta", "n_bins", "expansion_history"})


class RegressionMetrics(nn.Module):
    """All metric states of one regression probe, fed batch by batch, computed into logged names.

    Args:
        teacher_values: ``(n,)`` or ``(n, m)`` real teacher outputs (finite).
        gold: real targets of the same shape, ``NaN`` = unknown, or ``None``.
        teacher_features: ``(n, d_w)`` or ``None`` (the representation gap needs them).
        train: a train probe: only the misfit, logged under its train twin (``Q.train_name(Q.SQ)``).
        teacher_score, ceiling_score: must stay ``None`` — they are 0/1 accuracy scores (PGR, the
            accuracy band) and a regression probe has no accuracy (``ValueError`` otherwise).
        representation: the gap's construction (default :data:`DEFAULT_CONSTRUCTION`).
        **classification_options: ``eps``, ``neighbours``, ``eta``, ``n_bins``, ``expansion_history``
            of the classification aggregator, accepted and unused (no probabilities, no class labels).

    >>> metrics = RegressionMetrics(torch.tensor([0.0, 1.0, 2.0]), gold=torch.tensor([0.5, 1.0, float("nan")]))
    >>> metrics.update(torch.tensor([0.2, 1.2, 1.8]), None, torch.arange(3), torch.ones(3, dtype=torch.bool))
    >>> values = metrics.compute()
    >>> [round(float(values[name]), 4) for name in (Q.SQ, Q.PREDICTED_GAIN, Q.STUDENT_SQ_ERROR, Q.TEACHER_SQ_ERROR, Q.SQ_GAIN)]
    [0.04, 0.04, 0.065, 0.125, 0.06]
    """

    task = "regression"
    coverage = 1.0  # a regression teacher gives a value for every point
    wants_neighbours = False  # Lang et al.'s statistics are about class labels
    teacher_score = ceiling_score = None

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
        **classification_options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(classification_options) - CLASSIFICATION_OPTIONS)
        if unknown:
            raise TypeError(f"RegressionMetrics() got unexpected keyword argument(s) {unknown}")
        for name, score in (("teacher_score", teacher_score), ("ceiling_score", ceiling_score)):
            if score is not None:
                raise ValueError(
                    f"`{name}`={score!r} is a 0/1 accuracy score (for PGR and the accuracy band), but the probe is a "
                    "regression probe (`teacher_values=`), which has no accuracy: drop it"
                )
        tv = v.as_tensor("teacher_values", teacher_values, dtype=torch.float64)
        if tv.ndim not in (1, 2):
            raise ValueError(f"`teacher_values` must be (n,) or (n, m) real outputs, got {v.describe(tv)}")
        self.n, self.output_dim = tv.shape[0], 1 if tv.ndim == 1 else tv.shape[1]
        self.train = v.check_scalar("train", train, bool)
        self.register_buffer("teacher_values", tv.reshape(self.n, self.output_dim), persistent=False)
        g = None if gold is None or train else v.as_tensor("gold", gold, dtype=torch.float64).reshape(self.n, self.output_dim)
        self.has_gold = g is not None and bool(known_rows(g).any())
        self.register_buffer("gold", g if self.has_gold else None, persistent=False)
        self.register_buffer("teacher_features", None if teacher_features is None or train else teacher_features, persistent=False)
        self.provides = self._provides()
        self.misfit = RegressionMisfit(validate_args=False)
        self.gold_sq = GoldSquaredError(task="regression") if self.has_gold else None
        self.representation = self.student_rank = None
        self.representation_on = True  # this check feeds and computes the representation family (see reset)
        if self.teacher_features is not None:
            self.representation = RepresentationGap(
                teacher_dim=self.teacher_features.shape[1], label_dim=self.output_dim if self.has_gold else None,
                teacher_reference=self.teacher_features.double().mean(0), **representation.kwargs(),
            )
        elif not train:
            self.student_rank = EffectiveRank()
        self.neighbours = None
        self.extras: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []

    @classmethod
    def from_probe(cls, probe: Any, **kwargs: Any) -> "RegressionMetrics":
        """The metrics of a regression :class:`~lightning_w2s.W2SProbe` (``teacher_values=``)."""
        return cls(probe.teacher_values, gold=probe.gold, teacher_features=probe.teacher_features, **kwargs)

    def _provides(self) -> set[str]:
        if self.train:
            return {Need.TRAIN_PROBE}
        return {need for need, met in ((Need.GOLD, self.has_gold), (Need.TEACHER_FEATURES, self.teacher_features is not None)) if met}

    def expected_names(self) -> set[str]:
        """The names :meth:`compute` can return (the registry's task-"both" names this probe provides)."""
        names = Q.expected_names(self.provides, 0, task=self.task) - {Q.SKIPPED, Q.CHECK}
        return {n for n in names if n.split("/")[1].startswith("train_") == self.train}

    # ------------------------------------------------------------------ the student's output
    def student_values(self, output: torch.Tensor) -> torch.Tensor:
        """The student's output as ``(b, m)`` float64 real values; ``ValueError`` naming the expected
        shape (``(b,)`` or ``(b, m)`` like the teacher's values) otherwise."""
        out = torch.as_tensor(output)
        m = self.output_dim
        if not out.is_floating_point():
            raise TypeError(f"the student's output must be real values (a floating-point tensor), got {v.describe(out)}")
        if out.ndim == 1 and m == 1 or out.ndim == 2 and out.shape[1] == m:
            return out.double().reshape(out.shape[0], m)
        want = f"(batch,) or (batch, 1)" if m == 1 else f"(batch, {m})"
        raise ValueError(
            f"the student's output has shape {tuple(out.shape)} on the probe but the regression teacher's values are "
            f"{'(n,)' if m == 1 else f'(n, {m})'}; expected {want}. Use `forward_fn=` if the model's forward does not "
            "return the predicted values"
        )

    # ------------------------------------------------------------------ streaming
    @torch.no_grad()
    def update(self, student_values: torch.Tensor, features: torch.Tensor | None, index: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one probe batch: the student's real outputs ``(b,)``/``(b, m)``, its pooled representation
        ``(b, d_s)`` (or ``None``), the batch's probe positions ``index`` and ``valid`` (``False`` on
        padding rows)."""
        dev = self.teacher_values.device
        index, valid = index.to(dev), valid.to(dev)
        s = self.student_values(student_values).to(dev)
        teacher = self.teacher_values[index]
        self.misfit.update(s[valid], teacher[valid])
        if self.train:
            return
        gold = self.gold[index] if self.has_gold else None
        if gold is not None:
            known = valid & known_rows(gold)
            self.gold_sq.update(s[known], teacher[known], gold[known])
        if features is None or not self.representation_on:
            return
        features = features.to(dev).double()[valid]
        if self.representation is not None:
            labels = None if gold is None else gold[valid]
            self.representation.update(features, self.teacher_features[index].double()[valid], labels)
        else:
            self.student_rank.update(features)

    # ------------------------------------------------------------------ values
    def compute(self) -> dict[str, torch.Tensor]:
        """Sync and compute; undefined values (no gold row seen) are left out with a note."""
        self.extras, self.notes = {}, []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            out = {Q.SQ: self.misfit.compute()["sq"]}
            if self.train:
                return {Q.train_name(Q.SQ): out[Q.SQ]}
            sq = float(out[Q.SQ])
            out[Q.PREDICTED_GAIN] = torch.tensor(charikar_predicted_gain(sq) if math.isfinite(sq) else math.nan, dtype=torch.float64)
            if self.gold_sq is not None:
                g = self.gold_sq.compute()
                out[Q.SQ_GAIN], out[Q.STUDENT_SQ_ERROR], out[Q.TEACHER_SQ_ERROR] = g["sq_gain"], g["student_sq_error"], g["teacher_sq_error"]
            if self.representation_on:
                out.update(self._representation())
        kept = {}
        for name, value in out.items():
            if not bool(torch.isfinite(value)) and Q.lookup(name).may_be_undefined:
                self.notes.append(f"{name} is undefined at this check (no gold row seen, or an undefined input)")
            else:
                kept[name] = value.to(torch.float64)
        return kept

    def _representation(self) -> dict[str, torch.Tensor]:
        if self.student_rank is not None:
            return {Q.EFFECTIVE_RANK: self.student_rank.compute()} if self.student_rank.update_count else {}
        if self.representation is None or not self.representation.update_count:
            return {}
        rep = self.representation.compute()
        out = {Q.EFFECTIVE_RANK: rep["effective_rank"], Q.GAP_FRO: rep["fro"], Q.GAP_OP: rep["op"], Q.CKA: rep["cka"]}
        if "pred_gap" in rep:
            out[Q.PRED_GAP_GOLD] = rep["pred_gap"]
        return out

    def flush(self) -> None:
        """Nothing queued: :meth:`update` feeds the states at once (the interface of
        :meth:`W2SMetrics.flush <lightning_w2s.metrics.aggregator.W2SMetrics.flush>`)."""

    def reset(self, representation: bool = True) -> None:
        """Clear every state; ``representation=False`` leaves the representation family out of this
        check (neither fed nor computed; every DDP rank must pass the same value), as
        :meth:`W2SMetrics.reset <lightning_w2s.metrics.aggregator.W2SMetrics.reset>`."""
        self.representation_on = bool(representation)
        for m in self.children():
            if representation or all(m is not family for family in (self.representation, self.student_rank)):
                m.reset()

    # ------------------------------------------------------------------ state (resume)
    def state_dict_extra(self) -> dict:
        """Nothing beyond the per-check sum states (no history, no neighbour table)."""
        return {}

    def load_state_dict_extra(self, state: dict) -> None:
        """Nothing to restore (see :meth:`state_dict_extra`)."""
