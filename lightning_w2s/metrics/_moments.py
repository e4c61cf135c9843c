"""Shifted first and second moments as float64 sum states, exact under DDP (pure torch + torchmetrics).

docs/theory.md §2.4's streaming representation metrics keep, for one or two representations ``x_i``
("sides"), the sums ``n``, ``Σ(x_i − c_i)``, ``Σ(x_i − c_i)(x_j − c_j)ᵀ`` and optionally
``Σ(x_i − c_i)yᵀ``, ``Σy`` for labels ``y``, about a **shift** ``c_i``. Covariances are then
``S2/n − m mᵀ`` with ``m = S1/n = mean − c``, which does not cancel catastrophically when ``c`` is
close to the mean (features with a mean of 1e6 and unit spread lose all precision with ``c = 0``).

Sums about different shifts cannot be added, so before torchmetrics sums the states across ranks
(``dist_reduce_fx="sum"``) every rank re-expresses its sums exactly about one **common shift**: the
shift of the lowest rank that has accumulated rows, agreed inside ``sync()`` — a collective every
rank makes anyway, so the agreement adds one small all-gather and cannot deadlock (a collective
inside ``update()`` could, if ranks saw different numbers of batches). Re-expressing about
``c + δ`` is exact algebra::

    S1' = S1 − n δ,    S2'_ij = S2_ij − δ_i S1_jᵀ − S1_i δ_jᵀ + n δ_i δ_jᵀ,    Sy'_i = Sy_i − δ_i (Σy)ᵀ

and well conditioned because every rank's shift is its own first batch's mean (each term is of the
order of the sums about the other shift, never of ``n·mean²``). A rank's shift is its first
non-empty batch's mean, or a caller-given reference (e.g. the probe's teacher-feature mean, the
same on every rank).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from lightning_w2s.metrics.threads import process_threads


@dataclass(frozen=True)
class Layout:
    """The structure of one group of sums: feature sizes per side, the side pairs with a second
    moment (``(i, j)``, ``i <= j``) and the number of label columns (0 = no labels).

    >>> sums = Layout((3, 2), ((0, 0), (1, 1), (0, 1))).zeros(torch.zeros((), dtype=torch.float64))
    >>> [tuple(t.shape) for t in sums.s2.values()]
    [(3, 3), (2, 2), (3, 2)]
    """

    dims: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    label_columns: int = 0

    def zeros(self, like: Tensor) -> Sums:
        z = lambda *shape: like.new_zeros(shape)  # noqa: E731
        sums = Sums(z(), [z(d) for d in self.dims], {(i, j): z(self.dims[i], self.dims[j]) for i, j in self.pairs})
        if self.label_columns:
            sums.sy, sums.y1 = [z(d, self.label_columns) for d in self.dims], z(self.label_columns)
        return sums


@dataclass
class Sums:
    """One group of shifted sums over ``len(s1)`` sides (views of a metric's states, or fresh).

    Re-expressing the sums about another shift changes nothing in the covariance:

    >>> x = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64) + 1e6
    >>> sums = accumulate_(Layout((1,), ((0, 0),)).zeros(x), [x - 1e6])
    >>> round(float(covariance([sums], 0, 0, [sums.s1[0] / 3], 3.0)), 12)
    1.555555555556
    >>> moved = reshift_(sums, [torch.tensor([2.0], dtype=torch.float64)])  # now about 1e6 + 2
    >>> round(float(covariance([moved], 0, 0, [moved.s1[0] / 3], 3.0)), 12)
    1.555555555556
    """

    n: Tensor
    s1: list[Tensor]  # per side: Σ(x_i − c_i)
    s2: dict[tuple[int, int], Tensor]  # (i, j), i <= j: Σ(x_i − c_i)(x_j − c_j)ᵀ
    sy: list[Tensor] = field(default_factory=list)  # per side: Σ(x_i − c_i) yᵀ  (d_i, m); empty without labels
    y1: Tensor | None = None  # Σ y  (m,)


#: The dtypes :func:`accumulate_` may form the second-moment products of one chunk in.
PRODUCTS = {"float64": torch.float64, "float32": torch.float32}


def accumulate_(sums: Sums, xs: list[Tensor], y: Tensor | None = None, products: str = "float64") -> Sums:
    """Add the rows ``xs[i] = x_i − c_i`` (float64, already shifted) to ``sums`` in place.

    ``products="float32"`` (an option; the default is float64): the chunk's second-moment products
    ``Σ(x_i − c_i)(x_j − c_j)ᵀ`` are formed from the shifted rows rounded to float32 and added to
    the float64 states; ``n``, the first moments and the label sums stay float64. The states are
    still sums, so they add exactly across chunks and DDP ranks; what changes is the rounding of
    each chunk's product (float32 accumulation over the chunk's rows). Measured (docs/performance.md):
    the logged values within 9e-8 relative of the float64 path on a 2,048-row probe, 2.4e-6 on the
    tiny models of ``tests/golden_values.py``; the tests check 1e-5. On one CPU core a 2,048×256
    chunk's product takes 2.8 ms instead of 4.3 ms, too little of a check to make it the default.
    """
    sums.n.add_(xs[0].shape[0])
    for s1, x in zip(sums.s1, xs):
        s1.add_(x.sum(0))
    dtype = PRODUCTS[products]
    low = xs if dtype == xs[0].dtype else [x.to(dtype) for x in xs]
    for (i, j), s2 in sums.s2.items():
        with process_threads():  # one large product each: the process's thread count (metrics/threads.py)
            if low is xs:
                s2.addmm_(xs[i].T, xs[j])
            else:
                s2.add_(torch.mm(low[i].T, low[j]))
    if y is not None:
        for sy, x in zip(sums.sy, xs):
            sy.addmm_(x.T, y)
        sums.y1.add_(y.sum(0))
    return sums


def reshift_(sums: Sums, deltas: list[Tensor]) -> Sums:
    """Re-express ``sums`` about ``c_i + δ_i`` instead of ``c_i``, in place (the module docstring's
    formulas; exact algebra)."""
    n = float(sums.n)
    for (i, j), s2 in sums.s2.items():
        s2.addr_(deltas[i], sums.s1[j], alpha=-1.0).addr_(sums.s1[i], deltas[j], alpha=-1.0)
        s2.addr_(deltas[i], deltas[j], alpha=n)
    if sums.y1 is not None:
        for sy, d in zip(sums.sy, deltas):
            sy.addr_(d, sums.y1, alpha=-1.0)
    for s1, d in zip(sums.s1, deltas):
        s1.sub_(d, alpha=n)
    return sums


def covariance(parts: list[Sums], i: int, j: int, means: list[Tensor], n: float) -> Tensor:
    """``Σ_parts S2_ij / n − m_i m_jᵀ`` (the covariance between sides i and j) in one new tensor,
    written in one pass over each part's d×d state."""
    acc = torch.addr(parts[0].s2[(i, j)], means[i], means[j], beta=1.0 / n, alpha=-1.0)
    for p in parts[1:]:
        acc.add_(p.s2[(i, j)], alpha=1.0 / n)
    return acc


