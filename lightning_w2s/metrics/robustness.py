"""Label-free robustness γ̂ of the student (Lang, Sontag, Vijayaraghavan 2024, Lemma B.1).

Lang, Sontag, Vijayaraghavan, "Theoretical Analysis of Weak-to-Strong Generalization", NeurIPS
2024 (arXiv 2405.16043); docs/theory.md §2.5. Notation: ``y`` gold label, ``ỹ`` teacher label, ``f`` the
student's prediction (argmax). The teacher *covers* ``S`` (it gives a label) and abstains on ``T``.
For a gold class ``i``: ``S_i = S ∩ {y = i}``, ``T_i = T ∩ {y = i}``, ``S_i^good = S_i ∩ {ỹ = y}``,
``S_i^bad = S_i ∩ {ỹ ≠ y}``. All probabilities are empirical over the probe's gold points.

**Robustness** (label-free) — :class:`NeighbourRobustness` / :func:`neighbour_robustness`
(neighbourhoods ``N(x)`` from :func:`~lightning_w2s.metrics.neighbours.knn_indices`) and
:class:`AugmentationRobustness` / :func:`augmentation_robustness` (``N(x)`` from a user
augmentation callable). Per point ``r(x) = mean_{x′ ∈ N(x)} 1[f(x) ≠ f(x′)]``; average
non-robustness ``γ̂ = mean_x r(x)``; the η-non-robust set ``R̄_η = {x : r(x) > η}`` and the
Markov bound ``P(R̄_η) ≤ γ̂/η`` (Lemma B.1) [paper]; also restricted to ``S``, ``T``, ``S_i``, ``T_i``.

The per-class restrictions feed ``P(R̄_η | S_i)``, ``P(R̄_η | T_i)`` of
:func:`~lightning_w2s.metrics.correction.lang_bounds`; the prediction vector kept by
:class:`NeighbourRobustness` is the history :func:`~lightning_w2s.metrics.expansion.lang_expansion`
takes.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics import Metric

from lightning_w2s.metrics.neighbours import check_neighbours
from lightning_w2s.metrics.stats import F64 as _F64
from lightning_w2s.metrics.stats import ratio as _ratio
from lightning_w2s.metrics.validation import as_tensor, check_labels, check_mask, check_ndim, check_scalar, describe

__all__ = ["AugmentationRobustness", "NeighbourRobustness", "augmentation_nonrobustness", "augmentation_robustness", "neighbour_nonrobustness", "neighbour_robustness"]


def neighbour_nonrobustness(preds, neighbours, seen=None) -> torch.Tensor:
    """Per-point non-robustness ``r(x) = mean_{x′ ∈ N(x)} 1[f(x) ≠ f(x′)]`` (float64 ``(n,)``).

    Lang et al. 2024's average-case robustness (the quantity inside ``R_η`` and Lemma B.1)
    [paper], with ``N(x)`` the row ``x`` of ``neighbours`` (our live adaptation: kNN in a frozen
    embedding, :func:`~lightning_w2s.metrics.neighbours.knn_indices`). With ``seen`` (bool
    ``(n,)``), unseen points get NaN and unseen neighbours are left out of the mean; a point with no
    seen neighbour gets NaN.
    """
    p = check_labels("preds", preds, None, None, allow_minus_one=True)
    nb = check_neighbours(neighbours, p.shape[0]).to(p.device)
    seen_m = torch.ones_like(p, dtype=torch.bool) if seen is None else check_mask("seen", seen, p.shape[0]).to(p.device)
    nb_seen = seen_m[nb]  # (n, k)
    differ = (p[nb] != p[:, None]) & nb_seen
    r = _ratio(differ.sum(dim=1), nb_seen.sum(dim=1))
    return torch.where(seen_m, r, torch.full_like(r, float("nan")))


def augmentation_nonrobustness(preds, aug_preds) -> torch.Tensor:
    """``r(x) = mean_j 1[f(x) ≠ f(aug_j(x))]`` (float64 ``(n,)``) for user augmentations [paper: N(x) as augmentations].

    How the monitor uses it: the user gives a callable ``aug(inputs) -> inputs`` that maps a probe
    batch to an augmented batch of the same structure (a paraphrase, a crop, token dropout); the
    monitor runs the student on ``inputs`` and on ``aug(inputs)`` (``m`` times for ``m`` draws) and
    passes both argmax vectors here: ``preds`` ``(n,)`` and ``aug_preds`` ``(n,)`` or ``(n, m)``.
    Each pair stays on one rank, so the streaming version needs only sum states.
    """
    p = check_labels("preds", preds, None, None, allow_minus_one=False)
    a = as_tensor("aug_preds", aug_preds)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != p.shape[0] or a.shape[1] < 1:
        raise ValueError(f"`aug_preds` must be (n,) or (n, m) with n = {p.shape[0]} like `preds`, got {describe(a)}")
    if a.is_floating_point() or a.is_complex() or a.dtype == torch.bool:
        raise TypeError(f"`aug_preds` must hold integer class indices (argmax of the student on augmented inputs), got {describe(a)}")
    return (a.long().to(p.device) != p[:, None]).to(_F64).mean(dim=1)


def _robustness_sums(r: torch.Tensor, eta: float, gold: torch.Tensor | None, covered: torch.Tensor, num_classes: int | None) -> dict[str, torch.Tensor]:
    """Sum states for the robustness summaries: points with NaN ``r`` (unseen) are left out.

    Scalars: ``n``, ``sum_r``, ``n_nonrobust`` overall and on ``S`` (``*_cov``) and ``T`` (``*_unc``);
    with ``num_classes`` and gold, ``(k,)`` vectors of the same on ``S_i`` (``*_S``) and ``T_i`` (``*_T``).
    """
    ok = ~torch.isnan(r)
    rr = torch.where(ok, r, torch.zeros_like(r))
    nr = (ok & (rr > eta)).to(_F64)
    okf = ok.to(_F64)
    out = {}
    for suffix, m in (("", torch.ones_like(ok)), ("_cov", covered), ("_unc", ~covered)):
        mf = m.to(_F64)
        out["n" + suffix] = (okf * mf).sum()
        out["sum_r" + suffix] = (rr * mf).sum()
        out["n_nonrobust" + suffix] = (nr * mf).sum()
    if num_classes is not None:
        k = num_classes
        g = gold if gold is not None else torch.full_like(r, -1, dtype=torch.long)
        known = g >= 0
        gi = g.clamp_min(0)
        for suffix, m in (("_S", known & covered), ("_T", known & ~covered)):
            m = m & ok
            out["n" + suffix] = torch.bincount(gi[m], minlength=k).to(_F64)
            out["sum_r" + suffix] = torch.bincount(gi[m], weights=rr[m], minlength=k).to(_F64)
            out["n_nonrobust" + suffix] = torch.bincount(gi[m], weights=nr[m], minlength=k).to(_F64)
    return out


def _markov(gamma: torch.Tensor, eta: float) -> torch.Tensor:
    """Lemma B.1's ``min(1, γ̂/η)`` for each entry of ``gamma`` (0-d or ``(k,)``), on its device (no
    host read); a NaN γ̂ (empty set) stays NaN. The same value as
    :func:`~lightning_w2s.metrics.bounds.lang_nonrobust_bound`, whose premise checks hold here by
    construction (γ̂ is a mean of fractions in [0, 1]; η is checked in ``(0, 1]`` at construction).

    >>> _markov(torch.tensor([0.0, 0.1, 0.6, float("nan")], dtype=torch.float64), 0.5).tolist()
    [0.0, 0.2, 1.0, nan]
    """
    return (gamma / eta).clamp(max=1.0)


def _robustness_from_sums(s: dict[str, torch.Tensor], eta: float) -> dict[str, torch.Tensor]:
    """γ̂, the empirical ``P(R̄_η)`` and the Markov bound ``min(1, γ̂/η)`` (Lemma B.1) per subset."""
    out: dict[str, torch.Tensor] = {}
    names = [("", ""), ("_cov", "_covered"), ("_unc", "_uncovered")]
    if "n_S" in s:
        names += [("_S", "_S_per_class"), ("_T", "_T_per_class")]
    for suffix, label in names:
        gamma = _ratio(s["sum_r" + suffix], s["n" + suffix])
        out["gamma" + label] = gamma
        out["p_nonrobust" + label] = _ratio(s["n_nonrobust" + suffix], s["n" + suffix])
        out["p_nonrobust_markov" + label] = _markov(gamma, eta)
    if "n_S" in s:
        out["n_S_per_class"] = s["n_S"].clone()
        out["n_T_per_class"] = s["n_T"].clone()
    out["eta"] = torch.tensor(eta, dtype=_F64)
    return out


#: the keys returned by the robustness functionals and metrics.
ROBUSTNESS_KEYS_DOC = """
    Keys (0-d float64 unless noted): ``gamma`` (γ̂ over all points, label-free), ``gamma_covered``,
    ``gamma_uncovered`` (on ``S`` / ``T``, label-free); ``p_nonrobust*`` = empirical fraction of
    points with ``r(x) > η`` (exact on the probe); ``p_nonrobust_markov*`` = ``min(1, γ̂/η)``, the
    Lemma B.1 upper bound on ``P(R̄_η)`` [paper]; with ``num_classes``: the same on ``S_i`` and
    ``T_i`` as ``(k,)`` vectors ``gamma_S_per_class``, ``gamma_T_per_class``,
    ``p_nonrobust_S_per_class``, ``p_nonrobust_markov_S_per_class``, … and the counts
    ``n_S_per_class``, ``n_T_per_class``; ``eta``.
