"""export.py: plain-Keras and compact exports of a real tiny run round-trip exactly; evaluate agrees."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from conftest import real_data_dir

import export
import init_example
from masking import masked_layers
from masking.init_files import init_file_path, load_init_file
from reporting.compact import pack_ternary, read_compact, unpack_ternary, write_compact
from reporting.runmodel import effective_kernel, load_run, plain_model, without_repository_initializers
from training.config import ExperimentConfig
from training.runner import RunTrainer, build_experiment_model
from training.schema import from_dict

TINY_FCN = {"experiment": "fcn_tiny", "runs": 1, "model": {"name": "FCN"},
            "training": {"epochs": 1}, "data": {"dataset": "mnist", "train_limit": 256, "test_limit": 256}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out_root = tmp_path_factory.mktemp("results")
    RunTrainer(from_dict(ExperimentConfig, TINY_FCN), 0, out_root, data_dir=str(real_data_dir("mnist.npz")), verbose=False).run()
    return out_root / "fcn_tiny" / "run_0"


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    return export.export_run(run_dir, tmp_path_factory.mktemp("export"))


def test_pack_unpack_ternary_uses_two_bits_per_weight():
    rng = np.random.default_rng(0)
    for shape in [(1,), (3, 5), (7, 3, 3, 2), (784, 300)]:
        mask = rng.integers(-1, 2, size=shape).astype(np.int8)
        packed = pack_ternary(mask)
        assert packed.dtype == np.uint8 and packed.size == -(-2 * mask.size // 8)
        np.testing.assert_array_equal(unpack_ternary(packed, shape), mask)
    with pytest.raises(ValueError, match="outside -1/0/\\+1"):
        pack_ternary(np.array([2]))


@pytest.mark.slow
def test_plain_keras_export_predicts_like_the_signed_model(run_dir, exported):
    run = load_run(run_dir)
    plain = keras.models.load_model(exported["keras"], compile=False)
    images = np.load(real_data_dir("mnist.npz") / "mnist.npz")["x_test"][:200].reshape(200, -1).astype(np.float32) / 255.0
    np.testing.assert_allclose(plain.predict(images, verbose=0), run.model.predict(images, verbose=0), atol=1e-6)
    for signed_layer in masked_layers(run.model):
        kernel = keras.ops.convert_to_numpy(plain.get_layer(signed_layer.name).kernel)
        np.testing.assert_array_equal(kernel, effective_kernel(signed_layer))
    assert exported["max_difference"] <= 1e-6


@pytest.mark.slow
def test_keras_file_loads_without_this_repository(exported, tmp_path):
    with zipfile.ZipFile(exported["keras"]) as archive:
        assert "signed_supermask" not in archive.read("config.json").decode()
    code = ("import keras, numpy as np; m = keras.models.load_model(r'%s'); "
            "print(m.predict(np.zeros((2, 784)), verbose=0).shape)" % exported["keras"])
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(2, 10)" in result.stdout


@pytest.mark.slow
def test_compact_export_is_bit_exact_and_small(run_dir, exported):
    run = load_run(run_dir)
    rebuilt, config, meta = read_compact(exported["compact"])
    assert config.experiment == "fcn_tiny" and meta["seed"] == run.seed
    for original, restored in zip(masked_layers(run.model), masked_layers(rebuilt)):
        np.testing.assert_array_equal(effective_kernel(restored), effective_kernel(original))
        np.testing.assert_array_equal(restored.ternary_mask(), original.ternary_mask())
    inputs = np.random.default_rng(1).standard_normal((32, 784)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict(inputs, verbose=0), run.model.predict(inputs, verbose=0))
    sizes = exported["sizes"]
    assert sizes["kinds"] == ["initializer"] * 3
    assert sizes["dense_bytes"] == 4 * 266_200
    assert sizes["compact_bytes"] == exported["compact"].stat().st_size
    assert sizes["compact_bytes"] * 12 <= sizes["dense_bytes"]


@pytest.mark.slow
def test_compact_falls_back_when_weights_do_not_regenerate(run_dir, tmp_path):
    run = load_run(run_dir)
    first, second, _ = masked_layers(run.model)
    frozen = keras.ops.convert_to_numpy(first.frozen_kernel)
    first.frozen_kernel.assign(-frozen)                       # still signed-constant, no longer the seed's draw
    second.frozen_kernel.assign(np.random.default_rng(2).uniform(-0.1, 0.1, second.frozen_kernel.shape))
    sizes = write_compact(tmp_path / "fallback.npz", run.model, run.config, run.seed)
    assert sizes["kinds"] == ["signed_constant", "float32", "initializer"]
    rebuilt, _, _ = read_compact(tmp_path / "fallback.npz")
    for original, restored in zip(masked_layers(run.model), masked_layers(rebuilt)):
        np.testing.assert_array_equal(effective_kernel(restored), effective_kernel(original))


def test_compact_refuses_a_baseline_model():
    config = from_dict(ExperimentConfig, {**TINY_FCN, "model": {"name": "FCN", "signed": False}})
    with pytest.raises(ValueError, match="needs a signed model"):
        write_compact("unused.npz", build_experiment_model(config, 0), config, 0)


def test_baseline_keras_export_needs_no_repository_class(tmp_path):
    config = from_dict(ExperimentConfig, {**TINY_FCN, "model": {"name": "FCN", "signed": False}})
    without_repository_initializers(build_experiment_model(config, 0)).save(tmp_path / "baseline.keras")
    with zipfile.ZipFile(tmp_path / "baseline.keras") as archive:
        assert "signed_supermask" not in archive.read("config.json").decode()


def test_resnet_exports_copy_batch_norm_and_match(tmp_path):
    """No data needed: random scores and BN statistics on a narrow ResNet20 (real stem BN, frozen block BNs)."""
    config = from_dict(ExperimentConfig, {"experiment": "resnet_tiny", "model": {
        "name": "ResNet20", "width_multiplier": 0.25, "threshold_fraction": 0.75}, "data": {"dataset": "cifar10"}})
    model = build_experiment_model(config, 3)
    rng = np.random.default_rng(3)
    for layer in masked_layers(model):
        layer.scores.assign(rng.normal(0, 0.1, layer.scores.shape))
    stem_bn = model.get_layer("stem_bn")
    for variable in stem_bn.weights:
        variable.assign(rng.uniform(0.5, 1.5, variable.shape))
    inputs = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
    reference = export.eager_predict(model, inputs)
    plain = plain_model(config, 3, model)
    assert not masked_layers(plain)
    np.testing.assert_array_equal(plain.get_layer("stem_bn").weights[0].numpy(), stem_bn.weights[0].numpy())
    np.testing.assert_allclose(export.eager_predict(plain, inputs), reference, atol=1e-6)
    sizes = write_compact(tmp_path / "resnet.npz", model, config, 3)
    assert set(sizes["kinds"]) == {"initializer"}
    rebuilt, _, meta = read_compact(tmp_path / "resnet.npz")
    assert any(entry["layer"] == "stem_bn" for entry in meta["variables"])
    np.testing.assert_array_equal(export.eager_predict(rebuilt, inputs), reference)


@pytest.mark.slow
def test_evaluate_recomputes_the_recorded_metrics(run_dir, exported):
    recorded = json.loads((run_dir / "run.json").read_text())["final"]
    for path in (run_dir, exported["compact"]):
        result = export.evaluate_path(path, data_dir=str(real_data_dir("mnist.npz")))
        assert result["images"] == 256
        assert result["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)
        assert result["remaining_percent"] == pytest.approx(recorded["remaining_percent"])
    plain = export.evaluate_path(exported["keras"], data_dir=str(real_data_dir("mnist.npz")), test_limit=256)
    assert plain["dataset"] == "mnist"
    assert plain["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)
    assert plain["remaining_percent"] == pytest.approx(recorded["remaining_percent"])


@pytest.mark.slow
def test_a_keras_file_in_its_runs_export_folder_is_evaluated_like_the_run(run_dir, exported, tmp_path, capsys):
    """The run's test limit and recorded values come with a .keras file in <run>/export/ under its export
    name; a copy apart from its run says that it has none (a walk-through took 80.23 % on 10,000 images
    against the recorded 77.60 % on 500 for a faulty export)."""
    run_copy = tmp_path / "fcn_tiny" / "run_0"
    shutil.copytree(run_dir, run_copy)
    (run_copy / "export").mkdir()
    shutil.copy(exported["keras"], run_copy / "export" / "fcn_tiny_run0.keras")
    recorded = json.loads((run_dir / "run.json").read_text())["final"]
    data_dir = str(real_data_dir("mnist.npz"))
    result = export.evaluate_path(run_copy / "export" / "fcn_tiny_run0.keras", data_dir=data_dir)
    assert result["images"] == 256 and result["recorded"] == recorded
    assert result["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)
    shutil.copy(exported["keras"], run_copy / "export" / "renamed.keras")   # not the run's export name
    assert export.evaluate_path(run_copy / "export" / "renamed.keras", data_dir=data_dir)["recorded"] is None
    assert export.main(["evaluate", str(exported["keras"]), "--data-dir", data_dir]) == 0
    printed = capsys.readouterr().out
    assert "on 10000 mnist test images" in printed and "has no recorded values: all test images; --test-limit N" in printed


@pytest.mark.slow
def test_cli(run_dir, tmp_path, capsys):
    assert export.main([str(run_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "dense float32 1,064,800 B" in printed and "ratio" in printed
    assert "(W of 3 layers regenerated from its initializer and seed; identical kernels on read-back: True" in printed
    assert export.weights_text(["signed_constant", "float32", "initializer", "float32"]) == (
        "W of 1 layer stored as signs and one magnitude; W of 2 layers stored as float32; "
        "W of 1 layer regenerated from its initializer and seed")
    assert export.main(["evaluate", str(tmp_path / "fcn_tiny_run0.compact.npz"), "--data-dir", str(real_data_dir("mnist.npz"))]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert export.main(["evaluate", str(tmp_path / "notes.txt")]) == 2
    (tmp_path / "unfinished").mkdir()
    assert export.main([str(tmp_path / "unfinished")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert export.main([str(run_dir.parent)]) == 2
    assert f"{run_dir.parent}: an experiment folder; name one of its runs, e.g. {run_dir}" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert export.main([str(run_dir), "--out", str(tmp_path / "a_file" / "sub")]) == 2
    assert f"--out {tmp_path / 'a_file' / 'sub'}: cannot create the folder" in capsys.readouterr().err


def without_weights_file(run, tmp_path):
    """The run folder as measured/ ships it: config.yaml, run.json, history.json, masks.npz (+ extra_state.npz)."""
    shipped = tmp_path / run.parent.name / run.name
    shutil.copytree(run, shipped, ignore=shutil.ignore_patterns("model.weights.h5", "export"))
    return shipped


@pytest.mark.slow
def test_a_signed_run_without_its_weights_file_is_rebuilt_from_seed_and_masks(run_dir, tmp_path):
    shipped = without_weights_file(run_dir, tmp_path)
    original, rebuilt = load_run(run_dir), load_run(shipped)
    for first, second in zip(masked_layers(original.model), masked_layers(rebuilt.model)):
        np.testing.assert_array_equal(effective_kernel(second), effective_kernel(first))
    inputs = np.random.default_rng(4).standard_normal((32, 784)).astype(np.float32)
    np.testing.assert_array_equal(export.eager_predict(rebuilt.model, inputs), export.eager_predict(original.model, inputs))
    result = export.export_run(shipped, tmp_path / "out")
    assert result["max_difference"] <= 1e-6 and result["compact_kernels_equal"]
    recorded = json.loads((run_dir / "run.json").read_text())["final"]
    evaluated = export.evaluate_path(shipped, data_dir=str(real_data_dir("mnist.npz")))
    assert evaluated["accuracy"] == pytest.approx(recorded["test_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_a_rebuilt_run_must_match_its_recorded_mask_count(run_dir, tmp_path):
    shipped = without_weights_file(run_dir, tmp_path)
    record = json.loads((shipped / "run.json").read_text())
    record["final"]["remaining_count"] += 1
    (shipped / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"masks.npz: keeps \d+ weights, run.json records \d+"):
        load_run(shipped)


@pytest.mark.slow
def test_a_shipped_run_exports_outside_the_shipped_folder(monkeypatch, run_dir, tmp_path):
    shipped_root = tmp_path / "measured"
    shipped = without_weights_file(run_dir, shipped_root)
    monkeypatch.setattr(export, "SHIPPED_RESULTS", shipped_root)
    assert export.default_out_dir(shipped).resolve() == tmp_path / "exports"
    assert export.default_out_dir(run_dir) == run_dir / "export"


@pytest.mark.slow
def test_a_resnet_run_ships_its_batch_norm_state_and_is_rebuilt_from_it(tmp_path):
    """Training writes extra_state.npz (BN gamma/beta and moving statistics) beside the masks; without it (and
    without model.weights.h5) export names what is lost and that a rerun writes it."""
    config = from_dict(ExperimentConfig, {
        "experiment": "resnet_tiny", "model": {"name": "ResNet20", "width_multiplier": 0.25, "threshold_fraction": 0.75},
        "training": {"epochs": 1}, "data": {"dataset": "cifar10", "train_limit": 256, "test_limit": 128}})
    RunTrainer(config, 0, tmp_path / "results", data_dir=str(real_data_dir("cifar10_jpeg.npz")), verbose=False).run()
    run = tmp_path / "results" / "resnet_tiny" / "run_0"
    with np.load(run / "extra_state.npz") as state:
        assert {"stem_bn/gamma", "stem_bn/moving_mean", "stem_bn/moving_variance"} <= set(state.files)
        assert not np.all(state["stem_bn/moving_mean"] == 0)      # trained statistics, not the initial zeros
    shipped = without_weights_file(run, tmp_path / "shipped")
    inputs = np.random.default_rng(5).standard_normal((8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(export.eager_predict(load_run(shipped).model, inputs),
                                  export.eager_predict(load_run(run).model, inputs))
    (shipped / "extra_state.npz").unlink()
    with pytest.raises(ValueError, match="neither model.weights.h5 nor extra_state.npz.*stem_bn/gamma.*a rerun of "
                                         "this run writes extra_state.npz"):
        load_run(shipped)


@pytest.mark.slow
def test_a_run_whose_weights_came_from_an_init_file_is_rebuilt_from_that_file(tmp_path):
    """W from an edited init file is not the seed's draw: the rebuild loads the file run.json hashes, and
    refuses one whose content changed since."""
    weights = tmp_path / "weights"
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(weights)]) == 0
    path = init_file_path(weights, "FCN", "weights", {"distribution": "signed_constant", "scaling": "elus"}, 0)
    payload = load_init_file(path)
    for layer in payload["layers"]:
        layer["values"] = -layer["values"]
    path.write_bytes(pickle.dumps(payload, protocol=4))
    config = from_dict(ExperimentConfig, {**TINY_FCN, "init": {"source": "files", "weights_dir": str(weights)}})
    RunTrainer(config, 0, tmp_path / "results", data_dir=str(real_data_dir("mnist.npz")), verbose=False).run()
    run = tmp_path / "results" / "fcn_tiny" / "run_0"
    shipped = without_weights_file(run, tmp_path / "shipped")
    original, rebuilt = load_run(run), load_run(shipped)
    for first, second in zip(masked_layers(original.model), masked_layers(rebuilt.model)):
        np.testing.assert_array_equal(effective_kernel(second), effective_kernel(first))
    for layer in payload["layers"]:
        layer["values"] = -layer["values"]
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(ValueError, match="W came from the init file .* which is changed under"):
        load_run(shipped)
