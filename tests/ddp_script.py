"""Two-process DDP or FSDP run (CPU, gloo) used by ``tests/test_ddp.py`` and ``tests/test_fsdp.py``;
not a test itself.

The test starts this script once per rank with ``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_*`` set, i.e. as
an external launcher (torchrun-style), so that it owns both processes and can kill them on a hang.

Usage: ``python tests/ddp_script.py OUT_DIR [ddp|fsdp]``. Writes, per rank ``r``:

- ``fit1_rank{r}.json``: a real 2-epoch DDP fit with W2SMonitor on probes of odd size (101 and 33
  points: the last shard is padded) — the final ``w2s/*`` callback_metrics, the monitor's
  ``last_values`` and W2SEarlyStopping's history; rank 0 also saves the final weights ``final.pt``;
- ``fit2_rank{r}.json``: a fit where only rank 1 wants to stop (at epoch 1): where each rank stopped
  and why;
- ``fit4_rank{r}.json``: ``W2SEarlyStopping()`` with its defaults (``restore_best=True``) on a noisy task
  where the held-out ``teacher_label_ce`` reaches its minimum and rises: its history, stop and
  restored check, whether the weights left in the module equal this rank's copy of the weights at
  that check (DDP; every rank saves its final weights ``final_restored_rank{r}.pt``), or (FSDP) the
  warning that switched the restore off and the number of weight copies held;
- ``fit3_rank{r}.json``: a 2-epoch fit of a regression student (``tests/_regression.py``'s head on
  frozen features, SGD) with a regression probe (``teacher_values=``, real gold, teacher features;
  101 and 33 points) and ``W2SEarlyStopping(misfit="sq")``; rank 0 also saves ``final_regression.pt``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import lightning as L
import torch
from _regression import LeastSquaresHead, regression_task
from helpers import TinyStudent, make_task
from lightning.pytorch import Callback
from lightning.pytorch.strategies import FSDPStrategy

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.callbacks.early_stopping import W2SEarlyStopping, W2SStoppingReason

PROBE_N, TRAIN_PROBE_N = 101, 33


class SGDHead(LeastSquaresHead):
    """The least-squares head trained by plain SGD (L-BFGS's line search reads each rank's own loss)."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.head.parameters(), lr=0.05)


def regression_probes():
    """The regression probe and train probe of ``fit3`` (the same on every rank: seeded)."""
    x, f_w, f_star = regression_task(SGDHead(outputs=2), n=PROBE_N + 96)
    probe = W2SProbe(x[:PROBE_N], teacher_values=f_w[:PROBE_N], gold=f_star[:PROBE_N], teacher_features=x[:PROBE_N, :3])
    return probe, W2SProbe(x[PROBE_N : PROBE_N + TRAIN_PROBE_N], teacher_values=f_w[PROBE_N : PROBE_N + TRAIN_PROBE_N]), x, f_w


