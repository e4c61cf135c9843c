"""Lang et al.'s family of the aggregator (a mixin of
:class:`lightning_w2s.metrics.aggregator.W2SMetrics`, which owns the states used here:
``robustness``, ``neighbours``, ``history``, ``expansion_history``, ``eta``, ``num_classes``,
``has_uncovered``, the probe's teacher tensors, ``extras`` and ``notes``), and the one-transfer host
helpers the aggregator's host-side formulas share.

γ̂ (Lang et al. §4, the robustness family) is computed from sum states; the expansion estimates
and the Thm B.1/B.2 predicted errors are per-class case analyses on the host
(:func:`~lightning_w2s.metrics.expansion.lang_expansion`,
:func:`~lightning_w2s.metrics.correction.lang_bounds`), whose inputs cross once per check.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.correction import lang_bounds
from lightning_w2s.metrics.expansion import lang_expansion


class _LangFamily:
    """The ``w2s/robustness/...`` and ``w2s/lang/...`` values of a check (see the module docstring)."""

    def _lang_family(self, out: dict, rates: dict | None) -> None:
        if self.robustness is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined rates and bounds become notes, not warnings at every check
            self._lang_values(out, rates)

    def _lang_values(self, out: dict, rates: dict | None) -> None:
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
        rates_h, rob_h, pred_h = _on_host({**rates, **rob, "predictions": predictions}, (rates, rob, ("predictions",)))
        self.history = (self.history + [pred_h["predictions"]])[-self.expansion_history :]
        exp = lang_expansion(self.neighbours, torch.stack(self.history), *self._probe_on_host(), self.num_classes, eta=self.eta)
        bounds = lang_bounds(rates_h, rob_h, exp)
        self.notes += list(bounds.get("reasons", []))
        per_class = [(Q.ALPHA, rates["alpha_per_class"]), (Q.EXPANSION_GOOD_TO_BAD, exp["c_good_to_bad"]),
                     (Q.COVERED_PREDICTED_ERROR_CLASS, bounds["covered_predicted_error"]), (Q.COVERED_ERROR_CLASS, bounds["covered_error"])]
        pooled = [(Q.COVERED_PREDICTED_ERROR, "covered_predicted_error_pooled"), (Q.COVERED_ERROR, "covered_error_pooled")]
        if self.has_uncovered:
            per_class += [(Q.EXPANSION_UNCOVERED_TO_GOOD, exp["c_uncovered_to_good"]),
                          (Q.UNCOVERED_PREDICTED_ERROR_CLASS, bounds["uncovered_predicted_error"]), (Q.UNCOVERED_ERROR_CLASS, bounds["uncovered_error"])]
            pooled += [(Q.UNCOVERED_PREDICTED_ERROR, "uncovered_predicted_error_pooled"), (Q.UNCOVERED_ERROR, "uncovered_error_pooled")]
        for template, values in per_class:
            out.update({template.format(i=i): values[i] for i in range(self.num_classes)})
        out.update({name: bounds[key] for name, key in pooled})

    def _probe_on_host(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The probe's teacher labels, gold and coverage on the host (copied once per device)."""
        cached = getattr(self, "_host_probe", None)
        if cached is None or cached[0] != self.teacher_pred.device:
            cached = (self.teacher_pred.device, tuple(t.cpu() for t in (self.teacher_pred, self.gold, self.covered)))
            self._host_probe = cached
        return cached[1]


def _on_host(tensors: dict[str, Any], groups: tuple) -> list[dict[str, Any]]:
    """``tensors`` on the host in one transfer (non-tensors passed through), split into one dict per
    group of keys (each group an iterable of keys)."""
    names = [k for k, t in tensors.items() if torch.is_tensor(t)]
    if names and any(tensors[k].device.type != "cpu" for k in names):
        flat = torch.cat([tensors[k].reshape(-1).to(torch.float64) for k in names]).cpu()
        parts = flat.split([tensors[k].numel() for k in names])
        tensors = {**tensors, **{k: p.reshape(tensors[k].shape).to(tensors[k].dtype) for k, p in zip(names, parts)}}
    return [{k: tensors[k] for k in group} for group in groups]


def _host(*values: torch.Tensor) -> list[float]:
    """Python floats of 0-d tensors, in one transfer."""
    return torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in values]).tolist()
