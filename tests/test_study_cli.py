"""reproduce.py as a command beside train.py: Ctrl-C (one line, exit 130, children stopped), the results
folder of a command-line --set (train.py's name, so either resumes the other), an --out no one can write,
the estimate under --backend and --jobs, the protocol of shortened seed runs, the report's files named."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import real_data_dir

import reproduce
from training import study_run
from training.config import experiment_with_overrides, load_config
from training.experiment_folder import claim_results_folder
from training.study import CONFIGS, load_study, plan_study, resolved, results_folder
from training.study_run import StudyInterrupted, run_study, wall_seconds

QUICK = ["--measure-steps", "0", "--no-figures"]


def finished_run(folder, accuracy=0.97, remaining=3.7):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "finished", "final": {
        "test_accuracy": accuracy, "remaining_percent": remaining, "remaining_count": 9000}}))


def test_ctrl_c_in_process_is_one_line_naming_the_run_and_exit_130(tmp_path, capsys, monkeypatch):
    from training.runner import RunTrainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunTrainer, "run", interrupted)
    out = tmp_path / "r"
    assert reproduce.main(["--rows", "FCN", "--columns", "signed", "--runs", "1", "--out", str(out), *QUICK]) == 130
    captured = capsys.readouterr()
    assert captured.err == (f"interrupted: {out / 'fcn_signed' / 'run_0'} has no saved epoch yet; "
                            "the same command starts it again\n")
    assert "[reproduce] run 1 of 1: fcn_signed run 0" in captured.out
    assert reproduce.main(["--rows", "FCN", "--columns", "signed", "--runs", "1", "--out", str(out), *QUICK,
                           "--set", "training.epochs=1"]) == 130   # the progress line names the run's folder
    assert "[reproduce] run 1 of 1: fcn_signed+training.epochs=1 run 0" in capsys.readouterr().out


def test_ctrl_c_with_several_runs_training_gives_one_line_per_run(tmp_path):
    (tmp_path / "e" / "run_1").mkdir(parents=True)
    lines = reproduce.interrupted_lines([(tmp_path / "e", 0), (tmp_path / "e", 1)])
    assert lines == [f"interrupted: {tmp_path / 'e' / 'run_0'} has no saved epoch yet; the same command starts it again",
                     f"interrupted: {tmp_path / 'e' / 'run_1'} has no saved epoch yet; the same command starts it again"]


def test_ctrl_c_stops_every_child_which_itself_ignores_the_terminals_ctrl_c(tmp_path, monkeypatch):
    study = load_study("fcn_seeds")
    plan = plan_study(study, tmp_path, runs=2, only=["fcn_baseline"])
    children, spawn = [], subprocess.Popen

    class Child(spawn):
        """Stands in for a train.py child (it would run for a minute); once both run, Ctrl-C arrives."""

        def poll(self):
            if len(children) == 2:
                for child in children:              # the terminal's Ctrl-C reaches the whole process group
                    os.kill(child.pid, signal.SIGINT)
                children.append(None)
                time.sleep(0.5)
                raise KeyboardInterrupt
            return super().poll()

    def start(command, **kwargs):
        children.append(Child([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs))
        return children[-1]

    monkeypatch.setattr(study_run.subprocess, "Popen", start)
    with pytest.raises(StudyInterrupted) as stopped:
        run_study(plan, study, tmp_path, jobs=2, log=lambda line: None)
    assert stopped.value.in_flight == [(tmp_path / "fcn_baseline", 0), (tmp_path / "fcn_baseline", 1)]
    assert [child.returncode for child in children[:2]] == [-signal.SIGTERM] * 2   # alive until stopped


@pytest.mark.slow
@pytest.mark.parametrize("children", [False, True])
def test_ctrl_c_of_a_real_study_is_one_line_exit_130_and_leaves_no_child(tmp_path, children):
    """The terminal's Ctrl-C (SIGINT to the whole process group) in the middle of an epoch."""
    data_dir = real_data_dir("mnist.npz")
    sets = ["data.train_limit=2000", "data.test_limit=500", "training.epochs=50"]
    out = tmp_path / "r"
    run_dir = out / results_folder(load_study("paper_main"), "fcn_baseline", sets) / "run_0"
    command = [sys.executable, str(reproduce.ROOT / "reproduce.py"), "--rows", "FCN", "--columns", "baseline",
               "--runs", "1", "--out", str(out), "--data-dir", str(data_dir), *QUICK,
               *[item for text in sets for item in ("--set", text)], *(["--backend", "jax"] if children else [])]
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=reproduce.ROOT, stdout=stdout, stderr=stderr, start_new_session=True,
                                   preexec_fn=ctrl_c_as_at_a_terminal)
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and not (run_dir / "checkpoint.npz").exists():
            time.sleep(0.1)
        assert process.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 130
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert not any("Traceback" in line for line in lines), lines[-20:]
    assert [line for line in lines if line.startswith("interrupted:")] == [lines[-1]]
    assert lines[-1].startswith(f"interrupted: {run_dir} keeps its checkpoint of epoch ")
    assert lines[-1].endswith("; the same command resumes from there")
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(out) in _command_line(pid)]
    assert not left, "a train.py child outlived the interrupted study"


