"""The machinery of the quantities registry (:mod:`lightning_w2s.metrics.quantities` holds the entries).

:class:`Quantity` describes one logged name, :class:`Need` what a configuration must provide for it,
:class:`Chart` where the dashboard draws it; :func:`declare` registers one (with its generated
interval ends and train-probe twins); :func:`lookup`, :func:`expected_names`, :func:`hint` and
:func:`~lightning_w2s.metrics._registry_views.markdown_table` read the registry; the dashboard's
views of it live in :mod:`lightning_w2s.metrics._registry_views`. Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache

PREFIX = "w2s"
KINDS = ("value", "bound", "interval", "estimate", "prediction", "count")
ROLES = ("line", "interval", "value", "lower", "upper", "constant")
#: the probes a quantity is logged for: class-probability teachers, and real-valued ones (``teacher_values=``)
TASKS = ("classification", "regression")
CLASSIFICATION, BOTH = ("classification",), TASKS


class Need:
    """What a configuration must provide for a quantity to be logged (``Quantity.needs``).

    >>> sorted(lookup(name("gold", "coverage_accuracy")).needs)
    ['gold', 'uncovered']
    """

    GOLD = "gold"  #: gold labels on the probe
    UNCOVERED = "uncovered"  #: teacher abstentions on the probe (Lang et al.'s uncovered set T)
    TEACHER_FEATURES = "teacher_features"  #: the teacher's representation of the probe
    TRAIN_PROBE = "train_probe"  #: a train probe on the monitor
    NEIGHBOURS = "neighbours"  #: the k-NN neighbourhoods behind Lang et al.'s robustness (>= 3 probe points)
    PGR_SCORES = "pgr_scores"  #: teacher_score and ceiling_score with ceiling > teacher
    TEACHER_ACCURACY = "teacher_accuracy"  #: the teacher's gold accuracy: gold on the probe, or teacher_score


#: how to provide each need (the stopper's error messages), and its short label in docs/metrics.md
NEEDS = {
    Need.GOLD: ("give the probe gold labels (`W2SProbe(..., gold=...)`)", "gold"),
    Need.UNCOVERED: ("the teacher must abstain on some probe points (`teacher_labels=-1` or `covered=`)", "abstentions"),
    Need.TEACHER_FEATURES: ("give the probe the teacher's representation (`W2SProbe(..., teacher_features=...)` or `W2SProbe.from_teacher`)", "teacher features"),
    Need.TRAIN_PROBE: ("give the monitor a train probe: `W2SMonitor(probe=..., train_probe=...)` built from a fixed slice of the training inputs with their teacher labels", "train probe"),
    Need.NEIGHBOURS: (
        "enable the monitor's robustness family (Lang et al.'s gamma-hat needs neighbourhoods on the probe: `W2SMonitor(neighbours=k)` with k >= 1 and at least 3 probe points)",
        "neighbours",
    ),
    Need.PGR_SCORES: ("pass `W2SMonitor(teacher_score=..., ceiling_score=...)` with ceiling_score > teacher_score", "teacher_score < ceiling_score"),
    Need.TEACHER_ACCURACY: ("give the probe gold labels or pass `W2SMonitor(teacher_score=...)`", "gold or teacher_score"),
}
MONITOR_HINT = "attach `W2SMonitor(probe=...)` to the Trainer's callbacks"
CLASSIFICATION_HINT = (
    "it is logged for classification probes only: a regression probe (`W2SProbe(..., teacher_values=...)`) logs the "
    "names of task 'both' in docs/metrics.md; on one, stop with "
    "`W2SEarlyStopping('heldout_misfit_plateau' or 'teacher_overfit', misfit='sq')`"
)
UNREGISTERED_HINT = "log it from a callback or the LightningModule"


@dataclass(frozen=True)
class Chart:
    """Where a quantity is drawn: chart ``title`` in dashboard ``section`` (default: its family).

    Every chart draws **one tag**, and its lines are TensorBoard *runs*: the student's own run (the
    logger's) and reference runs the dashboard writes beside it (``run=``), which TensorBoard colours
    apart and names in its run list. Several tags of one run in one chart would share a colour.

    ``role``: ``"line"`` (the chart's tag, a Multiline chart); ``"interval"`` (the value of a Margin
    chart whose band is the quantity's own Wilson interval: its generated ``_lower``/``_upper`` ends
    join it); ``"value"``, ``"lower"``, ``"upper"`` (the three tags of a Margin chart whose band comes
    from other quantities); ``"constant"`` (a constant of the probe: written once in the dashboard's
    text, never drawn as a flat line).

    ``run``: draw this quantity in reference run ``run`` (``{i}`` in it: one run per class of a
    per-class quantity) under the chart's tag for the same role, e.g. the teacher's accuracy in run
    ``teacher`` of the student's accuracy chart. ``value``: write that constant instead of the
    quantity's value (a reference defined to be constant, e.g. the teacher's PGR, 0), at the checks
    where the chart's own tag is logged. ``order``: position within the section (lower first, then
    registry order), for the headline. ``band_title``: the title of a band chart whose value is not
    logged (the band alone, drawn with its lower end as the line).

    >>> [(c.title, c.role) for c in lookup(lower(name("misfit", "disagreement"))).charts]
    [('student–teacher disagreement on held-out probe points (Wilson 95%)', 'lower')]
    """

    title: str
    section: str | None = None
    role: str = "line"
    run: str | None = None
    value: float | None = None
    order: int = 0
    band_title: str | None = None


#: a constant of the probe (a :class:`Chart` role): text, not a flat line
CONSTANT = Chart("constants of the probe", role="constant")


@dataclass(frozen=True)
class Quantity:
    """One logged name (``{i}`` in it: one per class) and everything the package knows about it.

    >>> q = lookup(name("lang", "covered_predicted_error_1"))
    >>> q.kind, q.higher_is_better, q.may_be_undefined, q.per_class, len(q.names(3)), sorted(q.tasks)
    ('estimate', False, True, True, 3, ['classification'])
    """

    name: str
    meaning: str
    source: str = ""
    kind: str = "value"
    higher_is_better: bool | None = None
    needs: frozenset = frozenset()
    may_be_undefined: bool = False
    charts: tuple[Chart, ...] = ()
    on_train_probe: bool = False
    interval: bool = False
    #: for entries generated by :func:`declare` (interval ends, train-probe twins): the declared name
    declared: str | None = field(default=None, compare=False)
    #: the probes it is logged for (:data:`TASKS`)
    tasks: frozenset = frozenset(CLASSIFICATION)

    @property
    def family(self) -> str:
        parts = self.name.split("/")
        return parts[1] if len(parts) == 3 else ""

    @property
    def quantity(self) -> str:
        return self.name.split("/", 2)[-1] if self.family else self.name.split("/", 1)[-1]

    @property
    def per_class(self) -> bool:
        return "{i}" in self.name

    @property
    def pattern(self) -> str:
        """Anchored regex matching this name (every class of a per-class template)."""
        return "^" + re.escape(self.name).replace(re.escape("{i}"), r"\d+") + "$"

    def names(self, num_classes: int) -> list[str]:
        return [self.name.format(i=i) for i in range(num_classes)] if self.per_class else [self.name]


#: every registered quantity by name (templates keep their ``{i}``), in dashboard order
QUANTITIES: dict[str, Quantity] = {}
#: dashboard sections (``Chart.section``) in order, with their titles: the headline first, then the families
SECTIONS = {
    "headline": "headline: does the student beat its teacher?",
    "misfit": "misfit: how closely the student follows the teacher",
    "gold": "gold: where the student is right and the teacher wrong",
    "calibration": "calibration",
    "prediction": "prediction collapse",
    "representation": "representation (Xue et al.)",
    "robustness": "robustness (Lang et al.)",
    "lang": "Lang et al. per class: expansion, errors and their bounds",
}
#: the dashboard's reference runs, in the order they are created (TensorBoard colours runs in that order)
REFERENCE_RUNS = ("teacher", "ceiling", "train_probe", "predicted_gain", "class_{i}")


def lower(name: str) -> str:
    return f"{name}_lower"


def upper(name: str) -> str:
    return f"{name}_upper"


def train_name(name: str) -> str:
    """The train-probe twin of a held-out name: ``w2s/<family>/q`` -> ``w2s/train_<family>/q``."""
    _, family, quantity = name.split("/", 2)
    return f"{PREFIX}/train_{family}/{quantity}"


def declare(
    name: str,
    meaning: str,
    source: str = "",
    *,
    kind: str = "value",
    higher_is_better: bool | None = None,
    needs: Iterable[str] = (),
    may_be_undefined: bool = False,
    charts: Iterable[Chart] = (),
    on_train_probe: bool = False,
    interval: bool = False,
    tasks: Iterable[str] = CLASSIFICATION,
) -> str:
    """Register ``name`` (and its generated entries) and return it.

    ``tasks``: the probes it is logged for (default classification only; :data:`BOTH` for the
    quantities a regression probe logs too).

    ``interval=True`` also registers the Wilson 95% interval ends ``<name>_lower`` / ``<name>_upper``
    (drawn as the band of the quantity's ``role="interval"`` charts; constants with their value);
    ``on_train_probe=True`` also registers the train-probe twins ``w2s/train_<family>/<quantity>``
    (needing a train probe), drawn in the held-out quantity's charts as reference run ``train_probe``.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if name in QUANTITIES:
        raise ValueError(f"{name!r} is registered twice")
    tasks = frozenset(tasks)
    if not tasks or not tasks <= set(TASKS):
        raise ValueError(f"`tasks` must be a non-empty subset of {TASKS}, got {sorted(tasks)}")
    q = Quantity(name, meaning, source, kind, higher_is_better, frozenset(needs), may_be_undefined, tuple(charts), on_train_probe, interval, tasks=tasks)
    entries = [q]
    if interval:  # the ends join the charts where the value is drawn with its interval, and its constant row
        for end, word in ((lower(name), "lower"), (upper(name), "upper")):
            charts = tuple(replace(c, role=word) if c.role == "interval" else c for c in q.charts if c.role in ("interval", "constant"))
            entries.append(
                Quantity(end, f"{word} end of the Wilson 95% interval of `{q.quantity}`", "Wilson 1927", "interval", higher_is_better, q.needs, may_be_undefined, charts, declared=name, tasks=tasks)
            )
    if on_train_probe:
        entries += [_train_twin(e) for e in list(entries)]
    for e in entries:
        for chart in e.charts:
            if chart.role not in ROLES:
                raise ValueError(f"chart role must be one of {ROLES}, got {chart.role!r} for {e.name}")
            if chart.role != "constant" and e.per_class != ("{i}" in (chart.run or "")):
                raise ValueError(f"{e.name}: a per-class quantity is drawn in one reference run per class (`run='class_{{i}}'`), any other in the student's run or one reference run")
        QUANTITIES[e.name] = e
    return name


def _train_twin(q: Quantity) -> Quantity:
    """The train-probe twin: drawn in the held-out quantity's charts as reference run ``train_probe``."""
    charts = tuple(c if c.role == "constant" else replace(c, section=c.section or q.family, run="train_probe") for c in q.charts)
    return replace(
        q, name=train_name(q.name), meaning=f"{q.meaning} (train probe)", needs=q.needs | {Need.TRAIN_PROBE}, charts=charts, on_train_probe=False, interval=False, declared=q.declared or q.name
    )


def name(family: str, quantity: str) -> str:
    """The logged name ``w2s/<family>/<quantity>`` (``w2s/<quantity>`` for bookkeeping names)."""
    return f"{PREFIX}/{family}/{quantity}" if family else f"{PREFIX}/{quantity}"


@cache
def lookup(name: str) -> Quantity:
    """The registered quantity of a logged ``name`` (a per-class name finds its template).

    Raises ``KeyError`` for a name nobody registered: every logged name must be declared here.
    """
    q = QUANTITIES.get(name)
    if q is not None:
        return q
    for t in (t for t in QUANTITIES.values() if t.per_class):
        if re.match(t.pattern, name):
            return t
    raise KeyError(f"{name!r} is not a registered quantity: declare it in lightning_w2s/metrics/quantities.py")


def is_registered(name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def expected_names(provided: set[str], num_classes: int, task: str = "classification") -> set[str]:
    """Every name a ``task`` probe (:data:`TASKS`) with a configuration providing ``provided``
    (:class:`Need` values) can log; those with ``may_be_undefined`` are left out at a check where
    they are undefined."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    return {n for q in QUANTITIES.values() if q.needs <= provided and task in q.tasks for n in q.names(num_classes)}


def hint(name: str) -> str:
    """What to do so that ``name`` is logged (for error messages)."""
    try:
        q = lookup(name)
    except KeyError:
        return UNREGISTERED_HINT
    needs = [NEEDS[n][0] for n in sorted(q.needs)]
    text = " and ".join(needs) if needs else MONITOR_HINT
    return text if "regression" in q.tasks else f"{text}; {CLASSIFICATION_HINT}"
