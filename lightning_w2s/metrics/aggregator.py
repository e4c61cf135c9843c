"""The one pure aggregator that owns every metric state for a check (DESIGN §3).

The monitor only feeds it (``update``), asks for values (``compute``) and clears it (``reset``), so
the whole metric side is testable without a ``Trainer``. Every state is a torchmetrics sum state:
``compute`` syncs them across DDP ranks, so every rank must call it at every check (the set of
metrics is fixed by the configuration, hence the collectives are the same on every rank).

``compute()`` returns ``{"<family>/<quantity>": 0-d tensor}``. Values that are *undefined* on this
probe at this check (a gold rate whose conditioning set is empty, a Lang bound whose premises
fail, kappa when both raters use one class) are left out and their reasons collected in
:attr:`W2SMetrics.notes`; a non-finite value that remains (misfit, calibration, representation)
is a numerical fault for the caller to report. Vector results (reliability histograms, the
student's predictions) go to :attr:`W2SMetrics.extras`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import torch
from torch import nn

from .bounds import accuracy_band, charikar_predicted_gain
from .calibration import Calibration
from .correction import CorrectionRates, lang_bounds
from .expansion import lang_expansion
from .robustness import NeighbourRobustness
from .gold import GOLD_KEYS, GoldSquaredError, pgr
from .misfit import Misfit, PredictionShares
from .representation import DEFAULT_CONSTRUCTION, EffectiveRank, GapConstruction, RepresentationGap

#: Families whose values may be undefined on a given probe/check: left out quietly, with a note.
MAY_BE_UNDEFINED = ("gold/", "bounds/", "lang/", "robustness/", "misfit/kappa")


@dataclass
class ProbeBatch:
    """One batch of the probe as the aggregator sees it (all on the student's device).

    ``valid`` is ``False`` on padding rows added so that every DDP rank makes the same number of
    forward calls; metrics ignore those rows. ``covered`` is ``False`` where the teacher abstains.
    """

    index: torch.Tensor  # (b,) int64 positions in the probe
    valid: torch.Tensor  # (b,) bool
    teacher_probs: torch.Tensor  # (b, k)
    covered: torch.Tensor  # (b,) bool
    gold: torch.Tensor | None = None  # (b,) int64, -1 unknown
    teacher_features: torch.Tensor | None = None  # (b, d_w)

    def to(self, device: torch.device | str) -> "ProbeBatch":
        return ProbeBatch(
            **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device) for f in fields(self)}
        )


class W2SMetrics(nn.Module):
    """All metric states of one probe.

    Args:
        num_classes: k.
        eps: probability clamp for logarithms (see :mod:`lightning_w2s.metrics.misfit`).
        misfit_only: only the label-free misfit family (used for the train probe).
        gold: the probe's gold labels ``(n,)`` (``-1`` = unknown), or ``None``: turns on the gold
            family, calibration vs gold, the Charikar gain, the Lang statistics and ``pred_gap``.
        covered: the probe's coverage mask ``(n,)``.
        teacher_probs: the probe's teacher probabilities ``(n, k)`` (for the Lang expansion sets).
        teacher_features: the probe's teacher features ``(n, d_w)`` or ``None``: turns on the
            representation gap (Xue et al.); without them only the student's effective rank is kept.
        representation: the gap's construction (default :data:`DEFAULT_CONSTRUCTION`).
        teacher_score, ceiling_score: user-given gold scores for PGR and the accuracy band.
        n_bins: reliability-diagram bins.
        eta: robustness threshold η of Lang et al.'s ``P(R̄_η)``.
        expansion_history: how many past checks' student label sets serve as candidate sets for the
            expansion estimate ĉ (the paper retrains students; a live monitor reuses its past checks).
    """

    def __init__(
        self,
        num_classes: int,
        eps: float = 1e-6,
        misfit_only: bool = False,
        gold: torch.Tensor | None = None,
        covered: torch.Tensor | None = None,
        teacher_probs: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        representation: GapConstruction = DEFAULT_CONSTRUCTION,
        teacher_score: float | None = None,
        ceiling_score: float | None = None,
        n_bins: int = 15,
        eta: float = 0.5,
        expansion_history: int = 10,
    ) -> None:
        super().__init__()
        k = self.num_classes = num_classes
        self.misfit_only = misfit_only
        self.teacher_score, self.ceiling_score = teacher_score, ceiling_score
        self.eta, self.expansion_history = eta, expansion_history
        self.misfit = Misfit(eps=eps, num_classes=k, validate_args=False)
        self.shares = PredictionShares(k)
        self.calibration_vs_teacher = Calibration(n_bins=n_bins, validate_args=False)
        has_gold = gold is not None and bool((gold >= 0).any()) and not misfit_only
        self.has_gold = has_gold
        self.has_uncovered = covered is not None and not bool(covered.all())
        if has_gold:
            self.gold_sq = GoldSquaredError()
            self.correction = CorrectionRates(k, warn=False)
            self.calibration_vs_gold = Calibration(n_bins=n_bins, ignore_index=-1, validate_args=False)
            self.teacher_calibration_vs_gold = Calibration(n_bins=n_bins, ignore_index=-1, validate_args=False)
            self._probe_gold = gold.detach().cpu().long()
            self._probe_covered = covered.detach().cpu().bool() if covered is not None else torch.ones_like(self._probe_gold, dtype=torch.bool)
            self._probe_teacher_pred = teacher_probs.detach().cpu().argmax(1) if teacher_probs is not None else None
        self.with_teacher_features = teacher_features is not None and not misfit_only
        self.representation = None
        self.student_rank = None
        if self.with_teacher_features:
            self.representation = RepresentationGap(
                teacher_dim=teacher_features.shape[1],
                num_classes=k if has_gold else None,
                teacher_reference=teacher_features.double().mean(0),
                **representation.kwargs(),
            )
        elif not misfit_only:  # no teacher features: only the student's effective rank (one-sided sums)
            self.student_rank = EffectiveRank()
        self.robustness: NeighbourRobustness | None = None
        self.neighbours: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []  # the student's probe predictions at past checks
        self.extras: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []

    # ------------------------------------------------------------------ configuration
    def set_neighbours(self, neighbours: torch.Tensor) -> None:
        """Turn on Lang et al.'s robustness/expansion statistics with a fixed ``(n, k_nn)`` neighbour
        table (identical on every rank: it indexes the whole probe)."""
        dev = self.misfit.total.device
        self.neighbours = neighbours.detach().cpu().long()
        self.robustness = NeighbourRobustness(
            self.neighbours,
            eta=self.eta,
            gold=self._probe_gold if self.has_gold else None,
            covered=self._probe_covered if self.has_gold else None,
            num_classes=self.num_classes,
        ).to(dev)

    # ------------------------------------------------------------------ streaming
    @torch.no_grad()
    def update(self, student_out: torch.Tensor, features: torch.Tensor | None, batch: ProbeBatch) -> None:
        """Add one probe batch. ``student_out`` are the student's class probabilities ``(b, k)``;
        ``features`` its pooled representation ``(b, d_s)``."""
        probs = student_out.double()
        valid = batch.valid
        covered = valid & batch.covered
        s_pred = probs.argmax(dim=1)
        t_pred = batch.teacher_probs.argmax(dim=1)
        tp = batch.teacher_probs.double()
        self.misfit.update(probs[covered], tp[covered])
        self.shares.update(s_pred[valid], t_pred[covered])
        self.calibration_vs_teacher.update(probs[covered], t_pred[covered])
        if self.misfit_only:
            return
        if self.robustness is not None:
            self.robustness.update(batch.index, s_pred, valid)
        if self.has_gold:
            gold = batch.gold
            self.correction.update(s_pred[valid], t_pred[valid], gold[valid], batch.covered[valid])
            self.calibration_vs_gold.update(probs[valid], gold[valid])
            self.teacher_calibration_vs_gold.update(tp[covered], gold[covered])
            known = covered & (gold >= 0)
            self.gold_sq.update(probs[known], tp[known], gold[known])
        if features is not None and self.representation is not None:
            labels = batch.gold[valid] if self.has_gold else None
            self.representation.update(features.double()[valid], batch.teacher_features.double()[valid], labels)
        elif features is not None and self.student_rank is not None:
            self.student_rank.update(features.double()[valid])

    # ------------------------------------------------------------------ values
    def compute(self) -> dict[str, torch.Tensor]:
        """Sync and compute every family; see the module docstring for what is left out."""
        out: dict[str, torch.Tensor] = {}
        self.extras, self.notes = {}, []
        with warnings.catch_warnings():
            # after a failed probe pass a state may be empty: its NaN is handled below, the generic
            # torchmetrics "compute before update" warning would only repeat it
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            out.update({f"misfit/{k}": v for k, v in self.misfit.compute().items()})
            out.update({f"prediction/{k}": v for k, v in self.shares.compute().items()})
            self._calibration(out, "vs_teacher", self.calibration_vs_teacher)
            if not self.misfit_only:
                self._gold_family(out)
                self._representation_family(out)
                self._lang_family(out)
        return self._drop_undefined(out)

    def _calibration(self, out: dict, name: str, metric: Calibration, prefix: str = "") -> None:
        values = metric.compute()
        out[f"calibration/{prefix}ece_{name}"] = values["ece"]
        out[f"calibration/{prefix}mce_{name}"] = values["mce"]
        self.extras[f"reliability/{prefix}student_{name}" if not prefix else f"reliability/teacher_{name}"] = torch.stack(
            [values["count"], values["sum_confidence"], values["sum_correct"]]
        )

    def _gold_family(self, out: dict) -> None:
        disagreement = float(out["misfit/disagreement"])
        if self.has_gold:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rates = self.correction.compute()
            rates = {k: rates[k] for k in GOLD_KEYS}
            if not self.has_uncovered:
                rates = {k: v for k, v in rates.items() if not k.startswith("coverage_accuracy")}
            out.update({f"gold/{k}": v for k, v in rates.items()})
            self._calibration(out, "vs_gold", self.calibration_vs_gold)
            self._calibration(out, "vs_gold", self.teacher_calibration_vs_gold, prefix="teacher_")
            sq = self.gold_sq.compute()
            out["gold/sq_gain"] = sq["sq_gain"]
            out["gold/student_sq_error"] = sq["student_sq_error"]
            out["gold/teacher_sq_error"] = sq["teacher_sq_error"]
            # exact 0/1 band [derived]: teacher accuracy and disagreement on the same covered gold points
            lower, upper = accuracy_band(float(rates["teacher_accuracy"]), float(rates["covered_disagreement"])) if _finite(
                rates["teacher_accuracy"], rates["covered_disagreement"]
            ) else (math.nan, math.nan)
            out["bounds/accuracy_lower"], out["bounds/accuracy_upper"] = _t(lower), _t(upper)
            if self.teacher_score is not None and self.ceiling_score is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # ceiling <= teacher was reported at construction
                    out["gold/pgr"] = pgr(float(rates["accuracy"]), self.teacher_score, self.ceiling_score)
        elif self.teacher_score is not None and math.isfinite(disagreement):
            # band around a user-given teacher score: holds up to the score's sampling error
            lower, upper = accuracy_band(self.teacher_score, disagreement)
            out["bounds/accuracy_lower"], out["bounds/accuracy_upper"] = _t(lower), _t(upper)
        out["bounds/predicted_gain"] = _t(charikar_predicted_gain(float(out["misfit/sq"]))) if _finite(out["misfit/sq"]) else _t(math.nan)

    def _representation_family(self, out: dict) -> None:
        if self.student_rank is not None and self.student_rank.update_count:
            out["representation/effective_rank"] = self.student_rank.compute()
        if self.representation is None or self.representation.update_count == 0:
            return
        rep = self.representation.compute()
        out["representation/effective_rank"] = rep["effective_rank"]
        out["representation/gap_fro"] = rep["fro"]
        out["representation/gap_op"] = rep["op"]
        out["representation/cka"] = rep["cka"]
        if "pred_gap" in rep:
            out["representation/pred_gap_gold"] = rep["pred_gap"]

    def _lang_family(self, out: dict) -> None:
        if self.robustness is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates become notes below, not warnings per check
            rob = self.robustness.compute()
        predictions = rob.pop("predictions")
        self.extras["predictions"] = predictions
        out["robustness/inconsistency"] = rob["gamma"]
        out["robustness/p_nonrobust_bound"] = rob["p_nonrobust_markov"]
        if self.has_gold:
            out["robustness/inconsistency_covered"] = rob["gamma_covered"]
            if self.has_uncovered:
                out["robustness/inconsistency_uncovered"] = rob["gamma_uncovered"]
        if not self.has_gold or self._probe_teacher_pred is None:
            return
        self.history = (self.history + [predictions.detach().cpu()])[-self.expansion_history :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rates = self.correction.compute()
            exp = lang_expansion(
                self.neighbours, torch.stack(self.history), self._probe_teacher_pred, self._probe_gold,
                self._probe_covered, self.num_classes, eta=self.eta,
            )
            bounds = lang_bounds({k: v.cpu() if torch.is_tensor(v) else v for k, v in rates.items()},
                                 {k: v.cpu() if torch.is_tensor(v) else v for k, v in rob.items()}, exp)
        self.notes += list(bounds.get("reasons", []))
        for i in range(self.num_classes):
            out[f"lang/alpha_{i}"] = rates["alpha_per_class"][i]
            out[f"lang/expansion_good_to_bad_{i}"] = exp["c_good_to_bad"][i]
            out[f"lang/covered_bound_{i}"] = bounds["covered_bound"][i]
            out[f"lang/covered_error_{i}"] = bounds["covered_error"][i]
            if self.has_uncovered:
                out[f"lang/expansion_uncovered_to_good_{i}"] = exp["c_uncovered_to_good"][i]
                out[f"lang/uncovered_bound_{i}"] = bounds["uncovered_bound"][i]
                out[f"lang/uncovered_error_{i}"] = bounds["uncovered_error"][i]
        out["lang/covered_bound"] = bounds["covered_bound_pooled"]
        out["lang/covered_error"] = bounds["covered_error_pooled"]
        if self.has_uncovered:
            out["lang/uncovered_bound"] = bounds["uncovered_bound_pooled"]
            out["lang/uncovered_error"] = bounds["uncovered_error_pooled"]

    def _drop_undefined(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        kept = {}
        for name, value in out.items():
            value = torch.as_tensor(value, dtype=torch.float64)
            if not bool(torch.isfinite(value)) and name.startswith(MAY_BE_UNDEFINED):
                self.notes.append(f"{name} is undefined at this check (empty conditioning set or unmet premises)")
                continue
            kept[name] = value
        return kept

    def reset(self) -> None:
        for m in self.children():
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


def _finite(*values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def _t(value: float) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float64)
