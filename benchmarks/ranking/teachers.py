"""Teachers and W2S students for the teacher-ranking benchmark (``benchmarks/ranking/run.py``).

Three real text tasks, each with a frozen MiniLM student representation (cached by
``make bench-data``; loaders of :mod:`benchmarks.shared.tasks`): movie-review sentences, tweets and
fine-food reviews (gold = positive / "great"). Per task and seed the rows are split once:
``test`` (25%, gold used only to score the students), a ``pool`` of 1,000 gold-labelled rows the
small-model teachers are trained on (subsets of 50/200/1000), and ``train`` (the rest): the inputs
every teacher labels, the W2S student trains on, and :func:`lightning_w2s.rank_teachers` sees.

15 teachers of 5 families (chosen once by hand before any score was measured; the word lists are
written here and never tuned):

* **small models** — logistic regressions (``C = 1`` on standardised features) on different feature sets and gold budgets: WordLlama
  256-d (200 and 1,000 gold), WordLlama PCA-8 / PCA-32 (200), bag of words of 200 / 1,000 words
  (200 / 1,000 gold), PCA-4 and PCA-16 slices of the student's own MiniLM embedding (200 / 50),
  the full MiniLM embedding (50 gold: the student's own representation, little gold);
* **lexicon** — VADER (``vaderSentiment``), abstains when ``|compound| < 0.05``;
* **keyword rule** — 12 + 12 words per domain, abstains on no hit or a tie;
* **random flips** — the WordLlama-1000 teacher with 30% of its labels flipped at random, and the
  bag-of-words-1000 teacher with 20% flipped (errors the student cannot fit: it corrects them);
* **systematically biased** — the WordLlama-1000 teacher saying "positive" on every text of one
  WordLlama topic cluster (k-means, k = 5, the second-largest cluster), and the bag-of-words-1000
  teacher saying "negative" on every text with a negation word (errors the student can fit).

Unsupervised maps (PCA, vocabularies, k-means) are fitted on the ``train`` rows (no labels). The
W2S student of each teacher is ``LogisticRegression(C=1)`` on MiniLM, trained on the teacher's hard
labels over the covered ``train`` rows (abstentions left out), scored by gold error on ``test`` —
the outside check's student. Everything is seeded; results are cached under
``data/ranking_w2s_<task>_s<seed>.npz`` (VADER scores under ``data/ranking_vader_<task>.npy``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.shared import sources as demo_data
from benchmarks.shared import tasks as bt

TASK_NAMES = ("movie", "tweets", "fine_foods")
POOL = 1000
TEST_SHARE = 0.25
CACHE_VERSION = 1

# Hand-written once (general sentiment words for tweets); the movie and food lists are the ones of
# benchmarks/shared/sources.py and benchmarks/shared/tasks.py.
TWEET_POSITIVE = ("love", "great", "happy", "good", "awesome", "best", "thanks", "fun", "nice", "beautiful", "amazing", "excited")
TWEET_NEGATIVE = ("hate", "bad", "sad", "worst", "sucks", "angry", "awful", "terrible", "stupid", "sick", "tired", "annoying")
#: Every teacher, in the order built, with its family.
TEACHER_FAMILIES: dict[str, str] = {
    "wordllama_g200": "small model",
    "wordllama_g1000": "small model",
    "wordllama_pca8_g200": "small model",
    "wordllama_pca32_g200": "small model",
    "bow200_g200": "small model",
    "bow1000_g1000": "small model",
    "minilm_pca4_g200": "small model",
    "minilm_pca16_g50": "small model",
    "minilm_g50": "small model",
    "vader": "lexicon",
    "keyword": "rule",
    "wordllama_g1000_flip30": "random flips",
    "bow1000_g1000_flip20": "random flips",
    "wordllama_g1000_topic_positive": "biased",
    "bow1000_g1000_negation_negative": "biased",
}
NEGATION = re.compile(r"\b(?:not|no|never|nothing|n't|cannot|isn't|don't|doesn't|didn't|wasn't|won't|can't)\b|n't\b")


@dataclass
class TeacherSet:
    """One task × seed: every teacher's outputs on all rows, the splits and the W2S results."""

    task: str
    seed: int
    gold: np.ndarray  # (N,)
    student: np.ndarray  # (N, 384) MiniLM
    splits: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # name -> (N,) int64, -1 = abstain
    probs: dict[str, np.ndarray | None]  # name -> (N, 2) float32 or None
    features: dict[str, np.ndarray]  # name -> (N, d_w) float32
    family: dict[str, str]
    student_error: dict[str, float] = field(default_factory=dict)  # W2S student's gold error on test
    teacher_accuracy: dict[str, float] = field(default_factory=dict)  # on test, abstain = coin flip
    ceiling_error: float = float("nan")  # LR trained on gold labels of the train rows
    num_classes: int = 2

    @property
    def names(self) -> list[str]:
        return list(self.labels)


