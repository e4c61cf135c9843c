"""A decoder LLM student (LoRA, bf16, left padding), watched by W2SMonitor and stopped by W2SEarlyStopping.

This example shows the WIRING, not weak-to-strong quality: no pretrained decoder can be downloaded
offline, so the student is a tiny randomly initialised ``LlamaForSequenceClassification`` (hidden 64,
2 blocks) and the text is generated. What it shows, in order:

1. a word-level tokenizer that pads on the LEFT, as decoder tokenizers do (pad id 0); the probe is a
   dict ``{"input_ids", "attention_mask"}``;
2. a keyword-rule teacher that abstains (``-1``) on sentences without a keyword it knows;
3. LoRA adapters via ``peft`` (``task_type="SEQ_CLS"``: the classification head ``score`` is trained
   in full, the attention projections through rank-8 adapters);
4. ``precision="bf16-mixed"`` where bf16 works (on this CPU or a GPU), else ``"32-true"`` (printed);
5. ``W2SMonitor(probe)`` with no ``layer=``/``pooling=``: it captures what the head reads — the
   input of ``score`` at the token whose logits the model returns (the last real token, whatever
   the padding side) — and says so on the console at fit start (docs/decoder.md);
6. ``W2SEarlyStopping()`` with its defaults.

For a real checkpoint, change the one line marked ``# <- the one line`` in :func:`build_model`, e.g.::

    model = AutoModelForSequenceClassification.from_pretrained("Qwen/Qwen2.5-0.5B", num_labels=2)

and use that model's tokenizer (``AutoTokenizer.from_pretrained(...)``, ``padding_side="left"``,
``pad_token`` set, ``model.config.pad_token_id`` set to it) in place of :class:`WordTokenizer`.

    python examples/decoder_student.py --logdir runs/decoder
    tensorboard --logdir runs/decoder
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from lightning_w2s import W2SEarlyStopping, W2SMonitor, W2SProbe  # noqa: E402

POSITIVE = ("good", "great", "fine", "lovely", "superb", "bright", "warm", "nice")
NEGATIVE = ("bad", "awful", "poor", "dull", "grim", "weak", "cold", "sad")
NEUTRAL = ("the", "a", "film", "plot", "cast", "scene", "story", "music", "ending", "script", "was", "and", "its", "very")
#: the teacher knows these keywords only (half of each list): it abstains on sentences without one
TEACHER_POSITIVE, TEACHER_NEGATIVE = POSITIVE[:4], NEGATIVE[:4]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` generated sentences of 3-12 words with a gold sentiment: 1-2 sentiment words among
    neutral ones (lengths vary, so padding matters)."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    texts = []
    for g in gold:
        words = list(rng.choice(NEUTRAL, rng.integers(2, 11)))
        words += list(rng.choice(POSITIVE if g else NEGATIVE, rng.integers(1, 3)))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, gold


def keyword_teacher(texts: Sequence[str]) -> np.ndarray:
    """The weak teacher: +1 per known positive keyword, -1 per known negative; the sign is the
    label, ``-1`` (abstain) when no known keyword occurs or they cancel."""
    labels = []
    for text in texts:
        score = sum((w in TEACHER_POSITIVE) - (w in TEACHER_NEGATIVE) for w in text.split())
        labels.append(-1 if score == 0 else int(score > 0))
    return np.array(labels)


class WordTokenizer:
    """A word-level tokenizer over a fixed vocabulary; id 0 is the pad token, 1 unknown words.
    Pads on the ``padding_side`` (``"left"`` as decoder tokenizers do)."""

    pad_token_id = 0

    def __init__(self, words: Sequence[str], padding_side: str = "left") -> None:
        self.ids = {w: i + 2 for i, w in enumerate(dict.fromkeys(words))}
        self.vocab_size = len(self.ids) + 2
        self.padding_side = padding_side

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        rows = [[self.ids.get(w, 1) for w in text.split()] for text in texts]
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            cols = slice(width - len(row), width) if self.padding_side == "left" else slice(0, len(row))
            ids[i, cols], mask[i, cols] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask}


def build_model(vocab_size: int, num_labels: int = 2, hidden: int = 64, layers: int = 2, pad_token_id: int = 0) -> torch.nn.Module:
    """The student: a tiny random ``LlamaForSequenceClassification`` (no download)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=pad_token_id,
        num_labels=num_labels,
    )
    model = LlamaForSequenceClassification(config)  # <- the one line: AutoModelForSequenceClassification.from_pretrained(...)
    return model


