"""Writes that fail, stops in the middle and numbers too large to honour (issue 27, causes 10, 11, 12 and
the "not promised" Ctrl-C and FIFO config): one line naming the file and where the run stands, exit 2
(130 for Ctrl-C), and every file already written kept."""
import errno
import os
import pathlib
import sys
import time
from pathlib import Path

import pytest
from conftest import real_data_dir
from test_adversarial_bounds import rescued_after
from test_adversarial_files import limited_run

import fileio
import train
import training.callbacks
from training.callbacks import EpochLog
from training.config import MAX_RUNS, OptimizerConfig, load_config
from training.optim import divergence_hint
from training.run_state import CHECKPOINT, read_checkpoint_state

ROOT = Path(__file__).resolve().parents[1]


def tiny_train(tmp_path, *extra):
    """train.py on a tiny FCN (2 epochs of 5 batches): (exit code, its run folder)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(f"base: {ROOT / 'configs' / 'fcn_signed.yaml'}\nexperiment: tiny\nruns: 1\n"
                      "data: {train_limit: 600, test_limit: 100}\ntraining: {epochs: 2}\n")
    arguments = [str(config), "--out", str(tmp_path / "out"), "--quiet", "--data-dir", str(real_data_dir("mnist.npz")),
                 *extra]
    return train.main(arguments), tmp_path / "out" / "tiny" / "run_0"


def error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "interrupted"))]


# Cause 10: a full disk, a read-only folder or a file in the way is one line, and nothing is lost.

@pytest.mark.slow
@pytest.mark.parametrize("failing_epoch", [1, 2])
def test_full_disk_at_a_checkpoint_keeps_the_last_good_one_and_says_so(tmp_path, capsys, monkeypatch, failing_epoch):
    writes = []

    def full_disk_on_the_nth_checkpoint(path, data):
        writes.append(path)
        if len(writes) < failing_epoch:
            return fileio.atomic_write_bytes(path, data)
        with fileio.atomic_path(path) as temporary:
            temporary.write_bytes(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training.callbacks, "atomic_write_bytes", full_disk_on_the_nth_checkpoint)
    code, run_folder = tiny_train(tmp_path)
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {run_folder / CHECKPOINT}: No space left on device; {run_folder} ")
    if failing_epoch == 1:
        assert "has no saved epoch yet" in lines[0] and not (run_folder / CHECKPOINT).exists()
    else:
        assert "keeps its checkpoint of epoch 1; the same command resumes from there" in lines[0]
        assert read_checkpoint_state(run_folder / CHECKPOINT)["epochs"] == 1
    assert not [path.name for path in run_folder.iterdir() if path.name.startswith(".")], "a temporary was left"


def test_a_damaged_run_json_in_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    run_folder = tmp_path / "out" / "tiny" / "run_0"
    run_folder.mkdir(parents=True)
    (run_folder / "run.json").write_text("{ damaged")

    def read_only(self, target):
        raise PermissionError(errno.EACCES, "Permission denied", str(self), str(target))

    monkeypatch.setattr(pathlib.Path, "rename", read_only)
    code, _ = tiny_train(tmp_path)
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {run_folder / 'run.json'}: cannot move this damaged file aside")
    assert (run_folder / "run.json").read_text() == "{ damaged"


@pytest.mark.parametrize("blocked", ["run_0", "run_0/tensorboard"])
def test_a_file_where_a_folder_goes_is_one_line(tmp_path, capsys, blocked):
    blocker = tmp_path / "out" / "tiny" / blocked
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file")
    code, _ = tiny_train(tmp_path, "--tensorboard")
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {blocker}: not a folder (a file is in the way); ")
    assert blocker.read_text() == "a file"


@pytest.mark.slow
def test_summary_that_cannot_be_written_after_the_run_keeps_the_run(tmp_path, capsys):
    summary = tmp_path / "out" / "tiny" / "summary.json"
    summary.mkdir(parents=True)
    code, run_folder = tiny_train(tmp_path)
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {summary}: ") and lines[0].endswith("every run is finished and kept")
    assert (run_folder / "run.json").exists() and (run_folder / "masks.npz").exists()


# Not promised before: Ctrl-C says where the run resumes, in one line, exit 130.

@pytest.mark.slow
def test_ctrl_c_says_where_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    original = EpochLog.on_epoch_end

    def interrupted_after_epoch_one(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochLog, "on_epoch_end", interrupted_after_epoch_one)
    code, run_folder = tiny_train(tmp_path)
    lines = error_lines(capsys)
    assert code == 130 and lines == [f"interrupted: {run_folder} keeps its checkpoint of epoch 1; "
                                     "the same command resumes from there"]
    assert read_checkpoint_state(run_folder / CHECKPOINT)["epochs"] == 1


@pytest.mark.slow
def test_sigterm_says_where_the_same_command_resumes_and_exits_143(tmp_path, capsys, monkeypatch):
    """What a cluster sends on scancel, preemption or a time limit; the handler is train.py's only while it
    trains."""
    import os
    import signal
    original = EpochLog.on_epoch_end
    before = signal.getsignal(signal.SIGTERM)

    def terminated_after_epoch_one(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(EpochLog, "on_epoch_end", terminated_after_epoch_one)
    code, run_folder = tiny_train(tmp_path)
    lines = error_lines(capsys)
    assert code == 143 and lines == [f"interrupted: {run_folder} keeps its checkpoint of epoch 1; "
                                     "the same command resumes from there"]
    assert signal.getsignal(signal.SIGTERM) == before


# Not promised before: a FIFO as the config blocked forever.

def test_fifo_as_config_is_refused_at_once(tmp_path, capsys):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with rescued_after(fifo, 3):
        code = train.main([str(fifo), "--out", str(tmp_path / "out")])
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1 and "not a regular file" in lines[0] and str(fifo) in lines[0]
    assert time.perf_counter() - started < 2 and not (tmp_path / "out").exists()


# Cause 11: integers that would size a loop or an array are bounded where they are read.

@pytest.mark.parametrize("override, key", [("runs=1e12", "runs"), ("data.repeat=1e9", "data.repeat")])
def test_huge_counts_in_a_config_are_one_line_errors(tmp_path, capsys, override, key):
    code = train.main([str(ROOT / "configs" / "fcn_signed.yaml"), "--set", override, "--out", str(tmp_path / "out")])
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1 and f"{key}: must be <= " in lines[0], lines


def test_huge_runs_on_the_command_line_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(ROOT / "configs" / "fcn_signed.yaml"), "--runs", str(10 ** 12), "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and f"--runs must be between 1 and {MAX_RUNS}" in capsys.readouterr().err


def test_report_counts_the_missing_runs_of_a_huge_runs_without_listing_them(tmp_path):
    """In a child with 1 GiB of address space and a timeout: range(runs) of a hand-edited runs: 10**12 never ends."""
    experiment = tmp_path / "fcn_signed"
    experiment.mkdir()
    (experiment / "config.yaml").write_text(f"model: {{name: FCN}}\nruns: {10 ** 12}\n")
    script = ("from reporting.collect import find_experiments; "
              f"print(find_experiments({str(tmp_path)!r})[0].status_counts()['missing'])")
    code, errors, output = limited_run([sys.executable, "-c", script], timeout=60)
    assert code == 0 and output.strip() == str(10 ** 12), errors[-3:]


# Cause 12: learning rate and weight decay keep Keras' weight_decay = wd / lr finite, and the hint fits.

@pytest.mark.parametrize("override, key", [("optimizer.wd=1e308", "optimizer.wd"),
                                           ("optimizer.lr=1e-320", "optimizer.lr")])
def test_learning_rate_and_weight_decay_whose_ratio_overflows_are_refused(tmp_path, override, key):
    from training.schema import ConfigError

    with pytest.raises(ConfigError, match=f"{key}: must be"):
        load_config(ROOT / "configs" / "fcn_signed.yaml", [override])


def test_a_non_finite_loss_at_a_tiny_learning_rate_does_not_advise_lowering_it():
    assert divergence_hint(OptimizerConfig(lr=0.05)) == "lower optimizer.lr?"
    assert divergence_hint(OptimizerConfig(lr=0.01), signed=False).startswith(
        "lower optimizer.lr, or smaller initial weights, e.g. --set init.weight.factor=0.3333333")
    tiny = divergence_hint(OptimizerConfig(lr=1e-9, wd=5e-4))
    assert "lower" not in tiny and "already tiny" in tiny and "optimizer.wd" in tiny

