"""Bounds and predictions on the student's gold error (docs/theory.md §2.2, §2.5; docs/architecture.md): numbers in, number out.

The public home of every bound function (docs/architecture.md, public API: ``lang_covered_bound``, ``lang_uncovered_bound``,
``accuracy_band``); the code lives in two modules by responsibility:

- :mod:`~lightning_w2s.metrics.bounds.gain` — the student's gain over its teacher: the 0/1
  :func:`accuracy_band` with the teacher's abstentions, :func:`max_accuracy_gain`, the
  cross-entropy :func:`ce_band` [derived bounds], and Charikar et al. 2024's
  :func:`charikar_predicted_gain` [prediction] beside the measured :func:`squared_error_gain`;
- :mod:`~lightning_w2s.metrics.bounds.lang` — Lang, Sontag, Vijayaraghavan 2024: Lemma B.1
  (:func:`lang_nonrobust_bound`) and Theorems B.1-B.3 (:func:`lang_covered_bound`,
  :func:`lang_uncovered_bound`, :func:`lang_uncovered_bound_b3`) with every premise checked.

Each function says what kind of statement it is:

- **theorem** — the paper's theorem, implemented as printed there, with every premise the
  statement (or the step of its proof that needs it) makes [paper];
- **derived bound** — standard maths derived here, true as stated [derived];
- **prediction** — what a theorem predicts only under assumptions a live run does not check.

A theorem's value is a *bound* only when its inputs are the theorem's quantities. Lang et al.'s
bounds take an expansion constant ``c``: fed with the plug-in estimate ``ĉ`` of
:func:`~lightning_w2s.metrics.expansion.lang_expansion` (which is not the paper's robust-expansion
constant, see that module), the same number is an **estimate** of the theorem's right-hand side and
is logged as a predicted error (``w2s/lang/*_predicted_error*``), never as a bound.

Inputs are real numbers (Python/numpy scalars or one-element tensors). A value of the wrong *type*
raises ``TypeError`` naming the argument; a theorem *parameter* the caller chooses (``q``) out of its
range raises ``ValueError``; a *measured* quantity that is NaN, out of range, or violates a premise
returns ``NaN`` and emits a ``RuntimeWarning`` with the reason
(:mod:`~lightning_w2s.metrics.bounds._inputs`): a monitor must never crash on a measurement, and never
log a wrong number.

>>> accuracy_band(0.8, 0.05)
(0.75, 0.85)
>>> round(lang_covered_bound(0.12, 0.11, 0.848), 4)  # Lang et al. Table 1: 0.05
0.0497
"""

from __future__ import annotations

from lightning_w2s.metrics.bounds.gain import accuracy_band, ce_band, charikar_predicted_gain, max_accuracy_gain, squared_error_gain
from lightning_w2s.metrics.bounds.lang import lang_covered_bound, lang_nonrobust_bound, lang_uncovered_bound, lang_uncovered_bound_b3

__all__ = [
    "accuracy_band",
    "max_accuracy_gain",
    "ce_band",
    "charikar_predicted_gain",
    "squared_error_gain",
    "lang_nonrobust_bound",
    "lang_covered_bound",
    "lang_uncovered_bound",
    "lang_uncovered_bound_b3",
]
