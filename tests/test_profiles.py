"""The timing scripts behind issue 9's 'epoch at its floor': epoch profile and per-op profile."""
import importlib.util
from pathlib import Path

import keras
import pytest

from conftest import REPO_ROOT, real_data_dir


def bench_module(name):
    spec = importlib.util.spec_from_file_location(name, Path(REPO_ROOT) / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_epoch_profile_times_every_part_and_reports_fit_per_step(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    profile_epoch = bench_module("profile_epoch")
    overrides = profile_epoch.SETTINGS["no-xla"][1] + ["data.train_limit=640", "data.test_limit=200"]
    seconds, fit_step_ms = profile_epoch.profile(str(Path(REPO_ROOT) / "configs" / "fcn_signed.yaml"), overrides,
                                                 epochs=1, scratch=tmp_path, interleaved=2)
    feeds = {"real data", "real data, Keras' array pipeline", "random data"}
    assert set(seconds) == {"input arrays", "fit", "evaluate", "mask counts", "checkpoint"} | feeds
    assert all(seconds[name] > 0 for name in feeds)
    assert all(value >= 0 for value in seconds.values())
    assert fit_step_ms == pytest.approx(1000 * seconds["fit"] / 5)   # 640 images = 5 batches of 128
    assert (tmp_path / "checkpoint.npz").exists()


def test_op_table_orders_op_types_by_the_signed_minus_plain_difference():
    op_profile = bench_module("op_profile")
    plain = {"model": "Conv2", "wall_ms": 10.0, "ops_ms": {"Conv2D": 6.0, "MatMul": 2.0}}
    signed = {"model": "Conv2", "wall_ms": 13.0, "ops_ms": {"Conv2D": 6.1, "MatMul": 2.0, "Cast": 2.5, "Mul": 0.4}}
    lines = op_profile.table_lines(plain, signed, top=3)
    assert lines[0].startswith("Conv2: wall 10.0 ms/step plain, 13.0 signed; op self-time 8.0 / 11.0")
    assert lines[3:] == ["| Cast | 0.00 | 2.50 | +2.50 |", "| Mul | 0.00 | 0.40 | +0.40 |",
                         "| Conv2D | 6.00 | 6.10 | +0.10 |"]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the per-op profile reads TensorFlow's trace")
def test_op_profile_reads_tensorflows_trace_into_op_types():
    result = bench_module("op_profile").profile("FCN", signed=True, steps=2, batch_size=32)
    assert result["variant"] == "signed" and result["wall_ms"] > 0
    assert result["ops_ms"]["MatMul"] > 0
    assert {"Greater", "Less"} <= set(result["ops_ms"])   # the ternary mask's comparisons are in the trace
    assert "IDLE" not in result["ops_ms"]


def test_op_profile_counts_onednn_renamed_ops_under_their_plain_type():
    op_type = bench_module("op_profile").op_type
    assert [op_type(n) for n in ("_MklMatMul", "_MklNativeConv2D", "MatMul", "Mul")] == ["MatMul", "Conv2D", "MatMul", "Mul"]
