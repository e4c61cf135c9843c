"""Label-free stopping signals, as pure functions of what a live monitor has at each check.

Every function here takes a :class:`~benchmarks.stopping.record.Recording` and returns a float64
array ``s`` of length ``C`` (one value per check; check 0 = before training) in the
**lower-is-better** orientation, ``NaN`` where the signal is undefined. The value at check ``c``
reads only:

* the student's outputs at checks ``<= c`` on the probe / train probe / teacher-labelled val set,
* the teacher's outputs on those sets (probabilities, or one-hot hard labels; the abstention mask),
* frozen neighbour tables of the probe computed once at fit start,
* optionally the outputs of an EMA of the student's weights,

never gold labels. So each one ports to a streaming monitor mechanically: a per-check reduction over
the probe (sums, hence exact under DDP), plus for churn the previous check's argmax (``n`` int8) and
for the EMA signal one extra copy of the weights.

Sources (each a heuristic here: none is a theorem about the student's gold accuracy):

* ``probe_ce`` / ``probe_err`` / ``probe_sq`` — held-out fit to the teacher on the covered probe:
  ``KL(p_w || p_s)`` (eps = 1e-6 clamps, the monitor's ``kl_teacher_student``; the CE on the teacher's
  hard label for rule teachers), disagreement with the teacher's argmax (= 1 - noisy-validation
  accuracy, Toner & Storkey 2024), and Charikar et al.'s squared misfit ``||p_s - p_w||^2``;
  ``probe_hce`` — the cross-entropy on the teacher's *hard* label (its argmax), i.e. the held-out value
  of the loss a student trained on the teacher's labels minimises (the user's ``val_loss``, computed on
  the probe); it differs from ``probe_ce`` only for teachers with soft probabilities;
* ``val_ce`` / ``val_err`` / ``val_auroc`` — the same on the user's teacher-labelled validation set
  (``val_ce`` is exactly the user's unclamped ``val_loss``; the baselines of :mod:`benchmarks.stopping.run`);
* ``churn_probe`` / ``churn_train`` — prediction churn, "Label Wave" (Yuan, Feng, Liu, ICLR 2024,
  "Early Stopping Against Label Noise Without Validation Data"): the fraction of a fixed slice whose
  predicted class changed since the previous check. Label Wave counts it on the training set during
  the training pass; here it is an eval-mode pass over the train probe (or the held-out probe);
* ``ema_dis_probe`` / ``ema_dis_train`` — disagreement between the student and an exponential moving
  average of its own weights (decay ``1 - 1/steps_per_epoch``): a live stand-in for the
  disagreement between two SGD runs that Jiang, Nagarajan, Baek, Kolter (ICLR 2022, "Assessing
  generalization of SGD via disagreement") show tracks test error. Memory: one copy of the weights;
  cost: one more forward pass over the slice per check;
* ``cons_ce`` / ``cons_err`` (and ``*_s``) — fit to the teacher on a **consensus subset** of the probe:
  covered points whose teacher label equals the strict plurality of the teacher labels of their
  ``k`` nearest covered neighbours in a frozen embedding (Deep k-NN filtering, Bahri, Jiang, Gupta,
  ICML 2020). ``cons_*`` use the monitor's neighbour table (the teacher's features when they define
  cosine neighbourhoods, else the student's representation at fit start); ``cons_*_s`` always the
  student's representation at fit start;
* ``knn_err`` / ``knn_ce`` (``*20``: 20 neighbours; ``knn_err_t``: the monitor's table) — fit to the
  teacher's **neighbour vote**: each probe point (abstentions included) gets the mean teacher
  probability vector of its covered nearest neighbours in the student's representation at fit start
  (itself excluded), the label correction of Deep k-NN (Bahri et al. 2020); a student that starts
  memorising individual teacher errors drifts away from this smoothed target;
* ``gamma`` — Lang et al.'s average neighbour non-robustness (NeurIPS 2024), the
  ``robustness_drop`` rule's input;
* ``atc`` — Average Thresholded Confidence (Garg, Balakrishnan, Lipton, Neyshabur, Sedghi, ICLR 2022):
  a threshold ``t`` on the student's max-probability is fitted on the covered probe points so that the
  share above ``t`` equals the student's agreement with the teacher there; the estimate is the share
  above ``t`` over the whole probe (abstentions included); the signal is ``-estimate``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EPS = 1e-6  # probability clamp before logarithms (the monitor's default)
CONSENSUS_K = 10
GAMMA_K = 10  # the monitor's default neighbours

__all__ = ["SIGNALS", "consensus_mask", "max_gain", "signal"]


# ============================================================================ helpers
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def kl_rows(p_teacher: np.ndarray, p_student: np.ndarray, eps: float = EPS) -> np.ndarray:
    """``KL(p_w || p_s)`` per row with ``clamp(., eps)`` inside the logs and ``0 log 0 = 0``."""
    pw = np.asarray(p_teacher, dtype=np.float64)
    ratio = np.log(np.clip(pw, eps, None)) - np.log(np.clip(p_student, eps, None))
    return np.where(pw > 0, pw * ratio, 0.0).sum(-1)


def neighbour_table(rec, prefer: str = "teacher") -> np.ndarray:
    """The probe's frozen k-NN table: the teacher's features when they define one (``prefer="teacher"``:
    the monitor's rule), else / or (``prefer="student"``) the student's representation at fit start."""
    if prefer == "teacher" and rec.knn_teacher is not None:
        return rec.knn_teacher
    return rec.knn_student


def consensus_mask(teacher_labels: np.ndarray, covered: np.ndarray, neighbours: np.ndarray, k: int) -> np.ndarray:
    """bool ``(n,)``: covered points whose teacher label is the strict plurality of the teacher labels
    of their covered neighbours among the first ``k`` columns of ``neighbours`` (a point with no
    covered neighbour, or a tie, is not in the subset)."""
    labels = np.asarray(teacher_labels)
    nb = np.asarray(neighbours)[:, :k]
    nb_labels = np.where(covered[nb], labels[nb], -1)  # (n, k), -1 = abstaining neighbour
    num_classes = int(labels.max(initial=0)) + 1
    counts = np.stack([(nb_labels == j).sum(1) for j in range(num_classes)], 1)  # (n, classes)
    top = counts.max(1)
    unique_top = (counts == top[:, None]).sum(1) == 1
    majority = counts.argmax(1)
    return covered & (top > 0) & unique_top & (majority == labels)


def _cached(fn):
    """Memoise a signal per (recording object, args): recordings are immutable once loaded."""
    cache: dict = {}

    def wrapper(rec, *args):
        key = (id(rec), args)
        if key not in cache:  # the recording is kept in the entry, so its id cannot be reused
            cache[key] = (rec, fn(rec, *args))
        return cache[key][1]

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.cache = cache  # type: ignore[attr-defined]
    return wrapper


# ============================================================================ signals
@_cached
def _probe_probs(rec) -> np.ndarray:
    return softmax(rec.probe_logits)


def _fit(probs: np.ndarray, teacher: np.ndarray, mask: np.ndarray, kind: str) -> np.ndarray:
    """Per check: teacher fit on ``mask`` points. ``teacher`` is ``(n, k)`` probabilities."""
    if not mask.any():
        return np.full(len(probs), np.nan)
    p, w = probs[:, mask], teacher[mask][None]
    if kind == "ce":
        return kl_rows(w, p).mean(1)
    if kind == "err":
        return (p.argmax(-1) != w.argmax(-1)).mean(1)
    if kind == "hce":  # cross-entropy on the teacher's hard label (argmax): the held-out training loss
        lab = w[0].argmax(-1)
        return -np.log(np.clip(np.take_along_axis(p, np.broadcast_to(lab[None, :, None], p.shape[:2] + (1,)), -1)[..., 0], EPS, None)).mean(1)
    if kind == "sq":
        return ((p - w) ** 2).sum(-1).mean(1)
    raise ValueError(kind)


@_cached
def probe_fit(rec, kind: str) -> np.ndarray:
    return _fit(_probe_probs(rec), rec.probe_teacher, rec.probe_covered, kind)


@_cached
def val_fit(rec, kind: str) -> np.ndarray:
    probs = softmax(rec.val_logits)
    k = probs.shape[-1]
    onehot = np.eye(k)[rec.val_teacher]
    if kind == "auroc":
        return -_auroc(probs, rec.val_teacher)
    if kind == "ce":  # exactly the user's val_loss (F.cross_entropy: no clamp)
        z = rec.val_logits.astype(np.float64)
        zmax = z.max(-1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(-1)) + zmax[..., 0]
        return (lse - np.take_along_axis(z, rec.val_teacher[None, :, None].repeat(len(z), 0), -1)[..., 0]).mean(1)
    return _fit(probs, onehot, np.ones(len(onehot), bool), kind)


def _auroc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per check: binary AUROC of ``p[:, 1]``, or the macro mean of one-vs-rest AUROCs over the classes
    present, against the teacher's labels, by the rank (Mann-Whitney) formula with tied scores
    given their mean rank (what torchmetrics and scikit-learn compute; written out because
    ``roc_auc_score``'s per-call overhead dominated the replay)."""
    from scipy.stats import rankdata

    out = np.full(len(probs), np.nan)
    k = probs.shape[-1]
    classes = [1] if k == 2 else [j for j in range(k) if 0 < (labels == j).sum() < len(labels)]
    if not classes or not all(0 < (labels == j).sum() < len(labels) for j in classes):
        return out
    for c in range(len(probs)):
        vals = []
        for j in classes:
            pos = labels == j
            ranks = rankdata(probs[c, :, j])
            n1, n0 = pos.sum(), (~pos).sum()
            vals.append((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
        out[c] = float(np.mean(vals))
    return out


@_cached
def train_fit(rec, kind: str) -> np.ndarray:
    probs = softmax(rec.train_logits)
    onehot = np.eye(probs.shape[-1])[rec.train_teacher]
    return _fit(probs, onehot, np.ones(len(onehot), bool), kind)


@_cached
def churn(rec, where: str) -> np.ndarray:
    """Share of the slice whose argmax changed since the previous check (check 0: NaN)."""
    logits = rec.probe_logits if where == "probe" else rec.train_logits
    pred = logits.argmax(-1)
    out = np.full(len(pred), np.nan)
    out[1:] = (pred[1:] != pred[:-1]).mean(1)
    return out


@_cached
def ema_disagreement(rec, where: str) -> np.ndarray:
    a = (rec.probe_logits if where == "probe" else rec.train_logits).argmax(-1)
    b = (rec.ema_probe_logits if where == "probe" else rec.ema_train_logits).astype(np.float32).argmax(-1)
    out = (a != b).mean(1).astype(np.float64)
    out[0] = np.nan  # the EMA starts as a copy of the initial weights
    return out


@_cached
def consensus(rec, kind: str, prefer: str) -> np.ndarray:
    teacher_labels = np.where(rec.probe_covered, rec.probe_teacher.argmax(1), -1)
    mask = consensus_mask(teacher_labels, rec.probe_covered, neighbour_table(rec, prefer), CONSENSUS_K)
    return _fit(_probe_probs(rec), rec.probe_teacher, mask, kind)


@_cached
def consensus_share(rec, prefer: str) -> float:
    """Share of covered probe points in the consensus subset (context only)."""
    teacher_labels = np.where(rec.probe_covered, rec.probe_teacher.argmax(1), -1)
    mask = consensus_mask(teacher_labels, rec.probe_covered, neighbour_table(rec, prefer), CONSENSUS_K)
    return float(mask.sum() / max(rec.probe_covered.sum(), 1))


@_cached
def knn_labels(rec, prefer: str, k: int) -> np.ndarray:
    """``(n, classes)`` leave-one-out neighbour vote of the teacher: the mean teacher probability vector
    of each probe point's covered neighbours among its first ``k`` (the point itself excluded); rows
    of points without a covered neighbour are NaN. Fixed for the run (computed once at fit start)."""
    nb = neighbour_table(rec, prefer)[:, :k]
    w = rec.probe_covered[nb].astype(np.float64)  # (n, k)
    q = (rec.probe_teacher[nb] * w[..., None]).sum(1)
    tot = w.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, q / tot, np.nan)


@_cached
def knn_fit(rec, kind: str, prefer: str, k: int) -> np.ndarray:
    """Fit of the student to the neighbour vote of the teacher (Deep k-NN's corrected labels,
    Bahri et al. 2020) on every probe point that has one, abstentions included: ``err`` = share whose
    argmax differs from the vote's plurality (ties left out), ``ce`` = ``KL(vote || p_s)``."""
    q = knn_labels(rec, prefer, k)
    ok = np.isfinite(q).all(1)
    if kind == "err":
        top = np.sort(q, 1)
        ok &= ~np.isclose(top[:, -1], top[:, -2]) if q.shape[1] > 1 else ok
    if not ok.any():
        return np.full(len(rec.probe_logits), np.nan)
    return _fit(_probe_probs(rec), np.nan_to_num(q), ok, kind)


@_cached
def gamma(rec) -> np.ndarray:
    """Lang et al.'s gamma-hat: mean over probe points of the share of their ``GAMMA_K`` neighbours
    (monitor's table) predicted differently."""
    nb = neighbour_table(rec, "teacher")[:, :GAMMA_K]
    pred = rec.probe_logits.argmax(-1)  # (C, n)
    return (pred[:, nb] != pred[:, :, None]).mean((1, 2))


@_cached
def atc(rec) -> np.ndarray:
    probs = _probe_probs(rec)
    conf = probs.max(-1)  # (C, n)
    cov = rec.probe_covered
    agree = (probs.argmax(-1) == rec.probe_teacher.argmax(1)[None]) & cov[None]
    out = np.full(len(probs), np.nan)
    n_cov = int(cov.sum())
    if n_cov == 0:
        return out
    for c in range(len(probs)):
        acc = agree[c].sum() / n_cov
        # t: the (1 - acc) quantile of covered confidences, so that the share above t is acc
        cc = np.sort(conf[c, cov])
        j = int(np.clip(round((1 - acc) * n_cov), 0, n_cov))
        t = -np.inf if j == 0 else cc[j - 1]
        out[c] = -float((conf[c] > t).mean())
    return out


@_cached
def max_gain(rec) -> np.ndarray:
    """The monitor's ``w2s/bounds/max_gain`` per check (what the ``gain_exhausted`` rule reads),
    computed with the package's own :func:`lightning_w2s.metrics.bounds.max_accuracy_gain` from the
    held-out disagreement and the probe's coverage: ``coverage x disagreement + (1 - coverage)``.
    Not a candidate signal (higher means more gain still possible)."""
    from lightning_w2s.metrics.bounds import max_accuracy_gain

    coverage = float(rec.probe_covered.mean())
    return np.array([max_accuracy_gain(float(d), coverage=coverage) if np.isfinite(d) else np.nan for d in probe_fit(rec, "err")])


SIGNALS: dict[str, Callable] = {
    "probe_ce": lambda r: probe_fit(r, "ce"),
    "probe_err": lambda r: probe_fit(r, "err"),
    "probe_hce": lambda r: probe_fit(r, "hce"),
    "probe_sq": lambda r: probe_fit(r, "sq"),
    "train_ce": lambda r: train_fit(r, "ce"),
    "val_ce": lambda r: val_fit(r, "ce"),
    "val_err": lambda r: val_fit(r, "err"),
    "val_auroc": lambda r: val_fit(r, "auroc"),
    "churn_probe": lambda r: churn(r, "probe"),
    "churn_train": lambda r: churn(r, "train"),
    "ema_dis_probe": lambda r: ema_disagreement(r, "probe"),
    "ema_dis_train": lambda r: ema_disagreement(r, "train"),
    "cons_ce": lambda r: consensus(r, "ce", "teacher"),
    "cons_err": lambda r: consensus(r, "err", "teacher"),
    "cons_ce_s": lambda r: consensus(r, "ce", "student"),
    "cons_err_s": lambda r: consensus(r, "err", "student"),
    "knn_err": lambda r: knn_fit(r, "err", "student", 10),
    "knn_ce": lambda r: knn_fit(r, "ce", "student", 10),
    "knn_err20": lambda r: knn_fit(r, "err", "student", 20),
    "knn_ce20": lambda r: knn_fit(r, "ce", "student", 20),
    "knn_err_t": lambda r: knn_fit(r, "err", "teacher", 10),
    "gamma": gamma,
    "atc": atc,
}
"""name -> ``f(recording) -> (C,)`` lower-is-better signal."""

# which signals a W2S monitor computes itself (probe / train probe / EMA / frozen tables); the val_*
# signals come from the user's own validation loop (the baselines' inputs)
MONITOR_SIGNALS = tuple(k for k in SIGNALS if not k.startswith("val_"))


def signal(rec, name: str) -> np.ndarray:
    return np.asarray(SIGNALS[name](rec), dtype=np.float64)
