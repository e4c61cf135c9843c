"""Fast tests of the stopping benchmark's pure parts: signals and rules on synthetic
recordings, against slow loop references and Lightning's own EarlyStopping. No training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.stopping.record import Recording
from benchmarks.stopping.rules import Outcome, first_best, gold_floor_regret, lightning_es_stop, patience_stop, smooth_trailing, today_policies, vote
from benchmarks.stopping.signals import consensus_mask, kl_rows, signal


def _fake_recording(seed=0, C=9, n_p=60, n_t=30, n_v=20, n_test=50, k=2, abstain=0.3) -> Recording:
    rng = np.random.default_rng(seed)
    cov = rng.random(n_p) > abstain
    tl = rng.integers(0, k, n_p)
    teacher = np.eye(k, dtype=np.float32)[tl]
    feats = rng.normal(size=(n_p, 4))
    from benchmarks.stopping.record import _knn

    return Recording(
        task="fake",
        seed=seed,
        source="fake",
        teacher_kind="rule",
        student="mlp",
        num_classes=k,
        epochs=C - 1,
        fit_seconds=1.0,
        record_seconds=0.1,
        probe_teacher=teacher,
        probe_covered=cov,
        probe_gold=rng.integers(0, k, n_p),
        train_teacher=rng.integers(0, k, n_t),
        val_teacher=rng.integers(0, k, n_v),
        test_gold=rng.integers(0, k, n_test),
        knn_teacher=_knn(feats, 12),
        knn_student=_knn(rng.normal(size=(n_p, 5)), 12),
        probe_logits=rng.normal(size=(C, n_p, k)).astype(np.float32),
        train_logits=rng.normal(size=(C, n_t, k)).astype(np.float32),
        val_logits=rng.normal(size=(C, n_v, k)).astype(np.float32),
        test_pred=rng.integers(0, k, (C, n_test)).astype(np.int16),
        ema_probe_logits=rng.normal(size=(C, n_p, k)).astype(np.float16),
        ema_train_logits=rng.normal(size=(C, n_t, k)).astype(np.float16),
        steps=np.arange(C) * 10,
        logged_val_loss=rng.random(C - 1),
        logged_val_auroc=rng.random(C - 1),
        meta={"teacher_test_acc": 0.6},
    )


def test_recording_roundtrip(tmp_path):
    rec = _fake_recording()
    _ = rec.test_acc  # a cached property must not be written
    rec.save(tmp_path / "r.npz")
    back = Recording.load(tmp_path / "r.npz")
    for name in ("probe_logits", "probe_covered", "knn_teacher", "test_pred", "logged_val_loss"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name))
    assert back.task == "fake" and back.meta["teacher_test_acc"] == 0.6
    np.testing.assert_allclose(back.test_acc, (rec.test_pred == rec.test_gold).mean(1))
    assert back.regret(int(np.argmax(back.epoch_acc)) + 1) == 0.0
    with pytest.raises(ValueError, match="trained check"):
        back.regret(0)


def test_knn_excludes_self_and_rejects_zero_rows():
    from benchmarks.stopping.record import _knn

    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 3))
    nb = _knn(f, 5)
    assert nb.shape == (30, 5) and not (nb == np.arange(30)[:, None]).any()
    u = f / np.linalg.norm(f, axis=1, keepdims=True)
    d = 1 - u @ u.T
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(nb, 1), np.sort(np.argsort(d, 1)[:, :5], 1))
    f[3] = 0
    assert _knn(f, 5) is None and _knn(np.zeros((30, 0)), 5) is None


# ------------------------------------------------------------------ signals vs loop references
def test_probe_and_val_signals_against_loops():
    rec = _fake_recording()
    ce, err = signal(rec, "probe_ce"), signal(rec, "probe_err")
    for c in (0, 4, 8):
        p = np.exp(rec.probe_logits[c].astype(float))
        p /= p.sum(1, keepdims=True)
        rows = [i for i in range(len(p)) if rec.probe_covered[i]]
        lab = rec.probe_teacher.argmax(1)
        assert ce[c] == pytest.approx(np.mean([-math.log(max(p[i, lab[i]], 1e-6)) for i in rows]), rel=1e-9)
        assert err[c] == pytest.approx(np.mean([p[i].argmax() != lab[i] for i in rows]))
        z = rec.val_logits[c].astype(float)
        ref = np.mean([np.log(np.exp(z[i]).sum()) - z[i, rec.val_teacher[i]] for i in range(len(z))])
        assert signal(rec, "val_ce")[c] == pytest.approx(ref, rel=1e-9)


def test_kl_rows_soft_teacher():
    pw = np.array([[0.2, 0.8], [1.0, 0.0]])
    ps = np.array([[0.5, 0.5], [0.9, 0.1]])
    np.testing.assert_allclose(kl_rows(pw, ps), [0.2 * math.log(0.4) + 0.8 * math.log(1.6), -math.log(0.9)])


def test_churn_and_ema_disagreement():
    rec = _fake_recording()
    ch = signal(rec, "churn_train")
    pred = rec.train_logits.argmax(-1)
    assert math.isnan(ch[0])
    for c in range(1, len(ch)):
        assert ch[c] == pytest.approx(sum(pred[c, i] != pred[c - 1, i] for i in range(pred.shape[1])) / pred.shape[1])
    ed = signal(rec, "ema_dis_probe")
    assert math.isnan(ed[0])
    assert ed[3] == pytest.approx((rec.probe_logits[3].argmax(1) != rec.ema_probe_logits[3].astype(np.float32).argmax(1)).mean())


def test_consensus_mask_against_a_loop():
    rng = np.random.default_rng(3)
    n, k = 80, 7
    labels = rng.integers(0, 3, n)
    cov = rng.random(n) > 0.25
    labels = np.where(cov, labels, -1)
    nb = np.stack([rng.choice([j for j in range(n) if j != i], 10, replace=False) for i in range(n)])
    got = consensus_mask(labels, cov, nb, k)
    for i in range(n):
        votes = [labels[j] for j in nb[i, :k] if cov[j]]
        counts = {c: votes.count(c) for c in set(votes)}
        top = max(counts.values()) if counts else 0
        winners = [c for c, v in counts.items() if v == top]
        expect = bool(cov[i] and top > 0 and len(winners) == 1 and winners[0] == labels[i])
        assert got[i] == expect, i


def test_gamma_and_atc():
    rec = _fake_recording()
    g = signal(rec, "gamma")
    nb = rec.knn_teacher[:, :10]
    pred = rec.probe_logits[5].argmax(1)
    assert g[5] == pytest.approx(np.mean([[pred[i] != pred[j] for j in nb[i]] for i in range(len(pred))]))
    # ATC: on the covered points the share above the threshold equals the agreement with the teacher
    a = signal(rec, "atc")
    p = np.exp(rec.probe_logits[5].astype(float))
    p /= p.sum(1, keepdims=True)
    conf, cov = p.max(1), rec.probe_covered
    agree = (p.argmax(1) == rec.probe_teacher.argmax(1))[cov].mean()
    t = np.sort(conf[cov])[int(round((1 - agree) * cov.sum())) - 1]
    assert (conf[cov] > t).mean() == pytest.approx(agree, abs=1.5 / cov.sum())
    assert a[5] == pytest.approx(-(conf > t).mean())


# ------------------------------------------------------------------ rules
@pytest.mark.parametrize("seed", range(20))
def test_patience_stop_is_lightning_early_stopping(seed):
    rng = np.random.default_rng(seed)
    v = np.concatenate([[np.nan], np.cumsum(rng.normal(-0.02, 0.1, 30)) + 2])
    for p in (1, 2, 3, 5):
        assert patience_stop(v, p).stop == lightning_es_stop(v, p)
    o = patience_stop(v, 3, keep="best")
    end = o.stop if o.stop is not None else 30
    assert o.kept == first_best(v, end)


def test_patience_stop_smoothing_keep_modes_and_whole_run():
    v = np.array([np.nan, 5, 4, 3, 3.5, 2.9, 4, 5, 6, 7, 8])
    assert patience_stop(v, 2).stop == 7 and patience_stop(v, 2).kept == 7
    assert patience_stop(v, 2, keep="best").kept == 5
    assert patience_stop(v, None, keep="best") == Outcome(None, 5, 5)
    s = smooth_trailing(v, 3)
    assert math.isnan(s[0]) and s[1] == 5 and s[2] == 4.5 and s[4] == pytest.approx((4 + 3 + 3.5) / 3)
    o = patience_stop(v, 2, smooth=3, keep="best_mid")
    assert o.best == int(np.nanargmin(s[: o.stop + 1])) and o.kept == o.best - 1
    # non-finite values are skipped, not counted
    w = np.array([np.nan, 3, np.nan, np.nan, np.nan, 2, 2.5])
    assert patience_stop(w, 2).stop is None


def test_vote_is_the_median_stop():
    outs = [Outcome(3, 3), Outcome(None, 10), Outcome(6, 6)]
    assert vote(outs, 2, 10).stop == 6
    assert vote(outs, 3, 10) == Outcome(None, 10, None)
    got = vote(outs, 2, 10, keep="median_best", bests=[lambda c: 2, lambda c: 5, lambda c: None])
    assert got.kept == 2  # lower middle of [2, 5]


def test_today_plateau_is_early_stopping_on_probe_ce():
    rec = _fake_recording(C=30)
    ce = signal(rec, "probe_ce")
    o = today_policies(rec, ("heldout_misfit_plateau",))
    assert o.stop == lightning_es_stop(ce, 3)
    assert today_policies(rec, ("heldout_misfit_plateau",), restore=True).kept == patience_stop(ce, 3, keep="best").kept


def test_today_policies_match_the_library_decision_api():
    """The re-implemented policies equal W2SEarlyStopping.evaluate with the previous default settings
    and with today's (abstaining teachers: gain_exhausted reads max_gain, not the disagreement)."""
    from benchmarks.stopping.rules import check_against_library

    verdict = check_against_library([_fake_recording(seed=s, C=25) for s in range(4)])
    assert verdict.count("20/20") == 2, verdict


