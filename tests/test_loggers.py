"""Every logger hears the words: the monitor's warnings and constants and the stopper's reason reach
TensorBoard's Text tab, MLflow's artifact, W&B's, Comet's and Neptune's text APIs, and a markdown
report ``w2s_report.md`` in the folder of any other logger (CSVLogger). Through real Trainers under
both Lightning namespaces, with the files read back; W&B, Comet and Neptune (not installed here)
through recording fakes whose calls are bound to the signatures their Lightning code uses."""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import lightning as L
import pytest
from helpers import SGD_TANH, Lightning, loaders, tiny_student_class, w2s_data
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe
from lightning_w2s.dashboard.loggers import REPORT_FILE, TextSink, routes_for

STOP_TAG, WARN_TAG, CONST_TAG = "w2s/early_stopping", "w2s/warnings", "w2s/constants"


def _fit(lightning, loggers, **monitor_kwargs):
    """lr 0: the held-out misfit never improves, so the plateau rule stops at the third check (epoch 2);
    ``min_gain=0.9`` is above any gain left: a ``gain_exhausted`` warning."""
    L.seed_everything(0, verbose=False)
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:])
    monitor = W2SMonitor(probe, neighbours=0, figure_every_n_checks=0, min_gain=0.9, alert_window=2, teacher_score=0.7, ceiling_score=0.9, **monitor_kwargs)
    stopper = W2SEarlyStopping(patience=2, restore_best=False)
    trainer = lightning.Trainer(
        max_epochs=6, accelerator="cpu", logger=loggers, callbacks=[monitor, stopper], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0
    )
    trainer.fit(lightning.model(tiny_student_class, **SGD_TANH, lr=0.0), *loaders(x, teacher, 400, 100))
    assert stopper.stopped_epoch == 2, "the test needs the stop"
    return trainer, monitor, stopper


