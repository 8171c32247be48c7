"""The compact export of a signed run: 2 bits per weight for the mask plus what regenerates W.

File layout (an uncompressed .npz, loadable with ``allow_pickle=False``)::

    meta              uint8 bytes of a JSON document: format, seed, config (YAML text),
                      recorded final metrics, and per masked layer {name, shape, weights}
    mask_<i>          the layer's ternary mask, code q+1 in {0,1,2} as 2 bits, np.packbits
    signs_<i>         (signed_constant layers) one bit per weight, 1 = negative
    magnitude_<i>     (signed_constant layers) the float32 constant c
    weights_<i>       (float32 layers) W itself
    variable_<j>      other variables (e.g. BN) by position in ``meta["variables"]``

``weights`` is tried in this order and verified bit-exactly before it is chosen:
``initializer`` (the layer's own weight initializer: spec + seed, as the layer factory gave
it), ``signed_constant`` (one magnitude + sign bits) and ``float32`` (anything else, e.g.
uniform weights from init files).

Every mask mode (``model.mask_mode``) fits the 2-bit code: binary, top_k and bernoulli masks use only 0/+1.
On reading, the scores are set to q itself and tau to 0.5, which gives back the same mask in every
mode: q > 0.5 (binary), q outside +-0.5 (signed), q > 0 (bernoulli's evaluation rule), and for the
top-k modes the ceil(k * n) nonzero entries of q are exactly the layer's top-k of S (top_k) or of |S|
(signed_top_k).
"""
import json
from pathlib import Path

import keras
import numpy as np

from fileio import parse_json, write_npz
from masking import ScaledInitializer, masked_layers
from models import build_experiment_model
from reporting.npz import CheckedNpzReader
from reporting.runmodel import buildable_config
from training.config import config_to_yaml, saved_config
from training.yaml_files import parse_yaml
from training.run_record import is_finite_number
from training.schema import brief, shown
from training.signed_state import other_variables, set_mask

FORMAT = "signed-supermask-compact/1"
META_BYTES = 4 << 20   # meta is YAML text and one small record per layer: a few KB even for ResNet110


def pack_ternary(mask):
    """{-1, 0, +1} -> 2 bits per entry (code q + 1, high bit first), packed with np.packbits."""
    codes = (np.asarray(mask, dtype=np.int8).reshape(-1) + 1).astype(np.uint8)
    if codes.size and codes.max() > 2:
        raise ValueError(f"mask holds values outside -1/0/+1: {sorted(set(np.unique(codes) - 1))}")
    return np.packbits(np.stack([codes >> 1, codes & 1], axis=1).reshape(-1))


def unpacked_bits(packed, count):
    """The first ``count`` bits of ``packed``; np.unpackbits would pad a short (tampered) array with zeros."""
    if packed.dtype != np.uint8 or packed.ndim != 1 or 8 * packed.size < count:
        raise ValueError(f"{packed.dtype} array of {packed.size} entries, {count} bits needed")
    return np.unpackbits(packed, count=count)


def unpack_ternary(packed, shape):
    count = int(np.prod(shape))
    bits = unpacked_bits(packed, 2 * count).reshape(count, 2)
    return ((bits[:, 0] * 2 + bits[:, 1]).astype(np.int8) - 1).reshape(shape)


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _weight_record(layer, index, arrays):
    """The cheapest verified description of the frozen W of masked layer ``index``."""
    weights = keras.ops.convert_to_numpy(layer.frozen_kernel).astype(np.float32)
    initializer = layer.weight_initializer
    seeded = isinstance(initializer, ScaledInitializer) and initializer.seed is not None   # else not regenerable
    if seeded and _same_bits(initializer.sample(weights.shape), weights):
        return {"kind": "initializer", **initializer.get_config()}
    magnitude = np.abs(weights.reshape(-1)[:1]).astype(np.float32)
    if weights.size and magnitude[0] > 0 and np.all(np.abs(weights) == magnitude[0]):
        arrays[f"magnitude_{index}"] = magnitude.reshape(())
        arrays[f"signs_{index}"] = np.packbits(weights.reshape(-1) < 0)
        return {"kind": "signed_constant"}
    arrays[f"weights_{index}"] = weights
    return {"kind": "float32"}


def regenerate_weights(record, index, shape, arrays):
    """W of masked layer ``index`` from its record (the inverse of ``_weight_record``)."""
    kind = record["kind"]
    if kind == "initializer":
        spec = {key: record[key] for key in ("distribution", "scaling", "factor", "seed")}
        return ScaledInitializer(**spec).sample(tuple(shape))
    if kind == "signed_constant":
        magnitude = arrays[f"magnitude_{index}"].astype(np.float32)
        negative = unpacked_bits(arrays[f"signs_{index}"], int(np.prod(shape))).astype(bool)
        return np.where(negative, -magnitude, magnitude).astype(np.float32).reshape(shape)
    if kind == "float32":
        return arrays[f"weights_{index}"]
    raise ValueError(f"layer {index}: unknown weights kind {kind!r}")


