"""Fast tests of the demo's data pipeline: no download, no model loading."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from benchmarks.shared import sources as demo_data
from benchmarks.shared.sources import MOVIE_FILE, NEGATIVE_WORDS, POSITIVE_WORDS, embed_minilm, keyword_rule_teacher, load_movie_snippets, movie_keyword_task, texts_fingerprint

# three lines copied from the real file's format: id TAB mean rating TAB text, CRLF line ends
REAL_FORMAT = (
    "1\t2.26666666667\tThe Rock is destined to be the 21st Century's new ''Conan''.\r\n"
    "2\t-0.6\tEffective but too tepid biopic\r\n"
    "3\t0.0\tA film with no polarity at all.\r\n"
    "\r\n"
    "4\t1.36\tM\u00fcnch's genuine insight makes the film's occasional overindulgence forgivable.\r\n"
    "5\t-3.875\tIt's a tab\tinside the text\r\n"
)


def write(tmp_path, content: bytes):
    path = tmp_path / MOVIE_FILE
    path.write_bytes(content)
    return path


def test_parser_real_format(tmp_path):
    write(tmp_path, REAL_FORMAT.encode("utf-8"))
    texts, ratings = load_movie_snippets(tmp_path)
    assert texts == [
        "The Rock is destined to be the 21st Century's new ''Conan''.",
        "Effective but too tepid biopic",
        "M\u00fcnch's genuine insight makes the film's occasional overindulgence forgivable.",
        "It's a tab\tinside the text",
    ]  # the zero-rated line and the blank line are dropped; a tab inside the text is kept
    assert ratings.dtype == np.float64
    np.testing.assert_allclose(ratings, [2.26666666667, -0.6, 1.36, -3.875])
    np.testing.assert_array_equal(demo_data.gold_labels(ratings), [1, 0, 1, 0])
    # a file path works as well as its folder
    texts2, _ = load_movie_snippets(tmp_path / MOVIE_FILE)
    assert texts2 == texts


def test_parser_non_utf8_falls_back(tmp_path):
    write(tmp_path, "1\t1.5\tM\u00fcnch is a caf\u00e9 delight\n2\t-1\tbad\n".encode("latin-1"))
    texts, ratings = load_movie_snippets(tmp_path)
    assert texts[0] == "M\u00fcnch is a caf\u00e9 delight"
    assert list(ratings) == [1.5, -1.0]


def test_parser_bom_and_errors(tmp_path):
    write(tmp_path, b"\xef\xbb\xbf1\t1\tfine\n")
    assert load_movie_snippets(tmp_path)[0] == ["fine"]
    write(tmp_path, b"1\t1\tfine\n2 no tabs here\n")
    with pytest.raises(ValueError, match=":2: expected"):
        load_movie_snippets(tmp_path)
    write(tmp_path, b"1\tabc\tfine\n")
    with pytest.raises(ValueError, match="not a number"):
        load_movie_snippets(tmp_path)
    with pytest.raises(FileNotFoundError, match="fetch-vader"):
        load_movie_snippets(tmp_path / "missing")


def test_keyword_rule():
    texts = [
        "A great, wonderful film.",  # 2 positive
        "Boring and dull: the worst of the year.",  # 3 negative
        "It is a film about a man.",  # no hit: abstain
        "A brilliant cast stuck in a terrible script.",  # 1 vs 1: tie, abstain
        "Great fun, even if the ending is bad.",  # 2 vs 1: positive
        "GREAT!",  # case-insensitive
        "A greatly overrated, badly made film.",  # whole words only: no hit
        "",
    ]
    labels = keyword_rule_teacher(texts)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [1, 0, -1, -1, 1, 1, -1, -1])
    assert len(POSITIVE_WORDS) == len(NEGATIVE_WORDS) == 12
    assert not set(POSITIVE_WORDS) & set(NEGATIVE_WORDS)
    assert keyword_rule_teacher([]).shape == (0,)


def test_teacher_accuracy_counts_abstentions_as_half():
    acc = demo_data.teacher_accuracy(np.array([1, 0, -1, -1]), np.array([1, 1, 0, 1]))
    assert acc == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)


class FakeEncoder:
    def __init__(self, dim: int = 4):
        self.calls = 0
        self.dim = dim

    def __call__(self, texts):
        self.calls += 1
        return np.array([[len(t), i, 0, 1][: self.dim] for i, t in enumerate(texts)], dtype=np.float64)


def test_embedding_cache_hit_and_invalidation(tmp_path):
    cache = tmp_path / "sub" / "emb.npy"
    enc = FakeEncoder()
    a = embed_minilm(["a", "bb"], cache, embed_fn=enc)
    assert enc.calls == 1 and a.dtype == np.float32 and a.shape == (2, 4)
    assert cache.is_file()
    meta = json.loads((tmp_path / "sub" / "emb.npy.json").read_text())
    assert meta["fingerprint"] == texts_fingerprint(["a", "bb"]) and meta["n"] == 2

    b = embed_minilm(["a", "bb"], cache, embed_fn=enc)  # same texts: cached
    assert enc.calls == 1
    np.testing.assert_array_equal(a, b)

    c = embed_minilm(["bb", "a"], cache, embed_fn=enc)  # reordered: recomputed
    assert enc.calls == 2
    np.testing.assert_array_equal(c[:, 0], [2, 1])
    embed_minilm(["a", "bb", "c"], cache, embed_fn=enc)  # different list: recomputed
    assert enc.calls == 3
    embed_minilm(["a", "bb", "c"], cache, embed_fn=enc, model_id="another encoder")  # other model: recomputed
    assert enc.calls == 4

    (tmp_path / "sub" / "emb.npy.json").write_text("not json")  # corrupt sidecar: recomputed, not crashed
    embed_minilm(["a", "bb", "c"], cache, embed_fn=enc, model_id="another encoder")
    assert enc.calls == 5


def test_fingerprint_has_no_concatenation_collisions():
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])
    assert texts_fingerprint([]) != texts_fingerprint([""])


def test_embedding_encoder_shape_checked(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        embed_minilm(["a", "b"], tmp_path / "e.npy", embed_fn=lambda t: np.zeros((1, 3)))


def test_movie_keyword_task_splits(tmp_path):
    rng = np.random.default_rng(0)
    words = ["great", "dull", "film", "plot", "actor", "superb", "awful"]
    lines = []
    for i in range(400):
        text = " ".join(rng.choice(words, size=4))
        rating = rng.uniform(-4, 4) or 1.0
        lines.append(f"{i + 1}\t{rating}\t{text} number {i}")
    write(tmp_path, ("\r\n".join(lines) + "\r\n").encode())

    def fake(texts):
        return rng.normal(size=(len(texts), 8)).astype(np.float32)

    task = movie_keyword_task(tmp_path, seed=3, probe_size=100, val_size=40, embed_fn=fake)
    sizes = task["info"]["sizes"]
    assert sizes == {"train": 140, "val": 40, "probe": 100, "test": 120}
    idx = np.concatenate([task[s]["index"] for s in ("train", "val", "probe", "test")])
    assert sorted(idx) == list(range(400))  # disjoint and complete

    texts, ratings = load_movie_snippets(tmp_path)
    teacher = keyword_rule_teacher(texts)
    gold = demo_data.gold_labels(ratings)
    for name in ("train", "val"):
        s = task[name]
        assert set(np.unique(s["y"])) <= {0, 1}
        np.testing.assert_array_equal(s["y"][s["covered"]], teacher[s["index"]][s["covered"]])
        np.testing.assert_array_equal(s["gold"], gold[s["index"]])
    p = task["probe"]
    np.testing.assert_array_equal(p["teacher_labels"], teacher[p["index"]])
    np.testing.assert_array_equal(p["covered"], p["teacher_labels"] >= 0)
    assert p["x"].shape == (100, 8) and p["x"].dtype == np.float32
    assert task["teacher_test_accuracy"] == pytest.approx(demo_data.teacher_accuracy(teacher[task["test"]["index"]], task["test"]["gold"]))
    assert (tmp_path / "movie_minilm.npy").is_file()  # default cache location

    again = movie_keyword_task(tmp_path, seed=3, probe_size=100, val_size=40, embed_fn=fake)  # cached, same splits
    np.testing.assert_array_equal(again["train"]["x"], task["train"]["x"])
    np.testing.assert_array_equal(again["train"]["y"], task["train"]["y"])
    other = movie_keyword_task(tmp_path, seed=4, probe_size=100, val_size=40, embed_fn=fake)
    assert not np.array_equal(other["test"]["index"], task["test"]["index"])

    with pytest.raises(ValueError, match="no training data"):
        movie_keyword_task(tmp_path, probe_size=300, embed_fn=fake)


def test_extract_snippets_skips_reserved_files(tmp_path):
    """The nested archive is read member by member: only the wanted files are written."""

    def tar_bytes(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    inner = tar_bytes(
        {
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": b"1\t1\tgreat\r\n",
            "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t1\tyay\r\n",
            "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt": b"reserved",
            "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt": b"reserved",
            "hutto_ICWSM_2014/../../evil_GroundTruth.txt": b"x",
        }
    )
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(tar_bytes({"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner}))
    dest = tmp_path / "out"
    dest.mkdir()
    written = demo_data._extract_snippets(sdist, dest)
    assert sorted(written) == [MOVIE_FILE, "tweets_GroundTruth.txt"]
    assert sorted(p.name for p in dest.iterdir()) == [MOVIE_FILE, "tweets_GroundTruth.txt"]
    assert demo_data.fetch_vader(dest) == dest / MOVIE_FILE  # already there: no download
