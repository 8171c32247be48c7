"""The shipped measured/ folder: only small files, readable by the report on a fresh clone."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT

import report
from bench.ship_results import RUN_FILES, ship
from fileio import run_folder_index
from training.run_record import RunRecord
from training.run_state import checkpoint_bytes
from test_report import write_config, write_finished_run

MEASURED = Path(REPO_ROOT) / "measured"
ALLOWED = set(RUN_FILES) | {"summary.json", "README.md", "agreement.md", "mask_modes.md", "mask_modes.png", "fcn_seeds.md",
                             "fcn_seeds.png"}


def test_shipped_results_hold_only_small_readable_files():
    assert len(list(MEASURED.rglob("run.json"))) >= 150, "measured/ lost its shipped runs"
    for path in MEASURED.rglob("*"):
        if path.is_dir():
            continue
        assert path.name in ALLOWED, f"{path}: not a file measured/ ships (no weights or checkpoints)"
        assert path.stat().st_size < 2_000_000, f"{path}: too large to ship"
        if path.name == "run.json":
            assert RunRecord.from_json(json.loads(path.read_text())).finished, path
        if path.name == "config.yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_shipped_run_has_its_config_and_history():
    runs = [path for path in MEASURED.rglob("run_*") if path.is_dir() and run_folder_index(path.name) is not None]
    assert runs, "measured/ holds no run folders"
    for run in runs:
        assert (run / "config.yaml").is_file() and (run / "history.json").is_file(), run


def test_ship_copies_small_files_and_the_history_of_a_running_run(tmp_path):
    source = tmp_path / "results" / "fcn_signed"
    write_config(source, "FCN", "mnist", runs=2)
    write_finished_run(source, 0, 0.97, 3.7, 9000)
    (source / "run_0" / "model.weights.h5").write_bytes(b"weights")
    running = source / "run_1"
    running.mkdir()
    (running / "config.yaml").write_text("{}\n")
    state = {"epochs": 2, "stop_training": False, "history": {"test_accuracy": [0.5, 0.6]}}
    (running / "checkpoint.npz").write_bytes(checkpoint_bytes({"model/w": np.zeros(2, np.float32)}, state))
    ship(source, tmp_path / "measured")
    shipped = sorted(p.relative_to(tmp_path / "measured").as_posix()
                     for p in (tmp_path / "measured").rglob("*") if p.is_file())
    assert shipped == ["fcn_signed/config.yaml", "fcn_signed/run_0/history.json", "fcn_signed/run_0/masks.npz",
                       "fcn_signed/run_0/run.json", "fcn_signed/run_1/config.yaml", "fcn_signed/run_1/history.json",
                       "fcn_signed/summary.json"]
    history = json.loads((tmp_path / "measured" / "fcn_signed" / "run_1" / "history.json").read_text())
    assert history == {"test_accuracy": [0.5, 0.6]}


def test_a_second_seed_shipped_from_another_folder_joins_the_first(tmp_path):
    first, second = tmp_path / "machine_a" / "conv2_baseline", tmp_path / "machine_b" / "conv2_baseline"
    write_config(first, "Conv2", "cifar10", runs=1)
    write_finished_run(first, 0, 0.68, 100.0, 4300992, signed=False)
    write_config(second, "Conv2", "cifar10", runs=50)
    write_finished_run(second, 1, 0.66, 100.0, 4300992, signed=False)
    ship(first, tmp_path / "measured")
    config_before = (tmp_path / "measured" / "conv2_baseline" / "config.yaml").read_bytes()
    ship(second, tmp_path / "measured")
    target = tmp_path / "measured" / "conv2_baseline"
    assert (target / "run_0" / "run.json").is_file() and (target / "run_1" / "run.json").is_file()
    assert (target / "config.yaml").read_bytes() == config_before   # the first ship's config stays
    summary = json.loads((target / "summary.json").read_text())
    assert summary["finished_runs"] == ["run_0", "run_1"]
    assert summary["test_accuracy"]["n"] == 2
    assert summary["test_accuracy"]["mean"] == pytest.approx(0.67)


def test_ship_reads_the_history_of_the_checkpoint_never_a_checkpoint_json(tmp_path):
    running = tmp_path / "results" / "resnet20_signed" / "run_0"
    running.mkdir(parents=True)
    state = {"epochs": 3, "stop_training": False, "history": {"test_accuracy": [0.4, 0.5, 0.6]}}
    (running / "checkpoint.npz").write_bytes(checkpoint_bytes({"model/w": np.zeros(2, np.float32)}, state))
    (running / "checkpoint.json").write_text(json.dumps({"history": {"test_accuracy": [0.4]}}))  # a retired format
    ship(running.parent, tmp_path / "measured")
    history = json.loads((tmp_path / "measured" / "resnet20_signed" / "run_0" / "history.json").read_text())
    assert history == {"test_accuracy": [0.4, 0.5, 0.6]}
    (running / "checkpoint.npz").unlink()
    ship(running.parent, tmp_path / "again")
    assert not (tmp_path / "again" / "resnet20_signed" / "run_0").exists()


def test_a_run_started_over_never_replaces_a_longer_shipped_history(tmp_path):
    running = tmp_path / "results" / "conv8_signed" / "run_0"
    running.mkdir(parents=True)

    def train_to(epochs):
        state = {"epochs": epochs, "stop_training": False,
                 "history": {"train_loss": [1.0] * epochs, "test_accuracy": [0.5] * epochs}}
        (running / "checkpoint.npz").write_bytes(checkpoint_bytes({"model/w": np.zeros(2, np.float32)}, state))

    shipped = tmp_path / "measured" / "conv8_signed" / "run_0" / "history.json"
    train_to(63)
    ship(running.parent, tmp_path / "measured")
    train_to(5)                                  # the machine was replaced: the run starts over
    warnings = []
    assert ship(running.parent, tmp_path / "measured", warn=warnings.append) == []
    assert len(json.loads(shipped.read_text())["train_loss"]) == 63
    assert len(warnings) == 1 and "5 epochs so far" in warnings[0] and "already holds 63" in warnings[0]
    train_to(64)                                 # caught up: ships again
    ship(running.parent, tmp_path / "measured", warn=warnings.append)
    assert len(json.loads(shipped.read_text())["train_loss"]) == 64 and len(warnings) == 1


def test_report_without_arguments_renders_the_shipped_results_on_a_fresh_clone(tmp_path, monkeypatch, capsys):
    write_config(tmp_path / "measured" / "fcn_signed", "FCN", "mnist", runs=1)
    write_finished_run(tmp_path / "measured" / "fcn_signed", 0, 0.9749, 3.70, 9000)
    before = sorted(p.name for p in (tmp_path / "measured").rglob("*"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "REPOSITORY", tmp_path)   # a fresh clone at tmp_path
    assert report.main(["--no-figures"]) == 0
    assert "reading measured/" in capsys.readouterr().out
    text = (tmp_path / "reports" / "measured" / "report.md").read_text()
    assert "97.49" in text
    assert sorted(p.name for p in (tmp_path / "measured").rglob("*")) == before  # nothing written there
    assert not (tmp_path / "results").exists()
    assert "1 unfinished" not in text
    # Once results/ holds an experiment of one's own, that is what the report reads, and it names the
    # command that still shows the shipped runs.
    shutil.copytree(tmp_path / "measured" / "fcn_signed", tmp_path / "results" / "mine")
    assert report.main(["--no-figures"]) == 0
    assert "reading results/; the shipped runs: python report.py measured" in capsys.readouterr().out


def test_the_shipped_report_never_overwrites_ones_own(tmp_path, monkeypatch):
    write_config(tmp_path / "measured" / "fcn_signed", "FCN", "mnist", runs=1)
    write_finished_run(tmp_path / "measured" / "fcn_signed", 0, 0.9749, 3.70, 9000)
    write_config(tmp_path / "results" / "fcn_signed", "FCN", "mnist", runs=1)
    write_finished_run(tmp_path / "results" / "fcn_signed", 0, 0.9612, 3.90, 9500)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "REPOSITORY", tmp_path)
    assert report.main(["--no-figures"]) == 0
    own = (tmp_path / "results" / "report.md").read_text()
    assert report.main(["measured", "--no-figures"]) == 0
    assert (tmp_path / "results" / "report.md").read_text() == own and "96.12" in own
    assert "97.49" in (tmp_path / "reports" / "measured" / "report.md").read_text()


def test_a_shipped_run_that_stopped_training_shows_its_epochs(tmp_path):
    from reporting.collect import read_experiment

    experiment = tmp_path / "measured" / "conv2_signed"
    write_config(experiment, "Conv2", "cifar10", runs=1, epochs=100)
    (experiment / "run_0").mkdir()
    (experiment / "run_0" / "history.json").write_text(json.dumps({"train_loss": [1.5, 1.2, 1.0]}))
    run = read_experiment(experiment, "conv2_signed").runs[0]
    assert (run.status, run.detail) == ("unfinished", "stopped after epoch 3/100")


def test_a_short_check_never_fills_a_paper_row_ahead_of_a_full_length_run(tmp_path):
    from reporting.collect import find_experiments
    from reporting.tables import build_tables

    write_config(tmp_path / "agreement_conv2", "Conv2", "cifar10", runs=1, epochs=3)
    write_finished_run(tmp_path / "agreement_conv2", 0, 0.61, 28.6, 1_200_000)
    write_config(tmp_path / "conv2_signed", "Conv2", "cifar10", runs=1, epochs=100)
    (tmp_path / "conv2_signed" / "run_0").mkdir()
    (tmp_path / "conv2_signed" / "run_0" / "history.json").write_text(json.dumps({"train_loss": [1.5, 1.2]}))
    tables = build_tables(find_experiments(tmp_path))
    assert tables.main["Conv2"]["signed"].experiment.name == "conv2_signed"
    assert [summary.experiment.name for summary in tables.others] == ["agreement_conv2"]


@pytest.mark.slow
def test_shipped_signed_runs_are_trained_models(tmp_path, capsys):
    """A shipped signed run is its seed plus its masks: export.py rebuilds and exports it without weights files
    (the rebuilt masks keep exactly the weights run.json counts). The shipped ResNet20 run predates
    extra_state.npz, so its BN state is lost: one line says so."""
    import export

    assert export.main([str(MEASURED / "conv2_signed" / "run_0"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "conv2_signed_run0.keras").is_file() and (tmp_path / "conv2_signed_run0.compact.npz").is_file()
    capsys.readouterr()
    assert export.main([str(MEASURED / "resnet20_signed" / "run_0"), "--out", str(tmp_path / "resnet")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "extra_state.npz" in error and "a rerun of this run writes" in error
    assert not (tmp_path / "resnet").exists()
