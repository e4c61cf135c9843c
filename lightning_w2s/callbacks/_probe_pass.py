"""The monitor's forward passes over the probe and its fit-start checks (a mixin of
:class:`lightning_w2s.callbacks.monitor.W2SMonitor`, which owns the attributes used here:
``probe``, ``metrics``, ``forward_fn``, ``student_output``, ``batch_size``, ``every_n_train_steps``,
``on_error``, ``_capture``, ``_user_threads``).

Every probe pass goes through the strategy's wrapper of the module, as Lightning routes its own
validation steps (FSDP gathers the sharded weights there), under the trainer's precision context,
and casts the outputs to float64 before anything enters a sum state. At fit start: one tiny
forward to check the output's shape, the step cadence against the fit's length, and the k-NN table
(the same forward calls on every rank).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from lightning_utilities.core.apply_func import apply_to_collection

from lightning_w2s.validation import describe
from lightning_w2s.probe.features import eval_mode, logits_of
from lightning_w2s.metrics.threads import threads


class _ProbePass:
    """Forward passes over the probe and the fit-start checks (see the module docstring)."""

    def _forward(self, trainer: Trainer, pl_module: LightningModule, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batch = move_data_to_device(inputs, pl_module.device)
        # a probe saved in another float precision than the model (e.g. float64 numpy features for a
        # float32 model) is cast to the model's dtype; integer inputs (token ids, masks) are left alone
        batch = apply_to_collection(batch, torch.Tensor, lambda t: t.to(pl_module.dtype) if t.is_floating_point() else t)
        self._capture.set_batch(batch)
        with trainer.precision_plugin.forward_context():
            out = logits_of(self._call_forward(trainer, pl_module, batch))  # a forward_fn may return a model output too
        feats = self._capture.pop()
        out = out.double()  # cast before anything enters a sum state (bf16/fp16 runs included)
        # class probabilities or real values, as the probe's aggregator reads them; the aggregator casts
        # the features to float64 when it feeds them to a state
        return self.metrics.read_student(out, self.student_output), feats

    def _call_forward(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> torch.Tensor:
        """``forward_fn(pl_module, batch)``, routed through the strategy's wrapper of the module when
        there is one, as Lightning routes its own validation steps: under FSDP (or DeepSpeed stage 3)
        the wrapper's forward gathers the sharded weights, and the inner module alone would only see
        its rank's shard."""
        strategy = trainer.strategy
        wrapper, redirect = getattr(strategy, "model", None), getattr(strategy, "_forward_redirection", None)
        with threads(self._user_threads or torch.get_num_threads()):  # the user's own thread count
            if wrapper is None or wrapper is pl_module or redirect is None:
                return self.forward_fn(pl_module, batch)
            pl_module._w2s_probe_forward = lambda b: self.forward_fn(pl_module, b)
            try:
                return redirect(wrapper, pl_module, "_w2s_probe_forward", batch)
            finally:
                del pl_module._w2s_probe_forward

    def _check_shapes(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One tiny forward pass on every rank (same count everywhere) before training, in eval +
        no_grad (a BatchNorm counts no batch, a 1-point probe works)."""
        _, _, inputs = next(self.probe.iter_batches(batch_size=2))
        with eval_mode(pl_module):
            probs, feats = self._forward(trainer, pl_module, inputs)
        self.metrics.check_student(probs)  # (batch, k) probabilities, or real values shaped like the teacher's
        if feats.ndim != 2:
            raise ValueError(f"the captured representation must be (batch, d), got {describe(feats)}; choose `pooling=`")

    def _cadence(self, trainer: Trainer) -> int | None:
        """The step cadence for this fit: ``every_n_train_steps``, or ``None`` (epoch cadence, with a
        warning) when no multiple of it lies within the fit's optimizer steps."""
        n = self.every_n_train_steps
        try:
            total = float(trainer.estimated_stepping_batches) if n else math.inf
        except Exception:  # noqa: BLE001 - an unsized loader: nothing to check
            total = math.inf
        first = (trainer.global_step // n + 1) * n if n else 0
        if not n or not math.isfinite(total) or first <= total:
            return n
        rank_zero_warn(
            f"W2SMonitor: every_n_train_steps={n} cannot fire in this fit (it has {int(total)} optimizer steps; the first "
            f"check would come at step {first}): no step check would run, and callbacks reading w2s/* values "
            "(ModelCheckpoint(monitor='w2s/...'), EarlyStopping, W2SEarlyStopping) would find none. Checking at each "
            f"{'validation' if trainer.enable_validation else 'training'} epoch end instead. To keep a step cadence, pass "
            f"every_n_train_steps <= {int(total)}; every_n_train_steps=None asks for the epoch cadence"
        )
        return None

    def _neighbour_table(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        """k-NN table in a frozen embedding (:meth:`W2SMetrics.build_neighbours`), built once at fit
        start and broadcast from rank 0, so every rank indexes the same neighbours. Every rank builds
        it: when it comes from the student's representation, every rank then makes the same probe
        forward calls (under FSDP a forward gathers the weights from every rank)."""
        def embed() -> torch.Tensor:  # the student's representation of the whole probe, at fit start
            with eval_mode(pl_module):
                return torch.cat([self._forward(trainer, pl_module, x)[1].cpu() for *_, x in self.probe.iter_batches(0, 1, self.batch_size)])

        table = None
        try:
            table = self.metrics.build_neighbours(embed)
        except Exception as exc:  # noqa: BLE001 - robustness statistics are optional
            if self.on_error == "raise":
                raise
            rank_zero_warn(f"W2SMonitor: could not build the neighbour table ({type(exc).__name__}: {exc}); "
                           "Lang robustness/expansion statistics are off for this fit")
        return trainer.strategy.broadcast(table, src=0)  # None on failure: every rank turns them off
