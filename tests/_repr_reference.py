"""Independent dense references for the representation metrics (numpy float64, n×n matrices).

Written from the definitions, not from the d×d code: ``K = ΦΦᵀ/n``, ``P = K(K + λI)^-1`` and
``M = P_s(I − P_w)`` as n×n matrices with norms taken directly; principal components by SVD; linear
CKA of the centred features (Kornblith et al. 2019) by its Gram-matrix form ``tr(K_s K_w) /
sqrt(tr(K_s²) tr(K_w²))``; the participation ratio from ``eigvalsh`` of the covariance.
"""

from __future__ import annotations

import numpy as np
import torch


def np_top_pcs(F: np.ndarray, k: int | None) -> np.ndarray:
    """Centre, then project onto the top-k right singular vectors (principal components)."""
    F = F - F.mean(axis=0)
    if k is None or k >= F.shape[1]:
        return F
    _, _, vt = np.linalg.svd(F, full_matrices=False)
    return F @ vt[:k].T


def np_smoother(F: np.ndarray, reg: float, rel: str = "n", d_eff: int | None = None) -> np.ndarray:
    n = F.shape[0]
    K = F @ F.T / n
    lam = reg * np.trace(K) / (n if rel == "n" else d_eff)
    return K @ np.linalg.inv(K + lam * np.eye(n))


def np_cka(S: np.ndarray, W: np.ndarray) -> float:
    S, W = np.asarray(S, float), np.asarray(W, float)
    Ks, Kw = (S - S.mean(0)) @ (S - S.mean(0)).T, (W - W.mean(0)) @ (W - W.mean(0)).T
    return float(np.trace(Ks @ Kw) / np.sqrt(np.trace(Ks @ Ks) * np.trace(Kw @ Kw)))


def np_participation_ratio(X: np.ndarray) -> float:
    c = np.linalg.eigvalsh(np.cov(np.asarray(X, float).T, bias=True))
    return float(c.sum() ** 2 / np.sum(c**2))


def np_gap(S, W, reg, Y=None, k=None, rel="n"):
    """fro, op, pred_gap of the (optionally top-k) construction; cka of the features themselves."""
    S, W = np.asarray(S, float), np.asarray(W, float)
    n = S.shape[0]
    Fs, Fw = np_top_pcs(S, k), np_top_pcs(W, k)
    ds = S.shape[1] if k is None else min(k, S.shape[1])
    dw = W.shape[1] if k is None else min(k, W.shape[1])
    Ps, Pw = np_smoother(Fs, reg, rel, ds), np_smoother(Fw, reg, rel, dw)
    M = Ps @ (np.eye(n) - Pw)
    out = {"fro": np.sum(M * M) / n, "op": np.linalg.norm(M, 2), "cka": np_cka(S, W)}
    if Y is not None:
        Y = np.asarray(Y, float).reshape(n, -1)
        out["pred_gap"] = sum(np.sum((M @ Y[:, j]) ** 2) for j in range(Y.shape[1])) / n
    return out


def synthetic(n, ds, dw, seed=0, shared=4, mean=0.0):
    """Student and teacher features sharing a latent factor, plus a real label on it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, shared))
    S = z @ rng.normal(size=(shared, ds)) + 0.3 * rng.normal(size=(n, ds)) + mean
    W = z[:, : max(1, shared // 2)] @ rng.normal(size=(max(1, shared // 2), dw)) + rng.normal(size=(n, dw))
    y = z[:, 0] + 0.5 * z[:, -1] + 0.1 * rng.normal(size=n)
    return S, W, y


def t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def assert_close(got: dict, ref: dict, rtol=1e-9):
    assert set(got) == set(ref)
    for key in ref:
        assert np.isfinite(float(got[key])), key
        np.testing.assert_allclose(float(got[key]), ref[key], rtol=rtol, atol=1e-15, err_msg=key)
