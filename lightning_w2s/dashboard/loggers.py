"""Where the words go: the monitor's warnings, the constants of the probe and the stopper's reason,
as markdown, to every logger of the Trainer, each through what it offers for text
(docs/loggers.md has the table).

:class:`TextSink` owns it; the monitor and the stopper hand it ``(tag, markdown, step)`` and never
look at the loggers themselves. One sink per Trainer (:meth:`TextSink.of`), so that the monitor's
and the stopper's words land in one report. Rank 0 only: on the other ranks the sink has no routes.

- ``TensorBoardLogger``: ``SummaryWriter.add_text(tag, text, global_step=step)`` (the Text tab).
- ``MLFlowLogger``: ``MlflowClient.log_text(run_id, report, "w2s_report.md")``: the whole report as
  one artifact, rewritten at each change.
- ``WandbLogger``: ``WandbLogger.log_text(key=tag, columns=["step", "markdown"], data=...)``: a
  table per tag holding every entry so far (a replaced tag: the latest), at the step.
- ``CometLogger``: ``Experiment.log_text(text, step=step, metadata={"tag": tag})``.
- A ``NeptuneLogger`` (Neptune's own package; Lightning's is a stub since Neptune's sunset):
  ``run[tag].append(text)``, a string series per tag.
- Any other logger with a ``log_dir`` (``CSVLogger``, ``LitLogger``, your own) or a ``save_dir``:
  the report as a markdown file ``w2s_report.md`` in that folder, rewritten at each change (and
  handed to the logger's ``log_file(path)`` when it has one: ``LitLogger`` uploads it).

A logger whose text call fails costs neither the fit nor the other loggers: one warning per logger,
and the next change is tried again.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lightning_w2s.dashboard.tensorboard import write_markdown
from lightning_w2s.metrics.validation import describe
from lightning_w2s.namespaces import is_lightning_instance

__all__ = ["REPORT_FILE", "CometText", "Entry", "MLflowText", "NeptuneText", "ReportFile", "Section", "TensorBoardText"]
__all__ += ["TextSink", "WandbText", "report_markdown", "routes_for"]

#: the report's file name: in a logger's folder, and MLflow's artifact
REPORT_FILE = "w2s_report.md"


@dataclass
class Entry:
    """One text written under a tag, at the logger step it was written at.

    >>> Entry(3, "- **probe_too_small**").step
    3
    """

    step: int | None
    text: str


@dataclass
class Section:
    """A tag's entries so far.

    >>> Section(replace=True).entries
    []
    """

    replace: bool  # a tag whose latest text supersedes the earlier ones (the constants)
    entries: list[Entry] = field(default_factory=list)


def report_markdown(sections: dict[str, Section]) -> str:
    """The report: one ``##`` section per tag in order of first use, each entry under the step it
    was written at (a replaced tag: its latest entry only)."""
    lines = [
        "# lightning_w2s report",
        "",
        "_Written by lightning_w2s and rewritten at each change: warnings, the constants of the probe, the stop reason. The numbers are the logger's `w2s/...` metrics._",
    ]
    for tag, section in sections.items():
        lines += ["", f"## {tag}"]
        for entry in section.entries:
            lines += ["", f"_step {entry.step}_" if entry.step is not None else "", "", entry.text]
    return "\n".join(lines) + "\n"


class TensorBoardText:
    """A ``SummaryWriter`` (``TensorBoardLogger.experiment``): ``add_text`` of the new entry at its step.

    >>> class Writer:
    ...     def add_text(self, tag, text, global_step=None): print(tag, global_step, text)
    ...     def flush(self): pass
    >>> TensorBoardText(Writer()).write("w2s/warnings", 3, [Entry(3, "hi")], str)
    w2s/warnings 3 hi
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        write_markdown(self.writer, tag, entries[-1].text, step=step)
        self.writer.flush()


class MLflowText:
    """An ``MLFlowLogger``: the whole report as the run's artifact ``w2s_report.md`` (``MlflowClient.log_text``).

    >>> from types import SimpleNamespace as NS
    >>> logger = NS(run_id="r1", experiment=NS(log_text=lambda run, text, name: print(run, name, text)))
    >>> MLflowText(logger).write("w2s/warnings", 3, [Entry(3, "hi")], lambda: "# report")
    r1 w2s_report.md # report
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        self.logger.experiment.log_text(self.logger.run_id, report(), REPORT_FILE)


class WandbText:
    """A ``WandbLogger``: the tag's entries as a two-column table (``WandbLogger.log_text``) at the step.

    >>> from types import SimpleNamespace as NS
    >>> logger = NS(log_text=lambda key, columns, data, step: print(key, columns, data, step))
    >>> WandbText(logger).write("w2s/warnings", 3, [Entry(1, "a"), Entry(3, "b")], str)
    w2s/warnings ['step', 'markdown'] [[1, 'a'], [3, 'b']] 3
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        rows = [[e.step, e.text] for e in entries]
        self.logger.log_text(key=tag, columns=["step", "markdown"], data=rows, step=step)


class CometText:
    """A ``CometLogger``: ``Experiment.log_text`` of the new entry, its tag in the metadata.

    >>> from types import SimpleNamespace as NS
    >>> logger = NS(experiment=NS(log_text=lambda text, step, metadata: print(text, step, metadata)))
    >>> CometText(logger).write("w2s/warnings", 3, [Entry(3, "hi")], str)
    hi 3 {'tag': 'w2s/warnings'}
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        self.logger.experiment.log_text(entries[-1].text, step=step, metadata={"tag": tag})


class NeptuneText:
    """A Neptune logger: the new entry appended to the run's string series ``run[tag]``.

    >>> from types import SimpleNamespace as NS
    >>> run = {"w2s/warnings": NS(append=print)}
    >>> NeptuneText(NS(experiment=run)).write("w2s/warnings", 3, [Entry(3, "hi")], str)
    hi
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        self.logger.experiment[tag].append(entries[-1].text)