def add_lora(model: torch.nn.Module, r: int = 8) -> torch.nn.Module:
    """Rank-``r`` LoRA adapters on the attention's query and value projections; the head is trained in full."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))


def pick_precision() -> tuple[str, str]:
    """``"bf16-mixed"`` where a bf16 autocast matmul runs here, else ``"32-true"``; and why."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        return "32-true", "this GPU has no bf16"
    try:
        with torch.autocast(device, dtype=torch.bfloat16):
            out = torch.nn.Linear(4, 4).to(device)(torch.ones(2, 4, device=device))
        if out.dtype != torch.bfloat16:
            return "32-true", f"bf16 autocast is not applied on {device}"
    except Exception as exc:  # noqa: BLE001 - any failure means: no bf16 here
        return "32-true", f"bf16 autocast failed on {device} ({type(exc).__name__})"
    return "bf16-mixed", f"bf16 autocast works on {device}"


class DecoderStudent(L.LightningModule):
    """The LoRA-wrapped decoder classifier trained on the teacher's labels (abstentions left out).

    ``forward(input_ids, attention_mask)`` returns the logits: the monitor's default forward calls
    ``module(**probe_batch)``.
    """

    def __init__(self, model: torch.nn.Module, lr: float = 3e-3) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self(batch["input_ids"], batch["attention_mask"]).float(), batch["labels"])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        self.log("val_acc", (logits.argmax(-1) == batch["labels"]).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)


def loader(tokens: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int, shuffle: bool) -> DataLoader:
    rows = [{"input_ids": tokens["input_ids"][i], "attention_mask": tokens["attention_mask"][i], "labels": int(labels[i])} for i in range(len(labels))]
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle)


def main(
    logdir: str | None = "runs/decoder",
    epochs: int = 4,
    n_train: int = 600,
    n_probe: int = 256,
    batch_size: int = 32,
    hidden: int = 64,
    lora: bool = True,
    padding_side: str = "left",
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
) -> tuple[L.Trainer, W2SMonitor, W2SEarlyStopping]:
    """Train the student on the teacher's labels of ``n_train`` sentences, watched on ``n_probe``
    held-out ones; returns the trainer, the monitor and the stopper."""
    L.seed_everything(seed, verbose=False)
    texts, gold = make_texts(n_train + n_probe, seed)
    teacher = keyword_teacher(texts)
    tokenizer = WordTokenizer(POSITIVE + NEGATIVE + NEUTRAL, padding_side=padding_side)
    train_texts, probe_texts = texts[:n_train], texts[n_train:]
    train_labels = teacher[:n_train]
    keep = np.flatnonzero(train_labels >= 0)  # the student learns from the teacher's non-abstaining labels
    train_tokens = tokenizer([train_texts[i] for i in keep])
    probe = W2SProbe(tokenizer(probe_texts), teacher_labels=teacher[n_train:], gold=gold[n_train:], num_classes=2)
    model = build_model(tokenizer.vocab_size, hidden=hidden, pad_token_id=tokenizer.pad_token_id)
    student = DecoderStudent(add_lora(model) if lora else model)
    precision, why = pick_precision()
    print(f"decoder_student: precision={precision} ({why}); {len(keep)} teacher-labelled training sentences, probe {probe}")
    monitor = W2SMonitor(probe, batch_size=batch_size, figure_every_n_checks=0)
    stopper = W2SEarlyStopping()
    kw = dict(
        max_epochs=epochs,
        precision=precision,
        callbacks=[monitor, stopper],
        log_every_n_steps=5,
        logger=L.pytorch.loggers.TensorBoardLogger(logdir, name="") if logdir else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    kw.update(trainer_kwargs or {})
    trainer = L.Trainer(**kw)
    val_tokens = tokenizer(probe_texts)
    trainer.fit(student, loader(train_tokens, train_labels[keep], batch_size, shuffle=True), loader(val_tokens, gold[n_train:], batch_size, shuffle=False))
    shown = {k: round(v, 3) for k, v in monitor.last_values.items() if k in ("w2s/misfit/disagreement", "w2s/gold/accuracy")}
    print(f"decoder_student: {monitor.num_checks} checks, last {shown}; stopper: {stopper.stopping_reason_message or 'no stop'}")
    return trainer, monitor, stopper


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", default="runs/decoder", help="TensorBoard log folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-probe", type=int, default=256)
    parser.add_argument("--no-lora", action="store_true", help="fine-tune every weight instead of LoRA adapters")
    parser.add_argument("--padding-side", choices=("left", "right"), default="left")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    main(args.logdir, args.epochs, args.n_train, args.n_probe, lora=not args.no_lora, padding_side=args.padding_side, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
