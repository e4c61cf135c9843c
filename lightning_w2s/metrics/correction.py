"""Lang et al.'s predicted errors per gold class: Thm B.1-B.3 fed with measured rates (Lang, Sontag, Vijayaraghavan 2024).

Lang, Sontag, Vijayaraghavan, "Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS
2024 (arXiv 2405.16043); docs/theory.md §2.5. :func:`lang_bounds` assembles Thm B.1 / B.2 / B.3 per
class from :mod:`lightning_w2s.metrics.bounds` (at the plug-in ĉ: estimates, not bounds) next to the
measured gold errors, fed with the per-class rates of the gold counter
(:func:`~lightning_w2s.metrics.gold_counts.correction_rates`, notation there), the robustness of
:mod:`lightning_w2s.metrics.robustness` and the expansion estimates of
:mod:`lightning_w2s.metrics.expansion` (that module's docstring derives which sets expand where, why
ĉ is not the theorems' constant, and why the value is ≥ the measured error on the probe when every
point is η-robust).
"""

from __future__ import annotations

import math
import warnings

import torch

from lightning_w2s.metrics.bounds import lang_covered_bound, lang_uncovered_bound, lang_uncovered_bound_b3
from lightning_w2s.metrics.stats import F64 as _F64
from lightning_w2s.metrics.validation import check_choice

__all__ = ["lang_bounds"]