class Rank1WantsToStop(W2SEarlyStopping):
    """Test-only: rank 1 (and only rank 1) votes to stop at epoch 1."""

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        self.rank = trainer.global_rank

    def evaluate(self, values, epoch=0, global_step=0):
        stop, reason, message = super().evaluate(values, epoch, global_step)
        if self.rank == 1 and epoch == 1:
            return True, W2SStoppingReason.TEACHER_OVERFIT, "rank 1 votes to stop (test)"
        return stop, reason, message


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` on CPU processes (gloo), for tests: torch's FSDP runs on CPU when
    given ``device_id=torch.device("cpu")``, but Lightning 2.6 passes the device index (``None`` on
    CPU; torch then raises "FSDP needs a non-CPU accelerator device") and its accelerator connector
    refuses ``FSDPStrategy`` itself with ``accelerator="cpu"`` (a subclass passes that check).
    Lightning's full state dict asks torch to offload the gathered weights to the CPU, which on CPU
    processes ends in a segmentation fault inside torch's FSDP state-dict hook: gathered here
    without the offload."""

    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(module=model, sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs)

    def lightning_module_state_dict(self):
        from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
        with FullyShardedDataParallel.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, config):
            return self.model.state_dict()


FIT4_EPOCHS, FIT4_LR = 12, 0.05


class WeightsAtChecks(Callback):
    """This rank's CPU copy of the weights at every check (listed after the stopper; DDP only)."""

    def __init__(self):
        self.at = {}

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.at[len(self.at)] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def make_strategy(name):
    return CPUFSDPStrategy(process_group_backend="gloo") if name == "fsdp" else name


def trainer(max_epochs, callbacks, strategy="ddp"):
    return L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=make_strategy(strategy),
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


def monitor_for(task):
    # teacher features (the inputs) fix the neighbour table behind gamma-hat, so the 1-process run on
    # the final weights builds the same table as the DDP run did from the initial ones
    return W2SMonitor(task.probe(input_features=True), train_probe=task.train_probe(TRAIN_PROBE_N), batch_size=16, figure_every_n_checks=0)


def main(out: str, strategy: str = "ddp") -> None:
    torch.set_num_threads(1)
    task = make_task(n_train=96, n_probe=PROBE_N)

    L.seed_everything(0, verbose=False)
    model = TinyStudent(lr=0.02)
    monitor = monitor_for(task)
    # restore_best=False: the one-process comparison reads the weights of the last check
    es = W2SEarlyStopping(patience=50, restore_best=False, verbose=False)
    t1 = trainer(2, [monitor, es], strategy)
    t1.fit(model, task.train_loader(16), task.val_loader(32))
    rank = t1.global_rank
    # every rank takes part (FSDP gathers the full weights; rank 0 receives them)
    state = t1.strategy.lightning_module_state_dict()
    if rank == 0:
        torch.save(state, os.path.join(out, "final.pt"))
    local = sum(p.numel() for p in t1.strategy.model.parameters())
    with open(os.path.join(out, f"fit1_rank{rank}.json"), "w") as f:
        json.dump(
            {
                "strategy": type(t1.strategy).__name__,
                "wrapper": type(t1.strategy.model).__name__,
                "local_parameters": local,
                "parameters": sum(v.numel() for v in state.values()) if rank == 0 else None,
                "world_size": t1.world_size,
                "callback_metrics": {k: float(v) for k, v in t1.callback_metrics.items() if k.startswith("w2s/")},
                "last_values": monitor.last_values,
                "num_checks": monitor.num_checks,
                "history": es.history,
            },
            f,
        )

    L.seed_everything(0, verbose=False)
    es2 = Rank1WantsToStop(patience=50, verbose=False)
    t2 = trainer(4, [monitor_for(task), es2], strategy)
    t2.fit(TinyStudent(lr=0.02), task.train_loader(16), task.val_loader(32))
    with open(os.path.join(out, f"fit2_rank{rank}.json"), "w") as f:
        json.dump(
            {
                "stopped_epoch": es2.stopped_epoch,
                "stopped_check": es2.stopped_check,
                "reason": es2.stopping_reason.name,
                "message": es2.stopping_reason_message,
                "current_epoch": t2.current_epoch,
                "global_step": t2.global_step,
                "checks": len(es2.history),
                "stops": [h["stop"] for h in es2.history],
            },
            f,
        )

    L.seed_everything(0, verbose=False)
    es4 = W2SEarlyStopping(verbose=False)  # the defaults: patience 5, teacher_label_ce, restore_best=True
    weights = WeightsAtChecks()
    model = TinyStudent(lr=FIT4_LR, hidden=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t4 = trainer(FIT4_EPOCHS, [monitor_for(task), es4] + ([weights] if strategy == "ddp" else []), strategy)
        t4.fit(model, task.train_loader(16), task.val_loader(32))
    result = {
        "history": es4.history,
        "stopped_check": es4.stopped_check,
        "best_check": es4.best_check,
        "restore_check": es4.restore_check,
        "copies": len(es4.best_weights.copies),
        "restore_warnings": [str(w.message) for w in caught if "`restore_best` is off" in str(w.message)],
    }
    if strategy == "ddp":
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(final, os.path.join(out, f"final_restored_rank{rank}.pt"))
        kept = weights.at.get(es4.best_check, {})
        result["final_is_best_check"] = bool(kept) and all(torch.equal(final[k], kept[k]) for k in final)
        result["final_is_last_check"] = all(torch.equal(final[k], weights.at[len(weights.at) - 1][k]) for k in final)
    with open(os.path.join(out, f"fit4_rank{rank}.json"), "w") as f:
        json.dump(result, f)

    L.seed_everything(0, verbose=False)
    probe, train_probe, x, f_w = regression_probes()
    model = SGDHead(outputs=2)
    monitor = W2SMonitor(probe, train_probe=train_probe, batch_size=16, figure_every_n_checks=0)
    es3 = W2SEarlyStopping(misfit="sq", patience=50, verbose=False)
    t3 = trainer(2, [monitor, es3])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[PROBE_N:], f_w[PROBE_N:].float()), batch_size=16)
    t3.fit(model, loader)
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out, "final_regression.pt"))
    with open(os.path.join(out, f"fit3_rank{rank}.json"), "w") as f:
        json.dump({"last_values": monitor.last_values, "num_checks": monitor.num_checks, "history": es3.history}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
    # Every result is on disk now. Leave without running destructors: gloo's threads, torn down by
    # them (or by destroy_process_group), abort a rank at exit now and then with "terminate called
    # without an active exception" (exit -6 after all its work was done, seen in CI and locally).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
