"""Initial-value files written by ``init_example.py`` and read by ``train.py``.

A file is a pickle of plain data::

    {"format": "signed-supermask-init/1",
     "model": "FCN", "kind": "weights" | "scores" | "baseline",
     "initializer": {"distribution": ..., "scaling": ..., "factor": ...},
     "seed": 7531, "run": 0, "options": {...build_model options...},
     "layers": [{"name": "dense_1", "shape": (784, 300), "values": float32 ndarray}, ...]}

``weights`` holds the frozen W of every masked layer, ``scores`` their initial scores S,
``baseline`` the kernels of the ordinary (baseline) model. ``seed`` and ``run`` say whose
initial values a file holds (every format-1 file records them; train.py refuses a file of
another seed or run). The same values always give the same bytes (``encode_init_payload``).

Files are read with an unpickler that admits only NumPy arrays, dtypes and plain containers,
so loading a file can never execute code from it. What a file may hold is bounded before and
while it is unpickled (file size, pickle opcodes, array bytes: ``numpy.ndarray`` is admitted
only as the class that ``_reconstruct`` rebuilds, never called, so no array can be declared
larger than its data or be a stride-0 view); the payload is then checked against the fixed
layout above, level by level, so nesting deeper than that layout is refused without being
walked, and error messages show values abbreviated (``shown``): a small file of shared
references cannot make the reader hang or exhaust memory. Values must be finite.
"""
import functools
import io
import math
import pickle
import pickletools
from pathlib import Path

import keras
import numpy as np

from masking.init_paths import InitFileError, init_file_path  # noqa: F401 (re-exported)
from masking.init_spec import InitSpec
from masking.layers import iter_layers, masked_layers
from masking.messages import shown

FORMAT = "signed-supermask-init/1"
KINDS = ("weights", "scores", "baseline")
_REQUIRED_KEYS = ("format", "model", "kind", "initializer", "seed", "run", "layers")
_SCALAR_TYPES = (str, int, float, bool, type(None))

# Bounds on an init file; the largest model here (Conv8) needs a few tens of MB and a few thousand opcodes.
MAX_FILE_BYTES = 1 << 30          # also the bound on the bytes of all its arrays together
MAX_PICKLE_OPCODES = 200_000

# (module, name) pairs NumPy needs to rebuild arrays and dtypes; nothing else is importable.
_ALLOWED_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"),
     ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


def _check_opcode_count(data):
    """Walk the opcodes without building anything: every object, and every reference to one, is an opcode."""
    for count, _ in enumerate(pickletools.genops(data)):
        if count >= MAX_PICKLE_OPCODES:
            raise pickle.UnpicklingError(f"more than {MAX_PICKLE_OPCODES} pickle opcodes")


class _ArrayClass:
    """Stands for ``numpy.ndarray`` in a file: _reconstruct's argument, not callable. Called, the class
    would allocate any declared shape, or view a few bytes as 10**13 elements with stride 0."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only what NumPy needs to rebuild arrays, and at most MAX_FILE_BYTES of array memory."""

    array_bytes = 0

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if (module, name) == ("numpy", "ndarray"):
            return _ArrayClass
        found = super().find_class(module, name)
        return functools.partial(self._bounded_reconstruct, found) if name == "_reconstruct" else found

    def _bounded_reconstruct(self, reconstruct, subtype, shape, dtype):
        """An empty array is allocated here before its data arrives: bound its size first."""
        dims = (shape,) if isinstance(shape, int) else shape
        if subtype is not _ArrayClass or not isinstance(dims, tuple) \
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in dims):
            raise pickle.UnpicklingError(f"refusing array {shown(subtype, 40)} of shape {shown(shape, 40)}")
        self.array_bytes += math.prod(dims) * np.dtype(dtype).itemsize
        if self.array_bytes > MAX_FILE_BYTES:
            raise pickle.UnpicklingError(f"arrays larger than {MAX_FILE_BYTES} bytes in all")
        return reconstruct(np.ndarray, shape, dtype)


