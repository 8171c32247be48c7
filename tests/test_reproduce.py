"""reproduce.py, the command line of studies: the plan (rows -> configs, runs, epochs, estimates), bad input,
a real run with a failure, a study's report."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import real_data_dir

import reproduce
from reporting.paper import PAPER_ROWS, match_paper_row
from training import timing
from training.study import CONFIGS, load_study, plan_study, results_folder
from training.study_run import run_study
from training.config import load_config

TINY = ["--set", "data.train_limit=128", "--set", "data.test_limit=128", "--set", "training.epochs=1"]


def plan_rows(output):
    """{config file: (runs, to train, epochs)} from the printed plan table."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and cells[1].startswith("configs/"):
            runs, to_train = re.fullmatch(r"(\d+) \((\d+)(?:, run \d+ (?:resumes after epoch \d+|shipped in measured/))*\)", cells[2]).groups()
            rows[cells[1]] = (int(runs), int(to_train), cells[3])
    return rows


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_every_paper_row_has_a_signed_and_a_baseline_config_of_its_architecture(row):
    entries = [entry for entry in load_study("paper_main").experiments.values() if entry.row == row]
    assert sorted(entry.side for entry in entries) == ["baseline", "signed"]
    for entry in entries:
        config = load_config(CONFIGS / entry.config)
        assert config.model.signed is (entry.side == "signed")
        assert match_paper_row(config.model.name, config.model.width_multiplier, config.data.dataset) == row


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "results"
    finished = out / "fcn_signed" / "run_1"
    finished.mkdir(parents=True)
    (finished / "run.json").write_text(json.dumps({"status": "finished", "final": {
        "test_accuracy": 0.97, "remaining_percent": 3.7, "remaining_count": 9000}}))
    code = reproduce.main(["--rows", "fcn,Conv2", "--runs", "3", "--dry-run", "--measure-steps", "0",
                           "--out", str(out)])
    output = capsys.readouterr().out
    assert code == 0
    assert plan_rows(output) == {"configs/fcn_signed.yaml": (3, 2, "100"), "configs/fcn_baseline.yaml": (3, 3, "50"),
                                 "configs/conv2_signed.yaml": (3, 3, "100"),
                                 "configs/conv2_baseline.yaml": (3, 3, "50")}
    assert "4 configs, 12 runs, 11 to train (1 finished already, skipped)" in output
    assert "estimated time to train: unknown" in output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == \
        ["fcn_signed", "fcn_signed/run_1", "fcn_signed/run_1/run.json"]


