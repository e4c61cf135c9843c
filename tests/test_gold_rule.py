"""Gold rules (lightning_w2s.stopping.gold_rule): picks against independent numpy references, every pick
held by a live stopper's copies, and W2SEarlyStopping's gold wiring through its pure decision API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_w2s import W2SEarlyStopping
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.stopping import gold_rule
from lightning_w2s.stopping.gold_rule import GoldRule, gold_candidates, gold_kept_check

RULES = [GoldRule("label_free"), GoldRule("naive"), GoldRule("smooth", 3), GoldRule("top_m", 3), GoldRule("top_m", 5), GoldRule("gate", 1.0), GoldRule("gate", 1.645)]


def _reference(acc: np.ndarray, lf: np.ndarray, k: int, rule: GoldRule) -> int:
    """Each rule written directly with numpy (first index of the best value, as np.argmax does)."""
    h = int(np.argmin(lf))
    g = int(np.argmax(acc))
    if rule.kind == "label_free":
        return h
    if rule.kind == "naive":
        return g
    if rule.kind == "smooth":
        w = int(rule.param)
        means = np.array([acc[max(0, i - w + 1) : i + 1].mean() for i in range(len(acc))])
        return int(np.argmax(means))
    if rule.kind == "top_m":
        top = np.argsort(lf, kind="stable")[: int(rule.param)]
        return int(top[np.argmax(acc[top])])
    a = (acc[g] + acc[h]) / 2
    return g if acc[g] - acc[h] > rule.param * math.sqrt(2 * a * (1 - a) / k) else h


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_rules_equal_a_numpy_reference(rule):
    rng = np.random.default_rng(0)
    for _ in range(300):
        c, k = int(rng.integers(1, 30)), int(rng.choice([30, 100, 300]))
        acc = rng.binomial(k, rng.uniform(0.6, 0.8), size=c) / k  # ties in gold accuracy are common, as on k points
        lf = rng.uniform(0.3, 0.9, size=c)
        assert gold_kept_check(list(acc), list(lf), k, rule) == _reference(acc, lf, k, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_pick_is_among_the_weights_a_live_stopper_holds(rule):
    """Replay W2SEarlyStopping's snapshot bookkeeping check by check (keep = the label-free best plus
    gold_candidates; drop the rest; copy the current check if kept): the rule's pick at every check is
    a check whose copy is held."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        c, k = int(rng.integers(2, 40)), 100
        acc = list(rng.binomial(k, rng.uniform(0.6, 0.8), size=c) / k)
        lf = list(rng.uniform(0.3, 0.9, size=c))
        held: set[int] = set()
        for t in range(1, c + 1):
            keep = {int(np.argmin(lf[:t]))} | gold_candidates(acc[:t], lf[:t], k, rule)
            held = {x for x in held if x in keep} | ({t - 1} & keep)
            assert gold_kept_check(acc[:t], lf[:t], k, rule) in held


def test_non_finite_values_are_skipped_and_gold_missing_falls_back():
    assert gold_kept_check([math.nan, 0.7, 0.8], [0.5, math.nan, 0.4], 100, GoldRule("naive")) == 2
    assert gold_kept_check([math.nan, math.nan], [0.5, 0.4], 100, GoldRule("naive")) == 1
    with pytest.raises(ValueError, match="param"):
        GoldRule("top_m", 0)


def _replay(stopper, lf, acc=None, count=None, failed=()):
    for i, x in enumerate(lf):
        values = {Q.TEACHER_LABEL_CE: x}
        if i in failed:  # a failed monitor check logs nothing
            values = {}
        elif acc is not None:
            values.update({Q.ACCURACY: acc[i], Q.GOLD_COUNT: count})
        stopper.evaluate(values, epoch=i)
        stopper.best_weights.keep(len(stopper.history) - 1, stopper.kept_checks(), lambda i=i: {"w": torch.tensor(float(i))})
        if stopper.history[-1]["stop"]:
            break


LF = [0.9, 0.5, 0.6, 0.55, 0.7, 0.8, 0.9, 0.95, 0.99]
ACC = [0.60, 0.70, 0.74, 0.71, 0.80, 0.72, 0.70, 0.70, 0.70]


