"""Train one run of an experiment: resumable, deterministic, atomic results.

Every epoch ends with a checkpoint (all model and optimizer variables plus the
history), so a killed run resumes at its last finished epoch and, on CPU, ends with
the same masks as an uninterrupted run. The epoch's batches depend only on
(seed, epoch), never on how often the process was restarted.
"""
import contextlib
import sys
import time

import keras
import numpy as np

from data import epoch_arrays, load_dataset
from fileio import atomic_write_bytes, read_json, save_weights_atomically, write_json, write_npz
from masking import mask_report, masked_layers, remaining_percent
from models import build_experiment_model
from training.config import config_to_yaml
from training.optim import TrainingLossPlateau, current_learning_rate, make_optimizer, steps_per_epoch
from training.results import empty_history, is_finite, run_dir
from training.run_record import RunRecord
from training.schema import ConfigError


class TrainingError(RuntimeError):
    """A run that cannot continue (non-finite loss, mismatching results folder, ...)."""


def distribution_scope(name):
    """Where to build the model: ``mirrored`` = tf.distribute.MirroredStrategy (TensorFlow backend),
    ``data_parallel`` = keras.distribution.DataParallel over all devices (JAX backend).
    The batch size stays global (128 split across replicas)."""
    backend = keras.backend.backend()
    if name == "none":
        return contextlib.nullcontext()
    if name == "mirrored":
        if backend != "tensorflow":
            raise ConfigError(f"training.distribution=mirrored needs KERAS_BACKEND=tensorflow, not {backend}")
        import tensorflow as tf
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
        print(f"distribution: mirrored over {strategy.num_replicas_in_sync} replicas", flush=True)
        return strategy.scope()
    if backend != "jax":
        raise ConfigError(f"training.distribution=data_parallel needs KERAS_BACKEND=jax, not {backend}")
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    print(f"distribution: data_parallel over {len(devices)} devices", flush=True)
    return contextlib.nullcontext()


def mask_statistics(model, signed):
    """(remaining %, remaining count, per-layer +1/0/-1 counts); baselines keep 100 %."""
    if not signed:
        return 100.0, int(sum(np.prod(v.shape) for v in model.trainable_variables)), {}
    counts = mask_report(model)
    active = sum(c["kept"] + c["inverted"] for c in counts.values())
    return remaining_percent(model, counts), active, counts


def _checkpoint_arrays(model):
    arrays = {f"model_{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i:04d}": keras.ops.convert_to_numpy(v)
                   for i, v in enumerate(model.optimizer.variables)})
    return arrays


def _restore_checkpoint(model, path):
    with np.load(path) as stored:
        for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            keys = sorted(key for key in stored.files if key.startswith(prefix + "_"))
            if len(keys) != len(variables):
                raise TrainingError(f"{path}: checkpoint holds {len(keys)} {prefix} variables, "
                                    f"the model has {len(variables)}; delete the run folder to restart")
            for key, variable in zip(keys, variables):
                variable.assign(stored[key])


def execution_settings(training):
    """(jit_compile, steps_per_execution) to compile with.

    Unset ``jit_compile`` means: JAX always jits; TensorFlow uses Keras' "auto" (XLA only with a
    GPU: on CPU, XLA halves the FCN step but slows Conv2/Conv4 1.3-2x, README "Speed"); torch off.
    Under ``mirrored`` Keras 3 fails with XLA or several steps per call, so both are turned off.
    """
    if training.distribution == "mirrored":
        if training.jit_compile or training.steps_per_execution > 1:
            print("distribution: mirrored runs without XLA and with steps_per_execution=1", flush=True)
        return False, 1
    jit_compile = training.jit_compile
    if jit_compile is None:
        jit_compile = {"jax": True, "tensorflow": "auto"}.get(keras.backend.backend(), False)
    return jit_compile, training.steps_per_execution


