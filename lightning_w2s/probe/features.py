"""Representation capture: a forward hook on a named submodule, plus pooling to ``(batch, d)``.

docs/theory.md §1: the student's representation ``h_s(x)`` is the output (or input) of a named submodule,
captured during the probe pass and pooled. Default: the *input* of the model's last ``nn.Linear``
(the features the classification head reads), announced on the console at fit start.

Written by hand because no library offers "hook a layer by name, pool HF-style sequence outputs
with the attention mask, and fail early with close-match suggestions".
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from lightning_w2s.validation import check_choice, describe

POOLINGS = ("auto", "mean", "last", "first", "flatten", "none")
CAPTURES = ("auto", "input", "output")


def check_pooling(pooling: Any) -> str | Callable:
    """``pooling`` if it is one of :data:`POOLINGS` or a callable, else a ``ValueError``."""
    if not callable(pooling) and pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS} or a callable, got {pooling!r}")
    return pooling


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``module`` in ``eval()`` mode and under ``torch.no_grad()``, then give every
    submodule back its *own* ``training`` flag.

    ``module.train(was_training)`` would put every submodule in train mode: a backbone frozen with
    ``.eval()`` (dropout off, BatchNorm statistics still) or a Hugging Face model loaded in eval
    mode would then train differently only because a probe pass ran. Lightning's own loops save
    and restore each submodule's mode the same way.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    >>> _ = net[1].eval()
    >>> with eval_mode(net):
    ...     print(net.training, net[0].training, torch.is_grad_enabled())
    False False False
    >>> net.training, net[0].training, net[1].training
    (True, True, False)
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        for m, training in modes:
            m.training = training


def default_forward(module: nn.Module, batch: Any) -> torch.Tensor:
    """Call ``module`` on a probe batch and return its logits.

    A dict batch is passed as keyword arguments (its keys checked against the forward's signature
    first: :func:`check_forward_keys`); the output may be a tensor, an object with a ``.logits``
    tensor (Hugging Face ``SequenceClassifierOutput``), a dict with a ``"logits"`` entry, or a tuple
    whose first entry is the logits (:func:`logits_of`). Anything else needs ``forward_fn=``, and
    the errors say so.

    >>> default_forward(nn.Linear(3, 2), torch.zeros(4, 3)).shape
    torch.Size([4, 2])
    """
    if isinstance(batch, dict):
        check_forward_keys(module, batch)
        out = module(**batch)
    else:
        out = module(batch)
    return logits_of(out)


FORWARD_FN_HINT = (
    "pass `forward_fn=` (to `W2SMonitor` or `W2SProbe.from_teacher`): a function `fn(module, batch) -> logits` "
    "that calls the model your way"
)


def check_forward_keys(module: nn.Module, batch: dict) -> None:
    """Raise a ``TypeError`` naming the fix when ``module(**batch)`` cannot work: a key of the probe's
    dict inputs that the module's ``forward`` does not take (e.g. a tokenizer's ``token_type_ids``),
    or a ``forward(self, batch)`` that takes the dict as one argument. A ``forward`` with ``**kwargs``,
    or one whose signature cannot be read, is trusted.

    >>> class Net(nn.Module):
    ...     def forward(self, input_ids, attention_mask=None):
    ...         return input_ids
    >>> check_forward_keys(Net(), {"input_ids": 0, "attention_mask": 1})
    >>> check_forward_keys(Net(), {"input_ids": 0, "token_type_ids": 1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: the probe's inputs have key(s) ['token_type_ids'] that `Net.forward(input_ids, attention_mask=None)` does not take. Drop them from the probe (...), or pass `forward_fn=` ...
    """
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError):  # a builtin or C forward: nothing to read
        return
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    takes = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    extra = [k for k in batch if k not in takes]
    if not extra:
        return
    forward = f"`{type(module).__name__}.forward{signature}`"
    kept = [p.name for p in params if p.name in batch]
    if not kept:
        raise TypeError(
            f"the probe's inputs are a dict (keys {list(batch)}), which the default forward passes as keyword "
            f"arguments (`model(**inputs)`), but {forward} takes none of them: it seems to take the whole batch as one "
            f"argument. To call it that way, {FORWARD_FN_HINT}, e.g. `forward_fn=lambda module, batch: module(batch)`"
        )
    raise TypeError(
        f"the probe's inputs have key(s) {extra} that {forward} does not take. Drop them from the probe "
        f"(`W2SProbe({{k: v for k, v in inputs.items() if k not in {extra}}}, ...)`), or {FORWARD_FN_HINT}, e.g. "
        f"`forward_fn=lambda module, batch: module({', '.join(f'{k}=batch[{k!r}]' for k in kept)})`"
    )


def logits_of(out: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, a ``.logits`` tensor, a ``"logits"`` dict entry, or
    the first entry of a tuple; anything else raises a ``TypeError`` naming ``forward_fn=``."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    fields = [f.name for f in dataclasses.fields(out)] if dataclasses.is_dataclass(out) else []
    if isinstance(out, Mapping) and out:
        pick = f"[{next(iter(out))!r}]"
    else:
        pick = f".{fields[0]}" if fields else "..."
    raise TypeError(
        f"cannot find the logits in the model's output: got "
        + (f"a {type(out).__name__} dataclass with fields {fields}" if fields else describe(out))
        + ". The default forward takes a Tensor, an object with a `.logits` tensor (Hugging Face outputs), a dict "
        f"with a 'logits' entry or a tuple whose first entry is the logits; otherwise {FORWARD_FN_HINT} and returns "
        f"the (batch, num_classes) logits, e.g. `forward_fn=lambda module, batch: module(**batch){pick}` for dict "
        "inputs (`student_output='probs'` if it returns probabilities)"
    )


def _first_tensor(out: Any, what: str) -> torch.Tensor:
    """The tensor in a layer's input or output (a Hugging Face layer returns a tuple or a
    ``last_hidden_state`` object)."""
    if isinstance(out, torch.Tensor):
        return out
    for attr in ("logits", "last_hidden_state"):
        if hasattr(out, attr) and isinstance(getattr(out, attr), torch.Tensor):
            return getattr(out, attr)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find a tensor in {what}: got {describe(out)}; choose another `layer=` or `capture=`")


def find_last_linear(module: nn.Module) -> str:
    """Qualified name of the last ``nn.Linear`` registered in ``module`` (the classification head)."""
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(
            f"`layer` is None, so the default (input of the last nn.Linear) is used, but "
            f"{type(module).__name__} has no nn.Linear; pass `layer=` naming a submodule"
        )
    return names[-1]


def resolve_layer(module: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer``; an unknown name raises listing the closest names."""
    modules = dict(module.named_modules())
    if layer in modules:
        return modules[layer]
    close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    some = ", ".join(repr(n) for n in list(modules)[1:12])
    raise ValueError(f"`layer`={layer!r} is not a submodule of {type(module).__name__}{hint} (available: {some}, ...)")


def pool(x: torch.Tensor, pooling: str | Callable, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a captured activation to ``(batch, d)``.

    ``auto``: 2-D as is, 3-D ``(b, t, d)`` mean over (non-pad) tokens, higher ranks flattened.
    ``mean``/``last``/``first`` need a 3-D sequence output; ``mask`` ``(b, t)`` marks real tokens
    (an ``attention_mask``), so ``mean`` skips padding and ``last`` takes the last real token.
    """
    if callable(pooling):
        out = pooling(x, mask) if mask is not None else pooling(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"the `pooling` callable must return (batch, d), got {describe(out)} from {describe(x)}")
        return out
    if pooling == "none":
        if x.ndim != 2:
            raise ValueError(f"`pooling`='none' needs a 2-D (batch, d) layer output, got {describe(x)}")
        return x
    if pooling == "flatten":
        return x.reshape(x.shape[0], -1)
    if pooling == "auto":
        if x.ndim == 2:
            return x
        if x.ndim == 3:
            pooling = "mean"
        else:
            return x.reshape(x.shape[0], -1)
    if x.ndim != 3:
        raise ValueError(
            f"`pooling`={pooling!r} needs a 3-D (batch, tokens, d) layer output, got {describe(x)}; "
            "use 'flatten', 'auto' or a callable"
        )
    if mask is not None and mask.shape[:2] != x.shape[:2]:
        mask = None  # mask does not belong to this tensor (e.g. a layer after pooling)
    if pooling == "first":
        return x[:, 0]
    if pooling == "mean":
        if mask is None:
            return x.mean(dim=1)
        m = mask.to(x.dtype).unsqueeze(-1)
        return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
    if pooling == "last":
        if mask is None:
            return x[:, -1]
        last = mask.long().sum(dim=1).clamp_min(1) - 1
        return x[torch.arange(x.shape[0], device=x.device), last]
    raise ValueError(f"`pooling` must be one of {POOLINGS} or a callable, got {pooling!r}")


class FeatureCapture:
    """Forward hook on one submodule that keeps its pooled activation for the current batch.

    Args:
        module: the model.
        layer: submodule name; ``None`` = the input of the last ``nn.Linear``.
        capture: ``"input"`` or ``"output"`` of the layer; ``"auto"`` = input for the default
            layer, output for a named one.
        pooling: see :func:`pool`.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> capture = FeatureCapture(net).attach()  # default: the input of the last nn.Linear
    >>> capture.set_batch(torch.zeros(5, 3)); _ = net(torch.zeros(5, 3))
    >>> tuple(capture.pop().shape), capture.layer
    ((5, 4), '2')
    >>> capture.detach()
    """

    def __init__(self, module: nn.Module, layer: str | None = None, capture: str = "auto", pooling: str | Callable = "auto"):
        check_choice("capture", capture, CAPTURES)
        check_pooling(pooling)
        self.default_layer = layer is None
        self.layer = find_last_linear(module) if layer is None else layer
        self.capture = ("input" if layer is None else "output") if capture == "auto" else capture
        self.submodule = resolve_layer(module, self.layer)
        self.pooling = pooling
        self._handle = None
        self._mask: torch.Tensor | None = None
        self._value: torch.Tensor | None = None

    def describe(self) -> str:
        default = " (default: the input of the last nn.Linear)" if self.default_layer else ""
        return f"{self.capture} of `{self.layer}` ({type(self.submodule).__name__}){default}, pooling={self.pooling!r}"

    def _hook(self, _module: nn.Module, args: tuple, output: Any) -> None:
        x = _first_tensor(args if self.capture == "input" else output, f"the {self.capture} of layer {self.layer!r}")
        self._value = pool(x.detach(), self.pooling, self._mask)

    def attach(self) -> "FeatureCapture":
        if self._handle is None:
            self._handle = self.submodule.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def set_batch(self, batch: Any) -> None:
        """Remember the batch's ``attention_mask`` (if any) for mask-aware pooling."""
        self._mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        self._value = None

    def pop(self) -> torch.Tensor:
        if self._value is None:
            raise RuntimeError(f"layer {self.layer!r} was not called during the forward pass, so no representation was captured")
        value, self._value = self._value, None
        return value
