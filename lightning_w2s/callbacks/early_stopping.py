"""``W2SEarlyStopping``: stop weak-to-strong training from the monitor's label-free signals.

docs/stopping.md, docs/theory.md §3. Like Lightning's own :class:`~lightning.pytorch.callbacks.EarlyStopping`
(its base class), the callback does not talk to :class:`~lightning_w2s.W2SMonitor`: it reads the
``w2s/...`` values that the monitor logged into ``trainer.callback_metrics``, once per monitor check
(the monitor's ``w2s/check`` counter tells a new check from an old one), and hands them to the
objects it holds: a :class:`~lightning_w2s.stopping.decision.StoppingDecision` (``.decision``: the
rules, counters, history and best check) and a
:class:`~lightning_w2s.callbacks.best_weights.BestWeights` (``.best_weights``: the copy restored at
the end). Every decision goes through ``trainer.strategy.reduce_boolean_decision`` so that all DDP
ranks stop together. Works under a ``lightning.pytorch`` and a ``pytorch_lightning`` ``Trainer``.

Every rule here is a **stopping heuristic**: none is a theorem about the student's gold accuracy.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_w2s.callbacks.best_weights import BestWeights
from lightning_w2s.dashboard.loggers import TextSink
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.validation import check_scalar
from lightning_w2s.namespaces import NAMESPACES, namespace_of
from lightning_w2s.stopping.decision import StoppingDecision
from lightning_w2s.stopping.gold_rule import GoldRule, GoldSelection, gold_default_for
from lightning_w2s.stopping.policies import POLICIES, make_policies, unmet_message
from lightning_w2s.stopping.rules import W2SStoppingReason

__all__ = ["POLICIES", "W2SEarlyStopping", "W2SStoppingReason"]

TEXT_TAG = "w2s/early_stopping"


def _namespace(trainer: Any) -> str:
    """``"pytorch_lightning"`` for a Trainer of the standalone package, else ``"lightning.pytorch"``
    (the two packages ship the same classes under two names: :mod:`lightning_w2s.namespaces`)."""
    return namespace_of(trainer) or NAMESPACES[0]


_TWINS: dict[type, type] = {}


def _namespace_class(cls: type, namespace: str) -> type:
    """``cls``, or a subclass of it that is also ``namespace``'s ``EarlyStopping``.

    ``trainer.early_stopping_callback`` is ``isinstance(cb, EarlyStopping)`` with the Trainer's own
    namespace's class. ``W2SEarlyStopping`` subclasses ``lightning.pytorch``'s; under a
    ``pytorch_lightning`` Trainer the callback takes (at ``setup``) a class that adds
    ``pytorch_lightning``'s ``EarlyStopping`` as a second base, after every ``lightning.pytorch``
    class, so every method still resolves to the same code. Same name, state key and behaviour;
    pickled as ``cls``. ``pytorch_lightning`` is imported only when its Trainer is used.
    """
    if namespace == "lightning.pytorch":
        return cls
    other = importlib.import_module(f"{namespace}.callbacks").EarlyStopping
    if issubclass(cls, other):
        return cls
    if cls not in _TWINS:
        attributes = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "_namespace_twin_of": cls}
        _TWINS[cls] = type(cls.__name__, (cls, other), attributes)
    return _TWINS[cls]


def _new_instance(cls: Any) -> Any:
    """Unpickling: an empty instance of ``cls`` (its ``__dict__`` is set next)."""
    return cls.__new__(cls)


class W2SEarlyStopping(EarlyStopping):
    """Stop weak-to-strong training on label-free signals logged by :class:`~lightning_w2s.W2SMonitor`.

    ``W2SEarlyStopping()`` — the rule the stopping benchmark chose (docs/stopping.md): stop when the
    held-out cross-entropy on the teacher's labels (``Q.TEACHER_LABEL_CE``) has not improved
    for 5 monitor checks, and end training with the weights of the check where it was lowest. On the
    benchmark's report seeds it leaves 1.20 pt of gold-accuracy regret against 1.45 pt for
    Lightning's ``EarlyStopping`` + ``ModelCheckpoint`` on the teacher-labelled validation loss: a
    tie (Δ −0.25 pt, 95% CI [−0.69, +0.18]); training to the end leaves 3.19 pt.

    The callback reads ``trainer.callback_metrics`` once per monitor check whatever the monitor's
    cadence (validation epochs, training epochs or every ``n`` optimizer steps), decides with its
    :class:`~lightning_w2s.stopping.decision.StoppingDecision` (``.decision``), and stops when one
    policy votes. The decision goes through ``trainer.strategy.reduce_boolean_decision(...,
    all=False)``: under DDP the fit stops on every rank as soon as any rank decides to stop. Without
    a monitor's ``w2s/check`` counter (values logged by your own code) it reads at
    ``on_validation_end`` when the Trainer has a validation loop, at ``on_train_epoch_end`` otherwise.

    Policies (:mod:`lightning_w2s.stopping.rules`, docs/theory.md §3; heuristics, none a guarantee on
    gold accuracy):

    - ``"heldout_misfit_plateau"`` (**default**, on ``misfit``): no improvement beyond ``min_delta``
      for ``patience`` checks. Best check: the first check of the lowest held-out misfit.
    - ``"teacher_overfit"`` (needs a train probe): the train-probe misfit fell while the held-out one
      rose for ``patience`` checks, or their ratio stayed under ``kappa``. 1.21 pt on the benchmark:
      it restores the default's best check and adds nothing over it.

    ``gain_exhausted`` and ``robustness_drop`` are the monitor's warnings, not policies: as stopping
    rules they left 3.24 and 4.04 pt of regret, more than training to the end (3.19 pt).

    Warm-up: a check made while ``trainer.current_epoch < min_epochs`` is recorded but never counts
    toward patience and never stops (a warm-up in optimizer steps: ``Trainer(min_steps=...)``, which
    holds any stop back until then).

    Gold on the probe (``gold=True``, the default policy only): when the monitor logs the probe's
    gold count, accuracy and PPI estimate, the check whose weights are kept (and, for a whole-run
    rule, whether to stop early) follows the gold rule the stopping benchmark chose for that many
    gold points (:class:`~lightning_w2s.stopping.gold_rule.GoldSelection`, docs/gold.md): label-free
    under 55 gold points, the best PPI estimate up to the label-free stop from 55, the best gold
    accuracy over the whole run from 173. The console says which rule and why. A heuristic chosen on
    11 task–teacher pairs, not a guarantee.

    Missing values: a policy votes only at a check where every name it needs was logged *at that
    check* with a finite value; otherwise a warning, no counter change, no vote. So a failed monitor
    check never stops the student. Names the callbacks attached will not log (``expected_names()``)
    raise at fit start (``strict=True``) or warn (``strict=False``), naming the fix.

    Resume: the checkpoint keeps the decision (history, counters, best check), the copy of the best
    check's weights (with ``restore_best``: so a killed and resumed fit still ends with the best
    check's weights) and the fingerprint of the monitor's probe and configuration; a resumed fit
    whose monitor differs warns and starts this callback's history afresh.

    Lightning's ``EarlyStopping`` attributes keep their meaning for the first policy's quantity
    (``monitor``, ``best_score``), ``patience``/``min_delta`` the largest of the policies',
    ``wait_count`` the largest counter; ``trainer.early_stopping_callback`` finds this callback under
    either Lightning namespace.

    Args:
        policy: a policy name or a list of names (see above).
        patience: checks a policy's condition must hold (for the plateau: checks without
            improvement) before it votes to stop; an int or ``{policy: int}``; ``>= 1``.
        min_delta: the margin of every comparison; a float or ``{policy: float}``; ``>= 0``.
        misfit: the held-out misfit both policies read: ``teacher_label_ce`` (default),
            ``kl_teacher_student``, ``kl_student_teacher``, ``disagreement`` or ``sq`` (the only one
            a regression probe logs: pass ``misfit="sq"`` there).
        kappa: ratio threshold of ``teacher_overfit``, in (0, 1]; ``None`` disables the ratio branch.
            The default 0.5 is a heuristic.
        min_epochs: warm-up in epochs (see above).
        restore_best: keep a CPU copy of the student's ``state_dict`` at the best check
            (:attr:`restore_check`) and load it in ``on_train_end``, whether this callback stopped the
            fit or it ended otherwise, on every rank, after the last checkpoint is written. **Memory:**
            one copy of the student's ``state_dict`` in host memory (two when the policies' best checks
            differ), and the same in each checkpoint. Under a strategy that shards the weights (FSDP,
            ModelParallel, DeepSpeed ZeRO-3) the restore is off for that fit with a warning naming
            the fix (``ModelCheckpoint``). ``False``: no copy, the last weights are kept.
        verbose: log every check's decision on rank 0 at debug level; the stop message and the
            restored check always reach the console.
        strict: raise (``True``) or warn (``False``) when a needed name is not logged.
        gold: use the probe's gold labels when the monitor logs them (see above); ``False``: the
            label-free default whatever the probe holds.

    Attributes:
        decision: the :class:`~lightning_w2s.stopping.decision.StoppingDecision`.
        best_weights: the :class:`~lightning_w2s.callbacks.best_weights.BestWeights`.
        stopped_epoch: epoch at which this callback stopped the fit (0 if it did not).
        stopping_reason: a :class:`W2SStoppingReason`.
        stopping_reason_message: a human-readable message (also on the console through Lightning's
            ``rank_zero_info`` and as text ``w2s/early_stopping`` in every logger that takes text, or
            in the ``w2s_report.md`` of its folder: :class:`~lightning_w2s.dashboard.loggers.TextSink`).
        best_check: the check whose weights were restored (``None`` until then).

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
        misfit: str = "teacher_label_ce",
        kappa: float | None = 0.5,
        min_epochs: int = 0,
        restore_best: bool = True,
        verbose: bool = True,
        strict: bool = True,
        gold: bool = True,
    ) -> None:
        self.decision = StoppingDecision(make_policies(policy, patience, min_delta, misfit, kappa), min_epochs)
        rules = self.decision.rules
        # every quantity read here is lower-is-better ("min")
        super().__init__(
            monitor=rules[0].needs()[0],
            min_delta=max(r.min_delta for r in rules),
            patience=max(r.patience for r in rules),
            verbose=verbose,
            mode="min",
            strict=strict,
            check_finite=False,
            log_rank_zero_only=True,
        )
        self.misfit = misfit
        self.restore_best = restore_best
        self.gold = gold
        self._check_flags()
        # gold on the probe, with the default policy only (the benchmark chose its gold rules over it)
        self.gold_selection = GoldSelection(self.gold and self.decision.names == ["heldout_misfit_plateau"])
        self.best_weights = BestWeights(self.restore_best)
        self._reset_state()

    def _check_flags(self) -> None:
        for name in ("verbose", "strict", "restore_best", "gold"):
            check_scalar(name, getattr(self, name), bool)

    def _reset_state(self) -> None:
        self.decision.reset()
        self.best_weights.load_state_dict({})
        self.stopped_epoch = 0
        self.stopping_reason = W2SStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.best_check: int | None = None
        self._gold_announced = False
        self._last_check: float | None = None  # the monitor's w2s/check at the latest history entry
        self._counted = False  # a callback logs w2s/check: follow it
        self._sources: dict[str, str] | None = None  # fingerprints of the w2s sources (resume check)
        self._loaded_sources: dict[str, str] | None = None
        self._pending: set[str] = set(self.decision.needed)  # names nobody vouched for yet
        self._warned_missing: set[str] = set()
        self._sync_lightning_attributes()

    def _sync_lightning_attributes(self) -> None:
        """Keep Lightning's ``EarlyStopping`` attributes current: ``wait_count`` and ``best_score``."""
        self.wait_count = self.decision.wait_count
        self.best_score = torch.tensor(self.decision.best_value, dtype=torch.float64)

    # ------------------------------------------------------------------ the decision, delegated
    def evaluate(self, values: Mapping[str, Any], epoch: int = 0, global_step: int = 0) -> tuple[bool, W2SStoppingReason | None, str | None]:
        """One check's decision ``(should_stop, reason, message)``: :meth:`StoppingDecision.evaluate
        <lightning_w2s.stopping.decision.StoppingDecision.evaluate>`, without a Trainer."""
        stop, reason, message = self.decision.evaluate(values, epoch=epoch, global_step=global_step)
        if self.gold_selection.enabled:  # the check's gold values; a whole-run gold rule never stops the fit
            self.gold_selection.record(self.history, {key: values.get(name) for key, name in self._GOLD_NAMES})
            rule = self.gold_selection.rule(self.history)
            if rule is not None and not self._gold_announced:
                self._gold_announced = True
                n = self.gold_selection.count(self.history) or 0
                rank_zero_info(f"W2SEarlyStopping: the probe has {n} gold points: {gold_default_for(n)[1]} Pass `gold=False` for the label-free default.")
            if stop and rule is not None and rule.whole_run:
                self.decision.overrule(False)
                stop, reason, message = False, W2SStoppingReason.NOT_STOPPED, None
        self._sync_lightning_attributes()
        return stop, reason, message

    #: the gold values the gold selection records per check
    _GOLD_NAMES = (("accuracy", Q.ACCURACY), ("ppi", Q.ACCURACY_PPI), ("count", Q.GOLD_COUNT))

    def kept_checks(self) -> set[int]:
        """The checks whose weights are kept now: the policies' best checks and the gold rule's candidates."""
        return self.decision.best_checks() | self.gold_selection.candidates(self.history, self.decision.needed[0])

    @property
    def gold_rule(self) -> GoldRule | None:
        """The gold rule in force (``None``: label-free; docs/gold.md)."""
        return self.gold_selection.rule(self.history)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per check (:attr:`StoppingDecision.history <lightning_w2s.stopping.decision.StoppingDecision>`)."""
        return self.decision.history

    @property
    def restore_check(self) -> int | None:
        """The check whose weights ``restore_best`` would restore now: the gold rule's pick when one
        is in force, else the best check of the decision's restore policy."""
        pick = self.gold_selection.pick(self.history, self.decision.needed[0])
        return pick if pick is not None else self.decision.restore_check

    @property
    def stopped_check(self) -> int | None:
        """The check at which the fit stopped (``None`` if it did not)."""
        return self.decision.stopped_check

    @property
    def triggered_policies(self) -> list[str]:
        """The policies that voted at the stopping check."""
        return self.decision.triggered_policies

    # ------------------------------------------------------------------ identity & state
    @property
    @override
    def state_key(self) -> str:
        cls = getattr(type(self), "_namespace_twin_of", type(self))
        return f"{cls.__qualname__}{dict(policy=self.decision.names, misfit=self.misfit)!r}"

    @property
    @override
    def monitor_op(self):  # every quantity read here is lower-is-better
        return torch.lt

    def __reduce_ex__(self, protocol):
        """Pickled as the class it was built as (the namespace twin is made again at ``setup``)."""
        twin_of = type(self).__dict__.get("_namespace_twin_of")
        if twin_of is None:
            return super().__reduce_ex__(protocol)
        return _new_instance, (twin_of,), self.__dict__

    @override
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed fit needs to decide identically and end with the best check's weights
        (only primitives, lists, dicts and tensors: loadable with ``torch.load(weights_only=True)``)."""
        return {
            "decision": self.decision.state_dict(),
            "best_weights": self.best_weights.state_dict(),
            "stopped_epoch": self.stopped_epoch,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            "best_check": self.best_check,
            "last_check": self._last_check,
            "sources": self._sources,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.decision.load_state_dict(state_dict.get("decision", {}))
        self.best_weights.load_state_dict(state_dict.get("best_weights", {}))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        self.stopping_reason = W2SStoppingReason(state_dict.get("stopping_reason", 0))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        self.best_check = state_dict.get("best_check")
        self._last_check = state_dict.get("last_check")
        self._loaded_sources = state_dict.get("sources")
        self._sync_lightning_attributes()
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
        self.__class__ = _namespace_class(type(self), _namespace(trainer))
        if stage != "fit":
            return
        self._warned_missing = set()
        # (`Trainer.callbacks` and `fast_dev_run` are set by Lightning at run time; its class does not declare them)
        sources = [cb for cb in trainer.callbacks if cb is not self and callable(getattr(cb, "expected_names", None))]  # type: ignore[attr-defined]
        will_log = set().union(*(set(cb.expected_names()) for cb in sources))
        self._counted = Q.CHECK in will_log
        self.best_weights.arm(trainer.strategy, self._restore_fix())
        self._sources = {cb.state_key: cb.fingerprint for cb in sources if isinstance(getattr(cb, "fingerprint", None), str)}
        self._pending = set(self.decision.needed) - will_log
        missing = sorted(self._pending) if sources else []
        if missing:
            self._needs_unmet(missing, "before training: the callbacks attached will not log them")
        self._reconcile_sources()

    def _restore_fix(self) -> str:
        """How to end with the best check's weights when this callback cannot restore them."""
        quantity = self.decision.best_is_minimum_of()  # both policies' best check: the lowest held-out misfit
        return f"To end with the best check's weights, add `ModelCheckpoint(monitor={quantity!r}, mode='min')` and load its best checkpoint."

    def _needs_unmet(self, missing: list[str], when: str, available: Sequence[str] | None = None) -> None:
        msg = unmet_message(self.decision.rules, missing, when, available)
        if self.strict:
            raise RuntimeError(msg)
        rank_zero_warn(msg, category=RuntimeWarning)

    # ------------------------------------------------------------------ hooks: once per monitor check
    @override
    def _should_skip_check(self, trainer: Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)  # type: ignore[attr-defined]

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
        self._follow(trainer, pl_module, stock_hook=not trainer.enable_validation)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._follow(trainer, pl_module, stock_hook=True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``restore_best``: load the kept weights of :attr:`restore_check`, whether this callback
        stopped the fit or the fit ended otherwise (``max_epochs``, another callback), as
        ``ModelCheckpoint``'s best checkpoint would be; every rank loads its own copy."""
        check = self.restore_check
        if not self.best_weights.active or check is None:
            return
        if not self.best_weights.restore(pl_module, check):
            rank_zero_warn(f"W2SEarlyStopping: no copy of the best check's ({check}) weights is held (a checkpoint made without it?); the final weights are kept instead")
            return
        self.best_check = check
        ended = f"the fit stopped at check {self.stopped_check}" if self.stopped_check is not None else f"the fit ended after {len(self.history)} checks without a stop by this callback"
        rule = self.gold_rule
        kept_by = f"the check kept by the gold rule {rule.name}" if rule is not None else f"the best check of {self.decision.restore_policy}"
        rank_zero_info(f"W2SEarlyStopping: restored the student's weights of check {check}{self.decision.where(check)}, {kept_by}; {ended}")

    # ------------------------------------------------------------------ one check
    def _read_values(self, trainer: Trainer) -> tuple[dict[str, float], list[str], list[str]]:
        """Finite values of the needed names, the missing ones, and the ``w2s/`` measurements present
        (bookkeeping names excluded)."""
        metrics = trainer.callback_metrics
        present = [k for k in metrics if k.startswith(Q.PREFIX + "/") and k not in (Q.SKIPPED, Q.CHECK)]
        names = list(self.decision.needed) + ([n for _, n in self._GOLD_NAMES] if self.gold_selection.enabled else [])
        read = {n: float(metrics[n]) for n in names if n in metrics}  # one host read per name
        values = {n: v for n, v in read.items() if math.isfinite(v)}
        return values, [n for n in self.decision.needed if n not in values], present

    @override
    def _run_early_stopping_check(self, trainer: Trainer, pl_module: LightningModule | None = None) -> None:
        """One check on every rank: read, evaluate, keep weights, reduce the decision across ranks, act.

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
        local_stop, reason, message = self.evaluate(values, epoch=trainer.current_epoch, global_step=trainer.global_step)
        self.best_weights.keep(len(self.history) - 1, self.kept_checks(), pl_module.state_dict)
        should_stop = bool(trainer.strategy.reduce_boolean_decision(local_stop, all=False))
        reason = reason or W2SStoppingReason.NOT_STOPPED  # every policy has a reason: None only for warning rules
        if should_stop:  # the same collective on every rank that stops: the reason of the rank that decided
            code = int(trainer.strategy.reduce(torch.tensor(reason.value, device=trainer.strategy.root_device), reduce_op="max"))
            if not local_stop:
                reason = W2SStoppingReason(code)
                message = (
                    f"{reason.name.lower()} was decided on another rank; this rank's own values did not trigger it "
                    "(the w2s values differ between ranks, which W2SMonitor's synced metrics should prevent)"
                )
        self.decision.overrule(should_stop)  # the fit's decision, after the reduction over ranks
        if not should_stop:
            if self.verbose:
                rank_zero_debug(self.decision.status_line())
            return
        self._stop(trainer, reason, message)

    def _stop(self, trainer: Trainer, reason: W2SStoppingReason, message: str | None) -> None:
        trainer.should_stop = True
        self.stopped_epoch = trainer.current_epoch
        self.stopping_reason = reason
        self.best_check = self.restore_check
        full = f"W2SEarlyStopping stopped the fit at epoch {trainer.current_epoch}, step {trainer.global_step} (check {len(self.history) - 1}): {message}"
        best = self.restore_check
        if best in self.best_weights.copies:
            full += f". The student's weights of check {best} will be restored at the end of training."
        elif self.best_weights.active:
            full += f". The weights of the best check ({best}) are not available."
        self.stopping_reason_message = full
        rank_zero_info(full)
        TextSink.of(trainer).write(TEXT_TAG, f"**{reason.name}**\n\n{full}", step=trainer.global_step)  # rank 0's loggers

    def _warn_missing(self, missing: list[str]) -> None:
        new = [n for n in missing if n not in self._warned_missing]
        if not new:
            return
        self._warned_missing |= set(new)
        skipped = [r.name for r in self.decision.rules if any(n in missing for n in r.needs())]
        rank_zero_warn(
            f"W2SEarlyStopping: no fresh finite value for {new} at check {len(self.history)} (not logged at this "
            f"check, or NaN/Inf); policies {skipped} do not vote at such checks (warned once per name)",
            category=RuntimeWarning,
        )

    def __repr__(self) -> str:
        patience = {r.name: r.patience for r in self.decision.rules}
        return f"W2SEarlyStopping(policy={self.decision.names}, misfit={self.misfit!r}, patience={patience})"
