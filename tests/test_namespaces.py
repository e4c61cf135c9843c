"""The namespace helper (``lightning_w2s.namespaces``): a ``pytorch_lightning`` object is not an
instance of the ``lightning.pytorch`` class of the same name, and every type check of the package
must see both. (The end-to-end behaviour under both namespaces: the tests taking the ``lightning``
fixture in test_monitor_e2e.py, test_loggers.py and test_console.py.)"""

from __future__ import annotations

import lightning.pytorch as lp
import pytest
import pytorch_lightning as pl

from lightning_w2s.dashboard.tensorboard import tensorboard_writer
from lightning_w2s.namespaces import counterpart, is_lightning_instance, lightning_classes, namespace_of


def test_a_pytorch_lightning_logger_is_recognised(tmp_path):
    logger = pl.loggers.TensorBoardLogger(tmp_path)
    assert not isinstance(logger, lp.loggers.TensorBoardLogger)  # the trap: a plain isinstance says no
    assert is_lightning_instance(logger, "loggers.TensorBoardLogger")
    assert not is_lightning_instance(pl.loggers.CSVLogger(tmp_path), "loggers.TensorBoardLogger")
    assert tensorboard_writer([pl.loggers.CSVLogger(tmp_path), logger]) is logger.experiment
    assert lightning_classes("loggers.TensorBoardLogger") == (lp.loggers.TensorBoardLogger, pl.loggers.TensorBoardLogger)


@pytest.mark.parametrize("ns", [lp, pl], ids=lambda m: m.__name__)
def test_namespace_of_objects_and_subclasses(ns):
    class Student(ns.LightningModule):  # a user's class: its namespace is its Lightning base's
        pass

    trainer = ns.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert namespace_of(trainer) == namespace_of(Student()) == namespace_of(trainer.strategy) == ns.__name__
    assert namespace_of(object()) is None and namespace_of(3) is None
    assert is_lightning_instance(trainer, "Trainer") and is_lightning_instance(Student(), "LightningModule")


@pytest.mark.parametrize("ns", [lp, pl], ids=lambda m: m.__name__)
def test_counterpart_compares_a_strategy_with_its_own_base(ns):
    """The check "does this strategy build the module's state dict itself?" against the base class of
    the strategy's own namespace: no for a single device, yes for FSDP, in both namespaces (against
    ``lightning.pytorch``'s base, a ``pytorch_lightning`` single device would look sharded)."""
    single, fsdp = ns.strategies.SingleDeviceStrategy(device="cpu"), ns.strategies.FSDPStrategy()
    base = counterpart(single, "strategies.Strategy")
    assert base is ns.strategies.Strategy
    assert type(single).lightning_module_state_dict is base.lightning_module_state_dict
    assert type(fsdp).lightning_module_state_dict is not counterpart(fsdp, "strategies.Strategy").lightning_module_state_dict
    if ns is pl:
        assert type(single).lightning_module_state_dict is not lp.strategies.Strategy.lightning_module_state_dict


def test_counterpart_of_an_unknown_class_names_it():
    with pytest.raises(TypeError, match=r"`pytorch_lightning` has no class `loggers.NoSuchLogger`"):
        counterpart(pl.loggers.CSVLogger("x"), "loggers.NoSuchLogger")
    assert counterpart(object(), "Trainer") is lp.Trainer  # neither namespace: lightning.pytorch's
