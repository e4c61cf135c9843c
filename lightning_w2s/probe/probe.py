"""The probe set: fixed inputs the monitor evaluates at every check, with the teacher's outputs.

docs/theory.md §1 and docs/architecture.md. A probe holds the inputs (a tensor, a dict of tensors, or a map-style
``Dataset``), the teacher's class probabilities (given directly, as logits, or as hard labels),
and optionally gold labels (``-1`` = unknown), a coverage mask (``False`` = the teacher abstains,
Lang et al.'s uncovered set ``T``) and the teacher's representations. A *regression* probe
(``teacher_values=``) holds the teacher's real outputs ``(n,)`` or ``(n, m)`` instead, with real
gold of the same shape (``NaN`` = unknown): the setting of Charikar et al.'s Thm 1. Everything is validated at
construction, so a bad probe fails before training starts. :meth:`W2SProbe.iter_batches` is the one
way through a probe (the monitor's checks, :meth:`W2SProbe.from_teacher`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from lightning_w2s.metrics.stats import known_rows
from lightning_w2s.metrics.validation import as_tensor, check_finite, check_labels, check_scalar, describe
from lightning_w2s.probe import _inputs

FORMAT = "lightning_w2s.W2SProbe/1"
#: how to write a probe file (the load errors say it)
HOW_TO_SAVE = "`W2SProbe(inputs, teacher_labels=labels, ...).save(path)` (numpy arrays are accepted and saved as tensors)"


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
        teacher_values: a **regression** teacher: real outputs ``(n,)`` or ``(n, m)`` (finite). Then
            ``gold`` is real with the same shape (``NaN`` = unknown), the student's output is read as
            real values of that shape, and ``covered``/``num_classes`` do not apply (the teacher
            gives a value for every point). Logged: the squared misfit, Charikar's predicted and
            measured gain, the squared errors to gold and the representation family (docs/metrics.md,
            task "both").

    Exactly one of ``teacher_probs``, ``teacher_logits``, ``teacher_labels`` (classification) or
    ``teacher_values`` (regression) must be given.

    >>> probe = W2SProbe(torch.zeros(5, 3), teacher_labels=[0, 1, -1, 1, 0], gold=[0, 1, 1, -1, 1])
    >>> probe
    W2SProbe(n=5, num_classes=2, teacher=teacher_labels, gold=4, covered=4)
    >>> [(index.tolist(), valid.tolist()) for index, valid, _ in probe.iter_batches(1, 2, batch_size=2)]
    [([3, 4], [True, True]), ([0], [False])]
    >>> W2SProbe(torch.zeros(3, 2), teacher_values=[0.5, -1.0, 2.0], gold=[0.4, float("nan"), 1.5])
    W2SProbe(n=3, outputs=(n,), teacher=teacher_values, gold=2)
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
        teacher_values: Any = None,
    ) -> None:
        self.inputs = self._check_inputs(inputs)
        self.n = n = self._len_inputs(self.inputs)
        if n == 0:
            raise ValueError("`inputs` is empty: the probe needs at least one input (got n = 0)")
        num_classes = check_scalar("num_classes", num_classes, int, min_val=2, allow_none=True)
        given = {k: v for k, v in (("teacher_probs", teacher_probs), ("teacher_logits", teacher_logits), ("teacher_labels", teacher_labels)) if v is not None}
        self.teacher_values: torch.Tensor | None = None
        self._fingerprint: str | None = None
        if teacher_values is not None:
            self._init_regression(teacher_values, given, gold, covered, teacher_features, num_classes)
            return
        if len(given) != 1:
            raise ValueError(
                f"exactly one of `teacher_probs`, `teacher_logits`, `teacher_labels` (classification) or `teacher_values` (regression) must be given, got {len(given)}: {sorted(given) or 'none'}"
            )
        ((self.teacher_source, raw),) = given.items()
        self.teacher_probs, abstain = _inputs.teacher_probs(self.teacher_source, raw, n, num_classes)
        self.num_classes = k = self.teacher_probs.shape[1]
        if k < 2:
            raise ValueError(f"the teacher's outputs must cover at least 2 classes, got {k} ({self.teacher_source})")
        self.covered = _inputs.coverage(covered, abstain, n)
        g = None if gold is None else check_labels("gold", gold, n, k, allow_minus_one=True)
        self.gold = g if g is not None and (g >= 0).any() else None
        self.teacher_features = _inputs.teacher_features(teacher_features, n)

    def _init_regression(self, teacher_values: Any, given: dict, gold: Any, covered: Any, teacher_features: Any, num_classes: int | None) -> None:
        """A regression probe: real teacher outputs, real gold (``NaN`` = unknown), no coverage."""
        misplaced = sorted(given) + (["covered"] if covered is not None else []) + (["num_classes"] if num_classes is not None else [])
        if misplaced:
            raise ValueError(
                f"`teacher_values` (a regression teacher's real outputs) cannot be combined with {misplaced}: those are "
                "for classification teachers (class probabilities, logits or labels, which may abstain). Pass either "
                "`teacher_values=` or one of `teacher_probs`/`teacher_logits`/`teacher_labels`"
            )
        values = _inputs.real_values("teacher_values", teacher_values, self.n)
        check_finite("teacher_values", values)
        self.teacher_source, self.teacher_values, self.teacher_probs = "teacher_values", values, None
        self.num_classes = None
        self.covered = torch.ones(self.n, dtype=torch.bool)  # a regression teacher gives a value everywhere
        self.gold = _inputs.regression_gold(gold, values)
        self.teacher_features = _inputs.teacher_features(teacher_features, self.n)

    @property
    def task(self) -> str:
        """``"regression"`` (``teacher_values=``) or ``"classification"``."""
        return "classification" if self.teacher_values is None else "regression"

    @property
    def is_regression(self) -> bool:
        return self.teacher_values is not None

    @property
    def output_dim(self) -> int | None:
        """A regression probe's number of outputs ``m`` (1 for ``(n,)`` values); ``None`` for classification."""
        if self.teacher_values is None:
            return None
        return 1 if self.teacher_values.ndim == 1 else self.teacher_values.shape[1]

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _check_inputs(inputs: Any) -> Any:
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
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
        return self._rows(self.inputs, index)

    @staticmethod
    def _rows(inputs: Any, index: torch.Tensor) -> Any:
        if isinstance(inputs, torch.Tensor):
            return inputs[index]
        if isinstance(inputs, dict):
            return {k: v[index] for k, v in inputs.items()}
        return default_collate([inputs[int(i)] for i in index])

    def iter_batches(self, rank: int = 0, world_size: int = 1, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
        """This rank's share of the probe as ``(index, valid, inputs)`` batches.

        Contiguous shards of ``ceil(n / world_size)`` points; the last shard is padded by repeating
        index 0 with ``valid=False``, so every rank makes the *same number of forward calls* (under
        FSDP/DeepSpeed a forward all-gathers weights, and a rank with a batch fewer would deadlock
        the others) and no sample is counted twice. ``inputs`` are the model inputs at ``index``.
        """
        batch_size = check_scalar("batch_size", batch_size, int, min_val=1)
        per_rank = math.ceil(self.n / world_size)
        index = torch.arange(rank * per_rank, (rank + 1) * per_rank)
        valid = index < self.n
        index = torch.where(valid, index, torch.zeros_like(index))
        for i in range(0, per_rank, batch_size):
            idx = index[i : i + batch_size]
            yield idx, valid[i : i + batch_size], self.input_batch(idx)

    @property
    def fingerprint(self) -> str:
        """A short hash of the probe's content (inputs when they are tensors, teacher outputs — probabilities
        or real values —, coverage, gold, teacher features): a checkpoint made with another probe can tell."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            inputs = self.inputs if isinstance(self.inputs, (torch.Tensor, dict)) else f"{type(self.inputs).__name__}:{self.n}"
            parts = [inputs, self.teacher_probs, self.covered, self.gold, self.teacher_features]
            if self.is_regression:  # the teacher's real outputs in place of its probabilities
                parts = [inputs, "teacher_values", self.teacher_values, self.gold, self.teacher_features]
            for part in parts:
                for t in part.values() if isinstance(part, dict) else [part]:
                    if isinstance(t, torch.Tensor):
                        t = t.detach().cpu().contiguous()
                        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
                    else:
                        h.update(repr(t).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def coerce(cls, name: str, value: Any) -> W2SProbe | None:
        """``value`` as a probe: a :class:`W2SProbe` (or ``None``) as is, a path loaded with :meth:`load`."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls.load(value)
        raise TypeError(f"`{name}` must be a W2SProbe or a path to a saved probe (W2SProbe.save), got {describe(value)}")

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        if not isinstance(self.inputs, (torch.Tensor, dict)):
            raise TypeError(f"only probes whose `inputs` are a Tensor or a dict of Tensors can be saved, got {describe(self.inputs)}")
        return {
            "format": FORMAT,
            "inputs": self.inputs,
            "teacher_probs": self.teacher_probs,
            "teacher_values": self.teacher_values,
            "gold": self.gold,
            "covered": None if self.is_regression else self.covered,
            "teacher_features": self.teacher_features,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``path`` with ``torch.save`` (tensors only, loadable with ``weights_only=True``)."""
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> W2SProbe:
        """Load a probe written by :meth:`save`; uses ``torch.load(weights_only=True)`` (no pickled code).

        A missing file raises ``FileNotFoundError``; a file that is not a saved probe (numpy arrays or
        other Python objects pickled with ``torch.save``, an ``np.save`` file, a plain dict of tensors)
        raises ``ValueError`` saying how to save one.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a str or os.PathLike naming a probe file, got {describe(path)}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"probe file {str(path)!r} {'is a directory' if os.path.isdir(path) else 'does not exist'}: write one first with {HOW_TO_SAVE}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, KeyError, RuntimeError... by content
            refused = next((line.strip().split(" was not ")[0] for line in str(exc).splitlines() if "Unsupported global" in line), "")
            raise ValueError(
                f"{str(path)!r} is not a probe file written by `W2SProbe.save`: torch.load(weights_only=True) could not "
                f"read it ({type(exc).__name__}{': ' + refused if refused else ''}). A probe file holds tensors only "
                f"(no numpy arrays or other Python objects); write it with {HOW_TO_SAVE}"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            got = f"a dict with keys {sorted(map(str, state))}" if isinstance(state, dict) else describe(state)
            raise ValueError(f"{str(path)!r} is not a saved W2SProbe (no {FORMAT!r} format tag; it holds {got}); write it with {HOW_TO_SAVE}")
        return cls(
            state["inputs"],
            teacher_probs=state.get("teacher_probs"),
            teacher_values=state.get("teacher_values"),
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
    ) -> W2SProbe:
        """Run ``teacher`` once over ``inputs`` (eval, no grad, every submodule's mode restored after)
        and build a probe from its logits and the representation of ``layer`` (default: what its
        classification head reads, pooled as the monitor pools a student's:
        :class:`~lightning_w2s.probe.features.FeatureCapture`)."""
        from lightning_w2s.probe.features import FeatureCapture, default_forward, eval_mode, logits_of

        inputs = cls._check_inputs(inputs)
        n = cls._len_inputs(inputs)
        batch_size = check_scalar("batch_size", batch_size, int, min_val=1)
        capture = FeatureCapture(teacher, layer=layer, pooling=pooling)
        forward = forward_fn or default_forward
        logits, feats = [], []
        with eval_mode(teacher), capture.attached():
            for start in range(0, n, batch_size):
                batch = cls._rows(inputs, torch.arange(start, min(start + batch_size, n)))
                capture.set_batch(batch)
                out = logits_of(forward(teacher, batch))
                feats.append(capture.pop(out).float().cpu())
                logits.append(out.float().cpu())
        return cls(inputs, teacher_logits=torch.cat(logits), gold=gold, covered=covered, teacher_features=torch.cat(feats))

    def __repr__(self) -> str:
        if self.is_regression:
            g = self.gold
            known = 0 if g is None else int(known_rows(g).sum())
            shape = "(n,)" if self.teacher_values.ndim == 1 else f"(n, {self.output_dim})"
            extras = [f"gold={known}"] + ([f"teacher_features={self.teacher_features.shape[1]}d"] if self.teacher_features is not None else [])
            return f"W2SProbe(n={self.n}, outputs={shape}, teacher=teacher_values, {', '.join(extras)})"
        extras = [f"gold={int((self.gold >= 0).sum()) if self.gold is not None else 0}"]
        if self.has_abstentions:
            extras.append(f"covered={int(self.covered.sum())}")
        if self.teacher_features is not None:
            extras.append(f"teacher_features={self.teacher_features.shape[1]}d")
        return f"W2SProbe(n={self.n}, num_classes={self.num_classes}, teacher={self.teacher_source}, {', '.join(extras)})"
