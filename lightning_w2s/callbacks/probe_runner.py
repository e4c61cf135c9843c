"""``ProbeRunner``: the monitor's own forward passes over the probe, and its fit-start checks.

docs/architecture.md and docs/decoder.md. :class:`~lightning_w2s.callbacks.monitor.W2SMonitor` holds
one. It owns the feature capture (:class:`~lightning_w2s.probe.features.FeatureCapture`), whose hook
is registered only while a probe pass runs (:meth:`ProbeRunner.probe_pass`), so the user's training
and validation forwards never run monitor code. Every probe pass goes through the strategy's wrapper
of the module, as Lightning routes its own validation steps (FSDP gathers the sharded weights there),
under the trainer's precision context, and casts the outputs to float64 before anything enters a sum
state. At fit start: a forward on the first probe batch (the same shape as every other: no extra
compiled graph) checks the output's shape and the pooling, the step cadence is checked against the
fit's length, and the k-NN table is embedded (the same forward calls on every rank).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from lightning_utilities.core.apply_func import apply_to_collection
from torch import nn

from lightning_w2s.metrics.threads import fitting_threads, running_elsewhere, threads, usable_cores
from lightning_w2s.metrics.validation import describe
from lightning_w2s.probe import W2SProbe
from lightning_w2s.probe.features import FeatureCapture, eval_mode, logits_of


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` is, or holds, a ``torch.compile``'d module (an ``OptimizedModule``, or a
    LightningModule compiled whole, which Lightning unwraps and marks with ``_compiler_ctx``)."""
    return getattr(module, "_compiler_ctx", None) is not None or any(type(m).__name__ == "OptimizedModule" for m in module.modules())


def pad_rows(batch: Any, rows: int) -> Any:
    """``batch`` with its first dimension padded to ``rows`` by repeating its first row."""

    def pad(t: torch.Tensor) -> torch.Tensor:
        extra = rows - t.shape[0]
        return torch.cat([t, t[:1].expand(extra, *t.shape[1:])]) if extra > 0 else t

    return apply_to_collection(batch, torch.Tensor, pad)


