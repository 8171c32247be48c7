"""A finished run as a Keras model: the signed model, its plain-Keras twin, and their evaluation.

The plain twin has ordinary Dense/Conv2D layers whose kernels are W * q(S), so it runs
anywhere Keras runs, without this repository's classes.
"""
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from data import load_dataset
from data.datasets import INPUT_SHAPES, NUM_CLASSES
from masking import MASKED_LAYER_TYPES, iter_layers, masked_layers, masked_weights
from models import InitialValues, build_experiment_model, model_family, resolve_initial_values
from models.initial_values import weights_root
from reporting.npz import read_npz
from training.config import load_saved_config
from training.run_record import RunRecord, RunRecordError
from training.schema import brief, shown
from training.signed_state import EXTRA_STATE_FILE, MASKS_FILE, extra_state_key, other_variables, set_mask

PLAIN_KERNEL_TYPES = (keras.layers.Dense, keras.layers.Conv2D)


@dataclass
class LoadedRun:
    """A finished run: its resolved config, seed, run record and the trained signed (or baseline) model."""

    directory: Path
    config: object
    seed: int
    record: RunRecord
    model: object

    @property
    def stem(self):
        """File-name stem of the run's exports, e.g. 'fcn_signed_run0'."""
        return export_stem(self.config.experiment, self.record.run_index)


def export_stem(experiment, run_index):
    """File-name stem of the exports of run ``run_index`` of ``experiment``, e.g. 'fcn_signed_run0'."""
    return f"{experiment.replace('/', '__')}_run{run_index or 0}"


def buildable_config(config):
    """A copy that builds without init files: the trained values are loaded over the initial ones anyway."""
    config = copy.deepcopy(config)
    config.init.source = "on_the_fly"
    return config


def load_run(run_directory):
    """Rebuild a finished run's model from config.yaml, run.json and model.weights.h5, or, for a signed run
    without the weights file (a shipped one), from masks.npz and extra_state.npz (``_rebuild_from_masks``)."""
    directory = Path(run_directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a run folder")
    try:
        record = RunRecord.read(directory)
    except RunRecordError as error:
        raise ValueError(f"{directory / 'run.json'}: {error}") from None
    if record is None and sorted(directory.glob("run_*/")):
        raise ValueError(f"{directory}: an experiment folder; name one of its runs, e.g. "
                         f"{sorted(directory.glob('run_*/'))[0]}")
    if record is None or not record.finished:
        raise ValueError(f"{directory}: not a finished run ({shown(record.status) if record else 'no run.json'})")
    for key in ("seed", "run_index"):
        value = getattr(record, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"{directory / 'run.json'}: {key} must be an integer >= 0, got {shown(value)}")
    config = load_saved_config(directory / "config.yaml")
    seed = record.seed if record.seed is not None else config.seed + (record.run_index or 0)
    weights = directory / "model.weights.h5"
    if weights.is_file():
        model = build_experiment_model(buildable_config(config), seed)
        _load_weights(model, weights)
    elif config.model.signed:
        model = _rebuild_from_masks(directory, config, seed, record)
    else:
        raise ValueError(f"{weights}: missing; a baseline's trained kernels are needed (only a signed run "
                         f"rebuilds from its {MASKS_FILE})")
    return LoadedRun(directory, config, seed, record, model)


def _load_weights(model, weights):
    """model.load_weights without the page of warnings Keras prints for a file of another model (it raises
    after them; the raise is what counts, as one line)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.load_weights(weights)
        except Exception as error:  # Keras raises many types, with pages of text, for a foreign or damaged file
            raise ValueError(f"{weights}: cannot be loaded into the {model.name} model of config.yaml "
                             f"({brief(error)})") from None


def _rebuild_from_masks(directory, config, seed, record):
    """The trained signed model from its seed and masks: W drawn again as training drew it (or read from
    the init file run.json names, same SHA-256), scores set to q, other variables from extra_state.npz."""
    model = build_experiment_model(*_initial_weights(directory, config, seed, record))
    layers = masked_layers(model)
    if not (directory / MASKS_FILE).is_file():
        raise ValueError(f"{directory}: neither model.weights.h5 nor {MASKS_FILE}: nothing to rebuild the "
                         "trained model from")
    masks = read_npz(directory / MASKS_FILE, {layer.name: tuple(layer.frozen_kernel.shape) for layer in layers},
                     np.int8)
    for layer in layers:
        if not np.isin(masks[layer.name], (-1, 0, 1)).all():
            raise ValueError(f"{directory / MASKS_FILE}: entry {layer.name!r} holds values other than -1/0/+1")
        set_mask(layer, masks[layer.name])
    kept = sum(int(np.count_nonzero(mask)) for mask in masks.values())
    if kept != record.final["remaining_count"]:
        raise ValueError(f"{directory / MASKS_FILE}: keeps {kept} weights, run.json records "
                         f"{record.final['remaining_count']}")
    others = other_variables(model)
    if not others:
        return model
    path = directory / EXTRA_STATE_FILE
    if not path.is_file():
        raise ValueError(f"{directory}: has neither model.weights.h5 nor {EXTRA_STATE_FILE}, so the "
                         f"{len(others)} trained variables outside the masks (BN, e.g. "
                         f"{extra_state_key(*others[0])}) are lost; a rerun of this run writes {EXTRA_STATE_FILE}")
    state = read_npz(path, {extra_state_key(name, variable): tuple(variable.shape) for name, variable in others},
                     np.float32)
    for name, variable in others:
        variable.assign(state[extra_state_key(name, variable)])
    return model


def _initial_weights(directory, config, seed, record):
    """(config, seed, InitialValues) that build the run's frozen W again: drawn from the seed, or, where
    run.json records that W came from an init file, loaded from that file if it still has the recorded SHA-256."""
    init = record.init if isinstance(record.init, dict) else {}
    recorded = {entry.get("kind"): entry for entry in init.get("files") or [] if isinstance(entry, dict)}
    if "weights" not in recorded:
        return buildable_config(config), seed, InitialValues("on_the_fly", "on_the_fly")
    file_config = copy.deepcopy(config)
    file_config.init.source = "auto"
    present = [entry for entry in resolve_initial_values(file_config, seed - config.seed).files
               if entry["kind"] == "weights"]
    if not present or present[0]["sha256"] != recorded["weights"].get("sha256"):
        raise ValueError(f"{directory}: W came from the init file {shown(recorded['weights'].get('path'))} (run.json "
                         f"records its SHA-256), which is {'changed' if present else 'missing'} under "
                         f"{weights_root(file_config)}; without it or model.weights.h5 the trained model is lost")
    return file_config, seed, InitialValues("auto", "mixed", tuple(present), ("scores",))


def effective_kernel(layer):
    """W * q(S) of a masked layer, exactly as its forward pass computes it."""
    return masked_weights(keras.ops.convert_to_numpy(layer.frozen_kernel), layer.ternary_mask())


def _signed_bn_mode(config):
    """The signed model's BN layout, made explicit so the baseline builder does not pick its own default."""
    if config.model.bn_mode is not None:
        return config.model.bn_mode
    return model_family(config.model.name).default_bn_mode(signed=True)


def plain_model(config, seed, signed_model):
    """The same architecture with ordinary layers: kernels W * q(S), other variables copied by layer name."""
    plain_config = buildable_config(config)
    plain_config.model.signed = False
    plain_config.model.bn_mode = _signed_bn_mode(config)
    plain = build_experiment_model(plain_config, seed)
    sources = {layer.name: layer for layer in iter_layers(signed_model)}
    for layer in iter_layers(plain):
        source = sources.pop(layer.name, None)
        if not layer.weights:
            continue
        if source is None:
            raise ValueError(f"layer {layer.name}: in the plain model but not in the signed one")
        if isinstance(source, MASKED_LAYER_TYPES):
            layer.kernel.assign(effective_kernel(source))
        else:
            _copy_variables(source, layer)
    left = [name for name, layer in sources.items() if layer.weights]
    if left:
        raise ValueError(f"layer {left[0]}: has variables in the signed model but no plain counterpart")
    return without_repository_initializers(plain)


def without_repository_initializers(model):
    """A copy of ``model`` (same variables' values) whose plain layers name Keras' own kernel initializer
    instead of this repository's, so that the saved model loads with Keras alone."""
    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, PLAIN_KERNEL_TYPES):
            config["kernel_initializer"] = keras.initializers.serialize(keras.initializers.Zeros())
        return layer.__class__.from_config(config)

    plain = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    plain.set_weights(model.get_weights())
    return plain


