"""reporting/studies.py: the report hooks of the mask-mode and runs-table studies on hand-written run
records (the runs are read through reporting.collect, never from summary.json)."""
import json
from pathlib import Path

from masking import MASK_MODES
from reporting.studies import MODE_COLOURS, write_study_report
from training.study import load_study

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
                     "model: {mask_mode: signed}\n")
    (tmp_path / "signed_closest" / "summary.json").write_text("{stale, never read")
    finished_run(tmp_path / "top_k_matched" / "run_0", 0.93, 3.65,
                 "model: {mask_mode: top_k, keep_fraction: 0.0365}\n")
    text, written = write_study_report(study, tmp_path)
    table = (tmp_path / "mask_modes.md").read_text()
    assert table == text and written == [tmp_path / "mask_modes.md", tmp_path / "mask_modes.png"]
    assert "| signed_closest | signed | `fcn_signed_closest_to_paper.yaml` | – | 2 | 97.25 [97.00, 97.50] | " \
           "3.65 [3.60, 3.70] |" in table
    assert "| top_k_matched | top_k | `fcn_signed_closest_to_paper.yaml` | 3.65 % | 1 |" in table
    assert (tmp_path / "mask_modes.png").stat().st_size > 1000


def test_runs_table_lists_each_experiment_with_its_overrides(tmp_path):
    study = load_study("fcn_study")
    finished_run(tmp_path / "port_B" / "run_0", 0.955, 2.1)
    text, written = write_study_report(study, tmp_path, draw=False)
    assert written == [tmp_path / "fcn_study.md"] and (tmp_path / "fcn_study.md").read_text() == text
    assert text.splitlines()[2] == ("| port_B | `fcn_signed.yaml` training.schedule.kind=exp_continuous | 1 | "
                                    "95.50 [95.50, 95.50] | 2.10 [2.10, 2.10] |")
    assert len(text.splitlines()) == 3
