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
        "counted as all right), so a gain of min_gain over the teacher is no longer possible"
    )
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


# ============================================================== the rules that are warnings only
# gain_exhausted and robustness_drop were stopping policies until the stopping benchmark ruled them
# out (docs/stopping.md); their rules are checked here, where they are used, against references
# written over windows rather than running counters.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GAMMA, DIS, MAX_GAIN = "w2s/robustness/inconsistency", "w2s/misfit/disagreement", "w2s/bounds/max_gain"
values = st.lists(st.integers(0, 6).map(lambda v: v / 4), min_size=2, max_size=14)  # ties happen on purpose


def ref_robust(gamma, d, i, p):
    """gamma-hat rose while disagreement fell at each of the last p checks ending at i."""
    lo = i - p + 1
    return lo >= 1 and all(gamma[j] > gamma[j - 1] and d[j] < d[j - 1] for j in range(lo, i + 1))


def entered(holds, n):
    """The checks where a condition starts to hold: a warning fires once per entry."""
    return [i for i in range(n) if holds(i) and not (i > 0 and holds(i - 1))]


def fired(tracker, rows, regime):
    return [i for i, row in enumerate(rows) if any(a.regime == regime for a in tracker.update(row))]


@settings(max_examples=60, deadline=None)
@given(d=values, g=st.sampled_from([0.3, 0.5, 1.0]))
def test_gain_exhausted_warning_matches_reference(d, g):
    d = [x / 6 for x in d]  # largest gains still possible, in [0, 1]
    got = fired(AlertTracker(min_gain=g), [{MAX_GAIN: x} for x in d], "gain_exhausted")
    assert got == entered(lambda i: d[i] < g, len(d))


@settings(max_examples=60, deadline=None)
@given(gamma=values, d=values, window=st.integers(2, 4))
def test_robustness_drop_warning_matches_reference(gamma, d, window):
    n = min(len(gamma), len(d))
    gamma, d = gamma[:n], d[:n]
    got = fired(AlertTracker(window=window), [{GAMMA: a, DIS: b} for a, b in zip(gamma, d)], "robustness_drop")
    assert got == entered(lambda i: ref_robust(gamma, d, i, window - 1), n)


def test_robustness_drop_warning_names_lang_et_al():
    tracker = AlertTracker(window=2)
    assert tracker.update({GAMMA: 0.1, DIS: 0.3}) == []
    (alert,) = tracker.update({GAMMA: 0.2, DIS: 0.2})
    assert alert.regime == "robustness_drop" and alert.message.startswith("heuristic: average non-robustness")
    assert "Lang et al., Prop 4.1" in alert.message and alert.values == {GAMMA: 0.2, DIS: 0.2}


def test_the_warning_rules_replay_in_the_stoppers_decision_code():
    """The stopping benchmark replays these rules through StoppingDecision (the code W2SEarlyStopping
    decides with): the decision stops where the rule holds for `patience` checks, with no reason of
    W2SStoppingReason (no stopper can stop for them) and the rule's best check."""
    from lightning_w2s.stopping.decision import StoppingDecision
    from lightning_w2s.stopping.rules import GainExhausted

    decision = StoppingDecision([GainExhausted(patience=2, min_delta=0.0, min_gain=0.1)])
    out = [decision.evaluate({MAX_GAIN: x}) for x in (0.2, 0.05, 0.04)]
    assert [o[0] for o in out] == [False, False, True] and out[-1][1] is None
    assert decision.restore_check == 0 and "[gain_exhausted]" in out[-1][2]
