"""Record each (task, seed) of the stopping benchmark once; every stopping rule is replayed offline.

A **recording** holds, per check (check 0 = before training, check ``e + 1`` = after epoch ``e``),
the student's logits on

* the **held-out probe** (``task.probe``: teacher outputs, abstention mask, gold kept only for the
  gold noise-floor rows and never read by a label-free rule),
* the **train probe** (the first :data:`TRAIN_PROBE` *covered* training points with their teacher
  labels: the points the student is fitted to),
* the **teacher-labelled validation set** (covered ``task.val`` points: what users' ``val_loss`` is
  computed on),

the student's argmax on the **gold test set** (only for scoring a rule's choice), the logits of an
**exponential moving average of the weights** on the probe and the train probe (Jiang et al.'s
disagreement signal; decay ``1 - 1/steps_per_epoch``), and Lightning's own logged
``val_loss``/``val_auroc`` (to check the offline recomputation). Fixed per run: the teacher's
outputs on each set, and two k-nearest-neighbour tables of the probe computed once at fit start as a
live monitor would (cosine, :data:`KNN_K` neighbours; in the teacher's features when they define
one, and in the student's representation at fit start — the input of its last ``nn.Linear``).

Everything is evaluated in ``eval()`` mode under ``no_grad`` from a Lightning callback, which uses no
random numbers, so the training trajectory is the one a user without the recorder gets.

Recordings are ``.npz`` files under ``data/stopbench_runs/`` (shared across worktrees like the rest
of ``data/``), keyed by :data:`RECORD_VERSION` and the task's construction; ``--fresh`` re-records.

    python -m benchmarks.stopping.record --tasks movie_vader --seeds 0 1   # record (skips cached)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

RECORD_VERSION = "stopbench-1"
EPOCHS = {"mlp": 40, "cnn": 40, "minilm_ft": 8}
TRAIN_PROBE = {"mlp": 1024, "cnn": 1024, "minilm_ft": 200}
KNN_K = 20  # neighbours stored per probe point (rules may use fewer: the first k columns)
RUNS_DIR = "stopbench_runs"

__all__ = ["Recording", "RECORD_VERSION", "load_recordings", "record", "recording_path"]


def recording_path(data_dir: str | os.PathLike, task: str, seed: int) -> Path:
    return Path(data_dir) / RUNS_DIR / f"{task}_seed{seed}.npz"


# ============================================================================ the stored object
@dataclass
class Recording:
    """One recorded run; arrays as stored (see the module docstring). ``C = epochs + 1`` checks."""

    task: str
    seed: int
    source: str
    teacher_kind: str
    student: str
    num_classes: int
    epochs: int
    fit_seconds: float
    record_seconds: float
    # fixed per run
    probe_teacher: np.ndarray  # (n_p, k) teacher probabilities (one-hot for hard labels); rows of uncovered points unused
    probe_covered: np.ndarray  # (n_p,) bool
    probe_gold: np.ndarray  # (n_p,) gold - ONLY for the gold noise-floor rows
    train_teacher: np.ndarray  # (n_t,) teacher labels of the train probe (all covered)
    val_teacher: np.ndarray  # (n_v,) teacher labels of the covered validation points
    test_gold: np.ndarray  # (n_test,)
    knn_teacher: np.ndarray | None  # (n_p, KNN_K) probe neighbours in the teacher's features, or None
    knn_student: np.ndarray  # (n_p, KNN_K) probe neighbours in the student's representation at fit start
    # per check
    probe_logits: np.ndarray  # (C, n_p, k) float32
    train_logits: np.ndarray  # (C, n_t, k) float32
    val_logits: np.ndarray  # (C, n_v, k) float32
    test_pred: np.ndarray  # (C, n_test) int
    ema_probe_logits: np.ndarray  # (C, n_p, k) float16 (check 0: the initial weights)
    ema_train_logits: np.ndarray  # (C, n_t, k) float16
    steps: np.ndarray  # (C,) optimizer steps at each check
    logged_val_loss: np.ndarray  # (epochs,) Lightning's logged val_loss after each epoch
    logged_val_auroc: np.ndarray  # (epochs,)

    # ------------------------------------------------------------------ derived (offline scoring)
    @cached_property
    def test_acc(self) -> np.ndarray:
        """(C,) gold test accuracy of the weights at each check (check 0 = untrained)."""
        return (self.test_pred == self.test_gold[None, :]).mean(1)

    @property
    def epoch_acc(self) -> np.ndarray:
        """(epochs,) gold test accuracy after each epoch (index ``e`` = check ``e + 1``)."""
        return self.test_acc[1:]

    @property
    def oracle_acc(self) -> float:
        return float(self.epoch_acc.max())

    def regret(self, check: int) -> float:
        """Accuracy points lost by keeping the weights of ``check`` (>= 1) instead of the oracle's epoch."""
        if check < 1:
            raise ValueError(f"a rule must keep the weights of a trained check (>= 1), got {check}")
        return 100.0 * (self.oracle_acc - float(self.test_acc[check]))

    @cached_property
    def teacher_test_acc(self) -> float:
        return float(self.meta.get("teacher_test_acc", float("nan")))

    meta: dict[str, Any] | None = None

    # ------------------------------------------------------------------ io
    def save(self, path: Path) -> None:
        from dataclasses import fields

        values = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in values.items() if not isinstance(v, np.ndarray) and v is not None and k != "knn_teacher"}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.npz")
        np.savez_compressed(tmp, __scalars__=np.array(json.dumps(scalars)), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Recording:
        with np.load(path, allow_pickle=False) as z:
            scalars = json.loads(str(z["__scalars__"]))
            arrays = {k: z[k] for k in z.files if k != "__scalars__"}
        arrays.setdefault("knn_teacher", None)
        return cls(**scalars, **arrays)


# ============================================================================ recording
def train_probe_rows(task, size: int) -> np.ndarray:
    """Rows of ``task.train`` forming the train probe: the first ``size`` covered ones (the split is
    already shuffled by the seed)."""
    return np.flatnonzero(task.train.covered)[:size]


def _knn(features: np.ndarray, k: int) -> np.ndarray | None:
    """(n, k) cosine nearest *other* points (sklearn, brute force), or None when the features
    cannot define cosine neighbourhoods (no columns, an all-zero row, or fewer than k + 1 points)."""
    from sklearn.neighbors import NearestNeighbors

    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] == 0 or len(f) <= k or bool((np.abs(f).sum(1) == 0).any()):
        return None
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(f)
    idx = nn.kneighbors(f, return_distance=False)
    out = np.empty((len(f), k), dtype=np.int64)
    for i, row in enumerate(idx):  # drop the point itself (it need not come first on ties)
        row = row[row != i][:k]
        out[i] = row
    return out.astype(np.int32)


