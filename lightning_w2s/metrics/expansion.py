"""Coverage expansion estimates for Thm B.1-B.3 (Lang, Sontag, Vijayaraghavan 2024, Section 5).

Lang, Sontag, Vijayaraghavan, "Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS
2024 (arXiv 2405.16043); docs/theory.md §2.5. Notation: ``y`` gold label, ``ỹ`` teacher label, ``f`` the
student's prediction (argmax). The teacher *covers* ``S`` (it gives a label) and abstains on ``T``.
For a gold class ``i``: ``S_i = S ∩ {y = i}``, ``T_i = T ∩ {y = i}``, ``S_i^good = S_i ∩ {ỹ = y}``,
``S_i^bad = S_i ∩ {ỹ ≠ y}``. All probabilities are empirical over the probe's gold points.

**Expansion** — :func:`expansion_estimate` (the paper's Section 5 statistic against a
neighbour oracle, over a caller-supplied family of sets) and :func:`lang_expansion` (the
families the three theorems need, built from the student's sets at past checks), then
:func:`~lightning_w2s.metrics.correction.lang_bounds`, which assembles Thm B.1 / B.2 / B.3 per class from
:mod:`lightning_w2s.metrics.bounds` next to the measured gold errors.

Which sets expand where [paper: Appendix B, the families M_η / M′_η and the proofs]: the paper's
expansion on ``(A, B)`` asks ``P_{1−η}(U, A) > c·P(U | B)`` for the sets ``U ⊆ B`` of a family with
``P(U | B) > q`` (Definitions 3, 4, 6, 7), and the proofs apply it to the student's own sets:

- Thm B.1 (covered, "good → bad"): ``B = S_i^good``, ``A = S_i^bad``, ``U = R_η(f) ∩ {x ∈
  S_i^good : f(x) = i}`` (robust points where the student is right on good labels). Without the
  robust part (``P(R̄_η) = 0``) this gives exactly the B.1 expression (the two forms agree to
  rounding on random inputs: ``tests/test_correction.py``).
- Thm B.2/B.3 (uncovered, "T → S"): ``B = T_i``; ``c1``: ``A = S_i^good``, ``U = R_η(f) ∩ {x ∈ T_i :
  f(x) ≠ i}``; ``c2``: ``A = S_i^bad``, ``U = R_η(f) ∩ {x ∈ T_i : f(x) = i}``. B.3 uses ``c = c1``.

**What ĉ is — an estimate, not the theorems' constant** [our live adaptation]. The ``ĉ`` computed
here differs from the robust-expansion constant the theorems assume in four ways:

1. *neighbourhood size*: the paper's robust neighbourhood size ``P_{1−η}(U, A)`` (Definition 6) is
   the smallest ``P(V | A)`` over sets ``V`` carrying a ``1 − η`` share of the edge weight between
   ``N(U)`` and ``U``; here ``mode="set"`` counts ``x ∈ A`` with more than an ``η`` share of its own
   neighbours in ``U`` and ``mode="sample"`` the Section 5 oracle statistic — neither is Definition 6;
2. *sets*: the candidate sets are the student's label sets without the robust part ``R_η(f)``;
3. *neighbourhoods*: the paper's ``N`` is symmetric (Definition 1) and ``r(f, x)`` averages over a
   distributional neighbour; a kNN table is not symmetric;
4. *sampling*: probabilities are the probe's; the family is the student's past checks (the paper
   minimises over the hypothesis class and controls ``ĉ − c`` only up to unspecified constants,
   Theorem 5.1 "informal").

So a theorem evaluated at ``ĉ`` (:func:`~lightning_w2s.metrics.correction.lang_bounds`) is a
**plug-in estimate of the theorem's right-hand side**, to be logged as a predicted error, never as a
bound: with non-robust points it can fall below the measured error even in-sample
(``0.7114 < 0.7164``; ``tests/test_bounds_premises.py`` shows one). With every point η-robust
(``γ̂ = 0``) and the current check's set in the family, the value is ≥ the probe's measured gold error
[derived; tested], which certifies nothing beyond that measured error. A bound on unseen data would
need a lower confidence bound on the population's robust-expansion constant of the student's set:
not available (items 1-4).
"""

from __future__ import annotations

import warnings

import torch

from lightning_w2s.metrics.neighbours import check_neighbours
from lightning_w2s.metrics.stats import F64 as _F64
from lightning_w2s.metrics.validation import as_tensor, check_choice, check_labels, check_mask, check_scalar, describe

__all__ = ["expansion_estimate", "lang_expansion"]


MODES = ("set", "sample")


def expansion_estimate(neighbours, a_mask, b_mask, candidate_sets, eta: float = 0.0, q: float = 0.0, mode: str = "set") -> dict[str, torch.Tensor]:
    """Expansion estimate ``ĉ = min_U P(N(U) | A) / P(U | B)`` over a family of sets ``U ⊆ B``.

    [paper] Relative expansion on ``(A, B)`` (Lang et al. 2024, Definition 3 / Figure 1): for the
    sets ``U ⊆ B`` of a family with ``P(U | B) > q``, ``P(N(U) | A) ≥ c·P(U | B)``. Section 5 checks
    it from finite data: ``ĉ(U) = P_A(n(x) ∈ U) / P_B(U)`` with ``n(x)`` a neighbour of ``x`` from
    an oracle (the paper: paraphrases/augmentations), minimised over a family of sets (the paper:
    sets of hypotheses from the student class, e.g. students retrained on subsets).

    [our live adaptation] the oracle is the fixed neighbour table (kNN in a frozen embedding or
    augmentations), probabilities are empirical over probe points, and the family is whatever the
    caller supplies — in the monitor, the student's own sets at past checks (:func:`lang_expansion`).
    ``mode`` says when ``x ∈ A`` counts as expanding into ``U``:

    - ``"set"`` (default): ``x ∈ N_η(U)`` iff the fraction of ``N(x)`` inside ``U`` exceeds ``η``;
      with ``η = 0`` this is "some neighbour of ``x`` is in ``U``", the set neighbourhood ``N(U)``.
      ``η`` must equal the robustness threshold of ``P(R̄_η)`` when the estimate feeds a bound (an
      η-robust ``x`` with more than an ``η`` fraction of neighbours in ``U`` takes ``U``'s label).
    - ``"sample"``: the mean over ``x ∈ A`` of that fraction = ``P_A(n(x) ∈ U)`` for one uniform
      neighbour ``n(x) ∈ N(x)``, the literal Section 5 statistic; never above ``"set"`` at η = 0.

    Args:
        neighbours: ``(n, k)`` neighbour table.
        a_mask, b_mask: ``(n,)`` bool, the sets ``A`` and ``B``.
        candidate_sets: ``(m, n)`` bool (or a sequence of ``(n,)`` masks); each is intersected
            with ``B``.
        eta: threshold in ``[0, 1]`` for ``mode="set"`` (ignored by ``"sample"``).
        q: only sets with ``P(U | B) > q`` constrain ``c`` (the theorems' ``q``); others, and empty
            sets (for which the inequality holds for every ``c``), are skipped.

    Returns:
        ``c_hat`` (0-d; NaN + RuntimeWarning if ``A`` or ``B`` is empty or no set qualifies),
        ``ratios`` ``(m,)`` (NaN for skipped sets), ``p_neighbourhood`` ``(m,)`` = ``P(N(U) | A)``,
        ``p_set`` ``(m,)`` = ``P(U | B)``, ``argmin`` (0-d int64, ``-1`` if none).
    """
    nb = check_neighbours(neighbours)
    n = nb.shape[0]
    a = check_mask("a_mask", a_mask, n).to(nb.device)
    b = check_mask("b_mask", b_mask, n).to(nb.device)
    eta = check_scalar("eta", eta, float, min_val=0.0, max_val=1.0)
    check_choice("mode", mode, MODES)
    q = check_scalar("q", q, float, min_val=0.0, max_val=1.0, include_boundaries="left")
    if isinstance(candidate_sets, (list, tuple)):
        if not candidate_sets:
            raise ValueError("`candidate_sets` is empty: pass at least one (n,) bool mask")
        candidate_sets = torch.stack([check_mask("candidate_sets[j]", u, n) for u in candidate_sets])
    u = as_tensor("candidate_sets", candidate_sets)
    if u.ndim == 1:
        u = u[None]
    if u.ndim != 2 or u.shape[1] != n or u.shape[0] < 1:
        raise ValueError(f"`candidate_sets` must be (m, n) bool with n = {n}, got {describe(u)}")
    if u.dtype != torch.bool:
        raise TypeError(f"`candidate_sets` must be bool masks, got {describe(u)}")
    u = u.to(nb.device) & b[None]
    m = u.shape[0]
    nan = torch.full((m,), float("nan"), dtype=_F64, device=nb.device)
    n_a, n_b = a.sum(), b.sum()
    if n_a == 0 or n_b == 0:
        warnings.warn(f"expansion_estimate: {'A' if n_a == 0 else 'B'} is empty; c_hat is NaN", RuntimeWarning, stacklevel=2)
        return {"c_hat": torch.tensor(float("nan"), dtype=_F64), "ratios": nan, "p_neighbourhood": nan, "p_set": nan, "argmin": torch.tensor(-1)}
    nb_a = nb[a]  # (|A|, k)
    p_nb = torch.empty(m, dtype=_F64, device=nb.device)
    for j in range(m):  # one set at a time: memory O(|A| k), not O(m |A| k)
        frac = u[j][nb_a].to(_F64).mean(dim=1)  # fraction of N(x) inside U, x in A
        p_nb[j] = (frac if mode == "sample" else (frac > eta).to(_F64)).mean()
    p_set = u.sum(dim=1).to(_F64) / n_b.to(_F64)
    usable = p_set > q
    ratios = torch.where(usable, p_nb / torch.where(usable, p_set, torch.ones_like(p_set)), nan)
    if not usable.any():
        warnings.warn(f"expansion_estimate: no candidate set U has P(U|B) > q = {q} (all {m} empty or too small); c_hat is NaN", RuntimeWarning, stacklevel=2)
        return {"c_hat": torch.tensor(float("nan"), dtype=_F64), "ratios": ratios, "p_neighbourhood": p_nb, "p_set": p_set, "argmin": torch.tensor(-1)}
    j = torch.where(usable, ratios, torch.full_like(ratios, float("inf"))).argmin()
    return {"c_hat": ratios[j], "ratios": ratios, "p_neighbourhood": p_nb, "p_set": p_set, "argmin": j}


#: the three families of :func:`lang_expansion`: name -> (the theorem(s), A, B, U described).
LANG_EXPANSIONS = {
    "c_good_to_bad": "Thm B.1: U = {x in S_i^good : f(x) = i} inside B = S_i^good, expanding into A = S_i^bad",
    "c_uncovered_to_good": "Thm B.2 c1, Thm B.3 c: U = {x in T_i : f(x) != i} inside B = T_i, into A = S_i^good",
    "c_uncovered_to_bad": "Thm B.2 c2: U = {x in T_i : f(x) = i} inside B = T_i, into A = S_i^bad",
}


def lang_expansion(neighbours, prediction_history, teacher_pred, gold, covered, num_classes: int, eta: float = 0.5, q: float = 0.0, mode: str = "set") -> dict[str, torch.Tensor]:
    """Per-class expansion estimates for Thm B.1, B.2, B.3 from the student's sets at past checks.

    For each gold class ``i`` and each of the three families in :data:`LANG_EXPANSIONS` (the sets
    each theorem's proof applies expansion to, see the module docstring [derived]), the candidate
    family is that set of the student **at every check in** ``prediction_history`` (include the
    current check: then, with every point η-robust, the bound holds on the probe exactly), and
    ``ĉ`` is :func:`expansion_estimate` over it [paper: Section 5 statistic; our live adaptation:
    the family and the kNN oracle]. ``ĉ`` is an *estimate*, not the theorems' robust-expansion
    constant (module docstring): what a theorem gives at ``ĉ`` is a plug-in estimate, not a bound.

    Args:
        neighbours: ``(n, k)`` neighbour table.
        prediction_history: ``(h, n)`` int student argmax at ``h`` checks (``-1`` = not seen), e.g.
            the ``predictions`` of :class:`NeighbourRobustness` stacked; or a sequence of ``(n,)``.
        teacher_pred, gold, covered: ``(n,)`` probe-level teacher labels (read where covered), gold
            (``-1`` unknown) and coverage mask.
        num_classes: ``k``.
        eta, q, mode: as in :func:`expansion_estimate`; ``eta`` must equal the robustness ``η`` of
            :func:`neighbour_robustness` (both default to 0.5; :func:`lang_bounds` checks it).

    Returns:
        ``c_good_to_bad``, ``c_uncovered_to_good``, ``c_uncovered_to_bad``: ``(k,)`` float64
        (NaN where the class has no such sets); ``argmin_*``: ``(k,)`` int64 index of the
        minimising check (``-1`` none); ``eta``.
    """
    k = check_scalar("num_classes", num_classes, int, min_val=2)
    nb = check_neighbours(neighbours)
    n = nb.shape[0]
    if isinstance(prediction_history, (list, tuple)):
        if not prediction_history:
            raise ValueError("`prediction_history` is empty: pass at least the current check's predictions")
        prediction_history = torch.stack([as_tensor("prediction_history[j]", p) for p in prediction_history])
    hist = as_tensor("prediction_history", prediction_history)
    if hist.ndim == 1:
        hist = hist[None]
    if hist.ndim != 2 or hist.shape[1] != n or hist.shape[0] < 1:
        raise ValueError(f"`prediction_history` must be (h, n) with n = {n}, got {describe(hist)}")
    if hist.is_floating_point() or hist.dtype == torch.bool:
        raise TypeError(f"`prediction_history` must hold integer predictions, got {describe(hist)}")
    hist = hist.long().to(nb.device)
    if (hist < -1).any() or (hist >= k).any():
        raise ValueError(f"`prediction_history` must lie in [-1, {k - 1}], got values in [{int(hist.min())}, {int(hist.max())}]")
    g = check_labels("gold", gold, n, k, allow_minus_one=True).to(nb.device)
    cov = check_mask("covered", covered, n).to(nb.device)
    t = check_labels("teacher_pred", teacher_pred, n, None, allow_minus_one=True).to(nb.device)
    out = {name: torch.full((k,), float("nan"), dtype=_F64) for name in LANG_EXPANSIONS}
    out.update({f"argmin_{name}": torch.full((k,), -1, dtype=torch.long) for name in LANG_EXPANSIONS})
    seen = hist >= 0
    for i in range(k):
        s_i = cov & (g == i)
        good, bad = s_i & (t == i), s_i & (t != i)
        t_i = ~cov & (g == i)
        pairs = {"c_good_to_bad": (bad, good, seen & (hist == i)), "c_uncovered_to_good": (good, t_i, seen & (hist != i)), "c_uncovered_to_bad": (bad, t_i, seen & (hist == i))}
        for name, (a_set, b_set, family) in pairs.items():
            if not a_set.any() or not b_set.any() or not (family & b_set).any():
                continue  # nothing to estimate: left NaN (reported by lang_bounds)
            est = expansion_estimate(nb, a_set, b_set, family, eta=eta, q=q, mode=mode)
            out[name][i] = est["c_hat"].cpu()
            out[f"argmin_{name}"][i] = est["argmin"].cpu()
    out["eta"] = torch.tensor(float(eta), dtype=_F64)
    return out
