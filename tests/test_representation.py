"""Representation gap (docs/theory.md §2.4): the functional against independent dense n×n references.

The reference (``tests/_repr_reference.py``) builds ``K = ΦΦᵀ/n``, ``P = K(K + λI)^-1`` and
``M = P_s(I − P_w)`` as n×n float64 matrices and takes norms directly; the code under test never
forms an n×n matrix (d×d push-through identities). Agreement is expected to rounding: the tolerance
1e-9 relative is ~1e5 times the float64 rounding seen on these sizes (~1e-14), far below any
modelling difference (a wrong sign or factor in one trace term moves the value by O(1)). Streaming,
shifts and DDP: ``test_representation_streaming.py``; d ≥ 1024 (block Krylov) and the thread scope:
``test_representation_scale.py``; real 2-process gloo: ``test_representation_ddp.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _repr_reference import assert_close, np_cka, np_gap, np_participation_ratio, np_smoother, np_top_pcs, synthetic, t

from lightning_w2s.metrics import DEFAULT_CONSTRUCTION, RepresentationGap
from lightning_w2s.metrics.functional import effective_rank, representation_gap
from lightning_w2s.ranking.scores import rank_teachers

RTOL = 1e-9


# ------------------------------------------------------------------------------------------------
# functional vs dense
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,ds,dw,reg",
    [(40, 5, 3, 0.1), (120, 30, 12, 0.01), (150, 8, 40, 1.0), (60, 90, 10, 0.1)],  # last: d_s > n
)
def test_functional_matches_dense_reference(n, ds, dw, reg):
    S, W, y = synthetic(n, ds, dw, seed=n + ds)
    got = representation_gap(t(S), t(W), reg=reg, labels=t(y))
    assert_close(got, np_gap(S, W, reg, y))


def test_class_labels_sum_of_one_hot_columns_and_unknown_rows():
    S, W, y = synthetic(90, 12, 6, seed=3)
    cls = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))  # 3 classes
    cls[::7] = -1  # unknown gold
    got = representation_gap(t(S), t(W), labels=torch.as_tensor(cls))
    known = cls >= 0
    onehot = np.eye(3)[cls[known]]
    ref_gold = np_gap(S[known], W[known], 0.1, onehot)  # pred_gap: the gold subset's own definition
    ref_all = np_gap(S, W, 0.1)
    np.testing.assert_allclose(float(got["pred_gap"]), ref_gold["pred_gap"], rtol=RTOL)
    for key in ("fro", "op", "cka"):
        np.testing.assert_allclose(float(got[key]), ref_all[key], rtol=RTOL)


def test_real_multi_column_labels_sum_over_columns():
    S, W, y = synthetic(70, 9, 5, seed=4)
    Y = np.stack([y, y**2, -y], axis=1)
    got = representation_gap(t(S), t(W), reg=0.3, labels=t(Y))
    assert_close(got, np_gap(S, W, 0.3, Y))


@pytest.mark.parametrize("k", [1, 3, 6, 50])  # 50 > both dims: no truncation
def test_max_components_matches_dense_on_top_pcs(k):
    """fro/op/pred_gap on the top-k PCs; cka always of the features themselves."""
    S, W, y = synthetic(110, 14, 9, seed=5, shared=6)
    got = representation_gap(t(S), t(W), reg=0.05, labels=t(y), max_components=k)
    assert_close(got, np_gap(S, W, 0.05, y, k=k))


def test_cka_is_linear_cka_of_the_features_not_of_their_top_pcs():
    """Under the default (top-32) construction `cka` was the CKA of the top PCs."""
    rng = np.random.default_rng(31)
    z = rng.normal(size=(400, 24))  # shared by both; the student's top PCs are its 40 private noise directions
    S = np.concatenate([1.2 * rng.normal(size=(400, 40)), z @ np.linalg.qr(rng.normal(size=(24, 24)))[0]], axis=1)
    W = z @ rng.normal(size=(24, 60)) + 0.5 * rng.normal(size=(400, 60))
    full = np_cka(S, W)
    top = np_cka(np_top_pcs(S, 32), np_top_pcs(W, 32))
    assert abs(top - full) > 0.05  # the two readings differ on these features, so this test can fail
    for k in (None, 32, DEFAULT_CONSTRUCTION.max_components):
        np.testing.assert_allclose(float(representation_gap(t(S), t(W), max_components=k)["cka"]), full, rtol=RTOL)
    # Kornblith et al.'s invariances: isotropic scaling, orthogonal transforms, and CKA(X, X) = 1
    q, _ = np.linalg.qr(np.random.default_rng(32).normal(size=(60, 60)))
    np.testing.assert_allclose(float(representation_gap(t(3.0 * S), t(W @ q))["cka"]), full, rtol=RTOL)
    np.testing.assert_allclose(float(representation_gap(t(S), t(S))["cka"]), 1.0, rtol=1e-12)


@pytest.mark.parametrize("k", [None, 4])
def test_reg_relative_to_dim_matches_dense(k):
    S, W, y = synthetic(80, 10, 7, seed=6)
    got = representation_gap(t(S), t(W), reg=0.2, labels=t(y), max_components=k, reg_relative_to="dim")
    assert_close(got, np_gap(S, W, 0.2, y, k=k, rel="dim"))


def test_transductive_identity_with_kernel_ridge_heads():
    """‖f_w2s − f_sc‖²/n = pred_gap with f_w = P_w y, f_w2s = P_s f_w, f_sc = P_s y (dense heads)."""
    S, W, y = synthetic(100, 16, 6, seed=7)
    n = S.shape[0]
    Ps = np_smoother(S - S.mean(0), 0.1)
    Pw = np_smoother(W - W.mean(0), 0.1)
    f_w = Pw @ y
    f_w2s, f_sc = Ps @ f_w, Ps @ y
    lhs = np.sum((f_w2s - f_sc) ** 2) / n
    got = representation_gap(t(S), t(W), labels=t(y))
    np.testing.assert_allclose(float(got["pred_gap"]), lhs, rtol=RTOL)
    assert lhs > 1e-4  # not a trivial 0 = 0


def test_rank_deficient_features_are_well_defined():
    """Duplicated columns and d > n: the ridge smoother exists (λ > 0) — a finite value, no warning."""
    S, W, y = synthetic(50, 6, 4, seed=8)
    S = np.concatenate([S, S[:, :3] * 2.0, S[:, :1] - S[:, 1:2]], axis=1)  # rank 6 in 9 columns
    W = np.concatenate([W, W], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = representation_gap(t(S), t(W), labels=t(y))
    assert_close(got, np_gap(S, W, 0.1, y), rtol=1e-8)
    # max_components above the rank keeps the 6 real components (dense: the extra PCs are zero columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_k = representation_gap(t(S), t(W), max_components=8)
    assert_close(got_k, np_gap(S, W, 0.1, k=8), rtol=1e-8)


def test_bounds_hold():
    """0 ≤ op ≤ ‖P_s‖‖I − P_w‖ ≤ 1, ‖M‖_F² ≤ rank(M)·‖M‖₂², 0 ≤ CKA ≤ 1 [derived]."""
    for seed in range(5):
        S, W, _ = synthetic(60, 7, 5, seed=seed)
        g = representation_gap(t(S), t(W), reg=0.01)
        assert 0 <= float(g["op"]) <= 1
        assert 0 <= float(g["fro"]) * 60 <= 7 * float(g["op"]) ** 2 * (1 + 1e-12)
        assert 0 <= float(g["cka"]) <= 1


# ------------------------------------------------------------------------------------------------
# degenerate input: warning + NaN, never a crash
# ------------------------------------------------------------------------------------------------
def _all_nan(d, keys):
    return all(np.isnan(float(d[k])) for k in keys)


def test_constant_student_features_warn_and_nan():
    _, W, y = synthetic(30, 4, 3, seed=17)
    S = np.full((30, 4), 2.5)
    with pytest.warns(RuntimeWarning, match="student features are constant"):
        g = representation_gap(t(S), t(W), labels=t(y))
    assert _all_nan(g, ("fro", "op", "cka", "pred_gap"))
    m = RepresentationGap()
    m.update(t(S), t(W))
    with pytest.warns(RuntimeWarning, match="constant"):
        out = m.compute()
    assert _all_nan(out, ("fro", "op", "cka", "effective_rank"))


def test_constant_teacher_features_warn_and_nan_but_effective_rank_kept():
    S, _, _ = synthetic(30, 4, 3, seed=18)
    m = RepresentationGap()
    m.update(t(S), torch.ones(30, 3) * 7)
    with pytest.warns(RuntimeWarning, match="teacher features are constant"):
        out = m.compute()
    assert _all_nan(out, ("fro", "op", "cka"))
    np.testing.assert_allclose(float(out["effective_rank"]), float(effective_rank(t(S))), rtol=1e-10)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_features_warn_and_nan(bad):
    S, W, _ = synthetic(30, 4, 3, seed=19)
    S[5, 2] = bad
    with pytest.warns(RuntimeWarning, match="not finite"):
        g = representation_gap(t(S), t(W))
    assert _all_nan(g, ("fro", "op", "cka"))
    m = RepresentationGap()
    m.update(t(S[:10]), t(W[:10]))
    m.update(t(S[10:]), t(W[10:]))
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        out = m.compute()
    assert _all_nan(out, ("fro", "op", "cka", "effective_rank"))
    with pytest.warns(RuntimeWarning, match="not finite"):
        assert np.isnan(float(effective_rank(t(S))))


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_samples_warn_and_nan(n):
    with pytest.warns(RuntimeWarning, match="fewer than 2"):
        g = representation_gap(torch.randn(n, 3), torch.randn(n, 2))
    assert _all_nan(g, ("fro", "op", "cka"))


def test_compute_without_update_warns():
    m = RepresentationGap(num_classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchmetrics' own "compute before update"
        with pytest.warns(RuntimeWarning, match="no samples"):
            out = m.compute()
    assert _all_nan(out, ("fro", "op", "cka", "effective_rank", "pred_gap"))


def test_no_gold_rows_warns_for_pred_gap_only():
    S, W, _ = synthetic(40, 5, 3, seed=20)
    with pytest.warns(RuntimeWarning, match="pred_gap on the 0 labelled rows"):
        g = representation_gap(t(S), t(W), labels=torch.full((40,), -1))
    assert np.isnan(float(g["pred_gap"]))
    assert np.isfinite(float(g["fro"]))


def test_tied_top_components_warn_and_nan():
    """Exactly isotropic features: the top-2 principal subspace is arbitrary — refuse, don't guess."""
    q, _ = np.linalg.qr(np.random.default_rng(21).normal(size=(40, 4)))
    S = q * np.sqrt(40)  # orthonormal columns: covariance = I (after centering below)
    S = S - S.mean(0)
    q2, _ = np.linalg.qr(S)
    S = q2 * np.sqrt(40)
    W = np.random.default_rng(22).normal(size=(40, 3))
    with pytest.warns(RuntimeWarning, match="not unique"):
        g = representation_gap(t(S), t(W), max_components=2)
    assert _all_nan(g, ("fro", "op"))
    np.testing.assert_allclose(float(g["cka"]), np_cka(S, W), rtol=RTOL)  # cka needs no truncation
    # without truncation the same features are fine
    assert_close(representation_gap(t(S), t(W)), np_gap(S, W, 0.1))


