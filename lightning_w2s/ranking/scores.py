"""Rank candidate teachers for a student before training — label-free, from features and outputs.

The practical use Xue, Li & Mirzasoleiman (2025) argue for (docs/theory.md §2.4, §4): given
a student's representation of some inputs and several candidate weak teachers on the same inputs,
say which teacher's labels will give the best W2S student — without gold labels.

Scores (lower = better expected W2S student; each is an *estimate* or a *heuristic*, never a bound):

``"w2s_error"`` — the default when every teacher gives outputs (≥ 3 teachers).
    For each teacher, a cheap linear student on the student's features is fitted to the teacher's
    labels and predicts every input out of fold (:mod:`lightning_w2s.ranking.cheap_student`: one
    Newton step of L2 logistic regression, ``C = student_c`` [derived]). These cheap W2S students
    are the thing being ranked: their errors already contain what the student corrects (teacher
    errors outside what a linear head on ``Φ`` can fit, Charikar et al. 2024) and what it copies,
    and coverage expansion (they predict where the teacher abstains). Their gold error is then
    estimated without gold by the Dawid–Skene label model over the cheap students' predictions
    (:mod:`lightning_w2s.ranking.label_model`; maximum likelihood — consistent [theorem] if the
    students erred independently given the true class; they do not, they share one representation,
    so the estimate is a **heuristic** whose ranking quality is measured in ``make bench-ranking``).
``"teacher_error"`` — the label model over the teachers' own outputs: each teacher's estimated
    gold error, abstentions counted as coin flips (``1 − 1/k``) [heuristic, as above].
(``"charikar"`` — estimated teacher error minus the cheap student's misfit — was offered and is
    removed: for 0/1 error the triangle inequality gives ``err(w) − misfit ≤ err(s) ≤ err(w) +
    misfit``, so it is a *lower bound* on the student's error, not an estimate, and it ranks
    backwards exactly where W2S matters: the student disagrees most with the teachers whose random
    errors it corrects (Spearman −0.20 on teachers with 5/15/30/40% random flips). The misfit is
    still returned by :func:`score_teachers` as an ingredient.)
``"fro"`` — the label-free representation gap ``‖P_s(I − P_w)‖_F`` of Xue et al. with
    :data:`RANKING_CONSTRUCTION` (exact algebra [derived]; as a predictor of W2S, the paper's
    claim: **heuristic** here). The only score available without teacher outputs; the default then.
(``"op"`` — the operator norm of the same gap — and ``"projected_gap"`` — ``‖P_s(I − P_w)ŷ_w‖²/n``
    with the teacher's own labels — were offered and are removed: on clearly separated synthetic
    teachers they did not order the students (``op`` is 1 whenever a teacher misses any one student
    direction, so it ties; teacher labels computed from the teacher's own features lie in its span,
    so the projected gap is ≈ 0 for every teacher). Both stay computable with
    :func:`lightning_w2s.metrics.functional.representation_gap`.)
``"pred_gap"`` — Xue's gap with gold ``labels`` projected, ``‖P_s(I − P_w)y‖²/n`` (from d×d sums via
    ``representation_gap(labels=...)``; needs gold: for reference).

Which default was chosen, on what, and how well it ranks: ``benchmarks/ranking/run.py``
(``make bench-ranking``) chooses it leave-one-task-out on three real text tasks × 15 teachers.

Dependent teachers [heuristic, measured]: the label-model scores assume teachers (and their cheap
students) err independently given the class. Teachers whose outputs agree far beyond what their
estimated accuracies allow — exact copies, relabelled near copies, one model under two prompts —
are found by their excess agreement (or a swapped-class copy's deficit), tested against a
5%-relabelled copy of a 90%-accurate teacher, and vote once; every teacher
is judged against the posterior in which its group counts once
(:mod:`lightning_w2s.ranking.dependence`); a ``UserWarning`` names them.
``dependence_threshold=None`` switches this off. Every label-model fit runs to convergence, and a
``UserWarning`` names the teachers when it did not, or when a teacher is estimated worse than
chance (a crowd that is worse than chance *as a whole* comes back as its mirror image: no label-free
method can tell, Dawid & Skene's likelihood is symmetric under relabelling the classes).

Features only, no teacher outputs (``"fro"``), the ranking is weak: Spearman ρ ≈ 0 on the project's
benchmark (``make bench-ranking``, docs/ranking.md). Give teacher outputs whenever you have them.

A before-training tool, not a live metric [decision]: while one teacher is being
trained on, none of these scores adds information to the monitor's log. The label-model scores
compare candidates and are not defined for a single teacher (a label model needs >= 3); every score
is a function of the student's representation of the candidates' inputs and the teachers' outputs,
so for a frozen-encoder student (the benchmark's and the usual W2S setting) it is a constant of the
run; and for a fine-tuned student the one live, representation-based quantity that is defined for
one teacher — the gap — is already logged by the monitor (``w2s/representation/gap_fro``), while the
live student's own disagreement with its teacher (``w2s/misfit/*``) replaces the cheap students.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, GapConstruction, representation_gap
from lightning_w2s.metrics.validation import as_tensor, check_finite, check_probabilities, check_scalar, describe
from lightning_w2s.ranking.cheap_student import crossfit_students
from lightning_w2s.ranking.dependence import DEPENDENCE_THRESHOLD, find_dependent, independent_fits
from lightning_w2s.ranking.label_model import votes_tensor

__all__ = ["OUTPUT_SCORES", "RANKING_CONSTRUCTION", "SCORES", "rank_teachers", "score_teachers"]

#: The features-only construction of the representation gap used by :func:`rank_teachers`
#: (``score="fro"``, the default without teacher outputs): the monitor's ``DEFAULT_CONSTRUCTION``
#: (``fro``, both representations cut to their top 32 principal components, ``reg = 0.1``,
#: ``λ = reg·tr(K)/n``). ``make bench-ranking`` tried 30 constructions leave-one-task-out; none beat
#: this one by more than its bootstrap CI (a tie), so it stays — and on the benchmark's 15 teachers
#: no construction ranks W2S students better than chance (docs/benchmarks.md, teacher ranking).
RANKING_CONSTRUCTION = DEFAULT_CONSTRUCTION

#: Scores that need every teacher's outputs and at least 3 teachers (a label model).
LABEL_MODEL_SCORES = ("w2s_error", "teacher_error")
#: Scores from outputs.
OUTPUT_SCORES = LABEL_MODEL_SCORES
FEATURE_SCORES = ("fro", "pred_gap")
SCORES = ("auto",) + OUTPUT_SCORES + FEATURE_SCORES
#: ``score="auto"``: this score when every teacher has outputs and there are >= 3, else "fro".
DEFAULT_OUTPUT_SCORE = "w2s_error"
MIN_LABEL_MODEL_TEACHERS = 3


@dataclasses.dataclass
class TeacherInputs:
    """The validated inputs of a ranking: the student's features and each teacher's features,
    labels (argmax, ``-1`` = abstain) and targets, in one numbering of the classes.

    >>> inp = TeacherInputs(torch.zeros(4, 2), {"rule": None}, {"rule": torch.tensor([0, 1, -1, 1])}, {}, ["rule"], 2)
    >>> inp.names, inp.num_classes
    (['rule'], 2)
    """

    student: Tensor  # (n, d) float64
    features: dict[str, Tensor | None]
    labels: dict[str, Tensor]  # (n,) int64, -1 = abstain (argmax of probabilities)
    targets: dict[str, Tensor]  # (n, k) float64 one-hot (zero row = abstain) or probabilities
    names: list[str]
    num_classes: int


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"teacher names in `{where}` must be str, got {describe(name)}")


def _check_output(arg: str, o: Tensor, n: int) -> Tensor:
    """One teacher's outputs as ``(n,)`` int64 labels (-1 = abstain) or ``(n, k)`` float64
    probabilities; every message names the teacher (``arg``)."""
    if o.ndim == 0 or o.shape[0] != n:
        raise ValueError(f"`{arg}` must have n = {n} rows like `student_features`, got {describe(o)}")
    if o.ndim == 1:
        if o.is_floating_point() and not bool(torch.isfinite(o).all()):
            raise ValueError(f"`{arg}` holds NaN or Inf labels ({int((~torch.isfinite(o)).sum())} of {n}); mark abstentions with -1")
        # like scikit-learn's class targets: ints, bools, or floats holding whole numbers (0., 1., -1.)
        if o.is_complex() or (o.is_floating_point() and not bool((o == o.round()).all())):
            raise TypeError(f"`{arg}` as a 1-D tensor must hold integer class labels (-1 = abstain), got {describe(o)} with non-integer values; pass probabilities as an (n, k) tensor")
        o = o.long()
        if int(o.min()) < -1:
            raise ValueError(f"`{arg}` class labels must be >= 0 or -1 (abstain), got min {int(o.min())}")
        if int(o.max()) < 0:
            raise ValueError(f"`{arg}` abstains on every input (all -1): the teacher gives no labels to learn from")
        _check_not_constant(arg, o)
        return o
    if o.ndim != 2:
        raise ValueError(f"`{arg}` must be (n,) class labels or (n, k) probabilities, got {describe(o)}")
    if not o.is_floating_point():
        raise TypeError(f"`{arg}` as an (n, k) tensor must hold probabilities (floats), got {describe(o)}")
    if o.shape[1] < 2:
        raise ValueError(f"`{arg}` has {o.shape[1]} probability column(s); probabilities need one column per class (k >= 2), e.g. [1 - p, p]")
    check_probabilities(arg, o.to(torch.float64), hint="pass softmax(logits); to abstain, pass (n,) labels with -1")
    _check_not_constant(arg, o.argmax(1))
    return o.to(torch.float64)


def _check_not_constant(arg: str, labels: Tensor) -> None:
    given = labels[labels >= 0].unique()
    if given.numel() < 2:
        raise ValueError(
            f"`{arg}` gives the same class ({int(given[0])}) on every input it labels: a constant teacher carries no "
            f"information about the inputs and every score is meaningless for it (its student predicts one class); drop it"
        )


def _check_classes(labels: dict[str, Tensor], probs: dict[str, Tensor], num_classes: int | None) -> int:
    """The number of classes ``k``: the teachers must agree on it, and each is named when it does not."""
    columns = {name: int(p.shape[1]) for name, p in probs.items()}
    if len(set(columns.values())) > 1:
        common = max(set(columns.values()), key=list(columns.values()).count)
        odd = {name: c for name, c in columns.items() if c != common}
        raise ValueError(
            f"`teacher_outputs` probabilities disagree on the number of classes: {odd} against {common} columns for "
            f"{[m for m, c in columns.items() if c == common]}; every teacher must give one column per class"
        )
    if num_classes is not None:
        k = check_scalar("num_classes", num_classes, int, min_val=2)
        for name, c in columns.items():
            if c != k:
                raise ValueError(f"`teacher_outputs[{name!r}]` has {c} probability columns but `num_classes` = {k}")
        for name, lab in labels.items():
            if int(lab.max()) >= k:
                raise ValueError(f"`teacher_outputs[{name!r}]` has class label {int(lab.max())}, out of range for `num_classes` = {k}")
        return k
    for name, lab in labels.items():
        others = [int(p.shape[1]) for p in probs.values()] + [int(v.max()) + 1 for m, v in labels.items() if m != name]
        if others and int(lab.max()) >= max(others):
            if columns:
                raise ValueError(f"`teacher_outputs[{name!r}]` has class label {int(lab.max())}, out of range for the {max(columns.values())} classes of the probability teachers {sorted(columns)}")
            raise ValueError(f"`teacher_outputs[{name!r}]` has class label {int(lab.max())}, which no other teacher uses (their labels are < {max(others)}); pass `num_classes` if that class is real")
    return max([int(lab.max()) + 1 for lab in labels.values()] + list(columns.values()) + [2])


def _validate(student_features: Any, teachers: Any, teacher_outputs: Any, num_classes: int | None) -> TeacherInputs:
    s = as_tensor("student_features", student_features).detach()
    if s.ndim != 2:
        raise ValueError(f"`student_features` must be a 2-D (n, d) tensor of features, got {describe(s)}")
    if s.is_complex() or s.dtype == torch.bool:
        raise TypeError(f"`student_features` must hold real numbers, got {describe(s)}")
    s = s.to(torch.float64)
    check_finite("student_features", s)
    n = s.shape[0]
    if n < 2:
        raise ValueError(f"`student_features` needs at least 2 inputs (rows), got {describe(s)}")
    for arg, value in (("teachers", teachers), ("teacher_outputs", teacher_outputs)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"`{arg}` must be a mapping {{name: tensor}} or None, got {describe(value)}")
    teachers = dict(teachers or {})
    outputs = dict(teacher_outputs or {})
    if not teachers and not outputs:
        raise ValueError("no teachers to rank: `teachers` ({name: (n, d_w) features}) and `teacher_outputs` ({name: (n,) labels or (n, k) probabilities}) are both empty or None")
    features: dict[str, Tensor | None] = {}
    for name, value in teachers.items():
        _check_name(name, "teachers")
        if value is None:
            features[name] = None
            continue
        w = as_tensor(f"teachers[{name!r}]", value).detach()
        if w.ndim != 2 or w.shape[0] != n:
            raise ValueError(f"`teachers[{name!r}]` must be (n, d_w) features with n = {n} rows like `student_features`, got {describe(w)}")
        if w.is_complex() or w.dtype == torch.bool:
            raise TypeError(f"`teachers[{name!r}]` must hold real numbers, got {describe(w)}")
        check_finite(f"teachers[{name!r}]", w.to(torch.float64))
        features[name] = w
    labels: dict[str, Tensor] = {}
    probs: dict[str, Tensor] = {}
    for name, value in outputs.items():
        _check_name(name, "teacher_outputs")
        o = _check_output(f"teacher_outputs[{name!r}]", as_tensor(f"teacher_outputs[{name!r}]", value).detach(), n)
        (labels if o.ndim == 1 else probs)[name] = o
    k = _check_classes(labels, probs, num_classes)
    names = list(dict.fromkeys(list(features) + list(outputs)))
    bare = [name for name in names if features.get(name) is None and name not in outputs]
    if bare:
        raise ValueError(f"teacher(s) {bare} have neither features (`teachers`) nor outputs (`teacher_outputs`); give one or drop them")
    targets: dict[str, Tensor] = {}
    for name, lab in labels.items():
        t = torch.zeros(n, k, dtype=torch.float64)
        known = lab >= 0
        t[known] = torch.nn.functional.one_hot(lab[known], k).to(torch.float64)
        targets[name] = t
    for name, p in probs.items():
        targets[name] = p
        labels[name] = p.argmax(1)
    return TeacherInputs(s, features, {m: labels[m] for m in outputs}, {m: targets[m] for m in outputs}, names, k)


def _resolve_score(score: str, inp: TeacherInputs) -> str:
    if not isinstance(score, str) or score not in SCORES:
        near = difflib.get_close_matches(str(score), SCORES, n=2)
        raise ValueError(f"`score` must be one of {SCORES}, got {score!r}" + (f"; did you mean {near[0]!r}?" if near else ""))
    with_outputs = [m for m in inp.names if m in inp.labels]
    without_outputs = [m for m in inp.names if m not in inp.labels]
    without_features = [m for m in inp.names if inp.features.get(m) is None]
    if score == "auto":
        if not without_outputs and len(with_outputs) >= MIN_LABEL_MODEL_TEACHERS:
            return DEFAULT_OUTPUT_SCORE
        if not without_features:
            if with_outputs:
                why = (
                    f"only {len(with_outputs)} teacher(s) have outputs (a label model needs >= {MIN_LABEL_MODEL_TEACHERS})" if not without_outputs else f"teacher(s) {without_outputs} have no outputs"
                )
                warnings.warn(f"rank_teachers: {why}; ranking every teacher by the features-only representation gap (score='fro'); `teacher_outputs` are not used", UserWarning, stacklevel=3)
            return "fro"
        if without_outputs:
            raise ValueError(
                f"no score covers every teacher: {without_outputs} have no outputs (only the features-only gap can rank "
                f"them) and {without_features} have no features (only output scores can rank them); pass outputs for the "
                f"former or features for the latter, or rank the two groups separately"
            )
        raise ValueError(
            f"the output-based scores need a label model over >= {MIN_LABEL_MODEL_TEACHERS} teachers with outputs; got "
            f"{len(with_outputs)} ({with_outputs}) and {without_features} have no features for the representation gap. "
            f"With fewer than {MIN_LABEL_MODEL_TEACHERS} teachers, their accuracies cannot be told apart without gold labels"
        )
    if score in OUTPUT_SCORES and without_outputs:
        raise ValueError(f"score={score!r} needs `teacher_outputs` for every teacher; missing for {without_outputs}")
    if score in LABEL_MODEL_SCORES and len(with_outputs) < MIN_LABEL_MODEL_TEACHERS:
        raise ValueError(
            f"score={score!r} uses a label model, which needs outputs from >= {MIN_LABEL_MODEL_TEACHERS} teachers to be "
            f"identifiable; got {len(with_outputs)}. With fewer, rank by the representation gap (score='fro', teacher "
            f"features needed) or add candidate teachers"
        )
    if score in FEATURE_SCORES and without_features:
        raise ValueError(f"score={score!r} needs teacher features (`teachers[name]`) for every teacher; missing for {without_features}")
    return score


def score_teachers(
    student_features: Any,
    teachers: Mapping[str, Any] | None = None,
    *,
    teacher_outputs: Mapping[str, Any] | None = None,
    scores: tuple[str, ...] = ("auto",),
    labels: Any = None,
    construction: GapConstruction = RANKING_CONSTRUCTION,
    num_classes: int | None = None,
    student_c: float = 1.0,
    folds: int = 5,
    seed: int = 0,
    dependence_threshold: float | str | None = DEPENDENCE_THRESHOLD,
) -> dict[str, dict[str, float]]:
    """Every requested score for every teacher: ``{score: {teacher: value}}`` (lower = better).

    Same arguments as :func:`rank_teachers`; ``scores`` is a tuple of its ``score`` names. For the
    label-model scores the result also holds the ingredients (``coverage``, ``misfit`` — held-out
    disagreement of the cheap student with the teacher on covered points —, ``teacher_accuracy``
    — estimated, on covered points), keyed like the scores.
    """
    if not isinstance(construction, GapConstruction):
        raise TypeError(f"`construction` must be a GapConstruction, got {describe(construction)}")
    inp = _validate(student_features, teachers, teacher_outputs, num_classes)
    student_c = check_scalar("student_c", student_c, float, min_val=0.0, include_boundaries="neither")
    folds = check_scalar("folds", folds, int, min_val=2)
    seed = check_scalar("seed", seed, int)
    if isinstance(dependence_threshold, str):
        if dependence_threshold != "auto":
            raise ValueError(f"`dependence_threshold` must be 'auto', a float in [0, 1] or None, got {dependence_threshold!r}")
    elif dependence_threshold is not None:
        dependence_threshold = check_scalar("dependence_threshold", dependence_threshold, float, min_val=0.0, max_val=1.0, include_boundaries="right")
    if isinstance(scores, str):
        scores = (scores,)
    wanted = [_resolve_score(sc, inp) for sc in scores]
    if "pred_gap" in wanted and labels is None:
        raise ValueError("score='pred_gap' needs gold `labels`; got labels=None (the label-free scores need none)")
    out: dict[str, dict[str, float]] = {}
    names = inp.names
    if any(sc in LABEL_MODEL_SCORES for sc in wanted):
        out.update(_label_model_scores(inp, student_c, folds, seed, dependence_threshold))
    for sc in FEATURE_SCORES:
        if sc not in wanted:
            continue
        values = {}
        for name in names:
            gap = representation_gap(inp.student, inp.features[name], labels=labels if sc == "pred_gap" else None, **construction.kwargs())
            values[name] = float(gap[sc])
        out[sc] = values
    return {key: out[key] for key in dict.fromkeys(wanted + [k for k in out if k not in wanted])}


def _label_model_scores(inp: TeacherInputs, student_c: float, folds: int, seed: int, threshold: float | str | None) -> dict[str, dict[str, float]]:
    names, k = inp.names, inp.num_classes
    lab = torch.stack([inp.labels[m] for m in names], dim=1)  # (n, m)
    covered = lab >= 0
    few = {m: int(c) for m, c in zip(names, covered.sum(0).tolist()) if c < 2 * folds}
    if few:
        raise ValueError(
            f"teacher(s) {few} label too few inputs (counts shown): a cheap student needs >= 2 labelled inputs in each "
            f"of `folds` = {folds} training splits (>= {2 * folds} in all); give them more coverage, drop them or lower `folds`"
        )
    targets = torch.stack([inp.targets[m] for m in names], dim=1)  # (n, m, k)
    cheap = crossfit_students(inp.student, targets, c=student_c, folds=folds, seed=seed, names=names).argmax(-1)  # (n, m)
    teacher_votes, student_votes = votes_tensor(lab, k), votes_tensor(cheap, k)
    groups: list[list[int]] = []
    if threshold is not None:
        dep = find_dependent(teacher_votes, threshold)
        groups = dep.groups
        for g in groups:
            links = [e for (a, b), e in dep.excess.items() if a in g or b in g]
            warnings.warn(
                f"rank_teachers: teachers {[names[j] for j in g]} agree far beyond what their estimated accuracies allow "
                f"if they erred independently (excess agreement up to {max(links):.2f}, not significantly below a copy's "
                f"dependence_threshold = {dep.threshold:.3f}): near-copies or one "
                f"family. They vote once in the label model, so their copies no longer vouch for them; pass "
                f"dependence_threshold=None to treat them as independent",
                UserWarning,
                stacklevel=4,
            )
    try:
        acc_t, _, fits_t = independent_fits(teacher_votes, groups)
        # the cheap students of a group of near-copy teachers are near-copies too; identical students vote once
        acc_s, _, fits_s = independent_fits(student_votes, _with_identical(student_votes, groups))
    except ValueError as err:
        raise ValueError(f"rank_teachers: {err} (teachers {names}); add independent teachers or pass dependence_threshold=None") from None
    if not all(f.converged for f in fits_t + fits_s):
        warnings.warn(f"rank_teachers: the label model did not converge (EM ran out of iterations); the scores of teachers {names} may be off", UserWarning, stacklevel=4)
    chance = 1.0 / k
    # below chance by more than two binomial standard errors of a chance-level teacher on its covered inputs
    margin = 2.0 * torch.sqrt(chance * (1.0 - chance) / covered.sum(0).clamp_min(1))
    worse = [m for m, a, e in zip(names, acc_t.tolist(), margin.tolist()) if a < chance - e]
    if worse:
        warnings.warn(
            f"rank_teachers: teacher(s) {worse} are estimated worse than chance (accuracy below 1/{k} by more than 2 standard errors): their labels look "
            f"inverted or adversarial. If most teachers were worse than chance, the label model would return the mirror "
            f"image instead (no label-free method can tell); check a few gold labels",
            UserWarning,
            stacklevel=4,
        )
    cov = covered.to(torch.float64).mean(0)
    misfit = ((cheap != lab) & covered).sum(0) / covered.sum(0).clamp_min(1)
    per = {"w2s_error": 1.0 - acc_s, "teacher_error": cov * (1.0 - acc_t) + (1.0 - cov) * (1.0 - chance), "misfit": misfit, "coverage": cov, "teacher_accuracy": acc_t}
    return {key: {m: float(v[i]) for i, m in enumerate(names)} for key, v in per.items()}


def _with_identical(v: Tensor, groups: list[list[int]]) -> list[list[int]]:
    """``groups`` plus every set of voters whose votes are identical (joined with the group they touch)."""
    n, m, k = v.shape
    parent = list(range(m))

    def root(u: int) -> int:
        while parent[u] != u:
            u = parent[u]
        return u

    for g in groups:
        for j in g[1:]:
            parent[root(j)] = root(g[0])
    flat = v.reshape(n, m * k)
    for j in range(m):
        for i in range(j):
            if torch.equal(flat[:, j * k : (j + 1) * k], flat[:, i * k : (i + 1) * k]):
                parent[root(j)] = root(i)
    comps: dict[int, list[int]] = {}
    for j in range(m):
        comps.setdefault(root(j), []).append(j)
    return sorted(g for g in comps.values() if len(g) > 1)


def rank_teachers(
    student_features: Any,
    teachers: Mapping[str, Any] | None = None,
    *,
    teacher_outputs: Mapping[str, Any] | None = None,
    score: str = "auto",
    labels: Any = None,
    construction: GapConstruction = RANKING_CONSTRUCTION,
    num_classes: int | None = None,
    student_c: float = 1.0,
    folds: int = 5,
    seed: int = 0,
    dependence_threshold: float | str | None = DEPENDENCE_THRESHOLD,
    **overrides: Any,
) -> list[tuple[str, float]]:
    """Teachers ordered from best to worst expected W2S student: ``[(name, score), ...]``, lowest first.

    Args:
        student_features: ``(n, d)`` the student's representation of the candidate inputs (e.g. the
            frozen encoder's embeddings, or the input of the last ``nn.Linear`` at initialisation).
        teachers: ``{name: (n, d_w) teacher features or None}`` on the same inputs, same order. A
            teacher with outputs only (a rule, a lexicon, an API model) may be left out or ``None``.
        teacher_outputs: ``{name: (n,) int labels (-1 = abstain) or (n, k) probabilities}`` on the
            same inputs.
        score: ``"auto"`` (default) = ``"w2s_error"`` when every teacher has outputs and there are at
            least 3 of them, else the features-only gap ``"fro"`` (a ``UserWarning`` says so when
            some outputs are then left unused); or any name of :data:`SCORES` (module docstring).
        labels: gold labels, only for ``score="pred_gap"``. No score needs gold by default.
        construction: the gap's :class:`GapConstruction` (default :data:`RANKING_CONSTRUCTION`).
        num_classes: ``k``; inferred from the outputs when ``None``.
        student_c: inverse L2 strength of the cheap students (``C`` of scikit-learn's logistic
            regression; on unit-norm features ``C = 1`` matches its default).
        folds, seed: the cheap students' cross-fitting folds and their seeded assignment.
        dependence_threshold: the excess agreement (share of the disagreement independence predicts
            that did not happen) of the least dependent copy to catch; teachers whose disagreements
            are not significantly more (one-sided Poisson test, level 0.05) than such a copy's vote
            once (:mod:`lightning_w2s.ranking.dependence`; a ``UserWarning`` names them). ``"auto"``
            (default): a 5%-relabelled copy of a 90%-accurate teacher with the teachers' ``k``
            classes (:func:`~lightning_w2s.ranking.dependence.reference_excess`: 0.861 for
            ``k = 2``); ``None`` treats every teacher as independent. Label-model scores only.
        **overrides: replace fields of ``construction`` (``reg``, ``max_components``, ``reg_relative_to``).

    Returns:
        ``(name, score)`` pairs by increasing score; NaN scores (a degenerate representation: a
        ``RuntimeWarning`` says why) come last in the order given.

    Raises:
        TypeError / ValueError naming the argument — for outputs, the teacher (``teacher_outputs['name']``)
        — for bad input: wrong shapes or lengths, non-finite features or labels, labels out of range of
        the other teachers' classes, probability columns that differ between teachers or are fewer than
        2, probabilities that do not sum to 1, a teacher that abstains everywhere, labels too few inputs
        or gives one class only (every score is meaningless for a constant teacher), fewer than 3
        independent voters once near-copies vote once, unknown scores or keyword
        arguments, a teacher with neither features nor outputs, and a score missing what it needs —
        the label-model scores need outputs from every teacher and at least 3 teachers (with 2 their
        accuracies are not identifiable without gold: rank by the gap, from features, instead).
    """
    fields = {f.name for f in dataclasses.fields(GapConstruction)} - {"score"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        near = {u: difflib.get_close_matches(u, sorted(fields) + ["score", "labels", "teacher_outputs"], n=1) for u in unknown}
        hint = "; ".join(f"{u!r}: did you mean {v[0]!r}?" for u, v in near.items() if v)
        raise TypeError(f"rank_teachers got unexpected keyword argument(s) {unknown}; expected some of {sorted(fields)}" + (f" ({hint})" if hint else ""))
    if not isinstance(construction, GapConstruction):
        raise TypeError(f"`construction` must be a GapConstruction, got {describe(construction)}")
    construction = dataclasses.replace(construction, **overrides)
    result = score_teachers(
        student_features,
        teachers,
        teacher_outputs=teacher_outputs,
        scores=(score,),
        labels=labels,
        construction=construction,
        num_classes=num_classes,
        student_c=student_c,
        folds=folds,
        seed=seed,
        dependence_threshold=dependence_threshold,
    )
    values = next(iter(result.values()))
    return sorted(values.items(), key=lambda item: (math.isnan(item[1]), 0.0 if math.isnan(item[1]) else item[1]))
