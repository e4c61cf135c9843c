"""The full monitor on a rich probe (gold, abstentions, teacher features, train probe, scores):
values recomputed independently, and the TensorBoard dashboard read back from the event file."""

import json

import lightning as L
import numpy as np
import pytest
import torch
from helpers import loaders, sgd_tanh_student, w2s_data
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.metrics import quantities as Q


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    L.seed_everything(0)
    x, y, teacher = w2s_data(n=1400)
    n = 800
    g = torch.Generator().manual_seed(1)
    covered = torch.rand(n, generator=g) > 0.3
    labels = teacher[600:].clone()
    labels[~covered] = -1
    teacher_features = x[600:, :3] + 0.3 * torch.randn(n, 3, generator=g)
    probe = W2SProbe(x[600:], teacher_labels=labels, gold=y[600:], teacher_features=teacher_features)
    train_probe = W2SProbe(x[:200], teacher_labels=teacher[:200])
    kwargs = dict(train_probe=train_probe, teacher_score=0.75, ceiling_score=0.95, min_gain=0.9)
    monitor = W2SMonitor(probe, **kwargs)
    logger = TensorBoardLogger(tmp, name="tb")
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=logger, callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    model = sgd_tanh_student()
    trainer.fit(model, *loaders(x, teacher, 400, 200))
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return dict(monitor=monitor, probe=probe, kwargs=kwargs, model=model, acc=acc, logdir=logger.log_dir)


def _student_probs(model, probe):
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(probe.inputs).double(), 1)


def test_gold_side_values_match_a_numpy_recomputation(run):
    probe, acc = run["probe"], run["acc"]
    p = _student_probs(run["model"], probe).numpy()
    s = p.argmax(1)
    t = probe.teacher_probs.numpy().argmax(1)
    gold = probe.gold.numpy()
    cov = probe.covered.numpy()
    last = lambda name: acc.Scalars(name)[-1].value  # noqa: E731
    bad = cov & (t != gold)
    assert last("w2s/gold/accuracy") == pytest.approx((s == gold).mean(), abs=1e-6)
    assert last("w2s/gold/correction_rate") == pytest.approx((s[bad] == gold[bad]).mean(), abs=1e-6)
    assert last("w2s/gold/imitation_rate") == pytest.approx((s[bad] == t[bad]).mean(), abs=1e-6)
    assert last("w2s/gold/coverage_accuracy") == pytest.approx((s[~cov] == gold[~cov]).mean(), abs=1e-6)
    assert last("w2s/gold/pgr") == pytest.approx(((s == gold).mean() - 0.75) / (0.95 - 0.75), abs=1e-5)
    # the exact 0/1 band on covered gold points contains the student's covered accuracy
    assert last("w2s/bounds/covered_accuracy_lower") <= last("w2s/gold/covered_accuracy") <= last("w2s/bounds/covered_accuracy_upper")
    assert last("w2s/bounds/accuracy_lower") <= last("w2s/gold/accuracy") <= last("w2s/bounds/accuracy_upper")
    # top-label ECE vs gold, 15 equal-width bins, by hand
    conf, correct = p.max(1), (s == gold)
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean() for b in range(15) if (bins == b).any())
    assert last("w2s/calibration/ece_vs_gold") == pytest.approx(ece, abs=1e-5)


def test_every_family_is_logged(run):
    tags = set(run["acc"].Tags()["scalars"])
    for name in [
        "w2s/misfit/kl_teacher_student",
        "w2s/misfit/kappa",
        "w2s/misfit/disagreement_lower",
        "w2s/train_misfit/sq",
        "w2s/calibration/ece_vs_teacher",
        "w2s/calibration/ece_vs_gold",
        "w2s/calibration/teacher_ece_vs_gold",
        "w2s/representation/gap_fro",
        "w2s/representation/gap_op",
        "w2s/representation/cka",
        "w2s/representation/effective_rank",
        "w2s/representation/pred_gap_gold",
        "w2s/robustness/inconsistency",
        "w2s/lang/alpha_0",
        "w2s/lang/covered_error_0",
        "w2s/bounds/predicted_gain",
        "w2s/gold/sq_gain",
        "w2s/prediction/max_class_share",
        "w2s/skipped",
    ]:
        assert name in tags, name


def _layout(acc):
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    return layout


