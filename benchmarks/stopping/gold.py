"""Gold budgets of the stopping benchmark (docs/gold.md): which check to keep when the probe has ``k`` gold points?

Each recorded run (:mod:`benchmarks.stopping.record`) stores the student's logits on the whole probe
at every check, and the probe's gold labels. A **gold draw** gives the probe gold on ``k`` random
points (``k`` = 30 / 100 / 300; :data:`DRAWS` seeded draws per run, the same draws for every rule);
a rule sees, per check, the student's accuracy on those ``k`` points (what ``W2SMonitor`` logs as
the gold accuracy) and the label-free ``teacher_label_ce`` of the whole probe, and keeps one check.
Regret (pt) = 100 x (best epoch's test accuracy - kept check's), averaged over the draws of a run.
When to stop is left to the label-free default (``W2SEarlyStopping()``: plateau on
``teacher_label_ce``, patience 5; its stop check ``S``): the gold rules choose among checks ``1..S``
— except the naive whole-run checkpoint, which trains all epochs.

Pre-registered candidates (written before any gold replay was run; :mod:`lightning_w2s.stopping.gold_rule`):

* ``label_free`` — ``W2SEarlyStopping()`` today (gold unused);
* ``naive`` — the best gold-accuracy check among ``1..S``; ``naive, whole run`` — among ``1..E``
  (``ModelCheckpoint`` on gold accuracy: the naive best-gold checkpoint of the goal);
* ``smooth(3)`` — the best trailing 3-check mean of gold accuracy;
* ``top_m(3)``, ``top_m(5)`` — gold decides among the 3 / 5 checks with the lowest ``teacher_label_ce``;
* ``gate(1)``, ``gate(1.645)`` — the gold-best check replaces the label-free best only when its gold
  accuracy is higher by more than 1 / 1.645 standard errors of a difference of two proportions;
* ``ppi_naive`` — the best PPI++ estimate of the accuracy (agreement with the teacher as predictor on
  the probe points without gold; :func:`lightning_w2s.metrics.gold_intervals.ppi_mean_from_sums`).

Choice: per budget, the candidate with the lowest mean regret over pairs on the selection seeds
(0-3). Report: seeds 4-7, mean regret per pair, and paired differences (per run, draw-averaged)
against REF (``EarlyStopping(val_loss, patience=3)`` + ``ModelCheckpoint(val_loss)`` restored: what
users run) and against the naive whole-run best-gold checkpoint, with 95% t intervals over runs.
Goal (not tuned to): at k = 300 below REF with the CI excluding 0 and no worse than the naive
checkpoint; at k = 30, 100 never more than 0.1 pt worse than REF on average.

    python -m benchmarks.stopping.gold [--data data] [--tasks ...] [--seeds 0 ... 7]   # cached recordings only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import zlib
from collections.abc import Sequence

import numpy as np

from benchmarks.stopping.rules import Rule, package_default_outcome, package_teacher_label_ce

BUDGETS = (30, 100, 300)
DRAWS = 20


def _candidates():
    """The pre-registered candidates (module docstring), as the package's gold rules."""
    from lightning_w2s.stopping.gold_rule import GoldRule

    return {
        "label_free [W2SEarlyStopping() today]": GoldRule("label_free"),
        "naive": GoldRule("naive"),
        "naive, whole run [NAIVE]": GoldRule("naive", whole_run=True),
        "smooth(3)": GoldRule("smooth", 3),
        "top_m(3)": GoldRule("top_m", 3),
        "top_m(5)": GoldRule("top_m", 5),
        "gate(1)": GoldRule("gate", 1.0),
        "gate(1.645)": GoldRule("gate", 1.645),
        "ppi_naive": GoldRule("naive", estimate="ppi"),
    }


CANDIDATES = _candidates()
NAIVE = "naive, whole run [NAIVE]"


def gold_draws(rec, k: int, draws: int = DRAWS) -> np.ndarray:
    """``(draws, k)`` probe rows given gold in each draw (seeded by task, seed and ``k``)."""
    known = np.flatnonzero(rec.probe_gold >= 0)
    rng = np.random.default_rng([zlib.crc32(rec.task.encode()), rec.seed, k])
    return np.stack([rng.choice(known, size=min(k, len(known)), replace=False) for _ in range(draws)])