def _texts(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag.rsplit("/text_summary", 1)[0]: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"] if tag.endswith("/text_summary")}


def _sections(report: str) -> dict[str, str]:
    """``{tag: its section's text}`` of a report."""
    parts = report.split("\n## ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def test_tensorboard_and_csv_get_the_same_words(tmp_path, lightning):
    tb = lightning.loggers.TensorBoardLogger(tmp_path, name="tb")
    csv = lightning.loggers.CSVLogger(tmp_path, name="csv")
    trainer, monitor, stopper = _fit(lightning, [tb, csv])
    texts = _texts(tb.log_dir)
    assert set(texts) == {CONST_TAG, WARN_TAG, STOP_TAG}
    ((stop_step, stop_text),) = texts[STOP_TAG]
    assert stopper.stopping_reason_message in stop_text and stop_step == trainer.global_step
    assert any("**gain_exhausted**" in text for _, text in texts[WARN_TAG])
    assert len(texts[CONST_TAG]) == 1 and "`teacher_score`**: 0.7" in texts[CONST_TAG][0][1]  # written once: unchanged

    report = Path(csv.log_dir, REPORT_FILE).read_text()
    sections = _sections(report)
    assert list(sections) == [CONST_TAG, WARN_TAG, STOP_TAG]  # in order of first use
    assert stopper.stopping_reason_message in sections[STOP_TAG] and f"_step {trainer.global_step}_" in sections[STOP_TAG]
    for _, text in texts[WARN_TAG] + texts[CONST_TAG]:  # every TensorBoard text is in the report, as written
        assert text in report
    assert monitor.warnings_log and all(w["message"] in report for w in monitor.warnings_log)
    assert not os.path.exists(Path(tb.log_dir, REPORT_FILE))  # TensorBoard takes text: no file there


def test_mlflow_gets_the_report_as_an_artifact(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")  # the dev extra installs mlflow-skinny
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind a switch
    mlflow = MLFlowLogger(experiment_name="w2s", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    csv = CSVLogger(tmp_path, name="csv")
    _, _, stopper = _fit(Lightning("lightning.pytorch"), [mlflow, csv])
    run = mlflow.experiment.get_run(mlflow.run_id)
    artifact = Path(run.info.artifact_uri.removeprefix("file://").removeprefix("file:"), REPORT_FILE)
    report = artifact.read_text()
    assert report == Path(csv.log_dir, REPORT_FILE).read_text()  # one report, every document logger
    assert stopper.stopping_reason_message in _sections(report)[STOP_TAG]
    assert "w2s/misfit/teacher_label_ce" in run.data.metrics  # the numbers went there too


# ------------------------------------------------------------------------------------ recording fakes
class _Recorder:
    """Records every call as ``(method, args, kwargs)``; ``run[key]`` gives a recorder of its own."""

    def __init__(self, calls, prefix=""):
        self.calls, self.prefix = calls, prefix

    def __getattr__(self, method):
        if method.startswith("__"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.calls.append((self.prefix + method, args, kwargs))

    def __getitem__(self, key):
        return _Recorder(self.calls, prefix=f"[{key}].")


def _fake(lightning_class):
    """A logger of ``lightning_class`` (skipping its constructor, which needs the service's package),
    whose ``experiment`` and own text method record their calls."""
    calls = []

    class Fake(lightning_class):
        def __init__(self):
            pass

        @property
        def experiment(self):
            return _Recorder(calls)

        @property
        def run_id(self):
            return "run-1"

        def log_text(self, *args, **kwargs):
            calls.append(("logger.log_text", args, kwargs))

    return Fake(), calls


def _comet_log_text(text, step=None, metadata=None):
    """``comet_ml.Experiment.log_text``'s signature (the method CometLogger's docs call)."""


def _mlflow_log_text(run_id, text, artifact_file):
    """``mlflow.MlflowClient.log_text``'s signature."""


def _neptune_append(value, step=None, timestamp=None, wait=False, **kwargs):
    """``neptune`` ``StringSeries.append``'s signature."""


def test_wandb_comet_neptune_mlflow_text_apis_are_called_as_their_loggers_define_them(tmp_path):
    from lightning.pytorch.loggers import CometLogger, MLFlowLogger, WandbLogger

    wandb, wandb_calls = _fake(WandbLogger)
    comet, comet_calls = _fake(CometLogger)
    mlflow, mlflow_calls = _fake(MLFlowLogger)

    class NeptuneLogger(L.pytorch.loggers.Logger):  # Neptune's own package ships the working one
        name, version = "neptune", 0
        log_metrics = log_hyperparams = lambda *a, **k: None
        calls = []
        experiment = _Recorder(calls)

    neptune = NeptuneLogger()
    sink = TextSink.for_loggers([wandb, comet, mlflow, neptune])
    assert [type(r).__name__ for r in sink.routes] == ["WandbText", "CometText", "MLflowText", "NeptuneText"]
    sink.write(WARN_TAG, "first", step=3)
    sink.write(WARN_TAG, "second", step=7)
    sink.write(CONST_TAG, "constants", step=7, replace=True)

    # W&B: the tag's entries as a table, through WandbLogger.log_text as Lightning defines it
    assert len(wandb_calls) == 3
    for name, args, kwargs in wandb_calls:
        bound = inspect.signature(WandbLogger.log_text).bind(wandb, *args, **kwargs)
        assert name == "logger.log_text" and bound.arguments["columns"] == ["step", "markdown"]
    assert wandb_calls[1][2]["data"] == [[3, "first"], [7, "second"]] and wandb_calls[1][2]["step"] == 7
    # Comet: Experiment.log_text(text, step=, metadata=)
    assert [(n, a, k) for n, a, k in comet_calls] == [
        ("log_text", ("first",), {"step": 3, "metadata": {"tag": WARN_TAG}}),
        ("log_text", ("second",), {"step": 7, "metadata": {"tag": WARN_TAG}}),
        ("log_text", ("constants",), {"step": 7, "metadata": {"tag": CONST_TAG}}),
    ]
    for _, args, kwargs in comet_calls:
        inspect.signature(_comet_log_text).bind(*args, **kwargs)
    # MLflow: the whole report, rewritten, as one artifact of the run
    assert [c[0] for c in mlflow_calls] == ["log_text"] * 3
    for _, args, kwargs in mlflow_calls:
        bound = inspect.signature(_mlflow_log_text).bind(*args, **kwargs)
        assert bound.arguments["run_id"] == "run-1" and bound.arguments["artifact_file"] == REPORT_FILE
    assert mlflow_calls[-1][1][1] == sink.report() and "second" in sink.report()
    # Neptune: a string series per tag
    assert [(n, a) for n, a, _ in NeptuneLogger.calls] == [(f"[{WARN_TAG}].append", ("first",)), (f"[{WARN_TAG}].append", ("second",)), (f"[{CONST_TAG}].append", ("constants",))]
    for _, args, kwargs in NeptuneLogger.calls:
        inspect.signature(_neptune_append).bind(*args, **kwargs)


def test_replaced_text_is_written_only_when_it_changes_and_the_report_keeps_the_latest(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path)
    sink = TextSink.for_loggers([logger])
    assert sink.write(CONST_TAG, "a", step=1, replace=True) and not sink.write(CONST_TAG, "a", step=2, replace=True)
    assert sink.write(CONST_TAG, "b", step=3, replace=True)
    sink.write(WARN_TAG, "w1", step=1)
    sink.write(WARN_TAG, "w2", step=3)
    sections = _sections(Path(logger.log_dir, REPORT_FILE).read_text())
    assert sections[CONST_TAG].split() == ["_step", "3_", "b"]  # the latest constants only
    assert sections[WARN_TAG].split() == ["_step", "1_", "w1", "_step", "3_", "w2"]  # every warning


def test_a_failing_logger_warns_once_and_the_others_still_get_the_words(tmp_path):
    from lightning.pytorch.loggers import CometLogger, CSVLogger

    class Broken(CometLogger):
        def __init__(self):
            pass

        @property
        def experiment(self):
            raise ConnectionError("service unreachable")

    csv = CSVLogger(tmp_path)
    sink = TextSink.for_loggers([Broken(), csv])
    with pytest.warns(RuntimeWarning, match=r"CometText failed \(ConnectionError: service unreachable\)") as record:
        sink.write(WARN_TAG, "w1", step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the second failure is quiet
        sink.write(WARN_TAG, "w2", step=2)
    assert len(record) == 1 and "w2" in Path(csv.log_dir, REPORT_FILE).read_text()


def test_routes_by_logger_kind(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, Logger

    class NoFolder(Logger):  # neither a text API nor a folder: nothing to write to
        name, version, save_dir = "x", 0, None
        log_metrics = log_hyperparams = lambda *a, **k: None

    assert routes_for(NoFolder()) is None
    assert type(routes_for(CSVLogger(tmp_path))).__name__ == "ReportFile"
    with pytest.raises(TypeError, match="`tag` must be a non-empty str"):
        TextSink().write("", "x")
    with pytest.raises(TypeError, match="`text` must be a markdown str"):
        TextSink().write(WARN_TAG, None)


def test_text_is_written_on_rank_zero_only(tmp_path):
    """A non-zero rank's sink has no routes (Lightning's loggers hold dummy experiments there)."""

    class Rank1:
        is_global_zero = False
        loggers = [L.pytorch.loggers.CSVLogger(tmp_path)]

    assert TextSink.of(Rank1()).routes == []
