"""DDP for real: two CPU processes over gloo (not mocked), started by this test as an external
launcher so that a hang fails the test (timeout, both processes killed) instead of blocking CI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from ddp_script import PROBE_N, TRAIN_PROBE_N, SGDHead, monitor_for, regression_probes
from helpers import TinyStudent, make_task, trainer_kwargs

SCRIPT = Path(__file__).with_name("ddp_script.py")
TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(out: Path, strategy: str) -> Path:
    """``ddp_script.py`` on two CPU processes with ``strategy`` (``"ddp"`` or ``"fsdp"``); a hang
    fails after ``TIMEOUT_S`` with both processes killed and their logs shown."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        log = open(out / f"rank{rank}.log", "w")
        cmd = [sys.executable, str(SCRIPT), str(out), strategy]
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc, _ in procs:
            proc.kill()
        pytest.fail(f"{strategy} run did not finish in {TIMEOUT_S}s (hang?); logs:\n" + _logs(out))
    finally:
        for proc, log in procs:
            proc.wait()
            log.close()
    codes = [p.returncode for p, _ in procs]
    assert codes == [0, 0], f"{strategy} ranks exited with {codes}; logs:\n" + _logs(out)
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    return run_two_ranks(tmp_path_factory.mktemp("ddp"), "ddp")


def _logs(out: Path) -> str:
    return "\n".join(f"--- rank {r} ---\n" + (out / f"rank{r}.log").read_text()[-3000:] for r in range(2))


def _load(out, name, rank):
    return json.loads((out / f"{name}_rank{rank}.json").read_text())


def test_probe_sizes_exercise_padding():
    assert PROBE_N % 2 == 1 and TRAIN_PROBE_N % 2 == 1


def test_ddp_metrics_match_one_process_on_the_same_weights(ddp_run):
    assert_match_one_process(ddp_run)


def assert_match_one_process(run: Path) -> None:
    """Both ranks logged the same values, equal (1e-6) to one process on the run's final weights."""
    r0, r1 = _load(run, "fit1", 0), _load(run, "fit1", 1)
    assert r0["world_size"] == 2 and r0["num_checks"] == 2
    # both ranks hold the same (already reduced) values and made the same decisions
    assert r0["callback_metrics"] == r1["callback_metrics"]
    assert r0["history"] == r1["history"]
    names = {
        "w2s/misfit/kl_teacher_student",
        "w2s/misfit/disagreement",
        "w2s/misfit/sq",
        "w2s/train_misfit/kl_teacher_student",
        "w2s/gold/accuracy",
        "w2s/robustness/inconsistency",
        "w2s/representation/gap_fro",
        "w2s/calibration/ece_vs_teacher",
    }
    assert names <= set(r0["callback_metrics"])

    # one process, the DDP run's final weights, the same probes; lr = 0 so the check sees exactly them
    task = make_task(n_train=96, n_probe=PROBE_N)
    model = TinyStudent(lr=0.0)
    model.load_state_dict(torch.load(run / "final.pt", weights_only=True))
    monitor = monitor_for(task)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=1, callbacks=[monitor]))
    trainer.fit(model, task.train_loader(16), task.val_loader(32))
    # `w2s/skipped` and `w2s/check` count over the whole fit (2 checks there, 1 here): not measurements
    counters = {"w2s/skipped", "w2s/check"}
    single = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("w2s/") and k not in counters}
    assert set(single) == set(r0["callback_metrics"]) - counters
    for k, v in single.items():
        assert r0["callback_metrics"][k] == pytest.approx(v, abs=1e-6), k
    worst = max(abs(r0["callback_metrics"][k] - v) for k, v in single.items())
    print(f"{r0['strategy']} (2 ranks) vs 1 process: {len(single)} w2s values, max |difference| = {worst:.3g}")
    mine = {k: v for k, v in monitor.last_values.items() if k not in counters}  # the monitor's float64 numbers
    assert len(mine) >= 20 and set(mine) <= set(r0["last_values"])
    for k, v in mine.items():
        assert r0["last_values"][k] == pytest.approx(v, abs=1e-6), k
    worst = max(abs(r0["last_values"][k] - v) for k, v in mine.items())
    print(f"monitor last_values (float64): {len(mine)} values, max |difference| = {worst:.3g}")


