"""Fast tests of the benchmark tasks' pure parts (no downloads, fake data only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.shared import sources as demo_data
from benchmarks.shared.tasks import PROBE_MAX, assemble_task, keyword_counts, keyword_rule, make_splits, pool_pixels, teacher_accuracy

SIZES = {"test": 30, "probe": 20, "val": 10}


# ------------------------------------------------------------------ splits
def test_splits_same_seed_same_sets_and_disjoint():
    a = make_splits(100, 3, SIZES)
    b = make_splits(100, 3, SIZES)
    assert set(a) == {"test", "probe", "val", "train"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert {k: len(v) for k, v in a.items()} == {"test": 30, "probe": 20, "val": 10, "train": 40}
    allidx = np.concatenate(list(a.values()))
    assert len(allidx) == 100 and len(np.unique(allidx)) == 100  # a partition of range(100)


def test_splits_differ_across_seeds():
    a, b = make_splits(100, 0, SIZES), make_splits(100, 1, SIZES)
    assert not np.array_equal(np.sort(a["test"]), np.sort(b["test"]))


def test_splits_train_size_cap_is_a_prefix_of_the_rest():
    full = make_splits(100, 5, SIZES)
    capped = make_splits(100, 5, SIZES, train_size=7)
    np.testing.assert_array_equal(capped["train"], full["train"][:7])
    np.testing.assert_array_equal(capped["probe"], full["probe"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=60, seed=0, sizes=SIZES), "leave none for 'train'"),
        (dict(n=100, seed=0, sizes={"test": -1}), "non-negative"),
        (dict(n=100, seed=0, sizes={"train": 5}), "must not name 'train'"),
        (dict(n=100, seed=0, sizes=SIZES, train_size=41), "only 40 indices"),
        (dict(n=0, seed=0, sizes={}), "positive int"),
    ],
)
def test_splits_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_splits(**kwargs)


# ------------------------------------------------------------------ assembling
def _fake(n=100, d=6, d_w=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    gold = rng.integers(0, 2, size=n)
    teacher = np.where(rng.random(n) < 0.3, -1, gold ^ (rng.random(n) < 0.2))
    feats = rng.normal(size=(n, d_w)).astype(np.float32)
    return x, gold, teacher.astype(np.int64), feats


def test_assemble_task_slices_rows_consistently():
    x, gold, teacher, feats = _fake()
    splits = make_splits(len(gold), 2, SIZES)
    task = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=feats, splits=splits, seed=2)
    for name, s in task.splits.items():
        np.testing.assert_array_equal(s.index, splits[name])
        for i, row in enumerate(s.index):  # row by row against the source arrays
            np.testing.assert_array_equal(s.x[i], x[row])
            assert s.gold[i] == gold[row] and s.teacher_labels[i] == teacher[row]
            np.testing.assert_array_equal(s.teacher_features[i], feats[row])
        np.testing.assert_array_equal(s.covered, teacher[splits[name]] >= 0)
    # same seed -> the same task
    again = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=feats, splits=make_splits(len(gold), 2, SIZES))
    np.testing.assert_array_equal(again.probe.x, task.probe.x)
    summary = task.summary()
    assert summary["n_train"] == 40 and summary["n_probe"] == 20
    assert summary["coverage"] == pytest.approx(np.mean(teacher[np.concatenate(list(splits.values()))] >= 0))


def test_assemble_task_split_sources_and_limits():
    x, gold, teacher, feats = _fake()
    ext = {"x": x[:5] + 100, "gold": gold[:5], "teacher_labels": teacher[:5], "teacher_features": feats[:5]}
    splits = make_splits(len(gold), 0, {"probe": 20, "val": 10})
    splits["test"] = np.arange(5)
    task = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=feats, splits=splits, split_sources={"test": ext})
    np.testing.assert_array_equal(task.test.x, x[:5] + 100)
    with pytest.raises(ValueError, match="lacks"):
        assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=feats, splits={"train": np.arange(3)})
    with pytest.raises(ValueError, match="rows but `gold`"):
        assemble_task("fake", x=x[:-1], gold=gold, teacher_labels=teacher, teacher_features=feats, splits=make_splits(100, 0, SIZES))
    big = make_splits(PROBE_MAX + 200, 0, {"test": 10, "probe": PROBE_MAX + 1, "val": 10})
    xb, gb, tb, fb = _fake(n=PROBE_MAX + 200)
    with pytest.raises(ValueError, match=f"<= {PROBE_MAX}"):
        assemble_task("fake", x=xb, gold=gb, teacher_labels=tb, teacher_features=fb, splits=big)


def test_make_probe_matches_the_split():
    x, gold, teacher, feats = _fake()
    task = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=feats, splits=make_splits(100, 1, SIZES))
    probe = task.make_probe()
    assert probe.n == 20 and probe.num_classes == 2
    np.testing.assert_array_equal(probe.covered.numpy(), task.probe.teacher_labels >= 0)
    np.testing.assert_array_equal(probe.gold.numpy(), task.probe.gold)
    cov = task.probe.covered
    np.testing.assert_array_equal(probe.teacher_probs[torch.from_numpy(cov)].argmax(1).numpy(), task.probe.teacher_labels[cov])
    np.testing.assert_allclose(probe.teacher_features.numpy(), task.probe.teacher_features)
    train_probe = task.make_probe("train", max_size=8, with_gold=False, with_teacher_features=False)
    assert train_probe.n == 8 and train_probe.gold is None and train_probe.teacher_features is None


# ------------------------------------------------------------------ teachers and features
def test_teacher_accuracy_counts_abstentions_as_coin_flips():
    labels = np.array([1, 0, -1, -1, 1])
    gold = np.array([1, 1, 0, 1, 0])
    assert teacher_accuracy(labels, gold) == pytest.approx((1 + 0 + 0.5 + 0.5 + 0) / 5)
    assert teacher_accuracy(np.array([3, -1]), np.array([3, 2]), num_classes=10) == pytest.approx((1 + 0.1) / 2)


def test_keyword_rule_agrees_with_the_demo_rule():
    texts = ["A great, wonderful film.", "Boring and dull, a mess.", "Great but boring.", "Nothing to see here.", "GREAT fun; awful ending", "The greatest? No: great!", "bad bad good great"]
    words = demo_data.POSITIVE_WORDS + demo_data.NEGATIVE_WORDS
    counts = keyword_counts(texts, words)
    np.testing.assert_array_equal(keyword_rule(counts, len(demo_data.POSITIVE_WORDS)), demo_data.keyword_rule_teacher(texts))
    # hand counts: "greatest" is not a whole-word hit of "great"; case is ignored
    assert counts[5, words.index("great")] == 1
    assert counts[4, words.index("great")] == 1 and counts[4, words.index("fun")] == 1 and counts[4, words.index("awful")] == 1
    assert counts[6, words.index("bad")] == 2
    np.testing.assert_array_equal(keyword_rule(counts, 12), [1, 0, -1, -1, 1, 1, 0])


def test_pool_pixels_against_a_loop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    got = pool_pixels(img)
    ref = np.zeros((3, 49))
    for n in range(3):
        for i in range(7):
            for j in range(7):
                ref[n, i * 7 + j] = img[n, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].astype(float).sum() / 16 / 255
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    with pytest.raises(ValueError, match="blocks"):
        pool_pixels(img[:, :27])


# ------------------------------------------------------------------ training helper
def test_train_student_records_epochs_and_weights():
    """The per-epoch weights kept in memory reproduce the recorded gold test accuracy and the
    teacher-labelled validation loss of the same epoch (checked with a plain numpy forward pass)."""
    from benchmarks.shared.students import make_network, train_student

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, d = 240, 5
    x = rng.normal(size=(n, d)).astype(np.float32)
    gold = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    teacher = np.where(np.abs(x[:, 0]) < 0.3, -1, gold)
    task = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=x[:, :2], splits=make_splits(n, 0, {"test": 60, "probe": 40, "val": 40}))
    res = train_student(task, seed=0, epochs=3, batch_size=32, lr=1e-2)
    assert len(res.test_acc) == len(res.val_loss) == len(res.weights) == 3
    assert res.n_train == int(task.train.covered.sum())  # abstentions dropped
    net = make_network(task)
    for e in range(3):
        w = {k.removeprefix("net."): v for k, v in res.weights[e].items() if k.startswith("net.")}
        net.load_state_dict(w)
        W1, b1, W2, b2 = (w[k].double().numpy() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))

        def logits(a):
            return np.maximum(a.astype(np.float64) @ W1.T + b1, 0) @ W2.T + b2

        acc = float((logits(task.test.x).argmax(1) == task.test.gold).mean())
        assert res.test_acc[e] == pytest.approx(acc, abs=1e-12)
        cov = task.val.covered
        z = logits(task.val.x[cov])
        z = z - z.max(1, keepdims=True)
        ce = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), task.val.teacher_labels[cov]]))
        assert res.val_loss[e] == pytest.approx(ce, rel=1e-4)
    assert res.best_acc == max(res.test_acc) and res.acc_at(res.best_epoch) == res.best_acc
    assert not torch.equal(res.weights[0]["net.0.weight"], res.weights[2]["net.0.weight"])


# ------------------------------------------------------------------ more teachers
def test_flip_teacher_rate_and_never_the_gold_class_when_flipped():
    from benchmarks.shared.tasks import flip_teacher

    rng = np.random.default_rng(0)
    for k in (2, 10):
        gold = rng.integers(0, k, size=20_000)
        noisy = flip_teacher(gold, 0.3, k, seed=5)
        flipped = noisy != gold
        assert abs(flipped.mean() - 0.3) < 0.015  # binomial sd 0.003
        assert noisy.min() >= 0 and noisy.max() < k and noisy.dtype == np.int64
        if k > 2:  # a flip goes to each other class about equally often
            counts = np.bincount((noisy[flipped] - gold[flipped]) % k, minlength=k)
            assert counts[0] == 0 and counts[1:].min() > 0.8 * counts[1:].mean()
        np.testing.assert_array_equal(noisy, flip_teacher(gold, 0.3, k, seed=5))  # seeded
        assert not np.array_equal(noisy, flip_teacher(gold, 0.3, k, seed=6))
    np.testing.assert_array_equal(flip_teacher(np.array([0, 1, 1]), 0.0, 2, 0), [0, 1, 1])
    with pytest.raises(ValueError, match="rate"):
        flip_teacher(np.array([0, 1]), 1.0, 2, 0)
    with pytest.raises(ValueError, match="gold"):
        flip_teacher(np.array([0, 2]), 0.1, 2, 0)


def test_sharpen_probs_keeps_argmax_and_raises_confidence():
    from benchmarks.shared.tasks import sharpen_probs

    p = np.array([[0.7, 0.3], [0.45, 0.55]], dtype=np.float32)
    s = sharpen_probs(p, 0.2)
    np.testing.assert_array_equal(s.argmax(1), p.argmax(1))
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)
    # by hand: softmax(log p / T) for two classes = p^(1/T) / (p^(1/T) + q^(1/T))
    assert s[0, 0] == pytest.approx(0.7**5 / (0.7**5 + 0.3**5), rel=1e-6)
    assert (s.max(1) > p.max(1)).all()
    np.testing.assert_allclose(sharpen_probs(p, 1.0), p, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        sharpen_probs(p, 0.0)


def test_pool_pixels_scale_for_digit_images():
    img = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8) / 127.0
    got = pool_pixels(img, block=2, scale=1.0)
    assert got.shape == (2, 16)
    assert got[0, 0] == pytest.approx(img[0, :2, :2].mean())
    assert got[1, 15] == pytest.approx(img[1, 6:, 6:].mean())


def test_zero_width_teacher_features_mean_no_teacher_representation():
    from benchmarks.shared.tasks import _no_features

    x, gold, teacher, _ = _fake()
    task = assemble_task("fake", x=x, gold=gold, teacher_labels=teacher, teacher_features=_no_features(len(gold)), splits=make_splits(100, 1, SIZES))
    assert task.summary()["d_w"] == 0
    probe = task.make_probe()
    assert probe.teacher_features is None  # the monitor then builds neighbourhoods in the student's features


def test_task_registry_names_a_source_for_every_task():
    from benchmarks.shared.tasks import TASK_SOURCES, TASKS

    assert set(TASK_SOURCES) == set(TASKS)
    assert len(set(TASK_SOURCES.values())) >= 4
