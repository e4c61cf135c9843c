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

from lightning_w2s.metrics.validation import as_tensor, check_finite, check_scalar, describe

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
            raise ValueError(f"`{name}` soft votes must sum to 1 (or be all zero = abstain); input {i}, teacher {j} sums to {float(sums[i, j]):.6g}")
        return v
    raise ValueError(f"`{name}` must be (n, m) class indices or (n, m, k) probabilities, got {describe(v)}")


def dawid_skene(votes: Any, num_classes: int | None = None, *, max_iter: int = 10000, tol: float = 1e-9, smoothing: float = 0.01, weights: Any = None, accelerate: bool = True) -> LabelModelFit:
    """Fit the Dawid–Skene label model by EM (see the module docstring for the equations).

    Args:
        votes: ``(n, m)`` class indices (``-1`` = abstain) or ``(n, m, k)`` soft votes.
        num_classes: ``k``; inferred from ``votes`` when ``None``.
        max_iter: EM steps at most (every evaluation of the EM map counts, the accelerated ones too).
        tol: converged when one plain EM step moves no parameter (``π``, every ``C_j[y, c]``) by
            more than ``tol``. EM converges linearly and slowly when a class is rare; the steps are
            accelerated by SQUAREM (Varadhan & Roland, "Simple and globally convergent methods for
            accelerating the convergence of any EM algorithm", Scand. J. Stat. 35(2), 2008: two EM
            steps ``r = θ₁ − θ₀``, ``v = θ₂ − 2θ₁ + θ₀``, extrapolate ``θ₀ − 2αr + α²v`` with
            ``α = −‖r‖/‖v‖``, project onto the simplices, one stabilising EM step; the plain
            ``θ₂`` is kept whenever the extrapolation lowers the likelihood), which has the same
            fixed points as EM.
        smoothing: the Dirichlet pseudo-count ``α`` added to every confusion cell and prior entry.
        weights: optional ``(m,)`` non-negative weights, one per teacher, on its log-likelihood
            term in the E-step (``Π_c C_j[y, c]^{w_j V_ijc}``); ``None`` = all 1 (the model above).
            A weight of 0 removes the teacher from the posterior while its confusion matrix is still
            estimated against it (the M-step does not depend on ``w_j``): the teacher is then judged
            by the others only.
        accelerate: SQUAREM steps (above); ``False`` runs plain EM, one step per iteration. Both stop
            at a fixed point of EM, and on a multimodal likelihood (few inputs) they may stop at
            different ones.

    Returns:
        a :class:`LabelModelFit`; ``converged=False`` when ``max_iter`` ran out first.

    Raises ``ValueError`` for fewer than 3 teachers (with 2 the model is not identifiable: their
    agreement rate is one equation in two accuracies — use the representation gap of
    :func:`lightning_w2s.rank_teachers` then), no inputs, or a teacher that never votes.

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 2, (2000,), generator=g)
    >>> acc = torch.tensor([0.9, 0.8, 0.7])
    >>> right = torch.rand(2000, 3, generator=g) < acc
    >>> votes = torch.where(right, y[:, None], 1 - y[:, None])
    >>> fit = dawid_skene(votes)
    >>> [round(a, 1) for a in fit.accuracy.tolist()], fit.converged
    ([0.9, 0.8, 0.7], True)
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
            f"the Dawid–Skene label model needs votes from at least 3 teachers to be identifiable, got {m} ({describe(votes)}); with fewer, teacher accuracies cannot be estimated without gold labels"
        )
    if n == 0:
        raise ValueError(f"`votes` has no inputs ({describe(votes)})")
    silent = (v.sum(-1).sum(0) == 0).nonzero().flatten().tolist()
    if silent:
        raise ValueError(f"teacher(s) at column(s) {silent} of `votes` never vote (every input abstained): a teacher without votes has no accuracy to estimate; drop it")
    if weights is None:
        w = torch.ones(1, m, dtype=_F64, device=v.device)
    else:
        w = as_tensor("weights", weights).detach().to(_F64).to(v.device).reshape(1, -1)
        if w.shape[1] != m:
            raise ValueError(f"`weights` must have one entry per teacher (m = {m}), got {describe(weights)}")
        check_finite("weights", w)
        if (w < 0).any():
            raise ValueError(f"`weights` must be >= 0, got min {float(w.min()):.4g}")
    fits = fit_batch(v, w, max_iter=max_iter, tol=tol, smoothing=smoothing, accelerate=bool(accelerate))
    return fits[0]


def fit_batch(v: Tensor, w: Tensor, *, max_iter: int = 10000, tol: float = 1e-9, smoothing: float = 0.01, accelerate: bool = True) -> list[LabelModelFit]:
    """One Dawid–Skene fit per row of ``w`` (``(B, m)`` teacher weights) on the same soft votes
    ``v`` (``(n, m, k)``, already validated), run together as one batched EM (accelerated as in
    :func:`dawid_skene`, unless ``accelerate=False``). Each fit starts from its weighted majority vote."""
    n, m, k = v.shape
    t = torch.einsum("njc,bj->bnc", v, w) + 1e-9  # (weighted) soft majority vote, uniform where nobody votes
    t = t / t.sum(-1, keepdim=True)
    prior0, log_conf0 = _m_step(t, v, smoothing)
    theta = (prior0, log_conf0.exp())
    steps = 0
    active = torch.ones(w.shape[0], dtype=torch.bool, device=v.device)
    while steps < max_iter and bool(active.any()):
        if not accelerate:
            nxt, _, _ = _em_map(theta, v, w, smoothing)
            steps += 1
            change = torch.maximum((nxt[0] - theta[0]).abs().amax(-1), (nxt[1] - theta[1]).abs().flatten(1).amax(-1))
            theta = tuple(torch.where(_bc(active, a), a, b) for a, b in zip(nxt, theta))
            active = active & (change > tol)
            continue
        th1, _, _ = _em_map(theta, v, w, smoothing)
        th2, ll2, _ = _em_map(th1, v, w, smoothing)
        steps += 2
        r = [a - b for a, b in zip(th1, theta)]
        d = [a - 2 * b + c for a, b, c in zip(th2, th1, theta)]
        rn, dn = _norm(r), _norm(d)
        alpha = torch.where(dn > 0, -rn / dn.clamp_min(1e-300), torch.full_like(rn, -1.0)).clamp(max=-1.0)
        jump = tuple(_project(a - 2 * _bc(alpha, a) * ri + _bc(alpha, a) ** 2 * di) for a, ri, di in zip(theta, r, d))
        new, ll_new, _ = _em_map(jump, v, w, smoothing)
        steps += 1
        better = ll_new >= ll2
        cand = tuple(torch.where(_bc(better, a), a, b) for a, b in zip(new, th2))
        # one plain EM step from the candidate measures convergence (and is itself an ascent step)
        nxt, _, _ = _em_map(cand, v, w, smoothing)
        steps += 1
        change = torch.maximum((nxt[0] - cand[0]).abs().amax(-1), (nxt[1] - cand[1]).abs().flatten(1).amax(-1))
        theta = tuple(torch.where(_bc(active, a), a, b) for a, b in zip(nxt, theta))
        active = active & (change > tol)
    converged = ~active
    _, ll, t = _em_map(theta, v, w, smoothing)
    prior, log_conf = _m_step(t, v, smoothing)
    cov_counts = v.sum(-1).sum(0)
    agree = torch.einsum("bny,njy->bj", t, v)
    accuracy = torch.where(cov_counts > 0, agree / cov_counts.clamp_min(1e-300), torch.full_like(agree, math.nan))
    return [
        LabelModelFit(
            posterior=t[b], confusion=log_conf[b].exp(), prior=prior[b], accuracy=accuracy[b], coverage=cov_counts / n, log_likelihood=float(ll[b]), n_iter=steps, converged=bool(converged[b])
        )
        for b in range(w.shape[0])
    ]


def _bc(x: Tensor, like: Tensor) -> Tensor:
    """A per-fit ``(B,)`` value broadcast against a ``(B, ...)`` parameter."""
    return x.reshape(-1, *([1] * (like.ndim - 1)))


def _norm(parts: list[Tensor]) -> Tensor:
    return torch.sqrt(sum((p * p).flatten(1).sum(1) for p in parts))


def _project(x: Tensor) -> Tensor:
    """Back onto the probability simplex along the last axis (an extrapolated step may leave it)."""
    x = x.clamp_min(1e-12)
    return x / x.sum(-1, keepdim=True)


def _em_map(theta: tuple[Tensor, Tensor], v: Tensor, w: Tensor, smoothing: float) -> tuple[tuple[Tensor, Tensor], Tensor, Tensor]:
    """One EM step on parameters ``(π (B, k), C (B, m, k, k))`` (probabilities): the E-step's
    posterior ``T (B, n, k)`` and mean log-likelihood ``(B,)`` at ``theta``, then the M-step."""
    prior, conf = theta
    log_joint = torch.log(prior)[:, None, :] + torch.einsum("njc,bjyc->bny", v, torch.log(conf) * w[:, :, None, None])
    ll = torch.logsumexp(log_joint, dim=2).mean(1)
    t = torch.softmax(log_joint, dim=2)
    p, log_c = _m_step(t, v, smoothing)
    return (p, log_c.exp()), ll, t


def _m_step(t: Tensor, v: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """``(π (B, k), log C (B, m, k, k))`` from posteriors ``t (B, n, k)`` and votes ``v (n, m, k)``."""
    k = t.shape[2]
    prior = (t.sum(1) + smoothing) / (t.shape[1] + k * smoothing)
    counts = torch.einsum("bny,njc->bjyc", t, v) + smoothing
    return prior, torch.log(counts / counts.sum(-1, keepdim=True))
