"""Offline weak-to-strong demo: a keyword-rule teacher, a MiniLM-embedding student, W2SMonitor.

The task (see ``benchmarks/shared/sources.py``): 10,568 human-rated movie-review sentences
(gold = mean rating > 0). The weak teacher is a 12 + 12 keyword rule that abstains on ~88% of
sentences. The strong student is an MLP head on frozen all-MiniLM-L6-v2 sentence embeddings, trained
only on the teacher's labels; a "ceiling" student with the same head is trained on gold labels, for
the performance-gap recovered PGR = (student - teacher) / (ceiling - teacher). The teacher's score
counts its abstentions as coin flips.

What the student does with the abstentions (``--abstain``):

* ``drop`` (default): it trains on the ~12% of sentences the rule labels (Lang et al.'s covered
  set) and must generalise to the rest: gold accuracy ~0.70 for a teacher at ~0.54, PGR ~0.7;
* ``coin``: every abstention gets a random label. The head first learns the real signal (gold
  accuracy ~0.64 after 1-2 epochs), then memorises the coin flips and decays towards ~0.57: a
  run where the best epoch beats the last, which the monitor's curves make visible.

Everything runs offline on CPU in a couple of minutes once the embeddings are cached:

    python examples/demo.py --data data --logdir runs/demo
    tensorboard --logdir runs/demo
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting make small LAPACK calls (the monitor's eigh) 10-100x slower
# whenever the 2 cores are shared with anything else; passive waiting costs nothing measurable here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.shared.sources` from the repo root

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from benchmarks.shared import sources as demo_data  # noqa: E402
from lightning_w2s import W2SMonitor, W2SProbe  # noqa: E402


class _OnlyW2S(logging.Filter):
    """Lightning's GPU/TPU/tip banners off; the monitor's and the stopper's console messages (which go
    through the same rank-zero logger) on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("W2S")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_OnlyW2S())
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # the ceiling has no val loop
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


# the monitor's values printed at the end (all of them go to TensorBoard)
HEADLINE = (
    "w2s/gold/accuracy",
    "w2s/gold/pgr",
    "w2s/misfit/disagreement",
    "w2s/gold/correction_rate",
    "w2s/gold/imitation_rate",
    "w2s/lang/covered_error",
    "w2s/lang/uncovered_error",
    "w2s/calibration/ece_vs_gold",
    "w2s/representation/effective_rank",
)


class Student(L.LightningModule):
    """An MLP head (384 -> 256 -> 2) on frozen sentence embeddings; cross-entropy on given labels."""

    def __init__(self, in_dim: int = 384, hidden: int = 256, num_classes: int = 2, dropout: float = 0.2, lr: float = 3e-4, weight_decay: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), on_step=False, on_epoch=True)
        self.log("val_agreement", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def loader(x: np.ndarray, y: np.ndarray, shuffle: bool, batch_size: int = 64) -> DataLoader:
    ds = TensorDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)).long())
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=0)


