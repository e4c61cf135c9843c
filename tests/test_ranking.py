"""Teacher ranking: the label model, the cheap students and ``rank_teachers``.

* Dawid–Skene EM against an independent slow numpy reference (explicit loops over inputs, teachers
  and classes; same initialisation, smoothing and stopping rule): agreement to rounding (1e-10).
* Recovery of known accuracies on a synthetic crowd with independent errors (the model's premise),
  with a tolerance from the estimator's sampling error (see the test).
* Symmetries: permuting teachers permutes the estimates; relabelling the classes permutes the
  posterior's columns and leaves the accuracies unchanged; a weight of 0 removes a teacher.
* The cheap student against a numpy ridge reference, and its equality with one Newton step of
  L2 logistic regression (the derivation in ``metrics/cheap_student.py``).
* ``rank_teachers`` on synthetic W2S tasks where the students' errors are known (measured by
  training real logistic-regression students here): the label-free ``w2s_error`` ranks them
  correctly where the teachers' own accuracy (even measured with gold) does not.
* Features-only and outputs-only teachers mixed; every bad input gets a named error.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lightning_w2s import rank_teachers
from lightning_w2s.ranking.cheap_student import crossfit_students, ridge_lambda
from lightning_w2s.ranking.label_model import dawid_skene, votes_tensor
from lightning_w2s.ranking.scores import SCORES, score_teachers


# ------------------------------------------------------------------------------------------------
# independent references (numpy, loops)
# ------------------------------------------------------------------------------------------------
def np_dawid_skene(votes: np.ndarray, k: int, smoothing: float, max_iter: int, tol: float):
    """Dawid & Skene (1979) EM written out with loops; hard votes, -1 = abstain."""
    n, m = votes.shape
    T = np.zeros((n, k))
    for i in range(n):
        for j in range(m):
            if votes[i, j] >= 0:
                T[i, votes[i, j]] += 1.0
        T[i] = (T[i] + 1e-9) / (T[i] + 1e-9).sum()

    def m_step(T):
        prior = np.array([(T[:, y].sum() + smoothing) / (n + k * smoothing) for y in range(k)])
        conf = np.full((m, k, k), smoothing)
        for i in range(n):
            for j in range(m):
                if votes[i, j] >= 0:
                    for y in range(k):
                        conf[j, y, votes[i, j]] += T[i, y]
        conf /= conf.sum(axis=2, keepdims=True)
        return prior, conf

    prev, ll = -math.inf, -math.inf
    for _ in range(max_iter):
        prior, conf = m_step(T)
        logp = np.zeros((n, k))
        for i in range(n):
            for y in range(k):
                logp[i, y] = math.log(prior[y]) + sum(math.log(conf[j, y, votes[i, j]]) for j in range(m) if votes[i, j] >= 0)
        top = logp.max(axis=1, keepdims=True)
        ll = float(np.mean(top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))))
        T = np.exp(logp - top)
        T /= T.sum(axis=1, keepdims=True)
        if ll - prev < tol:
            break
        prev = ll
    prior, conf = m_step(T)
    acc = np.array([np.mean([T[i, votes[i, j]] for i in range(n) if votes[i, j] >= 0]) for j in range(m)])
    return T, conf, prior, acc


def crowd(n: int, accuracies, *, k: int = 2, coverage=None, seed: int = 0, prior=None):
    """Synthetic crowd: true class ~ prior; teacher j right with prob acc_j (else a uniform other
    class), votes with prob coverage_j, independently given the class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=prior)
    m = len(accuracies)
    votes = np.empty((n, m), dtype=np.int64)
    for j, a in enumerate(accuracies):
        right = rng.random(n) < a
        other = (y + rng.integers(1, k, size=n)) % k
        votes[:, j] = np.where(right, y, other)
        if coverage is not None:
            votes[rng.random(n) >= coverage[j], j] = -1
    return y, votes


# ------------------------------------------------------------------------------------------------
# label model
# ------------------------------------------------------------------------------------------------
def test_dawid_skene_matches_loop_reference():
    y, votes = crowd(70, [0.85, 0.7, 0.6, 0.55], k=3, coverage=[1.0, 0.8, 0.6, 0.9], seed=1)
    # plain EM step for step (39 EM maps after the first M-step = the reference's 40 E/M rounds)
    fit = dawid_skene(torch.from_numpy(votes), 3, smoothing=0.5, max_iter=39, tol=0.0, accelerate=False)
    T, conf, prior, acc = np_dawid_skene(votes, 3, smoothing=0.5, max_iter=40, tol=-1.0)
    np.testing.assert_allclose(fit.posterior.numpy(), T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.confusion.numpy(), conf, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.prior.numpy(), prior, rtol=1e-10)
    np.testing.assert_allclose(fit.accuracy.numpy(), acc, rtol=1e-10)
    np.testing.assert_allclose(fit.coverage.numpy(), (votes >= 0).mean(0))


