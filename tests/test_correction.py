"""Lang et al. 2024 family: per-class rates, robustness, expansion, bounds (docs/theory.md §2.5).

Every number is checked against an independent slow numpy reference written with plain loops
(no call into the code under test), and the theorems' inequalities are checked on a synthetic
task where their assumptions hold by construction.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_w2s.metrics.correction import lang_bounds
from lightning_w2s.metrics.expansion import expansion_estimate, lang_expansion
from lightning_w2s.metrics.gold_counts import CorrectionRates, correction_rates
from lightning_w2s.metrics.neighbours import knn_indices
from lightning_w2s.metrics.robustness import AugmentationRobustness, NeighbourRobustness, augmentation_nonrobustness, augmentation_robustness, neighbour_robustness

NAN = float("nan")


def _random_task(seed: int, n: int = 300, k: int = 3, p_cov: float = 0.7, p_gold: float = 0.8):
    g = np.random.default_rng(seed)
    gold = np.where(g.random(n) < p_gold, g.integers(0, k, n), -1)
    covered = g.random(n) < p_cov
    teacher = np.where(covered, g.integers(0, k, n), -1)
    student = g.integers(0, k, n)
    return student, teacher, gold, covered


# ------------------------------------------------------------------------------------------------
# slow references (loops)
# ------------------------------------------------------------------------------------------------
def _ref_rates(s, t, y, cov, k):
    """Per-class and pooled rates by explicit loops over points."""
    per = {name: [] for name in ("alpha", "err_teacher_fit", "err_gold_covered", "correction_rate", "imitation_rate", "coverage_accuracy")}
    tot = {name: [0, 0] for name in per}
    for i in range(k):
        c = {name: [0, 0] for name in per}
        for j in range(len(s)):
            if y[j] != i:
                continue
            if cov[j]:
                for name, hit in (("alpha", t[j] != y[j]), ("err_teacher_fit", s[j] != t[j]), ("err_gold_covered", s[j] != y[j])):
                    c[name][0] += hit
                    c[name][1] += 1
                if t[j] != y[j]:
                    c["correction_rate"][0] += s[j] == y[j]
                    c["correction_rate"][1] += 1
                    c["imitation_rate"][0] += s[j] == t[j]
                    c["imitation_rate"][1] += 1
            else:
                c["coverage_accuracy"][0] += s[j] == y[j]
                c["coverage_accuracy"][1] += 1
        for name in per:
            per[name].append(c[name][0] / c[name][1] if c[name][1] else NAN)
            tot[name][0] += c[name][0]
            tot[name][1] += c[name][1]
    pooled = {name: (tot[name][0] / tot[name][1] if tot[name][1] else NAN) for name in per}
    return per, pooled


def _ref_knn(x, k, metric):
    n = len(x)
    out = []
    for a in range(n):
        d = []
        for b in range(n):
            if a == b:
                continue
            if metric == "euclidean":
                d.append((float(np.sum((x[a] - x[b]) ** 2)), b))
            else:
                d.append((1.0 - float(x[a] @ x[b]) / (np.linalg.norm(x[a]) * np.linalg.norm(x[b])), b))
        d.sort()
        out.append([b for _, b in d[:k]])
    return np.array(out)


def _ref_r(preds, nb):
    """r(x) = mean over neighbours of 1[f(x) != f(x')], NaN for unseen (-1) x; unseen neighbours skipped."""
    r = []
    for x in range(len(preds)):
        if preds[x] < 0:
            r.append(NAN)
            continue
        num = den = 0
        for xp in nb[x]:
            if preds[xp] < 0:
                continue
            den += 1
            num += preds[xp] != preds[x]
        r.append(num / den if den else NAN)
    return np.array(r, dtype=float)


def _ref_mean(vals):
    vals = [v for v in vals if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else NAN


def _ref_expansion(nb, a, b, sets, eta, q, mode):
    ratios = []
    nb_count = sum(b)
    for u in sets:
        u = [bool(u[j]) and bool(b[j]) for j in range(len(u))]
        p_set = sum(u) / nb_count
        hits = []
        for x in range(len(a)):
            if not a[x]:
                continue
            frac = sum(u[xp] for xp in nb[x]) / len(nb[x])
            hits.append(frac if mode == "sample" else float(frac > eta))
        p_nb = sum(hits) / len(hits)
        ratios.append(p_nb / p_set if p_set > q else NAN)
    usable = [r for r in ratios if not math.isnan(r)]
    return (min(usable) if usable else NAN), ratios


def _close(a, b, tol=1e-12):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=tol, equal_nan=True)


# ------------------------------------------------------------------------------------------------
# 1. rates
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rates_match_loop_reference(seed):
    k = 4
    s, t, y, cov = _random_task(seed, n=257, k=k)
    out = correction_rates(torch.tensor(s), torch.tensor(t), torch.tensor(y), torch.tensor(cov), k)
    per, pooled = _ref_rates(s, t, y, cov, k)
    for name in per:
        _close(out[f"{name}_per_class"], per[name])
        _close(out[name], pooled[name])
    _close(out["err_gold_uncovered_per_class"], 1 - np.array(per["coverage_accuracy"]))


def _split_updates(metric, arrays, sizes):
    start = 0
    for size in sizes:
        metric.update(*(a[start : start + size] for a in arrays))
        start += size
    assert start == len(arrays[0])


def test_rates_metric_equals_functional_uneven_batches():
    k = 3
    s, t, y, cov = (torch.tensor(a) for a in _random_task(5, n=301, k=k))
    m = CorrectionRates(k)
    _split_updates(m, (s, t, y, cov), [1, 64, 17, 0, 200, 19])
    got, want = m.compute(), correction_rates(s, t, y, cov, k)
    assert set(got) == set(want)
    for key in want:
        _close(got[key], want[key])
    for name in ("n_covered", "corrected", "correct_uncovered"):
        assert m._reductions[name](torch.stack([getattr(m, name)] * 2)).equal(2 * getattr(m, name)), "state must sum-reduce"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 60), min_size=1, max_size=5))
