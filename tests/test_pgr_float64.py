"""PGR in float64 throughout: Python floats are never rounded through float32."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from lightning_w2s.metrics.gold import pgr


def _exact(s: float, w: float, c: float) -> float:
    """The exact ratio of the float64 inputs, rounded once."""
    return float((Fraction(s) - Fraction(w)) / (Fraction(c) - Fraction(w)))


def test_pgr_of_python_floats_is_float64_exact():
    v = pgr(0.80001, 0.8, 0.9)
    assert v.dtype == torch.float64
    # the float64 inputs themselves: 0.80001 - 0.8 = 9.99999999995449e-06 (cancellation amplifies
    # their 1e-16 representation errors ~1.6e5-fold), so 1e-4 is reached to ~5e-12, which is the
    # exact value of the float64 inputs; float32 gave 1.00136e-4 (1.4e-3 off)
    assert v.item() == pytest.approx(_exact(0.80001, 0.8, 0.9), rel=1e-15, abs=0)
    assert v.item() == pytest.approx(1e-4, rel=1e-11, abs=0)
    print(f"\npgr(0.80001, 0.8, 0.9) = {v.item()!r} (relative error vs 1e-4: {abs(v.item() - 1e-4) / 1e-4:.3g})")


@pytest.mark.parametrize(
    "args",
    [
        (0.80001, 0.8, 0.9),
        (np.float64(0.80001), 0.8, 0.9),
        (0.80001, np.array(0.8), np.array([0.9])),
        (torch.tensor(0.80001, dtype=torch.float64), 0.8, 0.9),
        (0.912345678901, 0.912345678, 0.95),
        (3, 1, 5),  # ints (e.g. counts as scores) are exact as well
    ],
)
def test_every_input_path_keeps_float64(args):
    v = pgr(*args)
    assert v.dtype == torch.float64
    ref = _exact(*(float(np.asarray(a if not torch.is_tensor(a) else a.item()).reshape(-1)[0]) for a in args))
    assert v.reshape(-1)[0].item() == pytest.approx(ref, rel=1e-15, abs=0)


def test_nan_passes_and_bad_types_raise():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(pgr(float("nan"), 0.8, 0.9).item())
    for bad in ("0.7", None, True, [0.7], np.array(["a"]), 1 + 2j):
        with pytest.raises(TypeError, match="teacher_score"):
            pgr(0.8, bad, 0.9)
