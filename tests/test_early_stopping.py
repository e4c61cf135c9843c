"""W2SEarlyStopping: each policy on scripted metric sequences against independent reference rules,
then end to end through a real Trainer where the monitor's numbers trigger it. (gain_exhausted and
robustness_drop are the monitor's warnings: tests/test_alerts.py checks them against references.)"""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from helpers import TinyStudent, make_task, read_csv_metrics, trainer_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import SingleDeviceStrategy

from lightning_w2s import W2SMonitor
from lightning_w2s.callbacks.early_stopping import POLICIES, W2SEarlyStopping, W2SStoppingReason
from lightning_w2s.stopping.decision import StoppingDecision
from lightning_w2s.stopping.policies import make_policies

HELD = "w2s/misfit/teacher_label_ce"  # what the plateau and overfit rules read by default
TRAIN = "w2s/train_misfit/teacher_label_ce"
DIS = "w2s/misfit/disagreement"


# ============================================================== independent reference rules
# Written as "does the window of the last `p` checks ending at i satisfy the rule?" rather than with
# the callback's running counters, so they are a second, different formulation of docs/theory.md §3.
def ref_plateau(xs, i, p, warm):
    """No check in (i-p, i] beat the minimum of everything before it (min_delta = 0)."""
    lo = i - p + 1
    return lo >= 1 and lo >= warm and min(xs[lo : i + 1]) >= min(xs[:lo])


def ref_overfit(tr, ho, i, p, warm, kappa=None):
    window = range(i - p + 1, i + 1)
    if i - p + 1 < warm:
        return False
    diverging = i - p + 1 >= 1 and all(tr[j] < tr[j - 1] and ho[j] > ho[j - 1] for j in window)
    ratio = kappa is not None and all(tr[j] / ho[j] < kappa for j in window)
    return diverging or ratio


def first(n, cond):
    return next((i for i in range(n) if cond(i)), None)


def drive(es, rows, steps=None):
    """Feed hand-made callback_metrics rows; returns the index of the first check that stops."""
    for i, row in enumerate(rows):
        stop, reason, msg = es.evaluate(row, epoch=i, global_step=(steps[i] if steps else 10 * i))
        if stop:
            return i, reason, msg
    return None, W2SStoppingReason.NOT_STOPPED, None


values = st.lists(st.integers(0, 6).map(lambda v: v / 4), min_size=2, max_size=14)  # ties happen on purpose


# ============================================================== scripted: each policy vs its reference
@settings(max_examples=60, deadline=None)
@given(xs=values, p=st.integers(1, 4), warm=st.integers(0, 3))
def test_plateau_matches_reference(xs, p, warm):
    es = W2SEarlyStopping("heldout_misfit_plateau", patience=p, min_epochs=warm, verbose=False)
    got, reason, _ = drive(es, [{HELD: x} for x in xs])
    assert got == first(len(xs), lambda i: ref_plateau(xs, i, p, warm))
    if got is not None:
        assert reason is W2SStoppingReason.HELDOUT_MISFIT_PLATEAU


@settings(max_examples=60, deadline=None)
@given(tr=values, ho=values, p=st.integers(1, 3), warm=st.integers(0, 2), kappa=st.sampled_from([None, 0.5, 1.0]))
def test_teacher_overfit_matches_reference(tr, ho, p, warm, kappa):
    n = min(len(tr), len(ho))
    tr, ho = [t + 0.1 for t in tr[:n]], [h + 0.1 for h in ho[:n]]  # positive misfits
    es = W2SEarlyStopping("teacher_overfit", patience=p, min_epochs=warm, kappa=kappa, verbose=False)
    got, reason, _ = drive(es, [{TRAIN: a, HELD: b} for a, b in zip(tr, ho)])
    assert got == first(n, lambda i: ref_overfit(tr, ho, i, p, warm, kappa))
    if got is not None:
        assert reason is W2SStoppingReason.TEACHER_OVERFIT


