"""TensorBoard extras for the W2S monitor: a custom-scalars layout, reliability diagrams, markdown.

DESIGN §3 ("TensorBoard extras only when a ``TensorBoardLogger`` is present, written on rank 0").
Middle floor of the package: plain functions that take a ``SummaryWriter`` (``torch.utils.tensorboard``
or ``tensorboardX``: only ``add_custom_scalars``, ``add_image`` and ``add_text`` are called) and
never import the callbacks; the monitor calls them through :class:`Dashboard`.

- :func:`build_layout` / :func:`write_layout`: a custom-scalars dashboard layout for the logged
  ``w2s/<family>/<quantity>`` names, read from the quantities registry
  (:mod:`lightning_w2s.metrics.quantities`): each quantity's charts (*Multiline* charts grouping
  related quantities, *Margin* charts for ``value / lower / upper`` bands), in registry order,
  sections in :data:`~lightning_w2s.metrics.quantities.SECTIONS` order. Names that are not logged
  produce no chart; a ``w2s/...`` name the registry does not know gets a chart of its own.
- :func:`write_reliability` / :func:`figure_to_image`: a reliability diagram drawn from the
  calibration histogram state (:func:`~lightning_w2s.figures.reliability_figure`, Guo et al. 2017),
  rendered and written as an image.
- :func:`format_warnings`, :func:`write_markdown`: warnings as markdown text.

What this module never does: ``add_hparams`` and ``add_scalars``. Both write extra event files in
sub-folders of the log dir, which TensorBoard shows as stray runs (DESIGN §3); the scalars
themselves reach TensorBoard through ``pl_module.log`` and the logger. Figures are rendered with
the Agg canvas, never ``pyplot`` (no figure registered with pyplot, no backend switched).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_w2s._validation import describe
from lightning_w2s.figures import reliability_figure, reliability_summary
from lightning_w2s.metrics import quantities as Q

__all__ = [
    "Dashboard",
    "build_layout",
    "figure_to_image",
    "format_warnings",
    "layout_tags",
    "tensorboard_writer",
    "write_layout",
    "write_markdown",
    "write_reliability",
]


def _exact(tag: str) -> str:
    """Regex matching ``tag`` and nothing else.

    Multiline chart tags are regular expressions that the custom-scalars plugin applies with
    Python's ``re.match`` (anchored at the start only), so a tag alone would also pull in its
    ``_lower`` / ``_upper`` interval tags: anchor both ends.
    """
    return "^" + re.escape(tag) + "$"


def _check_names(names: Any) -> list[str]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"`names` must be a list of logged tag names (str), got {describe(names)}")
    out: list[str] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"`names[{i}]` must be a str tag name such as {Q.SQ!r}, got {describe(name)}")
        if name not in out:
            out.append(name)
    return out


def _placed(names: list[str]) -> list[tuple[str, Q.Quantity | None]]:
    """The ``w2s/<family>/<quantity>`` names with their registry entry, in registry order (unknown
    names last, alphabetically)."""
    order = {name: i for i, name in enumerate(Q.QUANTITIES)}
    out = []
    for name in names:
        if name.startswith(Q.PREFIX + "/") and name.count("/") >= 2:
            q = Q.lookup(name) if Q.is_registered(name) else None
            out.append((name, q))
    return sorted(out, key=lambda item: (item[1] is None, order[item[1].name] if item[1] else 0, item[0]))


def build_layout(names: Iterable[str]) -> dict[str, dict[str, list]]:
    """A custom-scalars layout for the logged names (the dict ``SummaryWriter.add_custom_scalars`` takes).

    Data-driven: a chart is made only when one of its quantities is in ``names``, so a family that
    is not logged (no gold on the probe, no train probe, ...) yields no empty chart, and every
    ``w2s/<family>/<quantity>`` name appears in at least one chart. Names outside that pattern (the
    user's own ``train_loss``, the bookkeeping ``w2s/skipped``) are ignored.

    Returns ``{section title: {chart title: ["Multiline", [tag regexes]] | ["Margin", [value, lower,
    upper]]}}``. Multiline tags are anchored regexes (one per tag; one per class group for a
    per-class quantity, so classes first logged later are caught too); Margin tags are literal tag
    names, and a band is drawn as a Margin chart only when its three tags are logged (TensorBoard
    needs all three at the same steps), otherwise as lines.
    """
    placed = _placed(_check_names(names))
    present = {name for name, _ in placed}
    charts: dict[tuple[str, str], dict[str, Any]] = {}
    for name, q in placed:
        specs = q.charts if q is not None else (Q.Chart(name.split("/", 2)[2], name.split("/")[1]),)
        for chart in specs:
            entry = charts.setdefault((chart.section or q.family, chart.title), {"lines": [], "band": {}})
            if chart.role != "line":
                entry["band"][chart.role] = name
                continue
            tags = [_exact(a) for a in chart.also if a in present] + [q.pattern if q is not None and q.per_class else _exact(name)]
            entry["lines"] += [t for t in tags if t not in entry["lines"]]
    rank = {section: i for i, section in enumerate(Q.SECTIONS)}
    layout: dict[str, dict[str, list]] = {}
    # sections in registry order, then unknown ones alphabetically; charts keep their registry order
    for (section, title), entry in sorted(charts.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][0])):
        band = [entry["band"][r] for r in ("value", "lower", "upper") if r in entry["band"]]
        if not entry["lines"] and not {"lower", "upper"} & set(entry["band"]):
            continue  # a band's value alone: drawn in its own line chart already
        if len(band) == 3 and not entry["lines"]:
            chart = ["Margin", band]
        else:
            chart = ["Multiline", entry["lines"] + [_exact(b) for b in band]]
        layout.setdefault(Q.SECTIONS.get(section, section), {})[title] = chart
    return layout


def layout_tags(layout: Mapping[str, Mapping[str, list]]) -> list[tuple[str, str, str, list[str]]]:
    """Flatten a layout to ``[(category, chart title, kind, tags), ...]`` (for tests and debugging)."""
    return [(cat, title, kind, list(tags)) for cat, charts in layout.items() for title, (kind, tags) in charts.items()]


def write_layout(writer: Any, names: Iterable[str]) -> dict[str, dict[str, list]]:
    """Build the layout for ``names`` (:func:`build_layout`) and write it with ``add_custom_scalars``.

    Writes nothing when the layout is empty. The custom-scalars plugin reads the layout from the
    tag ``custom_scalars__config__`` and keeps the most recently written one, so writing again after
    new families appear replaces the dashboard. Call on rank 0 only. Returns the layout.
    """
    layout = build_layout(names)
    if layout:
        writer.add_custom_scalars(layout)
    return layout


# ---------------------------------------------------------------------------------------- reliability
def figure_to_image(fig: Figure) -> np.ndarray:
    """Render ``fig`` with the Agg canvas to a ``(3, H, W)`` uint8 RGB array (``add_image`` CHW)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1))