def test_dawid_skene_recovers_known_accuracies():
    # Independent errors (the model's premise), 4,000 inputs, coverage 0.8 (~3,200 votes each).
    # The MLE's standard error for one accuracy is about sqrt(a(1-a)/n_cov) <= sqrt(0.25/3200) =
    # 0.009; comparing with each teacher's *realised* accuracy on its covered points removes the
    # sampling noise of the crowd itself, so 0.03 (> 3 standard errors) fails only for a wrong
    # estimator (e.g. majority-vote agreement is off by 0.05-0.15 here: checked below).
    acc = [0.92, 0.8, 0.7, 0.62, 0.55]
    y, votes = crowd(4000, acc, coverage=[0.8] * 5, seed=2)
    fit = dawid_skene(torch.from_numpy(votes))
    realised = np.array([(votes[votes[:, j] >= 0, j] == y[votes[:, j] >= 0]).mean() for j in range(5)])
    np.testing.assert_allclose(fit.accuracy.numpy(), realised, atol=0.03)
    assert list(np.argsort(-fit.accuracy.numpy())) == [0, 1, 2, 3, 4]
    assert float((fit.posterior.argmax(1).numpy() == y).mean()) > 0.85
    # the naive alternative is measurably worse, so the tolerance above can fail
    tensor_votes = votes_tensor(torch.from_numpy(votes))
    majority = tensor_votes.sum(1).argmax(1).numpy()
    naive = np.array([(votes[votes[:, j] >= 0, j] == majority[votes[:, j] >= 0]).mean() for j in range(5)])
    assert np.abs(naive - realised).max() > 0.05


def test_dawid_skene_class_conditional_and_multiclass():
    # teacher 0 is a "says 1 too often" teacher: P(vote 1 | y=0) = 0.4; DS's confusion matrix sees it
    rng = np.random.default_rng(3)
    n = 5000
    y = rng.integers(0, 2, n)
    votes = np.stack([np.where(y == 1, 1, (rng.random(n) < 0.4).astype(int))] + [np.where(rng.random(n) < a, y, 1 - y) for a in (0.85, 0.8, 0.75)], axis=1)
    fit = dawid_skene(torch.from_numpy(votes))
    assert abs(float(fit.confusion[0, 0, 1]) - 0.4) < 0.03 and float(fit.confusion[0, 1, 1]) > 0.97
    # 4 classes, unbalanced prior
    y, votes = crowd(3000, [0.8, 0.7, 0.6, 0.5], k=4, seed=4, prior=[0.4, 0.3, 0.2, 0.1])
    fit = dawid_skene(torch.from_numpy(votes), 4)
    np.testing.assert_allclose(fit.prior.numpy(), [0.4, 0.3, 0.2, 0.1], atol=0.03)
    realised = (votes == y[:, None]).mean(0)
    np.testing.assert_allclose(fit.accuracy.numpy(), realised, atol=0.03)


def test_dawid_skene_symmetries_soft_votes_and_weights():
    y, votes = crowd(600, [0.9, 0.75, 0.65, 0.6], coverage=[1.0, 0.7, 0.9, 0.8], seed=5)
    base = dawid_skene(torch.from_numpy(votes))
    perm = [2, 0, 3, 1]
    permuted = dawid_skene(torch.from_numpy(votes[:, perm]))
    np.testing.assert_allclose(permuted.accuracy.numpy(), base.accuracy.numpy()[perm], rtol=1e-9)
    np.testing.assert_allclose(permuted.posterior.numpy(), base.posterior.numpy(), rtol=1e-9, atol=1e-12)
    swapped = np.where(votes >= 0, 1 - votes, -1)
    relabelled = dawid_skene(torch.from_numpy(swapped))
    np.testing.assert_allclose(relabelled.posterior.numpy(), base.posterior.numpy()[:, ::-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(relabelled.accuracy.numpy(), base.accuracy.numpy(), rtol=1e-9)
    # one-hot soft votes are the hard votes
    soft = votes_tensor(torch.from_numpy(votes))
    np.testing.assert_allclose(dawid_skene(soft).accuracy.numpy(), base.accuracy.numpy(), rtol=1e-12)
    # weight 0 removes a teacher from the posterior (its confusion is still estimated; it also enters
    # the stopping rule, so both fits run to a tight tolerance)
    w = dawid_skene(torch.from_numpy(votes), weights=torch.tensor([1.0, 1.0, 1.0, 0.0]), tol=1e-13)
    without = dawid_skene(torch.from_numpy(votes[:, :3]), tol=1e-13)
    np.testing.assert_allclose(w.posterior.numpy(), without.posterior.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dawid_skene(torch.from_numpy(votes), weights=torch.ones(4)).posterior.numpy(), base.posterior.numpy())


def test_dawid_skene_errors():
    with pytest.raises(ValueError, match="at least 3 teachers"):
        dawid_skene(torch.zeros(10, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=">= -1"):
        dawid_skene(torch.full((5, 3), -2))
    with pytest.raises(TypeError, match="integer class indices"):
        dawid_skene(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="sum to 1"):
        dawid_skene(torch.full((5, 3, 2), 0.7))
    with pytest.raises(ValueError, match="num_classes"):
        dawid_skene(torch.tensor([[0, 1, 2]] * 4), num_classes=2)
    with pytest.raises(ValueError, match="weights"):
        dawid_skene(torch.zeros(4, 3, dtype=torch.long), weights=torch.ones(2))
    with pytest.raises(ValueError, match="smoothing"):
        dawid_skene(torch.zeros(4, 3, dtype=torch.long), smoothing=0.0)


# ------------------------------------------------------------------------------------------------
# cheap students
# ------------------------------------------------------------------------------------------------
def test_crossfit_students_matches_numpy_ridge_and_newton_step():
    rng = np.random.default_rng(6)
    n, d, folds, c = 90, 5, 3, 0.7
    x = rng.normal(size=(n, d))
    lab = np.stack([(x[:, 0] > 0).astype(int), (x[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(int)], 1)
    lab[rng.random(n) < 0.3, 1] = -1  # teacher 1 abstains on ~30%
    targets = np.zeros((n, 2, 2))
    for j in range(2):
        known = lab[:, j] >= 0
        targets[known, j, lab[known, j]] = 1.0
    out = crossfit_students(torch.from_numpy(x), torch.from_numpy(targets), c=c, folds=folds, seed=3).numpy()
    fold = (torch.randperm(n, generator=torch.Generator().manual_seed(3)) % folds).numpy()
    a = np.hstack([x - x.mean(0), np.ones((n, 1))])
    lam = 4.0 / c
    assert ridge_lambda(2, c) == lam and ridge_lambda(5, 2.0) == 2.5
    pen = np.diag([lam] * d + [0.0])
    for f in range(folds):
        for j in range(2):
            rows = (fold != f) & (lab[:, j] >= 0)
            w = np.linalg.solve(a[rows].T @ a[rows] + pen, a[rows].T @ targets[rows, j])
            np.testing.assert_allclose(out[fold == f, j], a[fold == f] @ w, rtol=1e-9, atol=1e-11)
            # one Newton step from 0 of L2 logistic regression (C = c, intercept unpenalised)
            yb = lab[rows, j].astype(float)
            hess = 0.25 * a[rows].T @ a[rows] + np.diag([1.0 / c] * d + [0.0])
            step = np.linalg.solve(hess, a[rows].T @ (yb - 0.5))
            np.testing.assert_allclose(a[fold == f] @ step, 2.0 * (a[fold == f] @ (w[:, 1] - w[:, 0])), rtol=1e-8, atol=1e-10)


def test_crossfit_students_errors():
    with pytest.raises(ValueError, match="cover only"):
        t = torch.zeros(20, 1, 2)
        t[0, 0, 1] = 1.0
        crossfit_students(torch.randn(20, 3), t)
    with pytest.raises(ValueError, match="targets"):
        crossfit_students(torch.randn(20, 3), torch.zeros(19, 1, 2))
    with pytest.raises(ValueError, match="`c`"):
        crossfit_students(torch.randn(20, 3), torch.zeros(20, 1, 2), c=0.0)


# ------------------------------------------------------------------------------------------------
# rank_teachers on synthetic W2S tasks with known students' errors
# ------------------------------------------------------------------------------------------------
def _logreg_error(x_tr, lab, x_te, y_te, c=1.0, iters=50):
    """A real logistic-regression W2S student (Newton's method to convergence, numpy), trained on
    the covered points, scored on gold test points."""
    cov = lab >= 0
    a = np.hstack([x_tr[cov], np.ones((cov.sum(), 1))])
    yb = lab[cov].astype(float)
    w = np.zeros(a.shape[1])
    reg = np.diag([1.0 / c] * (a.shape[1] - 1) + [0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-a @ w))
        w -= np.linalg.solve(a.T @ (a * (p * (1 - p))[:, None]) + reg, a.T @ (p - yb) + reg @ w)
    pred = (np.hstack([x_te, np.ones((len(x_te), 1))]) @ w > 0).astype(int)
    return float((pred != y_te).mean())


def synthetic_w2s(seed: int = 7, n: int = 3000, d: int = 8):
    """Gold y = 1[x_0 > 0]. Teachers: random flips (the student corrects them), a rotated boundary
    (a systematic error the student copies: error = angle/π), a confident rule that abstains."""
    rng = np.random.default_rng(seed)
    x, x_te = rng.normal(size=(n, d)), rng.normal(size=(20000, d))
    y, y_te = (x[:, 0] > 0).astype(int), (x_te[:, 0] > 0).astype(int)

    def rotated(z, deg):
        t = math.radians(deg)
        return (math.cos(t) * z[:, 0] + math.sin(t) * z[:, 1] > 0).astype(int)

    flip = lambda rate: np.where(rng.random(n) < rate, 1 - y, y)  # noqa: E731
    labels = {
        "flip10": flip(0.10),
        "flip30": flip(0.30),
        "rotated15": rotated(x, 15),
        "rotated35": rotated(x, 35),
        "rotated60": rotated(x, 60),
        "rule_abstains": np.where(np.abs(x[:, 0]) > 0.8, y, -1),
    }
    errors = {k: _logreg_error(x, v, x_te, y_te) for k, v in labels.items()}
    return x, y, labels, errors


def test_rank_teachers_w2s_error_orders_students_where_teacher_accuracy_does_not():
    x, y, labels, errors = synthetic_w2s()
    outputs = {k: torch.from_numpy(v) for k, v in labels.items()}
    ranking = rank_teachers(torch.from_numpy(x), teacher_outputs=outputs)  # auto -> w2s_error, label-free
    order = [name for name, _ in ranking]
    # every pair whose students differ by more than 0.04 in gold error is ordered right; closer pairs
    # (three students within 0.03 of the ceiling) are below the cheap student's fidelity to the
    # converged logistic regression and are not asserted
    for a in errors:
        for b in errors:
            if errors[b] - errors[a] > 0.04:
                assert order.index(a) < order.index(b), (a, b, ranking, errors)
    # the decisive pairs: random flips are corrected (flip30 beats rotated15 although its labels are
    # much worse), a systematic rotation is copied
    assert order.index("flip30") < order.index("rotated15") < order.index("rotated35") < order.index("rotated60")
    assert errors["flip30"] < errors["rotated15"]
    # the teachers' own gold accuracy gets that pair backwards (so this test can fail)
    acc = {k: float(((v == y) | (v < 0)).mean()) for k, v in labels.items()}
    assert acc["flip30"] < acc["rotated15"]
    by_teacher = [n for n, _ in rank_teachers(torch.from_numpy(x), teacher_outputs=outputs, score="teacher_error")]
    assert by_teacher.index("flip30") > by_teacher.index("rotated15")
    # the estimated errors are estimates of the students' errors, not just an order
    for name, value in ranking:
        assert abs(value - errors[name]) < 0.06, (name, value, errors[name])


def test_rank_teachers_multiclass_and_probabilities():
    rng = np.random.default_rng(8)
    n, d, k = 2400, 6, 3
    x = rng.normal(size=(n, d))
    y = np.argmax(x[:, :k], axis=1)

    def noisy(rate):
        return np.where(rng.random(n) < rate, rng.integers(0, k, n), y)

    shifted = np.argmax(x[:, :k] + np.array([1.2, 0.0, 0.0]), axis=1)  # biased toward class 0
    outputs = {"noise20": noisy(0.2), "noise50": noisy(0.5), "biased": shifted, "very_biased": np.argmax(x[:, :k] + np.array([3.0, 0, 0]), axis=1)}
    ranking = [name for name, _ in rank_teachers(torch.from_numpy(x), teacher_outputs={k_: torch.from_numpy(v) for k_, v in outputs.items()})]
    assert ranking.index("noise20") < ranking.index("biased") < ranking.index("very_biased")
    # probabilities that are one-hot labels give the same scores as the labels
    onehot = {k_: torch.nn.functional.one_hot(torch.from_numpy(v), k).double() for k_, v in outputs.items()}
    a = dict(rank_teachers(torch.from_numpy(x), teacher_outputs={k_: torch.from_numpy(v) for k_, v in outputs.items()}))
    b = dict(rank_teachers(torch.from_numpy(x), teacher_outputs=onehot))
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-12)


def test_mixed_features_only_and_outputs_only_teachers():
    x, y, labels, errors = synthetic_w2s(seed=9, n=1500)
    s = torch.from_numpy(x)
    rng = np.random.default_rng(9)
    feats = {"flip10": torch.from_numpy(x[:, :3] + 0.1 * rng.normal(size=(1500, 3))), "rotated35": torch.from_numpy(x[:, 1:4])}
    outputs = {k: torch.from_numpy(v) for k, v in labels.items()}
    # features for some teachers, outputs for all (a rule and a lexicon have no features): outputs rank all
    mixed = rank_teachers(s, {**feats, "rule_abstains": None}, teacher_outputs=outputs)
    assert dict(mixed) == pytest.approx(dict(rank_teachers(s, teacher_outputs=outputs)))
    assert {n for n, _ in mixed} == set(labels)
    # the scores that did not pass the sanity test below are no longer offered
    for gone in ("charikar", "op", "projected_gap"):
        with pytest.raises(ValueError, match="must be one of"):
            rank_teachers(s, feats, teacher_outputs={k: outputs[k] for k in feats}, score=gone)
    # outputs for only some teachers, features for all: the features-only gap, with a warning
    with pytest.warns(UserWarning, match="features-only representation gap"):
        partial = rank_teachers(s, feats, teacher_outputs={"flip10": outputs["flip10"]})
    assert dict(partial) == pytest.approx(dict(rank_teachers(s, feats)))
    # a features-only teacher and an outputs-only teacher have no common score
    with pytest.raises(ValueError, match=r"no score covers every teacher.*rotated35.*rule_abstains"):
        rank_teachers(s, {"rotated35": feats["rotated35"]}, teacher_outputs={"rule_abstains": outputs["rule_abstains"], "flip10": outputs["flip10"]})
    # fewer than 3 teachers with outputs and no features: what happens is said
    with pytest.raises(ValueError, match=r">= 3 teachers with outputs.*cannot be told apart"):
        rank_teachers(s, teacher_outputs={"flip10": outputs["flip10"], "flip30": outputs["flip30"]})
    with pytest.raises(ValueError, match=r"label model, which needs outputs from >= 3"):
        rank_teachers(s, feats, teacher_outputs={k: outputs[k] for k in feats}, score="w2s_error")
    with pytest.raises(ValueError, match="needs teacher features"):
        rank_teachers(s, teacher_outputs=outputs, score="fro")


def test_score_teachers_reports_ingredients():
    x, y, labels, errors = synthetic_w2s(seed=10, n=1200)
    res = score_teachers(torch.from_numpy(x), teacher_outputs={k: torch.from_numpy(v) for k, v in labels.items()}, scores=("w2s_error", "teacher_error"))
    assert {"w2s_error", "teacher_error", "misfit", "coverage", "teacher_accuracy"} <= set(res)
    assert res["coverage"]["rule_abstains"] == pytest.approx(float((labels["rule_abstains"] >= 0).mean()))
    assert res["coverage"]["flip10"] == 1.0
    # a cheap student cannot reproduce random flips: its held-out misfit is r + (1 - 2r)·e for flip
    # rate r and the cheap student's own gold error e (0 <= e <= 0.15 here)
    for name in ("flip10", "flip30"):
        r = float((labels[name] != y).mean())  # the realised flip rate
        assert r <= res["misfit"][name] <= r + (1 - 2 * r) * 0.15, (name, r, res["misfit"][name])
    for name in labels:
        assert 0.0 <= res["w2s_error"][name] <= 1.0
    again = score_teachers(torch.from_numpy(x), teacher_outputs={k: torch.from_numpy(v) for k, v in labels.items()}, scores=("w2s_error",))
    assert again["w2s_error"] == res["w2s_error"]  # deterministic (seeded folds)


def test_rank_teachers_errors_name_the_argument():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(50, 4, generator=g)
    # three better-than-chance teachers of a gold rule on the features (each flips 20% of it): a valid
    # call, which must warn about nothing below (pure-noise teachers are worse than chance half the time)
    gold = (s[:, 0] > 0).long()
    good = {t: torch.where(torch.rand(50, generator=g) < 0.2, 1 - gold, gold) for t in "abc"}
    with pytest.raises(ValueError, match=r"teacher_outputs\['a'\].*n = 50"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.zeros(49, dtype=torch.long)))
    with pytest.raises(TypeError, match=r"teacher_outputs\['a'\].*integer class labels"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.rand(50)))
    # whole-number floats and bools are class labels (as in scikit-learn); other floats are not
    as_float = dict(good, a=good["a"].double(), b=good["b"].bool())
    assert rank_teachers(s, teacher_outputs=as_float) == rank_teachers(s, teacher_outputs=good)
    assert rank_teachers(s.numpy(), teacher_outputs={k: v.numpy() for k, v in good.items()}) == rank_teachers(s, teacher_outputs=good)
    with pytest.raises(ValueError, match="sum to 1"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.full((50, 2), 0.6)))
    with pytest.raises(ValueError, match="-1 \\(abstain\\)"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.full((50,), -3)))
    with pytest.raises(ValueError, match="abstains on every input"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.full((50,), -1)))
    with pytest.raises(ValueError, match="did you mean 'w2s_error'"):
        rank_teachers(s, teacher_outputs=good, score="w2s_eror")
    with pytest.raises(TypeError, match="unexpected keyword"):
        rank_teachers(s, teacher_outputs=good, max_component=4)
    with pytest.raises(ValueError, match="num_classes"):
        rank_teachers(s, teacher_outputs=dict(good, a=2 * good["a"]), num_classes=2)
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.nn.functional.one_hot(good["a"], 2).double(), b=torch.nn.functional.one_hot(good["b"], 3).double()))
    with pytest.raises(TypeError, match="`teachers` must be a mapping"):
        rank_teachers(s, [torch.randn(50, 3)])
    with pytest.raises(TypeError, match="names in `teacher_outputs` must be str"):
        rank_teachers(s, teacher_outputs={1: good["a"], "b": good["b"], "c": good["c"]})
    with pytest.raises(ValueError, match=r"teachers\['x'\].*n = 50"):
        rank_teachers(s, {"x": torch.randn(40, 3)})
    with pytest.raises(ValueError, match="neither features"):
        rank_teachers(s, {"x": None}, teacher_outputs=good)
    with pytest.raises(ValueError, match="student_features"):
        rank_teachers(torch.randn(50), teacher_outputs=good)
    with pytest.raises(ValueError, match="non-finite"):
        rank_teachers(torch.full((50, 4), math.nan), teacher_outputs=good)
    with pytest.raises(TypeError, match="student_c"):
        rank_teachers(s, teacher_outputs=good, student_c="1")
    with pytest.raises(ValueError, match="folds"):
        rank_teachers(s, teacher_outputs=good, folds=1)
    with pytest.raises(ValueError, match="both empty"):
        rank_teachers(s, {}, teacher_outputs={})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid call warns about nothing
        assert len(rank_teachers(s, teacher_outputs=good)) == 3