def _teacher_matrix(split, rows: np.ndarray, k: int) -> np.ndarray:
    if split.teacher_probs is not None:
        return split.teacher_probs[rows].astype(np.float32)
    labels = split.teacher_labels[rows]
    out = np.zeros((len(rows), k), dtype=np.float32)
    ok = labels >= 0
    out[np.flatnonzero(ok), labels[ok]] = 1.0
    return out


def _recorder_class():
    import copy

    import torch
    from lightning.pytorch.callbacks import Callback
    from torch import nn

    class StopbenchRecorder(Callback):
        """Evaluates the student (and an EMA of its weights) on fixed sets at fit start and after every
        training epoch (after validation: Lightning runs the epoch's validation before
        ``on_train_epoch_end``)."""

        def __init__(self, sets: dict[str, torch.Tensor], test_x: torch.Tensor, batch: int, ema_decay: float) -> None:
            self.sets, self.test_x, self.batch, self.decay = sets, test_x, batch, ema_decay
            self.logits: dict[str, list[np.ndarray]] = {k: [] for k in sets}
            self.ema_logits: dict[str, list[np.ndarray]] = {"probe": [], "train": []}
            self.test_pred: list[np.ndarray] = []
            self.steps: list[int] = []
            self.val_loss: list[float] = []
            self.val_auroc: list[float] = []
            self.init_features: np.ndarray | None = None
            self.ema: nn.Module | None = None
            self.seconds = 0.0

        @torch.no_grad()
        def _run(self, module, x: torch.Tensor) -> np.ndarray:
            out = [module(x[i : i + self.batch]).float().cpu().numpy() for i in range(0, len(x), self.batch)]
            return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

        def _check(self, trainer, pl_module) -> None:
            t0 = time.perf_counter()
            was = pl_module.training
            pl_module.eval()
            try:
                for name, x in self.sets.items():
                    self.logits[name].append(self._run(pl_module, x))
                self.test_pred.append(self._run(pl_module, self.test_x).argmax(1).astype(np.int16))
                self.ema.eval()
                for name in self.ema_logits:
                    self.ema_logits[name].append(self._run(self.ema, self.sets[name]).astype(np.float16))
            finally:
                pl_module.train(was)
            self.steps.append(int(trainer.global_step))
            self.seconds += time.perf_counter() - t0

        def on_fit_start(self, trainer, pl_module) -> None:
            self.ema = copy.deepcopy(pl_module.net).eval()  # the network only (the LightningModule holds the trainer)
            for p in self.ema.parameters():
                p.requires_grad_(False)
            last = [m for m in pl_module.modules() if isinstance(m, nn.Linear)][-1]
            feats: list[torch.Tensor] = []
            handle = last.register_forward_pre_hook(lambda m, inp: feats.append(inp[0].detach().float().cpu()))
            was = pl_module.training
            pl_module.eval()
            try:
                self._run(pl_module, self.sets["probe"])
            finally:
                handle.remove()
                pl_module.train(was)
            self.init_features = torch.cat(feats).numpy()
            self._check(trainer, pl_module)

        @torch.no_grad()
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            for e, p in zip(self.ema.parameters(), pl_module.net.parameters()):
                e.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            m = trainer.callback_metrics
            self.val_loss.append(float(m.get("val_loss", float("nan"))))
            self.val_auroc.append(float(m.get("val_auroc", float("nan"))))
            self._check(trainer, pl_module)

    return StopbenchRecorder


