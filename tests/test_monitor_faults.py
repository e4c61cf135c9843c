"""Faults during training become warnings and skipped values; the fit goes on."""

import math

import lightning as L
import pytest
import torch
from helpers import SGD_TANH, TinyStudent, loaders, sgd_tanh_student, w2s_data
from lightning.pytorch.loggers import CSVLogger

from lightning_w2s import W2SMonitor, W2SProbe


def _fit(tmp_path, monitor, model=None, epochs=2, **trainer_kwargs):
    L.seed_everything(0)
    x, y, teacher = w2s_data(n=700)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=CSVLogger(tmp_path), callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs
    )
    trainer.fit(model or sgd_tanh_student(), *loaders(x, teacher, 400, 100))
    return trainer


def _probe(n=64):
    x, y, teacher = w2s_data(n=700)
    return W2SProbe(x[600 : 600 + n], teacher_labels=teacher[600 : 600 + n], gold=y[600 : 600 + n])


def test_exception_in_probe_pass_is_skipped_and_training_continues(tmp_path):
    calls = {"n": 0}

    def flaky_forward(module, batch):
        calls["n"] += 1
        if calls["n"] > 1:  # the fit-start shape check passes, every later check fails
            raise RuntimeError("boom")
        return module(batch)

    monitor = W2SMonitor(_probe(), forward_fn=flaky_forward, neighbours=0)
    with pytest.warns(UserWarning, match=r"check 0 failed and was skipped \(RuntimeError: boom\)"):
        trainer = _fit(tmp_path, monitor, epochs=2)
    assert trainer.current_epoch == 2  # training finished
    assert monitor.num_skipped == 2 and monitor.num_checks == 0
    assert trainer.callback_metrics["w2s/skipped"] == 2
    assert "w2s/misfit/sq" not in trainer.callback_metrics


def test_on_error_raise_propagates(tmp_path):
    def bad_after_start(module, batch, state={"n": 0}):
        state["n"] += 1
        if state["n"] > 1:
            raise RuntimeError("boom")
        return module(batch)

    with pytest.raises(RuntimeError, match="boom"):
        _fit(tmp_path, W2SMonitor(_probe(), forward_fn=bad_after_start, on_error="raise", neighbours=0))


def test_nan_outputs_are_warned_skipped_and_counted(tmp_path):
    def nan_after_start(module, batch, state={"n": 0}):
        state["n"] += 1
        out = module(batch)
        return out if state["n"] == 1 else out * float("nan")

    monitor = W2SMonitor(_probe(), forward_fn=nan_after_start, neighbours=0)
    with pytest.warns(UserWarning, match=r"non-finite"):
        trainer = _fit(tmp_path, monitor, epochs=1)
    assert "w2s/misfit/kl_teacher_student" not in trainer.callback_metrics
    assert trainer.callback_metrics["w2s/skipped"] > 0
    assert all(math.isfinite(v) for v in monitor.last_values.values())


def test_every_n_train_steps_cadence_restores_train_mode(tmp_path):
    modes = []

    class Spy(TinyStudent):
        def training_step(self, batch, i):
            modes.append(self.training)
            return super().training_step(batch, i)

    monitor = W2SMonitor(_probe(), every_n_train_steps=3)
    _fit(tmp_path, monitor, model=Spy(**SGD_TANH), epochs=1)  # 7 steps: checks at steps 3 and 6
    assert monitor.num_checks == 2
    assert all(modes)
    text = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = text[0].split(",")
    col = header.index("w2s/misfit/sq")
    steps = [row.split(",")[header.index("step")] for row in text[1:] if row.split(",")[col]]
    assert steps == ["3", "6"]  # every 3 optimizer steps, recorded although log_every_n_steps=50


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(teacher_score=1.5), ValueError, r"`teacher_score` must be in \[0.0, 1.0\], got 1.5"),
        (dict(batch_size=0), ValueError, r"`batch_size` must be >= 1, got 0"),
        (dict(batch_size=True), TypeError, r"`batch_size` must be an int, got bool True"),  # bools are not ints
        (dict(neighbours=True), TypeError, r"`neighbours` must be an int, got bool True"),
        (dict(neighbours=-1), ValueError, r"`neighbours` must be >= 0"),
        (dict(eta=5.0), ValueError, r"`eta` must be in \(0.0, 1.0\], got 5.0"),
        (dict(alert_window=0), ValueError, r"`alert_window` must be >= 2, got 0"),
        (dict(eps=0.7), ValueError, r"`eps` must be in \(0.0, 0.5\)"),
        (dict(every_n_train_steps=-1), ValueError, r"`every_n_train_steps` must be >= 1"),
        (dict(every_n_train_steps=2.5), TypeError, r"`every_n_train_steps` must be an int or None"),
        (dict(min_gain=0.0), ValueError, r"`min_gain` must be in \(0.0, 1.0\]"),
        (dict(figure_every_n_checks=-1), ValueError, r"`figure_every_n_checks` must be >= 0"),
        (dict(on_error="ignore"), ValueError, r"`on_error` must be one of"),
        (dict(pooling="max"), ValueError, r"`pooling` must be one of"),
        (dict(capture="both"), ValueError, r"`capture` must be one of"),
        (dict(layer=3), TypeError, r"`layer` must be a str or None"),
        (dict(forward_fn="model"), TypeError, r"`forward_fn` must be a callable"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, exc, match):
    """TypeError for a wrong type, ValueError for a wrong value, the argument's public name in each."""
    with pytest.raises(exc, match=match):
        W2SMonitor(_probe(), **kwargs)


