"""Lang et al. 2024, Thm B.1/B.2/B.3 on synthetic worlds where every quantity is exact.

A *world* is a finite input space with the uniform distribution (the paper's setting, §3: X discrete),
a symmetric neighbourhood graph (Definition 1), gold labels, a teacher that abstains on part of X,
and a student ``f``. Everything the theorems mention is computed exactly from it, independently of
the package: ``α_i``, ``err(f, ỹ | S_i)``, the gold errors, ``r(f, x)`` and ``P(R̄_η | ·)``
(Definition 2), the robust neighbourhood size ``P_{1−η}(U, A)`` (Definition 6) and hence robust
expansion constants (Definition 7) for the sets the proofs apply expansion to (``F = {f}``: the
hypothesis class may be any class containing ``f``, and only ``f``'s own sets must expand).

Properties checked:

- where every premise holds, the value returned is ``≥`` the true gold error (or NaN: a premise the
  function checks conservatively, e.g. the union bound of B.1, may refuse a case);
- where a checkable premise fails, no bound is returned (NaN with a RuntimeWarning);
- Lemma B.3 of the paper (the fit premise of B.1 forces the expansion set to be large) holds in
  its corrected form ``P(V | S^good) ≥ q/(1 − α)``: as printed (``> q``) it fails at ``q = 0``
  (a 3-point ``S_i`` with both good points non-robust), which Thm B.1 survives (see ``check_b1``);
- the checks are not vacuous: a fixed sweep finds many finite, non-trivial bounds, including the
  D2 regime (``c/c̄ − 2α ≤ 0`` with ``P(R̄) = 0``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_w2s.metrics.bounds import lang_covered_bound, lang_nonrobust_bound, lang_uncovered_bound, lang_uncovered_bound_b3

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ETAS = (Fraction(1, 10), Fraction(1, 4), Fraction(1, 2), Fraction(3, 4))
TOL = 1e-12


# ------------------------------------------------------------------------------------------------
# an exact world (numpy, no package code)
# ------------------------------------------------------------------------------------------------
@dataclass
class World:
    y: np.ndarray  # gold labels
    cov: np.ndarray  # the teacher labels these (S); abstains elsewhere (T)
    teacher: np.ndarray  # teacher label where covered, -1 elsewhere
    f: np.ndarray  # the student's labels
    adj: np.ndarray  # symmetric neighbourhood relation, no self-loops, no isolated points
    eta: Fraction

    @property
    def r(self) -> np.ndarray:
        """r(f, x) = P(f(x') ≠ f(x) | x' ∈ N(x)) under the uniform distribution (Definition 2)."""
        differ = self.f[None, :] != self.f[:, None]
        return (self.adj & differ).sum(1) / self.adj.sum(1)

    @property
    def robust(self) -> np.ndarray:
        """R_η(f) = {x : r(f, x) ≤ η}, compared exactly in integers."""
        differ = (self.adj & (self.f[None, :] != self.f[:, None])).sum(1)
        return differ * self.eta.denominator <= self.eta.numerator * self.adj.sum(1)

    def robust_neighbourhood_size(self, u: np.ndarray, a: np.ndarray) -> float:
        """P_{1−η}(U, A) = min_V {P(V | A) : w(V, U) ≥ (1 − η) w(N(U), U)} (Definition 6).

        Uniform weights: w(x, x′) = 1[x ∈ N(x′)]/n², so ``w(V, U) ∝ Σ_{x∈V} deg_U(x)``. Points
        outside ``A`` cost nothing in ``P(V | A)`` and are all taken; inside ``A`` every point costs
        ``1/|A|``, so the cheapest ``V`` takes ``A``'s points by decreasing ``deg_U`` (exact)."""
        deg = self.adj[:, u].sum(1).astype(np.int64)
        total, free = int(deg.sum()), int(deg[~a].sum())
        e = self.eta
        need = (e.denominator - e.numerator) * total - free * e.denominator  # in units of 1/den
        if need <= 0:
            return 0.0
        cum = np.cumsum(np.sort(deg[a])[::-1]) * e.denominator
        m = int(np.searchsorted(cum, need, side="left")) + 1  # first prefix with cum >= need
        assert m <= a.sum(), "all of A always suffices"
        return m / int(a.sum())

    def expansion(self, u: np.ndarray, a: np.ndarray, b: np.ndarray, q: float) -> float | None:
        """The largest c with P_{1−η}(U, A) ≥ c·P(U | B) for the one set U ⊆ B; ``None`` when
        ``P(U | B) ≤ q`` (the definition then asks nothing of U: every c > 0 is valid)."""
        p_u = (u & b).sum() / b.sum()
        if p_u <= q:
            return None
        return self.robust_neighbourhood_size(u & b, a) / p_u


def make_world(seed: int, n: int, k: int, coverage: float, teacher_error: float, student_right: float, copy_teacher: float, p_same: float, p_cross: float, p_out: float, eta: Fraction) -> World:
    """Edges: inside a gold class with probability ``p_same`` between points of the same kind
    (teacher right / teacher wrong / teacher abstains) and ``p_cross`` between different kinds,
    across classes ``p_out``. Robust expansion into a small set (``S_i^bad``) needs most of a
    set's edge weight to land there, so worlds with ``p_cross ≫ p_same`` are where B.1/B.2 apply."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    cov = rng.random(n) < coverage
    wrong = (y + rng.integers(1, k, n)) % k
    teacher = np.where(cov, np.where(rng.random(n) < teacher_error, wrong, y), -1)
    f = np.where(rng.random(n) < student_right, y, (y + rng.integers(1, k, n)) % k)
    f = np.where(cov & (rng.random(n) < copy_teacher), teacher, f)  # an imitator on part of S
    kind = np.where(~cov, 2, (teacher != y).astype(int))
    p = np.where(y[:, None] == y[None, :], np.where(kind[:, None] == kind[None, :], p_same, p_cross), p_out)
    up = np.triu(rng.random((n, n)) < p, 1)
    adj = up | up.T
    for x in np.flatnonzero(adj.sum(1) == 0):  # no isolated points: r(f, x) must be defined
        other = (x + 1 + rng.integers(0, n - 1)) % n
        adj[x, other] = adj[other, x] = True
    return World(y, cov, teacher, f, adj, eta)


WORLD_ARGS = {
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(8, 60),
    "k": st.sampled_from([2, 3]),
    "coverage": st.floats(0.2, 0.95),
    "teacher_error": st.floats(0.0, 0.5),
    "student_right": st.floats(0.4, 1.0),
    "copy_teacher": st.sampled_from([0.0, 0.0, 0.3, 1.0]),
    "p_same": st.floats(0.0, 0.7),
    "p_cross": st.floats(0.05, 0.9),
    "p_out": st.floats(0.0, 0.2),
    "eta": st.sampled_from(ETAS),
}


def _call(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    assert math.isnan(value) == bool(rec), "NaN iff a warning says why"
    return value


# ------------------------------------------------------------------------------------------------
# the three theorems on one world: returns what was checked (for the non-vacuity sweep)
# ------------------------------------------------------------------------------------------------
def _class_rates(w: World, s_i, on):
    """Class i's covered good/bad sets, α = P(bad | S_i) and the student's misfit on S_i; then, on the
    set ``on`` the theorem bounds (S_i for B.1, T_i for B.2/B.3): P(non-robust), the true error, γ."""
    good, bad = s_i & (w.teacher == w.y), s_i & (w.teacher != w.y)
    alpha = bad.sum() / s_i.sum()
    fit = (w.f != w.teacher)[s_i].mean()
    return good, bad, alpha, fit, (~w.robust)[on].mean(), (w.f != w.y)[on].mean(), w.r[on].mean()


def check_b1(w: World, i: int, q: float, u: float) -> str:
    s_i = w.cov & (w.y == i)
    if not s_i.any():
        return "no S_i"
    good, bad, alpha, fit, p_nr, err, gamma = _class_rates(w, s_i, on=s_i)
    exact_premise = ((w.f != w.teacher) | ~w.robust)[s_i].mean() <= 1 - q - alpha + TOL
    if not 0 < alpha < 0.5:
        assert math.isnan(_call(lang_covered_bound, fit, alpha, 0.5, p_nr, q)), "alpha premise"
        return "alpha"
    v_set = w.robust & good & (w.f == w.y)  # the one set the proof expands: R_η(f) ∩ S^good ∖ M
    c_true = w.expansion(v_set, bad, good, q)
    if exact_premise:
        # Lemma B.3, corrected: P(V̄ | S^good) ≤ P(D ∪ R̄ | S_i)/(1 − α) (the printed proof multiplies by
        # 1 − α), so the premise gives P(V | S^good) ≥ q/(1 − α): > q when q > 0; at q = 0 it may be 0,
        # and then the proof's inequality (3) holds for every c (its right side is 0)
        assert (v_set & good).sum() / good.sum() >= q / (1 - alpha) - TOL, "Lemma B.3 (corrected)"
    if c_true == 0.0:
        return "no valid c"  # no c > 0 satisfies the expansion premise: the theorem says nothing
    c = u * (c_true if c_true is not None else 2.0)  # None: V need not expand, every c > 0 is valid
    value = _call(lang_covered_bound, fit, alpha, c, p_nr, q)
    markov = _call(lang_covered_bound, fit, alpha, c, lang_nonrobust_bound(gamma, float(w.eta)), q)
    if not exact_premise:
        assert math.isnan(value) and math.isnan(markov), "B.1 returned a bound although its premise fails"
        return "premise fails"
    for v in (value, markov):
        assert math.isnan(v) or v >= err - TOL, f"B.1 bound {v} < true error {err}"
    return "finite" if not math.isnan(value) else "refused"


def check_b2_b3(w: World, i: int, q: float, u1: float, u2: float) -> tuple[str, str, bool]:
    s_i, t_i = w.cov & (w.y == i), ~w.cov & (w.y == i)
    if not s_i.any() or not t_i.any():
        return "no S_i/T_i", "no S_i/T_i", False
    good, bad, alpha, fit, p_nr, err, gamma = _class_rates(w, s_i, on=t_i)
    if not 0 < alpha < 0.5:
        assert math.isnan(_call(lang_uncovered_bound, fit, alpha, 0.5, 0.5, p_nr, q)), "alpha premise"
        assert math.isnan(_call(lang_uncovered_bound_b3, fit, alpha, 0.5, p_nr, q)), "alpha premise"
        return "alpha", "alpha", False
    mistakes = w.robust & t_i & (w.f != w.y)  # M_η(T_i, F) element for f
    rights = w.robust & t_i & (w.f == w.y)  # M′_η(T_i, F) element for f
    c1_true, c2_true = w.expansion(mistakes, good, t_i, q), w.expansion(rights, bad, t_i, q)

    # Thm B.3: no fit premise at all
    out3 = "no valid c"
    if c1_true != 0.0:
        c = u1 * (c1_true if c1_true is not None else 2.0)  # unconstrained: any c > 0 is valid
        v3 = _call(lang_uncovered_bound_b3, fit, alpha, c, p_nr, q)
        assert not math.isnan(v3), "B.3 has no premise left to fail here"
        assert v3 >= err - TOL, f"B.3 bound {v3} < true error {err}"
        assert _call(lang_uncovered_bound_b3, fit, alpha, c, lang_nonrobust_bound(gamma, float(w.eta)), q) >= err - TOL
        out3 = "finite"

    if c1_true == 0.0 or c2_true == 0.0:
        return "no valid c", out3, False
    c1 = u1 * (c1_true if c1_true is not None else 1.0)
    c2 = u2 * (c2_true if c2_true is not None else 2.0)
    if c1 > 1.0:
        assert math.isnan(_call(lang_uncovered_bound, fit, alpha, c1, c2, p_nr, q)), "c1 <= 1 (proof of B.2)"
        c1 = 1.0  # expansion with c1 > 1 implies it with c1 = 1
    value = _call(lang_uncovered_bound, fit, alpha, c1, c2, p_nr, q)
    d2_regime = min(c1, c2) / max(c1, c2) - 2 * alpha <= 0 and p_nr == 0
    if not fit + p_nr < c1 * (1 - q - alpha):
        assert math.isnan(value), "B.2 returned a bound although its premise fails"
        return "premise fails", out3, False
    if c1 - (c1 + c2) * alpha <= 0:
        assert math.isnan(value), "B.2 returned a bound with a non-positive divisor"
        return "divisor", out3, False
    if d2_regime:
        assert not math.isnan(value), "D2: c/c_bar - 2alpha must not matter when P(R̄) = 0"
    assert math.isnan(value) or value >= err - TOL, f"B.2 bound {value} < true error {err}"
    markov = _call(lang_uncovered_bound, fit, alpha, c1, c2, lang_nonrobust_bound(gamma, float(w.eta)), q)
    assert math.isnan(markov) or markov >= err - TOL
    return ("finite" if not math.isnan(value) else "refused"), out3, d2_regime and not math.isnan(value)


# ------------------------------------------------------------------------------------------------
# the property tests
# ------------------------------------------------------------------------------------------------
@SETTINGS
@given(**WORLD_ARGS, q=st.sampled_from([0.0, 0.0, 0.05, 0.2]), u=st.floats(0.05, 0.999))
def test_thm_b1_bound_holds_where_premises_hold_and_is_refused_where_they_fail(q, u, **world):
    w = make_world(**world)
    for i in range(world["k"]):
        check_b1(w, i, q, u)


@SETTINGS
@given(**WORLD_ARGS, q=st.sampled_from([0.0, 0.0, 0.05, 0.2]), u1=st.floats(0.05, 0.999), u2=st.floats(0.05, 3.0))
def test_thm_b2_b3_bounds_hold_where_premises_hold_and_are_refused_where_they_fail(q, u1, u2, **world):
    w = make_world(**world)
    for i in range(world["k"]):
        check_b2_b3(w, i, q, u1, min(u2, 0.999))


def test_checks_are_not_vacuous():
    """A fixed sweep of worlds: how often each theorem gave a finite bound that was checked against
    the true error, how often a failed premise was refused, and how tight the finite bounds were."""
    rng = np.random.default_rng(20240525)
    counts: dict[str, int] = {}
    d2 = 0
    slack: dict[str, list[float]] = {"b1": [], "b2": [], "b3": []}
    for seed in range(600):
        world = dict(
            seed=seed,
            n=int(rng.integers(16, 60)),
            k=int(rng.choice([2, 3])),
            coverage=rng.uniform(0.4, 0.9),
            teacher_error=rng.uniform(0.1, 0.4),
            student_right=rng.uniform(0.6, 1.0),
            copy_teacher=float(rng.choice([0.0, 0.0, 0.3])),
            p_same=rng.uniform(0.0, 0.1),
            p_cross=rng.uniform(0.4, 1.0),
            p_out=rng.uniform(0.0, 0.05),
            eta=ETAS[int(rng.integers(0, len(ETAS)))],
        )
        w = make_world(**world)
        q, u1, u2 = float(rng.choice([0.0, 0.05])), rng.uniform(0.3, 0.999), rng.uniform(0.05, 0.999)
        for i in range(world["k"]):
            b1 = check_b1(w, i, q, u1)
            b2, b3, in_d2 = check_b2_b3(w, i, q, u1, u2)
            for name, out in (("b1", b1), ("b2", b2), ("b3", b3)):
                counts[f"{name}:{out}"] = counts.get(f"{name}:{out}", 0) + 1
            d2 += in_d2
            s_i = w.cov & (w.y == i)
            if b1 == "finite":
                good, bad = s_i & (w.teacher == w.y), s_i & (w.teacher != w.y)
                c_true = w.expansion(w.robust & good & (w.f == w.y), bad, good, q)
                c = u1 * (c_true if c_true is not None else 2.0)
                v = lang_covered_bound((w.f != w.teacher)[s_i].mean(), bad.sum() / s_i.sum(), c, (~w.robust)[s_i].mean(), q)
                slack["b1"].append(v - (w.f != w.y)[s_i].mean())
    print("\n" + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f"; D2 regime finite: {d2}")
    print(f"B.1 slack (bound - true error) over finite cases: median {np.median(slack['b1']):.3f}, min {np.min(slack['b1']):.1e}, n={len(slack['b1'])}")
    assert counts.get("b1:finite", 0) >= 100
    assert counts.get("b1:premise fails", 0) >= 20
    assert counts.get("b2:finite", 0) >= 20
    assert counts.get("b2:premise fails", 0) >= 20
    assert counts.get("b3:finite", 0) >= 100
    assert d2 >= 10


def test_the_paper_numbers_survive_the_premise_checks():
    """docs/theory.md §2.5 table checks with the premises coded (they hold for the table's inputs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert round(lang_covered_bound(0.12, 0.11, 0.848), 4) == 0.0497
        assert round(lang_covered_bound(0.29, 0.33, 0.497), 3) == 0.374
        assert round(lang_uncovered_bound(0.29, 0.33, 0.75, 0.55), 3) == 0.338


@pytest.mark.parametrize("eta", ETAS)
def test_reference_robust_neighbourhood_size_by_brute_force(eta):
    """The test's own P_{1−η}(U, A) against a brute-force minimum over all V ⊆ A (small worlds)."""
    for seed in range(30):
        w = make_world(seed, 9, 2, 0.6, 0.2, 0.8, 0.0, 0.5, 0.5, 0.1, eta)
        rng = np.random.default_rng(seed)
        u, a = rng.random(9) < 0.4, rng.random(9) < 0.5
        if not a.any():
            continue
        deg = w.adj[:, u].sum(1)
        need = (1 - eta) * Fraction(int(deg.sum()))
        best = min(bin(mask).count("1") for mask in range(1 << int(a.sum())) if Fraction(int(deg[~a].sum()) + sum(int(d) for j, d in enumerate(deg[a]) if mask >> j & 1)) >= need)
        assert w.robust_neighbourhood_size(u, a) == pytest.approx(best / a.sum(), abs=0)


def test_plug_in_expansion_gives_an_estimate_not_a_bound():
    """Thm B.1 at the plug-in ĉ of ``lang_expansion`` (current check in the family,
    exact in-sample ``P(R̄_η | S_i)``, every coded premise passing) falls *below* the measured
    in-sample error for a student that copies half of the teacher's mistakes: ĉ is not the
    theorem's robust-expansion constant, so the value must be logged as an estimate (a predicted
    error), never as a bound."""
    import torch

    from lightning_w2s.metrics.correction import lang_bounds
    from lightning_w2s.metrics.expansion import lang_expansion
    from lightning_w2s.metrics.gold_counts import correction_rates
    from lightning_w2s.metrics.neighbours import knn_indices
    from lightning_w2s.metrics.robustness import neighbour_robustness

    below, finite = [], 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        k, n_clusters, size = 2, 6, 30
        cluster = np.repeat(np.arange(n_clusters), size)
        x = (rng.normal(size=(n_clusters, 8)) * 50.0)[cluster] + rng.normal(size=(len(cluster), 8))
        gold = cluster % k
        covered = rng.random(len(cluster)) < 0.7
        flip = rng.random(len(cluster)) < rng.uniform(0.05, 0.3, n_clusters)[cluster]
        teacher = np.where(covered, np.where(flip, 1 - gold, gold), -1)
        nb = knn_indices(torch.tensor(x), k=5, metric="euclidean")
        y, cov, tt = torch.tensor(gold), torch.tensor(covered), torch.tensor(teacher)
        imitator = torch.where(cov & (tt != y) & torch.tensor(rng.random(len(gold)) < 0.5), tt, y)
        exp = lang_expansion(nb, torch.stack([y, imitator]), tt, y, cov, k, eta=0.1)
        rates = correction_rates(imitator, tt, y, cov, k, warn=False)
        rob = neighbour_robustness(imitator, nb, eta=0.1, gold=y, covered=cov, num_classes=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            b = lang_bounds(rates, rob, exp, nonrobust="exact")
        for i in range(k):
            value, err = float(b["covered_predicted_error"][i]), float(b["covered_error"][i])
            if not math.isnan(value):
                finite += 1
                if value < err:
                    below.append((seed, i, round(value, 4), round(err, 4)))
    print(f"\nplug-in Thm B.1 below the in-sample error in {len(below)} of {finite} finite cases: {below}")
    assert below, "expected the plug-in value to fall below the measured error somewhere"


def test_the_assembly_passes_q_to_every_theorem_and_robustness_uses_lemma_b1():
    """``lang_bounds(..., q=)`` reaches Thm B.1 too (its fit premise has ``1 − q − α``), and the
    robustness statistics' Markov term is :func:`lang_nonrobust_bound` itself (one definition)."""
    import torch

    from lightning_w2s.metrics.correction import lang_bounds
    from lightning_w2s.metrics.robustness import neighbour_robustness

    rates = {
        "alpha_per_class": torch.tensor([0.11]),
        "err_teacher_fit_per_class": torch.tensor([0.12]),
        "n_covered_per_class": torch.tensor([10.0]),
        "n_uncovered_per_class": torch.tensor([0.0]),
        "err_gold_covered_per_class": torch.tensor([0.05]),
        "err_gold_uncovered_per_class": torch.tensor([math.nan]),
    }
    robustness = {"eta": torch.tensor(0.5), "p_nonrobust_markov_S_per_class": torch.tensor([0.0]), "p_nonrobust_markov_T_per_class": torch.tensor([math.nan])}
    expansion = {"eta": torch.tensor(0.5), "c_good_to_bad": torch.tensor([0.848]), "c_uncovered_to_good": torch.tensor([math.nan]), "c_uncovered_to_bad": torch.tensor([math.nan])}
    at_0 = lang_bounds(rates, robustness, expansion, q=0.0)
    assert float(at_0["covered_predicted_error"][0]) == pytest.approx(lang_covered_bound(0.12, 0.11, 0.848))
    # q = 0.8: 0.12 + 0 > 1 - 0.8 - 0.11 = 0.09, so Thm B.1's fit premise fails (it did not see q before)
    with pytest.warns(RuntimeWarning, match="Thm B.1 premise"):
        at_q = lang_bounds(rates, robustness, expansion, q=0.8)
    assert math.isnan(float(at_q["covered_predicted_error"][0]))
    assert any("1 - q - alpha = 0.09" in r for r in at_q["reasons"])

    preds = torch.tensor([0, 0, 1, 1, 0, 1])
    nb = torch.tensor([[1, 2], [0, 3], [3, 4], [2, 5], [5, 0], [4, 1]])
    gold = torch.tensor([0, 0, 1, 1, 0, -1])
    for eta in (0.1, 0.5, 1.0):
        rob = neighbour_robustness(preds, nb, eta=eta, gold=gold, covered=torch.tensor([1, 1, 1, 0, 0, 1]).bool(), num_classes=2)
        for key in ("", "_covered", "_uncovered", "_S_per_class", "_T_per_class"):
            gamma, markov = rob[f"gamma{key}"].reshape(-1), rob[f"p_nonrobust_markov{key}"].reshape(-1)
            for g, m in zip(gamma.tolist(), markov.tolist()):
                assert (math.isnan(g) and math.isnan(m)) or m == lang_nonrobust_bound(g, eta), (eta, key, g, m)