def test_rates_metric_equals_functional_property(seed, cuts):
    k = 3
    s, t, y, cov = (torch.tensor(a) for a in _random_task(seed, n=60, k=k))
    sizes = [c for c in cuts if c > 0]
    total = 0
    parts = []
    for c in sizes:
        c = min(c, 60 - total)
        parts.append(c)
        total += c
    parts.append(60 - total)
    m = CorrectionRates(k, warn=False)
    _split_updates(m, (s, t, y, cov), parts)
    got, want = m.compute(), correction_rates(s, t, y, cov, k, warn=False)
    for key in want:
        _close(got[key], want[key])


def test_rates_empty_sets_are_nan_with_reason():
    # class 2 absent from gold, teacher perfect on class 0, nothing uncovered
    s = torch.tensor([0, 1, 1, 0])
    t = torch.tensor([0, 0, 1, 0])
    y = torch.tensor([0, 1, 1, 0])
    cov = torch.tensor([True, True, True, True])
    with pytest.warns(RuntimeWarning) as rec:
        out = correction_rates(s, t, y, cov, 3)
    msgs = " ".join(str(w.message) for w in rec)
    assert "class(es) [2]" in msgs and "S_i^bad is empty" in msgs and "T_i is empty" in msgs
    assert math.isnan(out["alpha_per_class"][2]) and math.isnan(out["correction_rate_per_class"][0])
    assert math.isnan(out["coverage_accuracy"])
    assert out["correction_rate_per_class"][1] == 1.0 and out["imitation_rate_per_class"][1] == 0.0  # s=y=1, t=0


