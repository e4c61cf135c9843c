"""The house's layering, checked on the code: ``lightning_w2s.metrics`` is pure torch + torchmetrics
(importing any of its modules loads no Lightning), and no module imports another package's private
module."""

from __future__ import annotations

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "lightning_w2s")


def _modules(sub: str) -> list[str]:
    out = []
    for folder, _, files in os.walk(os.path.join(PACKAGE, sub)):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                out.append(rel.removesuffix(".__init__"))
    return sorted(out)


def test_metrics_modules_import_no_lightning():
    modules = _modules("metrics")
    assert "lightning_w2s.metrics.aggregator" in modules and "lightning_w2s.metrics.bounds" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(k for k in sys.modules if k == 'lightning' or k.startswith(('lightning.', 'pytorch_lightning', 'lightning_fabric'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]", f"importing lightning_w2s.metrics loaded Lightning modules: {out.strip()[:300]}"


def test_the_public_names_load_on_first_use():
    code = "import lightning_w2s, sys; print('lightning.pytorch' in sys.modules); lightning_w2s.W2SMonitor; print('lightning.pytorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert out == ["False", "True"]


def test_no_module_imports_another_packages_private_module():
    """``from pkg._mod import ...`` and ``from pkg import _mod`` only inside ``pkg`` itself (a private
    *name* of a sibling module inside the same package is that package's business)."""
    pattern = re.compile(r"^\s*from (lightning_w2s(?:\.\w+)*) import ([\w, ()\n]+)", re.M)
    offenders = []
    for module in _modules(""):
        parts = module.split(".")
        is_package = os.path.isdir(os.path.join(ROOT, *parts))
        own = module if is_package else ".".join(parts[:-1])
        path = os.path.join(ROOT, *parts, "__init__.py") if is_package else os.path.join(ROOT, *parts) + ".py"
        for m in pattern.finditer(open(path, encoding="utf-8").read()):
            source = m.group(1).split(".")
            private = [i for i, p in enumerate(source) if p.startswith("_")]
            if private:  # from pkg._mod import ...: the private module's package is pkg
                owner = ".".join(source[: private[0]])
            elif os.path.isdir(os.path.join(ROOT, *source)) and any(
                n.strip().startswith("_") and os.path.exists(os.path.join(ROOT, *source, n.strip() + ".py")) for n in m.group(2).replace("(", "").replace(")", "").split(",")
            ):  # from pkg import _mod
                owner = m.group(1)
            else:
                continue
            if owner != own:
                offenders.append((module, m.group(1)))
    assert offenders == []
