"""TensorBoard extras (lightning_w2s.dashboard.tensorboard): layout builder, reference runs, reliability
diagram, markdown.

Event files are written with a real ``SummaryWriter`` and read back with TensorBoard's own
``EventAccumulator`` and, for the custom-scalars layout, with TensorBoard's ``CustomScalarsPlugin``
itself (the code the dashboard runs), so the checks are on what TensorBoard will show. What the
browser draws from it (runs coloured apart, the tab's chart order) was checked in a real TensorBoard
in headless Chromium (``make screenshot``); ``tensorboard_order`` encodes the order it measured.
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

from lightning_w2s.dashboard.figures import reliability_figure, reliability_summary
from lightning_w2s.dashboard.loggers import TextSink
from lightning_w2s.dashboard.tensorboard import Dashboard, build_layout, figure_to_image, is_reference_run, layout_tags, tensorboard_order, write_reliability
from lightning_w2s.dashboard.text import CONSTANTS_TAG, WARNINGS_TAG, format_constants, format_warnings
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.stopping.alerts import Alert

MISFIT = [Q.KL_TEACHER_STUDENT, Q.KL_STUDENT_TEACHER, Q.DISAGREEMENT, Q.SQ]
WILSON = [Q.lower(Q.DISAGREEMENT), Q.upper(Q.DISAGREEMENT)]
TRAIN = [Q.train_name(n) for n in MISFIT + WILSON]
GOLD = [Q.ACCURACY, Q.TEACHER_ACCURACY, Q.COVERED_ACCURACY, Q.PGR, Q.CORRECTION_RATE, Q.IMITATION_RATE, Q.COVERAGE_ACCURACY, Q.SQ_GAIN, Q.STUDENT_SQ_ERROR, Q.TEACHER_SQ_ERROR]
BOUNDS = [Q.ACCURACY_LOWER, Q.ACCURACY_UPPER, Q.COVERED_ACCURACY_LOWER, Q.COVERED_ACCURACY_UPPER, Q.MAX_GAIN, Q.PREDICTED_GAIN]
CALIB = [Q.ECE_VS_TEACHER, Q.ECE_VS_GOLD, Q.TEACHER_ECE_VS_GOLD, Q.MCE_VS_TEACHER]
CONSTANTS = [Q.TEACHER_MAX_CLASS_SHARE, Q.TEACHER_ECE_VS_GOLD, Q.TEACHER_MCE_VS_GOLD, Q.TEACHER_SQ_ERROR, "w2s/lang/alpha_0", "w2s/lang/alpha_1"]
REPR = [Q.GAP_FRO, Q.GAP_OP, Q.CKA, Q.EFFECTIVE_RANK]
LANG = [
    "w2s/lang/alpha_0",
    "w2s/lang/alpha_1",
    Q.COVERED_PREDICTED_ERROR,
    Q.COVERED_ERROR,
    "w2s/lang/covered_predicted_error_0",
    "w2s/lang/covered_predicted_error_1",
    "w2s/lang/expansion_good_to_bad_1",
]
UNKNOWN = ["w2s/extra/q_3", "w2s/extra/other"]  # names the registry does not know still get charts
ENDS = [end(n) for n in (Q.ACCURACY, Q.TEACHER_ACCURACY, Q.COVERED_ACCURACY, Q.CORRECTION_RATE) for end in (Q.lower, Q.upper)]
UNIVERSE = MISFIT + WILSON + TRAIN + GOLD + ENDS + BOUNDS + CALIB + CONSTANTS + REPR + LANG + [Q.INCONSISTENCY, Q.MAX_CLASS_SHARE] + UNKNOWN
BAND = "accuracy on covered gold points: student vs teacher, in the 0/1 band teacher ± disagreement"
ALL_BAND = "accuracy on all gold points, in the 0/1 band with the teacher's abstentions anywhere in [0, 1]"
PGR_CHART = "PGR: student vs teacher (0) and ceiling (1)"
HELD_OUT = "student–teacher disagreement on held-out probe points (Wilson 95%)"
GAIN = "Charikar's gain err_sq(teacher) − err_sq(student): measured vs predicted"


def _charts(layout):
    return {(cat, title): [kind, tags] for cat, title, kind, tags in layout_tags(layout)}


def _tags(layout):
    """Every tag the layout draws, as TensorBoard resolves them (Multiline: anchored regexes)."""
    return [t[1:-1].replace("\\", "") if kind == "Multiline" else t for _, _, kind, tags in layout_tags(layout) for t in tags]


def _accounted(names):
    """Each logged w2s/<family>/<quantity> name, and where the dashboard puts it: a chart of the
    student's run, a reference run's line, the constants text, or nowhere (the Wilson ends of a value
    drawn inside another band)."""
    layout = build_layout(names)
    drawn = {n for n in names for _, _, kind, tags in layout_tags(layout) for t in tags if (kind == "Margin" and t == n) or (kind == "Multiline" and re.match(t, n))}
    refs = {n for spec in Q.charts() for source, _, run, value in spec.sources if run is not None and value is None for n, _ in Q.instances(source, names)}
    constants = {n for n, *_ in Q.constants({n: 0.5 for n in names})}
    return layout, drawn, refs, constants


# ------------------------------------------------------------------------------------------- layout
def test_layout_families_absent_give_no_charts():
    layout = build_layout(MISFIT)
    assert list(layout) == [Q.SECTIONS["headline"], Q.SECTIONS["misfit"]]
    misfit = layout[Q.SECTIONS["misfit"]]
    assert misfit["KL(teacher ‖ student) on covered probe points"] == ["Multiline", ["^w2s/misfit/kl_teacher_student$"]]
    assert misfit["KL(student ‖ teacher)"] == ["Multiline", ["^w2s/misfit/kl_student_teacher$"]]
    # no Wilson ends logged: the held-out disagreement is one line, not a band
    assert layout[Q.SECTIONS["headline"]] == {HELD_OUT: ["Multiline", ["^w2s/misfit/disagreement$"]]}
    assert build_layout([]) == {}
    assert build_layout(["train_loss", "val/acc", "w2s/nofamily"]) == {}  # not w2s/<family>/<quantity>


def test_every_chart_draws_one_tag_and_the_headline_comes_first():
    """TensorBoard colours lines by run: several tags of one run in one chart cannot be told apart.
    So every chart is one tag (Multiline) or one value/lower/upper triple (Margin); its several lines
    are runs."""
    layout = build_layout(UNIVERSE)
    assert list(layout)[0] == Q.SECTIONS["headline"]
    assert list(layout) == [Q.SECTIONS[s] for s in ("headline", "misfit", "gold", "calibration", "prediction", "representation", "robustness", "lang")] + ["extra"]
    for (_, title), (kind, tags) in _charts(layout).items():
        assert (kind, len(tags)) in (("Multiline", 1), ("Margin", 3)), title
    custom_scalars(layout)  # torch accepts it (Margin charts must have exactly 3 tags there)
    # the headline as TensorBoard shows it: PGR, the covered band, the held-out disagreement, the band on
    # all gold points (Multiline charts first, Margin charts after in reverse: tensorboard_order)
    headline = layout[Q.SECTIONS["headline"]]
    assert list(headline) == [PGR_CHART, ALL_BAND, HELD_OUT, BAND]


def test_student_and_teacher_on_the_same_covered_gold_points():
    """The headline band: the student's accuracy on the covered gold points (which the band bounds
    exactly), never the student on all gold points against the teacher on covered ones; the teacher's
    line is its accuracy on those same points, drawn as reference run ``teacher`` with the band."""
    layout = build_layout(UNIVERSE)
    assert _charts(layout)[(Q.SECTIONS["headline"], BAND)] == ["Margin", [Q.COVERED_ACCURACY, Q.COVERED_ACCURACY_LOWER, Q.COVERED_ACCURACY_UPPER]]
    # the student on all gold points has its own band (the teacher's abstentions anywhere in [0, 1]), no teacher line
    assert _charts(layout)[(Q.SECTIONS["headline"], ALL_BAND)] == ["Margin", [Q.ACCURACY, Q.ACCURACY_LOWER, Q.ACCURACY_UPPER]]
    refs = Q.reference_values(
        {Q.COVERED_ACCURACY: 0.72, Q.TEACHER_ACCURACY: 0.87, Q.COVERED_ACCURACY_LOWER: 0.7, Q.COVERED_ACCURACY_UPPER: 1.0, Q.ACCURACY: 0.6, Q.ACCURACY_LOWER: 0.3, Q.ACCURACY_UPPER: 0.9}
    )
    assert refs == {"teacher": {Q.COVERED_ACCURACY: 0.87, Q.COVERED_ACCURACY_LOWER: 0.7, Q.COVERED_ACCURACY_UPPER: 1.0}}
    # PGR: the teacher is 0 and the ceiling 1 by definition, drawn only where PGR is
    refs = Q.reference_values({Q.PGR: 0.4})
    assert refs == {"teacher": {Q.PGR: 0.0}, "ceiling": {Q.PGR: 1.0}}
    assert Q.reference_values({Q.SQ: 0.1}) == {}


def test_label_free_band_is_drawn_without_a_teacher_line():
    """Only ``teacher_score`` (no gold): the band alone (its lower end as the line), and no teacher
    reference (its source, the teacher's gold accuracy, is not logged)."""
    names = [Q.ACCURACY_LOWER, Q.ACCURACY_UPPER, Q.DISAGREEMENT]
    layout = build_layout(names)
    (title,) = [t for t in layout[Q.SECTIONS["headline"]] if t != HELD_OUT]
    assert "label-free" in title and "lower end" in title and "gold" not in title  # no student line to name
    assert _charts(layout)[(Q.SECTIONS["headline"], title)] == ["Margin", [Q.ACCURACY_LOWER, Q.ACCURACY_LOWER, Q.ACCURACY_UPPER]]
    assert Q.reference_values({n: 0.5 for n in names}) == {}
    # one end only: that end as a line
    assert _charts(build_layout([Q.ACCURACY_LOWER]))[(Q.SECTIONS["headline"], ALL_BAND)] == ["Multiline", [f"^{Q.ACCURACY_LOWER}$"]]


def test_no_duplicate_band_charts_and_each_tag_drawn_once():
    layout = build_layout(UNIVERSE)
    tags = _tags(layout)
    assert len(tags) == len(set(tags))
    # a value with a Wilson interval is its band chart, not a line chart plus a band chart
    for name in (Q.DISAGREEMENT, Q.ACCURACY, Q.CORRECTION_RATE):
        assert [kind for _, _, kind, t in layout_tags(layout) if name in t or f"^{name}$" in t] == ["Margin"], name


def test_constants_are_text_not_flat_lines():
    layout = build_layout(UNIVERSE)
    for name in CONSTANTS:
        assert not any(re.match(t, name) for t in _tags(layout) if t.startswith("w2s")), name
    text = format_constants({n: 0.25 for n in UNIVERSE}, {"teacher_score": 0.75})
    for name in CONSTANTS:
        assert f"`{name[len('w2s/') :]}` | 0.25" in text, name
    # the teacher's accuracy is a constant with its Wilson interval, and the band's teacher line
    text = format_constants({Q.TEACHER_ACCURACY: 0.87, Q.lower(Q.TEACHER_ACCURACY): 0.8, Q.upper(Q.TEACHER_ACCURACY): 0.92})
    assert "| `gold/teacher_accuracy` | 0.87 [0.8, 0.92] (Wilson 95%) |" in text
    assert "teacher_score" in format_constants({}, {"teacher_score": 0.75}) and "| constant |" not in format_constants({})


def test_predicted_and_measured_gain_in_one_chart():
    layout = build_layout([Q.SQ_GAIN, Q.PREDICTED_GAIN])
    assert _charts(layout)[(Q.SECTIONS["gold"], GAIN)] == ["Multiline", [f"^{Q.SQ_GAIN}$"]]
    assert Q.reference_values({Q.SQ_GAIN: -0.1, Q.PREDICTED_GAIN: 0.3}) == {"predicted_gain": {Q.SQ_GAIN: 0.3}}
    # label-free: the prediction alone still has its chart
    assert (Q.SECTIONS["gold"], GAIN) in _charts(build_layout([Q.PREDICTED_GAIN]))


def test_train_probe_and_classes_are_reference_runs():
    refs = Q.reference_values({n: 0.5 for n in UNIVERSE})
    assert refs["train_probe"] == {n: 0.5 for n in MISFIT + WILSON}
    assert refs["class_0"] == {Q.COVERED_PREDICTED_ERROR: 0.5} and refs["class_1"] == {Q.COVERED_PREDICTED_ERROR: 0.5, "w2s/lang/expansion_good_to_bad": 0.5}
    layout = build_layout(UNIVERSE)
    lang = layout[Q.SECTIONS["lang"]]
    assert ["Multiline", ["^w2s/lang/expansion_good_to_bad$"]] in lang.values()  # drawn in class runs only
    assert all(re.match(r"^(train_probe|class_\d+|teacher|ceiling|predicted_gain)$", run) for run in refs)
    assert is_reference_run("logs/w2s/version_0/class_12") and not is_reference_run("logs/w2s/version_0")


def test_tensorboard_order_lines_then_bands():
    charts = [("m1", ["Margin", []]), ("l1", ["Multiline", []]), ("m2", ["Margin", []]), ("l2", ["Multiline", []])]
    assert [t for t, _ in tensorboard_order(charts)] == ["l1", "l2", "m2", "m1"]


@pytest.mark.parametrize("names, exc, match", [("w2s/misfit/sq", TypeError, "`names`"), (["w2s/misfit/sq", 3], TypeError, r"`names\[1\]`")])
def test_layout_bad_input(names, exc, match):
    with pytest.raises(exc, match=match):
        build_layout(names)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(UNIVERSE + ["train_loss", "w2s/misfit/x_lower", "w2s/skipped"]), unique=True))
def test_layout_properties(names):
    """Every logged w2s name has a place: drawn in the student's run, drawn as a reference run's line,
    written as a constant, or (only) a Wilson end of a value drawn inside a bound band. No chart is
    empty; every Multiline chart is one anchored tag that some run logs; Margin charts have three
    logged tags."""
    layout, drawn, refs, constants = _accounted(names)
    w2s = {n for n in names if n.startswith("w2s/") and n.count("/") >= 2}
    undrawn = w2s - drawn - refs - constants
    # undrawn: a Wilson end of a value drawn inside a bound band, or one end of a band whose other end is not logged
    # (the monitor logs both ends of a band together; a Margin chart needs both)
    partner = {Q.ACCURACY_LOWER: Q.ACCURACY_UPPER, Q.COVERED_ACCURACY_LOWER: Q.COVERED_ACCURACY_UPPER}
    partner |= {b: a for a, b in partner.items()}
    assert all(Q.is_registered(n) and (Q.lookup(n).kind == "interval" or partner.get(n) not in names) for n in undrawn), undrawn
    for spec in Q.charts():  # a band whose three tags are logged is drawn as one
        if spec.band and set(spec.tags.values()) <= w2s:
            assert ["Margin", [spec.tags[r] for r in ("value", "lower", "upper")]] in _charts(layout).values(), spec.title
    ref_tags = {t for run in Q.reference_values({n: 0.5 for n in names}).values() for t in run}
    for _, title, kind, tags in layout_tags(layout):
        if kind == "Margin":
            assert len(tags) == 3 and set(tags) <= w2s, title
        else:
            (tag,) = tags
            assert tag.startswith("^") and tag.endswith("$")
            assert any(re.match(tag, n) for n in w2s | ref_tags), title
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
    fig = reliability_figure(np.array([2.0, 3.0]), np.array([0.5, 2.4]), np.array([1.0, 3.0]), "t", figsize=(4.0, 3.0), dpi=50)
    img = figure_to_image(fig)
    assert img.shape == (3, 150, 200) and img.dtype == np.uint8
    assert img.min() < 100 and img.max() == 255  # something was drawn on a white background


# ---------------------------------------------------------------------------------------- markdown
def test_format_warnings_short_table_and_messages_below():
    """Short fields in the table, each long message as a bullet under it: TensorBoard's text tab
    breaks words anywhere, and a message in a cell squeezes the other columns to a letter a line."""
    text = format_warnings(
        [
            {"regime": "teacher_overfit", "message": "train misfit falls | held-out rises", "values": {Q.SQ: 0.41234}, "check": 4, "step": 40},
            {"name": "rank", "message": "effective rank collapsed\nbelow 2", "values": {"effective_rank": 1}},
            "plain message",
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "### W2S warnings"
    assert lines[2] == "| regime | check | step | values read |"
    assert lines[4] == "| **teacher_overfit** | 4 | 40 | `misfit/sq` = 0.4123 |"
    assert lines[5] == "| **rank** |  |  | `effective_rank` = 1 |"
    assert lines[6] == "|  |  |  |  |"
    assert lines[8:] == [r"- **teacher_overfit** (check 4): train misfit falls \| held-out rises", "- **rank**: effective rank collapsed below 2", "- warning: plain message"]
    assert all(len(cell) < 40 for line in lines[2:7] for cell in line.split(" | "))  # nothing long in the table
    assert format_warnings([], title=None) == "_No warnings._"
    alert = Alert("gain_exhausted", "held-out disagreement 0.01 < min_gain", {Q.DISAGREEMENT: 0.01})
    assert format_warnings([alert]) == format_warnings([alert.as_dict()])
    with pytest.raises(ValueError, match=r"`warnings\[0\]` has no 'message'"):
        format_warnings([{"regime": "x"}])
    with pytest.raises(TypeError, match=r"`warnings\[0\]`"):
        format_warnings([3])


def test_alerts_carry_only_the_values_their_rule_read():
    from lightning_w2s.stopping.alerts import AlertTracker

    values = {n: 0.5 for n in UNIVERSE}
    values[Q.MAX_GAIN] = 0.01
    (alert,) = [a for a in AlertTracker(min_gain=0.05).update(values) if a.regime == "gain_exhausted"]
    assert alert.values == {Q.MAX_GAIN: 0.01}


# ---------------------------------------------------------------------------- event files, end to end
def _read(logdir):
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.IMAGES: 0, ea.TENSORS: 0, ea.SCALARS: 0})
    acc.Reload()
    return acc


def _layout_of(acc):
    (config,) = acc.Tensors("custom_scalars__config__")[-1:]
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
    return read_back


def test_dashboard_event_files_roundtrip(tmp_path):
    """The Dashboard over three checks: the layout, the reference runs (sub-folders named after what
    they hold, at the student's steps), the constants text written once, warnings, diagrams."""
    counts = np.array([0, 0, 5, 9, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 56], float)
    extras = {"reliability/student_vs_teacher": (counts, counts * np.linspace(0.03, 0.97, 15), np.floor(counts * 0.8))}
    writer = SummaryWriter(log_dir=str(tmp_path))
    dash = Dashboard(writer, figure_every_n_checks=10)
    text = TextSink.for_loggers([writer])  # the monitor's text beside the dashboard, as W2SMonitor writes it
    logged = [n for n in UNIVERSE if n not in UNKNOWN]
    constant = {n for n, *_ in Q.constants(dict.fromkeys(logged, 0.0))} | {Q.lower(Q.TEACHER_ACCURACY), Q.upper(Q.TEACHER_ACCURACY)}
    for check, step in enumerate((9, 19, 29), start=1):
        values = {n: 0.25 if n in constant else 0.1 * check for n in logged}
        for name, v in values.items():  # what the logger writes for the student
            writer.add_scalar(name, v, step)
        dash.update(check, step, values, extras)
        text.write(CONSTANTS_TAG, format_constants(values, {"probe": "W2SProbe(n=8)", **dash.run_guide()}), step, replace=True)
        if check == 2:
            alert = Alert("gain_exhausted", "no gain left", {Q.DISAGREEMENT: 0.1})
            text.write(WARNINGS_TAG, format_warnings([dict(alert.as_dict(), check=check, step=step)]), step)
    dash.finish(extras)
    writer.close()

    # the only sub-folders are the reference runs, named after what they hold (no add_scalars/add_hparams runs)
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert runs == ["ceiling", "class_0", "class_1", "predicted_gain", "teacher", "train_probe"]
    assert all(is_reference_run(tmp_path / r) for r in runs)
    acc = _read(tmp_path)
    assert _layout_of(acc) == build_layout(logged)
    teacher = _read(tmp_path / "teacher")
    assert sorted(teacher.Tags()["scalars"]) == sorted([Q.COVERED_ACCURACY, Q.COVERED_ACCURACY_LOWER, Q.COVERED_ACCURACY_UPPER, Q.PGR])
    assert [(e.step, e.value) for e in teacher.Scalars(Q.COVERED_ACCURACY)] == [(9, 0.25), (19, 0.25), (29, 0.25)]
    assert [e.value for e in teacher.Scalars(Q.PGR)] == [0.0, 0.0, 0.0]
    assert [e.value for e in _read(tmp_path / "ceiling").Scalars(Q.PGR)] == [1.0, 1.0, 1.0]
    assert [e.step for e in _read(tmp_path / "train_probe").Scalars(Q.SQ)] == [e.step for e in acc.Scalars(Q.SQ)]
    # constants: written once (they did not change), listing the runs
    constants = acc.Tensors("w2s/constants/text_summary")
    assert len(constants) == 1
    text = constants[0].tensor_proto.string_val[0].decode()
    assert "`prediction/teacher_max_class_share` | 0.25 |" in text and "run `teacher`" in text and "W2SProbe(n=8)" in text
    (warn,) = acc.Tensors("w2s/warnings/text_summary")
    assert warn.step == 19 and "| **gain_exhausted** | 2 | 19 | `misfit/disagreement` = 0.1 |" in warn.tensor_proto.string_val[0].decode()
    # diagrams at the first check and once more at the end of fit (the last check's)
    assert [i.step for i in acc.Images("w2s/reliability/student_vs_teacher")] == [9, 29]
    (img,) = acc.Images("w2s/reliability/student_vs_teacher")[:1]
    assert 200 <= img.width <= 2000 and img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_custom_scalars_plugin_draws_runs_as_lines(tmp_path):
    """TensorBoard's own custom-scalars plugin: it sees the latest layout, a chart's one regex fetches
    exactly its tag (not the ``_lower``/``_upper`` tags sharing its prefix) from each run, so the
    student and its reference runs are the chart's lines."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.custom_scalar import custom_scalars_plugin
    from tensorboard.plugins.scalar import scalars_plugin

    writer = SummaryWriter(log_dir=str(tmp_path / "student"))
    dash = Dashboard(writer, figure_every_n_checks=0)
    dash.update(1, 0, {Q.SQ: 0.3}, {})  # first check: misfit only
    values = {n: 0.5 for n in MISFIT + WILSON + TRAIN + [Q.COVERED_ACCURACY, Q.TEACHER_ACCURACY, Q.COVERED_ACCURACY_LOWER, Q.COVERED_ACCURACY_UPPER]}
    for name, v in values.items():
        writer.add_scalar(name, v, 1)
    dash.update(2, 1, values, {})  # the layout is written again once more families appear
    dash.close()
    writer.close()

    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    plugins = {}
    tb_context = base_plugin.TBContext(logdir=str(tmp_path), multiplexer=multiplexer, plugin_name_to_instance=plugins, data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path)))
    plugins["scalars"] = scalars_plugin.ScalarsPlugin(tb_context)
    plugin = custom_scalars_plugin.CustomScalarsPlugin(tb_context)
    ctx = context.RequestContext()
    shown = json.loads(plugin.layout_impl(ctx, ""))
    assert [c["title"] for c in shown["category"]] == [Q.SECTIONS["headline"], Q.SECTIONS["misfit"]]
    headline = {c["title"]: c for c in shown["category"][0]["chart"]}
    assert headline[HELD_OUT]["margin"]["series"] == [{"value": Q.DISAGREEMENT, "lower": WILSON[0], "upper": WILSON[1]}]
    (regex,) = {c["title"]: c for c in shown["category"][1]["chart"]}["squared misfit ‖f_s − f_w‖² (Charikar)"]["multiline"]["tag"]
    assert sorted(multiplexer.Runs()) == ["student", os.path.join("student", "teacher"), os.path.join("student", "train_probe")]
    for run, value in (("student", 0.5), (os.path.join("student", "train_probe"), 0.5)):
        fetched = plugin.scalars_impl(ctx, run, regex, "")
        assert fetched["regex_valid"] and list(fetched["tag_to_events"]) == [Q.SQ]
        assert fetched["tag_to_events"][Q.SQ][-1][2] == value
    # the band's tags: all three in the student's run and in the teacher's, none in the train probe's
    scalars = multiplexer.PluginRunToTagToContent("scalars")
    for run, want in (("student", 3), (os.path.join("student", "teacher"), 3), (os.path.join("student", "train_probe"), 0)):
        assert len({Q.COVERED_ACCURACY, Q.COVERED_ACCURACY_LOWER, Q.COVERED_ACCURACY_UPPER} & set(scalars[run])) == want, run


def test_drawing_leaves_pyplot_alone(tmp_path):
    """Figures are drawn without pyplot: no figure is registered with pyplot's figure manager (no
    window can pop up in an interactive session, nothing leaks) and the backend is unchanged.
    (pyplot itself is imported anyway by torchmetrics, so its presence in sys.modules proves
    nothing; the module's source must not use it.)"""
    import ast
    import inspect

    import matplotlib
    import matplotlib.pyplot as plt

    import lightning_w2s.dashboard.tensorboard as tb

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
