"""report.py on a hand-built results tree: numbers, partial results, figures (no training, no data)."""
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import report
from reporting.collect import find_experiments
from reporting.paper import PAPER_ROWS, match_paper_row
from training.results import statistics

PNG_MAGIC = b"\x89PNG"
FCN_MASK_SHAPES = {"dense_1": (784, 20), "dense_2": (20, 10), "output": (10, 10)}


def write_config(directory, model, dataset, signed=True, width=1.0, runs=None, epochs=100, init=None):
    directory.mkdir(parents=True, exist_ok=True)
    config = {"experiment": directory.name, "runs": runs, "model": {"name": model, "signed": signed,
              "width_multiplier": width}, "data": {"dataset": dataset}, "training": {"epochs": epochs},
              "init": init or {}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))


def write_finished_run(directory, index, accuracy, remaining, count, signed=True, seed=0):
    """A finished run with a 3-epoch history and (signed) masks whose first layer is 784 x 20."""
    run = directory / f"run_{index}"
    run.mkdir(parents=True)
    final = {"test_accuracy": accuracy, "remaining_percent": remaining, "remaining_count": count}
    (run / "run.json").write_text(json.dumps({"status": "finished", "seed": index, "run_index": index,
                                              "final": final}))
    history = {"test_accuracy": [accuracy - 0.02, accuracy - 0.01, accuracy],
               "remaining_percent": [60.0, 20.0, 10.0, remaining] if signed else [100.0] * 4}
    (run / "history.json").write_text(json.dumps(history))
    if signed:
        rng = np.random.default_rng(seed + index)
        np.savez(run / "masks.npz", **{name: rng.integers(-1, 2, size=shape).astype(np.int8)
                                       for name, shape in FCN_MASK_SHAPES.items()})


def write_checkpoint(run, epochs):
    """The end-of-epoch state of a run still training."""
    from training.run_state import checkpoint_bytes

    run.mkdir()
    state = {"epochs": epochs, "stop_training": False, "history": {"train_loss": [0.5] * epochs}}
    (run / "checkpoint.npz").write_bytes(checkpoint_bytes({"model/w": np.zeros(2, np.float32)}, state))


def build_tree(root):
    """Paper rows (FCN signed + baseline, ResNet20 without finished runs), a study variant, broken files."""
    fcn = root / "fcn_signed"
    write_config(fcn, "FCN", "mnist", runs=5)
    for index, (accuracy, remaining, count) in enumerate([(0.97, 4.0, 10_648), (0.975, 3.5, 9_317),
                                                          (0.98, 3.8, 10_116)]):
        write_finished_run(fcn, index, accuracy, remaining, count)
    write_checkpoint(fcn / "run_3", epochs=2)
    (fcn / "summary.json").write_text(json.dumps({"test_accuracy": {"mean": 0.1}}))   # stale, must be ignored
    baseline = root / "fcn_baseline"
    write_config(baseline, "FCN", "mnist", signed=False, runs=2)
    write_finished_run(baseline, 0, 0.974, 100.0, 266_200, signed=False)
    write_finished_run(baseline, 1, 0.976, 100.0, 266_200, signed=False)
    study = root / "studies" / "fcn_wd"
    write_config(study, "FCN", "mnist", runs=1)
    write_finished_run(study, 0, 0.96, 5.0, 13_310, seed=7)
    variant = root / "conv4_half"
    write_config(variant, "Conv4", "cifar10", width=0.5, runs=2)
    write_finished_run(variant, 0, 0.70, 2.0, 20_000)
    (variant / "run_1").mkdir()
    (variant / "run_1" / "run.json").write_text('{"status": "finished", "final": {')
    garbled = root / "fcn_garbled"
    write_config(garbled, "FCN", "mnist", runs=1)
    write_finished_run(garbled, 0, 0.95, 6.0, 15_972)
    (garbled / "run_0" / "history.json").write_text('{"test_accuracy": "n/a"}')
    (garbled / "run_0" / "masks.npz").write_bytes(b"PK\x03\x04 truncated")
    resnet = root / "resnet20"
    write_config(resnet, "ResNet20", "cifar10", runs=2)
    write_checkpoint(resnet / "run_0", epochs=1)
    (resnet / "run_1").mkdir()
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("model: [unclosed\n")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    build_tree(root)
    digit = np.linspace(0.0, 1.0, 784)
    return root, report.write_report(root, digit_source=lambda: digit)


