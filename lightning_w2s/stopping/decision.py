"""The stopping decision, without Lightning: rules voting at each check, warm-up, history, best check.

:class:`StoppingDecision` is the whole decision logic of :class:`~lightning_w2s.W2SEarlyStopping`
(which holds one as ``.decision`` and adds the Lightning glue: reading the monitor's values,
reducing the decision over ranks, keeping and restoring weights). Its :meth:`~StoppingDecision.evaluate`
takes one check's values and returns the decision, so a benchmark replays recorded runs through the
very code the callback runs, without a Trainer. The rules are those of
:mod:`lightning_w2s.stopping.rules` (heuristics, docs/theory.md §3); the stop comes at the first
check where one of them votes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_w2s.metrics.validation import check_scalar
from lightning_w2s.stopping.rules import Rule, W2SStoppingReason

__all__ = ["StoppingDecision"]


class StoppingDecision:
    """Rules that vote at each check; the fit stops at the first check where one votes.

    A check made while ``epoch < min_epochs`` or ``global_step < min_steps`` is warm-up: recorded (it
    can set a rule's best value and the "previous" values of trend rules) but never counted toward
    patience and never a stop. A rule votes only at a check where every name it needs has a finite
    value; otherwise its counters do not move.

    Args:
        rules: the rules (:func:`~lightning_w2s.stopping.policies.make_policies` builds the stopper's;
            a benchmark may replay any rule of :mod:`lightning_w2s.stopping.rules`).
        min_epochs: warm-up in epochs.
        min_steps: warm-up in optimizer steps.

    Attributes:
        history: one dict per check: ``check``, ``epoch``, ``step``, ``warmup``, ``values`` (the
            finite values of the needed names), ``votes`` (rules voting to stop), ``stop``.
        triggered_policies: the rules that voted at the stopping check.
        stopped_check: the check at which the fit stopped (``None`` if it did not).

    >>> from lightning_w2s.metrics import quantities as Q
    >>> from lightning_w2s.stopping.rules import HeldoutMisfitPlateau
    >>> decision = StoppingDecision([HeldoutMisfitPlateau(patience=2, min_delta=0.0)])
    >>> [decision.evaluate({Q.TEACHER_LABEL_CE: x}, epoch=i)[0] for i, x in enumerate([0.5, 0.6, 0.7])]
    [False, False, True]
    >>> decision.restore_check, decision.history[-1]["votes"]
    (0, ['heldout_misfit_plateau'])
    """

    def __init__(self, rules: Sequence[Rule], min_epochs: int = 0, min_steps: int = 0) -> None:
        self.rules = list(rules)
        self.min_epochs = check_scalar("min_epochs", min_epochs, int, min_val=0)
        self.min_steps = check_scalar("min_steps", min_steps, int, min_val=0)
        self._check_rules()
        self.needed = sorted({n for r in self.rules for n in r.needs()})
        self._fresh = [r.state_dict() for r in self.rules]
        self.reset()

    def _check_rules(self) -> None:
        if not self.rules or not all(isinstance(r, Rule) for r in self.rules):
            raise ValueError(f"`rules` must be a non-empty list of stopping rules, got {self.rules!r}")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"`rules` lists a rule twice: {names}")

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def reset(self) -> None:
        """Forget every check: the rules' counters as built, empty history, not stopped."""
        for rule, fresh in zip(self.rules, self._fresh):
            rule.load_state_dict(fresh)
        self.history: list[dict[str, Any]] = []
        self.triggered_policies: list[str] = []
        self.stopped_check: int | None = None

    # ------------------------------------------------------------------ the decision
    def evaluate(self, values: Mapping[str, Any], epoch: int = 0, global_step: int = 0) -> tuple[bool, W2SStoppingReason | None, str | None]:
        """Record one check with ``values`` (``{"w2s/...": number}``; names absent or non-finite count
        as missing) and return this process's decision ``(should_stop, reason, message)``; warm-up is
        judged from ``epoch`` and ``global_step``."""
        clean: dict[str, float] = {}
        for name in self.needed:
            if values.get(name) is not None and math.isfinite(x := float(values[name])):
                clean[name] = x
        check = len(self.history)
        warmup = epoch < self.min_epochs or global_step < self.min_steps
        votes = []
        for rule in self.rules:
            if all(n in clean for n in rule.needs()):
                rule.update(clean, check, warmup)
                if not warmup and rule.triggered():
                    votes.append(rule.name)
        self.history.append({"check": check, "epoch": int(epoch), "step": int(global_step), "warmup": warmup, "values": clean, "votes": votes, "stop": bool(votes)})
        if not votes:
            return False, W2SStoppingReason.NOT_STOPPED, None
        self.triggered_policies, self.stopped_check = list(votes), check
        voted = [r for r in self.rules if r.name in votes]
        return True, voted[0].reason, "; ".join(f"[{r.name}] {r.describe(self.history)}" for r in voted)

    def overrule(self, stop: bool) -> None:
        """Set the latest check's outcome to the fit's decision (``stop``: after the reduction over
        ranks, which may stop a fit that this process's rules did not vote to stop)."""
        self.history[-1]["stop"] = stop
        self.stopped_check = len(self.history) - 1 if stop else None
        if not stop:
            self.triggered_policies = []

    # ------------------------------------------------------------------ the best check
    @property
    def restore_policy(self) -> str:
        """The rule whose best check :attr:`restore_check` is: after a stop, the first rule that
        voted; before a stop, the first listed rule."""
        return self.triggered_policies[0] if self.triggered_policies else self.rules[0].name

    @property
    def restore_check(self) -> int | None:
        """The check whose weights are best for :attr:`restore_policy` (``None`` while it has none)."""
        return next(r for r in self.rules if r.name == self.restore_policy).best_check

    def best_checks(self) -> set[int]:
        """Every rule's best check: the checks whose weights may still be restored."""
        return {r.best_check for r in self.rules if r.best_check is not None}

    def best_is_minimum_of(self) -> str | None:
        """The logged name whose lowest value marks :attr:`restore_check` (``None`` if none does)."""
        return next(r for r in self.rules if r.name == self.restore_policy).best_is_minimum_of

    @property
    def wait_count(self) -> int:
        """The largest counter of any rule."""
        return max(max(r.wait, getattr(r, "ratio_wait", 0)) for r in self.rules)

    @property
    def best_value(self) -> float:
        """The first rule's best value."""
        return self.rules[0].best_value

    # ------------------------------------------------------------------ words
    def where(self, check: int) -> str:
        """``" (epoch e, step s)"`` of a recorded check, else an empty string."""
        if not 0 <= check < len(self.history):
            return ""
        h = self.history[check]
        return f" (epoch {h['epoch']}, step {h['step']})"

    def status_line(self) -> str:
        h = self.history[-1]
        counters = ", ".join(f"{r.name} wait {r.wait}/{r.patience}" for r in self.rules)
        return f"W2SEarlyStopping check {h['check']} (epoch {h['epoch']}){' (warm-up)' if h['warmup'] else ''}: {counters}"

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Primitives, lists and dicts only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "policies": self.names,
            "policy_state": {r.name: r.state_dict() for r in self.rules},
            "history": [dict(h, values=dict(h["values"]), votes=list(h["votes"])) for h in self.history],
            "triggered_policies": list(self.triggered_policies),
            "stopped_check": self.stopped_check,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state.get("policies", self.names)) != self.names:
            raise ValueError(f"the checkpoint's W2SEarlyStopping state is for policies {state.get('policies')}, this callback has {self.names}")
        for rule in self.rules:
            rule.load_state_dict(state.get("policy_state", {}).get(rule.name, {}))
        self.history = [dict(h) for h in state.get("history", [])]
        self.triggered_policies = list(state.get("triggered_policies", []))
        self.stopped_check = state.get("stopped_check")
