"""The probe set: fixed inputs the monitor evaluates at every check, with the teacher's outputs.

DESIGN §1 and §7. A probe holds the inputs (a tensor, a dict of tensors, or a map-style
``Dataset``), the teacher's class probabilities (given directly, as logits, or as hard labels),
and optionally gold labels (``-1`` = unknown), a coverage mask (``False`` = the teacher abstains,
Lang et al.'s uncovered set ``T``) and the teacher's representations. Everything is validated at
construction, so a bad probe fails before training starts.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import torch
from torch.utils.data import Dataset, default_collate

from lightning_w2s.metrics.aggregator import ProbeBatch
from lightning_w2s._validation import (
    as_tensor,
    check_finite,
    check_integer,
    check_length,
    check_ndim,
    check_probabilities,
    describe,
)

class W2SProbe:
    """A fixed probe set with the teacher's outputs on it.

    Args:
        inputs: ``Tensor (n, ...)``, a dict of tensors with a common first dimension ``n`` (e.g.
            ``input_ids`` and ``attention_mask``), or a map-style ``Dataset`` of length ``n``.
        teacher_probs: ``(n, k)`` class probabilities; rows sum to 1.
        teacher_logits: ``(n, k)`` logits; converted with a softmax.
        teacher_labels: ``(n,)`` hard labels in ``[0, k)``; ``-1`` marks an abstention. Converted to
            one-hot probabilities (so KL terms are against a point mass, clamped at ``eps``).
        gold: ``(n,)`` int gold labels, ``-1`` = unknown.
        covered: ``(n,)`` bool, ``False`` where the teacher abstains. Inferred from
            ``teacher_labels == -1`` when not given.
        teacher_features: ``(n, d_w)`` teacher representations (Xue et al.'s ``Φ_w``).
        num_classes: class count ``k``; required with ``teacher_labels`` if some class never
            appears, otherwise read from the teacher outputs.

    Exactly one of ``teacher_probs``, ``teacher_logits``, ``teacher_labels`` must be given.
    """

    def __init__(
        self,
        inputs: Any,
        teacher_probs: Any = None,
        teacher_logits: Any = None,
        teacher_labels: Any = None,
        gold: Any = None,
        covered: Any = None,
        teacher_features: Any = None,
        num_classes: int | None = None,
    ) -> None:
        self.inputs = self._check_inputs(inputs)
        n = self._len_inputs(self.inputs)
        if n == 0:
            raise ValueError("`inputs` is empty: the probe needs at least one input (got n = 0)")
        self.n = n

        given = {
            k: v
            for k, v in (("teacher_probs", teacher_probs), ("teacher_logits", teacher_logits), ("teacher_labels", teacher_labels))
            if v is not None
        }
        if len(given) != 1:
            raise ValueError(
                "exactly one of `teacher_probs`, `teacher_logits`, `teacher_labels` must be given, "
                f"got {len(given)}: {sorted(given) or 'none'}"
            )
        (source, raw), = given.items()
        self.teacher_source = source
        abstain = None
        if source == "teacher_labels":
            labels = as_tensor(source, raw)
            check_ndim(source, labels, 1, "a 1-D (n,) tensor of class indices")
            check_integer(source, labels)
            check_length(source, labels, n)
            labels = labels.long()
            k = int(num_classes) if num_classes is not None else int(labels.max().item()) + 1
            if k < 1:
                raise ValueError(f"`teacher_labels` are all -1 (abstain) and `num_classes` is not given; got {describe(labels)}")
            if (labels < -1).any() or (labels >= k).any():
                raise ValueError(
                    f"`teacher_labels` must lie in [-1, {k - 1}] (-1 = abstain) for num_classes={k}, "
                    f"got values in [{labels.min().item()}, {labels.max().item()}]"
                )
            abstain = labels == -1
            probs = torch.zeros(n, k, dtype=torch.float32)
            probs[~abstain, labels[~abstain]] = 1.0
            probs[abstain] = 1.0 / k  # never used in metrics: abstentions are not covered
        else:
            values = as_tensor(source, raw).float()
            check_ndim(source, values, 2, "a 2-D (n, num_classes) tensor")
            check_length(source, values, n)
            check_finite(source, values)
            if source == "teacher_logits":
                probs = torch.softmax(values.double(), dim=1).float()
            else:
                check_probabilities(source, values)
                probs = values / values.sum(dim=1, keepdim=True)
            k = probs.shape[1]
            if num_classes is not None and int(num_classes) != k:
                raise ValueError(f"`num_classes`={num_classes} but `{source}` has {k} columns ({describe(values)})")
        if k < 2:
            raise ValueError(f"the teacher's outputs must cover at least 2 classes, got {k} ({source})")
        self.num_classes = k
        self.teacher_probs = probs

        if covered is None:
            self.covered = ~abstain if abstain is not None else torch.ones(n, dtype=torch.bool)
        else:
            cov = as_tensor("covered", covered)
            check_ndim("covered", cov, 1, "a 1-D (n,) bool tensor")
            check_length("covered", cov, n)
            if cov.dtype != torch.bool:
                if cov.is_floating_point() or not ((cov == 0) | (cov == 1)).all():
                    raise TypeError(f"`covered` must be a bool mask (True = the teacher labels the point), got {describe(cov)}")
                cov = cov.bool()
            if abstain is not None and (cov & abstain).any():
                i = int((cov & abstain).nonzero()[0])
                raise ValueError(f"`covered` is True at index {i} where `teacher_labels` is -1 (abstain)")
            self.covered = cov
        if not self.covered.any():
            raise ValueError("`covered` is False everywhere: the teacher abstains on every probe point, nothing to compare against")

        if gold is None:
            self.gold = None
        else:
            g = as_tensor("gold", gold)
            check_ndim("gold", g, 1, "a 1-D (n,) tensor of class indices, -1 = unknown")
            check_integer("gold", g)
            check_length("gold", g, n)
            g = g.long()
            if (g < -1).any() or (g >= k).any():
                raise ValueError(
                    f"`gold` must lie in [-1, {k - 1}] (-1 = unknown) for {k} classes, "
                    f"got values in [{g.min().item()}, {g.max().item()}]"
                )
            self.gold = g if (g >= 0).any() else None

        if teacher_features is None:
            self.teacher_features = None
        else:
            tf = as_tensor("teacher_features", teacher_features).float()
            if tf.ndim != 2:
                raise ValueError(f"`teacher_features` must be a 2-D (n, d_w) tensor, got {describe(tf)}; pool sequence outputs first")
            check_length("teacher_features", tf, n)
            check_finite("teacher_features", tf)
            self.teacher_features = tf

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _check_inputs(inputs: Any) -> Any:
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim == 0:
                raise ValueError(f"`inputs` must have a first (sample) dimension, got {describe(inputs)}")
            return inputs
        if isinstance(inputs, Mapping):
            if not inputs:
                raise ValueError("`inputs` is an empty dict: expected tensors with a common first dimension n")
            out = {str(k): as_tensor(f"inputs[{k!r}]", v) for k, v in inputs.items()}
            lengths = {k: v.shape[0] if v.ndim else None for k, v in out.items()}
            if len(set(lengths.values())) != 1 or None in lengths.values():
                raise ValueError(f"the tensors in `inputs` must share their first dimension, got lengths {lengths}")
            return out
        if isinstance(inputs, Dataset) or (hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__")):
            return inputs
        try:
            import numpy as np

            if isinstance(inputs, np.ndarray):
                return torch.from_numpy(inputs)
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(f"`inputs` must be a Tensor (n, ...), a dict of Tensors or a map-style Dataset, got {describe(inputs)}")

    @staticmethod
    def _len_inputs(inputs: Any) -> int:
        if isinstance(inputs, torch.Tensor):
            return inputs.shape[0]
        if isinstance(inputs, dict):
            return next(iter(inputs.values())).shape[0]
        return len(inputs)

    def __len__(self) -> int:
        return self.n

    @property
    def has_gold(self) -> bool:
        return self.gold is not None

    @property
    def has_abstentions(self) -> bool:
        return not bool(self.covered.all())

    def input_batch(self, index: torch.Tensor) -> Any:
        """The model inputs at positions ``index`` (a collated batch for a ``Dataset``)."""
        if isinstance(self.inputs, torch.Tensor):
            return self.inputs[index]
        if isinstance(self.inputs, dict):
            return {k: v[index] for k, v in self.inputs.items()}
        return default_collate([self.inputs[int(i)] for i in index])

    def batch(self, index: torch.Tensor, valid: torch.Tensor | None = None) -> ProbeBatch:
        """Teacher-side data at positions ``index`` (inputs are fetched separately)."""
        return ProbeBatch(
            index=index,
            valid=torch.ones(len(index), dtype=torch.bool) if valid is None else valid,
            teacher_probs=self.teacher_probs[index],
            covered=self.covered[index],
            gold=None if self.gold is None else self.gold[index],
            teacher_features=None if self.teacher_features is None else self.teacher_features[index],
        )

    def shard(self, rank: int, world_size: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the probe as ``[(index, valid), ...]`` batches.

        Contiguous shards of ``ceil(n / world_size)`` points; the last shard is padded by repeating
        index 0 with ``valid=False``, so every rank makes the *same number of forward calls* (under
        FSDP/DeepSpeed a forward all-gathers weights, and a rank with a batch fewer would deadlock
        the others) and no sample is counted twice.
        """
        per_rank = math.ceil(self.n / world_size)
        start = rank * per_rank
        index = torch.arange(start, start + per_rank)
        valid = index < self.n
        index = torch.where(valid, index, torch.zeros_like(index))
        return [(index[i : i + batch_size], valid[i : i + batch_size]) for i in range(0, per_rank, batch_size)]

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        if not isinstance(self.inputs, (torch.Tensor, dict)):
            raise TypeError(
                f"only probes whose `inputs` are a Tensor or a dict of Tensors can be saved, got {describe(self.inputs)}"
            )
        return {
            "format": "lightning_w2s.W2SProbe/1",
            "inputs": self.inputs,
            "teacher_probs": self.teacher_probs,
            "gold": self.gold,
            "covered": self.covered,
            "teacher_features": self.teacher_features,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` with ``torch.save`` (tensors only, loadable with ``weights_only=True``)."""
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "W2SProbe":
        """Load a probe written by :meth:`save`; uses ``torch.load(weights_only=True)`` (no pickled code)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"`probe` path {str(path)!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "lightning_w2s.W2SProbe/1":
            raise ValueError(f"{str(path)!r} is not a saved W2SProbe (missing format tag)")
        return cls(
            state["inputs"],
            teacher_probs=state["teacher_probs"],
            gold=state["gold"],
            covered=state["covered"],
            teacher_features=state["teacher_features"],
        )

    @classmethod
    def from_teacher(
        cls,
        teacher: torch.nn.Module,
        inputs: Any,
        layer: str | None = None,
        gold: Any = None,
        covered: Any = None,
        batch_size: int = 256,
        pooling: str | Callable = "auto",
        forward_fn: Callable | None = None,
    ) -> "W2SProbe":
        """Run ``teacher`` once over ``inputs`` (eval, no grad) and build a probe from its logits and
        the representation of ``layer`` (default: the input of its last ``nn.Linear``)."""
        from lightning_w2s.features import FeatureCapture, default_forward, eval_mode

        inputs = cls._check_inputs(inputs)
        n = cls._len_inputs(inputs)
        holder = cls.__new__(cls)
        holder.inputs, holder.n = inputs, n
        capture = FeatureCapture(teacher, layer=layer, pooling=pooling)
        forward = forward_fn or default_forward
        logits, feats = [], []
        capture.attach()
        try:
            with eval_mode(teacher):
                for i in range(0, n, batch_size):
                    idx = torch.arange(i, min(n, i + batch_size))
                    batch = holder.input_batch(idx)
                    capture.set_batch(batch)
                    out = forward(teacher, batch)
                    logits.append(out.detach().float().cpu())
                    feats.append(capture.pop().float().cpu())
        finally:
            capture.detach()
        return cls(inputs, teacher_logits=torch.cat(logits), gold=gold, covered=covered, teacher_features=torch.cat(feats))

    def __repr__(self) -> str:
        extras = [f"gold={int((self.gold >= 0).sum()) if self.gold is not None else 0}"]
        if self.has_abstentions:
            extras.append(f"covered={int(self.covered.sum())}")
        if self.teacher_features is not None:
            extras.append(f"teacher_features={self.teacher_features.shape[1]}d")
        return f"W2SProbe(n={self.n}, num_classes={self.num_classes}, teacher={self.teacher_source}, {', '.join(extras)})"
