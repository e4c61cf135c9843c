"""Smooth calibration error: the exact path algorithm against scipy's LP, known values, bands (A) and (B)
as inequalities on data, the DDP-exact state, the 0/1 accuracy band by exhaustive enumeration, and the
monitor's calibration names end to end through a real Trainer."""

from __future__ import annotations

import itertools
import math

import lightning as L
import numpy as np
import pytest
import torch
from helpers import loaders, sgd_tanh_student, w2s_data
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from scipy.optimize import linprog
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.metrics import SmoothCalibration, W2SMetrics
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.bounds import accuracy_band
from lightning_w2s.metrics.functional import smooth_calibration_error
from lightning_w2s.metrics.smooth_calibration import label_band, teacher_band


# ---------------------------------------------------------------------------- reference: the LP over all pairs
def _lp_binary(f: np.ndarray, y: np.ndarray) -> float:
    """max mean w_i (y_i − f_i) s.t. |w_i| ≤ 1, |w_i − w_j| ≤ |f_i − f_j| for every pair (no path shortcut)."""
    n = len(f)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    a = np.zeros((max(len(pairs), 1), n))
    b = np.zeros(max(len(pairs), 1))
    for r, (i, j) in enumerate(pairs):
        a[r, i], a[r, j], b[r] = 1.0, -1.0, abs(f[i] - f[j])
    res = linprog(-(y - f) / n, A_ub=a, b_ub=b, bounds=[(-1, 1)] * n, method="highs")
    assert res.status == 0
    return -res.fun


def _lp(p: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([_lp_binary(p[:, c], (labels == c).astype(float)) for c in range(p.shape[1])]))


def _random_case(rng: np.random.Generator, n: int, k: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(size=(n, k)) * rng.uniform(0.0, 3.0)
    if ties:  # few distinct rows: many equal predictions
        logits = np.round(logits)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), rng.integers(0, k, n)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_equals_the_linear_programme(k):
    rng = np.random.default_rng(k)
    for trial in range(60):
        n = int(rng.integers(1, 4)) if trial < 10 else int(rng.integers(4, 30))  # tiny n first
        p, y = _random_case(rng, n, k, ties=trial % 3 == 0)
        got = float(smooth_calibration_error(torch.from_numpy(p), torch.from_numpy(y)))
        want = _lp(p, y)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (trial, n, got, want)


def test_ties_force_equal_witness_values():
    # two points at the same prediction with opposite residuals cancel: without merging, a witness could
    # take +1 on one and −1 on the other and report 0.5 instead of 0
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    assert float(smooth_calibration_error(p, torch.tensor([1, 0]))) == 0.0
    assert _lp(p.numpy(), np.array([1, 0])) == pytest.approx(0.0, abs=1e-12)


def test_two_classes_average_equals_the_binary_value():
    rng = np.random.default_rng(7)
    for _ in range(20):
        p, y = _random_case(rng, 15, 2, ties=False)
        binary = _lp_binary(p[:, 1], (y == 1).astype(float))
        both = float(np.mean([_lp_binary(p[:, c], (y == c).astype(float)) for c in range(2)]))
        assert both == pytest.approx(binary, rel=1e-7)
        assert float(smooth_calibration_error(torch.from_numpy(p), torch.from_numpy(y))) == pytest.approx(binary, rel=1e-6)


