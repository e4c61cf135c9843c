"""Top-label calibration error from a binned histogram state (docs/theory.md §2.3).

Guo et al. 2017, "On Calibration of Modern Neural Networks" (ICML), Eq. 3 (ECE) and the MCE
defined beside it [definition, exact given the binning]. For each point the *confidence* is the
top-label probability ``max_c p(x)_c`` and *correct* is ``1[argmax_c p(x)_c = target]``. The
interval ``[0, 1]`` is cut into ``n_bins`` equal-width bins ``B_b = [b/n_bins, (b+1)/n_bins)``;
a confidence of exactly ``1.0`` goes to the last bin and ``0.0`` to the first. With ``N`` points::

    ECE  = Σ_b |B_b|/N · |acc(B_b) − conf(B_b)| = Σ_b |Σ_{B_b} correct − Σ_{B_b} confidence| / N
    MCE  = max_{b: |B_b| > 0} |acc(B_b) − conf(B_b)|
    RMSCE (norm="l2") = sqrt(Σ_b |B_b|/N · (acc(B_b) − conf(B_b))²)

The state is the histogram itself — per bin: count, Σ confidence, Σ correct (float64 sum states,
``dist_reduce_fx="sum"``) — so memory is ``3·n_bins`` numbers whatever the probe size, a DDP sync
is exact, and the same state draws the reliability diagram (:meth:`Calibration.histogram`).

Why not torchmetrics' ``CalibrationError``: it keeps ``cat`` lists of every confidence (O(n)
memory, raw data all-gathered under DDP) and bins with ``linspace(0, 1, n_bins + 1)`` boundaries
so that a confidence of exactly 1.0 lands in a phantom extra bin (Lightning-AI/torchmetrics#3510).
The bin edges here are the same as torchmetrics' (``torch.bucketize`` on the same ``linspace``,
``right=True``) so the two agree on every input away from 1.0; the tests use it as an oracle there.

Three uses in W2S (Yao et al. 2025: a calibrated teacher matters; over-optimising toward the weak
labels hurts): the student against gold, the student against the teacher (``target`` = teacher
argmax: student confidence vs agreement with the teacher), and the teacher against gold.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from lightning_w2s.metrics.validation import as_tensor, check_choice, check_finite, check_scalar, describe

NORMS = ("l1", "max", "l2")


def _check_n_bins(n_bins) -> int:
    return check_scalar("n_bins", n_bins, int, min_val=1)


def _check_inputs(probs, target, ignore_index: int | None, validate_args: bool, target_name: str = "target") -> tuple[torch.Tensor, torch.Tensor]:
    p = as_tensor("probs", probs)
    y = as_tensor(target_name, target)
    if not p.is_floating_point():
        raise TypeError(f"`probs` must be a floating-point (n, num_classes) tensor of probabilities, got {describe(p)}")
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"`probs` must be a 2-D (n, num_classes) tensor of probabilities, got {describe(p)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"`{target_name}` must hold integer class indices, got {describe(y)}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"`{target_name}` must be (n,) with n = {p.shape[0]} rows like `probs`, got {describe(y)}")
    if ignore_index is not None:
        keep = y != ignore_index
        p, y = p[keep], y[keep]
    if validate_args and p.numel():
        check_finite("probs", p)
        if (p < 0).any() or (p > 1).any():
            raise ValueError(f"`probs` must hold probabilities in [0, 1], got values in [{p.min().item():.4g}, {p.max().item():.4g}] ({describe(p)}); apply softmax to logits first")
        k = p.shape[1]
        if ((y < 0) | (y >= k)).any():
            bad = y[(y < 0) | (y >= k)][0].item()
            raise ValueError(f"`{target_name}` must hold class indices in [0, {k - 1}], got {bad} ({describe(y)})")
    return p, y


def top_label(probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(confidence, correct)``: ``max_c p_c`` and ``1[argmax_c p_c = target]`` (float64, ``(n,)``)."""
    conf, pred = probs.double().max(dim=1)
    return conf, (pred == target).double()


def bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of each confidence: ``[b/n, (b+1)/n)``, with 1.0 in the last bin and 0.0 in the first.

    ``torch.bucketize`` on the inner edges of ``linspace(0, 1, n_bins + 1)`` with ``right=True``
    (torchmetrics' edges): values on an inner edge go to the upper bin; values ``≥ 1`` to the last,
    ``≤ 0`` to the first.
    """
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=confidence.device)[1:-1]
    return torch.bucketize(confidence.double().contiguous(), edges, right=True)


def calibration_counts(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Histogram ``(3, n_bins)`` float64: rows count, Σ confidence, Σ correct (shared by functional and Metric)."""
    conf = confidence.double()
    idx = bin_index(conf, n_bins)
    hist = torch.zeros(3, n_bins, dtype=torch.float64, device=conf.device)
    hist[0].index_add_(0, idx, torch.ones_like(conf))
    hist[1].index_add_(0, idx, conf)
    hist[2].index_add_(0, idx, correct.double())
    return hist


def calibration_from_counts(count: torch.Tensor, sum_confidence: torch.Tensor, sum_correct: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """ECE (``"l1"``), MCE (``"max"``) or RMS calibration error (``"l2"``) of a histogram. ``NaN`` if empty."""
    check_choice("norm", norm, NORMS)
    n = count.sum()
    nonempty = count > 0
    safe = torch.where(nonempty, count, torch.ones_like(count))
    gap = (sum_correct - sum_confidence).abs() / safe  # |acc(B) − conf(B)| per non-empty bin
    n_safe = torch.where(n > 0, n, torch.ones_like(n))
    if norm == "l1":
        value = (sum_correct - sum_confidence).abs().sum() / n_safe
    elif norm == "max":
        value = torch.where(nonempty, gap, torch.zeros_like(gap)).max()  # gaps are >= 0
    else:
        value = ((count / n_safe) * gap.pow(2)).sum().sqrt()
    return torch.where(n > 0, value, torch.full_like(value, float("nan")))  # no data: NaN, no host read


def _histogram_dict(hist: torch.Tensor) -> dict[str, torch.Tensor]:
    n_bins = hist.shape[1]
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=hist.device)
    count, s_conf, s_corr = hist
    nonempty = count > 0
    safe = torch.where(nonempty, count, torch.ones_like(count))
    nan = torch.full_like(count, float("nan"))
    return {"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": count.clone(), "confidence": torch.where(nonempty, s_conf / safe, nan), "accuracy": torch.where(nonempty, s_corr / safe, nan)}


def calibration_error(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15, norm: str = "l1", *, ignore_index: int | None = None, validate_args: bool = True) -> torch.Tensor:
    """Top-label calibration error (docs/architecture.md, public API; Guo et al. 2017 Eq. 3) [definition].

    Args:
        probs: ``(n, k)`` probabilities.
        target: ``(n,)`` int class indices (gold labels, or the teacher's argmax for the
            student-vs-teacher check).
        n_bins: equal-width bins on ``[0, 1]``.
        norm: ``"l1"`` = ECE, ``"max"`` = MCE (largest gap over non-empty bins), ``"l2"`` = RMS.
        ignore_index: rows whose target equals this are dropped (e.g. ``-1`` = unknown gold).

    Returns:
        0-d float64 tensor; ``NaN`` when no rows remain.
    """
    _check_n_bins(n_bins)
    check_choice("norm", norm, NORMS)
    p, y = _check_inputs(probs, target, ignore_index, validate_args)
    hist = calibration_counts(*top_label(p, y), n_bins)
    return calibration_from_counts(hist[0], hist[1], hist[2], norm)


def calibration_histogram(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15, *, ignore_index: int | None = None, validate_args: bool = True) -> dict[str, torch.Tensor]:
    """The reliability-diagram data of :func:`calibration_error`: per bin ``bin_lower``,
    ``bin_upper``, ``count``, mean ``confidence`` and ``accuracy`` (``NaN`` in empty bins)."""
    _check_n_bins(n_bins)
    p, y = _check_inputs(probs, target, ignore_index, validate_args)
    return _histogram_dict(calibration_counts(*top_label(p, y), n_bins))


class Calibration(Metric):
    """Streaming top-label calibration: ``compute() -> {"ece", "mce"}`` and :meth:`histogram`.

    State: per bin ``count``, ``sum_confidence``, ``sum_correct`` (float64, ``dist_reduce_fx="sum"``).
    Equal to :func:`calibration_error` (``norm="l1"`` → ``ece``, ``"max"`` → ``mce``) on the
    concatenation of the batches.

    Args:
        n_bins: equal-width bins on ``[0, 1]`` (default 15, Guo et al. 2017).
        ignore_index: rows whose target equals this are dropped (e.g. ``-1``).
        validate_args: check ranges at every ``update`` (one host sync per batch).

    >>> m = Calibration(n_bins=10)
    >>> m.update(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1]))
    >>> round(float(m.compute()["ece"]), 4)  # (|1 - 0.9| + |0 - 0.6|) / 2
    0.35
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, n_bins: int = 15, ignore_index: int | None = None, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_bins = _check_n_bins(n_bins)
        self.ignore_index = ignore_index
        self.validate_args = validate_args
        for name in ("count", "sum_confidence", "sum_correct"):
            self.add_state(name, torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        p, y = _check_inputs(probs, target, self.ignore_index, self.validate_args)
        self.update_confidence(*top_label(p, y))

    def update_confidence(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add precomputed ``(confidence, correct)`` pairs (e.g. a binary model's own convention)."""
        hist = calibration_counts(confidence, correct, self.n_bins)
        self.count += hist[0]
        self.sum_confidence += hist[1]
        self.sum_correct += hist[2]

    def compute(self) -> dict[str, torch.Tensor]:
        """``ece`` and ``mce`` (0-d), plus the reduced histogram ``count``, ``sum_confidence``,
        ``sum_correct`` (``(n_bins,)``) so a reliability diagram can be drawn from synced states."""
        return {
            "ece": calibration_from_counts(self.count, self.sum_confidence, self.sum_correct, "l1"),
            "mce": calibration_from_counts(self.count, self.sum_confidence, self.sum_correct, "max"),
            "count": self.count,
            "sum_confidence": self.sum_confidence,
            "sum_correct": self.sum_correct,
        }

    def histogram(self) -> dict[str, torch.Tensor]:
        """Reliability-diagram data from the state: see :func:`calibration_histogram`.

        This reads the local state; under DDP ``compute`` un-syncs again when it returns, so read
        the reduced histogram inside ``with metric.sync_context(): metric.histogram()`` (every
        rank must enter it: it is a collective).
        """
        return _histogram_dict(torch.stack([self.count, self.sum_confidence, self.sum_correct]))
