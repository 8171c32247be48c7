"""reporting/studies.py: the report hooks of the mask-mode and runs-table studies on hand-written run
records (the runs are read through reporting.collect, never from summary.json): each experiment's label,
and a marker on experiments trained otherwise than the study defines them."""
import json
from pathlib import Path

from masking import MASK_MODES
import pytest

from reporting.studies import MODE_COLOURS, write_study_report
from training.config import config_to_yaml
from training.study import load_study, results_folder, study_config

ROOT = Path(__file__).resolve().parents[1]


def finished_run(folder, accuracy, remaining, config_text=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(
        {"status": "finished", "final": {"test_accuracy": accuracy, "remaining_percent": remaining,
                                         "remaining_count": 9000}}))
    if config_text:
        (folder.parent / "config.yaml").write_text(config_text)


def test_mask_modes_table_and_figure_from_run_records(tmp_path):
    study = load_study("mask_modes")
    assert set(MODE_COLOURS) == set(MASK_MODES)
    for index, (accuracy, remaining) in enumerate(((0.97, 3.7), (0.975, 3.6))):
        finished_run(tmp_path / "signed_closest" / f"run_{index}", accuracy, remaining,
                     config_to_yaml(study_config(study, "signed_closest")))
    (tmp_path / "signed_closest" / "summary.json").write_text("{stale, never read")
    matched = config_to_yaml(study_config(study, "top_k_matched")).replace("keep_fraction: 1.0", "keep_fraction: 0.0365")
    finished_run(tmp_path / "top_k_matched" / "run_0", 0.93, 3.65, matched)   # its own k, not a difference
    text, written = write_study_report(study, tmp_path)
    table = (tmp_path / "mask_modes.md").read_text()
    assert table == text and written == [tmp_path / "mask_modes.md", tmp_path / "mask_modes.png"]
    assert table.startswith("| row | label | mode | config | k | runs | test accuracy % | remaining % |\n")
    assert "| signed_closest | signed, closest setting to the paper's row | signed | " \
           "`fcn_signed_closest_to_paper.yaml` | – | 2 | 97.25 [97.00, 97.50] | 3.65 [3.60, 3.70] |" in table
    assert "| top_k_matched | top-k (edge-popup rule), k = signed_closest's remaining % | top_k | " \
           "`fcn_signed_closest_to_paper.yaml` | 3.65 % | 1 |" in table
    assert (tmp_path / "mask_modes.png").stat().st_size > 1000


def test_runs_table_lists_each_experiment_with_its_overrides(tmp_path):
    study = load_study("fcn_study")
    finished_run(tmp_path / "port_B" / "run_0", 0.955, 2.1)
    text, written = write_study_report(study, tmp_path, draw=False)
    assert written == [tmp_path / "fcn_study.md"] and (tmp_path / "fcn_study.md").read_text() == text
    assert text.splitlines()[2] == ("| port_B | `fcn_signed.yaml` training.schedule.kind=exp_continuous | 1 | "
                                    "95.50 [95.50, 95.50] | 2.10 [2.10, 2.10] |")
    assert len(text.splitlines()) == 3


def test_runs_table_shows_the_labels_of_a_study_that_labels_its_experiments(tmp_path):
    path = tmp_path / "labelled.yaml"
    path.write_text("report: runs_table\nexperiments:\n  a: {config: fcn_signed.yaml, label: the port | as is}\n"
                    "  b: {config: fcn_baseline.yaml}\n")
    finished_run(tmp_path / "out" / "a" / "run_0", 0.955, 2.1)
    finished_run(tmp_path / "out" / "b" / "run_0", 0.98, 100.0)
    text, _ = write_study_report(load_study(path), tmp_path / "out", draw=False)
    assert text.splitlines()[0] == "| experiment | label | config and overrides | runs | test accuracy % | remaining % |"
    assert text.splitlines()[2].startswith("| a | the port \\| as is | `fcn_signed.yaml` | 1 |")
    assert text.splitlines()[3].startswith("| b | – | `fcn_baseline.yaml` | 1 |")


