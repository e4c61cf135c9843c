"""What a family of logged values is to an aggregator: :class:`Family`, fed :class:`Rows`.

docs/architecture.md. A *family* is a group of logged values with its own states (torchmetrics sum
states, exact under DDP) and its own probe constants: the representation family
(:class:`~lightning_w2s.metrics.representation_family.RepresentationFamily`, Xue et al. 2025) and
Lang et al.'s robustness and expansion family
(:class:`~lightning_w2s.metrics.lang_family.LangFamily`). An aggregator
(:class:`~lightning_w2s.metrics.base.ProbeMetrics`) holds its families, feeds each chunk of valid
probe rows to every one of them (:meth:`Family.update`), merges what each computes
(:meth:`Family.compute`) and clears them (:meth:`Family.reset`); a family never reads the
aggregator's attributes. Its names are the registry's names of its dashboard families
(:attr:`Family.sections`), declared in :mod:`lightning_w2s.metrics.quantities`.

Also here: the one-transfer host helpers (:func:`on_host`, :func:`host_floats`) that the
host-side formulas of the aggregators and families share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_w2s.metrics import quantities as Q

__all__ = ["Family", "Rows", "host_floats", "on_host"]


@dataclass(frozen=True)
class Rows:
    """One chunk of valid probe rows, as every family of an aggregator receives it (padding rows
    removed once, on the states' device).

    ``index``: ``(b,)`` positions in the probe. ``student``: ``(b, k)`` float64 class probabilities
    (classification) or ``(b, m)`` float64 real outputs (regression). ``student_pred``: ``(b,)`` the
    student's argmax (classification; ``None`` for regression). ``gold``: ``(b,)`` int labels
    (``-1`` unknown) or ``(b, m)`` real targets (``NaN`` unknown), ``None`` without gold.
    ``covered``: ``(b,)`` bool, ``False`` where the teacher abstains (``None``: a task without
    abstentions). ``features``: ``(b, d_s)``
    student representation in the dtype the student gave it (the representation states make their
    one shifted float64 copy), ``None`` when the chunk has none or the check leaves the
    representation out.

    >>> rows = Rows(torch.arange(2), torch.tensor([[0.9, 0.1], [0.4, 0.6]]), torch.tensor([0, 1]), None, None, None)
    >>> rows.student_pred.tolist(), rows.features is None
    ([0, 1], True)
    """

    index: torch.Tensor
    student: torch.Tensor
    student_pred: torch.Tensor | None
    gold: torch.Tensor | None
    covered: torch.Tensor | None
    features: torch.Tensor | None


class Family(nn.Module):
    """A group of logged values with its own states; see the module docstring.

    Subclasses set :attr:`sections` (the registry families, the ``<family>`` of
    ``w2s/<family>/<quantity>``, whose names they compute) and implement :meth:`update` and
    :meth:`compute`; :meth:`reset` clears every torchmetrics state the family holds. What
    :meth:`compute` adds besides values goes to :attr:`extras` (vectors for the dashboard) and
    :attr:`notes` (why a value is left out), both cleared at each compute.

    >>> from lightning_w2s.metrics.representation_family import RepresentationFamily
    >>> family = RepresentationFamily(None)  # no teacher features: the student's effective rank alone
    >>> family.sections, family.expected_names(set(), 2, "classification") == {Q.EFFECTIVE_RANK}
    (('representation',), True)
    """

    #: the registry families (``w2s/<section>/...``) whose names this family computes
    sections: tuple[str, ...] = ()
    #: fed and computed at this check (an aggregator's ``reset`` may leave an optional family out)
    enabled: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.extras: dict[str, torch.Tensor] = {}
        self.notes: list[str] = []

    def provides(self) -> set[str]:
        """The :class:`~lightning_w2s.metrics.quantities.Need` values this family meets."""
        return set()

    def owns(self, name: str) -> bool:
        """Whether ``name`` is one this family computes (by default: a name of its :attr:`sections`)."""
        return Q.lookup(name).family in self.sections

    def expected_names(self, provided: set[str], num_classes: int, task: str) -> set[str]:
        """The names :meth:`compute` can return, for an aggregator that meets ``provided``."""
        return {n for n in Q.expected_names(provided, num_classes, task) if self.owns(n)}

    def update(self, rows: Rows) -> None:
        raise NotImplementedError

    def compute(self, shared: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{logged name: 0-d tensor}``; ``shared``: what the aggregator computed before its families
        (e.g. ``"rates"``, the gold counter's rates, ``None`` without gold)."""
        raise NotImplementedError

    def reset(self) -> None:
        for m in self.children():
            m.reset()

    # what a resume needs besides the per-check sum states
    def state_dict_extra(self) -> dict:
        return {}

    def load_state_dict_extra(self, state: dict, device: torch.device) -> None:
        """Restore :meth:`state_dict_extra` (states on ``device``); nothing by default."""


def on_host(tensors: dict[str, Any], groups: tuple) -> list[dict[str, Any]]:
    """``tensors`` on the host in one transfer (non-tensors passed through), split into one dict per
    group of keys (each group an iterable of keys)."""
    names = [k for k, t in tensors.items() if torch.is_tensor(t)]
    if names and any(tensors[k].device.type != "cpu" for k in names):
        flat = torch.cat([tensors[k].reshape(-1).to(torch.float64) for k in names]).cpu()
        parts = flat.split([tensors[k].numel() for k in names])
        tensors = {**tensors, **{k: p.reshape(tensors[k].shape).to(tensors[k].dtype) for k, p in zip(names, parts)}}
    return [{k: tensors[k] for k in group} for group in groups]


def host_floats(*values: torch.Tensor) -> list[float]:
    """Python floats of 0-d tensors, in one transfer."""
    return torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in values]).tolist()
