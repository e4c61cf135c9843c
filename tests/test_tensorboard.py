"""TensorBoard extras (lightning_w2s.tensorboard): layout builder, reliability diagram, markdown.

Event files are written with a real ``SummaryWriter`` and read back with TensorBoard's own
``EventAccumulator`` and, for the custom-scalars layout, with TensorBoard's ``CustomScalarsPlugin``
itself (the code the dashboard runs), so the checks are on what TensorBoard will show.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import custom_scalars

from lightning_w2s.figures import reliability_figure, reliability_summary
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.tensorboard import (
    build_layout,
    figure_to_image,
    format_warnings,
    layout_tags,
    write_layout,
    write_markdown,
    write_reliability,
)

MISFIT = [f"w2s/misfit/{q}" for q in ("kl_teacher_student", "kl_student_teacher", "disagreement", "sq")]
WILSON = ["w2s/misfit/disagreement_lower", "w2s/misfit/disagreement_upper"]
TRAIN = [f"w2s/train_misfit/{q}" for q in ("kl_teacher_student", "kl_student_teacher", "disagreement", "sq")]
GOLD = ["w2s/gold/accuracy", "w2s/gold/teacher_accuracy", "w2s/gold/pgr", "w2s/gold/correction_rate",
        "w2s/gold/imitation_rate", "w2s/gold/coverage_accuracy"]
BOUNDS = ["w2s/bounds/accuracy_lower", "w2s/bounds/accuracy_upper"]
BAND = "accuracy band: acc(w) ± disagreement, abstentions anywhere in [0, 1]"
CALIB = ["w2s/calibration/ece_vs_teacher", "w2s/calibration/ece_vs_gold", "w2s/calibration/mce_vs_teacher"]
REPR = ["w2s/representation/gap_fro", "w2s/representation/gap_op", "w2s/representation/cka",
        "w2s/representation/effective_rank"]
LANG = ["w2s/lang/alpha_0", "w2s/lang/alpha_1", "w2s/lang/covered_bound", "w2s/lang/covered_error"]
UNKNOWN = ["w2s/extra/q_3", "w2s/extra/other"]  # names the registry does not know still get charts
UNIVERSE = MISFIT + WILSON + TRAIN + GOLD + BOUNDS + CALIB + REPR + LANG + ["w2s/robustness/inconsistency"] + UNKNOWN


def _charts(layout):
    return {(cat, title): [kind, tags] for cat, title, kind, tags in layout_tags(layout)}


def _shown(layout, names):
    """Names that some chart of ``layout`` draws, as TensorBoard resolves them (Multiline tags are
    regexes applied with ``re.match``; Margin tags are literal)."""
    shown = set()
    for _, _, kind, tags in layout_tags(layout):
        for t in tags:
            shown |= {t} if kind == "Margin" else {n for n in names if re.match(t, n)}
    return shown


# ------------------------------------------------------------------------------------------- layout
def test_layout_families_absent_give_no_charts():
    layout = build_layout(MISFIT)
    assert list(layout) == ["misfit"]
    charts = layout["misfit"]
    assert charts["KL divergence, both directions"] == [
        "Multiline", ["^w2s/misfit/kl_teacher_student$", "^w2s/misfit/kl_student_teacher$"]]
    assert charts["disagreement"] == ["Multiline", ["^w2s/misfit/disagreement$"]]
    # no Wilson interval logged -> no margin chart; no gold/bounds -> no accuracy band
    assert all(kind == "Multiline" for kind, _ in charts.values())
    assert build_layout([]) == {}
    assert build_layout(["train_loss", "val/acc", "w2s/nofamily"]) == {}  # not w2s/<family>/<quantity>


def test_layout_full_categories_and_order():
    layout = build_layout(UNIVERSE)
    assert list(layout) == ["misfit", "train vs held-out misfit", "gold", "bounds", "calibration",
                            "representation", "lang", "robustness", "extra"]
    charts = _charts(layout)
    assert charts[("representation", "representation gap (Xue et al.)")] == [
        "Multiline", ["^w2s/representation/gap_fro$", "^w2s/representation/gap_op$"]]
    assert charts[("representation", "effective rank")] == ["Multiline", ["^w2s/representation/effective_rank$"]]
    assert charts[("gold", "gold accuracy: student vs teacher")] == [
        "Multiline", ["^w2s/gold/accuracy$", "^w2s/gold/teacher_accuracy$"]]
    assert charts[("gold", "pseudolabel correction vs imitation")][1] == [
        "^w2s/gold/correction_rate$", "^w2s/gold/imitation_rate$"]
    assert charts[("calibration", "ECE")][1] == ["^w2s/calibration/ece_vs_teacher$", "^w2s/calibration/ece_vs_gold$"]
    for q in ("kl_teacher_student", "kl_student_teacher", "disagreement", "sq"):
        assert charts[("train vs held-out misfit", f"{q}: held-out vs train")] == [
            "Multiline", [f"^w2s/misfit/{q}$", f"^w2s/train_misfit/{q}$"]]
    # per-class group: one chart whose regex also catches classes first logged later
    kind, (regex,) = charts[("lang", "alpha per class")]
    assert kind == "Multiline"
    assert re.match(regex, "w2s/lang/alpha_17") and not re.match(regex, "w2s/lang/alpha_x")
    assert charts[("extra", "q_3")] == ["Multiline", ["^w2s/extra/q_3$"]]
    # torch accepts it (Margin charts must have exactly 3 tags there)
    custom_scalars(layout)


def test_every_registered_quantity_has_a_chart():
    for q in Q.QUANTITIES.values():
        assert q.charts or q.family == "", q.name
        name = q.name.format(i=0)
        if q.family:
            assert any(name in tags or any(re.match(t, name) for t in tags) for *_, tags in layout_tags(build_layout([name]))), name


def test_band_charts_value_lower_upper_order():
    layout = build_layout(UNIVERSE)
    margins = {(c, t): tags for (c, t), (kind, tags) in _charts(layout).items() if kind == "Margin"}
    assert margins == {
        ("bounds", BAND): ["w2s/gold/accuracy", "w2s/bounds/accuracy_lower", "w2s/bounds/accuracy_upper"],
        ("misfit", "disagreement [lower, upper]"): ["w2s/misfit/disagreement"] + WILSON,
    }
    # lower/upper drawn in a margin chart are not repeated as lines; the value keeps its line chart
    assert not any(re.match(t, "w2s/misfit/disagreement_lower") for _, _, k, tags in layout_tags(layout)
                   if k == "Multiline" for t in tags)
    assert "^w2s/misfit/disagreement$" in _charts(layout)[("misfit", "disagreement")][1]


def test_incomplete_band_is_drawn_as_lines():
    # no student gold accuracy (a user-given teacher_score): lower and upper together in one line chart
    layout = build_layout(BOUNDS)
    assert layout == {"bounds": {BAND: ["Multiline", [f"^{b}$" for b in BOUNDS]]}}
    # upper missing: no margin chart (TensorBoard needs all three tags)
    layout = build_layout(["w2s/misfit/disagreement", "w2s/misfit/disagreement_lower"])
    assert all(kind == "Multiline" for _, _, kind, _ in layout_tags(layout))


@pytest.mark.parametrize(
    "names, exc, match",
    [
        ("w2s/misfit/sq", TypeError, "`names`"),
        (["w2s/misfit/sq", 3], TypeError, r"`names\[1\]`"),
    ],
)
def test_layout_bad_input(names, exc, match):
    with pytest.raises(exc, match=match):
        build_layout(names)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(UNIVERSE + ["train_loss", "w2s/misfit/x_lower", "w2s/skipped"]), unique=True))
def test_layout_properties(names):
    """Every logged w2s name is drawn; no chart is empty; every Multiline regex catches only the
    tags it names; Margin charts have three logged tags."""
    layout = build_layout(names)
    w2s = {n for n in names if n.startswith("w2s/") and n.count("/") >= 2}
    assert _shown(layout, names) == w2s
    for _, _, kind, tags in layout_tags(layout):
        if kind == "Margin":
            assert len(tags) == 3 and set(tags) <= w2s
        else:
            assert tags and all(any(re.match(t, n) for n in names) for t in tags)
    if layout:
        custom_scalars(layout)


# ------------------------------------------------------------------------------------- reliability
def _histogram(conf, correct, n_bins):
    """Slow reference histogram: bin b = [b/B, (b+1)/B), confidence 1.0 in the last bin."""
    counts, cs, ks = np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins)
    for c, k in zip(conf, correct):
        b = min(int(math.floor(c * n_bins)), n_bins - 1)
        counts[b] += 1
        cs[b] += c
        ks[b] += k
    return counts, cs, ks


@pytest.mark.parametrize("n_bins", [15, 7])
def test_reliability_summary_matches_references(n_bins):
    rng = np.random.default_rng(0)
    k, n = 4, 600
    logits = rng.normal(size=(n, k)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    target = rng.integers(0, k, size=n)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == target).astype(float)
    summary = reliability_summary(*_histogram(conf, correct, n_bins))
    # independent reference from the raw samples: ECE = (1/N) Σ_b |Σ_{i∈b} (correct_i - conf_i)|
    per_bin = {}
    for c, y in zip(conf, correct):
        per_bin.setdefault(min(int(c * n_bins), n_bins - 1), []).append((c, y))
    ece = sum(abs(sum(y - c for c, y in v)) for v in per_bin.values()) / n
    mce = max(abs(np.mean([y for _, y in v]) - np.mean([c for c, _ in v])) for v in per_bin.values())
    assert summary["ece"] == pytest.approx(ece, rel=1e-12)
    assert summary["mce"] == pytest.approx(mce, rel=1e-12)
    assert summary["total"] == n
    # torchmetrics as a second oracle (no confidence at a bin edge here)
    from torchmetrics.functional.classification import multiclass_calibration_error

    tm = multiclass_calibration_error(torch.tensor(probs), torch.tensor(target), num_classes=k, n_bins=n_bins)
    assert summary["ece"] == pytest.approx(float(tm), rel=1e-5)


def test_reliability_empty_bins_and_no_data():
    counts = np.zeros(15)
    counts[[3, 14]] = [4, 10]
    conf = np.zeros(15)
    conf[[3, 14]] = [4 * 0.22, 10 * 0.97]
    corr = np.zeros(15)
    corr[[3, 14]] = [1, 10]
    s = reliability_summary(counts, conf, corr)
    assert np.isnan(s["accuracy"][0]) and s["accuracy"][14] == 1.0
    assert s["ece"] == pytest.approx((4 * abs(0.25 - 0.22) + 10 * abs(1.0 - 0.97)) / 14)
    assert s["mce"] == pytest.approx(0.03)
    img = figure_to_image(reliability_figure(counts, conf, corr, "student vs teacher"))
    assert img.dtype == np.uint8 and img.shape[0] == 3
    # all-empty histogram: NaN ECE (not 0), a figure that says so, no crash
    s = reliability_summary(np.zeros(15), np.zeros(15), np.zeros(15))
    assert math.isnan(s["ece"]) and math.isnan(s["mce"])
    fig = reliability_figure(torch.zeros(15), torch.zeros(15), torch.zeros(15), "empty")
    assert "no data" in fig._suptitle.get_text()
    assert figure_to_image(fig).shape[0] == 3


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones(3), np.ones(4), np.ones(3)), "one entry per bin"),
        ((-np.ones(3), np.zeros(3), np.zeros(3)), "`counts` must be non-negative"),
        ((np.ones(3), np.full(3, 2.0), np.zeros(3)), r"`conf_sums` must lie in \[0, counts\]"),
        ((np.ones(3), np.ones(3), np.array([0, np.nan, 0])), "`correct_sums` contains non-finite"),
        ((np.ones((3, 2)), np.ones(3), np.ones(3)), "`counts` must be a non-empty 1-d array"),
    ],
)
def test_reliability_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        reliability_summary(*args)


def test_figure_to_image_size():
    fig = reliability_figure(np.array([2.0, 3.0]), np.array([0.5, 2.4]), np.array([1.0, 3.0]), "t",
                             figsize=(4.0, 3.0), dpi=50)
    img = figure_to_image(fig)
    assert img.shape == (3, 150, 200) and img.dtype == np.uint8
    assert img.min() < 100 and img.max() == 255  # something was drawn on a white background


# ---------------------------------------------------------------------------------------- markdown
def test_format_warnings_table():
    text = format_warnings([
        {"regime": "teacher_overfit", "message": "train misfit falls | held-out rises", "values": {"ratio": 0.41234}},
        {"name": "rank", "message": "effective rank collapsed\nbelow 2", "values": {"effective_rank": 1}},
        "plain message",
    ])
    lines = text.splitlines()
    assert lines[0] == "### W2S warnings"
    assert lines[2] == "| regime | message | values |"
    assert lines[4] == r"| **teacher_overfit** | train misfit falls \| held-out rises | `ratio` = 0.4123 |"
    assert lines[5] == "| **rank** | effective rank collapsed below 2 | `effective_rank` = 1 |"
    assert lines[6] == "|  | plain message |  |"
    assert format_warnings([], title=None) == "_No warnings._"
    from lightning_w2s.alerts import Alert  # the monitor's alert objects format the same as their dicts

    alert = Alert("gain_exhausted", "held-out disagreement 0.01 < min_gain", {"w2s/misfit/disagreement": 0.01})
    assert format_warnings([alert]) == format_warnings([alert.as_dict()])
    with_step = format_warnings([{"regime": "r", "message": "m", "step": 40}], title=None).splitlines()
    assert with_step[0] == "| step | regime | message | values |" and with_step[2].startswith("| 40 |")
    with pytest.raises(ValueError, match=r"`warnings\[0\]` has no 'message'"):
        format_warnings([{"regime": "x"}])
    with pytest.raises(TypeError, match=r"`warnings\[0\]`"):
        format_warnings([3])


# ---------------------------------------------------------------------------- event files, end to end
def _read(logdir):
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.IMAGES: 0, ea.TENSORS: 0, ea.SCALARS: 0})
    acc.Reload()
    return acc


def test_event_file_roundtrip(tmp_path):
    names = MISFIT + WILSON + TRAIN + ["w2s/gold/accuracy", "w2s/gold/teacher_accuracy"] + BOUNDS + REPR
    counts = np.array([0, 0, 5, 9, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 56], float)
    conf_sums = counts * np.linspace(0.03, 0.97, 15)
    correct_sums = np.floor(counts * 0.8)
    writer = SummaryWriter(log_dir=str(tmp_path))
    layout = write_layout(writer, names)
    for step in range(3):
        for name in names:
            writer.add_scalar(name, 0.1 * step, step)
    summary = write_reliability(writer, "w2s/reliability/student_vs_teacher", counts, conf_sums, correct_sums, step=2)
    write_reliability(writer, "w2s/reliability/student_vs_gold", np.zeros(15), np.zeros(15), np.zeros(15), step=2)
    warnings = [{"regime": "teacher_overfit", "message": "held-out misfit rises while train misfit falls",
                 "values": {"w2s/misfit/sq": 0.12}}]
    write_markdown(writer, "w2s/warnings", format_warnings(warnings), step=2)
    writer.close()

    # never add_hparams / add_scalars: one events file, no sub-folders (no stray runs)
    entries = os.listdir(tmp_path)
    assert len(entries) == 1 and entries[0].startswith("events.out.tfevents.")
    assert not any(p.is_dir() for p in tmp_path.iterdir())

    acc = _read(tmp_path)
    tags = acc.Tags()
    # images: sane size
    assert set(tags["images"]) == {"w2s/reliability/student_vs_teacher", "w2s/reliability/student_vs_gold"}
    (img,) = acc.Images("w2s/reliability/student_vs_teacher")
    assert img.step == 2 and 200 <= img.width <= 2000 and 200 <= img.height <= 2000
    assert img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 < summary["ece"] < 1
    # text: stored under <tag>/text_summary, the markdown is there verbatim
    (text_event,) = acc.Tensors("w2s/warnings/text_summary")
    text = text_event.tensor_proto.string_val[0].decode()
    assert "held-out misfit rises while train misfit falls" in text and "**teacher_overfit**" in text
    assert acc.SummaryMetadata("w2s/warnings/text_summary").plugin_data.plugin_name == "text"
    # custom scalars: the layout parses back to what was written
    assert "custom_scalars__config__" in acc.PluginTagToContent("custom_scalars")
    (config,) = acc.Tensors("custom_scalars__config__")
    parsed = layout_pb2.Layout()
    parsed.ParseFromString(config.tensor_proto.string_val[0])
    read_back = {}
    for category in parsed.category:
        for chart in category.chart:
            if chart.HasField("margin"):
                (series,) = chart.margin.series
                entry = ["Margin", [series.value, series.lower, series.upper]]
            else:
                entry = ["Multiline", list(chart.multiline.tag)]
            read_back.setdefault(category.title, {})[chart.title] = entry
    assert read_back == layout
    assert read_back["misfit"]["disagreement [lower, upper]"] == ["Margin", ["w2s/misfit/disagreement"] + WILSON]
    assert read_back["bounds"][BAND][1] == ["w2s/gold/accuracy"] + BOUNDS
    # every logged scalar is drawn by the layout
    assert _shown(layout, tags["scalars"]) == set(names)


def test_tensorboard_custom_scalars_plugin_reads_layout(tmp_path):
    """TensorBoard's own custom-scalars plugin: it sees the latest layout, and a Multiline regex
    fetches exactly its tag (not the ``_lower``/``_upper`` tags that share its prefix)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.custom_scalar import custom_scalars_plugin
    from tensorboard.plugins.scalar import scalars_plugin

    writer = SummaryWriter(log_dir=str(tmp_path))
    write_layout(writer, ["w2s/misfit/sq"])  # first check: misfit only
    names = MISFIT + WILSON + ["w2s/gold/accuracy"]
    for name in names:
        writer.add_scalar(name, 0.5, 0)
    layout = write_layout(writer, names)  # written again once more families appear
    writer.close()

    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    plugins = {}
    tb_context = base_plugin.TBContext(
        logdir=str(tmp_path), multiplexer=multiplexer, plugin_name_to_instance=plugins,
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path)),
    )
    plugins["scalars"] = scalars_plugin.ScalarsPlugin(tb_context)
    plugin = custom_scalars_plugin.CustomScalarsPlugin(tb_context)
    ctx = context.RequestContext()
    shown = json.loads(plugin.layout_impl(ctx, ""))
    assert [c["title"] for c in shown["category"]] == list(layout) == ["misfit", "gold"]
    misfit_charts = {c["title"]: c for c in shown["category"][0]["chart"]}
    assert misfit_charts["disagreement [lower, upper]"]["margin"]["series"] == [
        {"value": "w2s/misfit/disagreement", "lower": WILSON[0], "upper": WILSON[1]}]
    (regex,) = misfit_charts["disagreement"]["multiline"]["tag"]
    fetched = plugin.scalars_impl(ctx, ".", regex, "")
    assert fetched["regex_valid"] and list(fetched["tag_to_events"]) == ["w2s/misfit/disagreement"]


def test_drawing_leaves_pyplot_alone(tmp_path):
    """Figures are drawn without pyplot: no figure is registered with pyplot's figure manager (no
    window can pop up in an interactive session, nothing leaks) and the backend is unchanged.
    (pyplot itself is imported anyway by torchmetrics, so its presence in sys.modules proves
    nothing; the module's source must not use it.)"""
    import ast
    import inspect

    import matplotlib
    import matplotlib.pyplot as plt

    import lightning_w2s.tensorboard as tb

    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(tb))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    assert not any("pyplot" in name for name in imported), imported
    assert "matplotlib.figure.Figure" in imported
    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    writer = SummaryWriter(log_dir=str(tmp_path))
    write_reliability(writer, "r", np.ones(3), np.full(3, 0.5), np.ones(3), step=0)
    writer.close()
    assert plt.get_fignums() == figures and matplotlib.get_backend() == backend
