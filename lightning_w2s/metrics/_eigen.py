"""Top eigenpairs of a symmetric positive semi-definite operator without a full eigendecomposition.

Randomized block Krylov iteration with full re-orthogonalisation and Rayleigh–Ritz extraction
(Halko, Martinsson, Tropp 2011, SIAM Review 53(2), §4.4–4.5; Musco & Musco 2015, "Randomized Block
Krylov Methods for Stronger and Faster Approximate SVD", NeurIPS): the basis
``[Q, AQ, A²Q, …]`` of a random start block ``Q`` is orthonormalised as it grows, and the Ritz pairs
of ``BᵀAB`` approximate the top eigenpairs. Each step costs one product of the operator with a
``(dim, block)`` matrix, so the top-32 of a 4096×4096 covariance cost a few 4096×4096×49 products
instead of the O(d³) ``eigh``. Convergence is decided by the caller from the Ritz values and their
residual norms ``‖A x − θ x‖`` (a Ritz value is within its residual of an eigenvalue; Parlett,
*The Symmetric Eigenvalue Problem*, Thm 11.5.1): the solver returns ``None`` when the basis reaches
``max_dim`` unconverged, and the caller falls back to the exact ``torch.linalg.eigh``.

Written here rather than taken from ``torch.lobpcg`` because the callers need (a) their own
convergence test (residuals relative to the smallest *kept* eigenvalue and to the gap at the
truncation, see :mod:`lightning_w2s.metrics._gap_algebra`), (b) an explicit "not converged"
answer for an exact fallback. (A one-off comparison while this was written, which no benchmark
prints, also found ``torch.lobpcg`` several times slower on the d_s = 4096 covariance of
``benchmarks/representation/run.py``.) Pure torch; every tensor stays on ``like``'s device, and the random
start comes from a generator with a fixed seed on that device, so every DDP rank (holding the same
synced operator) gets the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RitzPairs:
    """What :func:`top_eigenpairs` found.

    >>> a = torch.diag(torch.cat([torch.linspace(0, 1, 197), torch.tensor([10.0, 20.0, 30.0])]).double())
    >>> found = top_eigenpairs(lambda v: a @ v, 200, 3, lambda th, res: float(res.max()) / 1e-10, like=a)
    >>> [round(v, 9) for v in found.values.tolist()]
    [10.0, 20.0, 30.0]
    """

    values: Tensor  # (k,) ascending
    vectors: Tensor  # (dim, k), orthonormal columns
    residuals: Tensor  # (k,) ‖A x − θ x‖
    steps: int  # operator applications (blocks)
    basis_dim: int


def _orthonormal_complement(basis: Tensor, w: Tensor, gen: torch.Generator, coeffs: Tensor | None = None) -> Tensor:
    """Columns of ``w`` orthonormalised against ``basis`` and each other (``coeffs = basisᵀw`` when
    the caller has it). Classical Gram–Schmidt with a second pass when the first removed most of
    the norm (Kahan's "twice is enough" test, Parlett §6.9; Giraud et al. 2005). A column that
    vanishes (inside the span already: an invariant subspace was found) is replaced by a random
    one, which only extends the search space."""
    for attempt in range(3):
        scale = w.norm(dim=0).clamp_min(torch.finfo(w.dtype).tiny)
        w = w - basis @ (coeffs if coeffs is not None and attempt == 0 else basis.T @ w)
        if bool((w.norm(dim=0) < 0.7 * scale).any()):
            w = w - basis @ (basis.T @ w)
        q, r = torch.linalg.qr(w)
        lost = r.diagonal().abs() <= 1e-10 * scale
        if not bool(lost.any()):
            break
        w = q.clone()
        w[:, lost] = torch.randn(w.shape[0], int(lost.sum()), generator=gen, dtype=w.dtype, device=w.device)
    return q


def top_eigenpairs(
    apply: Callable[[Tensor], Tensor],
    dim: int,
    k: int,
    progress: Callable[[Tensor, Tensor], float],
    *,
    like: Tensor,
    block: int | None = None,
    restart_dim: int | None = None,
    max_steps: int | None = None,
    seed: int = 0,
) -> RitzPairs | None:
    """The ``k`` largest eigenpairs of the symmetric PSD operator ``apply`` (``X ↦ A X``), or ``None``.

    Args:
        apply: the operator on a ``(dim, b)`` block.
        dim: its size.
        k: number of wanted pairs (largest first).
        progress: ``progress(values, residuals)`` for the current top-``k`` Ritz pairs (ascending):
            converged when it returns a number ``<= 1``; larger numbers say how far off (used to
            predict when to look next: each Rayleigh–Ritz step costs O(basis_dim³)).
        like: a tensor giving the dtype and device.
        block: block size (default ``k + max(8, k // 2)``).
        restart_dim: basis size at which the basis is compressed to its best Ritz vectors
            (thick restart, Krylov–Schur style: Stewart 2001, SIAM J. Matrix Anal. Appl. 23(3)),
            which bounds the O(dim·basis·block) orthogonalisation and O(basis³) Rayleigh–Ritz cost
            per step (default ``6·block``).
        max_steps: operator applications before giving up (default: ``dim`` columns in all, about
            ``2·dim³`` flops — less than a dense ``eigh``).
        seed: seed of the random start block.
    """
    block = block or k + max(8, k // 2)
    restart_dim = min(dim, restart_dim or 6 * block)
    max_steps = max_steps or max(1, dim // block)
    keep = min(restart_dim - 2 * block, max(k + block // 2, restart_dim // 2))
    if block < k or keep < k or 2 * block > dim:
        return None
    gen = torch.Generator(device=like.device).manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, block, generator=gen, dtype=like.dtype, device=like.device))
    basis, images, gram = (like.new_empty(dim, restart_dim), like.new_empty(dim, restart_dim), like.new_zeros(restart_dim, restart_dim))
    m = steps = 0
    next_check, last = 2, None
    while True:
        w = apply(q)
        steps += 1
        basis[:, m : m + block], images[:, m : m + block] = q, w
        proj = basis[:, : m + block].T @ w  # the new columns of BᵀAB, and Gram–Schmidt's first pass
        gram[: m + block, m : m + block] = proj
        gram[m : m + block, :m] = proj[:m].T
        m += block
        restart = m + block > restart_dim
        if steps >= next_check or restart or steps >= max_steps:
            all_values, all_coeffs = torch.linalg.eigh(gram[:m, :m])  # reads the lower triangle
            values, coeffs = all_values[-k:], all_coeffs[:, -k:]
            vectors = basis[:, :m] @ coeffs
            residuals = (images[:, :m] @ coeffs - vectors * values).norm(dim=0)
            p = float(progress(values, residuals))
            if p <= 1.0:
                return RitzPairs(values, vectors, residuals, steps, m)
            if steps >= max_steps:
                return None
            # residuals fall geometrically: predict the step where progress reaches 1, look then
            # (at least one step ahead, at most twice as far as we have come)
            ahead = 1
            if last is not None and math.isfinite(p) and 0 < p < last[1]:
                rate = (p / last[1]) ** (1.0 / (steps - last[0]))
                ahead = math.ceil(math.log(p) / -math.log(rate)) if rate < 1 else steps
            next_check, last = steps + max(1, min(ahead, steps)), (steps, p)
        # the next block: the part of A·(last block) outside the basis (before any compression)
        q = _orthonormal_complement(basis[:, :m], w, gen, proj)
        if restart:  # keep the best `keep` Ritz vectors: basis X = BY, images AX = (AB)Y, XᵀAX = diag(θ)
            y = all_coeffs[:, -keep:]
            basis[:, :keep] = basis[:, :m] @ y
            images[:, :keep] = images[:, :m] @ y
            gram.zero_()
            gram.diagonal()[:keep] = all_values[-keep:]
            m = keep