def _weighted(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``Σ w_i v_i / Σ w_i`` over classes with ``w_i > 0``; NaN if one of those ``v_i`` is NaN."""
    used = weights > 0
    if not used.any() or torch.isnan(values[used]).any():
        return torch.tensor(float("nan"), dtype=_F64)
    return (values[used] * weights[used]).sum() / weights[used].sum()


def lang_bounds(rates: dict, robustness: dict, expansion: dict, q: float = 0.0, nonrobust: str = "markov") -> dict:
    """Thm B.1 (covered) and B.2/B.3 (uncovered) per gold class at the plug-in ĉ — predicted errors —
    next to the measured gold errors.

    Lang et al. 2024 [paper: theorems, via :mod:`lightning_w2s.metrics.bounds`] fed with measured
    quantities [our live adaptation]: ``α_i`` and ``err(f, ỹ | S_i)`` from :func:`~lightning_w2s.metrics.gold_counts.correction_rates`,
    ``P(R̄_η | S_i)``, ``P(R̄_η | T_i)`` from :func:`~lightning_w2s.metrics.robustness.neighbour_robustness` (``nonrobust="markov"``:
    the label-free Lemma B.1 bound ``min(1, γ̂/η)``; ``"exact"``: the empirical fraction on the
    probe — both are valid inputs because every right-hand side increases with ``P(R̄_η)``) and the
    ``ĉ``'s from :func:`~lightning_w2s.metrics.expansion.lang_expansion`. Since expansion with ``c > 1`` implies it with ``c = 1`` and
    the theorems take ``c ∈ (0, 1]``, ``ĉ`` is clipped to 1 [derived]. ``q`` (the expansion's size
    threshold) goes to all three theorems.

    **An estimate, not a bound.** ``ĉ`` is not the paper's robust-expansion constant
    (:mod:`lightning_w2s.metrics.expansion` lists the four differences), so each value is what the
    theorem *predicts* for the student's gold error if ``ĉ`` were that constant: with non-robust
    points it can fall below the measured error, even on the probe itself. With every point η-robust
    and the current check's set among the candidate sets it is ≥ the measured error on the probe
    [derived; tested], which certifies nothing beyond that measured error. A diagnostic next to the
    measured error, never a guarantee about unseen data.

    Returns:
        ``(k,)`` float64 vectors ``covered_predicted_error`` (B.1), ``covered_error``
        (= ``err(f, y | S_i)``), ``uncovered_predicted_error_b2``, ``uncovered_predicted_error_b3``,
        ``uncovered_predicted_error`` (the smaller of the two where finite), ``uncovered_error``
        (= ``err(f, y | T_i)``), the inputs used ``p_nonrobust_covered``, ``p_nonrobust_uncovered``;
        pooled 0-d values ``covered_predicted_error_pooled`` / ``uncovered_predicted_error_pooled``
        (class-mass-weighted means of the per-class values, the form ``err(f,y|S) = Σ_i P(S_i|S)
        err(f,y|S_i)`` [derived]; NaN if a class with points has no value) and
        ``covered_error_pooled`` / ``uncovered_error_pooled``; and ``reasons``: a list of strings, one
        per NaN value (also emitted as one RuntimeWarning).
    """
    check_choice("nonrobust", nonrobust, ("markov", "exact"))
    eta_r, eta_e = float(robustness["eta"]), float(expansion["eta"])
    if eta_r != eta_e:
        raise ValueError(f"`robustness` was computed with eta={eta_r} but `expansion` with eta={eta_e}: the expansion threshold must equal the robustness threshold for the bounds to apply")
    key = "p_nonrobust_markov" if nonrobust == "markov" else "p_nonrobust"
    pr_s = robustness[f"{key}_S_per_class"].double().cpu()
    pr_t = robustness[f"{key}_T_per_class"].double().cpu()
    alpha = rates["alpha_per_class"].double().cpu()
    fit = rates["err_teacher_fit_per_class"].double().cpu()
    k = alpha.shape[0]
    c_gb = expansion["c_good_to_bad"].double().cpu()
    c_tg = expansion["c_uncovered_to_good"].double().cpu()
    c_tb = expansion["c_uncovered_to_bad"].double().cpu()
    nan = float("nan")
    b1, b2, b3 = (torch.full((k,), nan, dtype=_F64) for _ in range(3))
    reasons: list[str] = []

    def call(fn, label: str, i: int, **kw) -> float:
        missing = [n for n, v in kw.items() if math.isnan(v)]
        if missing:
            reasons.append(f"class {i}: {label} not computed, no estimate of {', '.join(missing)}")
            return nan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = fn(**kw)
        for w in caught:
            reasons.append(f"class {i}: {label}: {w.message}")
        return value

    n_cov = rates["n_covered_per_class"].double().cpu()
    n_unc = rates["n_uncovered_per_class"].double().cpu()

    def clip1(c) -> float:  # expansion with c > 1 implies expansion with c = 1 [derived]
        c = float(c)
        return c if math.isnan(c) else min(c, 1.0)

    for i in range(k):
        a, e = float(alpha[i]), float(fit[i])
        if n_cov[i] > 0:
            b1[i] = call(lang_covered_bound, "Thm B.1", i, err_teacher_fit=e, alpha=a, c=clip1(c_gb[i]), p_nonrobust=float(pr_s[i]), q=q)
        if n_unc[i] > 0:
            c1, c2 = clip1(c_tg[i]), clip1(c_tb[i])
            b2[i] = call(lang_uncovered_bound, "Thm B.2", i, err_teacher_fit=e, alpha=a, c1=c1, c2=c2, p_nonrobust=float(pr_t[i]), q=q)
            b3[i] = call(lang_uncovered_bound_b3, "Thm B.3", i, err_teacher_fit=e, alpha=a, c=c1, p_nonrobust=float(pr_t[i]), q=q)
    unc = torch.fmin(b2, b3)
    if reasons:
        warnings.warn("lang_bounds: " + "; ".join(reasons), RuntimeWarning, stacklevel=2)
    cov_err = rates["err_gold_covered_per_class"].double().cpu()
    unc_err = rates["err_gold_uncovered_per_class"].double().cpu()
    return {
        "covered_predicted_error": b1,
        "covered_error": cov_err,
        "uncovered_predicted_error_b2": b2,
        "uncovered_predicted_error_b3": b3,
        "uncovered_predicted_error": unc,
        "uncovered_error": unc_err,
        "p_nonrobust_covered": pr_s,
        "p_nonrobust_uncovered": pr_t,
        "covered_predicted_error_pooled": _weighted(b1, n_cov),
        "uncovered_predicted_error_pooled": _weighted(unc, n_unc),
        "covered_error_pooled": _weighted(cov_err, n_cov),
        "uncovered_error_pooled": _weighted(unc_err, n_unc),
        "reasons": reasons,
    }