def test_bad_probe_arguments():
    with pytest.raises(TypeError, match=r"`probe` must be a W2SProbe or a path"):
        W2SMonitor(42)
    with pytest.raises(ValueError, match=r"`train_probe` has 3 classes but `probe` has 2"):
        W2SMonitor(_probe(), train_probe=W2SProbe(torch.zeros(4, 6), teacher_labels=torch.tensor([0, 1, 2, 0])))


def test_pooling_that_cannot_apply_fails_at_fit_start(tmp_path):
    monitor = W2SMonitor(_probe(), pooling="last")  # the default layer's input is 2-D, not a sequence
    with pytest.raises(ValueError, match=r"`pooling`='last' needs a 3-D \(batch, tokens, d\) layer output"):
        _fit(tmp_path, monitor)


def test_model_without_linear_needs_a_layer(tmp_path):
    class NoLinear(TinyStudent):
        def __init__(self):
            super().__init__(**SGD_TANH)
            self.body = torch.nn.Identity()
            self.head = torch.nn.Bilinear(6, 6, 2)

        def forward(self, x):
            return self.head(x, x)

    with pytest.raises(ValueError, match=r"`layer` is None.*has no nn.Linear; pass `layer=`"):
        _fit(tmp_path, W2SMonitor(_probe()), model=NoLinear())


def test_float64_probe_inputs_are_cast_to_the_model_dtype(tmp_path):
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:].double().numpy(), teacher_labels=teacher[600:], gold=y[600:])
    trainer = _fit(tmp_path, W2SMonitor(probe), epochs=1)
    assert "w2s/gold/accuracy" in trainer.callback_metrics


def test_degenerate_representation_is_warned_skipped_and_training_continues(tmp_path):
    class DeadFeatures(TinyStudent):
        def forward(self, x):
            return self.head(self.body(x) * 0.0)  # the head's input is constant: rank 0

    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:], teacher_features=x[600:, :3])
    monitor = W2SMonitor(probe, neighbours=0)
    with pytest.warns(UserWarning, match=r"non-finite value\(s\).*w2s/representation/gap_fro"):
        trainer = _fit(tmp_path, monitor, model=DeadFeatures(**SGD_TANH), epochs=2)
    assert trainer.current_epoch == 2
    assert "w2s/representation/gap_fro" not in trainer.callback_metrics
    assert "w2s/misfit/sq" in trainer.callback_metrics and trainer.callback_metrics["w2s/skipped"] > 0


def test_ceiling_not_above_teacher_warns_and_pgr_is_not_expected():
    with pytest.warns(UserWarning, match=r"`ceiling_score`=0.8 <= `teacher_score`=0.9: PGR is undefined"):
        monitor = W2SMonitor(_probe(), teacher_score=0.9, ceiling_score=0.8)
    assert "w2s/gold/pgr" not in monitor.expected_names()
    assert "w2s/gold/pgr" in W2SMonitor(_probe(), teacher_score=0.7, ceiling_score=0.8).expected_names()


def test_a_value_undefined_at_a_later_check_leaves_callback_metrics(tmp_path):
    monitor = W2SMonitor(_probe(), neighbours=0)
    compute = monitor.metrics.compute
    state = {"checks": 0}

    def kappa_only_at_first_check():
        out = compute()
        state["checks"] += 1
        return out if state["checks"] == 1 else {k: v for k, v in out.items() if k != "w2s/misfit/kappa"}

    monitor.metrics.compute = kappa_only_at_first_check
    seen = []

    class Spy(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                seen.append("w2s/misfit/kappa" in trainer.callback_metrics)

    L.seed_everything(0)
    x, y, teacher = w2s_data(n=700)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[monitor, Spy()], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(sgd_tanh_student(), *loaders(x, teacher, 400, 100))
    assert seen == [True, False, False]  # not a stale number from check 1


def test_degenerate_teacher_features_fall_back_to_student_neighbourhoods(tmp_path):
    x, y, teacher = w2s_data(n=700)
    keyword_counts = torch.zeros(100, 4)
    keyword_counts[:10, 0] = 1.0  # like a keyword rule: most rows have no hit at all
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:], teacher_features=keyword_counts)
    monitor = W2SMonitor(probe)
    with pytest.warns(UserWarning, match=r"the teacher's features cannot define neighbourhoods.*student's representation"):
        trainer = _fit(tmp_path, monitor, epochs=1)
    assert "w2s/robustness/inconsistency" in trainer.callback_metrics
