"""Representation metrics at large width: the block-Krylov top-k path against the exact
``eigh`` path, its fallbacks, the eigensolver itself, the scoped thread count, and the device.

The exact path is the same public call with the Krylov path switched off (``ITERATIVE_MIN_DIM``
raised), so both sides go through identical code except the eigenpairs. Tolerance 1e-5 relative:
the convergence test (kept residuals ≤ 1e-4·θ_k, the cut resolved to a tenth of its gap) left
``fro``/``op`` within 4e-7 of the exact path on three spectra at d = 4096/2048 (module docstring of
``_gap_algebra``); the target is 1e-4. Timing is in ``benchmarks/representation/run.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lightning_w2s.metrics._gap_algebra as algebra
from lightning_w2s.metrics import RepresentationGap
from lightning_w2s.metrics._eigen import top_eigenpairs
from lightning_w2s.metrics.functional import effective_rank, representation_gap
from lightning_w2s.metrics.representation import EffectiveRank
from lightning_w2s.metrics.threads import fitting_threads, limited_threads, matmul, running_elsewhere, single_threaded

KRYLOV_AGREEMENT = 1e-5  # module docstring


class _Calls(list):
    spy = None


def _features(kind: str, n=1500, ds=1100, dw=1030, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    if kind == "signal_in_noise":  # the benchmark's shape: 24-d shared latent + isotropic noise bulk
        z = r(n, 24)
        return z @ r(24, ds) + 0.5 * r(n, ds) + 3.0, z[:, :12] @ r(12, dw) + r(n, dw) - 2.0
    scale = torch.arange(1, ds + 1, dtype=torch.float64) ** -0.6  # power-law spectrum, shared basis
    z = r(n, ds) * scale
    return z @ torch.linalg.qr(r(ds, ds))[0], z[:, :dw] @ r(dw, dw) / dw**0.5 + 0.05 * r(n, dw)


@pytest.fixture
def krylov_calls(monkeypatch):
    calls = _Calls()

    def spy(*args, **kwargs):
        kwargs.update(getattr(spy, "overrides", {}))
        found = top_eigenpairs(*args, **kwargs)
        calls.append(found)
        return found

    monkeypatch.setattr(algebra, "top_eigenpairs", spy)
    calls.spy = spy
    return calls


def _exact(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(algebra, "ITERATIVE_MIN_DIM", 10**9)
        return fn()


@pytest.mark.parametrize("kind", ["signal_in_noise", "power_law"])
def test_krylov_top_k_matches_the_exact_path(kind, monkeypatch, krylov_calls):
    s, w = _features(kind)
    y = (s[:, 0] > s[:, 0].median()).long()
    fast = representation_gap(s, w, labels=y, max_components=32)
    assert len([c for c in krylov_calls if c is not None]) >= 2  # both representations went through Krylov
    exact = _exact(monkeypatch, lambda: representation_gap(s, w, labels=y, max_components=32))
    for key in exact:
        np.testing.assert_allclose(float(fast[key]), float(exact[key]), rtol=KRYLOV_AGREEMENT, err_msg=key)


def test_streaming_metric_uses_the_same_path(monkeypatch, krylov_calls):
    s, w = _features("signal_in_noise", seed=1)
    m = RepresentationGap(max_components=32)
    for i in range(0, s.shape[0], 500):
        m.update(s[i : i + 500], w[i : i + 500])
    out = m.compute()
    assert any(c is not None for c in krylov_calls)
    exact = _exact(monkeypatch, lambda: representation_gap(s, w, max_components=32))
    for key in exact:
        np.testing.assert_allclose(float(out[key]), float(exact[key]), rtol=KRYLOV_AGREEMENT, err_msg=key)


def test_rank_below_max_components_keeps_every_component(monkeypatch, krylov_calls):
    g = torch.Generator().manual_seed(2)
    s = torch.randn(900, 10, generator=g, dtype=torch.float64) @ torch.randn(10, 1050, generator=g, dtype=torch.float64)
    w = s[:, :6] @ torch.randn(6, 1024, generator=g, dtype=torch.float64) + torch.randn(900, 1024, generator=g, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finite value, no warning
        fast = representation_gap(s, w, max_components=32)
    student = krylov_calls[0]  # rank 10 < block: the basis holds an invariant subspace at once
    assert student is not None and student.steps <= 3
    exact_values = torch.linalg.eigvalsh(torch.cov(s.T, correction=0))[-33:]
    np.testing.assert_allclose(student.values[-10:].numpy(), exact_values[-10:].numpy(), rtol=1e-10)
    assert float(student.values[:-10].abs().max()) < 1e-9 * float(exact_values[-1])  # the rest is 0
    exact = _exact(monkeypatch, lambda: representation_gap(s, w, max_components=32))
    for key in exact:
        np.testing.assert_allclose(float(fast[key]), float(exact[key]), rtol=KRYLOV_AGREEMENT, err_msg=key)


def test_full_rank_op_without_forming_dgd_matches_eigvalsh(monkeypatch, krylov_calls):
    """Above 512 kept components ``op`` is the top eigenvalue of the operator D G D (never formed)."""
    s, w = _features("signal_in_noise", n=900, ds=700, dw=300, seed=6)
    fast = representation_gap(s, w)
    assert krylov_calls and krylov_calls[-1] is not None  # the op solve (no truncation: eigh for the spectra)
    with monkeypatch.context() as m:
        m.setattr(algebra, "_DENSE_OP_MAX", 10**9)
        dense = representation_gap(s, w)
    np.testing.assert_allclose(float(fast["op"]), float(dense["op"]), rtol=1e-10)
    assert float(fast["fro"]) == float(dense["fro"])


def test_no_convergence_falls_back_to_the_exact_path(monkeypatch, krylov_calls):
    s, w = _features("signal_in_noise", n=1200, ds=1024, dw=1024, seed=3)
    krylov_calls.spy.overrides = {"max_steps": 1}  # one block cannot resolve a noise bulk: give up, then eigh
    fallback = representation_gap(s, w, max_components=32)
    assert krylov_calls and all(c is None for c in krylov_calls)
    exact = _exact(monkeypatch, lambda: representation_gap(s, w, max_components=32))
    for key in exact:
        np.testing.assert_allclose(float(fallback[key]), float(exact[key]), rtol=1e-12, err_msg=key)


def test_a_tie_at_the_cut_is_refused_at_large_width_too(krylov_calls):
    """Covariance exactly I (orthonormal centred columns): the top-32 subspace is arbitrary."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1100, 1030, generator=g, dtype=torch.float64)
    s = torch.linalg.qr(x - x.mean(0))[0] * 1100**0.5
    with pytest.warns(RuntimeWarning, match="not unique"):
        out = representation_gap(s, torch.randn(1100, 5, generator=g, dtype=torch.float64), max_components=32)
    assert np.isnan(float(out["fro"])) and np.isfinite(float(out["cka"]))
    assert krylov_calls  # Krylov was tried; a gap this close to a tie is decided by the exact eigh


