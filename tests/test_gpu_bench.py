"""bench/flops.py (estimates per paper row) and bench/gpu.py (the GPU script) in its CPU smoke mode."""
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import real_data_dir

ROOT = Path(__file__).resolve().parents[1]


def load_bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flops, gpu = load_bench("flops"), load_bench("gpu")
CONV2_MACS = 32 * 32 * 9 * 3 * 64 + 32 * 32 * 9 * 64 * 64 + 16 * 16 * 64 * 256 + 256 * 256 + 256 * 10


def test_row_estimates_scale_flops_by_training_images_epochs_and_throughput():
    (signed, baseline) = flops.row_estimates(["Conv2"], tflops=10.0)
    assert signed["forward_flops_per_image"] == 2 * CONV2_MACS and signed["epochs"] == 100
    assert signed["flops_per_run"] == 100 * 2 * CONV2_MACS * (3 * 50_000 + 10_000)
    assert signed["estimated_seconds_per_run"] == pytest.approx(signed["flops_per_run"] / 1e13)
    assert baseline["column"] == "baseline" and baseline["epochs"] == 50
    table = flops.markdown([signed, baseline], 10.0)
    assert "| Conv2 | signed | 87.6 | 100 | 1.40 | 2 min | 117 min (50 runs) |" in table
    assert "assumed sustained 10 TFLOP/s" in table


def test_gpu_script_refuses_to_run_without_a_gpu_unless_told(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpu, "environment", lambda: {"backend": "tensorflow", "devices": ["cpu"], "gpu": False})
    assert gpu.main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert "no GPU" in capsys.readouterr().err and not (tmp_path / "gpu.json").exists()
    assert gpu.main(["--models", "Conv3", "--smoke", "--out", str(tmp_path / "gpu.json")]) == 2
    assert gpu.main(["--precision", "float16", "--smoke", "--out", str(tmp_path / "gpu.json")]) == 2


@pytest.mark.slow
def test_gpu_script_smoke_mode_writes_every_part_to_one_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("cifar10_jpeg.npz")))
    out = tmp_path / "out" / "gpu.json"
    assert gpu.main(["--smoke", "--models", "Conv2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    devices = result["environment"]["devices"]
    assert result["smoke"] is True and result["environment"]["gpu"] is any(d.startswith(("gpu", "cuda")) for d in devices)
    assert result["environment"]["backend"] == "tensorflow" and result["settings"]["steps"] == 2
    assert result["flops"] == {"Conv2": 2 * CONV2_MACS}
    float32, bfloat16 = result["step_times"]
    assert (float32["precision"], bfloat16["precision"]) == ("float32", "mixed_bfloat16")
    for steps in (float32, bfloat16):
        assert steps["model"] == "Conv2" and steps["plain"]["step_ms"] > 0 and steps["signed"]["step_ms"] > 0
    run = result["conv2_run"]
    assert run["precision"] == "float32" and run["epochs"] == 1 and len(run["epoch_seconds"]) == 1 and run["training_seconds"] > 0
    assert 55 < run["final"]["remaining_percent"] < 65 and len(run["remaining_percent"]) == 2
    assert "<scratch>" in run["command"] and result["wall_seconds"] > 0
    printed = capsys.readouterr().out
    assert "| Conv2 | mixed_bfloat16 |" in printed and "Conv2 signed, 1 epochs, float32" in printed