def csv_rows(paths):
    """report.csv keyed by experiment."""
    return {row["experiment"]: row for row in csv.DictReader(io.StringIO(paths["csv"].read_text()))}


def test_statistics_match_hand_computation():
    stats = statistics([97.0, 97.5, 98.0])
    assert stats == pytest.approx({"n": 3, "mean": 97.5, "std": 0.5, "min": 97.0, "max": 98.0,
                                   "q05": 97.05, "q95": 97.95})
    assert statistics([]) is None
    assert statistics([4.0])["std"] == 0.0


def test_paper_rows_are_matched_from_config_fields():
    assert match_paper_row("FCN", 1.0, "mnist") == "FCN"
    assert match_paper_row("ResNet20", 2.0, "cifar10") == "ResNet20x2"
    assert match_paper_row("ResNet56", 1.0, "cifar100") == "ResNet56"
    assert match_paper_row("ResNet56", 1.0, "cifar10") is None
    assert match_paper_row("Conv4", 0.5, "cifar10") is None


def test_paper_brackets_contain_their_means_except_the_known_typo():
    for key, row in PAPER_ROWS.items():
        for name in ("baseline_accuracy", "signed_accuracy", "remaining_percent"):
            interval = getattr(row, name)
            if interval.low is not None and (key, name) != ("Conv4", "baseline_accuracy"):
                assert interval.low <= interval.mean <= interval.high, (key, name)


def test_signed_paper_row_numbers(written):
    row = csv_rows(written[1])["fcn_signed"]
    assert (row["table"], row["paper_row"], row["kind"]) == ("main", "FCN", "signed")
    assert float(row["accuracy_mean"]) == pytest.approx(97.5)
    assert float(row["accuracy_std"]) == pytest.approx(0.5)
    assert (float(row["accuracy_min"]), float(row["accuracy_max"])) == pytest.approx((97.0, 98.0))
    assert float(row["diff_accuracy"]) == pytest.approx(97.5 - 97.48)
    assert float(row["remaining_percent_mean"]) == pytest.approx(np.mean([4.0, 3.5, 3.8]), rel=1e-5)
    assert float(row["remaining_percent_std"]) == pytest.approx(np.std([4.0, 3.5, 3.8], ddof=1), rel=1e-5)
    assert float(row["diff_remaining_percent"]) == pytest.approx(np.mean([4.0, 3.5, 3.8]) - 3.77, rel=1e-4)
    assert float(row["remaining_count_mean"]) == pytest.approx(np.mean([10_648, 9_317, 10_116]), rel=1e-5)
    assert float(row["paper_remaining_count"]) == 10_100
    assert (row["runs_finished"], row["runs_running"], row["runs_missing"]) == ("3", "1", "1")


def test_baseline_sits_next_to_signed(written):
    row = csv_rows(written[1])["fcn_baseline"]
    assert (row["table"], row["paper_row"], row["kind"]) == ("main", "FCN", "baseline")
    assert float(row["accuracy_mean"]) == pytest.approx(97.5)
    assert float(row["diff_accuracy"]) == pytest.approx(97.5 - 97.43)
    fcn_line = next(line for line in written[1]["md"].read_text().splitlines() if line.startswith("| FCN |"))
    assert fcn_line.index("fcn_baseline") < fcn_line.index("fcn_signed")
    assert "97.50 [97.00, 98.00] sd 0.50" in fcn_line and "+0.02" in fcn_line and "+0.07" in fcn_line
    assert "3 (1 running, 1 missing)" in fcn_line


def test_study_variants_and_extra_candidates_go_to_the_second_table(written):
    rows = csv_rows(written[1])
    assert (rows["studies/fcn_wd"]["table"], rows["studies/fcn_wd"]["paper_row"]) == ("other", "FCN")
    assert (rows["conv4_half"]["table"], rows["conv4_half"]["paper_row"]) == ("other", "")
    assert float(rows["conv4_half"]["accuracy_mean"]) == pytest.approx(70.0)


