"""reporting/agreement.py: the authors' docs/SPEC.md §13 numbers (reporting/paper.AUTHORS_RUNS) beside our
seed range, and the agreement study on a tiny real run."""
import json

import pytest
from conftest import real_data_dir

from reporting.agreement import case_table, write_agreement
from reporting.paper import AUTHORS_RUNS
from reporting.studies import write_study_report
from training.study import load_study, plan_study
from training.study_run import run_study

SMOKE = ["data.train_limit=128", "data.test_limit=128"]


def history(remaining, accuracy):
    return {"remaining_percent": list(remaining), "test_accuracy": [a / 100 for a in accuracy]}


def test_authors_numbers_are_method_13():
    conv2, resnet = AUTHORS_RUNS["agreement_conv2"], AUTHORS_RUNS["agreement_resnet20"]
    assert conv2.section == "SPEC §13.2" and conv2.epochs == 3
    assert conv2.remaining_percent == (59.98, 51.33, 40.98, 28.55) and conv2.test_accuracy == (52.82, 57.86, 62.15)
    assert resnet.section == "SPEC §13.3" and resnet.epochs == 2
    assert resnet.remaining_percent == (24.95, 17.08, 13.52) and resnet.test_accuracy == (40.58, 51.10)


def test_table_puts_authors_beside_mean_min_max_and_flags_more_than_one_point_outside():
    histories = [history((60.0, 51.0, 41.0, 28.0), (52.0, 58.0, 60.0)),
                 history((59.9, 51.6, 40.0, 29.0), (53.0, 57.0, 60.5))]
    table, flagged = case_table("agreement_conv2", histories)
    lines = table.splitlines()
    assert "| 0 (init) | – | – | 59.98 | 59.95 [59.90, 60.00] |" in lines
    assert "| 1 | 52.82 | 52.50 [52.00, 53.00] | 51.33 | 51.30 [51.00, 51.60] |" in lines
    assert "| 3 | 62.15 **!** | 60.25 [60.00, 60.50] | 28.55 | 28.50 [28.00, 29.00] |" in lines
    assert flagged == ["Conv2 / CIFAR-10 epoch 3 test accuracy: authors 62.15, ours 60.25 [60.00, 60.50]"]


def test_an_experiment_without_an_authors_run_is_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "bad.yaml").write_text("report: agreement\nexperiments: {conv3: {config: conv2_signed.yaml}}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: experiments.conv3: no run of the authors'"):
        write_agreement(load_study(tmp_path / "bad.yaml"), tmp_path / "a", {})
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_smoke_run_trains_the_seeds_and_writes_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("cifar10_jpeg.npz")))
    out, study = tmp_path / "agreement", load_study("agreement")
    plan = plan_study(study, out, runs=2, overrides=SMOKE, only=["agreement_conv2"])
    assert run_study(plan, study, out) == []
    experiment = out / plan[0].folder   # SMOKE's --set: a folder of its own
    for index in (0, 1):
        info = json.loads((experiment / f"run_{index}" / "run.json").read_text())
        assert info["status"] == "finished" and info["epochs_trained"] == 3 and info["seed"] == 7531 + index
    printed, [written] = write_study_report(study, out, overrides=SMOKE)
    text = written.read_text()
    assert printed == text and written.name == f"agreement{plan[0].folder[len('agreement_conv2'):]}.md"
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 0 (init)", "| 1", "| 2", "| 3", "| 0 (init)", "| 1", "| 2"]
    assert "2 finished seeds" in text and "0 finished seeds" in text
    init_remaining = rows[0].split(" | ")[4]
    assert 59 < float(init_remaining.split()[0]) < 61   # p = 0.4 on uniform scores keeps ~60 %, as the authors' 59.98
