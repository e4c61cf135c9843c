"""Streaming representation metrics: sum states, shifts, merging and the DDP sum (docs/theory.md §2.4).

The shift used for numerical stability must be the same on every rank and the
floors/tie test must use the covariance. Features offset by 1e6 must give the values of centred
ones. Tolerance of those comparisons, 1e-7 relative: the offset features are stored in float64 with
an absolute rounding of ulp(1e6)/2 = 5.8e-11 on entries of unit spread, a relative perturbation of
~6e-11 of the data itself; the statistics are smooth in the data (condition numbers of a few
hundred on these small synthetic problems), so ~1e-8 is the most that rounding alone explains and
1e-7 leaves a margin. The shift-0 construction of the old first DDP check was off by 1.5–85% at
means ≥ 1e5, so the tests can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _repr_reference import np_gap, np_participation_ratio, synthetic, t
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_w2s.metrics import RepresentationGap
from lightning_w2s.metrics.functional import effective_rank, representation_gap
from lightning_w2s.metrics.representation import EffectiveRank

RTOL = 1e-9
OFFSET_RTOL = 1e-7  # module docstring
KEYS = ("fro", "op", "cka", "effective_rank")


def stream(S, W, labels, sizes, perm=None, **kw):
    m = RepresentationGap(**kw)
    idx = np.arange(S.shape[0]) if perm is None else np.asarray(perm)
    start = 0
    for b in sizes:
        rows = idx[start : start + b]
        m.update(t(S[rows]), t(W[rows]), None if labels is None else torch.as_tensor(labels[rows]))
        start += b
    assert start == S.shape[0]
    return m.compute()


def assert_same(got: dict, ref: dict, rtol: float, keys=None):
    for key in keys or ref:
        assert np.isfinite(float(got[key])), key
        np.testing.assert_allclose(float(got[key]), float(ref[key]), rtol=rtol, err_msg=key)


# ------------------------------------------------------------------------------------------------
# one process
# ------------------------------------------------------------------------------------------------
_S, _W, _Y = synthetic(64, 10, 6, seed=11)
_CLS = (_Y > np.median(_Y)).astype(np.int64)
_CLS[::5] = -1
_REF = representation_gap(t(_S), t(_W), labels=torch.as_tensor(_CLS), max_components=5)


@settings(max_examples=30, deadline=None)
@given(perm=st.permutations(list(range(64))), cuts=st.lists(st.integers(1, 63), max_size=6, unique=True))
def test_streaming_is_batch_order_and_size_invariant(perm, cuts):
    bounds = [0] + sorted(cuts) + [64]
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    out = stream(_S, _W, _CLS, sizes, perm, num_classes=2, max_components=5)
    assert_same(out, _REF, 1e-10)


def test_streaming_equals_functional_and_dense_with_real_labels():
    S, W, y = synthetic(300, 24, 12, seed=12, mean=3.0)
    y = y.copy()
    y[::4] = np.nan  # gold on 3/4 of the rows
    out = stream(S, W, y, [37] * 8 + [4], label_dim=1, reg=0.1)
    fun = representation_gap(t(S), t(W), labels=t(y))
    assert_same(out, fun, 1e-10)
    known = np.isfinite(y)
    np.testing.assert_allclose(float(out["pred_gap"]), np_gap(S[known], W[known], 0.1, y[known])["pred_gap"], rtol=RTOL)
    np.testing.assert_allclose(float(out["effective_rank"]), np_participation_ratio(S), rtol=1e-10)


@pytest.mark.parametrize("max_components", [None, 3])
@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_offset_features_give_the_values_of_centred_ones(offset, max_components):
    """One process: metric, functional and EffectiveRank at a mean of 1e3/1e6."""
    S, W, y = synthetic(240, 8, 5, seed=9)
    S, W = S - S.mean(0), W - W.mean(0)
    cls = (y > 0).astype(np.int64)
    centred = stream(S, W, cls, [40] * 6, num_classes=2, max_components=max_components)
    shifted = stream(S + offset, W - offset, cls, [40] * 6, num_classes=2, max_components=max_components)
    assert_same(shifted, centred, OFFSET_RTOL)
    assert_same(
        representation_gap(t(S + offset), t(W - offset), labels=torch.as_tensor(cls), max_components=max_components),
        representation_gap(t(S), t(W), labels=torch.as_tensor(cls), max_components=max_components),
        OFFSET_RTOL,
    )
    ranks = []
    for data in (S, S + offset):
        m = EffectiveRank()
        for i in range(0, 240, 40):
            m.update(t(data[i : i + 40]))
        ranks.append(float(m.compute()))
    np.testing.assert_allclose(ranks[1], ranks[0], rtol=OFFSET_RTOL)
    np.testing.assert_allclose(ranks[0], np_participation_ratio(S), rtol=1e-10)


def test_tie_test_and_floor_use_the_covariance_not_the_moment_about_the_shift():
    """A zero reference shift at a mean of 1e3 (the old first DDP check): no false 'not unique' NaN,
    and the covariance is still accurate (cancellation eps·mean²/var ≈ 2e-10 here)."""
    S, W, y = synthetic(240, 8, 5, seed=9)
    S, W = S - S.mean(0), W - W.mean(0)
    centred = stream(S, W, None, [60] * 4, max_components=3)
    zero_shift = stream(S + 1e3, W + 1e3, None, [60] * 4, max_components=3, student_reference=torch.zeros(8), teacher_reference=torch.zeros(5))
    assert_same(zero_shift, centred, 1e-6)


def test_constant_features_with_an_unrepresentable_mean_are_constant():
    """x = 0.1 everywhere: the first batch's mean is off by an ulp, the sums are tiny but not 0."""
    m = RepresentationGap()
    m.update(torch.full((30, 4), 0.1, dtype=torch.float64), torch.randn(30, 3, dtype=torch.float64))
    m.update(torch.full((7, 4), 0.1, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64))
    with pytest.warns(RuntimeWarning, match="student features are constant"):
        out = m.compute()
    assert all(np.isnan(float(out[k])) for k in KEYS)


