"""A plain Python process (no logging configuration at all) training with the monitor and the
stopper, for ``tests/test_console.py``: what reaches its stdout/stderr is what a user sees.

The probe's forward fails at the checks of epochs 1 and 2 (a repeated fault: warned once), the
stopper's plateau rule cannot see an improvement (``min_delta`` huge), so it stops at the third
successful check and restores the weights of the first. ``--debug`` raises Lightning's logger to
DEBUG (then the per-check detail appears too). ``--verbose`` gives the monitor ``verbose=True``;
``--pytorch-lightning`` runs it with ``pytorch_lightning``'s Trainer and LightningModule.
"""

from __future__ import annotations

import importlib
import logging
import sys

import lightning as L

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from helpers import SGD_TANH, loaders, tiny_student_class, w2s_data  # noqa: E402


def flaky_forward(module, batch):
    if module.current_epoch in (1, 2):
        raise RuntimeError("flaky probe forward")
    return module(batch)


def main(debug: bool, verbose: bool, namespace: str) -> None:
    pl = importlib.import_module(namespace)
    if debug:
        logging.getLogger(namespace).setLevel(logging.DEBUG)
    L.seed_everything(0, verbose=False)
    x, y, teacher = w2s_data(n=700)
    probe = W2SProbe(x[600:], teacher_labels=teacher[600:], gold=y[600:])
    monitor = W2SMonitor(probe, forward_fn=flaky_forward, neighbours=0, verbose=verbose)
    stopper = W2SEarlyStopping(patience=2, min_delta=10.0, restore_best=True, strict=False)
    trainer = pl.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor, stopper])
    trainer.fit(tiny_student_class(pl.LightningModule)(**SGD_TANH), *loaders(x, teacher, 400, 100))
    print(f"STOPPED_EPOCH={stopper.stopped_epoch} BEST_CHECK={stopper.best_check}", flush=True)


if __name__ == "__main__":
    main("--debug" in sys.argv, "--verbose" in sys.argv, "pytorch_lightning" if "--pytorch-lightning" in sys.argv else "lightning.pytorch")
