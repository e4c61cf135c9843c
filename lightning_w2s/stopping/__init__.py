"""Stopping: the rules over a check's logged values (:mod:`~lightning_w2s.stopping.rules`), the
policies ``W2SEarlyStopping`` is built with (:mod:`~lightning_w2s.stopping.policies`), the decision
it holds (:mod:`~lightning_w2s.stopping.decision`) and the monitor's warnings built on the same rules
(:mod:`~lightning_w2s.stopping.alerts`). Pure Python over ``{name: value}`` dicts: no Lightning
import, so a benchmark replays the package's own decisions."""
