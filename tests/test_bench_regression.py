"""``benchmarks/regression/run.py`` on synthetic stand-in data (the real movie data is not in CI): the
closed-form references obey the identities the benchmark prints, and one monitored fit records
every epoch's regression values through the package."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.regression import run as bench
from lightning_w2s.metrics import quantities as Q


def fake_data(n: int = 900, d: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = x @ rng.normal(size=d) + np.sin(2 * x[:, 0])  # partly outside the linear span
    f_w = y + 0.8 * np.cos(x[:, 1]) + 0.3 * rng.normal(size=n)
    return {"x": x, "y": y.astype(np.float64), "f_w": f_w.astype(np.float64), "vader": rng.normal(size=(n, 4)).astype(np.float32)}


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(bench, "N_PROBE", 300)
    monkeypatch.setattr(bench, "N_TRAIN", 500)
    monkeypatch.setattr(bench, "N_TRAIN_PROBE", 100)
    monkeypatch.setattr(bench, "EPOCHS", 3)
    return fake_data()


def test_closed_form_identities(small):
    data, split = small, bench.splits(900, 0)
    rows = {(r["gold"], r["LS head fitted on"]): r for r in bench.closed_form(data, split)}
    realizable = rows[("y_proj (realizable)", "probe itself")]
    assert realizable["gain"] == pytest.approx(realizable["predicted"], abs=1e-9)  # Charikar Thm 1, equality
    real = rows[("y (real ratings)", "probe itself")]
    # gain - misfit = -2 <f_w - f_s, y - P y> / n on the probe itself (derived in the module docstring)
    p = split["probe"]
    f_s = bench.least_squares(data["x"][p], data["f_w"][p], data["x"][p])
    py = bench.least_squares(data["x"][p], data["y"][p], data["x"][p])
    assert real["gain"] - real["predicted"] == pytest.approx(-2 * np.mean((data["f_w"][p] - f_s) * (data["y"][p] - py)), abs=1e-9)
    assert abs(real["gain"] - real["predicted"]) > 1e-3  # the gold is not in the span here


def test_monitored_fit_records_every_epoch(small):
    checks = bench.monitored_fit(small, bench.splits(900, 0), "linear", seed=0)
    assert [c["epoch"] for c in checks] == [0, 1, 2]
    for c in checks:
        assert c[Q.PREDICTED_GAIN] == c[Q.SQ]
        assert c[Q.SQ_GAIN] == pytest.approx(c[Q.TEACHER_SQ_ERROR] - c[Q.STUDENT_SQ_ERROR], abs=1e-12)
        assert Q.train_name(Q.SQ) in c and Q.GAP_FRO in c
    stop, restore = bench.replay(checks, dict(policy="heldout_misfit_plateau", patience=1))
    assert stop is None or restore is not None


def test_replay_stops_and_restores_where_the_plateau_rule_says():
    checks = [{"epoch": i, Q.SQ: v} for i, v in enumerate([1.0, 0.5, 0.6, 0.7])]
    config = dict(policy="heldout_misfit_plateau", patience=1)
    assert bench.replay(checks, config) == (2, 1)  # no improvement at check 2: stop; best = check 1
    assert bench.replay(checks[:2], config) == (None, None)  # still improving: no stop