@settings(max_examples=40, deadline=None)
@given(tr=values, xs=values, p=st.integers(1, 3))
def test_two_policies_stop_when_either_votes(tr, xs, p):
    """Policies combine with "any": the first check where one of them votes; the reason is the
    first listed policy that voted, and the message names every policy that voted."""
    n = min(len(tr), len(xs))
    tr, xs = [t + 0.1 for t in tr[:n]], [x + 0.1 for x in xs[:n]]
    es = W2SEarlyStopping(["heldout_misfit_plateau", "teacher_overfit"], patience=p, kappa=None, verbose=False)
    got, reason, msg = drive(es, [{TRAIN: a, HELD: b} for a, b in zip(tr, xs)])
    a = [ref_plateau(xs, i, p, 0) for i in range(n)]
    b = [ref_overfit(tr, xs, i, p, 0) for i in range(n)]
    assert got == first(n, lambda i: a[i] or b[i])
    if got is not None:
        assert reason is (W2SStoppingReason.HELDOUT_MISFIT_PLATEAU if a[got] else W2SStoppingReason.TEACHER_OVERFIT)
        assert ("[heldout_misfit_plateau]" in msg) == a[got] and ("[teacher_overfit]" in msg) == b[got]


def test_min_delta_hand_example():
    # best 1.0; 0.95 and 0.92 are within min_delta=0.1 -> waits 1, 2; 0.85 improves (1.0-0.1=0.9 > 0.85)
    es = W2SEarlyStopping(patience=3, min_delta=0.1, verbose=False)
    got, _, msg = drive(es, [{HELD: x} for x in [1.0, 0.95, 0.92, 0.85, 0.8, 0.78, 0.76, 0.9]])
    # after 0.85 (check 3): 0.8 (wait 1), 0.78 (2), 0.76 (3) -> stop at check 6
    assert got == 6
    assert "min_delta=0.1" in msg and "best 0.85 at check 3" in msg


# ============================================================== warm-up
def test_warmup_epochs_no_decision_and_no_latched_stop():
    rows = [{HELD: 1.0}] * 10
    assert drive(W2SEarlyStopping(patience=2, verbose=False), rows)[0] == 2  # would stop at check 2 without warm-up
    es = W2SEarlyStopping(patience=2, min_epochs=3, verbose=False)
    got, _, _ = drive(es, rows)
    assert got == 4  # checks 0-2 are warm-up; waits start at check 3: 1, then 2 at check 4
    assert [h["warmup"] for h in es.history] == [True, True, True, False, False]
    assert all(not h["votes"] for h in es.history[:3])


def test_warmup_steps_in_the_decision():
    """The decision object keeps a warm-up in optimizer steps (the stopper leaves that to
    ``Trainer(min_steps=)``): steps 0, 10, 20 < 25 are warm-up, waits start at step 30."""
    decision = StoppingDecision(make_policies(patience=2), min_steps=25)
    stops = [decision.evaluate({HELD: 1.0}, epoch=0, global_step=s)[0] for s in (0, 10, 20, 30, 40, 50)]
    assert stops.index(True) == 4
    assert [h["warmup"] for h in decision.history[:4]] == [True, True, True, False]


def test_warmup_trend_policy_counts_nothing_inside_warmup():
    # diverging from the start: without warm-up it stops at check 2 (patience 2)
    rows = [{TRAIN: 1.0 - 0.1 * i, HELD: 1.0 + 0.1 * i} for i in range(8)]
    assert drive(W2SEarlyStopping("teacher_overfit", patience=2, kappa=None, verbose=False), rows)[0] == 2
    assert drive(W2SEarlyStopping("teacher_overfit", patience=2, kappa=None, min_epochs=4, verbose=False), rows)[0] == 5


# ============================================================== missing values, state, validation
def test_missing_or_nan_values_do_not_vote():
    es = W2SEarlyStopping(patience=2, verbose=False)
    rows = [{HELD: 1.0}, {HELD: 1.0}, {HELD: float("nan")}, {}, {HELD: 1.0}]
    got, _, _ = drive(es, rows)
    assert got == 4  # checks 2 and 3 carry no usable value: no wait counted
    assert es.history[2]["values"] == {} and es.history[3]["values"] == {}


