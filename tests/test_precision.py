"""training.precision: mixed_bfloat16 computes in bfloat16 while the mask, thresholds, variables, optimizer
state, softmax and loss stay float32; the global dtype policy comes back; runs train on TensorFlow and JAX,
on one and on two devices, and reload (and export) in float32."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import JAX_TWO_CPU_DEVICES, real_data_dir

import export
from masking import SignedSupermaskDense, masked_layers
from reporting.runmodel import load_run
from training.config import PRECISIONS, ExperimentConfig, load_config
from training.device import _accelerator_names, emulated_bfloat16_note, native_bfloat16_cpu
from training.runner import RunTrainer, compiled_model, precision_policy
from training.schema import ConfigError, from_dict

ROOT = Path(__file__).resolve().parents[1]
TINY_FCN = ["--runs", "1", "--quiet", "--set", "data.train_limit=2000", "--set", "data.test_limit=500",
            "--set", "training.epochs=2", "--set", "training.precision=mixed_bfloat16"]


def experiment(model, precision, **data):
    return from_dict(ExperimentConfig, {"experiment": "tiny", "model": {"name": model},
                                        "data": {"dataset": "mnist" if model == "FCN" else "cifar10", **data},
                                        "training": {"epochs": 2, "precision": precision}})


def test_precision_is_a_validated_key_that_changes_results(tmp_path):
    assert PRECISIONS == ("float32", "mixed_bfloat16") and experiment("FCN", "float32").training.precision == "float32"
    assert ExperimentConfig().training.precision == "float32"
    with pytest.raises(ConfigError, match="training.precision: 'float16' is not one of float32, mixed_bfloat16"):
        load_config(ROOT / "configs" / "fcn_signed.yaml", ["training.precision=float16"])
    assert "| `training.precision` | `float32` | yes |" in (ROOT / "docs" / "CONFIG.md").read_text()


def test_mask_threshold_and_variables_are_identical_under_both_precisions():
    models = {precision: compiled_model(experiment("Conv2", precision), 7531, 1000) for precision in PRECISIONS}
    assert keras.config.dtype_policy().name == "float32"
    float32, bfloat16 = models["float32"], models["mixed_bfloat16"]
    for layer in bfloat16.layers[1:]:
        assert layer.compute_dtype == ("float32" if layer.name == "output" else "bfloat16"), layer.name
    assert {v.dtype for v in bfloat16.variables} == {"float32"}
    assert {v.dtype for v in bfloat16.optimizer.variables if "iteration" not in v.path} == {"float32"}
    assert len(masked_layers(float32)) == len(masked_layers(bfloat16)) == 5   # Conv2: 2 convs, 3 dense
    for reference, layer in zip(masked_layers(float32), masked_layers(bfloat16)):
        assert float(reference.threshold.numpy()) == float(layer.threshold.numpy())
        np.testing.assert_array_equal(reference.ternary_mask(), layer.ternary_mask())
        np.testing.assert_array_equal(reference.scores.numpy(), layer.scores.numpy())
        # The forward kernel of bfloat16 has exactly the mask's signs: only W's magnitudes were rounded.
        kernel = keras.ops.convert_to_numpy(keras.ops.cast(layer.kernel, "float32"))
        assert keras.backend.standardize_dtype(layer.kernel.dtype) == layer.compute_dtype
        np.testing.assert_array_equal(np.sign(kernel), layer.ternary_mask() * np.sign(layer.frozen_kernel.numpy()))
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    assert keras.backend.standardize_dtype(bfloat16(images).dtype) == "float32"


def test_forward_mask_compares_float32_scores_under_bfloat16():
    """bfloat16(0.501) == 0.5 == tau: a mask from cast scores would hide the weight; the float32 one keeps it."""
    with precision_policy("mixed_bfloat16"):
        layer = SignedSupermaskDense(1, threshold_fraction=0.5)
        layer.build((None, 2))
    layer.set_initial_values(frozen_kernel=np.ones((2, 1), np.float32), scores=np.array([[1.0], [0.501]], np.float32))
    assert layer.compute_dtype == "bfloat16" and layer.ternary_mask().ravel().tolist() == [1, 1]
    output = layer(np.array([[0.0, 1.0]], np.float32))
    assert float(keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))[0, 0]) == 1.0


def test_the_global_policy_is_restored_after_an_error():
    with pytest.raises(RuntimeError), precision_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("flags, native", [
    ("flags\t\t: fpu sse2 avx avx2 fma\n", False),                        # Zen 3: emulated
    ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n", True),          # Sapphire Rapids, Zen 4 (avx512_bf16)
    ("Features\t: fp asimd bf16 sve\n", True),                              # ARM (Graviton 3)
])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n" + flags)
    assert native_bfloat16_cpu(cpuinfo) is native
    note = emulated_bfloat16_note("mixed_bfloat16", cpuinfo)
    if native or _accelerator_names(keras.backend.backend()):   # a GPU runs it: no warning either
        assert note is None
    else:
        assert note.startswith("warning: training.precision mixed_bfloat16 on a CPU without native bfloat16")
    assert emulated_bfloat16_note("float32", cpuinfo) is None


def test_without_readable_cpu_flags_nothing_is_claimed(tmp_path):
    assert native_bfloat16_cpu(tmp_path / "missing") is None
    assert emulated_bfloat16_note("mixed_bfloat16", tmp_path / "missing") is None


def test_a_bfloat16_run_trains_records_its_precision_and_reloads_and_exports_in_float32(tmp_path, capsys):
    config = experiment("FCN", "mixed_bfloat16", train_limit=2000, test_limit=500)
    RunTrainer(config, 0, tmp_path, data_dir=str(real_data_dir("mnist.npz")), verbose=False).run()
    warned = "on a CPU without native bfloat16" in capsys.readouterr().err
    assert warned is (emulated_bfloat16_note("mixed_bfloat16") is not None)   # this machine's CPU decides
    assert keras.config.dtype_policy().name == "float32"
    run_dir = tmp_path / "tiny" / "run_0"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["precision"] == "mixed_bfloat16" and info["final"]["test_accuracy"] > 0.6  # chance is 0.1
    run = load_run(run_dir)
    assert {layer.compute_dtype for layer in run.model.layers} == {"float32"}
    with np.load(run_dir / "masks.npz") as saved:
        for layer in masked_layers(run.model):
            np.testing.assert_array_equal(saved[layer.name], layer.ternary_mask())
    result = export.export_run(run_dir, tmp_path / "export")
    reloaded = keras.models.load_model(result["keras"], compile=False)
    assert {layer.compute_dtype for layer in reloaded.layers} == {"float32"} and result["max_difference"] < 1e-5


def train_subprocess(tmp_path, backend, *args, script=None, env=None):
    command = [sys.executable, str(script or ROOT / "train.py"), "configs/fcn_signed.yaml", "--out", str(tmp_path),
               "--data-dir", str(real_data_dir("mnist.npz")), *TINY_FCN, *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend, **(env or {})})
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = tmp_path.glob("fcn_signed*/run_0/run.json")   # the folder's name may carry the --set overrides
    info = json.loads(record.read_text())
    assert info["precision"] == "mixed_bfloat16" and info["versions"]["backend"] == backend
    assert info["final"]["test_accuracy"] > 0.6
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None and not os.environ.get("CI"),
                    reason="jax not installed (CI installs it)")
def test_bfloat16_trains_on_jax_over_two_devices(tmp_path):
    stdout = train_subprocess(tmp_path, "jax", "--set", "training.distribution=data_parallel",
                              env={"XLA_FLAGS": JAX_TWO_CPU_DEVICES})
    assert "data_parallel over 2 devices" in stdout


@pytest.mark.slow
def test_bfloat16_trains_under_tensorflows_mirrored_strategy(tmp_path):
    from test_distribution import TWO_TF_DEVICES

    script = tmp_path / "two_devices.py"
    script.write_text(TWO_TF_DEVICES.format(root=str(ROOT)))
    stdout = train_subprocess(tmp_path / "out", "tensorflow", "--set", "training.distribution=mirrored",
                              script=script)
    assert "mirrored over 2 replicas" in stdout


def test_welch_test_matches_its_definition():
    from bench.precision_fidelity import welch_test

    reference, other = [90.1, 90.5, 90.3], [90.6, 90.9, 91.4, 90.8]
    difference, t, df, p = welch_test(reference, other)
    var_a, var_b = np.var(reference, ddof=1) / 3, np.var(other, ddof=1) / 4
    assert difference == pytest.approx(np.mean(other) - np.mean(reference))
    assert t == pytest.approx(difference / np.sqrt(var_a + var_b))
    assert df == pytest.approx((var_a + var_b) ** 2 / (var_a ** 2 / 2 + var_b ** 2 / 3))
    # scipy.stats.ttest_ind(reference, other, equal_var=False).pvalue, computed once (scipy is no dependency)
    assert p == pytest.approx(0.029891414952052685, rel=1e-9)
    assert welch_test([1.0, 1.0], [1.0, 1.0])[1:] == (0.0, pytest.approx(np.nan, nan_ok=True), 1.0)


def fake_experiment(folder, precision, accuracies, remaining):
    """A results folder of finished 2-epoch runs with the given final values (accuracy in %)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"training:\n  precision: {precision}\n  epochs: 2\n")
    for index, (accuracy, left) in enumerate(zip(accuracies, remaining)):
        run = folder / f"run_{index}"
        run.mkdir()
        final = {"test_accuracy": accuracy / 100, "remaining_percent": left, "remaining_count": 10}
        (run / "run.json").write_text(json.dumps({"status": "finished", "final": final}))
        history = {"test_accuracy": [0.5, accuracy / 100], "remaining_percent": [60.0, 50.0, left]}
        (run / "history.json").write_text(json.dumps(history))