def test_known_values():
    rng = np.random.default_rng(3)
    # constant predictions: the witness is a constant ±1, smCE = |mean(y − c)| per class, averaged
    for k in (2, 3, 5):
        c = rng.dirichlet(np.ones(k))
        y = rng.integers(0, k, 40)
        p = np.tile(c, (40, 1))
        want = np.mean([abs(np.mean((y == j) - c[j])) for j in range(k)])
        assert float(smooth_calibration_error(torch.from_numpy(p), torch.from_numpy(y))) == pytest.approx(want, rel=1e-12)
    # a perfectly calibrated grid: at prediction q, exactly a share q of the points is positive
    f, y = [], []
    for q in np.arange(1, 10) / 10:
        f += [q] * 10
        y += [1] * int(round(10 * q)) + [0] * (10 - int(round(10 * q)))
    p = torch.tensor(np.stack([1 - np.array(f), f], 1))
    assert float(smooth_calibration_error(p, torch.tensor(y))) == pytest.approx(0.0, abs=1e-14)
    # all mass on the wrong class: mean |y − f| = 1, but a witness moves by at most |1 − 0| between the
    # two predictions: w(0) − w(1) ≤ 1, so smCE = 1/2
    assert float(smooth_calibration_error(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 0]))) == pytest.approx(0.5)
    assert math.isnan(float(smooth_calibration_error(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))))


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="probs"):
        smooth_calibration_error(torch.tensor([[2.0, -1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels"):
        smooth_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([2]))
    with pytest.raises(TypeError, match="labels"):
        smooth_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="labels"):
        smooth_calibration_error(torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]))


def test_aggregator_leaves_out_undefined_values_and_keeps_band_a():
    """No covered gold point: the gold-side values are undefined (left out, with a note), the label-free
    ones stay; with covered gold points band (A) holds on the aggregator's own numbers."""
    tp = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    student = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    covered = torch.tensor([True, True, False, False])
    metrics = W2SMetrics(tp, covered=covered, gold=torch.tensor([-1, -1, 1, 0]), neighbours=0)
    metrics.update(student, None, torch.arange(4), torch.ones(4, dtype=torch.bool))
    values = metrics.compute()
    assert Q.SMCE_VS_TEACHER in values and Q.SMCE_VS_GOLD not in values and Q.CALIBRATION_LOWER not in values
    assert any(Q.SMCE_VS_GOLD in note for note in metrics.notes)
    metrics = W2SMetrics(tp, gold=torch.tensor([0, 1, 1, 0]), neighbours=0)
    metrics.update(student, None, torch.arange(4), torch.ones(4, dtype=torch.bool))
    v = {k: float(x) for k, x in metrics.compute().items()}
    assert v[Q.CALIBRATION_LOWER] <= v[Q.SMCE_VS_GOLD] <= v[Q.CALIBRATION_UPPER]
    assert v[Q.SMCE_VS_GOLD] == pytest.approx(float(smooth_calibration_error(student, torch.tensor([0, 1, 1, 0]))))


# ---------------------------------------------------------------------------- bands (A) and (B) on data
def test_bands_hold_on_random_samples_and_b_is_attained():
    rng = np.random.default_rng(11)
    for trial in range(200):
        k, n = int(rng.choice([2, 3, 5])), int(rng.integers(1, 40))
        ps, y = _random_case(rng, n, k, ties=trial % 4 == 0)
        pw = np.clip(ps + rng.normal(size=ps.shape) * rng.uniform(0, 0.3), 1e-3, None)
        pw /= pw.sum(1, keepdims=True)
        t = np.where(rng.random(n) < rng.random(), y, rng.integers(0, k, n))
        smce = lambda p, lab: float(smooth_calibration_error(torch.from_numpy(p), torch.from_numpy(lab)))  # noqa: E731
        s_gold, w_gold, s_teacher = smce(ps, y), smce(pw, y), smce(ps, t)
        lo, hi = teacher_band(w_gold, float(np.abs(ps - pw).mean()))
        assert lo <= s_gold <= hi, (trial, lo, s_gold, hi)
        lo, hi = label_band(s_teacher, 2.0 / k * float(np.mean(t != y)))
        assert lo <= s_gold <= hi, (trial, lo, s_gold, hi)
    # (B) is attained: a constant prediction 0.5; gold half positive (smCE 0), the teacher wrong on one
    # positive (smCE against its labels |0.25 − 0.5| = 0.25 = its label gap (2/2)·1/4)
    p = torch.tensor([[0.5, 0.5]] * 4, dtype=torch.float64)
    s_gold = float(smooth_calibration_error(p, torch.tensor([1, 1, 0, 0])))
    s_teacher = float(smooth_calibration_error(p, torch.tensor([0, 1, 0, 0])))
    assert (s_gold, s_teacher) == (0.0, 0.25) and s_teacher - 0.25 == s_gold


