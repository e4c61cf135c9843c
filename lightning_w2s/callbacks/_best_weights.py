"""The best-weights half of :class:`~lightning_w2s.W2SEarlyStopping` (a mixin; the callback owns
``restore_best``, ``_restore_active``, ``restore_check``, ``restore_policy``, ``_snapshots`` and
``_policies``): whether the fit's strategy lets a plain ``state_dict`` copy restore the student, the
advice when it does not, and loading the kept weights at the end of training.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn


def _sharded_weights(strategy: Any) -> bool:
    """Whether ``pl_module.state_dict()`` on one rank may not be the whole model's plain state_dict:
    a strategy that builds the module's state dict itself (Lightning's ``FSDPStrategy`` and
    ``ModelParallelStrategy`` override ``lightning_module_state_dict``), or DeepSpeed's ZeRO stage 3
    (partitioned parameters). DDP, a single device and DeepSpeed stages 1-2 hold full replicas."""
    from lightning.pytorch.strategies import Strategy

    if type(strategy).lightning_module_state_dict is not Strategy.lightning_module_state_dict:
        return True
    try:
        return bool(getattr(strategy, "zero_stage_3", False))
    except Exception:  # a strategy whose config cannot be read: judged by its state dict alone
        return False


class _BestWeights:
    """Restore the best check's weights at the end of training (see the module docstring)."""

    def _arm_restore(self, strategy: Any) -> None:
        """At fit start: restore this fit unless the strategy shards the weights (then warn, with the fix)."""
        self._restore_active = self.restore_best
        if self.restore_best and _sharded_weights(strategy):
            self._restore_active = False
            rank_zero_warn(
                f"W2SEarlyStopping: `restore_best` is off for this fit: under {type(strategy).__name__} the "
                "student's weights are sharded across ranks (or gathered by the strategy), so a copy of "
                f"`pl_module.state_dict()` could not restore them; the final weights are kept. {self._sharded_fix()} "
                "Pass `restore_best=False` to silence this warning."
            )

    def _sharded_fix(self) -> str:
        """How to end with the best check's weights when this callback cannot restore them."""
        quantity = next(p for p in self._policies if p.name == self.restore_policy).best_is_minimum_of
        if quantity is not None:
            return (f"To end with the best check's weights, add `ModelCheckpoint(monitor={quantity!r}, mode='min')` "
                    "and load its best checkpoint.")
        return (f"The best check of `{self.restore_policy}` is not the minimum of one logged value: save a checkpoint at "
                "every check (`ModelCheckpoint(save_top_k=-1)`) and load the one of the check the stop message names.")

    def _restore_best_weights(self, pl_module: LightningModule) -> None:
        """Load the kept weights of :attr:`restore_check` (every rank its own copy), or say why not."""
        check = self.restore_check
        if not self._restore_active or check is None:
            return
        weights = self._snapshots.get(check)
        if weights is None:
            rank_zero_warn(
                f"W2SEarlyStopping: the best check ({check}) was before a resume and its weights were not "
                "kept in the checkpoint (pass `save_best_weights=True`); the final weights are kept instead"
            )
            return
        pl_module.load_state_dict(weights)
        self.best_check = check
        rank_zero_info(self.restore_message(check))
