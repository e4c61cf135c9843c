"""How the monitor's values reach Lightning: ``pl_module.log`` (so they reach
``trainer.callback_metrics``, stock callbacks and every logger) and, for a name a check did not
log, its removal from ``trainer.callback_metrics`` (so nobody reads a stale number as current)."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer


def log_values(trainer: Trainer, pl_module: LightningModule, values: dict[str, float], on_step: bool) -> None:
    """``pl_module.log`` (values already reduced over ranks: no sync). A step-cadence check is
    also written straight to the loggers, since Lightning only forwards step values every
    ``log_every_n_steps`` and a check between those steps would otherwise never be recorded."""
    for name, v in values.items():
        # batch_size=1: the value is one reduced number; it also spares Lightning a batch-size search
        pl_module.log(name, v, on_step=on_step, on_epoch=not on_step, sync_dist=False,
                      logger=not on_step and bool(trainer.loggers), batch_size=1)
    if on_step and trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)


def forget(trainer: Trainer, names: set[str]) -> None:
    """Remove ``names`` from ``trainer.callback_metrics``. Lightning rebuilds that dict from the running
    loop's logged results at each access, and within a training epoch a value logged at an earlier
    step stays there: those entries are reset too (Lightning's own reset; the next ``log`` of the name
    starts it afresh). ``trainer._results`` is Lightning's private handle on those results: without
    it (another Lightning version), only the dict entry goes."""
    if not names:
        return
    for result in (getattr(trainer, "_results", None) or {}).values():
        if getattr(getattr(result, "meta", None), "name", None) in names:
            result.reset()
    for name in names:
        trainer.callback_metrics.pop(name, None)


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
