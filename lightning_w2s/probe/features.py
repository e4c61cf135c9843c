"""Representation capture: a forward hook on a named submodule, plus pooling to ``(batch, d)``.

docs/theory.md §1: the student's representation ``h_s(x)`` is the output (or input) of a named submodule,
captured during the probe pass and pooled. Default: what the classification head reads — the
*input* of the model's last ``nn.Linear``, at the token whose logits the model returns when the head
is applied token-wise (decoder classifiers; docs/decoder.md) — announced on the console at fit start.
Pooling reads the attention mask, so the first/last/mean tokens are the real ones whatever the
padding side.

Written by hand because no library offers "hook a layer by name, pool HF-style sequence outputs
with the attention mask, and fail early with close-match suggestions".
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from lightning_w2s.metrics.validation import check_choice, describe

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


FORWARD_FN_HINT = "pass `forward_fn=` (to `W2SMonitor` or `W2SProbe.from_teacher`): a function `fn(module, batch) -> logits` that calls the model your way"


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
        "cannot find the logits in the model's output: got "
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
        raise ValueError(f"`layer` is None, so the default (input of the last nn.Linear) is used, but {type(module).__name__} has no nn.Linear; pass `layer=` naming a submodule")
    return names[-1]


#: name segments that wrappers insert: peft's ``PeftModel`` and torch.compile's ``OptimizedModule``
WRAPPER_SEGMENTS = ("base_model.model.", "_orig_mod.")


def _unwrapped(name: str) -> str:
    for segment in WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def resolve_layer(module: nn.Module, layer: str) -> nn.Module:
    """The submodule called ``layer``; an unknown name raises listing the closest names."""
    modules = dict(module.named_modules())
    if layer in modules:
        return modules[layer]
    # the same name inside a wrapper first (peft's `base_model.model.`, torch.compile's `_orig_mod.`), then close names
    bare = _unwrapped(layer)
    wrapped = [n for n in modules if n != layer and (_unwrapped(n) == bare or _unwrapped(n).endswith("." + bare))]
    close = wrapped + [c for c in difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.4) if c not in wrapped]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    some = ", ".join(repr(n) for n in list(modules)[1:12])
    raise ValueError(f"`layer`={layer!r} is not a submodule of {type(module).__name__}{hint} (available: {some}, ...)")


def real_token(mask: torch.Tensor, which: str) -> torch.Tensor:
    """Per row, the position of the ``"first"`` or ``"last"`` real token of ``mask`` ``(b, t)``
    (nonzero = real), whatever the padding side: left, right, or both in one batch. A row with no
    real token gets the first (``"first"``) or last (``"last"``) position.

    >>> real_token(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [0, 1, 1, 0]]), "last").tolist()
    [3, 2, 2]
    >>> real_token(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [0, 1, 1, 0]]), "first").tolist()
    [2, 0, 1]
    """
    real = (mask != 0).to(torch.int8)  # argmax returns the first maximum
    if which == "first":
        return real.argmax(dim=1)
    return mask.shape[1] - 1 - real.flip(1).argmax(dim=1)


def pool(x: torch.Tensor, pooling: str | Callable, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a captured activation to ``(batch, d)``.

    ``auto``: 2-D as is, 3-D ``(b, t, d)`` mean over (real) tokens, higher ranks flattened (the
    default layer's ``auto`` reads the head's token first: :class:`FeatureCapture`).
    ``mean``/``last``/``first`` need a 3-D sequence output; ``mask`` ``(b, t)`` marks real tokens
    (an ``attention_mask``): ``mean`` skips padding, ``last``/``first`` take the last/first *real*
    token whatever the padding side (:func:`real_token`). Without a mask they are positional.
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
        raise ValueError(f"`pooling`={pooling!r} needs a 3-D (batch, tokens, d) layer output, got {describe(x)}; use 'flatten', 'auto' or a callable")
    if mask is not None and mask.shape[:2] != x.shape[:2]:
        mask = None  # mask does not belong to this tensor (e.g. a layer after pooling)
    if pooling == "mean":
        if mask is None:
            return x.mean(dim=1)
        m = mask.to(x.dtype).unsqueeze(-1)
        return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1)
    if pooling in ("first", "last"):
        if mask is None:
            return x[:, 0] if pooling == "first" else x[:, -1]
        return x[torch.arange(x.shape[0], device=x.device), real_token(mask.to(x.device), pooling)]
    raise ValueError(f"`pooling` must be one of {POOLINGS} or a callable, got {pooling!r}")


def head_token(head_out: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per row, the token at which a token-wise head's output ``(b, t, k)`` equals the model's
    logits ``(b, k)``, and the largest absolute difference there (0 when the model indexes the
    head's output, as Hugging Face ``*ForSequenceClassification`` decoders do at the last non-pad
    token). Ties go to the last such token.

    >>> out = torch.tensor([[[0., 1.], [2., 3.], [4., 5.]]])
    >>> head_token(out, torch.tensor([[2., 3.]]))
    (tensor([1]), 0.0)
    """
    dist = (head_out.float() - logits.float().unsqueeze(1)).abs().amax(dim=-1)  # (b, t)
    t = dist.shape[1]
    pos = t - 1 - dist.flip(1).argmin(dim=1)
    return pos, float(dist.gather(1, pos.unsqueeze(1)).max())


class FeatureCapture:
    """Forward hook on one submodule that keeps its activation for the current batch and pools it
    to ``(batch, d)`` when the forward is done (:meth:`pop`).

    The default (``layer=None``, ``pooling="auto"``) reads what the classification head reads.
    When the head (the last ``nn.Linear``) gets a ``(batch, d)`` vector (an MLP, BERT's pooler)
    that vector is the representation. When it is applied to every token ``(batch, tokens, d)`` and
    the model's logits are its output at one token per row (Hugging Face decoder classifiers —
    Llama, Qwen2, GPT-2 — take the last non-pad token), the representation is the head's input at
    that token, found by matching the head's output to the logits at the first probe batch (the
    rule is fixed then, and said by :meth:`describe`). Otherwise: the mean over real tokens.

    The hook is registered only inside :meth:`attached`, so a model's other forward passes never run it.

    Args:
        module: the model.
        layer: submodule name; ``None`` = the input of the last ``nn.Linear``.
        capture: ``"input"`` or ``"output"`` of the layer; ``"auto"`` = input for the default
            layer, output for a named one.
        pooling: see :func:`pool`.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> capture = FeatureCapture(net)  # default: the input of the last nn.Linear
    >>> with capture.attached():
    ...     capture.set_batch(torch.zeros(5, 3)); logits = net(torch.zeros(5, 3))
    >>> tuple(capture.pop(logits).shape), capture.layer, net[2]._forward_hooks
    ((5, 4), '2', OrderedDict())
    """

    #: the largest |head output - logits| at the matched token for the head-token rule (float32
    #: copies of the same numbers differ by 0; a looser match means the logits are not the head's)
    HEAD_MATCH_TOL = 1e-4

    def __init__(self, module: nn.Module, layer: str | None = None, capture: str = "auto", pooling: str | Callable = "auto"):
        check_choice("capture", capture, CAPTURES)
        check_pooling(pooling)
        self.default_layer = layer is None
        self.layer = find_last_linear(module) if layer is None else layer
        self.capture = ("input" if layer is None else "output") if capture == "auto" else capture
        self.submodule = resolve_layer(module, self.layer)
        self.pooling = pooling
        # pooling="auto" on a linear layer's input may read the head's token (decided at the first batch)
        self._head_candidate = pooling == "auto" and self.capture == "input" and isinstance(self.submodule, nn.Linear)
        self.rule: str | None = None  # what pooling="auto" did: "head token", "mean" (sequences) or "vector"
        self._rule_note = ""
        self._handle: Any = None  # a torch RemovableHandle while the hook is registered
        self._hook_fn = self._hook  # one function object for every pass (torch.compile guards on it)
        self._active = self._kept = False
        self._mask: torch.Tensor | None = None
        self._value: torch.Tensor | None = None
        self._head_out: torch.Tensor | None = None

    def describe(self) -> str:
        """What is captured and how it is pooled (the console line at fit start)."""
        default = " (default: the input of the last nn.Linear, what the classification head reads)" if self.default_layer else ""
        return f"{self.capture} of `{self.layer}` ({type(self.submodule).__name__}){default}, pooling={self._pooling_words()}"

    def _pooling_words(self) -> str:
        name = getattr(self.pooling, "__qualname__", None) or repr(self.pooling)
        if self.rule == "head token":
            return f"'auto': the head is applied to every token and the model's logits are its output at one token per row, so the representation is the head's input at that token ({self._rule_note})"
        if self.rule == "vector":
            return "'auto': the layer reads one (batch, d) vector per row (e.g. a pooler's output), taken as is"
        if self.rule == "mean":
            return f"'auto': the mean over real tokens (by the attention mask; {self._rule_note})"
        if self.pooling in ("last", "first"):
            return f"{name}: the {self.pooling} real token by the batch's attention_mask (any padding side; positional without a mask)"
        if self.pooling == "mean":
            return f"{name}: the mean over real tokens (by the batch's attention_mask; all tokens without one)"
        return name

    def _hook(self, _module: nn.Module, args: tuple, output: Any) -> None:
        if not self._active:  # a kept hook outside a pass (:meth:`keep_registered`): nothing to do
            return
        self._value = _first_tensor(args if self.capture == "input" else output, f"the {self.capture} of layer {self.layer!r}").detach()
        self._head_out = output.detach() if self._head_candidate and isinstance(output, torch.Tensor) else None

    def attach(self) -> FeatureCapture:
        """Register the hook and capture every forward until :meth:`detach`."""
        self._active = True
        if self._handle is None:
            self._handle = self.submodule.register_forward_hook(self._hook_fn)
        return self

    def detach(self) -> None:
        self._active = False
        if self._handle is not None and not self._kept:
            self._handle.remove()
            self._handle = None

    def keep_registered(self, keep: bool = True) -> None:
        """For a ``torch.compile``'d model, which does not call a hook registered after it compiled
        (``torch._dynamo.config.skip_nnmodule_hook_guards``): keep the hook registered between
        passes, inactive outside :meth:`attached` (its one flag is a compile guard: a graph
        compiled outside a pass holds none of the hook's code). ``keep=False`` removes it."""
        self._kept = keep
        if keep and self._handle is None:
            self._handle = self.submodule.register_forward_hook(self._hook_fn)
        if not keep:
            self.detach()

    @contextmanager
    def attached(self) -> Iterator[FeatureCapture]:
        """The hook captures inside the block only: registered at its start and removed at its end
        whatever happens in it (or, kept registered, active inside it only)."""
        self.attach()
        try:
            yield self
        finally:
            self.detach()

    def set_batch(self, batch: Any) -> None:
        """Remember the batch's ``attention_mask`` (if any) for mask-aware pooling."""
        self._mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        self._value = self._head_out = None

    def pop(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled ``(batch, d)`` representation of the last forward; ``logits`` (the model's
        output for that batch) let ``pooling="auto"`` find the token the head's output was taken at."""
        if self._value is None:
            raise RuntimeError(f"layer {self.layer!r} was not called during the forward pass, so no representation was captured")
        x, head_out, self._value, self._head_out = self._value, self._head_out, None, None
        if self._head_candidate and x.ndim == 3:
            return self._pool_sequence(x, head_out, logits)
        if self.pooling == "auto" and x.ndim == 2:
            self.rule = "vector"
        if callable(self.pooling):
            try:
                return pool(x, self.pooling, self._mask)
            except Exception as exc:
                raise ValueError(
                    f"the `pooling` callable {getattr(self.pooling, '__qualname__', self.pooling)!r} failed on a probe batch "
                    f"(the {self.capture} of `{self.layer}`: {describe(x)}, attention_mask: "
                    f"{describe(self._mask) if self._mask is not None else 'none'}): {type(exc).__name__}: {exc}. "
                    "`pooling=` must map (batch, tokens, d) [and the (batch, tokens) mask] to (batch, d)"
                ) from exc
        return pool(x, self.pooling, self._mask)

    def _pool_sequence(self, x: torch.Tensor, head_out: torch.Tensor | None, logits: torch.Tensor | None) -> torch.Tensor:
        """``pooling="auto"`` of a token-wise head's input: the head's token when the logits are the
        head's output there (decided at the first batch, then kept), else the mean over real tokens."""
        matches = head_out is not None and logits is not None and logits.ndim == 2 and head_out.ndim == 3 and head_out.shape[0] == logits.shape[0] and head_out.shape[-1] == logits.shape[-1]
        if self.rule is None:
            pos, err = head_token(head_out, logits) if matches else (None, math.inf)  # type: ignore[arg-type]
            if pos is not None and err <= self.HEAD_MATCH_TOL:
                self.rule = "head token"
                if self._mask is not None and self._mask.shape == x.shape[:2]:
                    same = int((pos.cpu() == real_token(self._mask.cpu(), "last")).sum())
                    self._rule_note = f"at the first probe batch: the last real token by the attention mask in {same}/{len(pos)} rows"
                else:
                    self._rule_note = "no attention_mask in the batch"
            else:
                self.rule = "mean"
                self._rule_note = "the model's logits are not the head's output at one token" if matches else "the head's output is not (batch, tokens, classes) beside (batch, classes) logits"
        if self.rule == "mean":
            return pool(x, "mean", self._mask)
        if not matches or head_out is None or logits is None:
            raise ValueError(
                f"pooling='auto' reads the token the head's output is taken at, but this batch's logits are {describe(logits)} beside the head's output {describe(head_out)}; pass `pooling=`"
            )
        pos, err = head_token(head_out, logits)
        if err > self.HEAD_MATCH_TOL:
            raise ValueError(
                f"pooling='auto' reads the token the head's output is taken at, but no token's head output equals "
                f"this batch's logits (largest difference {err:.3g}); pass `pooling=` ('last', 'mean' or a callable)"
            )
        return x[torch.arange(x.shape[0], device=x.device), pos.to(x.device)]