def test_the_paper_setting_fills_a_row_before_an_ablation_with_more_runs(tmp_path):
    paper_setting = {"weight": {"distribution": "signed_constant", "scaling": "elus"},
                     "mask": {"distribution": "uniform", "scaling": "xavier"}}
    write_config(tmp_path / "fcn_paper", "FCN", "mnist", init=paper_setting)
    write_config(tmp_path / "fcn_sc_he", "FCN", "mnist",
                 init={**paper_setting, "weight": {"distribution": "signed_constant", "scaling": "he"}})
    write_finished_run(tmp_path / "fcn_paper", 0, 0.97, 4.0, 10_648)
    for index in range(2):
        write_finished_run(tmp_path / "fcn_sc_he", index, 0.96, 5.0, 13_310)
    rows = csv_rows(report.write_report(tmp_path, draw=False))
    assert (rows["fcn_paper"]["table"], rows["fcn_sc_he"]["table"]) == ("main", "other")


def test_partial_and_corrupt_results_are_shown_not_fatal(written):
    rows = csv_rows(written[1])
    assert (rows["conv4_half"]["runs_finished"], rows["conv4_half"]["runs_corrupt"]) == ("1", "1")
    resnet = rows["resnet20"]
    assert (resnet["table"], resnet["runs_finished"], resnet["runs_running"], resnet["runs_empty"]) == \
        ("main", "0", "1", "1")
    assert resnet["accuracy_mean"] == ""
    assert rows["broken"]["table"] == "other" and "unreadable" in rows["broken"]["problems"]
    markdown = written[1]["md"].read_text()
    assert "run_1 corrupt: run.json unreadable" in markdown
    assert "run_0 running: after epoch 1/100" in markdown
    assert "0 (1 running, 1 empty)" in markdown
    assert "run_0: history.json lacks numeric" in markdown
    assert float(rows["fcn_garbled"]["accuracy_mean"]) == pytest.approx(95.0)


def test_latex_is_escaped(written):
    tex = written[1]["tex"].read_text()
    assert r"\toprule" in tex and r"fcn\_signed" in tex and r"$\Delta$" in tex
    assert "fcn_signed" not in tex


def test_every_figure_is_written_and_nonempty(written):
    root, paths = written
    expected = {"fig_accuracy_vs_remaining.png", "fig_figure1_fcn_signed.png", "fig_figure1_studies__fcn_wd.png"}
    expected |= {f"fig_curves_{name}.png" for name in ("fcn_signed", "fcn_baseline", "studies__fcn_wd", "conv4_half")}
    expected |= {f"fig_layers_{name}.png" for name in ("fcn_signed", "studies__fcn_wd", "conv4_half")}
    assert {path.name for path in paths["figures"]} == expected
    for name in expected:
        assert (root / name).read_bytes()[:4] == PNG_MAGIC
        assert name in paths["md"].read_text()


def test_figure1_is_skipped_with_a_note_when_the_digit_is_unavailable(tmp_path):
    build_tree(tmp_path)

    def missing_digit():
        raise FileNotFoundError("mnist.npz not found")

    paths = report.write_report(tmp_path, out_dir=tmp_path / "out", digit_source=missing_digit)
    assert not any("figure1" in path.name for path in paths["figures"])
    text = paths["md"].read_text()
    assert "Figure 1 skipped: MNIST digit unavailable (FileNotFoundError" in text
    assert text.count("Figure 1 skipped") == 1 and "TypeError" not in text     # tried once, not per experiment


def test_a_long_run_still_training_gets_its_curve_so_far(tmp_path):
    """A shipped run without run.json (measured/ while a 100-epoch run trains) is drawn from its history,
    titled as unfinished; one whose history holds no numbers is skipped with a note."""
    long_run = tmp_path / "results" / "conv2_long"
    write_config(long_run, "Conv2", "cifar10", runs=1, epochs=100)
    (long_run / "run_0").mkdir()
    (long_run / "run_0" / "history.json").write_text(json.dumps(
        {"train_loss": [1.5, 1.2, 1.0], "test_accuracy": [0.52, 0.58, 0.61], "remaining_percent": [60, 51, 41, 28]}))
    garbled = tmp_path / "results" / "conv4_long"
    write_config(garbled, "Conv4", "cifar10", runs=1, epochs=100)
    (garbled / "run_0").mkdir()
    (garbled / "run_0" / "history.json").write_text(json.dumps({"train_loss": [1.5], "test_accuracy": ["n/a"]}))
    paths = report.write_report(tmp_path / "results", out_dir=tmp_path / "out", digit_source=lambda: None)
    names = {path.name for path in paths["figures"]}
    assert "fig_curves_conv2_long.png" in names and "fig_curves_conv4_long.png" not in names
    assert (tmp_path / "out" / "fig_curves_conv2_long.png").read_bytes()[:4] == PNG_MAGIC
    assert "training curves of conv4_long: no run with a readable history.json" in paths["md"].read_text()
    experiment = next(e for e in find_experiments(tmp_path / "results") if e.name == "conv2_long")
    assert experiment.runs[0].status == "unfinished" and experiment.runs[0].history["test_accuracy"][-1] == 0.61


