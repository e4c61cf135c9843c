"""The d×d algebra of the representation gap (Xue, Li, Mirzasoleiman 2025; docs/theory.md §2.4), pure torch.

From shifted sums (:mod:`lightning_w2s.metrics._moments`) of the student's features ``Φ_s`` and the
teacher's ``Φ_w`` this computes, with ``C_s = Φ_sᵀΦ_s/n``, ``C_w``, ``C_sw = Φ_sᵀΦ_w/n`` (centred)
and each representation's eigendecomposition ``C = U diag(c) Uᵀ`` (``a = 1/(c + λ)``,
``X = U_sᵀ C_sw U_w``) [derived; push-through identity ``K(K+λI)^-1 = Φ(C+λI)^-1Φᵀ/n``]:

- ``G = Φ_sᵀ(I − P_w)²Φ_s/n = diag(c_s) − X diag((c_w + 2λ_w)·a_w²) Xᵀ`` and, with
  ``D = diag(√c_s·a_s)``, ``fro = ‖M‖_F²/n = tr(D G D)/n`` — only the diagonal of ``G`` is formed;
- ``op = ‖M‖_2 = λ_max(D G D)^½`` — the dense ``eigvalsh`` up to 512 kept components, else the
  top eigenvalue of the operator ``v ↦ D G D v`` (never formed) by block Krylov;
- ``pred_gap = ‖D g‖_F²`` with ``g = U_sᵀΦ_sᵀY/n − X diag(a_w) U_wᵀΦ_wᵀY/n``;
- ``cka = ‖C_sw‖_F²/(‖C_s‖_F‖C_w‖_F)`` — linear CKA of the captured features themselves (Kornblith
  et al. 2019, ICML, eq. for linear HSIC), never of truncated ones [definition];
- ``effective_rank = tr(C_s)²/‖C_s‖_F²`` — the participation ratio of the student covariance's
  eigenvalues ``(Σc)²/Σc²``, i.e. ``exp`` of their order-2 Rényi entropy (Rényi 1961), between 1
  (one direction) and the rank [heuristic collapse detector; O(d²), no eigendecomposition].

**Eigenpairs.** With ``max_components = k`` only the top ``k`` (plus the ``k+1``-th value, to test
that the top-k subspace is unique) of each representation are needed. For ``d ≥ 1024`` they come
from :func:`lightning_w2s.metrics._eigen.top_eigenpairs`, accepted when every kept Ritz pair has
residual ``‖C x − θ x‖ ≤ 1e-4·θ_k`` (θ_k the smallest kept value) and the ``k+1``-th pair's residual
is under a tenth of the gap ``θ_k − θ_{k+1}``; otherwise (and below ``d = 1024``, and without
truncation) the exact ``torch.linalg.eigh``. On three synthetic spectra at d = 4096/2048 (a low-rank
signal in noise, a power law, pure noise; the cut inside a dense noise bulk in two of them) that
criterion left ``fro`` and ``op`` within 4e-7 relative of the exact path (the tests check 1e-5;
``benchmarks/representation/run.py`` prints the agreement, 1.1e-7 at worst in its last run).

**Numerical floors** use the covariance about the mean: an eigenvalue is indistinguishable from 0
below ``2·d·eps·(tr C + ‖m‖²)`` (``m`` = mean − shift, ≈ 0 with the agreed shift; the term keeps
exactly constant features, whose mean is not representable, at 0), and the top-``k`` subspace is not
unique when ``c_k − c_{k+1} ≤ 1e-8·c_1`` (``eigh``'s backward error is ~eps·c_1, so the subspace
error ~ rounding/gap would exceed ~1e-7). Neither
depends on where the features sit: a mean of 1e6 gives the same decisions as a mean of 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_w2s.metrics._eigen import top_eigenpairs
from lightning_w2s.metrics._moments import Sums, covariance
from lightning_w2s.metrics.threads import matmul

REPRESENTATION_KEYS = ("fro", "op", "cka")
_EPS = torch.finfo(torch.float64).eps
_TIE_RTOL = 1e-8  # gap, relative to the largest eigenvalue, under which the top-k subspace is not unique
ITERATIVE_MIN_DIM = 1024  # below this a dense eigh costs < ~0.5 s on one core and is exact
KRYLOV_RTOL = 1e-4  # residual of every kept Ritz pair, relative to the smallest kept value
_DENSE_OP_MAX = 512  # full-rank op: form D G D and take eigvalsh up to this many components


@dataclass
class Spectrum:
    """The kept eigenpairs of one covariance and its ridge λ (:func:`spectrum`).

    >>> spec = spectrum(torch.diag(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)), 0.0, 10.0, 0.1, 2, "n", "student")
    >>> spec.c.tolist(), round(spec.lam, 12), spec.method  # λ = 0.1·(2 + 4)/10
    ([2.0, 4.0], 0.06, 'eigh')
    """

    c: Tensor  # kept eigenvalues, ascending (r,)
    u: Tensor  # their eigenvectors (d, r)
    lam: float  # the ridge λ of this representation
    method: str  # "eigh" or "krylov"


def _floor(cov: Tensor, mean_sq: float) -> tuple[float, float]:
    trace = float(cov.diagonal().sum())
    return trace, 2.0 * cov.shape[0] * _EPS * (abs(trace) + mean_sq)


def _krylov_top(cov: Tensor, k: int, floor: float) -> tuple[Tensor, Tensor] | None:
    """Top ``k+1`` eigenpairs (ascending) by block Krylov, or ``None`` (→ exact ``eigh``)."""

    def progress(values: Tensor, residuals: Tensor) -> float:
        theta_k, gap = float(values[1]), float(values[1] - values[0])
        kept = float(residuals[1:].max()) / max(KRYLOV_RTOL * theta_k, floor)
        cut = float(residuals[0]) / max(0.1 * gap, floor)
        return max(kept, cut)

    found = top_eigenpairs(lambda q: matmul(cov, q), cov.shape[0], k + 1, progress, like=cov)
    if found is None:
        return None
    values = found.values
    if float(values[1] - values[0] - found.residuals[0]) <= 2.0 * _TIE_RTOL * float(values[-1]):
        return None  # too close to a tie to certify from Ritz values: decide exactly
    return values, found.vectors


def spectrum(cov: Tensor, mean_sq: float, n: float, reg: float, max_components: int | None, rel: str, who: str, exact: bool = False) -> Spectrum | str:
    """Kept eigenpairs (rounding floor, optional top-k truncation) and λ of one covariance, or the
    reason it is degenerate. ``cov`` is read only through products and ``eigh``."""
    d = cov.shape[0]
    _, floor = _floor(cov, mean_sq)
    k = max_components
    found, method = None, "eigh"
    if not exact and k is not None and d >= ITERATIVE_MIN_DIM:
        found, method = _krylov_top(cov, k, floor), "krylov"
    if found is None:
        method = "eigh"
        try:
            found = torch.linalg.eigh(cov)  # ascending
        except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
            return f"the eigendecomposition of the {who} covariance failed ({exc})"
    values, vectors = found
    kept = int((values > floor).sum())
    if kept == 0:
        return f"the {who} features are constant (no covariance eigenvalue above the float64 rounding floor {floor:.3g}; largest {float(values[-1]):.3g})"
    if k is not None and kept > k:
        top_k, next_one = float(values[-k]), float(values[-k - 1])
        if top_k - next_one <= _TIE_RTOL * float(values[-1]):
            return f"the top-{k} principal subspace of the {who} features is not unique (covariance eigenvalues {k} and {k + 1} tie: {top_k:.6g} vs {next_one:.6g}); choose another `max_components`"
        kept = k
    c = values[-kept:]
    # λ = reg·tr(K)/n (the convention of docs/theory.md §2.4; tr(K) = tr(C) of the kept components), or reg times the
    # mean eigenvalue of the (truncated) covariance for reg_relative_to="dim".
    denominator = n if rel == "n" else float(d if k is None else min(d, k))
    return Spectrum(c=c, u=vectors[:, -kept:], lam=reg * float(c.sum()) / denominator, method=method)


def participation_ratio(cov: Tensor, mean_sq: float, who: str = "student") -> tuple[Tensor, str | None]:
    """``tr(C)²/‖C‖_F²`` (module docstring), or NaN and the reason for constant features."""
    trace, floor = _floor(cov, mean_sq)
    if not math.isfinite(trace):
        return cov.new_tensor(float("nan")), "the accumulated statistics are not finite (overflow or NaN/Inf features)"
    if not trace > floor:
        reason = f"the {who} features are constant (covariance trace {trace:.3g} under the float64 rounding floor {floor:.3g})"
        return cov.new_tensor(float("nan")), reason
    return cov.diagonal().sum().square() / torch.linalg.vector_norm(cov).square(), None


def _top_op(dd: Tensor, cs: Tensor, x: Tensor, h: Tensor) -> Tensor:
    """``λ_max(D G D)`` with ``G = diag(c_s) − X diag(h) Xᵀ`` (symmetric PSD: ``G = Φ_sᵀ(I−P_w)²Φ_s/n``)."""
    r = dd.shape[0]
    if r > _DENSE_OP_MAX:

        def apply(v: Tensor) -> Tensor:
            dv = dd[:, None] * v
            xt_dv = (dv.T @ x).T  # = Xᵀ(Dv); this layout is several times faster than x.T @ dv in MKL
            return dd[:, None] * (cs[:, None] * dv - x @ (h[:, None] * xt_dv))

        found = top_eigenpairs(apply, r, 1, lambda val, res: float(res[0]) / (1e-10 * max(float(val[0]), 1e-300)), like=dd, block=8)
        if found is not None:
            return found.values[-1]
    g = torch.mm(x * h, x.T).neg_()
    g.diagonal().add_(cs)
    g.mul_(dd[:, None]).mul_(dd[None, :])  # D G D, symmetric; eigvalsh reads its lower triangle
    return torch.linalg.eigvalsh(g)[-1]


def _teacher_spectrum(cov: Tensor, mean_sq: float, kw: dict, memo: dict | None) -> Spectrum | str:
    """:func:`spectrum` of the teacher covariance, reused from ``memo`` when ``cov``, its mean term
    and the arguments are exactly those of the previous call (the teacher's features are a constant
    of the probe, so a check that feeds the same rows finds the same sums bit for bit); exact."""
    if memo is not None and memo.get("kw") == kw and memo.get("mean_sq") == mean_sq and memo["cov"].device == cov.device and memo["cov"].shape == cov.shape and torch.equal(memo["cov"], cov):
        return memo["spectrum"]
    found = spectrum(cov, mean_sq, who="teacher", **kw)
    if memo is not None:
        memo.clear()
        memo.update(kw=dict(kw), mean_sq=mean_sq, cov=cov, spectrum=found)
    return found


def evaluate(parts: list[Sums], reg: float, max_components: int | None, rel: str, *, gap: bool = True, exact: bool = False, teacher: dict | None = None) -> tuple[dict[str, Tensor], str | None]:
    """All quantities from one group of sums, or the sum of several row-disjoint groups (added one
    d×d matrix at a time): ``(values, reason)``; on a fault the values not yet defined are NaN.

    Keys: ``fro``, ``op``, ``cka``, ``effective_rank`` when ``gap``; ``pred_gap`` when the (single)
    group carries label sums. ``exact=True`` forces ``eigh`` (the reference path). ``teacher``: a
    dict this function keeps the teacher covariance and its spectrum in between calls, reusing the
    spectrum when the covariance is bitwise equal (:func:`_teacher_spectrum`; holds one d_w×d_w copy).
    """
    sums = parts[0]
    dev = sums.n.device
    labelled = len(parts) == 1 and sums.y1 is not None
    keys = (list(REPRESENTATION_KEYS) + ["effective_rank"] if gap else []) + (["pred_gap"] if labelled else [])
    out = {k: torch.tensor(float("nan"), dtype=torch.float64, device=dev) for k in keys}
    n = float(sum(float(p.n) for p in parts))
    if not n >= 2:
        return out, f"fewer than 2 samples (n = {n:g})"
    means = [sum(p.s1[i] for p in parts) / n for i in (0, 1)]
    mean_sq = [float(m.square().sum()) for m in means]
    not_finite = "the accumulated statistics are not finite (overflow or NaN/Inf features)"
    if not all(math.isfinite(v) for v in mean_sq):
        return out, not_finite
    kw = {"n": n, "reg": reg, "max_components": max_components, "rel": rel, "exact": exact}
    # covariances one at a time (each a new d×d tensor) to bound the transient memory
    cov = covariance(parts, 0, 0, means, n)
    norm_s = torch.linalg.vector_norm(cov)  # NaN/Inf anywhere in the sums reaches the norms
    if not math.isfinite(float(norm_s)):
        return out, not_finite
    rank_s, constant_s = participation_ratio(cov, mean_sq[0], "student")
    if gap:
        out["effective_rank"] = rank_s
    spec_s = constant_s or spectrum(cov, mean_sq[0], who="student", **kw)
    del cov
    cov = covariance(parts, 1, 1, means, n)
    norm_w = torch.linalg.vector_norm(cov)
    if not math.isfinite(float(norm_w)):
        return out, not_finite
    constant_w = participation_ratio(cov, mean_sq[1], "teacher")[1]
    spec_w = constant_w or (None if isinstance(spec_s, str) else _teacher_spectrum(cov, mean_sq[1], kw, teacher))
    del cov
    reason = next((r for r in (spec_s, spec_w) if isinstance(r, str)), None)
    if reason and not (gap and constant_s is None and constant_w is None):
        return out, reason
    cov = covariance(parts, 0, 1, means, n)
    norm_sw = torch.linalg.vector_norm(cov)
    if not math.isfinite(float(norm_sw)):
        return out, not_finite
    if gap:  # CKA of the features themselves: defined whenever neither is constant (any truncation)
        out["cka"] = norm_sw.square() / (norm_s * norm_w)
    if reason:
        return out, reason
    x = matmul(spec_s.u.T, matmul(cov, spec_w.u))  # C_sw in the two (kept) eigenbases
    del cov
    cs, cw = spec_s.c, spec_w.c
    a_s, a_w = 1.0 / (cs + spec_s.lam), 1.0 / (cw + spec_w.lam)
    d2 = cs * a_s.square()  # diagonal of A_s C_s A_s = D²
    if gap:
        h_w = (cw + 2.0 * spec_w.lam) * a_w.square()  # diagonal of 2A_w − A_w C_w A_w
        g_diag = cs - (x.square() * h_w).sum(1)  # diagonal of G in the student eigenbasis
        out["fro"] = (d2 * g_diag).sum() / n
        out["op"] = _top_op(d2.sqrt(), cs, x, h_w).clamp_min(0.0).sqrt()
    if labelled:
        ybar = sums.y1 / n
        b_s = spec_s.u.T @ (sums.sy[0] / n - torch.outer(means[0], ybar))  # U_sᵀ Φ_sᵀ y / n (centred)
        b_w = spec_w.u.T @ (sums.sy[1] / n - torch.outer(means[1], ybar))
        gy = b_s - (x * a_w) @ b_w  # U_sᵀ Φ_sᵀ (I − P_w) y / n
        out["pred_gap"] = (d2[:, None] * gy.square()).sum()
    return out, None


def effective_rank_of(parts: list[Sums]) -> tuple[Tensor, str | None]:
    """The participation ratio of side 0's covariance from one-sided sums (``EffectiveRank``)."""
    n = float(sum(float(p.n) for p in parts))
    if not n >= 2:
        return parts[0].n.new_tensor(float("nan")), f"fewer than 2 samples (n = {n:g})"
    mean = sum(p.s1[0] for p in parts) / n
    return participation_ratio(covariance(parts, 0, 0, [mean], n), float(mean.square().sum()))