# ============================================================================ sources
@functools.lru_cache(maxsize=3)
def task_source(task: str, data_dir: str) -> dict[str, Any]:
    """Texts, gold, MiniLM (student) and WordLlama embeddings, keyword lists of one task."""
    d = Path(data_dir)
    if task == "movie":
        src = dict(bt._movie_source(data_dir))
        src["wordllama"] = bt.embed_wordllama(src["texts"], d / "movie_wordllama.npy")
        words = (demo_data.POSITIVE_WORDS, demo_data.NEGATIVE_WORDS)
    elif task == "tweets":
        src = dict(bt._tweets_source(data_dir))
        words = (TWEET_POSITIVE, TWEET_NEGATIVE)
    elif task == "fine_foods":
        src = dict(bt._fine_foods_source(data_dir))
        src["wordllama"] = bt.embed_wordllama(src["texts"], d / "fine_foods_wordllama.npy")
        words = (bt.FOOD_POSITIVE_WORDS, bt.FOOD_NEGATIVE_WORDS)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {TASK_NAMES}")
    src["words"] = words
    src["vader"] = _vader(task, src["texts"], d)
    return src


def _vader(task: str, texts: Sequence[str], d: Path) -> tuple[np.ndarray, np.ndarray]:
    path = d / f"ranking_vader_{task}.npy"
    if path.is_file():
        scores = np.load(path)
        if len(scores) == len(texts):
            compound = scores[:, 3]
            return np.where(compound >= 0.05, 1, np.where(compound <= -0.05, 0, -1)).astype(np.int64), scores
    labels, scores = bt.vader_teacher(texts)
    np.save(path, scores)
    return labels, scores


def splits_for(n: int, seed: int) -> dict[str, np.ndarray]:
    parts = bt.make_splits(n, 1000 + seed, {"test": int(round(TEST_SHARE * n)), "pool": POOL})
    return parts


# ============================================================================ teachers
def _lr(x: np.ndarray, y: np.ndarray, seed: int, standardize: bool = False):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(C=1.0, max_iter=3000, random_state=seed)
    return (make_pipeline(StandardScaler(), model) if standardize else model).fit(x, y)


def _pca(x: np.ndarray, fit_rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=k, random_state=seed).fit(x[fit_rows]).transform(x).astype(np.float32)


def build_teachers(task: str, seed: int, data_dir: str) -> TeacherSet:
    """Every teacher's labels / probabilities / features on all rows of ``task`` for ``seed``."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import CountVectorizer

    src = task_source(task, data_dir)
    texts, gold, wl, ml = src["texts"], src["gold"], src["wordllama"], src["minilm"]
    n = len(gold)
    sp = splits_for(n, seed)
    tr, pool = sp["train"], sp["pool"]
    rng = np.random.default_rng(seed)
    labels: dict[str, np.ndarray] = {}
    probs: dict[str, np.ndarray | None] = {}
    feats: dict[str, np.ndarray] = {}
    family: dict[str, str] = {}

    def small_model(name: str, x: np.ndarray, n_gold: int) -> None:
        idx = pool[:n_gold]
        if len(np.unique(gold[idx])) < 2:
            raise RuntimeError(f"{task} seed {seed}: the first {n_gold} pool rows hold one class")
        p = _lr(x[idx], gold[idx], seed, standardize=True).predict_proba(x).astype(np.float32)
        labels[name], probs[name], feats[name], family[name] = p.argmax(1).astype(np.int64), p, x, "small model"

    small_model("wordllama_g200", wl, 200)
    small_model("wordllama_g1000", wl, 1000)
    small_model("wordllama_pca8_g200", _pca(wl, tr, 8, seed), 200)
    small_model("wordllama_pca32_g200", _pca(wl, tr, 32, seed), 200)
    for v, g in ((200, 200), (1000, 1000)):
        cv = CountVectorizer(max_features=v).fit([texts[i] for i in tr])
        small_model(f"bow{v}_g{g}", cv.transform(texts).toarray().astype(np.float32), g)
    small_model("minilm_pca4_g200", _pca(ml, tr, 4, seed), 200)
    small_model("minilm_pca16_g50", _pca(ml, tr, 16, seed), 50)
    small_model("minilm_g50", np.asarray(ml, dtype=np.float32), 50)

    vl, vs = src["vader"]
    labels["vader"], probs["vader"], feats["vader"], family["vader"] = vl, None, vs.astype(np.float32), "lexicon"
    pos, neg = src["words"]
    counts = bt.keyword_counts(texts, tuple(pos) + tuple(neg))
    labels["keyword"], probs["keyword"] = bt.keyword_rule(counts, len(pos)), None
    feats["keyword"], family["keyword"] = counts, "rule"

    def flipped(name: str, base: str, rate: float) -> None:
        flip = rng.random(n) < rate
        lab = labels[base].copy()
        lab[flip] = 1 - lab[flip]
        labels[name], probs[name], feats[name], family[name] = lab, None, feats[base], "random flips"

    flipped("wordllama_g1000_flip30", "wordllama_g1000", 0.30)
    flipped("bow1000_g1000_flip20", "bow1000_g1000", 0.20)

    km = KMeans(n_clusters=5, n_init=4, random_state=seed).fit(wl[tr])
    cluster = km.predict(wl)
    sizes = np.bincount(cluster[tr], minlength=5)
    topic = int(np.argsort(-sizes)[1])
    lab = labels["wordllama_g1000"].copy()
    lab[cluster == topic] = 1
    labels["wordllama_g1000_topic_positive"], probs["wordllama_g1000_topic_positive"] = lab, None
    feats["wordllama_g1000_topic_positive"], family["wordllama_g1000_topic_positive"] = wl, "biased"
    negated = np.array([bool(NEGATION.search(t.lower())) for t in texts])
    lab = labels["bow1000_g1000"].copy()
    lab[negated] = 0
    labels["bow1000_g1000_negation_negative"], probs["bow1000_g1000_negation_negative"] = lab, None
    feats["bow1000_g1000_negation_negative"], family["bow1000_g1000_negation_negative"] = feats["bow1000_g1000"], "biased"
    if list(labels) != list(TEACHER_FAMILIES) or family != TEACHER_FAMILIES:
        raise AssertionError(f"teacher list out of sync with TEACHER_FAMILIES: {list(labels)}")
    return TeacherSet(task, seed, gold, np.asarray(ml, dtype=np.float32), sp, labels, probs, feats, family)


# ============================================================================ W2S students
def teacher_families(task: str) -> dict[str, str]:
    """``{teacher: family}`` of ``task``, in build order (the same 15 for every text task; a task
    with other teachers returns its own list here)."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; expected one of {TASK_NAMES}")
    return TEACHER_FAMILIES


