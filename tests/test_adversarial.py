"""Hostile and clumsy input (issue 13): each test builds the hostile file itself."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import load_config
from fileio import read_json, write_json
from training.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "", ".", "..", "a/b", "a\\b", " padded"])
def test_experiment_name_must_be_a_plain_folder_name(tmp_path, name):
    path = tmp_path / "exp.yaml"
    path.write_text(f"experiment: {json.dumps(name)}\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: experiment: .* is not a plain folder name"):
        load_config(path)


def test_plain_experiment_names_are_accepted(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("experiment: fcn_seed-7.run\n")
    assert load_config(path).experiment == "fcn_seed-7.run"


def test_escaping_experiment_name_exits_2_and_writes_nothing(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("experiment: ../escaped\n")
    out = tmp_path / "root" / "results"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(config), "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "experiment" in lines[0]
    assert not (tmp_path / "root").exists()


def test_json_results_are_strict_json(tmp_path):
    """A failed run's history holds NaN losses; the file must still parse with a strict reader."""
    path = tmp_path / "history.json"
    write_json(path, {"train_loss": [0.5, math.nan, math.inf, -math.inf], "nested": {"x": (1.0, math.nan)}})

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    strict = json.loads(path.read_text(), parse_constant=refuse)
    assert strict == {"train_loss": [0.5, None, None, None], "nested": {"x": [1.0, None]}}
    assert read_json(path) == strict


def test_summary_skips_foreign_folders_and_unreadable_sibling_runs(tmp_path):
    """A stray run_0_backup, a run_00 twin or a corrupt sibling run.json must not break a finished job."""
    from training.results import summarize_experiment

    final = {"test_accuracy": 0.9, "remaining_percent": 3.0, "remaining_count": 30}
    for name, text in (("run_0", json.dumps({"status": "finished", "final": final})),
                       ("run_0_backup", json.dumps({"status": "finished", "final": final})),
                       ("run_00", json.dumps({"status": "finished", "final": final})),
                       ("run_1", "{garbage"), ("run_2", "[1, 2]"),
                       ("run_3", json.dumps({"status": "finished", "final": {"test_accuracy": None}})),
                       ("run_4", json.dumps({"status": "running"}))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    (tmp_path / "run_5").mkdir()   # killed before its run.json: only a checkpoint
    summary = summarize_experiment(tmp_path)
    assert summary["finished_runs"] == ["run_0"] and summary["unfinished_runs"] == ["run_4", "run_5"]
    assert sorted(reason.split(":")[0] for reason in summary["skipped"]) == [
        "run_00", "run_0_backup", "run_1", "run_2", "run_3"]
    assert summary["test_accuracy"]["mean"] == 0.9
    assert json.loads((tmp_path / "summary.json").read_text())["skipped"] == summary["skipped"]


@pytest.mark.slow
def test_inspect_of_a_bad_init_file_exits_2(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    result = subprocess.run([sys.executable, str(ROOT / "init_example.py"), "--inspect", str(bad)],
                            capture_output=True, text=True, cwd=ROOT)
    # TensorFlow's C++ start-up lines (printed before Python runs) are not ours to silence.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not NATIVE_LOG.match(line)]
    assert result.returncode == 2 and len(lines) == 1 and "bad.pkl" in lines[0] and lines[0].startswith("error:")
