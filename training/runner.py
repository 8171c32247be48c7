"""Train one run of an experiment: resumable, deterministic, atomic results.

The epoch is a ``model.fit`` over that epoch's arrays with the callbacks of
training/callbacks.py. Every epoch ends with one atomic checkpoint (all model and optimizer
variables by path, plus the history), so a killed run resumes at its last finished epoch and,
on CPU, ends with the same masks as an uninterrupted run. The epoch's batches depend only on
(seed, epoch), never on how often the process was restarted. Damaged run state is set aside
and the run starts again (training/run_state.py).
"""
import contextlib
import sys

import keras
import numpy as np

from data import load_dataset
from fileio import atomic_write_bytes, make_folder, write_json
from models import build_experiment_model, resolve_initial_values
from training.callbacks import (EpochArrays, EpochCheckpoint, EpochHistory, EpochLog, EpochScalars, MaskHistory,
                                NonFiniteLoss, NonFiniteLossGuard, mask_statistics, variables_by_path)
from training.config import config_to_yaml
from training.device import emulated_bfloat16_note
from training.optim import TrainingLossPlateau, divergence_hint, make_optimizer, steps_per_epoch
from training.results import empty_history, run_dir
from training.run_record import RunRecord
from training.run_state import (CHECKPOINT, DamagedState, check_checkpoint, earlier_sessions, read_checkpoint,
                                remove_stale_temporaries, resumed_sessions, save_weights_atomically, set_aside)
from training.schema import ConfigError
from training.signed_state import write_signed_state
from training.tensorboard import ScalarLog


class TrainingError(RuntimeError):
    """A run that cannot continue (non-finite loss, mismatching results folder, ...)."""


def fit_feed(x, y, batch_size, validation=False):
    """Keyword arguments that hand ``x, y`` to ``model.fit`` in batches of ``batch_size`` (as its
    training data, or with ``validation`` as its validation data), in order.

    On TensorFlow without a GPU the arrays go in as a tf.data pipeline with autotuning off and one
    private thread: Keras' own pipeline for arrays ran 3 of 8 Conv2 fit calls at 513 instead of 390 ms
    per step (1.45 instead of 1.91 cores busy), this one none of 8, with the same batches
    (docs/speed.md). Elsewhere fit takes the arrays: other backends need no TensorFlow, and on a GPU Keras'
    prefetching pipeline is kept (not measured there)."""
    arrays = {"validation_data": (x, y), "validation_batch_size": batch_size} if validation else \
        {"x": x, "y": y, "batch_size": batch_size}
    if keras.backend.backend() != "tensorflow":
        return arrays
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return arrays
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).with_options(options)
    return {"validation_data": batches} if validation else {"x": batches}


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


def execution_settings(training):
    """(jit_compile, steps_per_execution) to compile with.

    Unset ``jit_compile`` means: JAX always jits; TensorFlow uses Keras' "auto" (XLA only with a
    GPU: on CPU, XLA halves the FCN step but slows Conv2/Conv4 1.3-2x, docs/speed.md); torch off.
    Under ``mirrored`` Keras 3 fails with XLA or several steps per call, so both are turned off;
    Keras' torch trainer refuses several steps per call, so torch runs one.
    """
    if training.distribution == "mirrored":
        if training.jit_compile or training.steps_per_execution > 1:
            print("distribution: mirrored runs without XLA and with steps_per_execution=1", flush=True)
        return False, 1
    backend = keras.backend.backend()
    jit_compile = training.jit_compile
    if jit_compile is None:
        jit_compile = {"jax": True, "tensorflow": "auto"}.get(backend, False)
    steps_per_execution = 1 if backend == "torch" else training.steps_per_execution
    return jit_compile, steps_per_execution