def test_cli(tmp_path, capsys):
    build_tree(tmp_path / "results")
    assert report.main([str(tmp_path / "results"), "--out", str(tmp_path / "out"), "--no-figures"]) == 0
    assert (tmp_path / "out" / "report.csv").is_file() and not list((tmp_path / "out").glob("*.png"))
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "results root is not a directory" in capsys.readouterr().err


def test_a_run_folder_given_as_the_root_is_refused_with_nothing_written(tmp_path, capsys):
    build_tree(tmp_path / "results")
    run = next((tmp_path / "results").rglob("run_0"))
    before = sorted(path.name for path in run.iterdir())
    assert report.main([str(run), "--no-figures"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and sorted(path.name for path in run.iterdir()) == before
    named_like_a_run = tmp_path / "run_1"   # a results root that only has such a name is read
    (tmp_path / "results").rename(named_like_a_run)
    assert report.main([str(named_like_a_run), "--no-figures", "--out", str(tmp_path / "out")]) == 0


def test_the_shipped_runs_are_found_from_any_folder(tmp_path, monkeypatch, capsys):
    """Started outside the clone, with no results/ of its own, report.py reads the clone's measured/."""
    repository = Path(report.__file__).resolve().parent
    monkeypatch.chdir(tmp_path)
    assert report.default_root().resolve() == repository / "measured"
    assert report.default_out(report.default_root()).resolve() == repository / "reports" / "measured"
    assert report.default_out(Path("results")) == Path("results")


def test_main_table_says_which_interval_every_row_prints(written):
    markdown = written[1]["md"].read_text()
    lines = markdown.splitlines()
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and " | " in line}
    assert rows["Model"].startswith("| Model | Data | intervals |")
    assert "| ours [min, max] (baseline n=2, signed n=3); paper bracket of unstated kind |" in rows["FCN"]
    assert "| ours –; paper mean only |" in rows["ResNet20"]       # its runs are unfinished
    assert "| ours –; paper bracket of unstated kind |" in rows["Conv2"]
    assert all(("ours [min, max]" in rows[key] or "ours –" in rows[key]) for key in PAPER_ROWS)
    caption = next(line for line in lines if line.startswith("Table: "))
    assert "mean [min, max] sd over the finished runs" in caption and "'intervals' column" in caption
    assert "confidence interval" in caption and "mean only" in caption
    assert r"\caption{Ours vs. the paper. Ours: mean [min, max] sd" in written[1]["tex"].read_text()


@pytest.mark.parametrize("signed, train_accuracy, right_panel", [
    (False, [0.7, 0.8, 0.9], "training accuracy %"),   # a baseline: how far it overfits
    (False, None, "remaining weights %"),               # an older history without training accuracy
    (True, [0.7, 0.8, 0.9], "remaining weights %")])
def test_curves_right_panel_shows_training_accuracy_for_a_baseline(tmp_path, monkeypatch, signed, train_accuracy,
                                                                  right_panel):
    from reporting import figures
    directory = tmp_path / "results" / "conv2_run"
    write_config(directory, "Conv2", "cifar10", signed=signed, runs=1)
    write_finished_run(directory, 0, 0.68, 0.7 if signed else 100.0, 1000, signed=signed)
    if train_accuracy is not None:
        history_path = directory / "run_0" / "history.json"
        history_path.write_text(json.dumps({**json.loads(history_path.read_text()), "train_accuracy": train_accuracy}))
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: drawn.append(figure) or True)
    experiment = next(iter(find_experiments(tmp_path / "results")))
    assert figures.plot_training_curves(experiment, tmp_path / "curves.png")
    left, right = drawn[0].axes
    assert left.get_ylabel() == "test accuracy %" and right.get_ylabel() == right_panel
    if right_panel == "training accuracy %":
        assert list(right.lines[0].get_ydata()) == pytest.approx([70.0, 80.0, 90.0])