def test_nan_in_nan_out():
    assert all(math.isnan(v) for v in teacher_band(math.nan, 0.1) + label_band(0.1, math.nan))


# ---------------------------------------------------------------------------- the torchmetrics-style state
def test_metric_state_is_the_probe_and_sums_exactly_across_ranks():
    rng = np.random.default_rng(5)
    p, y = _random_case(rng, 50, 3, ties=False)
    p, y = torch.from_numpy(p), torch.from_numpy(y)
    labels = y.clone()
    labels[:5] = -1  # rows left out
    whole = SmoothCalibration(labels, num_classes=3)
    perm = torch.from_numpy(rng.permutation(50))
    for chunk in perm.split(7):
        whole.update(p[chunk], chunk)
    assert float(whole.compute()) == pytest.approx(float(smooth_calibration_error(p[5:], y[5:])), rel=1e-12)
    # two "ranks" with disjoint rows: the summed states equal the single-process state
    ranks = [SmoothCalibration(labels, num_classes=3) for _ in range(2)]
    for r, rows in enumerate(perm.chunk(2)):
        ranks[r].update(p[rows], rows)
    assert torch.equal(ranks[0].probs + ranks[1].probs, whole.probs)
    assert torch.equal(ranks[0].seen + ranks[1].seen, whole.seen)
    assert ranks[0].probs.shape == (50, 3)  # memory fixed by the probe


# ---------------------------------------------------------------------------- the 0/1 accuracy band, enumerated
def _groups(max_n: int, k: int):
    """Every group of ≤ max_n gold points: covered counts of (teacher right, student agrees / disagrees),
    (teacher wrong, student agrees / disagrees and right / disagrees and wrong), and uncovered points
    with the student right or wrong. Yields (a, d, π, student accuracy, covered accuracy) as floats
    computed the way the monitor computes rates (one division of counts)."""
    for n in range(1, max_n + 1):
        for n_cov in range(1, n + 1):
            for ra, rd, wa, wdr, wdw in itertools.product(range(n_cov + 1), repeat=5):
                if ra + rd + wa + wdr + wdw != n_cov or (k == 2 and wdw):
                    continue
                for u_right in range(n - n_cov + 1):
                    right = ra + wdr
                    yield ((ra + rd) / n_cov, (rd + wdr + wdw) / n_cov, n_cov / n, (right + u_right) / n, right / n_cov, (n, n_cov, ra + rd, rd + wdr + wdw))


@pytest.mark.parametrize("k", [2, 3])
def test_accuracy_band_contains_and_is_attained_at_both_ends(k):
    """Exhaustive over every group of up to 7 gold points: the band contains every feasible accuracy,
    and both ends are attained exactly (float equality) by some group with the same counts."""
    seen: dict[tuple, list] = {}
    for a, d, pi, acc, cov_acc, key in _groups(7, k):
        seen.setdefault(key, [a, d, pi, [], []])
        seen[key][3].append(acc)
        seen[key][4].append(cov_acc)
    loose = 0
    for (n, n_cov, _, _), (a, d, pi, accs, cov_accs) in seen.items():
        lo, hi = accuracy_band(a, d, coverage=pi, num_classes=k)
        assert lo <= min(accs) and max(accs) <= hi, (a, d, pi, lo, hi)
        assert (lo, hi) == (min(accs), max(accs)), (n, n_cov, a, d, pi, lo, hi, min(accs), max(accs))
        clo, chi = accuracy_band(a, d, num_classes=k)
        assert (clo, chi) == (min(cov_accs), max(cov_accs))
        loose += k == 2 and accuracy_band(a, d)[0] < clo
    assert len(seen) > 500
    if k == 2:
        assert loose > 0  # the k-agnostic lower end max(0, a − d) is loose for two classes


