"""Signed-supermask layers (METHOD §1): forward rule, straight-through gradient, tau, saving, read-outs."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from masking import (ScaledInitializer, SignedSupermaskConv2D, SignedSupermaskDense, mask_report, masked_layers,
                     remaining_percent, straight_through_mask, ternary_mask)

# Keras' own convert_to_numpy(np.array(variable)) warns under NumPy 2; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                 reason="gradient reference uses tf.GradientTape")
TAU = np.float32(0.5)
ABOVE_TAU = np.nextafter(TAU, np.float32(1.0))      # smallest float32 > 0.5


# --------------------------------------------------------------------------- NumPy references

def q_ref(scores, tau):
    return np.where(scores > tau, 1.0, np.where(scores < -tau, -1.0, 0.0)).astype(np.float32)


def band_scores(shape, rng):
    """Scores with max|S| = 1 exactly (so p = 0.5 gives tau = 0.5 exactly) and many entries at
    exactly +-tau, just above it, and strictly inside the dead band."""
    size = int(np.prod(shape))
    assert size >= 12
    values = rng.uniform(-1.0, 1.0, size=size).astype(np.float32)
    special = np.array([1.0, -1.0, TAU, -TAU, TAU, -TAU, ABOVE_TAU, -ABOVE_TAU, 0.0, 0.25, -0.25, 0.49],
                       dtype=np.float32)
    positions = rng.permutation(size)[:len(special)]
    values[positions] = special
    return values.reshape(shape)


def conv_ref(x, w, stride, padding):
    """Direct (shift-and-sum) 2-D cross-correlation, channels last, TF 'same'/'valid' semantics.

    Returns the output and the padded input (also used for the kernel gradient)."""
    n, h, wd, _ = x.shape
    kh, kw, _, _ = w.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        pad_h = max((oh - 1) * stride + kh - h, 0)
        pad_w = max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, w.shape[-1]), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, w[i, j])
    return out, x


def conv_kernel_grad_ref(x_padded, upstream, kernel_shape, stride):
    """dL/dW_eff[i, j, c, o] = sum_{n, h, w} x_pad[n, h*s + i, w*s + j, c] * G[n, h, w, o]."""
    kh, kw, _, _ = kernel_shape
    _, oh, ow, _ = upstream.shape
    grad = np.zeros(kernel_shape, dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x_padded[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            grad[i, j] = np.einsum("nhwc,nhwo->co", patch, upstream)
    return grad


def make_dense(units, in_dim, p=0.5, **kwargs):
    layer = SignedSupermaskDense(units, threshold_fraction=p, **kwargs)
    layer.build((None, in_dim))
    return layer


def make_conv(filters, in_ch, kernel_size, stride, padding, p=0.5, **kwargs):
    layer = SignedSupermaskConv2D(filters, kernel_size, strides=stride, padding=padding, threshold_fraction=p,
                                  **kwargs)
    layer.build((None, 9, 8, in_ch))
    return layer


def np_var(variable):
    return np.array(ops.convert_to_numpy(variable))


# --------------------------------------------------------------------------- ternary mask

def test_ternary_mask_function_strict_inequalities():
    scores = np.array([-1.0, -ABOVE_TAU, -TAU, -0.2, 0.0, 0.2, TAU, ABOVE_TAU, 1.0], dtype=np.float32)
    expected = np.array([-1, -1, 0, 0, 0, 0, 0, 1, 1], dtype=np.float32)
    np.testing.assert_array_equal(np_var(ternary_mask(scores, TAU)), expected)
    np.testing.assert_array_equal(np_var(straight_through_mask(scores, TAU)), expected)


def test_set_initial_values_gives_exact_tau():
    layer = make_dense(6, 5)
    layer.set_initial_values(scores=band_scores((5, 6), np.random.default_rng(0)))
    assert np_var(layer.threshold) == TAU
    assert layer.threshold.dtype == "float32"


def test_entries_at_plus_minus_tau_are_hidden():
    rng = np.random.default_rng(1)
    layer = make_dense(6, 5)
    scores = band_scores((5, 6), rng)
    layer.set_initial_values(scores=scores)
    mask = layer.ternary_mask()
    assert mask.dtype == np.int8
    np.testing.assert_array_equal(mask, q_ref(scores, TAU).astype(np.int8))
    assert np.all(mask[np.abs(scores) == TAU] == 0)
    assert np.all(mask[scores == ABOVE_TAU] == 1) and np.all(mask[scores == -ABOVE_TAU] == -1)


def test_effective_kernel_is_bit_exact():
    """W_eff == W * q(S) exactly; the authors' (q + S) - S would give 0.99999994-type values here."""
    rng = np.random.default_rng(2)
    shape = (40, 30)
    layer = make_dense(30, 40)
    weights = rng.normal(size=shape).astype(np.float32)
    scores = rng.uniform(-1, 1, size=shape).astype(np.float32)
    scores[0, 0] = 1.0
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    q = q_ref(scores, TAU)
    naive = (q + scores) - scores
    assert not np.array_equal(naive, q), "data should expose rounding of the naive formulation"
    expected = weights * q
    np.testing.assert_array_equal(np_var(layer.kernel), expected)
    np.testing.assert_array_equal(np_var(straight_through_mask(layer.scores, layer.threshold)), q)


