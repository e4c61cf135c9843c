"""Which check's weights to keep when the probe has gold labels: pure functions over per-check values.

A label-free stop (``W2SEarlyStopping()``'s plateau on the held-out ``teacher_label_ce``) decides
*when* to stop; with ``k`` gold points on the probe, a **gold rule** decides *which* of the checks
seen so far to keep, from two per-check series the monitor logs: the student's gold accuracy on the
``k`` gold points (``Q.ACCURACY``) and the label-free signal (lower is better). Every rule here is a
**heuristic** (none is a theorem about the test accuracy of the kept weights); the stopping
benchmark's gold budgets (``benchmarks/stopping_gold.py``, docs/gold.md) pre-registered them and chose
one per budget on selection seeds (:data:`GOLD_DEFAULTS`).

Rules (``kind``; ``param``), each computable check by check with a bounded number of weight copies:

- ``"label_free"``: the check with the lowest label-free value (gold unused; one copy).
- ``"naive"``: the first check with the highest gold accuracy (one copy). Gold accuracy on ``k``
  points has standard error ``≈ sqrt(a(1 − a)/k)`` (3 points at ``k = 300``, 9 at ``k = 30``), so
  at small ``k`` it picks among checks mostly by noise.
- ``"smooth"``: the highest trailing mean of gold accuracy over ``param`` checks, keeping the last
  check of the best window (one copy; Label Wave's moving average, Yuan et al., ICLR 2024).
- ``"top_m"``: gold decides among the ``param`` checks with the lowest label-free value (ties in
  gold accuracy go to the lower label-free value): gold only ranks checks the teacher-label signal
  already ranks well (``param`` copies: the label-free top-``m`` at the end were in the top-``m``
  when they came).
- ``"gate"``: keep the gold-best check ``G`` instead of the label-free best ``H`` only when its gold
  accuracy is higher by more than ``param`` standard errors of a difference of two proportions on
  ``k`` points, ``param · sqrt(2 ā(1 − ā)/k)`` with ``ā`` their mean (a two-proportion z-test; the
  two accuracies are on the same points and positively correlated, so the test is conservative);
  two copies. Shrinkage toward the label-free choice that vanishes as ``k`` grows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["GOLD_DEFAULTS", "GoldRule", "gold_candidates", "gold_default_for", "gold_kept_check"]

KINDS = ("label_free", "naive", "smooth", "top_m", "gate")


@dataclass(frozen=True)
class GoldRule:
    """A gold rule (module docstring): ``kind`` in ``KINDS``, its parameter (window, ``m`` or ``z``), and
    ``whole_run``: the fit is not stopped early (the rule keeps a check of the whole run) instead of
    stopping where the label-free plateau stops.

    >>> GoldRule("top_m", 3).name, GoldRule("naive", whole_run=True).name
    ('top_m(3)', 'naive, whole run')
    """

    kind: str
    param: float | None = None
    whole_run: bool = False
    #: the per-check gold series the rule reads: ``"accuracy"`` (the gold points alone) or ``"ppi"`` (the
    #: PPI++ estimate, :mod:`lightning_w2s.metrics.gold_intervals`: the gold points plus agreement with the teacher)
    estimate: str = "accuracy"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {self.kind!r}")
        if self.kind in ("smooth", "top_m") and (self.param is None or int(self.param) != self.param or self.param < 1):
            raise ValueError(f"a {self.kind!r} gold rule needs a whole `param` >= 1, got {self.param!r}")
        if self.estimate not in ("accuracy", "ppi"):
            raise ValueError(f"`estimate` must be 'accuracy' or 'ppi', got {self.estimate!r}")
        if self.kind == "gate" and (self.param is None or not self.param >= 0):
            raise ValueError(f"a 'gate' gold rule needs `param` >= 0 (standard errors), got {self.param!r}")

    @property
    def name(self) -> str:
        name = self.kind if self.param is None else f"{self.kind}({self.param:g})"
        return name + (" on the PPI estimate" if self.estimate == "ppi" else "") + (", whole run" if self.whole_run else "")


def _first_best(values: Sequence[float], among: Sequence[int], higher: bool) -> int | None:
    """The first index of ``among`` with the best finite value (``None``: no finite value)."""
    best, pick = None, None
    for i in among:
        x = values[i]
        if x is None or not math.isfinite(x):
            continue
        if best is None or (x > best if higher else x < best):
            best, pick = x, i
    return pick


def gold_kept_check(gold_accuracy: Sequence[float], label_free: Sequence[float], n_gold: int, rule: GoldRule) -> int | None:
    """The index (into the checks seen so far) of the check whose weights ``rule`` keeps.

    ``gold_accuracy[i]``: the student's accuracy on the ``n_gold`` gold points at check ``i``;
    ``label_free[i]``: the label-free signal at check ``i`` (lower is better); non-finite values are
    skipped (a failed check). ``None`` when no check has a finite value the rule needs; a gold rule
    falls back to the label-free choice where no check has a finite gold accuracy.

    >>> acc, lf = [0.70, 0.74, 0.73, 0.75], [0.9, 0.6, 0.5, 0.7]
    >>> [gold_kept_check(acc, lf, 300, GoldRule(k, p)) for k, p in (("label_free", None), ("naive", None), ("top_m", 2), ("gate", 1.0))]
    [2, 3, 1, 2]
    """
    checks = range(len(label_free))
    h = _first_best(label_free, checks, higher=False)
    if rule.kind == "label_free":
        return h
    g = _first_best(gold_accuracy, checks, higher=True)
    if g is None:
        return h
    if rule.kind == "naive":
        return g
    if rule.kind == "smooth":
        w = int(rule.param)
        means = []
        for i in checks:
            window = [gold_accuracy[j] for j in range(max(0, i - w + 1), i + 1) if math.isfinite(gold_accuracy[j])]
            means.append(sum(window) / len(window) if window and math.isfinite(gold_accuracy[i]) else math.nan)
        return _first_best(means, checks, higher=True)
    if rule.kind == "top_m":
        ranked = sorted((i for i in checks if math.isfinite(label_free[i])), key=lambda i: (label_free[i], i))[: int(rule.param)]
        ranked.sort(key=lambda i: (label_free[i], i))  # gold ties go to the lower label-free value
        return _first_best(gold_accuracy, ranked, higher=True) if ranked else g
    # gate
    if h is None or not math.isfinite(gold_accuracy[h]):
        return g
    a_g, a_h = gold_accuracy[g], gold_accuracy[h]
    mean = (a_g + a_h) / 2.0
    se = math.sqrt(max(2.0 * mean * (1.0 - mean), 0.0) / max(n_gold, 1))
    return g if a_g - a_h > rule.param * se else h


def gold_candidates(gold_accuracy: Sequence[float], label_free: Sequence[float], n_gold: int, rule: GoldRule) -> set[int]:
    """The checks whose weights a live stopper must hold now so that every later pick of ``rule`` is
    among them (with the label-free best, which the stopper holds anyway): the pick for ``naive`` and
    ``smooth`` (running bests), the gold-best check for ``gate``, the label-free top ``m`` for
    ``top_m``. A check outside this set is never picked later (the tests replay this)."""
    checks = range(len(label_free))
    if rule.kind == "label_free":
        return set()
    if rule.kind == "gate":
        g = _first_best(gold_accuracy, checks, higher=True)
        return set() if g is None else {g}
    if rule.kind == "top_m":
        return set(sorted((i for i in checks if math.isfinite(label_free[i])), key=lambda i: (label_free[i], i))[: int(rule.param)])
    pick = gold_kept_check(gold_accuracy, label_free, n_gold, rule)
    return set() if pick is None else {pick}


#: the gold rule per budget, chosen by the stopping benchmark on its selection seeds (docs/gold.md):
#: ``(fewest gold points, rule, why)``; the largest threshold not above the probe's gold count applies.
#: Budgets 30 / 100 / 300 were benchmarked; the thresholds are their geometric midpoints (55, 173).
GOLD_DEFAULTS: tuple[tuple[int, GoldRule, str], ...] = (
    (
        0,
        GoldRule("label_free"),
        "the label-free default is kept (teacher_label_ce plateau, patience 5, best check): with about 30 gold points "
        "every gold rule left more regret on the benchmark's selection seeds (docs/gold.md).",
    ),
    (
        55,
        GoldRule("naive", estimate="ppi"),
        "the check with the best PPI++ estimate of gold accuracy (gold points plus agreement with the teacher) among "
        "the checks up to the label-free stop is kept: the benchmark's choice at 100 gold points (docs/gold.md).",
    ),
    (173, GoldRule("naive", whole_run=True), "the fit runs to its end and the check with the best gold accuracy is kept: the benchmark's choice at 300 gold points (docs/gold.md)."),
)


def gold_default_for(n_gold: int) -> tuple[GoldRule, str]:
    """The benchmark's choice for a probe with ``n_gold`` gold points, and why (:data:`GOLD_DEFAULTS`).

    >>> gold_default_for(0)[0].kind
    'label_free'
    """
    pick = GOLD_DEFAULTS[0][1:]
    for threshold, rule, why in GOLD_DEFAULTS:
        if n_gold >= threshold:
            pick = (rule, why)
    return pick


class GoldSelection:
    """What gold on the probe changes in the default stopper's decision, read from its history.

    Each check's gold values (the student's gold accuracy, its PPI estimate, the gold count) are
    recorded into that check's history entry (:meth:`record`); the rule in force is
    :func:`gold_default_for` of the latest gold count (``None``: label-free), which picks the check
    whose weights are kept (:meth:`pick`) among the candidates a live stopper must keep copies of
    (:meth:`candidates`). A heuristic chosen on the stopping benchmark (docs/gold.md), not a bound.

    >>> sel = GoldSelection(enabled=True)
    >>> history = [{"values": {"ce": v}} for v in (0.5, 0.4, 0.45)]
    >>> for h, acc in zip(history, (0.70, 0.72, 0.75)):
    ...     sel.record([h], {"accuracy": acc, "ppi": acc, "count": 300})
    >>> sel.rule(history).kind, sel.pick(history, "ce")
    ('naive', 2)
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def record(self, history: list[dict], gold: Mapping[str, float]) -> None:
        """Store one check's finite gold values (``accuracy``, ``ppi``, ``count``) in its history entry."""
        history[-1]["gold"] = {k: float(v) for k, v in gold.items() if v is not None and math.isfinite(float(v))}

    def count(self, history: Sequence[Mapping]) -> int | None:
        """The gold count of the latest check that logged one (a failed check logs none, and must not
        switch the rule off: its weight copies would be dropped)."""
        if not self.enabled:
            return None
        return next((int(h["gold"]["count"]) for h in reversed(history) if "count" in h.get("gold", {})), None)

    def rule(self, history: Sequence[Mapping]) -> GoldRule | None:
        """The gold rule in force (``None``: label-free)."""
        n = self.count(history)
        if n is None:
            return None
        rule = gold_default_for(n)[0]
        return None if rule.kind == "label_free" else rule

    def _series(self, history: Sequence[Mapping], rule: GoldRule, label_free: str) -> tuple[list[float], list[float], int]:
        acc = [h.get("gold", {}).get(rule.estimate, math.nan) for h in history]
        lf = [h["values"].get(label_free, math.nan) for h in history]
        return acc, lf, self.count(history) or 0

    def pick(self, history: Sequence[Mapping], label_free: str) -> int | None:
        """The check whose weights the rule in force keeps (``None``: no rule, or no check yet)."""
        rule = self.rule(history)
        return None if rule is None else gold_kept_check(*self._series(history, rule, label_free), rule)

    def candidates(self, history: Sequence[Mapping], label_free: str) -> set[int]:
        """Checks whose weights a live stopper keeps for the rule in force (empty without one)."""
        rule = self.rule(history)
        return set() if rule is None else gold_candidates(*self._series(history, rule, label_free), rule)