# ------------------------------------------------------------------------------------------------
# every offered score, dependent teachers, convergence, bad outputs
# ------------------------------------------------------------------------------------------------
def rotated_teachers(seed: int, n: int = 2000, d: int = 8, degrees=(5, 20, 35, 50, 65)):
    """Gold y = 1[x_0 > 0]; teacher ``rot<deg>`` = 1[cos·x_0 + sin·x_j > 0], each rotated toward its
    own coordinate (errors the student copies: its error ≈ deg/180, clearly separated), with the
    teacher's two coordinates plus two noise columns as its features."""
    rng = np.random.default_rng(seed)
    x, x_te = rng.normal(size=(n, d)), rng.normal(size=(20000, d))
    y_te = (x_te[:, 0] > 0).astype(int)
    labels, feats, errors = {}, {}, {}
    for j, deg in enumerate(degrees):
        t = math.radians(deg)
        name = f"rot{deg}"
        labels[name] = (math.cos(t) * x[:, 0] + math.sin(t) * x[:, j + 1] > 0).astype(int)
        feats[name] = np.hstack([x[:, [0, j + 1]], rng.normal(size=(n, 2))])
        errors[name] = _logreg_error(x, labels[name], x_te, y_te)
    return x, labels, feats, errors


def _spearman(score: dict, target: dict) -> float:
    from scipy.stats import spearmanr

    names = list(target)
    return float(spearmanr([score[m] for m in names], [target[m] for m in names]).statistic)


