"""Hostile files in results and exports, read by report.py and export.py: one line naming the file, exit 2, or
(for the report's figures) a figure left out with the report still written. One test per cause."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import real_data_dir

import export
import report
from reporting import figures
from reporting.collect import find_experiments
from reporting.compact import write_compact
from models import build_experiment_model
from test_adversarial_files import NATIVE_LOG, error_lines, limited_run
from test_report import write_config, write_finished_run
from training.config import ExperimentConfig, config_to_yaml
from training.schema import from_dict

ROOT = Path(__file__).resolve().parents[1]
TINY = {"experiment": "tiny", "model": {"name": "FCN"}, "data": {"dataset": "mnist", "test_limit": 64}}


@pytest.fixture(scope="module")
def compact_arrays(tmp_path_factory):
    """The arrays of a valid compact file of an untrained FCN."""
    config = from_dict(ExperimentConfig, TINY)
    path = tmp_path_factory.mktemp("compact") / "tiny.compact.npz"
    write_compact(path, build_experiment_model(config, config.seed), config, config.seed,
                  {"test_accuracy": 0.1, "remaining_percent": 50.0, "remaining_count": 100})
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def corrupt_member(path, member):
    """Overwrite 60 bytes inside ``member``'s compressed data (after its .npy header): zlib fails on reading."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    name_length, extra_length = int.from_bytes(data[offset + 26:offset + 28], "little"), \
        int.from_bytes(data[offset + 28:offset + 30], "little")
    start = offset + 30 + name_length + extra_length + 200
    data[start:start + 60] = b"\xff" * 60
    path.write_bytes(bytes(data))


def evaluate_error(path, capsys, *arguments):
    """export.py evaluate PATH: its exit code and the one error line it must print."""
    code = export.main(["evaluate", str(path), *arguments])
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    return code, lines[0]


# Cause 1: a compact file's meta nested deeper than Python's JSON parser recurses.

def test_deeply_nested_compact_meta_is_one_line(tmp_path, capsys, compact_arrays):
    path = tmp_path / "nested.compact.npz"
    np.savez(path, **{**compact_arrays, "meta": np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)})
    code, line = evaluate_error(path, capsys)
    assert code == 2 and line.startswith(f"error: {path}: meta is not a JSON document") and "nested" in line


# Cause 2: damaged compressed data inside masks.npz (report) or a compressed .compact.npz (export).

def test_damaged_compressed_masks_cost_only_their_figures(tmp_path):
    experiment = tmp_path / "fcn_signed"
    write_config(experiment, "FCN", "mnist", runs=1)
    write_finished_run(experiment, 0, 0.97, 3.7, 9_000)
    masks = experiment / "run_0" / "masks.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(masks, dense_1=rng.integers(-1, 2, (784, 20)).astype(np.int8),
                        dense_2=rng.integers(-1, 2, (20, 10)).astype(np.int8))
    corrupt_member(masks, "dense_1.npy")
    paths = report.write_report(tmp_path, digit_source=lambda: np.zeros(784))
    assert not any("figure1" in path.name or "layers" in path.name for path in paths["figures"])
    assert any("mask per layer of fcn_signed" in note for note in paths["notes"])


def test_damaged_compressed_compact_file_is_one_line(tmp_path, capsys, compact_arrays):
    path = tmp_path / "damaged.compact.npz"
    np.savez_compressed(path, **compact_arrays)
    corrupt_member(path, "mask_0.npy")
    code, line = evaluate_error(path, capsys)
    assert code == 2 and line.startswith(f"error: {path}: ") and "while decompressing data" in line, line


# Cause 3: figures trust what history.json and masks.npz hold.

def test_a_null_in_a_baselines_training_accuracy_draws_the_remaining_panel(tmp_path, monkeypatch):
    experiment = tmp_path / "fcn_baseline"
    write_config(experiment, "FCN", "mnist", signed=False, runs=1)
    write_finished_run(experiment, 0, 0.97, 100.0, 266_200, signed=False)
    history = json.loads((experiment / "run_0" / "history.json").read_text())
    (experiment / "run_0" / "history.json").write_text(json.dumps({**history, "train_accuracy": [0.5, None, 0.9]}))
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: drawn.append(figure) or True)
    assert figures.plot_training_curves(find_experiments(tmp_path)[0], tmp_path / "curves.png")
    left, right = drawn[0].axes
    assert left.get_ylabel() == "test accuracy %" and right.get_ylabel() == "remaining weights %"


def test_an_extra_text_key_in_mask_counts_is_left_out(tmp_path):
    experiment = tmp_path / "fcn_signed"
    write_config(experiment, "FCN", "mnist", runs=1)
    write_finished_run(experiment, 0, 0.97, 3.7, 9_000)
    (experiment / "run_0" / "masks.npz").unlink()
    counts = {"dense_1": {"kept": 5, "hidden": 90, "inverted": 5, "note": "edited by hand"}, "dense_2": "text"}
    history = json.loads((experiment / "run_0" / "history.json").read_text())
    (experiment / "run_0" / "history.json").write_text(json.dumps({**history, "mask_counts": [counts]}))
    run = find_experiments(tmp_path)[0].finished[0]
    assert figures.layer_fractions(run) == [("dense_1", {"kept": 5, "hidden": 90, "inverted": 5})]


