"""Test fixtures; the helpers they build on (the tiny student, the synthetic tasks, Trainer settings,
both Lightning namespaces) are in ``helpers.py``, which tests import directly."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # lets tests import helpers.py and the scripts in this folder

from helpers import Lightning, Task, make_task, route_rank_zero_messages  # noqa: E402


@pytest.fixture
def task() -> Task:
    return make_task()


@pytest.fixture(autouse=True)
def _rank_zero_logger(monkeypatch):
    route_rank_zero_messages(monkeypatch, "lightning.pytorch")


@pytest.fixture(params=["lightning.pytorch", "pytorch_lightning"])
def lightning(request, monkeypatch) -> Lightning:
    """A Lightning namespace: tests taking it run once under each (and read its rank-zero logger)."""
    route_rank_zero_messages(monkeypatch, request.param)
    return Lightning(request.param)


@pytest.fixture(scope="session")
def golden_runs() -> dict:
    """The two golden fits of ``tests/golden_values.py``, run once per test session (two tests read them)."""
    from golden_values import run_all

    return run_all()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield
