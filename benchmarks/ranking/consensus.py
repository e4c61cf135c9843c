"""Label-free estimates of the cheap students' error beyond Dawid–Skene (teacher-ranking benchmark).

``w2s_error`` estimates each cheap student's gold error with a Dawid–Skene label model over the
cheap students' out-of-fold predictions. Dawid–Skene assumes the voters err independently given the
true class; the cheap students share one representation, so they do not. The candidates here are
other label-free estimators of the same quantity, computed from the same votes (cached per task ×
seed under ``data/ranking_votes_<task>_s<seed>.npz``: the cheap students' predicted classes and the
teachers' own labels on the ``rank`` inputs; gold is stored only for the diagnostic printed by
``python -m benchmarks.ranking.consensus`` and is never read by a candidate).

Tried and removed (commit 98642e3, pre-registered): a dependency-aware Dawid–Skene that
down-weights near-duplicate voters (after Varma et al., ICML 2019, "Learning Dependency Structures
for Weak Supervision Models"; weight = 1 / effective number of neighbours): 3 variants — similarity
= agreement in excess of the fitted model's independence prediction with weight 1 / Σ_i s_ij, the
same cut into average-linkage clusters at 0.5 with weight 1 / cluster size, and Cohen's κ in excess
of a one-factor fit. ``make bench-ranking`` at that commit: the best of them (one-factor) ranks at
+0.70 / +0.94 / +0.90 (movie / tweets / fine foods), gain over ``w2s_error`` +0.01 [−0.02, +0.04],
a tie. Why it cannot help here: the weights come out nearly uniform (movie seed 0: 0.41–0.62 for
the 15 cheap students with the excess-agreement similarity, 0.55–0.73 with the one-factor one; no
cluster at 0.5) — every cheap student is a linear head on the same student representation, so
their errors are correlated globally, not within a family that re-weighting could discount, and
near-uniform weights leave the ranking nearly unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.ranking import scores as rs
from benchmarks.ranking import teachers as rt
from lightning_w2s.ranking.label_model import dawid_skene

VOTES_VERSION = 1


def load_votes(task: str, seed: int, data_dir: str) -> dict[str, np.ndarray]:
    """``{"cheap": (n, m), "teachers": (n, m) (-1 = abstain), "gold": (n,)}`` on the rank inputs (cached)."""
    path = Path(data_dir) / f"ranking_votes_{task}_s{seed}.npz"
    names = list(rt.teacher_families(task))
    if path.is_file():
        blob = np.load(path, allow_pickle=False)
        if int(blob["version"]) == VOTES_VERSION and list(blob["names"]) == names:
            return {key: blob[key] for key in ("cheap", "teachers", "gold")}
    ts = rt.build_teachers(task, seed, data_dir)
    rows = ts.splits["train"][: rs.RANK_N]
    out = {"cheap": rs.cheap_predictions(ts).astype(np.int64), "teachers": np.stack([ts.labels[m][rows] for m in names], 1).astype(np.int64), "gold": ts.gold[rows].astype(np.int64)}
    np.savez(path, version=VOTES_VERSION, names=np.array(names), **out)
    return out


# ============================================================================ candidates
# Each takes the (n, m) cheap-student classes (and, for the joint model, the teachers' labels) and
# returns each cheap student's estimated gold error (lower = better), like ``w2s_error``.


def majority_disagreement(cheap: np.ndarray, k: int) -> np.ndarray:
    """Disagreement of each cheap student with the plain majority vote of all cheap students (ties:
    the lowest class). The standard crowdsourcing baseline, and the initialisation of Dawid & Skene
    (1979, §3) before any EM step [heuristic: an error estimate only if the majority is right]."""
    votes = np.stack([(cheap == c).sum(1) for c in range(k)], 1)
    return (cheap != votes.argmax(1)[:, None]).mean(0)


def loo_dawid_skene(cheap: np.ndarray, k: int) -> np.ndarray:
    """Leave-one-out consensus: student ``j``'s expected disagreement with the Dawid–Skene posterior
    fitted on the *other* ``m − 1`` students, ``err_j = mean_i (1 − T^{(−j)}_i[ŷ_ij])``, so a voter
    never votes on the consensus it is scored against (the leave-one-out "peer" scoring of crowd
    workers, e.g. Dawid & Skene's model fitted without the worker; Raykar et al., JMLR 2010, §6
    compare workers to the others' consensus) [heuristic]. A ranking score, not a calibrated error:
    it also counts the consensus' own mistakes (on 6 independent synthetic voters with errors
    0.10…0.40 it gives 0.27…0.43, in the right order)."""
    m = cheap.shape[1]
    out = np.empty(m)
    for j in range(m):
        post = dawid_skene(torch.from_numpy(np.delete(cheap, j, axis=1)), k).posterior.numpy()
        out[j] = 1.0 - post[np.arange(len(cheap)), cheap[:, j]].mean()
    return out


def triplet_error(cheap: np.ndarray, k: int) -> np.ndarray:
    """Fu et al., "Fast and Three-rious: Speeding Up Weak Supervision with Triplet Methods" (ICML
    2020, FlyingSquid), binary case: with votes and truth in {−1, +1} and voters independent given
    the truth with symmetric noise, ``E[λ_i λ_j] = a_i a_j`` where ``a_i = E[λ_i Y] = 2 acc_i − 1``,
    so ``|a_i| = sqrt(|M_ij M_ik / M_jk|)`` for any pair ``j, k``. Fu et al. average the triplets;
    here the **median** over all pairs ``(j, k)`` (robust to the pairs whose errors are correlated,
    which break the identity) [derived under the model; heuristic here]. Sign: ``a_i > 0`` (better
    than chance). Error = ``(1 − a_i) / 2``. Only for ``k = 2``."""
    if k != 2:
        raise ValueError("the triplet method here is the binary one (k = 2)")
    lam = 2.0 * cheap - 1.0
    mom = lam.T @ lam / len(lam)  # (m, m) second moments E[λ_i λ_j]
    m = mom.shape[0]
    out = np.empty(m)
    for i in range(m):
        vals = []
        for j in range(m):
            for kk in range(j + 1, m):
                if i in (j, kk) or abs(mom[j, kk]) < 1e-6:
                    continue
                vals.append(np.sqrt(abs(mom[i, j] * mom[i, kk] / mom[j, kk])))
        a = min(float(np.median(vals)), 1.0)
        out[i] = (1.0 - a) / 2.0
    return out


def joint_dawid_skene(cheap: np.ndarray, teachers: np.ndarray, k: int) -> np.ndarray:
    """Dawid & Skene (1979) over the teachers' own labels and the cheap students jointly (``2m``
    voters, abstentions = no vote); each cheap student's error is ``1 − acc`` from that fit. The
    teachers (different feature sets, rules, a lexicon) add votes whose errors are less tied to the
    student's representation than the cheap students' [heuristic: the model still assumes
    conditional independence, which the pairs (teacher, its own cheap student) break]."""
    fit = dawid_skene(torch.from_numpy(np.concatenate([cheap, teachers], axis=1)), k)
    return 1.0 - fit.accuracy.numpy()[: cheap.shape[1]]


CANDIDATES = {
    "cheap: majority-vote disagreement": lambda v, k: majority_disagreement(v["cheap"], k),
    "cheap: leave-one-out dawid-skene": lambda v, k: loo_dawid_skene(v["cheap"], k),
    "cheap: triplet median": lambda v, k: triplet_error(v["cheap"], k),
    "cheap+teachers: dawid-skene": lambda v, k: joint_dawid_skene(v["cheap"], v["teachers"], k),
}


def candidate_scores(task: str, seed: int, data_dir: str, k: int = 2) -> dict[str, list[float]]:
    """``{candidate: [estimated cheap-student error per teacher]}`` for one task × seed (label-free)."""
    votes = load_votes(task, seed, data_dir)
    votes = {key: votes[key] for key in ("cheap", "teachers")}  # never gold
    return {name: [float(x) for x in fn(votes, k)] for name, fn in CANDIDATES.items()}


if __name__ == "__main__":  # pragma: no cover
    import sys
    import time

    data_dir = sys.argv[1] if len(sys.argv) > 1 else "data"
    for task in rt.TASK_NAMES:
        for seed in (0, 1, 2):
            t0 = time.perf_counter()
            load_votes(task, seed, data_dir)
            print(task, seed, f"{time.perf_counter() - t0:.1f} s", flush=True)
