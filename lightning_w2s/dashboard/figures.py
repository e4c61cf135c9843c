"""Reliability diagrams drawn with matplotlib, never pyplot (Guo et al. 2017).

Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017; docs/architecture.md.
Both functions read the calibration histogram state (per equal-width confidence bin on ``[0, 1]``:
count, Σ confidence, Σ correct), i.e. the sum states of
:class:`~lightning_w2s.metrics.calibration.Calibration` after a DDP sync:

- :func:`reliability_summary`: per-bin accuracy and mean confidence, ECE and MCE (computed by
  :func:`lightning_w2s.metrics.calibration.calibration_from_counts`, as the logged scalars are);
- :func:`reliability_figure`: the reliability diagram, with ECE and MCE in the title.

Figures use :class:`matplotlib.figure.Figure` directly, never ``pyplot``: nothing here registers
figures with pyplot or switches the backend of a user's interactive session (and no figure has to
be closed). :mod:`lightning_w2s.dashboard.tensorboard` renders them with the Agg canvas
(:func:`~lightning_w2s.dashboard.tensorboard.figure_to_image`) and writes them to TensorBoard
(:func:`~lightning_w2s.dashboard.tensorboard.write_reliability`); this module knows nothing of TensorBoard.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from lightning_w2s.metrics.calibration import calibration_from_counts
from lightning_w2s.metrics.validation import describe

__all__ = ["reliability_figure", "reliability_summary"]


def _as_bins(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a 1-d array of per-bin sums, got {describe(value)}") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-d array (one entry per bin), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` contains non-finite values (NaN or Inf): {arr.tolist()}")
    return arr


def reliability_summary(counts: Any, conf_sums: Any, correct_sums: Any) -> dict[str, Any]:
    """Per-bin accuracy and mean confidence, ECE and MCE from a calibration histogram state.

    Equal-width bins on ``[0, 1]`` (bin ``b`` covers ``[b/B, (b+1)/B)``, the last bin includes 1).
    With ``n_b`` points, ``conf_b = Σconf/n_b``, ``acc_b = Σcorrect/n_b`` and ``N = Σ n_b``:
    ``ECE = Σ_b (n_b/N)·|acc_b − conf_b|`` (Guo et al. 2017, eq. 3; a definition) and
    ``MCE = max_{b: n_b>0} |acc_b − conf_b|`` (their eq. 5). Empty bins have NaN accuracy and
    confidence and do not enter either; with no data at all, ECE and MCE are NaN (never 0). ECE
    and MCE come from :func:`lightning_w2s.metrics.calibration.calibration_from_counts`, the
    function the calibration metric itself uses, so the title matches the logged scalar.

    Returns a dict with ``edges`` (B+1,), ``counts``, ``accuracy``, ``confidence`` (B,), ``total``,
    ``ece``, ``mce``.
    """
    counts = _as_bins("counts", counts)
    conf_sums = _as_bins("conf_sums", conf_sums)
    correct_sums = _as_bins("correct_sums", correct_sums)
    if not (counts.shape == conf_sums.shape == correct_sums.shape):
        raise ValueError(f"`counts`, `conf_sums` and `correct_sums` must have one entry per bin each, got shapes {counts.shape}, {conf_sums.shape} and {correct_sums.shape}")
    if (counts < 0).any():
        raise ValueError(f"`counts` must be non-negative, got {counts.tolist()}")
    tol = 1e-9 * np.maximum(counts, 1.0)
    for name, sums in (("conf_sums", conf_sums), ("correct_sums", correct_sums)):
        if (sums < -tol).any() or (sums > counts + tol).any():
            raise ValueError(f"`{name}` must lie in [0, counts] per bin (sums of values in [0, 1]), got {sums.tolist()} for counts {counts.tolist()}")
    n_bins = counts.size
    filled = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(filled, correct_sums / counts, np.nan)
        confidence = np.where(filled, conf_sums / counts, np.nan)
    total = float(counts.sum())
    # the same function the calibration metric logs ECE/MCE with, so the title matches the scalar
    state = [torch.from_numpy(a) for a in (counts, conf_sums, correct_sums)]
    ece = float(calibration_from_counts(*state, norm="l1"))
    mce = float(calibration_from_counts(*state, norm="max"))
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "counts": counts, "accuracy": accuracy, "confidence": confidence, "total": total, "ece": ece, "mce": mce}


def reliability_figure(counts: Any, conf_sums: Any, correct_sums: Any, title: str = "reliability", *, figsize: tuple[float, float] = (5.0, 5.5), dpi: int = 80) -> Figure:
    """A reliability diagram drawn from a calibration histogram state (see :func:`reliability_summary`).

    Top panel: accuracy per confidence bin as bars against the diagonal (perfect calibration), the
    gap between each bin's accuracy and its mean confidence shaded, and the mean confidence as a
    marker. Bottom panel: the number of points per bin. The title carries ECE, MCE and n. An
    all-empty histogram gives a figure that says "no data" (never an error).

    Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot; nothing to close).
    """
    s = reliability_summary(counts, conf_sums, correct_sums)
    edges, n = s["edges"], s["counts"]
    width = np.diff(edges)
    left = edges[:-1]
    centres = left + width / 2

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1))
    ax = fig.add_subplot(grid[0])
    ax_n = fig.add_subplot(grid[1], sharex=ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel("count")

    if s["total"] == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, color="0.3", transform=ax.transAxes)
        ax_n.text(0.5, 0.5, "no data", ha="center", va="center", color="0.3", transform=ax_n.transAxes)
        ax_n.set_ylim(0, 1)
        fig.suptitle(f"{title}\nno data (empty histogram)", fontsize=10)
        return fig

    filled = n > 0
    acc = np.where(filled, s["accuracy"], 0.0)
    conf = s["confidence"]
    ax.bar(left[filled], acc[filled], width=width[filled], align="edge", color="tab:blue", edgecolor="navy", linewidth=0.6, alpha=0.85, label="accuracy")
    # gap between accuracy and mean confidence, per filled bin
    lo = np.minimum(acc, np.nan_to_num(conf))
    hi = np.maximum(acc, np.nan_to_num(conf))
    ax.bar(
        left[filled],
        (hi - lo)[filled],
        bottom=lo[filled],
        width=width[filled],
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        linewidth=0.0,
        label="gap to mean confidence",
    )
    ax.plot(centres[filled], conf[filled], linestyle="none", marker="o", markersize=3, color="tab:red", label="mean confidence")
    ax.legend(loc="upper left", fontsize=7)

    ax_n.bar(left, n, width=width, align="edge", color="0.5", edgecolor="0.3", linewidth=0.5)
    ax_n.set_ylim(0, max(float(n.max()), 1.0) * 1.1)
    fig.suptitle(f"{title}\nECE {s['ece']:.4f}   MCE {s['mce']:.4f}   n={s['total']:.0f}   {n.size} bins", fontsize=10)
    return fig
