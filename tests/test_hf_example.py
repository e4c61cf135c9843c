"""The Hugging Face example (``examples/hf_sequence_classification.py``) end to end, on a tiny randomly
initialised ``BertForSequenceClassification`` (``BertConfig``: no download) with the packaged MiniLM
tokenizer and synthetic sentences, so ``make test`` needs no hub and no data files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.shared.sources import NEGATIVE_WORDS, POSITIVE_WORDS  # noqa: E402
from examples import hf_sequence_classification as hf  # noqa: E402
from lightning_w2s.testing import last_w2s_values  # noqa: E402

NEUTRAL = ("the", "film", "plot", "actor", "scene", "story", "music", "ending", "cast", "script", "camera", "movie")


def _sentences(n: int = 360, seed: int = 0):
    """Gold sentiment; a third of the sentences carry a keyword (the rule labels them, wrong on ~15%),
    the rest none (the rule abstains). Sentiment also shows in a non-keyword word the student can learn."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    texts = []
    for i, g in enumerate(gold):
        words = list(rng.choice(NEUTRAL, 5)) + ["nice" if g else "sad"]
        if i % 3 == 0:
            agrees = rng.random() > 0.15
            words.append(rng.choice(POSITIVE_WORDS if (g == 1) == agrees else NEGATIVE_WORDS))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, gold


def _tiny_bert(vocab_size: int):
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(hf.minilm_path())


@pytest.mark.parametrize("forward_fn", [False, True])
def test_hf_example_runs_on_a_tiny_bert(tmp_path, tokenizer, forward_fn):
    texts, gold = _sentences()
    model = _tiny_bert(tokenizer.vocab_size)
    out = hf.main(model, tokenizer, texts, gold, logdir=str(tmp_path), epochs=2, n_train=80, n_probe=64, max_length=16, batch_size=16, forward_fn=forward_fn)
    monitor, values = out["monitor"], out["values"]
    assert monitor.layer == "model.bert.encoder.layer.1" and monitor.pooling == "mean"
    assert monitor.num_checks == 2 and monitor.num_failed == 0
    probe = monitor.probe
    assert set(probe.inputs) == {"input_ids", "attention_mask"} and probe.has_abstentions and probe.has_gold
    # the dict probe, the SequenceClassifierOutput and the pooled encoder states all reached the metrics
    for name in ("w2s/misfit/disagreement", "w2s/gold/covered_accuracy", "w2s/gold/teacher_accuracy", "w2s/gold/coverage_accuracy", "w2s/representation/effective_rank"):
        assert name in values, name
    assert 1.0 <= values["w2s/representation/effective_rank"] <= 32.0  # hidden size of the tiny BERT
    assert values == pytest.approx({k: v for k, v in last_w2s_values(out["log_dir"]).items() if k in values}, abs=1e-6)


def test_mean_pooling_of_the_named_layer_ignores_padding(tokenizer):
    """The representation the example asks for is the attention-mask mean of the last block's token
    states: padding a sentence further does not change it."""
    from lightning_w2s.probe.features import FeatureCapture

    model = _tiny_bert(tokenizer.vocab_size)
    student = hf.HFStudent(model).eval()  # the example trains with dropout on; compare without it
    capture = FeatureCapture(student, layer=hf.last_encoder_layer(model), pooling="mean").attach()
    short = hf.tokenize(tokenizer, ["a fine film", "the worst plot ever written"], max_length=16)
    padded = tokenizer(["a fine film", "the worst plot ever written"], padding="max_length", max_length=16, return_tensors="pt")
    padded = {k: padded[k] for k in ("input_ids", "attention_mask")}
    feats = []
    for batch in (short, padded):
        capture.set_batch(batch)
        with torch.no_grad():
            student(**batch)
        feats.append(capture.pop())
    capture.detach()
    assert feats[0].shape == (2, 32)
    torch.testing.assert_close(feats[0], feats[1], atol=1e-5, rtol=1e-5)
