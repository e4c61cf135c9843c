"""TensorBoard extras for the W2S monitor: a custom-scalars dashboard, reliability diagrams, markdown.

docs/architecture.md ("TensorBoard extras only when a ``TensorBoardLogger`` is present, written on rank 0").
Middle floor of the package: plain functions that take a ``SummaryWriter`` (``torch.utils.tensorboard``
or ``tensorboardX``: only ``add_custom_scalars``, ``add_scalar``, ``add_image``, ``add_text`` and
``get_logdir`` are called) and never import the callbacks; the monitor calls them through
:class:`Dashboard`.

- :func:`build_layout` / :func:`write_layout`: the custom-scalars layout, read from the quantities
  registry's charts (:func:`lightning_w2s.metrics.quantities.charts`), sections in
  :data:`~lightning_w2s.metrics.quantities.SECTIONS` order (the headline "does the student beat its
  teacher?" first). **Every chart draws one tag**: a Multiline chart of one tag, or a Margin chart
  (value with a shaded band). Its several lines are TensorBoard *runs*, which TensorBoard colours
  apart and names in its run list: the student's run (the logger's) and the reference runs
  :class:`Dashboard` writes into sub-folders of it (``teacher``, ``ceiling``, ``train_probe``,
  ``predicted_gain``, ``class_<i>``; :func:`~lightning_w2s.metrics.quantities.reference_values`).
  Several tags of one run in one chart would share one colour (TensorBoard colours by run) and be
  told apart only by hovering. Names that are not logged produce no chart; a ``w2s/...`` name the
  registry does not know gets a chart of its own.
- Constants of the probe (the teacher's accuracy, calibration and class share, α_i) are text, never
  flat lines: the monitor writes them (``w2s/constants``) and its warnings (``w2s/warnings``) to
  every logger that takes text, TensorBoard's Text tab included
  (:class:`lightning_w2s.dashboard.loggers.TextSink`); :meth:`Dashboard.run_guide` gives the
  constants' lines about the runs; the markdown itself: :mod:`lightning_w2s.dashboard.text`.
- :func:`write_reliability` / :func:`figure_to_image`: a reliability diagram drawn from the
  calibration histogram state (:func:`~lightning_w2s.dashboard.figures.reliability_figure`, Guo et al. 2017),
  rendered and written as an image.
- :func:`write_markdown`: markdown text (``add_text``).

What this module never does: ``add_hparams`` and ``add_scalars``, which write extra event folders
named after tags (stray runs, docs/architecture.md); the only sub-folders are the reference runs above, written
deliberately and named after what they hold. The student's scalars reach TensorBoard through the
logger, once per check (:func:`lightning_w2s.callbacks.publish.log_values`). Figures are rendered with the Agg canvas, never ``pyplot``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_w2s.dashboard.figures import reliability_figure, reliability_summary
from lightning_w2s.dashboard.text import RUN_GUIDE
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.validation import describe
from lightning_w2s.namespaces import is_lightning_instance

__all__ = ["Dashboard", "build_layout", "figure_to_image", "is_reference_run", "layout_tags", "tensorboard_order", "tensorboard_writer", "write_layout", "write_markdown", "write_reliability"]


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


def _margin_or_lines(spec: Q.ChartSpec, own: dict[str, str]) -> list:
    """A band chart: a Margin chart when the student's run logs its three tags (or, without the
    value, both ends: the band alone, its lower end as the line, under the chart's ``band_title``);
    else the value (or the end that is logged) as one line."""
    if {"value", "lower", "upper"} <= set(own):
        return ["Margin", [own["value"], own["lower"], own["upper"]]]
    if {"lower", "upper"} <= set(own):
        return ["Margin", [own["lower"], own["lower"], own["upper"]]]
    tag = own.get("value") or next(iter(own.values()), spec.tags.get("value"))
    return ["Multiline", [_exact(tag)]]


def _drawn(spec: Q.ChartSpec, logged: set[str], referenced: set[str]) -> dict[str, str] | None:
    """The chart's tags the student's run logs, or ``None`` when no run draws anything in the chart
    (``referenced``: the tags the reference runs write)."""
    own = {role: tag for role, tag in spec.tags.items() if tag in logged}
    return own if own or referenced & set(spec.tags.values()) else None


def build_layout(names: Iterable[str]) -> dict[str, dict[str, list]]:
    """A custom-scalars layout for the logged names (the dict ``SummaryWriter.add_custom_scalars`` takes).

    Data-driven: the registry's charts (:func:`lightning_w2s.metrics.quantities.charts`), each made
    only when one of its quantities is in ``names`` (its own tag, or a source of one of its reference
    runs), so a family that is not logged yields no empty chart. Constants of the probe get no chart
    (they are text). Names outside ``w2s/<family>/<quantity>`` (the user's own ``train_loss``, the
    bookkeeping ``w2s/skipped``) are ignored; an unregistered ``w2s/<family>/<quantity>`` gets a chart
    of its own in section ``<family>``.

    Returns ``{section title: {chart title: ["Multiline", [one anchored tag regex]] | ["Margin",
    [value, lower, upper]]}}``. Every chart has one tag (Margin: one value/lower/upper triple); its
    lines are the runs that log it.
    """
    logged = {n for n in _check_names(names) if n.startswith(Q.PREFIX + "/") and n.count("/") >= 2}
    sections: dict[str, list[tuple[str, list]]] = {}
    referenced = {tag for run in Q.reference_values(dict.fromkeys(logged, 0.0)).values() for tag in run}
    for spec in Q.charts():
        own = _drawn(spec, logged, referenced)
        if own is None:
            continue
        chart = ["Multiline", [_exact(spec.tags["line"])]] if not spec.band else _margin_or_lines(spec, own)
        band_alone = spec.band and "value" not in own and chart[0] == "Margin"
        title = spec.band_title if band_alone and spec.band_title else spec.title
        sections.setdefault(Q.SECTIONS.get(spec.section, spec.section), []).append((title, chart))
    for name in sorted(n for n in logged if not Q.is_registered(n)):
        _, family, quantity = name.split("/", 2)
        sections.setdefault(family, []).append((quantity, ["Multiline", [_exact(name)]]))
    return {section: dict(tensorboard_order(charts)) for section, charts in sections.items()}


def tensorboard_order(charts: list[tuple[str, list]]) -> list[tuple[str, list]]:
    """The order to write a section's charts in so that TensorBoard shows them as they are listed,
    Multiline charts before Margin charts. Measured in TensorBoard 2.21 with headless Chromium: the
    custom-scalars tab draws a category's Multiline charts first, in the layout's order, then its
    Margin charts in *reverse* order; so the Margin charts are written reversed.

    >>> [t for t, _ in tensorboard_order([("band 1", ["Margin", []]), ("line", ["Multiline", []]), ("band 2", ["Margin", []])])]
    ['line', 'band 2', 'band 1']
    """
    lines = [c for c in charts if c[1][0] != "Margin"]
    return lines + [c for c in charts if c[1][0] == "Margin"][::-1]


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


def write_reliability(writer: Any, tag: str, counts: Any, conf_sums: Any, correct_sums: Any, step: int | None = None, title: str | None = None) -> dict[str, Any]:
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
    ``None``: a ``TensorBoardLogger`` of either Lightning namespace (:mod:`lightning_w2s.namespaces`),
    whichever writer (torch or tensorboardX) backs it. On ranks other than 0 Lightning returns a
    dummy experiment: call the writers on rank 0 only."""
    for logger in loggers or ():
        if is_lightning_instance(logger, "loggers.TensorBoardLogger"):
            writer = logger.experiment
            if all(hasattr(writer, m) for m in ("add_custom_scalars", "add_image", "add_text")):
                return writer
    return None


