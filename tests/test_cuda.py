"""The check on a CUDA module: every tensor of a check stays on the module's
device, the values equal a CPU run, and queuing a batch never waits for the GPU.

No GPU was available where these were written (they skip without one): they run wherever
``torch.cuda.is_available()``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import TinyStudent, make_task, trainer_kwargs
from test_check_path import _feed, _metrics, _probe_data

from lightning_w2s import W2SMonitor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _fit(accelerator: str):
    task = make_task(n_train=64, n_probe=301)
    monitor = W2SMonitor(task.probe(input_features=True), train_probe=task.train_probe(33), batch_size=64, figure_every_n_checks=0)
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, accelerator=accelerator, callbacks=[monitor]))
    trainer.fit(TinyStudent(lr=0.0), task.train_loader(32), task.val_loader())  # lr 0: the same student on both devices
    return trainer, monitor


def test_a_check_on_a_cuda_module_equals_the_cpu_run():
    _, cpu = _fit("cpu")
    trainer, gpu = _fit("gpu")
    assert set(gpu.last_values) == set(cpu.last_values) and len(cpu.last_values) > 40
    for name, value in cpu.last_values.items():
        # the forward runs in float32 on either device (different kernels); every sum is float64
        assert gpu.last_values[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert trainer.callback_metrics["w2s/misfit/sq"].device.type == "cuda"  # where self.log would store it


def test_every_state_and_value_of_a_check_stays_on_the_device():
    _, monitor = _fit("gpu")
    for metrics in (monitor.metrics, monitor.train_metrics):
        for name, tensor in list(metrics.named_buffers()) + [(n, getattr(m, s)) for n, m in metrics.named_modules() for s in getattr(m, "_defaults", {})]:
            assert tensor.device.type == "cuda", name
    values = monitor.metrics.compute()
    assert {v.device.type for v in values.values()} == {"cuda"}


def test_queuing_never_waits_for_the_gpu_and_a_chunk_waits_a_fixed_number_of_times():
    data = {k: v.cuda() for k, v in _probe_data(n=512).items()}
    counts = {}
    for batches in (4, 16):
        m = _metrics({k: v.cpu() for k, v in data.items()}).cuda()
        torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises
        try:
            for i in range(batches):
                rows = slice(32 * i, 32 * (i + 1))
                m.update(data["probs"][rows], data["feats"][rows], torch.arange(512, device="cuda")[rows], torch.ones(32, dtype=torch.bool, device="cuda"))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m.flush()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts[batches] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[4] == counts[16]  # per chunk, not per batch


def test_values_on_cuda_equal_cpu_for_the_pure_aggregator():
    data = _probe_data()
    cpu = _metrics(data)
    _feed(cpu, data, 64)
    gpu = _metrics(data).cuda()
    _feed(gpu, {k: v.cuda() for k, v in data.items()}, 64)
    a, b = cpu.compute(), gpu.compute()
    assert a.keys() == b.keys()
    for name in a:
        assert float(b[name]) == pytest.approx(float(a[name]), rel=1e-9, abs=1e-12, nan_ok=True), name


# ------------------------------------------------------------------------------------------------ decoder LLM student
def test_decoder_head_token_capture_equals_the_logits_on_cuda():
    """The default capture of a left-padded Llama classifier on the GPU, in float32: the captured
    feature times the head equals the model's logits."""
    from test_decoder_students import _config_models, _tokens

    from lightning_w2s.probe.features import FeatureCapture

    torch.manual_seed(0)
    model = _config_models()["llama"]().cuda().eval()
    batch = {k: v.cuda() for k, v in _tokens("left").items()}
    capture = FeatureCapture(model)
    with torch.no_grad(), capture.attached():
        capture.set_batch(batch)
        logits = model(**batch).logits
        feats = capture.pop(logits)
    assert feats.device.type == "cuda" and capture.rule == "head token"
    torch.testing.assert_close(feats @ model.score.weight.T, logits, atol=1e-4, rtol=0)


def test_decoder_student_with_lora_in_bf16_is_watched_on_cuda(tmp_path):
    """The example's student (LoRA, left padding) in bf16-mixed on the GPU: every check kept, the
    head-token rule, finite values, the monitor's states on the device."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `examples`
    from examples import decoder_student as ex

    trainer, monitor, _ = ex.main(str(tmp_path), epochs=2, n_train=256, n_probe=96, hidden=64, trainer_kwargs=dict(accelerator="gpu", devices=1, precision="bf16-mixed"))
    assert trainer.precision == "bf16-mixed" and trainer.strategy.root_device.type == "cuda"
    assert monitor.num_checks == 2 and monitor.num_failed == 0 and monitor.num_skipped == 0
    assert monitor.runner.capture.rule == "head token"
    assert all(v == v and abs(v) != float("inf") for v in monitor.last_values.values())
    assert {t.device.type for _, t in monitor.metrics.named_buffers()} <= {"cuda"}