def test_table_main_plans_every_row_and_marks_plateau_epochs_as_a_bound(tmp_path, capsys):
    code = reproduce.main(["--table", "main", "--columns", "signed", "--dry-run", "--measure-steps", "0",
                           "--set", "training.epochs=7", "--out", str(tmp_path / "r")])
    rows = plan_rows(capsys.readouterr().out)
    assert code == 0 and len(rows) == len(PAPER_ROWS)
    assert rows["configs/resnet20_signed.yaml"][2] == "≤ 7" and rows["configs/conv4_signed.yaml"][2] == "7"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, culprit", [
    (["--rows", "FCN,Conv3"], "Conv3"),
    (["--table", "ablations"], "ablations"),
    (["--rows", "FCN", "--columns", "signed,lottery"], "lottery"),
    (["--rows", "FCN", "--set", "training.epoch=3"], "training.epoch"),
    (["--rows", "FCN", "--runs", "0"], "--runs"),
    (["mask_modes", "--only", "top_k_11"], "top_k_11"),
    (["no_such_study"], "no such study file (the studies of configs/studies/: agreement, cifar_queue, "),
    (["configs/fcn_signed.yaml"], "it reads as an experiment config: python train.py configs/fcn_signed.yaml"),
    (["fcn_seeds", "--jobs", "0"], "--jobs"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, culprit):
    code = reproduce.main([*args, "--out", str(tmp_path / "r"), "--measure-steps", "0"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and culprit in error and len(error.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_results_of_another_config_are_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "r"
    (out / "fcn_signed").mkdir(parents=True)
    (out / "fcn_signed" / "config.yaml").write_text("model: {name: FCN, threshold_fraction: 0.3}\n")
    assert reproduce.main(["--rows", "FCN", "--out", str(out), "--measure-steps", "0"]) == 2
    assert "fcn_signed" in capsys.readouterr().err and not (out / "fcn_signed" / "run_0").exists()


def test_a_missing_init_file_under_files_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "r"
    code = reproduce.main(["--rows", "FCN", "--out", str(out), "--measure-steps", "0", "--set", "init.source=files",
                           "--set", f"init.weights_dir={tmp_path / 'none'}"])
    assert code == 2 and not out.exists()
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing init file; create it with: python init_example.py --model FCN" in error


def test_a_folder_taken_by_another_job_after_planning_fails_its_runs_and_the_rest_train(tmp_path, capsys,
                                                                                         monkeypatch):
    from training import study_run
    from training.runner import RunTrainer
    from training.schema import ConfigError
    claim = study_run.claim_results_folder

    def taken_for_signed(config, out_root):
        if config.experiment == "fcn_signed":
            raise ConfigError(f"{out_root}/fcn_signed/config.yaml: made by another config")
        return claim(config, out_root)

    trained = []
    monkeypatch.setattr(study_run, "claim_results_folder", taken_for_signed)
    monkeypatch.setattr(RunTrainer, "run", lambda self: trained.append((self.config.experiment, self.run_index)))
    code = reproduce.main(["--rows", "FCN", "--runs", "2", "--measure-steps", "0", "--no-figures",
                           "--out", str(tmp_path / "r")])
    output = capsys.readouterr().out
    assert code == 1 and trained == [("fcn_baseline", 0), ("fcn_baseline", 1)]
    for index in (0, 1):
        assert f"failed: fcn_signed run {index}: ConfigError: " in output
    assert "[reproduce] 2 of 4 runs finished, 2 failed" in output


@pytest.mark.slow
def test_real_run_of_two_rows_reports_a_failed_run_continues_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz", "cifar10_jpeg.npz")))
    from training.runner import RunTrainer, TrainingError
    original_run = RunTrainer.run

    def failing_for_fcn(self):
        if self.config.experiment.startswith("fcn_signed+"):
            raise TrainingError("patched to fail")
        return original_run(self)

    monkeypatch.setattr(RunTrainer, "run", failing_for_fcn)
    out = tmp_path / "results"
    code = reproduce.main(["--rows", "FCN,Conv2", "--columns", "signed", "--runs", "1", "--measure-steps", "1",
                           "--no-figures", "--out", str(out), *TINY])
    output = capsys.readouterr().out
    assert code == 1
    assert plan_rows(output) == {"configs/fcn_signed.yaml": (1, 1, "1"), "configs/conv2_signed.yaml": (1, 1, "1")}
    estimated = re.search(r"estimated time to train: (\d+):(\d\d):(\d\d) on this machine", output)
    assert estimated, output
    progress = re.findall(r"\[reproduce\] run (\d) of 2: (\S+) run 0 \(elapsed \d+:\d\d:\d\d, "
                          r"estimated remaining (\d+:\d\d:\d\d)\)", output)
    folders = [results_folder(load_study("paper_main"), name, TINY[1::2]) for name in ("fcn_signed", "conv2_signed")]
    assert [(k, folder) for k, folder, _ in progress] == [("1", folders[0]), ("2", folders[1])]   # --set: own folders
    assert "[reproduce] run 1 of 2 failed: fcn_signed run 0: TrainingError: patched to fail" in output
    assert "[reproduce] 1 of 2 runs finished, 1 failed" in output
    conv2 = out / results_folder(load_study("paper_main"), "conv2_signed", TINY[1::2])   # --set: a folder of its own
    info = json.loads((conv2 / "run_0" / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_trained"] == 1
    assert json.loads((conv2 / "summary.json").read_text())["finished_runs"] == ["run_0"]
    assert "Conv2" in (out / "report.md").read_text() and (out / "report.csv").exists()


def test_timing_grows_the_run_until_steps_dominate_and_separates_overhead_and_compilation(monkeypatch):
    """A simulated machine: 0.5 s per-epoch overhead, 10 ms per FCN step, 4 s compilation."""
    calls = []

    def simulated_epochs(config, train_limit, data_dir):
        calls.append(train_limit)
        steps = -(-train_limit // 128)
        return [4.0 + 0.5 + 0.01 * steps, 0.5 + 0.01 * steps]

    monkeypatch.setattr(timing, "timed_epochs", simulated_epochs)
    experiment = planned("fcn_signed")
    epoch, compile_seconds = timing.measure(experiment.config, 2, None)
    assert calls == [256, 1024, 4096, 16384, 60000]     # until an epoch doubles and lasts >= 3 s
    test_forward = (10_000 - 128) / 128 * 0.01 / 3
    assert epoch == pytest.approx(0.5 + 469 * 0.01 + test_forward)
    assert compile_seconds == pytest.approx(4.0)
    experiment.epoch_seconds, experiment.compile_seconds = epoch, compile_seconds
    assert experiment.run_estimate() == pytest.approx(4.0 + 100 * epoch)


# Issue 29 item 5: the plan comes within seconds, from FLOPs and earlier timings; measuring is --measure.

def test_dry_run_of_the_main_table_plans_within_seconds_without_keras(tmp_path):
    script = ("import sys, time; import reproduce; started = time.perf_counter(); "
              f"code = reproduce.main(['--table', 'main', '--dry-run', '--out', {str(tmp_path / 'r')!r}]); "
              "print('RESULT', code, 'keras' in sys.modules, round(time.perf_counter() - started, 2))")
    result = subprocess.run([sys.executable, "-c", script], cwd=reproduce.ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "SUPERMASK_CACHE_DIR": str(tmp_path / "cache")})
    code, keras_imported, seconds = result.stdout.split("RESULT ")[1].split()
    rows = plan_rows(result.stdout)
    assert (code, keras_imported) == ("0", "False") and float(seconds) < 5, result.stdout[-2000:]
    assert len(rows) == 2 * len(PAPER_ROWS) and "| ? |" not in result.stdout
    assert "estimate from FLOPs and earlier timings" in result.stdout and not (tmp_path / "r").exists()


def planned(name):
    [experiment] = plan_study(load_study("paper_main"), "/nonexistent", only=[name])
    return experiment


def test_this_machines_calibration_comes_first_and_is_scaled_by_flops(tmp_path, monkeypatch):
    from training.estimates import epoch_flops, record_calibration

    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    plan = [planned("fcn_signed"), planned("fcn_baseline"), planned("conv2_signed")]
    monkeypatch.setattr(reproduce, "SHIPPED_RESULTS", tmp_path / "nothing shipped")
    reproduce.estimate_plan(plan, tmp_path / "r")
    assert all(experiment.epoch_seconds is None and "no estimate" in experiment.note for experiment in plan)
    assert "estimated time to train: unknown" in reproduce.plan_text(plan, tmp_path / "r")
    record_calibration(plan[0].config, 2.0, 1.5)
    plan = [planned("fcn_signed"), planned("fcn_baseline"), planned("conv2_signed")]
    reproduce.estimate_plan(plan, tmp_path / "r")
    assert (plan[0].epoch_seconds, plan[0].compile_seconds, plan[0].note) == (2.0, 1.5, "")
    for experiment in plan[1:]:
        assert experiment.epoch_seconds == pytest.approx(2.0 * epoch_flops(experiment.config) /
                                                         epoch_flops(plan[0].config))
        assert "scaled by FLOPs from fcn_signed (timed here)" in experiment.note


def test_a_model_kind_not_timed_here_borrows_the_shipped_timing_of_its_kind(tmp_path, monkeypatch):
    """After the README's first command only the FCN was timed here, and FLOPs scaled from it put Conv4's
    epoch at 674 s, 3.2 times the shipped run's 212 s: FLOPs do not carry across model kinds."""
    from training.estimates import record_calibration, recorded_timings

    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    record_calibration(planned("fcn_signed").config, 2.0, 1.5)
    plan = [planned("fcn_baseline"), planned("conv4_signed")]
    reproduce.estimate_plan(plan, tmp_path / "r")
    assert "scaled by FLOPs from fcn_signed (timed here)" in plan[0].note
    [shipped] = [timing for timing in recorded_timings(reproduce.SHIPPED_RESULTS)
                 if timing["experiment"] == "conv4_signed"]
    assert plan[1].epoch_seconds == shipped["epoch_seconds"] and 150 < shipped["epoch_seconds"] < 300
    assert plan[1].note == "estimate from conv4_signed (recorded in measured/, on another machine)"
    caution = "caution: some estimates come from runs timed on other machines"
    assert caution in reproduce.plan_text(plan, tmp_path / "r")   # the total is not this machine's alone
    record_calibration(planned("conv2_signed").config, 50.0, 3.0)   # a Conv net timed here comes first
    plan = [planned("conv4_signed")]
    reproduce.estimate_plan(plan, tmp_path / "r")
    assert "scaled by FLOPs from conv2_signed (timed here)" in plan[0].note
    text = reproduce.plan_text(plan, tmp_path / "r")
    assert caution not in text and "plan: 1 config, 50 runs, 50 to train" in text


def test_recorded_timings_take_the_first_epochs_extra_time_as_compile_time(tmp_path):
    """A plan of tiny runs scaled from recorded runs said 0:00:00 where each run spent seconds compiling:
    a recorded run's first epoch over its median is that time (the median over runs)."""
    from training.estimates import recorded_timings
    from training.experiment_folder import claim_results_folder

    config = planned("fcn_signed").config
    folder = claim_results_folder(config, tmp_path)
    for index, seconds in enumerate(([8.0, 2.0, 2.5, 2.0], [7.0, 3.0, 3.0], [1.0, 2.0, 2.0])):
        (folder / f"run_{index}").mkdir()
        (folder / f"run_{index}" / "history.json").write_text(json.dumps({"epoch_seconds": seconds}))
    [timing] = recorded_timings(tmp_path)
    assert timing["compile_seconds"] == 4.0   # median of 6.0, 4.0 and 0 (a first epoch faster than the rest)
    assert timing["epoch_seconds"] == 2.0 and timing["epochs_recorded"] == 7   # the epochs after each first
    [shipped] = [t for t in recorded_timings(reproduce.SHIPPED_RESULTS) if t["experiment"] == "fcn_signed"]
    assert shipped["compile_seconds"] > 0


def test_a_smoke_run_here_does_not_outweigh_the_shipped_timing_of_a_full_epoch(tmp_path, monkeypatch):
    """After a 512-image Conv2 smoke run, FLOPs scaled its per-epoch costs up to 4x Conv2's real epoch."""
    from training.experiment_folder import claim_results_folder

    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r"
    smoke = load_config(CONFIGS / "conv2_signed.yaml", ["data.train_limit=512", "data.test_limit=256",
                                                         "training.epochs=2", "experiment=conv2_signed+smoke"])
    run = claim_results_folder(smoke, out) / "run_0"
    run.mkdir()
    (run / "history.json").write_text(json.dumps({"epoch_seconds": [9.0, 3.0]}))
    plan = [planned("conv2_signed")]
    reproduce.estimate_plan(plan, out)
    assert plan[0].note == "estimate from conv2_signed (recorded in measured/, on another machine)"
    assert 60 < plan[0].epoch_seconds < 150
    monkeypatch.setattr(reproduce, "SHIPPED_RESULTS", tmp_path / "nothing shipped")
    plan = [planned("conv2_signed")]
    reproduce.estimate_plan(plan, out)   # nothing else timed: the smoke run scaled up, for want of better
    assert "timed here" in plan[0].note and plan[0].epoch_seconds > 150


def test_the_plan_counts_only_the_epochs_an_interrupted_run_has_left(tmp_path):
    from training.run_state import CHECKPOINT, checkpoint_bytes

    out = tmp_path / "r"
    (out / "conv2_signed" / "run_1").mkdir(parents=True)
    state = {"epochs": 60, "stop_training": False, "history": {}, "callbacks": {}}
    (out / "conv2_signed" / "run_1" / CHECKPOINT).write_bytes(checkpoint_bytes({}, state))
    (out / "conv2_signed" / "run_2").mkdir()
    (out / "conv2_signed" / "run_2" / CHECKPOINT).write_bytes(b"not a zip")   # damaged: starts over
    [experiment] = plan_study(load_study("paper_main"), out, runs=3, only=["conv2_signed"])
    assert experiment.to_train == [0, 1, 2] and experiment.resumes_after == {1: 60}
    experiment.epoch_seconds, experiment.compile_seconds = 10.0, 5.0
    assert experiment.run_estimate() == experiment.run_estimate(0) == 5.0 + 100 * 10.0
    assert experiment.run_estimate(1) == 5.0 + 40 * 10.0
    assert experiment.estimate_to_train() == 3 * 5.0 + 240 * 10.0
    text = reproduce.plan_text([experiment], out)
    assert "| 3 (3, run 1 resumes after epoch 60) |" in text and "0:40:15" in text
    assert plan_rows(text) == {"configs/conv2_signed.yaml": (3, 3, "100")}


def test_skip_shipped_skips_runs_finished_in_measured_and_trains_the_rest(tmp_path, capsys):
    code = reproduce.main(["cifar_queue", "--skip-shipped", "--dry-run", "--measure-steps", "0",
                           "--out", str(tmp_path / "r")])
    output = capsys.readouterr().out
    assert code == 0
    rows = plan_rows(output)
    assert rows["configs/conv4_signed.yaml"][:2] == rows["configs/conv4_baseline.yaml"][:2] == (1, 0)
    assert rows["configs/conv8_signed.yaml"][:2] == (1, 1)      # shipped unfinished: starts over
    for config, (runs, to_train, _) in rows.items():            # the rest as measured/ stands when the test runs
        shipped = reproduce.SHIPPED_RESULTS / Path(config).stem / "run_0" / "run.json"
        finished = shipped.is_file() and json.loads(shipped.read_text())["status"] == "finished"
        assert (runs, to_train) == (1, 0 if finished else 1), config
    assert "| 1 (0, run 0 shipped in measured/) |" in output
    without = reproduce.main(["cifar_queue", "--dry-run", "--measure-steps", "0", "--out", str(tmp_path / "r")])
    assert without == 0 and plan_rows(capsys.readouterr().out)["configs/conv4_signed.yaml"][:2] == (1, 1)


def test_a_plan_piped_into_a_reader_that_has_gone_ends_without_a_traceback(tmp_path):
    """`reproduce.py ... --dry-run | head -3`: the pipe closes before the plan is written."""
    process = subprocess.Popen([sys.executable, str(reproduce.ROOT / "reproduce.py"), "paper_main", "--dry-run",
                                "--measure-steps", "0", "--out", str(tmp_path / "r")], cwd=reproduce.ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1 and error == "", error


def test_rows_of_a_study_without_paper_rows_point_to_only(tmp_path, capsys):
    assert reproduce.main(["mask_modes", "--rows", "FCN", "--dry-run", "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --rows: mask_modes gives its experiments no paper row; pick them with --only "
                            "(signed_closest, ") and len(error.splitlines()) == 1


def test_a_shipped_run_is_not_trained_again_and_leaves_no_folder(tmp_path, monkeypatch):
    """The queue on a fresh machine: the plan's skip must hold when training, not only in the printed plan."""
    import shutil

    from training import runner, study_run

    shipped = tmp_path / "measured"
    shutil.copytree(reproduce.SHIPPED_RESULTS / "conv4_baseline", shipped / "conv4_baseline")
    study = load_study("cifar_queue")
    plan = plan_study(study, tmp_path / "r", only=["conv4_baseline"], shipped_root=shipped)
    trained = []
    monkeypatch.setattr(runner.RunTrainer, "run", lambda self: trained.append(self))
    monkeypatch.setattr(study_run, "import_backend_quietly", lambda: "device: stub")
    lines = []
    assert run_study(plan, study, tmp_path / "r", log=lines.append) == []
    assert trained == [] and not (tmp_path / "r" / "conv4_baseline").exists()
    assert lines[-1].startswith("[reproduce] 1 of 1 runs finished, 0 failed")


def test_a_shipped_run_of_another_config_or_damaged_record_still_trains(tmp_path):
    import shutil

    shipped = tmp_path / "measured"
    shutil.copytree(reproduce.SHIPPED_RESULTS / "conv4_baseline", shipped / "conv4_baseline")
    study = load_study("cifar_queue")
    [planned] = plan_study(study, tmp_path / "r", only=["conv4_baseline"], shipped_root=shipped)
    assert (planned.to_train, planned.shipped) == ([], [0])
    record = shipped / "conv4_baseline" / "run_0" / "run.json"
    record.write_text("{not json")
    [planned] = plan_study(study, tmp_path / "r", only=["conv4_baseline"], shipped_root=shipped)
    assert (planned.to_train, planned.shipped) == ([0], [])
    shutil.copy(reproduce.SHIPPED_RESULTS / "conv4_baseline" / "run_0" / "run.json", record)
    saved = shipped / "conv4_baseline" / "config.yaml"
    saved.write_text(saved.read_text().replace("epochs: 50", "epochs: 40"))
    [planned] = plan_study(study, tmp_path / "r", only=["conv4_baseline"], shipped_root=shipped)
    assert (planned.to_train, planned.shipped) == ([0], [])


def test_a_running_runs_own_epochs_time_its_experiment(tmp_path, monkeypatch):
    """A run still training has no history.json; the epoch times in its checkpoint are the best estimate."""
    from training.config import config_to_yaml
    from training.run_state import CHECKPOINT, checkpoint_bytes

    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(reproduce, "SHIPPED_RESULTS", tmp_path / "nothing shipped")
    out = tmp_path / "r"
    (out / "conv2_signed" / "run_0").mkdir(parents=True)
    (out / "conv2_signed" / "config.yaml").write_text(config_to_yaml(planned("conv2_signed").config))
    state = {"epochs": 3, "stop_training": False, "history": {"epoch_seconds": [90.0, 60.0, 70.0]}, "callbacks": {}}
    (out / "conv2_signed" / "run_0" / CHECKPOINT).write_bytes(checkpoint_bytes({}, state))
    plan = plan_study(load_study("paper_main"), out, runs=1, only=["conv2_signed", "conv2_baseline"])
    reproduce.estimate_plan(plan, out)
    assert (plan[0].name, plan[0].epoch_seconds, plan[0].note) == ("conv2_signed", 65.0, "")   # after the first
    assert plan[0].compile_seconds == 25.0   # its first epoch (90 s) over the median of the others (65 s)
    assert plan[0].resumes_after == {0: 3} and plan[0].estimate_to_train() == 25.0 + 97 * 65.0
    assert "scaled by FLOPs from conv2_signed (timed here)" in plan[1].note


def test_measure_times_into_the_cache_and_removes_the_scratch_of_killed_processes(tmp_path, monkeypatch):
    from training.estimates import read_calibration
    from training.runner import RunTrainer

    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(cache))
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = cache / f"{timing.SCRATCH_PREFIX}{socket.gethostname()}-{finished.stdout.strip()}"
    alive = cache / f"{timing.SCRATCH_PREFIX}{socket.gethostname()}-{os.getppid()}"
    for folder in (killed, alive):
        (folder / "timing").mkdir(parents=True)
    scratches = []

    def simulated_run(self):
        scratches.append(self.directory)
        self.directory.mkdir(parents=True)
        (self.directory / "history.json").write_text(json.dumps({"epoch_seconds": [3.0, 1.0]}))

    monkeypatch.setattr(RunTrainer, "run", simulated_run)
    out = tmp_path / "r"
    assert reproduce.main(["--rows", "FCN", "--columns", "signed", "--measure", "--dry-run", "--out", str(out)]) == 0
    assert scratches and all(path.is_relative_to(cache) and str(os.getpid()) in str(path) for path in scratches)
    assert not killed.exists() and alive.exists() and not any(path.exists() for path in scratches)
    [entry] = read_calibration()
    assert entry["experiment"] == "fcn_signed" and entry["epoch_seconds"] > 0 and not out.exists()


def test_an_out_that_cannot_be_written_is_refused_before_any_timing(tmp_path, capsys, monkeypatch):
    from training.runner import RunTrainer

    monkeypatch.setattr(RunTrainer, "run", lambda self: pytest.fail("timed before checking --out"))
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    blocker = tmp_path / "a file"
    blocker.write_text("keep me")
    assert reproduce.main(["--rows", "FCN", "--out", str(blocker / "results")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--out" in error and "is a file" in error
    assert blocker.read_text() == "keep me"


def test_a_read_only_out_is_refused_before_any_timing(tmp_path, capsys, monkeypatch):
    from conftest import deny_writes_as_root
    from training.runner import RunTrainer

    monkeypatch.setattr(RunTrainer, "run", lambda self: pytest.fail("timed before checking --out"))
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    deny_writes_as_root(monkeypatch, read_only)
    assert reproduce.main(["--rows", "FCN", "--out", str(read_only)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"--out {read_only}: cannot write results there (" in error


@pytest.mark.parametrize("config_name, overrides", [
    ("fcn_signed", []), ("conv8_signed", ["model.width_multiplier=0.3"]), ("conv8_baseline", []),
    ("resnet20_signed", ["model.width_multiplier=1.7"]), ("resnet56_baseline", []),
    ("resnet110_signed", ["model.extra_head=true"]),
])
def test_flops_counted_from_the_config_equal_those_of_the_built_model(config_name, overrides):
    sys.path.insert(0, str(reproduce.ROOT / "bench"))
    import flops
    from models import build_experiment_model
    from training.estimates import config_forward_macs

    config = load_config(reproduce.ROOT / "configs" / f"{config_name}.yaml", overrides)
    assert config_forward_macs(config) == flops.forward_macs(build_experiment_model(config, config.seed))


@pytest.mark.parametrize("study, shipped, outputs", [
    ("agreement", ["agreement_conv2", "agreement_resnet20"], ["agreement.md"]),
    ("mask_modes", ["mask_modes"], ["mask_modes/mask_modes.md", "mask_modes/mask_modes.png"]),
    ("fcn_seeds", ["fcn_seeds"], ["fcn_seeds/fcn_seeds.md", "fcn_seeds/fcn_seeds.png"]),
])
def test_a_studys_report_of_the_shipped_runs_regenerates_byte_identically(tmp_path, capsys, study, shipped, outputs):
    """--report-only over measured/ writes exactly the shipped files (no file that is not shipped) and
    names them."""
    import shutil
    measured = reproduce.ROOT / "measured"
    for name in shipped:
        shutil.copytree(measured / name, tmp_path / name, ignore=shutil.ignore_patterns("*.md", "*.png"))
    out = tmp_path / (shipped[0] if study != "agreement" else "")
    assert reproduce.main([study, "--report-only", "--out", str(out)]) == 0
    for name in outputs:
        assert (tmp_path / name).read_bytes() == (measured / name).read_bytes(), name
    written = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.*")
                     if path.suffix in (".md", ".png"))
    assert written == sorted(outputs)
    also = f" (+ {Path(outputs[1]).name})" if len(outputs) > 1 else ""
    assert capsys.readouterr().out == (tmp_path / outputs[0]).read_text() + f"report: {tmp_path / outputs[0]}{also}\n"


def test_report_only_without_the_runs_set_names_the_folders_it_trained_with_set(tmp_path, capsys):
    """Runs trained with `--set training.epochs=1` live in `<name>+training.epochs=1/`: a --report-only
    without that --set says so instead of only listing the plain folders it looked for."""
    from training.experiment_folder import claim_results_folder
    planned = plan_study(load_study("mask_modes"), tmp_path, runs=1, overrides=["training.epochs=1"],
                         only=["binary_port"])[0]
    claim_results_folder(planned.config, tmp_path)
    assert planned.folder == "binary_port+training.epochs=1"
    assert reproduce.main(["mask_modes", "--report-only", "--out", str(tmp_path), "--no-figures"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.rstrip().endswith(
        f"{tmp_path} holds folders of runs trained with --set (binary_port+training.epochs=1): give the same "
        f"--set to report them"), error
