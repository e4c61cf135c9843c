"""``W2SEarlyStopping``: stop weak-to-strong training from the monitor's label-free signals.

docs/theory.md §3. Like Lightning's own :class:`~lightning.pytorch.callbacks.EarlyStopping` (its base
class), the callback does not talk to :class:`~lightning_w2s.W2SMonitor`: it reads the ``w2s/...``
values that the monitor logged into ``trainer.callback_metrics``, once per monitor check (the
monitor's ``w2s/check`` counter tells a new check from an old one), keeps its own history, decides
with :class:`~lightning_w2s.stopping.policies.StoppingPolicies` (the rules of :mod:`lightning_w2s.stopping.rules`),
and routes every decision through ``trainer.strategy.reduce_boolean_decision`` so that all DDP
ranks stop together.

Every rule here is a **stopping heuristic**: none is a theorem about the student's gold accuracy.
Where a rule rests on a result, the docstring of :class:`W2SEarlyStopping` gives the source and its
certainty tag (docs/theory.md's [paper]/[derived]/[recalled]).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_w2s.validation import check_scalar
from lightning_w2s.callbacks._best_weights import _BestWeights
from lightning_w2s.dashboard.loggers import TextSink
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.stopping.policies import POLICIES, StoppingPolicies, W2SStoppingReason

__all__ = ["POLICIES", "W2SEarlyStopping", "W2SStoppingReason"]

TEXT_TAG = "w2s/early_stopping"


class W2SEarlyStopping(_BestWeights, StoppingPolicies, EarlyStopping):
    """Stop weak-to-strong training on label-free signals logged by :class:`~lightning_w2s.W2SMonitor`.

    The callback reads ``trainer.callback_metrics`` after the monitor has logged (docs/architecture.md), once
    per monitor check whatever the monitor's cadence (validation epochs, training epochs or every
    ``n`` optimizer steps): the monitor logs a check counter ``w2s/check``, and each new value of it
    is one history entry. It updates each policy and stops when the policies say so (``mode``). The
    decision goes through ``trainer.strategy.reduce_boolean_decision(..., all=False)``: under DDP the
    fit stops on every rank as soon as any rank decides to stop. Without a monitor's counter (values
    logged by your own code) it reads at ``on_validation_end`` when the Trainer has a validation
    loop, at ``on_train_epoch_end`` otherwise (``check_on_train_epoch_end`` overrides), like
    Lightning's ``EarlyStopping``.

    Policies (docs/theory.md §3): the stopping rules of :mod:`lightning_w2s.stopping.rules`, whose docstrings give each
    definition, source and certainty tag; all are stopping *heuristics*, none a guarantee on gold
    accuracy. Figures: mean gold-accuracy regret on the stopping benchmark's report seeds (docs/benchmarks.md
    "Stopping"), and the paired difference with what users run today, Lightning's
    ``EarlyStopping(val_loss, patience=3)`` + ``ModelCheckpoint(val_loss)`` restored (1.45 pt), with its
    95% CI.

    - ``"heldout_misfit_plateau"`` (**default**, on ``misfit``, default ``teacher_label_ce``): no
      improvement beyond ``min_delta`` for ``patience`` checks. 1.20 pt, Δ −0.25 [−0.69, +0.18].
    - ``"teacher_overfit"`` (needs a train probe): the train-probe misfit fell while the held-out one
      rose for ``patience`` checks, or their ratio stayed under ``kappa``. 1.21 pt, Δ −0.25
      [−0.68, +0.18]: it restores the default's best check and adds nothing.
    - ``"gain_exhausted"`` (needs ``min_gain``, given once: here or to ``W2SMonitor``): the logged
      maximum gain under ``min_gain − min_delta`` for ``patience`` checks [derived bound, for the
      target gain you give]. 3.24 pt at ``min_gain=0.05``, Δ +1.79 [+0.55, +3.02]: the bound says
      when a target gain is out of reach, not when the student is best.
    - ``"robustness_drop"``: γ̂ rose while held-out disagreement fell for ``patience`` checks (Lang
      et al. Prop 4.1). 4.04 pt, Δ +2.59 [+1.07, +4.10].

    Only the default is recommended as a stopping rule; each rule's best check (the weights
    ``restore_best`` keeps) is defined in :mod:`lightning_w2s.stopping.rules`.

    Why this default: the stopping benchmark chose it (``make bench-stopping``; docs/benchmarks.md "Stopping"
    gives the tasks, the protocol and every figure). On the report seeds it leaves 1.20 pt of regret
    against 1.45 pt for ``EarlyStopping`` + ``ModelCheckpoint`` restored: **a tie, not a win**
    (Δ −0.25 pt [−0.69, +0.18]). For a teacher with hard labels ``teacher_label_ce`` equals
    ``kl_teacher_student``; with soft teacher probabilities the KL rewards copying the teacher's
    confidence, and was a bad signal there.

    Warm-up: a check made while ``trainer.current_epoch < min_epochs`` or
    ``trainer.global_step < min_steps`` is recorded (it can set the best value and the "previous"
    values of trend rules) but never counts toward patience and never stops: the first stop can come
    ``patience`` checks after the warm-up ends.

    Missing values: a policy votes only at a check where every name it needs was logged *at that
    check* with a finite value (the monitor removes from ``trainer.callback_metrics`` every name it
    did not log at its latest check, failed checks included); a missing or non-finite value means a
    warning, no counter change, no vote. So a failed monitor check never stops the student.

    Needs checked before training (``setup``): callbacks exposing ``expected_names() -> set[str]``
    (the ``w2s/...`` names they can log) are asked. A name that will not be logged raises a
    ``RuntimeError`` naming it and what to do (``strict=True``) or warns (``strict=False``). Names
    nobody vouched for are checked at the first check that has ``w2s/`` values, like Lightning's
    ``EarlyStopping``.

    Resume: the checkpoint keeps the history, counters and best check (and, by default with
    ``restore_best``, the kept weights: ``save_best_weights``), and the fingerprint of the monitor's probe and
    configuration. A resumed fit whose monitor differs (another probe, layer,
    ``eps``, ...) warns and starts this callback's history afresh: two probes' misfits are never
    compared.

    Lightning's ``EarlyStopping`` is the base class (``trainer.early_stopping_callback`` finds this
    callback, and Lightning runs its ``on_train_epoch_end`` after the other callbacks'): its
    attributes keep their meaning for the first policy's first quantity (``monitor``: the held-out
    ``teacher_label_ce`` for the default, the logged maximum gain for ``gain_exhausted``;
    ``patience`` and ``min_delta`` the largest of the policies', ``wait_count`` the largest counter,
    ``best_score`` the first policy's best value), and its own methods work on them.

    Args:
        policy: a policy name or a list of names (see above).
        patience: checks a policy's condition must hold (or, for the plateau, checks without
            improvement) before it votes to stop; an int or ``{policy: int}``; ``>= 1``.
        min_delta: the margin of every comparison (improvement, rise, fall, threshold); a float or
            ``{policy: float}``; ``>= 0``.
        min_epochs: warm-up in epochs (see above).
        min_steps: warm-up in optimizer steps (``trainer.global_step``).
        mode: ``"any"`` (stop when one policy votes) or ``"all"`` (stop when every policy votes at
            the same check).
        min_gain: target gain in 0/1 accuracy for ``gain_exhausted``, in (0, 1]; ``None`` takes the
            monitor's ``min_gain`` at fit start (giving both with different values is an error).
        kappa: ratio threshold of ``teacher_overfit``, in (0, 1]; ``None`` disables the ratio branch.
            The default 0.5 (train-probe misfit under half the held-out misfit) is a heuristic.
        misfit: which misfit the plateau and overfit rules read: one of ``teacher_label_ce``
            (default), ``kl_teacher_student``, ``kl_student_teacher``, ``disagreement``, ``sq``
            (``sq`` is the only one a regression probe logs: pass ``misfit="sq"`` there).
        restore_best: keep a CPU copy of the student's ``state_dict`` at the check the policy judges
            best (:attr:`restore_check`; for the default, the first check of the lowest held-out
            ``teacher_label_ce``) and load it at the end of training, in ``on_train_end`` — whether
            this callback stopped the fit or the fit ended otherwise (``max_epochs``, another
            callback), as loading ``ModelCheckpoint``'s best checkpoint would — on every rank, and
            after the last checkpoint is written (checkpoints keep the trained weights and the
            optimizer state that belongs to them). The console says which check's weights came
            back. **Memory: one CPU copy of the student's** ``state_dict`` (the model's size in host
            memory; a new best check's copy replaces the old one, which is freed first); with
            several policies, one per distinct best check. ``False``: no copy, the last weights are
            kept. Under a strategy that shards the weights (FSDP, ModelParallel, DeepSpeed ZeRO-3:
            the strategy builds ``lightning_module_state_dict`` itself) a plain copy could not restore
            them: the restore is switched off for that fit with a warning that names the fix
            (``ModelCheckpoint``) and ``restore_best=False`` (which silences it).
        save_best_weights: also put that copy into the checkpoint's callback state, so that a
            resumed fit still ends with the best check's weights when that check came before the
            resume (what the benchmarked rule does). ``None`` (default) = ``restore_best``. **Cost:**
            each checkpoint grows by one copy of the student's ``state_dict`` (the same size as the
            weights ``ModelCheckpoint``'s best file holds). ``False``: leaner checkpoints; after a
            resume, a best check from before it cannot be restored and the message says so.
        verbose: log every check's decision on rank 0 at debug level (``rank_zero_debug``); the stop
            message and the restored check always reach the console (``rank_zero_info``).
        strict: raise (``True``) or warn (``False``) when a needed name is not logged.
        check_on_train_epoch_end: where to read values that come without a monitor's ``w2s/check``
            counter (your own code's): ``None`` = validation end when there is a validation loop,
            else train epoch end; ``True``/``False`` force the train-epoch-end / validation-end hook.

    Attributes:
        stopped_epoch: epoch at which this callback stopped the fit (0 if it did not).
        stopped_check: index of that check (``None`` if not stopped).
        stopping_reason: a :class:`W2SStoppingReason`.
        stopping_reason_message: a human-readable message (also on the console through Lightning's
            ``rank_zero_info`` and as text ``w2s/early_stopping`` in every logger that takes text, or
            in the ``w2s_report.md`` of its folder: :class:`~lightning_w2s.dashboard.loggers.TextSink`).
        triggered_policies: the policies that voted at the stopping check.
        history: one dict per check: ``check``, ``epoch``, ``step``, ``warmup``, ``values``
            (the fresh ``w2s/...`` values used), ``votes`` (policies voting to stop), ``stop``.
        best_check: the check whose weights are restored: set at a stop, and at the end of training
            to the check whose weights ``restore_best`` loaded (``None`` until then).
        restore_check: the check whose weights ``restore_best`` would restore now.

    >>> es = W2SEarlyStopping(patience=2, verbose=False)
    >>> [es.evaluate({Q.TEACHER_LABEL_CE: x}, epoch=i)[0] for i, x in enumerate([0.5, 0.6, 0.7])]
    [False, False, True]
    >>> es.restore_check, es.history[-1]["votes"]
    (0, ['heldout_misfit_plateau'])
    """

    def __init__(
        self,
        policy: str | Sequence[str] = "heldout_misfit_plateau",
        patience: int | Mapping[str, int] = 5,
        min_delta: float | Mapping[str, float] = 0.0,
        min_epochs: int = 0,
        min_steps: int = 0,
        mode: str = "any",
        min_gain: float | None = None,
        kappa: float | None = 0.5,
        misfit: str = "teacher_label_ce",
        restore_best: bool = True,
        save_best_weights: bool | None = None,
        verbose: bool = True,
        strict: bool = True,
        check_on_train_epoch_end: bool | None = None,
    ) -> None:
        self._init_policies(policy, patience, min_delta, min_epochs, min_steps, mode, min_gain, kappa, misfit)
        combine = self.mode
        # EarlyStopping's own attributes, for the first policy's quantity; every quantity read here is
        # lower-is-better ("min"), and its `mode` then names how the policies combine ("any"/"all")
        EarlyStopping.__init__(
            self, monitor=self._policies[0].needs()[0], min_delta=max(self.min_delta_per_policy.values()),
            patience=max(self.patience_per_policy.values()), verbose=check_scalar("verbose", verbose, bool), mode="min",
            strict=check_scalar("strict", strict, bool), check_finite=False,
            check_on_train_epoch_end=check_scalar("check_on_train_epoch_end", check_on_train_epoch_end, bool, allow_none=True),
            log_rank_zero_only=True,
        )
        self.mode = combine
        self.restore_best = check_scalar("restore_best", restore_best, bool)
        save = check_scalar("save_best_weights", save_best_weights, bool, allow_none=True)
        self.save_best_weights = self.restore_best if save is None else save
        if self.save_best_weights and not self.restore_best:
            raise ValueError("`save_best_weights=True` only makes sense with `restore_best=True`")
        self._restore_active = self.restore_best  # off for a fit whose strategy shards the weights (setup)
        self._reset_state()

    def _reset_state(self) -> None:
        self.reset_decisions()
        self._last_check: float | None = None  # the monitor's w2s/check at the latest history entry
        self._counted = False  # a callback logs w2s/check: follow it
        self._sources: dict[str, str] | None = None  # fingerprints of the w2s sources (resume check)
        self._loaded_sources: dict[str, str] | None = None
        self._pending: set[str] = set(self.needed)  # names nobody vouched for yet
        self._warned_missing: set[str] = set()

    # ------------------------------------------------------------------ identity & state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(policy=list(self.policies), mode=self.mode, misfit=self.misfit)

    @property
    @override
    def monitor_op(self):  # every quantity read here is lower-is-better
        return torch.lt

    @override
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed fit needs to decide identically (only primitives, lists, dicts and,
        with ``save_best_weights``, tensors: loadable with ``torch.load(weights_only=True)``)."""
        return {**self.decisions_state_dict(self.save_best_weights), "last_check": self._last_check, "sources": self._sources}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.load_decisions_state_dict(state_dict)
        self._last_check = state_dict.get("last_check")
        self._loaded_sources = state_dict.get("sources")
        self._reconcile_sources()

    def _reconcile_sources(self) -> None:
        """A checkpoint made with another probe or monitor configuration: warn and start afresh."""
        old, new = self._loaded_sources, self._sources
        if old is None or new is None or old == new:
            return
        kept = (self._sources, self._counted, self._pending)
        self._reset_state()
        self._sources, self._counted, self._pending = kept
        rank_zero_warn(
            "W2SEarlyStopping: the checkpoint's history was made with another probe or monitor configuration "
            f"(fingerprints {old} then, {new} now); its history, counters and best check start afresh so that two "
            "probes' values are never compared"
        )

    # ------------------------------------------------------------------ fit start: are the needs met?
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._warned_missing = set()
        sources = [cb for cb in trainer.callbacks if cb is not self and callable(getattr(cb, "expected_names", None))]
        will_log = set().union(*(set(cb.expected_names()) for cb in sources))
        self._counted = Q.CHECK in will_log
        self._arm_restore(trainer.strategy)
        self._sources = {cb.state_key: cb.fingerprint for cb in sources if isinstance(getattr(cb, "fingerprint", None), str)}
        self.resolve_min_gain({float(cb.min_gain) for cb in sources if getattr(cb, "min_gain", None) is not None})
        self._pending = set(self.needed) - will_log
        missing = sorted(self._pending) if sources else []
        if missing:
            self._needs_unmet(missing, "before training: the callbacks attached will not log them")
        self._reconcile_sources()

    def _needs_unmet(self, missing: list[str], when: str, available: Sequence[str] | None = None) -> None:
        msg = self.unmet_message(missing, when, available)
        if self.strict:
            raise RuntimeError(msg)
        rank_zero_warn(msg, category=RuntimeWarning)

    # ------------------------------------------------------------------ hooks: once per monitor check
    @override
    def _should_skip_check(self, trainer: Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _follow(self, trainer: Trainer, pl_module: LightningModule, stock_hook: bool) -> None:
        """Run a check when the monitor made a new one since the last (``w2s/check`` changed); without
        a counter, at the hook where Lightning's ``EarlyStopping`` would (``stock_hook``)."""
        if self._should_skip_check(trainer):
            return
        if not self._counted:
            if stock_hook:
                self._run_early_stopping_check(trainer, pl_module)
            return
        check = trainer.callback_metrics.get(Q.CHECK)
        if check is not None and float(check) != self._last_check:
            self._last_check = float(check)
            self._run_early_stopping_check(trainer, pl_module)

    def on_w2s_check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called by the monitor right after it publishes a check (any cadence: epochs or optimizer
        steps): read it now, wherever this callback is listed. The epoch hooks below then find the
        same ``w2s/check`` and do nothing; they read values logged without a monitor's call."""
        if self._counted:
            self._follow(trainer, pl_module, stock_hook=False)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        on_train_end = self._check_on_train_epoch_end
        self._follow(trainer, pl_module, stock_hook=on_train_end is True or (on_train_end is None and not trainer.enable_validation))

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._follow(trainer, pl_module, stock_hook=self._check_on_train_epoch_end is not True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``restore_best``: load the kept weights of :attr:`restore_check`, whether this callback
        stopped the fit or the fit ended otherwise (``max_epochs``, another callback), as
        ``ModelCheckpoint``'s best checkpoint would be; every rank loads its own copy."""
        self._restore_best_weights(pl_module)

    # ------------------------------------------------------------------ one check
    def _read_values(self, trainer: Trainer) -> tuple[dict[str, float], list[str], list[str]]:
        """Finite values of the needed names, the missing ones, and the ``w2s/`` measurements present
        (bookkeeping names excluded)."""
        metrics = trainer.callback_metrics
        present = [k for k in metrics if k.startswith(Q.PREFIX + "/") and k not in (Q.SKIPPED, Q.CHECK)]
        read = {n: float(metrics[n]) for n in self.needed if n in metrics}  # one host read per name
        values = {n: v for n, v in read.items() if math.isfinite(v)}
        return values, [n for n in self.needed if n not in values], present

    @override
    def _run_early_stopping_check(self, trainer: Trainer, pl_module: LightningModule | None = None) -> None:
        """One check on every rank: read, evaluate, snapshot, reduce the decision across ranks, act.

        Every rank reaches the collective ``reduce_boolean_decision`` at every check, whatever its
        values, so a rank with a missing value cannot deadlock the others.
        """
        pl_module = pl_module if pl_module is not None else trainer.lightning_module
        values, missing, present = self._read_values(trainer)
        if self._pending and (present or not self._counted):  # first check: names nobody vouched for
            unmet = sorted(n for n in self._pending if n in missing)
            self._pending = set()
            if unmet:
                self._needs_unmet(unmet, f"not in trainer.callback_metrics at check {len(self.history)}", present)
        if missing:
            self._warn_missing(missing)
        should_stop, reason, message = self.evaluate(values, epoch=trainer.current_epoch, global_step=trainer.global_step)
        if self._restore_active:
            self.keep_snapshot(pl_module.state_dict)
        local_stop = should_stop
        should_stop = bool(trainer.strategy.reduce_boolean_decision(should_stop, all=False))
        if should_stop:  # the same collective on every rank that stops: the reason of the rank that decided
            code = int(trainer.strategy.reduce(torch.tensor(reason.value, device=trainer.strategy.root_device), reduce_op="max"))
            if not local_stop:
                reason = W2SStoppingReason(code)
                message = (
                    f"{reason.name.lower()} was decided on another rank; this rank's own values did not trigger it "
                    "(the w2s values differ between ranks, which W2SMonitor's synced metrics should prevent)"
                )
        self.history[-1]["stop"] = should_stop  # the fit's decision, after the reduction over ranks
        if not should_stop:
            if self.verbose:
                rank_zero_debug(self.status_line())
            return
        self._stop(trainer, reason, message)

    def _stop(self, trainer: Trainer, reason: W2SStoppingReason, message: str | None) -> None:
        trainer.should_stop = True
        self.stopped_epoch = trainer.current_epoch
        self.stopped_check = len(self.history) - 1
        self.stopping_reason = reason
        self.best_check = self.restore_check
        full = self.stop_message(f"epoch {trainer.current_epoch}, step {trainer.global_step}", message, self._restore_active)
        self.stopping_reason_message = full
        rank_zero_info(full)
        TextSink.of(trainer).write(TEXT_TAG, f"**{reason.name}**\n\n{full}", step=trainer.global_step)  # rank 0's loggers

    def _warn_missing(self, missing: list[str]) -> None:
        new = [n for n in missing if n not in self._warned_missing]
        if not new:
            return
        self._warned_missing |= set(new)
        skipped = [p.name for p in self._policies if any(n in missing for n in p.needs())]
        rank_zero_warn(
            f"W2SEarlyStopping: no fresh finite value for {new} at check {len(self.history)} (not logged at this "
            f"check, or NaN/Inf); policies {skipped} do not vote at such checks (warned once per name)",
            category=RuntimeWarning,
        )

    def __repr__(self) -> str:
        return f"W2SEarlyStopping(policy={self.policies}, mode={self.mode!r}, patience={self.patience_per_policy})"