def test_state_dict_roundtrip_decides_identically(tmp_path):
    ho = [1.0, 0.9, 0.8, 0.7, 0.7, 0.72, 0.75, 0.8, 0.85, 0.9]
    tr = [1.0, 0.92, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5]
    rows = [{TRAIN: a, HELD: b} for a, b in zip(tr, ho)]
    kw = dict(policy=["heldout_misfit_plateau", "teacher_overfit"], patience={"heldout_misfit_plateau": 3, "teacher_overfit": 2}, kappa=0.6, verbose=False)
    full = W2SEarlyStopping(**kw)
    want = drive(full, rows)
    # by hand: best 0.7 at check 3, no improvement at 4, 5, 6 -> plateau at 6; held-out rises at 5, 6 while
    # train falls -> teacher_overfit at 6 as well; the reason is the first listed policy's
    assert want[0] == 6 and want[1] is W2SStoppingReason.HELDOUT_MISFIT_PLATEAU
    assert full.triggered_policies == ["heldout_misfit_plateau", "teacher_overfit"]
    part = W2SEarlyStopping(**kw)
    assert drive(part, rows[:4])[0] is None
    torch.save(part.state_dict(), tmp_path / "s.pt")
    resumed = W2SEarlyStopping(**kw)
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))  # only safe types in the state
    got = None
    for i in range(4, len(rows)):
        stop, reason, msg = resumed.evaluate(rows[i], epoch=i, global_step=10 * i)
        if stop:
            got = (i, reason, msg)
            break
    assert got == want
    assert resumed.history == full.history
    assert resumed.state_key == full.state_key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(policy="nope"), "`policy` must be one of"),
        (dict(policy=[]), "at least one"),
        (dict(policy="gain_exhausted"), "a warning of W2SMonitor, not a stopping policy.*min_gain"),
        (dict(policy=["heldout_misfit_plateau", "robustness_drop"]), "`policy`='robustness_drop' is a warning of W2SMonitor"),
        (dict(policy=["teacher_overfit", "teacher_overfit"]), "twice"),
        (dict(patience=0), "`patience`"),
        (dict(patience={"teacher_overfit": 2}), "not among the chosen policies"),
        (dict(min_delta=-1.0), "`min_delta`"),
        (dict(kappa=2.0), "`kappa`"),
        (dict(misfit="kl"), "`misfit` must be one of"),
        (dict(min_epochs=-1), "`min_epochs`"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        W2SEarlyStopping(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(patience=True), r"`patience` must be an int, got bool"),
        (dict(patience={"heldout_misfit_plateau": 1.5}), r"`patience\['heldout_misfit_plateau'\]` must be an int"),
        (dict(min_delta="0"), r"`min_delta` must be a float"),
        (dict(verbose=1), r"`verbose` must be a bool"),
        (dict(strict=None), r"`strict` must be a bool"),
        (dict(restore_best="yes"), r"`restore_best` must be a bool"),
        (dict(gold="yes"), r"`gold` must be a bool"),
    ],
)
def test_constructor_type_errors_name_the_argument(kwargs, match):
    with pytest.raises(TypeError, match=match):
        W2SEarlyStopping(**kwargs)


def test_inherited_early_stopping_api_works():
    """W2SEarlyStopping calls EarlyStopping.__init__: Lightning finds it as the early-stopping
    callback, and the base class's own methods work on its attributes (the first policy's quantity)."""
    es = W2SEarlyStopping(["heldout_misfit_plateau", "teacher_overfit"], patience={"heldout_misfit_plateau": 2, "teacher_overfit": 4}, min_delta=0.01, verbose=False)
    assert es.monitor == HELD and es.patience == 4 and es.wait_count == 0 and es.mode == "min"
    assert es.monitor_op(torch.tensor(0.1), torch.tensor(0.2))
    assert es._validate_condition_metric({HELD: torch.tensor(1.0)})
    should_stop, reason = es._evaluate_stopping_criteria(torch.tensor(0.5))  # the stock rule on the primary quantity
    assert not should_stop and "improved" in reason and es._improvement_message(torch.tensor(0.4))
    es.evaluate({HELD: 0.3, TRAIN: 0.1})
    es.evaluate({HELD: 0.4, TRAIN: 0.1})
    assert es.wait_count == 2 and float(es.best_score) == 0.3 and es.restore_check == 0  # teacher_overfit's ratio wait
    trainer = L.Trainer(**trainer_kwargs(callbacks=[es]))
    assert trainer.early_stopping_callback is es and trainer.early_stopping_callbacks == [es]