# --------------------------------------------------------------------------- forward rule

def test_dense_forward_matches_numpy():
    rng = np.random.default_rng(3)
    layer = make_dense(7, 11)
    weights = rng.normal(size=(11, 7)).astype(np.float32)
    scores = band_scores((11, 7), rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    x = rng.normal(size=(4, 11)).astype(np.float32)
    expected = x.astype(np.float64) @ (weights * q_ref(scores, TAU)).astype(np.float64)
    out = np_var(layer(x))
    assert out.shape == layer.compute_output_shape(x.shape) == (4, 7)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dense_activation_applied():
    rng = np.random.default_rng(4)
    layer = make_dense(5, 6, activation="elu")
    weights = rng.normal(size=(6, 5)).astype(np.float32)
    scores = band_scores((6, 5), rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    x = rng.normal(size=(3, 6)).astype(np.float32)
    z = x.astype(np.float64) @ (weights * q_ref(scores, TAU))
    np.testing.assert_allclose(np_var(layer(x)), np.where(z > 0, z, np.expm1(z)), rtol=1e-5, atol=1e-5)


CONV_CASES = [(k, s, p) for k in (3, 1) for s in (1, 2) for p in ("same", "valid")]


@pytest.mark.parametrize("kernel_size, stride, padding", CONV_CASES)
def test_conv_forward_matches_numpy(kernel_size, stride, padding):
    rng = np.random.default_rng(5 + kernel_size + 10 * stride)
    shape = (kernel_size, kernel_size, 3, 4)
    layer = make_conv(4, 3, kernel_size, stride, padding)
    weights = rng.normal(size=shape).astype(np.float32)
    scores = band_scores(shape, rng) if np.prod(shape) >= 12 else None
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    assert np_var(layer.threshold) == TAU
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)     # odd/even sizes exercise asymmetric padding
    expected, _ = conv_ref(x.astype(np.float64), (weights * q_ref(scores, TAU)).astype(np.float64), stride,
                           padding)
    out = np_var(layer(x))
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_conv_defaults_and_variables():
    layer = SignedSupermaskConv2D(8)
    layer.build((None, 6, 6, 3))
    assert layer.kernel_size == (3, 3) and layer.strides == (1, 1) and layer.padding == "same"
    assert [v.name for v in layer.trainable_weights] == ["scores"]
    assert sorted(v.name for v in layer.non_trainable_weights) == ["frozen_kernel", "threshold"]
    assert tuple(layer.frozen_kernel.shape) == tuple(layer.scores.shape) == (3, 3, 3, 8)
    assert tuple(layer.threshold.shape) == ()


def test_mask_consistent_under_mixed_precision():
    """The forward mask uses float32 S and tau (no autocast), like ternary_mask()."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = SignedSupermaskDense(1, threshold_fraction=0.5)
        layer.build((None, 2))
        layer.set_initial_values(frozen_kernel=np.ones((2, 1), np.float32),
                                 scores=np.array([[1.0], [0.5002]], np.float32))   # float16(0.5002) == 0.5
        assert layer.ternary_mask().ravel().tolist() == [1, 1]
        out = np_var(layer(np.array([[0.0, 1.0]], np.float32)))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    assert float(out[0, 0]) == 1.0


def test_dense_has_no_bias():
    layer = make_dense(4, 3)
    assert [v.name for v in layer.trainable_weights] == ["scores"]
    assert sorted(v.name for v in layer.weights) == ["frozen_kernel", "scores", "threshold"]


# --------------------------------------------------------------------------- straight-through gradient

def _tape_grad(layer, x, upstream):
    import tensorflow as tf
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, layer.scores.value)
    assert grad is not None
    return np.array(grad), np.array(out)


@requires_tf
def test_dense_score_gradient_straight_through():
    rng = np.random.default_rng(6)
    layer = make_dense(6, 9)
    weights = rng.normal(size=(9, 6)).astype(np.float32)
    scores = band_scores((9, 6), rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    x = rng.normal(size=(5, 9)).astype(np.float32)
    upstream = rng.normal(size=(5, 6)).astype(np.float32)
    grad, out = _tape_grad(layer, x, upstream)
    expected = (x.astype(np.float64).T @ upstream) * weights
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)
    hidden = np.abs(scores) <= TAU
    assert hidden.sum() >= 4 and np.all(grad[hidden] != 0)
    # the forward value under the tape is still exact
    np.testing.assert_array_equal(out, np_var(layer(x)))


@requires_tf
@pytest.mark.parametrize("kernel_size, stride, padding", CONV_CASES)
def test_conv_score_gradient_straight_through(kernel_size, stride, padding):
    rng = np.random.default_rng(7 + kernel_size + 10 * stride)
    shape = (kernel_size, kernel_size, 3, 4)
    layer = make_conv(4, 3, kernel_size, stride, padding)
    weights = rng.normal(size=shape).astype(np.float32)
    scores = band_scores(shape, rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    _, x_padded = conv_ref(x.astype(np.float64), np.zeros(shape), stride, padding)
    out_shape = layer.compute_output_shape(x.shape)
    upstream = rng.normal(size=out_shape).astype(np.float32)
    grad, _ = _tape_grad(layer, x, upstream)
    expected = conv_kernel_grad_ref(x_padded, upstream.astype(np.float64), shape, stride) * weights
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)
    hidden = np.abs(scores) <= TAU
    assert hidden.sum() >= 4 and np.all(grad[hidden] != 0)


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


# --------------------------------------------------------------------------- errors and read-outs

@pytest.mark.parametrize("which", ["frozen_kernel", "scores"])
def test_set_initial_values_shape_mismatch(which):
    layer = SignedSupermaskDense(4, name="shape_checked_layer")
    layer.build((None, 3))
    with pytest.raises(ValueError, match="shape_checked_layer"):
        layer.set_initial_values(**{which: np.zeros((4, 3), np.float32)})
    conv = SignedSupermaskConv2D(4, 3, name="shape_checked_conv")
    conv.build((None, 5, 5, 2))
    with pytest.raises(ValueError, match="shape_checked_conv"):
        conv.set_initial_values(**{which: np.zeros((3, 3, 4, 2), np.float32)})


def test_mask_counts_sum_to_kernel_size():
    rng = np.random.default_rng(10)
    layer = make_conv(5, 4, 3, 1, "same")
    scores = band_scores((3, 3, 4, 5), rng)
    layer.set_initial_values(scores=scores)
    counts = layer.mask_counts()
    assert set(counts) == {"kept", "hidden", "inverted"}
    assert sum(counts.values()) == 3 * 3 * 4 * 5
    assert counts["kept"] == int((scores > TAU).sum())
    assert counts["inverted"] == int((scores < -TAU).sum())
    assert counts["hidden"] == int((np.abs(scores) <= TAU).sum())


def _scores_with_active(shape, n_active, rng):
    """Scores with max|S| = 1 (tau = 0.5 at p = 0.5) and exactly n_active entries outside the band."""
    size = int(np.prod(shape))
    values = rng.uniform(-0.5, 0.5, size=size).astype(np.float32)
    values[rng.permutation(size)[:3]] = TAU                       # on the boundary -> hidden
    active = rng.permutation(size)[:n_active]
    values[active] = rng.choice([-1.0, 1.0], size=n_active) * rng.uniform(0.6, 1.0, size=n_active)
    values[active[0]] = 1.0
    values[active[1]] = -1.0
    return values.reshape(shape)


def test_remaining_percent_is_global():
    rng = np.random.default_rng(11)
    big = SignedSupermaskDense(10, threshold_fraction=0.5, name="big")       # 10 x 10 = 100 weights
    small = SignedSupermaskDense(1, threshold_fraction=0.5, name="small")    # 10 x 1 = 10 weights
    model = keras.Sequential([keras.Input((10,)), big, small])
    big.set_initial_values(scores=_scores_with_active((10, 10), 20, rng))    # 20 % active
    small.set_initial_values(scores=_scores_with_active((10, 1), 9, rng))    # 90 % active
    assert masked_layers(model) == [big, small]
    report = mask_report(model)
    assert set(report) == {"big", "small"}
    assert report["big"]["hidden"] == 80 and report["small"]["hidden"] == 1
    global_percent = 100.0 * (20 + 9) / (100 + 10)
    mean_of_layers = (20.0 + 90.0) / 2
    assert remaining_percent(model) == pytest.approx(global_percent, rel=1e-12)
    assert abs(global_percent - mean_of_layers) > 20


def test_masked_layers_finds_nested_and_remaining_percent_needs_masks():
    inner = keras.Sequential([keras.Input((4,)), SignedSupermaskDense(3, name="inner_dense")], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner, SignedSupermaskDense(2, name="outer_dense")])
    assert [layer.name for layer in masked_layers(outer)] == ["inner_dense", "outer_dense"]
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError):
        remaining_percent(plain)


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
