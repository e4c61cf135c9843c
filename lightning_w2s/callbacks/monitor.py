"""``W2SMonitor``: runs the probe through the student at every check and logs ``w2s/...`` metrics.

DESIGN §3. The callback stays thin: it feeds the pure aggregator
(:class:`lightning_w2s.metrics.W2SMetrics`), logs what it computes with ``pl_module.log`` (so the
values reach ``trainer.callback_metrics`` and every logger, and a stock
``EarlyStopping(monitor="w2s/...")`` works on them), and draws TensorBoard extras.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning_utilities.core.apply_func import apply_to_collection
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lightning_w2s._validation import check_choice, describe
from lightning_w2s.alerts import AlertTracker
from lightning_w2s.features import FeatureCapture, default_forward, eval_mode
from lightning_w2s.metrics.aggregator import W2SMetrics
from lightning_w2s.metrics.neighbours import knn_indices
from lightning_w2s.tensorboard import format_warnings, tensorboard_writer, write_layout, write_markdown, write_reliability
from lightning_w2s.probe import W2SProbe

log = logging.getLogger("lightning_w2s")


def _load_probe(name: str, probe: Any) -> W2SProbe | None:
    if probe is None or isinstance(probe, W2SProbe):
        return probe
    if isinstance(probe, (str, os.PathLike)):
        return W2SProbe.load(probe)
    raise TypeError(f"`{name}` must be a W2SProbe or a path to a saved probe (W2SProbe.save), got {describe(probe)}")


def _check_score(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"`{name}` must be a score (accuracy or AUROC) in [0, 1], got {value!r}")
    return float(value)


class W2SMonitor(Callback):
    """Watch weak-to-strong training: at each check, run the probe set through the student, capture a
    representation, and log misfit, gold-side rates and the rest under ``w2s/<family>/<quantity>``.

    Args:
        probe: a :class:`~lightning_w2s.W2SProbe` (held-out inputs + teacher outputs), or a path to
            one saved with :meth:`W2SProbe.save` (for LightningCLI YAML).
        train_probe: optional probe built from a fixed slice of the *training* inputs with their
            teacher labels; logged under ``w2s/train_misfit/...``.
        layer: submodule whose representation is captured; ``None`` = the input of the model's last
            ``nn.Linear`` (announced once in the log).
        teacher_score: the teacher's gold score (accuracy), used for PGR and the accuracy band when
            the probe has no gold.
        ceiling_score: the strong ceiling's gold score, for PGR (Burns et al. 2023).
        capture: ``"input"``/``"output"`` of ``layer`` (``"auto"``: input for the default layer,
            output for a named one).
        pooling: how a captured activation becomes ``(batch, d)``: ``"auto"``, ``"mean"``,
            ``"last"``, ``"first"``, ``"flatten"``, ``"none"`` or a callable.
        batch_size: probe batch size.
        eps: probability clamp before logarithms.
        student_output: ``"logits"`` (softmax applied) or ``"probs"``.
        forward_fn: ``fn(pl_module, batch) -> logits``; default calls the module (dict batches as
            keyword arguments).
        every_n_train_steps: if set, check every that many optimizer steps (own probe pass in
            eval/no-grad, train mode restored) *instead of* at each validation epoch end.
        min_gain: warn (``gain_exhausted``) when held-out disagreement falls below it.
        alert_window: checks over which a warning's trend must hold.
        neighbours: k of the k-nearest-neighbour table (in the teacher's features, or the student's at
            fit start) behind Lang et al.'s robustness and expansion statistics; 0 turns them off.
        eta: robustness threshold η in ``P(R̄_η) ≤ γ̂/η`` (Lang et al. Lemma B.1).
        figure_every_n_checks: draw reliability diagrams in TensorBoard every that many checks,
            and always once at the end of fit (0 = never). Drawing costs far more than a check
            (about 0.5 s a diagram on 2 CPU cores), hence the default of 10.
        on_error: ``"warn"`` (default: a failing check is logged as a warning and skipped, training
            goes on) or ``"raise"``.
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
        figure_every_n_checks: int = 10,
        on_error: str = "warn",
    ) -> None:
        super().__init__()
        self.probe = _load_probe("probe", probe)
        if self.probe is None:
            raise ValueError("`probe` is required: a W2SProbe or a path to a saved one")
        self.train_probe = _load_probe("train_probe", train_probe)
        if self.train_probe is not None and self.train_probe.num_classes != self.probe.num_classes:
            raise ValueError(
                f"`train_probe` has {self.train_probe.num_classes} classes but `probe` has {self.probe.num_classes}"
            )
        self.layer = layer
        self.teacher_score = _check_score("teacher_score", teacher_score)
        self.ceiling_score = _check_score("ceiling_score", ceiling_score)
        check_choice("capture", capture, ("auto", "input", "output"))
        self.capture, self.pooling = capture, pooling
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        if not (0 < eps < 0.5):
            raise ValueError(f"`eps` must lie in (0, 0.5), got {eps!r}")
        self.eps = eps
        check_choice("student_output", student_output, ("logits", "probs"))
        self.student_output = student_output
        self.forward_fn = forward_fn or default_forward
        if every_n_train_steps is not None and (not isinstance(every_n_train_steps, int) or every_n_train_steps < 1):
            raise ValueError(f"`every_n_train_steps` must be None or a positive int, got {every_n_train_steps!r}")
        self.every_n_train_steps = every_n_train_steps
        check_choice("on_error", on_error, ("warn", "raise"))
        self.on_error = on_error
        self.alerts = AlertTracker(window=alert_window, min_gain=min_gain)

        if self.teacher_score is not None and self.ceiling_score is not None and self.ceiling_score <= self.teacher_score:
            rank_zero_warn(
                f"W2SMonitor: `ceiling_score`={self.ceiling_score} <= `teacher_score`={self.teacher_score}: PGR is "
                "undefined (no room above the teacher) and will not be logged"
            )
        if not isinstance(neighbours, int) or neighbours < 0:
            raise ValueError(f"`neighbours` must be an int >= 0 (0 turns the robustness statistics off), got {neighbours!r}")
        self.num_neighbours = neighbours
        if not isinstance(figure_every_n_checks, int) or figure_every_n_checks < 0:
            raise ValueError(f"`figure_every_n_checks` must be an int >= 0 (0 = never), got {figure_every_n_checks!r}")
        self.figure_every_n_checks = figure_every_n_checks
        p = self.probe
        self.metrics = W2SMetrics(
            p.num_classes, eps=eps, gold=p.gold, covered=p.covered, teacher_probs=p.teacher_probs,
            teacher_features=p.teacher_features, teacher_score=self.teacher_score, ceiling_score=self.ceiling_score,
            eta=eta,
        )
        self.train_metrics = (
            W2SMetrics(p.num_classes, eps=eps, misfit_only=True) if self.train_probe is not None else None
        )
        self._capture: FeatureCapture | None = None
        self._last_step_checked = -1
        self._writer = None
        self._layout_names: set[str] = set()
        self._figures_step = -1
        # state that a resume needs (see state_dict)
        self.num_checks = 0
        self.num_skipped = 0
        self.last_values: dict[str, float] = {}
        self.warnings_log: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ identity & state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer, probe_n=self.probe.n, train_probe=self.train_probe is not None)

    def expected_names(self) -> set[str]:
        """The ``w2s/...`` names a successful check logs under this configuration (values that are
        undefined at a given check, e.g. a rate with an empty conditioning set, are left out then).
        ``W2SEarlyStopping`` reads this at fit start to fail before training when a policy needs a
        name that will never be logged."""
        misfit = ["kl_teacher_student", "kl_student_teacher", "disagreement", "sq", "disagreement_lower", "disagreement_upper"]
        names = {f"w2s/misfit/{m}" for m in misfit} | {
            "w2s/prediction/max_class_share", "w2s/prediction/teacher_max_class_share",
            "w2s/calibration/ece_vs_teacher", "w2s/calibration/mce_vs_teacher", "w2s/bounds/predicted_gain",
            "w2s/representation/effective_rank", "w2s/skipped",
        }
        if self.train_probe is not None:
            names |= {f"w2s/train_misfit/{m}" for m in misfit}
        p = self.probe
        if p.has_gold:
            names |= {"w2s/gold/accuracy", "w2s/gold/teacher_accuracy", "w2s/calibration/ece_vs_gold",
                      "w2s/calibration/mce_vs_gold", "w2s/gold/sq_gain"}
            if self.teacher_score is not None and self.ceiling_score is not None and self.ceiling_score > self.teacher_score:
                names.add("w2s/gold/pgr")
        if p.has_gold or self.teacher_score is not None:
            names |= {"w2s/bounds/accuracy_lower", "w2s/bounds/accuracy_upper"}
        if p.teacher_features is not None:
            names |= {"w2s/representation/gap_fro", "w2s/representation/gap_op", "w2s/representation/cka"}
        if self.num_neighbours and p.n > 2:
            names |= {"w2s/robustness/inconsistency", "w2s/robustness/p_nonrobust_bound"}
        return names

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_checks": self.num_checks,
            "num_skipped": self.num_skipped,
            "last_values": dict(self.last_values),
            "alerts": self.alerts.state_dict(),
            "warnings_log": list(self.warnings_log),
            "metrics": self.metrics.state_dict_extra(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_checks = int(state_dict.get("num_checks", 0))
        self.num_skipped = int(state_dict.get("num_skipped", 0))
        self.last_values = dict(state_dict.get("last_values", {}))
        self.alerts.load_state_dict(state_dict.get("alerts", {}))
        self.warnings_log = list(state_dict.get("warnings_log", []))
        self.metrics.load_state_dict_extra(state_dict.get("metrics", {}))

    # ------------------------------------------------------------------ lifecycle
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # resolves the layer now: an unknown name fails at fit start, listing close matches
        self._capture = FeatureCapture(pl_module, layer=self.layer, capture=self.capture, pooling=self.pooling).attach()
        if trainer.is_global_zero:
            log.info("W2SMonitor: student representation = %s", self._capture.describe())

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._capture is not None:
            self._capture.detach()
            self._capture = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        device = pl_module.device
        self.metrics.to(device)
        if self.train_metrics is not None:
            self.train_metrics.to(device)
        # one tiny forward pass on every rank (same count everywhere) to check shapes before training;
        # eval + no_grad, so a BatchNorm counts no batch and a 1-point probe works
        with eval_mode(pl_module):
            probs, feats = self._forward(trainer, pl_module, self.probe, torch.arange(min(2, self.probe.n)))
        k = self.probe.num_classes
        if probs.ndim != 2 or probs.shape[1] != k:
            raise ValueError(
                f"the student's output has shape {tuple(probs.shape)} on the probe but the teacher has {k} classes "
                f"(`probe` num_classes={k}); expected (batch, {k}). Use `forward_fn=` if the model's forward "
                "does not return logits"
            )
        if feats.ndim != 2:
            raise ValueError(f"the captured representation must be (batch, d), got {describe(feats)}; choose `pooling=`")
        if self.num_neighbours and self.probe.n > 2 and self.metrics.neighbours is None:
            table = self._neighbour_table(trainer, pl_module)
            if table is not None:
                self.metrics.set_neighbours(table)
        self._writer = tensorboard_writer(trainer.loggers) if trainer.is_global_zero else None
        self._layout_names: set[str] = set()
        if trainer.is_global_zero:
            band = (
                "exact: teacher accuracy and disagreement on the same covered gold probe points"
                if self.probe.has_gold
                else "approximate: user-given `teacher_score` ± held-out disagreement (up to the score's sampling error)"
                if self.teacher_score is not None
                else None
            )
            if band:
                log.info("W2SMonitor: accuracy band w2s/bounds/accuracy_lower|upper is %s", band)

    def _neighbour_table(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        """k-NN table in a frozen embedding: the teacher's features, else the student's at fit start.
        Built once on rank 0 and broadcast, so every rank indexes the same neighbours."""
        k = min(self.num_neighbours, self.probe.n - 1)
        table = None
        if trainer.is_global_zero:
            try:
                table = self._build_neighbour_table(trainer, pl_module, k)
            except Exception as exc:  # noqa: BLE001 - robustness statistics are optional
                if self.on_error == "raise":
                    raise
                rank_zero_warn(f"W2SMonitor: could not build the neighbour table ({type(exc).__name__}: {exc}); "
                               "Lang robustness/expansion statistics are off for this fit")
        return trainer.strategy.broadcast(table, src=0)  # None on failure: every rank turns them off

    def _build_neighbour_table(self, trainer: Trainer, pl_module: LightningModule, k: int) -> torch.Tensor:
        if self.probe.teacher_features is not None:
            try:
                return knn_indices(self.probe.teacher_features.double(), k=k)
            except ValueError as exc:  # e.g. a rule teacher's keyword counts: many all-zero rows
                rank_zero_warn(
                    f"W2SMonitor: the teacher's features cannot define neighbourhoods ({exc}); the neighbour "
                    "table uses the student's representation at fit start instead"
                )
        with eval_mode(pl_module):
            emb = torch.cat([
                self._forward(trainer, pl_module, self.probe, idx)[1].cpu()
                for idx, _ in self.probe.shard(0, 1, self.batch_size)
            ])
        return knn_indices(emb.double(), k=k)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.every_n_train_steps:
            return
        self._run_check(trainer, pl_module, on_step=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.enable_validation and not self.every_n_train_steps:
            self._run_check(trainer, pl_module, on_step=False)  # no validation loop: check once per epoch

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step > 0 and trainer.global_step % n == 0 and trainer.global_step != self._last_step_checked:
            self._last_step_checked = trainer.global_step  # gradient accumulation: one check per optimizer step
            self._run_check(trainer, pl_module, on_step=True)

    # ------------------------------------------------------------------ the check
    def _forward(self, trainer: Trainer, pl_module: LightningModule, probe: W2SProbe, index: torch.Tensor):
        batch = move_data_to_device(probe.input_batch(index), pl_module.device)
        # a probe saved in another float precision than the model (e.g. float64 numpy features for a
        # float32 model) is cast to the model's dtype; integer inputs (token ids, masks) are left alone
        batch = apply_to_collection(batch, torch.Tensor, lambda t: t.to(pl_module.dtype) if t.is_floating_point() else t)
        self._capture.set_batch(batch)
        with trainer.precision_plugin.forward_context():
            out = self.forward_fn(pl_module, batch)
        feats = self._capture.pop()
        out = out.double()  # cast before anything enters a sum state (bf16/fp16 runs included)
        probs = torch.softmax(out, dim=-1) if self.student_output == "logits" else out
        return probs, feats.double()

    def _run_check(self, trainer: Trainer, pl_module: LightningModule, on_step: bool) -> None:
        """One check. DDP: every rank runs the same forward calls and the same collectives, even when
        its own probe pass failed (a rank that skipped a collective would hang the others); whether
        the check is kept is then decided jointly with ``reduce_boolean_decision``."""
        failure: BaseException | None = None
        values: dict[str, torch.Tensor] = {}
        try:
            with eval_mode(pl_module):
                jobs = [("", self.probe, self.metrics)]
                if self.train_probe is not None:
                    jobs.append(("train_", self.train_probe, self.train_metrics))
                for prefix, probe, metrics in jobs:
                    metrics.reset()
                    try:
                        self._probe_pass(trainer, pl_module, probe, metrics)
                    except Exception as exc:  # noqa: BLE001 - kept, collectives still run below
                        failure = failure or exc
                    values.update({f"w2s/{prefix}{k}": v for k, v in metrics.compute().items()})  # syncs ranks
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
        if failure is not None and self.on_error == "raise":
            raise failure
        any_failed = trainer.strategy.reduce_boolean_decision(failure is not None, all=False)
        if any_failed:
            self.num_skipped += 1
            reason = f"{type(failure).__name__}: {failure}" if failure is not None else "a failure on another rank"
            rank_zero_warn(f"W2SMonitor: check {self.num_checks} failed and was skipped ({reason}); training goes on")
            self._log(trainer, pl_module, {"w2s/skipped": float(self.num_skipped)}, on_step)
            return
        self.num_checks += 1
        self._log_values(trainer, pl_module, values, on_step)

    def _probe_pass(self, trainer: Trainer, pl_module: LightningModule, probe: W2SProbe, metrics: W2SMetrics) -> None:
        for index, valid in probe.shard(trainer.global_rank, trainer.world_size, self.batch_size):
            probs, feats = self._forward(trainer, pl_module, probe, index)
            metrics.update(probs, feats, probe.batch(index, valid).to(pl_module.device))

    @staticmethod
    def _log(trainer: Trainer, pl_module: LightningModule, values: dict[str, float], on_step: bool) -> None:
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

    def _log_values(self, trainer: Trainer, pl_module: LightningModule, values: dict[str, torch.Tensor], on_step: bool) -> None:
        """Log finite values; a non-finite one is a numerical fault: warned about, skipped, counted."""
        logged, bad = {}, []
        for name, value in values.items():
            v = float(value)
            if math.isfinite(v):
                logged[name] = v
            else:
                bad.append(name)
        if bad:
            self.num_skipped += len(bad)
            rank_zero_warn(
                f"W2SMonitor: non-finite value(s) at check {self.num_checks} skipped (not logged): {', '.join(bad)}. "
                "Usual causes: NaN/Inf in the student's outputs or features, or a rank-degenerate representation"
            )
        logged["w2s/skipped"] = float(self.num_skipped)
        self._log(trainer, pl_module, logged, on_step)
        # Lightning keeps the last value of every name in callback_metrics: a value that is
        # undefined at this check (or skipped as a fault) must not be read as if it were current
        for name in set(self.last_values) - set(logged):
            trainer.callback_metrics.pop(name, None)
        self.last_values = logged
        new_alerts = self.alerts.update(logged)
        for alert in new_alerts:
            self.warnings_log.append({"check": self.num_checks, "step": trainer.global_step, **alert.as_dict()})
            rank_zero_warn(f"W2SMonitor [{alert.regime}]: {alert.message}")
        if self._writer is not None:
            try:
                self._write_tensorboard(trainer, logged, new_alerts)
            except Exception as exc:  # noqa: BLE001 - a drawing problem never stops training
                rank_zero_warn(f"W2SMonitor: TensorBoard extras failed at check {self.num_checks}: {exc}")

    def _write_figures(self, step: int) -> None:
        for tag, hist in self.metrics.extras.items():
            if tag.startswith("reliability/"):
                write_reliability(self._writer, f"w2s/{tag}", hist[0], hist[1], hist[2], step=step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The last check's reliability diagrams, unless they were drawn at that check already."""
        if self._writer is None or not self.figure_every_n_checks or not self.num_checks:
            return
        if self._figures_step != trainer.global_step:
            try:
                self._write_figures(trainer.global_step)
                self._writer.flush()
            except Exception as exc:  # noqa: BLE001 - a drawing problem never costs the fit
                rank_zero_warn(f"W2SMonitor: reliability diagrams at fit end failed: {exc}")

    def _write_tensorboard(self, trainer: Trainer, logged: dict[str, float], alerts: list) -> None:
        """Rank 0 only: the custom-scalars layout (rewritten when new names appear), reliability
        diagrams from the reduced histogram states, warnings as markdown."""
        step = trainer.global_step
        names = set(logged)
        if not names <= self._layout_names:
            self._layout_names |= names
            write_layout(self._writer, sorted(self._layout_names))
        n = self.figure_every_n_checks
        if n and (self.num_checks - 1) % n == 0:
            self._write_figures(step)
            self._figures_step = step
        if alerts:
            write_markdown(self._writer, "w2s/warnings", format_warnings([a.as_dict() for a in alerts]), step=step)
        self._writer.flush()