def test_max_gain_is_the_monitors_bound_on_the_recorded_disagreement():
    from benchmarks.stopping.signals import max_gain

    rec = _fake_recording(abstain=0.4)
    cov = rec.probe_covered
    pi = cov.mean()
    assert 0 < pi < 1
    for c in (0, 3, 8):
        d = np.mean([rec.probe_logits[c, i].argmax() != rec.probe_teacher[i].argmax() for i in range(len(cov)) if cov[i]])
        assert max_gain(rec)[c] == pytest.approx(pi * d + 1 - pi, rel=1e-12)


def _trending_recording(seed: int, soft: bool, rise_after: int | None, C: int = 30, k: int = 3) -> Recording:
    """A recording whose student moves toward the teacher's labels on the probe (its held-out
    cross-entropy falls) and, from check ``rise_after`` on, away from them (it rises); a soft teacher
    (Dirichlet rows) or one-hot rows."""
    rec = _fake_recording(seed=seed, C=C, k=k)
    rng = np.random.default_rng(seed + 100)
    n = len(rec.probe_covered)
    teacher = rng.dirichlet(np.ones(k), n).astype(np.float32) if soft else rec.probe_teacher
    target = np.eye(k)[teacher.argmax(1)]
    steps = np.array([c if rise_after is None or c <= rise_after else 2 * rise_after - c for c in range(C)], dtype=float)
    logits = rng.normal(scale=0.3, size=(C, n, k)) * 0.05 + steps[:, None, None] * 0.15 * target[None]
    rec.probe_teacher, rec.probe_logits = teacher, logits.astype(np.float32)
    return rec


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("rise_after", [None, 9, 20])
def test_package_default_replay_is_the_chosen_rule(soft, rise_after):
    """W2SEarlyStopping() through its decision API, on the package's teacher_label_ce from the recorded
    logits, stops and keeps the check of `probe_hce ma1 p=5 keep=best` (patience_stop), stopped or not."""
    from benchmarks.stopping.rules import package_default_outcome, package_teacher_label_ce
    from benchmarks.stopping.run import DEFAULT_PARAMS

    rec = _trending_recording(seed=3, soft=soft, rise_after=rise_after)
    hce = signal(rec, "probe_hce")
    np.testing.assert_allclose(package_teacher_label_ce(rec), hce, rtol=1e-5)
    p = DEFAULT_PARAMS
    want = patience_stop(hce, p["patience"], p["smooth"], p["keep"])
    got = package_default_outcome(rec)
    assert (got.stop, got.kept) == (want.stop, want.kept)
    if rise_after is None:  # never stops: the best (here the last) check is restored at the end
        assert got.stop is None and got.kept == rec.epochs
    else:
        assert got.stop == rise_after + 5 and got.kept == rise_after


