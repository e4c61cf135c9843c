"""Bounds and predictions on the student's gold error (DESIGN §2.2, §2.5): numbers in, number out.

Each function says what kind of statement it is:

- **theorem** — the paper's theorem, implemented as printed there, with every premise the
  statement (or the step of its proof that needs it) makes [paper];
- **derived bound** — standard maths derived here, true as stated [derived];
- **prediction** — what a theorem predicts only under assumptions a live run does not check.

A theorem's value is a *bound* only when its inputs are the theorem's quantities. Lang et al.'s
bounds take an expansion constant ``c``: fed with the plug-in estimate ``ĉ`` of
:func:`~lightning_w2s.metrics.expansion.lang_expansion` (which is not the paper's robust-expansion
constant, see that module), the same number is an **estimate** of the theorem's right-hand side and
must be named so wherever it is logged.

Inputs are real numbers (Python/numpy scalars or one-element tensors), checked with
:func:`lightning_w2s._validation.check_scalar`. A value of the wrong *type* (a string, a bool, a
multi-element tensor) raises ``TypeError`` naming the argument; a theorem *parameter* the caller
chooses (``q``) out of its range raises ``ValueError``. A *measured* quantity that is NaN, out of
range, or violates a premise (a probability outside ``[0, 1]``, ``α ∉ (0, 1/2)``, a non-positive
denominator, a failed fit condition) returns ``NaN`` and emits a ``RuntimeWarning`` with the reason:
a monitor must never crash on a measurement, and never log a wrong number.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from .._validation import check_scalar

__all__ = [
    "accuracy_band",
    "max_accuracy_gain",
    "ce_band",
    "charikar_predicted_gain",
    "squared_error_gain",
    "lang_nonrobust_bound",
    "lang_covered_bound",
    "lang_uncovered_bound",
    "lang_uncovered_bound_b3",
]

NAN = float("nan")


class _Invalid(Exception):
    """A precondition failed: the public function turns it into NaN + warning."""


def _real(name: str, value) -> float:
    """``value`` as a float: one-element tensors/arrays are unwrapped, then :func:`check_scalar`
    checks the type (``TypeError`` naming ``name``). NaN passes through (a measurement may be NaN)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"`{name}` must be a real number or a one-element real tensor, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    elif not isinstance(value, numbers.Number) and hasattr(value, "__array__") and getattr(value, "size", None) == 1:
        if getattr(getattr(value, "dtype", None), "kind", "") not in "fiu":
            raise TypeError(f"`{name}` must be a real number, got an array of dtype {value.dtype}")
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return value
    return check_scalar(name, value, float)


def _reals(**kwargs) -> dict[str, float]:
    return {k: _real(k, v) for k, v in kwargs.items()}


def _q(q, upper_open: bool) -> float:
    """The theorems' ``q`` is chosen by the caller (the expansion's size threshold): ``ValueError``."""
    return check_scalar("q", _real("q", q), float, min_val=0.0, max_val=1.0, include_boundaries="left" if upper_open else "both")


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise _Invalid(reason)


def _finite(vals: dict[str, float]) -> None:
    for k, v in vals.items():
        _need(not math.isnan(v), f"`{k}` is NaN")


def _prob(vals: dict[str, float], *names: str) -> None:
    for k in names:
        _need(0.0 <= vals[k] <= 1.0, f"`{k}`={vals[k]!r} must be a probability in [0, 1]")


def _positive(vals: dict[str, float], *names: str) -> None:
    for k in names:
        _need(0.0 < vals[k] < math.inf, f"`{k}`={vals[k]!r} must be a finite number > 0 (an expansion constant)")


def _alpha(vals: dict[str, float]) -> None:
    a = vals["alpha"]
    _need(
        0.0 < a < 0.5,
        f"`alpha`={a!r} must lie in (0, 1/2): Lang et al. §3 assume 0 < alpha_i < 1/2 (the teacher is wrong on "
        "some covered points of the class, and right more often than wrong)",
    )


def _nan_with(fn_name: str, reason: str, n: int = 1):
    warnings.warn(f"{fn_name}: precondition violated ({reason}); returning NaN", RuntimeWarning, stacklevel=3)
    return NAN if n == 1 else (NAN,) * n


