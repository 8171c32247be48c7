"""Multi-device training on 2 logical CPU devices agrees with one device."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JAX_TWO_CPU_DEVICES, real_data_dir

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--runs", "1", "--quiet", "--set", "experiment=fcn_signed", "--set", "data.train_limit=4000",
         "--set", "data.test_limit=1000", "--set", "training.epochs=2"]
# Splits the one physical CPU into two logical devices before TensorFlow starts, then runs train.py.
TWO_TF_DEVICES = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {root!r})
import train
sys.exit(train.main(sys.argv[1:]))
"""


def final_metrics(out):
    info = json.loads((out / "fcn_signed" / "run_0" / "run.json").read_text())
    return info["final"]["test_accuracy"], info["final"]["remaining_percent"]


def run(command, env=None):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def single_device(tmp_path, data_dir, backend):
    out = tmp_path / "single"
    run([sys.executable, "train.py", "configs/fcn_signed.yaml", "--out", str(out), "--data-dir", str(data_dir), *SMALL],
        env={"KERAS_BACKEND": backend})
    return final_metrics(out)


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    script = tmp_path / "two_devices.py"
    script.write_text(TWO_TF_DEVICES.format(root=str(ROOT)))
    out = tmp_path / "mirrored"
    stdout = run([sys.executable, str(script), "configs/fcn_signed.yaml", "--out", str(out), "--data-dir",
                  str(data_dir), *SMALL, "--set", "training.distribution=mirrored"],
                 env={"KERAS_BACKEND": "tensorflow"})
    assert "mirrored over 2 replicas" in stdout
    accuracy, remaining = final_metrics(out)
    reference_accuracy, reference_remaining = single_device(tmp_path, data_dir, "tensorflow")
    assert abs(accuracy - reference_accuracy) < 0.01 and abs(remaining - reference_remaining) < 1.0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None and not os.environ.get("CI"),
                    reason="jax not installed (CI installs it)")
def test_jax_data_parallel_on_two_cpu_devices(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    out = tmp_path / "data_parallel"
    stdout = run([sys.executable, "train.py", "configs/fcn_signed.yaml", "--out", str(out), "--data-dir",
                  str(data_dir), *SMALL, "--set", "training.distribution=data_parallel"],
                 env={"KERAS_BACKEND": "jax", "XLA_FLAGS": JAX_TWO_CPU_DEVICES})
    assert "data_parallel over 2 devices" in stdout
    accuracy, remaining = final_metrics(out)
    reference_accuracy, reference_remaining = single_device(tmp_path, data_dir, "jax")
    assert abs(accuracy - reference_accuracy) < 0.01 and abs(remaining - reference_remaining) < 1.0


@pytest.mark.slow
def test_distribution_on_the_wrong_backend_is_a_clear_error(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    result = subprocess.run([sys.executable, "train.py", "configs/fcn_signed.yaml", "--out", str(tmp_path),
                             "--data-dir", str(data_dir), *SMALL, "--set", "training.distribution=data_parallel"],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2 and "needs KERAS_BACKEND=jax" in result.stderr
