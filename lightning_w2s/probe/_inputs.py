"""Validation and conversion of a probe's teacher-side arguments (the helpers of
:class:`lightning_w2s.probe.probe.W2SProbe`): teacher probabilities from labels, logits or
probabilities; real teacher values and regression gold; the coverage mask; teacher features.
Errors name the argument (:mod:`lightning_w2s.metrics.validation`)."""

from __future__ import annotations

from typing import Any

import torch

from lightning_w2s.metrics.stats import known_rows
from lightning_w2s.metrics.validation import as_tensor, check_finite, check_labels, check_length, check_mask, check_ndim, check_probabilities, describe


def teacher_probs(source: str, raw: Any, n: int, num_classes: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(probs (n, k) float32, abstain (n,) bool or None)`` from one teacher source."""
    if source == "teacher_labels":
        labels = as_tensor(source, raw)
        if labels.ndim == 1:
            check_length(source, labels, n)
        labels = check_labels(source, labels, n, num_classes, allow_minus_one=True)  # < num_classes when given
        k = num_classes if num_classes is not None else int(labels.max().item()) + 1
        if k < 1:
            raise ValueError(f"`teacher_labels` are all -1 (abstain) and `num_classes` is not given; got {describe(labels)}")
        abstain = labels == -1
        probs = torch.zeros(n, k, dtype=torch.float32)
        probs[~abstain, labels[~abstain]] = 1.0
        probs[abstain] = 1.0 / k  # never used in metrics: abstentions are not covered
        return probs, abstain
    values = as_tensor(source, raw).float()
    check_ndim(source, values, 2, "a 2-D (n, num_classes) tensor")
    check_length(source, values, n)
    check_finite(source, values)
    if source == "teacher_logits":
        probs = torch.softmax(values.double(), dim=1).float()
    else:
        check_probabilities(source, values)
        probs = values / values.sum(dim=1, keepdim=True)
    if num_classes is not None and num_classes != probs.shape[1]:
        raise ValueError(f"`num_classes`={num_classes} but `{source}` has {probs.shape[1]} columns ({describe(values)})")
    return probs, None


def real_values(name: str, raw: Any, n: int) -> torch.Tensor:
    """A regression teacher's (or gold) real outputs as float64 ``(n,)`` or ``(n, m)``."""
    values = raw if isinstance(raw, torch.Tensor) else as_tensor(name, raw, dtype=torch.float64)
    if values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold real values, got {describe(values)}")
    values = values.detach().cpu().double()
    if values.ndim not in (1, 2) or values.ndim == 2 and values.shape[1] < 1:
        raise ValueError(f"`{name}` must be a 1-D (n,) or 2-D (n, m) tensor of real outputs with m >= 1, got {describe(values)}")
    check_length(name, values, n)
    return values


def regression_gold(gold: Any, teacher_values: torch.Tensor) -> torch.Tensor | None:
    """Real gold of the teacher's shape, ``NaN`` = unknown (a row of an ``(n, m)`` target is known or
    unknown as a whole); ``None`` when no point has one."""
    if gold is None:
        return None
    g = real_values("gold", gold, teacher_values.shape[0])
    if g.shape != teacher_values.shape:
        raise ValueError(f"`gold` must have the shape of `teacher_values` {tuple(teacher_values.shape)} (real targets, NaN = unknown), got {describe(g)}")
    if torch.isinf(g).any():
        raise ValueError(f"`gold` contains +-Inf at index {tuple(torch.isinf(g).nonzero()[0].tolist())}; use NaN for unknown targets")
    if g.ndim == 2:
        partial = torch.isnan(g).any(dim=1) & ~torch.isnan(g).all(dim=1)
        if partial.any():
            raise ValueError(f"`gold` row {int(partial.nonzero()[0])} is partly NaN: a row of an (n, m) target is known (all finite) or unknown (all NaN)")
    known = known_rows(g)
    return g if bool(known.any()) else None


def coverage(covered: Any, abstain: torch.Tensor | None, n: int) -> torch.Tensor:
    if covered is None:
        cov = ~abstain if abstain is not None else torch.ones(n, dtype=torch.bool)
    else:
        cov = check_mask("covered", covered, n, " (True = the teacher labels the point)")
        if abstain is not None and (cov & abstain).any():
            i = int((cov & abstain).nonzero()[0])
            raise ValueError(f"`covered` is True at index {i} where `teacher_labels` is -1 (abstain)")
    if not cov.any():
        raise ValueError("`covered` is False everywhere: the teacher abstains on every probe point, nothing to compare against")
    return cov


def teacher_features(value: Any, n: int) -> torch.Tensor | None:
    if value is None:
        return None
    tf = as_tensor("teacher_features", value).float()
    if tf.ndim != 2:
        raise ValueError(f"`teacher_features` must be a 2-D (n, d_w) tensor, got {describe(tf)}; pool sequence outputs first")
    check_length("teacher_features", tf, n)
    check_finite("teacher_features", tf)
    return tf
