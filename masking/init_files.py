"""Initial-value files written by ``init_example.py`` and read by ``train.py``.

A file is a pickle of plain data::

    {"format": "signed-supermask-init/1",
     "model": "FCN", "kind": "weights" | "scores" | "baseline",
     "initializer": {"distribution": ..., "scaling": ..., "factor": ...},
     "seed": 7531, "run": 0, "options": {...build_model options...},
     "layers": [{"name": "dense_1", "shape": (784, 300), "values": float32 ndarray}, ...]}

``weights`` holds the frozen W of every masked layer, ``scores`` their initial scores S,
``baseline`` the kernels of the ordinary (baseline) model. Files are read with an
unpickler that admits only NumPy arrays, dtypes and plain containers, so loading a
file can never execute code from it.
"""
import io
import pickle
from pathlib import Path

import keras
import numpy as np

from fileio import atomic_write_bytes
from masking.init_spec import InitSpec
from masking.layers import iter_layers, masked_layers

FORMAT = "signed-supermask-init/1"
KINDS = ("weights", "scores", "baseline")
_REQUIRED_KEYS = ("format", "model", "kind", "initializer", "seed", "run", "layers")

# (module, name) pairs NumPy needs to rebuild arrays and dtypes; nothing else is importable.
_ALLOWED_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"),
     ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


class InitFileError(ValueError):
    """A refused, malformed or mismatching initial-value file (message names the file)."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def init_file_path(root, model_name, kind, initializer, run):
    """weights/<model>/<kind>/<distribution>_<scaling>[_x<factor>]/<model>_<kind>_<run>.pkl

    ``initializer`` is an InitSpec or its dict."""
    folder = InitSpec.of(initializer).folder_name()
    return Path(root) / model_name / kind / folder / f"{model_name}_{kind}_{run}.pkl"


def target_layers(model, kind):
    """The layers a file of ``kind`` covers, in model order."""
    if kind == "baseline":
        return [layer for layer in iter_layers(model)
                if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    return masked_layers(model)


def _layer_values(layer, kind):
    variable = {"weights": "frozen_kernel", "scores": "scores", "baseline": "kernel"}[kind]
    return getattr(layer, variable)


def save_init_file(path, model, kind, initializer, seed, run, options=None):
    """Pickle the current initial values of ``model`` for ``kind`` (atomic write)."""
    if kind not in KINDS:
        raise ValueError(f"unknown init-file kind {kind!r}; choose one of {', '.join(KINDS)}")
    layers = [{"name": layer.name, "shape": tuple(_layer_values(layer, kind).shape),
               "values": np.asarray(keras.ops.convert_to_numpy(_layer_values(layer, kind)), dtype=np.float32)}
              for layer in target_layers(model, kind)]
    payload = {"format": FORMAT, "model": model.name, "kind": kind, "initializer": InitSpec.of(initializer).to_dict(),
               "seed": int(seed), "run": int(run), "options": dict(options or {}), "layers": layers}
    atomic_write_bytes(path, pickle.dumps(payload, protocol=4))


def load_init_file(path):
    """Read and validate a file without ever executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise InitFileError(f"{path}: no such init file")
    try:
        payload = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # any unpickling failure is a refused file
        raise InitFileError(f"{path}: refused or unreadable init file ({error})") from None
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED_KEYS):
        raise InitFileError(f"{path}: not an init file; expected a dict with keys {', '.join(_REQUIRED_KEYS)}")
    if payload["format"] != FORMAT or payload["kind"] not in KINDS:
        raise InitFileError(f"{path}: unsupported format {payload['format']!r} / kind {payload['kind']!r}")
    for entry in payload["layers"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("values"), np.ndarray)
                and tuple(entry["values"].shape) == tuple(entry.get("shape", ()))):
            raise InitFileError(f"{path}: malformed layer entry {entry.get('name', '?') if isinstance(entry, dict) else entry!r}")
    return payload


def apply_init_file(model, path, expected_kind):
    """Assign a file's arrays to ``model``; any mismatch names the file and the layer."""
    payload = load_init_file(path)
    if payload["kind"] != expected_kind:
        raise InitFileError(f"{path}: holds {payload['kind']!r} values, expected {expected_kind!r}")
    if payload["model"] != model.name:
        raise InitFileError(f"{path}: made for model {payload['model']!r}, not {model.name!r}")
    layers = target_layers(model, expected_kind)
    if len(layers) != len(payload["layers"]):
        raise InitFileError(f"{path}: has {len(payload['layers'])} layers, model {model.name} has {len(layers)}")
    for layer, entry in zip(layers, payload["layers"]):
        variable = _layer_values(layer, expected_kind)
        if entry["name"] != layer.name or tuple(entry["shape"]) != tuple(variable.shape):
            raise InitFileError(f"{path}: layer {entry['name']} {tuple(entry['shape'])} does not match "
                                f"model layer {layer.name} {tuple(variable.shape)}")
        if expected_kind == "baseline":
            variable.assign(entry["values"])
        else:
            layer.set_initial_values(**{"frozen_kernel" if expected_kind == "weights" else "scores": entry["values"]})
    return payload
