"""Neighbourhoods ``N(x)`` inside the probe for Lang, Sontag, Vijayaraghavan (2024) (docs/theory.md §2.5).

Lang et al., "Theoretical Analysis of Weak-to-Strong Generalization" (NeurIPS 2024, arXiv
2405.16043) state their expansion and robustness conditions for a neighbourhood relation
``N(x)`` on inputs (in their experiments: paraphrases / augmentations of ``x``). A live monitor
needs a neighbourhood it can evaluate on the probe at every check without extra forward passes,
so here ``N(x)`` is **our live adaptation** [heuristic]: the ``k`` nearest *other* probe points
of ``x`` in a **frozen** embedding (the teacher's features, or the student's features captured
once at fit start), computed **once** and then reused as a fixed ``(n, k)`` index table. The
relation is directed (``x′ ∈ N(x)`` does not imply ``x ∈ N(x′)``); every statistic built on it
(non-robustness, expansion) reads only the row of ``x``.

Distances (documented, chosen by ``metric``):

- ``"cosine"`` (default): ``1 − ⟨a, b⟩/(‖a‖‖b‖)``; rows are L2-normalised first, a zero row is
  rejected (its cosine is undefined);
- ``"euclidean"``: squared Euclidean distance ``‖a‖² + ‖b‖² − 2⟨a, b⟩`` (clamped at 0; the
  ordering is that of the Euclidean distance).

The search is written by hand because neither torch nor torchmetrics has a kNN search, and the
library that has one (scikit-learn's ``NearestNeighbors``) is numpy-only, not a dependency, and
cannot run on the GPU where the features already are. It is chunked: ``chunk_size`` query rows
against all ``n`` points at a time, so peak memory is ``O(chunk_size · n)`` — the full ``n × n``
distance matrix is never held. Arithmetic is in float64. Exact distance ties at the ``k``-th
place are broken by ``torch.topk`` (deterministic for a given input and device, but not
specified); compute the table once on one process and share it (e.g. store it in the probe) so
that every DDP rank uses the same one.
"""

from __future__ import annotations

import torch

from lightning_w2s.metrics.validation import as_tensor, check_choice, check_finite, check_ndim, check_scalar, describe

METRICS = ("cosine", "euclidean")


@torch.no_grad()
def knn_indices(features, k: int = 10, metric: str = "cosine", chunk_size: int = 1024) -> torch.Tensor:
    """The ``k`` nearest other probe points of every probe point: an ``(n, k)`` int64 table.

    Row ``x`` lists ``N(x)`` ordered from nearest to farthest; ``x`` itself is excluded (a
    duplicate of ``x`` at another index is a legitimate neighbour at distance 0).

    Args:
        features: ``(n, d)`` frozen embedding of the probe (finite values).
        k: neighbours per point, ``1 <= k <= n - 1``.
        metric: ``"cosine"`` or ``"euclidean"`` (see the module docstring).
        chunk_size: query rows per block; peak memory ``O(chunk_size · n)`` float64.

    Returns:
        ``LongTensor (n, k)`` on the features' device.
    """
    x = as_tensor("features", features)
    check_ndim("features", x, 2, "a 2-D (n, d) tensor of frozen probe features")
    if not x.is_floating_point():
        x = x.double()
    check_finite("features", x)
    check_choice("metric", metric, METRICS)
    k = check_scalar("k", k, int, min_val=1)
    chunk_size = check_scalar("chunk_size", chunk_size, int, min_val=1)
    n = x.shape[0]
    if k > n - 1:
        raise ValueError(f"`k`={k} neighbours need at least k + 1 = {k + 1} probe points, got n = {n} ({describe(x)})")
    x = x.double()
    if metric == "cosine":
        norms = x.norm(dim=1)
        zero = norms == 0
        if zero.any():
            i = int(zero.nonzero()[0])
            raise ValueError(f'`features` row {i} is all zeros ({int(zero.sum())} such rows): its cosine distance is undefined; use metric="euclidean" or drop those points')
        x = x / norms[:, None]
    else:
        sq = (x * x).sum(dim=1)
    out = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        block = x[start:stop] @ x.T  # (chunk, n): the only quadratic object, one chunk at a time
        if metric == "cosine":
            dist = 1.0 - block
        else:
            dist = (sq[start:stop, None] + sq[None, :] - 2.0 * block).clamp_min(0.0)
        rows = torch.arange(start, stop, device=x.device)
        dist[rows - start, rows] = float("inf")  # exclude x itself
        out[start:stop] = torch.topk(dist, k, dim=1, largest=False, sorted=True).indices
    return out


def check_neighbours(neighbours, n: int | None = None) -> torch.Tensor:
    """Validate an ``(n, k)`` neighbour index table (int entries in ``[0, n)``); returns it as int64."""
    nb = as_tensor("neighbours", neighbours)
    check_ndim("neighbours", nb, 2, "a 2-D (n, k) tensor of probe indices (e.g. from `knn_indices`)")
    if nb.is_floating_point() or nb.is_complex() or nb.dtype == torch.bool:
        raise TypeError(f"`neighbours` must hold integer probe indices, got {describe(nb)}")
    rows = nb.shape[0]
    if n is not None and rows != n:
        raise ValueError(f"`neighbours` has {rows} rows but the probe has {n} points ({describe(nb)})")
    if nb.shape[1] < 1:
        raise ValueError(f"`neighbours` must list at least one neighbour per point, got {describe(nb)}")
    nb = nb.long()
    if nb.numel() and ((nb < 0).any() or (nb >= rows).any()):
        raise ValueError(f"`neighbours` entries must be probe indices in [0, {rows - 1}], got values in [{int(nb.min())}, {int(nb.max())}]")
    return nb
