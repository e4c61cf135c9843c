"""Views of the quantities registry (:mod:`lightning_w2s.metrics._registry`): the dashboard's
charts (:func:`charts`, :func:`reference_values`, :func:`constants`, read by
:mod:`lightning_w2s.dashboard.tensorboard`) and docs/metrics.md's table (:func:`markdown_table`). Pure Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from lightning_w2s.metrics._registry import BOTH, NEEDS, QUANTITIES, SECTIONS, Chart, Quantity, lower, upper


# ---------------------------------------------------------------------------------------- dashboard
@dataclass(frozen=True)
class ChartSpec:
    """One dashboard chart, gathered from every quantity that names it (:func:`charts`).

    ``tags``: the chart's tag per role in the student's run (``"line"``, or ``"value"``/``"lower"``/
    ``"upper"`` for a band). ``sources``: ``(quantity name, role, reference run or None, constant or
    None)`` for every line drawn, the student's and the references'.

    >>> from lightning_w2s.metrics._registry import name, train_name

    >>> spec = next(c for c in charts() if c.tags.get("value") == name("misfit", "disagreement"))
    >>> spec.band, spec.tags["upper"] == upper(name("misfit", "disagreement")), sorted({r for _, _, r, _ in spec.sources} - {None})
    (True, True, ['train_probe'])
    """

    section: str
    title: str
    tags: dict
    sources: tuple
    band_title: str | None = None

    @property
    def band(self) -> bool:
        return "line" not in self.tags


def _role(chart: Chart) -> str:
    return "value" if chart.role == "interval" else chart.role


def charts() -> list[ChartSpec]:
    """Every chart the registry declares, in registry order (sections in :data:`SECTIONS` order).

    A chart's tag for a role is the name of the quantity drawn in the student's run in that role; a
    chart drawn only in reference runs (a per-class quantity without a pooled value) takes the
    quantity's name without its ``_{i}``.

    >>> from lightning_w2s.metrics._registry import name, train_name

    >>> spec = next(c for c in charts() if c.tags.get("line") == name("gold", "pgr"))
    >>> spec.section, [(run, value) for _, _, run, value in spec.sources]
    ('headline', [(None, None), ('teacher', 0.0), ('ceiling', 1.0)])
    """
    found: dict[tuple[str, str], dict] = {}
    for q in QUANTITIES.values():
        for chart in q.charts:
            if chart.role == "constant":
                continue
            entry = found.setdefault((chart.section or q.family, chart.title), {"tags": {}, "sources": [], "order": chart.order, "band_title": None})
            entry["order"] = min(entry["order"], chart.order)
            entry["band_title"] = entry["band_title"] or chart.band_title
            role = _role(chart)
            if chart.run is None and chart.value is None:
                if entry["tags"].get(role, q.name) != q.name:
                    raise ValueError(f"chart {chart.title!r}: two quantities drawn as its {role!r} in the student's run")
                entry["tags"][role] = q.name
            entry["sources"].append((q.name, role, chart.run, chart.value))
    rank = {section: i for i, section in enumerate(SECTIONS)}
    out = []
    for (section, title), entry in found.items():
        tags = entry["tags"]
        if not tags:  # drawn in reference runs only: the quantity's name without its class index
            role = entry["sources"][0][1]
            tags = {role: entry["sources"][0][0].replace("_{i}", "")}
        if "line" in tags and len(tags) > 1 or "line" not in tags and "value" not in tags and len(tags) < 2:
            raise ValueError(f"chart {title!r}: a chart is one line tag or a value/lower/upper band, got {sorted(tags)}")
        out.append(ChartSpec(section, title, tags, tuple(entry["sources"]), entry["band_title"]))
    order = {(section, title): entry["order"] for (section, title), entry in found.items()}
    return sorted(out, key=lambda c: (rank.get(c.section, len(rank)), order[c.section, c.title]))


def instances(template: str, values: Iterable[str]) -> list[tuple[str, str]]:
    """``(logged name, class index or "")`` for each of ``values`` that the registered name
    ``template`` names (every class of a per-class template).

    >>> from lightning_w2s.metrics._registry import name, train_name

    >>> [i for _, i in instances(name("lang", "alpha_{i}"), [name("lang", "alpha_0"), name("lang", "alpha_12"), "x"])]
    ['0', '12']
    """
    if "{i}" not in template:
        return [(template, "")] if template in values else []
    pattern = re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)") + "$")
    return [(n, m.group(1)) for n in values if (m := pattern.match(n))]


def reference_values(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """What the dashboard writes into each reference run at a check with these logged ``values``:
    ``{run: {chart tag: value}}``.

    A reference run writes into a chart only when its line's source is logged at this check (its
    ``line``/``value`` role; a constant reference when the chart's own tag is), and then every role
    it has: a band chart's reference line always comes with its band, which TensorBoard's Margin
    charts need.

    >>> from lightning_w2s.metrics._registry import name, train_name

    >>> pgr, sq = name("gold", "pgr"), name("misfit", "sq")
    >>> refs = reference_values({pgr: 0.7, train_name(sq): 0.1})
    >>> refs["teacher"][pgr], refs["ceiling"][pgr], refs["train_probe"][sq]
    (0.0, 1.0, 0.1)
    """
    out: dict[str, dict[str, float]] = {}
    for spec in charts():
        own = any(tag in values for tag in spec.tags.values())
        per_run: dict[str, dict[str, float]] = {}
        for source, role, run, constant in spec.sources:
            if run is None:
                continue
            if constant is not None:
                if own:
                    per_run.setdefault(run, {})[role] = constant
                continue
            for logged, i in instances(source, values):
                per_run.setdefault(run.format(i=i), {})[role] = values[logged]
        for run, roles in per_run.items():
            if "line" in roles or "value" in roles:
                out.setdefault(run, {}).update({spec.tags[role]: v for role, v in roles.items() if role in spec.tags})
    return out


def constants(values: dict[str, float]) -> list[tuple[str, str, float, tuple[float, float] | None]]:
    """The constants of the probe among the logged ``values``, in registry order: ``(name, meaning,
    value, (lower, upper) of its Wilson interval or None)``.

    >>> from lightning_w2s.metrics._registry import name, train_name

    >>> [(v, ends) for _, _, v, ends in constants({name("prediction", "teacher_max_class_share"): 0.6})]
    [(0.6, None)]
    """
    rows = []
    for q in QUANTITIES.values():
        if q.declared is not None and q.kind == "interval" or not any(c.role == "constant" for c in q.charts):
            continue
        for logged, _ in instances(q.name, values):
            ends = (values.get(lower(logged)), values.get(upper(logged)))
            rows.append((logged, q.meaning, values[logged], ends if None not in ends else None))
    return rows


def _cell(q: Quantity) -> str:
    name = q.name.split("/", 1)[1].replace("{i}", "<i>")
    return f"`{name}`" + (" (+`_lower`/`_upper`)" if q.interval else "")


def markdown_table() -> str:
    """The table of docs/metrics.md, one row per declared quantity (interval ends and train-probe twins
    are folded into the rows they come from)."""
    better = {True: "↑", False: "↓", None: "—"}
    rows = ["| name | meaning | kind | better | needs | task | source / status |", "|---|---|---|---|---|---|---|"]
    twins: dict[str, list[str]] = {}
    for q in QUANTITIES.values():
        if q.declared is not None:
            continue
        needs = ", ".join(NEEDS[n][1] for n in sorted(q.needs)) or "—"
        task = "both" if q.tasks == frozenset(BOTH) else ", ".join(sorted(q.tasks))
        rows.append(f"| {_cell(q)} | {q.meaning} | {q.kind} | {better[q.higher_is_better]} | {needs} | {task} | {q.source} |")
        if q.on_train_probe:
            twins.setdefault(f"train_{q.family}", []).append(q.quantity)
    if twins:
        names = ", ".join(f"`{family}/{{{', '.join(qs)}}}`" for family, qs in twins.items())
        rows.append(f"| {names} | the same on the train probe | as held-out | as held-out | train probe | as held-out | — |")
    return "\n".join(rows)
