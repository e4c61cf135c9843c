"""Cheap W2S students: what a linear student on the student's representation learns from each teacher.

Used by :func:`lightning_w2s.rank_teachers` to predict, before any training, how a student will do
on each candidate teacher's labels. For every teacher ``j`` a linear head on the student's features
``Φ`` is fitted to the teacher's labels on the points it covers (abstentions left out, as a W2S
student trains), and its predictions are taken **out of fold** (K-fold cross-fitting: each point is
predicted by a head that never saw its label), so they behave like the student's predictions on
unseen inputs rather than like memorised teacher labels.

The head [derived]: one Newton (IRLS) step from ``w = 0`` of L2-regularised logistic regression
``Σ_i logloss(y_i, b + wᵀφ_i) + ‖w‖²/(2C)`` (scikit-learn's ``LogisticRegression(C=C)``, intercept
unpenalised). At ``w = 0`` every predicted probability is ``1/k``, so the Hessian is
``(1/4)ΦᵀΦ + I/C`` for the binary (sigmoid) model and ``(1/k)ΦᵀΦ + I/C`` per class on the
softmax's identifiable subspace for ``k > 2``; the step is therefore exactly ridge regression of the
one-hot targets with an unpenalised intercept and ``λ = 4/C`` (binary) or ``λ = k/C``
(``k > 2``), up to a scale that does not change the argmax. It is a cheap stand-in for the logistic
student, not the converged logistic fit; on the benchmark's students (``LogisticRegression(C=1)``
on MiniLM, 15 teachers per task) its out-of-fold gold error ranks the real students' test errors at
Spearman ρ 0.93 / 0.94 / 0.96 on movie sentences / tweets / fine-food reviews (mean over 3 seeds;
``make bench-ranking``, row "gold: cheap student error").

Everything is computed from ``(d+1)×(d+1)`` Gram sums, never an n×n matrix: one Gram per fold,
corrected for each distinct abstention pattern by the Gram of the smaller of its covered / uncovered
rows, then one Cholesky solve per (fold, abstention pattern) for all teachers sharing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_w2s.metrics.validation import as_tensor, check_finite, check_scalar, describe

_F64 = torch.float64


def ridge_lambda(num_classes: int, c: float) -> float:
    """``λ`` of the one-Newton-step logistic head: ``4/C`` for 2 classes, ``k/C`` for ``k > 2``."""
    return (4.0 if num_classes == 2 else float(num_classes)) / c


def crossfit_students(features: Any, targets: Any, *, c: float = 1.0, folds: int = 5, seed: int = 0, names: Sequence[str] | None = None) -> Tensor:
    """Out-of-fold predictions of one cheap linear student per teacher.

    Args:
        features: ``(n, d)`` student representations.
        targets: ``(n, m, k)`` per-teacher targets: one-hot labels or probabilities; a row of zeros
            means the teacher abstains there (that point is left out of that teacher's fit, and
            still predicted).
        c: inverse L2 strength ``C`` of the logistic model the head approximates (``> 0``).
        folds: number of cross-fitting folds (``>= 2``); points are assigned by a seeded permutation.
        seed: the permutation's seed.
        names: optional teacher names (one per column of ``targets``) for error messages.

    Returns:
        ``(n, m, k)`` float64 out-of-fold scores (argmax = the cheap student's predicted class).

    Raises ``ValueError`` when a teacher covers too few points to fit in some fold (fewer than 2).
    """
    x = as_tensor("features", features).detach()
    if x.ndim != 2:
        raise ValueError(f"`features` must be a 2-D (n, d) tensor, got {describe(features)}")
    x = x.to(_F64)
    check_finite("features", x)
    y = as_tensor("targets", targets).detach().to(_F64).to(x.device)
    if y.ndim != 3 or y.shape[0] != x.shape[0]:
        raise ValueError(f"`targets` must be (n, m, k) with n = {x.shape[0]}, got {describe(targets)}")
    c = check_scalar("c", c, float, min_val=0.0, include_boundaries="neither")
    folds = check_scalar("folds", folds, int, min_val=2)
    n, d = x.shape
    _, m, k = y.shape
    if n < folds:
        raise ValueError(f"cross-fitting needs at least `folds` = {folds} inputs, got n = {n}")
    a = torch.cat([x - x.mean(0), torch.ones(n, 1, dtype=_F64, device=x.device)], dim=1)
    penalty = torch.full((d + 1,), ridge_lambda(k, c), dtype=_F64, device=x.device)
    penalty[-1] = 0.0  # the intercept is not penalised
    gen = torch.Generator().manual_seed(int(seed))
    fold = (torch.randperm(n, generator=gen) % folds).to(x.device)
    covered = y.sum(-1) > 0  # (n, m)
    patterns, which = torch.unique(covered.T, dim=0, return_inverse=True)  # distinct coverage masks
    out = torch.zeros(n, m, k, dtype=_F64, device=x.device)
    gram_fold = [a[fold == f].T @ a[fold == f] for f in range(folds)]
    gram_all = sum(gram_fold)
    for f in range(folds):
        test = fold == f
        gram_train = gram_all - gram_fold[f]
        for p in range(patterns.shape[0]):
            cols = (which == p).nonzero().flatten()
            mask = patterns[p]
            train_cov = (~test) & mask
            if int(train_cov.sum()) < 2:
                who = [names[c] for c in cols.tolist()] if names is not None else cols.tolist()
                raise ValueError(
                    f"teacher(s) {who} cover only {int(train_cov.sum())} training point(s) in cross-fitting "
                    f"fold {f} of {folds}; a cheap student needs at least 2 (give the teacher more coverage or fewer `folds`)"
                )
            train_unc = (~test) & ~mask
            if int(train_unc.sum()) == 0:
                gram = gram_train
            elif int(train_unc.sum()) <= int(train_cov.sum()):
                gram = gram_train - a[train_unc].T @ a[train_unc]
            else:
                gram = a[train_cov].T @ a[train_cov]
            rhs = a[train_cov].T @ y[train_cov][:, cols].reshape(int(train_cov.sum()), -1)
            chol, info = torch.linalg.cholesky_ex(gram + torch.diag(penalty))
            if int(info) != 0:  # singular without the penalty: only the intercept column; use lstsq
                w = torch.linalg.lstsq(gram + torch.diag(penalty), rhs).solution
            else:
                w = torch.cholesky_solve(rhs, chol)
            out[test.nonzero().flatten()[:, None], cols[None, :]] = (a[test] @ w).reshape(int(test.sum()), len(cols), k)
    return out
