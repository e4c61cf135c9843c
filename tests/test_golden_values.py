"""The refactored package logs the same numbers as the original code (base commit c187fbd, before the package was laid out by ownership).

``tests/golden_values.json`` holds every value the monitor logged at every check of two tiny
deterministic fits (every family on; a label-free step-cadence run), and the stopper's decisions,
written by ``tests/golden_values.py`` on the original code. This reruns the same fits now.
"""

import json
import os

from golden_values import compare, new_names

from lightning_w2s.metrics import quantities as Q

HERE = os.path.dirname(__file__)
#: names added since the golden file: the monitor's check counter (read by W2SEarlyStopping), the smooth
#: calibration family, the gold count, PGR's interval and the PPI estimate (its interval needs 300 gold points)
ADDED = {
    "w2s/check",
    Q.SMCE_VS_GOLD,
    Q.TEACHER_SMCE_VS_GOLD,
    Q.SMCE_VS_TEACHER,
    Q.CALIBRATION_LOWER,
    Q.CALIBRATION_UPPER,
    Q.CALIBRATION_VS_TEACHER_LOWER,
    Q.CALIBRATION_VS_TEACHER_UPPER,
    Q.CALIBRATION_ESTIMATE_LOWER,
    Q.CALIBRATION_ESTIMATE_UPPER,
    Q.CE_GAIN,
    Q.PREDICTED_CE_GAIN,
    Q.GOLD_COUNT,
    Q.PGR_LOWER,
    Q.PGR_UPPER,
    Q.ACCURACY_PPI,
    Q.lower(Q.ACCURACY_PPI),
    Q.upper(Q.ACCURACY_PPI),
}


def test_every_logged_value_and_decision_is_reproduced(golden_runs):
    with open(os.path.join(HERE, "golden_values.json")) as f:
        golden = json.load(f)
    current = golden_runs
    assert compare(golden, current) == []
    assert set(new_names(golden, current)) <= ADDED