def _logdir(writer: Any) -> str:
    """The folder of ``writer``'s event files (torch's ``SummaryWriter`` and tensorboardX's)."""
    if callable(getattr(writer, "get_logdir", None)):
        return str(writer.get_logdir())
    return str(getattr(writer, "log_dir", None) or writer.logdir)


def _run_rank(run: str) -> tuple[int, int]:
    """Creation order of the reference runs (TensorBoard colours runs in order of creation)."""
    for i, pattern in enumerate(Q.REFERENCE_RUNS):
        match = re.fullmatch(re.escape(pattern).replace(re.escape("{i}"), r"(\d+)"), run)
        if match:
            return i, int(match.group(1)) if match.groups() else 0
    return len(Q.REFERENCE_RUNS), 0


def is_reference_run(path: str | os.PathLike) -> bool:
    """Whether the event folder ``path`` is a reference run the dashboard wrote (a sub-folder named
    after one of :data:`~lightning_w2s.metrics.quantities.REFERENCE_RUNS` inside a run)."""
    return _run_rank(os.path.basename(os.path.normpath(path)))[0] < len(Q.REFERENCE_RUNS)


class Dashboard:
    """The monitor's TensorBoard extras, on rank 0: the layout (rewritten when new names appear),
    the reference runs beside the student's (``teacher``, ``ceiling``, ``train_probe``,
    ``predicted_gain``, ``class_<i>``: sub-folders of the logger's run), reliability diagrams every
    ``figure_every_n_checks`` checks and once at the end of fit, and the lines about those runs
    for the constants text (:meth:`run_guide`; the text itself goes through
    :class:`~lightning_w2s.dashboard.loggers.TextSink`, to every logger).

    >>> from torch.utils.tensorboard import SummaryWriter
    >>> import tempfile
    >>> dash = Dashboard(SummaryWriter(tempfile.mkdtemp()), figure_every_n_checks=0)
    >>> dash.update(check=1, step=10, values={Q.SQ: 0.2, Q.train_name(Q.SQ): 0.1}, extras={})
    >>> dash.names == {Q.SQ, Q.train_name(Q.SQ)}, sorted(dash.runs)  # the train probe's value: a reference run
    (True, ['train_probe'])
    >>> dash.close()
    """

    def __init__(self, writer: Any, figure_every_n_checks: int) -> None:
        self.writer, self.figure_every_n_checks = writer, figure_every_n_checks
        self.names: set[str] = set()
        self.runs: dict[str, Any] = {}
        self.figures_step: int | None = None
        self.last_step: int | None = None  # the step of the latest check

    def update(self, check: int, step: int, values: Mapping[str, float], extras: Mapping[str, Any]) -> None:
        """After the ``check``-th successful check (1-based) with the logged ``values``, at the ``step``
        the loggers write them at."""
        self.last_step = step
        if not set(values) <= self.names:
            self.names |= set(values)
            write_layout(self.writer, sorted(self.names))
        self.write_references(step, values)
        n = self.figure_every_n_checks
        if n and (check - 1) % n == 0:
            self.figures(step, extras)
        self.writer.flush()

    def run_guide(self) -> dict[str, str]:
        """A line per run for the constants text: TensorBoard's run list (the charts' legend) names the
        runs but does not say what they hold."""
        guide = {"runs": f"`{os.path.basename(_logdir(self.writer))}` is the student on the held-out probe"}
        for run in self.runs:
            pattern = Q.REFERENCE_RUNS[_run_rank(run)[0]]
            guide[f"run `{run}`"] = RUN_GUIDE.get(pattern, "")
        return guide

    def write_references(self, step: int, values: Mapping[str, float]) -> None:
        """The reference runs' values at this check (:func:`~lightning_w2s.metrics.quantities.reference_values`),
        each run created on first use, in :data:`~lightning_w2s.metrics.quantities.REFERENCE_RUNS` order."""
        refs = Q.reference_values(dict(values))
        for run in sorted(refs, key=_run_rank):
            if run not in self.runs:
                self.runs[run] = type(self.writer)(os.path.join(_logdir(self.writer), run))
            for tag, value in refs[run].items():
                self.runs[run].add_scalar(tag, value, global_step=step)
            self.runs[run].flush()

    def figures(self, step: int, extras: Mapping[str, Any]) -> None:
        """The reliability diagrams of the aggregator's histograms (``extras["reliability/..."]``)."""
        for tag, hist in extras.items():
            if tag.startswith("reliability/"):
                write_reliability(self.writer, f"{Q.PREFIX}/{tag}", hist[0], hist[1], hist[2], step=step)
        self.figures_step = step

    def finish(self, extras: Mapping[str, Any]) -> None:
        """At the end of fit: the last check's diagrams, unless they were drawn at that check; the
        reference runs' files are closed."""
        try:
            if self.figure_every_n_checks and self.last_step is not None and self.figures_step != self.last_step:
                self.figures(self.last_step, extras)
                self.writer.flush()
        finally:
            self.close()

    def close(self) -> None:
        """Close the reference runs' writers (the student's belongs to the logger)."""
        for writer in self.runs.values():
            writer.close()
        self.runs = {}
