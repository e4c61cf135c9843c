"""Label model: estimate each teacher's accuracy from agreement among ≥ 3 teachers — no gold labels.

Dawid & Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM Algorithm",
JRSS C 28(1), 1979 [paper: the model and its EM are theirs]. Each of ``m`` teachers (a model, a
rule, a lexicon, an API model) gives a vote on each of ``n`` inputs — a class, a probability vector
(a soft vote), or nothing (abstains). The model: a latent true class ``y ~ π``, and given ``y`` the
teachers vote independently, teacher ``j`` with its own confusion matrix
``C_j[y, c] = P(vote_j = c | y, j votes)``. EM maximises the likelihood

    ``L = Π_i Σ_y π_y Π_j Π_c C_j[y, c]^{V_ijc}``          (soft votes ``V_ij`` in the exponent)

E-step: ``T_iy ∝ π_y Π_j Π_c C_j[y, c]^{V_ijc}`` (the posterior of the true class); M-step:
``C_j[y, c] ∝ α + Σ_i T_iy V_ijc``, ``π_y ∝ α + Σ_i T_iy`` (``α`` = ``smoothing``, a symmetric
Dirichlet pseudo-count that keeps every log finite). Soft votes in the exponent are the usual
generalisation (a probability vector counts as fractional votes); an abstention is a zero vector
and contributes nothing (abstaining is assumed independent of the class given the input's
coverage — Lang et al.'s setting, a modelling assumption). Initialised from the (soft) majority
vote, as Dawid & Skene do, which puts EM in the basin where the average teacher beats chance; the
likelihood is symmetric under relabelling the classes, so a crowd whose majority is *worse* than
chance is estimated as its mirror image — no label-free method can tell those apart.

What this is and is not [certainty]: the estimates are consistent under the model's assumption that
teachers err **independently given the true class** (a theorem for the model: maximum likelihood).
Teachers that share a representation or a gold sample err together and are then over-trusted: the
accuracies become **heuristic estimates**, not measurements. Each teacher's accuracy is reported
as the expected agreement with the posterior on the points it covers,
``acc_j = Σ_i cov_ij Σ_y T_iy V_ijy / Σ_i cov_ij``.

Why written here, in pure torch: the model is ~40 lines of tensor algebra; the libraries that ship
it (``snorkel``'s ``LabelModel`` — a different matrix-completion estimator — ``crowd-kit``) pull in
pandas/scikit-learn stacks and their own torch pins that we do not want as dependencies of a
Lightning callback, and neither takes soft votes with abstentions as tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_w2s.validation import as_tensor, check_finite, check_scalar, describe

_F64 = torch.float64


@dataclass(frozen=True)
class LabelModelFit:
    """The result of :func:`dawid_skene`.

    Attributes:
        posterior: ``(n, k)`` P(true class | all votes); rows with no vote equal ``prior``.
        confusion: ``(m, k, k)`` ``C_j[y, c] = P(teacher j votes c | true class y)`` on covered points.
        prior: ``(k,)`` the class prior ``π``.
        accuracy: ``(m,)`` estimated accuracy of each teacher on the points it covers (NaN for a
            teacher that never votes).
        coverage: ``(m,)`` the share of the ``n`` inputs each teacher votes on.
        log_likelihood: the final mean log-likelihood per input.
        n_iter: EM iterations run; ``converged``: whether the tolerance was reached.

    >>> fit = dawid_skene(torch.tensor([[0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 1, 0]]))
    >>> fit.posterior.shape, fit.confusion.shape, fit.accuracy.shape
    (torch.Size([4, 2]), torch.Size([3, 2, 2]), torch.Size([3]))
    """

    posterior: Tensor
    confusion: Tensor
    prior: Tensor
    accuracy: Tensor
    coverage: Tensor
    log_likelihood: float
    n_iter: int
    converged: bool


def votes_tensor(votes: Any, num_classes: int | None = None, *, name: str = "votes") -> Tensor:
    """Votes as a float64 ``(n, m, k)`` tensor of soft votes (an abstention is a zero row).

    Accepts ``(n, m)`` integer class indices (``-1`` = abstain) or ``(n, m, k)`` probabilities
    (rows sum to 1, or are all zero = abstain). ``num_classes`` is inferred from the largest index
    (at least 2) when not given.
    """
    v = as_tensor(name, votes).detach()
    if v.ndim == 2:
        if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
            raise TypeError(f"`{name}` as an (n, m) tensor must hold integer class indices (-1 = abstain), got {describe(v)}")
        v = v.long()
        if v.numel() and int(v.min()) < -1:
            raise ValueError(f"`{name}` class indices must be >= -1 (-1 = abstain), got min {int(v.min())}")
        top = int(v.max()) + 1 if v.numel() else 0
        k = max(2, top) if num_classes is None else num_classes
        if top > k:
            raise ValueError(f"`{name}` has class index {top - 1} but num_classes = {k}")
        out = torch.zeros(*v.shape, k, dtype=_F64, device=v.device)
        known = v >= 0
        out[known] = torch.nn.functional.one_hot(v[known], k).to(_F64)
        return out
    if v.ndim == 3:
        if not v.is_floating_point():
            raise TypeError(f"`{name}` as an (n, m, k) tensor must hold probabilities (floats), got {describe(v)}")
        check_finite(name, v)
        v = v.to(_F64)
        if num_classes is not None and v.shape[2] != num_classes:
            raise ValueError(f"`{name}` has {v.shape[2]} classes in its last dimension but num_classes = {num_classes}")
        if v.numel() and (v.min() < 0 or v.max() > 1):
            raise ValueError(f"`{name}` soft votes must lie in [0, 1], got values in [{float(v.min()):.4g}, {float(v.max()):.4g}]")
        sums = v.sum(-1)
        bad = ((sums - 1).abs() > 1e-3) & (sums.abs() > 1e-12)
        if bad.any():
            i, j = (int(x) for x in bad.nonzero()[0])
            raise ValueError(
                f"`{name}` soft votes must sum to 1 (or be all zero = abstain); input {i}, teacher {j} sums to {float(sums[i, j]):.6g}"
            )
        return v
    raise ValueError(f"`{name}` must be (n, m) class indices or (n, m, k) probabilities, got {describe(v)}")


def dawid_skene(
    votes: Any,
    num_classes: int | None = None,
    *,
    max_iter: int = 200,
    tol: float = 1e-8,
    smoothing: float = 0.01,
    weights: Any = None,
) -> LabelModelFit:
    """Fit the Dawid–Skene label model by EM (see the module docstring for the equations).

    Args:
        votes: ``(n, m)`` class indices (``-1`` = abstain) or ``(n, m, k)`` soft votes.
        num_classes: ``k``; inferred from ``votes`` when ``None``.
        max_iter: EM iterations at most.
        tol: stop when the mean log-likelihood per input improves by less than ``tol``.
        smoothing: the Dirichlet pseudo-count ``α`` added to every confusion cell and prior entry.
        weights: optional ``(m,)`` non-negative weights, one per teacher, on its log-likelihood
            term in the E-step (``Π_c C_j[y, c]^{w_j V_ijc}``); ``None`` = all 1 (the model above).
            A tempered / weighted likelihood [heuristic]: a teacher known to duplicate others can
            be down-weighted. The M-step is unchanged (a row of ``C_j`` does not depend on ``w_j``).

    Returns:
        a :class:`LabelModelFit`.

    Needs at least 3 teachers: with 2 the model is not identifiable (their agreement rate is one
    equation in two accuracies), so it raises ``ValueError`` — use the misfit or representation
    scores of :func:`lightning_w2s.rank_teachers` then.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 2, (2000,), generator=g)
    >>> acc = torch.tensor([0.9, 0.8, 0.7])
    >>> right = torch.rand(2000, 3, generator=g) < acc
    >>> votes = torch.where(right, y[:, None], 1 - y[:, None])
    >>> fit = dawid_skene(votes)
    >>> [round(a, 1) for a in fit.accuracy.tolist()]
    [0.9, 0.8, 0.7]
    """
    max_iter = check_scalar("max_iter", max_iter, int, min_val=1)
    tol = check_scalar("tol", tol, float, min_val=0.0)
    smoothing = check_scalar("smoothing", smoothing, float, min_val=0.0, include_boundaries="neither")
    if num_classes is not None:
        num_classes = check_scalar("num_classes", num_classes, int, min_val=2)
    v = votes_tensor(votes, num_classes)
    n, m, k = v.shape
    if m < 3:
        raise ValueError(
            f"the Dawid–Skene label model needs votes from at least 3 teachers to be identifiable, got {m} "
            f"({describe(votes)}); with fewer, teacher accuracies cannot be estimated without gold labels"
        )
    if n == 0:
        raise ValueError(f"`votes` has no inputs ({describe(votes)})")
    if weights is None:
        w = torch.ones(m, dtype=_F64, device=v.device)
    else:
        w = as_tensor("weights", weights).detach().to(_F64).to(v.device).reshape(-1)
        if w.shape[0] != m:
            raise ValueError(f"`weights` must have one entry per teacher (m = {m}), got {describe(weights)}")
        check_finite("weights", w)
        if (w < 0).any():
            raise ValueError(f"`weights` must be >= 0, got min {float(w.min()):.4g}")
    covered = v.sum(-1)  # (n, m): 1 where the teacher votes, 0 where it abstains
    # (weighted) majority-vote initialisation (soft), uniform where nobody votes
    t = (v * w[None, :, None]).sum(1) + 1e-9
    t = t / t.sum(-1, keepdim=True)
    previous = -math.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        prior, log_conf = _m_step(t, v, smoothing)
        log_joint = torch.log(prior)[None, :] + torch.einsum("njc,jyc->ny", v, log_conf * w[:, None, None])
        ll = float(torch.logsumexp(log_joint, dim=1).mean())
        t = torch.softmax(log_joint, dim=1)
        if ll - previous < tol:
            converged = True
            break
        previous = ll
    prior, log_conf = _m_step(t, v, smoothing)
    cov_counts = covered.sum(0)
    agree = torch.einsum("ny,njy->j", t, v)
    accuracy = torch.where(cov_counts > 0, agree / cov_counts.clamp_min(1e-300), torch.full_like(agree, math.nan))
    return LabelModelFit(
        posterior=t,
        confusion=log_conf.exp(),
        prior=prior,
        accuracy=accuracy,
        coverage=cov_counts / n,
        log_likelihood=ll,
        n_iter=it,
        converged=converged,
    )


def _m_step(t: Tensor, v: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """``(π, log C)`` from posteriors ``t (n, k)`` and votes ``v (n, m, k)``."""
    k = t.shape[1]
    prior = (t.sum(0) + smoothing) / (t.shape[0] + k * smoothing)
    counts = torch.einsum("ny,njc->jyc", t, v) + smoothing
    return prior, torch.log(counts / counts.sum(-1, keepdim=True))