def cached_w2s(task: str, seed: int, data_dir: str) -> dict[str, Any] | None:
    """The cached W2S results of ``task`` × ``seed`` (``student_error``, ``teacher_accuracy``:
    ``{name: value}``; ``ceiling_error``), or ``None`` when absent or stale."""
    path = Path(data_dir) / f"ranking_w2s_{task}_s{seed}.npz"
    if not path.is_file():
        return None
    blob = np.load(path, allow_pickle=False)
    names = list(teacher_families(task))
    if int(blob["version"]) != CACHE_VERSION or list(blob["names"]) != names:
        return None
    return {"student_error": dict(zip(names, blob["student_error"].tolist())), "teacher_accuracy": dict(zip(names, blob["teacher_accuracy"].tolist())), "ceiling_error": float(blob["ceiling_error"])}


def w2s_results(ts: TeacherSet, data_dir: str) -> TeacherSet:
    """Fill ``student_error``, ``teacher_accuracy`` and ``ceiling_error`` (cached per task × seed)."""
    path = Path(data_dir) / f"ranking_w2s_{ts.task}_s{ts.seed}.npz"
    names = ts.names
    cached = cached_w2s(ts.task, ts.seed, data_dir)
    if cached is not None:
        ts.student_error, ts.teacher_accuracy, ts.ceiling_error = (cached["student_error"], cached["teacher_accuracy"], cached["ceiling_error"])
        return ts
    tr, te = ts.splits["train"], ts.splits["test"]
    x_tr, x_te, y_te = ts.student[tr], ts.student[te], ts.gold[te]
    for name in names:
        lab = ts.labels[name][tr]
        cov = lab >= 0
        if len(np.unique(lab[cov])) < 2:  # a one-class teacher cannot train a logistic regression
            raise RuntimeError(f"{ts.task} seed {ts.seed}: teacher {name} gives one class on the covered training rows")
        model = _lr(x_tr[cov], lab[cov], ts.seed)
        ts.student_error[name] = float((model.predict(x_te) != y_te).mean())
        ts.teacher_accuracy[name] = bt.teacher_accuracy(ts.labels[name][te], y_te, ts.num_classes)
    ts.ceiling_error = float((_lr(x_tr, ts.gold[tr], ts.seed).predict(x_te) != y_te).mean())
    np.savez(
        path,
        version=CACHE_VERSION,
        names=np.array(names),
        student_error=np.array([ts.student_error[k] for k in names]),
        teacher_accuracy=np.array([ts.teacher_accuracy[k] for k in names]),
        ceiling_error=ts.ceiling_error,
    )
    return ts


def load(task: str, seed: int, data_dir: str) -> TeacherSet:
    return w2s_results(build_teachers(task, seed, data_dir), data_dir)