# ----------------------------------------------------------------------------------------------
# derived bounds
# ----------------------------------------------------------------------------------------------
def _band_on_covered(a: float, d: float) -> tuple[float, float]:
    """``P(s = y | C) ∈ [max(0, a − d), min(a + d, 2 − a − d)]`` (proof in :func:`accuracy_band`)."""
    return max(0.0, a - d), min(a + d, 2.0 - a - d)


def _band_inputs(fn: str, **kw) -> dict[str, float] | None:
    v = _reals(**kw)
    try:
        _finite(v)
        _prob(v, *v)
    except _Invalid as e:
        _nan_with(fn, str(e))
        return None
    return v


def accuracy_band(teacher_accuracy, disagreement, coverage=1.0) -> tuple[float, float]:
    """0/1 band for the student's accuracy, with the teacher's abstentions [derived bound] (DESIGN §2.2).

    Notation: on a set of points ``G`` (e.g. the probe's gold points) the teacher covers ``C ⊆ G``
    (gives a label) and abstains on ``U = G ∖ C``; ``π = coverage = |C|/|G|``;
    ``a = teacher_accuracy = P(w = y | C)`` and ``d = disagreement = P(s ≠ w | C)`` are measured on
    the *same* covered points. Then

    ``P(s = y | C) ∈ [max(0, a − d), min(a + d, 2 − a − d)]`` and
    ``P(s = y | G) ∈ [π·max(0, a − d), π·min(a + d, 2 − a − d) + (1 − π)]``.

    Proof. On ``C`` split the disagreement ``d = d₁ + d₂``, ``d₁ = P(s ≠ w, w = y | C) ≤ a``,
    ``d₂ = P(s ≠ w, w ≠ y | C) ≤ 1 − a``. Where the teacher is right the student is right iff it
    agrees, so ``P(s = y, w = y | C) = a − d₁``; where the teacher is wrong the student can be right
    only where it disagrees, so ``0 ≤ P(s = y, w ≠ y | C) ≤ d₂``. Hence
    ``a − d₁ ≤ P(s = y | C) ≤ a − d₁ + d₂ = a + d − 2d₁`` with ``max(0, d − (1 − a)) ≤ d₁ ≤ min(a, d)``,
    which gives the covered band (its upper end is the familiar ``a + d`` when ``d ≤ 1 − a`` and
    ``2 − a − d < 1`` beyond: disagreement in excess of the teacher's errors must be on points the
    teacher got right). On ``U`` the teacher gives no label, so the disagreement says nothing about
    the student's accuracy there: ``0 ≤ P(s = y | U) ≤ 1``. Finally
    ``P(s = y | G) = π·P(s = y | C) + (1 − π)·P(s = y | U)``. ∎

    With ``coverage=1`` (a teacher that labels every point) this is the classic
    ``|acc(s) − acc(w)| ≤ P(s ≠ w)`` band (triangle inequality on the disagreement sets), tightened
    at the top as above. It is exact (no sampling error) when the three inputs are measured on the
    same points — e.g. ``GoldRates``' ``teacher_accuracy`` and ``covered_disagreement`` with
    ``coverage`` = the covered share of the gold points bound ``GoldRates``' ``accuracy``, and with
    ``coverage=1`` its ``covered_accuracy``; with a user-given teacher score (which must be the
    teacher's accuracy *where it labels*) it holds up to that score's sampling error.

    Returns ``(lower, upper)`` floats; ``(NaN, NaN)`` + warning when an input is NaN or not in [0, 1].

    >>> accuracy_band(0.8, 0.0, coverage=0.5)   # copies the teacher where it speaks: 0.4 ... 0.9
    (0.4, 0.9)
    """
    v = _band_inputs("accuracy_band", teacher_accuracy=teacher_accuracy, disagreement=disagreement, coverage=coverage)
    if v is None:
        return NAN, NAN
    lo, hi = _band_on_covered(v["teacher_accuracy"], v["disagreement"])
    pi = v["coverage"]
    return pi * lo, pi * hi + (1.0 - pi)