def test_policies_listed():
    import inspect

    assert POLICIES == ("heldout_misfit_plateau", "teacher_overfit")
    assert len(inspect.signature(W2SEarlyStopping).parameters) <= 10
    es = W2SEarlyStopping()  # the documented default: the stopping benchmark's chosen rule
    assert es.decision.names == ["heldout_misfit_plateau"] and es.misfit == "teacher_label_ce" and es.decision.needed == [HELD]
    (rule,) = es.decision.rules
    assert (rule.patience, rule.min_delta, es.decision.min_epochs, es.decision.min_steps) == (5, 0.0, 0, 0)
    assert es.restore_best and es.best_weights.active and es.monitor == HELD and es.patience == 5


# ============================================================== end to end through a real Trainer
class WeightsRecorder(Callback):
    """CPU copy of the weights at every check (the monitor checks at validation end)."""

    def __init__(self):
        self.weights = {}

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.weights[trainer.current_epoch] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def noisy_fit(tmp_path, es, *, train_probe=False, max_epochs=12, extra=(), monitor_kw=None, lr=0.02, task=None, input_features=False, **trainer_kw):
    task = task or make_task(noise=0.3)
    L.seed_everything(0, verbose=False)
    model = TinyStudent(lr=lr, hidden=64)
    monitor = W2SMonitor(task.probe(input_features), train_probe=task.train_probe() if train_probe else None, **(monitor_kw or {}))
    logger = CSVLogger(tmp_path, name="csv")
    trainer = L.Trainer(**trainer_kwargs(max_epochs=max_epochs, logger=logger, callbacks=[monitor, es, *extra], **trainer_kw))
    trainer.fit(model, task.train_loader(32), task.val_loader())
    return trainer, model, read_csv_metrics(logger)


def test_e2e_plateau_stops_where_the_rule_says_and_restores_best(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    rec = WeightsRecorder()
    es = W2SEarlyStopping(patience=2, restore_best=True, gold=False)  # the probe has gold: gold=False tests the label-free default
    trainer, model, logged = noisy_fit(tmp_path, es, extra=[rec])
    xs = [logged[e][HELD] for e in sorted(logged)]
    want = first(len(xs), lambda i: ref_plateau(xs, i, 2, 0))
    assert want is not None and want < 11, "the scenario must trigger the plateau before max_epochs"
    assert es.stopped_epoch == want and sorted(logged) == list(range(want + 1))
    assert es.stopping_reason is W2SStoppingReason.HELDOUT_MISFIT_PLATEAU
    assert [h["values"][HELD] for h in es.history] == xs  # the same float32 values the logger wrote
    # restore_best: the weights of the check with the lowest held-out misfit, not the last ones
    best = min(range(len(xs)), key=lambda i: xs[i])
    assert es.best_check == best and best != want
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[best][k]) for k in state)
    assert not all(torch.equal(state[k], rec.weights[want][k]) for k in state)
    assert "restored at the end of training" in es.stopping_reason_message
    # on the console by default: Lightning's rank-zero logger (tests/test_console.py reads a real terminal)
    assert any("W2SEarlyStopping stopped the fit" in r.getMessage() and r.name.startswith("lightning.pytorch") for r in caplog.records)


class SnapshotCount(Callback):
    """Listed after the stopper: how many weight copies it holds after each check."""

    def __init__(self, es):
        self.es, self.counts = es, []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.counts.append(len(self.es.best_weights.copies))


def _lightning_messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("lightning.pytorch")]


def test_default_stops_after_the_minimum_and_restores_that_checks_weights(tmp_path, caplog):
    """W2SEarlyStopping() with no arguments: the held-out cross-entropy on the teacher's labels falls to
    a minimum, then rises as the student memorises the teacher's flipped labels; the fit stops 5
    checks after the minimum and the module ends with the weights of the minimum's check."""
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    rec = WeightsRecorder()
    es = W2SEarlyStopping(gold=False)  # the probe has gold: gold=False tests the label-free default
    count = SnapshotCount(es)
    trainer, model, logged = noisy_fit(tmp_path, es, extra=[rec, count], max_epochs=25)
    xs = [logged[e][HELD] for e in sorted(logged)]
    want = first(len(xs), lambda i: ref_plateau(xs, i, 5, 0))
    assert want is not None and want < 24, "the scenario must trigger the default before max_epochs"
    assert es.stopped_epoch == es.stopped_check == want and len(xs) == want + 1
    assert es.stopping_reason is W2SStoppingReason.HELDOUT_MISFIT_PLATEAU
    best = xs.index(min(xs))  # the first check of the lowest value
    assert best == want - 5 and es.best_check == es.restore_check == best
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[best][k]) for k in state)  # the snapshot came back
    assert not all(torch.equal(state[k], rec.weights[want][k]) for k in state)
    assert count.counts == [1] * len(xs)  # one CPU copy of the state_dict at any check
    assert all(v.device.type == "cpu" for v in es.best_weights.copies[best].values())
    assert "weights of check %d will be restored" % best in es.stopping_reason_message
    assert any(m.startswith(f"W2SEarlyStopping: restored the student's weights of check {best} (epoch {best}, ") and f"the fit stopped at check {want}" in m for m in _lightning_messages(caplog))


def test_default_restores_the_best_check_when_max_epochs_comes_first(tmp_path, caplog):
    """No stop (max_epochs reached first): the best check's weights still come back at the end, as
    ModelCheckpoint's best would; the console says so."""
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    rec = WeightsRecorder()
    es = W2SEarlyStopping(gold=False)  # the probe has gold: gold=False tests the label-free default
    _, model, logged = noisy_fit(tmp_path, es, extra=[rec], max_epochs=4)
    xs = [logged[e][HELD] for e in sorted(logged)]
    assert es.stopping_reason is W2SStoppingReason.NOT_STOPPED and es.stopped_check is None and len(xs) == 4
    best = xs.index(min(xs))
    assert best < 3, "the scenario must have its minimum before the last check"
    assert es.best_check == best
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[best][k]) for k in state)
    assert not all(torch.equal(state[k], rec.weights[3][k]) for k in state)
    assert any(m.startswith(f"W2SEarlyStopping: restored the student's weights of check {best}") and "ended after 4 checks without a stop" in m for m in _lightning_messages(caplog))


def test_restore_best_false_keeps_the_last_weights_and_no_copy(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    rec = WeightsRecorder()
    es = W2SEarlyStopping(restore_best=False, gold=False)  # the probe has gold: gold=False tests the label-free default
    _, model, logged = noisy_fit(tmp_path, es, extra=[rec], max_epochs=25)
    want = es.stopped_check
    assert want is not None and want == len(logged) - 1 and es.best_weights.copies == {}
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[want][k]) for k in state)
    assert es.best_check == es.restore_check == want - 5  # still reported, not restored
    assert "restored" not in es.stopping_reason_message
    assert not any("restored the student's weights" in m for m in _lightning_messages(caplog))


class ShardedLikeStrategy(SingleDeviceStrategy):
    """Stands for FSDP / DeepSpeed ZeRO-3 in one CPU process: the strategy builds the module's state
    dict itself (what ``sharded_weights`` looks for)."""

    def lightning_module_state_dict(self):
        return super().lightning_module_state_dict()


def test_sharded_strategies_are_detected():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy

    from lightning_w2s.callbacks.best_weights import sharded_weights

    class ZeRO3(DDPStrategy):  # DeepSpeed itself is not installed: its stage-3 flag
        zero_stage_3 = True

    assert sharded_weights(FSDPStrategy()) and sharded_weights(ModelParallelStrategy()) and sharded_weights(ZeRO3())
    assert not sharded_weights(DDPStrategy()) and not sharded_weights(SingleDeviceStrategy(torch.device("cpu")))


