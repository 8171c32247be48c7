"""training/study_run.py: a study's runs in this process (a failed run is reported and the rest train;
finished runs are skipped) or as train.py --run-index children side by side."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import real_data_dir

from training import study_run
from training.run_record import RunRecord
from training.study import load_study, plan_study
from training.study_run import Progress, clock, run_study

ROOT = Path(__file__).resolve().parents[1]

SMOKE = ["training.epochs=1", "data.train_limit=2000", "data.test_limit=500"]


class FakeTrainer:
    """Stands in for RunTrainer: records the run and writes a finished run.json, or fails for one experiment."""

    trained, failing = [], "nothing"

    def __init__(self, config, index, out, data_dir=None, verbose=None):
        self.config, self.index, self.out = config, index, out

    def run(self):
        FakeTrainer.trained.append((self.config.experiment, self.index))
        if self.config.experiment == FakeTrainer.failing:
            raise RuntimeError("patched to fail")
        folder = self.out / self.config.experiment / f"run_{self.index}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps({"status": "finished", "final": {
            "test_accuracy": 0.9, "remaining_percent": 4.0 + self.index, "remaining_count": 10}}))


@pytest.fixture
def fake_trainer(monkeypatch):
    import training.runner
    FakeTrainer.trained, FakeTrainer.failing = [], "nothing"
    monkeypatch.setattr(training.runner, "RunTrainer", FakeTrainer)
    return FakeTrainer


def test_a_failed_run_is_reported_and_the_rest_train_then_only_missing_runs_train(tmp_path, fake_trainer):
    study, lines = load_study("fcn_seeds"), []
    fake_trainer.failing = "fcn_baseline"
    failures = run_study(plan_study(study, tmp_path, runs=2), study, tmp_path, log=lines.append)
    assert fake_trainer.trained == [(name, index) for name in study.experiments for index in (0, 1)]
    assert [(name, index) for name, index, _ in failures] == [("fcn_baseline", 0), ("fcn_baseline", 1)]
    assert "[reproduce] run 3 of 6 failed: fcn_baseline run 0: RuntimeError: patched to fail" in lines
    assert "[reproduce] 4 of 6 runs finished, 2 failed" in lines[-3]
    assert lines[0].startswith("device: ")   # the backend's start-up noise is replaced by one line
    assert lines[1].startswith("[reproduce] run 1 of 6: fcn_signed_closest_to_paper run 0 (elapsed 0:00:")
    summary = json.loads((tmp_path / "fcn_signed_schedule_b" / "summary.json").read_text())
    assert summary["finished_runs"] == ["run_0", "run_1"]
    fake_trainer.failing, fake_trainer.trained = "nothing", []
    assert run_study(plan_study(study, tmp_path, runs=2), study, tmp_path, log=lines.append) == []
    assert [entry for entry in fake_trainer.trained if entry[0] == "fcn_baseline"] == [("fcn_baseline", 0),
                                                                                       ("fcn_baseline", 1)]


def test_a_matched_experiment_trains_after_its_source_with_its_mean_remaining(tmp_path, fake_trainer):
    study = load_study("mask_modes")
    plan = plan_study(study, tmp_path, runs=2, only=["signed_closest", "top_k_matched"])
    assert run_study(plan, study, tmp_path, log=lambda line: None) == []
    assert fake_trainer.trained == [("signed_closest", 0), ("signed_closest", 1), ("top_k_matched", 0),
                                    ("top_k_matched", 1)]
    saved = (tmp_path / "top_k_matched" / "config.yaml").read_text()
    assert "keep_fraction: 0.045" in saved and "mask_mode: top_k" in saved


def test_a_matched_experiment_whose_source_failed_fails_with_the_reason(tmp_path, fake_trainer):
    study, lines = load_study("mask_modes"), []
    fake_trainer.failing = "signed_closest"
    plan = plan_study(study, tmp_path, runs=1, only=["signed_closest", "top_k_matched"])
    failures = run_study(plan, study, tmp_path, log=lines.append)
    assert [name for name, _, _ in failures] == ["signed_closest", "top_k_matched"]
    assert "keep_fraction waits for a finished run of signed_closest (none finished)" in failures[1][2]


def test_progress_rescales_the_remaining_estimate_by_the_runs_so_far():
    progress = Progress(total=3)
    assert progress.remaining([100.0, 200.0]) == "0:05:00"
    progress.record(seconds=50.0, estimate=100.0)
    assert progress.remaining([100.0, 200.0]) == "0:02:30"
    assert progress.remaining([100.0, None]) == "0:00:50 + 1 runs not timed"
    assert progress.remaining([None]) == "unknown"
    assert clock(3 * 3600 + 62) == "3:01:02"


@pytest.mark.slow
def test_jobs_train_seeds_side_by_side_in_child_processes_and_skip_finished_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    study, lines = load_study("fcn_seeds"), []
    children, alive_at_spawn, spawn = [], [], study_run.subprocess.Popen

    def counting_popen(*args, **kwargs):
        alive_at_spawn.append(sum(child.poll() is None for child in children))
        children.append(spawn(*args, **kwargs))
        return children[-1]

    monkeypatch.setattr(study_run.subprocess, "Popen", counting_popen)

    def plan():
        return plan_study(study, tmp_path, runs=2, overrides=SMOKE, only=["fcn_baseline"])

    assert run_study(plan(), study, tmp_path, jobs=2, backend="tensorflow", log=lines.append) == []
    assert alive_at_spawn == [0, 1]                # the second seed started while the first trained
    assert f"[reproduce] 2 runs to train, 2 at a time -> {tmp_path}" in lines
    folder = tmp_path / plan()[0].folder   # SMOKE's --set: a folder of its own
    assert all(RunRecord.read_finished(folder / f"run_{index}") for index in (0, 1))
    assert run_study(plan(), study, tmp_path, jobs=2, log=lines.append) == []
    assert f"[reproduce] 0 runs to train, 2 at a time -> {tmp_path}" in lines and len(children) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_ends_when_reproduce_is_killed_hard(tmp_path):
    """kill -9 of the parent (no chance to stop its children) must not leave a train.py training on."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from training.study_run import ignore_ctrl_c\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], preexec_fn=ignore_ctrl_c)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child_pid}/stat").read_text().split()[2] == "Z":   # ended, not yet reaped by init
            break
        time.sleep(0.1)
    else:
        os.kill(child_pid, 9)
        pytest.fail("the child outlived its killed parent")


def test_the_retracing_warning_of_each_new_model_is_dropped_and_other_warnings_pass(caplog):
    """reproduce.py's timing runs printed TensorFlow's retracing advice twice: each new model traces anew."""
    import logging

    from training.device import quiet_retracing_of_new_models

    quiet_retracing_of_new_models()
    quiet_retracing_of_new_models()   # installed once
    logger = logging.getLogger("tensorflow")
    assert sum(type(item).__name__ == "_RetracingOfNewModels" for item in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logger.warning("5 out of the last 9 calls to <function f> triggered tf.function retracing. Tracing is ...")
        logger.warning("something else")
    assert [record.getMessage() for record in caplog.records] == ["something else"]
