"""training/study.py: study files (typed schema, base: composition, one-line errors naming file and key),
the plan of a study and the matched keep fraction of the top-k rows."""
import json
import re
from pathlib import Path

import pytest

from models.registry import model_family
from reporting.paper import AUTHORS_RUNS, PAPER_ROWS
from reporting.studies import HOOKS
from training.experiment_folder import check_results_folder
from training.schema import ConfigError
from training.schema import describe
from training.study import (EXAMPLE, REPORTS, STUDIES, Study, StudyExperiment, load_study, matched_keep_fraction,
                            plan_study, resolved, study_reference_markdown)

ROOT = Path(__file__).resolve().parents[1]
STUDY_FILES = sorted(STUDIES.glob("*.yaml"))


def write(path, text):
    path.write_text(text)
    return path


def finished_run(folder, accuracy, remaining):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(
        {"status": "finished", "final": {"test_accuracy": accuracy, "remaining_percent": remaining,
                                         "remaining_count": 9000}}))


def test_the_studies_are_files_and_every_one_plans(tmp_path):
    assert {path.stem for path in STUDY_FILES} >= {"paper_main", "fcn_seeds", "mask_modes", "agreement",
                                                    "fcn_study", "cifar_queue"}
    for path in STUDY_FILES:
        study = load_study(path)
        plan = plan_study(study, tmp_path)
        assert [planned.name for planned in plan] == list(study.experiments), path
        assert all(planned.to_train == list(range(planned.runs)) for planned in plan)
        assert all(planned.config is None or planned.config.experiment == planned.name for planned in plan)


@pytest.mark.parametrize("name, shipped", [("mask_modes", "mask_modes"), ("fcn_seeds", "fcn_seeds"), ("agreement", "")])
def test_the_shipped_runs_are_the_studys_own_and_finished(name, shipped):
    """measured/ holds exactly what each study trains: same configs (the folders accept the study's
    experiments) and every planned run finished, so re-running the study trains nothing."""
    out = ROOT / "measured" / shipped
    plan = plan_study(load_study(name), out)
    for planned in plan:
        check_results_folder(planned.config, out)
    assert [(planned.name, planned.to_train) for planned in plan] == [(planned.name, []) for planned in plan]


def test_report_names_and_hooks_agree():
    assert set(REPORTS) == set(HOOKS)


def test_study_reference_doc_is_current():
    assert (ROOT / "docs" / "STUDY.md").read_text() == study_reference_markdown(), \
        "regenerate with: python -m training.study > docs/STUDY.md"


def test_study_reference_documents_every_key_and_report_hook():
    """Each key of a study and of its experiments has a description, each report hook says what it writes,
    and the doc lists them all."""
    text = study_reference_markdown()
    for key, _, doc, _, _ in describe(Study) + describe(StudyExperiment, "experiments.<name>."):
        assert len(doc) > 20 and f"| `{key}` |" in text, key
    assert all(len(REPORTS[name]) > 20 and f"| `{name}` | {REPORTS[name]} |" in text for name in HOOKS)


def test_the_reference_example_is_a_study_that_plans(tmp_path):
    study = load_study(write(tmp_path / "my_study.yaml", EXAMPLE))
    assert study.report == "runs_table" and all(entry.label for entry in study.experiments.values())
    plan = plan_study(study, tmp_path)
    assert [(planned.name, planned.runs) for planned in plan] == [("schedule_A", 2), ("schedule_B", 2)]
    assert "```yaml\n" + EXAMPLE in study_reference_markdown()


def test_the_main_table_study_names_every_paper_row_twice():
    study = load_study("paper_main")
    assert sorted((entry.row, entry.side) for entry in study.experiments.values()) == \
        sorted((row, side) for row in PAPER_ROWS for side in ("signed", "baseline"))
    assert all(entry.config == f"{name}.yaml" for name, entry in study.experiments.items())


def test_the_agreement_study_trains_the_authors_epochs_with_their_settings(tmp_path):
    study = load_study("agreement")
    assert set(study.experiments) == set(AUTHORS_RUNS)
    plan = {planned.name: planned for planned in plan_study(study, tmp_path)}
    for name, planned in plan.items():
        assert planned.config.training.epochs == AUTHORS_RUNS[name].epochs and planned.runs == 3
    conv2, resnet = plan["agreement_conv2"].config, plan["agreement_resnet20"].config
    assert (conv2.runs, conv2.training.epochs, conv2.training.schedule.kind, conv2.training.shuffle) == \
        (3, 3, "exp_continuous", True)
    assert (conv2.optimizer.lr, conv2.optimizer.wd, conv2.model.threshold_fraction) == (0.04, 5e-4, 0.4)
    bn_mode = resnet.model.bn_mode or model_family("ResNet20").default_bn_mode(signed=True)   # null: the authors'
    assert (resnet.training.epochs, bn_mode, resnet.optimizer.lr, resnet.optimizer.wd) == (2, "stem_only", 0.3, 3e-4)

    assert resnet.data.augment is False and resnet.data.train_limit is None


def test_the_queue_script_runs_the_queue_study():
    script = (ROOT / "bench" / "longrun_queue.sh").read_text()
    assert "reproduce.py cifar_queue" in script and "train.py" not in script



