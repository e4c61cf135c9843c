"""A tiny LightningModule + DataModule for the LightningCLI example (synthetic W2S data).

Write the probe first (``python examples/cli/make_probe.py runs/cli/probe.pt``), then
``python examples/cli/model.py fit --config examples/cli/config.yaml`` (``make cli-example``).
"""

import os
import sys

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Student(L.LightningModule):
    def __init__(self, d_in: int = 6, hidden: int = 16, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, _):
        x, t = batch
        return nn.functional.cross_entropy(self(x), t)

    def validation_step(self, batch, _):
        x, t = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), t))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class WeakLabels(L.LightningDataModule):
    """Gold = a linear rule; the teacher flips ``noise`` of the labels."""

    def __init__(self, n: int = 600, noise: float = 0.25, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.gold = (self.x[:, 0] > 0).long()
        self.teacher = torch.where(torch.rand(n, generator=g) < noise, 1 - self.gold, self.gold)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x[:400], self.teacher[:400]), batch_size=64)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[400:500], self.teacher[400:500]), batch_size=64)

    def probe(self):
        from lightning_w2s import W2SProbe

        return W2SProbe(self.x[500:], teacher_labels=self.teacher[500:], gold=self.gold[500:])


def missing_probe_files(config) -> list[str]:
    """The ``probe``/``train_probe`` paths of the configured callbacks that name no file.

    LightningCLI builds ``trainer.callbacks`` through a union type, and jsonargparse reports an error
    raised while building one as "Does not validate against any of the Union subtypes" with the
    whole configuration dumped after it; checking the paths first gives a one-line error instead.
    """
    missing = []
    for callback in config.get("trainer.callbacks") or []:
        init_args = callback.get("init_args") or {}
        for key in ("probe", "train_probe"):
            path = init_args.get(key)
            if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
                missing.append(f"{callback.get('class_path')}.{key}={str(path)!r}")
    return missing


if __name__ == "__main__":
    from lightning.pytorch.cli import LightningCLI

    class W2SCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            missing = missing_probe_files(config)
            if missing:
                sys.exit(f"error: probe file not found: {', '.join(missing)}. Write it first: `python examples/cli/make_probe.py <path>` (or `W2SProbe(...).save(path)` for your own data)")

    W2SCLI(Student, WeakLabels)
