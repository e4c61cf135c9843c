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
``"charikar"`` — estimated teacher error on its covered points minus the cheap student's held-out
    misfit there: Charikar et al.'s ``err(s) ≈ err(w) − misfit`` (their Thm 1 is an equality for
    squared loss and a linear-subspace student [paper: gist, docs/theory.md §2.2]; here 0/1 error and an
    estimated ``err(w)``: a **heuristic**).
``"fro"`` / ``"op"`` — the label-free representation gap ``‖P_s(I − P_w)‖`` of Xue et al. with
    :data:`RANKING_CONSTRUCTION` (exact algebra [derived]; as a predictor of W2S, the paper's
    claim: **heuristic** here). The only score available without teacher outputs; the default then.
``"projected_gap"`` — Xue's gap with the teacher's own labels projected, ``‖P_s(I − P_w)ŷ_w‖²/n``
    (teacher labels in place of gold; from d×d sums via ``representation_gap(labels=...)``)
    [derived quantity, heuristic use].
``"pred_gap"`` — the same with gold ``labels`` (needs gold; for reference).

Which default was chosen, on what, and how well it ranks: ``benchmarks/ranking/run.py``
(``make bench-ranking``) chooses it leave-one-task-out on three real text tasks × 15 teachers.

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
from typing import Any, Mapping

import torch
from torch import Tensor

from lightning_w2s.validation import as_tensor, check_finite, check_probabilities, check_scalar, describe
from lightning_w2s.ranking.cheap_student import crossfit_students
from lightning_w2s.ranking.label_model import dawid_skene
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, GapConstruction, representation_gap

__all__ = ["OUTPUT_SCORES", "RANKING_CONSTRUCTION", "SCORES", "rank_teachers", "score_teachers"]

#: The features-only construction of the representation gap used by :func:`rank_teachers`
#: (``score="fro"``, the default without teacher outputs): the monitor's ``DEFAULT_CONSTRUCTION``
#: (``fro``, both representations cut to their top 32 principal components, ``reg = 0.1``,
#: ``λ = reg·tr(K)/n``). ``make bench-ranking`` tried 30 constructions leave-one-task-out; none beat
#: this one by more than its bootstrap CI (a tie), so it stays — and on the benchmark's 15 teachers
#: no construction ranks W2S students better than chance (docs/benchmarks.md, teacher ranking).
RANKING_CONSTRUCTION = DEFAULT_CONSTRUCTION

#: Scores that need every teacher's outputs and at least 3 teachers (a label model).
LABEL_MODEL_SCORES = ("w2s_error", "teacher_error", "charikar")
#: Scores from outputs (and, for ``projected_gap``, features too).
OUTPUT_SCORES = LABEL_MODEL_SCORES + ("projected_gap",)
FEATURE_SCORES = ("fro", "op", "pred_gap")
SCORES = ("auto",) + OUTPUT_SCORES + FEATURE_SCORES
#: ``score="auto"``: this score when every teacher has outputs and there are >= 3, else "fro".
DEFAULT_OUTPUT_SCORE = "w2s_error"
MIN_LABEL_MODEL_TEACHERS = 3


@dataclasses.dataclass
class _Inputs:
    student: Tensor  # (n, d) float64
    features: dict[str, Tensor | None]
    labels: dict[str, Tensor]  # (n,) int64, -1 = abstain (argmax of probabilities)
    targets: dict[str, Tensor]  # (n, k) float64 one-hot (zero row = abstain) or probabilities
    names: list[str]
    num_classes: int


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"teacher names in `{where}` must be str, got {describe(name)}")


def _validate(student_features: Any, teachers: Any, teacher_outputs: Any, num_classes: int | None) -> _Inputs:
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
        raise ValueError(
            "no teachers to rank: `teachers` ({name: (n, d_w) features}) and `teacher_outputs` "
            "({name: (n,) labels or (n, k) probabilities}) are both empty or None"
        )
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
        arg = f"teacher_outputs[{name!r}]"
        o = as_tensor(arg, value).detach()
        if o.ndim == 0 or o.shape[0] != n:
            raise ValueError(f"`{arg}` must have n = {n} rows like `student_features`, got {describe(o)}")
        if o.ndim == 1:
            # like scikit-learn's class targets: ints, bools, or floats holding whole numbers (0., 1., -1.)
            integral = not o.is_complex() and (not o.is_floating_point() or bool((torch.isfinite(o) & (o == o.round())).all()))
            if not integral:
                raise TypeError(
                    f"`{arg}` as a 1-D tensor must hold integer class labels (-1 = abstain), got {describe(o)} with "
                    f"non-integer values; pass probabilities as an (n, k) tensor"
                )
            o = o.long()
            if int(o.min()) < -1:
                raise ValueError(f"`{arg}` class labels must be >= 0 or -1 (abstain), got min {int(o.min())}")
            if int(o.max()) < 0:
                raise ValueError(f"`{arg}` abstains on every input (all -1): the teacher gives no labels to learn from")
            labels[name] = o
        elif o.ndim == 2:
            if not o.is_floating_point():
                raise TypeError(f"`{arg}` as an (n, k) tensor must hold probabilities (floats), got {describe(o)}")
            check_probabilities(arg, o.to(torch.float64), hint="pass softmax(logits); to abstain, pass (n,) labels with -1")
            probs[name] = o.to(torch.float64)
        else:
            raise ValueError(f"`{arg}` must be (n,) class labels or (n, k) probabilities, got {describe(o)}")
    ks = {int(p.shape[1]) for p in probs.values()}
    if len(ks) > 1:
        raise ValueError(f"`teacher_outputs` probabilities disagree on the number of classes: {sorted(ks)}")
    top = max([int(lab.max()) + 1 for lab in labels.values()] + list(ks) + [2])
    if num_classes is None:
        k = top
    else:
        k = check_scalar("num_classes", num_classes, int, min_val=2)
        if top > k or (ks and ks != {k}):
            raise ValueError(f"`teacher_outputs` hold {top} classes (labels or probability columns) but `num_classes` = {k}")
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
    return _Inputs(s, features, {m: labels[m] for m in outputs}, {m: targets[m] for m in outputs}, names, k)