"""


def neighbour_robustness(preds, neighbours, eta: float = 0.5, gold=None, covered=None, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Functional label-free robustness of the student on the probe (Lang et al. 2024, Lemma B.1).

    ``γ̂ = mean_x mean_{x′ ∈ N(x)} 1[f(x) ≠ f(x′)]`` and ``P(R̄_η) ≤ γ̂/η`` with
    ``R̄_η = {x : r(x) > η}`` (Markov) [paper]; restricted to ``S``, ``T`` and, with gold and
    ``num_classes``, to ``S_i``, ``T_i`` (the ``P(R̄_η | S_i)``, ``P(R̄_η | T_i)`` of Thm B.1-B.3).
    ``N(x)`` = row ``x`` of ``neighbours`` ``(n, k)`` [heuristic: kNN in a frozen embedding].

    Args:
        preds: ``(n,)`` student argmax on the whole probe (``-1`` = not seen: left out).
        neighbours: ``(n, k)`` index table.
        eta: robustness threshold ``η ∈ (0, 1]`` (default 0.5: a point is robust when at most half
            of its neighbours disagree with it) [heuristic default].
        gold, covered: ``(n,)`` gold labels (``-1`` unknown) and coverage mask (default: all covered).
        num_classes: ``k``, for the per-class restrictions.

    Returns:
        the dict described in :data:`ROBUSTNESS_KEYS_DOC`, plus ``seen_fraction``.
    """
    eta = check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
    p = check_labels("preds", preds, None, num_classes, allow_minus_one=True)
    n = p.shape[0]
    r = neighbour_nonrobustness(p, neighbours, seen=p >= 0)
    cov = torch.ones(n, dtype=torch.bool, device=p.device) if covered is None else check_mask("covered", covered, n).to(p.device)
    g = None if gold is None else check_labels("gold", gold, n, num_classes, allow_minus_one=True).to(p.device)
    k = None if num_classes is None else check_scalar("num_classes", num_classes, int, min_val=2)
    out = _robustness_from_sums(_robustness_sums(r, eta, g, cov, k), eta)
    out["seen_fraction"] = (p >= 0).to(_F64).mean()
    return out