def max_accuracy_gain(disagreement, coverage=1.0, teacher_accuracy=None) -> float:
    """Largest gain ``P(s = y | G) − P(w = y | C)`` still possible [derived bound] (DESIGN §2.2).

    The *gain* is the student's accuracy on all points ``G`` minus the teacher's accuracy where it
    labels (``C``; notation of :func:`accuracy_band`). From the band's upper end:

    - ``teacher_accuracy=a`` known: ``g_max = π·min(a + d, 2 − a − d) + (1 − π) − a``;
    - ``teacher_accuracy=None`` (label-free): ``g_max = π·d + (1 − π)``, the largest of the former
      over every ``a ∈ [0, 1]``. Proof: for ``a ≤ 1 − d`` the expression is
      ``π·d + (1 − π) − (1 − π)·a``, largest at ``a = 0``; for ``a ≥ 1 − d`` it is
      ``π(2 − a − d) + 1 − π − a``, decreasing in ``a``, and equal to ``d ≤ π·d + (1 − π)`` at
      ``a = 1 − d``. ∎

    So **no gain ≥ min_gain is possible iff** ``max_accuracy_gain(...) < min_gain`` ("iff": the top
    of the band is reached by a student that corrects the teacher's errors first, beyond them
    disagrees on points the teacher got right, and is right wherever the teacher abstains; label-free,
    by a teacher that is always wrong). With a teacher that labels every point and no teacher
    accuracy the condition is ``d < min_gain``, the classic rule. Points the
    teacher abstains on never count as exhausted: a student may be right on all of them whatever
    its disagreement with the teacher, so with ``π < 1`` the label-free ``g_max ≥ 1 − π``. The
    statement is exact on the points where ``d`` and ``π`` are measured (e.g. the held-out probe).

    Returns a float in ``[−1, 1]``; NaN + warning when an input is NaN or not in [0, 1].

    >>> round(max_accuracy_gain(0.0, coverage=0.5, teacher_accuracy=0.8), 12)  # still 0.1 to gain
    0.1
    >>> max_accuracy_gain(0.03)  # full coverage, label-free: the disagreement itself
    0.03
    """
    kw = {"disagreement": disagreement, "coverage": coverage}
    if teacher_accuracy is not None:
        kw["teacher_accuracy"] = teacher_accuracy
    v = _band_inputs("max_accuracy_gain", **kw)
    if v is None:
        return NAN
    d, pi = v["disagreement"], v["coverage"]
    if teacher_accuracy is None:
        return pi * d + (1.0 - pi)
    a = v["teacher_accuracy"]
    return pi * _band_on_covered(a, d)[1] + (1.0 - pi) - a


def ce_band(teacher_ce, kl_teacher_student, eps) -> tuple[float, float]:
    """Cross-entropy band ``|CE(s) − CE(w)| ≤ (1/eps)·sqrt(KL(p_w‖p_s)/2)`` [derived bound] (DESIGN §2.2).

    Holds when every probability entering the cross-entropies is ``≥ eps``: ``log`` is
    ``1/eps``-Lipschitz on ``[eps, 1]``, ``|p_s(y|x) − p_w(y|x)| ≤ TV(p_s(x), p_w(x)) ≤
    sqrt(KL(p_w(x)‖p_s(x))/2)`` (Pinsker), and the mean of square roots is at most the square root of
    the mean (Jensen), so the *mean* KL (``misfit``'s ``kl_teacher_student``) may be used. The CE is
    against gold; both CEs must be measured on the same points as the KL.

    Returns ``(lower, upper)`` clipped to ``[0, log(1/eps)]`` (the range of CE when probabilities
    are ``≥ eps``). ``(NaN, NaN)`` + warning on NaN, negative CE/KL, ``eps ∉ (0, 1]`` or
    ``teacher_ce > log(1/eps)`` (impossible when the premise holds).
    """
    v = _reals(teacher_ce=teacher_ce, kl_teacher_student=kl_teacher_student, eps=eps)
    try:
        _finite(v)
        _need(0.0 < v["eps"] <= 1.0, f"`eps`={v['eps']!r} must lie in (0, 1]")
        _need(v["teacher_ce"] >= 0.0, f"`teacher_ce`={v['teacher_ce']!r} must be >= 0")
        _need(v["kl_teacher_student"] >= 0.0, f"`kl_teacher_student`={v['kl_teacher_student']!r} must be >= 0")
        _need(
            v["teacher_ce"] <= -math.log(v["eps"]),
            f"`teacher_ce`={v['teacher_ce']!r} exceeds log(1/eps)={-math.log(v['eps']):.6g}, so the teacher's "
            "probabilities are not all >= eps and the band's premise fails",
        )
    except _Invalid as e:
        return _nan_with("ce_band", str(e), 2)
    width = math.sqrt(v["kl_teacher_student"] / 2.0) / v["eps"]
    top = -math.log(v["eps"])
    return max(0.0, v["teacher_ce"] - width), min(top, v["teacher_ce"] + width)