def test_a_run_shorter_than_its_rows_protocol_is_marked_and_gets_no_difference(tmp_path):
    write_config(tmp_path / "fcn_signed", "FCN", "mnist", runs=1, epochs=2)      # configs/fcn_signed.yaml: 100
    write_finished_run(tmp_path / "fcn_signed", 0, 0.9578, 2.1, 5600)
    paths = report.write_report(tmp_path, draw=False)
    markdown = paths["md"].read_text()
    cells = [cell.strip() for cell in next(line for line in markdown.splitlines()
                                           if line.startswith("| FCN |")).split("|")]
    signed = cells[cells.index("fcn_signed (2/100 ep) [note 1]"):]
    assert signed[2].startswith("95.78") and signed[3].startswith("97.48")   # ours and the paper's, side by side
    assert [signed[4], signed[7], signed[10]] == ["–", "–", "–"]              # but no Δ
    note = next(line for line in markdown.splitlines() if line.startswith("1. **fcn_signed**"))
    assert "configs/fcn_signed.yaml" in note and "training.epochs 2 (protocol 100)" in note
    row = csv_rows(paths)["fcn_signed"]
    assert row["diff_accuracy"] == row["diff_remaining_percent"] == "" and "training.epochs 2" in row["protocol"]
    assert "paper_accuracy" in row and float(row["paper_accuracy"]) == pytest.approx(97.48)


def test_a_run_of_its_rows_protocol_gets_its_difference_without_a_note(tmp_path):
    root = Path(__file__).resolve().parents[1]
    config = {**yaml.safe_load((root / "configs" / "conv2_signed.yaml").read_text()), "runs": 1}
    (tmp_path / "conv2_signed").mkdir()
    (tmp_path / "conv2_signed" / "config.yaml").write_text(yaml.safe_dump(config))
    write_finished_run(tmp_path / "conv2_signed", 0, 0.6702, 0.72, 30_793)
    markdown = report.write_report(tmp_path, draw=False)["md"].read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| Conv2 |"))
    assert "| conv2_signed | 1 | 67.02" in row and "| -1.35 |" in row and "[note" not in row
    assert "every experiment ran its paper row's protocol" in markdown


