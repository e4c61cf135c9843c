"""Regression in the monitor (Charikar et al. 2024 Thm 1; Yao et al. 2025).

- the regression probe (``W2SProbe(inputs, teacher_values=..., gold=...)``): validation at
  construction, save/load, fingerprint;
- its aggregator (:class:`RegressionMetrics`, chosen by ``metrics_for_probe``) against an
  independent numpy recomputation, streamed in uneven batches with padding rows, and
  ``expected_names()`` = exactly what is logged;
- through a real ``Trainer``: a least-squares head on frozen features trained on the probe's own
  inputs with the teacher's values, realizable gold (``tests/_regression.py`` says why the premises
  hold exactly): ``gold/sq_gain == bounds/predicted_gain`` to 1e-6 once trained, and not before; a
  non-realizable control where they differ; the fit-start shape check; the stopping policies that
  apply (``misfit="sq"``), the default's failure naming the fix; the dashboard's regression layout
  read back from the event file.
"""

from __future__ import annotations

import math
import os

import lightning as L
import numpy as np
import pytest
import torch
from _regression import LeastSquaresHead, regression_task
from helpers import trainer_kwargs
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import metrics_for_probe
from lightning_w2s.metrics.functional import representation_gap
from lightning_w2s.metrics.regression import RegressionMetrics

NAN = float("nan")


# ============================================================================ the probe
def test_regression_probe_basics():
    x = torch.randn(5, 3)
    p = W2SProbe(x, teacher_values=[0.5, -1.0, 2.0, 0.0, 1.0], gold=[0.4, NAN, 1.5, 0.1, NAN])
    assert p.task == "regression" and p.is_regression and p.output_dim == 1 and p.num_classes is None
    assert p.teacher_values.dtype == torch.float64 and p.gold.dtype == torch.float64 and p.covered.all()
    assert repr(p) == "W2SProbe(n=5, outputs=(n,), teacher=teacher_values, gold=3)"
    q = W2SProbe(x, teacher_values=np.ones((5, 2)), gold=np.full((5, 2), NAN), teacher_features=x)
    assert q.output_dim == 2 and q.gold is None and not q.has_gold  # no known target: no gold family
    assert repr(q) == "W2SProbe(n=5, outputs=(n, 2), teacher=teacher_values, gold=0, teacher_features=3d)"
    c = W2SProbe(x, teacher_labels=[0, 1, 0, 1, 1])
    assert c.task == "classification" and c.output_dim is None and c.teacher_values is None


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(teacher_values=[1.0, 2.0]), ValueError, r"`teacher_values` has 2 rows but the probe has 4"),
        (dict(teacher_values=[1.0, NAN, 2.0, 3.0]), ValueError, r"`teacher_values` contains 1 non-finite"),
        (dict(teacher_values=[1.0, math.inf, 2.0, 3.0]), ValueError, r"`teacher_values` contains 1 non-finite"),
        (dict(teacher_values=torch.ones(4, 2, 2)), ValueError, r"1-D \(n,\) or 2-D \(n, m\)"),
        (dict(teacher_values=torch.ones(4, 0)), ValueError, r"m >= 1"),
        (dict(teacher_values=torch.ones(4, dtype=torch.bool)), TypeError, r"`teacher_values` must hold real values"),
        (dict(teacher_values=["a", "b", "c", "d"]), TypeError, r"`teacher_values` must be a tensor or array-like"),
        (dict(teacher_values=torch.ones(4), teacher_labels=[0, 1, 0, 1]), ValueError, r"cannot be combined with \['teacher_labels'\]"),
        (dict(teacher_values=torch.ones(4), teacher_probs=torch.full((4, 2), 0.5)), ValueError, r"teacher_probs"),
        (dict(teacher_values=torch.ones(4), covered=[True] * 4), ValueError, r"cannot be combined with \['covered'\]"),
        (dict(teacher_values=torch.ones(4), num_classes=2), ValueError, r"\['num_classes'\]"),
        (dict(teacher_values=torch.ones(4), gold=torch.ones(4, 1)), ValueError, r"`gold` must have the shape of `teacher_values` \(4,\)"),
        (dict(teacher_values=torch.ones(4), gold=[1.0, math.inf, 0.0, 0.0]), ValueError, r"`gold` contains \+-Inf at index \(1,\)"),
        (dict(teacher_values=torch.ones(4, 2), gold=[[1.0, NAN], [0.0, 0.0], [NAN, NAN], [1.0, 1.0]]), ValueError, r"`gold` row 0 is partly NaN"),
        (dict(teacher_values=torch.ones(4), gold=torch.ones(4, dtype=torch.bool)), TypeError, r"`gold` must hold real values"),
        (dict(), ValueError, r"exactly one of .* or `teacher_values` \(regression\)"),
    ],
)
def test_regression_probe_errors_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        W2SProbe(torch.zeros(4, 3), **kwargs)


