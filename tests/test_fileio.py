"""One home per concept (issue 10): atomic writes, the run-folder rule, the run record, Keras-free imports."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from fileio import atomic_path, atomic_write_text, read_json, run_folder_index, write_json, write_npz
from masking.init_spec import InitSpec
from masking.mask_rule import mask_counts, masked_weights, ternary_mask_numpy
from models.registry import MODEL_FAMILIES
from reporting.collect import find_experiments
from training.results import summarize_experiment
from training.run_record import RunRecord, RunRecordError

FINAL = {"test_accuracy": 0.9, "remaining_percent": 3.0, "remaining_count": 30}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_writers_keep_suffixes_and_round_trip(tmp_path):
    with atomic_path(tmp_path / "model.weights.h5") as temporary:
        assert temporary.name.endswith(".weights.h5") and temporary.parent == tmp_path
    write_npz(tmp_path / "masks.npz", {"a": np.arange(3, dtype=np.int8)})
    with np.load(tmp_path / "masks.npz") as stored:
        np.testing.assert_array_equal(stored["a"], [0, 1, 2])
    write_json(tmp_path / "x.json", {"loss": math.nan})
    assert read_json(tmp_path / "x.json") == {"loss": None} and read_json(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: unreadable"):
        read_json(tmp_path / "bad.json")


@pytest.mark.parametrize("name,index", [("run_0", 0), ("run_12", 12), ("run_00", None), ("run_01", None),
                                        ("run_0_backup", None), ("run_", None), ("run_-1", None)])
def test_run_folder_rule(name, index):
    assert run_folder_index(name) == index


def test_summary_and_report_count_the_same_run_folders(tmp_path):
    experiment = tmp_path / "fcn"
    for name in ("run_0", "run_00", "run_1"):
        (experiment / name).mkdir(parents=True)
        (experiment / name / "run.json").write_text(json.dumps({"status": "finished", "final": FINAL}))
    (experiment / "config.yaml").write_text("model: {name: FCN}\n")
    summary = summarize_experiment(experiment)
    [found] = find_experiments(tmp_path)
    assert summary["finished_runs"] == ["run_0", "run_1"]
    assert [run.index for run in found.runs] == [0, 1]


def test_run_record_round_trip_and_validation(tmp_path):
    record = RunRecord("finished", "fcn", 2, 7533, epochs_trained=3, final=dict(FINAL), versions={"keras": "3"})
    record.write(tmp_path)
    assert list(json.loads((tmp_path / "run.json").read_text())) == [
        "status", "experiment", "run_index", "seed", "epochs_trained", "final", "versions"]
    assert RunRecord.read(tmp_path) == record and RunRecord.read(tmp_path / "none") is None
    assert RunRecord.from_json({"status": "failed", "reason": "nan", "added_later": 1}).reason == "nan"
    with pytest.raises(RunRecordError, match="final.remaining_percent"):
        RunRecord.from_json({"status": "finished", "final": {"test_accuracy": 0.9, "remaining_percent": None}})
    with pytest.raises(RunRecordError, match="not a run record"):
        RunRecord.from_json([1, 2])
    (tmp_path / "run.json").write_text("null")   # a JSON null is a damaged file, not a missing one
    with pytest.raises(ValueError, match="run.json: unreadable .*holds JSON null"):
        RunRecord.read(tmp_path)


def test_init_spec_has_one_text_form():
    spec = InitSpec.parse("uniform/he/0.75")
    assert spec == InitSpec("uniform", "he", 0.75) and InitSpec.parse(str(spec)) == spec
    assert str(InitSpec("signed_constant", "elus")) == "signed_constant/elus"
    assert spec.folder_name() == "uniform_he_x0.75" and InitSpec.of(spec.to_dict()) == spec
    for bad in ("uniform", "uniform/lecun", "nope/he", "uniform/he/0", "uniform/he/x", "uniform/he/inf", "uniform/he/nan"):
        with pytest.raises(ValueError):
            InitSpec.parse(bad)


def test_numpy_mask_rule():
    scores = np.array([-0.5, -0.2, 0.0, 0.2, 0.5], dtype=np.float32)
    mask = ternary_mask_numpy(scores, np.float32(0.2))
    np.testing.assert_array_equal(mask, [-1, 0, 0, 0, 1])   # |S| == tau is hidden
    assert mask.dtype == np.int8 and mask_counts(mask) == {"kept": 1, "hidden": 3, "inverted": 1}
    np.testing.assert_array_equal(masked_weights(np.full(5, 2.0), mask), [-2, 0, 0, 0, 2])


def test_registry_facts():
    assert [name for name, family in MODEL_FAMILIES.items() if family.num_classes == 100] == ["ResNet56", "ResNet110"]
    assert MODEL_FAMILIES["Conv8"].options == ("head_activation",)
    assert MODEL_FAMILIES["ResNet20"].options == ("bn_mode", "extra_head", "projection_every")
    assert MODEL_FAMILIES["FCN"].options == () and MODEL_FAMILIES["FCN"].default_bn_mode(True) is None


KERAS_FREE = """
import sys
import fileio, masking.fans, masking.init_spec, masking.mask_rule, models.registry, training.config
import training.results, training.run_record
import reporting.collect, reporting.figures, reporting.paper, reporting.tables
import json, pathlib, tempfile
import report
root = pathlib.Path(tempfile.mkdtemp()) / "fcn"
(root / "run_0").mkdir(parents=True)
(root / "config.yaml").write_text("model: {name: FCN}\\ndata: {dataset: mnist}\\n")
final = {"test_accuracy": 0.9, "remaining_percent": 3.0, "remaining_count": 30}
(root / "run_0" / "run.json").write_text(json.dumps({"status": "finished", "final": final}))
written = report.write_report(root.parent, digit_source=lambda: None)   # tables and figures
assert written["md"].is_file() and written["figures"], written
loaded = sorted(name for name in ("keras", "tensorflow", "jax", "torch") if name in sys.modules)
print(",".join(loaded) or "none")
"""


def test_reports_and_config_import_without_keras():
    result = subprocess.run([sys.executable, "-c", KERAS_FREE], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "none"
