"""The 0/1 band and ``gain_exhausted`` with a teacher that abstains, through a real Trainer.

Example: a teacher abstains on half the probe; a student copies the teacher where it
speaks and is right wherever it abstains. Its disagreement with the teacher is 0 and its gold
accuracy 0.9 against the teacher's 0.8. Before D6 the logged band was [0.8, 0.8] (it misses 0.9) and
``gain_exhausted`` fired at ``min_gain=0.05`` ("no larger gain is possible"). The coverage-aware band
``[π·max(0, a − d), π·min(a + d, 2 − a − d) + (1 − π)] = [0.4, 0.9]`` contains 0.9, the covered band
``[0.8, 0.8]`` contains the covered accuracy 0.8, and the gain still possible is
``π·d + (1 − π) = 0.5``: no alert. A control where the teacher labels every point shows that the
same student then does trigger the warning, and the rule replayed as the stopping benchmark does
would stop (the test can fail).

The student is a lookup table (a bias-free ``nn.Linear`` on one-hot inputs, learning rate 0), so
its predictions are exactly the ones described, at every check; the values are read back from the
TensorBoard event files.
"""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from helpers import trainer_kwargs
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_w2s import W2SMonitor, W2SProbe
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import metrics_for_probe
from lightning_w2s.metrics.bounds import accuracy_band, max_accuracy_gain
from lightning_w2s.stopping.decision import StoppingDecision
from lightning_w2s.stopping.rules import GainExhausted
from lightning_w2s.testing import last_w2s_values

N = 100
TOL = 1e-12


