"""Adversarial teachers for the teacher-ranking benchmark: what each score does with copies,
a constant teacher and a worse-than-chance teacher (``make bench-ranking``, last section).

Per task × seed, beside the 15 real teachers of :mod:`benchmarks.ranking.teachers`:

* ``copy`` — an exact copy of the *original*: the real teacher whose W2S student has the median gold
  error that seed (gold picks which teacher is copied, nothing else);
* ``near copy`` — the original with 5% of its labelled rows relabelled with a uniformly random class
  (hard labels);
* ``inverted`` — the original's labels swapped (worse than chance; probabilities reversed);
* ``constant`` — the original's majority class on every row.

Each adversarial teacher's W2S student is trained like the real ones (``LogisticRegression(C=1)``
on MiniLM, covered train rows, gold test error); the copy's is the original's. The library is then
called on the 4,000 ``rank`` inputs with the 15 real teachers plus copy, near copy and inverted, for
each label-model score with the dependence handling on (the default) and off
(``dependence_threshold=None``, the earlier behaviour), and once more with the constant teacher
added (it must be rejected with an error naming it). Recorded: every score, the warnings, and the
error. Cached as ``data/ranking_adversarial_<task>_s<seed>.json``.

A copy is *fooling* a score when it ranks above a real teacher that the same score ranks above the
original on the 15 real teachers alone (copying gained it a place); the next column keeps only the
teachers among those whose W2S student is also better than the original's by gold (a copy rose
above a teacher that *is* better than the original: the goal's reading). Also counted: a copy above a
real teacher whose W2S student is better than the original's (lower gold error) — which also
counts the score's own ranking errors, since the original itself may rank above such a teacher.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.ranking import scores as rs
from benchmarks.ranking import teachers as rt
from lightning_w2s.ranking.scores import rank_teachers, score_teachers

VERSION = 8
ADVERSARIES = ("copy", "near copy", "inverted")
VARIANTS = {  # label: (score, dependence_threshold, the same score's row on the 15 teachers in benchmarks.ranking.scores)
    "w2s_error (default)": ("w2s_error", "default", "w2s_error C=1.0"),
    "w2s_error, dependence off": ("w2s_error", None, rs.INDEPENDENT),
    "teacher_error": ("teacher_error", "default", "teacher_error"),
    "teacher_error, dependence off": ("teacher_error", None, "teacher_error (dependence off)"),
}
NEAR_SHARE = 0.05


def adversaries(ts: rt.TeacherSet) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray | None], dict[str, float]]:
    """``(original, labels, probs, student_error)`` of the adversarial teachers (all rows)."""
    order = sorted(ts.names, key=lambda m: ts.student_error[m])
    original = order[len(order) // 2]
    rng = np.random.default_rng(5000 + ts.seed)
    lab, prob = ts.labels[original], ts.probs[original]
    near = lab.copy()
    pick = (lab >= 0) & (rng.random(len(lab)) < NEAR_SHARE)
    near[pick] = rng.integers(0, ts.num_classes, int(pick.sum()))
    inverted = np.where(lab >= 0, ts.num_classes - 1 - lab, -1)
    known = lab[lab >= 0]
    constant = np.full_like(lab, int(np.bincount(known, minlength=ts.num_classes).argmax()))
    labels = {"copy": lab.copy(), "near copy": near, "inverted": inverted, "constant": constant}
    probs = {"copy": None if prob is None else prob.copy(), "near copy": None, "inverted": None if prob is None else prob[:, ::-1].copy(), "constant": None}
    tr, te = ts.splits["train"], ts.splits["test"]
    errors = {"copy": ts.student_error[original]}
    for name in ("near copy", "inverted"):
        cov = labels[name][tr] >= 0
        model = rt._lr(ts.student[tr][cov], labels[name][tr][cov], ts.seed)
        errors[name] = float((model.predict(ts.student[te]) != ts.gold[te]).mean())
    return original, labels, probs, errors


def _call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str], str | None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args, **kwargs)
        except (ValueError, TypeError) as err:
            return None, [str(w.message) for w in caught], f"{type(err).__name__}: {err}"
    return out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)], None


def compute(ts: rt.TeacherSet) -> dict[str, Any]:
    rows = ts.splits["train"][: rs.RANK_N]
    s = torch.from_numpy(ts.student[rows])
    original, labels, probs, errors = adversaries(ts)
    outs = rs._outputs(ts, rows)
    for name in ADVERSARIES:
        p = probs[name]
        outs[name] = torch.from_numpy(labels[name][rows] if p is None else p[rows])
    result: dict[str, Any] = {"original": original, "student_error": {**ts.student_error, **errors}, "scores": {}, "warnings": {}}
    for dep in ("default", None):
        kwargs = {} if dep == "default" else {"dependence_threshold": dep}
        out, warned, err = _call(score_teachers, s, teacher_outputs=outs, scores=("w2s_error", "teacher_error"), seed=ts.seed, **kwargs)
        for label, (score, d, _) in VARIANTS.items():
            if d == dep:
                result["scores"][label] = None if out is None else out[score]
                result["warnings"][label] = warned if err is None else warned + [err]
    const = dict(outs, constant=torch.from_numpy(labels["constant"][rows]))
    _, _, err = _call(rank_teachers, s, teacher_outputs=const, seed=ts.seed)
    result["constant"] = err or "accepted (no error)"
    return result


def load(task: str, seed: int, data_dir: str, ts: rt.TeacherSet | None = None) -> dict[str, Any] | None:
    """The cached result, or computed from ``ts`` (``None`` when absent and no ``ts`` is given)."""
    path = Path(data_dir) / f"ranking_adversarial_{task}_s{seed}.json"
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("version") == VERSION and blob.get("names") == list(rt.teacher_families(task)):
            return blob["result"]
    if ts is None:
        return None
    result = compute(ts)
    path.write_text(json.dumps({"version": VERSION, "names": ts.names, "result": result}))
    return result


def report(results: dict[str, dict[int, dict[str, Any]]], data: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per task × score variant: mean rank (over seeds) of the original and of each
    adversary among the 18 teachers; how often a copy (2 per seed) ranks above a real teacher whose
    W2S student beats the original's (gold), and above a real teacher that the same score ranked
    above the original on the 15 teachers alone (``data``: :func:`benchmarks.ranking.gather`), i.e.
    what copying gained; whether the group was warned about; whether the inverted teacher was."""
    rows = []
    for task, seeds in results.items():
        names = list(rt.teacher_families(task))
        for label, (_, _, row15) in VARIANTS.items():
            ranks: dict[str, list[int]] = {k: [] for k in ("original", *ADVERSARIES)}
            above_gold, above_own, rose, warned_inv, grouped, m = 0, 0, 0, 0, 0, 0
            for seed, res in seeds.items():
                sc = res["scores"][label]
                if sc is None:
                    continue
                order = sorted(sc, key=lambda t: sc[t])
                m = len(order)
                orig = res["original"]
                err = res["student_error"]
                alone = dict(zip(names, data[task][seed]["scores"][row15]))
                ranks["original"].append(order.index(orig) + 1)
                for adv in ADVERSARIES:
                    ranks[adv].append(order.index(adv) + 1)
                better_gold = [t for t in names if err[t] < err[orig]]
                better_own = [t for t in names if alone[t] < alone[orig]]
                better_both = [t for t in better_gold if t in better_own]
                for adv in ("copy", "near copy"):
                    above_gold += any(order.index(adv) < order.index(t) for t in better_gold)
                    above_own += any(order.index(adv) < order.index(t) for t in better_own)
                    rose += any(order.index(adv) < order.index(t) for t in better_both)
                text = " ".join(res["warnings"][label])
                warned_inv += "'inverted'" in text and "worse than chance" in text
                grouped += all(f"'{t}'" in text for t in (orig, "copy", "near copy")) and "agree far beyond" in text
            n = len(ranks["original"])
            row = {"task": task, "score": label}
            for k, v in ranks.items():
                row[f"{k} rank"] = f"{np.mean(v):.1f}/{m}" if v else "error"
            row["copies above a better student (gold)"] = f"{above_gold}/{2 * n}"
            row["copies above a teacher ranked above the original without them"] = f"{above_own}/{2 * n}"
            row["of which better than the original by gold"] = f"{rose}/{2 * n}"
            row["copies grouped"] = f"{grouped}/{n}"
            row["inverted warned"] = f"{warned_inv}/{n}"
            rows.append(row)
    return rows