def test_accuracy_band_examples():
    assert accuracy_band(0.2, 0.9, num_classes=2)[0] == 0.7
    assert accuracy_band(0.2, 0.9)[0] == 0.0  # any number of classes: a third class can absorb the disagreement
    assert accuracy_band(7 / 9, 4 / 9, coverage=0.9)[0] == 0.3  # no 1-ulp overshoot (0.30000000000000004)
    with pytest.raises(ValueError, match="num_classes"):
        accuracy_band(0.5, 0.1, num_classes=1)


# ---------------------------------------------------------------------------- end to end
class _Values(Callback):
    def __init__(self, monitor):
        self.monitor, self.checks = monitor, []

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking and self.monitor.last_values:
            self.checks.append(dict(self.monitor.last_values))


def test_calibration_names_through_a_trainer(tmp_path):
    L.seed_everything(0)
    x, y, teacher = w2s_data()
    g = torch.Generator().manual_seed(1)
    logits = torch.stack([-(x[:, 0] + 0.5 * x[:, 1]), x[:, 0] + 0.5 * x[:, 1]], 1) + torch.randn(len(x), 2, generator=g)
    probe = W2SProbe(x[600:900], teacher_logits=logits[600:900], gold=y[600:900])
    monitor = W2SMonitor(probe, batch_size=64)
    values = _Values(monitor)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=logger, callbacks=[monitor, values], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, deterministic=True
    )
    trainer.fit(sgd_tanh_student(), *loaders(x, teacher, 400, 200))

    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    four = (Q.SMCE_VS_GOLD, Q.TEACHER_SMCE_VS_GOLD, Q.CALIBRATION_LOWER, Q.CALIBRATION_UPPER)
    for name in four + (Q.SMCE_VS_TEACHER, Q.CALIBRATION_VS_TEACHER_LOWER, Q.CALIBRATION_VS_TEACHER_UPPER, Q.CE_GAIN):
        assert len(acc.Scalars(name)) == 3, name
    assert len(values.checks) == 3
    for v in values.checks:  # at every check, in float64 as computed
        assert v[Q.CALIBRATION_LOWER] <= v[Q.SMCE_VS_GOLD] <= v[Q.CALIBRATION_UPPER]
        assert v[Q.CALIBRATION_VS_TEACHER_LOWER] <= v[Q.SMCE_VS_GOLD] <= v[Q.CALIBRATION_VS_TEACHER_UPPER]
        assert v[Q.CALIBRATION_ESTIMATE_LOWER] <= v[Q.SMCE_VS_GOLD] <= v[Q.CALIBRATION_ESTIMATE_UPPER]  # all gold: exact here
    # the logged values equal a recomputation from the trained student (last check)
    model = trainer.lightning_module.eval()
    with torch.no_grad():
        ps = torch.softmax(model(probe.inputs).double(), 1)
    pw = probe.teacher_probs.double()
    assert acc.Scalars(Q.SMCE_VS_GOLD)[-1].value == pytest.approx(_lp(ps.numpy(), probe.gold.numpy()), rel=1e-5)
    assert acc.Scalars(Q.TEACHER_SMCE_VS_GOLD)[-1].value == pytest.approx(float(smooth_calibration_error(pw, probe.gold)), rel=1e-5)
    assert acc.Scalars(Q.SMCE_VS_TEACHER)[-1].value == pytest.approx(float(smooth_calibration_error(ps, pw.argmax(1))), rel=1e-5)
    ce = lambda p: float(-p.gather(1, probe.gold[:, None]).clamp_min(1e-6).log().mean())  # noqa: E731
    assert acc.Scalars(Q.CE_GAIN)[-1].value == pytest.approx(ce(pw) - ce(ps), rel=1e-5, abs=1e-6)
    assert acc.Scalars(Q.CALIBRATION_UPPER)[-1].value == pytest.approx(float(smooth_calibration_error(pw, probe.gold)) + 2 * float((ps - pw).abs().mean()), rel=1e-5)
