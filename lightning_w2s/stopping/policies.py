"""The stopping decision, without Lightning: policies combined, warm-up, history, best check.

:class:`StoppingPolicies` is the whole decision logic of :class:`~lightning_w2s.W2SEarlyStopping`
(a base class of it; the callback adds the Lightning glue: reading the monitor's values, reducing
the decision over ranks, restoring weights). Its :meth:`~StoppingPolicies.evaluate` takes one
check's values and returns the decision, so a benchmark can replay recorded runs through the very
code the callback runs, without a Trainer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from lightning_w2s.validation import check_choice, check_scalar
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.stopping.rules import POLICIES, POLICY_RULES, GainExhausted, Rule, W2SStoppingReason

__all__ = ["POLICIES", "StoppingPolicies", "W2SStoppingReason"]


def _per_policy(name: str, value: Any, policies: Sequence[str], kind: type, **limits: Any) -> dict[str, Any]:
    """Expand a number or a ``{policy: number}`` mapping into one checked value per policy."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(policies))
        if unknown:
            raise ValueError(f"`{name}` has keys {unknown} that are not among the chosen policies {list(policies)}")
        missing = [p for p in policies if p not in value]
        if missing:
            raise ValueError(f"`{name}` is a mapping but gives no value for the policies {missing}")
        return {p: check_scalar(f"{name}[{p!r}]", value[p], kind, **limits) for p in policies}
    value = check_scalar(name, value, kind, **limits)
    return {p: value for p in policies}