# ----------------------------------------------------------------------------------------------
# Charikar et al. 2024
# ----------------------------------------------------------------------------------------------
def charikar_predicted_gain(misfit_sq) -> float:
    """Predicted gain ``err_sq(w) − err_sq(s) = misfit_sq`` — a **prediction** (DESIGN §2.2).

    Charikar, Pabbaraju, Shiragur 2024, "Quantifying the Gain in Weak-to-Strong Generalization",
    Thm 1 [paper: gist; exact form recalled]: for squared loss, a convex strong class containing
    the target (realizable) and the student the projection of the teacher onto that class,
    ``err(s) ≤ err(w) − misfit``, with **equality** when the class is a linear subspace (an
    unregularised linear head on frozen features). A live run does not check realizability or that
    the student is the exact projection, and finite samples add ``O(√ε) + O(n^-1/4)`` terms, so
    this is a prediction to compare with :func:`squared_error_gain`, not a guarantee.
    Returns ``misfit_sq``; NaN + warning if it is NaN or negative.
    """
    v = _reals(misfit_sq=misfit_sq)
    try:
        _finite(v)
        _need(v["misfit_sq"] >= 0.0, f"`misfit_sq`={v['misfit_sq']!r} must be >= 0")
    except _Invalid as e:
        return _nan_with("charikar_predicted_gain", str(e))
    return v["misfit_sq"]


def squared_error_gain(teacher_sq_error, student_sq_error) -> float:
    """Measured gain ``err_sq(w) − err_sq(s)`` from gold [definition] (DESIGN §2.2).

    ``err_sq`` = mean squared distance to the gold target (``GoldSquaredError`` /
    ``gold_squared_error``: Brier score for classification), both on the same points. Compare with
    :func:`charikar_predicted_gain`. NaN + warning if an input is NaN or negative.
    """
    v = _reals(teacher_sq_error=teacher_sq_error, student_sq_error=student_sq_error)
    try:
        _finite(v)
        for k in v:
            _need(v[k] >= 0.0, f"`{k}`={v[k]!r} must be >= 0")
    except _Invalid as e:
        return _nan_with("squared_error_gain", str(e))
    return v["teacher_sq_error"] - v["student_sq_error"]


# ----------------------------------------------------------------------------------------------
# Lang, Sontag, Vijayaraghavan 2024, "Theoretical Analysis of Weak-to-Strong Generalization"
# ----------------------------------------------------------------------------------------------
# Source: the NeurIPS 2024 camera-ready text (arXiv 2405.16043), Section 3 (setup, Definitions 1-7),
# Appendix B (Lemma B.1, Theorems B.1-B.3 and their proofs). Certainty tags on each premise:
# [paper] stated in the theorem (or its setup); [paper: proof] used by a step of the printed proof
# but not in the statement; [derived] follows here from the statement/proof (argument given).
#
# Standing setup [paper, §3 and Definition 1], not checkable from numbers and left to the caller:
# X discrete, y and ỹ deterministic, neighbourhoods symmetric (x ∈ N(x') ⟺ x' ∈ N(x)), probabilities
# over the population D (on a probe: over its points, i.e. in-sample).

def _finish(name: str, value: float) -> float:
    """A bound below 0 means the inputs contradict the premises: NaN, not a clipped 0."""
    if value < 0.0:
        return _nan_with(name, f"the bound evaluates to {value:.6g} < 0, so the measured error is inconsistent with the assumed expansion/alpha: the theorem's premises do not hold here")
    return min(value, 1.0)