def test_every_offered_score_orders_clearly_separated_teachers():
    # outputs: five independent rotations (student errors ~0.03 .. 0.36)
    x, labels, _, errors = rotated_teachers(seed=0)
    res = score_teachers(torch.from_numpy(x), teacher_outputs={k: torch.from_numpy(v) for k, v in labels.items()}, scores=("auto", "w2s_error", "teacher_error"))
    # features: nested teachers seeing the first 8/6/4/2/1 of the student's 8 coordinates (gold uses
    # all 8; the teacher's best rule on its coordinates, copied by the student: errors 0 .. 0.39)
    rng = np.random.default_rng(1)
    n, d = 2000, 8
    xf, x_te = rng.normal(size=(n, d)), rng.normal(size=(20000, d))
    y, y_te = (xf.sum(1) > 0).astype(int), (x_te.sum(1) > 0).astype(int)
    feats, ferrors = {}, {}
    for dj in (8, 6, 4, 2, 1):
        feats[f"dims{dj}"] = torch.from_numpy(np.hstack([xf[:, :dj], rng.normal(size=(n, d - dj))]))
        ferrors[f"dims{dj}"] = _logreg_error(xf, (xf[:, :dj].sum(1) > 0).astype(int), x_te, y_te)
    fres = score_teachers(torch.from_numpy(xf), feats, scores=("fro", "pred_gap"), labels=torch.from_numpy(y))
    checked = set()
    for name in SCORES:
        key = "w2s_error" if name == "auto" else name
        rho = _spearman(res[key], errors) if key in res else _spearman(fres[key], ferrors)
        assert rho >= 0.8, (name, rho)
        checked.add(name)
    assert checked == set(SCORES)