def test_regression_probe_save_load_and_fingerprint(tmp_path):
    x = torch.randn(6, 3)
    gold = torch.tensor([[0.1, 0.2], [NAN, NAN], [1.0, 2.0], [0.0, 0.0], [NAN, NAN], [3.0, 4.0]], dtype=torch.float64)
    p = W2SProbe(x, teacher_values=torch.randn(6, 2, dtype=torch.float64), gold=gold, teacher_features=x[:, :2])
    p.save(tmp_path / "probe.pt")
    q = W2SProbe.load(tmp_path / "probe.pt")
    assert q.is_regression and torch.equal(q.teacher_values, p.teacher_values) and torch.equal(q.inputs, p.inputs)
    assert torch.allclose(q.gold, p.gold, equal_nan=True) and torch.equal(q.teacher_features, p.teacher_features)
    assert q.fingerprint == p.fingerprint
    other_values = W2SProbe(x, teacher_values=p.teacher_values + 1e-9, gold=gold, teacher_features=x[:, :2])
    other_gold = W2SProbe(x, teacher_values=p.teacher_values, gold=torch.nan_to_num(gold), teacher_features=x[:, :2])
    assert len({p.fingerprint, other_values.fingerprint, other_gold.fingerprint}) == 3
    monitor = W2SMonitor(str(tmp_path / "probe.pt"), figure_every_n_checks=0)  # a path works (LightningCLI)
    assert monitor.probe.is_regression and isinstance(monitor.metrics, RegressionMetrics)


# ============================================================================ the aggregator
def _reference(s, w, y, fs_feat, fw_feat):
    """Independent numpy recomputation of what a regression probe logs."""
    s, w, y = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (s, w, y))
    known = ~np.isnan(y).any(axis=1)
    err_s = ((s[known] - y[known]) ** 2).sum(1).mean()
    err_w = ((w[known] - y[known]) ** 2).sum(1).mean()
    misfit = ((s - w) ** 2).sum(1).mean()
    rep = representation_gap(torch.from_numpy(fs_feat[known]), torch.from_numpy(fw_feat[known]), labels=torch.from_numpy(y[known]), reg=0.1, max_components=32)
    return {Q.SQ: misfit, Q.PREDICTED_GAIN: misfit, Q.SQ_GAIN: err_w - err_s, Q.STUDENT_SQ_ERROR: err_s, Q.TEACHER_SQ_ERROR: err_w, Q.PRED_GAP_GOLD: float(rep["pred_gap"])}


@pytest.mark.parametrize("outputs", [1, 3])
def test_aggregator_matches_a_numpy_reference(outputs):
    rng = np.random.default_rng(outputs)
    n, shape = 103, (103,) if outputs == 1 else (103, outputs)
    w, s = rng.normal(size=shape), rng.normal(size=shape)
    y = rng.normal(size=shape)
    y[rng.random(n) < 0.3] = np.nan  # unknown gold rows
    fs_feat, fw_feat = rng.normal(size=(n, 5)), rng.normal(size=(n, 4))
    probe = W2SProbe(torch.zeros(n, 1), teacher_values=w, gold=y, teacher_features=fw_feat)
    metrics = metrics_for_probe(probe)
    assert isinstance(metrics, RegressionMetrics)
    st, ft = torch.from_numpy(s), torch.from_numpy(fs_feat)
    for lo, hi in ((0, 1), (1, 8), (8, 60), (60, n)):  # uneven batches, each padded with 2 invalid rows
        idx = torch.cat([torch.arange(lo, hi), torch.zeros(2, dtype=torch.long)])
        valid = torch.cat([torch.ones(hi - lo, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)])
        metrics.update(st[idx], ft[idx], idx, valid)
    out = metrics.compute()
    assert set(out) == metrics.expected_names()  # exactly what expected_names promises, nothing classification-only
    assert not {Q.KL_TEACHER_STUDENT, Q.DISAGREEMENT, Q.ACCURACY, Q.MAX_GAIN, Q.ECE_VS_TEACHER} & set(out)
    ref = _reference(s, w, y, fs_feat, fw_feat)
    for name, value in ref.items():  # pred_gap: eigen-solves on streamed vs direct sums agree to rounding only
        rel = 1e-6 if name == Q.PRED_GAP_GOLD else 1e-11
        assert float(out[name]) == pytest.approx(value, rel=rel, abs=1e-12), name
    assert {Q.GAP_FRO, Q.GAP_OP, Q.CKA, Q.EFFECTIVE_RANK} <= set(out)