def test_today_policies_restore_at_the_end_without_a_stop():
    rec = _trending_recording(seed=1, soft=False, rise_after=None)
    hce = signal(rec, "probe_hce")
    end = today_policies(rec, ("heldout_misfit_plateau",), patience=5, misfit="teacher_label_ce", restore="end")
    after_stop = today_policies(rec, ("heldout_misfit_plateau",), patience=5, misfit="teacher_label_ce", restore=True)
    assert end.stop is None and end.kept == first_best(hce)
    assert after_stop == Outcome(None, rec.epochs, None)


def test_a_real_trainer_stops_and_restores_where_the_replay_says():
    """digits with 30% flipped labels, seed 5 (sklearn's digits: no data directory needed): a real
    Trainer with W2SMonitor + W2SEarlyStopping() stops where the chosen rule, replayed on the run's own
    recording, stops; the weights left in the module are those of the restored check; the monitor's
    values equal the offline signals."""
    from benchmarks.stopping.record import verify_against_monitor

    signals_line, line = verify_against_monitor("digits_flip", 5, "data", epochs=40)
    assert "-> identical" in line and "stopped at check" in line and "no stop" not in line, line
    assert "recorded logits of the restored check| 0.0e+00" in line, line
    diffs = [float(part.rsplit(": ", 1)[1]) for part in signals_line.split("per check: ")[1].split("; ")]
    assert len(diffs) == 5 and max(diffs) < 1e-6, signals_line


