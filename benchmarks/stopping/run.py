"""Stopping-regret benchmark (docs/theory.md §3, docs/benchmarks.md): which label-free rule earns the default?

**Regret** of a rule on one run = 100 x (gold test accuracy of the run's best epoch - gold test
accuracy of the weights the rule leaves the user with), in accuracy points; lower is better.

How it works:

1. Each (task, seed) — 13 (task, teacher) pairs from 5 offline sources, 8 seeds — is trained **once**
   and recorded (:mod:`benchmarks.stopping.record`: per epoch, the student's logits on the held-out
   probe, the train probe, the teacher-labelled val set, an EMA of its weights on the probe and the
   train probe, and its argmax on the gold test set). Recordings are cached under
   ``data/stopbench_runs/``; a rerun only replays.
2. Every rule is **replayed offline** on the recordings (:mod:`benchmarks.stopping.rules`) from
   label-free signals computed exactly as a live monitor would (:mod:`benchmarks.stopping.signals`).
3. Rules and thresholds are **chosen on seeds 0-3** (mean regret over pairs) and **reported on seeds
   4-7**, with paired differences against the reference users actually end with —
   ``EarlyStopping(val_loss, patience=3)`` + ``ModelCheckpoint(monitor="val_loss")`` restored — as 95%
   confidence intervals per pair (t over the 4 seeds) and pooled (t over all report runs; and a
   cluster bootstrap that resamples pairs, then seeds). Leave-one-source-out: the rule is chosen
   without a data source and reported on it.

Goal: mean regret on the report seeds <= 0.5 pt **and** below the reference with the
paired 95% CI excluding 0. Printed as PASS/FAIL.

Gold budgets (:mod:`benchmarks.stopping.gold`, docs/gold.md): the same recordings replayed with gold on
k = 30 / 100 / 300 random probe points (20 draws per run), the pre-registered gold rules beside REF
and the naive best-gold checkpoint, one chosen per budget on the selection seeds.

Faithfulness (printed): the chosen rule (``probe_hce ma1 p=5 keep=best``) is what ``W2SEarlyStopping()``
does with no arguments, and the benchmark checks it three ways: (a) ``W2SEarlyStopping()`` itself,
replayed on every run through its decision object (``.decision``: ``evaluate`` + ``restore_check``) on the
package's own ``teacher_label_ce`` computed from the recorded logits
(:func:`benchmarks.stopping.rules.package_default_outcome`), gives the same stop and kept check as
the chosen rule on every run, and has its own row in the tables (``W2SEarlyStopping() [default]``);
(b) the four rules re-implemented here equal the package's ``StoppingDecision.evaluate`` with the previous
default settings and with today's; (c) real ``Trainer`` runs with ``W2SMonitor`` +
``W2SEarlyStopping()`` (:data:`VERIFY_RUNS`) stop and restore where the replays say, and the weights
left in the module are those of the restored check.

The pairs (``benchmarks.shared.tasks``): movie sentences x {12+12 keyword rule, VADER, logistic regression on
WordLlama (200 gold), 30% random flips} -> MLP head on MiniLM, and VADER -> all-MiniLM-L6-v2 fine-tuned
end to end; tweets x {keyword rule, overconfident logistic regression (100 gold, T = 0.2)}; fine-food
reviews x {keyword rule, VADER, 30% flips}; Fashion-MNIST x logistic regression on pooled pixels ->
CNN from scratch; scikit-learn digits x {logistic regression on pooled pixels (100 gold), 30% flips}
-> MLP from scratch. Students train on the teacher's hard labels (abstentions dropped), Adam 1e-3 for
40 epochs (the encoder: AdamW 5e-5, batch 16, 8 epochs).

CPU budget (2 shared cores, one recording process, one torch thread, measured while 4-12 processes
of other users shared the machine): the 96 head/CNN runs took ~52 min wall (Fashion-MNIST ~4-6 min
a run, the others 5-60 s); the fine-tuned encoder 5-12 min a run (400 training sentences, 8 epochs,
9 evaluation passes over ~2,350 sentences incl. the EMA passes), ~65 min for its 8 seeds. Printed per
pair as "fit s/run". The replay of every rule on cached recordings: ~35 s, plus ~10 s for the two
real verification runs (``--no-verify`` skips them).

    python -m benchmarks.stopping.run [--data data] [--tasks ...] [--seeds 0 ... 7] [--select-seeds 0 1 2 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.stopping.rules import GAIN, NOW, OVERFIT, PLATEAU, ROBUST, Outcome, Rule, first_best, gold_floor_regret, lightning_es_stop, package_default_outcome, patience_stop, today_policies, vote
from benchmarks.stopping.signals import MONITOR_SIGNALS, SIGNALS, consensus_share, signal

SEEDS = tuple(range(8))
SELECT_SEEDS = (0, 1, 2, 3)
TARGET = 0.5  # points
SMOOTHS = (1, 3, 5)
PATIENCES = (2, 3, 5, 8, None)
SHORT = {
    "movie_keyword": "m_kw",
    "movie_vader": "m_vader",
    "movie_wordllama_lr": "m_wl_lr",
    "movie_flip": "m_flip",
    "movie_vader_ft": "m_vad_ft",
    "tweets_keyword": "t_kw",
    "tweets_lr_overconfident": "t_overc",
    "fine_foods_keyword": "ff_kw",
    "fine_foods_vader": "ff_vader",
    "fine_foods_flip": "ff_flip",
    "fashion_scratch": "fashion",
    "digits_lr": "dg_lr",
    "digits_flip": "dg_flip",
}
REF = "ES(val_loss,p=3)+ckpt restored [REF]"
DEFAULT = "W2SEarlyStopping() [default]"
#: W2SEarlyStopping()'s configuration in the benchmark's terms (checked against the choice when printed)
DEFAULT_PARAMS = {"signal": "probe_hce", "smooth": 1, "patience": 5, "keep": "best"}
#: verification runs: a real Trainer with W2SMonitor + W2SEarlyStopping() (a soft teacher that never
#: stops in 40 epochs: the restore at the end; an abstaining keyword rule that stops)
VERIFY_RUNS = (("digits_lr", 0), ("movie_keyword", 1))


# ============================================================================ rules
def baseline_rules() -> list[Rule]:
    def to_end(r):
        return Outcome(None, r.epochs)

    def es(r, restore: bool):
        stop = lightning_es_stop(r.logged_val_loss_checks, 3)
        end = r.epochs if stop is None else stop
        return Outcome(stop, first_best(r.logged_val_loss_checks, end) if restore else end)

    return [
        Rule("train to the end", "baseline", False, to_end),
        Rule("EarlyStopping(val_loss,p=3) at stop", "baseline", False, lambda r: es(r, False)),
        Rule(REF, "baseline", False, lambda r: es(r, True)),
        Rule("best val_loss ckpt, whole run", "baseline", False, lambda r: Outcome(None, first_best(r.logged_val_loss_checks))),
        Rule("best val_auroc ckpt, whole run (w2s)", "baseline", False, lambda r: Outcome(None, first_best(-r.logged_val_auroc_checks))),
        Rule("fixed 2 epochs (weak-to-strong)", "baseline", False, lambda r: Outcome(2, 2)),
        Rule("best val accuracy ckpt, whole run (T&S)", "baseline", False, lambda r: Outcome(None, first_best(signal(r, "val_err")))),
    ]


def floor_rules() -> list[Rule]:
    return [Rule(f"[gold] best smoothed probe-gold acc, k={k}", "floor", False, lambda r, k=k: gold_floor_regret(r, k)) for k in (30, 100, 300)]


#: the policy sets of TABLE 3: each policy alone (``gain_exhausted`` with ``min_gain=0.05``) and plateau + overfit + robustness
POLICY_SETS = (((PLATEAU,), {}), ((OVERFIT,), {}), ((GAIN,), {"min_gain": 0.05}), ((ROBUST,), {}), ((PLATEAU, OVERFIT, ROBUST), {}))


def today_rules() -> list[Rule]:
    """The four policies as the previous ``W2SEarlyStopping()`` default ran them (patience 3,
    ``kl_teacher_student``; ``+restore``: the best check after a stop, the last weights without one)."""
    out = []
    labels = (
        "W2SEarlyStopping() before: plateau(kl_ts,p=3)",
        "before: teacher_overfit(kl_ts,p=3)",
        "before: gain_exhausted(0.05,p=3)",
        "before: robustness_drop(p=3)",
        "before: any(plateau,overfit,robust)",
    )
    for (pols, kw), label in zip(POLICY_SETS, labels):
        for restore in (False, True):
            out.append(
                Rule(label + (" +restore" if restore else ""), "today", True, lambda r, p=pols, kw=kw, rs=restore: today_policies(r, p, restore=rs, **kw), {"policies": pols, "restore": restore, **kw})
            )
    # median of the four policies' stop checks (vote 2 of 4), keep that check / the median best check
    four = POLICY_SETS[:4]
    for keep in ("stop", "median_best"):

        def run(r, keep=keep):
            outs = [today_policies(r, p, restore=True, **kw) for p, kw in four]
            bests = [lambda c, p=p, kw=kw: _policy_best_at(r, p, kw, c) for p, kw in four]
            return vote(outs, 2, r.epochs, keep, bests)

        out.append(Rule(f"before: median stop of the four, keep {keep}", "combo", True, run))
    return out


def now_rules() -> list[Rule]:
    """The rules as ``W2SEarlyStopping(policy)`` runs its policies now (its defaults: patience 5,
    ``misfit="teacher_label_ce"``, ``restore_best=True``: the best check's weights at the end whether
    it stopped or not), and with ``restore_best=False``. Not in the choice pool (the plateau row is
    the package default, already there as ``probe_hce ma1 p=5 keep=best``)."""
    out = []
    labels = (
        "W2SEarlyStopping() now (default)",
        "W2SEarlyStopping('teacher_overfit') now",
        "gain_exhausted(min_gain=0.05) rule, as a policy now",
        "robustness_drop rule, as a policy now",
        "any(plateau, overfit, robustness_drop rule) now",
    )
    for (pols, kw), label in zip(POLICY_SETS, labels):
        for restore in ("end", False):
            out.append(
                Rule(
                    label + ("" if restore else ", restore_best=False"),
                    "now",
                    True,
                    lambda r, p=pols, kw=kw, rs=restore: today_policies(r, p, patience=NOW["patience"], misfit=NOW["misfit"], restore=rs, **kw),
                    {"policies": pols, "restore": restore, **kw},
                )
            )
    return out


def default_rule() -> Rule:
    """``W2SEarlyStopping()`` itself: the package's decision code replayed on the package's
    ``teacher_label_ce`` (:func:`benchmarks.stopping.rules.package_default_outcome`)."""
    return Rule(DEFAULT, "package", True, package_default_outcome)


def _policy_best_at(r, pols, kw, check: int) -> int | None:
    """A policy's best check after ``check`` checks (replaying it on the prefix)."""
    from benchmarks.stopping.rules import _policy_stream

    best = None
    for c, _, b in _policy_stream(r, pols[0], 3, "kl_teacher_student", 0.5, kw.get("min_gain")):
        best = b
        if c >= check:
            break
    return best


