"""End to end through a real Trainer: logged values read back from the event file and recomputed.
The tests taking the ``lightning`` fixture run under ``lightning.pytorch`` and ``pytorch_lightning``."""

import lightning as L
import pytest
import torch
from helpers import SGD_TANH, loaders, sgd_tanh_student, tiny_student_class, w2s_data
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.metrics.functional import misfit


def _trainer(tmp_path, callbacks, logger=None, epochs=3, lightning=None):
    trainer = L.Trainer if lightning is None else lightning.Trainer
    tensorboard = TensorBoardLogger if lightning is None else lightning.loggers.TensorBoardLogger
    return trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=logger if logger is not None else tensorboard(tmp_path, name="tb"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
    )


def _probe(x, y, teacher, start=600, n=301):
    return W2SProbe(x[start : start + n], teacher_labels=teacher[start : start + n], gold=y[start : start + n])


def test_logged_values_equal_recomputation_from_trained_model(tmp_path, lightning):
    L.seed_everything(0)
    x, y, teacher = w2s_data()
    probe = _probe(x, y, teacher)
    model = lightning.model(tiny_student_class, **SGD_TANH)
    logger = lightning.loggers.TensorBoardLogger(tmp_path, name="tb")
    trainer = _trainer(tmp_path, [W2SMonitor(probe, batch_size=64)], logger=logger, lightning=lightning)
    trainer.fit(model, *loaders(x, teacher, 400, 200))

    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for name in ("w2s/misfit/kl_teacher_student", "w2s/misfit/kl_student_teacher", "w2s/misfit/disagreement", "w2s/misfit/sq", "w2s/gold/accuracy"):
        assert name in tags, name
        assert len(acc.Scalars(name)) == 3  # one per validation epoch, none from the sanity check

    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(probe.inputs), dim=1)
    expected = misfit(probs, probe.teacher_probs)
    for key, value in expected.items():
        logged = acc.Scalars(f"w2s/misfit/{key}")[-1].value
        assert logged == pytest.approx(float(value), rel=1e-5, abs=1e-6), key
    gold_acc = (probs.argmax(1) == probe.gold).double().mean()
    assert acc.Scalars("w2s/gold/accuracy")[-1].value == pytest.approx(float(gold_acc), abs=1e-6)
    # the monitor left the model in train mode during fit and removed its hook at teardown
    assert not model.head._forward_pre_hooks and not model.head._forward_hooks
    # TensorBoard extras: the custom-scalars layout and the constants text
    assert "custom_scalars__config__" in acc.Tags()["tensors"] and "w2s/constants/text_summary" in acc.Tags()["tensors"]


def test_stock_early_stopping_and_csv_logger(tmp_path, lightning):
    L.seed_everything(0)
    x, y, teacher = w2s_data()
    stop = lightning.callbacks.EarlyStopping(monitor="w2s/misfit/disagreement", patience=1, mode="min")
    trainer = _trainer(tmp_path, [W2SMonitor(_probe(x, y, teacher)), stop], logger=lightning.loggers.CSVLogger(tmp_path), epochs=30, lightning=lightning)
    trainer.fit(lightning.model(tiny_student_class, **SGD_TANH, lr=0.5), *loaders(x, teacher, 400, 200))
    assert "w2s/misfit/disagreement" in trainer.callback_metrics
    assert trainer.current_epoch < 30  # the stock callback accepted and acted on the logged value
    text = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "w2s/misfit/disagreement" in text and "w2s/gold/accuracy" in text


def test_model_checkpoint_keeps_the_best_check(tmp_path, lightning):
    """``ModelCheckpoint(monitor="w2s/...")`` of either namespace saves at the check of the lowest value."""
    L.seed_everything(0)
    x, y, teacher = w2s_data(n=800)
    monitor = W2SMonitor(_probe(x, y, teacher, n=200), neighbours=0, figure_every_n_checks=0)
    name = "w2s/misfit/teacher_label_ce"
    seen = []

    class Record(lightning.callbacks.Callback):  # each check's value, in the order of the checks
        def on_validation_end(self, trainer, pl_module):
            seen.append(float(trainer.callback_metrics[name]))

    ckpt = lightning.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=name, mode="min", save_top_k=1)
    trainer = lightning.Trainer(max_epochs=4, accelerator="cpu", logger=False, callbacks=[monitor, Record(), ckpt], enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lightning.model(tiny_student_class, **SGD_TANH, lr=0.5), *loaders(x, teacher, 400, 200))
    assert len(seen) == 4
    assert float(ckpt.best_model_score) == pytest.approx(min(seen))
    assert f"epoch={seen.index(min(seen))}-" in ckpt.best_model_path


def test_monitor_checks_at_train_epoch_end_without_validation(tmp_path):
    L.seed_everything(0)
    x, y, teacher = w2s_data()
    trainer = _trainer(tmp_path, [W2SMonitor(_probe(x, y, teacher))], logger=CSVLogger(tmp_path), epochs=2)
    train, _ = loaders(x, teacher, 400, 200)
    trainer.fit(sgd_tanh_student(), train)
    assert "w2s/misfit/sq" in trainer.callback_metrics


def test_unknown_layer_fails_at_fit_start(tmp_path):
    x, y, teacher = w2s_data(n=700)
    trainer = _trainer(tmp_path, [W2SMonitor(_probe(x, y, teacher, n=50), layer="bodyy")])
    with pytest.raises(ValueError, match=r"`layer`='bodyy'.*did you mean 'body'"):
        trainer.fit(sgd_tanh_student(), *loaders(x, teacher, 400, 200))
    assert trainer.global_step == 0


def test_class_count_mismatch_fails_at_fit_start(tmp_path):
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[:50], teacher_labels=teacher[:50], num_classes=3)
    trainer = _trainer(tmp_path, [W2SMonitor(probe)])
    with pytest.raises(ValueError, match=r"teacher has 3 classes"):
        trainer.fit(sgd_tanh_student(k=2), *loaders(x, teacher, 400, 200))
    assert trainer.global_step == 0


def test_probe_path_is_accepted(tmp_path):
    x, y, teacher = w2s_data(n=700)
    path = tmp_path / "probe.pt"
    _probe(x, y, teacher, n=50).save(path)
    monitor = W2SMonitor(str(path))
    assert monitor.probe.n == 50 and monitor.probe.has_gold
