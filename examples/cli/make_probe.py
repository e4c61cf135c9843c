"""Write the probe file the LightningCLI example reads (``runs/cli/probe.pt`` by default).

A probe file is a :class:`~lightning_w2s.W2SProbe` saved with ``W2SProbe.save`` (tensors only,
loaded with ``torch.load(weights_only=True)``). Here it is the last 100 inputs of the example's
synthetic data with their teacher and gold labels (``WeakLabels.probe`` in ``model.py``)::

    python examples/cli/make_probe.py runs/cli/probe.pt
    python examples/cli/model.py fit --config examples/cli/config.yaml

(``make cli-example`` runs both.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import WeakLabels  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", default="runs/cli/probe.pt", help="where to write the probe")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (as in config.yaml)")
    args = parser.parse_args(argv)
    path = Path(args.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = WeakLabels(seed=args.seed).probe()
    probe.save(path)
    print(f"wrote {probe} to {path}")
    return path


if __name__ == "__main__":
    main()