def test_restore_is_switched_off_with_a_warning_under_a_sharded_strategy(tmp_path):
    """A plain state_dict copy would not restore sharded weights: no copy, no restore, a warning that
    names `restore_best=False`; the decisions are unchanged."""
    rec = WeightsRecorder()
    es = W2SEarlyStopping(gold=False)  # the probe has gold: gold=False tests the label-free default
    with pytest.warns(
        UserWarning,
        match=r"`restore_best` is off for this fit: under ShardedLikeStrategy.*"
        r"ModelCheckpoint\(monitor='w2s/misfit/teacher_label_ce'.*`restore_best=False`",
    ):
        _, model, _ = noisy_fit(tmp_path, es, extra=[rec], max_epochs=25, strategy=ShardedLikeStrategy(torch.device("cpu")))
    stop = es.stopped_check
    assert stop is not None and es.best_weights.copies == {} and es.restore_check == stop - 5
    state = model.state_dict()
    assert all(torch.equal(state[k], rec.weights[stop][k]) for k in state)
    assert "restored" not in es.stopping_reason_message


def test_e2e_teacher_overfit(tmp_path):
    es = W2SEarlyStopping("teacher_overfit", patience=3, kappa=None)
    _, _, logged = noisy_fit(tmp_path, es, train_probe=True)
    tr = [logged[e][TRAIN] for e in sorted(logged)]
    ho = [logged[e][HELD] for e in sorted(logged)]
    want = first(len(tr), lambda i: ref_overfit(tr, ho, i, 3, 0))
    assert want is not None and want < 11
    assert es.stopped_epoch == want and es.stopping_reason is W2SStoppingReason.TEACHER_OVERFIT
    assert "fell while held-out misfit" in es.stopping_reason_message