class ShiftedSumsMetric(Metric):
    """Base of the metrics whose states are groups of :class:`Sums` about per-side shifts.

    A subclass names its shift buffers in ``_shift_names`` (one per side) and calls
    :meth:`_init_sum_states` with the :class:`Layout` of each state group (by name prefix) once the
    feature sizes are known; states are named ``<prefix>n``, ``<prefix>s1_<i>``,
    ``<prefix>s2_<i><j>``, ``<prefix>sy_<i>``, ``<prefix>y1``. This class chooses
    the shift (reference, else the first non-empty batch's mean), agrees on one shift across ranks
    in :meth:`sync`, re-shifts in :meth:`merge_state`, and keeps the reset values of the states as
    stride-0 views (no second dense copy of every d×d state).

    Two metrics that chose different shifts merge exactly:

    >>> from lightning_w2s.metrics.representation import EffectiveRank
    >>> x = torch.randn(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 1e6
    >>> a, b, both = EffectiveRank(), EffectiveRank(), EffectiveRank()
    >>> a.update(x[:20]); b.update(x[20:]); both.update(x)
    >>> bool(a.shift.ne(b.shift).any())
    True
    >>> a.merge_state(b)
    >>> abs(float(a.compute()) - float(both.compute())) < 1e-9
    True
    """

    _shift_names: tuple[str, ...] = ()

    def __init__(self, references: list[Tensor | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._references = references
        self._dims: list[int] | None = None
        self._layouts: dict[str, Layout] = {}
        self._fresh = True  # no row accumulated since the last reset: the shift is still open

    # -- states -----------------------------------------------------------------------------------
    def _init_sum_states(self, device: torch.device, layouts: dict[str, Layout]) -> None:
        dims = next(iter(layouts.values())).dims
        like = torch.zeros((), dtype=torch.float64, device=device)
        for name, ref, d in zip(self._shift_names, self._references, dims):
            if ref is not None and ref.numel() != d:
                raise ValueError(f"`{name.replace('shift', 'reference')}` must have {d} entries (the feature size), got {ref.numel()}")
            self.register_buffer(name, torch.zeros(d, dtype=torch.float64, device=device), persistent=False)
        for prefix, layout in layouts.items():
            for name, value in _flat(prefix, layout.zeros(like)).items():
                # registered with a 0-d default, then given its dense zero value: no transient copy
                self.add_state(name, like.clone(), dist_reduce_fx="sum")
                setattr(self, name, value)
        self._dims, self._layouts = list(dims), layouts
        self._lean_defaults()

    def _group(self, prefix: str, source: dict[str, Tensor] | None = None) -> Sums:
        """The states of group ``prefix`` as a :class:`Sums` (views; of ``source`` when given)."""
        get = (lambda name: source[prefix + name]) if source is not None else (lambda name: getattr(self, prefix + name))
        layout = self._layouts[prefix]
        sums = Sums(get("n"), [get(f"s1_{i}") for i in range(len(layout.dims))], {k: get(f"s2_{k[0]}{k[1]}") for k in layout.pairs})
        if layout.label_columns:
            sums.sy, sums.y1 = [get(f"sy_{i}") for i in range(len(layout.dims))], get("y1")
        return sums

    def _lean_defaults(self) -> None:
        """Keep each state's reset value as a stride-0 view of one zero (8 bytes) instead of a dense
        copy: ``reset()`` clones it into a dense zero tensor. Halves the resident memory."""
        for name in self._defaults:
            state = getattr(self, name)
            if isinstance(state, Tensor) and state.ndim > 0:
                self._defaults[name] = torch.zeros((), dtype=state.dtype, device=state.device).expand(state.shape)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        this = super()._apply(fn, *args, **kwargs)
        if getattr(this, "_dims", None) is not None:
            this._lean_defaults()
        return this

    def reset(self) -> None:
        super().reset()
        self._fresh = True

    # -- shifts -----------------------------------------------------------------------------------
    def _shifts(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._shift_names]

    def _shifted(self, xs: list[Tensor]) -> list[Tensor]:
        """Fix the shift at the first non-empty batch, then return ``float64(x_i) − c_i``."""
        copies = [x.to(torch.float64) for x in xs]  # one float64 copy each (or the caller's float64 tensor)
        if self._fresh:
            for name, ref, y in zip(self._shift_names, self._references, copies):
                c = ref if ref is not None else y.mean(0)
                setattr(self, name, c.to(getattr(self, name).device, torch.float64).clone())
            self._fresh = False
        return [y - c if y is x else y.sub_(c) for x, y, c in zip(xs, copies, self._shifts())]  # never the caller's tensor

    def _move_to_shift(self, target: list[Tensor]) -> None:
        """Re-express every state group about the shifts ``target`` (exact) and adopt them."""
        deltas = [t.to(c.device, torch.float64) - c for t, c in zip(target, self._shifts())]
        if any(bool(d.any()) for d in deltas):
            for prefix in self._layouts:
                reshift_(self._group(prefix), deltas)
        for name, t in zip(self._shift_names, target):
            setattr(self, name, t.to(getattr(self, name).device, torch.float64).clone())

    # -- DDP and merging ----------------------------------------------------------------------------
    def sync(self, dist_sync_fn: Any = None, process_group: Any = None, should_sync: bool = True, distributed_available: Any = None) -> None:
        """torchmetrics' ``sync``, preceded by the agreement on one shift (module docstring)."""
        available = distributed_available if distributed_available is not None else self.distributed_available_fn
        if should_sync and not self._is_synced and self._dims is not None and callable(available) and available():
            gather = dist_sync_fn if dist_sync_fn is not None else gather_all_tensors
            shifts = self._shifts()
            flag = shifts[0].new_full((1,), 0.0 if self._fresh else 1.0)
            everyone = gather(torch.cat([flag, *shifts]), group=process_group or self.process_group)
            holders = [t for t in everyone if float(t[0]) > 0]  # ranks that hold rows, in rank order
            if holders:
                self._move_to_shift(list(holders[0][1:].split(self._dims)))
        super().sync(dist_sync_fn, process_group, should_sync, distributed_available)

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Merge another metric of this class (its sums re-expressed exactly about this metric's
        shift) or a dict of states already about this shift."""
        if isinstance(incoming_state, ShiftedSumsMetric) and incoming_state._dims is not None:
            if self._dims is None:
                raise ValueError("merge_state: this metric has no states yet; update it (or pass the dims) first")
            if self._fresh:  # nothing accumulated here: adopt the incoming shift, nothing to re-shift
                self._move_to_shift(incoming_state._shifts())
                self._fresh = incoming_state._fresh
            state = {k: v.clone() for k, v in incoming_state.metric_state.items()}
            deltas = [c - o.to(c.device) for c, o in zip(self._shifts(), incoming_state._shifts())]
            for prefix in self._layouts:
                reshift_(self._group(prefix, state), [d.to(state[prefix + "n"].device) for d in deltas])
            incoming_state = state
        super().merge_state(incoming_state)


def _flat(prefix: str, sums: Sums) -> dict[str, Tensor]:
    flat = {prefix + "n": sums.n}
    flat.update({f"{prefix}s1_{i}": t for i, t in enumerate(sums.s1)})
    flat.update({f"{prefix}s2_{i}{j}": t for (i, j), t in sums.s2.items()})
    flat.update({f"{prefix}sy_{i}": t for i, t in enumerate(sums.sy)})
    if sums.y1 is not None:
        flat[prefix + "y1"] = sums.y1
    return flat
