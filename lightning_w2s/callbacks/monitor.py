"""``W2SMonitor``: runs the probe through the student at every check and logs ``w2s/...`` metrics.

docs/architecture.md. The callback stays thin: it feeds the pure aggregator
(:class:`lightning_w2s.metrics.W2SMetrics`), publishes what it computes once per check into
``trainer.callback_metrics`` and every logger, as ``pl_module.log`` would store them (so a stock
``EarlyStopping(monitor="w2s/...")`` or ``ModelCheckpoint(monitor=...)`` works on them; one call
per check instead of one ``pl_module.log`` per name: :mod:`lightning_w2s.callbacks.publish`), and
draws TensorBoard extras (:class:`lightning_w2s.dashboard.tensorboard.Dashboard`). Every probe pass runs in
``eval()`` + ``no_grad``, through the strategy's wrapper of the module (FSDP gathers the weights
there), and gives each submodule its own train/eval mode back: the monitor never changes training.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_w2s.callbacks.probe_runner import ProbeRunner
from lightning_w2s.callbacks.publish import forget, log_values, logger_step
from lightning_w2s.dashboard.loggers import TextSink
from lightning_w2s.dashboard.tensorboard import Dashboard, tensorboard_writer
from lightning_w2s.dashboard.text import CONSTANTS_TAG, WARNINGS_TAG, format_constants, format_warnings, headline
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import metrics_for_probe
from lightning_w2s.metrics.validation import check_choice, check_scalar, describe
from lightning_w2s.probe import W2SProbe
from lightning_w2s.probe.features import CAPTURES, check_pooling, default_forward
from lightning_w2s.stopping.alerts import AlertTracker

#: the values a check's debug line shows (``rank_zero_debug``), when logged
CHECK_SUMMARY = (Q.DISAGREEMENT, Q.KL_TEACHER_STUDENT, Q.COVERED_ACCURACY, Q.TEACHER_ACCURACY, Q.ACCURACY, Q.PGR)


class W2SMonitor(Callback):
    """Watch weak-to-strong training: at each check, run the probe set through the student, capture a
    representation, and log misfit, gold-side rates and the rest under ``w2s/<family>/<quantity>``
    (the names, meanings and needs: :mod:`lightning_w2s.metrics.quantities`, docs/metrics.md).

    Args:
        probe: a :class:`~lightning_w2s.W2SProbe` (held-out inputs + teacher outputs), or a path to
            one saved with :meth:`W2SProbe.save` (for LightningCLI YAML).
        train_probe: optional probe built from a fixed slice of the *training* inputs with their
            teacher labels; logged under ``w2s/train_misfit/...``.
        layer: submodule whose representation is captured; ``None`` = what the classification head
            reads: the input of the model's last ``nn.Linear``, at the token whose logits the model
            returns when the head is applied token-wise (decoder classifiers: docs/decoder.md); the
            console says which layer and tokens are captured, and why, at fit start.
        teacher_score: the teacher's gold score (accuracy), used for PGR and the accuracy band when
            the probe has no gold.
        ceiling_score: the strong ceiling's gold score, for PGR (Burns et al. 2023).
        capture: ``"input"``/``"output"`` of ``layer`` (``"auto"``: input for the default layer,
            output for a named one).
        pooling: how a captured activation becomes ``(batch, d)``: ``"auto"``, ``"mean"``,
            ``"last"``, ``"first"`` (the real tokens by the batch's ``attention_mask``, whatever the
            padding side), ``"flatten"``, ``"none"`` or a callable ``fn(x, mask)`` (tried on a probe
            batch at fit start).
        batch_size: probe batch size.
        eps: probability clamp before logarithms.
        student_output: ``"logits"`` (softmax applied) or ``"probs"``; for a regression probe
            (``teacher_values=``) the output is read as real values, ``(batch,)`` or ``(batch, m)``
            like the teacher's (checked at fit start).
        forward_fn: ``fn(pl_module, batch) -> logits`` (or a model output holding them, read as the
            default does); default: :func:`~lightning_w2s.probe.features.default_forward` (dict batches as
            keyword arguments, checked against the forward's signature at fit start; ``.logits``
            of Hugging Face outputs).
        every_n_train_steps: if set, check every that many optimizer steps (own probe pass in
            eval/no-grad, each submodule's mode restored) *instead of* at each validation epoch end.
            A cadence that cannot fire within the fit warns at fit start and falls back to the
            epoch cadence, so callbacks reading ``w2s/...`` still find values.
        min_gain: warn (``gain_exhausted``) when the most the student's accuracy can still exceed the
            teacher's (coverage × held-out disagreement + (1 − coverage)) falls below it (a warning,
            not a stopping policy: docs/stopping.md).
        alert_window: checks over which a warning's trend must hold (``>= 2``).
        neighbours: k of the k-nearest-neighbour table (in the teacher's features, or the student's at
            fit start) behind Lang et al.'s robustness and expansion statistics; 0 turns them off.
        eta: robustness threshold η in ``P(R̄_η) ≤ γ̂/η`` (Lang et al. Lemma B.1).
        representation_every_n_checks: compute the representation family (the gap, CKA, effective
            rank, ``pred_gap_gold``: ``w2s/representation/...``) at every that many checks (the first
            check included) and leave it out of the others, where its names are not logged (and
            are removed from ``trainer.callback_metrics``, like any name a check does not log). Its
            float64 ``d × d`` sums are most of a check for a cheap student with wide features
            (``benchmarks/overhead/run.py`` prints the share); default 1: every check.
        figure_every_n_checks: draw reliability diagrams in TensorBoard every that many checks,
            and always once at the end of fit (0 = never). Drawing costs far more than a check
            (0.2–0.6 s a diagram on 2 CPU cores, measured in two sessions), hence the default of 10.
        on_error: ``"warn"`` (default: a failing check is logged as a warning and skipped, training
            goes on) or ``"raise"``.
        verbose: print one line per check on rank 0 (``rank_zero_info``, like
            ``EarlyStopping(verbose=True)``) with the headline values: PGR where defined, the held-out
            disagreement with its Wilson 95% interval, ``W2SEarlyStopping``'s default signal
            ``teacher_label_ce`` (``sq`` for a regression probe). ``False`` (default): that line goes
            to debug level, with more values.

    Text: the warnings (``w2s/warnings``, with the first of each kind of fault) and the constants of
    the probe (``w2s/constants``) reach every logger that takes text, and a markdown report
    ``w2s_report.md`` in the folder of any other (:class:`lightning_w2s.dashboard.loggers.TextSink`,
    docs/loggers.md), on rank 0.

    >>> probe = W2SProbe(torch.randn(20, 4), teacher_labels=torch.arange(20) % 2, gold=torch.arange(20) % 2)
    >>> monitor = W2SMonitor(probe, teacher_score=0.7, ceiling_score=0.9)
    >>> names = monitor.expected_names()
    >>> Q.DISAGREEMENT in names, Q.PGR in names, Q.GAP_FRO in names  # no teacher features: no representation gap
    (True, True, False)
    """

    def __init__(
        self,
        probe: W2SProbe | str | os.PathLike,
        train_probe: W2SProbe | str | os.PathLike | None = None,
        layer: str | None = None,
        teacher_score: float | None = None,
        ceiling_score: float | None = None,
        capture: str = "auto",
        pooling: str | Callable = "auto",
        batch_size: int = 256,
        eps: float = 1e-6,
        student_output: str = "logits",
        forward_fn: Callable | None = None,
        every_n_train_steps: int | None = None,
        min_gain: float | None = None,
        alert_window: int = 3,
        neighbours: int = 10,
        eta: float = 0.5,
        representation_every_n_checks: int = 1,
        figure_every_n_checks: int = 10,
        on_error: str = "warn",
        verbose: bool = False,
    ) -> None:
        super().__init__()
        if probe is None:
            raise ValueError("`probe` is required: a W2SProbe or a path to a saved one")
        self.probe = W2SProbe.coerce("probe", probe)
        self.train_probe = W2SProbe.coerce("train_probe", train_probe)
        if self.train_probe is not None and self.train_probe.task != self.probe.task:
            raise ValueError(f"`train_probe` is a {self.train_probe.task} probe but `probe` is a {self.probe.task} probe")
        if self.train_probe is not None and self.train_probe.num_classes != self.probe.num_classes:
            raise ValueError(f"`train_probe` has {self.train_probe.num_classes} classes but `probe` has {self.probe.num_classes}")
        if self.train_probe is not None and self.train_probe.output_dim != self.probe.output_dim:
            raise ValueError(f"`train_probe` has {self.train_probe.output_dim} outputs but `probe` has {self.probe.output_dim}")
        self.layer = check_scalar("layer", layer, str, allow_none=True)
        self.capture = check_choice("capture", capture, CAPTURES)
        self.pooling = check_pooling(pooling)
        self.batch_size = check_scalar("batch_size", batch_size, int, min_val=1)
        self.student_output = check_choice("student_output", student_output, ("logits", "probs"))
        if forward_fn is not None and not callable(forward_fn):
            raise TypeError(f"`forward_fn` must be a callable fn(pl_module, batch) -> logits, got {describe(forward_fn)}")
        self.forward_fn = forward_fn or default_forward
        self.every_n_train_steps = check_scalar("every_n_train_steps", every_n_train_steps, int, min_val=1, allow_none=True)
        self.representation_every_n_checks = check_scalar("representation_every_n_checks", representation_every_n_checks, int, min_val=1)
        self.figure_every_n_checks = check_scalar("figure_every_n_checks", figure_every_n_checks, int, min_val=0)
        self.on_error = check_choice("on_error", on_error, ("warn", "raise"))
        self.verbose = check_scalar("verbose", verbose, bool)
        kw = dict(eps=eps, teacher_score=teacher_score, ceiling_score=ceiling_score, neighbours=neighbours, eta=eta)
        self.metrics = metrics_for_probe(self.probe, **kw)
        self.train_metrics = None if self.train_probe is None else metrics_for_probe(self.train_probe, train=True, eps=eps)
        if min_gain is not None and Q.MAX_GAIN not in self.metrics.expected_names():
            raise ValueError(f"`min_gain`={min_gain!r} is a gain in 0/1 accuracy (the gain_exhausted rule), but `probe` is a {self.metrics.task} probe, which logs no {Q.MAX_GAIN}: drop it")
        self.alerts = AlertTracker(window=check_scalar("alert_window", alert_window, int, min_val=2), min_gain=min_gain, misfit=self.metrics.misfit_name)
        self.min_gain = self.alerts.min_gain
        self.teacher_score, self.ceiling_score = self.metrics.teacher_score, self.metrics.ceiling_score
        if self.teacher_score is not None and self.ceiling_score is not None and self.ceiling_score <= self.teacher_score:
            rank_zero_warn(f"W2SMonitor: `ceiling_score`={self.ceiling_score} <= `teacher_score`={self.teacher_score}: PGR is undefined (no room above the teacher) and will not be logged")
        # what makes two monitors' numbers comparable (a resumed fit checks it)
        self._config = dict(
            kw,
            layer=layer,
            capture=capture,
            pooling=getattr(pooling, "__qualname__", pooling),
            student_output=student_output,
            every_n_train_steps=every_n_train_steps,
            forward_fn=getattr(self.forward_fn, "__qualname__", repr(self.forward_fn)),
        )
        # the monitor's own probe passes (capture, forward routing, fit-start checks): docs/decoder.md
        read = lambda out: self.metrics.read_student(out, self.student_output)  # noqa: E731 - how this probe reads outputs
        self.runner = ProbeRunner(self.probe, self.forward_fn, read, self.batch_size, self.every_n_train_steps, self.on_error, layer=self.layer, capture=self.capture, pooling=self.pooling)
        self._dashboard: Dashboard | None = None
        self._text = TextSink()  # where the words go: the Trainer's loggers from fit start
        self._step_cadence = self.every_n_train_steps
        self._last_step_checked = -1
        self._warned: set[str] = set()  # kinds of repeated faults already warned about (console)
        self._reset_history()

    def _reset_history(self) -> None:
        """The state a resume restores (see :meth:`state_dict`)."""
        self.num_checks = 0  # successful checks
        self.num_failed = 0  # checks skipped because the probe pass failed
        self.num_skipped = 0  # failed checks and non-finite values (logged as w2s/skipped)
        self.last_values: dict[str, float] = {}
        self.warnings_log: list[dict[str, Any]] = []

    def _warn_once(self, key: str, message: str, step: int | None = None) -> None:
        """A repeated fault warns once per kind (``key``) on the console and in the loggers' text
        (``w2s/warnings`` at ``step``); later ones go to debug (they are counted in ``w2s/skipped``)."""
        if key in self._warned:
            rank_zero_debug(message)
            return
        self._warned.add(key)
        rank_zero_warn(f"{message} (warned once; repeats are counted in {Q.SKIPPED} and logged at debug level)")
        row = {"regime": "fault", "message": message, "check": self.num_checks + self.num_failed, "step": step}
        self._text.write(WARNINGS_TAG, format_warnings([row]), step=step)

    # ------------------------------------------------------------------ identity & state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer, probe_n=self.probe.n, train_probe=self.train_probe is not None)

    @property
    def fingerprint(self) -> str:
        """A short hash of the probe(s) and of every argument that changes the logged numbers."""
        parts = [self.probe.fingerprint, self.train_probe.fingerprint if self.train_probe is not None else "-", repr(sorted(self._config.items()))]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def expected_names(self) -> set[str]:
        """Every ``w2s/...`` name this configuration can log, derived from the quantities registry
        (:func:`lightning_w2s.metrics.quantities.expected_names`): those the registry marks
        ``may_be_undefined`` are left out at a check where they are undefined. ``W2SEarlyStopping``
        reads this at fit start to fail before training when a policy needs a name that will never
        be logged."""
        names = self.metrics.expected_names() | {Q.SKIPPED, Q.CHECK}
        return names | (self.train_metrics.expected_names() if self.train_metrics is not None else set())

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "num_checks": self.num_checks,
            "num_failed": self.num_failed,
            "num_skipped": self.num_skipped,
            "last_values": dict(self.last_values),
            "alerts": self.alerts.state_dict(),
            "warnings_log": list(self.warnings_log),
            "metrics": self.metrics.state_dict_extra(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("fingerprint")
        if old is not None and old != self.fingerprint:
            rank_zero_warn(
                "W2SMonitor: the checkpoint's monitor state was made with another probe or configuration (fingerprint "
                f"{old}, now {self.fingerprint}); the monitor's histories (checks, warnings, expansion history, "
                "neighbour table) start afresh instead of mixing two probes"
            )
            return
        self.num_checks = int(state_dict.get("num_checks", 0))
        self.num_failed = int(state_dict.get("num_failed", 0))
        self.num_skipped = int(state_dict.get("num_skipped", 0))
        self.last_values = dict(state_dict.get("last_values", {}))
        self.alerts.load_state_dict(state_dict.get("alerts", {}))
        self.warnings_log = list(state_dict.get("warnings_log", []))
        self.metrics.load_state_dict_extra(state_dict.get("metrics", {}))

    # ------------------------------------------------------------------ lifecycle
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.runner.setup(pl_module)  # resolves the layer now: an unknown name fails at fit start, listing close matches

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._dashboard is not None:
            self._dashboard.close()  # the reference runs' files (a fit that raised never reached on_train_end)
        self.runner.teardown()

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for metrics in (self.metrics, self.train_metrics):
            if metrics is not None:
                metrics.to(pl_module.device)
        self.runner.check_shapes(trainer, pl_module, self.metrics)
        rank_zero_info(f"W2SMonitor: the student's representation is the {self.runner.describe()}")
        if self.metrics.wants_neighbours and self.metrics.neighbours is None:
            table = self.runner.neighbour_table(trainer, pl_module, self.metrics)
            if table is not None:
                self.metrics.set_neighbours(table)
        self._step_cadence = self.runner.cadence(trainer)
        self._text = TextSink.of(trainer)
        writer = tensorboard_writer(trainer.loggers) if trainer.is_global_zero else None
        self._dashboard = Dashboard(writer, self.figure_every_n_checks) if writer is not None else None
        if Q.Need.TEACHER_ACCURACY in self.metrics.provides:
            band = (
                "exact: teacher accuracy, disagreement and coverage counted on the same gold probe points"
                if self.probe.has_gold
                else "approximate: user-given `teacher_score`, held-out disagreement and the probe's coverage (up to the score's sampling error)"
            )
            rank_zero_info(f"W2SMonitor: the accuracy band {Q.ACCURACY_LOWER}|upper is {band}")

    def _context(self) -> dict[str, Any]:
        """The configuration rows of the constants text (every logger that takes text)."""
        rows: dict[str, Any] = {"probe": repr(self.probe)}
        if self.train_probe is not None:
            rows["train probe"] = repr(self.train_probe)
        for key in ("teacher_score", "ceiling_score"):
            if getattr(self, key) is not None:
                rows[f"`{key}`"] = getattr(self, key)
        if self.runner.capture is not None:
            rows["student representation"] = self.runner.describe()
        return rows

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._step_cadence:
            return
        self._run_check(trainer, pl_module, on_step=False)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.enable_validation and not self._step_cadence:
            self._run_check(trainer, pl_module, on_step=False)  # no validation loop: check once per epoch

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self._step_cadence
        if n and trainer.global_step > 0 and trainer.global_step % n == 0 and trainer.global_step != self._last_step_checked:
            self._last_step_checked = trainer.global_step  # gradient accumulation: one check per optimizer step
            self._run_check(trainer, pl_module, on_step=True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._dashboard is None:
            return
        try:
            self._dashboard.finish(self.metrics.extras)
        except Exception as exc:  # noqa: BLE001 - a drawing problem never costs the fit
            rank_zero_warn(f"W2SMonitor: reliability diagrams at fit end failed: {exc}")

    # ------------------------------------------------------------------ the check
    def _run_check(self, trainer: Trainer, pl_module: LightningModule, on_step: bool) -> None:
        """One check, on one torch thread but for the student's forward passes, which get the
        process's own count, or only the cores other processes leave idle (``ProbeRunner.check_threads``);
        then the callbacks that follow checks (``on_w2s_check``) read it, so that one listed before the
        monitor neither misses it in a checkpoint saved at this step nor stops one optimizer step late."""
        with self.runner.check_threads():
            self._check(trainer, pl_module, on_step)
        for callback in trainer.callbacks:  # type: ignore[attr-defined]  # (set at run time) W2SEarlyStopping reads the check now
            if callable(getattr(callback, "on_w2s_check", None)):
                callback.on_w2s_check(trainer, pl_module)

    def _check(self, trainer: Trainer, pl_module: LightningModule, on_step: bool) -> None:
        """DDP: every rank runs the same forward calls and the same collectives, even when its own
        probe pass failed (a rank that skipped a collective would hang the others); whether the
        check is kept is then decided jointly with ``reduce_boolean_decision``."""
        failure: BaseException | None = None
        values: dict[str, torch.Tensor] = {}
        jobs = [(self.probe, self.metrics)] + ([(self.train_probe, self.train_metrics)] if self.train_metrics is not None else [])
        # the same on every rank (the check counter is), so every rank runs the same collectives
        representation = (self.num_checks + self.num_failed) % self.representation_every_n_checks == 0
        try:
            with self.runner.probe_pass(pl_module):
                for probe, metrics in jobs:
                    metrics.reset(representation=representation)
                    try:
                        for index, valid, inputs in self.runner.batches(probe, trainer):
                            metrics.update(*self.runner.forward(trainer, pl_module, inputs), index, valid)
                        metrics.flush()  # the queued rows reach the states here, so their errors are caught here
                    except Exception as exc:  # noqa: BLE001 - kept, collectives still run below
                        failure = failure or exc
                    values.update(metrics.compute())  # syncs ranks
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
        if failure is not None and self.on_error == "raise":
            raise failure
        if trainer.strategy.reduce_boolean_decision(failure is not None, all=False):
            reason = f"{type(failure).__name__}: {failure}" if failure is not None else "a failure on another rank"
            self._warn_once(
                f"failed:{type(failure).__name__}", f"W2SMonitor: check {self.num_checks + self.num_failed} failed and was skipped ({reason}); training goes on", logger_step(trainer, on_step)
            )
            self.num_failed += 1
            self.num_skipped += 1
            self._publish(trainer, pl_module, {}, on_step)
            return
        self.num_checks += 1
        self._publish(trainer, pl_module, values, on_step)

    def _publish(self, trainer: Trainer, pl_module: LightningModule, values: dict[str, torch.Tensor], on_step: bool) -> None:
        """Log a check's finite values (a non-finite one is a numerical fault: warned about, skipped,
        counted) with the counters; remove every name this check did not log from
        ``trainer.callback_metrics``; then warnings and TensorBoard extras (successful checks)."""
        # one host transfer for the whole check (no per-name sync)
        host = torch.stack([torch.as_tensor(v, dtype=torch.float64).to(pl_module.device) for v in values.values()]).tolist() if values else []
        logged = dict(zip(values, host))
        bad = [name for name, v in logged.items() if not math.isfinite(v)]
        if bad:
            self.num_skipped += len(bad)
            self._warn_once(
                f"non-finite:{','.join(bad)}",
                f"W2SMonitor: non-finite value(s) at check {self.num_checks + self.num_failed - 1} skipped (not logged): "
                f"{', '.join(bad)}. Usual causes: NaN/Inf in the student's outputs or features, or a rank-degenerate "
                "representation",
                logger_step(trainer, on_step),
            )
        logged = {name: v for name, v in logged.items() if name not in bad}
        logged[Q.SKIPPED] = float(self.num_skipped)
        logged[Q.CHECK] = float(self.num_checks + self.num_failed)
        log_values(trainer, pl_module, logged, on_step)
        # Lightning keeps the last value of every name in callback_metrics: a value that is undefined
        # at this check, skipped as a fault, or not measured by a failed check must not be read as current
        forget(trainer, set(self.last_values) - set(logged))
        self.last_values = logged
        if not values:
            return
        step = logger_step(trainer, on_step)
        self._say(trainer, logged)
        new_alerts = self.alerts.update(logged)
        for alert in new_alerts:
            self.warnings_log.append({"check": self.num_checks, "step": trainer.global_step, **alert.as_dict()})
            rank_zero_warn(f"W2SMonitor [{alert.regime}]: {alert.message}")
        if self._dashboard is not None:
            try:
                self._dashboard.update(self.num_checks, step, logged, self.metrics.extras)
            except Exception as exc:  # noqa: BLE001 - a drawing problem never stops training
                self._warn_once(f"dashboard:{type(exc).__name__}", f"W2SMonitor: TensorBoard extras failed at check {self.num_checks}: {exc}", step)
        self._write_text(step, logged, new_alerts)

    def _say(self, trainer: Trainer, logged: dict[str, float]) -> None:
        """The check's console line: the headline values at info level with ``verbose``, else more
        values at debug level."""
        where = f"W2SMonitor check {self.num_checks} (epoch {trainer.current_epoch}, step {trainer.global_step})"
        if self.verbose:
            rank_zero_info(f"{where}: {headline(logged)}")
        else:
            rank_zero_debug(f"{where}: " + ", ".join(f"{name} {logged[name]:.4g}" for name in CHECK_SUMMARY if name in logged))

    def _write_text(self, step: int, logged: dict[str, float], new_alerts: list) -> None:
        """The constants of the probe (when they changed) and the check's new warnings, to every logger
        that takes text (:class:`~lightning_w2s.dashboard.loggers.TextSink`); a logger's failure warns and
        never stops training."""
        if not self._text.routes:  # no logger takes text (or not rank 0)
            return
        guide = self._dashboard.run_guide() if self._dashboard is not None else {}
        self._text.write(CONSTANTS_TAG, format_constants(logged, {**self._context(), **guide}), step=step, replace=True)
        if new_alerts:
            rows = [dict(alert.as_dict(), check=self.num_checks, step=step) for alert in new_alerts]
            self._text.write(WARNINGS_TAG, format_warnings(rows), step=step)
