"""W2SEarlyStopping follows the monitor's checks whatever the cadence, a cadence that cannot fire
says so, and a resumed fit never mixes two probes. End to end through a real
Trainer."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import Crash, CrashAt, TinyStudent, make_task, trainer_kwargs
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe
from lightning_w2s.metrics import quantities as Q

HELD = Q.TEACHER_LABEL_CE  # what W2SEarlyStopping() reads


class ChecksSeen(Callback):
    """After the monitor's hooks: the held-out misfit in ``trainer.callback_metrics`` at each check."""

    def __init__(self, monitor):
        self.monitor, self.seen, self.values = monitor, 0, []

    def on_train_batch_end(self, trainer, *args):
        made = self.monitor.num_checks + self.monitor.num_failed
        if made != self.seen:
            self.seen = made
            value = trainer.callback_metrics.get(HELD)
            self.values.append(None if value is None else float(value))


@pytest.mark.parametrize("stopper_first", [False, True])
def test_one_history_entry_per_step_check_with_gradient_accumulation(stopper_first):
    """every_n_train_steps=1 with accumulate_grad_batches=2: 4 optimizer steps, 4 checks, 4 entries,
    each with that check's value, whichever of the two callbacks Lightning calls first."""
    task = make_task(n_train=128)
    L.seed_everything(0, verbose=False)
    monitor = W2SMonitor(task.probe(), every_n_train_steps=1, neighbours=0, figure_every_n_checks=0)
    es = W2SEarlyStopping(patience=50, verbose=False)
    seen = ChecksSeen(monitor)
    callbacks = [es, monitor, seen] if stopper_first else [monitor, seen, es]
    trainer = L.Trainer(**trainer_kwargs(max_epochs=1, accumulate_grad_batches=2, callbacks=callbacks))
    trainer.fit(TinyStudent(), task.train_loader(16), task.val_loader())
    assert trainer.global_step == 4 and monitor.num_checks == 4
    assert [h["step"] for h in es.history] == [1, 2, 3, 4]
    assert [h["values"][HELD] for h in es.history] == seen.values


@pytest.mark.parametrize("stopper_first", [False, True])
def test_patience_counts_step_checks_and_stops_mid_epoch(stopper_first):
    task = make_task(n_train=128)
    L.seed_everything(0, verbose=False)
    monitor = W2SMonitor(task.probe(), every_n_train_steps=1, neighbours=0, figure_every_n_checks=0)
    es = W2SEarlyStopping(patience=2, verbose=False)
    callbacks = [es, monitor] if stopper_first else [monitor, es]
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, accumulate_grad_batches=2, callbacks=callbacks))
    trainer.fit(TinyStudent(lr=0.0), task.train_loader(16), task.val_loader())  # lr 0: the misfit never improves
    assert es.stopped_check == 2 and [h["step"] for h in es.history] == [1, 2, 3]
    assert trainer.global_step == 3 and trainer.current_epoch == 1  # stopped inside the first epoch (8 batches)
    # wherever it is listed it stops after the check's batch: the monitor hands it each check (on_w2s_check)
    assert trainer.lightning_module.train_steps == 6


def test_failed_step_check_is_an_empty_entry_not_a_stale_value():
    task = make_task(n_train=128)
    calls = {"n": 0}

    def forward(module, batch):
        calls["n"] += 1
        if calls["n"] == 3:  # the shape check, check 0, then check 1 fails
            raise RuntimeError("probe forward failed on purpose")
        return module(batch)

    L.seed_everything(0, verbose=False)
    monitor = W2SMonitor(task.probe(), every_n_train_steps=1, neighbours=0, figure_every_n_checks=0, forward_fn=forward, batch_size=1000)
    es = W2SEarlyStopping(patience=50, verbose=False)
    seen = ChecksSeen(monitor)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=1, callbacks=[monitor, seen, es]))
    with pytest.warns(RuntimeWarning, match="no fresh finite value"):
        trainer.fit(TinyStudent(), task.train_loader(32), task.val_loader())
    assert monitor.num_failed == 1 and monitor.num_checks == 3
    assert seen.values[1] is None  # removed from callback_metrics after the failed check
    assert [bool(h["values"]) for h in es.history] == [True, False, True, True]


@pytest.mark.parametrize("validation", [True, False])
def test_cadence_that_cannot_fire_warns_and_a_stock_checkpoint_works(tmp_path, validation):
    task = make_task()  # 128 training points, batch 64: 2 optimizer steps an epoch, 4 in the fit
    monitor = W2SMonitor(task.probe(), every_n_train_steps=1000, neighbours=0, figure_every_n_checks=0)
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="w2s/misfit/sq", mode="min", save_top_k=-1)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, enable_checkpointing=True, callbacks=[monitor, ckpt]))
    match = r"every_n_train_steps=1000 cannot fire in this fit \(it has 4 optimizer steps.*every_n_train_steps <= 4"
    with pytest.warns(UserWarning, match=match):
        trainer.fit(TinyStudent(), task.train_loader(), task.val_loader() if validation else None)
    assert monitor.num_checks == 2  # the epoch cadence instead
    scores = [float(v) for v in ckpt.best_k_models.values()]  # one checkpoint per check, scored by the monitor's value
    assert ckpt.best_model_path and len(scores) == 2 and float(ckpt.best_model_score) == min(scores)
    assert monitor.last_values[Q.SQ] == pytest.approx(scores[-1], rel=1e-6)