@contextlib.contextmanager
def precision_policy(precision):
    """Layers created inside take the Keras dtype policy ``precision`` (``training.precision``); the
    global policy before is restored on leaving, also after an error (tests train in one process).

    Under ``mixed_bfloat16`` every variable stays float32 (so do the optimizer's slots and the
    checkpoints); the masked layers compute their mask from the float32 variables, and the softmax
    output layer is float32 (models/layer_factory.py), so the loss is too."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compiled_model(config, seed, num_train_examples, initial_values=None):
    """The run's model, compiled exactly as training compiles it (optimizer built, so its
    variables exist), in the config's ``training.precision``: what benchmarks and tools should use
    instead of rebuilding it. ``initial_values``: a resolved models.InitialValues (default: resolved here)."""
    with precision_policy(config.training.precision), distribution_scope(config.training.distribution):
        model = build_experiment_model(config, seed, initial_values)
        batches = steps_per_epoch(num_train_examples, config.training.batch_size, config.data.repeat)
        jit_compile, steps_per_execution = execution_settings(config.training)
        model.compile(optimizer=make_optimizer(config, batches),
                      loss=keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=jit_compile, steps_per_execution=steps_per_execution)
        model.optimizer.build(model.trainable_variables)
    return model


def plateau_callback(schedule):
    """The authors' plateau rule for ``training.schedule.kind: plateau``, else None."""
    if schedule.kind != "plateau":
        return None
    return TrainingLossPlateau(schedule.patience, schedule.factor, schedule.reductions, schedule.cooldown,
                               schedule.start_epoch, schedule.min_delta)


