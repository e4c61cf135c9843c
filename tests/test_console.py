"""Console messages: what users need to see reaches the console by default, through
Lightning's rank-zero utilities (no ``logging.basicConfig``); per-check detail stays at debug level.

The first test runs a plain Python process (``tests/console_script.py``) and reads its stdout and
stderr, so it checks what a user's terminal shows; the second reads Lightning's logger records in
process (``caplog``, as Lightning's own tests do) for the debug-level detail.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
from helpers import SGD_TANH, loaders, sgd_tanh_student, tiny_student_class, w2s_data

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe
from lightning_w2s.metrics import quantities as Q

HERE = Path(__file__).resolve().parent


def _console(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(HERE / "console_script.py"), *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_what_users_need_reaches_the_console_of_a_plain_process():
    out = _console()
    # which layer is captured
    assert "W2SMonitor: the student's representation is the input of `head` (Linear)" in out
    # each warning once: the probe forward fails at two checks, the alert regime holds at every check
    assert out.count("failed and was skipped (RuntimeError: flaky probe forward)") == 1, out
    assert out.count("[probe_too_small]") == 1, out
    assert out.count("no fresh finite value") == 1, out
    # the stop reason and the restored check
    assert "W2SEarlyStopping stopped the fit at epoch 4" in out and "[heldout_misfit_plateau]" in out
    # the probe has 100 gold points: the gold rule in force is said once, and the restore line names it
    assert out.count("W2SEarlyStopping: the probe has 100 gold points: the check with the best PPI++ estimate") == 1, out
    assert "STOPPED_EPOCH=4 BEST_CHECK=" in out
    best = int(out.split("BEST_CHECK=")[1].split()[0])
    assert f"W2SEarlyStopping: restored the student's weights of check {best} " in out and "gold rule naive on the PPI estimate" in out
    # per-check detail does not
    assert "W2SMonitor check " not in out and "W2SEarlyStopping check " not in out


def test_per_check_detail_is_at_debug_level(caplog):
    L.seed_everything(0, verbose=False)
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:])
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[W2SMonitor(probe, neighbours=0), W2SEarlyStopping()],
    )
    with caplog.at_level(logging.DEBUG, logger="lightning.pytorch"):
        trainer.fit(sgd_tanh_student(), *loaders(x, teacher, 400, 100))
    ours = [r for r in caplog.records if r.getMessage().startswith(("W2SMonitor", "W2SEarlyStopping"))]
    assert all(r.name.startswith("lightning.pytorch") for r in ours)  # Lightning's logger: on the console by default
    detail = [r for r in ours if r.getMessage().startswith(("W2SMonitor check ", "W2SEarlyStopping check "))]
    assert {r.getMessage().split(" check")[0] for r in detail} == {"W2SMonitor", "W2SEarlyStopping"}
    assert len(detail) == 4 and all(r.levelno == logging.DEBUG for r in detail)  # one of each per check
    assert "w2s/misfit/disagreement" in detail[0].getMessage()
    layer = [r for r in ours if "representation is the" in r.getMessage()]
    assert len(layer) == 1 and layer[0].levelno == logging.INFO


def _g(x: float) -> str:
    return f"{x:.4g}"


def test_verbose_prints_the_headline_of_each_check_at_info_level(caplog, lightning):
    """``verbose=True``: one info line per check, like ``EarlyStopping(verbose=True)``, under either
    namespace; its numbers are the logged ones."""
    L.seed_everything(0)
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:])
    monitor = W2SMonitor(probe, neighbours=0, figure_every_n_checks=0, teacher_score=0.6, ceiling_score=0.9, verbose=True)
    seen = []

    class Record(lightning.callbacks.Callback):
        def on_validation_end(self, trainer, pl_module):
            seen.append(dict(monitor.last_values))

    trainer = lightning.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor, Record()], num_sanity_val_steps=0
    )
    with caplog.at_level(logging.INFO, logger=lightning.name):  # its namespace's logger, as on a user's console
        trainer.fit(lightning.model(tiny_student_class, **SGD_TANH), *loaders(x, teacher, 400, 100))
    lines = [r for r in caplog.records if r.getMessage().startswith("W2SMonitor check ")]
    assert len(lines) == 3 and all(r.levelno == logging.INFO and r.name.startswith(lightning.name) for r in lines)
    for i, (record, values) in enumerate(zip(lines, seen), start=1):
        lo, hi = values[Q.lower(Q.DISAGREEMENT)], values[Q.upper(Q.DISAGREEMENT)]
        assert record.getMessage() == (
            f"W2SMonitor check {i} (epoch {i - 1}, step {7 * i}): PGR {_g(values[Q.PGR])} | held-out disagreement "
            f"{_g(values[Q.DISAGREEMENT])} [{_g(lo)}, {_g(hi)}] | teacher_label_ce {_g(values[Q.TEACHER_LABEL_CE])}"
        )


def test_verbose_reaches_the_console_of_a_pytorch_lightning_process():
    """A plain process with ``import pytorch_lightning``: the monitor's lines reach its console (the
    flaky forward fails at two of the five checks: three headline lines)."""
    out = _console("--verbose", "--pytorch-lightning")
    assert "W2SMonitor: the student's representation is the input of `head` (Linear)" in out
    assert out.count("failed and was skipped (RuntimeError: flaky probe forward)") == 1, out
    headlines = [line for line in out.splitlines() if line.startswith("W2SMonitor check ")]
    assert len(headlines) == 3 and all("held-out disagreement" in line and "teacher_label_ce" in line for line in headlines)
    assert "W2SEarlyStopping stopped the fit at epoch 4" in out
