"""bench/first_steps.py: the first steps' losses of a config, and a divergence named as such."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "first_steps.py"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fcn_baseline.yaml"


def load_script():
    spec = importlib.util.spec_from_file_location("first_steps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_first_steps_reports_finite_losses_and_names_a_divergence(monkeypatch, capsys):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    first_steps = load_script()
    first_steps.main([str(CONFIG), "--steps", "4", "--set", "data.train_limit=1024"])
    assert "seed 7531 loss trainer: finite; every 5th step:" in capsys.readouterr().out
    from training.config import load_config
    diverging = load_config(CONFIG, ["data.train_limit=1024", "optimizer.lr=1e6"])
    losses = first_steps.first_losses(diverging, 7531, 6, "trainer")
    assert not np.isfinite(losses[-1]) and len(losses) <= 6
    first_steps.main([str(CONFIG), "--steps", "6", "--set", "data.train_limit=1024", "--set", "optimizer.lr=1e6"])
    assert f"seed 7531 loss trainer: non-finite at step {len(losses)}" in capsys.readouterr().out
    clipped = first_steps.first_losses(load_config(CONFIG, ["data.train_limit=1024"]), 7531, 3, "clipped_probabilities")
    assert len(clipped) == 3 and all(np.isfinite(clipped)) and 0 < clipped[0] < 16.2   # -log(1e-7) bounds it
