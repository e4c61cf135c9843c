"""Stopping rules replayed offline on recordings (:mod:`benchmarks.stopping.record`).

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
* :func:`today_policies` — four rules of :mod:`lightning_w2s.stopping.rules` (the two stopping policies,
  and ``gain_exhausted`` / ``robustness_drop``, policies until this benchmark made them warnings),
  re-implemented line by line on the recorded signals and checked against the package's
  ``StoppingDecision.evaluate`` by :func:`check_against_library`; :func:`package_default_outcome`
  replays ``W2SEarlyStopping()`` itself (its decision object on the package's ``teacher_label_ce``).
* :func:`vote` — combinations: stop at the ``k``-th component stop (``k = ceil(m/2)`` = the median
  stop check), keep that check's weights or the median of the components' best checks.
* the gold noise floor :func:`gold_floor_regret` (uses gold labels: context, never a candidate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmarks.stopping.signals import signal

__all__ = ["Outcome", "Rule", "check_package_default", "gold_floor_regret", "package_default_outcome", "patience_stop", "today_policies", "vote"]


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


def patience_stop(values: np.ndarray, patience: int | None, smooth: int = 1, keep: str = "stop", min_delta: float = 0.0, first: int = 1) -> Outcome:
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
#: the offline signal of each held-out misfit a policy may read (``W2SEarlyStopping(misfit=...)``)
HELD_SIGNAL = {"kl_teacher_student": "probe_ce", "disagreement": "probe_err", "sq": "probe_sq", "teacher_label_ce": "probe_hce"}


def _train_misfit(rec, misfit: str) -> np.ndarray:
    """The train-probe twin of ``misfit`` (the teacher's labels of the train probe are hard: its
    ``kl_teacher_student`` and ``teacher_label_ce`` are the same cross-entropy)."""
    from benchmarks.stopping.signals import train_fit

    return train_fit(rec, {"kl_teacher_student": "ce", "disagreement": "err", "sq": "sq", "teacher_label_ce": "hce"}[misfit])


def _policy_stream(rec, name: str, patience: int, misfit: str, kappa: float | None, min_gain: float | None):
    """Yield ``(check, triggered, best_check)`` of one policy of ``lightning_w2s.stopping.rules`` (min_delta = 0,
    no warm-up) on the recorded signals, check by check. ``gain_exhausted`` reads the monitor's
    ``w2s/bounds/max_gain`` (:func:`benchmarks.stopping.signals.max_gain`)."""
    from benchmarks.stopping.signals import max_gain

    held = signal(rec, HELD_SIGNAL[misfit])
    train = _train_misfit(rec, misfit) if name == OVERFIT else None
    dis = signal(rec, "probe_err")
    gain = max_gain(rec) if name == GAIN else None
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
            if gain[c] < min_gain:
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


def today_policies(
    rec, policies: Sequence[str], patience: int = 3, misfit: str = "kl_teacher_student", kappa: float | None = 0.5, min_gain: float | None = None, restore: bool | str = False
) -> Outcome:
    """``W2SEarlyStopping(policy=policies, ...)``: stop at the first check where a policy
    triggers. ``restore``: ``False`` keeps the last weights (``restore_best=False``); ``True`` keeps
    the first triggered policy's best check after a stop and the last weights without one (the
    previous callback); ``"end"`` also restores the first listed policy's best check at the end of a
    fit that did not stop (``restore_best=True`` now, as ``ModelCheckpoint``'s best would be)."""
    streams = [_policy_stream(rec, p, patience, misfit, kappa, min_gain) for p in policies]
    first_best = None
    for steps in zip(*streams):
        first_best = steps[0][2]
        for c, trig, best_c in steps:
            if trig:
                kept = (best_c if best_c is not None else c) if restore else c
                return Outcome(c, kept, best_c)
    if restore == "end" and first_best is not None:
        return Outcome(None, first_best, first_best)
    return Outcome(None, rec.epochs, None)


# the policies' settings compared with the library: as the previous default ran them, and as
# ``W2SEarlyStopping(policy)`` runs them now (patience 5, teacher_label_ce, restore at the end)
PREVIOUS = {"patience": 3, "misfit": "kl_teacher_student", "restore": True}
NOW = {"patience": 5, "misfit": "teacher_label_ce", "restore": "end"}


def _monitor_values(rec) -> dict[str, np.ndarray]:
    """The recorded signals under the monitor's names (what the policies read)."""
    from benchmarks.stopping.signals import max_gain
    from lightning_w2s.metrics import quantities as Q

    return {
        Q.KL_TEACHER_STUDENT: signal(rec, "probe_ce"),
        Q.DISAGREEMENT: signal(rec, "probe_err"),
        Q.train_name(Q.KL_TEACHER_STUDENT): signal(rec, "train_ce"),
        Q.INCONSISTENCY: signal(rec, "gamma"),
        Q.MAX_GAIN: max_gain(rec),
        Q.TEACHER_LABEL_CE: signal(rec, "probe_hce"),
        Q.train_name(Q.TEACHER_LABEL_CE): _train_misfit(rec, "teacher_label_ce"),
    }


def library_outcome(decision, values: dict[str, np.ndarray], rec, restore: bool = True) -> Outcome:
    """Replay ``rec``'s checks ``1..E`` through ``decision.evaluate`` (a
    :class:`lightning_w2s.stopping.decision.StoppingDecision`: the code ``W2SEarlyStopping`` decides
    with) and read the weights the callback ends with: :attr:`restore_check` after a stop, or at the
    end of a fit it did not stop, when ``restore`` (``restore_best``: the callback restores in both
    cases); else the last weights."""
    stop = None
    for c in range(1, rec.epochs + 1):
        if decision.evaluate({k: float(v[c]) for k, v in values.items()}, epoch=c - 1, global_step=int(rec.steps[c]))[0]:
            stop = c
            break
    end = rec.epochs if stop is None else stop
    target = decision.restore_check
    kept = target + 1 if restore and target is not None else end
    return Outcome(stop, kept, None if target is None else target + 1)


def library_decision(policies: Sequence[str], patience: int, misfit: str, min_gain: float | None = None):
    """The package's decision for ``policies`` (min_delta 0, kappa 0.5, no warm-up): the stopping
    policies as ``W2SEarlyStopping(policy=...)`` builds them
    (:func:`lightning_w2s.stopping.policies.make_policies`); ``gain_exhausted`` and
    ``robustness_drop``, the monitor's warnings since this benchmark ruled them out as stopping
    policies, as the same rules of :mod:`lightning_w2s.stopping.rules` in the same
    :class:`~lightning_w2s.stopping.decision.StoppingDecision`."""
    from lightning_w2s.stopping.decision import StoppingDecision
    from lightning_w2s.stopping.policies import make_policies
    from lightning_w2s.stopping.rules import GainExhausted, RobustnessDrop

    rules = []
    for name in policies:
        if name == GAIN:
            rules.append(GainExhausted(patience, 0.0, min_gain))
        elif name == ROBUST:
            rules.append(RobustnessDrop(patience, 0.0))
        else:
            rules.extend(make_policies(name, patience, 0.0, misfit, 0.5))
    return StoppingDecision(rules)


def check_against_library(recs) -> str:
    """Replay the four rules (and plateau + robustness) through the package's
    :class:`~lightning_w2s.stopping.decision.StoppingDecision` (:func:`library_decision`) fed the
    recorded signals under the monitor's names (``w2s/bounds/max_gain`` computed with the package's
    function), with the previous default settings (patience 3, ``kl_teacher_student``, restore after
    a stop) and with today's (patience 5, ``teacher_label_ce``, restore at the end), and compare stop
    and kept checks with :func:`today_policies`. Returns a one-line verdict."""
    configs = [((PLATEAU,), {}), ((OVERFIT,), {}), ((GAIN,), {"min_gain": 0.05}), ((ROBUST,), {}), ((PLATEAU, ROBUST), {})]
    parts = []
    for label, setting in (("previous defaults (patience 3, kl_teacher_student, restore after a stop)", PREVIOUS), ("today's defaults (patience 5, teacher_label_ce, restore at the end)", NOW)):
        n = bad = 0
        for rec in recs:
            vals = _monitor_values(rec)
            for pols, kw in configs:
                decision = library_decision(pols, setting["patience"], setting["misfit"], kw.get("min_gain"))
                lib = library_outcome(decision, vals, rec)
                ours = today_policies(rec, pols, patience=setting["patience"], misfit=setting["misfit"], min_gain=kw.get("min_gain"), restore=setting["restore"])
                if setting["restore"] is True and lib.stop is None:  # the previous callback restored only after a stop
                    lib = Outcome(None, rec.epochs, None)
                n += 1
                bad += (lib.stop, lib.kept) != (ours.stop, ours.kept)
        parts.append(f"{label}: {n - bad}/{n}")
    return "; ".join(parts) + " replays identical (stop check and kept check)"


# ============================================================================ the package's default
_TLC_CACHE: dict = {}


def package_teacher_label_ce(rec) -> np.ndarray:
    """Per check, ``w2s/misfit/teacher_label_ce`` as the monitor computes it, from the recorded probe
    logits: the softmax of the float32 logits in float32 (the monitor's ``student_output="logits"``),
    the covered points, and the package's functional :func:`lightning_w2s.metrics.misfit.misfit`
    (the per-sample terms the monitor's streaming ``Misfit`` sums); rounded to float32 as
    ``trainer.callback_metrics`` stores it, which is what the callback reads."""
    key = id(rec)
    if key not in _TLC_CACHE:
        import torch

        from lightning_w2s.metrics.misfit import misfit

        cov = torch.from_numpy(np.asarray(rec.probe_covered, dtype=bool))
        teacher = torch.from_numpy(np.asarray(rec.probe_teacher, dtype=np.float32))[cov]
        out = np.empty(len(rec.probe_logits))
        for c, logits in enumerate(rec.probe_logits):
            probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=-1)[cov]
            out[c] = float(np.float32(misfit(probs, teacher, validate_args=False)["teacher_label_ce"]))
        _TLC_CACHE[key] = (rec, out)
    return _TLC_CACHE[key][1]