def lang_nonrobust_bound(gamma, eta) -> float:
    """Lang et al. 2024, **Lemma B.1**: ``P(R̄_η(f) | A) ≤ γ/η`` [paper], returned as ``min(1, γ/η)``.

    Premises:

    - ``E_{x∼D|A, x′∼N(x)}[f(x) ≠ f(x′)] ≤ γ`` — ``gamma`` is (an upper bound on) the average
      non-robustness on ``A``: the mean over ``x ∈ A`` of the fraction of its neighbours the student
      labels differently [paper]. It must be measured on the set the theorem conditions on:
      ``A = S_i`` for Thm B.1, ``A = T_i`` for Thm B.2/B.3.
    - ``γ > 0`` [paper]; ``γ = 0`` is accepted: the lemma holds for every ``γ′ > 0`` then, so
      ``P(R̄_η | A) = 0`` [derived]. ``gamma`` is a mean of fractions: in ``[0, 1]``.
    - ``η > 0`` [paper] — the robustness threshold ``R_η(f) = {x : r(f, x) ≤ η}`` of Definition 2.

    Markov's inequality on ``r(f, x)``; exact (no sampling error) when ``gamma`` is measured over the
    same points as the probability it bounds. NaN + warning when a premise fails.
    """
    v = _reals(gamma=gamma, eta=eta)
    try:
        _finite(v)
        _prob(v, "gamma")
        _need(0.0 < v["eta"] <= 1.0, f"`eta`={v['eta']!r} must lie in (0, 1] (Lemma B.1 needs eta > 0; r(f, x) <= 1)")
    except _Invalid as e:
        return _nan_with("lang_nonrobust_bound", str(e))
    return min(1.0, v["gamma"] / v["eta"])


def lang_covered_bound(err_teacher_fit, alpha, c, p_nonrobust=0.0, q=0.0) -> float:
    """Lang et al. 2024, **Thm B.1** (pseudolabel correction on the covered set ``S_i``) — a theorem.

    ``err(f, y | S_i) ≤ [err(f, ỹ | S_i) − α_i(2c′ − 1) + 2c′α_i P(R̄_η(f) | S_i)] / (1 − 2c′α_i)``,
    ``c′ = c / (1 − α_i + cα_i)``.

    Args:
        err_teacher_fit: ``err(f, ỹ | S_i)``, the student's disagreement with the teacher on ``S_i``.
        alpha: ``α_i = P(ỹ ≠ y | S_i)``, the teacher's error rate on ``S_i``.
        c: the robust-expansion constant of the premise below.
        p_nonrobust: ``P(R̄_η(f) | S_i)`` or an upper bound on it (e.g. :func:`lang_nonrobust_bound`
            of the average non-robustness on ``S_i``); the bound increases with it.
        q: the expansion's size threshold, chosen by the caller: ``ValueError`` outside ``[0, 1)``.

    Premises, each checked (a failure returns NaN with the reason):

    1. ``0 < α_i < 1/2`` [paper, §3: "We assume 0 < αi < 1/2 for all i"].
    2. ``c > 0`` [paper: "for some c > 0 and η ≥ 0"]; ``c ≤ 1`` is *not* a premise of B.1 (only its
       Corollary B.1 uses it).
    3. ``P(f ≠ ỹ or f not η-robust | S_i) ≤ 1 − q − α_i`` [paper]. Checked through the union bound
       ``err(f, ỹ | S_i) + p_nonrobust ≤ 1 − q − α_i``, which implies it; when the union bound fails
       the premise cannot be certified from these numbers and NaN is returned.
    4. ``0 ≤ q < 1`` [paper: proof of Lemma B.3, "used q < 1"]; ``q`` is a probability threshold.
    5. ``1 − 2c′α_i > 0`` [derived: the proof's last step divides by it; automatic when ``c ≤ 1``,
       binding only for ``c ≥ (1 − α_i)/α_i``].

    Not checkable here: ``M′_η(S_i^good, F)`` satisfies ``(c, q, η)``-robust expansion on
    ``(S_i^bad, S_i^good)`` with ``f ∈ F`` [paper] (Definitions 6-7: robust neighbourhood size,
    symmetric neighbourhoods). The proof applies it to one set only, ``R_η(f) ∩ S_i^good ∖
    {f ≠ y}``. A value below 0 contradicts the premises and is NaN too.

    Table check (paper Table 1): ``c=.848, α=.11, err=.12 → 0.0497`` (0.05); ``c=.497, α=.33,
    err=.29 → 0.374`` (0.37). Returns a float in ``[0, 1]`` (values above 1 are vacuous and shown as
    1). It is a *bound* when ``c`` and ``p_nonrobust`` are the theorem's quantities; with a plug-in
    ``ĉ`` it is an estimate of the right-hand side (module docstring).
    """
    v = _reals(err_teacher_fit=err_teacher_fit, alpha=alpha, c=c, p_nonrobust=p_nonrobust)
    q = _q(q, upper_open=True)
    try:
        _finite(v)
        _prob(v, "err_teacher_fit", "p_nonrobust")
        _alpha(v)
        _positive(v, "c")
        a, cc, e, p = v["alpha"], v["c"], v["err_teacher_fit"], v["p_nonrobust"]
        _need(
            e + p <= 1.0 - q - a,
            f"Thm B.1 premise P(f != teacher or f not eta-robust | S_i) <= 1 - q - alpha cannot be certified: "
            f"err_teacher_fit + p_nonrobust = {e + p:.6g} > 1 - q - alpha = {1.0 - q - a:.6g}",
        )
        cp = cc / (1.0 - a + cc * a)
        den = 1.0 - 2.0 * cp * a
        _need(den > 0.0, f"denominator 1 - 2c'alpha = {den!r} must be > 0 (c'={cp!r}; the proof divides by it)")
    except _Invalid as e:
        return _nan_with("lang_covered_bound", str(e))
    num = e - a * (2.0 * cp - 1.0) + 2.0 * cp * a * p
    return _finish("lang_covered_bound", num / den)


