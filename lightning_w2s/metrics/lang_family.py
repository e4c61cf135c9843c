"""Lang et al.'s family of a check: ``w2s/robustness/...`` and ``w2s/lang/...`` (docs/theory.md §2.5).

Lang, Sontag, Vijayaraghavan 2024. γ̂ (§4, the robustness family) is computed from sum states over
a frozen k-NN table of the probe (:class:`~lightning_w2s.metrics.robustness.NeighbourRobustness`);
the expansion estimates and the Thm B.1/B.2 predicted errors are per-class case analyses on the host
(:func:`~lightning_w2s.metrics.expansion.lang_expansion`,
:func:`~lightning_w2s.metrics.correction.lang_bounds`; estimates at the plug-in ĉ, not bounds),
whose inputs cross once per check. :class:`LangFamily` owns the neighbour table, the robustness
states, the student's predictions at past checks (the expansion's candidate sets) and host copies
of the probe's teacher labels, gold and coverage.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.correction import lang_bounds
from lightning_w2s.metrics.expansion import lang_expansion
from lightning_w2s.metrics.family import Family, Rows, on_host
from lightning_w2s.metrics.neighbours import knn_indices
from lightning_w2s.metrics.robustness import NeighbourRobustness

__all__ = ["LangFamily"]


class LangFamily(Family):
    """Robustness γ̂, the expansion estimates ĉ and the Thm B.1/B.2 predicted errors per class.

    Off until :meth:`set_neighbours` gives it the probe's k-NN table (:meth:`build_neighbours`
    builds one). The rates behind the bounds come from the aggregator's gold counter
    (``shared["rates"]`` in :meth:`compute`; ``None`` without gold: robustness only).

    Args:
        teacher_pred, gold, covered: the probe's teacher labels, gold labels (``-1`` unknown, or
            ``None``) and coverage, ``(n,)`` each (copied to the host once).
        num_classes: ``k``.
        num_neighbours: ``k`` of the k-NN table.
        eta: robustness threshold η of ``P(R̄_η)``.
        expansion_history: how many past checks' student label sets serve as candidate sets for ĉ.

    >>> lang = LangFamily(torch.tensor([0, 0, 1, 1]), None, torch.ones(4, dtype=torch.bool), 2, num_neighbours=1,
    ...                   eta=0.5, expansion_history=10)
    >>> lang.set_neighbours(lang.build_neighbours(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]), None), torch.device("cpu"))
    >>> lang.neighbours.tolist()
    [[1], [0], [3], [2]]
    >>> lang.update(Rows(torch.arange(4), torch.zeros(4, 2), torch.tensor([0, 1, 1, 1]), None, None, None))
    >>> values = lang.compute({"rates": None})  # no gold: robustness only
    >>> sorted(values) == sorted([Q.INCONSISTENCY, Q.P_NONROBUST_BOUND]), float(values[Q.INCONSISTENCY])
    (True, 0.5)
    """

    sections = ("robustness", "lang")

    def __init__(self, teacher_pred: torch.Tensor, gold: torch.Tensor | None, covered: torch.Tensor, num_classes: int, *, num_neighbours: int, eta: float, expansion_history: int) -> None:
        super().__init__()
        self.host_probe = tuple(None if t is None else t.detach().cpu() for t in (teacher_pred, gold, covered))
        self.num_classes, self.num_neighbours, self.eta, self.expansion_history = (num_classes, num_neighbours, eta, expansion_history)
        self.has_gold, self.has_uncovered = gold is not None, not bool(covered.all())
        self.robustness: NeighbourRobustness | None = None
        self.neighbours: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []  # the student's probe predictions at past checks

    def provides(self) -> set[str]:
        return {Q.Need.NEIGHBOURS}

    def build_neighbours(self, teacher_features: torch.Tensor | None, student_embedding: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The frozen ``(n, k)`` k-NN table of the probe: in ``teacher_features``, or, when there are
        none or they cannot define neighbourhoods (e.g. a keyword rule's all-zero rows: a warning says
        so), in ``student_embedding()`` (the student's representation of the whole probe at fit start)."""
        n = self.host_probe[0].shape[0]
        k = min(self.num_neighbours, n - 1)
        if teacher_features is not None:
            try:
                return knn_indices(teacher_features.detach().cpu().double(), k=k)
            except ValueError as exc:
                # knn_indices' own advice names its `metric=` argument, which the monitor does not take
                reason = str(exc).split("; use ")[0]
                warnings.warn(
                    f"W2SMonitor: the teacher's features cannot define neighbourhoods ({reason}); the neighbour table "
                    "uses the student's representation at fit start instead. To use the teacher's, give the probe "
                    "`teacher_features` without all-zero rows (`W2SProbe(..., teacher_features=...)`, or "
                    "`W2SProbe.from_teacher(..., layer=...)` naming a layer whose output has none); "
                    "`W2SMonitor(neighbours=0)` turns these statistics off",
                    UserWarning,
                    stacklevel=3,
                )
        return knn_indices(student_embedding().detach().cpu().double(), k=k)

    def set_neighbours(self, neighbours: torch.Tensor, device: torch.device) -> None:
        """Turn the family on with a fixed ``(n, k_nn)`` neighbour table (identical on every rank: it
        indexes the whole probe); its states live on ``device``."""
        self.neighbours = neighbours.detach().cpu().long()
        _, gold, covered = self.host_probe
        self.robustness = NeighbourRobustness(self.neighbours, eta=self.eta, gold=gold, covered=covered if self.has_gold else None, num_classes=self.num_classes).to(device)

    def update(self, rows: Rows) -> None:
        if self.robustness is not None:
            self.robustness.update(rows.index, rows.student_pred)

    def compute(self, shared: dict[str, Any]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.robustness is None:
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates and bounds become notes, not warnings at every check
            self._values(out, shared.get("rates"))
        return out

    def _values(self, out: dict, rates: dict | None) -> None:
        rob = dict(self.robustness.compute())  # a copy: torchmetrics caches the dict until the next update
        predictions = rob.pop("predictions")
        self.extras["predictions"] = predictions
        out[Q.INCONSISTENCY], out[Q.P_NONROBUST_BOUND] = rob["gamma"], rob["p_nonrobust_markov"]
        if rates is None:
            return
        out[Q.INCONSISTENCY_COVERED] = rob["gamma_covered"]
        if self.has_uncovered:
            out[Q.INCONSISTENCY_UNCOVERED] = rob["gamma_uncovered"]
        # The expansion estimates and the bounds are per-class case analyses on the host (the neighbour
        # table and the history live there): their inputs cross once per check, in one transfer
        rates_h, rob_h, pred_h = on_host({**rates, **rob, "predictions": predictions}, (rates, rob, ("predictions",)))
        self.history = (self.history + [pred_h["predictions"]])[-self.expansion_history :]
        exp = lang_expansion(self.neighbours, torch.stack(self.history), *self.host_probe, self.num_classes, eta=self.eta)
        bounds = lang_bounds(rates_h, rob_h, exp)
        self.notes += list(bounds.get("reasons", []))
        per_class = [
            (Q.ALPHA, rates["alpha_per_class"]),
            (Q.EXPANSION_GOOD_TO_BAD, exp["c_good_to_bad"]),
            (Q.COVERED_PREDICTED_ERROR_CLASS, bounds["covered_predicted_error"]),
            (Q.COVERED_ERROR_CLASS, bounds["covered_error"]),
        ]
        pooled = [(Q.COVERED_PREDICTED_ERROR, "covered_predicted_error_pooled"), (Q.COVERED_ERROR, "covered_error_pooled")]
        if self.has_uncovered:
            per_class += [
                (Q.EXPANSION_UNCOVERED_TO_GOOD, exp["c_uncovered_to_good"]),
                (Q.UNCOVERED_PREDICTED_ERROR_CLASS, bounds["uncovered_predicted_error"]),
                (Q.UNCOVERED_ERROR_CLASS, bounds["uncovered_error"]),
            ]
            pooled += [(Q.UNCOVERED_PREDICTED_ERROR, "uncovered_predicted_error_pooled"), (Q.UNCOVERED_ERROR, "uncovered_error_pooled")]
        for template, values in per_class:
            out.update({template.format(i=i): values[i] for i in range(self.num_classes)})
        out.update({name: bounds[key] for name, key in pooled})

    def state_dict_extra(self) -> dict:
        """The expansion candidate sets and the frozen neighbour table (rebuilding it from a resumed
        student would change it)."""
        return {"history": [h.clone() for h in self.history], "neighbours": self.neighbours}

    def load_state_dict_extra(self, state: dict, device: torch.device) -> None:
        self.history = [torch.as_tensor(h).long() for h in state.get("history", [])]
        if state.get("neighbours") is not None:
            self.set_neighbours(torch.as_tensor(state["neighbours"]), device)
