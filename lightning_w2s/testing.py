"""Helpers for users' own CI: read a run's ``w2s/*`` scalars back from TensorBoard event files.

Built on tensorboard's ``EventAccumulator``, so it reads exactly what TensorBoard shows.

```python
from lightning_w2s.metrics.quantities import DISAGREEMENT  # the logged names, as constants
from lightning_w2s.testing import last_w2s_values
values = last_w2s_values("lightning_logs/version_0")
assert values[DISAGREEMENT] < 0.3
```
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_w2s.dashboard.tensorboard import is_reference_run


def _run_dirs(logdir: str | os.PathLike) -> list[Path]:
    root = Path(logdir)
    if not root.exists():
        raise FileNotFoundError(f"`logdir` {str(root)!r} does not exist")
    # the monitor's dashboard writes reference runs (the teacher's line, the train probe's, ...) into
    # sub-folders of the student's run: they are not the student's values
    found = {p.parent for p in root.rglob("events.out.tfevents.*")}
    found = {d for d in found if not (is_reference_run(d) and d.parent in found)}
    dirs = sorted(found, key=lambda d: max(f.stat().st_mtime for f in d.glob("events.out.tfevents.*")))
    if not dirs:
        raise FileNotFoundError(f"no TensorBoard event file under `logdir` {str(root)!r}")
    return dirs


def read_w2s_scalars(logdir: str | os.PathLike, prefix: str = "w2s/") -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` for every scalar tag starting with ``prefix`` in the most
    recently written run under ``logdir`` (a run folder, or a parent of several)."""
    acc = EventAccumulator(str(_run_dirs(logdir)[-1]), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(event.step, event.value) for event in acc.Scalars(tag)] for tag in acc.Tags()["scalars"] if tag.startswith(prefix)}


def last_w2s_values(logdir: str | os.PathLike, prefix: str = "w2s/") -> dict[str, float]:
    """The last logged value of each ``w2s/*`` scalar."""
    return {tag: series[-1][1] for tag, series in read_w2s_scalars(logdir, prefix).items() if series}


def assert_w2s_logged(logdir: str | os.PathLike, names: list[str] | set[str]) -> dict[str, float]:
    """Raise ``AssertionError`` naming what is missing if any of ``names`` was never logged."""
    values = last_w2s_values(logdir)
    missing = sorted(set(names) - set(values))
    if missing:
        raise AssertionError(f"not logged under {str(logdir)!r}: {missing}; logged: {sorted(values)}")
    return values
