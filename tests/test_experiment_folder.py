"""training/experiment_folder.py: one config per results folder (claimed under the folder lock, before
any slow work), bookkeeping keys that may differ, and summaries that never drop a run."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from training import experiment_folder
from training.config import load_config
from training.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]


CLAIM = """
import sys, time
sys.path.insert(0, {root!r})
from training import experiment_folder
from training.config import load_config
from training.schema import ConfigError
config = load_config({config!r}, ["optimizer.lr=" + sys.argv[1]])
late = time.time() > float(sys.argv[2])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    experiment_folder.claim_results_folder(config, {out!r})
    print("claimed", "keras" in sys.modules, "late" if late else "on-time")
except ConfigError as error:
    print("refused", "different config" in str(error), "late" if late else "on-time")
"""


@pytest.mark.slow
def test_jobs_with_different_configs_started_together_cannot_share_a_folder(tmp_path):
    """Six jobs claim one folder at the same instant; only if all reach that instant together is the
    lock what decides (a busy machine gets a second, longer lead)."""
    config = tmp_path / "exp.yaml"
    config.write_text("training: {epochs: 1}\n")
    for attempt, lead in enumerate((3.0, 10.0)):
        out = tmp_path / f"results{attempt}"
        script = CLAIM.format(root=str(ROOT), config=str(config), out=str(out))
        start = time.time() + lead
        jobs = [subprocess.Popen([sys.executable, "-c", script, lr, str(start)], stdout=subprocess.PIPE, text=True)
                for lr in ("0.01", "0.02") * 3]
        outcomes = [(lr, job.communicate(timeout=60)[0].split()) for lr, job in zip(("0.01", "0.02") * 3, jobs)]
        if all(outcome[-1] == "on-time" for _, outcome in outcomes):
            break
    assert all(outcome[-1] == "on-time" for _, outcome in outcomes), f"jobs did not start together: {outcomes}"
    outcomes = [(lr, outcome[:-1]) for lr, outcome in outcomes]
    winners = {lr for lr, outcome in outcomes if outcome[0] == "claimed"}
    assert len(winners) == 1, outcomes
    assert all(outcome == (["claimed", "False"] if lr in winners else ["refused", "True"]) for lr, outcome in outcomes)
    saved = load_config(out / "exp" / "config.yaml")
    assert saved.optimizer.lr == float(winners.pop())


def test_folder_made_with_other_bookkeeping_keys_is_reused_and_one_with_a_retired_key_is_refused(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("training: {epochs: 1}\n")
    out = tmp_path / "results"
    experiment = experiment_folder.claim_results_folder(load_config(config), out)
    saved = experiment / "config.yaml"
    again = load_config(config, ["runs=9", "training.steps_per_execution=3", "training.eval_batch_size=7",
                                 "description=other words", "data.dir=/elsewhere"])
    assert experiment_folder.claim_results_folder(again, out) == experiment
    with pytest.raises(ConfigError, match="different config"):
        experiment_folder.claim_results_folder(load_config(config, ["training.batch_size=64"]), out)
    saved.write_text(saved.read_text().replace("optimizer:\n", "optimizer:\n  name: sgdw\n"))
    assert "name: sgdw" in saved.read_text()
    with pytest.raises(ConfigError, match=r"config\.yaml: optimizer\.name: unknown key.*restore it"):
        experiment_folder.claim_results_folder(again, out)
    saved.write_text("[unreadable")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML.*restore it"):
        experiment_folder.claim_results_folder(again, out)


def test_a_config_left_by_a_start_that_saved_no_epoch_is_named_as_such(tmp_path):
    """A start stopped before its first epoch (Ctrl-C, a bad init file) leaves config.yaml and perhaps a run
    folder holding only its config.yaml: the refusal of an edited config says so and what to do; once a run
    has saved anything, the refusal speaks of results."""
    config = tmp_path / "exp.yaml"
    config.write_text("training: {epochs: 1}\n")
    out = tmp_path / "results"
    experiment = experiment_folder.claim_results_folder(load_config(config), out)
    (experiment / "run_0").mkdir()
    (experiment / "run_0" / "config.yaml").write_text((experiment / "config.yaml").read_text())
    edited = load_config(config, ["training.epochs=2"])
    with pytest.raises(ConfigError, match=r"config\.yaml: written for a different config \(training\.epochs: 1 there, 2 here\) "
                                          r"by a start that saved no epoch; delete it .* or use --out$"):
        experiment_folder.claim_results_folder(edited, out)
    with pytest.raises(ConfigError, match="by a start that saved no epoch"):
        experiment_folder.check_results_folder(edited, out)
    for written in ("checkpoint.npz", "history.json", "run.json"):
        (experiment / "run_0" / written).write_text("{}")
        with pytest.raises(ConfigError, match=r"results there were made with a different config \(training\."
                                              r"epochs: 1 there, 2 here\); use --out"):
            experiment_folder.claim_results_folder(edited, out)
        (experiment / "run_0" / written).unlink()
    (experiment / "config.yaml").unlink()
    assert experiment_folder.claim_results_folder(edited, out) == experiment


def test_concurrent_summaries_never_drop_a_finished_run(tmp_path, monkeypatch):
    """Each job writes its run.json, then recomputes summary.json; a slow writer must not overwrite
    the summary with a stale run list (the lock serialises list-then-write). The first job's write is
    the slow one, so without the lock its one-run list would land last."""
    import training.results as results

    original_write = results.write_json
    summary_writes = []

    def slow_summary_write(path, payload):
        if Path(path).name == "summary.json":
            summary_writes.append(path)
            if len(summary_writes) == 1:
                time.sleep(0.5)
        original_write(path, payload)

    monkeypatch.setattr(results, "write_json", slow_summary_write)
    final = {"test_accuracy": 0.9, "remaining_percent": 3.0, "remaining_count": 30}

    def job(index):
        (tmp_path / f"run_{index}").mkdir()
        original_write(tmp_path / f"run_{index}" / "run.json", {"status": "finished", "final": final})
        experiment_folder.update_summary(tmp_path)

    threads = [threading.Thread(target=job, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished_runs"] == ["run_0", "run_1", "run_2", "run_3"]



def test_unfinished_runs_are_those_without_a_finished_run_json(tmp_path):
    final = '{"test_accuracy": 0.9, "remaining_percent": 4.0, "remaining_count": 10}'
    for index, text in ((0, '{"status": "finished", "final": %s}' % final), (1, "{broken"),
                        (2, '{"status": "failed"}')):
        (tmp_path / f"run_{index}").mkdir()
        (tmp_path / f"run_{index}" / "run.json").write_text(text)
    assert experiment_folder.unfinished_runs(tmp_path, range(5)) == [1, 2, 3, 4]
    assert experiment_folder.unfinished_runs(tmp_path / "none", [0, 3]) == [0, 3]


def test_a_file_where_a_run_folder_goes_is_named_as_the_thing_to_move(tmp_path):
    (tmp_path / "run_0").write_text("in the way")
    assert experiment_folder.where_runs_stand(tmp_path, [0]) == (
        f"{tmp_path / 'run_0'} is a file, not a run folder: move it away, then the same command starts the run")
    assert experiment_folder.where_runs_stand(tmp_path, [1]).endswith("has no saved epoch yet; the same command "
                                                                      "starts it again")
