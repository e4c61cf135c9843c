"""The rules behind stopping and warnings, one definition each (docs/theory.md §3).

A rule reads named values at each check (:meth:`Rule.needs`, names from the quantities registry),
keeps its counters (``wait``: consecutive checks the condition held) and the values it compares
with next time, says whether it holds for ``patience`` checks (:meth:`Rule.triggered`) and describes
the situation (:meth:`Rule.describe`). :class:`~lightning_w2s.stopping.decision.StoppingDecision`
(held by :class:`~lightning_w2s.W2SEarlyStopping`) votes with the two stopping policies;
:class:`~lightning_w2s.stopping.alerts.AlertTracker` warns with the same rules (patience 1, or the
monitor's ``alert_window``), so a warning and a stop never disagree about what a rule means.

- ``heldout_misfit_plateau`` (the default of ``W2SEarlyStopping()``, on ``teacher_label_ce``):
  held-out misfit to the teacher stopped improving — standard early stopping on a held-out loss
  against noisy (teacher) labels (Toner & Storkey 2024), as Lang et al. (2024) do with teacher labels
  [recalled, docs/theory.md §3];
- ``teacher_overfit``: train-probe misfit fell while held-out misfit rose (or their ratio stayed
  under ``kappa``), motivated by Yao et al. (2025) on over-optimising toward the weak signal
  [recalled; the thresholds are ours]; also the monitor's ``fitting_teacher_errors`` warning;
- warnings only (the monitor's, never a stopping policy: each left more regret than training to the
  end on the stopping benchmark, docs/stopping.md): ``gain_exhausted`` (the logged maximum gain
  ``Q.MAX_GAIN``, coverage × held-out disagreement + (1 − coverage), under ``min_gain`` [derived
  bound, docs/theory.md §2.2]), ``robustness_drop`` (Lang et al.'s average non-robustness γ̂ rose
  while held-out disagreement fell, the label-free signature of fitting the teacher's mistakes: Lang,
  Sontag, Vijayaraghavan 2024, "Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS 2024,
  Prop 4.1 [paper]), ``prediction_collapse`` (the student puts more than ``collapse_share`` of the
  probe in one class while the teacher does not) and ``probe_too_small`` (the Wilson half-width of
  the held-out disagreement is above ``max_halfwidth``).

Every rule is a **heuristic**, not a theorem about the student's gold accuracy. The stopping-regret
benchmark (``make bench-stopping``, docs/stopping.md: 13 (task, teacher) pairs, 5 sources, 8 seeds,
chosen on seeds 0–3, reported on 4–7) chose the plateau on ``teacher_label_ce`` (patience 5, best
check restored) as the default: 1.20 pt of gold-accuracy regret against 1.45 pt for
``EarlyStopping`` + ``ModelCheckpoint`` on the teacher-labelled validation loss (a tie: Δ −0.25,
95% CI [−0.69, +0.18]); training to the end left 3.19 pt. Each rule's docstring gives its figures.
Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from lightning_w2s.metrics import quantities as Q

__all__ = ["POLICIES", "Rule", "W2SStoppingReason"]


class W2SStoppingReason(Enum):
    """Why :class:`~lightning_w2s.W2SEarlyStopping` stopped the fit (mirrors Lightning's ``EarlyStoppingReason``).

    >>> W2SStoppingReason(1).name
    'HELDOUT_MISFIT_PLATEAU'
    """

    NOT_STOPPED = 0
    HELDOUT_MISFIT_PLATEAU = 1
    TEACHER_OVERFIT = 2


class Rule:
    """One named rule: counters updated at each check with fresh values, a verdict, a description.

    ``best_check`` is the check whose weights a stopping rule judges best (restored with
    ``restore_best``). Counters never grow during warm-up; the values seen during warm-up still set
    the best value and the "previous" values that trend rules compare with.

    >>> sorted(POLICY_RULES)  # the stopping rules; the others are the monitor's warnings
    ['heldout_misfit_plateau', 'teacher_overfit']
    """

    name = ""
    #: why a stop by this rule stopped the fit (``None``: a warning-only rule)
    reason: W2SStoppingReason | None = None
    basis = "heuristic"
    #: the logged name whose lowest value marks ``best_check`` (what ``ModelCheckpoint(monitor=...,
    #: mode="min")`` would keep); ``None`` when the best check is not such a minimum
    best_is_minimum_of: str | None = None
    _STATE: tuple[str, ...] = ("wait", "best_check", "best_value")

    def __init__(self, patience: int = 1, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.wait = 0
        self.best_check: int | None = None
        self.best_value = math.inf
        for key in self._STATE[len(Rule._STATE) :]:  # a rule's own memory (previous values...) starts empty
            setattr(self, key, None)

    def needs(self) -> list[str]:
        raise NotImplementedError

    def update(self, values: Mapping[str, float], check: int, warmup: bool) -> None:
        raise NotImplementedError

    def triggered(self) -> bool:
        return self.wait >= self.patience

    def describe(self, history: list[dict] | None = None) -> str:
        """What holds now, in words: a warning's text; with the stopper's ``history``, the stop
        message, which also names the check whose weights the rule keeps."""
        raise NotImplementedError

    def _best(self, history: list[dict] | None, text: str) -> str:
        """``text`` followed by where the best check was (with a ``history``), else nothing."""
        if history is None:
            return ""
        check = self.best_check
        if check is None or check >= len(history):
            return f"{text}no check"
        h = history[check]
        return f"{text}check {check} (epoch {h['epoch']}, step {h['step']})"

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self._STATE:
            if k in state:
                setattr(self, k, state[k])


class HeldoutMisfitPlateau(Rule):
    """The held-out misfit (default ``teacher_label_ce``: the student's cross-entropy on the teacher's
    labels of the probe, the training objective on held-out points) has not improved — a value
    strictly below the best so far minus ``min_delta`` — for ``patience`` checks: Lightning's
    ``EarlyStopping`` logic on a noisy-validation loss (standard early stopping; Toner & Storkey 2024
    on validating with noisy labels; what Lang et al. 2024 do with teacher labels [recalled, docs/theory.md
    §3]) — a heuristic. Best check: the first check of the lowest held-out misfit (what
    ``ModelCheckpoint(save_top_k=1)`` keeps).

    Benchmark (report seeds, ``make bench-stopping``): on ``teacher_label_ce`` with patience 5 and
    the best check restored at the end, 1.20 pt of regret (the chosen default; a tie with
    ``EarlyStopping`` + ``ModelCheckpoint`` on the validation loss, 1.45 pt, Δ −0.25 [−0.69, +0.18]);
    on ``kl_teacher_student`` with patience 3 and the stop's weights (the previous default) 2.21 pt.

    >>> rule = HeldoutMisfitPlateau(patience=1, min_delta=0.0)
    >>> for check, x in enumerate([0.5, 0.4, 0.45]):
    ...     rule.update({Q.TEACHER_LABEL_CE: x}, check, warmup=False)
    >>> rule.triggered(), rule.best_check
    (True, 1)
    """

    name = "heldout_misfit_plateau"
    reason = W2SStoppingReason.HELDOUT_MISFIT_PLATEAU

    def __init__(self, patience: int, min_delta: float, quantity: str = Q.TEACHER_LABEL_CE) -> None:
        super().__init__(patience, min_delta)
        self.quantity = self.best_is_minimum_of = quantity

    def needs(self) -> list[str]:
        return [self.quantity]

    def update(self, values, check, warmup):
        x = values[self.quantity]
        if x < self.best_value - self.min_delta:
            self.best_value, self.best_check, self.wait = x, check, 0
        elif not warmup:
            self.wait += 1

    def describe(self, history=None):
        return (
            f"held-out misfit `{self.quantity}` did not improve by more than min_delta={self.min_delta:g} for "
            f"{self.wait} checks (best {self.best_value:.6g}{self._best(history, ' at ')}): the student has stopped "
            "learning the teacher's function on inputs it is not trained on"
        )


class TeacherOverfit(Rule):
    """The train-probe misfit fell while the held-out one rose, each by more than ``min_delta``, for
    ``patience`` consecutive checks; or the ratio train/held-out stayed under ``kappa`` for
    ``patience`` checks (``kappa=None`` disables that branch). Motivated by Yao et al. (2025):
    over-optimising toward the weak signal hurts [recalled; the thresholds are ours]. Best check:
    lowest held-out misfit. The monitor's ``fitting_teacher_errors`` warning is this rule.

    Benchmark (report seeds): not recommended as a stopping rule. As ``W2SEarlyStopping("teacher_overfit")``
    runs it now (patience 5, ``teacher_label_ce``, best check restored) 1.21 pt — its best check is the
    default's and its stop rarely comes first, so it adds nothing over the default and needs a train
    probe; 2.08 pt without the restore; with the previous settings (patience 3, ``kl_teacher_student``,
    the stop's weights) 2.27 pt, Δ +0.82 [−0.04, +1.68] against ``EarlyStopping`` + ``ModelCheckpoint``.

    >>> rule = TeacherOverfit(patience=2, min_delta=0.0)
    >>> for check, (tr, ho) in enumerate([(0.5, 0.5), (0.4, 0.55), (0.3, 0.6)]):
    ...     rule.update({Q.train_name(Q.KL_TEACHER_STUDENT): tr, Q.KL_TEACHER_STUDENT: ho}, check, warmup=False)
    >>> rule.triggered(), rule.best_check
    (True, 0)
    """

    name = "teacher_overfit"
    reason = W2SStoppingReason.TEACHER_OVERFIT
    _STATE = Rule._STATE + ("ratio_wait", "prev_train", "prev_heldout", "last_ratio")

    def __init__(self, patience: int, min_delta: float, heldout: str = Q.KL_TEACHER_STUDENT, train: str | None = None, kappa: float | None = None) -> None:
        super().__init__(patience, min_delta)
        self.heldout, self.train, self.kappa = heldout, train or Q.train_name(heldout), kappa
        self.best_is_minimum_of = heldout
        self.ratio_wait = 0  # consecutive checks with train/held-out ratio < kappa

    def needs(self) -> list[str]:
        return [self.heldout, self.train]

    def update(self, values, check, warmup):
        tr, ho = values[self.train], values[self.heldout]
        if ho < self.best_value - self.min_delta:  # best weights: lowest held-out misfit
            self.best_value, self.best_check = ho, check
        ratio = tr / ho if ho > 0 else (1.0 if tr == 0 else math.inf)
        self.last_ratio = ratio
        if not warmup:
            diverging = self.prev_train is not None and tr < self.prev_train - self.min_delta and ho > self.prev_heldout + self.min_delta
            self.wait = self.wait + 1 if diverging else 0
            if self.kappa is not None:
                self.ratio_wait = self.ratio_wait + 1 if ratio < self.kappa else 0
        self.prev_train, self.prev_heldout = tr, ho

    def triggered(self) -> bool:
        return self.wait >= self.patience or (self.kappa is not None and self.ratio_wait >= self.patience)

    def describe(self, history=None):
        parts = []
        if self.wait >= self.patience:
            parts.append(
                f"train-probe misfit `{self.train}` fell while held-out misfit `{self.heldout}` rose (each by more "
                f"than min_delta={self.min_delta:g}) for {self.wait} consecutive checks (now {self.prev_train:.6g} "
                f"vs {self.prev_heldout:.6g})"
            )
        if self.kappa is not None and self.ratio_wait >= self.patience:
            parts.append(f"the ratio train/held-out misfit stayed under kappa={self.kappa:g} for {self.ratio_wait} checks (now {self.last_ratio:.4g})")
        return (
            " and ".join(parts) + ": the student is fitting the teacher's labels on its training inputs without "
            "carrying that fit over (over-optimisation toward the weak signal, i.e. fitting its errors)" + self._best(history, f"; best held-out misfit {self.best_value:.6g} at ")
        )


class GainExhausted(Rule):
    """The logged maximum gain ``Q.MAX_GAIN`` under ``min_gain - min_delta`` for ``patience`` consecutive checks: a gain of
    ``min_gain`` over the teacher's accuracy is then impossible on the probe at those checks [derived
    bound]. ``max_gain = π·d + (1 − π)`` (:func:`~lightning_w2s.metrics.bounds.max_accuracy_gain`,
    label-free; ``d`` = held-out disagreement, ``π`` = the share of the probe the teacher covers): on
    covered points the 0/1 band ``|acc(s) − acc(w)| ≤ disagreement`` caps the gain, and where the
    teacher abstains the disagreement says nothing, so those points count as all right. With a
    teacher that labels every point it is the disagreement itself. Best check: the last one where
    ``max_gain`` was still ``>= min_gain − min_delta``. The monitor's ``gain_exhausted`` warning is this rule.

    The bound answers "can the student still gain ``min_gain`` over the teacher?" for the target you
    give; it is not a rule for when the student is best. A warning only: as a stopping policy
    (report seeds, ``min_gain=0.05``, patience 5, best check restored) it left 3.24 pt of regret,
    more than training to the end (3.19 pt), Δ +1.79 [+0.55, +3.02] against ``EarlyStopping`` +
    ``ModelCheckpoint`` (docs/stopping.md).

    >>> rule = GainExhausted(patience=1, min_delta=0.0, min_gain=0.1)
    >>> rule.update({Q.MAX_GAIN: 0.05}, 0, warmup=False)
    >>> rule.triggered()
    True
    """

    name = "gain_exhausted"
    basis = "derived bound"
    _STATE = Rule._STATE + ("last_value",)
    _WHY = (
        "the student's accuracy can exceed the teacher's by at most coverage × held-out disagreement + (1 − coverage) "
        "(points where the teacher abstains counted as all right), so a gain of min_gain over the teacher is no "
        "longer possible"
    )

    def __init__(self, patience: int, min_delta: float, min_gain: float) -> None:
        super().__init__(patience, min_delta)
        self.min_gain = min_gain

    def needs(self) -> list[str]:
        return [Q.MAX_GAIN]

    def update(self, values, check, warmup):
        g = values[Q.MAX_GAIN]
        self.last_value = g
        if g < self.min_gain - self.min_delta:
            if not warmup:
                self.wait += 1
        else:  # a gain of min_gain is still possible here: the latest such check is the one to keep
            self.wait, self.best_check, self.best_value = 0, check, g

    def describe(self, history=None):
        if history is None:  # a warning: the situation at this check
            return f"{Q.MAX_GAIN} = {self.last_value:.4f} < min_gain {self.min_gain:.4f}: {self._WHY}"
        return f"{Q.MAX_GAIN} stayed under min_gain={self.min_gain:g} (minus min_delta={self.min_delta:g}) for {self.wait} check(s) (now {self.last_value:.6g}): {self._WHY} on the probe" + self._best(
            history, "; last check where that gain was still possible: "
        )


class RobustnessDrop(Rule):
    """Lang et al.'s average non-robustness γ̂ rose while the held-out disagreement fell, each by more
    than ``min_delta``, for ``patience`` consecutive checks: the label-free signature of fitting the
    teacher's mistakes (Lang, Sontag, Vijayaraghavan 2024, Prop 4.1 [paper]; its use as a stopping
    rule is a heuristic). Best check: the last one before the streak. The monitor's
    ``robustness_drop`` warning is this rule.

    A warning only: as a stopping policy (report seeds) it left 4.04 pt of regret with the best
    check restored (3.05 pt without), more than training to the end (3.19 pt), Δ +2.59
    [+1.07, +4.10] against ``EarlyStopping`` + ``ModelCheckpoint`` (docs/stopping.md).

    >>> rule = RobustnessDrop(patience=1, min_delta=0.0)
    >>> for check, (g, d) in enumerate([(0.1, 0.3), (0.2, 0.2)]):
    ...     rule.update({Q.INCONSISTENCY: g, Q.DISAGREEMENT: d}, check, warmup=False)
    >>> rule.triggered(), rule.best_check
    (True, 0)
    """

    name = "robustness_drop"
    _STATE = Rule._STATE + ("prev_gamma", "prev_disagreement")

    def needs(self) -> list[str]:
        return [Q.INCONSISTENCY, Q.DISAGREEMENT]

    def update(self, values, check, warmup):
        g, d = values[Q.INCONSISTENCY], values[Q.DISAGREEMENT]
        signature = not warmup and self.prev_gamma is not None and g > self.prev_gamma + self.min_delta and d < self.prev_disagreement - self.min_delta
        if signature:
            self.wait += 1
        else:  # the streak (if any) starts after this check: its weights are the last robust ones
            self.wait, self.best_check, self.best_value = 0, check, g
        self.prev_gamma, self.prev_disagreement = g, d

    def describe(self, history=None):
        return (
            f"average non-robustness `{Q.INCONSISTENCY}` (gamma-hat) rose while held-out disagreement fell (each by "
            f"more than min_delta={self.min_delta:g}) for {self.wait} consecutive checks (now gamma-hat "
            f"{self.prev_gamma:.6g}, disagreement {self.prev_disagreement:.6g}): the student is fitting the teacher "
            "by giving up neighbourhood consistency, the signature of fitting its mistakes (Lang et al., Prop 4.1)" + self._best(history, "; last check before the streak: ")
        )


class PredictionCollapse(Rule):
    """Warning only: the student's predicted class distribution collapsed while the teacher's did not.

    >>> rule = PredictionCollapse(0.9)
    >>> rule.update({Q.MAX_CLASS_SHARE: 0.97, Q.TEACHER_MAX_CLASS_SHARE: 0.6}, 0, warmup=False)
    >>> rule.triggered(), rule.describe()
    (True, 'the student predicts one class for 97.0% of the probe (teacher: 60.0%): its predicted class distribution has collapsed')
    """

    name = "prediction_collapse"
    _STATE = Rule._STATE + ("share", "teacher_share")

    def __init__(self, collapse_share: float = 0.95) -> None:
        super().__init__()
        self.collapse_share = collapse_share

    def needs(self) -> list[str]:
        return [Q.MAX_CLASS_SHARE]

    def update(self, values, check, warmup):
        self.share, self.teacher_share = values[Q.MAX_CLASS_SHARE], values.get(Q.TEACHER_MAX_CLASS_SHARE)
        collapsed = self.share > self.collapse_share and not (self.teacher_share is not None and self.teacher_share > self.collapse_share)
        self.wait = self.wait + 1 if collapsed else 0

    def describe(self, history=None):
        teacher = f" (teacher: {self.teacher_share:.1%})" if self.teacher_share is not None else ""
        return f"the student predicts one class for {self.share:.1%} of the probe{teacher}: its predicted class distribution has collapsed"


class ProbeTooSmall(Rule):
    """Warning only: the probe cannot measure the held-out disagreement to the asked precision.

    >>> rule = ProbeTooSmall(0.05)
    >>> rule.update({Q.lower(Q.DISAGREEMENT): 0.1, Q.upper(Q.DISAGREEMENT): 0.3}, 0, warmup=False)
    >>> rule.triggered(), round(rule.halfwidth, 3)
    (True, 0.1)
    """

    name = "probe_too_small"
    basis = "sampling error"
    _STATE = Rule._STATE + ("halfwidth",)

    def __init__(self, max_halfwidth: float = 0.05) -> None:
        super().__init__()
        self.max_halfwidth = max_halfwidth

    def needs(self) -> list[str]:
        return [Q.lower(Q.DISAGREEMENT), Q.upper(Q.DISAGREEMENT)]

    def update(self, values, check, warmup):
        self.halfwidth = (values[Q.upper(Q.DISAGREEMENT)] - values[Q.lower(Q.DISAGREEMENT)]) / 2
        self.wait = self.wait + 1 if self.halfwidth > self.max_halfwidth else 0

    def describe(self, history=None):
        return (
            f"the probe is too small for the interval width: held-out disagreement is known only to ±{self.halfwidth:.3f} "
            f"(Wilson 95%), above the ±{self.max_halfwidth:.3f} asked for; use a larger probe"
        )


#: the stopping policies of W2SEarlyStopping, by name
POLICY_RULES = {rule.name: rule for rule in (HeldoutMisfitPlateau, TeacherOverfit)}
POLICIES = tuple(POLICY_RULES)
