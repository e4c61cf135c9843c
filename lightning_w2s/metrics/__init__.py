"""Pure torch + torchmetrics metrics (no Lightning import): one module per family, the aggregator
that owns them for a check (:class:`W2SMetrics`) and the registry of logged names (:mod:`.quantities`)."""

from .aggregator import W2SMetrics
from .calibration import Calibration
from .correction import CorrectionRates
from .gold import GoldSquaredError
from .misfit import Misfit, PredictionShares, RegressionMisfit
from .regression import RegressionMetrics
from .representation import DEFAULT_CONSTRUCTION, GapConstruction, RepresentationGap
from .robustness import AugmentationRobustness, NeighbourRobustness

__all__ = ["Misfit", "RegressionMetrics", "W2SMetrics"]
__all__ += ["Calibration", "GoldSquaredError", "PredictionShares", "RegressionMisfit"]
__all__ += ["DEFAULT_CONSTRUCTION", "GapConstruction", "RepresentationGap"]
__all__ += ["AugmentationRobustness", "CorrectionRates", "NeighbourRobustness"]
