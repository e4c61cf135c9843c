"""lightning_w2s: watch weak-to-strong training live from a PyTorch Lightning callback.

The five public names are imported on first use (PEP 562), so that ``lightning_w2s.metrics`` — pure
torch + torchmetrics — imports no Lightning: ``import lightning_w2s.metrics`` loads the metrics alone,
``from lightning_w2s import W2SMonitor`` loads the callbacks. The package file imports none of the
owners, not even for type checkers (an import under ``TYPE_CHECKING`` is still an import edge from
every ``lightning_w2s.metrics`` module to Lightning for a reader or a tool that follows imports);
for precise types import from the owning module (``lightning_w2s.callbacks.monitor``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that owns it
_OWNERS = {
    "W2SEarlyStopping": "lightning_w2s.callbacks.early_stopping",
    "W2SStoppingReason": "lightning_w2s.stopping.rules",
    "W2SMonitor": "lightning_w2s.callbacks.monitor",
    "W2SProbe": "lightning_w2s.probe.probe",
    "rank_teachers": "lightning_w2s.ranking.scores",
}
__all__ = ["W2SEarlyStopping", "W2SMonitor", "W2SProbe", "W2SStoppingReason", "rank_teachers"]


def __getattr__(name: str) -> Any:
    if name not in _OWNERS:
        raise AttributeError(f"module 'lightning_w2s' has no attribute {name!r}")
    value = getattr(importlib.import_module(_OWNERS[name]), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_OWNERS))
