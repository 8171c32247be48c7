"""Signed-supermask layer state (docs/SPEC.md §1.4): tau fixed in training, saving, configs, train steps."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from layer_helpers import make_dense, np_var, requires_tf

from masking import ScaledInitializer, SignedSupermaskConv2D, SignedSupermaskDense, masked_layers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- tau semantics

@pytest.mark.parametrize("p", [0.0, 0.1, 0.4, 0.75])
def test_tau_is_fraction_of_initial_max(p):
    dense = SignedSupermaskDense(20, threshold_fraction=p,
                                 score_initializer=ScaledInitializer("uniform", "xavier", seed=1))
    dense.build((None, 30))
    conv = SignedSupermaskConv2D(6, 3, threshold_fraction=p,
                                 score_initializer=ScaledInitializer("uniform", "xavier", seed=2))
    conv.build((None, 5, 5, 4))
    for layer in (dense, conv):
        max_abs = np.abs(np_var(layer.scores)).max()
        assert np_var(layer.threshold) == pytest.approx(p * max_abs, rel=1e-6, abs=0)


def test_tau_is_per_layer():
    a = SignedSupermaskDense(10, score_initializer=ScaledInitializer("uniform", "xavier", seed=1))
    a.build((None, 784))
    b = SignedSupermaskDense(10, score_initializer=ScaledInitializer("uniform", "xavier", seed=1))
    b.build((None, 20))
    assert np_var(a.threshold) == pytest.approx(0.4 * np.abs(np_var(a.scores)).max(), rel=1e-6)
    assert np_var(b.threshold) == pytest.approx(0.4 * np.abs(np_var(b.scores)).max(), rel=1e-6)
    assert np_var(b.threshold) > 2 * np_var(a.threshold)


def test_set_frozen_kernel_only_keeps_tau():
    layer = make_dense(4, 3)
    tau = np_var(layer.threshold)
    layer.set_initial_values(frozen_kernel=np.ones((3, 4), np.float32))
    assert np_var(layer.threshold) == tau
    np.testing.assert_array_equal(np_var(layer.frozen_kernel), np.ones((3, 4), np.float32))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_threshold_fraction_out_of_range_rejected(p):
    with pytest.raises(ValueError):
        SignedSupermaskDense(3, threshold_fraction=p)


def _small_masked_model(seed=0):
    inputs = keras.Input((6, 6, 2))
    x = SignedSupermaskConv2D(3, 3, activation="elu", name="conv",
                              weight_initializer=ScaledInitializer("signed_constant", "elus", seed=seed),
                              score_initializer=ScaledInitializer("uniform", "xavier", seed=seed + 1))(inputs)
    x = keras.layers.Flatten()(x)
    outputs = SignedSupermaskDense(4, activation="softmax", name="out",
                                   weight_initializer=ScaledInitializer("signed_constant", "elus", seed=seed + 2),
                                   score_initializer=ScaledInitializer("uniform", "xavier", seed=seed + 3))(x)
    return keras.Model(inputs, outputs)


def _snapshot(model):
    return {layer.name: {v.name: np_var(v).copy() for v in layer.weights} for layer in masked_layers(model)}


def _train(model, steps, rng):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5, momentum=0.9, nesterov=True,
                                                 weight_decay=0.01),
                  loss="categorical_crossentropy")
    for _ in range(steps):
        x = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=8)]
        model.train_on_batch(x, y)


def test_tau_and_weights_fixed_during_training():
    rng = np.random.default_rng(8)
    model = _small_masked_model()
    before = _snapshot(model)
    _train(model, 5, rng)
    after = _snapshot(model)
    for name in before:
        np.testing.assert_array_equal(after[name]["threshold"], before[name]["threshold"])
        np.testing.assert_array_equal(after[name]["frozen_kernel"], before[name]["frozen_kernel"])
        assert not np.array_equal(after[name]["scores"], before[name]["scores"])
        # tau is NOT recomputed from the current scores
        assert after[name]["threshold"] != np.float32(0.4) * np.abs(after[name]["scores"]).max()


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    model = _small_masked_model(seed=5)
    _train(model, 3, rng)          # scores moved away from init, tau no longer p * max|S|
    x = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    expected = np_var(model(x))
    before = _snapshot(model)
    path = tmp_path / "masked.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np_var(loaded(x)), expected)
    after = _snapshot(loaded)
    assert after.keys() == before.keys()
    for name in before:
        for var in ("threshold", "frozen_kernel", "scores"):
            np.testing.assert_array_equal(after[name][var], before[name][var])
    assert [type(layer) for layer in masked_layers(loaded)] == [SignedSupermaskConv2D, SignedSupermaskDense]


@pytest.mark.slow
def test_a_fresh_process_loads_the_file_after_importing_the_layer_classes_as_the_readme_says(tmp_path):
    """README: load_model works after `from masking import SignedSupermaskConv2D, SignedSupermaskDense`; a
    bare `import masking` registers nothing (it loads no Keras), and the README says so."""
    path = tmp_path / "masked.keras"
    _small_masked_model(seed=5).save(path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    load = f"import keras; keras.models.load_model(r'{path}'); print('loaded')"
    named = subprocess.run([sys.executable, "-c", "from masking import SignedSupermaskConv2D, "
                            f"SignedSupermaskDense; {load}"], cwd=root, capture_output=True, text=True, timeout=120)
    assert named.returncode == 0 and "loaded" in named.stdout, named.stderr[-2000:]
    bare = subprocess.run([sys.executable, "-c", f"import masking; {load}"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert bare.returncode != 0 and "SignedSupermaskConv2D" in bare.stderr


# --------------------------------------------------------------------------- config round trips

def _normalise(config):
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("make_layer, input_shape", [
    (lambda: SignedSupermaskDense(
        7, threshold_fraction=0.3, activation="elu", name="masked_dense",
        weight_initializer=ScaledInitializer("signed_constant", "elus", factor=1.3, seed=11),
        score_initializer=ScaledInitializer("uniform", "xavier", seed=12)), (None, 13)),
    (lambda: SignedSupermaskConv2D(
        5, (3, 1), strides=(2, 1), padding="valid", threshold_fraction=0.6, activation="relu", name="masked_conv",
        weight_initializer=ScaledInitializer("signed_constant", "elus_sqrt6", seed=21),
        score_initializer=ScaledInitializer("uniform", "elu", seed=22)), (None, 9, 9, 3)),
])
def test_config_round_trip(make_layer, input_shape):
    layer = make_layer()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert _normalise(clone.get_config()) == _normalise(config)
    clone_json = type(layer).from_config(_normalise(config))
    assert _normalise(clone_json.get_config()) == _normalise(config)
    generic = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(generic) is type(layer)
    assert _normalise(generic.get_config()) == _normalise(config)
    for other in (clone, clone_json, generic):
        layer_built = make_layer()
        layer_built.build(input_shape)
        other.build(input_shape)
        for var in ("frozen_kernel", "scores", "threshold"):
            np.testing.assert_array_equal(np_var(getattr(other, var)), np_var(getattr(layer_built, var)))


# --------------------------------------------------------------------------- one optimizer step, both backends

TRAIN_STEP_SCRIPT = textwrap.dedent("""
    import numpy as np
    import keras
    from models import build_model
    from masking import masked_layers

    model = build_model("FCN", seed=3)
    layers = masked_layers(model)
    assert len(layers) == 3
    assert {v.name for v in model.trainable_weights} == {"scores"}
    before = [{v.name: np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights} for layer in layers]
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True,
                                                 weight_decay=0.01),
                  loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 784)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, size=32)]
    model.train_on_batch(x, y)
    for layer, old in zip(layers, before):
        new = {v.name: np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights}
        assert not np.array_equal(new["scores"], old["scores"]), layer.name
        assert np.array_equal(new["frozen_kernel"], old["frozen_kernel"]), layer.name
        assert np.array_equal(new["threshold"], old["threshold"]), layer.name
        q = layer.ternary_mask().astype("float32")
        assert np.array_equal(np.array(keras.ops.convert_to_numpy(layer.kernel)), new["frozen_kernel"] * q)
    print("TRAIN-STEP-OK", keras.backend.backend())
""")


@requires_tf
def test_train_step_tensorflow_in_process():
    namespace = {}
    exec(compile(TRAIN_STEP_SCRIPT.replace('print("TRAIN-STEP-OK", keras.backend.backend())', ""),
                 "<train-step>", "exec"), namespace)


@pytest.mark.slow
def test_train_step_jax_subprocess():
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI"):
            pytest.fail("jax is not installed but CI is set: the JAX backend must be tested in CI")
        pytest.skip("jax not installed")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-c", TRAIN_STEP_SCRIPT], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "TRAIN-STEP-OK jax" in result.stdout