def write_compact(path, model, config, seed, recorded=None):
    """Write the compact file of a signed model; returns {dense_bytes, compact_bytes, ratio, kinds}."""
    layers = masked_layers(model)
    if not config.model.signed or not layers:
        raise ValueError(f"{config.experiment}: compact export needs a signed model (model.signed is false)")
    arrays, records = {}, []
    for index, layer in enumerate(layers):
        arrays[f"mask_{index}"] = pack_ternary(layer.ternary_mask())
        records.append({"name": layer.name, "shape": list(layer.frozen_kernel.shape),
                        "weights": _weight_record(layer, index, arrays)})
    others = other_variables(model)
    for index, (_, variable) in enumerate(others):
        arrays[f"variable_{index}"] = keras.ops.convert_to_numpy(variable).astype(np.float32)
    meta = {"format": FORMAT, "seed": int(seed), "config": config_to_yaml(config), "recorded": recorded,
            "layers": records, "variables": [{"layer": name, "shape": list(v.shape)} for name, v in others]}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    write_npz(path, arrays, compressed=False)
    dense = 4 * (sum(int(np.prod(r["shape"])) for r in records) + sum(int(np.prod(v.shape)) for _, v in others))
    compact = path.stat().st_size
    return {"dense_bytes": dense, "compact_bytes": compact, "ratio": dense / compact,
            "kinds": [r["weights"]["kind"] for r in records]}


def read_compact(path):
    """(signed model with identical effective kernels, its config, meta); scores are set to q itself, tau to 0.5
    (the same mask in every mask mode, see the module docstring).

    A tampered or foreign file is a one-line ValueError naming the file (and the layer); every entry's
    header is checked against the model that meta describes before its data is read."""
    path = Path(path)
    with CheckedNpzReader(path) as npz:
        meta = _read_meta(path, npz)
        try:
            raw = parse_yaml(meta["config"])
        except ValueError as error:
            raise ValueError(f"{path}: meta config: {error}") from None
        config = saved_config(raw, f"{path}: meta config")
        model = build_experiment_model(buildable_config(config), meta["seed"])
        layers, others = masked_layers(model), other_variables(model)
        if [layer.name for layer in layers] != [r["name"] for r in meta["layers"]]:
            raise ValueError(f"{path}: masked layers {shown([r['name'] for r in meta['layers']])} do not match the "
                             f"model's {shown([layer.name for layer in layers])}")
        if len(meta["variables"]) != len(others):
            raise ValueError(f"{path}: stored non-masked variables do not match the model's")
        expected = _expected_entries(layers, others)
        arrays = {key: npz.read(key, *expected[key]) for key in npz.headers if key in expected}
    for index, (layer, record) in enumerate(zip(layers, meta["layers"])):
        shape = tuple(layer.frozen_kernel.shape)
        if tuple(record["shape"]) != shape:
            raise ValueError(f"{path}: layer {index} ({layer.name}): meta shape {shown(record['shape'])}, "
                             f"the model's is {shape}")
        try:
            weights = np.asarray(regenerate_weights(record["weights"], index, shape, arrays), dtype=np.float32)
            mask = unpack_ternary(arrays[f"mask_{index}"], shape)
        except (KeyError, ValueError, TypeError) as error:
            reason = f"missing entry {error}" if isinstance(error, KeyError) else brief(error)
            raise ValueError(f"{path}: layer {index} ({layer.name}): {reason}") from None
        layer.frozen_kernel.assign(weights)
        set_mask(layer, mask)
    for index, (_, variable) in enumerate(others):
        if f"variable_{index}" not in arrays:
            raise ValueError(f"{path}: stored non-masked variables do not match the model's")
        variable.assign(arrays[f"variable_{index}"])
    return model, config, meta


def _expected_entries(layers, others):
    """{entry: (shape, dtype)} of every array a compact file of this model may hold."""
    expected = {}
    for index, layer in enumerate(layers):
        shape = tuple(layer.frozen_kernel.shape)
        count = int(np.prod(shape))
        expected.update({f"mask_{index}": ((-(-2 * count // 8),), np.uint8),
                         f"signs_{index}": ((-(-count // 8),), np.uint8),
                         f"magnitude_{index}": ((), np.float32), f"weights_{index}": (shape, np.float32)})
    expected.update({f"variable_{index}": (tuple(variable.shape), np.float32)
                     for index, (_, variable) in enumerate(others)})
    return expected


def _read_meta(path, npz):
    """The meta document, checked for the fields read_compact uses (no value is trusted blindly)."""
    if "meta" not in npz.headers:
        raise ValueError(f"{path}: not a compact export (no meta entry)")
    text = npz.read("meta", dtype=np.uint8, max_bytes=META_BYTES).tobytes()
    try:
        meta = parse_json(text)
    except ValueError as error:   # also a meta nested too deeply for Python's parser (fileio.parse_json)
        raise ValueError(f"{path}: meta is not a JSON document ({type(error).__name__}: {str(error)[:60]})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: meta is not a JSON object, got {shown(meta)}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported format {shown(meta.get('format'))}, expected {FORMAT}")
    checks = (("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
              ("config", lambda v: isinstance(v, str)),
              ("layers", lambda v: isinstance(v, list) and all(
                  isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("shape"), list)
                  and isinstance(r.get("weights"), dict) for r in v)),
              ("variables", lambda v: isinstance(v, list)),
              ("recorded", lambda v: v is None or isinstance(v, dict) and all(
                  is_finite_number(v.get(key)) for key in ("test_accuracy", "remaining_percent"))))
    for key, valid in checks:
        if not valid(meta.get(key)):
            raise ValueError(f"{path}: meta {key} is missing or malformed, got {shown(meta.get(key))}")
    return meta
