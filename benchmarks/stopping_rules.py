"""Stopping rules replayed offline on recordings (:mod:`benchmarks.stopping_record`).

A rule sees the checks ``1..E`` of a run one by one (check ``c`` = after epoch ``c - 1``) and
returns an :class:`Outcome`: the check at which it stops the fit (``None``: it never does, the fit
runs its ``E`` epochs) and the check whose weights the user is left with. **Regret** = 100 x (gold
test accuracy of the run's best epoch - that of the kept weights).

Decision procedures (every one computable live, check by check):

* :func:`patience_stop` — Lightning's ``EarlyStopping`` logic on any lower-is-better signal:
  improvement = strictly below the best so far minus ``min_delta``; stop after ``patience`` checks
  without one. Optional causal smoothing (trailing mean over the last ``smooth`` checks: Label Wave's
  moving average; ``patience`` then confirms its "first local minimum"). Keeps the weights of the
  stopping check (``keep="stop"``), of the best (smoothed) check (``"best"``, what
  ``ModelCheckpoint(save_top_k=1)`` restores; also at the end of a fit it did not stop), or of the
  middle of the best window (``"best_mid"``: needs a ring of ``ceil(smooth/2)`` weight copies).
  ``patience=None`` never stops: the best check of the whole run.
* :func:`today_policies` — the four policies of ``lightning_w2s.callbacks.policies`` (main at
  09b38a2), re-implemented line by line on the recorded signals and checked against
  ``W2SEarlyStopping.evaluate`` by :func:`check_against_library`.
* :func:`vote` — combinations: stop at the ``k``-th component stop (``k = ceil(m/2)`` = the median
  stop check), keep that check's weights or the median of the components' best checks.
* the gold noise floor :func:`gold_floor_regret` (uses gold labels: context, never a candidate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from benchmarks.stopping_signals import signal

__all__ = ["Outcome", "Rule", "gold_floor_regret", "patience_stop", "today_policies", "vote"]


@dataclass(frozen=True)
class Outcome:
    stop: int | None  # check at which the fit stops (None: runs to the end)
    kept: int  # check whose weights the user keeps (>= 1)
    best: int | None = None  # the rule's best check up to its stop (for combinations)


@dataclass
class Rule:
    """A named rule. ``monitor``: computable by a W2S monitor alone (probe, train probe, EMA, frozen
    tables); otherwise it needs the user's validation loop (baselines) or gold (floor)."""

    name: str
    family: str  # "baseline", "floor", "today", "candidate", "combo"
    monitor: bool
    run: Callable  # rec -> Outcome (or, for the floor, rec -> float regret)
    params: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def outcome(self, rec) -> Outcome:
        key = (rec.task, rec.seed)
        if key not in self._cache:
            self._cache[key] = self.run(rec)
        return self._cache[key]

    def regret(self, rec) -> float:
        out = self.outcome(rec)
        return float(out) if isinstance(out, float) else rec.regret(out.kept)


