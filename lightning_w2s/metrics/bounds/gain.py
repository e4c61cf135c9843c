"""The 0/1 accuracy band, the gain still possible, the CE band and Charikar's prediction (docs/theory.md §2.2).

Bounds and predictions on the student's *gain over its teacher*, numbers in, number out (the public
home of these functions is :mod:`lightning_w2s.metrics.bounds`, which also says what kind of
statement each is):

- :func:`accuracy_band` and :func:`max_accuracy_gain` — **derived bounds** on the student's 0/1
  accuracy from the teacher's accuracy and the student–teacher disagreement, with the teacher's
  abstentions (coverage) accounted for;
- :func:`ce_band` — a **derived bound** on the student's cross-entropy from the KL misfit;
- :func:`charikar_predicted_gain` — Charikar et al. 2024's Thm 1 as a **prediction** of the
  squared-error gain, and :func:`squared_error_gain`, the measured gain it is compared with.
"""

from __future__ import annotations

import math
from fractions import Fraction

from lightning_w2s.metrics.bounds._inputs import NAN, _finite, _Invalid, _nan_with, _need, _prob, _reals

__all__ = ["accuracy_band", "ce_band", "charikar_predicted_gain", "max_accuracy_gain", "squared_error_gain"]


# ----------------------------------------------------------------------------------------------
# derived bounds
# ----------------------------------------------------------------------------------------------
def _exact(x: float) -> tuple[Fraction, bool]:
    """``x`` as a fraction: the ratio of counts it rounds from when there is one (denominator
    ≤ 2²⁴ and the same float), else the float's exact binary value; and whether it was a ratio."""
    q = Fraction(x).limit_denominator(1 << 24)
    return (q, True) if float(q) == x else (Fraction(x), False)


def _to_float(q: Fraction, exact: bool, side: int) -> float:
    """``q`` rounded to the nearest float when the inputs were ratios of counts (the rates measured on
    the same points round the same way, so a band end that is attained equals the measured rate and
    one that holds still holds after rounding: rounding is monotone); otherwise rounded outward
    (``side`` −1: down, +1: up), so that no end of the band overshoots the exact value."""
    f = float(q)
    if exact or Fraction(f) == q or (Fraction(f) < q) == (side < 0):
        return f
    return math.nextafter(f, side * math.inf)


def _band(a: float, d: float, pi: float, num_classes: int | None) -> tuple[float, float]:
    """The band of :func:`accuracy_band` computed in exact fractions and rounded once (:func:`_to_float`)."""
    (qa, ea), (qd, ed), (qp, ep) = _exact(a), _exact(d), _exact(pi)
    lo, hi = _covered_exact(qa, qd, num_classes)
    exact = ea and ed and ep
    return _to_float(qp * lo, exact, -1), _to_float(qp * hi + 1 - qp, exact, +1)


def _covered_exact(qa: Fraction, qd: Fraction, num_classes: int | None) -> tuple[Fraction, Fraction]:
    """``P(s = y | C)`` band on the covered points (proof in :func:`accuracy_band`)."""
    lo = abs(qa - qd) if num_classes == 2 else max(Fraction(0), qa - qd)
    return lo, min(qa + qd, 2 - qa - qd)


def _band_inputs(fn: str, **kw) -> dict[str, float] | None:
    v = _reals(**kw)
    try:
        _finite(v)
        _prob(v, *v)
    except _Invalid as e:
        _nan_with(fn, str(e))
        return None
    return v