def test_a_text_array_in_masks_npz_draws_no_mask_figure(tmp_path):
    experiment = tmp_path / "fcn_signed"
    write_config(experiment, "FCN", "mnist", runs=1)
    write_finished_run(experiment, 0, 0.97, 3.7, 9_000)
    np.savez(experiment / "run_0" / "masks.npz", dense_1=np.full((784, 20), "x"), output=np.zeros((20, 10), np.int8))
    paths = report.write_report(tmp_path, digit_source=lambda: np.zeros(784))
    assert not any("figure1" in path.name or "layers" in path.name for path in paths["figures"])


# Cause 4: a small masks.npz declaring a huge array (a 300 KB file of 313 MB of zeros).

def huge_mask_file(path, shape=(784, 400_000), others=()):
    """A compressed masks.npz whose int8 entry dense_1 has ``shape``, written in 1 MiB pieces (never held whole),
    followed by zero masks of the ``others`` (name, shape)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("dense_1.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|i1", "fortran_order": False, "shape": shape})
            left = int(np.prod(shape))
            while left:
                member.write(bytes(min(left, 1 << 20)))
                left -= min(left, 1 << 20)
        for name, other_shape in others:
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.zeros(other_shape, np.int8))
    return path


def test_a_small_masks_file_declaring_a_huge_array_is_not_read(tmp_path):
    experiment = tmp_path / "results" / "fcn_signed"
    write_config(experiment, "FCN", "mnist", runs=1)
    write_finished_run(experiment, 0, 0.97, 3.7, 9_000)
    assert huge_mask_file(experiment / "run_0" / "masks.npz").stat().st_size < 1_000_000
    code, errors, output = limited_run([sys.executable, "report.py", str(tmp_path / "results"), "--out",
                                        str(tmp_path / "report"), "--data-dir", str(real_data_dir("mnist.npz"))])
    assert code == 0, errors[-5:]
    assert not list((tmp_path / "report").glob("fig_figure1_*")) and not list((tmp_path / "report").glob("fig_layers_*"))


def test_export_checks_each_mask_shape_against_the_model_before_reading(tmp_path, capsys):
    config = from_dict(ExperimentConfig, TINY)
    run = tmp_path / "tiny" / "run_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config_to_yaml(config))
    final = {"test_accuracy": 0.1, "remaining_percent": 50.0, "remaining_count": 100}
    (run / "run.json").write_text(json.dumps({"status": "finished", "run_index": 0, "seed": config.seed,
                                              "final": final}))
    huge_mask_file(run / "masks.npz", others=(("dense_2", (300, 100)), ("output", (100, 10))))
    assert export.main([str(run), "--out", str(tmp_path / "out")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"error: {run / 'masks.npz'}: entry 'dense_1' has shape (784, 400000), expected (784, 300)"]


# Cause 17: a config.yaml naming another model than the one its weights file holds.

@pytest.mark.slow
def test_export_of_weights_from_another_model_prints_one_line(tmp_path):
    config = from_dict(ExperimentConfig, TINY)
    run = tmp_path / "tiny" / "run_0"
    run.mkdir(parents=True)
    build_experiment_model(config, config.seed).save_weights(run / "model.weights.h5")
    other = yaml.safe_load(config_to_yaml(config))
    other["model"]["name"], other["data"]["dataset"] = "Conv2", "cifar10"
    (run / "config.yaml").write_text(yaml.safe_dump(other))
    final = {"test_accuracy": 0.1, "remaining_percent": 50.0, "remaining_count": 100}
    (run / "run.json").write_text(json.dumps({"status": "finished", "run_index": 0, "seed": config.seed, "final": final}))
    result = subprocess.run([sys.executable, "export.py", str(run), "--out", str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not NATIVE_LOG.match(line)]
    assert result.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {run / 'model.weights.h5'}: cannot be loaded into the Conv2 model")


# Cause 19: a recorded accuracy that is no number, in a compact file's meta.

def test_a_non_numeric_recorded_accuracy_is_refused_before_evaluating(tmp_path, capsys, compact_arrays, monkeypatch):
    meta = json.loads(compact_arrays["meta"].tobytes().decode())
    meta["recorded"] = {**meta["recorded"], "test_accuracy": "n/a"}
    path = tmp_path / "recorded.compact.npz"
    np.savez(path, **{**compact_arrays, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    monkeypatch.setattr(export, "measure_test_accuracy", lambda *arguments: pytest.fail("evaluated a refused file"))
    code, line = evaluate_error(path, capsys, "--data-dir", str(real_data_dir("mnist.npz")))
    assert code == 2 and line.startswith(f"error: {path}: meta recorded is missing or malformed"), line