def test_a_shortened_run_without_a_paper_row_is_marked_against_the_config_it_is_named_after(tmp_path):
    """ResNet56 on CIFAR-10 fills no paper row (the paper's ResNet56 is CIFAR-100); a 1-epoch run of it was
    listed unmarked."""
    from training.config import config_to_yaml, load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "resnet56_cifar10_signed.yaml"
    for folder, overrides, accuracy in (("resnet56_cifar10_signed+training.epochs=1", ["training.epochs=1"], 0.3),
                                        ("resnet56_cifar10_signed", [], 0.1)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.yaml").write_text(config_to_yaml(load_config(path, ["runs=1", *overrides])))
        write_finished_run(tmp_path / folder, 0, accuracy, 1.0, 20_000)
    markdown = report.write_report(tmp_path, draw=False)["md"].read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| resnet56_cifar10_signed")]
    assert rows[0].startswith("| resnet56_cifar10_signed | ResNet56 | CIFAR-10 |") and "[note" not in rows[0]
    assert rows[1].startswith("| resnet56_cifar10_signed+training.epochs=1 (1/") and "[note 1] |" in rows[1]


def test_figures_of_an_earlier_report_are_named_in_a_note_and_kept(tmp_path):
    """An experiment removed since the last report left its fig_curves_*.png; report.md never shows it, and
    report.py deletes nothing it did not write this time: it says which figures are stale."""
    write_config(tmp_path / "fcn_signed", "FCN", "mnist", runs=1)
    write_finished_run(tmp_path / "fcn_signed", 0, 0.95, 2.1, 5600)
    (tmp_path / "fig_curves_removed.png").write_bytes(b"\x89PNG old")
    paths = report.write_report(tmp_path, digit_source=lambda: None)
    [note] = [note for note in paths["notes"] if "earlier report" in note]
    assert note.endswith("(kept): fig_curves_removed.png") and (tmp_path / "fig_curves_removed.png").exists()
    assert "fig_curves_fcn_signed.png" not in note and "fig_curves_removed.png" in paths["md"].read_text()
    assert not [n for n in report.write_report(tmp_path, draw=False)["notes"] if "earlier report" in n]


def protocol_experiment(root, name, changes=None):
    """An experiment folder whose config is the repository's configs/<name>.yaml (one run), changed by ``changes``."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").read_text())
    config["runs"] = 1
    for section, values in (changes or {}).items():
        config[section] = {**config.get(section, {}), **values}
    (root / name).mkdir(parents=True)
    (root / name / "config.yaml").write_text(yaml.safe_dump(config))
    return root / name


def test_cifar_rows_figure_puts_ours_beside_the_paper(tmp_path, monkeypatch):
    from reporting import figures

    write_finished_run(protocol_experiment(tmp_path, "conv2_signed"), 0, 0.6702, 0.72, 30_793)
    write_finished_run(protocol_experiment(tmp_path, "conv2_baseline"), 0, 0.6791, 100.0, 4_300_992, signed=False)
    write_finished_run(protocol_experiment(tmp_path, "conv4_signed", {"training": {"epochs": 3}}), 0, 0.55, 9.0, 200_000)
    write_finished_run(protocol_experiment(tmp_path, "fcn_signed"), 0, 0.97, 3.7, 9_800)
    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda figure, path: drawn.append((path.name, figure)) or True)
    paths = report.write_report(tmp_path, digit_source=lambda: np.zeros(784))
    assert "fig_cifar_rows.png" in [path.name for path in paths["figures"]]
    figure = dict(drawn)["fig_cifar_rows.png"]
    points = {(round(float(x), 2), round(float(y), 2)) for line in figure.axes[0].lines
              for x, y in zip(line.get_xdata(), line.get_ydata())}
    assert {(0.72, 67.02), (0.6, 68.37), (100.0, 67.91), (100.0, 68.79)} <= points   # ours and the paper's
    assert {(0.6, 67.7), (0.6, 69.0), (0.58, 68.37), (0.62, 68.37)} <= points        # the paper's brackets
    assert not any(y in (55.0, 97.0, 77.4) for _, y in points)   # a 3-epoch Conv4 run and MNIST rows are not drawn
    assert [text.get_text() for text in figure.axes[0].texts] == ["Conv2 n=1", "Conv2 n=1"]


def test_cifar_rows_figure_is_skipped_with_a_note_without_cifar_rows(tmp_path):
    write_finished_run(protocol_experiment(tmp_path, "fcn_signed"), 0, 0.97, 3.7, 9_800)
    paths = report.write_report(tmp_path, digit_source=lambda: np.zeros(784))
    assert "fig_cifar_rows.png" not in [path.name for path in paths["figures"]]
    assert "CIFAR paper rows: no finished CIFAR run of a paper row's protocol" in paths["notes"]


def test_a_checkpointed_run_whose_job_ended_is_unfinished_not_running(tmp_path):
    """The run's claim names its job: gone from this host means interrupted or killed; alive, or no
    claim at all, means it may still be training."""
    import os
    import socket
    import subprocess
    import sys

    from reporting.collect import read_run

    experiment = tmp_path / "fcn_signed"
    experiment.mkdir()
    write_checkpoint(experiment / "run_0", epochs=6)
    assert read_run(experiment / "run_0", 0, 40).status == "running"   # never claimed
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (experiment / ".run_0.claim").write_text(f"pid {gone.stdout.strip()} on {socket.gethostname()}\n")
    status = read_run(experiment / "run_0", 0, 40)
    assert (status.status, status.detail) == ("unfinished", f"stopped after epoch 6/40 (its job, pid "
                                              f"{gone.stdout.strip()}, ended; the same command resumes it)")
    (experiment / ".run_0.claim").write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
    assert read_run(experiment / "run_0", 0, 40).status == "running"
    (experiment / ".run_0.claim").write_text(f"pid {gone.stdout.strip()} on another-host\n")
    assert read_run(experiment / "run_0", 0, 40).status == "running"


def test_a_truncated_checkpoint_is_shown_as_corrupt_not_empty(tmp_path):
    from reporting.collect import read_run

    run = tmp_path / "fcn_signed" / "run_0"
    run.parent.mkdir()
    write_checkpoint(run, epochs=2)
    checkpoint = run / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    status = read_run(run, 0, 40)
    assert status.status == "corrupt" and status.detail.startswith("checkpoint.npz unreadable (")
    assert status.detail.endswith("the same command sets it aside and trains the run again")
    checkpoint.unlink()
    assert read_run(run, 0, 40).status == "empty"
