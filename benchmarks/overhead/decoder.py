"""Monitor overhead on a decoder LLM student (docs/decoder.md, docs/benchmarks.md): printed ratios, not a timed test.

The student is ``examples/decoder_student.py``'s: a randomly initialised ``LlamaForSequenceClassification``
with LoRA adapters (``peft``), left-padded generated sentences, a keyword-rule teacher. Two figures:

1. **check / bare forward**: after a short fit, the monitor's check (``W2SMonitor`` at its defaults
   but for ``batch_size``: the probe pass, the default head-token capture, every family's update
   and compute) and a bare eval + no_grad forward over the same probe batches under the same
   precision, timed back to back with the order alternating; ratio of medians. Goal ≤ 1.1×.
2. **fit with / without the monitor** (``--device cuda`` only): whole fits, interleaved pairs,
   ratio of medians.

``--device cuda`` (``make bench-gpu``) runs both in ``bf16-mixed`` on a larger student; without a
CUDA device it says so and exits 0. ``--device cpu`` (run by ``make bench-overhead``) runs figure 1
on a smaller student in ``32-true``.

    python -m benchmarks.overhead.decoder --device cuda [--repeats 7]
    python -m benchmarks.overhead.decoder --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.shared.report import spread, verdict
from benchmarks.shared.students import quiet_lightning
from examples import decoder_student as ex
from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.probe.features import eval_mode

CHECK_TARGET = 1.1
#: student size, data size and precision per device
SIZES = {
    "cpu": dict(hidden=256, layers=4, n_train=512, n_probe=1024, batch_size=128, precision="32-true", epochs=1),
    "cuda": dict(hidden=1024, layers=8, n_train=8192, n_probe=4096, batch_size=256, precision="bf16-mixed", epochs=2),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(size: dict[str, Any], seed: int = 0):
    """The LoRA decoder student, its probe, and its training loader."""
    L.seed_everything(seed, verbose=False)
    texts, gold = ex.make_texts(size["n_train"] + size["n_probe"], seed)
    teacher = ex.keyword_teacher(texts)
    tokenizer = ex.WordTokenizer(ex.POSITIVE + ex.NEGATIVE + ex.NEUTRAL, padding_side="left")
    n = size["n_train"]
    keep = np.flatnonzero(teacher[:n] >= 0)
    probe = W2SProbe(tokenizer(texts[n:]), teacher_labels=teacher[n:], gold=gold[n:], num_classes=2)
    model = ex.build_model(tokenizer.vocab_size, hidden=size["hidden"], layers=size["layers"])
    student = ex.DecoderStudent(ex.add_lora(model))
    train = ex.loader(tokenizer([texts[i] for i in keep]), teacher[:n][keep], size["batch_size"], shuffle=True)
    return student, probe, train


def trainer(size: dict[str, Any], device: str, callbacks: list) -> L.Trainer:
    return L.Trainer(
        accelerator=device,
        devices=1,
        precision=size["precision"],
        max_epochs=size["epochs"],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )


class _CheckVsForward(Callback):
    """After training: the monitor's check and a bare forward over the same probe batches, back to
    back, ``repeats`` times each (order alternating)."""

    def __init__(self, monitor: W2SMonitor, probe: W2SProbe, repeats: int, device: str) -> None:
        self.monitor, self.probe, self.repeats, self.device = monitor, probe, repeats, device
        self.check_s: list[float] = []
        self.bare_s: list[float] = []

    def _bare(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        with eval_mode(pl_module), trainer.precision_plugin.forward_context():
            _sync(self.device)
            t0 = time.perf_counter()
            for *_, inputs in self.probe.iter_batches(batch_size=self.monitor.batch_size):
                pl_module(**{k: v.to(pl_module.device, non_blocking=True) for k, v in inputs.items()})
            _sync(self.device)
            return time.perf_counter() - t0

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        _sync(self.device)
        t0 = time.perf_counter()
        self.monitor._run_check(trainer, pl_module, on_step=False)
        _sync(self.device)
        return time.perf_counter() - t0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._bare(trainer, pl_module), self._check(trainer, pl_module)  # warm-up (kernels, allocator)
        for i in range(self.repeats):
            if i % 2:
                self.check_s.append(self._check(trainer, pl_module))
                self.bare_s.append(self._bare(trainer, pl_module))
            else:
                self.bare_s.append(self._bare(trainer, pl_module))
                self.check_s.append(self._check(trainer, pl_module))


def check_vs_forward(size: dict[str, Any], device: str, repeats: int) -> tuple[list[float], list[float]]:
    student, probe, train = build(size)
    monitor = W2SMonitor(probe, batch_size=size["batch_size"], figure_every_n_checks=0)
    timer = _CheckVsForward(monitor, probe, repeats, device)
    trainer(size, device, [monitor, timer]).fit(student, train)
    return timer.check_s, timer.bare_s


def fit_with_without(size: dict[str, Any], device: str, repeats: int) -> tuple[list[float], list[float]]:
    """Whole fits with and without a default monitor, interleaved (the order flips every repeat)."""
    with_s, without_s = [], []
    for i in range(repeats):
        for watched in (True, False) if i % 2 == 0 else (False, True):
            student, probe, train = build(size)
            callbacks = [W2SMonitor(probe, batch_size=size["batch_size"], figure_every_n_checks=0)] if watched else []
            _sync(device)
            t0 = time.perf_counter()
            trainer(size, device, callbacks).fit(student, train)
            _sync(device)
            (with_s if watched else without_s).append(time.perf_counter() - t0)
    return with_s, without_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks.overhead.decoder: no CUDA device here; nothing measured (run `--device cpu` for the CPU figure)")
        return 0
    quiet_lightning()
    warnings.filterwarnings("ignore")
    size = SIZES[args.device]
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"decoder student: Llama hidden {size['hidden']}, {size['layers']} blocks, LoRA r=8, {size['precision']}, left padding, probe {size['n_probe']} in batches of {size['batch_size']}; {where}")
    check_s, bare_s = check_vs_forward(size, args.device, args.repeats)
    ratio = statistics.median(check_s) / statistics.median(bare_s)
    print(
        f"  check {spread(check_s)} ms, bare forward {spread(bare_s)} ms (median [min–max] of {args.repeats}); "
        f"check / bare forward {ratio:.2f}x (goal <= {CHECK_TARGET}x: {verdict(ratio <= CHECK_TARGET)})"
    )
    if args.device == "cuda":
        with_s, without_s = fit_with_without(size, args.device, max(3, args.repeats // 2))
        fit_ratio = statistics.median(with_s) / statistics.median(without_s)
        print(f"  fit with monitor {spread(with_s, 1, '{:.2f}')} s, without {spread(without_s, 1, '{:.2f}')} s; with / without {fit_ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