def target_layers(model, kind):
    """The layers a file of ``kind`` covers, in model order."""
    if kind == "baseline":
        return [layer for layer in iter_layers(model)
                if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    return masked_layers(model)


def _layer_values(layer, kind):
    variable = {"weights": "frozen_kernel", "scores": "scores", "baseline": "kernel"}[kind]
    return getattr(layer, variable)


def init_payload(model, kind, initializer, seed, run, options=None):
    """The file content holding the current initial values of ``model`` for ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown init-file kind {kind!r}; choose one of {', '.join(KINDS)}")
    layers = [{"name": layer.name, "shape": tuple(int(n) for n in _layer_values(layer, kind).shape),
               "values": np.ascontiguousarray(keras.ops.convert_to_numpy(_layer_values(layer, kind)),
                                              dtype=np.float32)}
              for layer in target_layers(model, kind)]
    return {"format": FORMAT, "model": model.name, "kind": kind, "initializer": InitSpec.of(initializer).to_dict(),
            "seed": int(seed), "run": int(run), "options": dict(options or {}), "layers": layers}


def encode_init_payload(payload):
    """The file's bytes: a pickle without memo (``fast``), so the bytes depend on the values alone,
    never on which Python objects happened to be shared (equal strings, dtypes) when it was written."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.fast = True
    pickler.dump(payload)
    return buffer.getvalue()


def same_init_content(first, second):
    """Whether two payloads hold the same metadata and bit-identical values."""
    def metadata(payload):
        return {key: value for key, value in payload.items() if key != "layers"}

    def layers(payload):
        return [(entry["name"], tuple(entry["shape"]), entry["values"].dtype.str, entry["values"].tobytes())
                for entry in payload["layers"]]

    return metadata(first) == metadata(second) and layers(first) == layers(second)


def load_init_file(path):
    """Read and validate a file without ever executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise InitFileError(f"{path}: no such init file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InitFileError(f"{path}: refused init file ({path.stat().st_size} bytes, more than {MAX_FILE_BYTES})")
    try:
        data = path.read_bytes()
        _check_opcode_count(data)
        payload = _ArraysOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as error:  # any unpickling failure is a refused file
        raise InitFileError(f"{path}: refused or unreadable init file ({str(error)[:200]})") from None
    _check_payload(path, payload)
    return payload


def _check_payload(path, payload):
    """Plain scalars, mappings of scalars and a non-empty list of layers with float arrays of their shape."""
    if not isinstance(payload, dict) or any(key not in payload for key in _REQUIRED_KEYS):
        raise InitFileError(f"{path}: not an init file; expected a dict with keys {', '.join(_REQUIRED_KEYS)}")
    if not all(isinstance(payload[key], str) for key in ("format", "kind")) \
            or payload["format"] != FORMAT or payload["kind"] not in KINDS:
        raise InitFileError(f"{path}: unsupported format {shown(payload['format'])} / kind {shown(payload['kind'])}")
    for key, kind, label in (("model", str, "a string"), ("seed", int, "an integer"), ("run", int, "an integer")):
        if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            raise InitFileError(f"{path}: {key} must be {label}, got {shown(payload[key])}")
    for key in ("initializer", "options"):
        value = payload.get(key, {})
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, _SCALAR_TYPES)
                                                for k, v in value.items())):
            raise InitFileError(f"{path}: {key} must map names to plain values, got {shown(value)}")
    layers = payload["layers"]
    if not isinstance(layers, list) or not layers:
        raise InitFileError(f"{path}: layers must be a non-empty list, got {shown(layers)}")
    for index, entry in enumerate(layers):
        _check_layer(path, index, entry)
    # An array's nbytes counts what it claims to hold: a view cannot pass for the few bytes behind it.
    if sum(entry["values"].nbytes for entry in layers) > MAX_FILE_BYTES:
        raise InitFileError(f"{path}: refused init file (arrays larger than {MAX_FILE_BYTES} bytes in all)")
    for index, entry in enumerate(layers):
        bad = entry["values"].size - int(np.count_nonzero(np.isfinite(entry["values"])))
        if bad:
            raise InitFileError(f"{path}: layer {index} ({shown(entry['name'], 40)}): {bad} of "
                                f"{entry['values'].size} values are NaN or infinite; initial values must be finite")


def _check_layer(path, index, entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InitFileError(f"{path}: layer {index}: expected a dict with a name, got {shown(entry)}")
    where = f"{path}: layer {index} ({shown(entry['name'], 40)})"
    shape, values = entry.get("shape"), entry.get("values")
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                                       for n in shape):
        raise InitFileError(f"{where}: shape must be a tuple of positive sizes, got {shown(shape)}")
    if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype, np.floating):
        kind = f"{values.dtype} array" if isinstance(values, np.ndarray) else shown(values)
        raise InitFileError(f"{where}: values must be a float array, got {kind}")
    if tuple(values.shape) != tuple(shape):
        raise InitFileError(f"{where}: values have shape {values.shape}, the entry says {tuple(shape)}")


def apply_init_file(model, path, expected_kind, payload=None):
    """Assign a file's arrays to ``model``; any mismatch names the file and the layer. ``payload``:
    the file as load_init_file already read it (else it is read here)."""
    payload = load_init_file(path) if payload is None else payload
    if payload["kind"] != expected_kind:
        raise InitFileError(f"{path}: holds {payload['kind']!r} values, expected {expected_kind!r}")
    if payload["model"] != model.name:
        raise InitFileError(f"{path}: made for model {shown(payload['model'])}, not {model.name!r}")
    layers = target_layers(model, expected_kind)
    if len(layers) != len(payload["layers"]):
        raise InitFileError(f"{path}: has {len(payload['layers'])} layers, model {model.name} has {len(layers)}")
    for layer, entry in zip(layers, payload["layers"]):
        variable = _layer_values(layer, expected_kind)
        if entry["name"] != layer.name or tuple(entry["shape"]) != tuple(variable.shape):
            raise InitFileError(f"{path}: layer {entry['name'][:60]} {tuple(entry['shape'])} does not match "
                                f"model layer {layer.name} {tuple(variable.shape)}")
        if expected_kind == "baseline":
            variable.assign(entry["values"])
        else:
            layer.set_initial_values(**{"frozen_kernel" if expected_kind == "weights" else "scores": entry["values"]})
    return payload
