"""The package implements what the stopping benchmark chose: a real ``lightning.Trainer`` with
``W2SMonitor`` + ``W2SEarlyStopping()`` (no arguments) stops and restores at the checks that the
benchmark's offline rule ``probe_hce ma1 p=5 keep=best`` (:func:`benchmarks.stopping.rules.patience_stop`
with :data:`benchmarks.stopping.run.DEFAULT_PARAMS`) computes from the values the monitor wrote to
TensorBoard's event file, read back with TensorBoard's own reader. Small synthetic task, CPU."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers import TinyStudent, make_task, trainer_kwargs
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks.stopping.rules import patience_stop
from benchmarks.stopping.run import DEFAULT_PARAMS
from lightning_w2s import W2SEarlyStopping, W2SMonitor
from lightning_w2s.metrics import quantities as Q


class WeightsAtChecks(Callback):
    """A CPU copy of the weights at every check (listed after the stopper)."""

    def __init__(self):
        self.at = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.at.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def _event_scalars(logdir, tag: str) -> list[float]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars(tag), key=lambda e: e.step)
    return [e.value for e in events]


def _fit(tmp_path, max_epochs: int):
    task = make_task(noise=0.3)
    L.seed_everything(0, verbose=False)
    model = TinyStudent(lr=0.02, hidden=64)
    stopper, weights = (W2SEarlyStopping(verbose=False, gold=False), WeightsAtChecks())  # the probe has gold: gold=False tests the label-free default
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=max_epochs, logger=logger, callbacks=[W2SMonitor(task.probe()), stopper, weights]))
    trainer.fit(model, task.train_loader(32), task.val_loader())
    logger.experiment.flush()
    return stopper, weights, model, _event_scalars(logger.log_dir, Q.TEACHER_LABEL_CE)


@pytest.mark.parametrize("max_epochs, stops", [(25, True), (4, False)])
def test_real_default_stopper_equals_the_benchmarks_offline_replay_of_the_logged_values(tmp_path, max_epochs, stops):
    assert DEFAULT_PARAMS == {"signal": "probe_hce", "smooth": 1, "patience": 5, "keep": "best"}
    stopper, weights, model, logged = _fit(tmp_path, max_epochs)
    assert len(logged) == len(weights.at) == len(stopper.history) >= 4
    # the benchmark's recordings: index 0 = before training (never a decision), index c = after epoch c - 1
    offline = patience_stop(np.array([np.nan, *logged]), DEFAULT_PARAMS["patience"], DEFAULT_PARAMS["smooth"], DEFAULT_PARAMS["keep"])
    assert (offline.stop is not None) == stops, (logged, offline)
    live_stop = None if stopper.stopped_check is None else stopper.stopped_check + 1
    assert live_stop == offline.stop
    assert stopper.best_check is not None and stopper.best_check + 1 == offline.kept
    if stops:
        assert stopper.stopped_epoch == offline.stop - 1 and len(logged) == offline.stop  # no check after the stop
    # the restored check is not the last one, and its weights are what the module holds after fit
    kept = offline.kept - 1
    assert kept < len(logged) - 1, "the scenario must have its best check before the last one"
    state = model.state_dict()
    assert all(torch.equal(state[k], weights.at[kept][k]) for k in state)
    assert not all(torch.equal(state[k], weights.at[-1][k]) for k in state)
    # the stopper decided on the very numbers the event file holds
    assert [h["values"][Q.TEACHER_LABEL_CE] for h in stopper.history] == pytest.approx(logged, abs=0, rel=0)
