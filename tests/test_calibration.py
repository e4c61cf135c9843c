"""Top-label calibration (docs/theory.md §2.3): numpy reference, torchmetrics oracle, edges, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from lightning_w2s.metrics.calibration import Calibration, calibration_counts, calibration_error, calibration_histogram


def np_calibration(probs: np.ndarray, target: np.ndarray, n_bins: int = 15, norm: str = "l1") -> float:
    """Slow reference: per-sample loop into bins [lo, hi), the last bin closed at 1.0."""
    n = probs.shape[0]
    edges = [b / n_bins for b in range(n_bins + 1)]
    count = [0] * n_bins
    s_conf = [0.0] * n_bins
    s_corr = [0.0] * n_bins
    for i in range(n):
        conf = float(np.max(probs[i]))
        correct = float(int(np.argmax(probs[i])) == int(target[i]))
        b = next(j for j in range(n_bins) if conf < edges[j + 1] or j == n_bins - 1)
        count[b] += 1
        s_conf[b] += conf
        s_corr[b] += correct
    gaps = [(abs(s_corr[b] / count[b] - s_conf[b] / count[b]), count[b] / n) for b in range(n_bins) if count[b]]
    if norm == "l1":
        return sum(g * w for g, w in gaps)
    if norm == "max":
        return max(g for g, _ in gaps)
    return math.sqrt(sum(g * g * w for g, w in gaps))


def rand_case(seed: int, n: int = 300, k: int = 4, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    # targets correlated with the prediction so bins have a mix of right and wrong
    y = np.where(rng.random(n) < 0.6, p.argmax(1), rng.integers(0, k, n))
    return p, y


@pytest.mark.parametrize("norm", ["l1", "max", "l2"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference(norm, seed):
    p, y = rand_case(seed, k=2 + seed)
    got = calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins=15, norm=norm)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(np_calibration(p, y, 15, norm), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("norm", ["l1", "max", "l2"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_matches_torchmetrics_away_from_edges(norm, n_bins):
    for seed in range(4):
        p, y = rand_case(10 + seed, n=500, k=3, scale=1.0)
        assert p.max() < 1.0  # away from the 1.0 edge (torchmetrics#3510)
        # torchmetrics casts confidences to float32 inside its update (and sums in float32), so the
        # inputs are made float32-representable and the comparison allows float32 rounding of a
        # 500-term sum (relative 1e-5; the gaps between different binnings are ~1e-2).
        p32 = torch.from_numpy(p).float()
        tm = MulticlassCalibrationError(num_classes=3, n_bins=n_bins, norm=norm)
        tm.update(p32, torch.from_numpy(y))
        ours = calibration_error(p32.double(), torch.from_numpy(y), n_bins=n_bins, norm=norm)
        assert ours.item() == pytest.approx(tm.compute().item(), rel=1e-5, abs=1e-7)
        assert ours.item() == pytest.approx(np_calibration(p32.double().numpy(), y, n_bins, norm), rel=1e-12)


def test_confidence_exactly_one_goes_to_last_bin():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 1, 0, 2])  # 2 of 4 right, all at confidence 1.0
    hist = calibration_histogram(probs, target, n_bins=15)
    assert hist["count"].tolist() == [0.0] * 14 + [4.0]
    assert hist["confidence"][-1].item() == 1.0 and hist["accuracy"][-1].item() == 0.5
    assert calibration_error(probs, target).item() == pytest.approx(0.5, abs=1e-15)
    assert calibration_error(probs, target, norm="max").item() == pytest.approx(0.5, abs=1e-15)


def test_confidence_exactly_zero_goes_to_first_bin_and_edges_are_half_open():
    conf = torch.tensor([0.0, 0.0, 1.0, 0.5, 1 / 3 - 1e-12, 1 / 3 + 1e-12], dtype=torch.float64)
    correct = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    hist = calibration_counts(conf, correct, n_bins=3)  # edges 0, 1/3, 2/3, 1
    assert hist[0].tolist() == [3.0, 2.0, 1.0]  # {0, 0, 1/3-}, {0.5, 1/3+}, {1.0}
    m = Calibration(n_bins=3)
    m.update_confidence(conf, correct)
    assert m.histogram()["count"].tolist() == [3.0, 2.0, 1.0]


def test_mce_ignores_empty_bins_and_is_at_least_ece():
    p, y = rand_case(20, n=40, k=5)
    t_p, t_y = torch.from_numpy(p), torch.from_numpy(y)
    hist = calibration_histogram(t_p, t_y)
    assert (hist["count"] == 0).any()  # some empty bins
    assert torch.isnan(hist["accuracy"][hist["count"] == 0]).all()
    ece, mce = calibration_error(t_p, t_y).item(), calibration_error(t_p, t_y, norm="max").item()
    assert math.isfinite(mce) and mce >= ece


def test_streaming_equals_functional_uneven_batches_and_merge():
    p, y = rand_case(30, n=308, k=4)
    t_p, t_y = torch.from_numpy(p), torch.from_numpy(y)
    m = Calibration()
    for lo, hi in ((0, 1), (1, 8), (8, 308)):
        m.update(t_p[lo:hi], t_y[lo:hi])
    out = m.compute()
    assert out["ece"].item() == pytest.approx(calibration_error(t_p, t_y).item(), rel=1e-12)
    assert out["mce"].item() == pytest.approx(calibration_error(t_p, t_y, norm="max").item(), rel=1e-12)
    want = calibration_histogram(t_p, t_y)
    got = m.histogram()
    for key in want:
        torch.testing.assert_close(got[key], want[key], equal_nan=True, rtol=1e-12, atol=0)
    a, b = Calibration(), Calibration()
    a.update(t_p[:100], t_y[:100])
    b.update(t_p[100:], t_y[100:])
    a.merge_state(b)
    assert a.compute()["ece"].item() == pytest.approx(out["ece"].item(), rel=1e-12)


def test_three_uses_and_ignore_index():
    """Student vs gold (gold -1 unknown dropped), student vs teacher argmax, teacher vs gold."""
    rng = np.random.default_rng(40)
    ps, gold = rand_case(41, n=200, k=3)
    pw, _ = rand_case(42, n=200, k=3)
    gold = gold.copy()
    gold[rng.random(200) < 0.3] = -1
    known = gold >= 0
    s, w, g = torch.from_numpy(ps), torch.from_numpy(pw), torch.from_numpy(gold)
    vs_gold = calibration_error(s, g, ignore_index=-1).item()
    assert vs_gold == pytest.approx(np_calibration(ps[known], gold[known]), rel=1e-12)
    vs_teacher = calibration_error(s, w.argmax(1)).item()
    assert vs_teacher == pytest.approx(np_calibration(ps, pw.argmax(1)), rel=1e-12)
    teacher = calibration_error(w, g, ignore_index=-1).item()
    assert teacher == pytest.approx(np_calibration(pw[known], gold[known]), rel=1e-12)
    m = Calibration(ignore_index=-1)
    m.update(s, g)
    assert m.compute()["ece"].item() == pytest.approx(vs_gold, rel=1e-12)


def test_empty_is_nan():
    assert math.isnan(calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).item())
    assert math.isnan(calibration_error(torch.full((2, 2), 0.5), torch.tensor([-1, -1]), ignore_index=-1).item())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"probs": torch.full((3, 2), 0.5), "target": torch.tensor([0, 1])}, ValueError, "target.*n = 3"),
        ({"probs": torch.full((3, 2), 0.5), "target": torch.tensor([0.0, 1.0, 1.0])}, TypeError, "target"),
        ({"probs": torch.full((3,), 0.5), "target": torch.tensor([0, 1, 1])}, ValueError, "probs.*2-D"),
        ({"probs": torch.tensor([[1.5, -0.5]]), "target": torch.tensor([0])}, ValueError, "probs.*\\[0, 1\\]"),
        ({"probs": torch.full((1, 2), 0.5), "target": torch.tensor([2])}, ValueError, "target.*\\[0, 1\\]"),
        ({"probs": torch.full((1, 2), 0.5), "target": torch.tensor([0]), "norm": "l3"}, ValueError, "norm"),
        ({"probs": torch.full((1, 2), 0.5), "target": torch.tensor([0]), "n_bins": 0}, ValueError, "n_bins"),
    ],
)
def test_bad_input_names_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        calibration_error(**kwargs)


def test_one_shares_the_last_bin_with_its_neighbours():
    """0.99 and 1.0 share the single bin (torchmetrics 1.9 puts 1.0 in a phantom extra bin, #3510,
    and gives 0.505 here)."""
    probs = torch.tensor([[0.99, 0.01], [1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    got = calibration_error(probs, target, n_bins=1).item()
    assert got == pytest.approx(abs(0.5 - (0.99 + 1.0) / 2), abs=1e-15)
    assert got == pytest.approx(np_calibration(probs.numpy(), target.numpy(), n_bins=1), abs=1e-15)
