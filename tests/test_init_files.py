"""init_example.py pickles: layout, bit-exact round trip, safe loading, clear mismatch errors."""
import os
import pickle

import keras
import numpy as np
import pytest

import init_example
from masking import masked_layers
from masking.init_files import InitFileError, apply_init_file, init_file_path, load_init_file
from models import build_model


class Payload:
    """Unpickling this would create a file: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def fcn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    assert init_example.main(["--model", "FCN", "--runs", "2", "--out", str(root)]) == 0
    return root


def path_of(root, kind, run=0, model="FCN"):
    spec = {"weights": ("signed_constant", "elus"), "scores": ("uniform", "xavier"), "baseline": ("uniform", "elu")}[kind]
    return init_file_path(root, model, kind, {"distribution": spec[0], "scaling": spec[1], "factor": 1.0}, run)


def test_layout_and_metadata(fcn_files):
    payload = load_init_file(path_of(fcn_files, "weights", run=1))
    assert payload["model"] == "FCN" and payload["kind"] == "weights" and payload["seed"] == 7532
    assert payload["initializer"] == {"distribution": "signed_constant", "scaling": "elus", "factor": 1.0}
    assert [(e["name"], e["shape"]) for e in payload["layers"]] == \
        [("dense_1", (784, 300)), ("dense_2", (300, 100)), ("output", (100, 10))]
    magnitudes = [np.unique(np.abs(e["values"])) for e in payload["layers"]]
    assert [m.size for m in magnitudes] == [1, 1, 1]
    np.testing.assert_allclose([m[0] for m in magnitudes], np.sqrt(3 / np.array([784, 300, 100])), rtol=1e-6)


def test_round_trip_is_bit_exact_and_resets_tau(fcn_files):
    reference = build_model("FCN", seed=7531)
    model = build_model("FCN", seed=1)
    apply_init_file(model, path_of(fcn_files, "weights"), "weights")
    apply_init_file(model, path_of(fcn_files, "scores"), "scores")
    for expected, actual in zip(masked_layers(reference), masked_layers(model)):
        for name in ("frozen_kernel", "scores", "threshold"):
            assert np.array_equal(keras.ops.convert_to_numpy(getattr(expected, name)),
                                  keras.ops.convert_to_numpy(getattr(actual, name))), (actual.name, name)
    baseline = build_model("FCN", signed=False, seed=1)
    apply_init_file(baseline, path_of(fcn_files, "baseline"), "baseline")
    expected = build_model("FCN", signed=False, seed=7531)
    for a, b in zip(expected.weights, baseline.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"format": "signed-supermask-init/1", "layers": [Payload(marker)]}))
    with pytest.raises(InitFileError, match=r"evil.pkl: refused or unreadable init file \(refusing to load global posix.system\)"):
        load_init_file(evil)
    assert init_example.main(["--inspect", str(evil)]) == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(error_lines) == 1 and "evil.pkl" in error_lines[0]
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("content", [b"not a pickle", pickle.dumps([1, 2, 3]),
                                     pickle.dumps({"format": "other", "model": "FCN", "kind": "weights",
                                                   "initializer": {}, "seed": 0, "run": 0, "layers": []})])
def test_malformed_files_are_refused_with_the_file_name(tmp_path, content):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(InitFileError, match="bad.pkl"):
        load_init_file(path)


def test_mismatches_name_the_file_and_the_layer(fcn_files, tmp_path):
    conv = build_model("Conv2", seed=0)
    with pytest.raises(InitFileError, match="FCN_weights_0.pkl: made for model 'FCN', not 'Conv2'"):
        apply_init_file(conv, path_of(fcn_files, "weights"), "weights")
    wide = build_model("FCN", seed=0, width_multiplier=2)
    with pytest.raises(InitFileError, match=r"FCN_weights_0.pkl: layer dense_1 \(784, 300\) does not match "
                                            r"model layer dense_1 \(784, 600\)"):
        apply_init_file(wide, path_of(fcn_files, "weights"), "weights")
    with pytest.raises(InitFileError, match="holds 'scores' values, expected 'weights'"):
        apply_init_file(build_model("FCN"), path_of(fcn_files, "scores"), "weights")
    with pytest.raises(InitFileError, match="no such init file"):
        load_init_file(tmp_path / "missing.pkl")


def test_inspect_prints_metadata_and_shapes(fcn_files, capsys):
    assert init_example.main(["--inspect", str(path_of(fcn_files, "scores"))]) == 0
    out = capsys.readouterr().out
    assert "kind:        scores" in out and "(784, 300)" in out and "uniform" in out


def test_cli_rejects_unknown_model_and_bad_init(capsys):
    with pytest.raises(SystemExit) as exit_info:
        init_example.main(["--model", "VGG", "--out", "/nonexistent"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        init_example.main(["--weight-init", "signed_constant/nope"])
    assert "unknown scaling 'nope'" in capsys.readouterr().err


def write_payload(path, **changes):
    """A valid one-layer weights file with ``changes`` applied to its payload, pickled as a user's script would."""
    payload = {"format": "signed-supermask-init/1", "model": "FCN", "kind": "weights",
               "initializer": {"distribution": "signed_constant", "scaling": "elus", "factor": 1.0},
               "seed": 7531, "run": 0, "options": {}, "layers": [{"name": "dense_1", "shape": (4, 3),
                                                                  "values": np.ones((4, 3), np.float32)}]}
    payload.update(changes)
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


class CalledArrayClass:
    """numpy.ndarray called directly: declares any shape, here a stride-0 view of 10**13 floats over 4 bytes."""

    def __init__(self, shape, **view):
        self.shape, self.view = shape, view

    def __reduce__(self):
        return np.ndarray, (self.shape, np.dtype("float32"), *self.view.values())


@pytest.mark.parametrize("values", [CalledArrayClass((10 ** 13,), buffer=b"\0" * 4, offset=0, strides=(0,)),
                                    CalledArrayClass((3,))])
def test_the_array_class_cannot_be_called_to_bypass_the_size_bound(tmp_path, values):
    path = write_payload(tmp_path / "view.pkl", layers=[{"name": "dense_1", "shape": values.shape, "values": values}])
    with pytest.raises(InitFileError, match=r"view.pkl: refused or unreadable init file"):
        load_init_file(path)


@pytest.mark.parametrize("key", ["format", "kind"])
def test_array_valued_format_or_kind_is_refused_in_one_line(tmp_path, key):
    path = write_payload(tmp_path / "array.pkl", **{key: np.array(["weights", "scores"])})
    with pytest.raises(InitFileError, match=r"array.pkl: unsupported format"):
        load_init_file(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_naming_file_and_layer(tmp_path, bad, capsys):
    values = np.ones((4, 3), np.float32)
    values[2, 1] = bad
    path = write_payload(tmp_path / "nan.pkl", layers=[{"name": "dense_1", "shape": (4, 3), "values": values}])
    with pytest.raises(InitFileError, match=r"nan.pkl: layer 0 \('dense_1'\): 1 of 12 values are NaN or infinite"):
        load_init_file(path)
    assert init_example.main(["--inspect", str(path)]) == 2
    assert capsys.readouterr().err.count("error: ") == 1