def test_e2e_tensorboard_text_readable(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    task = make_task()
    L.seed_everything(0, verbose=False)
    logger = TensorBoardLogger(tmp_path, name="tb")
    es = W2SEarlyStopping(patience=2)
    # figure_every_n_checks=0: no reliability diagrams (matplotlib), not what this test is about
    trainer = L.Trainer(**trainer_kwargs(logger=logger, callbacks=[W2SMonitor(task.probe(), figure_every_n_checks=0), es]))
    trainer.fit(TinyStudent(lr=0.0), task.train_loader(), task.val_loader())  # lr 0: the misfit never improves
    assert es.stopped_epoch == 2
    acc = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    tag = "w2s/early_stopping/text_summary"
    assert tag in acc.Tags()["tensors"]
    events = acc.Tensors(tag)
    assert len(events) == 1 and events[0].step == trainer.global_step
    text = tensor_util.make_ndarray(events[0].tensor_proto).item().decode()
    assert "HELDOUT_MISFIT_PLATEAU" in text and es.stopping_reason_message in text


def test_no_validation_loop_checks_at_train_epoch_end_whatever_the_order():
    task = make_task()
    L.seed_everything(0, verbose=False)
    es = W2SEarlyStopping(patience=2)
    monitor = W2SMonitor(task.probe())
    trainer = L.Trainer(**trainer_kwargs(callbacks=[es, monitor]))  # the stopper listed *before* the monitor
    trainer.fit(TinyStudent(lr=0.0), task.train_loader())
    assert len(es.history) == 3 and all(HELD in h["values"] for h in es.history)
    assert es.stopped_epoch == 2
    # self.log stores a Python float as a float32 tensor: the same number, rounded
    assert es.history[-1]["values"][HELD] == torch.tensor(monitor.last_values[HELD], dtype=torch.float32).item()


def test_stale_value_from_a_failed_monitor_check_is_not_counted():
    task = make_task()

    def forward(module, batch):
        if module.current_epoch == 1:
            raise RuntimeError("probe forward failed on purpose")
        return module(batch)

    L.seed_everything(0, verbose=False)
    es = W2SEarlyStopping(patience=2)
    monitor = W2SMonitor(task.probe(), forward_fn=forward, on_error="warn")
    trainer = L.Trainer(**trainer_kwargs(callbacks=[monitor, es]))
    with pytest.warns(RuntimeWarning, match="no fresh finite value"):
        trainer.fit(TinyStudent(lr=0.0), task.train_loader(), task.val_loader())
    assert es.history[1]["values"] == {}  # callback_metrics still held epoch 0's value: not taken as new
    assert es.stopped_epoch == 3  # waits at epochs 2 and 3 (a stale check would have made it epoch 2)


# ============================================================== needs checked at fit start
def test_fit_start_fails_for_teacher_overfit_without_train_probe():
    task = make_task()
    model = TinyStudent()
    es = W2SEarlyStopping("teacher_overfit")
    trainer = L.Trainer(**trainer_kwargs(callbacks=[W2SMonitor(task.probe()), es]))
    with pytest.raises(RuntimeError, match=r"w2s/train_misfit/teacher_label_ce.*train_probe"):
        trainer.fit(model, task.train_loader(), task.val_loader())
    assert model.train_steps == 0  # failed before the first training step


class NamesProvider(Callback):
    """Any callback exposing ``expected_names()`` (the contract asked of W2SMonitor)."""

    def expected_names(self):
        return {HELD, DIS, "w2s/misfit/sq", "w2s/misfit/kl_student_teacher"}


def test_fit_start_fails_from_expected_names():
    task = make_task()
    model = TinyStudent()
    trainer = L.Trainer(**trainer_kwargs(callbacks=[NamesProvider(), W2SEarlyStopping("teacher_overfit", misfit="disagreement")]))
    with pytest.raises(RuntimeError, match=r"policy=\['teacher_overfit'\]\) needs `w2s/train_misfit/disagreement`"):
        trainer.fit(model, task.train_loader(), task.val_loader())
    assert model.train_steps == 0


def test_no_monitor_strict_fails_and_non_strict_warns():
    task = make_task()
    trainer = L.Trainer(**trainer_kwargs(max_epochs=2, callbacks=[W2SEarlyStopping()]))
    with pytest.raises(RuntimeError, match=r"w2s/misfit/teacher_label_ce.*W2SMonitor"):
        trainer.fit(TinyStudent(), task.train_loader(), task.val_loader())
    es = W2SEarlyStopping(strict=False, patience=1)
    trainer = L.Trainer(**trainer_kwargs(max_epochs=3, callbacks=[es]))
    with pytest.warns(RuntimeWarning, match="will not be logged"):
        trainer.fit(TinyStudent(lr=0.0), task.train_loader(), task.val_loader())
    assert es.stopping_reason is W2SStoppingReason.NOT_STOPPED and trainer.current_epoch == 3


# ============================================================== a stock EarlyStopping alongside
def test_stock_early_stopping_on_w2s_name_alongside(tmp_path):
    stock = EarlyStopping(monitor=DIS, patience=2, mode="min")
    ours = W2SEarlyStopping(patience=50)
    # with Lightning's sanity check on: neither callback may count it as a check
    trainer, _, logged = noisy_fit(tmp_path, ours, extra=[stock], task=make_task(noise=0.0), max_epochs=10, num_sanity_val_steps=2)
    d = [logged[e][DIS] for e in sorted(logged)]
    want = first(len(d), lambda i: ref_plateau(d, i, 2, 0))
    assert want is not None, "the scenario must trigger the stock callback"
    assert stock.stopped_epoch == want and len(ours.history) == want + 1
    assert float(stock.best_score) == pytest.approx(min(d), abs=1e-6)
    assert ours.stopping_reason is W2SStoppingReason.NOT_STOPPED


def test_monitor_attribute_and_the_sharded_advice_follow_the_first_policy():
    """``monitor`` is the first policy's own quantity, and the advice given when the restore is off
    names a checkpoint that keeps that policy's best check."""
    default = W2SEarlyStopping()
    assert default.monitor == "w2s/misfit/teacher_label_ce"
    assert "ModelCheckpoint(monitor='w2s/misfit/teacher_label_ce', mode='min')" in default._restore_fix()
    overfit = W2SEarlyStopping("teacher_overfit", misfit="disagreement")
    assert overfit.monitor == "w2s/misfit/disagreement" and "monitor='w2s/misfit/disagreement'" in overfit._restore_fix()
