"""Input checks that name the argument, what was received and what was expected: the package's one
validation module.

Modelled on scikit-learn's ``utils/validation.py``: every error says *which* argument (as the user
spells it), *what* it got (shape, dtype, offending value) and *what* was expected, so a bad probe
fails at fit start with a message the user can act on. A value of the wrong type raises
``TypeError``, a value of the right type that is out of range or of the wrong shape raises
``ValueError``; ``bool`` is never an ``int``. Scalars go through :func:`check_scalar`, tensors of
class labels through :func:`check_labels`, masks through :func:`check_mask`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable
from typing import Any

import torch


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages: shape and dtype for tensors."""
    if isinstance(value, torch.Tensor):
        return f"Tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, dict):
        return "dict with keys " + ", ".join(repr(k) for k in value)
    return f"{type(value).__name__} {value!r}"[:200]


def as_tensor(name: str, value: Any, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert array-likes (numpy arrays, lists) to a tensor, or raise a ``TypeError`` naming ``name``."""
    if isinstance(value, torch.Tensor):
        return value if dtype is None else value.to(dtype)
    try:
        return torch.as_tensor(value, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"`{name}` must be a tensor or array-like, got {describe(value)}") from exc


def check_ndim(name: str, value: torch.Tensor, ndim: int, expected: str) -> None:
    if value.ndim != ndim:
        raise ValueError(f"`{name}` must be {expected}, got {describe(value)}")


def check_length(name: str, value: torch.Tensor, n: int) -> None:
    if value.shape[0] != n:
        raise ValueError(f"`{name}` has {value.shape[0]} rows but the probe has {n} inputs (got {describe(value)}; expected first dimension {n})")


def check_finite(name: str, value: torch.Tensor) -> None:
    if value.is_floating_point() and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).nonzero()
        first = tuple(bad[0].tolist())
        raise ValueError(f"`{name}` contains {bad.shape[0]} non-finite value(s) (NaN or Inf), first at index {first}; expected finite numbers (got {describe(value)})")


def check_integer(name: str, value: torch.Tensor, hint: str = "") -> None:
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer class indices, got {describe(value)}{hint}")


def check_labels(name: str, value: Any, n: int | None = None, num_classes: int | None = None, *, allow_minus_one: bool = False, hint: str = "") -> torch.Tensor:
    """1-D integer class labels in ``[0, k)`` (``[-1, k)`` with ``allow_minus_one``: ``-1`` = unknown),
    ``n`` of them when ``n`` is given; returned as int64. ``hint`` ends the type/shape messages.

    >>> check_labels("gold", [0, 1, -1], n=3, num_classes=2, allow_minus_one=True)
    tensor([ 0,  1, -1])
    >>> check_labels("gold", [0, 2], num_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: `gold` must lie in [0, 1] for num_classes=2, got values in [0, 2]
    """
    t = as_tensor(name, value)
    if t.ndim == 2 and t.is_floating_point():
        raise ValueError(f"`{name}` must be a 1-D (n,) tensor of class indices, got {describe(t)}{hint}")
    check_ndim(name, t, 1, "a 1-D (n,) tensor of class indices")
    check_integer(name, t, hint)
    if n is not None and t.shape[0] != n:
        raise ValueError(f"`{name}` must have n = {n} entries like the other inputs, got {describe(t)}")
    t = t.long()
    lo = -1 if allow_minus_one else 0
    if t.numel() and ((t < lo).any() or (num_classes is not None and (t >= num_classes).any())):
        hi = "num_classes - 1" if num_classes is None else f"{num_classes - 1}"
        raise ValueError(
            f"`{name}` must lie in [{lo}, {hi}]{' (-1 = unknown)' if allow_minus_one else ''}"
            f"{'' if num_classes is None else f' for num_classes={num_classes}'}, got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t


def check_mask(name: str, value: Any, n: int, meaning: str = "") -> torch.Tensor:
    """A 1-D bool mask of ``n`` entries (0/1 integers are accepted and converted).

    >>> check_mask("covered", [1, 0], 2)
    tensor([ True, False])
    """
    m = as_tensor(name, value)
    check_ndim(name, m, 1, "a 1-D (n,) bool mask")
    if m.shape[0] != n:
        raise ValueError(f"`{name}` must have n = {n} entries like the other inputs, got {describe(m)}")
    if m.dtype != torch.bool:
        if m.is_floating_point() or m.is_complex() or (m.numel() and not ((m == 0) | (m == 1)).all()):
            raise TypeError(f"`{name}` must be a bool mask{meaning}, got {describe(m)}")
        m = m.bool()
    return m


def check_probabilities(name: str, value: torch.Tensor, *, atol: float = 1e-3, hint: str = "if these are logits, pass them as `teacher_logits=`") -> None:
    """Rows must lie in [0, 1] and sum to 1 within ``atol``; ``hint`` ends the message."""
    check_ndim(name, value, 2, "a 2-D (n, num_classes) tensor of probabilities")
    check_finite(name, value)
    if value.numel() and ((value < 0).any() or (value > 1).any()):
        raise ValueError(f"`{name}` must hold probabilities in [0, 1], got values in [{value.min().item():.4g}, {value.max().item():.4g}] ({describe(value)}); {hint}")
    sums = value.sum(dim=1)
    off = (sums - 1).abs() > atol
    if off.any():
        i = int(off.nonzero()[0])
        raise ValueError(f"`{name}` rows must sum to 1 (tolerance {atol}); row {i} sums to {sums[i].item():.6g} ({int(off.sum())} rows off, {describe(value)}); {hint}")


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming ``name`` and the choices."""
    if not isinstance(value, Hashable) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value


_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a str"}


def check_scalar(
    name: str, value: Any, target_type: type | tuple[type, ...], *, min_val: float | None = None, max_val: float | None = None, include_boundaries: str = "both", allow_none: bool = False
) -> Any:
    """Validate a scalar argument and return it (``float`` targets return a ``float``).

    Modelled on scikit-learn's ``utils.validation.check_scalar``: a value of the wrong type raises
    ``TypeError``, a value out of range raises ``ValueError``; both messages name the argument as the
    user spells it (``name``), show what was received and what was expected. ``bool`` is never
    accepted as an ``int`` or a ``float`` (``batch_size=True`` is a mistake, not ``1``); an ``int``
    is accepted where a ``float`` is expected; NaN is out of every range.

    Args:
        name: the argument's public name, e.g. ``"batch_size"``.
        value: the value to check.
        target_type: ``int``, ``float``, ``bool``, ``str`` or a tuple of them.
        min_val, max_val: inclusive or exclusive limits (see ``include_boundaries``), or ``None``.
        include_boundaries: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``.
        allow_none: accept ``None`` (returned as is).

    >>> check_scalar("batch_size", 256, int, min_val=1)
    256
    >>> check_scalar("eps", 1e-6, float, min_val=0.0, max_val=0.5, include_boundaries="neither")
    1e-06
    >>> check_scalar("batch_size", True, int, min_val=1)
    Traceback (most recent call last):
    ...
    TypeError: `batch_size` must be an int, got bool True
    >>> check_scalar("eta", 5.0, float, min_val=0.0, max_val=1.0, include_boundaries="right")
    Traceback (most recent call last):
    ...
    ValueError: `eta` must be in (0.0, 1.0], got 5.0
    """
    if value is None and allow_none:
        return None
    types = target_type if isinstance(target_type, tuple) else (target_type,)
    ok = False
    for t in types:
        if t is bool:
            ok |= isinstance(value, bool)
        elif t is int:
            ok |= isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif t is float:
            ok |= isinstance(value, numbers.Real) and not isinstance(value, bool)
        else:
            ok |= isinstance(value, t)
    if not ok:
        expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types) + (" or None" if allow_none else "")
        raise TypeError(f"`{name}` must be {expected}, got {type(value).__name__} {value!r}")
    if float in types and not isinstance(value, bool) and isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        value = float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if include_boundaries not in ("both", "left", "right", "neither"):
            raise ValueError(f"`include_boundaries` must be 'both', 'left', 'right' or 'neither', got {include_boundaries!r}")
        left_closed = include_boundaries in ("both", "left")
        right_closed = include_boundaries in ("both", "right")
        too_low = min_val is not None and (value < min_val if left_closed else value <= min_val)
        too_high = max_val is not None and (value > max_val if right_closed else value >= max_val)
        if too_low or too_high or (isinstance(value, float) and math.isnan(value)):
            if min_val is not None and max_val is not None:
                rng = f"in {'[' if left_closed else '('}{min_val}, {max_val}{']' if right_closed else ')'}"
            elif min_val is not None:
                rng = f"{'>=' if left_closed else '>'} {min_val}"
            elif max_val is not None:
                rng = f"{'<=' if right_closed else '<'} {max_val}"
            else:
                rng = "a number"
            raise ValueError(f"`{name}` must be {rng}, got {value!r}")
    return value
