"""The one pure aggregator that owns every metric state for a check (docs/architecture.md).

The monitor only feeds it (``update``), asks for values (``compute``) and clears it (``reset``), so
the whole metric side is testable without a ``Trainer``. Every state is a torchmetrics sum state:
``compute`` syncs them across DDP ranks, so every rank must call it at every check (the set of
metrics is fixed by the configuration, hence the collectives are the same on every rank).

The probe's teacher-side tensors (teacher probabilities and argmax, coverage, gold, teacher
features) are registered once as buffers (:meth:`W2SMetrics.from_probe`): they move with the module
to the student's device, and a batch is only its ``index`` into them.

Cost per check: ``update`` only queues a batch (no computation, no host transfer); the
queued rows are fed to the metric states in chunks of about ``chunk_bytes`` (the probe's rows for a
typical probe: one chunk), so the fixed per-update cost of a dozen metrics is paid per chunk, not per
forward batch, and the valid rows are selected once per chunk. Teacher-side values that depend on
the probe alone (the teacher's calibration against gold) are computed once, over the whole probe, at
construction. ``compute()`` moves the values to the host once (:meth:`W2SMetrics.compute`).

``compute()`` returns ``{logged name: 0-d tensor}`` under the registry's names
(:mod:`lightning_w2s.metrics.quantities`). Values that are *undefined* on this probe at this check
(a gold rate whose conditioning set is empty, a Lang bound whose premises fail, kappa when both
raters use one class: the registry's ``may_be_undefined``) are left out and their reasons
collected in :attr:`W2SMetrics.notes`; a non-finite value that remains (misfit, calibration,
representation) is a numerical fault for the caller to report. Vector results (reliability
histograms, the student's predictions) go to :attr:`W2SMetrics.extras`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import nn

from lightning_w2s import validation as v
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics._lang_family import _host, _LangFamily, _on_host
from lightning_w2s.metrics.threads import single_threaded
from lightning_w2s.metrics.bounds import charikar_predicted_gain
from lightning_w2s.metrics.calibration import Calibration, calibration_counts, calibration_from_counts, top_label
from lightning_w2s.metrics.correction import CorrectionRates
from lightning_w2s.metrics.gold import GoldSquaredError, accuracy_bounds, pgr
from lightning_w2s.metrics.misfit import Misfit, PredictionShares
from lightning_w2s.metrics.neighbours import knn_indices
from lightning_w2s.metrics.regression import RegressionMetrics
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, EffectiveRank, GapConstruction, RepresentationGap
from lightning_w2s.metrics.robustness import NeighbourRobustness

Need = Q.Need


class W2SMetrics(_LangFamily, nn.Module):
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
        super().__init__()
        tp = v.as_tensor("teacher_probs", teacher_probs, dtype=torch.float64)
        v.check_ndim("teacher_probs", tp, 2, "a 2-D (n, num_classes) tensor of probabilities")
        n, k = tp.shape
        self.n, self.num_classes, self.train = n, k, v.check_scalar("train", train, bool)
        self.register_buffer("teacher_probs", tp, persistent=False)
        self.register_buffer("teacher_pred", tp.argmax(dim=1), persistent=False)
        self.register_buffer("covered", torch.ones(n, dtype=torch.bool) if covered is None else v.check_mask("covered", covered, n), persistent=False)
        g = None if gold is None or train else v.check_labels("gold", gold, n, k, allow_minus_one=True)
        self.has_gold = g is not None and bool((g >= 0).any())
        self.register_buffer("gold", g if self.has_gold else None, persistent=False)
        self.register_buffer("teacher_features", None if teacher_features is None or train else teacher_features, persistent=False)
        self.has_uncovered = not bool(self.covered.all())
        self.coverage = float(self.covered.double().mean())  # π: the share of the probe the teacher labels
        self.teacher_score = v.check_scalar("teacher_score", teacher_score, float, min_val=0.0, max_val=1.0, allow_none=True)
        self.ceiling_score = v.check_scalar("ceiling_score", ceiling_score, float, min_val=0.0, max_val=1.0, allow_none=True)
        self.num_neighbours = v.check_scalar("neighbours", neighbours, int, min_val=0)
        self.eta = v.check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        self.expansion_history = v.check_scalar("expansion_history", expansion_history, int, min_val=1)
        self.chunk_bytes = v.check_scalar("chunk_bytes", chunk_bytes, int, min_val=1)
        self._queue: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]] = []
        self._queued_bytes = 0
        self.provides = self._provides()

        self.misfit = Misfit(eps=eps, num_classes=k, validate_args=False)
        self.shares = PredictionShares(k)
        self.calibration_vs_teacher = Calibration(n_bins=n_bins, validate_args=False)
        if self.has_gold:
            self.gold_sq = GoldSquaredError()
            self.correction = CorrectionRates(k, warn=False, validate_args=False)
            self.calibration_vs_gold = Calibration(n_bins=n_bins, ignore_index=-1, validate_args=False)
            # a constant of the probe: the teacher's reliability histogram on its covered gold points
            known = self.covered & (self.gold >= 0)
            hist = calibration_counts(*top_label(tp[known], self.gold[known]), n_bins)
            self.register_buffer("teacher_calibration_hist", hist, persistent=False)
        self.representation = self.student_rank = None
        self.representation_on = True  # this check feeds and computes the representation family (see reset)
        if self.teacher_features is not None:
            self.representation = RepresentationGap(
                teacher_dim=self.teacher_features.shape[1], num_classes=k if self.has_gold else None,
                teacher_reference=self.teacher_features.double().mean(0), products=representation.products,
                **representation.kwargs(),
            )
        elif not train:  # no teacher features: only the student's effective rank (one-sided sums)
            self.student_rank = EffectiveRank(products=representation.products)
        self.robustness: NeighbourRobustness | None = None
        self.neighbours: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []  # the student's probe predictions at past checks
        self.extras: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []

    @classmethod
    def from_probe(cls, probe: Any, **kwargs: Any) -> "W2SMetrics | RegressionMetrics":
        """The metrics of a :class:`~lightning_w2s.W2SProbe` (its teacher tensors become buffers); a
        regression probe (``teacher_values=``) gets its own aggregator,
        :class:`~lightning_w2s.metrics.regression.RegressionMetrics`."""
        if getattr(probe, "is_regression", False):
            return RegressionMetrics.from_probe(probe, **kwargs)
        return cls(probe.teacher_probs, covered=probe.covered, gold=probe.gold, teacher_features=probe.teacher_features, **kwargs)

    def _provides(self) -> set[str]:
        """The :class:`~lightning_w2s.metrics.quantities.Need` values this probe and configuration meet."""
        provided = {Need.TRAIN_PROBE} if self.train else set()
        if self.train:
            return provided
        if self.has_gold:
            provided.add(Need.GOLD)
            if self.teacher_score is not None and self.ceiling_score is not None and self.ceiling_score > self.teacher_score:
                provided.add(Need.PGR_SCORES)
        if self.has_uncovered:
            provided.add(Need.UNCOVERED)
        if self.teacher_features is not None:
            provided.add(Need.TEACHER_FEATURES)
        if self.wants_neighbours:
            provided.add(Need.NEIGHBOURS)
        if self.has_gold or self.teacher_score is not None:
            provided.add(Need.TEACHER_ACCURACY)
        return provided

    def expected_names(self) -> set[str]:
        """The names :meth:`compute` can return (those the registry may leave undefined included)."""
        names = Q.expected_names(self.provides, self.num_classes) - {Q.SKIPPED, Q.CHECK}
        if self.train:
            return {n for n in names if n.split("/")[1].startswith("train_")}
        return {n for n in names if not n.split("/")[1].startswith("train_")}

    # ------------------------------------------------------------------ neighbourhoods (Lang et al.)
    @property
    def wants_neighbours(self) -> bool:
        return not self.train and self.num_neighbours > 0 and self.n > 2

    def build_neighbours(self, student_embedding: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The frozen ``(n, k)`` k-NN table of the probe: in the teacher's features, or, when there are
        none or they cannot define neighbourhoods (e.g. a keyword rule's all-zero rows: a warning says
        so), in ``student_embedding()`` (the student's representation of the whole probe at fit start)."""
        k = min(self.num_neighbours, self.n - 1)
        if self.teacher_features is not None:
            try:
                return knn_indices(self.teacher_features.detach().cpu().double(), k=k)
            except ValueError as exc:
                # knn_indices' own advice names its `metric=` argument, which the monitor does not take
                reason = str(exc).split("; use ")[0]
                warnings.warn(
                    f"W2SMonitor: the teacher's features cannot define neighbourhoods ({reason}); the neighbour table "
                    "uses the student's representation at fit start instead. To use the teacher's, give the probe "
                    "`teacher_features` without all-zero rows (`W2SProbe(..., teacher_features=...)`, or "
                    "`W2SProbe.from_teacher(..., layer=...)` naming a layer whose output has none); "
                    "`W2SMonitor(neighbours=0)` turns these statistics off", UserWarning, stacklevel=2,
                )
        return knn_indices(student_embedding().detach().cpu().double(), k=k)

    def set_neighbours(self, neighbours: torch.Tensor) -> None:
        """Turn on the robustness/expansion statistics with a fixed ``(n, k_nn)`` neighbour table
        (identical on every rank: it indexes the whole probe)."""
        self.neighbours = neighbours.detach().cpu().long()
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        self.robustness = NeighbourRobustness(
            self.neighbours, eta=self.eta, gold=cpu(self.gold), covered=cpu(self.covered) if self.has_gold else None,
            num_classes=self.num_classes,
        ).to(self.teacher_probs.device)

    # ------------------------------------------------------------------ streaming
    def update(self, student_probs: torch.Tensor, features: torch.Tensor | None, index: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one probe batch: the student's class probabilities ``(b, k)``, its pooled
        representation ``(b, d_s)`` (or ``None``), the batch's positions ``index`` ``(b,)`` in the
        probe and ``valid`` ``(b,)`` (``False`` on padding rows, which every metric ignores).

        The batch is queued as given (on its device; features keep their dtype until they are cast
        to float64 in the chunk) and the queue is fed to the states once it holds ``chunk_bytes``;
        :meth:`flush` (and :meth:`compute`) feed the rest. Errors in the rows surface there."""
        features = None if features is None or not self.representation_on else features.detach()
        if self._queue and (features is None) != (self._queue[-1][1] is None):
            self.flush()  # a batch without features never shares a chunk with one that has them
        batch = (student_probs.detach(), features, index, valid)
        self._queue.append(batch)
        self._queued_bytes += sum(t.numel() * t.element_size() for t in batch if t is not None)
        if self._queued_bytes >= self.chunk_bytes:
            self.flush()

    @single_threaded
    def flush(self) -> None:
        """Feed the queued rows to the metric states (one chunk). The queue is emptied first, so a
        chunk that raises is dropped rather than fed again."""
        queue, self._queue, self._queued_bytes = self._queue, [], 0
        if not queue:
            return
        probs, features, index, valid = (
            None if queue[0][i] is None else queue[0][i] if len(queue) == 1 else torch.cat([b[i] for b in queue])
            for i in range(4)
        )
        self._update_rows(probs, features, index, valid)

    @torch.no_grad()
    def _update_rows(self, student_probs: torch.Tensor, features: torch.Tensor | None, index: torch.Tensor, valid: torch.Tensor) -> None:
        """Feed one chunk: the valid rows are selected once, then every family is updated."""
        dev = self.teacher_probs.device
        rows = valid.to(dev).nonzero().squeeze(1)  # padding rows never reach a state
        index = index.to(dev).index_select(0, rows)
        probs = student_probs.to(dev).index_select(0, rows).double()
        tp, t_pred, cov = self.teacher_probs[index], self.teacher_pred[index], self.covered[index]
        s_pred = probs.argmax(dim=1)
        covered = cov.nonzero().squeeze(1) if self.has_uncovered else None
        on_cov = (lambda t: t) if covered is None else (lambda t: t.index_select(0, covered))  # noqa: E731
        probs_c, tp_c, t_pred_c = on_cov(probs), on_cov(tp), on_cov(t_pred)
        self.misfit.update(probs_c, tp_c)
        self.shares.update(s_pred, t_pred_c)
        self.calibration_vs_teacher.update(probs_c, t_pred_c)
        if self.train:
            return
        if self.robustness is not None:
            self.robustness.update(index, s_pred)
        gold = self.gold[index] if self.has_gold else None
        if gold is not None:
            self.correction.update(s_pred, t_pred, gold, cov)
            self.calibration_vs_gold.update(probs, gold)
            known = on_cov(gold) >= 0
            self.gold_sq.update(probs_c[known], tp_c[known], on_cov(gold)[known])
        if features is None:  # (update() drops the features when this check leaves the family out)
            return
        features = features.to(dev).index_select(0, rows)  # the states cast to float64 once, after the finiteness check
        if self.representation is not None:
            self.representation.update(features, self.teacher_features[index], gold)
        else:
            self.student_rank.update(features)

    # ------------------------------------------------------------------ values
    @single_threaded
    def compute(self) -> dict[str, torch.Tensor]:
        """Sync and compute every family; see the module docstring for what is left out. Every
        value is a 0-d float64 tensor on the states' device; the values cross to the host once
        (to tell undefined values from faults), besides the Lang bounds' inputs (host-side
        per-class formulas, :func:`~lightning_w2s.metrics.correction.lang_bounds`)."""
        self.flush()
        out: dict[str, torch.Tensor] = {}
        self.extras, self.notes = {}, []
        with warnings.catch_warnings():
            # after a failed probe pass a state may be empty: its NaN is handled below, the generic
            # torchmetrics "compute before update" warning would only repeat it
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            m = self.misfit.compute()
            out.update({Q.MISFIT[key]: m[key] for key in Q.MISFIT})
            out[Q.lower(Q.DISAGREEMENT)], out[Q.upper(Q.DISAGREEMENT)] = m["disagreement_lower"], m["disagreement_upper"]
            out[Q.KAPPA] = m["kappa"]
            shares = self.shares.compute()
            out[Q.MAX_CLASS_SHARE], out[Q.TEACHER_MAX_CLASS_SHARE] = shares["max_class_share"], shares["teacher_max_class_share"]
            self._calibration(out, self.calibration_vs_teacher, Q.ECE_VS_TEACHER, Q.MCE_VS_TEACHER, "student_vs_teacher")
            if not self.train:
                rates = self.correction.compute() if self.has_gold else None
                self._gold_family(out, rates)
                if self.representation_on:
                    self._representation_family(out)
                self._lang_family(out, rates)
        if self.train:
            out = {Q.train_name(name): value for name, value in out.items()}
        return self._drop_undefined(out)

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
            out[Q.SQ_GAIN], out[Q.STUDENT_SQ_ERROR], out[Q.TEACHER_SQ_ERROR] = sq["sq_gain"], sq["student_sq_error"], sq["teacher_sq_error"]
        # the scalars the host-side formulas below need, in one transfer
        dis, sq = _host(out[Q.DISAGREEMENT], out[Q.SQ])
        host_rates = None
        if rates is not None:
            keys = ("accuracy", "teacher_accuracy", "covered_disagreement", "n_covered_per_class", "n_uncovered_per_class")
            (host_rates,) = _on_host({k: rates[k] for k in keys}, (keys,))
            if Need.PGR_SCORES in self.provides:
                out[Q.PGR] = self._t(pgr(float(host_rates["accuracy"]), self.teacher_score, self.ceiling_score))
        out.update({name: self._t(value) for name, value in accuracy_bounds(host_rates, self.teacher_score, dis, self.coverage).items()})
        out[Q.PREDICTED_GAIN] = self._t(charikar_predicted_gain(sq) if math.isfinite(sq) else math.nan)

    def _representation_family(self, out: dict) -> None:
        if self.student_rank is not None and self.student_rank.update_count:
            out[Q.EFFECTIVE_RANK] = self.student_rank.compute()
        if self.representation is None or self.representation.update_count == 0:
            return
        rep = self.representation.compute()
        out[Q.EFFECTIVE_RANK], out[Q.GAP_FRO], out[Q.GAP_OP], out[Q.CKA] = rep["effective_rank"], rep["fro"], rep["op"], rep["cka"]
        if "pred_gap" in rep:
            out[Q.PRED_GAP_GOLD] = rep["pred_gap"]

    def _drop_undefined(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Leave out the non-finite values the registry allows to be undefined (one host transfer
        for all values); the kept values are elements of one float64 tensor on the states' device."""
        if not out:
            return {}
        dev = self.teacher_probs.device
        values = [torch.as_tensor(value, dtype=torch.float64).reshape(()) for value in out.values()]
        elsewhere = [i for i, value in enumerate(values) if value.device != dev]  # host-side values: one copy
        if elsewhere:
            for i, value in zip(elsewhere, torch.stack([values[i] for i in elsewhere]).to(dev).unbind()):
                values[i] = value
        stacked = torch.stack(values)
        kept = {}
        for (name, value), finite in zip(zip(out, stacked), torch.isfinite(stacked).tolist()):
            if not finite and Q.lookup(name).may_be_undefined:
                self.notes.append(f"{name} is undefined at this check (empty conditioning set or unmet premises)")
                continue
            kept[name] = value
        return kept

    def _t(self, value: float | torch.Tensor) -> torch.Tensor:
        """A 0-d float64 tensor on the states' device."""
        return torch.as_tensor(value, dtype=torch.float64).to(self.teacher_probs.device)

    @single_threaded
    def reset(self, representation: bool = True) -> None:
        """Clear every state and the queue of rows not yet fed (a new check starts from nothing).
        ``representation=False``: this check leaves the representation family out (its states are
        neither fed nor computed, and :meth:`compute` returns none of its names); every DDP rank
        must pass the same value (the family's sync is then skipped on all of them)."""
        self._queue, self._queued_bytes = [], 0
        self.representation_on = bool(representation)
        for m in self.children():
            if representation or all(m is not family for family in (self.representation, self.student_rank)):
                m.reset()

    # ------------------------------------------------------------------ state (resume)
    def state_dict_extra(self) -> dict:
        """What a resume needs besides the (per-check, reset) sum states: the expansion candidate
        sets and the frozen neighbour table (rebuilding it from a resumed student would change it)."""
        return {"history": [h.clone() for h in self.history], "neighbours": self.neighbours}

    def load_state_dict_extra(self, state: dict) -> None:
        self.history = [torch.as_tensor(h).long() for h in state.get("history", [])]
        if state.get("neighbours") is not None:
            self.set_neighbours(torch.as_tensor(state["neighbours"]))
