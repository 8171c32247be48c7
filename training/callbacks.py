"""The pieces of a training epoch, as Keras callbacks a researcher can reuse or replace.

``RunTrainer`` fits one epoch per ``model.fit`` call (each epoch's arrays come from
:class:`EpochArrays`, a function of (seed, epoch) only) with the test set as validation data
and these callbacks, in this order::

    TrainingLossPlateau  (training/optim.py) lowers the lr; sets model.stop_training when done
    EpochHistory         train/test loss and accuracy, learning rate, seconds
    MaskHistory          remaining % and per-layer +1/0/-1 counts
    NonFiniteLossGuard   raises NonFiniteLoss after an epoch whose training loss is NaN/Inf
    EpochCheckpoint      one atomic checkpoint.npz: variables by path + the run state
    EpochScalars         (training.tensorboard: true) the epoch's scalars for TensorBoard
    EpochLog             one line per epoch

``model.stop_training`` is the only stop signal: the plateau rule sets it, the checkpoint
records it, and the run loop ends on it (also right after a resume).
"""
import math
import time

import keras
import numpy as np

from data import epoch_arrays
from fileio import atomic_write_bytes
from masking import mask_report, remaining_percent
from masking.init_files import target_layers
from training.optim import current_learning_rate
from training.run_state import checkpoint_bytes


class NonFiniteLoss(RuntimeError):
    """The training loss of an epoch was NaN or infinite."""

    def __init__(self, epoch, loss):
        super().__init__(f"training loss became {loss} in epoch {epoch + 1}")
        self.epoch, self.loss = epoch, loss


class EpochArrays:
    """The shuffled (and augmented, repeated) training arrays of one epoch, from (seed, epoch) only,
    so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, x, y, seed, shuffle, augment, repeat):
        self.x, self.y, self.seed = x, y, seed
        self.shuffle, self.augment, self.repeat = shuffle, augment, repeat
        self.seconds = 0.0  # time taken by the last call, counted in the epoch's time

    def __call__(self, epoch):
        started = time.perf_counter()
        arrays = epoch_arrays(self.x, self.y, seed=self.seed, epoch=epoch, shuffle=self.shuffle,
                              augment=self.augment, repeat=self.repeat)
        self.seconds = time.perf_counter() - started
        return arrays


def mask_statistics(model, signed):
    """(remaining %, remaining count, per-layer +1/0/-1 counts); baselines keep 100 % of their
    Dense/Conv2D kernels (the weights a signed model masks; BN scales and shifts are not counted)."""
    if not signed:
        kernels = [layer.kernel for layer in target_layers(model, "baseline")]
        return 100.0, int(sum(np.prod(kernel.shape) for kernel in kernels)), {}
    counts = mask_report(model)
    active = sum(c["kept"] + c["inverted"] for c in counts.values())
    return remaining_percent(model, counts), active, counts


class EpochHistory(keras.callbacks.Callback):
    """Appends each epoch's train/test loss and accuracy (test = fit's validation data), the
    learning rate the epoch started with and its seconds (plus ``data_source.seconds``)."""

    KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "learning_rate", "epoch_seconds")

    def __init__(self, history, data_source=None):
        super().__init__()
        self.history, self.data_source = history, data_source
        self._started, self._learning_rate = 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._learning_rate = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._started + (self.data_source.seconds if self.data_source else 0.0)
        for key, value in (("train_loss", logs.get("loss")), ("train_accuracy", logs.get("accuracy")),
                           ("test_loss", logs.get("val_loss")), ("test_accuracy", logs.get("val_accuracy")),
                           ("learning_rate", self._learning_rate), ("epoch_seconds", seconds)):
            self.history[key].append(None if value is None else float(value))


class MaskHistory(keras.callbacks.Callback):
    """Appends remaining % and per-layer mask counts after every epoch (``record`` for the start)."""

    KEYS = ("remaining_percent", "mask_counts")

    def __init__(self, history, signed):
        super().__init__()
        self.history, self.signed = history, signed

    def record(self, model):
        remaining, _, counts = mask_statistics(model, self.signed)
        self.history["remaining_percent"].append(remaining)
        self.history["mask_counts"].append(counts)

    def on_epoch_end(self, epoch, logs=None):
        self.record(self.model)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Raises NonFiniteLoss at the end of an epoch whose mean training loss is NaN/Inf, before
    anything later in the callback list (the checkpoint) sees it."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or not math.isfinite(loss):
            raise NonFiniteLoss(epoch, loss)


def variables_by_path(model):
    """{``model/<path>`` or ``optimizer/<path>``: variable}; the optimizer's own name (``sgd``,
    ``sgd_1``, ... by creation order) is left out so that keys do not depend on the process."""
    keyed = {f"model/{variable.path}": variable for variable in model.variables}
    prefix = model.optimizer.name + "/"
    keyed.update({"optimizer/" + variable.path.removeprefix(prefix): variable
                  for variable in model.optimizer.variables})
    if len(keyed) != len(model.variables) + len(model.optimizer.variables):
        raise ValueError("two variables share a path; the checkpoint needs unique variable paths")
    return keyed


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes ``path`` atomically after every epoch: all variables by path, the history,
    ``model.stop_training``, the state of every callback in ``stateful`` (objects with
    get_state/set_state, by name) and the JSON entries of ``fixed`` (e.g. the run's sessions)."""

    def __init__(self, path, history, stateful=None, fixed=None):
        super().__init__()
        self.path, self.history, self.stateful, self.fixed = path, history, dict(stateful or {}), dict(fixed or {})

    def state(self, epochs, stop_training):
        return {**self.fixed, "epochs": epochs, "stop_training": bool(stop_training), "history": self.history,
                "callbacks": {name: item.get_state() for name, item in self.stateful.items()}}

    def on_epoch_end(self, epoch, logs=None):
        arrays = {key: keras.ops.convert_to_numpy(variable) for key, variable in variables_by_path(self.model).items()}
        atomic_write_bytes(self.path, checkpoint_bytes(arrays, self.state(epoch + 1, self.model.stop_training)))


class EpochScalars(keras.callbacks.Callback):
    """Appends the epoch's history entry to the run's TensorBoard event file (training/tensorboard.py)."""

    def __init__(self, scalar_log, history):
        super().__init__()
        self.scalar_log, self.history = scalar_log, history

    def on_epoch_end(self, epoch, logs=None):
        self.scalar_log.append(self.history)


class EpochLog(keras.callbacks.Callback):
    """One line per epoch from the history: losses, accuracies, remaining %, lr, seconds."""

    def __init__(self, history, epochs, log=print):
        super().__init__()
        self.history, self.epochs, self.log = history, epochs, log

    def on_epoch_end(self, epoch, logs=None):
        last = {key: values[-1] for key, values in self.history.items() if values}
        self.log(f"epoch {epoch + 1}/{self.epochs}  loss {last['train_loss']:.4f}  acc {last['train_accuracy']:.4f}  "
                 f"test_loss {last['test_loss']:.4f}  test_acc {last['test_accuracy']:.4f}  "
                 f"remaining {last['remaining_percent']:.2f}%  lr {last['learning_rate']:.5g}  "
                 f"({last['epoch_seconds']:.1f}s)")
