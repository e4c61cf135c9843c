"""Representation-based W2S gap (Xue, Li, Mirzasoleiman 2025) — label-free, from d×d statistics.

docs/theory.md §2.4. Centred features ``Φ_s (n×d_s)`` (student) and ``Φ_w (n×d_w)`` (teacher), kernels
``K = ΦΦᵀ/n``, ridge smoothers ``P = K(K + λI)^-1`` with ``λ = reg·tr(K)/n`` computed separately
for each representation, and ``M = P_s(I − P_w)``:

- ``fro = ‖M‖_F²/n`` — the expected transductive prediction gap for isotropic labels;
- ``op = ‖M‖_2`` — the worst case over unit label vectors (saturates near 1 when both smoothers
  are near-projections);
- ``cka = ‖C_sw‖_F²/(‖C_s‖_F‖C_w‖_F)`` — linear CKA (Kornblith et al. 2019) of the captured
  features themselves, whatever ``max_components`` is: a similarity;
- ``effective_rank = tr(C_s)²/‖C_s‖_F²`` — participation ratio of the student covariance (exp of
  the order-2 Rényi entropy of its normalised eigenvalues): a collapse detector [heuristic];
- ``pred_gap = ‖MY‖_F²/n`` with gold labels ``Y``: the exact transductive identity
  ``‖f_w2s − f_sc‖²/n`` for the kernel-ridge heads ``f_w = P_w y``, ``f_w2s = P_s f_w``,
  ``f_sc = P_s y`` [derived, checked in the tests against dense n×n heads]. A real label vector is
  one column; an (n, m) real matrix has m columns; integer class labels of k classes become k
  one-hot columns, and the gap is **summed over the columns**. Because the features are centred,
  ``P·1 = 0``, so the label mean does not matter.

Certainty: the definitions of ``M``, ``P`` and ``λ`` are the public reimplementations' convention
[docs/theory.md §2.4: the paper's own construction could not be read; its abstract speaks of kernels from
*principal components*, hence ``max_components``]. The quantities are exact linear algebra
[derived]; reading them as a *predictor* of W2S gain is the paper's claim, not a guarantee.

**No n×n matrix is ever built**: the d×d algebra (push-through identities, the top-k eigenpairs by
block Krylov with an exact fallback, no O(d³) step for ``cka`` and ``effective_rank``) lives in
:mod:`lightning_w2s.metrics._gap_algebra`; the shifted float64 sum states, exact under DDP, in
:mod:`lightning_w2s.metrics._moments`. The algebra runs with one intra-op thread except for
single large products (:mod:`lightning_w2s.metrics.threads`: robust when other processes load the
cores), everything on the states' device, in float64 (``products="float32"`` forms each chunk's
second-moment products in float32, an option: docs/performance.md). Numerical faults are never a silent number: non-finite features, fewer than 2
samples, constant features, or a top-``max_components`` subspace that is not unique (tied
eigenvalues at the cut) give a ``RuntimeWarning`` naming the reason and NaN values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_w2s.metrics._gap_algebra import REPRESENTATION_KEYS, effective_rank_of, evaluate
from lightning_w2s.metrics._moments import PRODUCTS, Layout, ShiftedSumsMetric, Sums, accumulate_
from lightning_w2s.metrics._repr_inputs import all_finite, check_args, feature_matrix, finite_rows, label_matrix, pair
from lightning_w2s.metrics.threads import limited_threads
from lightning_w2s.metrics.validation import as_tensor, check_choice, check_scalar, describe

_PAIRS = ((0, 0), (1, 1), (0, 1))  # second moments kept: student, teacher, student × teacher


@dataclass(frozen=True)
class GapConstruction:
    """A named configuration of the representation gap (the arguments of :func:`representation_gap`).

    ``score`` names the key used to rank teachers (lower = better expected W2S). ``products`` is
    the dtype of the streaming metric's per-chunk second-moment products (``"float64"`` or
    ``"float32"``, :class:`RepresentationGap`); it is not a kwarg of the functional, which
    works in float64.

    >>> GapConstruction(max_components=8).kwargs()
    {'reg': 0.1, 'max_components': 8, 'reg_relative_to': 'n'}
    """

    reg: float = 0.1
    max_components: int | None = None
    reg_relative_to: str = "n"
    score: str = "fro"
    products: str = "float64"

    def kwargs(self) -> dict[str, Any]:
        return {"reg": self.reg, "max_components": self.max_components, "reg_relative_to": self.reg_relative_to}


#: The construction used by the monitor's and :func:`lightning_w2s.rank_teachers`' defaults:
#: ``fro`` after truncating both representations to their top 32 principal components, ``reg=0.1``
#: with ``λ = reg·tr(K)/n``; float64 products (``GapConstruction(products="float32")`` is the
#: cheaper option, docs/performance.md). Chosen from docs/theory.md §2.4's measurement (one real text task, 11 teachers:
#: Spearman ρ between label-free ``fro`` and the students' gold error 0.21 full-rank, 0.62–0.67
#: with both representations truncated to their top 8–32 PCs); ``make bench-validity`` re-measures it.
DEFAULT_CONSTRUCTION = GapConstruction(reg=0.1, max_components=32, reg_relative_to="n", score="fro")


def _warn(reason: str) -> None:
    warnings.warn(f"representation gap: {reason}; returning NaN", RuntimeWarning, stacklevel=3)


def _centred_sums(xs: list[Tensor], y: Tensor | None, pairs: tuple) -> Sums:
    """Sums of rows shifted by their exact means (the functional holds all rows: the best shift)."""
    xs = [x.to(torch.float64) for x in xs]
    xs = [x - x.mean(0) if x.shape[0] else x for x in xs]
    layout = Layout(tuple(x.shape[1] for x in xs), pairs, 0 if y is None else y.shape[1])
    return accumulate_(layout.zeros(xs[0]), xs, y)


def representation_gap(
    student_features: Tensor, teacher_features: Tensor, reg: float = 0.1, labels: Tensor | None = None, max_components: int | None = None, *, reg_relative_to: str = "n", num_classes: int | None = None
) -> dict[str, Tensor]:
    """Representation-based W2S gap of Xue, Li, Mirzasoleiman (2025), docs/theory.md §2.4 [derived algebra].

    ``M = P_s(I − P_w)``, ``P = K(K + λI)^-1``, ``K = ΦΦᵀ/n`` on centred features, with
    ``λ = reg·tr(K)/n`` per representation — computed from d×d statistics only (module docstring).
    Lower gap = the student can recover more of what the teacher misses (the paper's prediction).

    Args:
        student_features: ``(n, d_s)`` student representations ``h_s(x)``.
        teacher_features: ``(n, d_w)`` teacher representations ``h_w(x)`` on the same inputs.
        reg: ridge strength, ``> 0``.
        labels: optional gold labels for ``pred_gap``: integer class indices ``(n,)`` (``-1`` =
            unknown; k classes become k one-hot columns, the gap is summed over the columns), or
            real values ``(n,)`` / ``(n, m)`` (``NaN`` = unknown; summed over the m columns).
            ``pred_gap`` is the dense definition applied to the rows with a known label (their
            own centring, covariances, λ and principal components).
        max_components: keep only each representation's top principal components (``Φ → Φ U_k``
            before building the kernel) for ``fro``, ``op``, ``pred_gap``. ``None`` = all. A
            representation of rank < ``max_components`` keeps all of its components. For d ≥ 1024
            the top components come from block Krylov (its accuracy: :mod:`~lightning_w2s.metrics._gap_algebra`).
        reg_relative_to: ``"n"`` (default): ``λ = reg·tr(K)/n``; ``"dim"``: ``λ = reg·tr(C)/d'``,
            reg times the mean eigenvalue of the (truncated) covariance, ``d' = min(d, max_components)``.
        num_classes: number of classes for integer ``labels`` (default: ``max(labels) + 1``).

    Returns:
        ``{"fro": ‖M‖_F²/n, "op": ‖M‖_2, "cka": linear CKA}`` plus ``"pred_gap": ‖MY‖_F²/n`` with
        ``labels``; 0-d float64 tensors on the features' device. Non-finite features, ``n < 2``,
        constant features or a tied top-``max_components`` subspace warn and give NaN.

    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.randn(200, 6, generator=g, dtype=torch.float64)
    >>> gap = representation_gap(s, s[:, :3] @ torch.randn(3, 4, generator=g, dtype=torch.float64))
    >>> round(float(gap["fro"]) * 200, 2), round(float(gap["op"]), 2)  # teacher spans 3 of 6 directions
    (2.98, 1.0)
    """
    check_args(reg, max_components, reg_relative_to)
    s, w = pair(student_features, teacher_features)
    y = known = None
    if labels is not None:
        y, known = label_matrix(labels, s.shape[0], num_classes, None)
        y, known = y.to(s.device), known.to(s.device)
    keys = list(REPRESENTATION_KEYS) + (["pred_gap"] if y is not None else [])
    finite = None if all_finite(s, w) else finite_rows(s, w)
    if finite is not None and not finite.all():
        _warn(f"{int((~finite).sum())} of {s.shape[0]} rows of the features are not finite (NaN/Inf)")
        return {k: torch.tensor(float("nan"), dtype=torch.float64, device=s.device) for k in keys}
    kw = {"reg": float(reg), "max_components": max_components, "rel": reg_relative_to}
    all_gold = y is not None and bool(known.all())  # one pass gives pred_gap too (same spectra)
    sums = _centred_sums([s, w], y if all_gold else None, _PAIRS)
    gold = _centred_sums([s[known], w[known]], y[known], _PAIRS) if y is not None and not all_gold else None
    with limited_threads():
        vals, reason = evaluate([sums], **kw)
        if reason:
            _warn(reason)
        out = {k: vals[k] for k in keys if k in vals}
        if gold is not None:
            gvals, greason = evaluate([gold], **kw, gap=False)
            if greason:
                _warn(f"pred_gap on the {int(known.sum())} labelled rows: {greason}")
            out["pred_gap"] = gvals["pred_gap"]
    return out


def effective_rank(features: Tensor) -> Tensor:
    """Effective rank of the features' covariance ``C``: the participation ratio ``tr(C)²/‖C‖_F²``.

    ``= (Σc)²/Σc²`` over the eigenvalues ``c`` of ``C``, i.e. ``exp`` of the order-2 Rényi entropy
    of ``p = c/Σc`` (Rényi 1961); known as the participation ratio of a representation (e.g. Gao et
    al. 2017, "A theory of multineuronal dimensionality"). A collapse detector [heuristic]: 1 when
    all variance lies on one direction, the rank when it is spread evenly over it, never above the
    Shannon effective rank ``exp(H(p))`` of Roy & Vetterli (2007), which needs every eigenvalue (an
    O(d³) eigendecomposition) where this needs O(d²). Returns a 0-d float64 tensor; NaN with a
    ``RuntimeWarning`` for non-finite or constant features or fewer than 2 rows.

    >>> round(float(effective_rank(torch.eye(4, dtype=torch.float64).repeat(3, 1))), 6)  # 4 one-hot rows: rank 3 once centred
    3.0
    """
    x = feature_matrix("features", features)
    if not bool(torch.isfinite(x).all()):
        _warn("the features are not finite (NaN/Inf)")
        return torch.tensor(float("nan"), dtype=torch.float64, device=x.device)
    sums = _centred_sums([x], None, ((0, 0),))
    with limited_threads():
        value, reason = effective_rank_of([sums])
    if reason:
        _warn(reason)
    return value


class RepresentationGap(ShiftedSumsMetric):
    """Streaming :func:`representation_gap` (+ ``effective_rank``) from float64 sum states.

    States (``dist_reduce_fx="sum"``, float64; :mod:`lightning_w2s.metrics._moments`): ``n``,
    ``Σ(φ_s−c_s)``, ``Σ(φ_w−c_w)``, ``Σ(φ_s−c_s)(φ_s−c_s)ᵀ``, ``Σ(φ_w−c_w)(φ_w−c_w)ᵀ``,
    ``Σ(φ_s−c_s)(φ_w−c_w)ᵀ``. With labels configured there are two such groups — rows without a
    gold label, and gold rows (``gold_*``, plus ``Σ(φ−c)yᵀ`` and ``Σy``), each row in exactly one;
    ``compute()`` adds them for the all-rows quantities and uses the gold group alone for
    ``pred_gap``. Memory ``8·(d_s² + d_w² + d_s·d_w)`` bytes per group whatever n (d_s = 4096,
    d_w = 2048: 235 MB per group); one pass; no n×n matrix; ``compute()`` equals the functional on
    the concatenated rows up to rounding.

    The shifts ``c`` (``shift_s``, ``shift_w``) are each rank's first non-empty batch's mean, or
    ``student_reference`` / ``teacher_reference`` when given; before the DDP sum every rank
    re-expresses its sums exactly about one common shift (``_moments``), so features with a mean of
    1e6 give the values of centred ones on any number of processes.

    Args:
        student_dim, teacher_dim: feature sizes; ``None`` = taken from the first ``update`` (under
            DDP every rank must then call ``update`` before ``compute``, as the monitor does).
        reg, max_components, reg_relative_to: as in :func:`representation_gap`.
        num_classes: gold labels are integer class indices (``-1`` = unknown) of this many classes.
        label_dim: gold labels are real values with this many columns (``NaN`` = unknown).
        student_reference, teacher_reference: optional shifts (e.g. a known mean of the features).
        products: ``"float64"`` (default) or ``"float32"``: the dtype of each chunk's second-moment
            products, added to the float64 states (:func:`~lightning_w2s.metrics._moments.accumulate_`);
            docs/performance.md gives its cost and its agreement with float64.

    The teacher's kept eigenpairs are reused from the previous ``compute()`` when the teacher
    covariance is bitwise the same (the same probe rows fed again: a constant of the probe), so a
    check decomposes only the student's; any difference in the sums recomputes them.

    ``update(student_features, teacher_features, labels=None)``: rows with a NaN/Inf feature are
    counted and skipped, and then ``compute()`` warns and returns NaN (never a partial value).
    ``compute()`` returns ``fro``, ``op``, ``cka``, ``effective_rank`` (of the student) and, with
    labels configured, ``pred_gap`` — 0-d float64 tensors on the states' device. ``forward`` only
    accumulates and returns ``None`` (a per-batch gap of a few rows means little).

    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.randn(300, 5, generator=g, dtype=torch.float64) + 1e6
    >>> metric = RepresentationGap(num_classes=2)
    >>> for rows in (slice(0, 100), slice(100, 300)):
    ...     metric.update(s[rows], 2.0 * s[rows, :2], (s[rows, 0] > 1e6).long())
    >>> out = metric.compute()
    >>> {k: round(float(v), 4) for k, v in out.items()}
    {'fro': 0.01, 'op': 0.9985, 'cka': 0.6364, 'effective_rank': 4.9375, 'pred_gap': 0.0017}
    >>> ref = representation_gap(s - 1e6, 2.0 * (s[:, :2] - 1e6), labels=(s[:, 0] > 1e6).long())
    >>> max(abs(float(out[k]) / float(ref[k]) - 1) for k in ref) < 1e-8  # a mean of 1e6 changes nothing
    True
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False
    _shift_names = ("shift_s", "shift_w")

    def __init__(
        self,
        student_dim: int | None = None,
        teacher_dim: int | None = None,
        reg: float = 0.1,
        max_components: int | None = None,
        reg_relative_to: str = "n",
        num_classes: int | None = None,
        label_dim: int | None = None,
        student_reference: Tensor | None = None,
        teacher_reference: Tensor | None = None,
        products: str = "float64",
        **kwargs: Any,
    ) -> None:
        check_args(reg, max_components, reg_relative_to)
        check_choice("products", products, tuple(PRODUCTS))
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim), ("num_classes", num_classes), ("label_dim", label_dim)):
            check_scalar(name, value, int, min_val=1, allow_none=True)
        if num_classes is not None and label_dim is not None:
            raise ValueError(f"pass at most one of `num_classes` (class labels) and `label_dim` (real labels), got {num_classes} and {label_dim}")
        references = [
            None if r is None else as_tensor(name, r).detach().to(torch.float64).reshape(-1) for name, r in (("student_reference", student_reference), ("teacher_reference", teacher_reference))
        ]
        super().__init__(references, **kwargs)
        self.reg, self.max_components, self.reg_relative_to = float(reg), max_components, reg_relative_to
        self.num_classes, self.label_dim = num_classes, label_dim
        self.label_columns = num_classes or label_dim
        self.products = products
        self._spectra: dict[str, Any] = {}  # per evaluate() call site: the teacher spectrum it last found
        self._declared = (student_dim, teacher_dim)
        self.add_state("n_nonfinite", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        if student_dim is not None and teacher_dim is not None:
            self._init(student_dim, teacher_dim)

    def _init(self, d_s: int, d_w: int) -> None:
        layouts = {"": Layout((d_s, d_w), _PAIRS)}
        if self.label_columns:
            layouts["gold_"] = Layout((d_s, d_w), _PAIRS, self.label_columns)
        self._init_sum_states(self.n_nonfinite.device, layouts)

    def update(self, student_features: Tensor, teacher_features: Tensor, labels: Tensor | None = None) -> None:
        s, w = pair(student_features, teacher_features, self.n_nonfinite.device)  # the states' device
        if self._dims is None:
            for name, declared, got in (("student", self._declared[0], s.shape[1]), ("teacher", self._declared[1], w.shape[1])):
                if declared is not None and declared != got:
                    raise ValueError(f"`{name}_features` must have {name}_dim = {declared} columns, got {describe(s if name == 'student' else w)}")
            self._init(s.shape[1], w.shape[1])
        elif [s.shape[1], w.shape[1]] != self._dims:
            raise ValueError(
                f"`student_features`/`teacher_features` must have {self._dims[0]}/{self._dims[1]} columns "
                f"(fixed at construction or by the first update), got {describe(student_features)} and {describe(teacher_features)}"
            )
        y = known = None
        if labels is not None:
            if not self.label_columns:
                raise ValueError("`labels` were given but the metric was built without `num_classes` or `label_dim`")
            y, known = label_matrix(labels, s.shape[0], self.num_classes, self.label_dim)
            y, known = y.to(s.device), known.to(s.device)
        finite = None if all_finite(s, w) else finite_rows(s, w)
        if finite is not None and not bool(finite.all()):
            self.n_nonfinite += (~finite).sum()
            s, w = s[finite], w[finite]
            y, known = (y[finite], known[finite]) if y is not None else (None, None)
        if s.shape[0] == 0:
            return
        # the products run with the thread count of the caller's scope (one thread inside the aggregator, _threads)
        xs, xw = self._shifted([s, w])  # one float64 copy each
        # each row goes to exactly one group: gold rows with their labels, the others without
        p = self.products
        if y is None or not bool(known.any()):
            accumulate_(self._group(""), [xs, xw], products=p)
        elif bool(known.all()):
            accumulate_(self._group("gold_"), [xs, xw], y, products=p)
        else:
            accumulate_(self._group(""), [xs[~known], xw[~known]], products=p)
            accumulate_(self._group("gold_"), [xs[known], xw[known]], y[known], products=p)

    def compute(self) -> dict[str, Tensor]:
        keys = list(REPRESENTATION_KEYS) + ["effective_rank"] + (["pred_gap"] if self.label_columns else [])
        nan = {k: torch.tensor(float("nan"), dtype=torch.float64, device=self.n_nonfinite.device) for k in keys}
        if self._dims is None:
            _warn("no samples were accumulated")
            return nan
        if float(self.n_nonfinite) > 0:
            _warn(f"{int(self.n_nonfinite)} accumulated rows had NaN/Inf features")
            return nan
        kw = {"reg": self.reg, "max_components": self.max_components, "rel": self.reg_relative_to}
        parts = [self._group("")] + ([self._group("gold_")] if self.label_columns else [])
        all_gold = bool(self.label_columns) and float(parts[0].n) == 0
        with limited_threads():
            out, reason = evaluate(parts[1:] if all_gold else parts, **kw, teacher=self._spectra.setdefault("all", {}))  # + pred_gap
            if reason:
                _warn(reason)
            if self.label_columns and not all_gold:
                gold, greason = evaluate(parts[1:], **kw, gap=False, teacher=self._spectra.setdefault("gold", {}))
                if greason:
                    _warn(f"pred_gap on the {float(parts[1].n):g} labelled rows: {greason}")
                out["pred_gap"] = gold["pred_gap"]
        return out

    def forward(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Accumulate only (see the class docstring); returns ``None``."""
        self.update(*args, **kwargs)


class EffectiveRank(ShiftedSumsMetric):
    """Streaming :func:`effective_rank` of one representation (the student's) — a collapse
    detector [heuristic] for probes without teacher features, where the two-sided gap is not
    defined. States: ``n``, ``Σ(φ−c)``, ``Σ(φ−c)(φ−c)ᵀ`` (float64, ``dist_reduce_fx="sum"``), so
    memory is ``8·d²`` bytes whatever n; the shift ``c`` is the first non-empty batch's mean,
    agreed across DDP ranks before the sum like :class:`RepresentationGap`'s.

    >>> metric = EffectiveRank()
    >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> metric.update(x[:200] * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) + 1e6)
    >>> metric.update(x[200:] * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) + 1e6)
    >>> round(float(metric.compute()), 2)  # two directions of (nearly) equal variance
    2.0
    """

    full_state_update = False
    is_differentiable = False
    _shift_names = ("shift",)

    def __init__(self, products: str = "float64", **kwargs: Any) -> None:
        check_choice("products", products, tuple(PRODUCTS))
        super().__init__([None], **kwargs)
        self.products = products
        self.add_state("n_nonfinite", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, features: Tensor) -> None:
        x = feature_matrix("features", features).to(self.n_nonfinite.device)
        if self._dims is None:
            self._init_sum_states(self.n_nonfinite.device, {"": Layout((x.shape[1],), ((0, 0),))})
        elif x.shape[1] != self._dims[0]:
            raise ValueError(f"`features` must have {self._dims[0]} columns (fixed by the first update), got {describe(x)}")
        if x.shape[0] == 0:
            return
        if all_finite(x):
            accumulate_(self._group(""), self._shifted([x]), products=self.products)
            return
        finite = finite_rows(x)
        self.n_nonfinite += (~finite).sum()
        if bool(finite.any()):
            accumulate_(self._group(""), self._shifted([x[finite]]), products=self.products)

    def compute(self) -> Tensor:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.n_nonfinite.device)
        if self._dims is None:
            return nan
        if float(self.n_nonfinite) > 0:
            _warn(f"{int(self.n_nonfinite)} feature row(s) are not finite (NaN/Inf)")
            return nan
        with limited_threads():
            value, reason = effective_rank_of([self._group("")])
        if reason:
            _warn(reason)
        return value
