"""Functional twins of the streaming metrics: plain tensors in, tensors out (docs/architecture.md, public API)."""

from lightning_w2s.metrics.calibration import calibration_error, calibration_histogram
from lightning_w2s.metrics.correction import lang_bounds
from lightning_w2s.metrics.expansion import expansion_estimate, lang_expansion
from lightning_w2s.metrics.gold import gold_rates, gold_squared_error, pgr
from lightning_w2s.metrics.gold_counts import correction_rates
from lightning_w2s.metrics.misfit import misfit, regression_misfit
from lightning_w2s.metrics.neighbours import knn_indices
from lightning_w2s.metrics.representation import effective_rank, representation_gap
from lightning_w2s.metrics.robustness import augmentation_robustness, neighbour_robustness
from lightning_w2s.metrics.smooth_calibration import smooth_calibration_error

__all__ = ["misfit"]
__all__ += ["calibration_error", "calibration_histogram", "gold_rates", "gold_squared_error", "pgr", "regression_misfit"]
__all__ += ["effective_rank", "representation_gap", "smooth_calibration_error"]
__all__ += ["augmentation_robustness", "correction_rates", "expansion_estimate", "knn_indices", "lang_bounds", "lang_expansion", "neighbour_robustness"]