def test_effective_rank_needs_no_eigendecomposition(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("an eigendecomposition was called")

    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 400, generator=g, dtype=torch.float64) * torch.linspace(0.1, 2.0, 400, dtype=torch.float64) + 7.0
    monkeypatch.setattr(torch.linalg, "eigh", forbidden)
    monkeypatch.setattr(torch.linalg, "eigvalsh", forbidden)
    value = float(effective_rank(x))
    m = EffectiveRank()
    m.update(x[:120])
    m.update(x[120:])
    np.testing.assert_allclose(float(m.compute()), value, rtol=1e-10)
    c = np.linalg.eigvalsh(np.cov(x.numpy().T, bias=True))
    monkeypatch.undo()
    np.testing.assert_allclose(value, c.sum() ** 2 / np.sum(c**2), rtol=1e-9)


# ------------------------------------------------------------------------------------------------
# the eigensolver
# ------------------------------------------------------------------------------------------------
def _diagonal_operator(values: torch.Tensor, seed: int = 0):
    q = torch.linalg.qr(torch.randn(len(values), len(values), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    a = (q * values) @ q.T
    return a, q


def test_top_eigenpairs_finds_the_top_k_of_a_known_spectrum():
    values = torch.cat([torch.linspace(100.0, 10.0, 8, dtype=torch.float64), torch.rand(292, generator=torch.Generator().manual_seed(1), dtype=torch.float64)])
    a, q = _diagonal_operator(values)
    found = top_eigenpairs(lambda v: a @ v, 300, 8, lambda th, res: float(res.max()) / (1e-10 * float(th[-1])), like=a)
    assert found is not None
    np.testing.assert_allclose(found.values.flip(0).numpy(), values[:8].numpy(), rtol=1e-12)
    np.testing.assert_allclose((found.vectors.T @ found.vectors).numpy(), np.eye(8), atol=1e-12)
    overlap = (found.vectors.T @ q[:, :8]).abs().max(dim=1).values  # each Ritz vector is ± an eigenvector
    np.testing.assert_allclose(overlap.numpy(), np.ones(8), atol=1e-9)


def test_top_eigenpairs_on_a_low_rank_operator_and_giving_up():
    values = torch.zeros(400, dtype=torch.float64)
    values[:3] = torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)
    a, _ = _diagonal_operator(values, seed=2)
    found = top_eigenpairs(lambda v: a @ v, 400, 6, lambda th, res: float(res.max()) / 1e-12, like=a)
    assert found is not None  # the basis becomes invariant: lost directions are re-drawn at random
    np.testing.assert_allclose(found.values.numpy(), [0, 0, 0, 1, 3, 5], atol=1e-12)
    assert top_eigenpairs(lambda v: a @ v, 400, 6, lambda th, res: 2.0, like=a, max_steps=3) is None


# ------------------------------------------------------------------------------------------------
# the scoped thread count and the device
# ------------------------------------------------------------------------------------------------
def test_limited_threads_restores_the_count_even_on_exceptions():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with limited_threads(1):
                assert torch.get_num_threads() == 1
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with limited_threads(4):  # never raises the count
            assert torch.get_num_threads() == 2
        with limited_threads(1):
            with limited_threads(1):
                pass
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2

        @single_threaded
        def fails():
            assert torch.get_num_threads() == 1
            raise ValueError("inside")

        with pytest.raises(ValueError, match="inside"):
            fails()
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="num_threads"):
            with limited_threads(0):
                pass
    finally:
        torch.set_num_threads(before)