class NeighbourRobustness(Metric):
    """Streaming :func:`neighbour_robustness`, exact under DDP although neighbours cross shards.

    Each rank sees only its shard of the probe, but ``N(x)`` may lie on another rank, so ``γ̂``
    cannot be summed from per-rank partial terms. The state is the **prediction vector** itself,
    held as ``(n,)`` float64 sums: ``pred_sum[x] += f(x)``, ``pred_count[x] += 1``,
    ``pred_sumsq[x] += f(x)²`` at the indices a rank saw, 0 elsewhere. A sum-reduction across
    ranks (``dist_reduce_fx="sum"``) therefore reconstructs the full vector exactly (integers in
    float64), ``f(x) = pred_sum[x]/pred_count[x]``; ``compute`` then evaluates ``γ̂`` from that
    vector and the fixed neighbour table. Memory and traffic ``O(n)`` numbers per check (3n), never
    ``n × n``. A point seen twice (a duplicated index in padding marked valid) is fine if both
    predictions agree; if they differ (``pred_sumsq`` reveals a non-zero variance) the point is
    dropped with a warning; unseen points (``pred_count = 0``) are left out and reported by
    ``seen_fraction``. ``compute`` also returns ``predictions`` (``(n,)`` int64, ``-1`` unseen) for
    the expansion history (:func:`lang_expansion`).

    Args:
        neighbours: ``(n, k)`` index table (computed once, identical on every rank).
        eta, gold, covered, num_classes: as in :func:`neighbour_robustness` (probe-level constants,
            kept as non-persistent buffers).

    >>> m = NeighbourRobustness(torch.tensor([[1], [0], [1]]), eta=0.5)
    >>> m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    >>> round(float(m.compute()["gamma"]), 4)  # points 0 and 1 disagree with their neighbour
    0.6667
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, neighbours, eta: float = 0.5, gold=None, covered=None, num_classes: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        nb = check_neighbours(neighbours)
        n = nb.shape[0]
        self.n = n
        self.eta = check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        self.num_classes = None if num_classes is None else check_scalar("num_classes", num_classes, int, min_val=2)
        self.register_buffer("neighbours", nb, persistent=False)
        cov = torch.ones(n, dtype=torch.bool) if covered is None else check_mask("covered", covered, n)
        self.register_buffer("covered", cov, persistent=False)
        g = None if gold is None else check_labels("gold", gold, n, self.num_classes, allow_minus_one=True)
        self.register_buffer("gold", g, persistent=False)
        for name in ("pred_sum", "pred_count", "pred_sumsq"):
            self.add_state(name, torch.zeros(n, dtype=_F64), dist_reduce_fx="sum")

    def update(self, index, preds, valid=None) -> None:
        """Add one probe batch: ``index`` ``(b,)`` probe positions, ``preds`` ``(b,)`` argmax, ``valid`` ``(b,)`` bool."""
        idx = as_tensor("index", index)
        check_ndim("index", idx, 1, "a 1-D (b,) tensor of probe positions")
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise TypeError(f"`index` must hold integer probe positions, got {describe(idx)}")
        b = idx.shape[0]
        p = check_labels("preds", preds, b, self.num_classes, allow_minus_one=False, hint="; pass argmax predictions")
        keep = torch.ones(b, dtype=torch.bool, device=idx.device) if valid is None else check_mask("valid", valid, b).to(idx.device)
        idx, p = idx.long()[keep], p.to(idx.device)[keep]
        if idx.numel() and ((idx < 0).any() or (idx >= self.n).any()):
            raise ValueError(f"`index` must lie in [0, {self.n - 1}] on valid rows, got values in [{int(idx.min())}, {int(idx.max())}]")
        dev = self.pred_sum.device
        idx, pf = idx.to(dev), p.to(dev, _F64)
        self.pred_sum.index_add_(0, idx, pf)
        self.pred_count.index_add_(0, idx, torch.ones_like(pf))
        self.pred_sumsq.index_add_(0, idx, pf * pf)

    def predictions(self) -> torch.Tensor:
        """The prediction vector from the (already reduced) states: int64 ``(n,)``, ``-1`` unseen/inconsistent."""
        cnt = self.pred_count
        seen = cnt > 0
        safe = torch.where(seen, cnt, torch.ones_like(cnt))
        mean = self.pred_sum / safe
        var = self.pred_sumsq / safe - mean * mean
        clash = seen & (var.abs() > 1e-6)
        if clash.any():
            warnings.warn(
                f"NeighbourRobustness: {int(clash.sum())} probe point(s) were seen more than once with different predictions (first index {int(clash.nonzero()[0])}); they are left out",
                RuntimeWarning,
                stacklevel=2,
            )
        ok = seen & ~clash
        return torch.where(ok, mean.round().long(), torch.full_like(cnt, -1, dtype=torch.long))

    def compute(self) -> dict[str, torch.Tensor]:
        preds = self.predictions()
        seen_fraction = (preds >= 0).to(_F64).mean()
        if bool(seen_fraction < 1):
            warnings.warn(
                f"NeighbourRobustness: only {float(seen_fraction):.4g} of the probe was seen at this check; gamma is computed on the seen points and their seen neighbours",
                RuntimeWarning,
                stacklevel=2,
            )
        r = neighbour_nonrobustness(preds, self.neighbours, seen=preds >= 0)
        out = _robustness_from_sums(_robustness_sums(r, self.eta, self.gold, self.covered, self.num_classes), self.eta)
        out["seen_fraction"] = seen_fraction
        out["predictions"] = preds
        return out


def augmentation_robustness(preds, aug_preds, eta: float = 0.5, gold=None, covered=None, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Functional robustness with ``N(x)`` = user augmentations of ``x`` (see :func:`augmentation_nonrobustness`).

    Same statistics and keys as :func:`neighbour_robustness` (:data:`ROBUSTNESS_KEYS_DOC`), without
    ``seen_fraction``.
    """
    eta = check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
    r = augmentation_nonrobustness(preds, aug_preds)
    n = r.shape[0]
    cov = torch.ones(n, dtype=torch.bool, device=r.device) if covered is None else check_mask("covered", covered, n).to(r.device)
    g = None if gold is None else check_labels("gold", gold, n, num_classes, allow_minus_one=True).to(r.device)
    k = None if num_classes is None else check_scalar("num_classes", num_classes, int, min_val=2)
    return _robustness_from_sums(_robustness_sums(r, eta, g, cov, k), eta)