class RunTrainer:
    """Trains run ``run_index`` of ``config`` into ``out_root/<experiment>/run_<i>``."""

    def __init__(self, config, run_index, out_root, data_dir=None, verbose=None):
        self.config, self.run_index = config, run_index
        self.seed = config.seed + run_index
        self.directory = run_dir(out_root, config.experiment, run_index)
        self.data_dir = data_dir
        self.verbose = sys.stdout.isatty() if verbose is None else verbose

    @property
    def finished(self):
        record = RunRecord.read(self.directory)
        return record is not None and record.finished

    def _log(self, message):
        print(f"[{self.config.experiment} run {self.run_index}] {message}", flush=True)

    def run(self):
        if self.finished:
            self._log("already finished, skipped")
            return RunRecord.read(self.directory).to_json()
        config = self.config
        data = load_dataset(config.data.dataset, self.data_dir, config.data.train_limit, config.data.test_limit)
        model = self._compiled_model(len(data.x_train))
        plateau = self._plateau_callback()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.directory / "config.yaml", config_to_yaml(config).encode())
        state = read_json(self.directory / "checkpoint.json")
        if state is not None:
            _restore_checkpoint(model, self.directory / "checkpoint.npz")
            history = state["history"]
            if plateau is not None:
                plateau.set_state(state["plateau"])
            self._log(f"resuming after epoch {len(history['train_loss'])}")
        else:
            history = empty_history()
            self._record_masks(model, history)
        for epoch in range(len(history["train_loss"]), config.training.epochs):
            if plateau is not None and plateau.finished:
                break
            self._train_epoch(model, data, epoch, history, plateau)
        return self._finish(model, history)

    def _compiled_model(self, num_train_examples):
        config = self.config
        with distribution_scope(config.training.distribution):
            model = build_experiment_model(config, self.seed)
            batches = steps_per_epoch(num_train_examples, config.training.batch_size, config.data.repeat)
            jit_compile, steps_per_execution = execution_settings(config.training)
            model.compile(optimizer=make_optimizer(config, batches),
                          loss=keras.losses.SparseCategoricalCrossentropy(),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                          jit_compile=jit_compile, steps_per_execution=steps_per_execution)
            model.optimizer.build(model.trainable_variables)
        return model

    def _plateau_callback(self):
        schedule = self.config.training.schedule
        if schedule.kind != "plateau":
            return None
        return TrainingLossPlateau(schedule.patience, schedule.factor, schedule.reductions, schedule.cooldown,
                                   schedule.start_epoch, schedule.min_delta)

    def _record_masks(self, model, history):
        remaining, _, counts = mask_statistics(model, self.config.model.signed)
        history["remaining_percent"].append(remaining)
        history["mask_counts"].append(counts)

    def _train_epoch(self, model, data, epoch, history, plateau):
        config = self.config
        started = time.perf_counter()
        x, y = epoch_arrays(data.x_train, data.y_train, seed=self.seed, epoch=epoch, shuffle=config.training.shuffle,
                            augment=config.data.augment, repeat=config.data.repeat)
        learning_rate = current_learning_rate(model.optimizer)
        fitted = model.fit(x, y, batch_size=config.training.batch_size, initial_epoch=epoch, epochs=epoch + 1,
                           shuffle=False, verbose=1 if self.verbose else 0,
                           callbacks=[plateau] if plateau is not None else [])
        train_loss, train_accuracy = fitted.history["loss"][-1], fitted.history["accuracy"][-1]
        test = model.evaluate(data.x_test, data.y_test, batch_size=config.training.eval_batch_size, verbose=0,
                              return_dict=True)
        seconds = time.perf_counter() - started
        for key, value in (("train_loss", train_loss), ("train_accuracy", train_accuracy),
                           ("test_loss", test["loss"]), ("test_accuracy", test["accuracy"]),
                           ("learning_rate", learning_rate), ("epoch_seconds", seconds)):
            history[key].append(float(value))
        self._record_masks(model, history)
        if not is_finite(train_loss):
            self._write_failure(history, epoch, train_loss)
        write_npz(self.directory / "checkpoint.npz", _checkpoint_arrays(model), compressed=False)
        write_json(self.directory / "checkpoint.json",
                   {"history": history, "plateau": plateau.get_state() if plateau else None})
        self._log(f"epoch {epoch + 1}/{config.training.epochs}  loss {train_loss:.4f}  acc {train_accuracy:.4f}  "
                  f"test_loss {test['loss']:.4f}  test_acc {test['accuracy']:.4f}  "
                  f"remaining {history['remaining_percent'][-1]:.2f}%  lr {learning_rate:.5g}  ({seconds:.1f}s)")

    def _write_failure(self, history, epoch, loss):
        write_json(self.directory / "history.json", history)
        RunRecord("failed", self.config.experiment, self.run_index, self.seed,
                  reason=f"non-finite training loss {loss} in epoch {epoch + 1}").write(self.directory)
        raise TrainingError(f"{self.directory}: training loss became {loss} in epoch {epoch + 1}; "
                            f"history so far kept in history.json (lower optimizer.lr?)")

    def _finish(self, model, history):
        signed = self.config.model.signed
        remaining, remaining_count, _ = mask_statistics(model, signed)
        if signed:
            write_npz(self.directory / "masks.npz", {layer.name: layer.ternary_mask() for layer in masked_layers(model)})
        save_weights_atomically(model, self.directory / "model.weights.h5")
        write_json(self.directory / "history.json", history)
        record = RunRecord(
            "finished", self.config.experiment, self.run_index, self.seed, epochs_trained=len(history["train_loss"]),
            final={"test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
                   "train_accuracy": history["train_accuracy"][-1], "remaining_percent": remaining,
                   "remaining_count": remaining_count},
            training_seconds=float(sum(history["epoch_seconds"])), versions=library_versions())
        record.write(self.directory)
        for name in ("checkpoint.npz", "checkpoint.json"):
            (self.directory / name).unlink(missing_ok=True)
        self._log(f"finished: test_acc {record.final['test_accuracy']:.4f}  remaining {remaining:.2f}%")
        return record.to_json()


def library_versions():
    versions = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__,
                "python": sys.version.split()[0]}
    for name in ("tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions
