"""The monitor never changes how the student trains.

Every probe pass (each check, the fit-start shape check, the fit-start neighbour pass) runs in
``eval()`` + ``no_grad`` and gives every submodule back its own ``training`` flag: a backbone the
user froze with ``.eval()`` keeps its dropout off and its BatchNorm statistics still, and a Hugging
Face model (``from_pretrained`` returns it in eval mode) trains exactly as it would without the
monitor. Each test fits twice, with and without the monitor, and compares.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers import trainer_kwargs
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.probe.features import eval_mode


def _modes(module: nn.Module) -> tuple[bool, ...]:
    return tuple(m.training for m in module.modules())


class FrozenBackbone(L.LightningModule):
    """A BatchNorm + Dropout backbone frozen with ``.eval()`` (and no gradients) under a trained head."""

    def __init__(self, freeze: bool = True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.ReLU())
        self.head = nn.Linear(8, 2)
        if freeze:
            self.backbone.eval().requires_grad_(False)
        self.modes: list[tuple[bool, ...]] = []

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, _):
        self.modes.append(_modes(self))
        x, t = batch
        return nn.functional.cross_entropy(self(x), t)

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def _fit(model, callbacks):
    """Two epochs without a validation loop: the monitor checks at each training epoch end (or at
    its step cadence)."""
    x, y = _data()
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, callbacks=callbacks))
    trainer.fit(model, DataLoader(TensorDataset(x[:128], y[:128]), batch_size=16))
    return trainer


@pytest.mark.parametrize("cadence", [None, 1])
def test_frozen_eval_backbone_trains_the_same_with_and_without_the_monitor(cadence):
    x, y = _data()
    # no teacher features: the neighbour table comes from a fit-start pass through the student
    probe = W2SProbe(x[128:], teacher_labels=y[128:], gold=y[128:])
    L.seed_everything(0, verbose=False)
    bare = FrozenBackbone()
    _fit(bare, [])
    L.seed_everything(0, verbose=False)
    watched = FrozenBackbone()
    monitor = W2SMonitor(probe, every_n_train_steps=cadence, figure_every_n_checks=0)
    _fit(watched, [monitor])
    assert monitor.num_checks >= 2 and "w2s/robustness/inconsistency" in monitor.last_values
    assert len(watched.modes) == len(bare.modes) == 16
    assert watched.modes == bare.modes  # the same mode of every submodule at every training step
    assert not any(m[2] or m[3] or m[4] for m in watched.modes)  # backbone, BatchNorm, Dropout stay in eval
    bn_bare, bn_watched = bare.backbone[1], watched.backbone[1]
    assert int(bn_watched.num_batches_tracked) == int(bn_bare.num_batches_tracked) == 0
    assert torch.equal(bn_watched.running_mean, bn_bare.running_mean)
    assert torch.equal(bn_watched.running_var, bn_bare.running_var)
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), watched.state_dict().values()))


def test_one_point_probe_and_batchnorm_in_train_mode_do_not_count_a_batch():
    """The fit-start shape check runs in eval + no_grad: a 1-point probe works with BatchNorm (in
    train mode it would raise "Expected more than 1 value per channel"), and BatchNorm counts no
    batch for it."""
    x, y = _data()
    L.seed_everything(0, verbose=False)
    bare = FrozenBackbone(freeze=False)
    _fit(bare, [])
    L.seed_everything(0, verbose=False)
    watched = FrozenBackbone(freeze=False)
    monitor = W2SMonitor(W2SProbe(x[:1], teacher_labels=y[:1], num_classes=2), figure_every_n_checks=0)
    _fit(watched, [monitor])
    assert monitor.num_checks == 2
    bn_bare, bn_watched = bare.backbone[1], watched.backbone[1]
    assert int(bn_watched.num_batches_tracked) == int(bn_bare.num_batches_tracked) == 16
    assert torch.equal(bn_watched.running_mean, bn_bare.running_mean)
    assert watched.modes == bare.modes


class HFStudent(L.LightningModule):
    """A tiny randomly initialised ``BertForSequenceClassification`` (no download), put in eval mode
    as ``from_pretrained`` leaves it."""

    def __init__(self):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification

        cfg = BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=12,
            num_labels=2,
            hidden_dropout_prob=0.3,
            attention_probs_dropout_prob=0.3,
        )
        self.model = BertForSequenceClassification(cfg)
        self.model.eval()
        self.modes: list[tuple[bool, ...]] = []
        self.losses: list[float] = []

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch, _):
        self.modes.append(_modes(self))
        ids, mask, y = batch
        loss = nn.functional.cross_entropy(self(ids, mask), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_hugging_face_model_in_eval_mode_trains_the_same_with_and_without_the_monitor():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (96, 10), generator=g)
    mask = torch.ones(96, 10, dtype=torch.long)
    mask[::3, 7:] = 0
    y = (ids[:, 0] > 20).long()
    train = DataLoader(TensorDataset(ids[:64], mask[:64], y[:64]), batch_size=16)
    probe = W2SProbe({"input_ids": ids[64:], "attention_mask": mask[64:]}, teacher_labels=y[64:], gold=y[64:])
    runs = []
    for callbacks in ([], [W2SMonitor(probe, every_n_train_steps=2, figure_every_n_checks=0)]):
        L.seed_everything(0, verbose=False)
        model = HFStudent()
        L.Trainer(**trainer_kwargs(max_epochs=2, callbacks=callbacks)).fit(model, train)
        runs.append(model)
    bare, watched = runs
    assert watched.modes == bare.modes and not any(any(m[1:]) for m in watched.modes)  # the model's dropout stays off
    assert watched.losses == bare.losses
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(), watched.state_dict().values()))


def test_eval_mode_restores_each_submodule_and_turns_off_gradients():
    """``eval_mode`` puts a module in eval + no_grad for the block and gives every submodule its own
    flag back (``module.train(was_training)`` would put every submodule in train mode)."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.BatchNorm1d(2))
    net[1].eval()
    before = _modes(net)
    with eval_mode(net):
        assert not any(_modes(net)) and not torch.is_grad_enabled()
    assert _modes(net) == before == (True, True, False, True)
    with pytest.raises(RuntimeError, match="inside"), eval_mode(net):
        raise RuntimeError("inside")
    assert _modes(net) == before