def _near_copy(lab: np.ndarray, share: float, rng) -> np.ndarray:
    out = lab.copy()
    pick = rng.random(len(lab)) < share
    out[pick] = rng.integers(0, 2, int(pick.sum()))
    return out


def test_copies_never_rank_above_a_better_teacher():
    # Dawid & Skene count a copy as a second independent voter that always agrees: without the
    # dependence handling the copies of a weak teacher rank first (checked at the end, so this can fail)
    fooled_without = 0
    for seed in range(6):
        x, labels, _, errors = rotated_teachers(seed=seed, n=1500)
        original = ("rot35", "rot50")[seed % 2]
        rng = np.random.default_rng(100 + seed)
        outs = {k: torch.from_numpy(v) for k, v in labels.items()}
        outs["copy"] = outs[original].clone()
        outs["near_copy"] = torch.from_numpy(_near_copy(labels[original], 0.05, rng))
        better = [m for m in labels if errors[m] < errors[original]]
        with pytest.warns(UserWarning, match=rf"teachers \[.*'{original}'.*'copy'.*'near_copy'.*\] agree far beyond") as record:
            res = score_teachers(torch.from_numpy(x), teacher_outputs=outs, scores=("w2s_error", "teacher_error"))
        assert not any("worse than chance" in str(w.message) for w in record)
        for key in ("w2s_error", "teacher_error"):
            for adversary in ("copy", "near_copy"):
                for m in better:
                    assert res[key][adversary] > res[key][m], (seed, key, adversary, m, res[key])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain = score_teachers(torch.from_numpy(x), teacher_outputs=outs, scores=("w2s_error",), dependence_threshold=None)
        fooled_without += any(plain["w2s_error"]["copy"] < plain["w2s_error"][m] for m in better)
    assert fooled_without >= 2  # 3 of the 6 seeds


def test_an_exact_copy_of_the_worst_of_three_noisy_teachers_does_not_rank_first():
    # The failure that motivated the dependence handling: teachers with 5 / 15 / 30% random label
    # noise; an exact copy of bad30 made the label model call bad30 and its copy perfect (0.0).
    rng = np.random.default_rng(4)
    n = 1500
    x = torch.from_numpy(rng.normal(size=(n, 6)))
    y = (x[:, 0] > 0).long().numpy()
    outs = {name: torch.from_numpy(np.where(rng.random(n) < r, 1 - y, y)) for name, r in (("good05", 0.05), ("mid15", 0.15), ("bad30", 0.30))}
    alone = score_teachers(x, teacher_outputs=outs, scores=("w2s_error", "teacher_error"))
    with pytest.warns(UserWarning, match=r"teachers \['bad30', 'bad30_again'\] agree far beyond"):
        res = score_teachers(x, teacher_outputs=dict(outs, bad30_again=outs["bad30"].clone()), scores=("w2s_error", "teacher_error"))
    for key in ("w2s_error", "teacher_error"):
        assert alone[key]["good05"] < alone[key]["mid15"] < alone[key]["bad30"], (key, alone[key])
        assert res[key]["good05"] < res[key]["mid15"] < min(res[key]["bad30"], res[key]["bad30_again"]), (key, res[key])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = score_teachers(x, teacher_outputs=dict(outs, bad30_again=outs["bad30"].clone()), scores=("teacher_error",), dependence_threshold=None)
    assert plain["teacher_error"]["bad30"] < 0.01 < plain["teacher_error"]["good05"]  # the failure, without the handling


