"""reproduce.py: the plan (rows -> configs, runs, epochs, estimates), bad input, a real run with a failure."""
import json
import re

import pytest
from conftest import real_data_dir

import reproduce
from reporting.paper import PAPER_ROWS, match_paper_row
from training.config import load_config

TINY = ["--set", "data.train_limit=128", "--set", "data.test_limit=128", "--set", "training.epochs=1"]


def plan_rows(output):
    """{config file: (runs, to train, epochs)} from the printed plan table."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 8 and cells[2].startswith("configs/"):
            runs, to_train = re.fullmatch(r"(\d+) \((\d+)\)", cells[3]).groups()
            rows[cells[2]] = (int(runs), int(to_train), cells[4])
    return rows


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_every_paper_row_has_a_signed_and_a_baseline_config_of_its_architecture(row):
    for column, signed in (("signed", True), ("baseline", False)):
        config = load_config(reproduce.config_path(row, column))
        assert config.model.signed is signed
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


def test_a_folder_taken_by_another_job_after_planning_fails_its_runs_and_the_rest_train(tmp_path, capsys,
                                                                                         monkeypatch):
    import train
    from training.runner import RunTrainer
    from training.schema import ConfigError
    claim = train.claim_results_folder

    def taken_for_signed(config, out_root):
        if config.experiment == "fcn_signed":
            raise ConfigError(f"{out_root}/fcn_signed/config.yaml: made by another config")
        return claim(config, out_root)

    trained = []
    monkeypatch.setattr(train, "claim_results_folder", taken_for_signed)
    monkeypatch.setattr(RunTrainer, "run", lambda self: trained.append((self.config.experiment, self.run_index)))
    code = reproduce.main(["--rows", "FCN", "--runs", "2", "--measure-steps", "0", "--no-figures",
                           "--out", str(tmp_path / "r")])
    output = capsys.readouterr().out
    assert code == 1 and trained == [("fcn_baseline", 0), ("fcn_baseline", 1)]
    for index in (0, 1):
        assert f"failed: fcn_signed run {index}: ConfigError: " in output
    assert "[reproduce] 2 of 4 runs finished, 2 failed" in output


def test_real_run_of_two_rows_reports_a_failed_run_continues_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz", "cifar10_jpeg.npz")))
    from training.runner import RunTrainer, TrainingError
    original_run = RunTrainer.run

    def failing_for_fcn(self):
        if self.config.experiment == "fcn_signed":
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
    progress = re.findall(r"\[reproduce\] run (\d) of 2: (\w+) run 0 \(elapsed \d+:\d\d:\d\d, "
                          r"estimated remaining (\d+:\d\d:\d\d)\)", output)
    assert [(k, name) for k, name, _ in progress] == [("1", "fcn_signed"), ("2", "conv2_signed")]
    assert "[reproduce] run 1 of 2 failed: fcn_signed run 0: TrainingError: patched to fail" in output
    assert "[reproduce] 1 of 2 runs finished, 1 failed" in output
    info = json.loads((out / "conv2_signed" / "run_0" / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_trained"] == 1
    assert json.loads((out / "conv2_signed" / "summary.json").read_text())["finished_runs"] == ["run_0"]
    assert "Conv2" in (out / "report.md").read_text() and (out / "report.csv").exists()


def test_timing_grows_the_run_until_steps_dominate_and_separates_overhead_and_compilation(monkeypatch):
    """A simulated machine: 0.5 s per-epoch overhead, 10 ms per FCN step, 4 s compilation."""
    calls = []

    def simulated_epochs(config, train_limit, data_dir):
        calls.append(train_limit)
        steps = -(-train_limit // 128)
        return [4.0 + 0.5 + 0.01 * steps, 0.5 + 0.01 * steps]

    monkeypatch.setattr(reproduce, "timed_epochs", simulated_epochs)
    config = load_config(reproduce.config_path("FCN", "signed"))
    experiment = reproduce.PlannedExperiment("FCN", "signed", reproduce.config_path("FCN", "signed"), config, [0])
    epoch, compile_seconds = reproduce.measure(experiment, 2, None)
    assert calls == [256, 1024, 4096, 16384, 60000]     # until an epoch doubles and lasts >= 3 s
    test_forward = (10_000 - 128) / 128 * 0.01 / 3
    assert epoch == pytest.approx(0.5 + 469 * 0.01 + test_forward)
    assert compile_seconds == pytest.approx(4.0)
    experiment.epoch_seconds, experiment.compile_seconds = epoch, compile_seconds
    assert experiment.run_estimate() == pytest.approx(4.0 + 100 * epoch)


def test_progress_rescales_the_remaining_estimate_by_the_runs_so_far():
    progress = reproduce.Progress(total=4)
    assert progress.remaining([100.0, 200.0]) == "0:05:00"
    progress.record(seconds=30.0, estimate=60.0)          # runs took half their estimate so far
    assert progress.remaining([100.0, 200.0]) == "0:02:30"
    assert progress.remaining([100.0, None]) == "0:00:50 + 1 runs not timed"
    assert progress.remaining([None]) == "unknown"
    assert reproduce.clock(3 * 3600 + 62) == "3:01:02"