def test_rates_bad_input_names_argument():
    ok = torch.tensor([0, 1])
    with pytest.raises(TypeError, match="student_pred"):
        correction_rates(torch.tensor([0.0, 1.0]), ok, ok, torch.tensor([True, True]), 2)
    with pytest.raises(ValueError, match="student_pred.*1-D.*argmax"):
        correction_rates(torch.rand(2, 2), ok, ok, torch.tensor([True, True]), 2)
    with pytest.raises(ValueError, match="gold.*n = 2"):
        correction_rates(ok, ok, torch.tensor([0, 1, 1]), torch.tensor([True, True]), 2)
    with pytest.raises(ValueError, match="gold.*\\[-1, 1\\]"):
        correction_rates(ok, ok, torch.tensor([0, 5]), torch.tensor([True, True]), 2)
    with pytest.raises(ValueError, match="teacher_pred.*covered"):
        correction_rates(ok, torch.tensor([0, -1]), ok, torch.tensor([True, True]), 2)
    with pytest.raises(TypeError, match="covered"):
        correction_rates(ok, ok, ok, torch.tensor([0.5, 1.0]), 2)
    with pytest.raises(ValueError, match="num_classes"):
        correction_rates(ok, ok, ok, torch.tensor([True, True]), 1)
    # abstentions may carry any teacher value
    out = correction_rates(ok, torch.tensor([0, -1]), ok, torch.tensor([True, False]), 2, warn=False)
    assert out["coverage_accuracy"] == 1.0


# ------------------------------------------------------------------------------------------------
# 2. neighbours and robustness
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_knn_equals_brute_force(metric, chunk):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(83, 6))
    got = knn_indices(torch.tensor(x), k=5, metric=metric, chunk_size=chunk).numpy()
    _close(got, _ref_knn(x, 5, metric), tol=0)


def test_knn_bad_input():
    with pytest.raises(ValueError, match="k.*k \\+ 1"):
        knn_indices(torch.randn(4, 2), k=4)
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        knn_indices(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), k=1)
    with pytest.raises(ValueError, match="non-finite"):
        knn_indices(torch.tensor([[1.0, 0.0], [float("nan"), 0.0], [0.0, 1.0]]), k=1, metric="euclidean")
    with pytest.raises(ValueError, match="metric"):
        knn_indices(torch.randn(4, 2), k=1, metric="manhattan")
    with pytest.raises(ValueError, match="features.*2-D"):
        knn_indices(torch.randn(4), k=1)


def _ref_robustness(preds, nb, eta, gold, cov, k):
    r = _ref_r(preds, nb)
    out = {}
    groups = {"": [True] * len(preds), "_covered": list(cov), "_uncovered": [not c for c in cov]}
    for label, m in groups.items():
        vals = [r[j] for j in range(len(r)) if m[j] and not math.isnan(r[j])]
        out["gamma" + label] = _ref_mean(vals)
        out["p_nonrobust" + label] = _ref_mean([float(v > eta) for v in vals])
        out["p_nonrobust_markov" + label] = min(1.0, out["gamma" + label] / eta) if vals else NAN
    for label, want_cov in (("_S_per_class", True), ("_T_per_class", False)):
        g_, p_, m_ = [], [], []
        for i in range(k):
            vals = [r[j] for j in range(len(r)) if gold[j] == i and bool(cov[j]) == want_cov and not math.isnan(r[j])]
            gam = _ref_mean(vals)
            g_.append(gam)
            p_.append(_ref_mean([float(v > eta) for v in vals]))
            m_.append(min(1.0, gam / eta) if vals else NAN)
        out["gamma" + label], out["p_nonrobust" + label], out["p_nonrobust_markov" + label] = g_, p_, m_
    return out