def test_fidelity_report_compares_final_values_and_epochs(tmp_path, capsys):
    from bench import precision_fidelity

    fake_experiment(tmp_path / "a" / "fcn", "float32", [90.0, 92.0, 91.0], [20.0, 22.0, 21.0])
    fake_experiment(tmp_path / "b" / "fcn", "mixed_bfloat16", [91.0, 91.5], [21.0, 23.0])
    out = tmp_path / "fidelity.md"
    assert precision_fidelity.main([str(tmp_path / "a" / "fcn"), str(tmp_path / "b" / "fcn"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "| test accuracy % | 3, 91.00 ± 1.00 [90.00, 92.00] | 2, 91.25 ± 0.35 [91.00, 91.50] | +0.25 (" in text
    accuracy_row, remaining_row = [line for line in text.splitlines() if line.startswith(("| test acc", "| remaining"))]
    assert accuracy_row.endswith("| yes |") and remaining_row.endswith("| no |")   # 23 lies above [20, 22]
    assert "| 0 (init) | – | – | 60.00 [60.00, 60.00] | 60.00 [60.00, 60.00] |" in text
    assert "| 2 | 91.00 [90.00, 92.00] | 91.25 [91.00, 91.50] | 21.00 [20.00, 22.00] | 22.00 [21.00, 23.00] |" in text
    fake_experiment(tmp_path / "c" / "fcn", "mixed_bfloat16", [91.0], [21.0])
    assert precision_fidelity.main([str(tmp_path / "a" / "fcn"), str(tmp_path / "c" / "fcn")]) == 2
    assert "c/fcn: 1 finished run(s)" in capsys.readouterr().err
