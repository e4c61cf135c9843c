"""Small models and synthetic W2S data shared by the end-to-end tests (fast on 2 CPU cores)."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def tiny_student_class(base: type) -> type:
    """The tiny student on ``base``, a ``LightningModule`` of either Lightning namespace (the
    ``lightning`` fixture of conftest.py builds it for ``pytorch_lightning``)."""

    class TinyStudent(base):
        """An MLP whose last nn.Linear reads an 8-d representation (the monitor's default layer)."""

        def __init__(self, d_in: int = 6, hidden: int = 8, k: int = 2, lr: float = 0.05):
            super().__init__()
            self.save_hyperparameters()
            self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh())
            self.head = nn.Linear(hidden, k)

        def forward(self, x):
            return self.head(self.body(x))

        def training_step(self, batch, _):
            x, t = batch
            loss = nn.functional.cross_entropy(self(x), t)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, t = batch
            self.log("val_loss", nn.functional.cross_entropy(self(x), t))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return TinyStudent


TinyStudent = tiny_student_class(L.LightningModule)
TinyStudent.__qualname__ = "TinyStudent"  # pickled by name (spawned processes find it here)


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