SHORT = ["data.train_limit=2000", "data.test_limit=500", "training.epochs=2"]


@pytest.mark.parametrize("study_name, name, line", [
    ("fcn_study", "port_B", "| port_B (2/100 ep, 2000 train images, 500 test images) | `fcn_signed.yaml` "
                            "training.schedule.kind=exp_continuous | 1 |"),
    ("mask_modes", "binary_port", "| binary_port (2/100 ep, 2000 train images, 500 test images) | binary (keep/hide), "
                                  "port setting | binary | `fcn_signed.yaml` | – | 1 |"),
])
def test_a_run_shortened_on_the_command_line_is_marked_as_report_py_marks_it(tmp_path, study_name, name, line):
    """Runs trained with --set fewer epochs / images are marked against the study's own experiment (its
    set: included), where they are read: under the command line's folder, or copied to the plain one."""
    study = load_study(study_name)
    short = config_to_yaml(study_config(study, name, SHORT))
    finished_run(tmp_path / results_folder(study, name, SHORT) / "run_0", 0.778, 59.1, short)
    text, _ = write_study_report(study, tmp_path, draw=False, overrides=SHORT)
    assert line in text
    finished_run(tmp_path / name / "run_0", 0.778, 59.1, short)   # a shortened run under the plain name
    assert line in write_study_report(study, tmp_path, draw=False)[0]
    full = tmp_path / "full"
    finished_run(full / name / "run_0", 0.97, 3.0, config_to_yaml(study_config(study, name)))
    text, _ = write_study_report(study, full, draw=False)
    assert f"| {name} | " in text and f"| {name} (" not in text


def test_a_run_longer_or_otherwise_changed_on_the_command_line_names_the_keys_and_the_study_set_is_shown(tmp_path):
    """A --set that plans more epochs (or any other result-changing value) is not the study's experiment:
    the row names the key and value; the config column shows the study's set: for all experiments."""
    path = tmp_path / "mine.yaml"
    path.write_text("report: runs_table\nset: [training.epochs=2, data.train_limit=1024]\n"
                    "experiments:\n  a: {config: fcn_signed.yaml}\n")
    study = load_study(path)
    longer = ["training.epochs=40", "optimizer.lr=0.1"]
    out = tmp_path / "out"
    finished_run(out / results_folder(study, "a", longer) / "run_0", 0.95, 2.0,
                 config_to_yaml(study_config(study, "a", longer)))
    text, _ = write_study_report(study, out, draw=False, overrides=longer)
    assert text.splitlines()[2].startswith("| a (optimizer.lr=0.1, training.epochs=40) | `fcn_signed.yaml` "
                                           "training.epochs=2 data.train_limit=1024 | 1 |"), text
    finished_run(out / "a" / "run_0", 0.9, 2.0, config_to_yaml(study_config(study, "a")))
    assert "| a | `fcn_signed.yaml` training.epochs=2" in write_study_report(study, out, draw=False)[0]


def test_the_report_of_set_runs_is_named_as_their_folders_and_leaves_the_studys_own_report_alone(tmp_path):
    study = load_study("fcn_study")
    finished_run(tmp_path / "port_B" / "run_0", 0.955, 2.1)
    _, [own] = write_study_report(study, tmp_path, draw=False)
    before = own.read_text()
    finished_run(tmp_path / results_folder(study, "port_B", SHORT) / "run_0", 0.5, 50.0,
                 config_to_yaml(study_config(study, "port_B", SHORT)))
    _, [smoke] = write_study_report(study, tmp_path, draw=False, overrides=SHORT)
    assert smoke.name == "fcn_study" + results_folder(study, "port_B", SHORT)[len("port_B"):] + ".md"
    assert own.read_text() == before and "50.00" in smoke.read_text() and "50.00" not in before
