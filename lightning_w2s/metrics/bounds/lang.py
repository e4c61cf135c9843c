"""Lang, Sontag, Vijayaraghavan 2024: Lemma B.1 and Theorems B.1-B.3, every premise checked.

"Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS 2024 (arXiv 2405.16043); docs/theory.md
§2.5. Numbers in, number out (the public home of these functions is
:mod:`lightning_w2s.metrics.bounds`). Each theorem's value is a *bound* only when its inputs are the
theorem's quantities: fed with the plug-in expansion estimate ``ĉ`` of
:func:`~lightning_w2s.metrics.expansion.lang_expansion`, it is an **estimate** of the theorem's
right-hand side (a predicted error), and is logged as one
(:func:`~lightning_w2s.metrics.correction.lang_bounds`).
"""

from __future__ import annotations

import math

from lightning_w2s.metrics.bounds._inputs import _finite, _Invalid, _nan_with, _need, _prob, _q, _reals

__all__ = ["lang_covered_bound", "lang_nonrobust_bound", "lang_uncovered_bound", "lang_uncovered_bound_b3"]


def _positive(vals: dict[str, float], *names: str) -> None:
    for k in names:
        _need(0.0 < vals[k] < math.inf, f"`{k}`={vals[k]!r} must be a finite number > 0 (an expansion constant)")


def _common_premises(v: dict[str, float], *constants: str) -> None:
    """The premises B.1-B.3 share: finite inputs, probabilities in [0, 1], ``0 < α < 1/2``, positive
    expansion constants (each raises :class:`_Invalid` with the reason)."""
    _finite(v)
    _prob(v, "err_teacher_fit", "p_nonrobust")
    _alpha(v)
    _positive(v, *constants)


def _alpha(vals: dict[str, float]) -> None:
    a = vals["alpha"]
    _need(0.0 < a < 0.5, f"`alpha`={a!r} must lie in (0, 1/2): Lang et al. §3 assume 0 < alpha_i < 1/2 (the teacher is wrong on some covered points of the class, and right more often than wrong)")


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
        _common_premises(v, "c")
        a, cc, e, p = v["alpha"], v["c"], v["err_teacher_fit"], v["p_nonrobust"]
        _need(
            e + p <= 1.0 - q - a,
            f"Thm B.1 premise P(f != teacher or f not eta-robust | S_i) <= 1 - q - alpha cannot be certified: err_teacher_fit + p_nonrobust = {e + p:.6g} > 1 - q - alpha = {1.0 - q - a:.6g}",
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
        _common_premises(v, "c1", "c2")
        a, e, p, k1, k2 = v["alpha"], v["err_teacher_fit"], v["p_nonrobust"], v["c1"], v["c2"]
        _need(k1 <= 1.0, f"`c1`={k1!r} must be <= 1 (the proof of Thm B.2 uses c1 <= 1; expansion with c1 > 1 implies it with c1 = 1: pass min(c1, 1))")
        fit = k1 * (1.0 - q - a)
        _need(e + p < fit, f"Thm B.2 premise err(f, teacher | S_i) + P(not robust | T_i) < c1(1 - q - alpha) fails: err_teacher_fit + p_nonrobust = {e + p:.6g} >= c1(1 - q - alpha) = {fit:.6g}")
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
        _common_premises(v, "c")
    except _Invalid as e:
        return _nan_with("lang_uncovered_bound_b3", str(e))
    value = v["p_nonrobust"] + max(q, v["err_teacher_fit"] / (v["c"] * (1.0 - v["alpha"])))
    return _finish("lang_uncovered_bound_b3", value)