@pytest.mark.parametrize("eta", [0.2, 0.5])
def test_neighbour_robustness_matches_loop_reference(eta):
    k = 3
    s, t, y, cov = _random_task(11, n=150, k=k)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 4))
    # a smoother student than random: the sign of a coordinate, so gamma is well inside (0, 1)
    s = np.where(x[:, 0] > 0.3, 0, np.where(x[:, 0] < -0.3, 1, 2))
    s[rng.random(150) < 0.15] = 2
    s[:3] = -1  # three unseen points
    nb = _ref_knn(x, 6, "euclidean")
    got = neighbour_robustness(torch.tensor(s), torch.tensor(nb), eta=eta, gold=torch.tensor(y), covered=torch.tensor(cov), num_classes=k)
    want = _ref_robustness(s, nb, eta, y, cov, k)
    for key, value in want.items():
        _close(got[key], value)
    assert 0.05 < float(got["gamma"]) < 0.6
    _close(got["seen_fraction"], 147 / 150)


def test_neighbour_robustness_ddp_sum_reconstruction():
    """Two 'ranks' with disjoint shards and padded batches; summing the states = one pass."""
    k = 3
    s, t, y, cov = _random_task(21, n=101, k=k)
    rng = np.random.default_rng(5)
    nb = torch.tensor(_ref_knn(rng.normal(size=(101, 3)), 4, "euclidean"))
    kw = dict(eta=0.25, gold=torch.tensor(y), covered=torch.tensor(cov), num_classes=k)
    preds = torch.tensor(s)
    single = NeighbourRobustness(nb, **kw)
    single.update(torch.arange(101), preds)
    want = single.compute()

    perm = torch.tensor(rng.permutation(101))
    shards = [perm[:51], perm[51:]]  # uneven
    ranks = []
    for shard in shards:
        m = NeighbourRobustness(nb, **kw)
        # batches of 16 padded to the same length; padding rows carry junk indices/preds and valid=False
        for start in range(0, 64, 16):
            idx = shard[start : start + 16]
            pad = 16 - len(idx)
            index = torch.cat([idx, torch.zeros(pad, dtype=torch.long)])
            p = torch.cat([preds[idx], torch.full((pad,), 2)])
            valid = torch.cat([torch.ones(len(idx), dtype=torch.bool), torch.zeros(pad, dtype=torch.bool)])
            m.update(index, p, valid)
        ranks.append(m)
    # a point seen twice with the same prediction (e.g. a repeated sample marked valid) is harmless
    ranks[1].update(shards[0][:1], preds[shards[0][:1]])
    for name in ("pred_sum", "pred_count", "pred_sumsq"):
        stacked = torch.stack([getattr(r, name) for r in ranks])
        assert ranks[0]._reductions[name](stacked).equal(stacked.sum(0))  # the DDP reduction is a sum
    merged = NeighbourRobustness(nb, **kw)
    for name in ("pred_sum", "pred_count", "pred_sumsq"):
        setattr(merged, name, getattr(ranks[0], name) + getattr(ranks[1], name))
    merged._update_count = 1
    got = merged.compute()
    assert got["predictions"].equal(preds)
    for key in want:
        _close(got[key], want[key])
    # each rank alone sees only its shard: the per-rank value differs and warns
    with pytest.warns(RuntimeWarning, match="only"):
        alone = ranks[0].compute()
    assert float(alone["seen_fraction"]) < 1


def test_neighbour_robustness_conflicting_duplicates_dropped():
    nb = torch.tensor([[1], [0], [1]])
    m = NeighbourRobustness(nb, eta=0.5)
    m.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 0, 2]))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = m.compute()
    msgs = " | ".join(str(w.message) for w in rec)
    assert "different predictions (first index 2)" in msgs and "only 0.6667 of the probe was seen" in msgs
    assert out["predictions"].tolist() == [0, 0, -1]
    _close(out["gamma"], 0.0)