def candidate_rules(signals: Sequence[str]) -> list[Rule]:
    out = []
    for name in signals:
        monitor = name in MONITOR_SIGNALS
        for smooth, patience in itertools.product(SMOOTHS, PATIENCES):
            keeps = ["best"] + (["stop"] if patience is not None else []) + (["best_mid"] if smooth > 1 else [])
            for keep in keeps:
                p = "whole run" if patience is None else f"p={patience}"
                label = f"{name} ma{smooth} {p} keep={keep}"
                out.append(
                    Rule(
                        label,
                        "candidate",
                        monitor,
                        lambda r, n=name, s=smooth, pa=patience, k=keep: patience_stop(signal(r, n), pa, s, k),
                        {"signal": name, "smooth": smooth, "patience": patience, "keep": keep},
                    )
                )
    return out


def combo_rules(components: Sequence[Rule], label: str) -> list[Rule]:
    """Median stop (vote ceil(m/2) of m) of ``components``; keep that check or the median best check."""
    m = len(components)
    out = []
    for keep in ("stop", "median_best"):

        def run(r, keep=keep):
            outs = [c.outcome(r) for c in components]
            bests = [lambda check, c=c: _prefix_best(r, c, check) for c in components]
            return vote(outs, (m + 1) // 2, r.epochs, keep, bests)

        out.append(Rule(f"{label}, keep {keep}", "combo", all(c.monitor for c in components), run, {"components": [c.name for c in components], "keep": keep}))
    return out


def _prefix_best(r, rule: Rule, check: int) -> int | None:
    p = rule.params
    s = signal(r, p["signal"])[: check + 1]
    o = patience_stop(s, None, p["smooth"], "best_mid" if p["keep"] == "best_mid" else "best")
    return o.kept if o.best is not None else None


# ============================================================================ statistics
def per_pair(rule: Rule, recs) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in recs:
        out.setdefault(r.task, []).append(rule.regret(r))
    return out


def mean_regret(rule: Rule, recs, tasks) -> float:
    pp = per_pair(rule, recs)
    return statistics.fmean(statistics.fmean(pp[t]) for t in tasks if t in pp)


def t_ci(d: Sequence[float]) -> tuple[float, float, float]:
    from scipy import stats

    d = np.asarray(d, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, math.nan, math.nan
    h = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return m, m - h, m + h


def cluster_bootstrap(diffs: dict[str, list[float]], n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean paired difference, resampling pairs, then seeds within."""
    rng = np.random.default_rng(seed)
    keys = list(diffs)
    arrs = [np.asarray(diffs[k]) for k in keys]
    stats_ = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(keys), len(keys))
        stats_[b] = np.mean([rng.choice(arrs[i], len(arrs[i])).mean() for i in pick])
    lo, hi = np.percentile(stats_, [2.5, 97.5])
    return float(lo), float(hi)


def paired(rule: Rule, ref: Rule, recs) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in recs:
        out.setdefault(r.task, []).append(rule.regret(r) - ref.regret(r))
    return out


# ============================================================================ printing
def regret_table(title: str, rules: Sequence[Rule], recs, tasks, ref: Rule | None) -> str:
    cols = [SHORT.get(t, t)[:8] for t in tasks]
    width = max(len(r.name) for r in rules) + 1
    head = "rule".ljust(width) + "".join(c.rjust(9) for c in cols) + "mean".rjust(7)
    if ref is not None:
        head += "   Δ vs REF [95% CI, t over runs]"
    lines = [title, head]
    for rule in rules:
        pp = per_pair(rule, recs)
        cells = "".join(f"{statistics.fmean(pp[t]):9.2f}" for t in tasks)
        line = rule.name.ljust(width) + cells + f"{mean_regret(rule, recs, tasks):7.2f}"
        if ref is not None:
            d = [x for t in tasks for x in paired(rule, ref, recs)[t]]
            m, lo, hi = t_ci(d)
            line += f"   {m:+5.2f} [{lo:+5.2f}, {hi:+5.2f}]"
        lines.append(line)
    return "\n".join(lines)


def context_table(recs, tasks) -> str:
    lines = ["pair        source          teacher kind          student     teacher  final  oracle  oracle_ep  epochs  fit s/run  consensus share (teacher tbl / student tbl)"]
    for t in tasks:
        rs = [r for r in recs if r.task == t]
        r0 = rs[0]
        lines.append(
            f"{SHORT.get(t, t):<11} {r0.source:<15} {r0.teacher_kind:<21} {r0.student:<10} "
            f"{statistics.fmean(r.teacher_test_acc for r in rs):7.3f} {statistics.fmean(r.epoch_acc[-1] for r in rs):6.3f} "
            f"{statistics.fmean(r.oracle_acc for r in rs):7.3f} {statistics.fmean(int(np.argmax(r.epoch_acc)) for r in rs):10.1f} "
            f"{r0.epochs:7d} {statistics.fmean(r.fit_seconds + r.record_seconds for r in rs):10.1f}  "
            f"{statistics.fmean(consensus_share(r, 'teacher') for r in rs):.2f} / "
            f"{statistics.fmean(consensus_share(r, 'student') for r in rs):.2f}" + ("" if r0.knn_teacher is not None else " (no teacher table: student's)")
        )
    return "\n".join(lines)


def ci_block(rule: Rule, ref: Rule, recs, tasks, label: str) -> tuple[list[str], dict]:
    diffs = paired(rule, ref, recs)
    lines = [f"Paired regret differences, {label} minus REF (negative = better than REF), report seeds:"]
    for t in tasks:
        m, lo, hi = t_ci(diffs[t])
        lines.append(f"  {SHORT.get(t, t):<9} {m:+6.2f} [{lo:+6.2f}, {hi:+6.2f}]  (n={len(diffs[t])}, t)")
    allv = [x for t in tasks for x in diffs[t]]
    m, lo, hi = t_ci(allv)
    blo, bhi = cluster_bootstrap({t: diffs[t] for t in tasks})
    lines.append(f"  pooled    {m:+6.2f} [{lo:+6.2f}, {hi:+6.2f}]  (n={len(allv)} runs, t over runs); cluster bootstrap over pairs [{blo:+6.2f}, {bhi:+6.2f}]")
    return lines, {"mean": m, "t_lo": lo, "t_hi": hi, "boot_lo": blo, "boot_hi": bhi}


# ============================================================================ main
def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.shared.tasks import DEFAULT_DATA, TASK_SOURCES, TASKS
    from benchmarks.stopping.record import load_recordings
    from benchmarks.stopping.rules import check_against_library, check_package_default

    ap = argparse.ArgumentParser(prog="python -m benchmarks.stopping.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--tasks", nargs="*", default=list(SHORT), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--select-seeds", type=int, nargs="*", default=list(SELECT_SEEDS))
    ap.add_argument("--jobs", type=int, default=1, help="processes recording missing runs (default 1: shared machine)")
    ap.add_argument("--fresh", action="store_true", help="re-record every run")
    ap.add_argument("--json", default=None, help="also write the main figures to this JSON file")
    ap.add_argument("--no-verify", action="store_true", help="skip the real Trainer runs (W2SMonitor + W2SEarlyStopping()) that check the offline signals and the default")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    recs = load_recordings(args.tasks, args.seeds, args.data, fresh=args.fresh, jobs=args.jobs)
    t_rec = time.perf_counter() - t_start
    for r in recs:  # per-check views (index = check; check 0 has no validation)
        r.logged_val_loss_checks = np.concatenate([[np.nan], r.logged_val_loss])
        r.logged_val_auroc_checks = np.concatenate([[np.nan], r.logged_val_auroc])
    tasks = list(args.tasks)
    select = [s for s in args.seeds if s in args.select_seeds]
    report = [s for s in args.seeds if s not in args.select_seeds]
    sel = [r for r in recs if r.seed in select]
    rep = [r for r in recs if r.seed in report]
    t0 = time.perf_counter()

    print(
        f"Stopping regret = 100 x (gold test acc of the run's best epoch - gold test acc of the weights kept), "
        f"{len(tasks)} pairs x {len(args.seeds)} seeds; rules chosen on seeds {select}, reported on seeds {report}."
    )
    print()
    print(context_table(recs, tasks))
    print()

    # ---- faithfulness of the replays
    dv = max(float(np.nanmax(np.abs(signal(r, "val_ce")[1:] - r.logged_val_loss))) for r in recs)
    es_same = sum(lightning_es_stop(r.logged_val_loss_checks, 3) == patience_stop(r.logged_val_loss_checks, 3).stop for r in recs)
    print(
        f"Replay checks: val_loss recomputed from the recorded logits vs Lightning's logged value: max |diff| {dv:.1e}; "
        f"Lightning's EarlyStopping._evaluate_stopping_criteria vs patience_stop on val_loss: {es_same}/{len(recs)} identical "
        f"stops; the four rules vs lightning_w2s StoppingDecision.evaluate: {check_against_library(recs)}"
    )
    live_lines = []
    if not args.no_verify:
        from benchmarks.stopping.record import verify_against_monitor

        for task, seed in VERIFY_RUNS:
            if task not in tasks:
                continue
            try:
                cached = next((r for r in recs if (r.task, r.seed) == (task, seed)), None)
                t_run = time.perf_counter()
                signals_line, stopper_line = verify_against_monitor(task, seed, args.data, 40, cached=cached)
                print(f"Offline signals vs a real W2SMonitor run ({time.perf_counter() - t_run:.0f} s): " + signals_line)
                live_lines.append(stopper_line)
            except Exception as exc:  # pragma: no cover - the package is being refactored
                print(f"Offline signals vs a real W2SMonitor run: skipped ({type(exc).__name__}: {exc})")
    print()

    t_choice = time.perf_counter()
    base, floor, today = baseline_rules(), floor_rules(), today_rules()
    ref = next(r for r in base if r.name == REF)
    cands = candidate_rules(list(SIGNALS))

    # ---- choice on the selection seeds
    def score(rule: Rule, runs=sel, ts=tasks) -> float:
        return round(mean_regret(rule, runs, ts), 9)

    monitor_pool = [r for r in cands if r.monitor] + [r for r in today if r.monitor]
    ranked = sorted(monitor_pool, key=score)
    # data-driven combination: median stop of the best configuration of the 3 best distinct signals
    top_by_signal: dict[str, Rule] = {}
    for r in sorted((r for r in cands), key=score):
        top_by_signal.setdefault(r.params["signal"], r)
    top3 = [r for r in sorted((top_by_signal[s] for s in MONITOR_SIGNALS), key=score)][:3]
    combos = combo_rules(top3, "median stop of the 3 best signals (" + ", ".join(r.params["signal"] for r in top3) + ")")
    ranked = sorted(monitor_pool + combos, key=score)
    chosen = ranked[0]
    print(
        f"Choice on selection seeds {select}: {len(monitor_pool) + len(combos)} monitor-computable rules "
        f"({len(SIGNALS) - 3} signals x moving average {SMOOTHS} x patience {PATIENCES} x keep stop/best/best_mid, "
        f"the previous default's policies and combinations), {time.perf_counter() - t_choice:.0f} s. Top 12 by mean selection regret "
        "(report column for information only; it played no part in the choice):"
    )
    print("  " + "rule".ljust(72) + "select".rjust(8) + "report".rjust(8))
    for r in ranked[:12]:
        print("  " + r.name.ljust(72) + f"{score(r):8.2f}{mean_regret(r, rep, tasks):8.2f}")
    print()
    print("Best configuration of each signal on the selection seeds (does the signal ever win?):")
    print("  " + "signal: best configuration".ljust(72) + "select".rjust(8) + "report".rjust(8) + "   report Δ vs REF [95% CI]")
    for _s, r in sorted(top_by_signal.items(), key=lambda kv: score(kv[1])):
        m, lo, hi = t_ci([x for t in tasks for x in paired(r, ref, rep)[t]])
        print("  " + (("" if r.monitor else "(val) ") + r.name).ljust(72) + f"{score(r):8.2f}{mean_regret(r, rep, tasks):8.2f}" + f"   {m:+5.2f} [{lo:+5.2f}, {hi:+5.2f}]")
    print()

    chosen_rule = Rule("CHOSEN: " + chosen.name, chosen.family, chosen.monitor, chosen.run, chosen.params)
    package = default_rule()
    faithful, n_same = check_package_default(recs, chosen_rule)
    print(
        "Faithfulness of the package default (docs/benchmarks.md): W2SEarlyStopping() is "
        f"{DEFAULT_PARAMS} in the benchmark's terms; the choice is {chosen.params}: "
        f"{'the same rule' if chosen.params == DEFAULT_PARAMS else 'ANOTHER RULE'}"
    )
    print("  " + faithful)
    for line in live_lines:
        print("  " + line)
    print()
    runners = [r for r in ranked[1:] if r.params.get("signal") != chosen.params.get("signal")][:2]
    # a-priori settings (fixed before any run, not selected): the probe's analogues of the REF and of
    # ModelCheckpoint, and Label Wave's rule (moving average, first local minimum, its weights)
    apriori = []
    for sig, sm, pa, keep in (
        ("probe_hce", 1, 3, "best"),
        ("probe_hce", 1, None, "best"),
        ("probe_ce", 1, None, "best"),
        ("probe_err", 1, None, "best"),
        ("churn_train", 3, 3, "best"),
        ("cons_ce", 1, None, "best"),
        ("knn_ce", 1, None, "best"),
    ):
        r = next(c for c in cands if c.params == {"signal": sig, "smooth": sm, "patience": pa, "keep": keep})
        apriori.append(Rule("[a priori] " + r.name, r.family, r.monitor, r.run, r.params))
    rows = (
        base
        + floor
        + today[:2]
        + apriori
        + [top_by_signal[s] for s in ("probe_hce", "probe_ce", "churn_train", "churn_probe", "ema_dis_probe", "cons_ce", "knn_ce", "atc") if s in top_by_signal]
        + combos
        + runners
        + [chosen_rule, package]
    )
    seen = set()
    rows = [r for r in rows if not (r.name in seen or seen.add(r.name))]
    print(regret_table(f"TABLE 1 — report seeds {report}: mean regret per pair (pt), mean over pairs, paired Δ vs REF", rows, rep, tasks, ref))
    print()
    print(regret_table(f"TABLE 2 — selection seeds {select} (same rows)", rows, sel, tasks, ref))
    print()
    print(
        "TABLE 3 — the two policies of W2SEarlyStopping, the gain_exhausted and robustness_drop rules (the monitor's "
        "warnings, policies until this table ruled them out) and their combinations (min_delta 0, kappa 0.5, min_gain 0.05): "
        "as the previous default ran them (patience 3, kl_teacher_student; +restore: the best check after a stop) and as "
        "W2SEarlyStopping(policy) runs its policies now (patience 5, teacher_label_ce, the best check restored at the end, "
        "stopped or not). Mean regret (pt), selection / report seeds, report Δ vs REF"
    )
    for r in today + now_rules():
        m, lo, hi = t_ci([x for t in tasks for x in paired(r, ref, rep)[t]])
        print(f"  {r.name:<72}{mean_regret(r, sel, tasks):6.2f}{mean_regret(r, rep, tasks):7.2f}   {m:+5.2f} [{lo:+5.2f}, {hi:+5.2f}]")
    print()

    lines, ci = ci_block(chosen_rule, ref, rep, tasks, "CHOSEN")
    print("\n".join(lines))
    mean_rep = mean_regret(chosen_rule, rep, tasks)
    ok_mean = mean_rep <= TARGET
    ok_ci = ci["t_hi"] < 0
    print(
        f"GOAL (report seeds): mean regret {mean_rep:.2f} pt <= {TARGET} pt: {'PASS' if ok_mean else 'FAIL'}; "
        f"below REF ({mean_regret(ref, rep, tasks):.2f} pt) with the paired 95% CI (t over runs) excluding 0: "
        f"{'PASS' if ok_ci else 'FAIL'}  => {'PASS' if ok_mean and ok_ci else 'FAIL'}"
    )
    print()

    # ---- verdict per signal: significantly worse than REF at its best selected setting?
    worse = [sig for sig, r in top_by_signal.items() if r.monitor and t_ci([x for t in tasks for x in paired(r, ref, rep)[t]])[1] > 0]
    tied = [sig for sig, r in top_by_signal.items() if r.monitor and sig not in worse]
    print("Signals whose best selected setting is significantly worse than REF on the report seeds (CI above 0): " + ", ".join(sorted(worse)))
    print("Signals not significantly different from REF at their best selected setting: " + ", ".join(sorted(tied)))
    print()

    # ---- stop weights vs restore best: for each signal's best (smooth, patience), both keeps
    print("Keep the stopping check's weights or restore the best check's? Same signal, smoothing and patience, report seeds, mean regret (pt):")
    for s in MONITOR_SIGNALS:
        r = top_by_signal.get(s)
        if r is None or r.params["patience"] is None:
            continue
        pr = r.params
        pair = {k: next(c for c in cands if c.params == {**pr, "keep": k}) for k in ("stop", "best")}
        print(f"  {s:<14} ma{pr['smooth']} p={pr['patience']}: keep stop {mean_regret(pair['stop'], rep, tasks):5.2f}, restore best {mean_regret(pair['best'], rep, tasks):5.2f}")
    n_better = sum(mean_regret(next(c for c in cands if c.params == {**r.params, "keep": "best"}), sel, tasks) < mean_regret(r, sel, tasks) for r in cands if r.params["keep"] == "stop")
    n_stop = sum(1 for r in cands if r.params["keep"] == "stop")
    n_worse = sum(mean_regret(next(c for c in cands if c.params == {**r.params, "keep": "best"}), sel, tasks) > mean_regret(r, sel, tasks) for r in cands if r.params["keep"] == "stop")
    print(f"  over all {n_stop} (signal, smoothing, patience) settings, selection seeds: restoring the best check beats keeping the stop check in {n_better}, loses in {n_worse}")
    print()

    # ---- leave one source out
    sources = sorted({TASK_SOURCES.get(t, t) for t in tasks})
    print(f"Leave one source out: choose on seeds {select} of the other sources, report on seeds {report} of the source:")
    loso_regret, loso_ref, loso_diff = {}, {}, {}
    for src in sources:
        held = [t for t in tasks if TASK_SOURCES.get(t, t) == src]
        others = [t for t in tasks if t not in held]
        if not others:
            print("  (a single source: nothing to leave out)")
            break
        sel_o = [r for r in sel if r.task in others]
        pick = min(monitor_pool, key=lambda r: score(r, sel_o, others))
        rep_h = [r for r in rep if r.task in held]
        for t in held:
            loso_regret[t] = per_pair(pick, rep_h)[t]
            loso_ref[t] = per_pair(ref, rep_h)[t]
            loso_diff[t] = [a - b for a, b in zip(loso_regret[t], loso_ref[t])]
        print(f"  {src:<15} chose {pick.name:<48} regret {statistics.fmean(x for t in held for x in loso_regret[t]):5.2f} vs REF {statistics.fmean(x for t in held for x in loso_ref[t]):5.2f}")
    allv = [x for t in tasks for x in loso_diff.get(t, [])]
    m, lo, hi = t_ci(allv) if allv else (math.nan,) * 3
    if allv:
        print(
            f"  pooled: LOSO regret {statistics.fmean(statistics.fmean(v) for v in loso_regret.values()):.2f} pt vs REF "
            f"{statistics.fmean(statistics.fmean(v) for v in loso_ref.values()):.2f} pt; Δ {m:+.2f} [{lo:+.2f}, {hi:+.2f}] "
            "(t over runs)"
        )
    print()

    # ---- compute: epochs run
    def epochs_run(rule, runs):
        return statistics.fmean((rule.outcome(r).stop if rule.outcome(r).stop is not None else r.epochs) / r.epochs for r in runs)

    from benchmarks.stopping.gold import report as gold_report

    gold_report(recs, tasks, select, report)
    print()
    print(f"Share of the epochs budget run (report seeds): CHOSEN {epochs_run(chosen_rule, rep):.2f}, REF {epochs_run(ref, rep):.2f}")
    print(
        f"analysis {time.perf_counter() - t0:.0f} s; recordings loaded/recorded in {t_rec:.0f} s; recording cost of the "
        f"{len(recs)} runs (fit + recording passes, as measured when recorded): "
        f"{sum(r.fit_seconds + r.record_seconds for r in recs) / 60:.1f} min; wall time {time.perf_counter() - t_start:.0f} s"
    )
    if args.json:
        blob = {
            "select": select,
            "report": report,
            "tasks": tasks,
            "chosen": chosen.name,
            "chosen_params": chosen.params,
            "report_mean": mean_rep,
            "ci": ci,
            "pass": bool(ok_mean and ok_ci),
            "default_is_chosen": chosen.params == DEFAULT_PARAMS,
            "default_replays_identical": n_same,
            "runs": len(recs),
            "rows": {
                r.name: {"report": mean_regret(r, rep, tasks), "select": mean_regret(r, sel, tasks), "per_pair_report": {t: statistics.fmean(v) for t, v in per_pair(r, rep).items()}} for r in rows
            },
        }
        Path(args.json).write_text(json.dumps(blob, indent=1, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
