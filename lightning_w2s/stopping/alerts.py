"""Warning regimes: when the student starts fitting the teacher's errors, runs out of gain, gives up
neighbourhood consistency, collapses its predictions, or the probe is too small to tell.

Each regime is a rule of :mod:`lightning_w2s.stopping.rules` (where the stopping policies are defined too) fed
with each check's logged values; it fires once when it is *entered* (the rule starts to hold) and
is re-armed when it is left, so a long run does not repeat itself. The rules' state goes into the
monitor's ``state_dict``, so a resumed run warns exactly as an uninterrupted one.

- ``fitting_teacher_errors`` — the ``teacher_overfit`` rule on ``kl_teacher_student`` (``sq`` for a regression probe) without its
  ratio branch: train-probe misfit fell while held-out misfit rose at each of the last
  ``window - 1`` checks (Yao et al. 2025 on over-optimisation toward the weak signal) [heuristic];
- ``gain_exhausted`` — the ``gain_exhausted`` rule: the most the student's accuracy can still exceed
  the teacher's (coverage × held-out disagreement + (1 − coverage), the teacher's abstentions
  counted as all right) is below ``min_gain``, so that gain is no longer possible [derived bound];
- ``robustness_drop`` — the ``robustness_drop`` rule: Lang et al.'s average non-robustness γ̂ rose
  while held-out disagreement fell at each of the last ``window - 1`` checks (Lang, Sontag,
  Vijayaraghavan 2024, Prop 4.1 [paper]; as a warning, a heuristic);
- ``prediction_collapse`` — more than ``collapse_share`` of the probe in one class while the
  teacher is not collapsed [heuristic];
- ``probe_too_small`` — the Wilson 95% half-width of the held-out disagreement exceeds
  ``max_interval_halfwidth`` [sampling error].

``gain_exhausted`` and ``robustness_drop`` are warnings, not stopping policies of
``W2SEarlyStopping``: as stopping rules they left more regret than training to the end on the
stopping benchmark (docs/stopping.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.validation import check_scalar
from lightning_w2s.stopping import rules


@dataclass
class Alert:
    """One warning: its regime, a message and the values its rule read at that check.

    >>> Alert("gain_exhausted", "no gain left", {Q.SQ: 0.1}).as_dict()["regime"]
    'gain_exhausted'
    """

    regime: str
    message: str
    values: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"regime": self.regime, "message": self.message, "values": dict(self.values)}


class AlertTracker:
    """Turns each check's values into alerts, once per regime change.

    Args:
        window: checks over which ``fitting_teacher_errors`` and ``robustness_drop`` must hold (``>= 2``).
        min_gain: the gain over the teacher under whose reach ``gain_exhausted`` fires (``None`` = off).
        collapse_share: class share above which predictions count as collapsed.
        max_interval_halfwidth: Wilson half-width above which the probe is called too small.
        misfit: the held-out misfit ``fitting_teacher_errors`` compares with its train-probe twin
            (``Q.KL_TEACHER_STUDENT``; the monitor passes ``Q.SQ`` for a regression probe).

    >>> tracker = AlertTracker(min_gain=0.05)
    >>> tracker.update({Q.MAX_GAIN: 0.2})
    []
    >>> [a.regime for a in tracker.update({Q.MAX_GAIN: 0.03})]
    ['gain_exhausted']
    """

    REGIMES = ("fitting_teacher_errors", "gain_exhausted", "robustness_drop", "prediction_collapse", "probe_too_small")

    def __init__(self, window: int = 3, min_gain: float | None = None, collapse_share: float = 0.95, max_interval_halfwidth: float = 0.05, misfit: str = Q.KL_TEACHER_STUDENT) -> None:
        self.window = check_scalar("window", window, int, min_val=2)
        self.min_gain = check_scalar("min_gain", min_gain, float, min_val=0.0, max_val=1.0, include_boundaries="right", allow_none=True)
        collapse_share = check_scalar("collapse_share", collapse_share, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        max_interval_halfwidth = check_scalar("max_interval_halfwidth", max_interval_halfwidth, float, min_val=0.0, include_boundaries="neither")
        self.rules: dict[str, rules.Rule] = {
            "fitting_teacher_errors": rules.TeacherOverfit(self.window - 1, 0.0, heldout=misfit),
            "robustness_drop": rules.RobustnessDrop(self.window - 1, 0.0),
            "prediction_collapse": rules.PredictionCollapse(collapse_share),
            "probe_too_small": rules.ProbeTooSmall(max_interval_halfwidth),
        }
        if self.min_gain is not None:
            self.rules["gain_exhausted"] = rules.GainExhausted(1, 0.0, self.min_gain)
        self.rules = {regime: self.rules[regime] for regime in self.REGIMES if regime in self.rules}
        self.checks = 0
        self.active: set[str] = set()

    def update(self, values: dict[str, float]) -> list[Alert]:
        """Record one check's values; return the alerts whose regime was entered at this check."""
        new = []
        for regime, rule in self.rules.items():
            holds = False
            if all(name in values for name in rule.needs()):
                rule.update(values, self.checks, warmup=False)
                holds = rule.triggered()
            if not holds:
                self.active.discard(regime)
            elif regime not in self.active:
                self.active.add(regime)
                read = {k: values[k] for k in rule.needs() if k in values}  # what the rule read, not the whole check
                new.append(Alert(regime, f"{rule.basis}: {rule.describe()}", read))
        self.checks += 1
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"checks": self.checks, "active": sorted(self.active), "rules": {regime: rule.state_dict() for regime, rule in self.rules.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.checks = int(state.get("checks", 0))
        self.active = set(state.get("active", []))
        for regime, rule in self.rules.items():
            rule.load_state_dict(state.get("rules", {}).get(regime, {}))