def _per_check(rec):
    """``(C, n)`` correctness against gold and agreement with the teacher (0 where it abstains)."""
    if not hasattr(rec, "_gold_cache"):
        pred = rec.probe_logits.argmax(-1)
        correct = pred == rec.probe_gold[None]
        agree = (pred == rec.probe_teacher.argmax(-1)[None]) & rec.probe_covered[None]
        rec._gold_cache = (correct, agree)
    return rec._gold_cache


def ppi_accuracy(correct: np.ndarray, agree: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per check, the PPI++ estimate of the accuracy with gold on ``idx`` (the package's estimator)."""
    import torch

    from lightning_w2s.metrics.gold_intervals import ppi_mean_from_sums

    lab = np.zeros(correct.shape[1], dtype=bool)
    lab[idx] = True
    y, f, fu = correct[:, lab].astype(float), agree[:, lab].astype(float), agree[:, ~lab].astype(float)
    sums = {
        "n": np.full(len(y), y.shape[1], float),
        "sum_y": y.sum(1),
        "sum_f": f.sum(1),
        "sum_yy": y.sum(1),
        "sum_ff": f.sum(1),
        "sum_yf": (y * f).sum(1),
        "n_unlabelled": np.full(len(y), fu.shape[1], float),
        "sum_fu": fu.sum(1),
        "sum_fufu": fu.sum(1),
    }
    return ppi_mean_from_sums({k: torch.from_numpy(v) for k, v in sums.items()})["estimate"].numpy()


def gold_regret(rec, label: str, k: int) -> float:
    """Mean regret over the gold draws of candidate ``label`` with budget ``k`` on ``rec``."""
    from lightning_w2s.stopping.gold_rule import gold_kept_check

    rule = CANDIDATES[label]
    stop = package_default_outcome(rec).stop
    last = rec.epochs if rule.whole_run or stop is None else stop
    lf = package_teacher_label_ce(rec)[1 : last + 1]
    correct, agree = _per_check(rec)
    out = []
    for idx in gold_draws(rec, k):
        acc = ppi_accuracy(correct, agree, idx) if rule.estimate == "ppi" else correct[:, idx].mean(1)
        i = gold_kept_check(list(acc[1 : last + 1]), list(lf), len(idx), rule)
        out.append(rec.regret(1 + i))
    return float(np.mean(out))


def candidate_rules(k: int) -> list[Rule]:
    return [Rule(label, "gold", True, lambda r, label=label: gold_regret(r, label, k), {"k": k, "rule": rule}) for label, rule in CANDIDATES.items()]


def ref_rule(recs) -> Rule:
    """REF of :mod:`benchmarks.stopping` (``EarlyStopping(val_loss, patience=3)`` + ``ModelCheckpoint(val_loss)``
    restored), with the per-check views of Lightning's logged ``val_loss`` it reads set on ``recs``."""
    from benchmarks.stopping.run import REF, baseline_rules

    for r in recs:
        if not hasattr(r, "logged_val_loss_checks"):
            r.logged_val_loss_checks = np.concatenate([[np.nan], r.logged_val_loss])
            r.logged_val_auroc_checks = np.concatenate([[np.nan], r.logged_val_auroc])
    return next(r for r in baseline_rules() if r.name == REF)


def _mean_over_pairs(rule: Rule, runs, tasks) -> float:
    per = [statistics.fmean(v) for v in ([rule.regret(r) for r in runs if r.task == t] for t in tasks) if v]
    return statistics.fmean(per) if per else float("nan")


def report(recs, tasks: Sequence[str], select: Sequence[int], report_seeds: Sequence[int], log=print) -> dict:
    """Print the gold-budget tables (choice on ``select``, report on ``report_seeds``); return the choices."""
    from benchmarks.stopping.run import SHORT, t_ci

    sel = [r for r in recs if r.seed in select]
    rep = [r for r in recs if r.seed in report_seeds]
    ref = ref_rule(recs)
    tasks = [t for t in tasks if any(r.task == t for r in recs)]
    counts = {t: (sum(r.task == t for r in sel), sum(r.task == t for r in rep)) for t in tasks}
    log(
        f"GOLD BUDGETS: k gold probe points, {DRAWS} random draws per run (the same for every rule); the label-free default "
        f"decides when to stop, the rule which check to keep; chosen on seeds {list(select)}, reported on seeds "
        f"{list(report_seeds)}; runs (select/report) per pair: " + ", ".join(f"{SHORT.get(t, t)} {a}/{b}" for t, (a, b) in counts.items())
    )
    choices = {}
    for k in BUDGETS:
        rules = candidate_rules(k)
        ranked = sorted(rules, key=lambda r: round(_mean_over_pairs(r, sel, tasks), 9))
        chosen = ranked[0]
        choices[k] = chosen.name
        naive = next(r for r in rules if r.name == NAIVE)
        cols = [SHORT.get(t, t)[:8] for t in tasks]
        log(f"\nk = {k}: mean regret (pt) on the report seeds per pair, mean over pairs, selection mean; paired Δ (report runs) vs REF and vs NAIVE [95% CI, t over runs]")
        log("  " + "rule".ljust(47) + "".join(c.rjust(9) for c in cols) + "mean".rjust(7) + "select".rjust(8) + "   Δ vs REF".ljust(26) + "   Δ vs NAIVE")
        for rule in [ref] + rules:
            per = [statistics.fmean([rule.regret(r) for r in rep if r.task == t]) if counts[t][1] else float("nan") for t in tasks]
            line = "  " + (("CHOSEN " if rule is chosen else "") + rule.name).ljust(47) + "".join(f"{x:9.2f}" for x in per)
            line += f"{_mean_over_pairs(rule, rep, tasks):7.2f}{_mean_over_pairs(rule, sel, tasks):8.2f}"
            for base in (ref, naive):
                if rule is base:
                    line += "".ljust(26)
                    continue
                m, lo, hi = t_ci([rule.regret(r) - base.regret(r) for r in rep])
                line += f"   {m:+5.2f} [{lo:+5.2f}, {hi:+5.2f}]".ljust(26)
            log(line)
        m_ref, lo_ref, hi_ref = t_ci([chosen.regret(r) - ref.regret(r) for r in rep])
        m_nv, lo_nv, hi_nv = t_ci([chosen.regret(r) - naive.regret(r) for r in rep])
        if k == max(BUDGETS):
            verdict = f"below REF with the CI excluding 0: {'PASS' if hi_ref < 0 else 'FAIL'}; no worse than NAIVE (mean Δ <= 0): {'PASS' if m_nv <= 0 else 'FAIL'}"
        else:
            verdict = f"never worse than REF by more than 0.1 pt on average: {'PASS' if m_ref <= 0.1 else 'FAIL'}"
        log(f"  k = {k}: chosen on the selection seeds: {chosen.name}; report Δ vs REF {m_ref:+.2f} [{lo_ref:+.2f}, {hi_ref:+.2f}], vs NAIVE {m_nv:+.2f} [{lo_nv:+.2f}, {hi_nv:+.2f}] -> {verdict}")
    from lightning_w2s.stopping.gold_rule import gold_default_for

    same = {k: gold_default_for(k)[0] == CANDIDATES[name] for k, name in choices.items()}
    log(
        "\nW2SEarlyStopping()'s gold rules (lightning_w2s.stopping.gold_rule.GOLD_DEFAULTS) at each budget vs this choice: "
        + ", ".join(f"k = {k}: {gold_default_for(k)[0].name} ({'the same' if same[k] else 'DIFFERENT'})" for k in choices)
    )
    return choices


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.shared.tasks import DEFAULT_DATA, TASKS
    from benchmarks.stopping.record import RECORD_VERSION, Recording, recording_path
    from benchmarks.stopping.run import SEEDS, SELECT_SEEDS, SHORT

    ap = argparse.ArgumentParser(prog="python -m benchmarks.stopping.gold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--tasks", nargs="*", default=list(SHORT), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    ap.add_argument("--select-seeds", type=int, nargs="*", default=list(SELECT_SEEDS))
    args = ap.parse_args(argv)
    recs, missing = [], []
    for t in args.tasks:
        for s in args.seeds:
            path = recording_path(args.data, t, s)
            rec = Recording.load(path) if path.is_file() else None
            if rec is None or (rec.meta or {}).get("version") != RECORD_VERSION:
                missing.append(f"{SHORT.get(t, t)}/{s}")
                continue
            recs.append(rec)
    print(f"{len(recs)} cached recordings; missing (not recorded, left out): {', '.join(missing) if missing else 'none'}")
    report(recs, args.tasks, [s for s in args.seeds if s in args.select_seeds], [s for s in args.seeds if s not in args.select_seeds])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