def test_aggregator_train_probe_and_bad_arguments():
    probe = W2SProbe(torch.zeros(4, 1), teacher_values=[1.0, 2.0, 3.0, 4.0], gold=[1.0, 2.0, 3.0, 4.0])
    train = metrics_for_probe(probe, train=True, eps=1e-6)
    train.update(torch.tensor([1.5, 2.0, 3.0, 4.0]), None, torch.arange(4), torch.ones(4, dtype=torch.bool))
    assert {k: float(v) for k, v in train.compute().items()} == {Q.train_name(Q.SQ): 0.0625}
    assert train.expected_names() == {Q.train_name(Q.SQ)}
    with pytest.raises(ValueError, match="`teacher_score`=0.7 is a 0/1 accuracy score"):
        metrics_for_probe(probe, teacher_score=0.7)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['nope'\]"):
        metrics_for_probe(probe, nope=1)
    metrics = metrics_for_probe(probe, neighbours=10, eta=0.5, eps=1e-6)  # the monitor's defaults: unused
    with pytest.raises(ValueError, match=r"expected \(batch,\) or \(batch, 1\)"):
        metrics.student_values(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="real values"):
        metrics.student_values(torch.zeros(2, dtype=torch.long))
    assert metrics.student_values(torch.zeros(2, 1)).shape == (2, 1)
    with pytest.raises(ValueError, match="`min_gain`=0.05 is a gain in 0/1 accuracy"):
        W2SMonitor(probe, min_gain=0.05)
    with pytest.raises(ValueError, match="`ceiling_score`=0.9 is a 0/1 accuracy score"):
        W2SMonitor(probe, ceiling_score=0.9)
    classification = W2SProbe(torch.zeros(4, 1), teacher_labels=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="`train_probe` is a classification probe but `probe` is a regression probe"):
        W2SMonitor(probe, train_probe=classification)


# ============================================================================ through a real Trainer
class PerCheck(L.Callback):
    """The monitor's values after each of its checks (no validation loop: at train epoch end)."""

    def __init__(self, monitor):
        self.monitor, self.values = monitor, []

    def on_train_epoch_end(self, trainer, pl_module):
        self.values.append(dict(self.monitor.last_values))


def fit_least_squares(tmp_path, outputs=1, realizable=True, epochs=4, callbacks=(), **monitor_kw):
    model = LeastSquaresHead(outputs=outputs)
    x, f_w, f_star = regression_task(model, realizable=realizable)
    probe = W2SProbe(x, teacher_values=f_w, gold=f_star, teacher_features=x[:, :3])
    train_probe = W2SProbe(x[:64], teacher_values=f_w[:64])
    monitor = W2SMonitor(probe, train_probe=train_probe, figure_every_n_checks=0, **monitor_kw)
    record = PerCheck(monitor)
    logger = TensorBoardLogger(str(tmp_path), name="reg", version=0)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=epochs, precision="64-true", logger=logger, callbacks=[monitor, record, *callbacks]))
    trainer.fit(model, DataLoader(TensorDataset(x, f_w), batch_size=len(x)))  # the probe's own inputs, full batch
    return model, x, f_w, f_star, monitor, record.values, logger.log_dir