def test_mask_mode_study_matches_k_to_signed_closest(tmp_path):
    study = load_study("mask_modes")
    plan = {planned.name: planned for planned in plan_study(study, tmp_path)}
    matched = plan["top_k_matched"]
    assert matched.config is None and "waits for a finished run of signed_closest" in matched.note
    assert resolved(matched, study, tmp_path) is None                  # nothing to match k to yet
    assert matched_keep_fraction(tmp_path, "signed_closest") is None
    for index, (accuracy, remaining) in enumerate(((0.97, 3.7), (0.975, 3.6))):
        finished_run(tmp_path / "signed_closest" / f"run_{index}", accuracy, remaining)
    assert matched_keep_fraction(tmp_path, "signed_closest") == 0.0365
    ready = resolved(matched, study, tmp_path)
    assert (ready.config.model.mask_mode, ready.config.model.keep_fraction) == ("top_k", 0.0365)
    assert ready.overrides[-2:] == ["model.keep_fraction=0.0365", "experiment=top_k_matched"]
    assert plan["signed_port"].overrides == ["experiment=signed_port"]
    assert plan["top_k_10"].config.model.keep_fraction == 0.1 and plan["binary_port"].config.model.mask_mode == "binary"


def test_binary_configs_say_what_the_study_runs_and_no_stale_bernoulli_text():
    for path in sorted((ROOT / "configs" / "mask_modes").glob("*_binary.yaml")):
        text = path.read_text()
        assert "not implemented" not in text and "mask_mode bernoulli" in text, path
    assert "does not train this file" in (ROOT / "configs" / "mask_modes" / "fcn_binary.yaml").read_text()


def test_command_line_overrides_and_runs_apply_to_every_experiment(tmp_path):
    plan = plan_study(load_study("fcn_seeds"), tmp_path, runs=2, overrides=["training.epochs=1"])
    assert [(planned.runs, planned.config.training.epochs, planned.config.runs) for planned in plan] == [(2, 1, 2)] * 3
    finished_run(tmp_path / "fcn_baseline" / "run_1", 0.97, 100.0)
    again = plan_study(load_study("fcn_seeds"), tmp_path, runs=2, only=["fcn_baseline"])
    assert [(planned.name, planned.to_train) for planned in again] == [("fcn_baseline", [0])]


def test_base_composes_studies_experiment_by_experiment(tmp_path):
    write(tmp_path / "small.yaml", f"base: {STUDIES / 'fcn_seeds.yaml'}\nruns: 2\nset: [training.epochs=1]\n"
                                   "experiments:\n  fcn_baseline: {side: null}\n")
    study = load_study(tmp_path / "small.yaml")
    assert study.runs == 2 and study.report == "fcn_seeds" and study.set == ["training.epochs=1"]
    assert study.experiments["fcn_baseline"].side is None and study.experiments["fcn_baseline"].config == "fcn_baseline.yaml"
    assert study.out == "results/small"


@pytest.mark.parametrize("text, culprit", [
    ("experiments: {a: {config: fcn_signed.yaml, seeds: 3}}", "experiments.a.seeds: unknown key"),
    ("runz: 3\nexperiments: {a: {config: fcn_signed.yaml}}", "runz: unknown key"),
    ("experiments: {a: {config: fcn_signed.yaml, set: training.epochs=1}}", "experiments.a.set: expected a list"),
    ("experiments: {a: {config: fcn_signed.yaml, set: [3]}}", "experiments.a.set[0]: expected a string"),
    ("experiments: {a: {config: nothing.yaml}}", "experiments.a.config: nothing.yaml: no such file"),
    ("experiments: {a: {config: ../README.md}}", "experiments.a.config: ../README.md: not a path under configs/"),
    ("experiments: {a: {}}", "experiments.a.config: missing"),
    ("experiments: {}", "experiments: a study names at least one experiment"),
    ("# nothing yet", "empty file; a study names at least one experiment"),
    ("experiments: [a, b]", "experiments: expected a mapping"),
    ("report: table\nexperiments: {a: {config: fcn_signed.yaml}}", "report: 'table' is not one of"),
    ("experiments: {a: {config: fcn_signed.yaml, runs: 0}}", "experiments.a.runs: must be >= 1"),
    ("experiments: {a: {config: fcn_signed.yaml, match_keep_fraction_of: b}, b: {config: fcn_signed.yaml}}",
     "experiments.a.match_keep_fraction_of: 'b' is no experiment listed before it"),
    ("base: nothing.yaml\nexperiments: {a: {config: fcn_signed.yaml}}", "base: "),
])
def test_a_bad_study_is_one_line_naming_the_file_and_key(tmp_path, text, culprit):
    path = write(tmp_path / "bad.yaml", text + "\n")
    with pytest.raises(ConfigError) as error:
        load_study(path)
    message = str(error.value)
    assert message.startswith(str(path)) and culprit in message and "\n" not in message, message


def test_a_bad_override_names_the_study_the_experiment_and_the_key(tmp_path):
    path = write(tmp_path / "bad.yaml", "experiments: {a: {config: fcn_signed.yaml, set: [optimizer.lrr=1]}}\n")
    with pytest.raises(ConfigError) as error:
        plan_study(load_study(path), tmp_path)
    assert re.match(rf"{re.escape(str(path))}: experiments.a: .*optimizer.lrr: unknown key", str(error.value))
    with pytest.raises(ConfigError, match="--only: 'nope' is no experiment"):
        plan_study(load_study("fcn_seeds"), tmp_path, only=["nope"])
