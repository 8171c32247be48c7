"""Architectures of docs/SPEC.md §3 and their parameter counts (§4)."""
import keras
import numpy as np
import pytest

from masking import SignedSupermaskConv2D, SignedSupermaskDense, masked_layers, remaining_percent
from models import InitSpec, build_model

# Keras' own convert_to_numpy(np.array(variable)) warns under NumPy 2; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PARAMS = {"FCN": 266_200, "Conv2": 4_300_992, "Conv4": 2_425_024, "Conv6": 2_261_184, "Conv8": 5_275_840}
N_CONVS = {"FCN": 0, "Conv2": 2, "Conv4": 4, "Conv6": 6, "Conv8": 8}
ELU = keras.activations.elu
SOFTMAX = keras.activations.softmax

_CACHE = {}


def cached(name, signed):
    """Default-seeded models are built once per session (Conv8 alone has 5.3 M weights)."""
    key = (name, signed)
    if key not in _CACHE:
        _CACHE[key] = build_model(name, signed=signed)
    return _CACHE[key]


def weight_layers(model):
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D, SignedSupermaskDense,
                                  SignedSupermaskConv2D))]


# --------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("name", list(PARAMS))
def test_signed_masked_parameter_count(name):
    model = cached(name, True)
    layers = masked_layers(model)
    assert len(layers) == N_CONVS[name] + 3
    assert sum(int(np.prod(layer.scores.shape)) for layer in layers) == PARAMS[name]
    assert sum(int(np.prod(layer.frozen_kernel.shape)) for layer in layers) == PARAMS[name]
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == PARAMS[name]
    assert {v.name for v in model.trainable_weights} == {"scores"}
    # W and S per masked weight plus one scalar tau per layer; nothing else (no biases)
    assert model.count_params() == 2 * PARAMS[name] + len(layers)


@pytest.mark.parametrize("name", list(PARAMS))
def test_baseline_parameter_count_and_layers(name):
    model = cached(name, False)
    assert masked_layers(model) == []
    layers = weight_layers(model)
    assert len(layers) == N_CONVS[name] + 3
    for layer in layers:
        assert type(layer) in (keras.layers.Dense, keras.layers.Conv2D)
        assert layer.use_bias is False and layer.bias is None
        assert layer.kernel.trainable
        assert [v.name for v in layer.weights] == ["kernel"]
    assert model.count_params() == PARAMS[name]
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == PARAMS[name]


@pytest.mark.parametrize("name", list(PARAMS))
@pytest.mark.parametrize("signed", [True, False])
def test_layer_structure_and_activations(name, signed):
    model = cached(name, signed)
    layers = weight_layers(model)
    convs, denses = layers[:N_CONVS[name]], layers[N_CONVS[name]:]
    for layer in convs:
        assert layer.kernel_size == (3, 3) and layer.strides == (1, 1) and layer.padding == "same"
    assert [layer.activation for layer in layers[:-1]] == [ELU] * (len(layers) - 1)
    assert layers[-1].activation is SOFTMAX
    assert [layer.units for layer in denses] == ([300, 100, 10] if name == "FCN" else [256, 256, 10])
    if name != "FCN":
        widths = {"Conv2": [64], "Conv4": [64, 128], "Conv6": [64, 128, 256], "Conv8": [64, 128, 256, 512]}[name]
        assert [layer.filters for layer in convs] == [w for w in widths for _ in (0, 1)]
        pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
        assert len(pools) == len(widths)
        for pool in pools:
            assert pool.pool_size == (2, 2) and pool.strides == (2, 2) and pool.padding == "same"
    assert model.output_shape == (None, 10)


# --------------------------------------------------------------------------- masks at init

@pytest.mark.parametrize("name", list(PARAMS))
def test_initial_remaining_percent_about_60(name):
    model = cached(name, True)
    assert 58.0 <= remaining_percent(model) <= 62.0
    for layer in masked_layers(model):
        scores = np.asarray(keras.ops.convert_to_numpy(layer.scores))
        tau = float(keras.ops.convert_to_numpy(layer.threshold))
        assert tau == pytest.approx(0.4 * np.abs(scores).max(), rel=1e-6)


def test_threshold_fraction_is_passed_to_layers():
    model = build_model("FCN", threshold_fraction=0.75, seed=1)
    assert all(layer.threshold_fraction == 0.75 for layer in masked_layers(model))
    assert 23.0 <= remaining_percent(model) <= 27.0


def test_default_signed_initializers_are_elus_and_glorot():
    model = cached("FCN", True)
    for layer in masked_layers(model):
        fan_in, units = layer.frozen_kernel.shape
        weights = np.asarray(keras.ops.convert_to_numpy(layer.frozen_kernel))
        np.testing.assert_allclose(np.unique(np.abs(weights)), [np.sqrt(3.0 / fan_in)], rtol=1e-6)
        scores = np.asarray(keras.ops.convert_to_numpy(layer.scores))
        assert np.abs(scores).max() <= np.float32(np.sqrt(6.0 / (fan_in + units)))


@pytest.mark.parametrize("spec", [InitSpec("signed_constant", "elus_sqrt6"),
                                  {"distribution": "signed_constant", "scaling": "elus_sqrt6"}])
def test_weight_init_spec_or_dict(spec):
    model = build_model("FCN", weight_init=spec, score_init={"distribution": "uniform", "scaling": "elu"}, seed=2)
    for layer in masked_layers(model):
        fan_in = layer.frozen_kernel.shape[0]
        weights = np.asarray(keras.ops.convert_to_numpy(layer.frozen_kernel))
        np.testing.assert_allclose(np.unique(np.abs(weights)), [np.sqrt(6.0 / fan_in)], rtol=1e-6)
        scores = np.asarray(keras.ops.convert_to_numpy(layer.scores))
        assert np.sqrt(4.5 / fan_in) * 0.95 <= np.abs(scores).max() <= np.float32(np.sqrt(4.5 / fan_in))