@pytest.mark.parametrize("outputs", [1, 2])
def test_least_squares_student_gain_equals_predicted_gain(tmp_path, outputs):
    model, x, f_w, f_star, monitor, checks, _ = fit_least_squares(tmp_path, outputs=outputs)
    gaps = [c[Q.SQ_GAIN] - c[Q.PREDICTED_GAIN] for c in checks]
    print(
        f"\nleast-squares head, {outputs} output(s): sq_gain - predicted_gain per check {[f'{g:.1e}' for g in gaps]}; "
        f"final sq_gain {checks[-1][Q.SQ_GAIN]:.6f}, predicted {checks[-1][Q.PREDICTED_GAIN]:.6f}"
    )
    assert abs(gaps[-1]) <= 1e-6  # Charikar Thm 1 with equality (linear subspace, realizable, projection)
    assert abs(gaps[0]) > 1e-5  # before L-BFGS has converged the student is not the projection yet
    assert checks[-1][Q.SQ_GAIN] > 0.1  # a real gain, not 0 = 0
    # independent of the package: the least-squares solution from numpy on the same frozen features
    with torch.no_grad():
        phi = torch.cat([model.body(x.double()), torch.ones(len(x), 1, dtype=torch.float64)], 1).numpy()
    target = f_w.numpy().reshape(len(x), -1)
    coef, *_ = np.linalg.lstsq(phi, target, rcond=None)
    f_s = phi @ coef
    y = f_star.numpy().reshape(len(x), -1)
    err_w, err_s = ((target - y) ** 2).sum(1).mean(), ((f_s - y) ** 2).sum(1).mean()
    assert checks[-1][Q.SQ_GAIN] == pytest.approx(err_w - err_s, abs=1e-7)
    assert checks[-1][Q.PREDICTED_GAIN] == pytest.approx(((f_s - target) ** 2).sum(1).mean(), abs=1e-7)
    assert checks[-1][Q.TEACHER_SQ_ERROR] == pytest.approx(err_w, abs=1e-12)


def test_non_realizable_control_gain_differs_from_predicted(tmp_path):
    *_, checks, _ = fit_least_squares(tmp_path, realizable=False)
    gain, predicted = checks[-1][Q.SQ_GAIN], checks[-1][Q.PREDICTED_GAIN]
    print(f"\nnon-realizable gold: sq_gain {gain:.4f} vs predicted_gain {predicted:.4f}")
    assert abs(gain - predicted) > 1e-2


def test_logged_names_layout_and_stopping_on_a_regression_probe(tmp_path):
    plateau = W2SEarlyStopping("heldout_misfit_plateau", misfit="sq", patience=2, verbose=False)
    overfit = W2SEarlyStopping("teacher_overfit", misfit="sq", patience=2, kappa=None, verbose=False)
    *_, monitor, checks, logdir = fit_least_squares(tmp_path, epochs=6, callbacks=[plateau, overfit])
    expected = monitor.expected_names()
    assert expected == {
        Q.SQ,
        Q.train_name(Q.SQ),
        Q.PREDICTED_GAIN,
        Q.SQ_GAIN,
        Q.STUDENT_SQ_ERROR,
        Q.TEACHER_SQ_ERROR,
        Q.GAP_FRO,
        Q.GAP_OP,
        Q.CKA,
        Q.EFFECTIVE_RANK,
        Q.PRED_GAP_GOLD,
        Q.SKIPPED,
        Q.CHECK,
    }
    assert all(set(c) == expected for c in checks)  # every promised name logged at every check, nothing else
    # the stopping policies that apply to regression read sq: the plateau stops once L-BFGS has converged
    assert [len(h["values"]) for h in overfit.history] == [2] * len(overfit.history)
    assert plateau.stopping_reason.name == "HELDOUT_MISFIT_PLATEAU" and "`w2s/misfit/sq`" in plateau.stopping_reason_message
    # dashboard: the registry's charts for the names logged; no classification section
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tag = next(t for t in acc.Tags()["tensors"] if "custom_scalars" in t)
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors(tag)[-1].tensor_proto.string_val[0])
    charts = {(c.title, ch.title): list(ch.multiline.tag) for c in layout.category for ch in c.chart}
    assert {c.title for c in layout.category} == {Q.SECTIONS[s] for s in ("misfit", "gold", "representation")}
    gain_chart = (Q.SECTIONS["gold"], "Charikar's gain err_sq(teacher) − err_sq(student): measured vs predicted")
    assert charts[gain_chart] == [f"^{Q.SQ_GAIN}$"]  # one tag: the prediction is the reference run beside it
    predicted = EventAccumulator(os.path.join(logdir, "predicted_gain"), size_guidance={"scalars": 0})
    predicted.Reload()
    assert [e.value for e in predicted.Scalars(Q.SQ_GAIN)] == [e.value for e in acc.Scalars(Q.PREDICTED_GAIN)]
    assert set(acc.Tags()["scalars"]) >= expected - {Q.SKIPPED, Q.CHECK}


