"""Pure torch + torchmetrics metrics (no Lightning import): one module per family, the aggregators
that own them for a check (:class:`W2SMetrics`, :class:`RegressionMetrics`, picked for a probe by
:func:`metrics_for_probe`) and the registry of logged names (:mod:`.quantities`)."""

from lightning_w2s.metrics.aggregator import W2SMetrics, metrics_for_probe
from lightning_w2s.metrics.calibration import Calibration
from lightning_w2s.metrics.gold import GoldSquaredError
from lightning_w2s.metrics.gold_counts import CorrectionRates
from lightning_w2s.metrics.misfit import Misfit, PredictionShares, RegressionMisfit
from lightning_w2s.metrics.regression import RegressionMetrics
from lightning_w2s.metrics.representation import DEFAULT_CONSTRUCTION, GapConstruction, RepresentationGap
from lightning_w2s.metrics.robustness import AugmentationRobustness, NeighbourRobustness
from lightning_w2s.metrics.smooth_calibration import SmoothCalibration

__all__ = ["Misfit", "RegressionMetrics", "W2SMetrics", "metrics_for_probe"]
__all__ += ["Calibration", "GoldSquaredError", "SmoothCalibration", "PredictionShares", "RegressionMisfit"]
__all__ += ["DEFAULT_CONSTRUCTION", "GapConstruction", "RepresentationGap"]
__all__ += ["AugmentationRobustness", "CorrectionRates", "NeighbourRobustness"]