class ReportFile:
    """The report as ``w2s_report.md`` in ``folder``, rewritten whole (then ``logger.log_file(path)`` when it has one).

    >>> import tempfile
    >>> route = ReportFile(tempfile.mkdtemp())
    >>> route.write("w2s/warnings", 3, [Entry(3, "hi")], lambda: "# report")
    >>> open(route.path).read()
    '# report'
    """

    def __init__(self, folder: str, logger: Any = None) -> None:
        self.path = os.path.join(folder, REPORT_FILE)
        self.upload = getattr(logger, "log_file", None)

    def write(self, tag: str, step: int | None, entries: list[Entry], report: Callable[[], str]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        partial = self.path + ".partial"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(report())
        os.replace(partial, self.path)  # a reader never sees half a report
        if callable(self.upload):
            self.upload(self.path)


def routes_for(logger: Any) -> Any | None:
    """How ``logger`` takes text (see the module docstring), or ``None`` for a logger with neither a
    text API nor a folder. Either Lightning namespace (:mod:`lightning_w2s.namespaces`). A bare
    ``SummaryWriter`` is taken as a TensorBoard logger's."""
    if is_lightning_instance(logger, "loggers.TensorBoardLogger"):
        return TensorBoardText(logger.experiment)
    if callable(getattr(logger, "add_text", None)):
        return TensorBoardText(logger)
    if is_lightning_instance(logger, "loggers.MLFlowLogger"):
        return MLflowText(logger)
    if is_lightning_instance(logger, "loggers.WandbLogger"):
        return WandbText(logger)
    if is_lightning_instance(logger, "loggers.CometLogger"):
        return CometText(logger)
    if any(cls.__name__ == "NeptuneLogger" for cls in type(logger).__mro__):
        return NeptuneText(logger)
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return ReportFile(str(folder), logger) if folder else None


class TextSink:
    """The words of one fit, to every logger that takes them (the module docstring says how).

    ``routes``: the writers (:func:`routes_for` of each logger: :meth:`for_loggers`). :meth:`write`
    adds one markdown text under ``tag`` at ``step``: appended to the tag's entries, or, with
    ``replace=True`` (texts that supersede the previous one, like the constants of the probe),
    replacing them, and written only when it differs from the current one. The sink keeps every
    entry (the report of the document routes holds them all).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> sink = TextSink([ReportFile(folder)])
    >>> sink.write("w2s/warnings", "- **probe_too_small**: 40 covered points", step=9)
    True
    >>> sink.write("w2s/constants", "| constant | value |", step=9, replace=True)
    True
    >>> sink.write("w2s/constants", "| constant | value |", step=19, replace=True)  # unchanged: nothing written
    False
    >>> print(open(os.path.join(folder, REPORT_FILE)).read().split("_\\n", 1)[1])  # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    ## w2s/warnings
    <BLANKLINE>
    _step 9_
    <BLANKLINE>
    - **probe_too_small**: 40 covered points
    <BLANKLINE>
    ## w2s/constants
    <BLANKLINE>
    _step 9_
    <BLANKLINE>
    | constant | value |
    <BLANKLINE>
    """

    def __init__(self, routes: Iterable[Any] = ()) -> None:
        self.routes = list(routes)
        self.sections: dict[str, Section] = {}
        self._failed: set[int] = set()  # routes already warned about

    @classmethod
    def for_loggers(cls, loggers: Iterable[Any]) -> TextSink:
        """A sink writing to each of ``loggers`` that takes text or has a folder."""
        return cls(route for route in map(routes_for, loggers or ()) if route is not None)

    @classmethod
    def of(cls, trainer: Any) -> TextSink:
        """The sink of ``trainer`` (either namespace), shared by every caller during its fit: its
        loggers on rank 0, none elsewhere. A new one when the Trainer's loggers changed."""
        loggers = list(trainer.loggers) if trainer.is_global_zero else []
        key = [id(logger) for logger in loggers]
        sink = _SINKS.get(trainer)
        if sink is None or sink._key != key:
            sink = cls.for_loggers(loggers)
            sink._key = key
            _SINKS[trainer] = sink
        return sink

    _key: list[int] | None = None

    def report(self) -> str:
        """Every entry so far as one markdown document (:func:`report_markdown`)."""
        return report_markdown(self.sections)

    def write(self, tag: str, text: str, step: int | None = None, replace: bool = False) -> bool:
        """Add ``text`` under ``tag`` and hand it to every route. Returns whether it was written
        (``False``: a ``replace`` text equal to the tag's current one)."""
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"`tag` must be a non-empty str such as 'w2s/warnings', got {describe(tag)}")
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a markdown str, got {describe(text)}")
        section = self.sections.setdefault(tag, Section(replace))
        if replace:
            if section.entries and section.entries[-1].text == text:
                return False
            section.entries = []
        section.entries.append(Entry(step, text))
        for route in self.routes:
            try:
                route.write(tag, step, section.entries, self.report)
            except Exception as exc:  # noqa: BLE001 - a logger's text API never costs the fit
                if id(route) not in self._failed:
                    self._failed.add(id(route))
                    warnings.warn(
                        f"lightning_w2s: writing `{tag}` through {type(route).__name__} failed "
                        f"({type(exc).__name__}: {exc}); the other loggers still get it, and later text is "
                        "tried again (warned once per logger)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return True


_SINKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
