"""W2SEarlyStopping under both Lightning namespaces: a ``lightning.pytorch`` and a ``pytorch_lightning``
Trainer get the same stop, the same restore of the best check's weights (no warning that the weights
are sharded under a single device), the stop text in TensorBoard, and ``trainer.early_stopping_callback``
showing the stopper, as Lightning's own ``EarlyStopping`` would be shown."""

from __future__ import annotations

import importlib
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import make_task, trainer_kwargs
from torch import nn

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SStoppingReason

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]


@pytest.fixture(autouse=True, scope="module")
def _keep_lightnings_rank_zero_logger():
    """Importing ``pytorch_lightning`` points the rank-zero logger that both namespaces share
    (``lightning_utilities.core.rank_zero.log``) at ``pytorch_lightning.utilities.rank_zero``: put
    ``lightning.pytorch``'s back afterwards, so later tests read their console lines where they expect."""
    import lightning_utilities.core.rank_zero as shared

    log = shared.log
    yield
    shared.log = log


def student(namespace: str, lr: float = 0.02) -> nn.Module:
    """The tests' small MLP classifier, as a LightningModule of ``namespace``."""
    base = importlib.import_module(namespace).LightningModule

    class Student(base):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            pass

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return Student()


def weights_recorder(namespace: str):
    """A callback of ``namespace`` keeping a copy of the weights at every validation end (check)."""
    base = importlib.import_module(namespace).Callback

    class Recorder(base):
        def __init__(self):
            self.weights = []

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.weights.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    return Recorder()


def fit(namespace: str, tmp_path):
    pl = importlib.import_module(namespace)
    task = make_task(noise=0.3)
    pl.seed_everything(0, verbose=False)
    model, rec = student(namespace), weights_recorder(namespace)
    es = W2SEarlyStopping(patience=2, gold=False)
    logger = pl.loggers.TensorBoardLogger(str(tmp_path), name=namespace, version=0)
    trainer = pl.Trainer(**trainer_kwargs(max_epochs=12, logger=logger, callbacks=[W2SMonitor(task.probe(), neighbours=0, figure_every_n_checks=0), es, rec]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, task.train_loader(32), task.val_loader())
    return trainer, model, es, rec, logger, [str(w.message) for w in caught]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_stop_restore_text_and_early_stopping_callback(namespace, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    trainer, model, es, rec, logger, caught = fit(namespace, tmp_path)
    # the stop, at the check the plateau rule names, and the best check's weights restored
    assert es.stopping_reason is W2SStoppingReason.HELDOUT_MISFIT_PLATEAU and es.stopped_check is not None
    xs = [h["values"]["w2s/misfit/teacher_label_ce"] for h in es.history]
    best = xs.index(min(xs))
    assert es.stopped_check == best + 2 and es.best_check == best and len(rec.weights) == len(xs)
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[best][k]) for k in state)
    assert not all(torch.equal(state[k], rec.weights[-1][k]) for k in state)
    assert not any("`restore_best` is off" in m for m in caught), caught
    # Lightning's own property finds it, with the namespace's own EarlyStopping class
    assert trainer.early_stopping_callback is es and trainer.early_stopping_callbacks == [es]
    assert isinstance(es, importlib.import_module(f"{namespace}.callbacks").EarlyStopping)
    assert type(es).__name__ == "W2SEarlyStopping" and es.state_key.startswith("W2SEarlyStopping{")
    # the stop text, read back from the event file
    acc = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("w2s/early_stopping/text_summary")
    text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    assert "HELDOUT_MISFIT_PLATEAU" in text and es.stopping_reason_message in text
    assert f"weights of check {best} will be restored" in text


def test_the_namespace_class_is_chosen_at_setup_and_pickles_as_the_stopper():
    import pytorch_lightning

    es = W2SEarlyStopping()
    key = es.state_key
    es.setup(pytorch_lightning.Trainer(**trainer_kwargs()), None, "predict")
    assert isinstance(es, pytorch_lightning.callbacks.EarlyStopping) and es.state_key == key
    again = pickle.loads(pickle.dumps(es))  # rebuilt as W2SEarlyStopping; the next setup chooses again
    assert type(again) is W2SEarlyStopping and again.state_key == key and again.decision.names == es.decision.names


def test_both_namespaces_decide_and_restore_identically(tmp_path):
    """The same fit under the two namespaces: the same history and the same final weights."""
    runs = [fit(ns, tmp_path / ns.replace(".", "_")) for ns in NAMESPACES]
    (_, m1, es1, *_), (_, m2, es2, *_) = runs
    assert es1.history == es2.history and es1.best_check == es2.best_check
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
