"""Errors that name the fix, end to end through a real ``Trainer`` where they concern
the monitor: each is raised at fit start, before the first training step, and says what to pass.

- a model whose output holds no logits the default forward can find (a dict without ``"logits"``,
  a dataclass without ``.logits``) -> ``TypeError`` naming ``forward_fn=``;
- a ``forward(self, batch)`` given dict probes -> ``TypeError`` naming ``forward_fn=``;
- probe dict keys the forward does not take (a tokenizer's ``token_type_ids``) -> ``TypeError``
  naming the keys and both fixes (drop them from the probe, or ``forward_fn=``);
- a probe file with numpy arrays or other non-tensor content -> ``ValueError`` saying how to save a
  probe (not torch's raw ``UnpicklingError``);
- teacher features that cannot define neighbourhoods (``W2SProbe.from_teacher`` on a keyword rule)
  -> a warning whose advice names only arguments that exist.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s import W2SMonitor, W2SProbe

VOCAB, T = 30, 6


class TokenStudent(L.LightningModule):
    """A bag-of-embeddings classifier over token ids; ``output`` picks what ``forward`` returns."""

    def __init__(self, output: str = "tensor"):
        super().__init__()
        self.output = output
        self.emb = nn.Embedding(VOCAB, 8)
        self.head = nn.Linear(8, 2)
        self.steps = 0

    def logits(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp_min(1))

    def forward(self, input_ids, attention_mask):
        out = self.logits(input_ids, attention_mask)
        if self.output == "dict":
            return {"scores": out}
        if self.output == "logits_dict":
            return {"logits": out, "hidden": None}
        if self.output == "dataclass":
            return Scores(scores=out)
        return out

    def training_step(self, batch, _):
        self.steps += 1
        ids, mask, y = batch
        return nn.functional.cross_entropy(self.logits(ids, mask), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@dataclass
class Scores:
    scores: torch.Tensor


class BatchStudent(TokenStudent):
    """``forward(self, batch)``: takes the whole dict as one argument."""

    def forward(self, batch):
        return self.logits(batch["input_ids"], batch["attention_mask"])


def _tokens(n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, T), generator=g)
    mask = (torch.rand(n, T, generator=g) > 0.2).long()
    mask[:, 0] = 1
    labels = torch.randint(0, 2, (n,), generator=g)
    return ids, mask, labels


def _fit(model, probe_inputs, labels, **monitor_kwargs):
    ids, mask, y = _tokens()
    probe = W2SProbe(probe_inputs, teacher_labels=labels)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[W2SMonitor(probe, neighbours=0, **monitor_kwargs)]
    )
    trainer.fit(model, DataLoader(TensorDataset(ids, mask, y), batch_size=8))
    return trainer


@pytest.mark.parametrize("output, found", [("dict", r"dict with keys 'scores'"), ("dataclass", r"a Scores dataclass with fields \['scores'\]")])
def test_output_without_logits_names_forward_fn_at_fit_start(output, found):
    ids, mask, y = _tokens()
    model = TokenStudent(output)
    with pytest.raises(TypeError, match=rf"cannot find the logits in the model's output: got {found}.*`forward_fn=`") as err:
        _fit(model, {"input_ids": ids, "attention_mask": mask}, y)
    assert model.steps == 0  # raised at fit start, before any training step
    if output == "dict":  # the example in the message is the one that works
        assert "module(**batch)['scores']" in str(err.value)
        trainer = _fit(TokenStudent(output), {"input_ids": ids, "attention_mask": mask}, y, forward_fn=lambda module, batch: module(**batch)["scores"])
        assert "w2s/misfit/disagreement" in trainer.callback_metrics


def test_a_dict_with_logits_and_hugging_face_style_outputs_work():
    ids, mask, y = _tokens()
    trainer = _fit(TokenStudent("logits_dict"), {"input_ids": ids, "attention_mask": mask}, y)
    assert "w2s/misfit/disagreement" in trainer.callback_metrics


def test_forward_taking_the_batch_names_forward_fn():
    ids, mask, y = _tokens()
    model = BatchStudent()
    with pytest.raises(TypeError, match=r"`BatchStudent.forward\(batch\)` takes none of them.*`forward_fn=`.*module\(batch\)"):
        _fit(model, {"input_ids": ids, "attention_mask": mask}, y)
    assert model.steps == 0
    trainer = _fit(BatchStudent(), {"input_ids": ids, "attention_mask": mask}, y, forward_fn=lambda module, batch: module(batch))
    assert "w2s/misfit/disagreement" in trainer.callback_metrics


def test_probe_keys_the_forward_does_not_take_are_named_with_both_fixes():
    ids, mask, y = _tokens()
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}  # a BERT tokenizer's
    model = TokenStudent()
    with pytest.raises(TypeError) as err:
        _fit(model, inputs, y)
    message = str(err.value)
    assert "['token_type_ids']" in message and "TokenStudent.forward(input_ids, attention_mask)" in message
    assert "Drop them from the probe" in message and "`forward_fn=" in message
    assert model.steps == 0
    # both fixes the message names work
    inputs_kept = {k: v for k, v in inputs.items() if k not in ["token_type_ids"]}
    assert "w2s/misfit/disagreement" in _fit(TokenStudent(), inputs_kept, y).callback_metrics
    example = re.search(r"forward_fn=(lambda module, batch: .*\))`", message).group(1)
    assert "w2s/misfit/disagreement" in _fit(TokenStudent(), inputs, y, forward_fn=eval(example)).callback_metrics


def test_a_forward_with_kwargs_takes_every_key():
    class KwargsStudent(TokenStudent):
        def forward(self, input_ids, attention_mask, **kwargs):
            return self.logits(input_ids, attention_mask)

    ids, mask, y = _tokens()
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    assert "w2s/misfit/disagreement" in _fit(KwargsStudent(), inputs, y).callback_metrics


@pytest.mark.parametrize("content", ["numpy", "npy", "dict", "text"])
def test_probe_file_with_non_tensor_content_says_how_to_save_one(tmp_path, content):
    path = tmp_path / "probe.pt"
    x, labels = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 0, 1, 1])
    if content == "numpy":
        torch.save({"inputs": x, "teacher_labels": labels}, path)
    elif content == "npy":
        np.save(path, x, allow_pickle=False)
        path = path.with_suffix(".pt.npy")
    elif content == "dict":
        torch.save({"inputs": torch.as_tensor(x), "teacher_labels": torch.as_tensor(labels)}, path)
    else:
        path.write_text("not a probe")
    with pytest.raises(
        ValueError,
        match=r"not a (probe file written by `W2SProbe.save`|saved W2SProbe).*W2SProbe\(inputs, "
        r"teacher_labels=labels, \.\.\.\)\.save\(path\)",
    ):
        W2SMonitor(probe=str(path))
    # the advice works: the same numpy content saved through W2SProbe loads back
    W2SProbe(x, teacher_labels=labels).save(tmp_path / "good.pt")
    assert W2SMonitor(probe=str(tmp_path / "good.pt")).probe.n == 5


def test_missing_probe_file_says_how_to_write_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"probe file .*missing.pt' does not exist: write one first with `W2SProbe"):
        W2SMonitor(probe=str(tmp_path / "missing.pt"))


def test_from_teacher_neighbourhood_advice_names_arguments_that_exist(tmp_path):
    """A keyword-rule teacher (most rows of its representation all zero) through ``from_teacher``:
    the monitor falls back to the student's neighbourhoods and its advice names only arguments of
    ``W2SProbe``, ``W2SProbe.from_teacher`` and ``W2SMonitor``."""

    class KeywordRule(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            hits = (x[:, :4] > 1.5).float()  # keyword counts: no hit at all on most inputs
            return self.head(hits)

    from helpers import loaders, sgd_tanh_student, w2s_data

    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe.from_teacher(KeywordRule(), x[600:], gold=y[600:])
    assert (probe.teacher_features.abs().sum(1) == 0).any()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[W2SMonitor(probe)])
    with pytest.warns(UserWarning, match="cannot define neighbourhoods") as record:
        trainer.fit(sgd_tanh_student(), *loaders(x, teacher, 400, 100))
    (message,) = [str(w.message) for w in record if "cannot define neighbourhoods" in str(w.message)]
    named = set(re.findall(r"(\w+)=", message))
    accepted = {p for f in (W2SProbe.__init__, W2SProbe.from_teacher, W2SMonitor.__init__) for p in inspect.signature(f).parameters}
    assert named and named <= accepted, named - accepted
    assert "metric=" not in message