def package_default_outcome(rec) -> Outcome:
    """``W2SEarlyStopping()`` with no arguments, replayed on ``rec`` through its pure decision API
    (its ``decision``: ``evaluate`` + ``restore_check``) on :func:`package_teacher_label_ce`."""
    from lightning_w2s import W2SEarlyStopping
    from lightning_w2s.metrics import quantities as Q

    stopper = W2SEarlyStopping(verbose=False)
    assert stopper.decision.needed == [Q.MISFIT[stopper.misfit]], stopper.decision.needed
    return library_outcome(stopper.decision, {Q.MISFIT[stopper.misfit]: package_teacher_label_ce(rec)}, rec, stopper.restore_best)


def check_package_default(recs, rule: Rule) -> tuple[str, int]:
    """Compare the package default's stop and kept check with ``rule`` (the benchmark's CHOSEN) on every
    run; returns a one-line verdict and the number of identical runs."""
    outs = [(package_default_outcome(r), rule.outcome(r)) for r in recs]
    same = sum((a.stop, a.kept) == (b.stop, b.kept) for a, b in outs)
    diff = max(float(np.nanmax(np.abs(package_teacher_label_ce(r) - signal(r, "probe_hce")))) for r in recs)
    return (
        f"W2SEarlyStopping() replayed through its evaluate()/restore_check on the package's teacher_label_ce "
        f"(max |package - offline probe_hce| {diff:.1e}): same stop and kept check as {rule.name} on "
        f"{same}/{len(recs)} runs"
    ), same


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