def test_shift_is_the_first_nonempty_batch_mean_and_reset_reopens_it():
    S, W, _ = synthetic(100, 6, 4, seed=13, mean=50.0)
    m = RepresentationGap(6, 4)
    m.update(t(S[:0]), t(W[:0]))  # an empty batch does not fix the shift
    m.update(t(S[:50]), t(W[:50]))
    np.testing.assert_allclose(m.shift_s.numpy(), S[:50].mean(0))
    m.update(t(S[50:]), t(W[50:]))
    first = m.compute()
    m.reset()
    m.update(t(S[30:]), t(W[30:]))
    np.testing.assert_allclose(m.shift_s.numpy(), S[30:].mean(0))
    m.update(t(S[:30]), t(W[:30]))
    assert_same(m.compute(), first, 1e-10)


def test_merge_state_reshifts_exactly():
    S, W, y = synthetic(90, 7, 5, seed=14, mean=20.0)
    a, b = RepresentationGap(label_dim=1), RepresentationGap(label_dim=1)
    a.update(t(S[:40]), t(W[:40]), t(y[:40]))
    b.update(t(S[40:]), t(W[40:]), t(y[40:]))  # a different first-batch shift
    assert not torch.equal(a.shift_s, b.shift_s)
    before = {k: v.clone() for k, v in b.metric_state.items()}
    a.merge_state(b)
    assert all(torch.equal(before[k], v) for k, v in b.metric_state.items())  # the incoming metric is untouched
    ref = np_gap(S, W, 0.1, y)
    assert_same(a.compute(), ref, 1e-9, keys=list(ref))
    fresh = RepresentationGap(label_dim=1)
    fresh.update(t(S[:0]), t(W[:0]), t(y[:0]))  # dims known, no rows: adopts the incoming shift
    fresh.merge_state(b)
    assert torch.equal(fresh.shift_s, b.shift_s)
    assert_same(fresh.compute(), np_gap(S[40:], W[40:], 0.1, y[40:]), 1e-9, keys=["fro", "op", "cka"])


def test_forward_accumulates_only():
    S, W, _ = synthetic(40, 5, 3, seed=15)
    m = RepresentationGap()
    assert m(t(S[:20]), t(W[:20])) is None
    m(t(S[20:]), t(W[20:]))
    assert_same(m.compute(), np_gap(S, W, 0.1), RTOL, keys=["fro", "op", "cka"])


def test_float32_input_and_lazy_dims():
    S, W, _ = synthetic(50, 5, 3, seed=16)
    m = RepresentationGap()
    m.update(torch.as_tensor(S, dtype=torch.float32), torch.as_tensor(W, dtype=torch.float32))
    ref = np_gap(S.astype(np.float32).astype(float), W.astype(np.float32).astype(float), 0.1)
    out = m.compute()
    assert all(v.dtype == torch.float64 for v in out.values())
    assert_same(out, ref, RTOL, keys=list(ref))
    with pytest.raises(ValueError, match="student_features"):
        m.update(torch.zeros(3, 6), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="teacher_dim = 4"):  # a declared size is checked at the lazy start
        RepresentationGap(teacher_dim=4).update(torch.zeros(3, 5), torch.zeros(3, 3))