def test_default_stopper_and_classification_policies_fail_at_fit_start_naming_the_fix(tmp_path):
    for stopper, missing in ((W2SEarlyStopping(), Q.TEACHER_LABEL_CE), (W2SEarlyStopping("teacher_overfit"), Q.TEACHER_LABEL_CE)):
        with pytest.raises(RuntimeError) as info:
            fit_least_squares(tmp_path, epochs=1, callbacks=[stopper])
        msg = str(info.value)
        assert f"`{missing}`" in msg and "misfit='sq'" in msg and "teacher_values" in msg, msg


def test_student_output_shape_is_checked_at_fit_start(tmp_path):
    model = LeastSquaresHead(outputs=2)  # two outputs for a one-output teacher
    x, f_w, f_star = regression_task(LeastSquaresHead(outputs=1))
    monitor = W2SMonitor(W2SProbe(x, teacher_values=f_w, gold=f_star), figure_every_n_checks=0)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=1, callbacks=[monitor]))
    with pytest.raises(
        ValueError,
        match=r"student's output has shape \(\d+, 2\) on the probe but the regression teacher's "
        r"values are \(n,\); expected \(batch,\) or \(batch, 1\)",
    ):
        trainer.fit(model, DataLoader(TensorDataset(x, torch.zeros(len(x), 2)), batch_size=64))


def test_registry_task_dimension():
    """Each name says which probes log it; hints for classification-only names name the regression fix."""
    both = {q.name for q in Q.QUANTITIES.values() if "regression" in q.tasks}
    assert both == {Q.SQ, Q.train_name(Q.SQ), Q.PREDICTED_GAIN, Q.SQ_GAIN, Q.STUDENT_SQ_ERROR, Q.TEACHER_SQ_ERROR, Q.GAP_FRO, Q.GAP_OP, Q.CKA, Q.EFFECTIVE_RANK, Q.PRED_GAP_GOLD, Q.SKIPPED, Q.CHECK}
    assert Q.expected_names(set(), 2, task="regression") == {Q.SQ, Q.PREDICTED_GAIN, Q.EFFECTIVE_RANK, Q.SKIPPED, Q.CHECK}
    assert Q.KL_TEACHER_STUDENT in Q.expected_names(set(), 2)  # classification by default
    with pytest.raises(ValueError, match="`task` must be one of"):
        Q.expected_names(set(), 2, task="ranking")
    with pytest.raises(ValueError, match="`tasks` must be a non-empty subset"):
        Q.declare("w2s/extra/never", "x", "y", tasks=("ranking",))
    assert "misfit='sq'" in Q.hint(Q.DISAGREEMENT) and "misfit='sq'" not in Q.hint(Q.SQ)
    assert "| task |" in Q.markdown_table().splitlines()[0]


def test_kill_and_resume_a_regression_fit_gives_the_same_values(tmp_path):
    """The regression monitor and a misfit='sq' stopper survive checkpoint/resume: a fit killed at
    the start of epoch 2 and resumed from its last checkpoint logs what an uninterrupted fit logs."""
    from helpers import Crash, CrashAt
    from lightning.pytorch.callbacks import ModelCheckpoint

    class SGDHead(LeastSquaresHead):  # plain SGD: nothing but the weights to restore
        def configure_optimizers(self):
            return torch.optim.SGD(self.head.parameters(), lr=0.05)

    def run(name, crash_at=None, ckpt_path=None):
        model = SGDHead()
        x, f_w, f_star = regression_task(model)
        monitor = W2SMonitor(W2SProbe(x, teacher_values=f_w, gold=f_star), figure_every_n_checks=0)
        stopper = W2SEarlyStopping(misfit="sq", patience=50, verbose=False)
        record = PerCheck(monitor)
        callbacks = [monitor, stopper, record, ModelCheckpoint(dirpath=tmp_path / name, save_last=True)]
        callbacks += [CrashAt(crash_at)] if crash_at is not None else []
        trainer = L.Trainer(**trainer_kwargs(max_epochs=4, enable_checkpointing=True, callbacks=callbacks))
        trainer.fit(model, DataLoader(TensorDataset(x, f_w), batch_size=len(x)), ckpt_path=ckpt_path)
        return record.values, stopper.history

    full, history = run("full")
    with pytest.raises(Crash):
        run("killed", crash_at=2)
    resumed, history_resumed = run("resumed", ckpt_path=tmp_path / "killed" / "last.ckpt")
    assert len(resumed) == 2 and resumed == full[2:]  # epochs 2 and 3, bit for bit
    assert history_resumed == history and len({c[Q.SQ] for c in full}) == 4
