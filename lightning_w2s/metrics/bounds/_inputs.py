"""Argument handling shared by the bound functions of :mod:`lightning_w2s.metrics.bounds`.

Inputs are real numbers (Python/numpy scalars or one-element tensors), checked with
:func:`lightning_w2s.metrics.validation.check_scalar`. A value of the wrong *type* (a string, a bool, a
multi-element tensor) raises ``TypeError`` naming the argument; a theorem *parameter* the caller
chooses (``q``) out of its range raises ``ValueError``. A *measured* quantity that is NaN, out of
range, or violates a premise raises :class:`_Invalid` inside a bound function, which returns ``NaN``
and emits a ``RuntimeWarning`` with the reason (:func:`_nan_with`): a monitor must never crash on a
measurement, and never log a wrong number.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from lightning_w2s.metrics.validation import check_scalar

NAN = float("nan")


class _Invalid(Exception):
    """A precondition failed: the public function turns it into NaN + warning."""


def _real(name: str, value) -> float:
    """``value`` as a float: one-element tensors/arrays are unwrapped, then :func:`check_scalar`
    checks the type (``TypeError`` naming ``name``). NaN passes through (a measurement may be NaN)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"`{name}` must be a real number or a one-element real tensor, got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    elif not isinstance(value, numbers.Number) and hasattr(value, "__array__") and getattr(value, "size", None) == 1:
        if getattr(getattr(value, "dtype", None), "kind", "") not in "fiu":
            raise TypeError(f"`{name}` must be a real number, got an array of dtype {value.dtype}")
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return value
    return check_scalar(name, value, float)


def _reals(**kwargs) -> dict[str, float]:
    return {k: _real(k, v) for k, v in kwargs.items()}


def _q(q, upper_open: bool) -> float:
    """The theorems' ``q`` is chosen by the caller (the expansion's size threshold): ``ValueError``."""
    return check_scalar("q", _real("q", q), float, min_val=0.0, max_val=1.0, include_boundaries="left" if upper_open else "both")


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise _Invalid(reason)


def _finite(vals: dict[str, float]) -> None:
    for k, v in vals.items():
        _need(not math.isnan(v), f"`{k}` is NaN")


def _prob(vals: dict[str, float], *names: str) -> None:
    for k in names:
        _need(0.0 <= vals[k] <= 1.0, f"`{k}`={vals[k]!r} must be a probability in [0, 1]")


def _nan_with(fn_name: str, reason: str, n: int = 1):
    warnings.warn(f"{fn_name}: precondition violated ({reason}); returning NaN", RuntimeWarning, stacklevel=3)
    return NAN if n == 1 else (NAN,) * n
