"""Pure torch + torchmetrics metrics (no Lightning import): one module per family."""

from .aggregator import ProbeBatch, W2SMetrics
from .calibration import Calibration
from .correction import CorrectionRates
from .gold import GoldSquaredError
from .misfit import Misfit, RegressionMisfit
from .representation import DEFAULT_CONSTRUCTION, GapConstruction, RepresentationGap
from .robustness import AugmentationRobustness, NeighbourRobustness

__all__ = ["Misfit", "ProbeBatch", "W2SMetrics"]
__all__ += ["Calibration", "GoldSquaredError", "RegressionMisfit"]
__all__ += ["DEFAULT_CONSTRUCTION", "GapConstruction", "RepresentationGap"]
__all__ += ["AugmentationRobustness", "CorrectionRates", "NeighbourRobustness"]
