"""Warning regimes fire once when entered and re-arm when left; they are the stopping rules' own
definitions (lightning_w2s.stopping.rules), so a warning and a stop never disagree."""

import pytest

from lightning_w2s import W2SEarlyStopping
from lightning_w2s.stopping.alerts import AlertTracker

H, T = "w2s/misfit/kl_teacher_student", "w2s/train_misfit/kl_teacher_student"
SEQ = [(1.0, 0.50), (0.8, 0.50), (0.6, 0.52), (0.4, 0.55), (0.3, 0.60), (0.3, 0.40), (0.3, 0.30), (0.2, 0.35), (0.1, 0.40)]


def test_fitting_teacher_errors_fires_once_per_regime():
    tracker = AlertTracker(window=3)
    fired = []
    for i, (train, held) in enumerate(SEQ):
        fired += [(i, a.regime) for a in tracker.update({T: train, H: held})]
    # train falls while held-out rises at checks 2 and 3 (window 3: two consecutive rises) -> enters at 3;
    # held-out falls at 5 (left), rises again at 7 and 8 -> re-enters at 8
    assert fired == [(3, "fitting_teacher_errors"), (8, "fitting_teacher_errors")]


def test_alert_and_stopping_policy_share_one_rule():
    """The warning holds exactly at the checks where the `teacher_overfit` policy (patience =
    window - 1, no ratio branch) would vote to stop."""
    tracker = AlertTracker(window=3)
    stopper = W2SEarlyStopping("teacher_overfit", patience=2, kappa=None, misfit="kl_teacher_student", verbose=False)
    for i, (train, held) in enumerate(SEQ):
        tracker.update({T: train, H: held})
        stopper.evaluate({T: train, H: held}, epoch=i)
        assert ("fitting_teacher_errors" in tracker.active) == bool(stopper.history[-1]["votes"]), i


def test_no_alert_while_both_fall():
    tracker = AlertTracker(window=3)
    assert not any(tracker.update({T: 1 - 0.1 * i, H: 0.5 - 0.05 * i}) for i in range(6))


def test_gain_exhausted_and_message_cites_the_band():
    tracker = AlertTracker(min_gain=0.05)
    assert tracker.update({"w2s/bounds/max_gain": 0.2, "w2s/misfit/disagreement": 0.01}) == []  # reads max_gain only
    (alert,) = tracker.update({"w2s/bounds/max_gain": 0.03})
    assert alert.regime == "gain_exhausted"
    assert alert.message == (
        "derived bound: w2s/bounds/max_gain = 0.0300 < min_gain 0.0500: the student's accuracy can exceed the "
        "teacher's by at most coverage × held-out disagreement + (1 − coverage) (points where the teacher abstains "
        "counted as all right), so a gain of min_gain over the teacher is no longer possible")
    assert tracker.update({"w2s/bounds/max_gain": 0.02}) == []


def test_prediction_collapse_only_when_teacher_is_not_collapsed():
    tracker = AlertTracker()
    (alert,) = tracker.update({"w2s/prediction/max_class_share": 0.99, "w2s/prediction/teacher_max_class_share": 0.6})
    assert alert.regime == "prediction_collapse" and "99.0%" in alert.message
    tracker = AlertTracker()
    assert tracker.update({"w2s/prediction/max_class_share": 0.99, "w2s/prediction/teacher_max_class_share": 0.98}) == []


def test_probe_too_small_says_the_width():
    tracker = AlertTracker(max_interval_halfwidth=0.05)
    (alert,) = tracker.update({"w2s/misfit/disagreement_lower": 0.1, "w2s/misfit/disagreement_upper": 0.3})
    assert alert.regime == "probe_too_small" and "±0.100" in alert.message


def test_state_roundtrip_keeps_the_rules_history():
    """A restored tracker warns exactly as the original: one diverging step before the save and one
    after make the window (a tracker that dropped its history would need two more)."""
    a = AlertTracker(window=3)
    for train, held in [(1.0, 0.50), (0.9, 0.55)]:
        assert a.update({T: train, H: held}) == []
    b = AlertTracker(window=3)
    b.load_state_dict(a.state_dict())
    nxt = {T: 0.8, H: 0.6}
    assert [x.regime for x in a.update(dict(nxt))] == [x.regime for x in b.update(dict(nxt))] == ["fitting_teacher_errors"]
    assert b.active == a.active == {"fitting_teacher_errors"} and b.checks == a.checks == 3


@pytest.mark.parametrize("window", [1, 0])
def test_window_validation(window):
    with pytest.raises(ValueError, match="`window` must be >= 2"):
        AlertTracker(window=window)