def accuracy_band(teacher_accuracy, disagreement, coverage=1.0, num_classes=None) -> tuple[float, float]:
    """0/1 band for the student's accuracy, with the teacher's abstentions [derived bound] (docs/theory.md §2.2).

    Notation: on a set of points ``G`` (e.g. the probe's gold points) the teacher covers ``C ⊆ G``
    (gives a label) and abstains on ``U = G ∖ C``; ``π = coverage = |C|/|G|``;
    ``a = teacher_accuracy = P(w = y | C)`` and ``d = disagreement = P(s ≠ w | C)`` are measured on
    the *same* covered points. Then

    ``P(s = y | C) ∈ [ℓ, min(a + d, 2 − a − d)]`` and
    ``P(s = y | G) ∈ [π·ℓ, π·min(a + d, 2 − a − d) + (1 − π)]``,

    with ``ℓ = |a − d|`` for ``num_classes=2`` and ``ℓ = max(0, a − d)`` otherwise (``None``: any
    number of classes).

    Proof. On ``C`` split the disagreement ``d = d₁ + d₂``, ``d₁ = P(s ≠ w, w = y | C) ≤ a``,
    ``d₂ = P(s ≠ w, w ≠ y | C) ≤ 1 − a``. Where the teacher is right the student is right iff it
    agrees, so ``P(s = y, w = y | C) = a − d₁``; where the teacher is wrong the student can be right
    only where it disagrees, so ``0 ≤ P(s = y, w ≠ y | C) ≤ d₂``. Hence
    ``a − d₁ ≤ P(s = y | C) ≤ a − d₁ + d₂ = a + d − 2d₁`` with ``max(0, d − (1 − a)) ≤ d₁ ≤ min(a, d)``,
    which gives the covered band (lower end ``a − min(a, d) = max(0, a − d)``). With two classes a
    student that disagrees with a wrong teacher is right, so ``P(s = y, w ≠ y | C) = d₂`` exactly and
    ``P(s = y | C) = a + d − 2d₁ ≥ a + d − 2·min(a, d) = |a − d|``. With three or more classes the lower
    end ``max(0, a − d)`` is attained: take ``d₁ = min(a, d)`` (feasible, ``d − d₁ ≤ 1 − a``) and a
    student that, where it disagrees with a wrong teacher, picks a third class. Both ends are attained
    whenever the rates are ratios of counts on the points (the tests enumerate every small group) (its upper end is the familiar ``a + d`` when ``d ≤ 1 − a`` and
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

    Rounding: the ends are computed in exact fractions (a rate within rounding of a ratio of counts
    with denominator ≤ 2²⁴ is taken as that ratio) and rounded once, to the nearest float when every
    input is such a ratio (an attained end then equals the measured rate, computed as one division),
    else outward, so that an end never overshoots by an ulp.

    Returns ``(lower, upper)`` floats; ``(NaN, NaN)`` + warning when an input is NaN or not in [0, 1].

    >>> accuracy_band(0.8, 0.0, coverage=0.5)   # copies the teacher where it speaks: 0.4 ... 0.9
    (0.4, 0.9)
    >>> accuracy_band(0.2, 0.9, num_classes=2)  # two classes: 7 in 10 disagreements fix a wrong teacher
    (0.7, 0.9)
    >>> accuracy_band(7 / 9, 4 / 9, coverage=0.9, num_classes=3)[0]
    0.3
    """
    v = _band_inputs("accuracy_band", teacher_accuracy=teacher_accuracy, disagreement=disagreement, coverage=coverage)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"`num_classes`={num_classes!r} must be an int >= 2 or None (any number of classes)")
    if v is None:
        return NAN, NAN
    return _band(v["teacher_accuracy"], v["disagreement"], v["coverage"], num_classes)


def max_accuracy_gain(disagreement, coverage=1.0, teacher_accuracy=None) -> float:
    """Largest gain ``P(s = y | G) − P(w = y | C)`` still possible [derived bound] (docs/theory.md §2.2).

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
    return pi * min(a + d, 2.0 - a - d) + (1.0 - pi) - a


def ce_band(teacher_ce, kl_teacher_student, eps) -> tuple[float, float]:
    """Cross-entropy band ``|CE(s) − CE(w)| ≤ (1/eps)·sqrt(KL(p_w‖p_s)/2)`` [derived bound] (docs/theory.md §2.2).

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
            f"`teacher_ce`={v['teacher_ce']!r} exceeds log(1/eps)={-math.log(v['eps']):.6g}, so the teacher's probabilities are not all >= eps and the band's premise fails",
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
    """Predicted gain ``err_sq(w) − err_sq(s) = misfit_sq`` — a **prediction** (docs/theory.md §2.2).

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
    """Measured gain ``err_sq(w) − err_sq(s)`` from gold [definition] (docs/theory.md §2.2).

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