def test_resume_with_another_probe_starts_the_histories_afresh(tmp_path):
    """The stopper's history was made with probe A; resuming with probe B (same size, other teacher
    labels) warns and starts the stopper's and the monitor's histories afresh; resuming with probe A
    continues them."""
    task = make_task(noise=0.3)
    probe_a = task.probe()
    probe_b = W2SProbe(task.x_probe, teacher_labels=1 - task.t_probe, gold=task.gold_probe, num_classes=2)

    def run(name, probe, crash_at=None, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        monitor = W2SMonitor(probe, figure_every_n_checks=0)
        es = W2SEarlyStopping(patience=50, verbose=False)
        cbs = [monitor, es, ModelCheckpoint(dirpath=tmp_path / name, save_last=True)]
        cbs += [CrashAt(crash_at)] if crash_at is not None else []
        trainer = L.Trainer(**trainer_kwargs(max_epochs=5, enable_checkpointing=True, callbacks=cbs))
        trainer.fit(TinyStudent(lr=0.02), task.train_loader(32), task.val_loader(), ckpt_path=ckpt_path)
        return monitor, es

    with pytest.raises(Crash):
        run("killed", probe_a, crash_at=3)
    last = tmp_path / "killed" / "last.ckpt"
    monitor, es = run("same", probe_a, ckpt_path=last)
    assert [h["epoch"] for h in es.history] == [0, 1, 2, 3, 4] and monitor.num_checks == 5
    value_a = es.history[-1]["values"][HELD]
    with pytest.warns(UserWarning, match="another probe or") as record:
        monitor, es = run("other", probe_b, ckpt_path=last)
    assert any("W2SEarlyStopping" in str(w.message) for w in record) and any("W2SMonitor" in str(w.message) for w in record)
    assert [h["epoch"] for h in es.history] == [3, 4] and [h["check"] for h in es.history] == [0, 1]
    assert monitor.num_checks == 2 and len(monitor.metrics.history) == 2
    # the stopper's entries are probe B's values (the teacher's labels flipped), not probe A's
    assert es.history[-1]["values"][HELD] == pytest.approx(monitor.last_values[HELD], rel=1e-6)
    assert es.history[-1]["values"][HELD] != pytest.approx(value_a, rel=1e-2)


def _step_fit(order: str, max_steps: int, ckpt_dir=None, ckpt_path=None, restore_best: bool = True):
    L.seed_everything(0, verbose=False)
    task = make_task(noise=0.3)
    stopper = W2SEarlyStopping(patience=3, restore_best=restore_best, verbose=False)
    monitor = W2SMonitor(task.probe(), every_n_train_steps=2, neighbours=0, figure_every_n_checks=0)
    callbacks = [stopper, monitor] if order == "stopper_first" else [monitor, stopper]
    if ckpt_dir is not None:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2, save_top_k=-1, filename="{step}"))
    trainer = L.Trainer(**trainer_kwargs(max_steps=max_steps, max_epochs=100, enable_checkpointing=ckpt_dir is not None, callbacks=callbacks))
    trainer.fit(TinyStudent(lr=0.02, hidden=64), task.train_loader(32), ckpt_path=ckpt_path)
    return trainer, stopper


def test_listed_before_the_monitor_a_stop_comes_at_the_check_step():
    """The monitor hands each check to the stopper as soon as it is published (``on_w2s_check``):
    listed before the monitor, the stopper used to read it at the next batch start, after one more
    optimizer step had run."""
    runs = {order: _step_fit(order, 200, restore_best=False) for order in ("monitor_first", "stopper_first")}
    (t1, s1), (t2, s2) = runs["monitor_first"], runs["stopper_first"]
    assert s1.stopped_check is not None
    assert s2.stopped_check == s1.stopped_check
    assert t2.global_step == t1.global_step == s1.history[s1.stopped_check]["step"]


def test_listed_before_the_monitor_a_checkpoint_holds_the_check_of_its_step(tmp_path):
    """A checkpoint saved at a check's step holds that check in the stopper's history, whatever the
    callbacks' order, so a resumed fit decides as the uninterrupted one."""
    _, whole = _step_fit("stopper_first", 40, ckpt_dir=tmp_path)
    state = torch.load(tmp_path / "step=10.ckpt", weights_only=True)["callbacks"]
    stopper_state = next(v for k, v in state.items() if k.startswith("W2SEarlyStopping"))
    monitor_state = next(v for k, v in state.items() if k.startswith("W2SMonitor"))
    assert len(stopper_state["decision"]["history"]) == monitor_state["num_checks"] == 5
    _, resumed = _step_fit("stopper_first", 40, ckpt_path=tmp_path / "step=10.ckpt")
    # the checks up to the checkpoint are carried over as they were, and none is lost or repeated
    # (after a mid-epoch resume the batches differ, so the later values may too)
    assert [h["step"] for h in resumed.history] == [h["step"] for h in whole.history][: len(resumed.history)]
    assert [h["values"] for h in resumed.history[:5]] == [h["values"] for h in whole.history[:5]]