def test_augmentation_robustness_matches_reference_and_metric():
    k = 3
    s, t, y, cov = _random_task(8, n=90, k=k)
    rng = np.random.default_rng(9)
    aug = np.where(rng.random((90, 3)) < 0.3, rng.integers(0, k, (90, 3)), s[:, None])
    r_ref = [sum(aug[j, m] != s[j] for m in range(3)) / 3 for j in range(90)]
    _close(augmentation_nonrobustness(torch.tensor(s), torch.tensor(aug)), r_ref)
    _close(augmentation_nonrobustness(torch.tensor(s), torch.tensor(aug[:, 0])), (aug[:, 0] != s).astype(float))
    eta = 0.3
    want = augmentation_robustness(torch.tensor(s), torch.tensor(aug), eta, torch.tensor(y), torch.tensor(cov), k)
    _close(want["gamma"], np.mean(r_ref))
    _close(want["p_nonrobust"], np.mean(np.array(r_ref) > eta))
    i_sel = [j for j in range(90) if y[j] == 1 and not cov[j]]
    _close(want["gamma_T_per_class"][1], np.mean([r_ref[j] for j in i_sel]))
    m = AugmentationRobustness(eta=eta, num_classes=k)
    for sl in (slice(0, 13), slice(13, 14), slice(14, 90)):
        m.update(torch.tensor(s[sl]), torch.tensor(aug[sl]), torch.tensor(y[sl]), torch.tensor(cov[sl]))
    got = m.compute()
    for key in want:
        _close(got[key], want[key])


def test_robustness_bad_input():
    nb = torch.tensor([[1], [0]])
    with pytest.raises(ValueError, match="eta"):
        neighbour_robustness(torch.tensor([0, 1]), nb, eta=0.0)
    with pytest.raises(ValueError, match="neighbours.*rows"):
        neighbour_robustness(torch.tensor([0, 1, 1]), nb)
    with pytest.raises(ValueError, match="neighbours.*\\[0, 1\\]"):
        NeighbourRobustness(torch.tensor([[1], [2]]))
    m = NeighbourRobustness(nb)
    with pytest.raises(ValueError, match="index"):
        m.update(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="aug_preds"):
        augmentation_nonrobustness(torch.tensor([0, 1]), torch.rand(2, 2))


# ------------------------------------------------------------------------------------------------
# 3. expansion
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,eta,q", [("set", 0.0, 0.0), ("set", 0.4, 0.0), ("sample", 0.0, 0.0), ("set", 0.0, 0.2)])
def test_expansion_matches_loop_reference(mode, eta, q):
    rng = np.random.default_rng(12)
    n = 120
    nb = _ref_knn(rng.normal(size=(n, 3)), 5, "euclidean")
    a = rng.random(n) < 0.4
    b = ~a & (rng.random(n) < 0.8)
    sets = rng.random((6, n)) < np.linspace(0.05, 0.6, 6)[:, None]
    sets[2] = False  # an empty set is skipped
    got = expansion_estimate(torch.tensor(nb), torch.tensor(a), torch.tensor(b), torch.tensor(sets), eta=eta, q=q, mode=mode)
    c_ref, ratios_ref = _ref_expansion(nb, a, b, sets, eta, q, mode)
    _close(got["ratios"], ratios_ref)
    _close(got["c_hat"], c_ref)
    assert not math.isnan(c_ref)
    assert int(got["argmin"]) == int(np.nanargmin(ratios_ref))


def test_expansion_no_usable_set_is_nan_with_reason():
    nb = torch.tensor([[1], [0], [1]])
    a = torch.tensor([True, False, False])
    b = torch.tensor([False, True, True])
    with pytest.warns(RuntimeWarning, match="no candidate set"):
        out = expansion_estimate(nb, a, b, torch.tensor([[True, False, False]]))  # U ∩ B is empty
    assert math.isnan(out["c_hat"]) and int(out["argmin"]) == -1
    with pytest.warns(RuntimeWarning, match="A is empty"):
        out = expansion_estimate(nb, torch.zeros(3, dtype=torch.bool), b, torch.tensor([[False, True, False]]))
    assert math.isnan(out["c_hat"])