class ProbeRunner:
    """The monitor's probe passes: capture, forward routing, fit-start checks, cadence, k-NN embedding.

    Args:
        probe: the held-out probe (its task decides how outputs are read).
        forward_fn: ``fn(pl_module, batch) -> logits`` (or a model output holding them).
        read_student: how the probe's aggregator reads the student's float64 output (class
            probabilities from logits or probabilities, or real values for a regression probe:
            :meth:`~lightning_w2s.metrics.base.ProbeMetrics.read_student`).
        batch_size: probe batch size.
        every_n_train_steps: the step cadence asked for (``None``: epoch cadence).
        on_error: ``"warn"`` or ``"raise"`` (for the k-NN table).
        layer, capture, pooling: what :class:`~lightning_w2s.probe.features.FeatureCapture` reads.

    >>> from lightning_w2s.probe.features import default_forward
    >>> runner = ProbeRunner(W2SProbe(torch.randn(6, 3), teacher_labels=torch.arange(6) % 2), default_forward,
    ...                      lambda out: out.softmax(-1), 4)
    >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    >>> runner.setup(net)
    >>> with runner.probe_pass(net):
    ...     print(len(net[2]._forward_hooks), net.training)
    1 False
    >>> len(net[2]._forward_hooks), net.training  # the hook lives only inside a probe pass
    (0, True)
    """

    def __init__(
        self,
        probe: W2SProbe,
        forward_fn: Callable,
        read_student: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        every_n_train_steps: int | None = None,
        on_error: str = "warn",
        layer: str | None = None,
        capture: str = "auto",
        pooling: str | Callable = "auto",
    ) -> None:
        self.probe, self.forward_fn, self.read_student = probe, forward_fn, read_student
        self.batch_size, self.every_n_train_steps, self.on_error = batch_size, every_n_train_steps, on_error
        self.layer, self.capture_mode, self.pooling = layer, capture, pooling
        self.capture: FeatureCapture | None = None
        self.pad_to: int | None = None  # a compiled student: every probe batch gets batch_size rows
        self._forward_threads: int | None = None  # during a check: the thread count the student's forward gets

    def setup(self, pl_module: nn.Module) -> None:
        """Resolve the layer (an unknown name fails here, listing close matches); no hook yet."""
        self.capture = FeatureCapture(pl_module, layer=self.layer, capture=self.capture_mode, pooling=self.pooling)
        compiled = is_compiled(pl_module)
        self.pad_to = self.batch_size if compiled else None
        if compiled:  # torch.compile calls no hook registered after it compiled: keep it, inactive between passes
            self.capture.keep_registered()

    def teardown(self) -> None:
        """Make sure no hook is left (the capture stays readable: what it read, :meth:`describe`)."""
        if self.capture is not None:
            self.capture.keep_registered(False)

    def _capture(self) -> FeatureCapture:
        if self.capture is None:
            raise RuntimeError("ProbeRunner.setup(pl_module) must run before a probe pass")
        return self.capture

    def describe(self) -> str:
        """What the capture reads and how it pools (said at fit start)."""
        return self.capture.describe() if self.capture is not None else f"layer={self.layer!r}, pooling={self.pooling!r}"

    @contextmanager
    def check_threads(self) -> Iterator[None]:
        """A check runs on one torch thread but for the student's forward passes, which get the
        process's own count (:func:`lightning_w2s.metrics.threads.threads`) — or, when other
        processes are running at the check's start, only the cores they leave idle
        (:func:`~lightning_w2s.metrics.threads.fitting_threads`): beside busy neighbours a team of
        OpenMP threads collapses, one thread does not."""
        with threads(1) as own:
            self._forward_threads = fitting_threads(own, running_elsewhere(), usable_cores())
            try:
                yield
            finally:
                self._forward_threads = None

    @contextmanager
    def probe_pass(self, pl_module: nn.Module) -> Iterator[None]:
        """Eval mode + no_grad (each submodule's own mode restored after) with the capture hook
        registered; the hook is removed when the block ends, whatever happens in it."""
        with eval_mode(pl_module), self._capture().attached():
            yield

    def forward(self, trainer: Trainer, pl_module: LightningModule, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's probabilities (or real outputs) and pooled representation on a probe
        batch; call inside :meth:`probe_pass`."""
        batch = move_data_to_device(inputs, pl_module.device)
        # a probe saved in another float precision than the model (e.g. float64 numpy features for a
        # float32 model) is cast to the model's dtype; integer inputs (token ids, masks) are left alone
        batch = apply_to_collection(batch, torch.Tensor, lambda t: t.to(pl_module.dtype) if t.is_floating_point() else t)
        rows = None
        if self.pad_to is not None:  # a compiled student sees one batch shape: the last batch is padded
            sizes: list[int] = []
            apply_to_collection(batch, torch.Tensor, lambda t: sizes.append(t.shape[0]))
            rows = sizes[0] if sizes and sizes[0] < self.pad_to else None
            batch = batch if rows is None else pad_rows(batch, self.pad_to)
        capture = self._capture()
        capture.set_batch(batch)
        with trainer.precision_plugin.forward_context():
            out = logits_of(self._call_forward(trainer, pl_module, batch))  # a forward_fn may return a model output too
        feats = capture.pop(out)
        if rows is not None:  # the padded rows' outputs are dropped
            out, feats = out[:rows], feats[:rows]
        out = out.double()  # cast before anything enters a sum state (bf16/fp16 runs included)
        # class probabilities or real values, as the probe's aggregator reads them; the aggregator casts
        # the features to float64 when it feeds them to a state
        return self.read_student(out), feats

    def _call_forward(self, trainer: Trainer, pl_module: LightningModule, batch: Any) -> torch.Tensor:
        """``forward_fn(pl_module, batch)``, routed through the strategy's wrapper of the module when
        there is one, as Lightning routes its own validation steps: under FSDP (or DeepSpeed stage 3)
        the wrapper's forward gathers the sharded weights, and the inner module alone would only see
        its rank's shard."""
        strategy = trainer.strategy
        wrapper, redirect = getattr(strategy, "model", None), getattr(strategy, "_forward_redirection", None)
        with threads(self._forward_threads or torch.get_num_threads()):  # inside a check: what check_threads chose; else the process count
            if wrapper is None or wrapper is pl_module or redirect is None:
                return self.forward_fn(pl_module, batch)
            pl_module._w2s_probe_forward = lambda b: self.forward_fn(pl_module, b)  # type: ignore[assignment]
            try:
                return redirect(wrapper, pl_module, "_w2s_probe_forward", batch)
            finally:
                del pl_module._w2s_probe_forward

    def batches(self, probe: W2SProbe, trainer: Trainer) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
        """This rank's ``(index, valid, inputs)`` batches of ``probe``."""
        return probe.iter_batches(trainer.global_rank, trainer.world_size, self.batch_size)

    def check_shapes(self, trainer: Trainer, pl_module: LightningModule, metrics: Any) -> None:
        """A forward on this rank's first probe batch (every rank makes one; the same shape as the
        checks' batches, so a compiled student compiles nothing for it), in eval + no_grad: the
        output's shape, the pooling (a ``pooling=`` callable that fails says so here, not inside a
        later check), and the head-token rule of ``pooling="auto"`` are settled before training."""
        _, _, inputs = next(iter(self.batches(self.probe, trainer)))
        with self.probe_pass(pl_module):
            probs, feats = self.forward(trainer, pl_module, inputs)
        metrics.check_student(probs)  # (batch, k) probabilities, or real values shaped like the teacher's
        if feats.ndim != 2:
            raise ValueError(f"the captured representation must be (batch, d), got {describe(feats)}; choose `pooling=`")

    def cadence(self, trainer: Trainer) -> int | None:
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

    def neighbour_table(self, trainer: Trainer, pl_module: LightningModule, metrics: Any) -> torch.Tensor | None:
        """k-NN table in a frozen embedding (:meth:`W2SMetrics.build_neighbours`), built once at fit
        start and broadcast from rank 0, so every rank indexes the same neighbours. Every rank builds
        it: when it comes from the student's representation, every rank then makes the same probe
        forward calls (under FSDP a forward gathers the weights from every rank)."""

        def embed() -> torch.Tensor:  # the student's representation of the whole probe, at fit start
            with self.probe_pass(pl_module):
                return torch.cat([self.forward(trainer, pl_module, x)[1].cpu() for *_, x in self.probe.iter_batches(0, 1, self.batch_size)])

        table = None
        try:
            table = metrics.build_neighbours(embed)
        except Exception as exc:  # noqa: BLE001 - robustness statistics are optional
            if self.on_error == "raise":
                raise
            rank_zero_warn(f"W2SMonitor: could not build the neighbour table ({type(exc).__name__}: {exc}); Lang robustness/expansion statistics are off for this fit")
        return trainer.strategy.broadcast(table, src=0)  # None on failure: every rank turns them off