class StoppingPolicies:
    """Named stopping policies (:mod:`lightning_w2s.stopping.rules`) combined with ``mode``, with warm-up: the
    decision half of :class:`~lightning_w2s.W2SEarlyStopping`, whose arguments (and docstring) it takes.
    ``min_gain`` may stay ``None`` until the callback takes it from the monitor at fit start.

    >>> from lightning_w2s import W2SEarlyStopping
    >>> decision = W2SEarlyStopping("gain_exhausted", patience=2, min_gain=0.1)
    >>> [decision.evaluate({Q.MAX_GAIN: g})[0] for g in (0.2, 0.05, 0.04)]
    [False, False, True]
    >>> decision.restore_check  # the last check where a gain of min_gain was still possible
    0
    """

    def _init_policies(self, policy, patience, min_delta, min_epochs, min_steps, mode, min_gain, kappa, misfit) -> None:
        """Validate the policy arguments (each error names the argument) and build the policies."""
        policies = [policy] if isinstance(policy, str) else list(policy)
        if not policies:
            raise ValueError("`policy` must name at least one policy, got an empty list")
        for p in policies:
            check_choice("policy", p, POLICIES)
        if len(set(policies)) != len(policies):
            raise ValueError(f"`policy` lists a policy twice: {policies}")
        self.policies = policies
        self.mode = check_choice("mode", mode, ("any", "all"))
        self.misfit = check_choice("misfit", misfit, tuple(Q.MISFIT))
        self.min_epochs = check_scalar("min_epochs", min_epochs, int, min_val=0)
        self.min_steps = check_scalar("min_steps", min_steps, int, min_val=0)
        self.patience_per_policy = _per_policy("patience", patience, policies, int, min_val=1)
        self.min_delta_per_policy = _per_policy("min_delta", min_delta, policies, float, min_val=0.0, max_val=math.inf,
                                                include_boundaries="left")
        self.min_gain = check_scalar("min_gain", min_gain, float, min_val=0.0, max_val=1.0, include_boundaries="right", allow_none=True)
        self.kappa = check_scalar("kappa", kappa, float, min_val=0.0, max_val=1.0, include_boundaries="right", allow_none=True)
        self.reset_decisions()
        self.needed = sorted({n for p in self._policies for n in p.needs()})

    def _make_policy(self, name: str) -> Rule:
        patience, min_delta = self.patience_per_policy[name], self.min_delta_per_policy[name]
        held = Q.MISFIT[self.misfit]
        if name == "teacher_overfit":
            return POLICY_RULES[name](patience, min_delta, held, Q.train_name(held), self.kappa)
        if name == "gain_exhausted":
            return POLICY_RULES[name](patience, min_delta, self.min_gain)
        if name == "heldout_misfit_plateau":
            return POLICY_RULES[name](patience, min_delta, held)
        return POLICY_RULES[name](patience, min_delta)

    def set_min_gain(self, min_gain: float) -> None:
        """Set the ``gain_exhausted`` target (the callback takes the monitor's at fit start)."""
        self.min_gain = check_scalar("min_gain", min_gain, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        for p in self._policies:
            if isinstance(p, GainExhausted):
                p.min_gain = self.min_gain

    def resolve_min_gain(self, given: set[float]) -> None:
        """``min_gain`` is given once: to the monitor (``given``: the values of the callbacks that
        expose one; the monitor also warns with it) or to this callback."""
        if len(given) > 1 or (given and self.min_gain is not None and given != {self.min_gain}):
            raise ValueError(
                f"`min_gain` is given with different values ({sorted(given | {self.min_gain} - {None})}) to W2SMonitor and "
                "W2SEarlyStopping: give it once, to W2SMonitor(min_gain=...) (W2SEarlyStopping then takes it)"
            )
        if given and self.min_gain is None:
            self.set_min_gain(given.pop())
        self._require_min_gain()

    def _require_min_gain(self) -> None:
        if "gain_exhausted" in self.policies and self.min_gain is None:
            raise ValueError(
                "policy 'gain_exhausted' needs `min_gain` (the smallest gain over the teacher's accuracy worth "
                "training for, in (0, 1]): pass it to W2SMonitor(min_gain=...) or W2SEarlyStopping(min_gain=...)"
            )

    def unmet_message(self, missing: list[str], when: str, available: Sequence[str] | None = None) -> str:
        """Which policies need which names that will not be logged, and how to fix each (registry hints)."""
        users = [p.name for p in self._policies if set(p.needs()) & set(missing)]
        msg = (
            f"W2SEarlyStopping(policy={users}) needs {', '.join(f'`{n}`' for n in missing)}, which will not be "
            f"logged ({when}). To fix: " + "; ".join(f"`{n}`: {Q.hint(n)}" for n in missing) + "."
        )
        if available is not None:
            msg += f" Logged w2s names: {sorted(available) or 'none'}."
        return msg + " Pass `strict=False` to warn instead (those policies then never vote)."

    def reset_decisions(self) -> None:
        """Forget every check: fresh policies, empty history, not stopped, no kept weights."""
        self._policies = [self._make_policy(p) for p in self.policies]
        self.history: list[dict[str, Any]] = []
        self.triggered_policies: list[str] = []
        self._snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.stopped_epoch = 0
        self.stopped_check: int | None = None
        self.stopping_reason = W2SStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.best_check: int | None = None
        self._after_evaluate()

    # ------------------------------------------------------------------ the decision
    def evaluate(self, values: Mapping[str, Any], epoch: int = 0, global_step: int = 0) -> tuple[bool, W2SStoppingReason, str | None]:
        """Record one check with ``values`` (``{"w2s/...": number}``; names absent or non-finite count
        as missing) and return this process's decision ``(should_stop, reason, message)``.

        This is the whole decision logic, usable without a Trainer (the callback calls it, then
        reduces the decision over ranks). Warm-up is judged from ``epoch`` and ``global_step``.
        """
        self._require_min_gain()
        clean: dict[str, float] = {}
        for name in self.needed:
            if values.get(name) is not None and math.isfinite(x := float(values[name])):
                clean[name] = x
        check = len(self.history)
        warmup = epoch < self.min_epochs or global_step < self.min_steps
        votes = []
        for p in self._policies:
            if all(n in clean for n in p.needs()):
                p.update(clean, check, warmup)
                if not warmup and p.triggered():
                    votes.append(p.name)
        stop = bool(votes) and (self.mode == "any" or len(votes) == len(self._policies))
        self.history.append({"check": check, "epoch": int(epoch), "step": int(global_step), "warmup": warmup,
                             "values": clean, "votes": votes, "stop": stop})
        self._after_evaluate()
        if not stop:
            return False, W2SStoppingReason.NOT_STOPPED, None
        self.triggered_policies = list(votes)
        voted = [p for p in self._policies if p.name in votes]
        message = "; ".join(f"[{p.name}] {p.describe(self.history)}" for p in voted)
        if self.mode == "all" and len(self._policies) > 1:
            return True, W2SStoppingReason.ALL_POLICIES, "all policies agree: " + message
        return True, voted[0].reason, message

    def _after_evaluate(self) -> None:
        """Keep Lightning's ``EarlyStopping`` attributes current: ``wait_count`` (the largest counter)
        and ``best_score`` (the first policy's best value)."""
        self.wait_count = max(max(p.wait, getattr(p, "ratio_wait", 0)) for p in self._policies)
        self.best_score = torch.tensor(self._policies[0].best_value, dtype=torch.float64)

    @property
    def restore_policy(self) -> str:
        """The policy whose best check :attr:`restore_check` is: after a stop, the first policy that
        voted (``mode="all"``: the first listed); before a stop, the first listed policy."""
        if self.mode == "all" or not self.triggered_policies:
            return self._policies[0].name
        return self.triggered_policies[0]

    @property
    def restore_check(self) -> int | None:
        """The check whose weights ``restore_best`` restores at the end of training, whether the
        fit stopped or not: the best check of :attr:`restore_policy` (``None`` while it has none)."""
        return next(p for p in self._policies if p.name == self.restore_policy).best_check

    def keep_snapshot(self, state_dict: Callable[[], Mapping[str, torch.Tensor]]) -> None:
        """After :meth:`evaluate`: drop the copies no policy keeps any more, then take a CPU copy of
        the weights when this check became a policy's best check. With one policy at most one copy
        is held (the old best's is freed before the new one is taken)."""
        check = len(self.history) - 1
        keep = {p.best_check for p in self._policies} | self.extra_kept_checks()
        for k in [k for k in self._snapshots if k not in keep]:
            del self._snapshots[k]
        if check in keep and check not in self._snapshots:  # this check became a policy's best
            self._snapshots[check] = {k: v.detach().to("cpu", copy=True) for k, v in state_dict().items()}

    def extra_kept_checks(self) -> set[int]:
        """Checks whose weights a subclass keeps besides the policies' best checks (none here)."""
        return set()

    def restore_message(self, check: int) -> str:
        """The console line of a restore of ``check``'s weights at the end of training."""
        h = self.history[check] if 0 <= check < len(self.history) else None
        at = f" (epoch {h['epoch']}, step {h['step']})" if h is not None else ""
        ended = (f"the fit stopped at check {self.stopped_check}" if self.stopped_check is not None else
                 f"the fit ended after {len(self.history)} checks without a stop by this callback")
        return (f"W2SEarlyStopping: restored the student's weights of check {check}{at}, the best check of "
                f"{self.restore_policy}; {ended}")

    def stop_message(self, where: str, message: str | None, restore: bool) -> str:
        """The message of a stop at ``where``; with ``restore``, which weights come back."""
        full = f"W2SEarlyStopping stopped the fit at {where} (check {len(self.history) - 1}): {message}"
        best = self.restore_check
        if not restore:
            return full
        if best in self._snapshots:
            return full + f". The student's weights of check {best} will be restored at the end of training."
        return full + f". The weights of the best check ({best}) are not available (see save_best_weights)."

    def status_line(self) -> str:
        h = self.history[-1]
        counters = ", ".join(f"{p.name} wait {p.wait}/{p.patience}" for p in self._policies)
        return f"W2SEarlyStopping check {h['check']} (epoch {h['epoch']}){' (warm-up)' if h['warmup'] else ''}: {counters}"

    # ------------------------------------------------------------------ state
    def decisions_state_dict(self, with_weights: bool = False) -> dict[str, Any]:
        state = {
            "policies": list(self.policies),
            "policy_state": {p.name: p.state_dict() for p in self._policies},
            "history": [dict(h, values=dict(h["values"]), votes=list(h["votes"])) for h in self.history],
            "triggered_policies": list(self.triggered_policies),
            "stopped_epoch": self.stopped_epoch,
            "stopped_check": self.stopped_check,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            "best_check": self.best_check,
        }
        if with_weights:
            state["snapshots"] = {int(k): v for k, v in self._snapshots.items()}
        return state

    def load_decisions_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state.get("policies", self.policies)) != list(self.policies):
            raise ValueError(
                f"the checkpoint's W2SEarlyStopping state is for policies {state.get('policies')}, this callback has "
                f"{self.policies}"
            )
        for p in self._policies:
            p.load_state_dict(state.get("policy_state", {}).get(p.name, {}))
        self.history = [dict(h) for h in state.get("history", [])]
        self.triggered_policies = list(state.get("triggered_policies", []))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        self.stopped_check = state.get("stopped_check")
        self.stopping_reason = W2SStoppingReason(state.get("stopping_reason", 0))
        self.stopping_reason_message = state.get("stopping_reason_message")
        self.best_check = state.get("best_check")
        self._snapshots = {int(k): v for k, v in state.get("snapshots", {}).items()}
        self._after_evaluate()
