"""Smooth calibration error, exact, and the student's calibration bands (docs/theory.md §2.3, docs/calibration.md).

Błasiok, Gopalan, Hu, Nakkiran 2023, "A Unifying Theory of Distance from Calibration" (STOC), the
smooth calibration error [definition]: for predictions ``f_i ∈ [0, 1]`` and outcomes ``y_i ∈ {0, 1}``::

    smCE = max over w : [0, 1] → [−1, 1], 1-Lipschitz, of  (1/n) Σ_i w(f_i)·(y_i − f_i)

(a linear programme; the max is attained). For ``k`` classes it is taken per class (``f = p_c``,
``y = 1[label = c]``) and averaged over the classes; for ``k = 2`` the average equals the binary
value of class 1 (class 0 has ``f₀ = 1 − f₁``, ``y₀ − f₀ = −(y₁ − f₁)``, and ``w₀(t) = −w₁(1 − t)``
maps the witnesses of one class onto the other's).

Exact algorithm (derived here; no LP solver; cost below). Only the values ``w_j = w(x_j)``
at the distinct predictions ``x_1 < … < x_m`` matter (equal predictions share one ``w``, so ties are
merged and their coefficients summed: ``c_j = (1/n) Σ_{f_i = x_j} (y_i − f_i)``), and a function on
``[0, 1]`` with those values is 1-Lipschitz iff consecutive values are (linear interpolation, and the
triangle inequality for non-consecutive pairs). The LP is therefore a *path*::

    max Σ_j c_j w_j   s.t.  |w_j| ≤ 1,  |w_{j+1} − w_j| ≤ δ_j = x_{j+1} − x_j.

Dynamic programme: ``V_1(u) = c_1 u`` on ``[−1, 1]`` and
``V_{j+1}(u) = c_{j+1} u + max_{|v − u| ≤ δ_j} V_j(v)``; the answer is ``max V_m``. Each ``V_j`` is
concave piecewise linear (induction: a windowed max of a concave function is concave, adding a linear
function keeps it so). For concave ``V`` with a maximiser ``u*``, the windowed max is ``V`` with its
rising part moved left by ``δ``, its falling part moved right by ``δ`` and a flat piece of length
``2δ`` inserted at the top, cut to ``[−1, 1]``. Represented by its breakpoints (position, slope
decrease) on the rising part ``L`` and the falling part ``R``, each with one lazy shift, the windowed
max is two shifts (O(1)); adding ``c·u`` makes the flat top's slope ``c``, and the maximiser moves
across breakpoints (from ``R`` into ``L`` while the slope is positive, the other way while negative;
a breakpoint is split where the slope reaches 0; the domain's ends ``±1`` act as breakpoints of
unlimited weight). Every breakpoint is created at the current maximiser, which lies right of all of
``L`` and left of all of ``R``, and only the breakpoint next to the maximiser ever moves: so ``L`` and
``R`` are *stacks* (the breakpoint nearest the maximiser on top; kept in one gap buffer, both in
position order), each operation O(1), and the cost
is O(m log m) for the sort plus O(m + crossings), where a crossing moves one breakpoint across the
maximiser. Crossings are not O(1) per step: a breakpoint can cross back and forth (measured on
calibrated random data: 6.6, 18 and 40 per point at n = 2,048, 8,192 and 32,768, about √n), so the
worst case is quadratic. Keeping each step's maximiser ``u*_j``, an optimal witness is read back
from the last point: ``w_m = u*_m``, ``w_j = clip(u*_j, w_{j+1} − δ_j, w_{j+1} + δ_j)`` (the windowed
maximiser of a concave function is its maximiser projected on the window), and the value is
``Σ_j c_j w_j`` of that feasible witness. Checked against ``scipy.optimize.linprog`` in the tests.

Bands on the same points [derived, exact finite-sample inequalities; proofs in docs/calibration.md]:

- (A) ``|smCE(p_s) − smCE(p_w)| ≤ 2·mean_i |p_s − p_w|`` per class, so class-averaged
  ``≤ (2/k)·mean_i ‖p_s − p_w‖₁`` (:func:`teacher_band`);
- (B) ``|smCE_y(p) − smCE_t(p)| ≤ mean_i |1[y_i = c] − 1[t_i = c]|`` per class, class-averaged
  ``(2/k)·P(t ≠ y)`` (:func:`label_band`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics import Metric

from lightning_w2s.metrics.calibration import _check_inputs
from lightning_w2s.metrics.validation import as_tensor, describe

__all__ = ["SmoothCalibration", "label_band", "smooth_calibration_error", "teacher_band"]


def _binary_smce(f: np.ndarray, r: np.ndarray, n: int) -> float:
    """The path LP of the module docstring for one class: float64 predictions ``f``, residuals ``r = y − f``."""
    order = np.argsort(f, kind="stable")
    xs, start = np.unique(f[order], return_index=True)  # merge ties: equal predictions force equal witness values
    m = len(xs)
    if m == 0:
        return math.nan
    cs: list[float] = np.add.reduceat(r[order], start).tolist()
    deltas: list[float] = np.diff(xs).tolist()
    # One gap buffer holds both stacks in position order: the rising part's breakpoints in [0, lo)
    # (stored position + off_l, the top at lo − 1), the falling part's in [hi, size) (stored position +
    # off_r, the top at hi). A step adds at most one breakpoint, so 2m + 4 slots never run out.
    size = 2 * m + 4
    pos = [0.0] * size
    wt = [0.0] * size
    lo, hi = 0, size
    off_l = off_r = 0.0
    argmax = [0.0] * m
    for j in range(m):
        s = cs[j]  # slope of the flat top after adding c_j·u
        if s > 0.0:  # the maximiser moves right, across the falling part's leftmost breakpoints
            while True:
                if hi == size or pos[hi] + off_r >= 1.0:  # the domain's end: the rest lies beyond 1
                    hi = size
                    u = 1.0
                    pos[lo], wt[lo] = 1.0 - off_l, s
                    lo += 1
                    break
                u, w = pos[hi] + off_r, wt[hi]
                if w > s:  # split: the slope reaches 0 at this breakpoint
                    wt[hi] = w - s
                    pos[lo], wt[lo] = u - off_l, s
                    lo += 1
                    break
                pos[lo], wt[lo] = u - off_l, w
                lo += 1
                hi += 1
                s -= w
                if s <= 0.0:
                    break
        elif s < 0.0:  # the maximiser moves left, across the rising part's rightmost breakpoints
            while True:
                if lo == 0 or pos[lo - 1] + off_l <= -1.0:
                    lo = 0
                    u = -1.0
                    hi -= 1
                    pos[hi], wt[hi] = -1.0 - off_r, -s
                    break
                u, w = pos[lo - 1] + off_l, wt[lo - 1]
                if w > -s:
                    wt[lo - 1] = w + s
                    hi -= 1
                    pos[hi], wt[hi] = u - off_r, -s
                    break
                lo -= 1
                hi -= 1
                pos[hi], wt[hi] = u - off_r, w
                s += w
                if s >= 0.0:
                    break
        else:  # slope 0 on the whole top: any point of it
            u = pos[lo - 1] + off_l if lo else -1.0
        argmax[j] = 1.0 if u > 1.0 else (-1.0 if u < -1.0 else u)
        if j + 1 < m:  # windowed max over |v − u| ≤ δ_j
            off_l -= deltas[j]
            off_r += deltas[j]
    w = argmax[m - 1]
    total = cs[m - 1] * w
    for j in range(m - 2, -1, -1):
        d, a = deltas[j], argmax[j]
        w = w + d if a > w + d else (w - d if a < w - d else a)
        total += cs[j] * w
    return max(0.0, total / n)  # w = 0 is feasible: the value is ≥ 0 (rounding aside)


def _check(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    p, y = _check_inputs(probs, labels, None, True, target_name="labels")
    if p.shape[1] < 2:
        raise ValueError(f"`probs` must have num_classes >= 2 columns, got {describe(p)}")
    return p.double(), y.long()


def _smce(p: np.ndarray, y: np.ndarray) -> float:
    """Class-averaged smCE of float64 probabilities ``p`` ``(n, k)`` and integer labels ``y`` (host arrays)."""
    n, k = p.shape
    if n == 0:
        return math.nan
    r = (y[:, None] == np.arange(k)).astype(np.float64) - p
    if k == 2:  # the class average equals class 1's value (module docstring)
        return _binary_smce(p[:, 1], r[:, 1], n)
    return sum(_binary_smce(p[:, c], r[:, c], n) for c in range(k)) / k


def smooth_calibration_error(probs, labels) -> torch.Tensor:
    """Exact smooth calibration error, class-averaged [definition; exact algorithm derived in the module docstring].

    Błasiok, Gopalan, Hu, Nakkiran 2023: ``smCE = max_w mean_i w(f_i)(y_i − f_i)`` over 1-Lipschitz
    ``w : [0, 1] → [−1, 1]``, per class ``c`` with ``f = probs[:, c]``, ``y = 1[labels = c]``, averaged
    over the classes (docs/theory.md §2.3). ``probs``: ``(n, k)`` probabilities; ``labels``: ``(n,)``
    class indices. Returns a 0-d float64 tensor (NaN for ``n = 0``).

    >>> float(smooth_calibration_error(torch.tensor([[0.5, 0.5]] * 4), torch.tensor([1, 1, 1, 0])))
    0.25
    """
    p, y = _check(probs, labels)
    return torch.tensor(_smce(p.cpu().numpy(), y.cpu().numpy()), dtype=torch.float64)


#: added to a band's half-width: the two smCE values are each exact up to float rounding (~n ulps)
ROUNDING_SLACK = 1e-12


def _around(centre: float, half_width: float) -> tuple[float, float]:
    """``(max(0, centre − h), centre + h)``, ``h = half_width + ROUNDING_SLACK``; NaN in, NaN out."""
    h = half_width + ROUNDING_SLACK
    lower = centre - h
    return (0.0 if lower < 0.0 else lower), centre + h


def teacher_band(teacher_smce: float, mean_abs_diff: float) -> tuple[float, float]:
    """Band (A) on the student's smCE from the teacher's [derived bound, exact on the same points].

    ``mean_abs_diff`` = ``mean_{i,c} |p_s − p_w|`` (the class average of each class's mean gap).
    Proof: for any witness ``w``, ``mean w(g)(y − g) − mean w(f)(y − f) = mean (w(g) − w(f))(y − g) +
    mean w(f)(f − g)``, each term at most ``mean |f − g|`` (``w`` 1-Lipschitz into [−1, 1], ``y − g ∈
    [−1, 1]``); take the max over ``w`` on both sides, then swap ``f`` and ``g``, then average over the
    classes. The lower end is cut at 0 (smCE ≥ 0: ``w = 0``); both ends move out by
    :data:`ROUNDING_SLACK`. Returns ``(lower, upper)``.

    >>> [round(end, 9) for end in teacher_band(0.05, 0.01)]
    [0.03, 0.07]
    """
    return _around(teacher_smce, 2.0 * mean_abs_diff)


def label_band(smce_vs_teacher: float, label_gap: float) -> tuple[float, float]:
    """Band (B) on the student's smCE against gold from its smCE against the teacher's labels [derived bound].

    ``label_gap`` = ``mean_{i,c} |1[y_i = c] − 1[t_i = c]|`` = ``(2/k)·P(t ≠ y)`` on the same points
    (binary: the teacher's error rate). Proof: for any witness the two objectives differ by
    ``mean w(f)(y − t)`` and ``|w| ≤ 1``; max over ``w``, then average over the classes. Exact when
    ``P(t ≠ y)`` is measured on the same points; from a user-given teacher accuracy it holds up to
    that score's sampling error (an estimate). Returns ``(lower, upper)``, the lower end cut at 0.

    >>> [round(end, 9) for end in label_band(0.1, 0.25)]
    [0.0, 0.35]
    """
    return _around(smce_vs_teacher, label_gap)


class SmoothCalibration(Metric):
    """The student's smCE on a fixed probe, exact under DDP [definition] (docs/theory.md §2.3).

    smCE is not a sum over points, so its state is the probe's predictions themselves: an
    ``(n, k)`` float64 tensor filled at the rows' probe indices plus an ``(n,)`` count of the rows
    seen, both ``dist_reduce_fx="sum"`` (each probe row is on exactly one rank, so the sum is the
    exact gather; memory is fixed by the probe). ``labels``: ``(n,)`` class indices of the probe rows,
    ``-1`` for rows left out. ``compute()`` is :func:`smooth_calibration_error` on the seen rows
    with a label; :meth:`predictions` gives the synced state to compute other values from.

    >>> metric = SmoothCalibration(torch.tensor([1, 1, 1, 0]), num_classes=2)
    >>> metric.update(torch.tensor([[0.5, 0.5]] * 4), torch.arange(4))
    >>> float(metric.compute())
    0.25
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    # torchmetrics states and buffers (typed for mypy: nn.Module's __getattr__ is untyped)
    labels: torch.Tensor
    probs: torch.Tensor
    seen: torch.Tensor

    def __init__(self, labels: torch.Tensor, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        labels = as_tensor("labels", labels).long()
        self.register_buffer("labels", labels, persistent=False)
        self.add_state("probs", torch.zeros(labels.shape[0], num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("seen", torch.zeros(labels.shape[0], dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, index: torch.Tensor) -> None:
        self.probs.index_copy_(0, index, probs.detach().to(self.probs))
        self.seen.index_fill_(0, index, 1.0)

    def predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probs, seen)``: the (synced, inside :meth:`compute`) state, ``seen`` as a bool mask."""
        return self.probs, self.seen > 0

    def compute(self) -> torch.Tensor:
        probs, seen, labels = (t.cpu().numpy() for t in (self.probs, self.seen, self.labels))
        rows = (seen > 0) & (labels >= 0)
        return torch.tensor(_smce(probs[rows], labels[rows]), dtype=torch.float64)
