"""Dependent teachers: find near-copies and families, and estimate each teacher without them.

The Dawid–Skene label model (:mod:`lightning_w2s.ranking.label_model`; Dawid & Skene 1979) assumes
that teachers err independently given the true class. Two copies of one teacher break that
assumption in the worst way: they always agree, so the model concludes both are perfect and a copy
ranks first. Learning the dependency structure of the voters is the remedy of the data-programming
literature (Bach, He, Ratner & Ré, "Learning the Structure of Generative Models without Labeled
Data", ICML 2017; Varma et al., "Learning Dependency Structures for Weak Supervision Models", ICML
2019; Ratner et al., "Snorkel", VLDB 2018; Fu et al., "Fast and Three-rious" (FlyingSquid), ICML
2020, whose triplet estimator likewise needs conditionally independent triples). Here the structure
is found by the excess agreement a pair shows over what the label model predicts for it under
independence, and a dependent group then votes once:

**Excess agreement** [derived quantity]. For voters ``j ≠ l`` with
``n_jl`` co-covered inputs, the observed agreement is ``A_jl = Σ_i Σ_c V_ijc V_ilc / n_jl`` and the
agreement the model predicts if they erred independently given the class is

    ``P_jl = Σ_i Σ_y T̄_iy Σ_c C_j[y, c] C_l[y, c] / n_jl``     (sums over co-covered inputs),

with ``C_j`` estimated by a label model from which ``l`` is left out and ``C_l`` by one from which
``j`` is left out (so a copy cannot vouch for its original while the original is being judged),
each re-estimated on the co-covered inputs (one M-step there: a teacher's accuracy where a rule
votes may differ from its accuracy overall), and ``T̄`` the mean of those two fits' posteriors. The excess ``E_jl = (A_jl − P_jl) / (1 − P_jl)`` is
the share of the disagreement that independence predicts and that did not happen (measured where
independence predicts at least 10 disagreements): 0 for independent voters (up to estimation
error), 1 for an exact copy; a copy whose labels are redrawn uniformly at random on 5% of the inputs
scores ``1 − 0.025/(2a(1 − a))`` for a binary teacher of accuracy ``a``: 0.94 at ``a = 0.7``, 0.86 at
``a = 0.9``. A copy with its classes swapped agrees far *less* than predicted; the share of the
predicted agreement that did not happen, ``(P_jl − A_jl) / P_jl``, counts the same way (otherwise an
inverted copy vouches for its original in every fit that leaves the original out).

**Linking: a test against a reference copy** [the test is derived; the reference copy is a
heuristic choice]. A fixed cut on the estimated ``E`` misses copies of accurate teachers: their ``E``
is lower by construction (above), and sampling noise in the few disagreements they show spreads it
further (on synthetic crowds with ``n = 2000`` the 5% copy of a 90%-accurate teacher scored 0.84 to
0.89). So a pair is linked unless it is *significantly less* dependent than a reference copy at
excess ``threshold`` (default ``"auto"``: :func:`reference_excess`, the 5% copy of a 90%-accurate
teacher with the teachers' ``k`` classes, 0.861 for ``k = 2``, 0.820 for ``k = 3``): such a copy shows on average ``(1 − threshold) · D_pred`` disagreements, where
``D_pred = n_jl (1 − P_jl)`` is what independence predicts, and the pair is linked when the p-value
``P(X ≥ D_obs)`` of its observed disagreements ``D_obs = n_jl (1 − A_jl)`` under
``X ~ Poisson((1 − threshold) D_pred)`` is at least :data:`DEPENDENCE_ALPHA` = 0.05
(:func:`copy_pvalue`; for a swapped copy, the same test on agreements). The test grows sharper with
``n_jl``: a pair far from a copy (a teacher and a variant that changes 19% of the disagreement
independence predicts, ``E = 0.81``, on 4,000 inputs) gets ``p < 10⁻⁶``. Linked voters are merged into
one soft voter (the mean of their votes), the most dependent linkable pair first, and the search
repeats on the merged voters until nothing more merges — so an exact copy and a near copy of one
teacher end up in one group even when each pair alone hides behind the third member. Teachers with
identical votes are merged before any fit (they carry the evidence of one voter). The test is this
module's; Bach et al. (2017) and Varma et al. (2019) learn the structure instead by
ℓ1-regularised pseudolikelihood and by a sparse-plus-low-rank split of the voters' inverse
covariance, which assume a sparse dependency graph and give no per-pair test.

**Estimates without one's own near-copies as extra voters** ("one voter per group"). Each group
votes once (its merged soft vote) in the label model, and every teacher — in a group or not — is
judged against that one posterior: its near-copies can no longer outvote the others, and they
count once, as a teacher always counts itself in Dawid–Skene. (Judging each member by a fit without
its group, the first design, put members and the others on different scales and ranked worse.) With fewer than 3 independent voters left, no accuracy is
identifiable and :func:`independent_fits` raises.

What this cannot do [certainty]: a copy of a teacher more accurate than the reference (or
relabelled on more inputs) may stay unlinked; its copies then vouch for it. Votes alone cannot tell three exact copies from three perfect
independent teachers (the distributions are equal); merging identical votes up front is what keeps
exact copies from vouching for each other. A dependence shared by *every* teacher (one
representation, one gold sample) has no independent reference to be measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_w2s.ranking.label_model import LabelModelFit, fit_batch

_F64 = torch.float64
#: The reference copy (the least dependent copy that must be linked; the module docstring): a
#: teacher of this accuracy whose labels are redrawn uniformly at random on this share of its
#: inputs [heuristic choice, fixed from the arithmetic of :func:`reference_excess` and checked on
#: synthetic crowds, docs/ranking.md].
REFERENCE_ACCURACY = 0.9
REFERENCE_RELABEL = 0.05
#: ``dependence_threshold="auto"`` (the default): the reference copy's excess for the teachers'
#: number of classes, :func:`reference_excess` (0.861 for two classes, 0.820 for three).
DEPENDENCE_THRESHOLD = "auto"
#: Level of the one-sided test that links a pair (:func:`copy_pvalue`): a pair is linked unless its
#: disagreements are significantly more (at this level) than a copy at the threshold would show.
DEPENDENCE_ALPHA = 0.05
#: A pair's excess agreement is measured only where independence predicts at least this many
#: disagreements on its co-covered inputs (two near-perfect teachers agree everywhere, and that is
#: no evidence of copying).
MIN_EXPECTED_DISAGREEMENTS = 10.0


def reference_excess(num_classes: int, accuracy: float = REFERENCE_ACCURACY, relabel: float = REFERENCE_RELABEL) -> float:
    """The excess agreement ``E`` of a teacher of ``accuracy`` (errors spread evenly over the other
    ``k − 1`` classes) and its copy with labels redrawn uniformly at random on a ``relabel`` share of
    the inputs [derived]: the copy disagrees on ``relabel·(k − 1)/k`` of the inputs, where
    independence predicts ``D = 1 − a² − (1 − a)²/(k − 1)``, so ``E = 1 − relabel·(k − 1)/k / D``.

    >>> [round(reference_excess(k), 3) for k in (2, 3, 10)]
    [0.861, 0.82, 0.762]
    >>> round(reference_excess(2, accuracy=0.7), 3)  # a less accurate teacher's copy is more obviously one
    0.94
    """
    k = num_classes
    return 1.0 - relabel * (k - 1) / k / (1.0 - accuracy**2 - (1.0 - accuracy) ** 2 / (k - 1))


def copy_pvalue(observed: Tensor, predicted: Tensor, threshold: float) -> Tensor:
    """``P(X ≥ observed)`` for ``X ~ Poisson((1 − threshold) · predicted)``: how likely a pair exactly
    at excess ``threshold`` shows ``observed`` disagreements or more, when independence predicts
    ``predicted`` (counts on the co-covered inputs; elementwise).

    A copy at the threshold disagrees on a ``1 − threshold`` share of the disagreements independence
    predicts; the count of its disagreements is binomial, here bounded by the Poisson law of the same
    mean (a larger variance: the test links a little more readily) [derived]. The Poisson tail is the
    regularised incomplete gamma function, ``P(X ≥ x) = P(x, λ)`` (``torch.special.gammainc``), also
    for the fractional counts of soft votes. A small p-value says the pair is *less* dependent than
    the threshold copy; the p-value grows sharper with the number of co-covered inputs.

    >>> round(float(copy_pvalue(torch.tensor(50.0), torch.tensor(360.0), 0.861)), 2)  # a copy at the threshold
    0.52
    >>> float(copy_pvalue(torch.tensor(369.0), torch.tensor(1940.0), 0.861)) < 1e-6  # a family: 19% of the predicted
    True
    """
    lam = ((1.0 - threshold) * predicted).clamp_min(1e-12)
    return torch.special.gammainc(observed.clamp_min(1e-12), lam)


@dataclass(frozen=True)
class Dependence:
    """The result of :func:`find_dependent`.

    Attributes:
        groups: lists of teacher indices (each of size ≥ 2) that vote as one; sorted.
        excess: ``{(j, l): E}`` the excess agreement of every linked pair when it was linked
            (teacher indices; for a merged voter, its first member).
        converged: whether every label-model fit of the search converged.
        threshold: the reference copy's excess the pairs were tested against (``"auto"`` resolved).

    >>> import torch
    >>> from lightning_w2s.ranking.label_model import votes_tensor
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 2, (2000,), generator=g)
    >>> votes = torch.stack([torch.where(torch.rand(2000, generator=g) < r, 1 - y, y) for r in (0.1, 0.2, 0.3, 0.35)], 1)
    >>> relabel = torch.rand(2000, generator=g) < 0.05
    >>> near = torch.where(relabel, torch.randint(0, 2, (2000,), generator=g), votes[:, 2])  # 5% relabelled
    >>> find_dependent(votes_tensor(torch.cat([votes, near[:, None]], 1))).groups  # teacher 4 near-copies teacher 2
    [[2, 4]]
    """

    groups: list[list[int]]
    excess: dict[tuple[int, int], float]
    converged: bool
    threshold: float


def merge(v: Tensor, groups: list[list[int]]) -> tuple[Tensor, list[list[int]]]:
    """Voters after merging: ``(n, V, k)`` soft votes (a group's mean vote over its members that
    vote on the input, each member's classes mapped onto its first member's; a zero row where none
    does) and each voter's member indices."""
    n, m, k = v.shape
    grouped = {j for g in groups for j in g}
    members = [[j] for j in range(m) if j not in grouped] + [sorted(g) for g in groups]
    members.sort(key=lambda g: g[0])
    out = torch.zeros(n, len(members), k, dtype=_F64, device=v.device)
    for u, g in enumerate(members):
        s = v[:, g[0]].clone()
        for j in g[1:]:
            # each member's classes mapped onto the first member's (the class it co-occurs with most),
            # so a copy with its classes swapped adds to the group's vote instead of cancelling it
            co = v[:, g[0]].T @ v[:, j]  # (k of the first, k of j)
            s = s + v[:, j] @ torch.nn.functional.one_hot(co.argmax(0), k).to(_F64)
        out[:, u] = s / s.sum(-1, keepdim=True).clamp_min(1e-300)
    return out, members


def excess_agreement(v: Tensor, threshold: float, *, smoothing: float = 0.01, max_iter: int = 1000, tol: float = 1e-5) -> tuple[Tensor, Tensor, bool]:
    """``(V, V)`` excess agreement ``E_jl`` of voters ``v (n, V, k)`` (module docstring; NaN on the
    diagonal and where independence predicts fewer than :data:`MIN_EXPECTED_DISAGREEMENTS`
    disagreements on the co-covered inputs), the ``(V, V)`` p-value :func:`copy_pvalue` that the pair
    is at least as dependent as a copy at ``threshold`` (0 where ``E`` is NaN), and whether the ``V``
    leave-one-out label-model fits converged."""
    n, nv, k = v.shape
    cov = (v.sum(-1) > 0).to(_F64)  # (n, V)
    fits = fit_batch(v, 1.0 - torch.eye(nv, dtype=_F64, device=v.device), max_iter=max_iter, tol=tol, smoothing=smoothing)
    post = torch.stack([f.posterior for f in fits])  # (excluded l, n, y)
    # C_j^(−l) re-estimated on the inputs l votes on (one M-step there): a teacher's accuracy where the
    # other votes may differ from its overall accuracy (a rule that abstains on hard inputs)
    counts = torch.einsum("il,liy,ijc->jlyc", cov, post, v) + smoothing
    conf = counts / counts.sum(-1, keepdim=True)  # (j, excluded l, y, c)
    # M[j, l, y] = Σ_c C_j^(−l)[y, c] C_l^(−j)[y, c]
    m_ = torch.einsum("jlyc,ljyc->jly", conf, conf)
    shared = cov.T @ cov  # (V, V) co-covered counts
    t_l = torch.einsum("ij,il,liy->jly", cov, cov, post)  # posterior of the fit without l, summed over co-covered inputs
    expected = ((t_l + t_l.transpose(0, 1)) / 2 * m_).sum(-1) / shared.clamp_min(1)
    agree = torch.einsum("ijc,ilc->jl", v, v) / shared.clamp_min(1)
    room = 1.0 - expected
    nan = torch.full_like(room, float("nan"))
    measured = shared * room >= MIN_EXPECTED_DISAGREEMENTS
    excess = torch.where(measured, (agree - expected) / room.clamp_min(1e-9), nan)
    p_excess = torch.where(measured, copy_pvalue(shared * (1.0 - agree), shared * room, threshold), torch.zeros_like(room))
    # a relabelled copy (classes swapped) agrees far *less* than predicted: the share of the predicted
    # agreement that did not happen counts the same way, and so does its test on the agreements
    measured_d = shared * expected >= MIN_EXPECTED_DISAGREEMENTS
    deficit = torch.where(measured_d, (expected - agree) / expected.clamp_min(1e-9), nan)
    p_deficit = torch.where(measured_d, copy_pvalue(shared * agree, shared * expected, threshold), torch.zeros_like(room))
    excess = torch.where(torch.isnan(excess), deficit, torch.where(torch.isnan(deficit), excess, torch.maximum(excess, deficit)))
    excess.fill_diagonal_(float("nan"))
    pvalue = torch.maximum(p_excess, p_deficit)
    pvalue.fill_diagonal_(0.0)
    return excess, pvalue, all(f.converged for f in fits)


def find_dependent(v: Tensor, threshold: float | str = DEPENDENCE_THRESHOLD, *, alpha: float = DEPENDENCE_ALPHA, smoothing: float = 0.01) -> Dependence:
    """Groups of teachers whose votes ``v (n, m, k)`` agree beyond independence (module docstring):
    a pair is linked unless its disagreements are significantly more (one-sided, level ``alpha``)
    than those of a copy at excess ``threshold`` (``"auto"``: :func:`reference_excess` of ``k``)."""
    n, m, k = v.shape
    threshold = reference_excess(k) if threshold == "auto" else float(threshold)
    # identical votes first: they are one voter's evidence
    groups: list[list[int]] = []
    seen: dict[bytes, int] = {}
    flat = v.reshape(n, m * k).T.contiguous()
    for j in range(m):
        key = flat[j * k : (j + 1) * k].cpu().numpy().tobytes()
        if key in seen:
            g = next((g for g in groups if seen[key] in g), None)
            if g is None:
                groups.append([seen[key], j])
            else:
                g.append(j)
        else:
            seen[key] = j
    linked: dict[tuple[int, int], float] = {(g[0], j): 1.0 for g in groups for j in g[1:]}
    converged = True
    while True:
        voters, members = merge(v, groups)
        if voters.shape[1] < 4:  # leave-one-out fits need >= 3 voters each
            break
        excess, pvalue, ok = excess_agreement(voters, threshold, smoothing=smoothing)
        converged = converged and ok
        score = torch.nan_to_num(torch.minimum(excess, excess.T), nan=-1.0)
        score = torch.where(torch.minimum(pvalue, pvalue.T) >= alpha, score, torch.full_like(score, -1.0))
        best = float(score.max())
        if best < 0.0:
            break
        # link the most dependent linkable pair only, then refit: a strong copy distorts the others'
        # fits, so weaker links are measured again once it votes as one
        a, b = (int(x) for x in (score == best).nonzero()[0])
        linked[(members[a][0], members[b][0])] = best
        groups = sorted(sorted(g) for g in [g for g in groups if members[a][0] not in g and members[b][0] not in g] + [members[a] + members[b]])
    return Dependence(groups=groups, excess=linked, converged=converged, threshold=threshold)


def independent_fits(v: Tensor, groups: list[list[int]], *, smoothing: float = 0.01) -> tuple[Tensor, Tensor, list[LabelModelFit]]:
    """Each teacher's accuracy and confusion with each group voting once (module docstring).

    One label model over the voters (a group = its merged soft vote). A teacher outside every group
    is read from that fit; a group member is judged against the same fit's posterior (its accuracy
    ``Σ_i Σ_y T_iy V_ijy / Σ_i cov_ij`` and its confusion by one M-step), in which its group —
    itself and its near-copies — counts once, as any teacher counts itself in Dawid–Skene. One
    posterior for everyone keeps the scores on one scale.

    Returns ``accuracy (m,)``, ``confusion (m, k, k)`` and the fit. Raises ``ValueError`` when fewer
    than 3 independent voters remain.
    """
    n, m, k = v.shape
    voters, members = merge(v, groups)
    nv = voters.shape[1]
    if nv < 3:
        raise ValueError(f"only {nv} independent voter(s) remain after treating near-copies as one ({members}); a label model needs >= 3 to identify accuracies")
    fit = fit_batch(voters, torch.ones(1, nv, dtype=_F64, device=v.device), smoothing=smoothing)[0]
    t = fit.posterior
    accuracy = torch.einsum("ny,njy->j", t, v) / v.sum(-1).sum(0).clamp_min(1e-300)
    counts = torch.einsum("ny,njc->jyc", t, v) + smoothing
    return accuracy, counts / counts.sum(-1, keepdim=True), [fit]
