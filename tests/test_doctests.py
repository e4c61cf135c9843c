"""Every docstring example in the package runs (``doctest`` over each module), and each public
class of the package carries one."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest
import torch

import lightning_w2s

MODULES = sorted(m.name for m in pkgutil.walk_packages(lightning_w2s.__path__, "lightning_w2s."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    torch.manual_seed(0)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


@pytest.mark.parametrize("name", MODULES)
def test_public_classes_have_an_example(name):
    module = importlib.import_module(name)
    missing = [cls.__name__ for cls in vars(module).values() if inspect.isclass(cls) and cls.__module__ == name and not cls.__name__.startswith("_") and ">>>" not in (cls.__doc__ or "")]
    assert missing == [], f"public classes without a docstring example in {name}: {missing}"
