"""The cheaper paths of the representation family against the float64 reference (docs/performance.md).

- ``products="float32"``: each chunk's second-moment products in float32, added to float64 states.
  Tolerance 1e-5 relative: float32 accumulation over a chunk of n rows errs by ~sqrt(n)·6e-8 of
  the sum of |terms| per entry (~1e-6 at n = 300), and the gap is a smooth function of the sums
  with condition numbers of a few on these synthetic problems; measured 9e-8 on the overhead
  benchmark's 2,048-row probe and 2.4e-6 on the golden tiny models. The float64 default must stay
  within 1e-10 of the functional (the exact path).
- the finiteness test from column sums: a finite batch whose float64 sum overflows must not be
  counted as non-finite (the row-wise fallback decides), a NaN anywhere must still be.
- the teacher's spectrum reused between checks: only when the teacher covariance is bitwise equal;
  the values are those of a fresh metric, bit for bit, whether the rows change or not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _repr_reference import synthetic, t

from lightning_w2s.metrics import RepresentationGap
from lightning_w2s.metrics.functional import effective_rank, representation_gap
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, EffectiveRank, GapConstruction

FLOAT32_RTOL = 1e-5  # module docstring
KEYS = ("fro", "op", "cka", "effective_rank", "pred_gap")


def _stream(S, W, y, sizes, **kw):
    m = RepresentationGap(num_classes=2, max_components=5, **kw)
    start = 0
    for b in sizes:
        m.update(S[start : start + b], W[start : start + b], y[start : start + b])
        start += b
    return m


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_float32_products_agree_with_the_float64_functional(offset):
    S, W, z = synthetic(300, 24, 12, seed=3, mean=offset)
    y = torch.as_tensor((z > np.median(z)).astype(np.int64))
    y[::7] = -1  # gold on most rows: both state groups are used
    ref = representation_gap(t(S), t(W), labels=y, max_components=5)
    for dtype in (torch.float64, torch.float32):  # float32 inputs are what a student hands over
        fast = _stream(t(S).to(dtype), t(W).to(dtype), y, [100, 150, 50], products="float32").compute()
        exact = _stream(t(S).to(dtype), t(W).to(dtype), y, [100, 150, 50]).compute()
        if dtype == torch.float64:  # the default is the exact path
            for key in ref:
                np.testing.assert_allclose(float(exact[key]), float(ref[key]), rtol=1e-10, err_msg=key)
        for key in KEYS:
            assert np.isfinite(float(fast[key])), key
            np.testing.assert_allclose(float(fast[key]), float(exact[key]), rtol=FLOAT32_RTOL, err_msg=key)
        assert float(fast["fro"]) != float(exact["fro"])  # the option really changes the arithmetic


def test_float32_effective_rank_agrees_and_states_stay_float64():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 2.0, 16) + 50.0
    m = EffectiveRank(products="float32")
    m.update(x[:200])
    m.update(x[200:])
    assert all(v.dtype == torch.float64 for v in m.metric_state.values())
    np.testing.assert_allclose(float(m.compute()), float(effective_rank(x.double())), rtol=FLOAT32_RTOL)


def test_products_is_validated_and_the_default_construction_keeps_float64():
    with pytest.raises(ValueError, match="products"):
        RepresentationGap(products="float16")
    with pytest.raises(ValueError, match="products"):
        EffectiveRank(products="half")
    assert DEFAULT_CONSTRUCTION.products == "float64"
    assert "products" not in GapConstruction(products="float32").kwargs()  # not an argument of the functional


def test_a_finite_batch_whose_sum_overflows_is_not_counted_as_non_finite():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    big = x.clone()
    big[:2, 0] = 1e308  # finite, but the column sum overflows to inf
    m = EffectiveRank()
    m.update(big)
    assert float(m.n_nonfinite) == 0
    bad = x.clone()
    bad[5, 1] = float("nan")
    m = EffectiveRank()
    m.update(bad)
    assert float(m.n_nonfinite) == 1
    with pytest.warns(RuntimeWarning, match="not finite"):
        assert np.isnan(float(m.compute()))
    gap = RepresentationGap()
    gap.update(x, torch.where(torch.arange(40)[:, None] == 3, float("inf"), x))
    assert float(gap.n_nonfinite) == 1
    # the finiteness test sums each input in its own dtype: a float32 column that overflows float32 (not
    # float64), and a half-precision one whose sum leaves float16's range, are finite rows too
    for dtype, value in ((torch.float32, 3e38), (torch.float16, 6e4)):
        wide = x.to(dtype)
        wide[:2, 0] = value
        assert not bool(torch.isfinite(wide.sum(0)).all())  # the batch's own-dtype sum overflows
        m = EffectiveRank()
        m.update(wide)
        assert float(m.n_nonfinite) == 0, dtype


def test_empty_batch_leaves_effective_rank_unchanged():
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a, b = EffectiveRank(), EffectiveRank()
    a.update(x[:0])
    a.update(x)
    b.update(x)
    assert torch.equal(a.compute(), b.compute())


def test_reused_teacher_spectrum_gives_the_values_of_a_fresh_metric_bit_for_bit(monkeypatch):
    from lightning_w2s.metrics import _gap_algebra

    calls: list[str] = []
    real = _gap_algebra.spectrum
    monkeypatch.setattr(_gap_algebra, "spectrum", lambda *a, **kw: calls.append(kw["who"]) or real(*a, **kw))
    S, W, z = synthetic(200, 12, 8, seed=4)
    y = torch.as_tensor((z > 0).astype(np.int64))
    S, W = t(S), t(W)
    kept = RepresentationGap(num_classes=2, max_components=4)
    teacher_decompositions = []
    for check, (student, rows) in enumerate([(S, slice(None)), (S * 1.5 + 0.1, slice(None)), (S, slice(0, 150))]):
        kept.reset()
        kept.update(student[rows], W[rows], y[rows])
        calls.clear()
        got = kept.compute()
        teacher_decompositions.append(calls.count("teacher"))
        fresh = RepresentationGap(num_classes=2, max_components=4)
        fresh.update(student[rows], W[rows], y[rows])
        want = fresh.compute()
        for key in want:
            assert torch.equal(got[key], want[key]), (check, key)
    # the same teacher rows: reused; other rows (the third check): decomposed again
    assert teacher_decompositions == [1, 0, 1]
