"""Same numbers before and after a refactor: every value the monitor logs, check by check.

Trains two tiny deterministic students through a real ``Trainer`` with only the public API
(``W2SProbe``, ``W2SMonitor``, ``W2SEarlyStopping``), so the very same script runs on any commit:

- ``rich``: 3 classes, partial gold, teacher abstentions, teacher features, a train probe,
  neighbours, PGR scores and ``min_gain``, checked at every validation epoch end, with a stopper
  running three policies (every family on);
- ``label_free``: no gold, no teacher features (the neighbour table comes from the student at fit
  start), a user-given ``teacher_score`` (the approximate accuracy band), checked every 3 optimizer
  steps without a validation loop.

``tests/golden_values.json`` was written by this script on the original code (base commit c187fbd, before the package was laid out by ownership)::

    git worktree add /tmp/base c187fbd
    PYTHONPATH=/tmp/base python tests/golden_values.py write tests/golden_values.json

and ``python tests/golden_values.py compare tests/golden_values.json`` (or ``tests/test_golden_values.py``)
reruns it on the current code and prints every difference (values equal to 1e-9).
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import sgd_tanh_student  # noqa: E402

TOL = 1e-9


def _data(seed: int = 0, n: int = 520, d: int = 6, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, k, generator=g)
    gold = (x @ w).argmax(1)
    flip = torch.rand(n, generator=g) < 0.3
    teacher = torch.where(flip, torch.randint(0, k, (n,), generator=g), gold)
    return x, gold, teacher, g


class Recorder(L.Callback):
    """The monitor's values at each of its checks (read right after the check, whatever the hook)."""

    def __init__(self, monitor: W2SMonitor):
        self.monitor, self.seen, self.checks = monitor, (0, 0), []

    def _read(self, trainer):
        now = (self.monitor.num_checks, self.monitor.num_skipped)
        if now != self.seen and not trainer.sanity_checking:
            self.seen = now
            self.checks.append({"step": trainer.global_step, "epoch": trainer.current_epoch, "values": dict(self.monitor.last_values)})

    def on_train_batch_end(self, trainer, *args):
        self._read(trainer)

    def on_validation_end(self, trainer, pl_module):
        self._read(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._read(trainer)


def _fit(monitor, stopper, train, val, epochs):
    L.seed_everything(0, verbose=False)
    rec = Recorder(monitor)
    callbacks = [monitor, rec] + ([stopper] if stopper is not None else [])
    # float64 weights and inputs: float32 training differed by ~1e-8 between two x86 CPUs (their kernels
    # round differently), which no tolerance below the values' own meaning can absorb; in float64 the
    # two agree far below TOL
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        precision="64-true",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        limit_val_batches=1.0 if val is not None else 0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(sgd_tanh_student(d_in=6, hidden=16, k=3, lr=0.3), train, val)
    out = {"checks": rec.checks, "expected_names": sorted(monitor.expected_names()), "warnings": [{k: w[k] for k in ("check", "step", "regime")} for w in monitor.warnings_log]}
    if stopper is not None:
        out["stopper"] = {
            "history": [{k: h[k] for k in ("check", "epoch", "step", "values", "votes", "stop")} for h in stopper.history],
            "stopped_epoch": stopper.stopped_epoch,
            "reason": stopper.stopping_reason.name,
        }
    return out


def run_all() -> dict:
    torch.set_num_threads(1)
    x, gold, teacher, g = _data()
    loader = lambda a, b, **kw: DataLoader(TensorDataset(a, b), batch_size=32, **kw)  # noqa: E731

    # rich: every family on
    p = slice(300, 450)
    labels = teacher[p].clone()
    covered = torch.rand(150, generator=g) > 0.25
    labels[~covered] = -1
    probe_gold = gold[p].clone()
    probe_gold[torch.rand(150, generator=g) < 0.2] = -1
    feats = x[p, :3] + 0.3 * torch.randn(150, 3, generator=g)
    probe = W2SProbe(x[p], teacher_labels=labels, gold=probe_gold, teacher_features=feats, num_classes=3)
    train_probe = W2SProbe(x[:80], teacher_labels=teacher[:80], num_classes=3)
    monitor = W2SMonitor(probe, train_probe=train_probe, teacher_score=0.6, ceiling_score=0.9, min_gain=0.05, neighbours=5, figure_every_n_checks=0)
    stopper = W2SEarlyStopping(["heldout_misfit_plateau", "teacher_overfit"], patience=3, kappa=None, verbose=False)
    rich = _fit(monitor, stopper, loader(x[:240], teacher[:240]), loader(x[450:], teacher[450:]), epochs=6)

    # label-free: step cadence, no validation loop, student-side neighbourhoods, teacher_score band
    probe = W2SProbe(x[300:400], teacher_labels=teacher[300:400], num_classes=3)
    monitor = W2SMonitor(probe, teacher_score=0.6, every_n_train_steps=3, neighbours=4, figure_every_n_checks=0)
    label_free = _fit(monitor, None, loader(x[:240], teacher[:240]), None, epochs=2)
    return {"rich": rich, "label_free": label_free}


def compare(golden: dict, current: dict, tol: float = TOL) -> list[str]:
    """Every difference between two ``run_all`` results, as lines (empty: the same run). Names new
    in ``current`` are listed under ``new names`` (not a difference in any golden value)."""
    diffs: list[str] = []
    for run in golden:
        a, b = golden[run], current[run]
        if len(a["checks"]) != len(b["checks"]):
            diffs.append(f"{run}: {len(a['checks'])} checks in the golden run, {len(b['checks'])} now")
        for i, (ca, cb) in enumerate(zip(a["checks"], b["checks"])):
            if (ca["step"], ca["epoch"]) != (cb["step"], cb["epoch"]):
                diffs.append(f"{run} check {i}: at step/epoch {ca['step']}/{ca['epoch']}, now {cb['step']}/{cb['epoch']}")
            missing = sorted(set(ca["values"]) - set(cb["values"]))
            if missing:
                diffs.append(f"{run} check {i}: no longer logged: {missing}")
            for name, v in ca["values"].items():
                w = cb["values"].get(name)
                if w is not None and not (abs(v - w) <= tol * max(1.0, abs(v)) or (math.isnan(v) and math.isnan(w))):
                    diffs.append(f"{run} check {i}: {name} = {v!r} golden, {w!r} now")
        if "stopper" in a and a["stopper"] != b.get("stopper"):
            diffs.append(f"{run}: stopper differs: golden {a['stopper']}, now {b.get('stopper')}")
    return diffs


def new_names(golden: dict, current: dict) -> list[str]:
    return sorted({n for run in golden for ca, cb in zip(golden[run]["checks"], current[run]["checks"]) for n in set(cb["values"]) - set(ca["values"])})


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "compare"):
        print("usage: python tests/golden_values.py write|compare PATH")
        return 2
    result = run_all()
    if argv[0] == "write":
        with open(argv[1], "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        n = sum(len(c["values"]) for r in result.values() for c in r["checks"])
        print(f"wrote {argv[1]}: {n} logged values over {sum(len(r['checks']) for r in result.values())} checks")
        return 0
    with open(argv[1]) as f:
        golden = json.load(f)
    diffs = compare(golden, result)
    n = sum(len(c["values"]) for r in golden.values() for c in r["checks"])
    worst = max(
        (abs(v - cb["values"][k]) for run in golden for ca, cb in zip(golden[run]["checks"], result[run]["checks"]) for k, v in ca["values"].items() if k in cb["values"] and math.isfinite(v)),
        default=0.0,
    )
    print(f"{n} golden values over {sum(len(r['checks']) for r in golden.values())} checks; largest absolute difference {worst:.3g}; names new in this version: {new_names(golden, result)}")
    for run in golden:
        for key in ("expected_names", "warnings"):
            if golden[run][key] != result[run][key]:
                print(f"{run}: {key} changed:\n  golden {golden[run][key]}\n  now    {result[run][key]}")
    print("\n".join(diffs) if diffs else "every golden value and stopping decision is reproduced")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
