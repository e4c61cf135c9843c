"""Every candidate ranking score for one task × seed of the teacher-ranking benchmark (cached).

The candidates are computed through the library's public functions
(:func:`lightning_w2s.ranking.scores.score_teachers`, :func:`lightning_w2s.metrics.functional.representation_gap`)
on the ``rank`` inputs: the first :data:`RANK_N` rows of the seed's ``train`` split (the inputs the
teachers label and the W2S student trains on). Nothing here sees gold labels except the anchors
whose names start with ``gold:`` (and ``pred_gap``-style references, not computed here).

Cache: ``data/ranking_scores_<task>_s<seed>.json`` keyed by :data:`VERSION` and the teacher names;
the library's default rows (:func:`library_rows`) in ``data/ranking_library_<task>_s<seed>.json``
keyed by :data:`LIBRARY_VERSION`. The other ``w2s_error`` rows (C = 0.3 / 3, labels only, n = 1,000)
are read from the scores cache as built: in the caches the figures in docs/ranking.md were printed
from, before the dependence handling (every teacher an independent voter).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.ranking.teachers import TeacherSet, teacher_families
from lightning_w2s.metrics.functional import representation_gap
from lightning_w2s.ranking.cheap_student import crossfit_students
from lightning_w2s.ranking.scores import score_teachers

VERSION = 3
#: The rows that depend on the label model's dependence handling, cached on their own (so a change of the
#: library recomputes them without the 30 gap constructions): :func:`library_rows`.
LIBRARY_VERSION = 8
RANK_N = 4000
SMALL_N = 1000
#: The label-free representation-gap constructions tried (features only): top-k principal
#: components x (reg, reg_relative_to). (0.1, "n") with 32 PCs is the default at base commit
#: 09b38a2; (0.1, "n") without truncation is the plain functional default ("full rank").
GAP_COMPONENTS = (4, 16, 32, 64, None)
GAP_REGS = ((0.1, "n"), (0.1, "dim"), (1.0, "dim"))
STUDENT_CS = (0.3, 1.0, 3.0)


def gap_name(key: str, k: int | None, reg: float, rel: str) -> str:
    return f"gap:{key} pcs={'all' if k is None else k} reg={reg}/{rel}"


BASE_DEFAULT = gap_name("fro", 32, 0.1, "n")
FULL_RANK = gap_name("fro", None, 0.1, "n")


def _outputs(ts: TeacherSet, rows: np.ndarray, hard: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for name in ts.names:
        p = ts.probs[name]
        out[name] = torch.from_numpy(ts.labels[name][rows]) if hard or p is None else torch.from_numpy(p[rows])
    return out


ORACLE = "gold: cheap student error"
#: ``w2s_error`` (C = 1) with ``dependence_threshold=None``: the label model before dependence handling.
INDEPENDENT = "w2s_error C=1.0 (dependence off)"


def cheap_predictions(ts: TeacherSet) -> np.ndarray:
    """``(n, m)`` out-of-fold classes, on the rank inputs, of the cheap students ``w2s_error`` ranks
    (C = 1, 5 folds, seed = ``ts.seed``; soft targets where the teacher gives probabilities)."""
    rows = ts.splits["train"][:RANK_N]
    k = ts.num_classes
    targets = torch.zeros(len(rows), len(ts.names), k, dtype=torch.float64)
    for j, name in enumerate(ts.names):
        p = ts.probs[name]
        if p is not None:
            targets[:, j] = torch.from_numpy(p[rows]).double()
        else:
            lab = torch.from_numpy(ts.labels[name][rows])
            known = lab >= 0
            targets[known, j] = torch.nn.functional.one_hot(lab[known], k).double()
    return crossfit_students(torch.from_numpy(ts.student[rows]), targets, seed=ts.seed).argmax(-1).numpy()


def cheap_student_oracle(ts: TeacherSet) -> list[float]:
    """The gold error, on the rank inputs, of the cheap students ``w2s_error`` ranks (their
    out-of-fold predictions; C = 1): how well the proxy tracks the real students, before any
    label model. Needs gold: a diagnostic, not a candidate."""
    pred = cheap_predictions(ts)
    gold = ts.gold[ts.splits["train"][:RANK_N]]
    return [float((pred[:, j] != gold).mean()) for j in range(len(ts.names))]


def compute(ts: TeacherSet) -> dict[str, list[float]]:
    """``{candidate: [value per teacher in ts.names]}`` (lower = better for every candidate)."""
    rows = ts.splits["train"][:RANK_N]
    names = ts.names
    s = torch.from_numpy(ts.student[rows])
    outs = _outputs(ts, rows)
    res: dict[str, list[float]] = {}
    for c in STUDENT_CS:
        if c != 1.0:  # C = 1 (the library's default): library_rows
            sc = score_teachers(s, teacher_outputs=outs, scores=("w2s_error",), student_c=c, seed=ts.seed)
            res[f"w2s_error C={c}"] = [sc["w2s_error"][m] for m in names]
    # robustness rows (not candidates): hard labels only; 1,000 inputs
    sc = score_teachers(s, teacher_outputs=_outputs(ts, rows, hard=True), scores=("w2s_error",), seed=ts.seed)
    res["w2s_error (labels only)"] = [sc["w2s_error"][m] for m in names]
    small = rows[:SMALL_N]
    sc = score_teachers(torch.from_numpy(ts.student[small]), teacher_outputs=_outputs(ts, small), scores=("w2s_error",), seed=ts.seed)
    res[f"w2s_error (n={SMALL_N})"] = [sc["w2s_error"][m] for m in names]
    # features-only gaps; teachers sharing a feature array (flips, biased variants) share the value
    by_array: dict[int, dict[str, float]] = {}
    for name in names:
        feats = ts.features[name]
        if id(feats) not in by_array:
            w = torch.from_numpy(np.ascontiguousarray(feats[rows]))
            vals = {}
            for k in GAP_COMPONENTS:
                for reg, rel in GAP_REGS:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        g = representation_gap(s, w, reg=reg, max_components=k, reg_relative_to=rel)
                    for key in ("fro", "op"):
                        vals[gap_name(key, k, reg, rel)] = float(g[key])
            by_array[id(feats)] = vals
        for key, v in by_array[id(feats)].items():
            res.setdefault(key, []).append(v)
    # Xue's gap with the teacher's own labels projected (teacher labels in place of gold)
    for k in (32, None):
        vals = []
        for name in names:
            lab = torch.from_numpy(ts.labels[name][rows])
            g = representation_gap(s, torch.from_numpy(np.ascontiguousarray(ts.features[name][rows])), labels=lab, reg=0.1, max_components=k)
            vals.append(float(g["pred_gap"]))
        res[f"projected_gap pcs={'all' if k is None else k}"] = vals
    # anchors and diagnostics (need gold)
    res[ORACLE] = cheap_student_oracle(ts)
    res["gold: teacher error"] = [1.0 - ts.teacher_accuracy[m] for m in names]
    lab = np.stack([ts.labels[m][rows] for m in names], 1)
    votes = np.stack([(lab == c).sum(1) for c in range(ts.num_classes)], 1)
    majority = votes.argmax(1)
    res["majority-vote disagreement"] = [float(((lab[:, j] != majority) & (lab[:, j] >= 0)).sum() / max((lab[:, j] >= 0).sum(), 1)) for j in range(len(names))]
    return res


def library_rows(ts: TeacherSet) -> tuple[dict[str, list[float]], list[str]]:
    """The library's default scores (``w2s_error`` C = 1, ``teacher_error``, the ``misfit``
    ingredient) with the dependence handling on (the default) and off (``dependence_threshold=None``,
    rows named ``... (dependence off)``), and the UserWarnings of the default call."""
    rows = ts.splits["train"][:RANK_N]
    s = torch.from_numpy(ts.student[rows])
    outs = _outputs(ts, rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc = score_teachers(s, teacher_outputs=outs, scores=("w2s_error", "teacher_error"), seed=ts.seed)
    res = {"w2s_error C=1.0": sc["w2s_error"], "teacher_error": sc["teacher_error"], "misfit": sc["misfit"]}
    sc = score_teachers(s, teacher_outputs=outs, scores=("w2s_error", "teacher_error"), seed=ts.seed, dependence_threshold=None)
    res.update({INDEPENDENT: sc["w2s_error"], "teacher_error (dependence off)": sc["teacher_error"]})
    return {k: [v[m] for m in ts.names] for k, v in res.items()}, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def load_library_rows(task: str, seed: int, data_dir: str, ts: TeacherSet | None = None) -> tuple[dict[str, list[float]], list[str]] | None:
    """Cached :func:`library_rows` (``data/ranking_library_<task>_s<seed>.json``), computed from
    ``ts`` when absent (``None`` when absent and no ``ts``)."""
    path = Path(data_dir) / f"ranking_library_{task}_s{seed}.json"
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("version") == LIBRARY_VERSION and blob.get("names") == list(teacher_families(task)):
            return blob["scores"], blob["warnings"]
    if ts is None:
        return None
    scores, warned = library_rows(ts)
    path.write_text(json.dumps({"version": LIBRARY_VERSION, "names": ts.names, "scores": scores, "warnings": warned}))
    return scores, warned


def cached_scores(task: str, seed: int, data_dir: str) -> dict[str, list[float]] | None:
    path = Path(data_dir) / f"ranking_scores_{task}_s{seed}.json"
    if path.is_file():
        blob = json.loads(path.read_text())
        if blob.get("version") == VERSION and blob.get("names") == list(teacher_families(task)):
            return blob["scores"]
    return None


def load_scores(ts: TeacherSet, data_dir: str) -> tuple[dict[str, list[float]], float]:
    """Cached :func:`compute` and the seconds it took when it ran (0 when read from the cache)."""
    path = Path(data_dir) / f"ranking_scores_{ts.task}_s{ts.seed}.json"
    cached = cached_scores(ts.task, ts.seed, data_dir)
    if cached is not None and ORACLE not in cached:  # caches written before the diagnostic existed
        cached[ORACLE] = cheap_student_oracle(ts)
        blob = json.loads(path.read_text())
        blob["scores"] = cached
        path.write_text(json.dumps(blob))
    if cached is not None:
        return cached, 0.0
    t0 = time.perf_counter()
    scores = compute(ts)
    seconds = time.perf_counter() - t0
    path.write_text(json.dumps({"version": VERSION, "names": ts.names, "scores": scores, "seconds": seconds}))
    return scores, seconds


def describe_candidate(name: str) -> dict[str, Any]:
    """Which selection pool a candidate belongs to."""
    if name.startswith("gold:") or name == "majority-vote disagreement" or "(" in name:
        return {"pool": None}
    if name.startswith("gap:"):
        return {"pool": "features"}
    return {"pool": "outputs"}