def test_streaming_effective_rank_equals_functional_in_uneven_batches():
    g = torch.Generator().manual_seed(3)
    x = 5.0 + torch.randn(301, 7, generator=g, dtype=torch.float64) @ torch.randn(7, 7, generator=g, dtype=torch.float64)
    m = EffectiveRank()
    for chunk in (x[:1], x[1:8], x[8:]):
        m.update(chunk)
    assert float(m.compute()) == pytest.approx(float(effective_rank(x)), rel=1e-10)
    assert float(m.compute()) == pytest.approx(np_participation_ratio(x.numpy()), rel=1e-10)


# ------------------------------------------------------------------------------------------------
# DDP: torchmetrics' real sync path with the all-gather played in-process (fast); the real
# 2-process gloo run of the same checks is tests/test_representation_ddp.py
# ------------------------------------------------------------------------------------------------
class InProcessWorld:
    """Stands in for ``torch.distributed.all_gather`` across metrics that play the ranks of one
    process. The shift agreement is a collective: when one "rank" gathers the shifts, every rank
    adopts the common one (as all would, at the same moment, under real DDP)."""

    def __init__(self) -> None:
        self.metrics: list = []

    def __call__(self, x, group=None):
        for name in self.metrics[0]._reductions:
            if any(getattr(m, name) is x for m in self.metrics):
                return [getattr(m, name).clone() for m in self.metrics]
        sent = [torch.cat([x.new_full((1,), 0.0 if m._fresh else 1.0), *m._shifts()]) for m in self.metrics]
        holders = [p for p in sent if float(p[0]) > 0]
        if holders:
            for m in self.metrics:
                m._move_to_shift(list(holders[0][1:].split(m._dims)))
        return sent


def _ddp_data(check, offset):
    S, W, y = synthetic(101, 6, 4, seed=30 + check)
    cls = (y > 0).astype(np.int64)
    cls[::3] = -1
    return S - S.mean(0) + offset, W - W.mean(0) - offset, cls


def _run_checks(metrics, offset, world=2):
    """Two checks (update every shard, compute, reset); rank 1's first batch is empty."""
    results = [dict() for _ in metrics]
    for check in range(2):
        S, W, cls = _ddp_data(check, offset)
        for rank, m in enumerate(metrics):
            rows = np.arange(rank, 101, world)  # rank-strided shard, uneven sizes (51 / 50)
            if rank == 1:
                m.update(t(S[:0]), t(W[:0]), torch.as_tensor(cls[:0]))
            for i in range(0, len(rows), 16):
                r = rows[i : i + 16]
                m.update(t(S[r]), t(W[r]), torch.as_tensor(cls[r]))
        outs = [{k: v.clone() for k, v in m.compute().items()} for m in metrics]
        for res, m, out in zip(results, metrics, outs):
            res[f"shift{check}"] = m.shift_s.clone()
            res[f"out{check}"] = out
        for m in metrics:
            m.reset()
    return results


@pytest.mark.parametrize("max_components", [None, 3])
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_ddp_sync_is_exact_with_a_rank_identical_shift(offset, max_components):
    world = InProcessWorld()
    kw = dict(num_classes=2, max_components=max_components, distributed_available_fn=lambda: True, dist_sync_fn=world)
    world.metrics.extend(RepresentationGap(6, 4, **kw) for _ in range(2))
    results = _run_checks(world.metrics, offset)
    for check in range(2):
        S, W, cls = _ddp_data(check, 0.0)
        ref = representation_gap(t(S), t(W), labels=torch.as_tensor(cls), max_components=max_components)
        for res in results:
            assert_same(res[f"out{check}"], ref, RTOL if offset == 0 else OFFSET_RTOL, keys=list(ref))
            np.testing.assert_allclose(float(res[f"out{check}"]["effective_rank"]), np_participation_ratio(S), rtol=OFFSET_RTOL)
        assert torch.equal(results[0][f"shift{check}"], results[1][f"shift{check}"])  # the same shift on both ranks
        assert float(results[0][f"shift{check}"].abs().max()) >= 0.5 * offset  # a data-dependent shift, never 0


def test_ddp_effective_rank_with_offset_features():
    world = InProcessWorld()
    world.metrics.extend(EffectiveRank(distributed_available_fn=lambda: True, dist_sync_fn=world) for _ in range(2))
    S, _, _ = _ddp_data(0, 1e6)
    for rank, m in enumerate(world.metrics):
        for i in range(rank * 16, 101, 32):
            m.update(t(S[i : i + 16]))
    values = [float(m.compute()) for m in world.metrics]
    assert torch.equal(world.metrics[0].shift, world.metrics[1].shift)
    np.testing.assert_allclose(values, [np_participation_ratio(S - 1e6)] * 2, rtol=OFFSET_RTOL)
