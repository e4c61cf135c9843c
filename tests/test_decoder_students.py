"""Decoder LLM students: tiny random Hugging Face configs (no download), left and right padding.

What the default capture reads (the head's input at the token whose logits the model returns,
checked against the model's own logits), that the monitor's code runs only in its own passes, and
that LoRA (peft), bf16-mixed, gradient checkpointing, gradient accumulation with a step cadence,
resuming, wrapper-prefixed layer names and torch.compile keep working through real Trainers.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import trainer_kwargs  # noqa: E402

from examples import decoder_student as ex  # noqa: E402
from lightning_w2s import W2SMonitor, W2SProbe  # noqa: E402
from lightning_w2s.probe.features import FeatureCapture, resolve_layer  # noqa: E402

V = 40  # vocabulary of the random configs


def _config_models():
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
        Qwen2Config,
        Qwen2ForSequenceClassification,
    )

    small = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=4, pad_token_id=0, num_labels=3)
    return {
        "llama": lambda: LlamaForSequenceClassification(LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2, **small)),
        "qwen2": lambda: Qwen2ForSequenceClassification(Qwen2Config(hidden_size=48, intermediate_size=64, num_key_value_heads=2, **small)),
        "gpt2": lambda: GPT2ForSequenceClassification(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=V, pad_token_id=0, num_labels=3, bos_token_id=1, eos_token_id=1)),
        "bert": lambda: BertForSequenceClassification(BertConfig(hidden_size=32, intermediate_size=64, **small)),
    }


def _tokens(side: str, lengths=(3, 9, 5, 1, 7, 9), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        (mask[i, t - n :] if side == "left" else mask[i, :n]).fill_(1)
    return {"input_ids": torch.randint(1, V, (len(lengths), t), generator=g) * mask, "attention_mask": mask}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "bert"])
def test_default_capture_times_the_head_is_the_models_logits(arch, side):
    torch.manual_seed(0)
    model = _config_models()[arch]().eval()
    batch = _tokens(side)
    capture = FeatureCapture(model)
    with torch.no_grad(), capture.attached():
        capture.set_batch(batch)
        logits = model(**batch).logits
        feats = capture.pop(logits)
    head = model.get_submodule(capture.layer)
    assert feats.shape == (6, head.in_features)
    torch.testing.assert_close(feats @ head.weight.T + (head.bias if head.bias is not None else 0), logits, atol=1e-5, rtol=0)
    expected = "vector" if arch == "bert" else "head token"  # BERT's head reads the pooler's vector
    assert capture.rule == expected and ("taken as is" if arch == "bert" else "6/6 rows") in capture.describe()
    # from_teacher stores the same features for a decoder teacher
    probe = W2SProbe.from_teacher(model, batch, batch_size=4)
    torch.testing.assert_close(probe.teacher_features @ head.weight.T + (head.bias if head.bias is not None else 0), logits, atol=1e-5, rtol=0)


def test_a_head_whose_logits_are_a_mean_falls_back_to_the_mean_of_real_tokens():
    class MeanOfTokens(torch.nn.Module):  # logits = the mean of the token-wise head's outputs
        def __init__(self):
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(V, 8), torch.nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask):
            return self.head(self.emb(input_ids)).mean(1)

    model, batch = MeanOfTokens(), _tokens("left")
    capture = FeatureCapture(model)
    with torch.no_grad(), capture.attached():
        capture.set_batch(batch)
        feats = capture.pop(model(**batch))
    m = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(feats, (model.emb(batch["input_ids"]) * m).sum(1) / m.sum(1))
    assert capture.rule == "mean" and "not the head's output at one token" in capture.describe()


# ------------------------------------------------------------------------------------------------ through a Trainer
def _setup(side: str = "left", lora: bool = False, n_train: int = 48, n_probe: int = 24, hidden: int = 32, seed: int = 0):
    """The example's student on the example's generated text, small."""
    L.seed_everything(seed, verbose=False)
    texts, gold = ex.make_texts(n_train + n_probe, seed)
    teacher = ex.keyword_teacher(texts)
    tokenizer = ex.WordTokenizer(ex.POSITIVE + ex.NEGATIVE + ex.NEUTRAL, padding_side=side)
    labels = np.where(teacher[:n_train] >= 0, teacher[:n_train], gold[:n_train])  # every row trains
    probe_tokens = tokenizer(texts[n_train:])
    probe = W2SProbe(probe_tokens, teacher_labels=teacher[n_train:], gold=gold[n_train:], num_classes=2)
    model = ex.build_model(tokenizer.vocab_size, hidden=hidden)
    student = ex.DecoderStudent(ex.add_lora(model, r=4) if lora else model)
    train = ex.loader(tokenizer(texts[:n_train]), labels, 8, shuffle=False)
    val = ex.loader(probe_tokens, gold[n_train:], 8, shuffle=False)
    return student, probe, train, val


def _fit(student, train, val, callbacks, **kw):
    trainer = L.Trainer(**trainer_kwargs(**{"max_epochs": 1, "callbacks": callbacks, **kw}))
    trainer.fit(student, train, val)
    return trainer


def test_the_monitors_code_runs_only_in_its_own_passes():
    calls = []

    def counting_mean(x, mask):  # a pooling= callable that counts its calls
        calls.append(x.shape[0])
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1)

    student, probe, train, val = _setup()
    seen = []

    def watch(step):
        def wrapped(batch, batch_idx):
            before = len(calls)
            hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in student.modules())
            out = step(batch, batch_idx)
            seen.append((len(calls) - before, hooks))
            return out

        return wrapped

    student.training_step, student.validation_step = watch(student.training_step), watch(student.validation_step)
    monitor = W2SMonitor(probe, pooling=counting_mean, batch_size=10, neighbours=0)
    _fit(student, train, val, [monitor], max_epochs=2)
    assert len(seen) == 2 * (6 + 3) and set(seen) == {(0, 0)}  # no monitor call, no hook in any user forward
    # the monitor's own calls: 1 fit-start batch, then 2 checks x 3 probe batches (24 = 10 + 10 + 4)
    assert calls == [10] + [10, 10, 4] * 2 and monitor.num_checks == 2


def test_a_failing_pooling_callable_fails_at_fit_start_naming_pooling():
    student, probe, train, val = _setup()
    steps = []
    student.training_step = lambda batch, i: steps.append(i)
    monitor = W2SMonitor(probe, pooling=lambda x, mask: x[torch.arange(101), mask.sum(1)], batch_size=10)
    with pytest.raises(ValueError, match=r"the `pooling` callable .* failed on a probe batch .*IndexError"):
        _fit(student, train, val, [monitor])
    assert steps == []  # before the user's first training step


def test_lora_final_weights_do_not_depend_on_the_monitor():
    def run(with_monitor: bool):
        student, probe, train, val = _setup(lora=True)
        monitor = W2SMonitor(probe, batch_size=10)
        _fit(student, train, val, [monitor] if with_monitor else [], max_epochs=2)
        if with_monitor:
            assert monitor.num_checks == 2 and monitor.runner.capture.layer.endswith("score.modules_to_save.default")
            assert monitor.runner.capture.rule == "head token"
        return {k: v.clone() for k, v in student.state_dict().items()}

    bare, watched = run(False), run(True)
    assert bare.keys() == watched.keys() and any("lora_A" in k for k in bare)
    for name in bare:
        assert torch.equal(bare[name], watched[name]), name


@pytest.mark.parametrize("side", ["left", "right"])
def test_bf16_mixed_lora_student_is_watched(side):
    student, probe, train, val = _setup(side=side, lora=True)
    monitor = W2SMonitor(probe, batch_size=10)
    _fit(student, train, val, [monitor], precision="bf16-mixed")
    assert monitor.num_checks == 1 and monitor.num_skipped == 0 and monitor.runner.capture.rule == "head token"
    assert all(np.isfinite(v) for v in monitor.last_values.values())


def test_gradient_checkpointing_and_accumulation_with_a_step_cadence():
    student, probe, train, val = _setup()
    student.model.gradient_checkpointing_enable()
    student.model.config.use_cache = False
    monitor = W2SMonitor(probe, batch_size=10, every_n_train_steps=2)
    trainer = _fit(student, train, val, [monitor], accumulate_grad_batches=2, max_epochs=2)
    # 6 batches an epoch = 3 optimizer steps; 6 steps in all: checks at steps 2, 4, 6
    assert trainer.global_step == 6 and monitor.num_checks == 3 and monitor.num_failed == 0


def test_resume_from_a_checkpoint_continues_the_monitors_history(tmp_path):
    student, probe, train, val = _setup()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _fit(student, train, val, [W2SMonitor(probe, batch_size=10), ckpt], enable_checkpointing=True)
    student, probe, train, val = _setup()
    monitor = W2SMonitor(probe, batch_size=10)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, callbacks=[monitor], enable_checkpointing=True, default_root_dir=tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(student, train, val, ckpt_path=str(tmp_path / "last.ckpt"))
    assert monitor.num_checks == 2  # one restored, one new
    assert not [w for w in caught if "fingerprint" in str(w.message)]  # the same probe and configuration


def test_wrapped_layer_names_are_suggested():
    student, probe, train, val = _setup(lora=True)  # peft inserts `base_model.model.`
    with pytest.raises(ValueError, match=r"did you mean 'model\.base_model\.model\.model\.layers\.1'"):
        _fit(student, train, val, [W2SMonitor(probe, layer="model.model.layers.1")])
    compiled = torch.nn.ModuleDict({"net": torch.compile(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))})
    with pytest.raises(ValueError, match=r"did you mean 'net\._orig_mod\.0'"):
        resolve_layer(compiled, "net.0")


def test_example_runs(tmp_path, capsys):
    trainer, monitor, stopper = ex.main(str(tmp_path), epochs=1, n_train=64, n_probe=40, hidden=32)
    out = capsys.readouterr().out
    assert "decoder_student: precision=" in out and monitor.num_checks == 1
    assert monitor.runner.capture.rule == "head token" and trainer.precision in ("bf16-mixed", "32-true")


# ------------------------------------------------------------------------------------------------ torch.compile
class _LastTokenClassifier(torch.nn.Module):
    """A decoder classifier in miniature: a token-wise head, logits read at the last non-pad token
    (as Hugging Face's do), small enough for dynamo to trace in a second."""

    def __init__(self):
        super().__init__()
        self.emb, self.body, self.score = torch.nn.Embedding(V, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2, bias=False)

    def forward(self, input_ids, attention_mask):
        logits = self.score(torch.tanh(self.body(self.emb(input_ids))))
        last = (torch.arange(input_ids.shape[1]) * (input_ids != 0)).argmax(-1)
        return logits[torch.arange(input_ids.shape[0]), last]


class _CompiledStudent(L.LightningModule):
    def __init__(self, backend=None):
        super().__init__()
        torch.manual_seed(0)
        net = _LastTokenClassifier()
        self.net = torch.compile(net, backend=backend, dynamic=False) if backend else net

    def forward(self, input_ids, attention_mask):
        return self.net(input_ids, attention_mask)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])

    def validation_step(self, batch, batch_idx):
        self(batch["input_ids"], batch["attention_mask"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_compiled_student_adds_one_graph_and_its_values_equal_eager():
    """Graphs counted by a backend that runs each traced graph as is: the monitor adds exactly one
    (its eval + no_grad pass with the capture active, at `batch_size` rows: the fit-start check uses
    a normal batch and the probe's ragged last batch is padded), and its values equal an eager run."""
    tokens = _tokens("left", lengths=[1 + i % 6 for i in range(64)], seed=1)
    rows = [{"input_ids": tokens["input_ids"][i], "attention_mask": tokens["attention_mask"][i], "labels": i % 2} for i in range(64)]
    loader = torch.utils.data.DataLoader(rows, batch_size=16)
    probe_inputs = {k: v[:37] for k, v in tokens.items()}  # 37 = 2 x 16 + 5: a ragged last batch
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def fit(backend, monitor: bool):
        graphs.clear()
        torch._dynamo.reset()
        m = W2SMonitor(W2SProbe(probe_inputs, teacher_labels=torch.arange(37) % 2), batch_size=16) if monitor else None
        _fit(_CompiledStudent(backend), loader, loader, [m] if m else [], max_epochs=2)
        return m, len(graphs)

    _, bare = fit(counting_backend, monitor=False)
    compiled, watched = fit(counting_backend, monitor=True)
    eager, _ = fit(None, monitor=True)
    assert bare == 2 and watched == bare + 1  # training (grad) and validation (no grad); + the probe pass
    assert compiled.num_checks == 2 and compiled.num_failed == 0 and compiled.runner.capture.rule == "head token"
    assert compiled.last_values.keys() == eager.last_values.keys()
    for name, value in eager.last_values.items():
        assert compiled.last_values[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