def test_lang_expansion_families_match_reference():
    rng = np.random.default_rng(13)
    k, n = 2, 140
    s, t, y, cov = _random_task(13, n=n, k=k, p_gold=1.0)
    t = np.where(cov, np.where(rng.random(n) < 0.25, 1 - y, y), -1)
    nb = _ref_knn(rng.normal(size=(n, 3)), 4, "euclidean")
    hist = rng.integers(0, k, (3, n))
    hist[1, :5] = -1
    out = lang_expansion(torch.tensor(nb), torch.tensor(hist), torch.tensor(t), torch.tensor(y), torch.tensor(cov), k, eta=0.0)
    for i in range(k):
        s_i = cov & (y == i)
        good, bad, t_i = s_i & (t == i), s_i & (t != i), ~cov & (y == i)
        seen = hist >= 0
        c_gb, _ = _ref_expansion(nb, bad, good, [seen[h] & (hist[h] == i) for h in range(3)], 0.0, 0.0, "set")
        c_tg, _ = _ref_expansion(nb, good, t_i, [seen[h] & (hist[h] != i) for h in range(3)], 0.0, 0.0, "set")
        c_tb, _ = _ref_expansion(nb, bad, t_i, [seen[h] & (hist[h] == i) for h in range(3)], 0.0, 0.0, "set")
        _close(out["c_good_to_bad"][i], c_gb)
        _close(out["c_uncovered_to_good"][i], c_tg)
        _close(out["c_uncovered_to_bad"][i], c_tb)