def _run(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_dashboard_layout_image_and_warning_text(run):
    acc = run["acc"]
    layout = _layout(acc)
    titles = [c.title for c in layout.category]
    assert titles[0] == Q.SECTIONS["headline"]  # the first question first
    assert {Q.SECTIONS[s] for s in ("misfit", "gold", "calibration", "representation", "robustness", "lang")} <= set(titles)
    for category in layout.category:  # one tag per chart: its lines are runs, which TensorBoard colours apart
        for chart in category.chart:
            assert len(chart.multiline.tag) == 1 if chart.HasField("multiline") else len(chart.margin.series) == 1
    headline = {ch.title: ch for ch in layout.category[0].chart}
    band = next(ch for title, ch in headline.items() if title.startswith("accuracy on covered gold points"))
    assert (band.margin.series[0].value, band.margin.series[0].lower) == (Q.COVERED_ACCURACY, Q.COVERED_ACCURACY_LOWER)
    images = acc.Tags()["images"]
    assert "w2s/reliability/student_vs_gold" in images and "w2s/reliability/student_vs_teacher" in images
    img = acc.Images("w2s/reliability/student_vs_gold")[-1]
    assert img.width > 100 and img.height > 100
    tensors = acc.Tags()["tensors"]
    (text,) = [acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in tensors if t.startswith("w2s/warnings")]
    assert "**gain_exhausted**" in text and "`bounds/max_gain` =" in text  # min_gain=0.9 is above any largest gain
    assert "values read" in text and "misfit/kl_student_teacher" not in text  # only what the rule read
    (constants,) = [acc.Tensors(t) for t in tensors if t.startswith("w2s/constants")]
    assert len(constants) == 1  # written once: the constants did not change
    text = constants[0].tensor_proto.string_val[0].decode()
    for name in (Q.TEACHER_MAX_CLASS_SHARE, Q.TEACHER_ECE_VS_GOLD, Q.TEACHER_SQ_ERROR, Q.TEACHER_ACCURACY, "w2s/lang/alpha_0"):
        assert f"`{name[len('w2s/') :]}` | {_fmt(acc.Scalars(name)[-1].value)}" in text, name
    assert "`teacher_score`**: 0.75" in text and "run `teacher`" in text


def _fmt(x):
    return f"{x:.4g}"


def test_reference_runs_hold_the_teacher_train_probe_and_classes_at_the_students_steps(run):
    """The teacher's accuracy on the same covered gold points, the train probe's misfit and each
    class's values are reference runs (sub-folders of the student's run), at the student's steps;
    ``lightning_w2s.testing`` still reads the student's run."""
    from lightning_w2s.testing import last_w2s_values

    logdir, acc = run["logdir"], run["acc"]
    runs = sorted(p.name for p in __import__("pathlib").Path(logdir).iterdir() if p.is_dir())
    assert runs == ["ceiling", "class_0", "class_1", "predicted_gain", "teacher", "train_probe"]
    steps = [e.step for e in acc.Scalars(Q.COVERED_ACCURACY)]
    assert len(steps) == 3
    teacher = _run(f"{logdir}/teacher")
    assert [(e.step, e.value) for e in teacher.Scalars(Q.COVERED_ACCURACY)] == [(e.step, e.value) for e in acc.Scalars(Q.TEACHER_ACCURACY)]
    assert [(e.step, e.value) for e in teacher.Scalars(Q.COVERED_ACCURACY_LOWER)] == [(e.step, e.value) for e in acc.Scalars(Q.COVERED_ACCURACY_LOWER)]
    assert [e.value for e in teacher.Scalars(Q.PGR)] == [0.0] * 3
    train = _run(f"{logdir}/train_probe")
    assert [(e.step, e.value) for e in train.Scalars(Q.KL_TEACHER_STUDENT)] == [(e.step, e.value) for e in acc.Scalars(Q.train_name(Q.KL_TEACHER_STUDENT))]
    assert [(e.step, e.value) for e in _run(f"{logdir}/class_1").Scalars(Q.COVERED_ERROR)] == [(e.step, e.value) for e in acc.Scalars("w2s/lang/covered_error_1")]
    assert [(e.step, e.value) for e in _run(f"{logdir}/predicted_gain").Scalars(Q.SQ_GAIN)] == [(e.step, e.value) for e in acc.Scalars(Q.PREDICTED_GAIN)]
    assert last_w2s_values(logdir)[Q.COVERED_ACCURACY] == acc.Scalars(Q.COVERED_ACCURACY)[-1].value
    # the rules still get the constants (logged to callback_metrics as before)
    assert Q.TEACHER_MAX_CLASS_SHARE in run["monitor"].last_values


def test_state_dict_round_trips_through_a_safe_checkpoint(run, tmp_path):
    """The monitor's state holds only safe types (``torch.load(weights_only=True)``) and restores
    every history; a monitor with another probe warns and starts afresh instead of mixing them."""
    monitor = run["monitor"]
    torch.save(monitor.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    fresh = W2SMonitor(run["probe"], **run["kwargs"])
    fresh.load_state_dict(state)
    assert fresh.num_checks == monitor.num_checks == 3
    assert fresh.alerts.active == monitor.alerts.active and fresh.alerts.state_dict() == monitor.alerts.state_dict()
    assert fresh.warnings_log == monitor.warnings_log and fresh.last_values == monitor.last_values
    assert len(fresh.metrics.history) == len(monitor.metrics.history) == 3
    assert torch.equal(fresh.metrics.neighbours, monitor.metrics.neighbours)
    json.dumps(fresh.last_values)
    other = W2SMonitor(run["probe"], **dict(run["kwargs"], teacher_score=0.7))
    with pytest.warns(UserWarning, match="another probe or configuration"):
        other.load_state_dict(state)
    assert other.num_checks == 0 and other.metrics.history == [] and other.warnings_log == []


@pytest.mark.parametrize("cadence", ["train_epoch_end", "every_3_steps", "accumulate_2"])
def test_reference_runs_follow_the_logger_steps_at_every_cadence(tmp_path, cadence):
    """The loggers write a check at a step that depends on the hook (Lightning writes epoch-end values
    one step back at a training epoch's end; a step check at ``global_step``): the teacher's line
    lands at the student's steps whichever it is."""
    L.seed_everything(0)
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:])
    step_kw = {"every_3_steps": dict(every_n_train_steps=3), "accumulate_2": dict(every_n_train_steps=1)}.get(cadence, {})
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=logger,
        callbacks=[W2SMonitor(probe, neighbours=0, **step_kw)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accumulate_grad_batches=2 if cadence == "accumulate_2" else 1,
    )
    train, _ = loaders(x, teacher, 400, 100)
    trainer.fit(sgd_tanh_student(), train)  # no validation loop
    student, ref = _run(logger.log_dir), _run(f"{logger.log_dir}/teacher")
    want = [(e.step, e.value) for e in student.Scalars(Q.TEACHER_ACCURACY)]
    assert len(want) >= 2 and [(e.step, e.value) for e in ref.Scalars(Q.COVERED_ACCURACY)] == want
