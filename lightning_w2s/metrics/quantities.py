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
name with :func:`hint`; the TensorBoard layout is built from the charts; docs/metrics.md's table
is :func:`markdown_table` (a test keeps them equal).

Adding a logged quantity is one :func:`declare` call here plus the code that computes it (the
machinery lives in :mod:`lightning_w2s.metrics._registry`). Pure Python (no torch, no Lightning),
so every floor of the package may import it.

>>> lookup("w2s/lang/alpha_3").name
'w2s/lang/alpha_{i}'
>>> sorted(expected_names(set(), num_classes=2))[:3]
['w2s/bounds/max_gain', 'w2s/bounds/predicted_gain', 'w2s/calibration/ece_vs_teacher']
>>> train_name(DISAGREEMENT)
'w2s/train_misfit/disagreement'
"""

from __future__ import annotations

from dataclasses import replace

from lightning_w2s.metrics._registry import (
    BOTH,
    CLASSIFICATION,
    CONSTANT,
    KINDS,
    MONITOR_HINT,
    NEEDS,
    PREFIX,
    QUANTITIES,
    REFERENCE_RUNS,
    SECTIONS,
    TASKS,
    UNREGISTERED_HINT,
    Chart,
    Need,
    Quantity,
    declare,
    expected_names,
    hint,
    is_registered,
    lookup,
    lower,
    train_name,
    upper,
)
from lightning_w2s.metrics._registry import name as _name
from lightning_w2s.metrics._registry_views import ChartSpec, charts, constants, instances, markdown_table, reference_values

#: the registry's API, read through this module (the entries below are its other public names)
__all__ = ["BOTH", "CLASSIFICATION", "CONSTANT", "KINDS", "MONITOR_HINT", "NEEDS", "PREFIX", "QUANTITIES", "REFERENCE_RUNS", "SECTIONS", "TASKS",
           "UNREGISTERED_HINT", "Chart", "ChartSpec", "Need", "Quantity", "charts", "constants", "declare", "expected_names",
           "hint", "instances", "is_registered", "lookup", "lower", "markdown_table", "reference_values", "train_name", "upper"]

# Charts (dashboard, lightning_w2s.dashboard.tensorboard): one tag per chart; the teacher, the ceiling, the train probe,
# Charikar's prediction and each class are reference runs beside the student's (Chart.run); constants of the
# probe are text (CONSTANT). The headline section answers "does the student beat its teacher?".
KL_TEACHER_STUDENT = declare(
    _name("misfit", "kl_teacher_student"),
    "mean KL(p_w ‖ p_s) on covered probe points (soft-label loss minus teacher entropy)",
    "Charikar et al. 2024; Yao et al. 2025 — definition", higher_is_better=False,
    charts=[Chart("KL(teacher ‖ student) on covered probe points")], on_train_probe=True)
KL_STUDENT_TEACHER = declare(
    _name("misfit", "kl_student_teacher"), "mean KL(p_s ‖ p_w) (the KL-Pythagorean direction)",
    "Yao et al. 2025 — definition", higher_is_better=False, charts=[Chart("KL(student ‖ teacher)")], on_train_probe=True)
DISAGREEMENT = declare(
    _name("misfit", "disagreement"), "mean 1[argmax p_s ≠ argmax p_w] on covered probe points", "definition",
    higher_is_better=False, on_train_probe=True, interval=True,
    charts=[Chart("student–teacher disagreement on held-out probe points (Wilson 95%)", "headline", role="interval", order=3)])
SQ = declare(
    _name("misfit", "sq"),
    "Charikar's misfit: mean ‖p_s − p_w‖² over class probabilities on covered probe points (classification), or "
    "mean ‖f_s − f_w‖² over real outputs, summed over outputs (regression)", "Charikar et al. 2024 — definition",
    higher_is_better=False, charts=[Chart("squared misfit ‖f_s − f_w‖² (Charikar)")], on_train_probe=True, tasks=BOTH)
KAPPA = declare(
    _name("misfit", "kappa"), "Cohen's kappa between student and teacher labels (undefined when both use one class)",
    "Cohen 1960 — definition (torchmetrics confusion counts)", higher_is_better=None, may_be_undefined=True,
    charts=[Chart("Cohen's kappa, student vs teacher labels")], on_train_probe=True)
TEACHER_LABEL_CE = declare(
    _name("misfit", "teacher_label_ce"),
    "mean −log max(p_s(y_w), eps) on covered probe points, y_w = the teacher's label (argmax of its probabilities): "
    "the student's training objective on held-out teacher labels, a noisy-validation loss (= `kl_teacher_student` "
    "for a teacher with hard labels). W2SEarlyStopping's default signal",
    "standard early stopping on noisy validation labels (Toner & Storkey 2024) — definition; as a stopping signal a "
    "heuristic", higher_is_better=False,
    charts=[Chart("cross-entropy on the teacher's labels, held-out probe (W2SEarlyStopping's default signal)")],
    on_train_probe=True)
#: the misfit quantities a stopping policy may read, by key
MISFIT = {"kl_teacher_student": KL_TEACHER_STUDENT, "kl_student_teacher": KL_STUDENT_TEACHER,
          "disagreement": DISAGREEMENT, "sq": SQ, "teacher_label_ce": TEACHER_LABEL_CE}

MAX_CLASS_SHARE = declare(
    _name("prediction", "max_class_share"), "largest share of the probe the student puts in one class (collapse detector)",
    "heuristic", charts=[Chart("max class share (collapse detector)")], on_train_probe=True)
TEACHER_MAX_CLASS_SHARE = declare(
    _name("prediction", "teacher_max_class_share"), "the same for the teacher's labels on covered points", "heuristic",
    charts=[CONSTANT], on_train_probe=True)

ECE_VS_TEACHER = declare(
    _name("calibration", "ece_vs_teacher"), "top-label ECE of the student against the teacher's labels (15 bins)",
    "Guo et al. 2017; Yao et al. 2025", higher_is_better=False, charts=[Chart("ECE vs the teacher's labels")],
    on_train_probe=True)
MCE_VS_TEACHER = declare(
    _name("calibration", "mce_vs_teacher"), "top-label MCE (largest bin gap) of the student against the teacher's labels",
    "Guo et al. 2017", higher_is_better=False, charts=[Chart("MCE vs the teacher's labels")], on_train_probe=True)
# against gold: the student (all gold points; a chart each) and the teacher (covered gold points; constants), ECE and MCE
ECE_VS_GOLD, MCE_VS_GOLD, TEACHER_ECE_VS_GOLD, TEACHER_MCE_VS_GOLD = (
    declare(_name("calibration", f"{who}{norm}_vs_gold"), f"{whose} top-label {norm.upper()} against gold", "Guo et al. 2017",
            higher_is_better=False, needs=[Need.GOLD], charts=[CONSTANT if who else Chart(f"{norm.upper()} vs gold")])
    for who, whose in (("", "the student's"), ("teacher_", "the teacher's own (covered points)"))
    for norm in ("ece", "mce")
)

# the headline's bands: the student's accuracy on covered gold points within teacher ± disagreement, with the
# teacher's accuracy (the band's centre) as reference run `teacher`; the student's accuracy on all gold points
# within the band that lets the teacher's abstentions be anywhere in [0, 1]; without gold, that band alone
_BAND = Chart("accuracy on covered gold points: student vs teacher, in the 0/1 band teacher ± disagreement", "headline",
              order=2)
_ALL_BAND = Chart("accuracy on all gold points, in the 0/1 band with the teacher's abstentions anywhere in [0, 1]",
                  "headline", order=4, band_title="0/1 band on the student's accuracy, label-free: teacher_score, held-out "
                  "disagreement and coverage (the line is its lower end)")
_GOLD = dict(needs=[Need.GOLD], may_be_undefined=True, interval=True)
ACCURACY = declare(
    _name("gold", "accuracy"), "student accuracy on gold probe points", "definition", higher_is_better=True,
    charts=[replace(_ALL_BAND, role="value")], **_GOLD)
TEACHER_ACCURACY = declare(
    _name("gold", "teacher_accuracy"), "teacher accuracy on covered gold points", "definition", higher_is_better=None,
    charts=[replace(_BAND, role="value", run="teacher"), CONSTANT], **_GOLD)
COVERED_ACCURACY = declare(
    _name("gold", "covered_accuracy"), "student accuracy on the same covered gold points (the band bounds it exactly)",
    "definition", higher_is_better=True, charts=[replace(_BAND, role="value")], **_GOLD)
COVERED_DISAGREEMENT = declare(
    _name("gold", "covered_disagreement"), "student–teacher disagreement on the same covered gold points", "definition",
    higher_is_better=None, charts=[Chart("disagreement on covered gold points (Wilson 95%)", role="interval")], **_GOLD)
CORRECTION_RATE = declare(
    _name("gold", "correction_rate"), "P(student = gold ∣ teacher wrong) — pseudolabel correction", "Lang et al. 2024",
    higher_is_better=True, charts=[Chart("correction: P(student = gold | teacher wrong) (Wilson 95%)", role="interval")],
    **_GOLD)
IMITATION_RATE = declare(
    _name("gold", "imitation_rate"), "P(student = teacher ∣ teacher wrong) — copying the teacher's mistakes",
    "Lang et al. 2024", higher_is_better=False,
    charts=[Chart("imitation: P(student = teacher | teacher wrong) (Wilson 95%)", role="interval")], **_GOLD)
COVERAGE_ACCURACY = declare(
    _name("gold", "coverage_accuracy"), "P(student = gold ∣ teacher abstains) — coverage expansion", "Lang et al. 2024",
    higher_is_better=True, charts=[Chart("coverage: P(student = gold | teacher abstains) (Wilson 95%)", role="interval")],
    **dict(_GOLD, needs=[Need.GOLD, Need.UNCOVERED]))
#: the gold rates of :func:`lightning_w2s.metrics.gold.gold_rates`, by key
GOLD_RATES = {"accuracy": ACCURACY, "teacher_accuracy": TEACHER_ACCURACY, "covered_accuracy": COVERED_ACCURACY,
              "covered_disagreement": COVERED_DISAGREEMENT, "correction_rate": CORRECTION_RATE,
              "imitation_rate": IMITATION_RATE, "coverage_accuracy": COVERAGE_ACCURACY}
# smooth calibration error (Błasiok et al. 2023), exact, with the student inside two bands on the same points:
# (A) around the teacher's smCE, width 2·(class-averaged mean |p_s − p_w|); (B) around the student's smCE against
# the teacher's labels, width the class-averaged label gap (2/k)·P(teacher ≠ gold) (proofs: metrics/smooth_calibration.py)
_SMCE = "smCE = max over 1-Lipschitz w: [0, 1] → [−1, 1] of mean w(p_c)(1[y = c] − p_c), per class c, class-averaged"
_CAL_BAND = Chart("student's calibration inside its band: smCE vs gold on covered gold points, teacher ± 2·mean|p_s − p_w|",
                  "headline", order=2)
_LABEL_BAND = Chart("student's smCE vs gold inside the label band: smCE vs the teacher's labels ± the teacher's label gap "
                    "(covered gold points)", "calibration")
SMCE_VS_GOLD = declare(
    _name("calibration", "smce_vs_gold"), f"the student's smooth calibration error against gold on covered gold points ({_SMCE})",
    "Błasiok, Gopalan, Hu, Nakkiran 2023 — definition (exact LP value)", higher_is_better=False, needs=[Need.GOLD],
    may_be_undefined=True, charts=[replace(_CAL_BAND, role="value"), replace(_LABEL_BAND, role="value")])
TEACHER_SMCE_VS_GOLD = declare(
    _name("calibration", "teacher_smce_vs_gold"), "the teacher's smooth calibration error against gold on the same points",
    "Błasiok et al. 2023 — definition", higher_is_better=None, needs=[Need.GOLD], may_be_undefined=True,
    charts=[replace(_CAL_BAND, role="value", run="teacher"), CONSTANT])
SMCE_VS_TEACHER = declare(
    _name("calibration", "smce_vs_teacher"),
    "the student's smooth calibration error against the teacher's labels (argmax) on covered probe points — label-free",
    "Błasiok et al. 2023 — definition", higher_is_better=False, may_be_undefined=True,
    charts=[Chart("smooth calibration error vs the teacher's labels (label-free)")])

PGR = declare(
    _name("gold", "pgr"), "(acc_s − teacher_score)/(ceiling_score − teacher_score), performance gap recovered",
    "Burns et al. 2023", higher_is_better=True, needs=[Need.GOLD, Need.PGR_SCORES], may_be_undefined=True,
    charts=[_PGR := Chart("PGR: student vs teacher (0) and ceiling (1)", "headline", order=1),
            replace(_PGR, run="teacher", value=0.0), replace(_PGR, run="ceiling", value=1.0)])
GOLD_COUNT = declare(
    _name("gold", "count"), "number of probe points with a gold label (the n of every gold rate; the budget the "
    "gold-aware W2SEarlyStopping chooses its rule by)", "definition", kind="count", higher_is_better=None,
    needs=[Need.GOLD], charts=[CONSTANT])
# gold estimates with intervals (lightning_w2s.metrics.gold_intervals): PGR's interval is the Wilson interval of
# `gold/accuracy` mapped through PGR's affine map; the PPI++ estimate borrows strength from the probe points without gold
PGR_LOWER, PGR_UPPER = (
    declare(_name("gold", f"pgr_{word}"), f"{word} end of PGR's 95% interval: the {word} end of `gold/accuracy`'s Wilson "
            "interval mapped by (· − teacher_score)/(ceiling_score − teacher_score) (the scores taken as known)",
            "Burns et al. 2023; Wilson 1927 — derived: exact transformation", kind="interval", higher_is_better=True,
            needs=[Need.GOLD, Need.PGR_SCORES], may_be_undefined=True)
    for word in ("lower", "upper"))
_PPI = Chart("student accuracy on gold: PPI++ estimate with agreement-with-teacher as predictor (95%)", "gold", role="interval")
ACCURACY_PPI = declare(
    _name("gold", "accuracy_ppi"),
    "prediction-powered (PPI++, power-tuned λ) estimate of the student's gold accuracy: gold points as the labelled "
    "sample, probe points without gold as the unlabelled one, agreement with the teacher's label as the predictor; "
    "an estimate of the same accuracy as `gold/accuracy` (whose interval is Wilson's, gold points only); its interval "
    "is logged from 300 gold points on (fewer: it covered too rarely in tests)",
    "Angelopoulos et al. 2023 (PPI); Angelopoulos, Duchi, Zrnic 2023 (PPI++) — asymptotic", kind="estimate",
    higher_is_better=True, needs=[Need.GOLD], may_be_undefined=True, charts=[_PPI])
ACCURACY_PPI_LOWER, ACCURACY_PPI_UPPER = (
    declare(_name("gold", f"accuracy_ppi_{word}"), f"{word} end of the 95% interval of `gold/accuracy_ppi`: Wilson's at PPI's effective sample "
            "size θ̂(1 − θ̂)/se² (from 300 gold points)", "Angelopoulos, Duchi, Zrnic 2023; Korn & Graubard 1998 — heuristic", kind="interval", higher_is_better=True, needs=[Need.GOLD],
            may_be_undefined=True, charts=[replace(_PPI, role=word)])
    for word in ("lower", "upper"))
_GAIN = Chart("Charikar's gain err_sq(teacher) − err_sq(student): measured vs predicted", "gold")
SQ_GAIN = declare(
    _name("gold", "sq_gain"),
    "measured gain err_sq(w) − err_sq(s) on gold points: against one-hot gold on covered gold points (classification), "
    "against the real gold where known (regression); compare with `bounds/predicted_gain`",
    "Charikar et al. 2024 — definition", higher_is_better=True, needs=[Need.GOLD], may_be_undefined=True, charts=[_GAIN],
    tasks=BOTH)
STUDENT_SQ_ERROR = declare(
    _name("gold", "student_sq_error"),
    "the student's mean ‖p_s − e_y‖² on covered gold points (Brier score; classification) or mean ‖f_s − y‖² on gold "
    "points (regression)", "definition", higher_is_better=False, needs=[Need.GOLD], may_be_undefined=True,
    charts=[Chart("student's squared error to gold (Brier on covered gold points for classes)")], tasks=BOTH)
TEACHER_SQ_ERROR = declare(
    _name("gold", "teacher_sq_error"), "the teacher's mean ‖p_w − e_y‖² on covered gold points (classification) or "
    "mean ‖f_w − y‖² on gold points (regression)", "definition",
    higher_is_better=None, needs=[Need.GOLD], may_be_undefined=True, charts=[CONSTANT], tasks=BOTH)

_CE_GAIN = Chart("gold cross-entropy gain CE(teacher) − CE(student) on covered gold points: measured vs Yao et al.'s "
                 "prediction KL(student ‖ teacher)", "gold")
CE_GAIN = declare(
    _name("gold", "ce_gain"),
    "measured gain in gold cross-entropy, mean −log p_w(y) − mean −log p_s(y) (probabilities clamped at eps), on covered "
    "gold points; compare with `bounds/predicted_ce_gain`, drawn beside it",
    "Yao et al. 2025 — definition", higher_is_better=True, needs=[Need.GOLD], may_be_undefined=True, charts=[_CE_GAIN])

_BOUNDS = dict(kind="bound", needs=[Need.TEACHER_ACCURACY], may_be_undefined=True)
_BAND_INPUTS = (
    "With gold: a = `gold/teacher_accuracy`, d = `gold/covered_disagreement`, π = the share of gold points the "
    "teacher covers (all on the same gold points: exact); with only `teacher_score=`: a = teacher_score (the "
    "teacher's accuracy where it labels), d = `misfit/disagreement`, π = the share of the probe the teacher covers "
    "(holds up to the score's sampling error; the log says which)"
)
ACCURACY_LOWER = declare(
    _name("bounds", "accuracy_lower"),
    "π·ℓ, ℓ = |a − d| with two classes, max(0, a − d) with more: lower end of the 0/1 band on the student's accuracy on all gold points (`gold/accuracy`), "
    "the teacher's abstentions counted as all wrong. " + _BAND_INPUTS,
    "derived bound", higher_is_better=True, charts=[replace(_ALL_BAND, role="lower")], **_BOUNDS)
ACCURACY_UPPER = declare(
    _name("bounds", "accuracy_upper"),
    "π·min(a + d, 2 − a − d) + (1 − π): upper end of the same band, the teacher's abstentions counted as all right "
    "(disagreement says nothing about them)", "derived bound", higher_is_better=True,
    charts=[replace(_ALL_BAND, role="upper")], **_BOUNDS)
COVERED_ACCURACY_LOWER = declare(
    _name("bounds", "covered_accuracy_lower"),
    "ℓ = |a − d| (two classes) or max(0, a − d): lower end of the 0/1 band on the student's accuracy where the teacher labels "
    "(`gold/covered_accuracy`; a, d on the same covered gold points: exact)", "derived bound", higher_is_better=True,
    charts=[replace(_BAND, role="lower", run=r) for r in (None, "teacher")], **dict(_BOUNDS, needs=[Need.GOLD]))
COVERED_ACCURACY_UPPER = declare(
    _name("bounds", "covered_accuracy_upper"), "min(a + d, 2 − a − d): upper end of the same covered band",
    "derived bound", higher_is_better=True, charts=[replace(_BAND, role="upper", run=r) for r in (None, "teacher")],
    **dict(_BOUNDS, needs=[Need.GOLD]))
PREDICTED_CE_GAIN = declare(
    _name("bounds", "predicted_ce_gain"),
    "Yao et al.'s predicted gain in gold cross-entropy: mean KL(p_s ‖ p_w) on the covered gold points of `gold/ce_gain` "
    "(`misfit/kl_student_teacher` on those points). CE(w) − CE(s) ≥ KL(p_s ‖ p_w) is a guarantee only when the student "
    "is the reverse-KL projection of the teacher onto a convex class that contains the target (the KL-Pythagorean "
    "inequality); for a trained network (not the projection, a class that is not convex) it is a prediction",
    "Yao et al. 2025 — a prediction (a theorem only for the reverse-KL projection onto a convex class)",
    kind="prediction", higher_is_better=True, needs=[Need.GOLD], may_be_undefined=True,
    charts=[replace(_CE_GAIN, run="predicted_gain")])
_CAL_BOUND = dict(kind="bound", needs=[Need.GOLD], may_be_undefined=True, higher_is_better=False)
CALIBRATION_LOWER = declare(
    _name("bounds", "calibration_lower"),
    "max(0, smCE(p_w) − 2m), m = class-averaged mean |p_s − p_w|: lower end of band (A) on `calibration/smce_vs_gold` "
    "(both models on the same covered gold points: exact)",
    "derived bound: |smCE(f) − smCE(g)| ≤ 2·mean|f − g| (docs/theory.md §2.3)",
    charts=[replace(_CAL_BAND, role="lower", run=r) for r in (None, "teacher")], **_CAL_BOUND)
CALIBRATION_UPPER = declare(
    _name("bounds", "calibration_upper"), "smCE(p_w) + 2m: upper end of band (A)", "derived bound (docs/theory.md §2.3)",
    charts=[replace(_CAL_BAND, role="upper", run=r) for r in (None, "teacher")], **_CAL_BOUND)
CALIBRATION_VS_TEACHER_LOWER = declare(
    _name("bounds", "calibration_vs_teacher_lower"),
    "max(0, smCE_t(p_s) − (2/k)·P(t ≠ y)): lower end of band (B) on `calibration/smce_vs_gold`, smCE_t = the student's "
    "smCE against the teacher's labels t, all on the same covered gold points (exact; binary: width = the teacher's "
    "error rate)", "derived bound: |smCE_y(f) − smCE_t(f)| ≤ mean|1[y = c] − 1[t = c]| (docs/theory.md §2.3)",
    charts=[replace(_LABEL_BAND, role="lower")], **_CAL_BOUND)
CALIBRATION_VS_TEACHER_UPPER = declare(
    _name("bounds", "calibration_vs_teacher_upper"), "smCE_t(p_s) + (2/k)·P(t ≠ y): upper end of band (B)",
    "derived bound (docs/theory.md §2.3)", charts=[replace(_LABEL_BAND, role="upper")], **_CAL_BOUND)
_CAL_ESTIMATE = Chart("label-free band on the student's smCE vs gold (covered probe points): smce_vs_teacher ± (2/k)(1 − a)",
                      "calibration", band_title="label band (B) from `calibration/smce_vs_teacher` and the teacher's accuracy a (the line "
                      "is its lower end)")
_ESTIMATE = dict(kind="estimate", needs=[Need.TEACHER_ACCURACY], may_be_undefined=True, higher_is_better=False)
CALIBRATION_ESTIMATE_LOWER = declare(
    _name("bounds", "calibration_estimate_lower"),
    "max(0, `calibration/smce_vs_teacher` − (2/k)(1 − a)), a = the teacher's accuracy where it labels (`teacher_score=`, "
    "or `gold/teacher_accuracy` with gold): band (B) for the student's smCE against gold on all covered probe points. "
    "An estimate: a is not measured on those points, so it holds up to a's sampling error",
    "band (B), derived (docs/theory.md §2.3), at a plug-in teacher accuracy — an estimate",
    charts=[replace(_CAL_ESTIMATE, role="lower")], **_ESTIMATE)
CALIBRATION_ESTIMATE_UPPER = declare(
    _name("bounds", "calibration_estimate_upper"), "`calibration/smce_vs_teacher` + (2/k)(1 − a): its upper end (an estimate)",
    "band (B) at a plug-in teacher accuracy — an estimate", charts=[replace(_CAL_ESTIMATE, role="upper")], **_ESTIMATE)
MAX_GAIN = declare(
    _name("bounds", "max_gain"),
    "π·d + (1 − π): the most the student's accuracy can still exceed the teacher's (label-free; d = "
    "`misfit/disagreement`, π = the share of the probe the teacher covers, its abstentions counted as all right). "
    "The `gain_exhausted` rule fires when it is below `min_gain`",
    "derived bound", kind="bound", higher_is_better=None, may_be_undefined=True,
    charts=[Chart("largest accuracy gain over the teacher still possible (label-free 0/1 band)", "misfit")])
PREDICTED_GAIN = declare(
    _name("bounds", "predicted_gain"),
    "Charikar's predicted gain err_sq(w) − err_sq(s) = `misfit/sq`. Thm 1: err(s) ≤ err(w) − misfit when the strong "
    "class is convex and contains the target and the student is the projection of the teacher onto it; equality for a "
    "least-squares head on frozen features (a linear subspace) fitted to the teacher on the probe's own points. A "
    "prediction, not a guarantee, outside those premises (a cross-entropy or MLP student, a fit on other points, a "
    "target outside the class)", "Charikar Thm 1 — a prediction", kind="prediction", higher_is_better=True,
    may_be_undefined=True, charts=[replace(_GAIN, run="predicted_gain")], tasks=BOTH)

GAP_FRO = declare(
    _name("representation", "gap_fro"),
    "‖P_s(I − P_w)‖_F²/n: how much of what the teacher's kernel misses the student's kernel cannot recover "
    "(expected PredGap for isotropic labels); lower = better W2S expected",
    "Xue et al. 2025 — our construction (below)", kind="estimate", higher_is_better=False,
    needs=[Need.TEACHER_FEATURES], charts=[Chart("representation gap ‖P_s(I − P_w)‖_F²/n (lower = better W2S expected)")],
    tasks=BOTH)
GAP_OP = declare(
    _name("representation", "gap_op"), "‖P_s(I − P_w)‖₂ (worst case)", "Xue et al. 2025 — our construction",
    kind="estimate", higher_is_better=False, needs=[Need.TEACHER_FEATURES],
    charts=[Chart("representation gap, worst case ‖P_s(I − P_w)‖₂")], tasks=BOTH)
CKA = declare(
    _name("representation", "cka"),
    "linear CKA ‖C_sw‖_F²/(‖C_s‖_F‖C_w‖_F) of the captured student and teacher features themselves (never of their "
    "top principal components)", "Kornblith et al. 2019",
    higher_is_better=None, needs=[Need.TEACHER_FEATURES], charts=[Chart("linear CKA, student vs teacher features")],
    tasks=BOTH)
EFFECTIVE_RANK = declare(
    _name("representation", "effective_rank"),
    "participation ratio tr(C)²/‖C‖_F² of the student covariance (exp of the order-2 Rényi entropy of its normalised "
    "eigenvalues; 1 = one direction, up to the rank): collapse detector", "heuristic (participation ratio; Rényi 1961)",
    higher_is_better=True, charts=[Chart("effective rank of the student's representation")], tasks=BOTH)
PRED_GAP_GOLD = declare(
    _name("representation", "pred_gap_gold"),
    "‖P_s(I − P_w)y‖²/n with gold y (one-hot classes, or the real targets of a regression probe)", "Xue et al. 2025",
    higher_is_better=False, needs=[Need.TEACHER_FEATURES, Need.GOLD],
    charts=[Chart("prediction gap with gold ‖P_s(I − P_w)y‖²/n")], tasks=BOTH)

_ROBUST = dict(higher_is_better=False, may_be_undefined=True)
INCONSISTENCY = declare(
    _name("robustness", "inconsistency"),
    "γ̂: mean over probe points of the fraction of their k nearest neighbours (frozen embedding) the student labels "
    "differently — label-free", "Lang et al. 2024", needs=[Need.NEIGHBOURS],
    charts=[Chart("inconsistency γ̂: neighbours labelled differently (all probe points)")], **_ROBUST)
INCONSISTENCY_COVERED = declare(
    _name("robustness", "inconsistency_covered"), "γ̂ on covered probe points", "Lang et al. 2024",
    needs=[Need.NEIGHBOURS, Need.GOLD], charts=[Chart("inconsistency γ̂ on covered points")], **_ROBUST)
INCONSISTENCY_UNCOVERED = declare(
    _name("robustness", "inconsistency_uncovered"), "γ̂ on the teacher's abstentions", "Lang et al. 2024",
    needs=[Need.NEIGHBOURS, Need.GOLD, Need.UNCOVERED], charts=[Chart("inconsistency γ̂ on the teacher's abstentions")],
    **_ROBUST)
P_NONROBUST_BOUND = declare(
    _name("robustness", "p_nonrobust_bound"), "min(1, γ̂/η) ≥ P(R̄_η), the share of non-robust points",
    "Lang et al. Lemma B.1", kind="bound", needs=[Need.NEIGHBOURS],
    charts=[Chart("bound on the share of non-robust points min(1, γ̂/η)")], **_ROBUST)

_LANG = dict(needs=[Need.NEIGHBOURS, Need.GOLD], may_be_undefined=True)
_LANG_T = dict(needs=[Need.NEIGHBOURS, Need.GOLD, Need.UNCOVERED], may_be_undefined=True)
ALPHA = declare(
    _name("lang", "alpha_{i}"), "α_i = P(teacher ≠ gold ∣ covered, gold class i)", "Lang et al. 2024",
    higher_is_better=None, charts=[CONSTANT], **_LANG)
EXPANSION_GOOD_TO_BAD = declare(
    _name("lang", "expansion_good_to_bad_{i}"),
    "expansion estimate ĉ from S_i^good into S_i^bad over the student's label sets at past checks (neighbour oracle)",
    "Lang et al. §5 — live adaptation", kind="estimate", higher_is_better=True,
    charts=[Chart("expansion ĉ from S_i good into S_i bad, per class", run="class_{i}")], **_LANG)
EXPANSION_UNCOVERED_TO_GOOD = declare(
    _name("lang", "expansion_uncovered_to_good_{i}"), "expansion estimate ĉ from T_i into S_i^good (same construction)",
    "Lang et al. §5 — live adaptation", kind="estimate", higher_is_better=True,
    charts=[Chart("expansion ĉ from T_i into S_i good, per class", run="class_{i}")], **_LANG_T)


def _predicted_and_measured(where: str, condition: str, theorem: str, rhs: str, needs: dict) -> tuple[str, str, str, str]:
    """Lang et al.'s prediction of the student's gold error on ``where`` and the measured error beside
    it, per gold class (``_{i}``) and pooled over classes (the class-mass-weighted mean of the
    per-class values [derived: err(f,y|S) = Σ_i P(S_i|S) err(f,y|S_i)]). The theorems bound the error
    at the paper's robust-expansion constant; evaluated at the plug-in ĉ measured on the probe they
    are *estimates* (metrics/expansion.py says why), hence ``kind="estimate"`` and the name
    ``predicted_error``, never ``bound``. Two charts, the predicted and the measured error, each with
    the pooled value in the student's run and one reference run per class."""
    names = []
    for suffix, cond in (("_{i}", f"{condition}_i"), ("", condition)):
        run = "class_{i}" if suffix else None
        meaning = (
            f"{rhs} at the plug-in expansion estimate ĉ: what the theorem predicts for "
            f"err(student, gold ∣ {cond}) if ĉ were the paper's robust-expansion constant. An estimate, not a bound: "
            "with non-robust points it can fall below the measured error. Undefined (not logged) when a premise fails"
        ) if suffix else (
            f"class-mass-weighted mean of `{where}_predicted_error_<i>` over classes: the prediction for "
            f"err(student, gold ∣ {cond}); an estimate, not a bound (undefined when a class's value is)"
        )
        names.append(declare(
            _name("lang", f"{where}_predicted_error{suffix}"), meaning,
            f"Lang et al. {theorem} — plug-in estimate" + ("" if suffix else "; pooling derived"), kind="estimate",
            higher_is_better=False, charts=[Chart(f"err(student, gold | {condition}) predicted by Lang {theorem} at the "
                                                  "plug-in ĉ: pooled and per class", run=run)], **needs))
        names.append(declare(
            _name("lang", f"{where}_error{suffix}"), f"the measured err(student, gold ∣ {cond}) beside it", "definition",
            higher_is_better=False, charts=[Chart(f"measured err(student, gold | {condition}): pooled and per class", run=run)],
            **needs))
    return tuple(names)


COVERED_PREDICTED_ERROR_CLASS, COVERED_ERROR_CLASS, COVERED_PREDICTED_ERROR, COVERED_ERROR = _predicted_and_measured(
    "covered", "S", "Thm B.1", "Thm B.1's right-hand side", _LANG)
UNCOVERED_PREDICTED_ERROR_CLASS, UNCOVERED_ERROR_CLASS, UNCOVERED_PREDICTED_ERROR, UNCOVERED_ERROR = _predicted_and_measured(
    "uncovered", "T", "Thm B.2, B.3", "the smaller of Thm B.2's and Thm B.3's right-hand sides", _LANG_T)

SKIPPED = declare(
    _name("", "skipped"), "number of values and checks skipped for numerical faults or failures so far", "—",
    kind="count", higher_is_better=False, tasks=BOTH)
CHECK = declare(
    _name("", "check"), "number of checks the monitor has made so far, failed ones included (W2SEarlyStopping "
    "reads it to take each check's values once)", "—", kind="count", tasks=BOTH)
