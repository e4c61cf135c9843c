"""The refactored package logs the same numbers as the original code (base commit c187fbd, before the package was laid out by ownership).

``tests/golden_values.json`` holds every value the monitor logged at every check of two tiny
deterministic fits (every family on; a label-free step-cadence run), and the stopper's decisions,
written by ``tests/golden_values.py`` on the original code. This reruns the same fits now.
"""

import json
import os

from golden_values import compare, new_names, run_all

HERE = os.path.dirname(__file__)
#: names added since the golden file: the monitor's check counter (read by W2SEarlyStopping), the gold
#: count, PGR's interval and the PPI estimate (lightning_w2s.metrics.gold_intervals; its interval needs 300 gold points)
ADDED = {"w2s/check", "w2s/gold/count", "w2s/gold/pgr_lower", "w2s/gold/pgr_upper", "w2s/gold/accuracy_ppi",
         "w2s/gold/accuracy_ppi_lower", "w2s/gold/accuracy_ppi_upper"}


def test_every_logged_value_and_decision_is_reproduced():
    with open(os.path.join(HERE, "golden_values.json")) as f:
        golden = json.load(f)
    current = run_all()
    assert compare(golden, current) == []
    assert set(new_names(golden, current)) <= ADDED
