"""Kill a fit mid-way, resume it from the last checkpoint, and get the same run: the same logged
``w2s/*`` values at every epoch, the same W2SEarlyStopping history and the same stop epoch as an
uninterrupted fit with the same seed (no shuffling anywhere, so the data order is fixed)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import Crash, CrashAt, TinyStudent, make_task, read_csv_metrics, trainer_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_w2s import W2SMonitor
from lightning_w2s.callbacks.early_stopping import W2SEarlyStopping, W2SStoppingReason

CRASH_EPOCH = 3


def fit(tmp_path, name, crash_at=None, ckpt_path=None, teacher_features=True):
    task = make_task(noise=0.3)
    L.seed_everything(0, verbose=False)
    model = TinyStudent(lr=0.02, hidden=64)
    monitor = W2SMonitor(task.probe(input_features=teacher_features), train_probe=task.train_probe())
    es = W2SEarlyStopping(["heldout_misfit_plateau", "teacher_overfit"], patience=4, kappa=None, restore_best=True, verbose=False)
    callbacks = [monitor, es, ModelCheckpoint(dirpath=tmp_path / name, save_last=True)]
    if crash_at is not None:
        callbacks.append(CrashAt(crash_at))
    logger = CSVLogger(tmp_path, name=name)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=15, logger=logger, enable_checkpointing=True, callbacks=callbacks))
    try:
        trainer.fit(model, task.train_loader(32), task.val_loader(), ckpt_path=ckpt_path)
    finally:
        logged = read_csv_metrics(logger)
    return trainer, model, monitor, es, logged


def test_kill_and_resume_gives_the_same_run(tmp_path):
    # The probe carries teacher features (here: the inputs), so the monitor's neighbour table is built
    # from a frozen embedding. Without them it is built from the student at fit start and kept in the
    # monitor's state, so a resume reuses it: see the test below.
    _, model_a, monitor_a, es_a, logged_a = fit(tmp_path, "full")
    assert es_a.stopping_reason is not W2SStoppingReason.NOT_STOPPED
    assert es_a.stopped_epoch > CRASH_EPOCH, "the stop must come after the crash for the test to mean anything"
    # at the crash the plateau is already counting (its best check lies before the crash)
    assert es_a.history[CRASH_EPOCH - 1]["values"] and es_a.best_check < CRASH_EPOCH

    with pytest.raises(Crash):
        fit(tmp_path, "killed", crash_at=CRASH_EPOCH)
    logged_b = read_csv_metrics(CSVLogger(tmp_path, name="killed", version=0))
    assert sorted(logged_b) == list(range(CRASH_EPOCH))

    _, model_c, monitor_c, es_c, logged_c = fit(tmp_path, "resumed", ckpt_path=tmp_path / "killed" / "last.ckpt")
    assert min(logged_c) == CRASH_EPOCH  # the resumed run started where the killed one stopped

    # the same logged w2s values at every epoch (bitwise: same weights, same data order, same maths)
    assert {**logged_b, **logged_c} == logged_a
    # the same stopping decision, from the restored state
    assert es_c.stopped_epoch == es_a.stopped_epoch
    assert es_c.stopping_reason is es_a.stopping_reason
    assert es_c.triggered_policies == es_a.triggered_policies
    assert es_c.history == es_a.history
    assert es_c.best_check == es_a.best_check
    assert monitor_c.num_checks == monitor_a.num_checks
    # the same warnings, each once: the alert rules' state came back (a dropped state re-warns). The
    # float64 values attached to a warning may differ in the last bits (representation sums).
    drop_values = lambda log: [{k: v for k, v in w.items() if k != "values"} for w in log]  # noqa: E731
    assert drop_values(monitor_c.warnings_log) == drop_values(monitor_a.warnings_log) and monitor_a.warnings_log
    # restore_best across the resume: the best check's weights came back from the checkpoint
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert all(torch.equal(state_a[k], state_c[k]) for k in state_a)
    assert f"weights of check {es_a.best_check} will be restored" in es_c.stopping_reason_message


def test_default_stopper_restores_across_a_resume(tmp_path):
    """W2SEarlyStopping() with no arguments, killed after its best check and resumed from the last
    checkpoint: the same stop, and the module ends with the same (best check's) weights as an
    uninterrupted fit; the copy travelled in the checkpoint (with restore_best, always)."""
    task = make_task(noise=0.3)

    def run(name, crash_at=None, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        es, model = W2SEarlyStopping(verbose=False), TinyStudent(lr=0.02, hidden=64)
        cbs = [W2SMonitor(task.probe()), es, ModelCheckpoint(dirpath=tmp_path / name, save_last=True)]
        cbs += [CrashAt(crash_at)] if crash_at is not None else []
        trainer = L.Trainer(**trainer_kwargs(max_epochs=25, enable_checkpointing=True, callbacks=cbs))
        trainer.fit(model, task.train_loader(32), task.val_loader(), ckpt_path=ckpt_path)
        return es, model

    es_a, model_a = run("full")
    with pytest.raises(Crash):
        run("killed", crash_at=es_a.best_check + 2)
    es_c, model_c = run("resumed", ckpt_path=tmp_path / "killed" / "last.ckpt")
    assert es_a.stopped_check is not None and es_c.stopped_check == es_a.stopped_check
    assert es_c.best_check == es_a.best_check < es_a.stopped_check
    state_a, state_c = model_a.state_dict(), model_c.state_dict()
    assert all(torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_monitor_gamma_hat_survives_resume_without_teacher_features(tmp_path):
    task = make_task(noise=0.3)

    def run(name, max_epochs, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        logger = CSVLogger(tmp_path, name=name)
        cbs = [W2SMonitor(task.probe()), ModelCheckpoint(dirpath=tmp_path / name, save_last=True)]
        trainer = L.Trainer(**trainer_kwargs(max_epochs=max_epochs, logger=logger, enable_checkpointing=True, callbacks=cbs))
        trainer.fit(TinyStudent(lr=0.02, hidden=64), task.train_loader(32), task.val_loader(), ckpt_path=ckpt_path)
        return read_csv_metrics(logger)

    full = run("full", 2)
    run("first", 1)
    resumed = run("resumed", 2, ckpt_path=tmp_path / "first" / "last.ckpt")
    assert resumed[1]["w2s/robustness/inconsistency"] == full[1]["w2s/robustness/inconsistency"]
