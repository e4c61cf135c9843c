"""The check's per-batch and per-check path: chunked updates, host transfers, constants
of the probe, the representation cadence.

``W2SMetrics.update`` only queues a batch; the rows are fed to the states in chunks; the values
cross to the host once. Host transfers are counted with a ``TorchFunctionMode`` that records the
tensor methods which read a value back to the host (``item``, ``tolist``, ``__bool__``, ...) and
data-dependent selections (boolean indexing, ``nonzero``), which wait for the device on a GPU.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers import TinyStudent, make_task, trainer_kwargs
from torch.overrides import TorchFunctionMode
from torchmetrics.functional.classification import multiclass_confusion_matrix

from lightning_w2s import W2SMonitor
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import W2SMetrics
from lightning_w2s.metrics.calibration import calibration_error
from lightning_w2s.metrics.misfit import agreement_counts

HOST_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy", "nonzero"}


class HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value (or a data-dependent size) back to the host."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        boolean_index = name == "__getitem__" and len(args) > 1 and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.bool
        if name in HOST_READS or boolean_index:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def _probe_data(n=203, k=3, d_s=5, d_w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    gold = torch.randint(0, k, (n,), generator=g)
    gold[torch.rand(n, generator=g) < 0.2] = -1
    teacher = torch.softmax(2 * torch.randn(n, k, generator=g), 1)
    covered = torch.rand(n, generator=g) > 0.2
    probs = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    feats = torch.randn(n, d_s, generator=g)
    return dict(teacher=teacher, covered=covered, gold=gold, tf=torch.randn(n, d_w, generator=g), probs=probs, feats=feats)


def _metrics(data, **kw):
    kw.setdefault("neighbours", 4)
    m = W2SMetrics(data["teacher"], covered=data["covered"], gold=data["gold"], teacher_features=data["tf"], teacher_score=0.6, ceiling_score=0.9, **kw)
    if m.wants_neighbours:
        m.set_neighbours(m.build_neighbours(lambda: data["feats"]))
    return m


def _feed(m, data, batch_size, pad=5, features=True):
    """The probe in batches, plus a padding batch (valid=False) as the last shard of a rank has."""
    n = data["probs"].shape[0]
    feats = data["feats"] if features else [None] * n
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        m.update(data["probs"][i:j], feats[i:j] if features else None, torch.arange(i, j), torch.ones(j - i, dtype=torch.bool))
    m.update(data["probs"][:pad], feats[:pad] if features else None, torch.zeros(pad, dtype=torch.long), torch.zeros(pad, dtype=torch.bool))


def test_chunking_changes_no_value_beyond_rounding():
    data = _probe_data()
    runs = []
    for batch_size, chunk_bytes in ((7, 1), (7, 32 * 2**20), (64, 3000), (1000, 32 * 2**20)):
        m = _metrics(data, chunk_bytes=chunk_bytes)
        _feed(m, data, batch_size)
        runs.append({k: float(v) for k, v in m.compute().items()})
    assert len(runs[0]) > 60
    for other in runs[1:]:
        assert set(other) == set(runs[0])
        for name, value in runs[0].items():
            assert other[name] == pytest.approx(value, rel=1e-10, abs=1e-12, nan_ok=True), name


def test_update_reads_nothing_back_and_a_chunk_a_fixed_number_of_times():
    data = _probe_data(n=512)
    counts = {}
    for batches in (4, 16):
        m = _metrics(data)
        with HostReads() as reads:
            for i in range(batches):
                rows = slice(32 * i, 32 * (i + 1))
                m.update(data["probs"][rows], data["feats"][rows], torch.arange(512)[rows], torch.ones(32, dtype=torch.bool))
        assert reads.calls == []  # queued only
        with HostReads() as reads:
            m.flush()
        counts[batches] = sorted(reads.calls)
    assert counts[4] == counts[16]  # per chunk, not per batch


def test_compute_reads_the_values_back_once_not_per_name():
    """Without the Lang family (per-class formulas on the host by design) and the representation
    family (its own algebra), ``compute`` reads back a handful of values whatever the number of
    logged names: the undefined-vs-fault test reads all values in one transfer."""
    for k in (2, 6):
        data = _probe_data(k=k)
        m = _metrics(data, neighbours=0)
        _feed(m, data, 64, features=False)
        m.flush()
        with HostReads() as reads:
            names = len(m.compute())
        assert names > 35
        assert len(reads.calls) < names // 3, reads.calls  # a few per family; per name, it would be > names
        assert reads.calls.count("tolist") == 2  # all values at once; the band's and PGR's scalars at once


def test_the_teachers_calibration_is_computed_once_from_the_probe():
    data = _probe_data()
    m = _metrics(data)
    known = data["covered"] & (data["gold"] >= 0)
    want = calibration_error(data["teacher"][known].double(), data["gold"][known], n_bins=15)
    for _ in range(2):  # a constant: the same at every check, whatever the student does
        m.reset()
        _feed(m, data, 50)
        values = m.compute()
        assert float(values[Q.TEACHER_ECE_VS_GOLD]) == pytest.approx(float(want), rel=1e-12)
        data["probs"] = data["probs"].flip(0)


def test_agreement_counts_are_torchmetrics_confusion_matrix():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randint(0, 4, (500,), generator=g), torch.randint(0, 4, (500,), generator=g)
    assert torch.equal(agreement_counts(s, t, 4), multiclass_confusion_matrix(s, t, num_classes=4).double())
    assert torch.equal(agreement_counts(s[:0], t[:0], 4), torch.zeros(4, 4, dtype=torch.float64))


def test_compute_twice_gives_the_same_values():
    data = _probe_data()
    m = _metrics(data)
    _feed(m, data, 64)
    first = {k: float(v) for k, v in m.compute().items()}
    second = {k: float(v) for k, v in m.compute().items()}
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] or (math.isnan(first[k]) and math.isnan(second[k])) for k in first)


class Recorder(L.Callback):
    def __init__(self, monitor):
        self.monitor, self.checks, self.present = monitor, [], []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.checks.append(dict(self.monitor.last_values))
            self.present.append(Q.GAP_FRO in trainer.callback_metrics)


def _fit_with(every):
    task = make_task()
    monitor = W2SMonitor(task.probe(input_features=True), representation_every_n_checks=every, figure_every_n_checks=0)
    rec = Recorder(monitor)
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=5, callbacks=[monitor, rec]))
    trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
    return rec


def test_representation_every_n_checks():
    every, each = _fit_with(2), _fit_with(1)
    family = {n for n in each.checks[0] if n.startswith("w2s/representation/")}
    assert {Q.GAP_FRO, Q.CKA, Q.EFFECTIVE_RANK} <= family
    assert [family <= set(c) for c in every.checks] == [True, False, True, False, True]
    assert [not (family & set(c)) for c in every.checks] == [False, True, False, True, False]
    assert every.present == [True, False, True, False, True]  # left out: removed from callback_metrics
    for i in (0, 2, 4):  # the same numbers as a monitor computing it at every check
        for name in family:
            assert every.checks[i][name] == pytest.approx(each.checks[i][name], rel=1e-12)
    for i in range(5):  # the other families at every check, unchanged
        assert {n: v for n, v in every.checks[i].items() if n not in family} == pytest.approx({n: v for n, v in each.checks[i].items() if n not in family}, rel=1e-12)


def test_representation_every_n_checks_is_validated():
    task = make_task()
    with pytest.raises(ValueError, match="representation_every_n_checks"):
        W2SMonitor(task.probe(), representation_every_n_checks=0)
    with pytest.raises(TypeError, match="representation_every_n_checks"):
        W2SMonitor(task.probe(), representation_every_n_checks=1.5)


def test_the_metric_algebra_runs_on_one_thread_and_gives_the_count_back(monkeypatch):
    """OpenMP threads spin while they wait: beside busy processes a 2-thread metric algebra
    collapsed (``benchmarks/overhead/run.py``); feeding and compute run on one thread, restored after."""
    data = _probe_data()
    m = _metrics(data)
    seen = []
    update = m.misfit.update
    monkeypatch.setattr(m.misfit, "update", lambda *a: (seen.append(torch.get_num_threads()), update(*a))[1])
    compute = m.misfit.compute
    monkeypatch.setattr(m.misfit, "compute", lambda: (seen.append(torch.get_num_threads()), compute())[1])
    reset = m.misfit.reset
    monkeypatch.setattr(m.misfit, "reset", lambda: (seen.append(torch.get_num_threads()), reset())[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m.reset()
        _feed(m, data, 64)
        m.compute()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(seen) >= 3 and set(seen) == {1}


@pytest.mark.parametrize(("elsewhere", "forward_threads"), [(0, 2), (None, 2), (4, 1)])
def test_a_check_runs_on_one_thread_and_the_students_forward_on_the_users_count_or_the_idle_cores(monkeypatch, elsewhere, forward_threads):
    """Idle cores (or nothing readable): the forward gets the process's 2 threads; other processes
    running (two busy neighbours with 2 threads each on 2 cores): one thread, which does not collapse."""
    import lightning_w2s.callbacks.probe_runner as runner_mod

    monkeypatch.setattr(runner_mod, "running_elsewhere", lambda: elsewhere)
    monkeypatch.setattr(runner_mod, "usable_cores", lambda: 2)
    task = make_task()
    seen = {"forward": set(), "update": set()}

    def forward(module, batch):
        seen["forward"].add(torch.get_num_threads())
        return module(batch)

    monitor = W2SMonitor(task.probe(), forward_fn=forward, figure_every_n_checks=0)
    update = monitor.metrics.update
    monitor.metrics.update = lambda *a: (seen["update"].add(torch.get_num_threads()), update(*a))[1]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trainer = L.Trainer(**trainer_kwargs(max_epochs=2, callbacks=[monitor]))
        trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert monitor.num_checks == 2
    # the fit-start forward (shapes, neighbour table) runs outside a check, on the process's count
    assert seen == {"forward": {2, forward_threads}, "update": {1}}


def test_the_representation_products_run_with_the_process_thread_count_and_the_rest_on_one(monkeypatch):
    """Each chunk's second-moment products are single large products (metrics/threads.py): they get
    the process's count back inside the one-thread scope, which is restored after each."""
    from contextlib import contextmanager

    import lightning_w2s.metrics._moments as moments
    from lightning_w2s.metrics.threads import limited_threads

    seen = []
    real = moments.process_threads

    @contextmanager
    def spy():
        with real():
            seen.append(torch.get_num_threads())
            yield

    monkeypatch.setattr(moments, "process_threads", spy)
    x = torch.randn(50, 6, dtype=torch.float64)
    w = torch.randn(50, 3, dtype=torch.float64)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with limited_threads(1):
            sums = moments.accumulate_(moments.Layout((6, 3), ((0, 0), (1, 1), (0, 1))).zeros(x), [x, w])
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 2, 2]
    torch.testing.assert_close(sums.s2[(0, 1)], x.T @ w)
