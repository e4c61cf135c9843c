"""The refactored package logs the same numbers as the original code (base commit c187fbd, before the package was laid out by ownership).

``tests/golden_values.json`` holds every value the monitor logged at every check of two tiny
deterministic fits (every family on; a label-free step-cadence run), and the stopper's decisions,
written by ``tests/golden_values.py`` on the original code. This reruns the same fits now.
"""

import json
import os

from golden_values import compare, new_names

HERE = os.path.dirname(__file__)
#: names the refactor added (the monitor's check counter, read by W2SEarlyStopping)
ADDED = {"w2s/check"}


def test_every_logged_value_and_decision_is_reproduced(golden_runs):
    with open(os.path.join(HERE, "golden_values.json")) as f:
        golden = json.load(f)
    current = golden_runs
    assert compare(golden, current) == []
    assert set(new_names(golden, current)) <= ADDED
