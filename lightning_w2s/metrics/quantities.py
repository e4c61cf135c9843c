"""The quantities registry: every name the monitor logs, described once.

Each logged ``w2s/<family>/<quantity>`` name (or per-class template such as ``w2s/lang/alpha_{i}``)
is one :class:`Quantity`: what it means, its source and certainty, what kind of number it is
(``value``, ``bound``, ``interval``, ``estimate``, ``prediction``, ``count``), which direction is
better, what the configuration must provide for it to be logged (:class:`Need`), whether it may be
undefined at a given check (then it is left out quietly), and where the dashboard draws it
(:class:`Chart`). Everything else reads this module: the aggregator writes its values under these
constants and drops undefined ones by :attr:`Quantity.may_be_undefined`;
``W2SMonitor.expected_names()`` is :func:`expected_names` of what its probe provides; alerts and
stopping policies name their inputs with these constants; ``W2SEarlyStopping`` explains a missing
name with :func:`hint`; the TensorBoard layout is built from the charts; the README's metric table
is :func:`markdown_table` (a test keeps them equal).

Adding a logged quantity is one :func:`declare` call here plus the code that computes it.
Pure Python (no torch, no Lightning), so every floor of the package may import it.

>>> lookup("w2s/lang/alpha_3").name
'w2s/lang/alpha_{i}'
>>> sorted(expected_names(set(), num_classes=2))[:3]
['w2s/bounds/predicted_gain', 'w2s/calibration/ece_vs_teacher', 'w2s/calibration/mce_vs_teacher']
>>> train_name(DISAGREEMENT)
'w2s/train_misfit/disagreement'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Iterable

PREFIX = "w2s"
KINDS = ("value", "bound", "interval", "estimate", "prediction", "count")
ROLES = ("line", "value", "lower", "upper")


class Need:
    """What a configuration must provide for a quantity to be logged (``Quantity.needs``).

    >>> sorted(lookup("w2s/gold/coverage_accuracy").needs) == sorted([Need.GOLD, Need.UNCOVERED])
    True
    """

    GOLD = "gold"  #: gold labels on the probe
    UNCOVERED = "uncovered"  #: teacher abstentions on the probe (Lang et al.'s uncovered set T)
    TEACHER_FEATURES = "teacher_features"  #: the teacher's representation of the probe
    TRAIN_PROBE = "train_probe"  #: a train probe on the monitor
    NEIGHBOURS = "neighbours"  #: the k-NN neighbourhoods behind Lang et al.'s robustness (>= 3 probe points)
    PGR_SCORES = "pgr_scores"  #: teacher_score and ceiling_score with ceiling > teacher
    TEACHER_ACCURACY = "teacher_accuracy"  #: the teacher's gold accuracy: gold on the probe, or teacher_score


#: how to provide each need (the stopper's error messages), and its short README label
NEEDS = {
    Need.GOLD: ("give the probe gold labels (`W2SProbe(..., gold=...)`)", "gold"),
    Need.UNCOVERED: ("the teacher must abstain on some probe points (`teacher_labels=-1` or `covered=`)", "abstentions"),
    Need.TEACHER_FEATURES: (
        "give the probe the teacher's representation (`W2SProbe(..., teacher_features=...)` or `W2SProbe.from_teacher`)",
        "teacher features",
    ),
    Need.TRAIN_PROBE: (
        "give the monitor a train probe: `W2SMonitor(probe=..., train_probe=...)` built from a fixed slice of the "
        "training inputs with their teacher labels",
        "train probe",
    ),
    Need.NEIGHBOURS: (
        "enable the monitor's robustness family (Lang et al.'s gamma-hat needs neighbourhoods on the probe: "
        "`W2SMonitor(neighbours=k)` with k >= 1 and at least 3 probe points)",
        "neighbours",
    ),
    Need.PGR_SCORES: ("pass `W2SMonitor(teacher_score=..., ceiling_score=...)` with ceiling_score > teacher_score", "teacher_score < ceiling_score"),
    Need.TEACHER_ACCURACY: ("give the probe gold labels or pass `W2SMonitor(teacher_score=...)`", "gold or teacher_score"),
}
MONITOR_HINT = "attach `W2SMonitor(probe=...)` to the Trainer's callbacks"
UNREGISTERED_HINT = "log it from a callback or the LightningModule"


@dataclass(frozen=True)
class Chart:
    """Where a quantity is drawn: chart ``title`` in dashboard ``section`` (default: its family).

    ``role="line"``: a line of a Multiline chart (``also``: names drawn first in the same chart when
    they are logged, e.g. the held-out twin of a train-probe quantity). ``"value"``, ``"lower"``,
    ``"upper"``: one of the three tags of a Margin chart (a band); with one of them not logged, the
    others are drawn as lines.

    >>> [(c.title, c.role) for c in lookup(lower(DISAGREEMENT)).charts]
    [('disagreement [lower, upper]', 'lower')]
    """

    title: str
    section: str | None = None
    role: str = "line"
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Quantity:
    """One logged name (``{i}`` in it: one per class) and everything the package knows about it.

    >>> q = lookup("w2s/lang/covered_bound_1")
    >>> q.kind, q.higher_is_better, q.may_be_undefined, q.names(2)
    ('bound', False, True, ['w2s/lang/covered_bound_0', 'w2s/lang/covered_bound_1'])
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
#: dashboard sections (``Chart.section``) in order, with their titles
SECTIONS = {
    "misfit": "misfit", "train_misfit": "train vs held-out misfit", "gold": "gold", "bounds": "bounds",
    "calibration": "calibration", "representation": "representation", "lang": "lang", "robustness": "robustness",
    "prediction": "prediction", "train_calibration": "train_calibration", "train_prediction": "train_prediction",
}