def lang_uncovered_bound(err_teacher_fit, alpha, c1, c2, p_nonrobust=0.0, q=0.0) -> float:
    """Lang et al. 2024, **Thm B.2** (coverage expansion to the uncovered set ``T_i``) — a theorem.

    With ``c̄ = max(c1, c2)`` and ``c = min(c1, c2)``:
    ``err(f, y | T_i) ≤ (1 + α_i/(c/c̄ − 2α_i))·P(R̄_η(f) | T_i) + max{q, (err(f, ỹ | S_i) − c2·α_i)/(c1 − (c1 + c2)α_i)}``.

    Args:
        err_teacher_fit: ``err(f, ỹ | S_i)`` on the covered set.
        alpha: ``α_i``, the teacher's error rate on ``S_i``.
        c1, c2: the expansion constants of the premises below.
        p_nonrobust: ``P(R̄_η(f) | T_i)`` or an upper bound on it (the bound increases with it).
        q: the expansions' size threshold, chosen by the caller: ``ValueError`` outside ``[0, 1]``.

    Premises, each checked (a failure returns NaN with the reason):

    1. ``0 < α_i < 1/2`` [paper, §3].
    2. ``c1, c2 > 0`` [paper: "there exists c1, c2, q, η > 0"]. The statement says ``q > 0``;
       ``q = 0`` is accepted [derived: robust expansion with ``q`` implies it with every
       ``q′ > q``, the fit condition 3 is strict so it holds for small ``q′ > 0`` too, and the bound
       at ``q = 0`` is the limit of the bounds at ``q′ → 0⁺``].
    3. ``err(f, ỹ | S_i) + P(R̄_η(f) | T_i) < c1(1 − q − α_i)`` [paper] — checked with
       ``p_nonrobust`` (an upper bound on ``P(R̄_η | T_i)`` only makes it harder to pass).
    4. ``c1 ≤ 1`` [paper: proof, Case 3, "since c1 ≤ 1"]; pass ``min(c1, 1)`` for a larger estimate
       (expansion with ``c1 > 1`` implies it with ``c1 = 1``).
    5. ``c1 − (c1 + c2)α_i > 0`` [derived: the proof's Case 1 divides by it; it follows from 6 when
       ``α_i < 1/2``, and always holds when ``c1 ≥ c2``].
    6. ``c/c̄ − 2α_i > 0`` **only where** ``P(R̄_η | T_i) > 0`` [derived: the proof's last step
       bounds ``c2α_i/(c1 − (c1 + c2)α_i)`` by ``α_i/(c/c̄ − 2α_i)``, a factor of
       ``P(R̄_η | T_i)``; with ``p_nonrobust = 0`` that term is 0 and the condition plays no role].

    Not checkable here: ``M_η(T_i, F)`` satisfies ``(c1, q, η)``-robust expansion on
    ``(S_i^good, T_i)`` and ``M′_η(T_i, F)`` satisfies ``(c2, q, η)``-robust expansion on
    ``(S_i^bad, T_i)`` [paper], symmetric neighbourhoods, ``η > 0`` [paper].

    Table check (paper Table 4): ``c1=.75, c2=.55, α=.33, err=.29, q=0 → 0.338`` (0.33); and
    ``(0.12, 0.11, 0.16, 0.98) → (0.12 − 0.98·0.11)/(0.16 − 1.14·0.11) = 0.3526``.
    It is a *bound* when the constants and ``p_nonrobust`` are the theorem's quantities; with plug-in
    ``ĉ``'s it is an estimate of the right-hand side (module docstring).
    """
    v = _reals(err_teacher_fit=err_teacher_fit, alpha=alpha, c1=c1, c2=c2, p_nonrobust=p_nonrobust)
    q = _q(q, upper_open=False)
    try:
        _finite(v)
        _prob(v, "err_teacher_fit", "p_nonrobust")
        _alpha(v)
        _positive(v, "c1", "c2")
        a, e, p, k1, k2 = v["alpha"], v["err_teacher_fit"], v["p_nonrobust"], v["c1"], v["c2"]
        _need(k1 <= 1.0, f"`c1`={k1!r} must be <= 1 (the proof of Thm B.2 uses c1 <= 1; expansion with c1 > 1 implies it with c1 = 1: pass min(c1, 1))")
        fit = k1 * (1.0 - q - a)
        _need(
            e + p < fit,
            f"Thm B.2 premise err(f, teacher | S_i) + P(not robust | T_i) < c1(1 - q - alpha) fails: "
            f"err_teacher_fit + p_nonrobust = {e + p:.6g} >= c1(1 - q - alpha) = {fit:.6g}",
        )
        den2 = k1 - (k1 + k2) * a
        _need(den2 > 0.0, f"denominator c1 - (c1 + c2)alpha = {den2!r} must be > 0 (the proof divides by it)")
        coef = 0.0
        if p > 0.0:
            den1 = min(k1, k2) / max(k1, k2) - 2.0 * a
            _need(den1 > 0.0, f"denominator c/c_bar - 2alpha = {den1!r} must be > 0 where p_nonrobust > 0 (it scales P(not robust | T_i))")
            coef = a / den1
    except _Invalid as e:
        return _nan_with("lang_uncovered_bound", str(e))
    value = (1.0 + coef) * p + max(q, (e - k2 * a) / den2)
    return _finish("lang_uncovered_bound", value)