class LookupStudent(L.LightningModule):
    """Predicts ``labels[i]`` on the one-hot input ``e_i`` (logits ±5); never changes (lr = 0)."""

    def __init__(self, labels: torch.Tensor):
        super().__init__()
        self.head = nn.Linear(len(labels), 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.stack([-5.0 + 10.0 * (labels == c).float() for c in (0, 1)]))

    def forward(self, x):
        return self.head(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def world(abstain: bool):
    """Gold ``i % 2``; the teacher is right on 40 of its first 50 points; with ``abstain`` it says
    nothing on the other 50, otherwise it labels them too (right on 40 of them). The student copies
    the teacher where it speaks and is right elsewhere."""
    gold = torch.arange(N) % 2
    teacher = gold.clone()
    teacher[40:50] = 1 - gold[40:50]
    teacher[90:100] = 1 - gold[90:100]
    if abstain:
        teacher[50:] = -1
    student = torch.where(teacher >= 0, teacher, gold)
    return torch.eye(N), gold, teacher, student


def fit(tmp_path, abstain: bool):
    x, gold, teacher, student = world(abstain)
    probe = W2SProbe(x, teacher_labels=teacher, gold=gold, num_classes=2)
    monitor = W2SMonitor(probe, min_gain=0.05, neighbours=0, figure_every_n_checks=0)
    loader = DataLoader(TensorDataset(x, student), batch_size=50)
    logger = TensorBoardLogger(str(tmp_path), name="band", version=0)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, logger=logger, callbacks=[monitor]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(LookupStudent(student), loader, loader)
    return trainer, monitor, last_w2s_values(logger.log_dir), [str(w.message) for w in caught]


def test_abstaining_teacher_band_contains_the_student_and_the_gain_is_not_exhausted(tmp_path):
    trainer, monitor, logged, caught = fit(tmp_path, abstain=True)
    acc, cov_acc = logged[Q.ACCURACY], logged[Q.COVERED_ACCURACY]  # event files hold float32: compare to 1e-6
    assert acc == pytest.approx(0.9, abs=1e-6) and logged[Q.TEACHER_ACCURACY] == pytest.approx(0.8, abs=1e-6)
    assert logged[Q.COVERED_DISAGREEMENT] == 0.0 and logged[Q.DISAGREEMENT] == 0.0 and cov_acc == pytest.approx(0.8)
    lo, hi = logged[Q.ACCURACY_LOWER], logged[Q.ACCURACY_UPPER]
    assert (lo, hi) == pytest.approx((0.4, 0.9), abs=1e-6)
    assert lo - 1e-6 <= acc <= hi + 1e-6  # the old band [0.8, 0.8] missed 0.9
    assert logged[Q.COVERED_ACCURACY_LOWER] == pytest.approx(0.8) and logged[Q.COVERED_ACCURACY_UPPER] == pytest.approx(0.8)
    assert logged[Q.MAX_GAIN] == pytest.approx(0.5)  # 0.5 x 0 + (1 - 0.5): the uncovered half
    # the monitor's float64 numbers are the functions' exactly
    v = monitor.last_values
    assert v[Q.ACCURACY] == 0.9 and v[Q.ACCURACY_LOWER] - TOL <= v[Q.ACCURACY] <= v[Q.ACCURACY_UPPER] + TOL
    assert (v[Q.ACCURACY_LOWER], v[Q.ACCURACY_UPPER]) == accuracy_band(0.8, 0.0, coverage=0.5)
    assert v[Q.MAX_GAIN] == max_accuracy_gain(0.0, coverage=0.5)
    # gain_exhausted at min_gain 0.05: no warning, three checks (a warning, not a stopping policy)
    assert trainer.current_epoch == 3 and monitor.num_checks == 3
    assert not [w for w in monitor.warnings_log if w["regime"] == "gain_exhausted"]
    assert not any("gain_exhausted" in m for m in caught)
    print(
        f"\nabstaining teacher: gold accuracy {acc:.3f} in [{lo:.3f}, {hi:.3f}]; covered accuracy {cov_acc:.3f} in "
        f"[{logged[Q.COVERED_ACCURACY_LOWER]:.3f}, {logged[Q.COVERED_ACCURACY_UPPER]:.3f}]; max_gain {logged[Q.MAX_GAIN]:.3f}"
    )


def test_control_full_coverage_copying_student_exhausts_the_gain(tmp_path):
    """The same student when the teacher labels every point: disagreement 0, nothing left to gain."""
    trainer, monitor, logged, caught = fit(tmp_path, abstain=False)
    assert logged[Q.ACCURACY] == pytest.approx(0.8) and logged[Q.MAX_GAIN] == 0.0
    assert (logged[Q.ACCURACY_LOWER], logged[Q.ACCURACY_UPPER]) == pytest.approx((0.8, 0.8))
    (alert,) = [w for w in monitor.warnings_log if w["regime"] == "gain_exhausted"]
    assert alert["message"].startswith("derived bound: w2s/bounds/max_gain = 0.0000 < min_gain 0.0500: the student's accuracy can exceed the teacher's by at most coverage × held-out disagreement")
    assert any(alert["message"] in m for m in caught)
    # the same rule replayed as the stopping benchmark does (StoppingDecision): it would stop at once
    decision = StoppingDecision([GainExhausted(patience=1, min_delta=0.0, min_gain=0.05)])
    stop, _, message = decision.evaluate({Q.MAX_GAIN: monitor.last_values[Q.MAX_GAIN]})
    assert stop and "w2s/bounds/max_gain stayed under min_gain=0.05" in message and "no longer possible on the probe" in message


def test_band_around_a_user_teacher_score_uses_the_probe_coverage():
    """Without gold the band is ``accuracy_band(teacher_score, disagreement, coverage=π_probe)`` and
    ``max_gain`` uses the same coverage; no covered band (it needs gold)."""
    x, _, teacher, student = world(abstain=True)
    teacher[50:75] = 0  # the teacher now covers 75 of 100 points
    metrics = metrics_for_probe(W2SProbe(x, teacher_labels=teacher, num_classes=2), teacher_score=0.7, neighbours=0)
    probs = torch.nn.functional.one_hot(student, 2).double() * 0.98 + 0.01
    metrics.update(probs, None, torch.arange(N), torch.ones(N, dtype=torch.bool))
    out = {k: float(v) for k, v in metrics.compute().items()}
    d = float((student[:75] != teacher[:75]).double().mean())
    assert d > 0 and out[Q.DISAGREEMENT] == pytest.approx(d, abs=TOL)
    assert (out[Q.ACCURACY_LOWER], out[Q.ACCURACY_UPPER]) == accuracy_band(0.7, out[Q.DISAGREEMENT], coverage=0.75)
    assert out[Q.MAX_GAIN] == max_accuracy_gain(out[Q.DISAGREEMENT], coverage=0.75)
    assert Q.COVERED_ACCURACY_LOWER not in out and Q.COVERED_ACCURACY_LOWER not in metrics.expected_names()