def test_baseline_default_init_is_elu_uniform():
    model = cached("FCN", False)
    for layer in weight_layers(model):
        fan_in = layer.kernel.shape[0]
        kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel))
        bound = np.sqrt(4.5 / fan_in)
        assert 0.95 * bound <= np.abs(kernel).max() <= np.float32(bound)


# --------------------------------------------------------------------------- width multiplier

def test_fcn_width_multiplier():
    model = build_model("FCN", width_multiplier=2, seed=0)
    assert [layer.units for layer in masked_layers(model)] == [600, 200, 10]
    assert sum(int(np.prod(layer.scores.shape)) for layer in masked_layers(model)) == 784 * 600 + 600 * 200 + 2000
    half = build_model("FCN", width_multiplier=0.5, signed=False, seed=0)
    assert [layer.units for layer in weight_layers(half)] == [150, 50, 10]


def test_conv8_head_fixed_conv4_head_scales():
    conv8 = build_model("Conv8", signed=True, width_multiplier=2, seed=0)
    layers8 = masked_layers(conv8)
    assert [layer.filters for layer in layers8[:8]] == [128, 128, 256, 256, 512, 512, 1024, 1024]
    assert [layer.units for layer in layers8[8:]] == [256, 256, 10]
    conv4 = build_model("Conv4", signed=True, width_multiplier=2, seed=0)
    layers4 = masked_layers(conv4)
    assert [layer.filters for layer in layers4[:4]] == [128, 128, 256, 256]
    assert [layer.units for layer in layers4[4:]] == [512, 512, 10]
    assert tuple(layers4[4].scores.shape) == (8 * 8 * 256, 512)


def test_conv8_baseline_head_fixed_with_small_multiplier():
    layers = weight_layers(build_model("Conv8", signed=False, width_multiplier=0.25, seed=0))
    assert [layer.filters for layer in layers[:8]] == [16, 16, 32, 32, 64, 64, 128, 128]
    assert [layer.units for layer in layers[8:]] == [256, 256, 10]


def test_conv8_baseline_head_activation_option():
    model = build_model("Conv8", signed=False, width_multiplier=0.25, head_activation="relu", seed=0)
    layers = weight_layers(model)
    assert [layer.activation for layer in layers[8:]] == [keras.activations.relu] * 2 + [SOFTMAX]
    assert all(layer.activation is ELU for layer in layers[:8])


# --------------------------------------------------------------------------- forward pass

@pytest.mark.parametrize("name, shape", [("FCN", (3, 784)), ("Conv2", (2, 32, 32, 3)), ("Conv6", (2, 32, 32, 3))])
@pytest.mark.parametrize("signed", [True, False])
def test_softmax_outputs_sum_to_one(name, shape, signed):
    model = cached(name, signed)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    probs = np.asarray(keras.ops.convert_to_numpy(model(x)))
    assert probs.shape == (shape[0], 10)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_fcn_forward_matches_numpy():
    model = cached("FCN", True)
    x = np.random.default_rng(1).normal(size=(4, 784)).astype(np.float64)
    h = x
    layers = masked_layers(model)
    for index, layer in enumerate(layers):
        w = np.asarray(keras.ops.convert_to_numpy(layer.frozen_kernel), np.float64)
        h = h @ (w * layer.ternary_mask())
        if index < len(layers) - 1:
            h = np.where(h > 0, h, np.expm1(h))
    h = np.exp(h - h.max(axis=1, keepdims=True))
    h /= h.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(model(x.astype(np.float32)))), h,
                               rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- seeds and errors

def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("name, signed", [("FCN", True), ("FCN", False), ("Conv4", True)])
def test_same_seed_same_weights(name, signed):
    kwargs = {"width_multiplier": 0.25} if name != "FCN" else {}
    a = _weights(build_model(name, signed=signed, seed=17, **kwargs))
    b = _weights(build_model(name, signed=signed, seed=17, **kwargs))
    c = _weights(build_model(name, signed=signed, seed=18, **kwargs))
    assert len(a) == len(b) == len(c)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    differing = [not np.array_equal(wa, wc) for wa, wc in zip(a, c) if wa.size > 1]
    assert differing and all(differing)


def test_default_seed_is_deterministic():
    a = _weights(cached("FCN", True))
    b = _weights(build_model("FCN"))
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def test_layers_within_model_have_distinct_initializations():
    model = build_model("FCN", seed=0, width_multiplier=1)
    layers = masked_layers(model)
    signs = [np.sign(np.asarray(keras.ops.convert_to_numpy(layer.frozen_kernel)))[:100, :10] for layer in layers]
    assert not np.array_equal(signs[0], signs[1])
    first = layers[0]
    w_signs = np.sign(np.asarray(keras.ops.convert_to_numpy(first.frozen_kernel))).ravel()
    s_signs = np.sign(np.asarray(keras.ops.convert_to_numpy(first.scores))).ravel()
    assert abs(float(np.mean(w_signs * s_signs))) < 0.02


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="Conv5"):
        build_model("Conv5")


def test_bad_init_spec_rejected():
    with pytest.raises(ValueError):
        build_model("FCN", weight_init="elus")
    with pytest.raises(ValueError):
        build_model("FCN", weight_init={"distribution": "uniform", "scaling": "lecun"})