def ctrl_c_as_at_a_terminal():
    """A job started in the background of a script (``pytest ... &``, nohup) inherits SIGINT ignored, and so
    would reproduce.py, which then rightly trains on through the Ctrl-C: give it a terminal's default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _command_line(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_command_line_set_trains_where_train_py_does(tmp_path, capsys):
    """The README's main command, then the same row shortened: a folder of its own, train.py's."""
    sets = ["training.epochs=1"]
    plain = load_config(CONFIGS / "fcn_signed.yaml")
    claim_results_folder(plain, tmp_path)
    finished_run(tmp_path / "fcn_signed" / "run_0")
    changed = load_config(CONFIGS / "fcn_signed.yaml", sets)
    folder = experiment_with_overrides(CONFIGS / "fcn_signed.yaml", sets, changed)
    assert folder == "fcn_signed+training.epochs=1"
    changed.experiment = folder
    claim_results_folder(changed, tmp_path)                 # train.py --set training.epochs=1 finished run 0 there
    finished_run(tmp_path / folder / "run_0")
    code = reproduce.main(["--rows", "FCN", "--columns", "signed", "--runs", "2", "--set", sets[0], "--dry-run",
                           "--out", str(tmp_path), *QUICK])
    output = capsys.readouterr().out
    assert code == 0 and f"| {folder} | configs/fcn_signed.yaml | 2 (1) | 1 |" in output
    [planned] = plan_study(load_study("paper_main"), tmp_path, runs=2, overrides=sets, only=["fcn_signed"])
    assert (planned.folder, planned.config.experiment, planned.to_train) == (folder, folder, [1])
    assert planned.overrides[-1] == f"experiment={folder}"      # what a train.py child is given


def test_a_studys_own_sets_name_no_folder_and_a_matched_k_reads_its_sources_folder(tmp_path):
    study, sets = load_study("mask_modes"), ["training.epochs=1"]
    assert results_folder(study, "binary_port") == "binary_port"
    assert results_folder(study, "binary_port", ["training.epochs=100"]) == "binary_port"   # changes nothing
    assert results_folder(study, "binary_port", sets) == "binary_port+training.epochs=1"
    [matched] = plan_study(study, tmp_path, runs=1, overrides=sets, only=["top_k_matched"])
    assert matched.folder == "top_k_matched+training.epochs=1" and resolved(matched, study, tmp_path) is None
    finished_run(tmp_path / "signed_closest+training.epochs=1" / "run_0", remaining=3.7)
    ready = resolved(matched, study, tmp_path)
    assert ready.config.model.keep_fraction == 0.037 and ready.config.experiment == matched.folder


def test_set_experiment_is_refused_for_a_study(tmp_path, capsys):
    assert reproduce.main(["--rows", "FCN", "--set", "experiment=mine", "--dry-run", "--out", str(tmp_path / "r"),
                           *QUICK]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "--set experiment=" in error and not (tmp_path / "r").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_out_no_one_can_write_is_one_line_and_exit_2_in_both_tools(capsys):
    import train

    assert reproduce.main(["--rows", "FCN", "--columns", "signed", "--runs", "1", "--dry-run", "--out", "/proc/nope",
                           *QUICK]) == 2
    assert train.main([str(CONFIGS / "fcn_signed.yaml"), "--runs", "1", "--out", "/proc/nope"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("error: --out /proc/nope: cannot write results there (")
                                    for line in errors)


def test_the_estimate_reads_the_backends_calibration_and_counts_wall_time_of_parallel_jobs(tmp_path, capsys,
                                                                                           monkeypatch):
    from training.estimates import record_calibration

    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    for planned in plan_study(load_study("fcn_seeds"), tmp_path / "r"):
        record_calibration(planned.config, 1.0, 0.0)        # 1 s per epoch: 100 s per signed run, 50 s per baseline
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    totals = {}
    for jobs in ("1", "2"):
        assert reproduce.main(["fcn_seeds", "--backend", "jax", "--jobs", jobs, "--runs", "3", "--dry-run",
                               "--out", str(tmp_path / "r")]) == 0
        output = capsys.readouterr().out
        assert "KERAS_BACKEND=jax" in output and "measured/" not in output.split("plan:")[1]
        totals[jobs] = output.split("estimated time to train: ")[1]
    assert totals["1"].startswith("0:12:30 on this machine")              # 6 × 100 s + 3 × 50 s
    assert totals["2"].startswith("0:06:40 with 2 runs side by side (0:12:30 one after another;")
    assert wall_seconds([100] * 3 + [50] * 3 + [100] * 3, 2) == 400 and wall_seconds([5, 5], 8) == 5


def test_the_seed_report_marks_runs_shorter_than_the_protocol_and_compares_them_with_nothing(tmp_path, capsys):
    """--set training.epochs=1 runs of the seed study, reported from their own folders: no paper number
    beside them, no bracket judged, as report.py gives such runs no Δ."""
    study, sets = load_study("fcn_seeds"), ["training.epochs=1"]
    for planned in plan_study(study, tmp_path, runs=2, overrides=sets, only=["fcn_signed_closest_to_paper",
                                                                           "fcn_baseline"]):
        claim_results_folder(planned.config, tmp_path)
        for index, accuracy in enumerate((0.91, 0.92)):
            finished_run(tmp_path / planned.folder / f"run_{index}", accuracy)
    assert reproduce.main(["fcn_seeds", "--report-only", "--set", sets[0], "--out", str(tmp_path), *QUICK]) == 0
    report = tmp_path / "fcn_seeds+training.epochs=1.md"   # the --set runs' report: fcn_seeds.md stays the study's
    text = report.read_text()
    row = "| fcn_baseline (1/50 ep) | test accuracy % | 2 | 91.500 |"
    assert row in text and text.split(row)[1].split("\n")[0].endswith("| – (shorter than the protocol) |")
    assert "97.43 [97.4, 97.5]" not in text and "fcn_signed_closest_to_paper (1/100 ep)" in text
    assert "fcn_baseline (1/50 ep): shorter than the paper's protocol (configs/fcn_baseline.yaml)" in text
    assert "No bracket could be judged" in text
    assert capsys.readouterr().out.endswith(f"report: {report}\n") and not (tmp_path / "fcn_seeds.md").exists()


@pytest.mark.parametrize("study, message", [
    ("fcn_seeds", "study fcn_seeds's runs are under --out {root}/fcn_seeds, not {root} (3 of its 3"),
    ("mask_modes", "study mask_modes's runs are under --out {root}/mask_modes, not {root}"),
    ("paper_main", "no experiment folder of study paper_main under {root} (looked for {root}/fcn_signed"),
])
def test_report_only_over_the_wrong_root_is_refused_with_nothing_written(tmp_path, capsys, study, message):
    """A copy of measured/ (the fcn_baseline folder of the main table sits beside fcn_seeds/, whose study
    names an fcn_baseline too): a report of the parent root would be a report of the wrong runs."""
    import shutil
    measured = reproduce.ROOT / "measured"
    root = tmp_path / "measured"
    for name in ("fcn_seeds", "mask_modes", "fcn_baseline"):
        shutil.copytree(measured / name, root / name, ignore=shutil.ignore_patterns("*.md", "*.png", "*.npz"))
    target = root if study != "paper_main" else tmp_path / "empty"
    target.mkdir(exist_ok=True)
    before = sorted(path for path in tmp_path.rglob("*"))
    assert reproduce.main([study, "--report-only", "--out", str(target), "--no-figures"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message.format(root=target) in error, error
    assert sorted(path for path in tmp_path.rglob("*")) == before