def test_five_percent_copies_of_accurate_and_weak_teachers_are_grouped():
    # A copy of a teacher with 5% of its labels redrawn at random, beside independent teachers of
    # accuracy 0.6 .. 0.95. Its excess agreement is 1 − 0.025/(2a(1 − a)): 0.94 for a 70%-accurate
    # teacher, 0.86 for a 90%-accurate one (the reference copy, dependence.reference_excess), so a fixed
    # cut at the estimate's median would miss the latter about half the time; the test links it.
    from lightning_w2s.ranking.dependence import find_dependent

    for seed in range(3):
        y, votes = crowd(2000, (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.9, 0.7), seed=20 + seed)
        rng = np.random.default_rng(40 + seed)
        near = [np.where(rng.random(len(y)) < 0.05, rng.integers(0, 2, len(y)), votes[:, j]) for j in (7, 8)]
        dep = find_dependent(votes_tensor(torch.from_numpy(np.column_stack([votes, *near])), 2))
        assert dep.groups == [[7, 9], [8, 10]], (seed, dep)
        assert all(e > 0.8 for e in dep.excess.values()), dep.excess


@pytest.mark.parametrize("k", [3, 5])
def test_five_percent_copies_are_grouped_with_more_classes(k):
    # With k classes a 5% copy (a uniformly random class) changes 5%·(k − 1)/k of the labels while
    # independence predicts more agreement by chance between the errors; the default reference copy
    # follows k (reference_excess: 0.82 at k = 3, 0.79 at k = 5). The binary reference (0.861) misses
    # the 90%-accurate teacher's copy on these crowds.
    from lightning_w2s.ranking.dependence import find_dependent, reference_excess

    assert reference_excess(k) < reference_excess(2)
    for seed in range(2):
        y, votes = crowd(3000, (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.9, 0.7), k=k, seed=80 + 10 * k + seed)
        rng = np.random.default_rng(90 + 10 * k + seed)
        near = [np.where(rng.random(len(y)) < 0.05, rng.integers(0, k, len(y)), votes[:, j]) for j in (7, 8)]
        dep = find_dependent(votes_tensor(torch.from_numpy(np.column_stack([votes, *near])), k))
        assert dep.groups == [[7, 9], [8, 10]], (k, seed, dep)


def test_independent_teachers_are_not_grouped():
    # Independent errors given the class (Dawid & Skene's premise), accuracies 0.55 .. 0.97, some
    # partial coverage and a 3-class crowd: no pair may be linked.
    from lightning_w2s.ranking.dependence import find_dependent

    for seed, k in ((0, 2), (1, 2), (2, 3), (3, 5)):
        accs = (0.55, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.97)
        _, votes = crowd(3000, accs, k=k, coverage=(1.0, 0.5, 1.0, 0.8, 1.0, 0.6, 1.0, 1.0), seed=60 + seed)
        dep = find_dependent(votes_tensor(torch.from_numpy(votes), k))
        assert dep.groups == [], (seed, dep)


def _plain_em_reference(votes: np.ndarray, k: int, iters: int) -> np.ndarray:
    """Plain Dawid-Skene EM (numpy, vectorised, hard votes), many iterations: the accuracies."""
    n, m = votes.shape
    onehot = np.zeros((n, m, k))
    for j in range(m):
        known = votes[:, j] >= 0
        onehot[known, j, votes[known, j]] = 1.0
    t = onehot.sum(1) + 1e-9
    t /= t.sum(1, keepdims=True)
    flat = onehot.reshape(n, m * k)
    for _ in range(iters):
        prior = (t.sum(0) + 0.01) / (n + k * 0.01)
        conf = (t.T @ flat).reshape(k, m, k).transpose(1, 0, 2) + 0.01  # (j, y, c)
        conf /= conf.sum(2, keepdims=True)
        logp = np.log(prior)[None] + flat @ np.log(conf).transpose(0, 2, 1).reshape(m * k, k)
        t = np.exp(logp - logp.max(1, keepdims=True))
        t /= t.sum(1, keepdims=True)
    return np.einsum("ny,njy->j", t, onehot) / onehot.sum((0, 2))


