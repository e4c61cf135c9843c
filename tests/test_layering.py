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


def _imports(path: str) -> set[str]:
    """Every module an ``import``/``from ... import`` anywhere in the file names (``TYPE_CHECKING``
    blocks and function bodies included), resolved to absolute names."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    package = rel.removesuffix(".__init__") if rel.endswith("__init__") else rel.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _file(module: str) -> str | None:
    parts = module.split(".")
    for path in (os.path.join(ROOT, *parts, "__init__.py"), os.path.join(ROOT, *parts) + ".py"):
        if os.path.isfile(path):
            return path
    return None


def test_metrics_modules_reach_no_lightning_import_statically():
    """Followed through the source, not the run: every file a metrics module imports, transitively,
    with the ``__init__.py`` of every package on the way (importing ``lightning_w2s.x`` runs
    ``lightning_w2s/__init__.py``), holds no import of Lightning — not even one a type checker sees."""
    lightning = ("lightning", "pytorch_lightning", "lightning_fabric")
    seen: dict[str, str] = {}  # file -> the module that first reached it
    todo = [(m, m) for m in _modules("metrics")]
    offenders = []
    while todo:
        module, via = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            path = _file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen[path] = via
            for name in _imports(path):
                if name.split(".")[0] in lightning:
                    offenders.append((os.path.relpath(path, ROOT), name, via))
                elif name.startswith("lightning_w2s"):
                    todo.append((name, via))
    assert len(seen) > 20
    assert offenders == [], offenders[:5]


def test_metrics_import_nothing_from_the_rest_of_the_package():
    """The bottom floor is closed: a metrics module's imports (anywhere in the file) name only
    ``lightning_w2s.metrics`` modules, never another package of ``lightning_w2s`` nor the package
    root (whose public names lead up to the callbacks)."""
    offenders = []
    for module in _modules("metrics"):
        path = _file(module)
        for name in _imports(path):
            if (name == "lightning_w2s" or name.startswith("lightning_w2s.")) and not name.startswith("lightning_w2s.metrics"):
                offenders.append((module, name))
    assert offenders == []
