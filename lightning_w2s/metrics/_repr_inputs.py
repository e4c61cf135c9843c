"""Input validation of the representation metrics: feature matrices, labels, construction arguments.

Errors name the argument, what was received and what was expected (``lightning_w2s.metrics.validation``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_w2s.metrics.validation import as_tensor, check_choice, check_scalar, describe

REG_RELATIVE_TO = ("n", "dim")
_INT_TYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_args(reg: Any, max_components: Any, reg_relative_to: Any) -> None:
    check_scalar("reg", reg, float, min_val=0.0, include_boundaries="neither")
    if reg == float("inf"):
        raise ValueError(f"`reg` must be a finite number > 0 (the ridge λ = reg·tr(K)/n), got {reg!r}")
    check_scalar("max_components", max_components, int, min_val=1, allow_none=True)
    check_choice("reg_relative_to", reg_relative_to, REG_RELATIVE_TO)


def feature_matrix(name: str, value: Any) -> Tensor:
    """Validate an (n, d) real feature matrix (returned detached, dtype as given)."""
    t = as_tensor(name, value)
    if t.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (n, d) tensor of features, got {describe(t)}")
    if t.is_complex() or t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in _INT_TYPES):
        raise TypeError(f"`{name}` must hold real numbers, got {describe(t)}")
    return t.detach()


def pair(student_features: Any, teacher_features: Any, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    s = feature_matrix("student_features", student_features)
    w = feature_matrix("teacher_features", teacher_features)
    if s.shape[0] != w.shape[0]:
        raise ValueError(f"`student_features` and `teacher_features` must have the same number of rows, got {describe(student_features)} and {describe(teacher_features)}")
    device = device if device is not None else s.device
    return s.to(device), w.to(device)


def label_matrix(labels: Any, n: int, num_classes: int | None, label_dim: int | None) -> tuple[Tensor, Tensor]:
    """Labels as an (n, m) float64 matrix and a (n,) bool mask of known rows.

    Integer labels are class indices (``-1`` = unknown) turned into one-hot columns; real labels
    are one column (1-D) or m columns (2-D), ``NaN`` = unknown.
    """
    y = as_tensor("labels", labels).detach()
    if y.ndim == 0 or y.ndim > 2 or y.shape[0] != n:
        raise ValueError(f"`labels` must be (n,) or (n, m) with n = {n} rows, got {describe(y)}")
    if y.dtype == torch.bool:
        y = y.to(torch.float64)
    if y.is_complex():
        raise TypeError(f"`labels` must be real values or integer class indices, got {describe(y)}")
    if not y.is_floating_point():
        if y.ndim != 1:
            raise ValueError(f"integer `labels` must be a 1-D (n,) tensor of class indices, got {describe(y)}")
        known = y >= 0
        if (y < -1).any():
            raise ValueError(f"`labels` class indices must be >= 0 (or -1 = unknown), got min {int(y.min())}")
        k = num_classes if num_classes is not None else (int(y.max()) + 1 if known.any() else 1)
        if known.any() and int(y.max()) >= k:
            raise ValueError(f"`labels` has class index {int(y.max())} but num_classes = {k}")
        onehot = torch.zeros(n, k, dtype=torch.float64, device=y.device)
        onehot[known, y[known]] = 1.0
        return onehot, known
    if num_classes is not None:
        raise TypeError(f"`labels` must hold integer class indices (num_classes={num_classes}), got {describe(y)}")
    y = y.to(torch.float64)
    if y.ndim == 1:
        y = y[:, None]
    if label_dim is not None and y.shape[1] != label_dim:
        raise ValueError(f"`labels` must have {label_dim} column(s) (label_dim), got {describe(y)}")
    return y, torch.isfinite(y).all(dim=1)


def all_finite(*tensors: Tensor) -> bool:
    """``True`` when every entry of every tensor is finite, read from column sums (a NaN or an Inf
    anywhere makes its column's sum non-finite, so a finite sum proves the column finite): one
    pass over each floating input, summed in its own dtype (float32 for half precision, whose
    range a sum of a few thousand rows can leave), and one host read, instead of an element-wise
    mask; integer inputs are finite. A ``False`` may also come from finite values whose sum
    overflows; callers then find the rows with :func:`finite_rows`, which decides exactly."""
    sums = [t.sum(0, dtype=torch.promote_types(t.dtype, torch.float32)) for t in tensors if t.numel() and t.is_floating_point()]
    return not sums or bool(torch.isfinite(torch.cat(sums)).all())


def finite_rows(*tensors: Tensor) -> Tensor:
    """``(n,)`` mask of the rows finite in every tensor."""
    ok = torch.ones(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        ok &= torch.isfinite(t).all(dim=1)
    return ok
