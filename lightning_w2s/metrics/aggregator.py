"""The classification aggregator (:class:`W2SMetrics`) and the factory that picks a probe's aggregator
(:func:`metrics_for_probe`); docs/architecture.md.

:class:`W2SMetrics` owns the states of a probe with class probabilities: the misfit, the prediction
shares, calibration, the gold counter and the squared errors against gold, and holds the
representation family and Lang et al.'s family as components
(:mod:`lightning_w2s.metrics.representation_family`, :mod:`lightning_w2s.metrics.lang_family`).
The queue, the undefined-value filtering, the expected names and the reset are the skeleton every
task aggregator shares (:class:`~lightning_w2s.metrics.base.ProbeMetrics`, whose docstring says what
``compute()`` returns and leaves out).

The probe's teacher-side tensors (teacher probabilities and argmax, coverage, gold, teacher
features) are registered once as buffers: they move with the module to the student's device, and a
batch is only its ``index`` into them. Teacher-side values that depend on the probe alone (the
teacher's calibration against gold) are computed once, over the whole probe, at construction.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics import validation as v
from lightning_w2s.metrics.base import ProbeMetrics
from lightning_w2s.metrics.bounds import charikar_predicted_gain
from lightning_w2s.metrics.calibration import Calibration, calibration_counts, calibration_from_counts, top_label
from lightning_w2s.metrics.calibration_bands import SmoothCalibrationFamily
from lightning_w2s.metrics.family import Rows, host_floats, on_host
from lightning_w2s.metrics.gold import GoldSquaredError, accuracy_bounds, pgr
from lightning_w2s.metrics.gold_counts import CorrectionRates
from lightning_w2s.metrics.gold_intervals import PredictionPoweredAccuracy, pgr_interval
from lightning_w2s.metrics.lang_family import LangFamily
from lightning_w2s.metrics.misfit import Misfit, PredictionShares
from lightning_w2s.metrics.regression import RegressionMetrics
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, GapConstruction
from lightning_w2s.metrics.representation_family import RepresentationFamily

__all__ = ["W2SMetrics", "metrics_for_probe"]

Need = Q.Need


def metrics_for_probe(probe: Any, **kwargs: Any) -> W2SMetrics | RegressionMetrics:
    """The aggregator of a :class:`~lightning_w2s.W2SProbe` (its teacher tensors become buffers):
    :class:`W2SMetrics` for a classification probe, :class:`~lightning_w2s.metrics.regression.RegressionMetrics`
    for a regression probe (``teacher_values=``); ``kwargs`` go to its constructor. The one place
    that reads the probe's task: callers ask the aggregator (``task``, ``misfit_name``,
    ``expected_names()``) instead."""
    if probe.task == RegressionMetrics.task:
        return RegressionMetrics(probe.teacher_values, gold=probe.gold, teacher_features=probe.teacher_features, **kwargs)
    return W2SMetrics(probe.teacher_probs, covered=probe.covered, gold=probe.gold, teacher_features=probe.teacher_features, **kwargs)


class W2SMetrics(ProbeMetrics):
    """All metric states of one probe, fed batch by batch, computed into logged names.

    Args:
        teacher_probs: the probe's teacher probabilities ``(n, k)``.
        covered: ``(n,)`` bool, ``False`` where the teacher abstains (``None``: all covered).
        gold: ``(n,)`` gold labels (``-1`` = unknown) or ``None``: turns on the gold family,
            calibration vs gold, the Charikar gain, the Lang statistics and ``pred_gap_gold``.
        teacher_features: ``(n, d_w)`` or ``None``: turns on the representation gap (Xue et al.);
            without them only the student's effective rank is kept.
        train: a train probe: only the label-free misfit, prediction and calibration-vs-teacher
            families, logged under ``w2s/train_<family>/``.
        eps: probability clamp for logarithms (see :mod:`lightning_w2s.metrics.misfit`).
        teacher_score, ceiling_score: user-given gold scores for PGR and the accuracy band.
        neighbours: ``k`` of the frozen k-NN table behind Lang et al.'s robustness and expansion
            statistics (:meth:`build_neighbours`); 0 turns them off.
        eta: robustness threshold η of Lang et al.'s ``P(R̄_η)``.
        n_bins: reliability-diagram bins.
        expansion_history: how many past checks' student label sets serve as candidate sets for the
            expansion estimate ĉ (the paper retrains students; a live monitor reuses its past checks).
        representation: the gap's construction (default :data:`DEFAULT_CONSTRUCTION`).
        chunk_bytes: queued rows (student probabilities and features, as given) fed to the states at
            once; larger chunks mean fewer, larger updates (default 32 MiB: a whole probe of 2,048
            rows of 2,048 float64 features; 1,024 rows at 4,096 float64 features).

    >>> teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> metrics = W2SMetrics(teacher, gold=torch.tensor([0, 1, 1]), neighbours=0)
    >>> metrics.update(torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.3, 0.7]]), None, torch.arange(3), torch.ones(3, dtype=torch.bool))
    >>> values = metrics.compute()
    >>> float(values[Q.DISAGREEMENT]), float(values[Q.ACCURACY])
    (0.3333333333333333, 1.0)
    """

    task = "classification"
    misfit_name = Q.KL_TEACHER_STUDENT

    def __init__(
        self,
        teacher_probs: torch.Tensor,
        covered: torch.Tensor | None = None,
        gold: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        *,
        train: bool = False,
        eps: float = 1e-6,
        teacher_score: float | None = None,
        ceiling_score: float | None = None,
        neighbours: int = 10,
        eta: float = 0.5,
        n_bins: int = 15,
        expansion_history: int = 10,
        representation: GapConstruction = DEFAULT_CONSTRUCTION,
        chunk_bytes: int = 32 * 2**20,
    ) -> None:
        tp = v.as_tensor("teacher_probs", teacher_probs, dtype=torch.float64)
        v.check_ndim("teacher_probs", tp, 2, "a 2-D (n, num_classes) tensor of probabilities")
        n, k = tp.shape
        super().__init__(n, k, train=train, chunk_bytes=chunk_bytes)
        self.register_buffer("teacher_probs", tp, persistent=False)
        self.register_buffer("teacher_pred", tp.argmax(dim=1), persistent=False)
        self.register_buffer("covered", torch.ones(n, dtype=torch.bool) if covered is None else v.check_mask("covered", covered, n), persistent=False)
        g = None if gold is None or self.is_train_probe else v.check_labels("gold", gold, n, k, allow_minus_one=True)
        self.has_gold = g is not None and bool((g >= 0).any())
        self.register_buffer("gold", g if self.has_gold else None, persistent=False)
        self.has_uncovered = not bool(self.covered.all())
        self.coverage = float(self.covered.double().mean())  # π: the share of the probe the teacher labels
        self.teacher_score = v.check_scalar("teacher_score", teacher_score, float, min_val=0.0, max_val=1.0, allow_none=True)
        self.ceiling_score = v.check_scalar("ceiling_score", ceiling_score, float, min_val=0.0, max_val=1.0, allow_none=True)
        num_neighbours = v.check_scalar("neighbours", neighbours, int, min_val=0)
        eta = v.check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        expansion_history = v.check_scalar("expansion_history", expansion_history, int, min_val=1)

        self.misfit = Misfit(eps=eps, num_classes=k, validate_args=False)
        self.shares = PredictionShares(k)
        self.calibration_vs_teacher = Calibration(n_bins=n_bins, validate_args=False)
        if self.has_gold:
            self.gold_sq = GoldSquaredError()
            self.gold_ppi = PredictionPoweredAccuracy()
            self.gold_ppi = PredictionPoweredAccuracy()
            self.correction = CorrectionRates(k, warn=False, validate_args=False)
            self.calibration_vs_gold = Calibration(n_bins=n_bins, ignore_index=-1, validate_args=False)
            # a constant of the probe: the teacher's reliability histogram on its covered gold points
            known = self.covered & (self.gold >= 0)
            hist = calibration_counts(*top_label(tp[known], self.gold[known]), n_bins)
            self.register_buffer("teacher_calibration_hist", hist, persistent=False)
        if self.is_train_probe:
            return
        self.add_family("representation", RepresentationFamily(teacher_features, representation, num_classes=k if self.has_gold else None))
        if num_neighbours > 0 and n > 2:
            self.add_family("lang", LangFamily(self.teacher_pred, self.gold, self.covered, k, num_neighbours=num_neighbours, eta=eta, expansion_history=expansion_history))
        self.add_family("smooth_calibration", SmoothCalibrationFamily(tp, self.teacher_pred, self.covered, self.gold if self.has_gold else None, eps=eps, teacher_score=self.teacher_score))

    def _provides_own(self) -> set[str]:
        provided = set()
        if self.has_gold:
            provided.add(Need.GOLD)
            if self.teacher_score is not None and self.ceiling_score is not None and self.ceiling_score > self.teacher_score:
                provided.add(Need.PGR_SCORES)
        if self.has_uncovered:
            provided.add(Need.UNCOVERED)
        if self.has_gold or self.teacher_score is not None:
            provided.add(Need.TEACHER_ACCURACY)
        return provided

    # ------------------------------------------------------------------ streaming
    def _device(self) -> torch.device:
        return self.teacher_probs.device

    def _student_rows(self, student: torch.Tensor) -> torch.Tensor:
        return student.double()

    def _update_own(self, rows: Rows) -> None:
        index, probs, s_pred, cov = rows.index, rows.student, rows.student_pred, rows.covered
        tp, t_pred = self.teacher_probs[index], self.teacher_pred[index]
        covered = cov.nonzero().squeeze(1) if self.has_uncovered else None
        on_cov = (lambda t: t) if covered is None else (lambda t: t.index_select(0, covered))  # noqa: E731
        probs_c, tp_c, t_pred_c = on_cov(probs), on_cov(tp), on_cov(t_pred)
        self.misfit.update(probs_c, tp_c)
        self.shares.update(s_pred, t_pred_c)
        self.calibration_vs_teacher.update(probs_c, t_pred_c)
        if self.is_train_probe or rows.gold is None:
            return
        gold = rows.gold
        self.correction.update(s_pred, t_pred, gold, cov)
        self.gold_ppi.update(s_pred, t_pred, gold, cov)
        self.calibration_vs_gold.update(probs, gold)
        known = on_cov(gold) >= 0
        self.gold_sq.update(probs_c[known], tp_c[known], on_cov(gold)[known])

    # ------------------------------------------------------------------ the student's output
    def read_student(self, output: torch.Tensor, student_output: str) -> torch.Tensor:
        """The student's float64 output on a probe batch as class probabilities: the softmax of
        logits (``student_output="logits"``) or the probabilities as given (``"probs"``)."""
        return torch.softmax(output, dim=-1) if student_output == "logits" else output

    def check_student(self, probs: torch.Tensor) -> None:
        """``ValueError`` unless ``probs`` is ``(batch, k)`` for this probe's ``k`` classes."""
        k = self.num_classes
        if probs.ndim != 2 or probs.shape[1] != k:
            raise ValueError(
                f"the student's output has shape {tuple(probs.shape)} on the probe but the teacher has {k} classes "
                f"(`probe` num_classes={k}); expected (batch, {k}). Use `forward_fn=` if the model's forward "
                "does not return logits"
            )

    # ------------------------------------------------------------------ values
    def _compute_own(self, out: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The misfit, prediction and calibration-vs-teacher families (train probes too), then the
        gold family and the 0/1 bands; shares the gold counter's rates with the families
        (``"rates"``, ``None`` without gold)."""
        m = self.misfit.compute()
        out.update({Q.MISFIT[key]: m[key] for key in Q.MISFIT})
        out[Q.lower(Q.DISAGREEMENT)], out[Q.upper(Q.DISAGREEMENT)] = m["disagreement_lower"], m["disagreement_upper"]
        out[Q.KAPPA] = m["kappa"]
        shares = self.shares.compute()
        out[Q.MAX_CLASS_SHARE], out[Q.TEACHER_MAX_CLASS_SHARE] = shares["max_class_share"], shares["teacher_max_class_share"]
        self._calibration(out, self.calibration_vs_teacher, Q.ECE_VS_TEACHER, Q.MCE_VS_TEACHER, "student_vs_teacher")
        if self.is_train_probe:
            return {}
        rates = self.correction.compute() if self.has_gold else None
        self._gold_family(out, rates)
        return {"rates": rates}

    def _calibration(self, out: dict, metric: Calibration, ece: str, mce: str, figure: str) -> None:
        values = metric.compute()
        out[ece], out[mce] = values["ece"], values["mce"]
        self.extras[f"reliability/{figure}"] = torch.stack([values["count"], values["sum_confidence"], values["sum_correct"]])

    def _gold_family(self, out: dict, rates: dict | None) -> None:
        if rates is not None:
            for key, name in Q.GOLD_RATES.items():
                if key == "coverage_accuracy" and not self.has_uncovered:
                    continue
                out[name], out[Q.lower(name)], out[Q.upper(name)] = rates[key], rates[f"{key}_lower"], rates[f"{key}_upper"]
            self._calibration(out, self.calibration_vs_gold, Q.ECE_VS_GOLD, Q.MCE_VS_GOLD, "student_vs_gold")
            hist = self.teacher_calibration_hist  # a constant of the probe (computed once)
            out[Q.TEACHER_ECE_VS_GOLD] = calibration_from_counts(*hist, "l1")
            out[Q.TEACHER_MCE_VS_GOLD] = calibration_from_counts(*hist, "max")
            self.extras["reliability/teacher_vs_gold"] = hist
            sq = self.gold_sq.compute()
            out[Q.SQ_GAIN], out[Q.STUDENT_SQ_ERROR], out[Q.TEACHER_SQ_ERROR] = (sq["sq_gain"], sq["student_sq_error"], sq["teacher_sq_error"])
            out.update(self.gold_ppi.compute())
            out[Q.GOLD_COUNT] = rates["n_covered_per_class"].sum() + rates["n_uncovered_per_class"].sum()
            if Need.PGR_SCORES in self.provides:
                out[Q.PGR_LOWER], out[Q.PGR_UPPER] = pgr_interval(rates["accuracy_lower"], rates["accuracy_upper"], self.teacher_score, self.ceiling_score)
            out.update(self.gold_ppi.compute())
            out[Q.GOLD_COUNT] = rates["n_covered_per_class"].sum() + rates["n_uncovered_per_class"].sum()
            if Need.PGR_SCORES in self.provides:
                out[Q.PGR_LOWER], out[Q.PGR_UPPER] = pgr_interval(rates["accuracy_lower"], rates["accuracy_upper"], self.teacher_score, self.ceiling_score)
        # the scalars the host-side formulas below need, in one transfer
        dis, sq = host_floats(out[Q.DISAGREEMENT], out[Q.SQ])
        host_rates = None
        if rates is not None:
            keys = ("accuracy", "teacher_accuracy", "covered_disagreement", "n_covered_per_class", "n_uncovered_per_class")
            (host_rates,) = on_host({k: rates[k] for k in keys}, (keys,))
            if Need.PGR_SCORES in self.provides:
                out[Q.PGR] = self._t(pgr(float(host_rates["accuracy"]), self.teacher_score, self.ceiling_score))
        out.update({name: self._t(value) for name, value in accuracy_bounds(host_rates, self.teacher_score, dis, self.coverage, self.num_classes).items()})
        out[Q.PREDICTED_GAIN] = self._t(charikar_predicted_gain(sq) if math.isfinite(sq) else math.nan)
