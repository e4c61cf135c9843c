"""Lightning ships the same classes under two namespaces: ``lightning.pytorch`` (the ``lightning``
package) and ``pytorch_lightning`` (the ``pytorch-lightning`` package, same version, same code, distinct
class objects). A ``pytorch_lightning.Trainer`` holds ``pytorch_lightning`` loggers and strategies,
so an ``isinstance`` against a ``lightning.pytorch`` class is ``False`` there, silently
(docs/loggers.md, "Both Lightning namespaces"). Every type check of the package against a Lightning
class goes through this module:

- :func:`lightning_classes` ``("loggers.TensorBoardLogger")``: that class in every namespace this
  process has imported (an object of a namespace that was never imported cannot exist);
- :func:`is_lightning_instance` ``(obj, "loggers.TensorBoardLogger")``: ``isinstance`` against them;
- :func:`namespace_of` ``(obj)``: ``"lightning.pytorch"``, ``"pytorch_lightning"`` or ``None``: the
  namespace whose Lightning class ``obj``'s type derives from (a user's subclass included);
- :func:`counterpart` ``(obj, "strategies.Strategy")``: that class in ``obj``'s own namespace, for
  checks that compare a method with the base class's
  (``type(strategy).lightning_module_state_dict is not counterpart(strategy, "strategies.Strategy").lightning_module_state_dict``).

Paths are relative to the namespace root (``"loggers.CSVLogger"``, ``"strategies.Strategy"``,
``"Trainer"``, ``"callbacks.EarlyStopping"``); the module part is imported from the namespace's
public package, so ``"loggers.MLFlowLogger"`` works without ``mlflow`` (only the logger's
constructor needs it).

>>> from lightning.pytorch.loggers import CSVLogger
>>> logger = CSVLogger("logs")
>>> is_lightning_instance(logger, "loggers.CSVLogger"), is_lightning_instance(logger, "loggers.TensorBoardLogger")
(True, False)
>>> namespace_of(logger), counterpart(logger, "loggers.CSVLogger") is CSVLogger
('lightning.pytorch', True)
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["NAMESPACES", "counterpart", "is_lightning_instance", "lightning_classes", "namespace_of"]

#: the two import roots of Lightning's PyTorch API
NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _lookup(namespace: str, path: str) -> type | None:
    """``namespace.path`` (``"loggers.CSVLogger"`` → ``lightning.pytorch.loggers.CSVLogger``), or
    ``None`` when that namespace has no such class."""
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(f"{namespace}.{module}" if module else namespace), name, None)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def lightning_classes(path: str) -> tuple[type, ...]:
    """The class ``path`` (e.g. ``"loggers.TensorBoardLogger"``) of every Lightning namespace this
    process has imported; ``lightning.pytorch`` is always tried (the package itself imports it)."""
    namespaces = [ns for ns in NAMESPACES if ns == NAMESPACES[0] or ns in sys.modules]
    return tuple(cls for cls in (_lookup(ns, path) for ns in namespaces) if cls is not None)


def is_lightning_instance(obj: Any, path: str) -> bool:
    """``isinstance(obj, <path>)`` for the class ``path`` of either namespace (see the module docstring)."""
    return isinstance(obj, lightning_classes(path))


def namespace_of(obj: Any) -> str | None:
    """The Lightning namespace of ``obj``'s class: the first class in its MRO defined under
    ``lightning.pytorch`` or ``pytorch_lightning``; ``None`` when none is."""
    for cls in type(obj).__mro__:
        for namespace in NAMESPACES:
            if cls.__module__ == namespace or cls.__module__.startswith(namespace + "."):
                return namespace
    return None


def counterpart(obj: Any, path: str) -> type:
    """The class ``path`` in ``obj``'s own namespace (:func:`namespace_of`; ``lightning.pytorch`` for
    an object of neither). Raises ``TypeError`` when that namespace has no such class."""
    namespace = namespace_of(obj) or NAMESPACES[0]
    cls = _lookup(namespace, path)
    if cls is None:
        raise TypeError(f"`{namespace}` has no class `{path}` (asked for a {type(obj).__name__})")
    return cls
