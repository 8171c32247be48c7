"""TensorBoard scalars (issue 11 item 2): valid event files without TensorFlow, each epoch exactly once
after a kill and rerun."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

from training.callbacks import EpochScalars
from training.config import load_config
from training.runner import RunTrainer
from training.tensorboard import ScalarLog, crc32c, epoch_scalars

ROOT = Path(__file__).resolve().parents[1]


def read_events(folder):
    """[(step, {tag: value})] of every event file in ``folder``, parsed by TensorFlow's own reader."""
    tf = pytest.importorskip("tensorflow")
    files = sorted(Path(folder).glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    events = []
    for record in tf.compat.v1.train.summary_iterator(str(files[0])):
        if record.HasField("summary"):
            events.append((record.step, {value.tag: value.simple_value for value in record.summary.value}))
        else:
            assert record.file_version == "brain.Event:2"
    return events


def test_crc32c_of_the_standard_check_string():
    assert crc32c(b"123456789") == 0xE3069283


def test_epoch_scalars_name_losses_learning_rate_and_mask_fractions():
    history = {"train_loss": [0.5], "test_loss": [0.4], "train_accuracy": [0.9], "test_accuracy": [0.8],
               "learning_rate": [0.1], "remaining_percent": [60.0, 50.0],
               "mask_counts": [{"d": {"kept": 3, "hidden": 4, "inverted": 3}},
                               {"d": {"kept": 2, "hidden": 5, "inverted": 3}}]}
    assert epoch_scalars(history, 0) == {"remaining_percent": 60.0, "masks/d/kept": 0.3, "masks/d/hidden": 0.4,
                                         "masks/d/inverted": 0.3}
    assert epoch_scalars(history, 1) == {"loss/train": 0.5, "loss/test": 0.4, "accuracy/train": 0.9,
                                         "accuracy/test": 0.8, "learning_rate": 0.1, "remaining_percent": 50.0,
                                         "masks/d/kept": 0.2, "masks/d/hidden": 0.5, "masks/d/inverted": 0.3}


@pytest.mark.slow
def test_scalars_survive_a_kill_and_rerun_with_every_epoch_once(tmp_path, monkeypatch, capsys):
    """Killed while epoch 2's scalars are appended (half a record written): the rerun resumes after
    epoch 2 and the event file holds steps 0..3 once each, equal to history.json."""
    class Killed(BaseException):
        pass

    original = EpochScalars.on_epoch_end

    def die_half_way(self, epoch, logs=None):
        if epoch == 1:
            with open(self.scalar_log.path, "ab") as stream:
                stream.write(b"\x2a\x00\x00\x00\x00\x00\x00\x00\x01\x02")
            raise Killed
        original(self, epoch, logs)

    config = load_config(ROOT / "configs" / "fcn_signed.yaml",
                         ["data.train_limit=600", "data.test_limit=100", "training.epochs=3",
                          "training.tensorboard=true"])
    trainer = RunTrainer(config, 0, tmp_path, data_dir=real_data_dir("mnist.npz"), verbose=False)
    monkeypatch.setattr(EpochScalars, "on_epoch_end", die_half_way)
    with pytest.raises(Killed):
        trainer.run()
    monkeypatch.undo()
    trainer.run()
    assert "resuming after epoch 2" in capsys.readouterr().out
    run_folder = tmp_path / "fcn_signed" / "run_0"
    events = read_events(run_folder / "tensorboard")
    assert [step for step, _ in events] == [0, 1, 2, 3]
    history = json.loads((run_folder / "history.json").read_text())
    for step, scalars in events[1:]:
        assert scalars["loss/train"] == pytest.approx(history["train_loss"][step - 1], rel=1e-6)
        assert scalars["accuracy/test"] == pytest.approx(history["test_accuracy"][step - 1], rel=1e-6)
        assert scalars["remaining_percent"] == pytest.approx(history["remaining_percent"][step], rel=1e-6)
        counts = history["mask_counts"][step]["dense_1"]
        assert scalars["masks/dense_1/hidden"] == pytest.approx(counts["hidden"] / sum(counts.values()), rel=1e-6)
    assert set(events[0][1]) == {"remaining_percent"} | {f"masks/{layer}/{kind}" for layer in
                                                          ("dense_1", "dense_2", "output")
                                                          for kind in ("kept", "hidden", "inverted")}
    assert np.isclose(events[0][1]["remaining_percent"], history["remaining_percent"][0])


@pytest.mark.slow
def test_the_install_line_gives_tensorboard_and_it_reads_our_event_files(tmp_path):
    """Issue 29 item 6: TensorFlow 2.21 no longer pulls TensorBoard in, so requirements.txt (the README's
    install line) names it; the `tensorboard` command runs, and its own reader sees every scalar."""
    assert "tensorboard" in (ROOT / "requirements.txt").read_text().split()
    command = subprocess.run([sys.executable, "-m", "tensorboard.main", "--help"], capture_output=True, text=True,
                             timeout=120)
    assert command.returncode == 0 and "--logdir" in command.stdout
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = {"train_loss": [0.5, 0.25], "test_loss": [0.4, 0.3], "train_accuracy": [0.9, 0.95],
               "test_accuracy": [0.8, 0.85], "learning_rate": [0.1, 0.05], "remaining_percent": [60.0, 50.0, 45.0],
               "mask_counts": [{"d": {"kept": 3, "hidden": 4, "inverted": 3}}] * 3}
    ScalarLog(tmp_path).restart(history)
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert {"loss/train", "accuracy/test", "remaining_percent", "masks/d/kept"} <= set(accumulator.Tags()["scalars"])
    assert [(event.step, event.value) for event in accumulator.Scalars("loss/train")] == [(1, 0.5), (2, 0.25)]
    assert [event.value for event in accumulator.Scalars("remaining_percent")] == [60.0, 50.0, 45.0]
