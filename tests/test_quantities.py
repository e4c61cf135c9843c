"""The quantities registry is the one owner of every logged name: docs/metrics.md's table is generated
from it, the monitor logs nothing it does not know, and what it promises is what gets logged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.quantities import Need

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def test_metric_table_in_docs_is_generated_from_the_registry():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    from generate_metrics import PATH, table_span

    text = open(PATH, encoding="utf-8").read()
    begin, end = table_span(text)
    assert text[begin:end].strip() == Q.markdown_table(), "docs/metrics.md's table differs from lightning_w2s/metrics/quantities.py; regenerate it with `python docs/generate_metrics.py`"


def test_registry_entries_are_well_formed():
    for name, q in Q.QUANTITIES.items():
        assert name == q.name and name.startswith(Q.PREFIX + "/") and q.kind in Q.KINDS
        assert q.needs <= set(Q.NEEDS), q.name
        assert q.meaning and (q.source or q.declared), q.name
        assert Q.lookup(q.name.format(i=7)) is q
        if q.kind == "bound":  # docs/theory.md: a value logged as a bound must be one, with its source
            assert "bound" in q.source or "Lemma" in q.source or "Thm" in q.source, q.name
    with pytest.raises(KeyError, match="declare it in lightning_w2s/metrics/quantities.py"):
        Q.lookup("w2s/misfit/nope")
    with pytest.raises(ValueError, match="registered twice"):
        Q.declare(Q.SQ, "again")


def test_expected_names_follow_the_needs():
    label_free = Q.expected_names(set(), 2)
    assert Q.KL_TEACHER_STUDENT in label_free and Q.ACCURACY not in label_free and Q.train_name(Q.SQ) not in label_free
    assert Q.train_name(Q.SQ) in Q.expected_names({Need.TRAIN_PROBE}, 2)
    gold = Q.expected_names({Need.GOLD, Need.NEIGHBOURS}, 3)
    assert {"w2s/lang/alpha_0", "w2s/lang/alpha_2", Q.ACCURACY, Q.lower(Q.ACCURACY)} <= gold
    assert "w2s/lang/alpha_3" not in gold and Q.COVERAGE_ACCURACY not in gold and Q.PGR not in gold


def test_hints_name_the_fix():
    assert "train_probe" in Q.hint(Q.train_name(Q.KL_TEACHER_STUDENT))
    assert "gold=" in Q.hint(Q.CORRECTION_RATE)
    assert "neighbours" in Q.hint(Q.INCONSISTENCY)
    assert Q.hint(Q.SQ) == Q.MONITOR_HINT and Q.hint("my_metric") == Q.UNREGISTERED_HINT


def test_what_the_monitor_logs_is_what_its_expected_names_promise(golden_runs):
    """On the golden run with every family on: every logged name is registered and promised by
    ``expected_names()``; every promised name that never appeared is one the registry may leave out."""
    golden = json.load(open(os.path.join(HERE, "golden_values.json")))
    current = golden_runs
    for run in golden:
        logged = {n for check in current[run]["checks"] for n in check["values"]}
        promised = set(current[run]["expected_names"])
        assert logged <= promised, logged - promised
        assert all(Q.lookup(n).may_be_undefined for n in promised - logged), promised - logged


def test_one_module_spells_each_logged_name():
    """The contract names live in the registry: no other package module spells them."""
    package = os.path.join(ROOT, "lightning_w2s")
    out = subprocess.run(["grep", "-rlE", r"(misfit|gold|bounds|robustness|lang)/[a-z_]+", package, "--include=*.py"], capture_output=True, text=True).stdout.split()
    offenders = []
    for path in out:
        text = open(path, encoding="utf-8").read()
        spelled = {m for q in Q.QUANTITIES.values() if q.family for m in re.findall(re.escape(q.name.split("/", 1)[1]), text)}
        if spelled and not path.endswith(os.path.join("metrics", "quantities.py")):
            offenders.append((os.path.relpath(path, ROOT), sorted(spelled)[:3]))
    assert offenders == []
