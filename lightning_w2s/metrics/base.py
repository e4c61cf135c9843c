"""What every task's aggregator shares: :class:`ProbeMetrics` (docs/architecture.md).

An aggregator owns every metric state of one probe for a check. The monitor only feeds it
(:meth:`~ProbeMetrics.update`), asks for values (:meth:`~ProbeMetrics.compute`) and clears it
(:meth:`~ProbeMetrics.reset`), so the whole metric side is testable without a ``Trainer``. Every
state is a torchmetrics sum state: ``compute`` syncs them across DDP ranks, so every rank must call
it at every check (the set of metrics is fixed by the configuration, hence the collectives are the
same on every rank).

The task aggregators (:class:`~lightning_w2s.metrics.aggregator.W2SMetrics` for class
probabilities, :class:`~lightning_w2s.metrics.regression.RegressionMetrics` for real outputs)
implement the task's own values (:meth:`~ProbeMetrics._update_own`,
:meth:`~ProbeMetrics._compute_own`) and hold their :class:`~lightning_w2s.metrics.family.Family`
components; this class owns the rest:

- the queue: ``update`` only queues a batch (no computation, no host transfer); the queued rows
  are fed to the states in chunks of about ``chunk_bytes``, so the fixed per-update cost of a dozen
  metrics is paid per chunk, not per forward batch, and the valid rows are selected once per chunk
  (:class:`~lightning_w2s.metrics.family.Rows`);
- ``compute()`` returns ``{logged name: 0-d float64 tensor}`` under the registry's names
  (:mod:`lightning_w2s.metrics.quantities`). Values that are *undefined* on this probe at this check
  (a gold rate whose conditioning set is empty, a Lang bound whose premises fail: the registry's
  ``may_be_undefined``) are left out and their reasons collected in :attr:`ProbeMetrics.notes`; a
  non-finite value that remains is a numerical fault for the caller to report. Vector results
  (reliability histograms, the student's predictions) go to :attr:`ProbeMetrics.extras`;
- :meth:`~ProbeMetrics.expected_names`, ``reset`` (with the representation family optional per
  check), the resume state, and the neighbour table of Lang et al.'s family where the task has one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics import validation as v
from lightning_w2s.metrics.family import Family, Rows
from lightning_w2s.metrics.threads import single_threaded

__all__ = ["ProbeMetrics"]


class ProbeMetrics(nn.Module):
    """The skeleton of a task aggregator (see the module docstring).

    Subclasses set :attr:`task` and :attr:`misfit_name`, register the probe's teacher tensors as
    buffers, add their families with :meth:`add_family` and implement :meth:`_device`,
    :meth:`_student_rows`, :meth:`_update_own`, :meth:`_compute_own` and :meth:`_provides_own`.
    ``gold`` (a buffer, ``None`` without gold) and ``covered`` (``None``: no abstentions) are read
    here to build each chunk's :class:`~lightning_w2s.metrics.family.Rows`.

    Args:
        n: the probe's size.
        num_classes: ``k`` (0 for real outputs: no per-class names).
        train: a train probe: only the label-free values, logged under their train twins
            (``w2s/train_<family>/...``); no family.
        chunk_bytes: queued rows (student outputs and features, as given) fed to the states at once.

    >>> from lightning_w2s.metrics.regression import RegressionMetrics
    >>> metrics = RegressionMetrics(torch.tensor([0.0, 1.0, 2.0]))
    >>> metrics.task, metrics.misfit_name == Q.SQ, [type(family).__name__ for family in metrics.families]
    ('regression', True, ['RepresentationFamily'])
    >>> metrics.expected_names() == {Q.SQ, Q.PREDICTED_GAIN, Q.EFFECTIVE_RANK}
    True
    """

    #: the probe's task (:data:`lightning_w2s.metrics.quantities.TASKS`)
    task: str = ""
    #: the held-out misfit that the warnings and the stopper's misfit rules read
    misfit_name: str = ""

    def __init__(self, n: int, num_classes: int, *, train: bool, chunk_bytes: int) -> None:
        super().__init__()
        self.n, self.num_classes = n, num_classes
        self.is_train_probe = v.check_scalar("train", train, bool)
        self.chunk_bytes = v.check_scalar("chunk_bytes", chunk_bytes, int, min_val=1)
        self._queue: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]] = []
        self._queued_bytes = 0
        self._families: list[str] = []
        self.representation = None  # the representation family (optional per check, see reset)
        self.lang = None  # Lang et al.'s family, where the task has one and neighbours are asked for
        self.representation_on = True  # this check feeds and computes the representation family
        self.extras: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []

    def add_family(self, name: str, family: Family) -> None:
        """Hold ``family`` as attribute ``name``: it is fed every chunk, computed after the task's
        own values (in the order added) and reset with them."""
        setattr(self, name, family)
        self._families.append(name)

    @property
    def families(self) -> list[Family]:
        return [getattr(self, name) for name in self._families]

    # ------------------------------------------------------------------ what the subclass implements
    def _device(self) -> torch.device:
        """Where the states live (the teacher's buffers' device)."""
        raise NotImplementedError

    def _student_rows(self, student: torch.Tensor) -> torch.Tensor:
        """The student's output on the chunk's valid rows, as the task's float64 matrix."""
        raise NotImplementedError

    def _update_own(self, rows: Rows) -> None:
        raise NotImplementedError

    def _compute_own(self, out: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Add the task's own values to ``out``; return what the families may read (``shared``)."""
        raise NotImplementedError

    def _provides_own(self) -> set[str]:
        raise NotImplementedError

    # ------------------------------------------------------------------ names
    @property
    def provides(self) -> set[str]:
        """The :class:`~lightning_w2s.metrics.quantities.Need` values this probe and configuration meet."""
        if self.is_train_probe:
            return {Q.Need.TRAIN_PROBE}
        return self._provides_own().union(*(family.provides() for family in self.families))

    def expected_names(self) -> set[str]:
        """The names :meth:`compute` can return (those the registry may leave undefined included): the
        registry's names for what this aggregator and its families provide."""
        names = Q.expected_names(self.provides, self.num_classes, task=self.task) - {Q.SKIPPED, Q.CHECK}
        return {n for n in names if n.split("/")[1].startswith("train_") == self.is_train_probe}

    # ------------------------------------------------------------------ neighbourhoods (Lang et al.)
    @property
    def wants_neighbours(self) -> bool:
        return self.lang is not None

    @property
    def neighbours(self) -> torch.Tensor | None:
        return None if self.lang is None else self.lang.neighbours

    @property
    def history(self) -> list[torch.Tensor]:
        """The student's probe predictions at past checks (the expansion's candidate sets)."""
        return [] if self.lang is None else self.lang.history

    def build_neighbours(self, student_embedding: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The probe's frozen k-NN table (:meth:`LangFamily.build_neighbours
        <lightning_w2s.metrics.lang_family.LangFamily.build_neighbours>`), in the teacher's features
        when the probe has them."""
        teacher_features = None if self.representation is None else self.representation.teacher_features
        if self.lang is None:
            raise RuntimeError("this aggregator has no neighbour-based family (neighbours=0, a train probe or a regression probe)")
        return self.lang.build_neighbours(teacher_features, student_embedding)

    def set_neighbours(self, neighbours: torch.Tensor) -> None:
        """Turn on the robustness/expansion statistics with a fixed ``(n, k_nn)`` neighbour table
        (identical on every rank: it indexes the whole probe)."""
        if self.lang is None:
            raise RuntimeError("this aggregator has no neighbour-based family (neighbours=0, a train probe or a regression probe)")
        self.lang.set_neighbours(neighbours, self._device())

    # ------------------------------------------------------------------ streaming
    def update(self, student: torch.Tensor, features: torch.Tensor | None, index: torch.Tensor, valid: torch.Tensor) -> None:
        """Add one probe batch: the student's output (class probabilities ``(b, k)`` or real values
        ``(b,)``/``(b, m)``), its pooled representation ``(b, d_s)`` (or ``None``), the batch's
        positions ``index`` ``(b,)`` in the probe and ``valid`` ``(b,)`` (``False`` on padding rows,
        which every metric ignores).

        The batch is queued as given (on its device; features keep their dtype until they are cast
        to float64 in the chunk) and the queue is fed to the states once it holds ``chunk_bytes``;
        :meth:`flush` (and :meth:`compute`) feed the rest. Errors in the rows surface there."""
        features = None if features is None or not self.representation_on else features.detach()
        if self._queue and (features is None) != (self._queue[-1][1] is None):
            self.flush()  # a batch without features never shares a chunk with one that has them
        batch = (student.detach(), features, index, valid)
        self._queue.append(batch)
        self._queued_bytes += sum(t.numel() * t.element_size() for t in batch if t is not None)
        if self._queued_bytes >= self.chunk_bytes:
            self.flush()

    @single_threaded
    def flush(self) -> None:
        """Feed the queued rows to the metric states (one chunk). The queue is emptied first, so a
        chunk that raises is dropped rather than fed again."""
        queue, self._queue, self._queued_bytes = self._queue, [], 0
        if not queue:
            return
        student, features, index, valid = (None if queue[0][i] is None else queue[0][i] if len(queue) == 1 else torch.cat([b[i] for b in queue]) for i in range(4))
        self._update_rows(student, features, index, valid)

    @torch.no_grad()
    def _update_rows(self, student: torch.Tensor, features: torch.Tensor | None, index: torch.Tensor, valid: torch.Tensor) -> None:
        """Feed one chunk: the valid rows are selected once, then the task's states and every family."""
        dev = self._device()
        valid = valid.to(dev)
        rows = None if bool(valid.all()) else valid.nonzero().squeeze(1)  # padding rows never reach a state

        def pick(t: torch.Tensor) -> torch.Tensor:  # a chunk without padding (the common case) is not copied
            return t if rows is None else t.index_select(0, rows)

        index = pick(index.to(dev))
        values = self._student_rows(pick(student.to(dev)))
        families = [family for family in self.families if family.enabled]
        if features is not None and families:
            features = pick(features.to(dev))  # in the student's dtype: the representation states cast (and shift) once
        chunk = Rows(
            index=index,
            student=values,
            student_pred=values.argmax(dim=1) if self.num_classes else None,
            gold=self.gold[index] if self.gold is not None else None,
            covered=None if self.covered is None else self.covered[index],
            features=features,
        )
        self._update_own(chunk)
        for family in families:
            family.update(chunk)

    # ------------------------------------------------------------------ values
    @single_threaded
    def compute(self) -> dict[str, torch.Tensor]:
        """Sync and compute the task's values and every family's; see the module docstring for what
        is left out. Every value is a 0-d float64 tensor on the states' device; the values cross to
        the host once (to tell undefined values from faults), besides the inputs of host-side
        formulas."""
        self.flush()
        out: dict[str, torch.Tensor] = {}
        self.extras, self.notes = {}, []
        with warnings.catch_warnings():
            # after a failed probe pass a state may be empty: its NaN is handled below, the generic
            # torchmetrics "compute before update" warning would only repeat it
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            shared = self._compute_own(out)
            for family in self.families:
                if family.enabled:
                    family.extras, family.notes = {}, []
                    out.update(family.compute(shared))
                    self.extras.update(family.extras)
                    self.notes += family.notes
        if self.is_train_probe:
            out = {Q.train_name(name): value for name, value in out.items()}
        return self._drop_undefined(out)

    def _drop_undefined(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Leave out the non-finite values the registry allows to be undefined (one host transfer
        for all values); the kept values are elements of one float64 tensor on the states' device."""
        if not out:
            return {}
        dev = self._device()
        values = [torch.as_tensor(value, dtype=torch.float64).reshape(()) for value in out.values()]
        elsewhere = [i for i, value in enumerate(values) if value.device != dev]  # host-side values: one copy
        if elsewhere:
            for i, value in zip(elsewhere, torch.stack([values[i] for i in elsewhere]).to(dev).unbind()):
                values[i] = value
        stacked = torch.stack(values)
        kept = {}
        for (name, value), finite in zip(zip(out, stacked), torch.isfinite(stacked).tolist()):
            if not finite and Q.lookup(name).may_be_undefined:
                self.notes.append(f"{name} is undefined at this check (an empty conditioning set, e.g. no gold row seen, or unmet premises)")
                continue
            kept[name] = value
        return kept

    def _t(self, value: float | torch.Tensor) -> torch.Tensor:
        """A 0-d float64 tensor on the states' device."""
        return torch.as_tensor(value, dtype=torch.float64).to(self._device())

    @single_threaded
    def reset(self, representation: bool = True) -> None:
        """Clear every state and the queue of rows not yet fed (a new check starts from nothing).
        ``representation=False``: this check leaves the representation family out (its states are
        neither fed nor computed, and :meth:`compute` returns none of its names); every DDP rank
        must pass the same value (the family's sync is then skipped on all of them)."""
        self._queue, self._queued_bytes = [], 0
        self.representation_on = bool(representation)
        if self.representation is not None:
            self.representation.enabled = self.representation_on
        for m in self.children():
            if not isinstance(m, Family) or m.enabled:
                m.reset()

    # ------------------------------------------------------------------ state (resume)
    def state_dict_extra(self) -> dict:
        """What a resume needs besides the (per-check, reset) sum states, by family."""
        state: dict = {}
        for family in self.families:
            state.update(family.state_dict_extra())
        return state

    def load_state_dict_extra(self, state: dict) -> None:
        for family in self.families:
            family.load_state_dict_extra(state, self._device())