@torch.no_grad()
def gold_accuracy(model: nn.Module, x: np.ndarray, gold: np.ndarray) -> float:
    model.eval()
    pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == gold).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data", help="data folder (sentences + cached embeddings)")
    parser.add_argument("--logdir", default="runs/demo", help="TensorBoard log folder")
    parser.add_argument("--epochs", type=int, default=20, help="epochs for the weak-to-strong student")
    parser.add_argument("--ceiling-epochs", type=int, default=10, help="epochs for the gold-trained ceiling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all-metrics", action="store_true", help="print every w2s/ metric, not only the headline ones")
    parser.add_argument("--abstain", choices=("drop", "coin"), default="drop", help="train on covered sentences only (drop) or give abstentions a coin-flip label (coin)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(2)
    L.seed_everything(args.seed, workers=True, verbose=False)
    data_dir = Path(args.data)

    # ---------------------------------------------------------------- data
    if not (data_dir / demo_data.MOVIE_FILE).is_file():
        print(f"fetching the movie-review sentences from vaderSentiment's source archive into {data_dir}/ ...", flush=True)
        demo_data.fetch_vader(data_dir)
    cache = data_dir / "movie_minilm.npy"
    if not cache.is_file():
        print("embedding the sentences with all-MiniLM-L6-v2 (once, ~1-2 min on 2 cores; cached) ...", flush=True)
    t0 = time.perf_counter()
    task = demo_data.movie_keyword_task(data_dir, seed=args.seed, cache_path=cache)
    t_data = time.perf_counter() - t0
    info = task["info"]
    print(
        f"task: {info['n']} sentences, splits {info['sizes']}; keyword teacher covers {info['coverage']:.1%} "
        f"(abstains on {1 - info['coverage']:.1%}), accuracy {info['teacher_accuracy_covered']:.3f} where it speaks, "
        f"{info['teacher_accuracy_all']:.3f} with abstentions as coin flips  [data + embeddings {t_data:.1f}s]",
        flush=True,
    )
    train, val, probe_d, test = task["train"], task["val"], task["probe"], task["test"]
    teacher_score = task["teacher_test_accuracy"]
    quiet = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, log_every_n_steps=1)

    # ---------------------------------------------------------------- ceiling: same head, gold labels
    t0 = time.perf_counter()
    L.seed_everything(args.seed, workers=True, verbose=False)
    ceiling = Student()
    L.Trainer(max_epochs=args.ceiling_epochs, logger=False, enable_checkpointing=False, limit_val_batches=0, **quiet).fit(ceiling, loader(train["x"], train["gold"], shuffle=True))
    ceiling_score = gold_accuracy(ceiling, test["x"], test["gold"])
    print(f"ceiling (gold labels, {args.ceiling_epochs} epochs): test accuracy {ceiling_score:.3f}  [{time.perf_counter() - t0:.1f}s]", flush=True)

    # ---------------------------------------------------------------- weak-to-strong student + monitor
    if args.abstain == "drop":  # the rule's labels where it speaks; val loss on covered val points too
        train_x, train_y = train["x"][train["covered"]], train["y"][train["covered"]]
        val_x, val_y = val["x"][val["covered"]], val["y"][val["covered"]]
    else:  # coin flips where the rule abstains (already drawn with the seed in the task)
        train_x, train_y, val_x, val_y = train["x"], train["y"], val["x"], val["y"]
    print(f"student trains on {len(train_y)} teacher-labelled sentences (--abstain {args.abstain}), validates on {len(val_y)}", flush=True)
    probe = W2SProbe(
        torch.from_numpy(probe_d["x"]), teacher_labels=torch.from_numpy(probe_d["teacher_labels"]), gold=torch.from_numpy(probe_d["gold"]), covered=torch.from_numpy(probe_d["covered"]), num_classes=2
    )
    monitor = W2SMonitor(probe=probe, teacher_score=teacher_score, ceiling_score=ceiling_score)
    logger = TensorBoardLogger(args.logdir, name="w2s")
    t0 = time.perf_counter()
    L.seed_everything(args.seed, workers=True, verbose=False)
    student = Student()
    trainer = L.Trainer(max_epochs=args.epochs, logger=logger, callbacks=[monitor], **quiet)
    trainer.fit(student, loader(train_x, train_y, shuffle=True), loader(val_x, val_y, shuffle=False))
    t_student = time.perf_counter() - t0
    student_score = gold_accuracy(student, test["x"], test["gold"])
    pgr = (student_score - teacher_score) / (ceiling_score - teacher_score) if ceiling_score != teacher_score else float("nan")

    # ---------------------------------------------------------------- report
    w2s = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("w2s/")}
    if w2s:
        print(f"\nW2SMonitor on the probe ({probe}), last of {monitor.num_checks} checks:")
        shown = sorted(w2s) if args.all_metrics else [k for k in HEADLINE if k in w2s]
        for k in shown:
            if k.endswith(("_lower", "_upper")) or k == "w2s/skipped":
                continue
            band = f"  [{w2s[k + '_lower']:.3f}, {w2s[k + '_upper']:.3f}]" if k + "_lower" in w2s and k + "_upper" in w2s else ""
            note = "  <- PGR on the probe (its gold points vs teacher_score, ceiling_score)" if k == "w2s/gold/pgr" else ""
            print(f"  {k:<40s} {w2s[k]:8.4f}{band}{note}")
        hidden = len([k for k in w2s if k not in shown and not k.endswith(("_lower", "_upper")) and k != "w2s/skipped"])
        if hidden > 0:
            print(f"  ... and {hidden} more (--all-metrics, or TensorBoard)")
    print(f"\nlogs: {logger.log_dir}")
    print(f"view: tensorboard --logdir {args.logdir}")
    print(f"\nOn the held-out test split ({len(test['gold'])} sentences, never seen by the monitor):")
    print(f"{'model':<44s}{'gold accuracy (test)':>22s}")
    print(f"{'teacher (keyword rule, abstain = coin)':<44s}{teacher_score:>22.3f}")
    print(f"{'student (MLP on MiniLM, teacher labels)':<44s}{student_score:>22.3f}")
    print(f"{'ceiling (MLP on MiniLM, gold labels)':<44s}{ceiling_score:>22.3f}")
    print(f"{'PGR on test = (student-teacher)/(ceiling-teacher)':<50s}{pgr:>16.3f}")
    print(f"\nstudent training {t_student:.1f}s ({args.epochs} epochs); total wall time {time.perf_counter() - t_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