def test_label_model_converges_on_minority_class_crowds():
    # minority classes make EM crawl: the former default (200 plain steps) stopped unconverged here
    for seed in (3,):
        y, votes = crowd(3000, [0.75, 0.7, 0.65, 0.6, 0.6], k=3, seed=seed, prior=[0.85, 0.1, 0.05], coverage=[0.7] * 5)
        old = dawid_skene(torch.from_numpy(votes), 3, max_iter=200, tol=1e-9, accelerate=False)
        fit = dawid_skene(torch.from_numpy(votes), 3)
        assert not old.converged and fit.converged
        np.testing.assert_allclose(fit.accuracy.numpy(), _plain_em_reference(votes, 3, 3000), atol=2e-5)
    assert not dawid_skene(torch.from_numpy(votes), 3, max_iter=4).converged


def test_unconverged_label_model_and_worse_than_chance_teacher_warn(monkeypatch):
    from lightning_w2s.ranking import dependence

    x, labels, _, _ = rotated_teachers(seed=3, n=1500)
    outs = {k: torch.from_numpy(v) for k, v in labels.items()}
    inverted = dict(outs, inverted=1 - outs["rot20"])
    with pytest.warns(UserWarning, match=r"teacher\(s\) \['inverted'\] are estimated worse than chance"):
        ranking = rank_teachers(torch.from_numpy(x), teacher_outputs=inverted)
    assert ranking[-1][0] == "inverted"
    real = dependence.fit_batch
    monkeypatch.setattr(dependence, "fit_batch", lambda v, w, **kw: real(v, w, **dict(kw, max_iter=2)))
    with pytest.warns(UserWarning, match=r"did not converge.*\['rot5', 'rot20', 'rot35', 'rot50', 'rot65'\]"):
        rank_teachers(torch.from_numpy(x), teacher_outputs=outs)


def test_bad_outputs_name_the_teacher():
    rng = np.random.default_rng(11)
    n = 200
    s = torch.from_numpy(rng.normal(size=(n, 4)))
    y = torch.from_numpy((rng.random(n) < 0.5).astype(np.int64))
    good = {name: torch.where(torch.rand(n, generator=torch.Generator().manual_seed(i)) < 0.2, 1 - y, y) for i, name in enumerate("abc")}
    probs = {k: torch.nn.functional.one_hot(v, 2).double() for k, v in good.items()}
    with pytest.raises(ValueError, match=r"teacher_outputs\['p'\]` has 1 probability column"):
        rank_teachers(s, teacher_outputs=dict(probs, p=torch.rand(n, 1).double()))
    with pytest.raises(ValueError, match=r"teacher_outputs\['lab'\]` has class label 2, out of range for the 2 classes"):
        rank_teachers(s, teacher_outputs=dict(probs, lab=2 * y))
    with pytest.raises(ValueError, match=r"teacher_outputs\['five'\]` has class label 5, which no other teacher uses"):
        rank_teachers(s, teacher_outputs=dict(good, five=torch.where(y == 1, 5, 0)))
    with pytest.raises(ValueError, match=r"teacher_outputs\['b'\]` has class label 2, out of range for `num_classes` = 2"):
        rank_teachers(s, teacher_outputs=dict(good, b=2 * y), num_classes=2)
    with pytest.raises(ValueError, match=r"disagree on the number of classes: \{'three': 3\}"):
        rank_teachers(s, teacher_outputs=dict(probs, three=torch.nn.functional.one_hot(y, 3).double()))
    few = torch.full((n,), -1)
    few[:3] = torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match=r"teacher\(s\) \{'few': 3\} label too few inputs"):
        rank_teachers(s, teacher_outputs=dict(good, few=few))
    with pytest.raises(ValueError, match=r"teacher_outputs\['a'\]` abstains on every input"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.full((n,), -1)))
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] of `votes` never vote"):
        dawid_skene(torch.stack([good["a"], torch.full((n,), -1), good["b"], good["c"]], 1))
    constant = {f"const{i}": torch.full((n,), i % 2) for i in range(3)}
    with pytest.raises(ValueError, match=r"teacher_outputs\['const0'\]` gives the same class \(0\).*meaningless"):
        rank_teachers(s, teacher_outputs=constant)
    with pytest.raises(ValueError, match=r"teacher_outputs\['a'\]` holds NaN or Inf labels"):
        rank_teachers(s, teacher_outputs=dict(good, a=torch.where(y == 1, math.nan, 0.0)))
    with pytest.raises(ValueError, match=r"teacher_outputs\['a'\]` contains 1 non-finite"):
        p = probs["a"].clone()
        p[3, 0] = math.nan
        rank_teachers(s, teacher_outputs=dict(probs, a=p))
    with pytest.raises(ValueError, match=r"teacher_outputs\['a'\]` must hold probabilities in \[0, 1\]"):
        rank_teachers(s, teacher_outputs=dict(probs, a=probs["a"] * 2 - 0.5))
    # copies leave fewer than 3 independent voters: said, with the way out
    with pytest.raises(ValueError, match=r"only 2 independent voter.*dependence_threshold=None"):
        rank_teachers(s, teacher_outputs={"a": good["a"], "b": good["b"], "b2": good["b"].clone(), "b3": good["b"].clone()})
    with pytest.raises(ValueError, match=r"teacher\(s\) \['named'\] cover only"):
        t = torch.zeros(20, 1, 2)
        t[0, 0, 1] = 1.0
        crossfit_students(torch.randn(20, 3), t, names=["named"])