def write_reliability(
    writer: Any,
    tag: str,
    counts: Any,
    conf_sums: Any,
    correct_sums: Any,
    step: int | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Draw :func:`reliability_figure` and write it as an image under ``tag`` (``add_image``).

    Uses the module's own Agg rendering rather than ``add_figure`` (which imports pyplot).
    Returns :func:`reliability_summary` of the histogram (ECE, MCE, per-bin values).
    """
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"`tag` must be a non-empty str, got {describe(tag)}")
    fig = reliability_figure(counts, conf_sums, correct_sums, title=title or tag)
    writer.add_image(tag, figure_to_image(fig), global_step=step, dataformats="CHW")
    return reliability_summary(counts, conf_sums, correct_sums)


# ---------------------------------------------------------------------------------------- markdown
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
        return ", ".join(f"`{k}` = {_fmt_value(v)}" for k, v in values.items())
    return _fmt_value(values)


def format_warnings(warnings: Iterable[Any], title: str | None = "W2S warnings") -> str:
    """Warnings as a markdown table (TensorBoard's text dashboard renders GitHub-style tables).

    Each warning is a dict with ``regime`` (or ``name``: which regime/check raised it),
    ``message`` and optionally ``values`` (``{name: number}`` shown as ``name = 0.123``) and
    ``step``; an object with those attributes (``lightning_w2s.alerts.Alert``) works too; a plain
    string is a message without a regime. An empty list gives a line saying there are no warnings.
    """
    if isinstance(warnings, (str, Mapping)):
        warnings = [warnings]
    rows = []
    for i, w in enumerate(warnings):
        if isinstance(w, str):
            w = {"message": w}
        elif not isinstance(w, Mapping) and hasattr(w, "message"):
            w = {k: getattr(w, k) for k in ("regime", "name", "message", "values", "step") if hasattr(w, k)}
        if not isinstance(w, Mapping):
            raise TypeError(
                f"`warnings[{i}]` must be a dict with keys 'regime', 'message', 'values' or a str, got {describe(w)}"
            )
        if "message" not in w:
            raise ValueError(f"`warnings[{i}]` has no 'message' key (keys: {sorted(map(str, w))})")
        regime = w.get("regime", w.get("name", ""))
        rows.append((w.get("step", ""), regime or "", w["message"], _fmt_values(w.get("values"))))
    head = f"### {title}\n\n" if title else ""
    if not rows:
        return head + "_No warnings._"
    with_step = any(r[0] != "" and r[0] is not None for r in rows)
    cols = (["step"] if with_step else []) + ["regime", "message", "values"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for step, regime, message, values in rows:
        cells = ([_cell("" if step is None else step)] if with_step else []) + [
            f"**{_cell(regime)}**" if regime else "", _cell(message), _cell(values)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def write_markdown(writer: Any, tag: str, text: str, step: int | None = None) -> None:
    """Write markdown ``text`` under ``tag`` (``add_text``; TensorBoard stores it under
    ``<tag>/text_summary`` and renders the markdown in its Text dashboard)."""
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"`tag` must be a non-empty str, got {describe(tag)}")
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a markdown str, got {describe(text)}")
    writer.add_text(tag, text, global_step=step)


# ---------------------------------------------------------------------------------------- writer
def tensorboard_writer(loggers: Iterable[Any]) -> Any | None:
    """The ``SummaryWriter`` of the first TensorBoard logger in ``loggers`` (``trainer.loggers``), or
    ``None``. Duck-typed on the class name so that it needs no Lightning import and works with
    Lightning's ``TensorBoardLogger`` whichever writer (torch or tensorboardX) backs it. On ranks
    other than 0 Lightning returns a dummy experiment: call the writers on rank 0 only."""
    for logger in loggers or ():
        if any(cls.__name__ == "TensorBoardLogger" for cls in type(logger).__mro__):
            writer = logger.experiment
            if all(hasattr(writer, m) for m in ("add_custom_scalars", "add_image", "add_text")):
                return writer
    return None


class Dashboard:
    """The monitor's TensorBoard extras, on rank 0: the layout (rewritten when new names appear),
    reliability diagrams every ``figure_every_n_checks`` checks and once at the end of fit, and
    each check's new warnings as a markdown table (``w2s/warnings``).

    >>> from torch.utils.tensorboard import SummaryWriter
    >>> import tempfile
    >>> dash = Dashboard(SummaryWriter(tempfile.mkdtemp()), figure_every_n_checks=0)
    >>> dash.update(check=1, step=10, names=[Q.SQ], extras={}, alerts=[])
    >>> dash.names == {Q.SQ}
    True
    """

    WARNINGS_TAG = "w2s/warnings"

    def __init__(self, writer: Any, figure_every_n_checks: int) -> None:
        self.writer, self.figure_every_n_checks = writer, figure_every_n_checks
        self.names: set[str] = set()
        self.figures_step: int | None = None

    def update(self, check: int, step: int, names: Iterable[str], extras: Mapping[str, Any], alerts: list) -> None:
        """After the ``check``-th successful check (1-based) at ``step``."""
        if not set(names) <= self.names:
            self.names |= set(names)
            write_layout(self.writer, sorted(self.names))
        n = self.figure_every_n_checks
        if n and (check - 1) % n == 0:
            self.figures(step, extras)
        if alerts:
            write_markdown(self.writer, self.WARNINGS_TAG, format_warnings([a.as_dict() for a in alerts]), step=step)
        self.writer.flush()

    def figures(self, step: int, extras: Mapping[str, Any]) -> None:
        """The reliability diagrams of the aggregator's histograms (``extras["reliability/..."]``)."""
        for tag, hist in extras.items():
            if tag.startswith("reliability/"):
                write_reliability(self.writer, f"{Q.PREFIX}/{tag}", hist[0], hist[1], hist[2], step=step)
        self.figures_step = step

    def finish(self, step: int, extras: Mapping[str, Any], checks: int) -> None:
        """At the end of fit: the last check's diagrams, unless they were drawn at that check."""
        if self.figure_every_n_checks and checks and self.figures_step != step:
            self.figures(step, extras)
            self.writer.flush()
