"""The stopping policies of :class:`~lightning_w2s.W2SEarlyStopping`, built from its arguments.

:func:`make_policies` checks the policy arguments (each error names the argument) and returns the
rules of :mod:`lightning_w2s.stopping.rules` that a
:class:`~lightning_w2s.stopping.decision.StoppingDecision` votes with. Only the two policies the
stopping benchmark supports are offered (docs/stopping.md): ``heldout_misfit_plateau`` (the
default) and ``teacher_overfit``; ``gain_exhausted`` and ``robustness_drop`` are the monitor's
warnings (:mod:`lightning_w2s.stopping.alerts`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.validation import check_choice, check_scalar
from lightning_w2s.stopping.rules import POLICIES, HeldoutMisfitPlateau, Rule, TeacherOverfit

__all__ = ["POLICIES", "make_policies", "unmet_message"]


def _per_policy(name: str, value: Any, policies: Sequence[str], kind: type, **limits: Any) -> dict[str, Any]:
    """Expand a number or a ``{policy: number}`` mapping into one checked value per policy.

    >>> _per_policy("patience", {"teacher_overfit": 2}, ["teacher_overfit"], int, min_val=1)
    {'teacher_overfit': 2}
    """
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


def _check_policy_names(policy: str | Sequence[str]) -> list[str]:
    policies = [policy] if isinstance(policy, str) else list(policy)
    if not policies:
        raise ValueError("`policy` must name at least one policy, got an empty list")
    for p in policies:
        if p in ("gain_exhausted", "robustness_drop"):
            raise ValueError(
                f"`policy`={p!r} is a warning of W2SMonitor, not a stopping policy: as a stopping rule it left more "
                "regret than training to the end on the stopping benchmark (docs/stopping.md). Use the monitor's "
                f"warning (W2SMonitor{'(min_gain=...)' if p == 'gain_exhausted' else ''}) or one of {list(POLICIES)}"
            )
        check_choice("policy", p, POLICIES)
    if len(set(policies)) != len(policies):
        raise ValueError(f"`policy` lists a policy twice: {policies}")
    return policies


def make_policies(
    policy: str | Sequence[str] = "heldout_misfit_plateau",
    patience: int | Mapping[str, int] = 5,
    min_delta: float | Mapping[str, float] = 0.0,
    misfit: str = "teacher_label_ce",
    kappa: float | None = 0.5,
) -> list[Rule]:
    """The rules for ``policy`` (a name or a list), each with its ``patience`` and ``min_delta`` (a
    number or ``{policy: number}``), reading the held-out ``misfit`` (a key of ``Q.MISFIT``; its
    train-probe twin for ``teacher_overfit``, whose ratio branch uses ``kappa``, ``None`` = off).

    >>> [(r.name, r.patience, r.needs() == [Q.TEACHER_LABEL_CE]) for r in make_policies()]
    [('heldout_misfit_plateau', 5, True)]
    """
    policies = _check_policy_names(policy)
    misfit = check_choice("misfit", misfit, tuple(Q.MISFIT))
    patience_of = _per_policy("patience", patience, policies, int, min_val=1)
    min_delta_of = _per_policy("min_delta", min_delta, policies, float, min_val=0.0, max_val=math.inf, include_boundaries="left")
    kappa = check_scalar("kappa", kappa, float, min_val=0.0, max_val=1.0, include_boundaries="right", allow_none=True)
    held = Q.MISFIT[misfit]
    rules: list[Rule] = []
    for name in policies:
        if name == "teacher_overfit":
            rules.append(TeacherOverfit(patience_of[name], min_delta_of[name], held, Q.train_name(held), kappa))
        else:
            rules.append(HeldoutMisfitPlateau(patience_of[name], min_delta_of[name], held))
    return rules


def unmet_message(rules: Sequence[Rule], missing: Sequence[str], when: str, available: Sequence[str] | None = None) -> str:
    """Which of ``rules`` need which ``missing`` names, and how to fix each (the registry's hints).

    >>> msg = unmet_message(make_policies(), [Q.TEACHER_LABEL_CE], "test")
    >>> msg.startswith(f"W2SEarlyStopping(policy=['heldout_misfit_plateau']) needs `{Q.TEACHER_LABEL_CE}`, which")
    True
    """
    users = [r.name for r in rules if set(r.needs()) & set(missing)]
    msg = f"W2SEarlyStopping(policy={users}) needs {', '.join(f'`{n}`' for n in missing)}, which will not be logged ({when}). To fix: " + "; ".join(f"`{n}`: {Q.hint(n)}" for n in missing) + "."
    if available is not None:
        msg += f" Logged w2s names: {sorted(available) or 'none'}."
    return msg + " Pass `strict=False` to warn instead (those policies then never vote)."