def lang_uncovered_bound_b3(err_teacher_fit, alpha, c, p_nonrobust=0.0, q=0.0) -> float:
    """Lang et al. 2024, **Thm B.3** (coverage expansion, one constant) — a theorem.

    ``err(f, y | T_i) ≤ P(R̄_η(f) | T_i) + max{q, err(f, ỹ | S_i) / (c(1 − α_i))}``.

    Premises, each checked (a failure returns NaN with the reason):

    1. ``0 < α_i < 1/2`` [paper, §3].
    2. ``c > 0`` [paper: "for some c > 0"]; no upper limit (the old ``c ≤ 1`` was not a premise).
    3. ``q`` a threshold in ``[0, 1]``, chosen by the caller (``ValueError`` otherwise). B.3 holds
       for an *arbitrary* classifier ``f`` [paper]: there is no fit condition.

    Not checkable here: ``M_η(T_i, F)`` satisfies ``(c, q, η)``-robust expansion on
    ``(S_i^good, T_i)`` [paper]; symmetric neighbourhoods. ``err_teacher_fit``, ``p_nonrobust``
    (``P(R̄_η | T_i)`` or an upper bound) are probabilities. A *bound* when ``c`` and
    ``p_nonrobust`` are the theorem's quantities; with a plug-in ``ĉ`` an estimate.
    """
    v = _reals(err_teacher_fit=err_teacher_fit, alpha=alpha, c=c, p_nonrobust=p_nonrobust)
    q = _q(q, upper_open=False)
    try:
        _finite(v)
        _prob(v, "err_teacher_fit", "p_nonrobust")
        _alpha(v)
        _positive(v, "c")
    except _Invalid as e:
        return _nan_with("lang_uncovered_bound_b3", str(e))
    value = v["p_nonrobust"] + max(q, v["err_teacher_fit"] / (v["c"] * (1.0 - v["alpha"])))
    return _finish("lang_uncovered_bound_b3", value)