def test_gold_floor_regret_with_all_points_is_the_smoothed_oracle():
    rec = _fake_recording(n_p=40)
    # k = n: every draw is the whole probe, so the regret is that of one deterministic pick
    r = gold_floor_regret(rec, 40, draws=3, smooth=1)
    acc = (rec.probe_logits[1:].argmax(-1) == rec.probe_gold).mean(1)
    assert r == pytest.approx(rec.regret(1 + int(np.argmax(acc))))


def test_auroc_rank_formula_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from benchmarks.stopping.signals import _auroc

    rng = np.random.default_rng(0)
    for k in (2, 4):
        labels = rng.integers(0, k, 200)
        logits = rng.normal(size=(3, 200, k)).round(1)  # rounded: ties
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        got = _auroc(p, labels)
        for c in range(3):
            ref = roc_auc_score(labels, p[c, :, 1]) if k == 2 else roc_auc_score(labels, p[c], multi_class="ovr", average="macro")
            assert got[c] == pytest.approx(ref, abs=1e-12)


def test_train_probe_is_the_first_covered_training_rows_and_teacher_matrix():
    from benchmarks.shared.tasks import assemble_task, make_splits
    from benchmarks.stopping.record import _teacher_matrix, train_probe_rows

    rng = np.random.default_rng(0)
    n = 120
    gold = rng.integers(0, 3, n)
    teacher = np.where(rng.random(n) < 0.4, -1, gold)
    task = assemble_task(
        "fake",
        x=rng.normal(size=(n, 4)).astype(np.float32),
        gold=gold,
        teacher_labels=teacher,
        teacher_features=rng.normal(size=(n, 2)).astype(np.float32),
        num_classes=3,
        splits=make_splits(n, 0, {"test": 20, "probe": 20, "val": 20}),
    )
    rows = train_probe_rows(task, 10)
    assert len(rows) == 10 and task.train.covered[rows].all()
    assert rows.tolist() == [i for i in range(len(task.train)) if task.train.covered[i]][:10]
    m = _teacher_matrix(task.probe, np.arange(len(task.probe)), 3)
    cov = task.probe.covered
    np.testing.assert_array_equal(m[cov].argmax(1), task.probe.teacher_labels[cov])
    assert (m[cov].sum(1) == 1).all() and (m[~cov] == 0).all()


def test_gold_budget_replay_against_loops():
    """The gold budgets (benchmarks.stopping.gold): draws are seeded and shared by every rule; with gold
    on every probe point the naive whole-run rule keeps the first best gold-accuracy epoch and the PPI
    estimate is the plain accuracy; with fewer, each check's PPI estimate is ppi_mean of that check."""
    import torch

    from benchmarks.stopping.gold import CANDIDATES, gold_draws, gold_regret, ppi_accuracy
    from lightning_w2s.metrics.gold_intervals import ppi_mean

    rec = _fake_recording(n_p=40, C=12)
    assert np.array_equal(gold_draws(rec, 10), gold_draws(rec, 10)) and gold_draws(rec, 10).shape == (20, 10)
    acc = (rec.probe_logits[1:].argmax(-1) == rec.probe_gold).mean(1)
    assert gold_regret(rec, "naive, whole run [NAIVE]", 40) == pytest.approx(rec.regret(1 + int(np.argmax(acc))))
    pred = rec.probe_logits.argmax(-1)
    correct, agree = pred == rec.probe_gold, (pred == rec.probe_teacher.argmax(-1)) & rec.probe_covered
    assert np.allclose(ppi_accuracy(correct, agree, np.arange(40)), correct.mean(1))
    idx = gold_draws(rec, 15)[0]
    rest = np.setdiff1d(np.arange(40), idx)
    got = ppi_accuracy(correct, agree, idx)
    for c in range(len(got)):
        want = ppi_mean(torch.tensor(correct[c, idx], dtype=torch.float64), torch.tensor(agree[c, idx], dtype=torch.float64), torch.tensor(agree[c, rest], dtype=torch.float64))["estimate"]
        assert got[c] == pytest.approx(float(want), abs=1e-12)
    assert set(CANDIDATES) >= {"label_free [W2SEarlyStopping() today]", "naive, whole run [NAIVE]", "ppi_naive"}
