"""W2SProbe validation: each bad input raises an error naming the argument and what was expected."""

import numpy as np
import pytest
import torch

from lightning_w2s import W2SProbe


def _x(n=10):
    return torch.randn(n, 4)


def test_teacher_labels_become_one_hot_and_abstentions_uncovered():
    probe = W2SProbe(_x(4), teacher_labels=torch.tensor([0, 2, -1, 1]), num_classes=3)
    assert probe.num_classes == 3
    assert torch.equal(probe.covered, torch.tensor([True, True, False, True]))
    assert torch.equal(probe.teacher_probs[1], torch.tensor([0.0, 0.0, 1.0]))


def test_teacher_logits_are_softmaxed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    probe = W2SProbe(_x(2), teacher_logits=logits)
    np.testing.assert_allclose(probe.teacher_probs.numpy(), torch.softmax(logits, 1).numpy(), rtol=1e-6)


def test_numpy_and_dict_inputs():
    probe = W2SProbe(np.zeros((3, 2), dtype=np.float32), teacher_labels=np.array([0, 1, 1]))
    assert probe.n == 3
    probe = W2SProbe({"input_ids": torch.zeros(3, 5, dtype=torch.long), "attention_mask": torch.ones(3, 5)}, teacher_labels=[0, 1, 0])
    assert set(probe.input_batch(torch.tensor([0, 2]))) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(teacher_labels=torch.tensor([0, 1, 1])), ValueError, r"`teacher_labels` has 3 rows but the probe has 10"),
        (dict(teacher_probs=torch.full((10, 2), 0.7)), ValueError, r"`teacher_probs` rows must sum to 1.*teacher_logits="),
        (dict(teacher_probs=torch.tensor([[2.0, -1.0]] * 10)), ValueError, r"probabilities in \[0, 1\].*teacher_logits="),
        (dict(teacher_logits=torch.tensor([[float("nan"), 0.0]] * 10)), ValueError, r"`teacher_logits` contains 10 non-finite"),
        (dict(teacher_labels=torch.zeros(10, dtype=torch.long), gold=torch.full((10,), 5), num_classes=2), ValueError, r"`gold` must lie in \[-1, 1\]"),
        (dict(teacher_labels=torch.zeros(10, dtype=torch.long), gold=torch.zeros(10), num_classes=2), TypeError, r"`gold` must hold integer"),
        (dict(teacher_labels=torch.zeros(10), num_classes=2), TypeError, r"`teacher_labels` must hold integer"),
        (dict(teacher_labels=torch.zeros(10, dtype=torch.long), teacher_logits=torch.zeros(10, 2)), ValueError, r"exactly one of .*got 2"),
        (dict(), ValueError, r"exactly one of .*got 0"),
        (dict(teacher_probs=torch.full((10, 2), 0.5), num_classes=3), ValueError, r"`num_classes`=3 but `teacher_probs` has 2 columns"),
        (dict(teacher_probs=torch.full((10, 2), 0.5), teacher_features=torch.randn(9, 3)), ValueError, r"`teacher_features` has 9 rows"),
        (dict(teacher_probs=torch.full((10, 2), 0.5), teacher_features=torch.randn(10, 3, 2)), ValueError, r"`teacher_features` must be a 2-D"),
        (dict(teacher_probs=torch.full((10, 2), 0.5), covered=torch.zeros(10, dtype=torch.bool)), ValueError, r"`covered` is False everywhere"),
        (dict(teacher_probs=torch.full((10, 2), 0.5), covered=torch.rand(10)), TypeError, r"`covered` must be a bool mask"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        W2SProbe(_x(10), **kwargs)


def test_empty_probe():
    with pytest.raises(ValueError, match=r"`inputs` is empty"):
        W2SProbe(torch.zeros(0, 3), teacher_labels=torch.zeros(0, dtype=torch.long), num_classes=2)


def test_bad_inputs_type():
    with pytest.raises(TypeError, match=r"`inputs` must be a Tensor"):
        W2SProbe(42, teacher_labels=[0])


def test_save_load_roundtrip_with_weights_only(tmp_path):
    gold = torch.tensor([0, 1, -1, 1, 0])
    probe = W2SProbe(_x(5), teacher_logits=torch.randn(5, 2), gold=gold, teacher_features=torch.randn(5, 3), covered=torch.tensor([True, True, False, True, True]))
    path = tmp_path / "probe.pt"
    probe.save(path)
    back = W2SProbe.load(path)
    for name in ("inputs", "teacher_probs", "gold", "covered", "teacher_features"):
        assert torch.allclose(getattr(back, name).float(), getattr(probe, name).float(), atol=1e-7), name


def test_load_rejects_other_files(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a saved W2SProbe"):
        W2SProbe.load(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        W2SProbe.load(tmp_path / "missing.pt")


def test_iter_batches_covers_every_point_once_with_equal_batch_counts():
    x = _x(11)
    probe = W2SProbe(x, teacher_labels=torch.zeros(11, dtype=torch.long), num_classes=2)
    seen = []
    counts = []
    for rank in range(3):
        batches = list(probe.iter_batches(rank, 3, batch_size=2))
        counts.append(len(batches))
        for index, valid, inputs in batches:
            seen += index[valid].tolist()
            assert torch.equal(inputs, x[index])
    assert sorted(seen) == list(range(11))
    assert len(set(counts)) == 1


def test_fingerprint_tells_probes_apart():
    x, labels = _x(4), torch.tensor([0, 1, 1, 0])
    a = W2SProbe(x, teacher_labels=labels)
    assert a.fingerprint == W2SProbe(x.clone(), teacher_labels=labels.clone()).fingerprint
    assert a.fingerprint != W2SProbe(x, teacher_labels=1 - labels).fingerprint
    assert a.fingerprint != W2SProbe(x + 1, teacher_labels=labels).fingerprint
    assert a.fingerprint != W2SProbe(x, teacher_labels=labels, gold=labels).fingerprint


def test_from_teacher_runs_once_and_captures_features():
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = _x(7)
    probe = W2SProbe.from_teacher(teacher, x, batch_size=3)
    with torch.no_grad():
        feats = teacher[1](teacher[0](x))
        logits = teacher(x)
    torch.testing.assert_close(probe.teacher_features, feats)
    torch.testing.assert_close(probe.teacher_probs, torch.softmax(logits, 1))
    assert teacher.training