def test_ddp_rank_disagreement_stops_once_on_both_ranks(ddp_run):
    assert_one_rank_stops_both(ddp_run)


def assert_one_rank_stops_both(run: Path) -> None:
    """Only rank 1 votes to stop at epoch 1: both ranks stop there, once, with the reason."""
    r0, r1 = _load(run, "fit2", 0), _load(run, "fit2", 1)
    for r in (r0, r1):
        assert r["stopped_epoch"] == 1 and r["stopped_check"] == 1
        assert r["checks"] == 2  # no check after the stop: the fit ended at epoch 1 on both ranks
        assert r["stops"] == [False, True]
        assert r["reason"] == "TEACHER_OVERFIT"
    assert r0["current_epoch"] == r1["current_epoch"] == 2  # epochs 0 and 1 completed, then stopped
    assert r0["global_step"] == r1["global_step"]
    assert "rank 1 votes to stop" in r1["message"]
    assert "decided on another rank" in r0["message"]  # rank 0 learnt the reason through the reduction


def test_ddp_default_stopper_restores_the_same_best_weights_on_every_rank(ddp_run):
    """W2SEarlyStopping() (restore_best=True) under 2 real gloo processes: both ranks make the same
    decisions and end with the same weights, those of the first check of the lowest held-out
    teacher_label_ce (each rank loads its own copy), not the last check's."""
    from lightning_w2s.metrics import quantities as Q

    r0, r1 = _load(ddp_run, "fit4", 0), _load(ddp_run, "fit4", 1)
    assert r0["history"] == r1["history"] and r0["best_check"] == r1["best_check"]
    assert r0["stopped_check"] == r1["stopped_check"]
    xs = [h["values"][Q.TEACHER_LABEL_CE] for h in r0["history"]]
    best = xs.index(min(xs))
    assert r0["best_check"] == best and best < len(xs) - 1, ("the scenario must have its minimum before the last check", xs)
    for r in (r0, r1):
        assert r["final_is_best_check"] and not r["final_is_last_check"]
        assert r["copies"] == 1 and r["restore_warnings"] == []  # one CPU copy per rank, no sharding warning
    w0, w1 = (torch.load(ddp_run / f"final_restored_rank{k}.pt", weights_only=True) for k in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)


def test_ddp_regression_probe_matches_one_process(ddp_run):
    """A regression probe (real teacher values, real gold, teacher features, train probe) under 2 real
    gloo processes: both ranks hold the same values, and they equal one process's aggregator on the
    DDP run's final weights (odd probe sizes: padded shards)."""
    from lightning_w2s.metrics import quantities as Q
    from lightning_w2s.metrics.aggregator import metrics_for_probe

    r0, r1 = _load(ddp_run, "fit3", 0), _load(ddp_run, "fit3", 1)
    assert r0["num_checks"] == 2 and r0["last_values"] == r1["last_values"] and r0["history"] == r1["history"]
    assert [set(h["values"]) for h in r0["history"]] == [{Q.SQ}] * 2  # the stopper read the regression misfit
    probe, train_probe, _, _ = regression_probes()
    model = SGDHead(outputs=2)
    model.load_state_dict(torch.load(ddp_run / "final_regression.pt", weights_only=True))
    model.eval()
    single = {}
    for p, train in ((probe, False), (train_probe, True)):
        metrics = metrics_for_probe(p, train=train)
        with torch.no_grad():
            metrics.update(model(p.inputs), model.body(p.inputs), torch.arange(p.n), torch.ones(p.n, dtype=torch.bool))
        single.update({k: float(v) for k, v in metrics.compute().items()})
    ddp = {k: v for k, v in r0["last_values"].items() if k not in (Q.SKIPPED, Q.CHECK)}
    assert set(ddp) == set(single) and Q.PRED_GAP_GOLD in ddp and Q.train_name(Q.SQ) in ddp
    worst = max(abs(ddp[k] - v) / max(1.0, abs(v)) for k, v in single.items())
    print(f"regression probe, DDP (2 ranks) vs 1 process: {len(single)} values, max relative difference {worst:.3g}")
    assert worst <= 1e-6