class RunTrainer:
    """Trains run ``run_index`` of ``config`` into ``out_root/<experiment>/run_<i>``."""

    def __init__(self, config, run_index, out_root, data_dir=None, verbose=None):
        self.config, self.run_index = config, run_index
        self.seed = config.seed + run_index
        self.directory = run_dir(out_root, config.experiment, run_index)
        self.data_dir = data_dir
        self.verbose = sys.stdout.isatty() if verbose is None else verbose

    def _log(self, message):
        print(f"[{self.config.experiment} run {self.run_index}] {message}", flush=True)

    def _warn(self, message):
        print(f"[{self.config.experiment} run {self.run_index}] {message}", file=sys.stderr, flush=True)

    def run(self):
        record = self._run_record()
        if record is not None and record.finished:
            self._log("already finished, skipped")
            return record.to_json()
        config = self.config
        initial_values = resolve_initial_values(config, self.run_index)
        data = load_dataset(config.data.dataset, self.data_dir, config.data.train_limit, config.data.test_limit)
        self._log(initial_values.describe())
        slow_precision = emulated_bfloat16_note(config.training.precision)
        if slow_precision:
            self._warn(slow_precision)
        model = compiled_model(config, self.seed, len(data.x_train), initial_values)
        make_folder(self.directory)
        removed = remove_stale_temporaries(self.directory)
        if removed:
            self._log(f"removed {len(removed)} leftover temporary file(s) of a killed write: {', '.join(removed)}")
        atomic_write_bytes(self.directory / "config.yaml", config_to_yaml(config).encode())
        steps = steps_per_epoch(len(data.x_train), config.training.batch_size, config.data.repeat)
        history, plateau, sessions = self._restore(model, steps)
        sessions = sessions + [{"from_epoch": len(history["train_loss"]), "versions": library_versions()}]
        source = EpochArrays(data.x_train, data.y_train, self.seed, config.training.shuffle, config.data.augment,
                             config.data.repeat)
        callbacks = [plateau] if plateau is not None else []
        callbacks += [EpochHistory(history, source), MaskHistory(history, config.model.signed), NonFiniteLossGuard(),
                      EpochCheckpoint(self.directory / CHECKPOINT, history,
                                      {"plateau": plateau} if plateau is not None else {}, {"sessions": sessions}),
                      EpochLog(history, config.training.epochs, self._log)]
        if config.training.tensorboard:
            scalar_log = ScalarLog(self.directory)
            scalar_log.restart(history)  # the epochs so far, once each, whenever the last run was killed
            callbacks.insert(-1, EpochScalars(scalar_log, history))
        validation = fit_feed(data.x_test, data.y_test, config.training.eval_batch_size, validation=True)
        try:
            for epoch in range(len(history["train_loss"]), config.training.epochs):
                if model.stop_training:
                    break
                model.fit(**fit_feed(*source(epoch), config.training.batch_size), initial_epoch=epoch,
                          epochs=epoch + 1, shuffle=False, verbose=1 if self.verbose else 0, callbacks=callbacks,
                          **validation)
        except NonFiniteLoss as failure:
            self._write_failure(history, failure, initial_values, sessions)
        return self._finish(model, history, initial_values, sessions)

    def _run_record(self):
        """This run's RunRecord, or None; an unreadable run.json or one that is no run record is
        set aside, so the run is trained again."""
        try:
            return RunRecord.read(self.directory)
        except ValueError as error:  # UnreadableFileError, RunRecordError
            set_aside(self.directory / "run.json", str(error).split(": ", 1)[-1][:200], self._warn)
            return None

    def _restore(self, model, steps):
        """(history, plateau callback, earlier sessions) of the last finished epoch, with the model's and
        optimizer's variables and ``model.stop_training`` restored from the checkpoint; fresh ones (epoch 0,
        no sessions) without a checkpoint or when it is damaged (then set aside, run_state.py)."""
        plateau = plateau_callback(self.config.training.schedule)
        path = self.directory / CHECKPOINT
        if not path.exists():
            return self._fresh_history(model), plateau, []
        variables = variables_by_path(model)
        specs = {key: (tuple(v.shape), v.dtype) for key, v in variables.items()}
        try:
            arrays, state = read_checkpoint(path, specs)
            check_checkpoint(arrays, state, specs, self.config.training.epochs, steps, EpochHistory.KEYS,
                             MaskHistory.KEYS)
            if plateau is not None:
                plateau.set_state(state["callbacks"]["plateau"])
            stop_training = state["stop_training"]
            if not isinstance(stop_training, bool):
                raise DamagedState("checkpoint stop_training is not true/false")
        except (KeyError, TypeError, ValueError) as error:  # DamagedState is a ValueError
            reason = str(error) if isinstance(error, DamagedState) else "checkpoint callback state unusable"
            set_aside(path, reason + "; the run starts again from epoch 0", self._warn)
            return self._fresh_history(model), plateau_callback(self.config.training.schedule), []
        for key, variable in variables.items():
            variable.assign(arrays[key].astype(variable.dtype, copy=False))   # int64 step counter on int32
        model.stop_training = stop_training
        self._log(f"resuming after epoch {state['epochs']}")
        return state["history"], plateau, earlier_sessions(state)

    def _fresh_history(self, model):
        history = empty_history()
        MaskHistory(history, self.config.model.signed).record(model)
        return history

    def _write_failure(self, history, failure, initial_values, sessions):
        write_json(self.directory / "history.json", history)
        RunRecord("failed", self.config.experiment, self.run_index, self.seed, init=initial_values.to_json(),
                  precision=self.config.training.precision, sessions=resumed_sessions(sessions),
                  reason=f"non-finite training loss {failure.loss} in epoch {failure.epoch + 1}").write(self.directory)
        raise TrainingError(f"{self.directory}: {failure}; "
                            f"history so far kept in history.json "
                            f"({divergence_hint(self.config.optimizer, self.config.model.signed)})") from None

    def _finish(self, model, history, initial_values, sessions):
        signed = self.config.model.signed
        remaining, remaining_count, _ = mask_statistics(model, signed)
        if signed:
            write_signed_state(self.directory, model)   # masks.npz (+ extra_state.npz): export.py rebuilds the model
        save_weights_atomically(model, self.directory / "model.weights.h5")
        write_json(self.directory / "history.json", history)
        record = RunRecord(
            "finished", self.config.experiment, self.run_index, self.seed, epochs_trained=len(history["train_loss"]),
            final={"test_accuracy": history["test_accuracy"][-1], "test_loss": history["test_loss"][-1],
                   "train_accuracy": history["train_accuracy"][-1], "remaining_percent": remaining,
                   "remaining_count": remaining_count},
            training_seconds=float(sum(history["epoch_seconds"])), versions=library_versions(),
            init=initial_values.to_json(), precision=self.config.training.precision,
            sessions=resumed_sessions(sessions))
        record.write(self.directory)
        (self.directory / CHECKPOINT).unlink(missing_ok=True)
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
