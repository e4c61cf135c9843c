"""Monitor overhead benchmark (docs/benchmarks.md): printed figures and ratios, not a timed test.

Everything below is measured in one run (``make bench-overhead``, about 10 minutes on 2 shared CPU
cores, plus the MiniLM part of ``benchmarks/overhead/encoder.py``). The machine is shared: arms are
interleaved (the order flips every repeat so drift hits both alike) and medians with their spread
(min–max) are printed.

1. **Cheap student, one check** (synthetic, so the sizes are exact): an MLP head
   (256-d inputs, 512 hidden, 4 classes), a probe of 2,048 points with gold and 64-d teacher
   features, a train probe of 1,000 points, the monitor at its defaults. At every validation epoch
   end, inside one fit, a bare ``no_grad`` forward over both probes (batches of the monitor's
   ``batch_size``) and the monitor's check are timed back to back (order alternating); the check is
   split into the representation family (the ``RepresentationGap`` / ``EffectiveRank`` states'
   update + compute + reset, timed around those calls) and the rest. Target: check ≤ bare forward
   + 20 ms. Then the way an outside check sees it: fits with and without the monitor, interleaved,
   ``(median with − median without) / checks``, which also carries the one-off fit-start work
   (neighbour table, shape check) spread over the checks. Printed with it: where a check's time
   goes (exclusive wall and CPU ms of every metric state's update/compute/reset, the Lang family,
   the aggregator's own work, the student's forward passes, the rest of the monitor), the host reads
   per check, and every logged value's agreement with the previous exact path (the same check with
   float64 products and the teacher's spectrum recomputed, on the same trained student), with the
   ``products="float32"`` option's agreement beside it, and the **floor**: the three kernels a
   default check cannot do without at this size, each timed alone on the fitted monitor's states
   (the tridiagonal reduction of the student's covariance that every dense eigensolver starts
   with, ``eigvalsh``; the probe's float64 second-moment product; the exact smCE programmes), on
   one thread and on the process's threads, and their sum at the faster count against the target.
1b. **A bigger head** (section ``big``): an MLP 256→512→512→10 on 40,000 rows, 4 epochs, the
   same probe sizes: interleaved fits with and without a default monitor, ratio of medians
   (target ≤ 1.03).
2. **Busy machine**: the same check in a fresh process *without* ``OMP_WAIT_POLICY`` (users' scripts
   do not set it; the Makefile does), 5 calls alone, then 5 calls beside two busy torch processes
   (``python -c`` loops of 1000×1000 float32 matmuls at default threads) that this benchmark starts
   and stops. Target: worst beside ≤ 4× best alone. The monitor gives the student's forward passes
   the cores the other processes leave idle at the check's start (one thread beside these two).
3. **Fit overhead on real tasks** (``benchmarks.shared.tasks``): ``movie_vader`` (MLP head over cached
   MiniLM embeddings) and ``fashion_scratch`` (small CNN, 8k images): fit time with/without a
   default monitor (interleaved pairs, ratio of medians; target ≤ 1.03) and, inside one fit, check
   vs bare forward of the same probe (target ≤ 1.15).
4. With CUDA: the same on the GPU, plus one check at n = 65,536, d = 1,024 (target < 250 ms).
   Without CUDA: printed as skipped.

The fine-tuned MiniLM student is ``benchmarks/overhead/encoder.py`` (run by the same make target).

    python -m benchmarks.overhead.run [--data data] [--sections cheap big busy fit] [--repeats 5]
    python -m benchmarks.overhead.run --busy-child   # (internal) section 2's measured process
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.shared.report import spread, verdict
from benchmarks.shared.students import StudentModule, quiet_lightning, train_student
from benchmarks.shared.tasks import DEFAULT_DATA, TASKS, load_task
from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.probe.features import eval_mode

FIT_TARGET = 1.03
CHECK_TARGET = 1.15
CHEAP_TARGET_MS = 20.0
BUSY_TARGET = 4.0
LARGE_TARGET_MS = 250.0
BUSY_LOOP = "import torch\na = torch.randn(1000, 1000)\nwhile True:\n    a @ a\n"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------
# timing helpers
# ------------------------------------------------------------------------------------------------
def bare_forward(pl_module: L.LightningModule, inputs: Sequence[torch.Tensor], batch_size: int, device: str = "cpu") -> float:
    """Seconds of a bare ``no_grad`` eval forward over ``inputs`` in batches of ``batch_size``
    (each submodule's mode restored), inputs moved to the module's device batch by batch."""
    with eval_mode(pl_module):
        _sync(device)
        t0 = time.perf_counter()
        for x in inputs:
            for xb in x.split(batch_size):
                pl_module(xb.to(pl_module.device, non_blocking=True))
        _sync(device)
        return time.perf_counter() - t0


REPRESENTATION_PARTS = ("representation", "student_rank")
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__")


class _FamilyClock:
    """Where a check's time goes: wraps the bound ``update`` / ``compute`` / ``reset`` of every
    metric state of the monitor's aggregators (probe and train probe), the aggregators' own
    ``_lang_family`` and ``_drop_undefined``, and (with ``monitor``) the student's forward passes,
    and accumulates each one's **exclusive** wall time (nested wrapped calls are not counted twice)
    under ``<part> <method>``; the aggregator's remaining time (chunk assembly in ``flush``, the
    value dictionary in ``compute``) is ``aggregator other``. ``seconds`` / ``cpu_seconds`` stay the
    representation family's totals (update + compute + reset). Host reads (``item``, ``tolist``,
    ``float()``, ``int()``, ``bool()`` of a tensor) during a :meth:`counting` block are counted."""

    def __init__(self, metrics: Any, train_metrics: Any = None, monitor: Any = None) -> None:
        self.seconds = self.cpu_seconds = 0.0
        self.parts: dict[str, float] = {}  # exclusive wall seconds
        self.cpu_parts: dict[str, float] = {}  # exclusive CPU seconds of this process
        self.host_reads = 0
        self._stack: list[tuple[float, float]] = []
        for prefix, agg in (("", metrics), ("train ", train_metrics)):
            if agg is None:
                continue
            for name, metric in agg.named_children():
                for method in ("update", "compute", "reset"):
                    key = "representation" if name in REPRESENTATION_PARTS else f"{prefix}{name}"
                    setattr(metric, method, self._wrap(getattr(metric, method), f"{key} {method}", name in REPRESENTATION_PARTS))
            for method, label in (
                ("flush", "aggregator other"),
                ("compute", "aggregator other"),
                ("reset", "aggregator other"),
                ("_lang_family", "lang family"),
                ("_drop_undefined", "aggregator other"),
            ):
                if hasattr(agg, method):
                    object.__setattr__(agg, method, self._wrap(getattr(agg, method), label))  # both probes together
        if monitor is not None:
            monitor.runner.forward = self._wrap(monitor.runner.forward, "student forward (probe pass)")

    def _wrap(self, fn, label: str, family: bool = False):
        def timed(*args: Any, **kwargs: Any):
            c0, t0 = time.process_time(), time.perf_counter()
            self._stack.append((0.0, 0.0))
            try:
                return fn(*args, **kwargs)
            finally:
                total, cpu = time.perf_counter() - t0, time.process_time() - c0
                nested, nested_cpu = self._stack.pop()
                self.parts[label] = self.parts.get(label, 0.0) + total - nested
                self.cpu_parts[label] = self.cpu_parts.get(label, 0.0) + cpu - nested_cpu
                if self._stack:
                    self._stack[-1] = (self._stack[-1][0] + total, self._stack[-1][1] + cpu)
                if family:
                    self.seconds += total
                    self.cpu_seconds += cpu

        return timed

    def snapshot(self) -> dict[str, float]:
        return {**self.parts, **{f"cpu:{k}": v for k, v in self.cpu_parts.items()}}

    @contextlib.contextmanager
    def counting(self):
        """Count the host reads of tensors inside the block."""
        saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

        def counted(fn):
            def read(*args: Any, **kwargs: Any):
                self.host_reads += 1
                return fn(*args, **kwargs)

            return read

        for name, fn in saved.items():
            setattr(torch.Tensor, name, counted(fn))
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch.Tensor, name, fn)


class ComparedMonitor(W2SMonitor):
    """A :class:`W2SMonitor` that, at each validation epoch end, times its own check and a bare
    forward of the probe inputs back to back (the order alternates), and the representation
    family's share of the check."""

    def __init__(self, *args: Any, bare_inputs: Sequence[torch.Tensor], sync_device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bare_inputs, self.sync_device = list(bare_inputs), sync_device
        self.check_s: list[float] = []
        self.bare_s: list[float] = []
        self.repr_s: list[float] = []
        self.check_cpu_s: list[float] = []
        self.repr_cpu_s: list[float] = []
        self.clock = _FamilyClock(self.metrics, self.train_metrics, self)
        self.parts: list[dict[str, float]] = []  # per check: exclusive seconds by part
        self.host_reads: list[int] = []
        self.hook_seconds = 0.0

    def bare(self, pl_module) -> float:
        """Seconds of one bare forward over the probe inputs."""
        return bare_forward(pl_module, self.bare_inputs, self.batch_size, self.sync_device)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        bare_first = len(self.check_s) % 2 == 0
        if bare_first:
            self.bare_s.append(self.bare(pl_module))
        before, before_cpu = self.clock.seconds, self.clock.cpu_seconds
        parts, reads = self.clock.snapshot(), self.clock.host_reads
        _sync(self.sync_device)
        c0, t0 = time.process_time(), time.perf_counter()
        with self.clock.counting():
            super().on_validation_epoch_end(trainer, pl_module)
        _sync(self.sync_device)
        self.check_s.append(time.perf_counter() - t0)
        self.check_cpu_s.append(time.process_time() - c0)
        now = self.clock.snapshot()
        part = {k: v - parts.get(k, 0.0) for k, v in now.items()}
        wall = sum(v for k, v in part.items() if not k.startswith("cpu:"))
        cpu = sum(v for k, v in part.items() if k.startswith("cpu:"))
        other = "monitor other (publish, logging, hooks)"
        part[other], part["cpu:" + other] = self.check_s[-1] - wall, self.check_cpu_s[-1] - cpu
        self.parts.append(part)
        self.host_reads.append(self.clock.host_reads - reads)
        self.repr_s.append(self.clock.seconds - before)
        self.repr_cpu_s.append(self.clock.cpu_seconds - before_cpu)
        if not bare_first:
            self.bare_s.append(self.bare(pl_module))


# ------------------------------------------------------------------------------------------------
# 1. cheap student (synthetic)
# ------------------------------------------------------------------------------------------------
D_IN, HIDDEN, K, N_PROBE, N_TRAIN_PROBE, D_TEACHER, N_TRAIN = 256, 512, 4, 2048, 1000, 64, 4096
THIN = 5  # representation_every_n_checks of the amortised row


def synthetic_task(num_classes: int, n_train: int, seed: int = 0) -> dict[str, Any]:
    """Synthetic data: gold = argmax of a random linear map of 256-d inputs, a teacher that
    relabels 20% of the rows with a random class, teacher features = a noisy 64-d view of the
    inputs; the probe (2,048, with gold and teacher features), the train probe (1,000) and
    ``n_train`` training rows."""
    g = torch.Generator().manual_seed(seed)
    n = N_PROBE + N_TRAIN_PROBE + n_train
    x = torch.randn(n, D_IN, generator=g)
    gold = (x @ torch.randn(D_IN, num_classes, generator=g)).argmax(1)
    teacher = torch.where(torch.rand(n, generator=g) < 0.2, torch.randint(0, num_classes, (n,), generator=g), gold)
    feats = x[:, :D_TEACHER] + 0.5 * torch.randn(n, D_TEACHER, generator=g)
    p, tp, tr = slice(0, N_PROBE), slice(N_PROBE, N_PROBE + N_TRAIN_PROBE), slice(N_PROBE + N_TRAIN_PROBE, n)
    return {
        "probe": W2SProbe(x[p], teacher_labels=teacher[p], gold=gold[p], teacher_features=feats[p]),
        "train_probe": W2SProbe(x[tp], teacher_labels=teacher[tp]),
        "bare_inputs": [x[p], x[tp]],
        "train": TensorDataset(x[tr], teacher[tr]),
        "val": TensorDataset(x[:512], teacher[:512]),
    }


def cheap_task(seed: int = 0) -> dict[str, Any]:
    """The cheap student's data (:func:`synthetic_task` with ``K`` classes, 4,096 training rows)."""
    return synthetic_task(K, N_TRAIN, seed)


def cheap_module(seed: int = 0) -> StudentModule:
    L.seed_everything(seed, verbose=False)
    return StudentModule(nn.Sequential(nn.Linear(D_IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, K)), K)


def cheap_fit(data: dict, monitor: W2SMonitor | None, epochs: int, seed: int = 0, accelerator: str = "cpu", module: StudentModule | None = None) -> float:
    """Wall seconds of one fit of ``module`` (default: the cheap student) on ``data`` (``monitor`` or none)."""
    module = cheap_module(seed) if module is None else module
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[monitor] if monitor else [],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    train = DataLoader(data["train"], batch_size=256, shuffle=True, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    trainer.fit(module, train, DataLoader(data["val"], batch_size=512))
    return time.perf_counter() - t0


def cheap_section(epochs: int, repeats: int, accelerator: str = "cpu") -> dict[str, Any]:
    data = cheap_task()
    device = "cuda" if accelerator == "gpu" else "cpu"
    # (a) inside one fit: check vs bare forward at every epoch
    mon = ComparedMonitor(data["probe"], train_probe=data["train_probe"], bare_inputs=data["bare_inputs"], sync_device=device)
    cheap_fit(data, mon, epochs, accelerator=accelerator)
    warm = 1
    check, bare, rep, cpu = mon.check_s[warm:], mon.bare_s[warm:], mon.repr_s[warm:], mon.check_cpu_s[warm:]
    rep_cpu = mon.repr_cpu_s[warm:]
    parts = mon.parts[warm:]
    breakdown = {k: [p.get(k, 0.0) for p in parts] for k in sorted({k for p in parts for k in p})}
    agreement = exact_agreement(data)
    floor = exact_work_floor(mon)
    extra = [c - b for c, b in zip(check, bare)]
    rest = [c - r - b for c, r, b in zip(check, rep, bare)]
    # (a') the same with the representation family every 5th check (amortised: mean over checks)
    thin = ComparedMonitor(data["probe"], train_probe=data["train_probe"], bare_inputs=data["bare_inputs"], sync_device=device, representation_every_n_checks=THIN)
    cheap_fit(data, thin, epochs, accelerator=accelerator)
    thin_extra = [c - b for c, b in zip(thin.check_s[warm:], thin.bare_s[warm:])]
    # (b) as an outside check sees it: fits with and without the monitor, interleaved
    fits: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(repeats):
        for arm in ("without", "with") if r % 2 == 0 else ("with", "without"):
            monitor = W2SMonitor(data["probe"], train_probe=data["train_probe"]) if arm == "with" else None
            fits[arm].append(cheap_fit(data, monitor, epochs, seed=r, accelerator=accelerator))
    per_check = (statistics.median(fits["with"]) - statistics.median(fits["without"])) / epochs
    return {
        "check": check,
        "bare": bare,
        "repr": rep,
        "cpu": cpu,
        "repr_cpu": rep_cpu,
        "extra": extra,
        "rest": rest,
        "fits": fits,
        "per_check_by_fits": per_check,
        "thin_extra": thin_extra,
        "names": len(mon.last_values),
        "skipped": mon.num_skipped,
        "epochs": epochs,
        "breakdown": breakdown,
        "host_reads": mon.host_reads[warm:],
        "agreement": agreement,
        "floor": floor,
    }


def _median_ms(fn, repeats: int = 11) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def exact_work_floor(monitor: W2SMonitor) -> dict[str, float]:
    """The three kernels the default check cannot do without at the cheap student's size, timed
    alone on the fitted monitor's own states (median of 11 calls, ms): the tridiagonal reduction
    that every dense eigensolver starts with (``eigvalsh`` of the student's covariance: a lower
    bound on its ``eigh``), on one thread and on the process's threads; the full ``eigh`` likewise;
    the student's second-moment product over the probe (``ΦᵀΦ``, float64, shape as the probe's, on
    the process's threads); and the exact smooth calibration error's dynamic programmes (against
    the teacher's labels and against gold, every class)."""
    from lightning_w2s.metrics._moments import covariance
    from lightning_w2s.metrics.smooth_calibration import _smce
    from lightning_w2s.metrics.threads import limited_threads

    gap = monitor.metrics.representation.gap
    parts = [gap._group(prefix) for prefix in gap._layouts]
    n = sum(float(p.n) for p in parts)
    means = [sum(p.s1[i] for p in parts) / n for i in (0, 1)]
    cov = covariance(parts, 0, 0, means, n)
    x = torch.randn(int(n), cov.shape[0], dtype=torch.float64)
    out = {}
    with limited_threads(1):
        out["eigvalsh 1 thread"] = _median_ms(lambda: torch.linalg.eigvalsh(cov))
        out["eigh 1 thread"] = _median_ms(lambda: torch.linalg.eigh(cov))
    out["eigvalsh process threads"] = _median_ms(lambda: torch.linalg.eigvalsh(cov))
    out["eigh process threads"] = _median_ms(lambda: torch.linalg.eigh(cov))
    out["product process threads"] = _median_ms(lambda: x.T @ x)
    family = monitor.metrics.smooth_calibration
    probs, seen = family.student.predictions()
    teacher, gold = family.student.labels.numpy(), family.gold.numpy()
    p = probs.numpy()
    on_teacher, on_gold = (seen.numpy() & (teacher >= 0)), (seen.numpy() & (teacher >= 0) & (gold >= 0))
    out["smce programmes"] = _median_ms(lambda: (_smce(p[on_teacher], teacher[on_teacher]), _smce(p[on_gold], gold[on_gold])))
    out["threads"] = float(torch.get_num_threads())
    out["eigvalsh best"] = min(out["eigvalsh 1 thread"], out["eigvalsh process threads"])
    out["floor"] = out["eigvalsh best"] + out["product process threads"] + out["smce programmes"]  # each at its faster thread count
    return out


def exact_agreement(data: dict) -> dict[str, Any]:
    """Every value of the default check against the previous exact path, on the same trained
    student: the same check with float64 products and the teacher's spectrum recomputed (``exact``);
    and the ``products="float32"`` option against it. Largest relative difference over the logged
    values (counters left out), where it occurs, and per representation value."""
    monitor = W2SMonitor(data["probe"], train_probe=data["train_probe"])
    seen: dict[str, dict[str, float]] = {}

    def states():
        return [
            m
            for agg in (monitor.metrics, monitor.train_metrics)
            if agg is not None and getattr(agg, "representation", None) is not None
            for m in (agg.representation.gap, agg.representation.student_rank)
            if m is not None
        ]

    class Arms(Callback):
        def on_train_end(self, trainer, pl_module) -> None:
            for arm, products, fresh in (("default", None, False), ("float32", "float32", True), ("exact", "float64", True)):
                for m in states():
                    if products is not None:
                        m.products = products
                    if fresh and hasattr(m, "_spectra"):
                        m._spectra = {}  # the teacher's spectrum recomputed
                monitor._run_check(trainer, pl_module, on_step=False)
                seen[arm] = {k: float(v) for k, v in monitor.last_values.items()}

    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, callbacks=[monitor, Arms()], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0
    )
    trainer.fit(cheap_module(), DataLoader(data["train"], batch_size=256), DataLoader(data["val"], batch_size=512))
    exact = seen["exact"]
    out = {}
    for arm in ("default", "float32"):
        rel = {k: abs(seen[arm][k] - v) / max(abs(v), 1e-300) for k, v in exact.items() if k in seen[arm] and v == v and k not in ("w2s/check", "w2s/skipped")}  # counters left out
        worst = max(rel, key=rel.get)
        out[arm] = {"max_rel": rel[worst], "worst": worst, "n": len(rel), "identical": sum(1 for r in rel.values() if r == 0.0), "by_name": {k: r for k, r in rel.items() if "/representation/" in k}}
    return out


def print_cheap(res: dict[str, Any], rows: list[list[str]], dev: str) -> None:
    med = lambda xs: 1e3 * statistics.median(xs)  # noqa: E731
    print(
        f"[{dev}] cheap student (MLP {D_IN}-{HIDDEN}-{K}; probe {N_PROBE} with gold and {D_TEACHER}-d teacher features; "
        f"train probe {N_TRAIN_PROBE}; {res['names']} values logged a check; {res['skipped']} skipped), "
        f"{len(res['check'])} checks after 1 warm-up, ms median [min–max]:"
    )
    print(
        f"    bare forward over both probes {spread(res['bare'])}; check {spread(res['check'])} "
        f"(CPU time of this process {spread(res['cpu'])}, of which the representation family {spread(res['repr_cpu'])})"
    )
    print(f"    check − bare forward {spread(res['extra'])}, of which the representation family {spread(res['repr'])} and everything else {spread(res['rest'])}")
    fw, fo = res["fits"]["with"], res["fits"]["without"]
    print(
        f"    fits of {res['epochs']} epochs, {len(fw)} interleaved pairs: with {spread(fw, 1, '{:.2f}')} s, "
        f"without {spread(fo, 1, '{:.2f}')} s -> {1e3 * res['per_check_by_fits']:.1f} ms a check "
        f"(includes the fit-start work spread over the checks)"
    )
    print("    where a check's time goes (exclusive ms per check, median [min–max]: wall, and CPU time of this process, which a loaded machine inflates less):")
    wall = {k: v for k, v in res["breakdown"].items() if not k.startswith("cpu:")}
    for key, xs in sorted(wall.items(), key=lambda kv: -statistics.median(res["breakdown"].get("cpu:" + kv[0], kv[1]))):
        print(f"        {key:45s} wall {spread(xs):22s} CPU {spread(res['breakdown'].get('cpu:' + key, [0.0]))}")
    print(f"    host reads (item/tolist/float/int/bool of a tensor) per check: {spread([float(r) for r in res['host_reads']], 1, '{:.0f}')}")
    for arm, label in (("default", "the default check"), ("float32", 'products="float32" (option)')):
        ag = res["agreement"][arm]
        print(
            f"    agreement with the previous exact path (float64 products, teacher spectrum recomputed), same student, {label}: "
            f"{ag['n']} values, {ag['identical']} identical, largest relative difference {ag['max_rel']:.1e} ({ag['worst']}); "
            + ", ".join(f"{k.rsplit('/', 1)[-1]} {v:.1e}" for k, v in sorted(ag["by_name"].items()))
        )
    print(f"    with representation_every_n_checks={THIN}: check − bare forward {spread(res['thin_extra'])} (mean {1e3 * statistics.mean(res['thin_extra']):.1f})")
    fl = res["floor"]
    print(
        f"    the exact work a default check cannot skip, each kernel alone on this student's states (ms, median of 11; "
        f"{fl['threads']:.0f} process threads): student covariance eigvalsh (the tridiagonal reduction every dense eigensolver "
        f"starts with) {fl['eigvalsh 1 thread']:.1f} on 1 thread / {fl['eigvalsh process threads']:.1f} on the process's, "
        f"its eigh {fl['eigh 1 thread']:.1f} / {fl['eigh process threads']:.1f}; the {N_PROBE}x{HIDDEN} float64 product "
        f"{fl['product process threads']:.1f}; the exact smCE programmes (vs teacher and vs gold, {K} classes each) "
        f"{fl['smce programmes']:.1f}; the three at best (the faster thread count each) {fl['floor']:.1f} ms against the {CHEAP_TARGET_MS:.0f} ms target"
    )
    extra = med(res["extra"])
    rows.append(
        [
            dev,
            "cheap MLP, synthetic",
            "check − bare forward (in-fit, median)",
            f"{med(res['check']):.1f} − {med(res['bare']):.1f} ms",
            f"{extra:.1f} ms",
            f"<= {CHEAP_TARGET_MS:.0f} ms",
            verdict(extra <= CHEAP_TARGET_MS),
        ]
    )
    fl = res["floor"]
    rows.append(
        [
            dev,
            "same",
            "  floor: eigvalsh + product + smCE programmes, each alone",
            f"{fl['eigvalsh best']:.1f} + {fl['product process threads']:.1f} + {fl['smce programmes']:.1f} ms",
            f"{fl['floor']:.1f} ms",
            f"<= {CHEAP_TARGET_MS:.0f} ms",
            verdict(fl["floor"] <= CHEAP_TARGET_MS),
        ]
    )
    rest = med(res["rest"])
    rows.append([dev, "same", "  of which the representation family", f"{med(res['repr']):.1f} ms", "", "", ""])
    rows.append([dev, "same", "  everything else", f"{rest:.1f} ms", "", f"<= {CHEAP_TARGET_MS:.0f} ms", verdict(rest <= CHEAP_TARGET_MS)])
    by_fits = 1e3 * res["per_check_by_fits"] - med(res["bare"])
    rows.append(
        [
            dev,
            "same",
            "check − bare forward (by differencing fits)",
            f"{1e3 * res['per_check_by_fits']:.1f} − {med(res['bare']):.1f} ms",
            f"{by_fits:.1f} ms",
            f"<= {CHEAP_TARGET_MS:.0f} ms",
            verdict(by_fits <= CHEAP_TARGET_MS),
        ]
    )
    rows.append([dev, "same", "check / bare forward (in-fit)", "", f"{med(res['check']) / med(res['bare']):.1f}x", "", ""])
    thin = 1e3 * statistics.mean(res["thin_extra"])
    rows.append(
        [dev, "same", f"check − bare forward, representation_every_n_checks={THIN} (mean)", f"{thin:.1f} ms", f"{thin:.1f} ms", f"<= {CHEAP_TARGET_MS:.0f} ms", verdict(thin <= CHEAP_TARGET_MS)]
    )


# ------------------------------------------------------------------------------------------------
# 1b. a bigger head on the same probe: the whole fit's ratio
# ------------------------------------------------------------------------------------------------
BIG_HIDDEN, BIG_K, BIG_TRAIN, BIG_EPOCHS = 512, 10, 40_000, 4


def big_task(seed: int = 0) -> dict[str, Any]:
    """The cheap task's probe sizes with 10 classes and 40,000 training rows (:func:`synthetic_task`)."""
    return synthetic_task(BIG_K, BIG_TRAIN, seed)


def big_section(repeats: int) -> dict[str, Any]:
    """Interleaved fits (MLP 256→512→512→10, 4 epochs of 40,000 rows) with and without a default
    monitor (4 checks a fit); ratio of the medians and the paired ratios."""
    data = big_task()
    times: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(repeats):
        for arm in ("without", "with") if r % 2 == 0 else ("with", "without"):
            L.seed_everything(r, verbose=False)
            module = StudentModule(nn.Sequential(nn.Linear(D_IN, BIG_HIDDEN), nn.ReLU(), nn.Linear(BIG_HIDDEN, BIG_HIDDEN), nn.ReLU(), nn.Linear(BIG_HIDDEN, BIG_K)), BIG_K)
            monitor = W2SMonitor(data["probe"], train_probe=data["train_probe"]) if arm == "with" else None
            times[arm].append(cheap_fit(data, monitor, BIG_EPOCHS, seed=r, module=module))
    ratio = statistics.median(times["with"]) / statistics.median(times["without"])
    return {"times": times, "ratio": ratio, "pairs": [w / o for w, o in zip(times["with"], times["without"])]}


def print_big(res: dict[str, Any], rows: list[list[str]]) -> None:
    t = res["times"]
    print(
        f"[cpu] bigger head (MLP {D_IN}-{BIG_HIDDEN}-{BIG_HIDDEN}-{BIG_K}, {BIG_TRAIN} rows, {BIG_EPOCHS} epochs = checks, the cheap task's "
        f"probe sizes): fit seconds with {spread(t['with'], 1, '{:.2f}')}, without {spread(t['without'], 1, '{:.2f}')}; "
        f"paired ratios {['%.3f' % r for r in res['pairs']]}",
        flush=True,
    )
    rows.append(
        [
            "cpu",
            "bigger MLP head, synthetic",
            f"fit time with/without monitor ({BIG_EPOCHS} epochs, {len(t['with'])} pairs)",
            f"{statistics.median(t['with']):.2f} s / {statistics.median(t['without']):.2f} s",
            f"{res['ratio']:.3f}",
            f"<= {FIT_TARGET}",
            verdict(res["ratio"] <= FIT_TARGET),
        ]
    )


# ------------------------------------------------------------------------------------------------
# 2. busy machine
# ------------------------------------------------------------------------------------------------
class _Repeat(Callback):
    """After training: the monitor's check ``alone`` times, then (with ``busy``, a callable that
    starts the busy processes and returns a stopper) ``beside`` times with them running."""

    def __init__(self, monitor: W2SMonitor, alone: int, beside: int, busy) -> None:
        self.monitor, self.alone, self.beside, self.busy = monitor, alone, beside, busy
        self.seconds: dict[str, list[float]] = {f"{part}{key}": [] for part in ("", "repr_", "forward_") for key in ("alone", "beside")}
        self.forward_seconds = 0.0
        forward = monitor.runner.forward

        def timed_forward(*args: Any, **kwargs: Any):
            t0 = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.forward_seconds += time.perf_counter() - t0

        monitor.runner.forward = timed_forward

    def _time(self, trainer, pl_module, key: str) -> None:
        clock = self.monitor._bench_clock
        before, before_fwd = clock.seconds, self.forward_seconds
        t0 = time.perf_counter()
        self.monitor._run_check(trainer, pl_module, on_step=False)
        self.seconds[key].append(time.perf_counter() - t0)
        self.seconds[f"repr_{key}"].append(clock.seconds - before)
        self.seconds[f"forward_{key}"].append(self.forward_seconds - before_fwd)

    def on_train_end(self, trainer, pl_module) -> None:
        for _ in range(self.alone):
            self._time(trainer, pl_module, "alone")
        stop = self.busy()
        try:
            for _ in range(self.beside):
                self._time(trainer, pl_module, "beside")
        finally:
            stop()


def start_busy(count: int = 2, settle: float = 2.0):
    """Start ``count`` busy torch processes (default threads, the environment minus OMP_WAIT_POLICY);
    returns a function that stops them."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env) for _ in range(count)]
    time.sleep(settle)  # let them import torch and start spinning

    def stop() -> None:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()

    return stop


def busy_child(alone: int, beside: int) -> dict[str, Any]:
    """Section 2's measured process (run without OMP_WAIT_POLICY): one short fit of the cheap
    student, then the check ``alone`` + ``beside`` times."""
    load = os.getloadavg()[0]
    data = cheap_task()
    monitor = W2SMonitor(data["probe"], train_probe=data["train_probe"])
    monitor._bench_clock = _FamilyClock(monitor.metrics)
    rep = _Repeat(monitor, alone, beside, start_busy)
    module = cheap_module()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=[monitor, rep], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0
    )
    trainer.fit(module, DataLoader(data["train"], batch_size=256), DataLoader(data["val"], batch_size=512))
    return {**rep.seconds, "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load": load}


def busy_section(alone: int = 5, beside: int = 5) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.overhead.run", "--busy-child", str(alone), str(beside)], env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("BUSY ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"busy child failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(lines[-1][5:])


def print_busy(res: dict[str, Any], rows: list[list[str]]) -> None:
    ms = lambda xs: [round(1e3 * s) for s in xs]  # noqa: E731
    for key in ("alone", "beside"):  # the monitor's own work: the check without the student's forward passes
        res[f"own_{key}"] = [c - f for c, f in zip(res[key], res[f"forward_{key}"])]
    print(
        f"[cpu] busy machine (measured process: OMP_WAIT_POLICY={res['omp_wait_policy']!r}, {res['threads']} torch threads; "
        f"2 busy torch processes started by the benchmark; load average before {res['load']:.1f}), ms per check:"
    )
    for part, label in (("", "check"), ("forward_", "  the student's forward passes"), ("own_", "  the monitor's own work"), ("repr_", "    of which the representation family")):
        print(f"    {label:40s} alone {ms(res[part + 'alone'])}; beside {ms(res[part + 'beside'])}")
    for part, label in (("own_", "monitor's own work (check − forward)"), ("", "whole check (student forward on the cores left idle)")):
        best, worst = min(res[part + "alone"]), max(res[part + "beside"])
        rows.append(
            [
                "cpu",
                "cheap MLP, synthetic",
                f"beside 2 busy processes, worst of 5 / best of 5 alone: {label}",
                f"{1e3 * worst:.0f} / {1e3 * best:.0f} ms",
                f"{worst / best:.1f}x",
                f"<= {BUSY_TARGET:.0f}x",
                verdict(worst / best <= BUSY_TARGET),
            ]
        )


# ------------------------------------------------------------------------------------------------
# 3. real tasks: fit-time ratio and in-fit check ratio
# ------------------------------------------------------------------------------------------------
def fit_ratio(task, epochs: int, repeats: int, accelerator: str = "cpu") -> dict[str, Any]:
    """Interleaved fits with / without a default monitor; medians and their ratio."""
    probe = task.make_probe()
    times: dict[str, list[float]] = {"without": [], "with": []}
    for r in range(repeats):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for arm in order:
            cbs = [W2SMonitor(probe=probe)] if arm == "with" else []
            res = train_student(task, task.seed, epochs, callbacks=cbs, record=False, accelerator=accelerator)
            times[arm].append(res.fit_seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    pair = [w / wo for w, wo in zip(times["with"], times["without"])]
    return {"median_without": med["without"], "median_with": med["with"], "ratio": med["with"] / med["without"], "pair_ratios": pair, "times": times, "probe_n": probe.n}


def check_ratio(task, epochs: int, accelerator: str = "cpu", warmup: int = 1) -> dict[str, Any]:
    """Per-epoch check time vs bare forward time of the same probe inputs, within one fit."""
    probe = task.make_probe()
    device = "cuda" if accelerator == "gpu" else "cpu"
    monitor = ComparedMonitor(probe=probe, bare_inputs=[probe.inputs], sync_device=device)
    res = train_student(task, task.seed, epochs, callbacks=[monitor], record=False, accelerator=accelerator)
    checks, fwd, rep = monitor.check_s[warmup:], monitor.bare_s[warmup:], monitor.repr_s[warmup:]
    return {"check": checks, "bare": fwd, "repr": rep, "ratio": statistics.median(checks) / statistics.median(fwd), "skipped": monitor.num_skipped, "probe_n": probe.n, "fit_s": res.fit_seconds}


def large_check(n: int = 65536, d: int = 1024, k: int = 2, epochs: int = 4, seed: int = 0) -> dict[str, Any]:
    """One GPU check at ``n`` probe points with a d-dim student representation and d-dim teacher
    features (synthetic task: an MLP head d -> d -> k on random inputs)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    gold = (x[:, 0] > 0).long()
    teacher = torch.where(torch.rand(n, generator=g) < 0.2, 1 - gold, gold)
    probe = W2SProbe(x, teacher_labels=teacher, gold=gold, teacher_features=torch.randn(n, d, generator=g))
    monitor = ComparedMonitor(probe=probe, bare_inputs=[x], sync_device="cuda")
    L.seed_everything(seed, verbose=False)
    module = StudentModule(nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, k)), k)
    small = TensorDataset(x[:1024], teacher[:1024])
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="gpu", devices=1, logger=False, callbacks=[monitor], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0
    )
    trainer.fit(module, DataLoader(small, batch_size=256), DataLoader(small, batch_size=1024))
    checks = monitor.check_s[1:] or monitor.check_s
    return {"check_ms": 1e3 * statistics.median(checks), "n_checks": len(checks), "skipped": monitor.num_skipped}


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--sections", nargs="*", default=["cheap", "big", "busy", "fit"], choices=["cheap", "big", "busy", "fit"])
    parser.add_argument("--tasks", nargs="*", default=["movie_vader", "fashion_scratch"], choices=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per real-task fit (default 8)")
    parser.add_argument("--cheap-epochs", type=int, default=12, help="epochs (= checks) per cheap-student fit (default 12)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved with/without pairs (default 5)")
    parser.add_argument("--fashion-train", type=int, default=8000, help="fashion_scratch training images")
    parser.add_argument("--busy-child", nargs=2, type=int, metavar=("ALONE", "BESIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    quiet_lightning()
    if args.busy_child:
        print("BUSY " + json.dumps(busy_child(*args.busy_child)), flush=True)
        return 0
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA available: {torch.cuda.is_available()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')!r} (sections 1 and 3), load average {os.getloadavg()[0]:.1f}"
    )
    devices = [("cpu", "cpu")] + ([("gpu", "cuda")] if torch.cuda.is_available() else [])
    rows: list[list[str]] = []
    for accel, dev in devices:
        if "cheap" in args.sections:
            print_cheap(cheap_section(args.cheap_epochs, args.repeats, accel), rows, dev)  # torch's default threads
        if "big" in args.sections and dev == "cpu":
            print_big(big_section(args.repeats), rows)
        if "busy" in args.sections and dev == "cpu":
            print_busy(busy_section(), rows)
        if "fit" in args.sections:
            for name in args.tasks:
                kw = {"train_size": args.fashion_train} if name == "fashion_scratch" else {}
                task = load_task(name, args.seed, args.data, **kw)
                fr = fit_ratio(task, args.epochs, args.repeats, accel)
                rows.append(
                    [
                        dev,
                        name,
                        f"fit time with/without monitor ({args.epochs} epochs, {args.repeats} pairs)",
                        f"{fr['median_with']:.2f} s / {fr['median_without']:.2f} s",
                        f"{fr['ratio']:.3f}",
                        f"<= {FIT_TARGET}",
                        verdict(fr["ratio"] <= FIT_TARGET),
                    ]
                )
                print(
                    f"[{dev}] {name}: fit seconds without {['%.2f' % t for t in fr['times']['without']]}, "
                    f"with {['%.2f' % t for t in fr['times']['with']]}; pair ratios {['%.3f' % r for r in fr['pair_ratios']]}",
                    flush=True,
                )
                cr = check_ratio(task, args.epochs, accel)
                rows.append(
                    [
                        dev,
                        name,
                        f"check vs bare forward (probe {cr['probe_n']})",
                        f"{1e3 * statistics.median(cr['check']):.1f} ms / {1e3 * statistics.median(cr['bare']):.1f} ms",
                        f"{cr['ratio']:.2f}",
                        f"<= {CHECK_TARGET}",
                        verdict(cr["ratio"] <= CHECK_TARGET),
                    ]
                )
                print(
                    f"[{dev}] {name}: check {spread(cr['check'])} ms (representation family {spread(cr['repr'])}), "
                    f"bare forward {spread(cr['bare'])} ms, {len(cr['check'])} epochs after 1 warm-up, "
                    f"{cr['skipped']} skipped checks",
                    flush=True,
                )
        if dev == "cuda":
            lc = large_check()
            rows.append([dev, "synthetic", "one check, n=65536, d=1024", f"{lc['check_ms']:.1f} ms", "", f"< {LARGE_TARGET_MS:.0f} ms", verdict(lc["check_ms"] < LARGE_TARGET_MS)])
    print()
    print(_table(rows, ["device", "task", "measure", "figures", "value", "target", "result"]))
    if not torch.cuda.is_available():
        print("\nGPU rows (the same measures on CUDA, and one check at n=65536, d=1024, target < 250 ms): SKIPPED - torch.cuda.is_available() is False on this machine.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