# ------------------------------------------------------------------------------------------------
# effective rank and validation
# ------------------------------------------------------------------------------------------------
def test_effective_rank_is_the_participation_ratio_and_its_limits():
    """(Σc)²/Σc² of the covariance eigenvalues (numpy eigvalsh reference): 1 for rank one, k for k
    equal directions, and never above the Shannon effective rank exp(H(p)) (Rényi order 2 <= 1)."""
    rng = np.random.default_rng(23)
    X = rng.normal(size=(200, 6)) * np.array([3.0, 2.0, 1.0, 0.5, 0.1, 0.01])
    np.testing.assert_allclose(float(effective_rank(t(X))), np_participation_ratio(X), rtol=1e-10)
    c = np.linalg.eigvalsh(np.cov(X.T, bias=True))
    p = c / c.sum()
    assert 1.0 <= float(effective_rank(t(X))) < np.exp(-np.sum(p * np.log(p)))
    rank_one = np.outer(rng.normal(size=50), rng.normal(size=5))
    np.testing.assert_allclose(float(effective_rank(t(rank_one))), 1.0, rtol=1e-10)
    Z = rng.normal(size=(300, 4))
    Z = np.linalg.qr(Z - Z.mean(0))[0] * np.sqrt(300)  # centred orthonormal columns: covariance I_4
    iso = np.linalg.qr(rng.normal(size=(9, 9)))[0][:4]  # 4 orthonormal rows in R^9
    np.testing.assert_allclose(float(effective_rank(t(Z @ iso))), 4.0, rtol=1e-9)  # 4 equal directions


