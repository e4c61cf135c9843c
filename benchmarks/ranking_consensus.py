"""Label-free estimates of the cheap students' error beyond Dawid–Skene (teacher-ranking benchmark).

``w2s_error`` estimates each cheap student's gold error with a Dawid–Skene label model over the
cheap students' out-of-fold predictions. Dawid–Skene assumes the voters err independently given the
true class; the cheap students share one representation, so they do not. The candidates here are
other label-free estimators of the same quantity, computed from the same votes (cached per task ×
seed under ``data/ranking_votes_<task>_s<seed>.npz``: the cheap students' predicted classes and the
teachers' own labels on the ``rank`` inputs; gold is stored only for the diagnostic printed by
``python -m benchmarks.ranking_consensus`` and is never read by a candidate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks import ranking_scores as rs
from benchmarks import ranking_teachers as rt
from lightning_w2s.metrics.label_model import dawid_skene

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
    out = {
        "cheap": rs.cheap_predictions(ts).astype(np.int64),
        "teachers": np.stack([ts.labels[m][rows] for m in names], 1).astype(np.int64),
        "gold": ts.gold[rows].astype(np.int64),
    }
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


# ---------------------------------------------------------------------- dependency-aware Dawid–Skene
# Pre-registered (fixed before any per-task ρ was seen; only synthetic votes were looked at): 3
# variants, 3 reweighting rounds each, no other variant or threshold tried —
#   "dependency-weighted": similarity = agreement in excess of the fitted Dawid–Skene model's
#       (:func:`excess_agreement`), weight 1 / Σ_i s_ij;
#   "cluster-weighted": the same similarity, average-linkage clusters of 1 − s cut at distance 0.5,
#       weight 1 / cluster size;
#   "factor-weighted": similarity = Cohen's κ in excess of a one-factor fit κ_ij ≈ q_i q_j
#       (:func:`factor_excess`), weight 1 / Σ_i s_ij.
# On synthetic votes (independent voters + a cluster of near-copies of one 0.7-accurate voter) the
# first two leave the plain fit unchanged: once the model has taken the cluster for the truth, the
# cluster's agreement is "explained" and shows no excess; the factor fit is captured the same way
# when the cluster is large (4 copies among 9 voters). Which is why the benchmark, not the idea, decides.
DEP_ROUNDS = 3
DEP_CLUSTER_CUT = 0.5


def excess_agreement(votes: np.ndarray, prior: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """``(m, m)`` similarity ``s_ij ∈ [0, 1]``: the voters' agreement in excess of what the fitted
    Dawid–Skene model predicts under conditional independence, as a share of the room left,
    ``s_ij = clip((o_ij − e_ij) / (1 − e_ij), 0, 1)``, with ``o_ij`` the observed agreement rate (on
    inputs both vote on) and ``e_ij = Σ_y π_y Σ_c C_i[y, c] C_j[y, c]`` the model's; ``s_ii = 1``.
    A Cohen's-κ-style chance correction whose "chance" is the independence model (Varma et al.,
    ICML 2019, "Learning Dependency Structures for Weak Supervision Models": dependencies show up as
    excess covariance of the votes beyond what the latent class explains) [heuristic]."""
    m = votes.shape[1]
    both = (votes[:, :, None] >= 0) & (votes[:, None, :] >= 0)
    same = both & (votes[:, :, None] == votes[:, None, :])
    obs = same.sum(0) / np.maximum(both.sum(0), 1)
    exp = np.einsum("y,iyc,jyc->ij", prior, confusion, confusion)
    s = np.clip((obs - exp) / np.maximum(1.0 - exp, 1e-12), 0.0, 1.0)
    s[np.arange(m), np.arange(m)] = 1.0
    return s


def factor_excess(votes: np.ndarray, k: int, rounds: int = DEP_ROUNDS) -> np.ndarray:
    """``(m, m)`` similarity from a one-factor model of the voters' chance-corrected agreement: with
    ``κ_ij`` Cohen's κ of voters ``i, j`` (chance from their marginals), conditional independence
    given a binary class with symmetric noise gives ``κ_ij = q_i q_j`` off the diagonal (``q_i = 2
    acc_i − 1`` for balanced classes: the rank-one structure behind Fu et al. 2020's triplets and
    the low-rank part of Varma et al. 2019's sparse + low-rank decomposition). ``q`` is fitted by
    weighted least squares on the off-diagonal entries, each pair weighted ``w_i w_j``; dependencies
    are the excess ``s_ij = clip((κ_ij − q_i q_j) / (1 − q_i q_j), 0, 1)``; the weights are then
    ``w_j = 1 / Σ_i s_ij`` and the fit is repeated ``rounds`` times, so that a cluster stops pulling
    the factor towards itself [heuristic]."""
    n, m = votes.shape
    marg = np.stack([(votes == c).mean(0) for c in range(k)], 1)
    chance = marg @ marg.T
    kap = ((votes[:, :, None] == votes[:, None, :]).mean(0) - chance) / np.maximum(1.0 - chance, 1e-12)
    off = ~np.eye(m, dtype=bool)
    w = np.ones(m)
    s = np.eye(m)
    for _ in range(rounds + 1):
        pw = np.outer(w, w) * off
        q = np.sqrt(np.clip((kap * off).sum(1) / (m - 1), 1e-6, 1.0))
        for _ in range(100):
            q = np.clip((pw * kap) @ q / np.maximum(pw @ (q * q), 1e-12), 0.0, 1.0)
        qq = np.outer(q, q)
        s = np.clip((kap - qq) / np.maximum(1.0 - qq, 1e-12), 0.0, 1.0)
        np.fill_diagonal(s, 1.0)
        w = 1.0 / s.sum(0)
    return s


def cluster_sizes(sim: np.ndarray, cut: float = DEP_CLUSTER_CUT) -> np.ndarray:
    """Each voter's cluster size: average linkage on the distance ``1 − s``, cut at ``cut``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - (sim + sim.T) / 2.0
    np.fill_diagonal(d, 0.0)
    labels = fcluster(linkage(squareform(d, checks=False), method="average"), t=cut, criterion="distance")
    return np.bincount(labels)[labels].astype(float)


def dependency_weighted_dawid_skene(cheap: np.ndarray, k: int, how: str = "soft", rounds: int = DEP_ROUNDS) -> np.ndarray:
    """Dawid–Skene with near-duplicate voters down-weighted so that a cluster of correlated voters
    counts about as one voter. From the current fit (first: the plain model), the excess-agreement
    similarity ``s`` (:func:`excess_agreement`, after Varma et al. 2019) gives each voter a weight —
    ``how="soft"``: ``w_j = 1 / Σ_i s_ij``, the effective number of voters (the sequence reweighting
    of protein alignments, 1 / number of near-identical neighbours: Henikoff & Henikoff 1994,
    Morcos et al. PNAS 2011); ``how="cluster"``: ``1 / size`` of its average-linkage cluster — and
    the model is refitted with those weights on its E-step (``dawid_skene(weights=)``), ``rounds``
    times; ``how="factor"``: ``1 / Σ_i s_ij`` with ``s`` from :func:`factor_excess` instead, one
    weighted fit. Error = ``1 − acc`` of the last fit [heuristic: the weighted likelihood is not the
    likelihood of a dependency model; it only stops a cluster from outvoting the rest]."""
    v = torch.from_numpy(cheap)
    if how == "factor":
        return 1.0 - dawid_skene(v, k, weights=torch.from_numpy(1.0 / factor_excess(cheap, k, rounds).sum(0))).accuracy.numpy()
    fit = dawid_skene(v, k)
    for _ in range(rounds):
        s = excess_agreement(cheap, fit.prior.numpy(), fit.confusion.numpy())
        w = 1.0 / s.sum(0) if how == "soft" else 1.0 / cluster_sizes(s)
        fit = dawid_skene(v, k, weights=torch.from_numpy(w))
    return 1.0 - fit.accuracy.numpy()


CANDIDATES = {
    "cheap: majority-vote disagreement": lambda v, k: majority_disagreement(v["cheap"], k),
    "cheap: leave-one-out dawid-skene": lambda v, k: loo_dawid_skene(v["cheap"], k),
    "cheap: triplet median": lambda v, k: triplet_error(v["cheap"], k),
    "cheap+teachers: dawid-skene": lambda v, k: joint_dawid_skene(v["cheap"], v["teachers"], k),
    "cheap: dependency-weighted dawid-skene": lambda v, k: dependency_weighted_dawid_skene(v["cheap"], k, "soft"),
    "cheap: cluster-weighted dawid-skene": lambda v, k: dependency_weighted_dawid_skene(v["cheap"], k, "cluster"),
    "cheap: factor-weighted dawid-skene": lambda v, k: dependency_weighted_dawid_skene(v["cheap"], k, "factor"),
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
