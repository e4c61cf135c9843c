"""How the monitor's values reach Lightning: ``trainer.callback_metrics`` (read by stock callbacks
such as ``EarlyStopping(monitor="w2s/...")`` and ``ModelCheckpoint(monitor=...)``, and by
``W2SEarlyStopping``) and every logger, once per check; and, for a name a check did not log, its
removal from ``trainer.callback_metrics`` (so nobody reads a stale number as current).

Why not ``pl_module.log`` (or ``log_dict``, which loops over it): each call builds Lightning's
per-name result object (metadata, device moves, a batch-size lookup), ~1-2 ms a name on a CPU, and
every later read of ``trainer.callback_metrics`` recomputes every logged name again: with ~70 names
that was most of a cheap student's check. The monitor's values are already reduced over
ranks and final, so they are written as Lightning itself would store them — what
``pl_module.log(name, float)`` would leave there: float32 0-d tensors on the module's device, the
same numbers the loggers get — and handed to the loggers in one call per check, at the step and
with the ``epoch`` key Lightning gives to metrics logged from the same hook.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer


def log_values(trainer: Trainer, pl_module: LightningModule, values: dict[str, float], on_step: bool) -> None:
    """Publish one check's ``values`` (already reduced over ranks: identical on every rank).

    Every rank writes them into ``trainer.callback_metrics`` (every rank's stock callbacks read
    them; a stop is then agreed through the strategy as usual). Loggers get them once per check
    through Lightning's logger connector (rank-zero only, as for Lightning's own metrics), at
    :func:`logger_step` with the ``epoch`` key: a step-cadence check (``on_step``) at every check,
    whatever ``log_every_n_steps`` is.
    """
    names = list(values)
    # float32, as Lightning stores a logged Python float (float64 under a float64 default dtype; never
    # below float32, even when a script sets a bf16/fp16 default): the number a stock callback compares
    # is the number the logger wrote (one host->device copy for the whole check)
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    stored = torch.tensor([values[n] for n in names], dtype=dtype)
    trainer.callback_metrics.update(zip(names, stored.to(pl_module.device).unbind()))
    if trainer.loggers:
        rounded = dict(zip(names, stored.tolist()), epoch=trainer.current_epoch)
        # Lightning's own route to the loggers (its ThroughputMonitor uses it too): also updates trainer.logged_metrics
        trainer._logger_connector.log_metrics(rounded, step=logger_step(trainer, on_step))


def logger_step(trainer: Trainer, on_step: bool) -> int:
    """The step at which :func:`log_values` puts a check's values in the loggers: ``global_step`` for
    a step-cadence check (written straight to them); for an epoch-cadence check, the step Lightning
    writes epoch-end values at (its loop's ``_batches_that_stepped``, one less at a training epoch's
    end, where Lightning decrements it before logging). The dashboard's reference runs use it, so
    that the teacher's line sits at the student's steps. ``global_step`` when the private counter is
    missing (another Lightning version)."""
    stepped = getattr(getattr(trainer.fit_loop, "epoch_loop", None), "_batches_that_stepped", None)
    if on_step or not isinstance(stepped, int):
        return trainer.global_step
    return stepped if trainer.validating else stepped - 1


def forget(trainer: Trainer, names: set[str]) -> None:
    """Remove ``names`` from ``trainer.callback_metrics`` (the values :func:`log_values` wrote live
    only there: Lightning's per-loop results never hold them)."""
    metrics = trainer.callback_metrics
    for name in names:
        metrics.pop(name, None)
