"""Printing helpers the benchmarks share (pure Python, no torch/Lightning import, so a measured child
process stays lean): a verdict word and ``median [min–max]`` of repeated timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def verdict(ok: bool) -> str:
    """``"PASS"`` or ``"FAIL"``."""
    return "PASS" if ok else "FAIL"


def spread(xs: Sequence[float], scale: float = 1e3, fmt: str = "{:.1f}") -> str:
    """``median [min–max]`` of ``xs`` (times ``scale``).

    >>> spread([0.010, 0.012, 0.020])
    '12.0 [10.0–20.0]'
    """
    xs = [scale * x for x in xs]
    return f"{fmt.format(statistics.median(xs))} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"