def _copy_variables(source, target):
    if [v.shape for v in source.weights] != [v.shape for v in target.weights]:
        raise ValueError(f"layer {target.name}: variables {[tuple(v.shape) for v in source.weights]} do not match "
                         f"{[tuple(v.shape) for v in target.weights]}")
    for source_variable, target_variable in zip(source.weights, target.weights):
        target_variable.assign(keras.ops.convert_to_numpy(source_variable))


def model_remaining_percent(model):
    """Share of non-hidden weights: mask entries of masked layers, nonzero kernel entries of plain ones."""
    active = total = 0
    for layer in iter_layers(model):
        if isinstance(layer, MASKED_LAYER_TYPES):
            values = layer.ternary_mask()
        elif isinstance(layer, PLAIN_KERNEL_TYPES):
            values = keras.ops.convert_to_numpy(layer.kernel)
        else:
            continue
        active, total = active + int(np.count_nonzero(values)), total + int(values.size)
    if total == 0:
        raise ValueError(f"model {model.name}: has no Dense/Conv2D kernels")
    return 100.0 * active / total


def dataset_of(model):
    """mnist / cifar10 / cifar100 from the model's input and output shapes (for bare .keras files)."""
    input_shape, classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
    candidates = [name for name, shape in INPUT_SHAPES.items() if shape == input_shape]
    if len(candidates) > 1:   # CIFAR-10 and CIFAR-100 share the input shape: the classes decide
        candidates = [name for name in candidates if NUM_CLASSES[name] == classes]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"model {model.name}: input {input_shape} / {classes} classes match no dataset; pass --dataset")


def measure_test_accuracy(model, dataset, data_dir=None, test_limit=None):
    """(accuracy fraction, number of test images) on the standardized test split."""
    data = load_dataset(dataset, data_dir, train_limit=1, test_limit=test_limit)
    probabilities = model.predict(data.x_test, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == data.y_test)), len(data.y_test)