def _resolve_score(score: str, inp: _Inputs) -> str:
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
                why = (f"only {len(with_outputs)} teacher(s) have outputs (a label model needs >= {MIN_LABEL_MODEL_TEACHERS})"
                       if not without_outputs else f"teacher(s) {without_outputs} have no outputs")
                warnings.warn(f"rank_teachers: {why}; ranking every teacher by the features-only representation gap "
                              f"(score='fro'); `teacher_outputs` are not used", UserWarning, stacklevel=3)
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
    if score in FEATURE_SCORES + ("projected_gap",) and without_features:
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
    if isinstance(scores, str):
        scores = (scores,)
    wanted = [_resolve_score(sc, inp) for sc in scores]
    if "pred_gap" in wanted and labels is None:
        raise ValueError("score='pred_gap' needs gold `labels`; got labels=None (the label-free scores need none)")
    out: dict[str, dict[str, float]] = {}
    names = inp.names
    if any(sc in LABEL_MODEL_SCORES for sc in wanted):
        out.update(_label_model_scores(inp, student_c, folds, seed))
    for sc in ("fro", "op", "pred_gap", "projected_gap"):
        if sc not in wanted:
            continue
        values = {}
        for name in names:
            lab = None if sc in ("fro", "op") else (labels if sc == "pred_gap" else inp.labels[name])
            gap = representation_gap(inp.student, inp.features[name], labels=lab, **construction.kwargs())
            values[name] = float(gap["pred_gap" if sc in ("pred_gap", "projected_gap") else sc])
        out[sc] = values
    return {key: out[key] for key in dict.fromkeys(wanted + [k for k in out if k not in wanted])}


def _label_model_scores(inp: _Inputs, student_c: float, folds: int, seed: int) -> dict[str, dict[str, float]]:
    names, k = inp.names, inp.num_classes
    targets = torch.stack([inp.targets[m] for m in names], dim=1)  # (n, m, k)
    lab = torch.stack([inp.labels[m] for m in names], dim=1)  # (n, m)
    covered = lab >= 0
    cheap = crossfit_students(inp.student, targets, c=student_c, folds=folds, seed=seed).argmax(-1)  # (n, m)
    students = dawid_skene(cheap, k)
    teachers = dawid_skene(lab, k)
    cov = covered.to(torch.float64).mean(0)
    misfit = ((cheap != lab) & covered).sum(0) / covered.sum(0).clamp_min(1)
    acc_t = teachers.accuracy
    chance = 1.0 - 1.0 / k
    per = {
        "w2s_error": 1.0 - students.accuracy,
        "teacher_error": cov * (1.0 - acc_t) + (1.0 - cov) * chance,
        "charikar": (1.0 - acc_t) - misfit,
        "misfit": misfit,
        "coverage": cov,
        "teacher_accuracy": acc_t,
    }
    return {key: {m: float(v[i]) for i, m in enumerate(names)} for key, v in per.items()}


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
        **overrides: replace fields of ``construction`` (``reg``, ``max_components``, ``reg_relative_to``).

    Returns:
        ``(name, score)`` pairs by increasing score; NaN scores (a degenerate representation: a
        ``RuntimeWarning`` says why) come last in the order given.

    Raises:
        TypeError / ValueError naming the argument for bad input: wrong shapes or lengths, non-finite
        features, labels out of range, probabilities that do not sum to 1, unknown scores or keyword
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
        student_features, teachers, teacher_outputs=teacher_outputs, scores=(score,), labels=labels,
        construction=construction, num_classes=num_classes, student_c=student_c, folds=folds, seed=seed,
    )
    values = next(iter(result.values()))
    return sorted(values.items(), key=lambda item: (math.isnan(item[1]), 0.0 if math.isnan(item[1]) else item[1]))
