"""``BestWeights``: a CPU copy of the student's weights at the best check, restored at the end of training.

:class:`~lightning_w2s.W2SEarlyStopping` holds one (``restore_best``). It decides whether the fit's
strategy lets a plain ``state_dict`` copy restore the student (not when the strategy shards the
weights), keeps the copies of the checks a stopping rule may still restore, and loads the chosen
one. Works under ``lightning.pytorch`` and ``pytorch_lightning`` strategies alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lightning_w2s.namespaces import counterpart

__all__ = ["BestWeights", "sharded_weights"]


def sharded_weights(strategy: Any) -> bool:
    """Whether ``pl_module.state_dict()`` on one rank may not be the whole model's plain state_dict:
    a strategy that builds the module's state dict itself (Lightning's ``FSDPStrategy`` and
    ``ModelParallelStrategy`` override ``lightning_module_state_dict``), or DeepSpeed's ZeRO stage 3
    (partitioned parameters). DDP, a single device and DeepSpeed stages 1-2 hold full replicas. The
    comparison is with the ``Strategy`` of the strategy's own namespace.

    >>> from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
    >>> sharded_weights(SingleDeviceStrategy("cpu")), sharded_weights(DDPStrategy()), sharded_weights(FSDPStrategy())
    (False, False, True)
    """
    base: Any = counterpart(strategy, "strategies.Strategy")
    if type(strategy).lightning_module_state_dict is not base.lightning_module_state_dict:
        return True
    try:
        return bool(getattr(strategy, "zero_stage_3", False))
    except Exception:  # a strategy whose config cannot be read: judged by its state dict alone
        return False


class BestWeights:
    """CPU copies of the student's ``state_dict`` at the checks a stopping rule may restore.

    Args:
        restore: keep and restore copies at all (``W2SEarlyStopping(restore_best=...)``).

    Attributes:
        active: whether this fit keeps copies (``restore`` and a strategy that does not shard the
            weights: :meth:`arm`).
        copies: ``{check: state_dict}`` held now.

    >>> weights = BestWeights(restore=True)
    >>> model = torch.nn.Linear(2, 1)
    >>> weights.keep(0, {0}, model.state_dict)
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> weights.restore(model, 0), sorted(weights.copies)
    (True, [0])
    """

    def __init__(self, restore: bool) -> None:
        self.restore_best = restore
        self.active = restore
        self.copies: dict[int, dict[str, torch.Tensor]] = {}

    def arm(self, strategy: Any, fix: str) -> None:
        """At fit start: keep copies this fit unless ``strategy`` shards the weights (then warn, with
        ``fix``: how to end with the best check's weights another way)."""
        self.active = self.restore_best
        if self.restore_best and sharded_weights(strategy):
            self.active = False
            rank_zero_warn(
                f"W2SEarlyStopping: `restore_best` is off for this fit: under {type(strategy).__name__} the "
                "student's weights are sharded across ranks (or gathered by the strategy), so a copy of "
                f"`pl_module.state_dict()` could not restore them; the final weights are kept. {fix} "
                "Pass `restore_best=False` to silence this warning."
            )

    def keep(self, check: int, wanted: set[int], state_dict: Callable[[], Mapping[str, torch.Tensor]]) -> None:
        """After ``check``: drop the copies of checks not in ``wanted`` (the rules' best checks), then
        copy the weights if ``check`` is wanted. With one rule at most one copy is held (the old best's
        is freed before the new one is taken)."""
        if not self.active:
            return
        for k in [k for k in self.copies if k not in wanted]:
            del self.copies[k]
        if check in wanted and check not in self.copies:
            self.copies[check] = {k: v.detach().to("cpu", copy=True) for k, v in state_dict().items()}

    def restore(self, module: torch.nn.Module, check: int | None) -> bool:
        """Load the copy of ``check`` into ``module``; ``False`` if inactive or no copy is held."""
        if not self.active or check not in self.copies:
            return False
        module.load_state_dict(self.copies[check])
        return True

    def state_dict(self) -> dict[int, dict[str, torch.Tensor]]:
        return {int(k): v for k, v in self.copies.items()}

    def load_state_dict(self, state: Mapping[int, Mapping[str, torch.Tensor]]) -> None:
        self.copies = {int(k): dict(v) for k, v in state.items()}