# ============================================================================ procedures
def smooth_trailing(values: np.ndarray, window: int) -> np.ndarray:
    """Causal moving average over the last ``window`` finite values (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v.copy()
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    cnt = ccnt[hi] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (csum[hi] - csum[lo]) / np.maximum(cnt, 1), np.nan)


def patience_stop(values: np.ndarray, patience: int | None, smooth: int = 1, keep: str = "stop", min_delta: float = 0.0,
                  first: int = 1) -> Outcome:
    """Lightning ``EarlyStopping`` (mode ``min``) on ``values[first:]`` (check 0 = before training is
    never a decision point), optionally on the trailing mean over ``smooth`` checks. A non-finite
    value is skipped (no counter change), as W2SEarlyStopping does with a failed measurement."""
    s = smooth_trailing(values, smooth)
    last = len(s) - 1
    best, best_c, wait = math.inf, None, 0
    stop = None
    for c in range(first, last + 1):
        x = s[c]
        if not np.isfinite(x):
            continue
        if x < best - min_delta:
            best, best_c, wait = x, c, 0
        else:
            wait += 1
        if patience is not None and wait >= patience:
            stop = c
            break
    end = last if stop is None else stop
    if best_c is None:
        return Outcome(stop, end, None)
    if keep == "stop":
        kept = end
    elif keep == "best":
        kept = best_c
    elif keep == "best_mid":
        kept = max(first, best_c - (smooth - 1) // 2)
    else:
        raise ValueError(keep)
    return Outcome(stop, kept, best_c)


def lightning_es_stop(values: np.ndarray, patience: int) -> int | None:
    """Stop check of Lightning's own ``EarlyStopping(monitor, mode="min", patience)`` fed ``values``
    after each epoch (its decision method ``_evaluate_stopping_criteria``); checks ``1..E``."""
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    es = EarlyStopping(monitor="val_loss", mode="min", patience=patience)
    for c in range(1, len(values)):
        stop, _ = es._evaluate_stopping_criteria(torch.tensor(values[c], dtype=torch.float32))
        if stop:
            return c
    return None


def first_best(values: np.ndarray, upto: int | None = None, first: int = 1) -> int:
    """``ModelCheckpoint(save_top_k=1, mode="min")``'s pick over checks ``first..upto``: the first
    check of the lowest finite value (a later equal value does not replace it)."""
    v = np.asarray(values, dtype=float)[first : (len(values) if upto is None else upto + 1)]
    v = np.where(np.isfinite(v), v, np.inf)
    return first + int(np.argmin(v))


# ============================================================================ today's policies
PLATEAU, OVERFIT, GAIN, ROBUST = "heldout_misfit_plateau", "teacher_overfit", "gain_exhausted", "robustness_drop"


def _policy_stream(rec, name: str, patience: int, misfit: str, kappa: float | None, min_gain: float | None):
    """Yield ``(check, triggered, best_check)`` of one policy of ``lightning_w2s.callbacks.policies``
    (min_delta = 0, no warm-up) on the recorded signals, check by check."""
    held = signal(rec, {"kl_teacher_student": "probe_ce", "disagreement": "probe_err", "sq": "probe_sq"}[misfit])
    train = {"kl_teacher_student": lambda: signal(rec, "train_ce"), "disagreement": lambda: _train_err(rec),
             "sq": lambda: _train_sq(rec)}[misfit]() if name == OVERFIT else None
    dis = signal(rec, "probe_err")
    gam = signal(rec, "gamma")
    best_v, best_c, wait, ratio_wait = math.inf, None, 0, 0
    prev_a = prev_b = None
    for c in range(1, len(held)):
        if name == PLATEAU:
            x = held[c]
            if x < best_v:
                best_v, best_c, wait = x, c, 0
            else:
                wait += 1
            trig = wait >= patience
        elif name == OVERFIT:
            tr, ho = train[c], held[c]
            if ho < best_v:
                best_v, best_c = ho, c
            ratio = tr / ho if ho > 0 else (1.0 if tr == 0 else math.inf)
            diverging = prev_a is not None and tr < prev_a and ho > prev_b
            wait = wait + 1 if diverging else 0
            if kappa is not None:
                ratio_wait = ratio_wait + 1 if ratio < kappa else 0
            prev_a, prev_b = tr, ho
            trig = wait >= patience or ratio_wait >= patience
        elif name == GAIN:
            d = dis[c]
            if d < min_gain:
                wait += 1
            else:
                wait, best_c = 0, c
            trig = wait >= patience
        elif name == ROBUST:
            g, d = gam[c], dis[c]
            sig = prev_a is not None and g > prev_a and d < prev_b
            if sig:
                wait += 1
            else:
                wait, best_c = 0, c
            prev_a, prev_b = g, d
            trig = wait >= patience
        else:
            raise ValueError(name)
        yield c, trig, best_c


def _train_err(rec) -> np.ndarray:
    from benchmarks.stopping_signals import train_fit

    return train_fit(rec, "err")


def _train_sq(rec) -> np.ndarray:
    from benchmarks.stopping_signals import train_fit

    return train_fit(rec, "sq")


def today_policies(rec, policies: Sequence[str], patience: int = 3, misfit: str = "kl_teacher_student", kappa: float | None = 0.5,
                   min_gain: float | None = None, restore: bool = False) -> Outcome:
    """``W2SEarlyStopping(policy=policies, mode="any", ...)``: stop at the first check where a policy
    triggers; ``restore`` keeps the first triggered policy's best check (the callback's
    ``restore_best=True``; without a stop nothing is restored)."""
    streams = [_policy_stream(rec, p, patience, misfit, kappa, min_gain) for p in policies]
    for steps in zip(*streams):
        for c, trig, best_c in steps:
            if trig:
                kept = (best_c if best_c is not None else c) if restore else c
                return Outcome(c, kept, best_c)
    last = rec.epochs
    return Outcome(None, last, None)


def check_against_library(recs) -> str:
    """Replay today's four policies (and two 'any' sets) through ``lightning_w2s.W2SEarlyStopping.evaluate``
    (the callback's pure decision API) fed the recorded signals under the monitor's names, and
    compare stop and restore checks with :func:`today_policies`. Returns a one-line verdict."""
    try:
        from lightning_w2s import W2SEarlyStopping
    except Exception as exc:  # pragma: no cover - the package is being refactored
        return f"skipped (cannot import W2SEarlyStopping: {exc})"
    if not hasattr(W2SEarlyStopping, "evaluate"):
        return "skipped (W2SEarlyStopping.evaluate not found)"
    configs = [((PLATEAU,), {}), ((OVERFIT,), {}), ((GAIN,), {"min_gain": 0.05}), ((ROBUST,), {}), ((PLATEAU, ROBUST), {})]
    n = bad = 0
    for rec in recs:
        vals = {"w2s/misfit/kl_teacher_student": signal(rec, "probe_ce"), "w2s/misfit/disagreement": signal(rec, "probe_err"),
                "w2s/train_misfit/kl_teacher_student": signal(rec, "train_ce"), "w2s/robustness/inconsistency": signal(rec, "gamma")}
        for pols, kw in configs:
            try:
                cb = W2SEarlyStopping(policy=list(pols), patience=3, verbose=False, **kw)
                lib = None
                for c in range(1, rec.epochs + 1):
                    stop, _, _ = cb.evaluate({k: float(v[c]) for k, v in vals.items()}, epoch=c - 1, global_step=int(rec.steps[c]))
                    if stop:
                        target = cb.restore_check
                        lib = (c, c if target is None else int(target) + 1)
                        break
            except Exception as exc:  # pragma: no cover
                return f"skipped (W2SEarlyStopping.evaluate raised {type(exc).__name__}: {exc})"
            ours = today_policies(rec, pols, min_gain=kw.get("min_gain"), restore=True)
            n += 1
            if lib != ((ours.stop, ours.kept) if ours.stop is not None else None):
                bad += 1
    return f"{n - bad}/{n} replays identical (stop check and restored check)"


# ============================================================================ combinations
def vote(outcomes: Sequence[Outcome], k: int, last: int, keep: str = "stop", bests: Sequence[Callable[[int], int | None]] = ()) -> Outcome:
    """Stop at the ``k``-th smallest component stop check (components that never stop count as
    ``+inf``). ``keep="stop"``: that check's weights; ``"median_best"``: the median (lower middle) of
    the components' best checks at that time (``bests[i](check)`` gives component ``i``'s best check
    up to ``check``)."""
    stops = sorted(o.stop if o.stop is not None else math.inf for o in outcomes)
    s = stops[k - 1]
    stop = None if s == math.inf else int(s)
    end = last if stop is None else stop
    if keep == "stop":
        return Outcome(stop, end, None)
    picks = sorted(b for b in (f(end) for f in bests) if b is not None)
    kept = picks[(len(picks) - 1) // 2] if picks else end
    return Outcome(stop, kept, kept)


# ============================================================================ gold noise floor
def gold_floor_regret(rec, k: int, draws: int = 50, smooth: int = 3) -> float:
    """Expected regret of picking the epoch with the best centred-``smooth`` moving average of gold
    accuracy on ``k`` random probe points (all probe points, ``draws`` seeded draws per run): what a
    handful of gold labels buys. Uses gold: context only."""
    pred = rec.probe_logits[1:].argmax(-1)  # (E, n)
    correct = pred == rec.probe_gold[None]
    n = correct.shape[1]
    rng = np.random.default_rng([rec.seed, k, sum(map(ord, rec.task))])
    kernel = np.ones(smooth) / smooth
    out = []
    for _ in range(draws):
        idx = rng.choice(n, size=min(k, n), replace=False)
        acc = correct[:, idx].mean(1)
        if smooth > 1:
            pad = np.pad(acc, (smooth // 2, smooth // 2), mode="edge")
            acc = np.convolve(pad, kernel, mode="valid")
        out.append(rec.regret(1 + int(np.argmax(acc))))
    return float(np.mean(out))
