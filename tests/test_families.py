"""The aggregators' components (docs/architecture.md): the factory picks the aggregator for a
probe, each family computes only names it declares, and a family added to an aggregator is fed the
valid rows of every chunk, computed, and reset with it."""

from __future__ import annotations

import torch

from lightning_w2s import W2SProbe
from lightning_w2s.metrics import quantities as Q
from lightning_w2s.metrics.aggregator import W2SMetrics, metrics_for_probe
from lightning_w2s.metrics.calibration_bands import SmoothCalibrationFamily
from lightning_w2s.metrics.family import Family, Rows
from lightning_w2s.metrics.lang_family import LangFamily
from lightning_w2s.metrics.regression import RegressionMetrics
from lightning_w2s.metrics.representation_family import RepresentationFamily


def _classification_probe(n: int = 40) -> W2SProbe:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (n,), generator=g)
    teacher = torch.where(torch.rand(n, generator=g) < 0.2, torch.full_like(labels, -1), labels)  # abstentions
    gold = torch.where(torch.rand(n, generator=g) < 0.7, labels, torch.full_like(labels, -1))
    return W2SProbe(torch.randn(n, 4, generator=g), teacher_labels=teacher, gold=gold, num_classes=3, teacher_features=torch.randn(n, 5, generator=g))


def _feed(metrics, probe: W2SProbe, student: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
    for lo in range(0, probe.n, 16):  # padded batches, as the monitor's probe pass gives them
        idx = torch.arange(lo, lo + 16) % probe.n
        valid = torch.arange(lo, lo + 16) < probe.n
        metrics.update(student[idx], features[idx], idx, valid)
    return metrics.compute()


def test_the_factory_picks_the_aggregator_and_its_families_compute_only_what_they_declare():
    probe = _classification_probe()
    metrics = metrics_for_probe(probe, neighbours=3)
    assert isinstance(metrics, W2SMetrics) and metrics.misfit_name == Q.KL_TEACHER_STUDENT
    assert [type(f) for f in metrics.families] == [RepresentationFamily, LangFamily, SmoothCalibrationFamily]
    metrics.set_neighbours(metrics.build_neighbours(lambda: None))  # in the teacher's features
    g = torch.Generator().manual_seed(1)
    student = torch.softmax(torch.randn(probe.n, 3, generator=g), dim=1)
    out = _feed(metrics, probe, student, torch.randn(probe.n, 6, generator=g))
    assert metrics.misfit_name in out and set(out) <= metrics.expected_names()
    for family in metrics.families:
        mine = {n for n in out if family.owns(n)}
        assert mine and mine <= family.expected_names(metrics.provides, 3, metrics.task), type(family).__name__
    assert {Q.GAP_FRO, Q.INCONSISTENCY_COVERED} <= set(out)

    regression = metrics_for_probe(W2SProbe(torch.zeros(5, 1), teacher_values=torch.arange(5.0)))
    assert isinstance(regression, RegressionMetrics) and regression.misfit_name == Q.SQ
    assert [type(f) for f in regression.families] == [RepresentationFamily] and not regression.wants_neighbours


class _ValidRows(Family):
    """A toy family: counts the rows it is fed (a sum state, as every family's)."""

    sections = ("representation",)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rows", torch.zeros((), dtype=torch.float64))

    def update(self, rows: Rows) -> None:
        self.rows += rows.index.numel()

    def compute(self, shared):
        self.notes.append(f"{int(self.rows)} rows; gold rates shared: {shared['rates'] is not None}")
        self.extras["rows"] = self.rows.clone()
        return {Q.EFFECTIVE_RANK: self.rows.clone()}

    def reset(self) -> None:
        self.rows.zero_()


def test_a_family_added_to_an_aggregator_is_fed_valid_rows_computed_and_reset():
    probe = _classification_probe(n=37)
    metrics = W2SMetrics(probe.teacher_probs, covered=probe.covered, gold=probe.gold, neighbours=0, chunk_bytes=1)
    family = _ValidRows()
    metrics.add_family("valid_rows", family)
    student = torch.full((probe.n, 3), 1 / 3, dtype=torch.float64)
    out = _feed(metrics, probe, student, torch.randn(probe.n, 2))
    assert float(out[Q.EFFECTIVE_RANK]) == 37.0  # the 11 padding rows of the last batch never reach it
    assert "37 rows; gold rates shared: True" in metrics.notes and float(metrics.extras["rows"]) == 37.0
    metrics.reset()
    assert float(family.rows) == 0.0
