"""A run's own state (issue 13 causes 1, 2, 7, 8): one atomic checkpoint, damaged files set aside,
leftovers of killed writes removed, result files readable under the umask."""
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

from fileio import atomic_path, is_atomic_temporary
from training.callbacks import EpochCheckpoint
from training.config import load_config
from training.run_state import (CHECKPOINT, DamagedState, checkpoint_bytes, read_checkpoint,
                                read_checkpoint_state, remove_stale_temporaries, set_aside)
from training.runner import RunTrainer, compiled_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.train_limit=600", "data.test_limit=100", "training.shuffle=true"]
STEPS_PER_EPOCH = 5  # 600 examples in batches of 128


def tiny_config(epochs=2):
    return load_config(ROOT / "configs" / "fcn_signed.yaml", TINY + [f"training.epochs={epochs}"])


def run_folder(out):
    return Path(out) / "fcn_signed" / "run_0"


def read_masks(out):
    with np.load(run_folder(out) / "masks.npz") as masks:
        return {name: masks[name] for name in masks.files}


def train_run(out, epochs=2):
    return RunTrainer(tiny_config(epochs), 0, out, data_dir=real_data_dir("mnist.npz"), verbose=False).run()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-epoch run: its masks, and the checkpoint bytes after each epoch."""
    out = tmp_path_factory.mktemp("reference")
    saved = []
    original = EpochCheckpoint.on_epoch_end

    def keep_a_copy(self, epoch, logs=None):
        original(self, epoch, logs)
        saved.append(Path(self.path).read_bytes())

    patch = pytest.MonkeyPatch()
    patch.setattr(EpochCheckpoint, "on_epoch_end", keep_a_copy)
    try:
        train_run(out)
    finally:
        patch.undo()
    return {"masks": read_masks(out), "checkpoints": saved}


def assert_same_masks(out, reference):
    actual = read_masks(out)
    assert actual.keys() == reference["masks"].keys()
    assert all(np.array_equal(actual[name], reference["masks"][name]) for name in actual)


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.slow
def test_checkpoint_is_one_file_keyed_by_variable_path(reference):
    arrays, state = read_checkpoint(io.BytesIO(reference["checkpoints"][0]))
    assert state["epochs"] == 1 and state["stop_training"] is False and len(state["history"]["train_loss"]) == 1
    assert [entry["from_epoch"] for entry in state["sessions"]] == [0]
    assert state["sessions"][0]["versions"]["backend"] == "tensorflow"
    assert {"model/dense_1/scores", "model/dense_1/frozen_kernel", "optimizer/iteration",
            "optimizer/dense_1_scores_momentum"} <= set(arrays)
    assert arrays["model/dense_1/scores"].shape == (784, 300)


@pytest.mark.slow
def test_a_tensorflow_checkpoint_resumes_on_jax(tmp_path, reference):
    """TensorFlow counts the optimizer's steps in int64, JAX in int32: another integer width is no damage."""
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT).write_bytes(reference["checkpoints"][0])
    assert read_checkpoint(io.BytesIO(reference["checkpoints"][0]))[0]["optimizer/iteration"].dtype == np.int64
    overrides = ["experiment=fcn_signed", *TINY, "training.epochs=2"]
    result = subprocess.run([sys.executable, "train.py", "configs/fcn_signed.yaml", "--runs", "1", "--quiet",
                             "--out", str(tmp_path), "--data-dir", real_data_dir("mnist.npz"),
                             *[arg for override in overrides for arg in ("--set", override)]],
                            cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming after epoch 1" in result.stdout and not list(folder.glob("*.damaged-*"))
    record = json.loads((folder / "run.json").read_text())
    assert record["epochs_trained"] == 2 and record["versions"]["backend"] == "jax"
    # run.json names the backend of each session, not only the last one's
    assert [(entry["from_epoch"], entry["versions"]["backend"]) for entry in record["sessions"]] == [
        (0, "tensorflow"), (1, "jax")]


def test_sessions_of_an_older_or_odd_checkpoint_count_as_one_of_unknown_versions():
    from training.run_state import earlier_sessions, resumed_sessions
    recorded = [{"from_epoch": 0, "versions": {"backend": "tensorflow"}}, {"from_epoch": 4, "versions": None}]
    assert earlier_sessions({"sessions": recorded}) == recorded
    unknown = [{"from_epoch": 0, "versions": None}]
    for state in ({}, {"sessions": []}, {"sessions": "x"}, {"sessions": [{"from_epoch": 3}]}, {"sessions": [1]}):
        assert earlier_sessions(state) == unknown, state
    assert resumed_sessions(unknown) is None and resumed_sessions(recorded) == recorded


def test_only_an_integer_of_another_width_passes_the_variable_check():
    from training.run_state import check_variables
    check_variables({"optimizer/iteration": ((), np.dtype("int64"))}, {"optimizer/iteration": ((), "int32")})
    with pytest.raises(DamagedState, match="'w' is float64\\[3\\], the model has float32\\[3\\]"):
        check_variables({"w": ((3,), np.dtype("float64"))}, {"w": ((3,), "float32")})


@pytest.mark.slow
def test_kill_during_the_checkpoint_write_resumes_from_the_previous_epoch(tmp_path, reference, monkeypatch, capsys):
    """A kill while epoch 2's checkpoint is written leaves half a temporary file and epoch 1 intact."""
    class Killed(BaseException):
        pass

    def die_half_way(path, data):
        if read_checkpoint_state(io.BytesIO(data))["epochs"] == 2:
            (Path(path).parent / f".{Path(path).name}.x1y2.npz").write_bytes(data[:len(data) // 2])
            raise Killed
        Path(path).write_bytes(data)

    monkeypatch.setattr("training.callbacks.atomic_write_bytes", die_half_way)
    with pytest.raises(Killed):
        train_run(tmp_path)
    assert read_checkpoint_state(run_folder(tmp_path) / CHECKPOINT)["epochs"] == 1
    monkeypatch.undo()
    capsys.readouterr()
    train_run(tmp_path)
    output = capsys.readouterr().out
    assert "resuming after epoch 1" in output and "removed 1 leftover temporary file" in output
    assert not list(run_folder(tmp_path).glob(".*")) and not (run_folder(tmp_path) / CHECKPOINT).exists()
    assert_same_masks(tmp_path, reference)


@pytest.mark.slow
def test_plateau_stop_survives_a_kill_during_the_final_save(tmp_path, monkeypatch, capsys):
    """The plateau rule stops after epoch 3 of 5; a kill while the weights are saved leaves a
    temporary weights file (cause 7) and a checkpoint that records the stop."""
    class Killed(BaseException):
        pass

    def die_while_saving(model, path):
        (Path(path).parent / ".tmp-k1ll.weights.h5").write_bytes(b"half")
        raise Killed

    # min_delta 10: no epoch counts as an improvement, so the one reduction (the stop) comes after epoch 4
    plateau = ["training.schedule.kind=plateau", "training.schedule.patience=3", "training.schedule.start_epoch=0",
               "training.schedule.reductions=1", "training.schedule.cooldown=0", "training.schedule.min_delta=10",
               "training.epochs=6"]
    config = load_config(ROOT / "configs" / "fcn_signed.yaml", TINY + plateau)
    trainer = RunTrainer(config, 0, tmp_path, data_dir=real_data_dir("mnist.npz"), verbose=False)
    monkeypatch.setattr("training.runner.save_weights_atomically", die_while_saving)
    with pytest.raises(Killed):
        trainer.run()
    state = read_checkpoint_state(run_folder(tmp_path) / CHECKPOINT)
    assert state["epochs"] == 4 and state["stop_training"] is True
    assert state["callbacks"]["plateau"]["reductions_done"] == 1
    monkeypatch.undo()
    capsys.readouterr()
    info = trainer.run()
    output = capsys.readouterr().out
    assert "resuming after epoch 4" in output and "removed 1 leftover temporary file(s)" in output
    assert "epoch 5/6" not in output and info["epochs_trained"] == 4
    assert sorted(p.name for p in run_folder(tmp_path).iterdir()) == [
        "config.yaml", "history.json", "masks.npz", "model.weights.h5", "run.json"]


def damaged_checkpoints(reference):
    first, second = reference["checkpoints"]
    arrays_1, state_1 = read_checkpoint(io.BytesIO(first))
    arrays_2, _ = read_checkpoint(io.BytesIO(second))
    reshaped = {**arrays_1, "model/dense_1/scores": np.zeros((10, 10), np.float32)}
    renamed = {("model/x" if key == "model/dense_1/scores" else key): value for key, value in arrays_1.items()}
    short_history = {**state_1, "history": {**state_1["history"], "test_loss": []}}
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    return {
        "garbage": (b"\x00garbage" * 50, "unreadable checkpoint"),
        "empty": (b"", "unreadable checkpoint"),
        "truncated": (first[:len(first) // 2], "unreadable checkpoint"),
        "not an npz": (npy.getvalue(), "not an .npz archive"),
        "no run state": (npz_bytes(arrays_1), "without its run state"),
        "wrongly shaped": (checkpoint_bytes(reshaped, state_1), "model/dense_1/scores"),
        "unknown variable": (checkpoint_bytes(renamed, state_1), "lacks variable 'model/dense_1/scores'"),
        "short history": (checkpoint_bytes(arrays_1, short_history), "'test_loss' does not have 1 entries"),
        # cause 1: the arrays one epoch ahead of the state they are stored with
        "arrays ahead of state": (checkpoint_bytes(arrays_2, state_1), "from step 10, its state from epoch 1"),
    }


@pytest.fixture(scope="module")
def model():
    """A compiled model of the tiny config: what ``_restore`` loads a checkpoint into."""
    return compiled_model(tiny_config(), 7531, 600)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["garbage", "empty", "truncated", "not an npz", "no run state", "wrongly shaped",
                                  "unknown variable", "short history", "arrays ahead of state"])
def test_damaged_checkpoint_is_set_aside_and_not_resumed(tmp_path, reference, model, capsys, case):
    content, reason = damaged_checkpoints(reference)[case]
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT).write_bytes(content)
    before = [np.array(v) for v in model.variables]
    history, _, sessions = RunTrainer(tiny_config(), 0, tmp_path)._restore(model, STEPS_PER_EPOCH)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and reason in warnings[0] and "starts again from epoch 0" in warnings[0], warnings
    assert history["train_loss"] == [] and len(history["remaining_percent"]) == 1 and sessions == []
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(before, model.variables)), "nothing half-restored"
    aside = list(folder.glob(f"{CHECKPOINT}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content and not (folder / CHECKPOINT).exists()


@pytest.mark.slow
def test_restart_after_a_damaged_checkpoint_gives_the_uninterrupted_result(tmp_path, reference, capsys):
    """Cause 1 end to end: arrays one epoch ahead of their state are caught, and the rerun is exact."""
    content, reason = damaged_checkpoints(reference)["arrays ahead of state"]
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT).write_bytes(content)
    info = train_run(tmp_path)
    captured = capsys.readouterr()
    assert reason in captured.err and "resuming" not in captured.out and info["epochs_trained"] == 2
    assert_same_masks(tmp_path, reference)


@pytest.mark.slow
def test_checkpoint_claiming_more_epochs_than_configured_is_set_aside(tmp_path, reference, model, capsys):
    """A consistent 2-epoch checkpoint under a 1-epoch config (e.g. hand-edited) is not resumed."""
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT).write_bytes(reference["checkpoints"][1])
    history, _, sessions = RunTrainer(tiny_config(epochs=1), 0, tmp_path)._restore(model, STEPS_PER_EPOCH)
    assert "checkpoint claims 2 epochs, the config trains 1" in capsys.readouterr().err
    assert history["train_loss"] == [] and sessions == [] and len(list(folder.glob(f"{CHECKPOINT}.damaged-*"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("content", ["{garbage", "", "null", "[1, 2]", '{"status": "finished", "final": {}}', "\xff\xfe"])
def test_corrupt_run_record_is_set_aside(tmp_path, capsys, content):
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(content, encoding="latin-1")
    assert RunTrainer(tiny_config(), 0, tmp_path)._run_record() is None
    assert "run.json" in capsys.readouterr().err and not (folder / "run.json").exists()
    assert [p.read_text(encoding="latin-1") for p in folder.glob("run.json.damaged-*")] == [content]


@pytest.mark.slow
def test_run_with_a_corrupt_run_record_is_trained_again(tmp_path, reference):
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text('{"status": "finished", "final": {')
    assert train_run(tmp_path)["status"] == "finished"
    assert json.loads((folder / "run.json").read_text())["status"] == "finished"
    assert_same_masks(tmp_path, reference)


@pytest.mark.slow
def test_an_older_two_file_checkpoint_is_set_aside_and_results_honour_the_umask(tmp_path, reference, capsys):
    """A run interrupted under a retired version (checkpoint.npz by position + checkpoint.json) has no
    run state: it is set aside and the run trains again to the uninterrupted result."""
    arrays, state = read_checkpoint(io.BytesIO(reference["checkpoints"][0]))
    folder = run_folder(tmp_path)
    folder.mkdir(parents=True)
    model_keys = [key for key in arrays if key.startswith("model/")]
    optimizer_keys = [key for key in arrays if key.startswith("optimizer/")]
    positional = {f"model_{i:04d}": arrays[key] for i, key in enumerate(model_keys)}
    positional.update({f"optimizer_{i:04d}": arrays[key] for i, key in enumerate(optimizer_keys)})
    (folder / CHECKPOINT).write_bytes(npz_bytes(positional))
    (folder / "checkpoint.json").write_text(json.dumps({"history": state["history"], "plateau": None}))
    previous = os.umask(0o022)
    try:
        train_run(tmp_path)
    finally:
        os.umask(previous)
    for name in ("run.json", "history.json", "masks.npz", "model.weights.h5", "config.yaml"):  # cause 7: not 0600
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
    output = capsys.readouterr()
    assert "resuming after epoch" not in output.out and "without its run state" in output.out + output.err
    assert (folder / "checkpoint.json").exists()        # never read, left as it was
    assert_same_masks(tmp_path, reference)


def test_set_aside_keeps_the_file_under_a_new_name(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("x")
    lines = []
    first, second = set_aside(path, "bad", lines.append), None
    path.write_text("y")
    second = set_aside(path, "bad", lines.append)
    assert first != second and first.read_text() == "x" and second.read_text() == "y" and not path.exists()
    assert first.name.startswith("state.json.damaged-") and len(lines) == 2 and "bad; moved aside" in lines[0]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    """Only atomic_path's temporaries go: hidden files of others (NFS's .nfs*, a user's) stay."""
    kept = [".nfs000000000123456700000001", ".keep", ".run.json.notes", "keep.tmp", "model.weights.h5", "run.json"]
    for name in (".tmp-abc.weights.h5", ".run.json.k3j.json", ".checkpoint.npz.q.npz", *kept):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    assert remove_stale_temporaries(tmp_path) == [".checkpoint.npz.q.npz", ".run.json.k3j.json", ".tmp-abc.weights.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "tensorboard"])


def test_a_killed_atomic_write_leaves_a_recognised_temporary(tmp_path):
    class Killed(BaseException):
        pass

    for name in ("history.json", "masks.npz", "model.weights.h5", "README"):
        with pytest.raises(Killed):
            with atomic_path(tmp_path / name) as temporary:
                temporary.write_text("half")
                shutil.copy(temporary, tmp_path / f"{temporary.name}.copy")
                raise Killed
    leftovers = [path.name[:-len(".copy")] for path in tmp_path.glob("*.copy")]
    assert len(leftovers) == 4 and all(is_atomic_temporary(name) for name in leftovers)


@pytest.mark.slow
def test_report_shows_the_epoch_of_a_running_run(tmp_path, reference):
    from reporting.collect import read_run

    (tmp_path / CHECKPOINT).write_bytes(reference["checkpoints"][0])
    record = read_run(tmp_path, 0, planned_epochs=2)
    assert (record.status, record.detail) == ("running", "after epoch 1/2")


def test_read_checkpoint_refuses_other_formats():
    with pytest.raises(DamagedState, match="unknown checkpoint format"):
        state = np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8)
        read_checkpoint(io.BytesIO(npz_bytes({"__state__": state})))


def test_weights_are_refused_before_hdf5_starts_on_a_full_disk(tmp_path, monkeypatch):
    """HDF5 failing mid-write on a full disk crashed the process at exit (rc 139, pages of h5py errors)."""
    import collections

    import keras

    from training import run_state
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(run_state.shutil, "disk_usage", lambda folder: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match=r"No space left on device \(about 0\.1 MB needed, 0\.0 MB free\)") as error:
        run_state.save_weights_atomically(model, tmp_path / "model.weights.h5")
    assert error.value.errno == 28 and error.value.filename == str(tmp_path / "model.weights.h5")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    run_state.save_weights_atomically(model, tmp_path / "model.weights.h5")
    assert [path.name for path in tmp_path.iterdir()] == ["model.weights.h5"]


def test_a_write_error_spanning_lines_is_reported_on_one_line(tmp_path):
    from fileio import atomic_path
    with pytest.raises(OSError) as error:
        with atomic_path(tmp_path / "model.weights.h5"):
            raise OSError(28, "Can't write data (file write failed: time = Mon Dec 7 2026\n, filename = 'x')")
    assert error.value.strerror == "Can't write data (file write failed: time = Mon Dec 7 2026 , filename = 'x')"
    assert list(tmp_path.iterdir()) == []