def test_bound_forms_equal_the_expansion_derivations():
    """Why the (A, B, U) choices of lang_expansion are the theorems' (module docstring, [derived]).

    B.1 from "U = right-on-good points expands into S^bad": e_bad <= 1 - c(1 - e_good) and
    err(f, ỹ) >= (1-a)e_good + a(1 - e_bad) give err <= err_t - a + 2a[(1-c)(1-a) + c(err_t - a)]/(1-a-ca);
    B.2 from "mistakes on T into S^good (c1), right points on T into S^bad (c2)":
    e_T <= (err_t - c2 a)/(c1(1-a) - c2 a). Both must equal the paper's printed forms (bounds.py).
    """
    from lightning_w2s.metrics.bounds import lang_covered_bound, lang_uncovered_bound

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(400):
        a, c, c2, e = rng.uniform(0, 0.45), rng.uniform(0.05, 1), rng.uniform(0.05, 1), rng.uniform(0, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            paper_b1 = lang_covered_bound(e, a, c)
            paper_b2 = lang_uncovered_bound(e, a, c, c2)
        e_bad = ((1 - c) * (1 - a) + c * (e - a)) / (1 - a - c * a)
        mine_b1 = e - a + 2 * a * e_bad
        if 0 <= mine_b1 <= 1:
            assert paper_b1 == pytest.approx(mine_b1, abs=1e-12)
            checked += 1
        den = c * (1 - a) - c2 * a
        if not math.isnan(paper_b2) and den > 0:
            mine_b2 = max(0.0, (e - c2 * a) / den)
            if mine_b2 <= 1:
                assert paper_b2 == pytest.approx(mine_b2, abs=1e-12)
                checked += 1
    assert checked > 300


# ------------------------------------------------------------------------------------------------
# 4. bounds on a task where expansion holds by construction
# ------------------------------------------------------------------------------------------------
def _clustered_task(seed: int, k: int = 3, clusters_per_class: int = 4, size: int = 40):
    """Well-separated clusters, each of one gold class, each with covered and uncovered points.

    Teacher noise is per cluster (5%-30%), so alpha_i < 1/2 for every class; kNN (k=5) stays inside
    clusters, so a student constant on clusters is exactly robust (gamma = 0).
    """
    rng = np.random.default_rng(seed)
    n_clusters = k * clusters_per_class
    centres = rng.normal(size=(n_clusters, 8)) * 50.0
    cluster = np.repeat(np.arange(n_clusters), size)
    x = centres[cluster] + rng.normal(size=(len(cluster), 8))
    gold = cluster % k
    covered = rng.random(len(cluster)) < 0.7
    noise = rng.uniform(0.05, 0.3, n_clusters)[cluster]
    flip = rng.random(len(cluster)) < noise
    wrong = (gold + rng.integers(1, k, len(cluster))) % k
    teacher = np.where(covered, np.where(flip, wrong, gold), -1)
    return x, cluster, gold, covered, teacher, rng


def test_bounds_hold_on_clustered_task_at_every_check():
    k = 3
    x, cluster, gold, covered, teacher, rng = _clustered_task(0, k=k)
    n_clusters = cluster.max() + 1
    nb = knn_indices(torch.tensor(x), k=5, metric="euclidean")
    assert (torch.tensor(cluster)[nb] == torch.tensor(cluster)[:, None]).all(), "neighbourhoods must stay inside clusters"
    eta = 0.1  # below 1/k: "some neighbour in U"
    y, cov, tt = torch.tensor(gold), torch.tensor(covered), torch.tensor(teacher)
    # a training run: clusters start at random labels and move, a few at a time, to the gold label
    # (with occasional relapses to a wrong label)
    labels = rng.integers(0, k, n_clusters)
    history = []
    finite = {"covered": 0, "b2": 0, "b3": 0}
    nontrivial = 0
    gaps = []
    for check in range(10):
        if check:
            move = rng.random(n_clusters) < 0.35
            labels = np.where(move, np.arange(n_clusters) % k, labels)
            relapse = rng.random(n_clusters) < 0.1
            labels = np.where(relapse, rng.integers(0, k, n_clusters), labels)
        preds = torch.tensor(labels[cluster])
        history.append(preds)
        rates = correction_rates(preds, tt, y, cov, k, warn=False)
        rob = neighbour_robustness(preds, nb, eta=eta, gold=y, covered=cov, num_classes=k)
        assert float(rob["gamma"]) == 0.0
        exp = lang_expansion(nb, torch.stack(history), tt, y, cov, k, eta=eta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN bounds are allowed (preconditions)
            b = lang_bounds(rates, rob, exp)
        for i in range(k):
            for key, err_key, tag in (
                ("covered_predicted_error", "covered_error", "covered"),
                ("uncovered_predicted_error_b2", "uncovered_error", "b2"),
                ("uncovered_predicted_error_b3", "uncovered_error", "b3"),
            ):
                bound, err = float(b[key][i]), float(b[err_key][i])
                if math.isnan(bound):
                    continue
                finite[tag] += 1
                assert bound >= err - 1e-12, f"check {check} class {i}: {key}={bound:.4f} < measured {err:.4f}"
                nontrivial += bound < 1.0
                gaps.append(bound - err)
        pooled = float(b["covered_predicted_error_pooled"])
        if not math.isnan(pooled):
            assert pooled >= float(b["covered_error_pooled"]) - 1e-12
    print(f"\nfinite bounds over 10 checks x {k} classes: {finite}; non-vacuous (<1): {nontrivial}; median slack {np.median(gaps):.3f}, min slack {np.min(gaps):.4f}")
    assert finite["covered"] >= 25 and finite["b3"] >= 20 and finite["b2"] >= 5
    assert nontrivial >= 20


def test_fitting_teacher_mistakes_contradicts_premises_unless_nonrobustness_is_counted():
    """Sensitivity (Lang et al. Prop 4.1): a student that copies the teacher's mistakes on part of
    S^bad is non-robust inside clusters. With c from the robust gold student's sets and P(R̄)
    wrongly set to 0, the B.1 expression goes below 0 (the data contradict the premises: NaN with
    that reason); with the measured Markov P(R̄_η) the premises are no longer contradicted.
    """
    k = 2
    x, cluster, gold, covered, teacher, rng = _clustered_task(1, k=k, clusters_per_class=3)
    nb = knn_indices(torch.tensor(x), k=5, metric="euclidean")
    y, cov, tt = torch.tensor(gold), torch.tensor(covered), torch.tensor(teacher)
    exp = lang_expansion(nb, y[None], tt, y, cov, k, eta=0.1)  # family: the gold student's sets only
    pick = cov & (tt != y) & torch.tensor(rng.random(len(gold)) < 0.5)
    imitator = torch.where(pick, tt, y)  # copies half of the teacher's mistakes
    rates = correction_rates(imitator, tt, y, cov, k, warn=False)
    rob = neighbour_robustness(imitator, nb, eta=0.1, gold=y, covered=cov, num_classes=k)
    assert float(rob["gamma"]) > 0
    pretend = dict(rob)
    for key in ("p_nonrobust_markov_S_per_class", "p_nonrobust_markov_T_per_class"):
        pretend[key] = torch.zeros(k, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        b = lang_bounds(rates, pretend, exp)
        honest = lang_bounds(rates, rob, exp)
    assert b["covered_predicted_error"].isnan().all()
    assert sum("Thm B.1" in r and "< 0" in r for r in b["reasons"]) == k
    # with P(R̄_η) counted (Markov: min(1, γ̂/η) = 1 here) Thm B.1's fit premise
    # P(f ≠ ỹ or not η-robust | S_i) <= 1 - q - α_i can no longer be certified: NaN with that reason
    assert honest["covered_predicted_error"].isnan().all()
    assert sum("Thm B.1" in r and "premise" in r for r in honest["reasons"]) == k
    print(f"\nimitator: B.1 with Markov P(R̄) {honest['covered_predicted_error'].tolist()} vs gold error {honest['covered_error'].tolist()}")


def test_lang_bounds_reasons_and_eta_mismatch():
    k = 2
    rates = {
        "alpha_per_class": torch.tensor([0.11, 0.6], dtype=torch.float64),
        "err_teacher_fit_per_class": torch.tensor([0.12, 0.2], dtype=torch.float64),
        "err_gold_covered_per_class": torch.tensor([0.03, 0.5], dtype=torch.float64),
        "err_gold_uncovered_per_class": torch.tensor([0.1, NAN], dtype=torch.float64),
        "n_covered_per_class": torch.tensor([10.0, 10.0], dtype=torch.float64),
        "n_uncovered_per_class": torch.tensor([5.0, 0.0], dtype=torch.float64),
    }
    rob = {"p_nonrobust_markov_S_per_class": torch.zeros(k, dtype=torch.float64), "p_nonrobust_markov_T_per_class": torch.zeros(k, dtype=torch.float64), "eta": torch.tensor(0.5, dtype=torch.float64)}
    exp = {
        "c_good_to_bad": torch.tensor([0.848, 0.9], dtype=torch.float64),
        "c_uncovered_to_good": torch.tensor([1.7, NAN], dtype=torch.float64),  # > 1 is clipped to 1
        "c_uncovered_to_bad": torch.tensor([0.9, NAN], dtype=torch.float64),
        "eta": torch.tensor(0.5, dtype=torch.float64),
    }
    with pytest.warns(RuntimeWarning, match="alpha"):
        b = lang_bounds(rates, rob, exp)
    _close(b["covered_predicted_error"][0], 0.0497, tol=1e-4)  # the paper's Table 1 row, through the assembly
    assert math.isnan(b["covered_predicted_error"][1]) and any("class 1: Thm B.1" in r for r in b["reasons"])
    _close(b["uncovered_predicted_error_b3"][0], 0.12 / (1.0 * (1 - 0.11)))
    assert math.isnan(b["covered_predicted_error_pooled"])  # class 1 has covered points but no bound
    exp_bad = dict(exp, eta=torch.tensor(0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="eta"):
        lang_bounds(rates, rob, exp_bad)
