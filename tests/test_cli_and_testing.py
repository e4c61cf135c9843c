"""LightningCLI YAML (class_path: lightning_w2s.W2SMonitor) and the lightning_w2s.testing helper."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_w2s.testing import assert_w2s_logged, last_w2s_values, read_w2s_scalars

ROOT = Path(__file__).resolve().parents[1]


def _cli(tmp_path, probe_path):
    config = yaml.safe_load((ROOT / "examples" / "cli" / "config.yaml").read_text())
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    config["trainer"]["callbacks"][0]["init_args"]["probe"] = str(probe_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, str(ROOT / "examples" / "cli" / "model.py"), "fit", "--config", str(cfg)], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_lightning_cli_yaml_example(tmp_path):
    """The example as the README runs it: its own script writes the probe, the YAML trains."""
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "cli" / "make_probe.py"), "runs/cli/probe.pt"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert (tmp_path / "runs" / "cli" / "probe.pt").is_file()
    proc = _cli(tmp_path, "runs/cli/probe.pt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = assert_w2s_logged(tmp_path / "logs", ["w2s/misfit/disagreement", "w2s/gold/accuracy", "w2s/gold/pgr"])
    assert 0.0 <= values["w2s/misfit/disagreement"] <= 1.0
    series = read_w2s_scalars(tmp_path / "logs")["w2s/gold/accuracy"]
    assert len(series) == 3 and [s for s, _ in series] == sorted(s for s, _ in series)


def test_lightning_cli_missing_probe_is_one_clear_line(tmp_path):
    proc = _cli(tmp_path, "runs/cli/probe.pt")  # nothing wrote it
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: probe file not found: lightning_w2s.W2SMonitor.probe='runs/cli/probe.pt'"), last
    assert "examples/cli/make_probe.py" in last
    assert "Union subtypes" not in proc.stderr and "Traceback" not in proc.stderr


def test_testing_helper_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        last_w2s_values(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no TensorBoard event file"):
        last_w2s_values(tmp_path)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(tmp_path / "run") as w:
        w.add_scalar("w2s/misfit/sq", 0.5, 1)
        w.add_scalar("other", 1.0, 1)
    assert last_w2s_values(tmp_path) == {"w2s/misfit/sq": 0.5}
    with pytest.raises(AssertionError, match=r"not logged .*\['w2s/gold/accuracy'\]"):
        assert_w2s_logged(tmp_path, ["w2s/gold/accuracy"])
