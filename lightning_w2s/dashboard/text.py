"""The dashboard's text (TensorBoard's Text tab): warnings and the constants of the probe as markdown.

Pure formatting (strings in, markdown out), for :class:`lightning_w2s.dashboard.tensorboard.Dashboard`:
:func:`format_warnings` (``w2s/warnings``) and :func:`format_constants` (``w2s/constants``: the
constants of the probe written once instead of as flat lines). TensorBoard 2.21's Text tab renders
GitHub-style tables but breaks words anywhere (``word-break: break-word``, measured in headless
Chromium): a long message in a table cell squeezes its neighbours to a letter a line, so long text
stays out of tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.validation import describe

__all__ = ["CONSTANTS_TAG", "RUN_GUIDE", "WARNINGS_TAG", "format_constants", "format_warnings", "headline"]

#: the text tags the monitor writes (:class:`lightning_w2s.dashboard.loggers.TextSink`)
WARNINGS_TAG = f"{Q.PREFIX}/warnings"
CONSTANTS_TAG = f"{Q.PREFIX}/constants"


def _cell(text: Any) -> str:
    """One markdown table cell: pipes escaped, newlines turned into spaces."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()


def _fmt_value(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def _fmt_values(values: Any) -> str:
    if values is None:
        return ""
    if isinstance(values, Mapping):
        return ", ".join(f"`{_short(k)}` = {_fmt_value(v)}" for k, v in values.items())
    return _fmt_value(values)


def _short(name: Any) -> str:
    """A logged name without the common ``w2s/`` prefix (table cells stay narrow)."""
    name = str(name)
    return name[len(Q.PREFIX) + 1 :] if name.startswith(Q.PREFIX + "/") else name


def format_warnings(warnings: Iterable[Any], title: str | None = "W2S warnings") -> str:
    """Warnings as markdown: a table of the short fields (regime, check, step, the values the rule
    read) and each message below it as a bullet. (TensorBoard's text tab breaks words anywhere, so a
    long message in a table cell squeezes its neighbours to a letter a line: it stays out of it.)

    Each warning is a dict with ``regime`` (or ``name``: which regime/check raised it),
    ``message`` and optionally ``values`` (``{name: number}``: the values the rule read, shown as
    ``name = 0.123`` without the ``w2s/`` prefix), ``check`` and ``step``; an object with those
    attributes (``lightning_w2s.stopping.alerts.Alert``) works too; a plain string is a message without a
    regime. Columns without any entry are left out. An empty list gives a line saying there are no
    warnings.

    >>> print(format_warnings([{"regime": "gain_exhausted", "message": "no gain left", "check": 3, "values": {"w2s/d": 0.01}}]))
    ### W2S warnings
    <BLANKLINE>
    | regime | check | values read |
    |---|---|---|
    | **gain_exhausted** | 3 | `d` = 0.01 |
    <BLANKLINE>
    - **gain_exhausted** (check 3): no gain left
    """
    if isinstance(warnings, (str, Mapping)):
        warnings = [warnings]
    rows = []
    for i, w in enumerate(warnings):
        if isinstance(w, str):
            w = {"message": w}
        elif not isinstance(w, Mapping) and hasattr(w, "message"):
            w = {k: getattr(w, k) for k in ("regime", "name", "message", "values", "check", "step") if hasattr(w, k)}
        if not isinstance(w, Mapping):
            raise TypeError(f"`warnings[{i}]` must be a dict with keys 'regime', 'message', 'values' or a str, got {describe(w)}")
        if "message" not in w:
            raise ValueError(f"`warnings[{i}]` has no 'message' key (keys: {sorted(map(str, w))})")
        regime = w.get("regime", w.get("name", "")) or ""
        rows.append(
            {"regime": f"**{_cell(regime)}**" if regime else "", "check": w.get("check"), "step": w.get("step"), "values read": _cell(_fmt_values(w.get("values"))), "message": _cell(w["message"])}
        )
    head = f"### {title}\n\n" if title else ""
    if not rows:
        return head + "_No warnings._"
    cols = [c for c in ("regime", "check", "step", "values read") if any(r[c] not in (None, "") for r in rows)]
    lines = []
    if cols:
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
        lines.append("")
    for r in rows:
        where = f" (check {r['check']})" if r["check"] is not None else ""
        lines.append(f"- {r['regime'] or 'warning'}{where}: {r['message']}")
    return head + "\n".join(lines)


def format_constants(values: Mapping[str, float], context: Mapping[str, Any] | None = None, title: str | None = "The teacher and the probe: constants of this fit") -> str:
    """The constants of the probe among the logged ``values`` (the registry's ``CONSTANT`` charts:
    the teacher's accuracy, calibration and class share, α_i, ...) as a markdown table, after the
    ``context`` (the monitor's configuration: probe, scores, representation; the reference runs) as
    a list. Written once as text instead of as flat lines.

    >>> print(format_constants({Q.TEACHER_MAX_CLASS_SHARE: 0.6}, {"teacher_score": 0.75}, title=None))  # doctest: +ELLIPSIS
    - **teacher_score**: 0.75
    <BLANKLINE>
    | constant | value | meaning |
    |---|---|---|
    | `prediction/teacher_max_...` | 0.6 | the same for the teacher's labels on covered points |
    """
    lines = [f"- **{_cell(key)}**: {_cell(_fmt_value(value))}" for key, value in (context or {}).items()]
    rows = Q.constants(dict(values))
    if rows:
        lines += ([""] if lines else []) + ["| constant | value | meaning |", "|---|---|---|"]
    for name, meaning, value, ends in rows:
        interval = f" [{_fmt_value(ends[0])}, {_fmt_value(ends[1])}] (Wilson 95%)" if ends else ""
        lines.append(f"| `{_cell(_short(name))}` | {_fmt_value(value)}{interval} | {_cell(meaning)} |")
    return (f"### {title}\n\n" if title else "") + "\n".join(lines)


def headline(values: Mapping[str, float]) -> str:
    """A check's headline for the console (``W2SMonitor(verbose=True)``): PGR where it is logged
    (Burns et al. 2023: defined with a ceiling above the teacher's score), the held-out disagreement
    with its Wilson 95% interval, and ``W2SEarlyStopping``'s default signal ``teacher_label_ce``
    (a regression probe: the squared misfit ``sq``). A name not logged at this check is left out.

    >>> headline({Q.PGR: 0.4125, Q.DISAGREEMENT: 0.2, Q.lower(Q.DISAGREEMENT): 0.15, Q.upper(Q.DISAGREEMENT): 0.26,
    ...           Q.TEACHER_LABEL_CE: 0.5123, Q.SQ: 0.1})
    'PGR 0.4125 | held-out disagreement 0.2 [0.15, 0.26] | teacher_label_ce 0.5123'
    """
    parts = []
    if Q.PGR in values:
        parts.append(f"PGR {_fmt_value(values[Q.PGR])}")
    if Q.DISAGREEMENT in values:
        ends = [values.get(Q.lower(Q.DISAGREEMENT)), values.get(Q.upper(Q.DISAGREEMENT))]
        band = f" [{_fmt_value(ends[0])}, {_fmt_value(ends[1])}]" if None not in ends else ""
        parts.append(f"held-out disagreement {_fmt_value(values[Q.DISAGREEMENT])}{band}")
    signal = Q.TEACHER_LABEL_CE if Q.TEACHER_LABEL_CE in values else Q.SQ
    if signal in values:
        parts.append(f"{_short(signal).split('/')[-1]} {_fmt_value(values[signal])}")
    return " | ".join(parts) or "no headline value logged"


#: what each reference run holds (the constants text says it, TensorBoard's run list only names them)
RUN_GUIDE = {
    "teacher": "the teacher: its accuracy on the same covered gold points, with the band; PGR 0",
    "ceiling": "the strong ceiling: PGR 1",
    "train_probe": "the same quantities on the train probe",
    "predicted_gain": "Charikar's predicted gain (misfit)",
    "class_{i}": "per class i of Lang et al.'s quantities",
}