def lower(name: str) -> str:
    return f"{name}_lower"


def upper(name: str) -> str:
    return f"{name}_upper"


def train_name(name: str) -> str:
    """The train-probe twin of a held-out name: ``w2s/<family>/q`` -> ``w2s/train_<family>/q``."""
    _, family, quantity = name.split("/", 2)
    return f"{PREFIX}/train_{family}/{quantity}"


def declare(
    name: str, meaning: str, source: str = "", *, kind: str = "value", higher_is_better: bool | None = None,
    needs: Iterable[str] = (), may_be_undefined: bool = False, charts: Iterable[Chart] = (), on_train_probe: bool = False,
    interval: bool = False,
) -> str:
    """Register ``name`` (and its generated entries) and return it.

    ``interval=True`` also registers the Wilson 95% interval ends ``<name>_lower`` / ``<name>_upper``
    and a ``<quantity> [lower, upper]`` band chart; ``on_train_probe=True`` also registers the
    train-probe twins ``w2s/train_<family>/<quantity>`` (needing a train probe), drawn against the
    held-out value.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if name in QUANTITIES:
        raise ValueError(f"{name!r} is registered twice")
    q = Quantity(name, meaning, source, kind, higher_is_better, frozenset(needs), may_be_undefined, tuple(charts),
                 on_train_probe, interval)
    entries = [q]
    if interval:
        band = f"{q.quantity} [lower, upper]"
        entries[0] = q = replace(q, charts=q.charts + (Chart(band, role="value"),))
        for end, word in ((lower(name), "lower"), (upper(name), "upper")):
            entries.append(Quantity(end, f"{word} end of the Wilson 95% interval of `{q.quantity}`", "Wilson 1927", "interval",
                                    higher_is_better, q.needs, may_be_undefined, (Chart(band, role=word),), declared=name))
    if on_train_probe:
        entries += [_train_twin(e) for e in list(entries)]
    for e in entries:
        for chart in e.charts:
            if chart.role not in ROLES:
                raise ValueError(f"chart role must be one of {ROLES}, got {chart.role!r} for {e.name}")
        QUANTITIES[e.name] = e
    return name


def _train_twin(q: Quantity) -> Quantity:
    held = q.name
    section = f"train_{q.family}"
    charts = tuple(
        Chart(f"{q.quantity}: held-out vs train", section, also=(held,)) if c.role == "line" and q.family == "misfit"
        else replace(c, section=section)
        for c in q.charts
    )
    return replace(q, name=train_name(held), meaning=f"{q.meaning} (train probe)", needs=q.needs | {Need.TRAIN_PROBE},
                   charts=charts, on_train_probe=False, interval=False, declared=q.declared or held)


def _name(family: str, quantity: str) -> str:
    return f"{PREFIX}/{family}/{quantity}" if family else f"{PREFIX}/{quantity}"


@lru_cache(maxsize=None)
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


def expected_names(provided: set[str], num_classes: int) -> set[str]:
    """Every name a configuration providing ``provided`` (:class:`Need` values) can log; those
    with ``may_be_undefined`` are left out at a check where they are undefined."""
    return {n for q in QUANTITIES.values() if q.needs <= provided for n in q.names(num_classes)}


def hint(name: str) -> str:
    """What to do so that ``name`` is logged (for error messages)."""
    try:
        q = lookup(name)
    except KeyError:
        return UNREGISTERED_HINT
    needs = [NEEDS[n][0] for n in sorted(q.needs)]
    return " and ".join(needs) if needs else MONITOR_HINT


# ================================================================================================
# the registry
# ================================================================================================
_KL = Chart("KL divergence, both directions")
KL_TEACHER_STUDENT = declare(
    _name("misfit", "kl_teacher_student"),
    "mean KL(p_w ‖ p_s) on covered probe points (soft-label loss minus teacher entropy)",
    "Charikar et al. 2024; Yao et al. 2025 — definition", higher_is_better=False, charts=[_KL], on_train_probe=True)
KL_STUDENT_TEACHER = declare(
    _name("misfit", "kl_student_teacher"), "mean KL(p_s ‖ p_w) (the KL-Pythagorean direction)",
    "Yao et al. 2025 — definition", higher_is_better=False, charts=[_KL], on_train_probe=True)
DISAGREEMENT = declare(
    _name("misfit", "disagreement"), "mean 1[argmax p_s ≠ argmax p_w] on covered probe points", "definition",
    higher_is_better=False, charts=[Chart("disagreement")], on_train_probe=True, interval=True)
SQ = declare(
    _name("misfit", "sq"), "mean ‖p_s − p_w‖², Charikar's misfit", "Charikar et al. 2024 — definition",
    higher_is_better=False, charts=[Chart("squared misfit |p_s - p_w|^2")], on_train_probe=True)
KAPPA = declare(
    _name("misfit", "kappa"), "Cohen's kappa between student and teacher labels (undefined when both use one class)",
    "Cohen 1960 — definition (torchmetrics confusion counts)", higher_is_better=None, may_be_undefined=True,
    charts=[Chart("Cohen's kappa (student vs teacher)")], on_train_probe=True)
#: the misfit quantities a stopping policy may read, by key
MISFIT = {"kl_teacher_student": KL_TEACHER_STUDENT, "kl_student_teacher": KL_STUDENT_TEACHER,
          "disagreement": DISAGREEMENT, "sq": SQ}

MAX_CLASS_SHARE = declare(
    _name("prediction", "max_class_share"), "largest share of the probe the student puts in one class (collapse detector)",
    "heuristic", charts=[Chart("max_class_share")], on_train_probe=True)
TEACHER_MAX_CLASS_SHARE = declare(
    _name("prediction", "teacher_max_class_share"), "the same for the teacher's labels on covered points", "heuristic",
    charts=[Chart("teacher_max_class_share")], on_train_probe=True)

_ECE, _MCE = Chart("ECE"), Chart("MCE")
ECE_VS_TEACHER = declare(
    _name("calibration", "ece_vs_teacher"), "top-label ECE of the student against the teacher's labels (15 bins)",
    "Guo et al. 2017; Yao et al. 2025", higher_is_better=False, charts=[_ECE], on_train_probe=True)
MCE_VS_TEACHER = declare(
    _name("calibration", "mce_vs_teacher"), "top-label MCE (largest bin gap) of the student against the teacher's labels",
    "Guo et al. 2017", higher_is_better=False, charts=[_MCE], on_train_probe=True)
ECE_VS_GOLD = declare(
    _name("calibration", "ece_vs_gold"), "the student's top-label ECE against gold", "Guo et al. 2017",
    higher_is_better=False, needs=[Need.GOLD], charts=[_ECE])
MCE_VS_GOLD = declare(
    _name("calibration", "mce_vs_gold"), "the student's top-label MCE against gold", "Guo et al. 2017",
    higher_is_better=False, needs=[Need.GOLD], charts=[_MCE])
TEACHER_ECE_VS_GOLD = declare(
    _name("calibration", "teacher_ece_vs_gold"), "the teacher's own ECE against gold, on covered points", "Guo et al. 2017",
    higher_is_better=False, needs=[Need.GOLD], charts=[_ECE])
TEACHER_MCE_VS_GOLD = declare(
    _name("calibration", "teacher_mce_vs_gold"), "the teacher's own MCE against gold, on covered points", "Guo et al. 2017",
    higher_is_better=False, needs=[Need.GOLD], charts=[_MCE])

_BAND = Chart("accuracy band: |acc(s) - acc(w)| <= disagreement", section="bounds")
_GOLD_ACC = Chart("gold accuracy: student vs teacher")
_GOLD = dict(needs=[Need.GOLD], may_be_undefined=True, interval=True)
ACCURACY = declare(
    _name("gold", "accuracy"), "student accuracy on gold probe points", "definition", higher_is_better=True,
    charts=[_GOLD_ACC, replace(_BAND, role="value")], **_GOLD)
TEACHER_ACCURACY = declare(
    _name("gold", "teacher_accuracy"), "teacher accuracy on covered gold points", "definition", higher_is_better=None,
    charts=[_GOLD_ACC], **_GOLD)
COVERED_ACCURACY = declare(
    _name("gold", "covered_accuracy"), "student accuracy on the same covered gold points (the band bounds it exactly)",
    "definition", higher_is_better=True, charts=[_GOLD_ACC], **_GOLD)
COVERED_DISAGREEMENT = declare(
    _name("gold", "covered_disagreement"), "student–teacher disagreement on the same covered gold points", "definition",
    higher_is_better=None, charts=[Chart("covered_disagreement")], **_GOLD)
_CORRECTION = Chart("pseudolabel correction vs imitation")
CORRECTION_RATE = declare(
    _name("gold", "correction_rate"), "P(student = gold ∣ teacher wrong) — pseudolabel correction", "Lang et al. 2024",
    higher_is_better=True, charts=[_CORRECTION], **_GOLD)
IMITATION_RATE = declare(
    _name("gold", "imitation_rate"), "P(student = teacher ∣ teacher wrong) — copying the teacher's mistakes",
    "Lang et al. 2024", higher_is_better=False, charts=[_CORRECTION], **_GOLD)
COVERAGE_ACCURACY = declare(
    _name("gold", "coverage_accuracy"), "P(student = gold ∣ teacher abstains) — coverage expansion", "Lang et al. 2024",
    higher_is_better=True, charts=[Chart("coverage accuracy")], **dict(_GOLD, needs=[Need.GOLD, Need.UNCOVERED]))
#: the gold rates of :func:`lightning_w2s.metrics.gold.gold_rates`, by key
GOLD_RATES = {"accuracy": ACCURACY, "teacher_accuracy": TEACHER_ACCURACY, "covered_accuracy": COVERED_ACCURACY,
              "covered_disagreement": COVERED_DISAGREEMENT, "correction_rate": CORRECTION_RATE,
              "imitation_rate": IMITATION_RATE, "coverage_accuracy": COVERAGE_ACCURACY}
PGR = declare(
    _name("gold", "pgr"), "(acc_s − teacher_score)/(ceiling_score − teacher_score), performance gap recovered",
    "Burns et al. 2023", higher_is_better=True, needs=[Need.GOLD, Need.PGR_SCORES], may_be_undefined=True,
    charts=[Chart("PGR")])
SQ_GAIN = declare(
    _name("gold", "sq_gain"), "measured err_sq(w) − err_sq(s) against one-hot gold on covered gold points",
    "Charikar et al. 2024 — definition", higher_is_better=True, needs=[Need.GOLD], may_be_undefined=True,
    charts=[Chart("gain: measured vs predicted")])
_SQ_ERR = Chart("squared error to gold: student vs teacher")
STUDENT_SQ_ERROR = declare(
    _name("gold", "student_sq_error"), "the student's mean ‖p_s − e_y‖² on covered gold points (Brier score)",
    "definition", higher_is_better=False, needs=[Need.GOLD], may_be_undefined=True, charts=[_SQ_ERR])
TEACHER_SQ_ERROR = declare(
    _name("gold", "teacher_sq_error"), "the teacher's mean ‖p_w − e_y‖² on covered gold points", "definition",
    higher_is_better=None, needs=[Need.GOLD], may_be_undefined=True, charts=[_SQ_ERR])

_BOUNDS = dict(kind="bound", needs=[Need.TEACHER_ACCURACY], may_be_undefined=True)
ACCURACY_LOWER = declare(
    _name("bounds", "accuracy_lower"),
    "teacher accuracy − disagreement: lower end of the 0/1 band on the student's accuracy. Exact on the gold probe "
    "(teacher accuracy and disagreement on the same covered gold points; bounds `gold/covered_accuracy`); with only "
    "`teacher_score=` it holds up to that score's sampling error (the log says which)",
    "derived bound", higher_is_better=True, charts=[replace(_BAND, role="lower")], **_BOUNDS)
ACCURACY_UPPER = declare(
    _name("bounds", "accuracy_upper"), "teacher accuracy + disagreement: upper end of the same band", "derived bound",
    higher_is_better=True, charts=[replace(_BAND, role="upper")], **_BOUNDS)
PREDICTED_GAIN = declare(
    _name("bounds", "predicted_gain"),
    "Charikar's predicted gain = `misfit/sq` (equality for an unregularised linear head on frozen features, "
    "realizable case)", "Charikar Thm 1 — a prediction", kind="prediction", higher_is_better=True,
    may_be_undefined=True, charts=[Chart("predicted_gain")])

_GAP = Chart("representation gap (Xue et al.)")
GAP_FRO = declare(
    _name("representation", "gap_fro"),
    "‖P_s(I − P_w)‖_F²/n: how much of what the teacher's kernel misses the student's kernel cannot recover "
    "(expected PredGap for isotropic labels); lower = better W2S expected",
    "Xue et al. 2025 — our construction (below)", kind="estimate", higher_is_better=False,
    needs=[Need.TEACHER_FEATURES], charts=[_GAP])
GAP_OP = declare(
    _name("representation", "gap_op"), "‖P_s(I − P_w)‖₂ (worst case)", "Xue et al. 2025 — our construction",
    kind="estimate", higher_is_better=False, needs=[Need.TEACHER_FEATURES], charts=[_GAP])
CKA = declare(
    _name("representation", "cka"), "linear CKA between student and teacher features", "Kornblith et al. 2019",
    higher_is_better=None, needs=[Need.TEACHER_FEATURES], charts=[Chart("linear CKA")])
EFFECTIVE_RANK = declare(
    _name("representation", "effective_rank"),
    "exp(entropy of the student covariance's normalised eigenvalues): collapse detector", "heuristic",
    higher_is_better=True, charts=[Chart("effective rank")])
PRED_GAP_GOLD = declare(
    _name("representation", "pred_gap_gold"), "‖P_s(I − P_w)y‖²/n with gold y", "Xue et al. 2025",
    higher_is_better=False, needs=[Need.TEACHER_FEATURES, Need.GOLD], charts=[Chart("pred_gap_gold")])

_ROBUST = dict(higher_is_better=False, may_be_undefined=True)
INCONSISTENCY = declare(
    _name("robustness", "inconsistency"),
    "γ̂: mean over probe points of the fraction of their k nearest neighbours (frozen embedding) the student labels "
    "differently — label-free", "Lang et al. 2024", needs=[Need.NEIGHBOURS], charts=[Chart("inconsistency")], **_ROBUST)
INCONSISTENCY_COVERED = declare(
    _name("robustness", "inconsistency_covered"), "γ̂ on covered probe points", "Lang et al. 2024",
    needs=[Need.NEIGHBOURS, Need.GOLD], charts=[Chart("inconsistency_covered")], **_ROBUST)
INCONSISTENCY_UNCOVERED = declare(
    _name("robustness", "inconsistency_uncovered"), "γ̂ on the teacher's abstentions", "Lang et al. 2024",
    needs=[Need.NEIGHBOURS, Need.GOLD, Need.UNCOVERED], charts=[Chart("inconsistency_uncovered")], **_ROBUST)
P_NONROBUST_BOUND = declare(
    _name("robustness", "p_nonrobust_bound"), "min(1, γ̂/η) ≥ P(R̄_η), the share of non-robust points",
    "Lang et al. Lemma B.1", kind="bound", needs=[Need.NEIGHBOURS], charts=[Chart("p_nonrobust_bound")], **_ROBUST)

_LANG = dict(needs=[Need.NEIGHBOURS, Need.GOLD], may_be_undefined=True)
_LANG_T = dict(needs=[Need.NEIGHBOURS, Need.GOLD, Need.UNCOVERED], may_be_undefined=True)
ALPHA = declare(
    _name("lang", "alpha_{i}"), "α_i = P(teacher ≠ gold ∣ covered, gold class i)", "Lang et al. 2024",
    higher_is_better=None, charts=[Chart("alpha per class")], **_LANG)
EXPANSION_GOOD_TO_BAD = declare(
    _name("lang", "expansion_good_to_bad_{i}"),
    "expansion estimate ĉ from S_i^good into S_i^bad over the student's label sets at past checks (neighbour oracle)",
    "Lang et al. §5 — live adaptation", kind="estimate", higher_is_better=True,
    charts=[Chart("expansion_good_to_bad per class")], **_LANG)
EXPANSION_UNCOVERED_TO_GOOD = declare(
    _name("lang", "expansion_uncovered_to_good_{i}"), "expansion estimate ĉ from T_i into S_i^good (same construction)",
    "Lang et al. §5 — live adaptation", kind="estimate", higher_is_better=True,
    charts=[Chart("expansion_uncovered_to_good per class")], **_LANG_T)
COVERED_BOUND_CLASS = declare(
    _name("lang", "covered_bound_{i}"), "Thm B.1 bound on err(student, gold ∣ S_i)", "Lang et al. Thm B.1",
    kind="bound", higher_is_better=False, charts=[Chart("covered_bound per class")], **_LANG)
COVERED_ERROR_CLASS = declare(
    _name("lang", "covered_error_{i}"), "the measured err(student, gold ∣ S_i) beside it", "definition",
    higher_is_better=False, charts=[Chart("covered_error per class")], **_LANG)
UNCOVERED_BOUND_CLASS = declare(
    _name("lang", "uncovered_bound_{i}"), "min of the Thm B.2 / B.3 bounds on err(student, gold ∣ T_i)",
    "Lang et al. Thm B.2, B.3", kind="bound", higher_is_better=False, charts=[Chart("uncovered_bound per class")], **_LANG_T)
UNCOVERED_ERROR_CLASS = declare(
    _name("lang", "uncovered_error_{i}"), "the measured err(student, gold ∣ T_i) beside it", "definition",
    higher_is_better=False, charts=[Chart("uncovered_error per class")], **_LANG_T)
COVERED_BOUND = declare(
    _name("lang", "covered_bound"), "class-mass-weighted mean of the Thm B.1 bounds: a bound on err(student, gold ∣ S)",
    "Lang et al. Thm B.1; pooling derived", kind="bound", higher_is_better=False, charts=[Chart("covered_bound")], **_LANG)
COVERED_ERROR = declare(
    _name("lang", "covered_error"), "the measured err(student, gold ∣ S) beside it", "definition",
    higher_is_better=False, charts=[Chart("covered_error")], **_LANG)
UNCOVERED_BOUND = declare(
    _name("lang", "uncovered_bound"), "the same pooled over the uncovered classes: a bound on err(student, gold ∣ T)",
    "Lang et al. Thm B.2, B.3; pooling derived", kind="bound", higher_is_better=False,
    charts=[Chart("uncovered_bound")], **_LANG_T)
UNCOVERED_ERROR = declare(
    _name("lang", "uncovered_error"), "the measured err(student, gold ∣ T) beside it", "definition",
    higher_is_better=False, charts=[Chart("uncovered_error")], **_LANG_T)

SKIPPED = declare(
    _name("", "skipped"), "number of values and checks skipped for numerical faults or failures so far", "—",
    kind="count", higher_is_better=False)
CHECK = declare(
    _name("", "check"), "number of checks the monitor has made so far, failed ones included (W2SEarlyStopping "
    "reads it to take each check's values once)", "—", kind="count")


# ================================================================================================
# the README table
# ================================================================================================
def _cell(q: Quantity) -> str:
    name = q.name.split("/", 1)[1].replace("{i}", "<i>")
    return f"`{name}`" + (" (+`_lower`/`_upper`)" if q.interval else "")


def markdown_table() -> str:
    """The README's metric table, one row per declared quantity (interval ends and train-probe twins
    are folded into the rows they come from)."""
    better = {True: "↑", False: "↓", None: "—"}
    rows = ["| name | meaning | kind | better | needs | source / status |", "|---|---|---|---|---|---|"]
    twins: dict[str, list[str]] = {}
    for q in QUANTITIES.values():
        if q.declared is not None:
            continue
        needs = ", ".join(NEEDS[n][1] for n in sorted(q.needs)) or "—"
        rows.append(f"| {_cell(q)} | {q.meaning} | {q.kind} | {better[q.higher_is_better]} | {needs} | {q.source} |")
        if q.on_train_probe:
            twins.setdefault(f"train_{q.family}", []).append(q.quantity)
    if twins:
        names = ", ".join(f"`{family}/{{{', '.join(qs)}}}`" for family, qs in twins.items())
        rows.append(f"| {names} | the same on the train probe | as held-out | as held-out | train probe | — |")
    return "\n".join(rows)