class AugmentationRobustness(Metric):
    """Streaming :func:`augmentation_robustness`: scalar and ``(k,)`` float64 sum states.

    ``x`` and its augmentations are evaluated on the same rank, so per-point terms sum exactly.

    >>> m = AugmentationRobustness(eta=0.5)
    >>> m.update(torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 1]]))
    >>> float(m.compute()["gamma"])  # point 0 changes its label under one of two augmentations
    0.25
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, eta: float = 0.5, num_classes: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eta = check_scalar("eta", eta, float, min_val=0.0, max_val=1.0, include_boundaries="right")
        self.num_classes = None if num_classes is None else check_scalar("num_classes", num_classes, int, min_val=2)
        empty = _robustness_sums(torch.zeros(0, dtype=_F64), self.eta, None, torch.zeros(0, dtype=torch.bool), self.num_classes)
        self._state_names = tuple(empty)
        for name, value in empty.items():
            self.add_state(name, torch.zeros_like(value), dist_reduce_fx="sum")

    def update(self, preds, aug_preds, gold=None, covered=None) -> None:
        r = augmentation_nonrobustness(preds, aug_preds)
        n = r.shape[0]
        cov = torch.ones(n, dtype=torch.bool, device=r.device) if covered is None else check_mask("covered", covered, n).to(r.device)
        g = None if gold is None else check_labels("gold", gold, n, self.num_classes, allow_minus_one=True).to(r.device)
        for name, value in _robustness_sums(r, self.eta, g, cov, self.num_classes).items():
            setattr(self, name, getattr(self, name) + value.to(getattr(self, name).device))

    def compute(self) -> dict[str, torch.Tensor]:
        return _robustness_from_sums({name: getattr(self, name) for name in self._state_names}, self.eta)