@pytest.mark.parametrize("kwargs,match", [({"reg": 0.0}, "reg"), ({"reg": float("nan")}, "reg"), ({"max_components": 0}, "max_components"), ({"reg_relative_to": "d"}, "reg_relative_to")])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        representation_gap(torch.randn(5, 2), torch.randn(5, 2), **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same number of rows"):
        representation_gap(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="student_features"):
        representation_gap(torch.randn(5), torch.randn(5, 2))
    with pytest.raises(ValueError, match="labels"):
        representation_gap(torch.randn(5, 2), torch.randn(5, 2), labels=torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        RepresentationGap().update(torch.randn(5, 2), torch.randn(5, 2), labels=torch.zeros(5))
    with pytest.raises(ValueError, match="num_classes"):
        RepresentationGap(num_classes=2).update(torch.randn(3, 2), torch.randn(3, 2), labels=torch.tensor([0, 1, 2]))


# ------------------------------------------------------------------------------------------------
# rank_teachers
# ------------------------------------------------------------------------------------------------
def test_rank_teachers_orders_spanning_partial_noise():
    rng = np.random.default_rng(24)
    S = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 12)) + 0.05 * rng.normal(size=(200, 12))
    teachers = {"noise": t(rng.normal(size=(200, 12))), "partial": t(S[:, :2] @ rng.normal(size=(2, 8)) + rng.normal(size=(200, 8))), "spans": t(S @ rng.normal(size=(12, 12)))}
    ranking = rank_teachers(t(S), teachers)
    assert [name for name, _ in ranking] == ["spans", "partial", "noise"]
    scores = [s for _, s in ranking]
    for name, score in ranking:  # the score is the default construction's `fro`
        ref = np_gap(S, teachers[name].numpy(), DEFAULT_CONSTRUCTION.reg, k=DEFAULT_CONSTRUCTION.max_components)
        np.testing.assert_allclose(score, ref["fro"], rtol=RTOL)
    assert scores[0] < scores[1] < scores[2]


def test_rank_teachers_nan_last_and_arguments():
    rng = np.random.default_rng(25)
    S = t(rng.normal(size=(60, 4)))
    teachers = {"const": torch.ones(60, 3), "ok": t(rng.normal(size=(60, 3)))}
    with pytest.warns(RuntimeWarning, match="constant"):
        ranking = rank_teachers(S, teachers)
    assert ranking[0][0] == "ok" and ranking[1][0] == "const" and np.isnan(ranking[1][1])
    y = torch.as_tensor(rng.normal(size=60))
    by_pred = rank_teachers(S, {"ok": teachers["ok"]}, labels=y, score="pred_gap", max_components=None)
    np.testing.assert_allclose(by_pred[0][1], np_gap(S.numpy(), teachers["ok"].numpy(), 0.1, y.numpy())["pred_gap"], rtol=RTOL)
    with pytest.raises(ValueError, match="labels"):
        rank_teachers(S, teachers, score="pred_gap")
    with pytest.raises(TypeError, match="unexpected"):
        rank_teachers(S, teachers, regg=0.1)
    with pytest.raises(ValueError, match="teachers"):
        rank_teachers(S, {})