def record(task_name: str, seed: int, data_dir: str, epochs: int | None = None) -> Recording:
    """Train (task, seed) once with the recorder attached; return the :class:`Recording`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from benchmarks.shared.students import DEFAULT_BATCH, EVAL_BATCH, quiet_lightning, train_student
    from benchmarks.shared.tasks import TASK_SOURCES, load_task

    quiet_lightning()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    task = load_task(task_name, seed, data_dir)
    k = task.num_classes
    epochs = EPOCHS[task.student] if epochs is None else epochs
    rows = train_probe_rows(task, TRAIN_PROBE[task.student])
    val_cov = np.flatnonzero(task.val.covered)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    sets = {"probe": t(task.probe.x), "train": t(task.train.x[rows]), "val": t(task.val.x[val_cov])}
    n_train = int(task.train.covered.sum())
    steps_per_epoch = max(1, -(-n_train // DEFAULT_BATCH[task.student]))
    rec = _recorder_class()(sets, t(task.test.x), EVAL_BATCH[task.student], ema_decay=1.0 - 1.0 / steps_per_epoch)
    res = train_student(task, seed, epochs, callbacks=[rec], record=False)
    knn_teacher = _knn(task.probe.teacher_features, KNN_K)
    knn_student = _knn(rec.init_features, KNN_K)
    if knn_student is None:
        raise RuntimeError(f"{task_name} seed {seed}: the student's initial representation has an all-zero row")
    stack = lambda xs: np.stack(xs).astype(np.float32)  # noqa: E731
    return Recording(
        task=task_name,
        seed=seed,
        source=TASK_SOURCES.get(task_name, task_name),
        teacher_kind=task.teacher_kind,
        student=task.student,
        num_classes=k,
        epochs=epochs,
        fit_seconds=float(res.fit_seconds),
        record_seconds=rec.seconds,
        probe_teacher=_teacher_matrix(task.probe, np.arange(len(task.probe)), k),
        probe_covered=task.probe.covered.copy(),
        probe_gold=task.probe.gold.copy(),
        train_teacher=task.train.teacher_labels[rows].copy(),
        val_teacher=task.val.teacher_labels[val_cov].copy(),
        test_gold=task.test.gold.copy(),
        knn_teacher=knn_teacher,
        knn_student=knn_student,
        probe_logits=stack(rec.logits["probe"]),
        train_logits=stack(rec.logits["train"]),
        val_logits=stack(rec.logits["val"]),
        test_pred=np.stack(rec.test_pred),
        ema_probe_logits=np.stack(rec.ema_logits["probe"]),
        ema_train_logits=np.stack(rec.ema_logits["train"]),
        steps=np.asarray(rec.steps, dtype=np.int64),
        logged_val_loss=np.asarray(rec.val_loss),
        logged_val_auroc=np.asarray(rec.val_auroc),
        meta={
            "version": RECORD_VERSION,
            "description": task.description,
            "teacher_test_acc": task.teacher_test_accuracy,
            "n_train": n_train,
            "ema_decay": 1.0 - 1.0 / steps_per_epoch,
            "torch": torch.__version__,
        },
    )


def _record_job(args: tuple[str, int, str, str]) -> tuple[str, int, float]:
    task, seed, data_dir, out = args
    t0 = time.perf_counter()
    rec = record(task, seed, data_dir)
    rec.save(Path(out))
    return task, seed, time.perf_counter() - t0


def load_recordings(tasks: Sequence[str], seeds: Sequence[int], data_dir: str, *, fresh: bool = False, jobs: int = 1, log=print) -> list[Recording]:
    """Every (task, seed) recording, recording the missing ones (``jobs`` processes; one by default:
    the machine is shared). A cached file from another :data:`RECORD_VERSION` is recorded again."""
    todo = []
    for t in tasks:
        for s in seeds:
            path = recording_path(data_dir, t, s)
            if path.is_file() and not fresh:
                try:
                    with np.load(path, allow_pickle=False) as z:
                        if json.loads(str(z["__scalars__"]))["meta"].get("version") == RECORD_VERSION:
                            continue
                except (OSError, ValueError, KeyError):
                    pass
            todo.append((t, s, data_dir, str(path)))
    if todo:
        cost = {"movie_vader_ft": 0, "fashion_scratch": 1}  # longest first
        todo.sort(key=lambda a: (cost.get(a[0], 9), a[1]))
        log(f"recording {len(todo)} runs ({jobs} process(es)); the others are cached under {Path(data_dir) / RUNS_DIR}")
        t0 = time.perf_counter()
        if jobs > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
                for task, seed, sec in pool.map(_record_job, todo):
                    log(f"  recorded {task} seed {seed} in {sec:.0f} s [{time.perf_counter() - t0:.0f} s elapsed]")
        else:
            for a in todo:
                task, seed, sec = _record_job(a)
                log(f"  recorded {task} seed {seed} in {sec:.0f} s [{time.perf_counter() - t0:.0f} s elapsed]")
    return [Recording.load(recording_path(data_dir, t, s)) for t in tasks for s in seeds]


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.shared.tasks import DEFAULT_DATA, TASKS

    ap = argparse.ArgumentParser(prog="python -m benchmarks.stopping.record", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(8)))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args(argv)
    recs = load_recordings(args.tasks, args.seeds, args.data, fresh=args.fresh, jobs=args.jobs)
    for r in recs:
        print(
            f"{r.task:<24} seed {r.seed}: fit {r.fit_seconds:6.1f} s (recording passes {r.record_seconds:5.1f} s), "
            f"teacher {r.teacher_test_acc:.3f}, final {r.epoch_acc[-1]:.3f}, oracle {r.oracle_acc:.3f} at epoch "
            f"{int(np.argmax(r.epoch_acc))}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def verify_against_monitor(task_name: str = "digits_lr", seed: int = 0, data_dir: str = "data", epochs: int = 40, cached: Recording | None = None) -> tuple[str, str]:
    """Train ``task_name`` once with the recorder, a real :class:`lightning_w2s.W2SMonitor` (held-out
    probe with teacher outputs and features, the same train probe) **and** ``W2SEarlyStopping()`` with
    its defaults, for up to ``epochs`` epochs. Returns two one-line verdicts:

    1. the monitor's logged values vs the offline signals computed from this run's recording
       (max absolute difference per quantity): ``w2s/misfit/kl_teacher_student`` (``probe_ce``),
       ``w2s/misfit/teacher_label_ce`` (``probe_hce``), ``w2s/misfit/disagreement`` (``probe_err``),
       ``w2s/train_misfit/kl_teacher_student`` (``train_ce``), ``w2s/robustness/inconsistency`` (``gamma``);
    2. the live stopper's stop check and restored check vs the offline CHOSEN rule
       (``probe_hce``, patience 5, keep best) and vs :func:`benchmarks.stopping.rules.package_default_outcome`
       replayed on this run's recording (and on ``cached``, the benchmark's recording of the same
       (task, seed), when given: the same trajectory if the monitor changes nothing in training), and
       the largest difference between the student's probe logits after ``fit`` and the recorded
       logits of the restored check (0: the weights of that check came back)."""
    import torch

    from benchmarks.shared.students import DEFAULT_BATCH, EVAL_BATCH, quiet_lightning, train_student
    from benchmarks.shared.tasks import load_task
    from benchmarks.stopping.rules import package_default_outcome, patience_stop
    from benchmarks.stopping.signals import signal

    try:
        from lightning.pytorch.callbacks import Callback

        from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe
    except Exception as exc:  # pragma: no cover - the package is being refactored
        return f"skipped ({type(exc).__name__}: {exc})", "skipped"
    quiet_lightning()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    task = load_task(task_name, seed, data_dir)
    rows = train_probe_rows(task, TRAIN_PROBE[task.student])
    val_cov = np.flatnonzero(task.val.covered)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    probe = task.make_probe()
    train_probe = W2SProbe(t(task.train.x[rows]), teacher_labels=torch.from_numpy(task.train.teacher_labels[rows].copy()), num_classes=task.num_classes)
    monitor = W2SMonitor(probe=probe, train_probe=train_probe)
    stopper = W2SEarlyStopping(gold=False)  # the label-free default (the probe has gold; docs/gold.md)
    names = {
        "w2s/misfit/kl_teacher_student": "probe_ce",
        "w2s/misfit/teacher_label_ce": "probe_hce",
        "w2s/misfit/disagreement": "probe_err",
        "w2s/train_misfit/kl_teacher_student": "train_ce",
        "w2s/robustness/inconsistency": "gamma",
    }
    logged: dict[str, list[float]] = {k: [] for k in names}

    class Grab(Callback):
        def on_validation_end(self, trainer, pl_module):
            for k in names:
                logged[k].append(float(trainer.callback_metrics.get(k, float("nan"))))

    sets = {"probe": t(task.probe.x), "train": t(task.train.x[rows]), "val": t(task.val.x[val_cov])}
    spe = max(1, -(-int(task.train.covered.sum()) // DEFAULT_BATCH[task.student]))
    rec = _recorder_class()(sets, t(task.test.x), EVAL_BATCH[task.student], ema_decay=1.0 - 1.0 / spe)
    res = train_student(task, seed, epochs, callbacks=[monitor, Grab(), stopper, rec], record=False)
    ran = len(rec.steps) - 1
    fake = Recording(
        task=task_name,
        seed=seed,
        source="",
        teacher_kind="",
        student=task.student,
        num_classes=task.num_classes,
        epochs=ran,
        fit_seconds=0.0,
        record_seconds=0.0,
        probe_teacher=_teacher_matrix(task.probe, np.arange(len(task.probe)), task.num_classes),
        probe_covered=task.probe.covered.copy(),
        probe_gold=task.probe.gold.copy(),
        train_teacher=task.train.teacher_labels[rows].copy(),
        val_teacher=task.val.teacher_labels[val_cov].copy(),
        test_gold=task.test.gold.copy(),
        knn_teacher=_knn(task.probe.teacher_features, KNN_K),
        knn_student=_knn(rec.init_features, KNN_K),
        probe_logits=np.stack(rec.logits["probe"]),
        train_logits=np.stack(rec.logits["train"]),
        val_logits=np.stack(rec.logits["val"]),
        test_pred=np.stack(rec.test_pred),
        ema_probe_logits=np.stack(rec.ema_logits["probe"]),
        ema_train_logits=np.stack(rec.ema_logits["train"]),
        steps=np.asarray(rec.steps),
        logged_val_loss=np.asarray(rec.val_loss),
        logged_val_auroc=np.asarray(rec.val_auroc),
        meta={},
    )
    parts = []
    for k, sig in names.items():
        ours = signal(fake, sig)[1:]
        diff = float(np.nanmax(np.abs(ours - np.asarray(logged[k])))) if len(logged[k]) == len(ours) else float("nan")
        parts.append(f"{sig} vs {k.split('/', 1)[1]}: {diff:.1e}")
    signals_line = f"{task_name} seed {seed}, {ran} epochs, max |offline - W2SMonitor| per check: " + "; ".join(parts)

    # recording check c = after epoch c - 1 = the live stopper's check c - 1
    live_stop = None if stopper.stopped_check is None else stopper.stopped_check + 1
    live_kept = None if stopper.best_check is None else stopper.best_check + 1
    chosen = patience_stop(signal(fake, "probe_hce"), 5, 1, "best")
    package = package_default_outcome(fake)
    module = res.module.eval()
    with torch.no_grad():
        after = module(sets["probe"]).numpy()
    weights = float(np.abs(after - fake.probe_logits[live_kept]).max()) if live_kept is not None else float("nan")
    same = (live_stop, live_kept) == (chosen.stop, chosen.kept) == (package.stop, package.kept)
    line = (
        f"{task_name} seed {seed}, W2SMonitor + W2SEarlyStopping() in a real Trainer: "
        f"{'no stop in %d epochs' % ran if live_stop is None else 'stopped at check %d (epoch %d)' % (live_stop, stopper.stopped_epoch)}"
        f", restored check {live_kept}; CHOSEN replayed on this run's recording: stop "
        f"{chosen.stop}, kept {chosen.kept}; W2SEarlyStopping() replayed: stop {package.stop}, kept {package.kept} -> "
        f"{'identical' if same else 'DIFFERENT'}; max |probe logits after fit - recorded logits of the restored check| "
        f"{weights:.1e}"
    )
    if cached is not None:
        o = patience_stop(signal(cached, "probe_hce"), 5, 1, "best")
        line += (
            f"; on the benchmark's cached recording of this (task, seed), CHOSEN: stop {o.stop}, kept {o.kept} "
            f"({'the same run' if (o.stop, o.kept) == (live_stop, live_kept) else 'another trajectory'})"
        )
    return signals_line, line
