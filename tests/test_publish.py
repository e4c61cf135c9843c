"""How a check's values reach Lightning (``lightning_w2s/callbacks/publish.py``).

The monitor writes its values straight into ``trainer.callback_metrics`` and hands them to the
loggers once per check instead of one ``pl_module.log`` call per name. These tests pin what users
see through Lightning: the values land at the step and epoch Lightning gives a value logged with
``self.log`` from the same hook (compared with such a value, logged by a callback), as the float32
numbers ``self.log`` would store, in one logger call per check; stock ``EarlyStopping`` and
``ModelCheckpoint`` work on them; nothing reaches the progress bar.
"""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from helpers import TinyStudent, make_task, read_csv_metrics, trainer_kwargs
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lightning_w2s import W2SMonitor

DIS = "w2s/misfit/disagreement"


class Echo(L.Callback):
    """After the monitor, logs ``echo`` with ``self.log`` from the same hook: the reference for the
    step and epoch a value logged there gets."""

    def __init__(self, monitor: W2SMonitor, hook: str):
        self.monitor, self.hook = monitor, hook

    def _echo(self, trainer, pl_module, on_step: bool):
        if not trainer.sanity_checking and self.monitor.last_values:
            pl_module.log("echo", self.monitor.last_values[DIS], on_step=on_step, on_epoch=not on_step)

    def on_validation_epoch_end(self, trainer, pl_module):
        if self.hook == "on_validation_epoch_end":
            self._echo(trainer, pl_module, False)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.hook == "on_train_epoch_end":
            self._echo(trainer, pl_module, False)


def _rows(logger) -> list[dict[str, str]]:
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("validation", [True, False])
def test_values_land_at_lightnings_step_and_epoch_for_the_hook(tmp_path, validation):
    task = make_task()
    monitor = W2SMonitor(task.probe(), figure_every_n_checks=0)
    hook = "on_validation_epoch_end" if validation else "on_train_epoch_end"
    logger = CSVLogger(tmp_path, name="csv")
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, logger=logger, log_every_n_steps=1, callbacks=[monitor, Echo(monitor, hook)]))
    trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader() if validation else None)
    rows = _rows(logger)
    echo = {(r["step"], r["epoch"]): float(r["echo"]) for r in rows if r.get("echo")}
    ours = {(r["step"], r["epoch"]): float(r[DIS]) for r in rows if r.get(DIS)}
    assert len(ours) == 3 and set(ours) == set(echo)  # one row per check, at Lightning's (step, epoch)
    for key, value in ours.items():
        assert value == echo[key]  # the same float32 number self.log would have logged
    # every name of a check in one row (one logger call per check)
    names = set(monitor.last_values)
    assert all(names <= {k for k, v in r.items() if v != ""} for r in rows if r.get(DIS))


def test_callback_metrics_hold_what_self_log_would_store(tmp_path):
    task = make_task()
    monitor = W2SMonitor(task.probe(), figure_every_n_checks=0)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, logger=logger, callbacks=[monitor]))
    trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
    written = read_csv_metrics(logger)[1]
    assert set(written) == set(monitor.last_values)
    for name, value in monitor.last_values.items():
        stored = trainer.callback_metrics[name]
        assert isinstance(stored, torch.Tensor) and stored.dtype == torch.float32 and stored.ndim == 0
        assert stored.item() == torch.tensor(value, dtype=torch.float32).item() == written[name]
        assert trainer.logged_metrics[name] == stored.item()
    assert not any(k.startswith("w2s/") for k in trainer.progress_bar_metrics)  # never in the progress bar


def test_one_logger_call_and_no_self_log_per_check(tmp_path, monkeypatch):
    calls = []

    class CountingLogger(CSVLogger):
        def log_metrics(self, metrics, step=None):
            if any(k.startswith("w2s/") for k in metrics):
                calls.append((step, len(metrics)))
            super().log_metrics(metrics, step)

    logged_names = []
    original = L.LightningModule.log
    monkeypatch.setattr(L.LightningModule, "log", lambda self, name, *a, **k: (logged_names.append(name), original(self, name, *a, **k))[1])
    task = make_task()
    monitor = W2SMonitor(task.probe(), figure_every_n_checks=0)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, logger=CountingLogger(tmp_path), callbacks=[monitor]))
    trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
    assert len(calls) == 3 and all(n >= len(monitor.last_values) for _, n in calls)
    assert not [n for n in logged_names if n.startswith("w2s/")]


def test_step_cadence_is_logged_at_every_check_whatever_log_every_n_steps(tmp_path):
    task = make_task(n_train=128)
    monitor = W2SMonitor(task.probe(), every_n_train_steps=2, figure_every_n_checks=0)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, logger=logger, log_every_n_steps=50, callbacks=[monitor]))
    trainer.fit(TinyStudent(), task.train_loader(32))  # 4 steps an epoch: checks at steps 2, 4, 6, 8
    rows = [r for r in _rows(logger) if r.get(DIS)]
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert [int(r["epoch"]) for r in rows] == [0, 0, 1, 1]
    assert float(rows[-1][DIS]) == trainer.callback_metrics[DIS].item()


def test_tensorboard_scalars_share_the_validation_metrics_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    task = make_task()
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, logger=logger, callbacks=[W2SMonitor(task.probe(), figure_every_n_checks=0)]))
    trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    ours, val = acc.Scalars(DIS), acc.Scalars("val_loss")
    assert [e.step for e in ours] == [e.step for e in val] and len(ours) == 3


def test_stock_early_stopping_and_model_checkpoint_read_the_values(tmp_path):
    task = make_task(noise=0.3)
    logger = CSVLogger(tmp_path, name="csv")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=DIS, mode="min", save_top_k=1)
    stop = EarlyStopping(monitor=DIS, mode="min", patience=2)
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=12, logger=logger, enable_checkpointing=True, callbacks=[W2SMonitor(task.probe(), figure_every_n_checks=0), ckpt, stop]))
    trainer.fit(TinyStudent(lr=0.05), task.train_loader(32), task.val_loader())
    series = [v[DIS] for _, v in sorted(read_csv_metrics(logger).items())]
    best = min(series)
    assert ckpt.best_model_score.item() == best
    assert f"epoch={series.index(best)}-" in ckpt.best_model_path
    # EarlyStopping: stops `patience` checks after the last improvement, or runs to the end
    last_improvement = min(i for i, v in enumerate(series) if v == best)
    assert stop.best_score.item() == best
    assert len(series) == 12 or len(series) == last_improvement + 1 + 2


def test_values_are_stored_in_float32_under_a_half_precision_default_dtype():
    """Some LLM scripts set a bf16 default dtype: the values (and the check counter, exact to 2**24)
    stay float32 in ``trainer.callback_metrics``, as Lightning stores a logged float."""
    from types import SimpleNamespace

    from lightning_w2s.callbacks.publish import log_values

    trainer = SimpleNamespace(callback_metrics={}, loggers=[])
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        log_values(trainer, SimpleNamespace(device=torch.device("cpu")), {"w2s/check": 257.0, "w2s/misfit/sq": 0.123456}, on_step=False)
    finally:
        torch.set_default_dtype(before)
    stored = trainer.callback_metrics
    assert stored["w2s/check"].dtype == torch.float32 and stored["w2s/check"].item() == 257.0
    assert stored["w2s/misfit/sq"].item() == pytest.approx(0.123456, rel=1e-7)