def test_stopper_keeps_the_gold_rule_pick_with_enough_gold(monkeypatch):
    monkeypatch.setattr(gold_rule, "GOLD_DEFAULTS", ((0, GoldRule("label_free"), "label-free."), (300, GoldRule("naive"), "naive gold.")))
    es = W2SEarlyStopping(patience=3, verbose=False)
    _replay(es, LF, ACC, 300)
    assert es.stopped_check == 4 and es.history[-1]["stop"]  # plateau stopped at check 4
    assert es.gold_rule == GoldRule("naive") and es.restore_check == 4 and 4 in es.best_weights.copies
    for es2, count in ((W2SEarlyStopping(patience=3, verbose=False, gold=False), 300), (W2SEarlyStopping(patience=3, verbose=False), 299)):
        _replay(es2, LF, ACC, count)
        assert es2.gold_rule is None and es2.restore_check == 1  # the label-free best
    es4 = W2SEarlyStopping(patience=6, verbose=False)
    _replay(es4, LF, ACC, 300, failed=(5,))  # a failed check after the gold pick keeps its copy
    assert len(es4.history) > 6 and es4.restore_check == 4 and 4 in es4.best_weights.copies
    state = es.state_dict()
    es3 = W2SEarlyStopping(patience=3, verbose=False)
    es3.load_state_dict(state)
    assert es3.restore_check == 4 and es3.gold_rule == GoldRule("naive")


def test_a_whole_run_gold_rule_never_stops(monkeypatch):
    monkeypatch.setattr(gold_rule, "GOLD_DEFAULTS", ((0, GoldRule("label_free"), "label-free."), (100, GoldRule("naive", whole_run=True), "naive gold, whole run.")))
    es = W2SEarlyStopping(patience=2, verbose=False)
    _replay(es, LF, ACC, 100)
    assert len(es.history) == len(LF) and not any(h["stop"] for h in es.history)
    assert es.restore_check == 4 and set(es.best_weights.copies) <= {1, 4} and 4 in es.best_weights.copies


@pytest.mark.parametrize("n_probe,patched", [(320, True), (101, False)])
def test_trainer_restores_the_gold_pick_and_says_why(tmp_path, monkeypatch, caplog, n_probe, patched):
    """A real Trainer with W2SMonitor (a probe with gold on every point) and W2SEarlyStopping(): the
    module ends with the weights of the check the gold rule picks from the logged values, and the
    console names the rule. 320 gold points with the naive rule patched in; 101 with the package's
    own choice for that budget (the PPI estimate)."""
    import logging

    import lightning as L
    from helpers import TinyStudent, make_task, read_csv_metrics, trainer_kwargs
    from lightning.pytorch.loggers import CSVLogger
    from test_early_stopping import WeightsRecorder

    from lightning_w2s import W2SMonitor

    if patched:
        monkeypatch.setattr(gold_rule, "GOLD_DEFAULTS", ((0, GoldRule("label_free"), "label-free."), (300, GoldRule("naive"), "the naive rule (test).")))
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    task = make_task(n_probe=n_probe, noise=0.3)
    L.seed_everything(0, verbose=False)
    model, rec, es = TinyStudent(lr=0.02, hidden=64), WeightsRecorder(), W2SEarlyStopping()
    logger = CSVLogger(tmp_path, name="csv")
    trainer = L.Trainer(**trainer_kwargs(max_epochs=10, logger=logger, callbacks=[W2SMonitor(task.probe()), es, rec]))
    trainer.fit(model, task.train_loader(32), task.val_loader())
    logged = read_csv_metrics(logger)
    rule, why = gold_rule.gold_default_for(n_probe)
    assert es.gold_rule == rule != GoldRule("label_free")
    assert {logged[e][Q.GOLD_COUNT] for e in logged} == {float(n_probe)}
    series = [logged[e][Q.ACCURACY_PPI if rule.estimate == "ppi" else Q.ACCURACY] for e in sorted(logged)]
    held = [logged[e][Q.TEACHER_LABEL_CE] for e in sorted(logged)]
    pick = series.index(max(series))
    assert pick != held.index(min(held)), "the scenario must tell the gold pick from the label-free best"
    assert es.restore_check == es.best_check == pick
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[pick][k]) for k in state)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("lightning.pytorch")]
    assert any(f"{n_probe} gold points: {why}" in m for m in messages)
    assert any(f"restored the student's weights of check {pick}" in m and f"gold rule {rule.name}" in m for m in messages)