def test_matmul_uses_the_callers_threads_inside_a_scope(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    try:
        a = torch.randn(3, 3, dtype=torch.float64)
        assert torch.equal(matmul(a, a), a @ a) and calls == []  # outside a scope: nothing to restore
        with limited_threads(1):
            out = matmul(a, a)
            assert torch.get_num_threads() == 1
        assert torch.equal(out, a @ a)
        assert calls == [1, 2, 1, 2]  # scope in, product with 2, back to 1, scope out
    finally:
        real(before)


def test_metric_algebra_runs_single_threaded_and_restores(monkeypatch):
    seen = []
    real = algebra.spectrum

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(algebra, "spectrum", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        s = torch.randn(50, 4, dtype=torch.float64)
        representation_gap(s, s[:, :2])
        m = RepresentationGap()
        m.update(s, s[:, :2])
        m.compute()
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _fake_proc(root, loadavg: str, states: dict[str, str]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "loadavg").write_text(loadavg)
    for tid, state in states.items():
        task = root / "self" / "task" / tid
        task.mkdir(parents=True)
        task.joinpath("stat").write_text(f"{tid} (pt main (x) {tid}) {state} 1 2 3 4\n")  # a command name may hold spaces and parentheses
    return str(root)


def test_running_elsewhere_subtracts_this_process_own_runnable_threads(tmp_path):
    proc = _fake_proc(tmp_path / "busy", "0.10 0.20 0.30 5/200 999\n", {"11": "R", "12": "S", "13": "R", "14": "D"})
    assert running_elsewhere(proc) == 3  # 5 runnable in all, 2 of them ours
    assert running_elsewhere(_fake_proc(tmp_path / "alone", "0 0 0 1/90 5\n", {"7": "R", "8": "R"})) == 0  # never negative
    assert running_elsewhere(str(tmp_path / "missing")) is None
    assert running_elsewhere(_fake_proc(tmp_path / "odd", "garbled\n", {})) is None
    here = running_elsewhere()  # the real /proc where there is one
    assert here is None or here >= 0


def test_fitting_threads_leaves_busy_cores_alone():
    assert fitting_threads(2, 0, 2) == 2  # alone: the process's count
    assert fitting_threads(2, None, 2) == 2  # unknown: as before
    assert fitting_threads(2, 1, 2) == 1
    assert fitting_threads(2, 4, 2) == 1  # never below one
    assert fitting_threads(4, 2, 16) == 4  # never above the process's own count


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_states_and_values_stay_on_the_device():
    s = torch.randn(300, 12, device="cuda") + 100.0
    w = s[:, :5] @ torch.randn(5, 7, device="cuda")
    m = RepresentationGap(num_classes=2, max_components=4).to("cuda")
    m.update(s, w, (s[:, 0] > 100.0).long())
    out = m.compute()
    assert all(v.device.type == "cuda" and v.dtype == torch.float64 for v in out.values())
    assert all(t.device.type == "cuda" for t in m.metric_state.values())
    ref = representation_gap(s.cpu(), w.cpu(), labels=(s[:, 0] > 100.0).long().cpu(), max_components=4)
    for key in ref:
        np.testing.assert_allclose(float(out[key]), float(ref[key]), rtol=1e-8, err_msg=key)
