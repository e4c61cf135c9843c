"""The one module of test helpers: the tiny student, the synthetic weak-to-strong tasks, Trainer
settings, both Lightning namespaces, a crash for kill-and-resume tests and a CSV reader. Fixtures
that use them live in ``conftest.py``; tests import what they need from here.

The synthetic tasks: inputs ``x ~ N(0, I_d)``, gold ``y = 1[w·x > 0]``; the weak teacher gives the
gold label flipped at random with probability ``noise`` (errors independent of the input, so a
student can only fit them by memorising). Everything is seeded and no loader shuffles, so two runs
with the same arguments are identical.
"""

from __future__ import annotations

import csv
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s.probe import W2SProbe

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def tiny_student_class(base: type) -> type:
    """The tiny student on ``base``, a ``LightningModule`` of either Lightning namespace (the
    ``lightning`` fixture builds it for ``pytorch_lightning``)."""

    class TinyStudent(base):
        """An MLP classifier, ``head(body(x))``: the monitor's default layer is the input of ``head``
        (a ``hidden``-d representation). Cross-entropy on the teacher's labels; Adam or SGD."""

        def __init__(self, d_in: int = 8, hidden: int = 32, num_classes: int = 2, lr: float = 0.05, optimizer: str = "adam", activation: str = "relu"):
            super().__init__()
            self.save_hyperparameters()
            self.body = nn.Sequential(nn.Linear(d_in, hidden), ACTIVATIONS[activation]())
            self.head = nn.Linear(hidden, num_classes)
            self.train_steps = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.train_steps += 1
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y))

        def configure_optimizers(self):
            if self.hparams.optimizer == "sgd":
                return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    return TinyStudent


TinyStudent = tiny_student_class(L.LightningModule)
TinyStudent.__qualname__ = "TinyStudent"  # pickled by name (spawned processes find it here)


#: the tiny student with a tanh body trained by plain SGD, on :func:`w2s_data`'s 6-d inputs
SGD_TANH = dict(d_in=6, hidden=8, optimizer="sgd", activation="tanh")


def sgd_tanh_student(d_in: int = 6, hidden: int = 8, k: int = 2, lr: float = 0.05):
    """:data:`SGD_TANH`'s student (the golden-value, console and dashboard runs)."""
    return TinyStudent(**{**SGD_TANH, "d_in": d_in, "hidden": hidden}, num_classes=k, lr=lr)


@dataclass
class Task:
    x_train: torch.Tensor
    t_train: torch.Tensor  # teacher labels on the training inputs
    x_probe: torch.Tensor
    t_probe: torch.Tensor
    gold_probe: torch.Tensor

    def train_loader(self, batch_size: int = 64) -> DataLoader:
        return DataLoader(TensorDataset(self.x_train, self.t_train), batch_size=batch_size, shuffle=False)

    def val_loader(self, batch_size: int = 256) -> DataLoader:
        return DataLoader(TensorDataset(self.x_probe, self.t_probe), batch_size=batch_size, shuffle=False)

    def probe(self, input_features: bool = False) -> W2SProbe:
        """The held-out probe; ``input_features=True`` gives the inputs themselves as the teacher's
        (frozen) representation, so the monitor's neighbour table does not depend on the student."""
        return W2SProbe(self.x_probe, teacher_labels=self.t_probe, gold=self.gold_probe, num_classes=2, teacher_features=self.x_probe.clone() if input_features else None)

    def train_probe(self, m: int | None = None) -> W2SProbe:
        m = len(self.x_train) if m is None else m
        return W2SProbe(self.x_train[:m], teacher_labels=self.t_train[:m], num_classes=2)


def make_task(n_train: int = 128, n_probe: int = 101, d: int = 8, noise: float = 0.3, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    x_train, x_probe = torch.randn(n_train, d, generator=g), torch.randn(n_probe, d, generator=g)
    gold_train, gold_probe = (x_train @ w > 0).long(), (x_probe @ w > 0).long()
    flip_train = torch.rand(n_train, generator=g) < noise
    flip_probe = torch.rand(n_probe, generator=g) < noise
    return Task(x_train, torch.where(flip_train, 1 - gold_train, gold_train), x_probe, torch.where(flip_probe, 1 - gold_probe, gold_probe), gold_probe)


def trainer_kwargs(**overrides) -> dict:
    """Quiet, fast single-process CPU Trainer settings."""
    kw = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, max_epochs=5)
    kw.update(overrides)
    return kw


def w2s_data(n: int = 900, d: int = 6, noise: float = 0.25, seed: int = 0):
    """Gold y = sign of a linear score; the teacher flips a fraction ``noise`` of labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    flip = torch.rand(n, generator=g) < noise
    teacher = torch.where(flip, 1 - y, y)
    return x, y, teacher


def loaders(x, teacher, n_train: int, n_val: int, batch_size: int = 64):
    train = DataLoader(TensorDataset(x[:n_train], teacher[:n_train]), batch_size=batch_size)
    val = DataLoader(TensorDataset(x[n_train : n_train + n_val], teacher[n_train : n_train + n_val]), batch_size=batch_size)
    return train, val


@dataclass(frozen=True)
class Lightning:
    """One of Lightning's two namespaces (``lightning.pytorch``, ``pytorch_lightning``): the end-to-end
    tests that take the ``lightning`` fixture run under both. ``Trainer``, ``loggers``, ``callbacks``
    come from that namespace; :meth:`model` builds a test model on its ``LightningModule``."""

    name: str

    @property
    def Trainer(self):
        return importlib.import_module(self.name).Trainer

    @property
    def loggers(self):
        return importlib.import_module(f"{self.name}.loggers")

    @property
    def callbacks(self):
        return importlib.import_module(f"{self.name}.callbacks")

    def model(self, factory: Callable[[type], type], *args, **kwargs):
        """``factory(LightningModule)`` of this namespace (built once), instantiated."""
        return _model_class(factory, self.name)(*args, **kwargs)


@cache
def _model_class(factory: Callable[[type], type], namespace: str) -> type:
    return factory(importlib.import_module(namespace).LightningModule)


def route_rank_zero_messages(monkeypatch, namespace: str) -> None:
    """Lightning's rank-zero messages (``rank_zero_info``/``_debug``, ours and Lightning's) go through
    one logger shared by both namespaces (``lightning_utilities.core.rank_zero.log``), set to the
    ``<namespace>.utilities.rank_zero`` logger of the namespace imported last: a test module that
    imports ``pytorch_lightning`` would move every later test's messages. Each test gets the
    logger a process using ``namespace`` alone has."""
    from lightning_utilities.core import rank_zero

    monkeypatch.setattr(rank_zero, "log", logging.getLogger(f"{namespace}.utilities.rank_zero"))


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    """Kills the fit at the start of ``epoch`` (a kill-and-resume test's crash)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Crash(f"killed at the start of epoch {self.epoch}")


def read_csv_metrics(logger) -> dict[int, dict[str, float]]:
    """``{epoch: {name: value}}`` of every ``w2s/*`` value the CSVLogger wrote."""
    out: dict[int, dict[str, float]] = {}
    with open(f"{logger.log_dir}/metrics.csv") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k.startswith("w2s/") and v != "":
                    out.setdefault(int(row["epoch"]), {})[k] = float(v)
    return out
