"""Small statistics helpers shared by the metric families (pure torch).

Wilson score interval (Wilson 1927, "Probable inference, the law of succession, and statistical
inference", JASA 22(158)) [derived: standard formula]. Written by hand because torchmetrics has no
binomial confidence interval and the usual implementation (statsmodels' ``proportion_confint``)
is numpy-only and not a dependency; the interval must be computed from the *sum states* (successes,
total) after a DDP sync, so it is a few tensor operations on two numbers.
"""

from __future__ import annotations

from statistics import NormalDist

import torch

from lightning_w2s.metrics.validation import check_scalar

F64 = torch.float64
#: two-sided 95% normal quantile, ``Φ^-1(0.975)``.
Z95 = NormalDist().inv_cdf(0.975)


def _z(confidence: float) -> float:
    confidence = check_scalar("confidence", confidence, float, min_val=0.0, max_val=1.0, include_boundaries="neither")
    return Z95 if confidence == 0.95 else NormalDist().inv_cdf(0.5 + confidence / 2.0)


def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num/den`` in float64, NaN where ``den == 0`` (no data: no rate)."""
    num, den = num.to(F64), den.to(F64)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(num, float("nan")))


def known_rows(values: torch.Tensor) -> torch.Tensor:
    """The rows of a real target ``(n,)`` or ``(n, m)`` that are known: no ``NaN`` (``NaN`` = unknown).

    >>> known_rows(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]])).tolist()
    [True, False]
    """
    nan = torch.isnan(values)
    return ~nan if nan.ndim == 1 else ~nan.any(dim=1)


def wilson_interval(successes, total, confidence: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson score interval for a binomial proportion ``successes / total`` [derived: standard].

    With ``p̂ = x/n`` and ``z = Φ^-1((1 + confidence)/2)``::

        centre = (p̂ + z²/(2n)) / (1 + z²/n)
        half   = z/(1 + z²/n) · sqrt(p̂(1 − p̂)/n + z²/(4n²))

    Returns ``(lower, upper)`` as float64 tensors (broadcast over the inputs), with
    ``0 ≤ lower ≤ p̂ ≤ upper ≤ 1`` enforced (true mathematically; enforcing it removes rounding such
    as a lower bound of ``3e-17`` at ``x = 0``). ``total == 0`` gives ``NaN`` bounds (no data: no interval). Unlike the Wald
    interval it never collapses to a point at ``p̂ ∈ {0, 1}`` and stays inside ``[0, 1]``.
    """
    z = _z(confidence)
    x = torch.as_tensor(successes, dtype=torch.float64)
    n = torch.as_tensor(total, dtype=torch.float64, device=x.device)
    has = n > 0
    n_safe = torch.where(has, n, torch.ones_like(n))
    p = x / n_safe
    z2 = z * z
    denom = 1.0 + z2 / n_safe
    centre = (p + z2 / (2.0 * n_safe)) / denom
    half = (z / denom) * torch.sqrt((p * (1.0 - p) / n_safe + z2 / (4.0 * n_safe * n_safe)).clamp_min(0.0))
    nan = torch.full_like(centre, float("nan"))
    # the interval always contains p̂ (and 0 at x = 0, 1 at x = n); the min/max only remove rounding
    lower = torch.where(has, torch.minimum(centre - half, p).clamp(0.0, 1.0), nan)
    upper = torch.where(has, torch.maximum(centre + half, p).clamp(0.0, 1.0), nan)
    return lower, upper


def rate_with_interval(name: str, successes: torch.Tensor, total: torch.Tensor, confidence: float = 0.95) -> dict[str, torch.Tensor]:
    """``{name: x/n, name_lower: …, name_upper: …}`` (float64; all ``NaN`` when ``n = 0``)."""
    x = torch.as_tensor(successes, dtype=torch.float64)
    n = torch.as_tensor(total, dtype=torch.float64, device=x.device)
    lower, upper = wilson_interval(x, n, confidence)
    rate = ratio(x, n)
    return {name: rate, f"{name}_lower": lower, f"{name}_upper": upper}
