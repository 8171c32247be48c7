"""Signed-supermask layers (docs/SPEC.md §1): forward rule, straight-through gradient, read-outs."""
import keras
import numpy as np
import pytest
from layer_helpers import (ABOVE_TAU, TAU, band_scores, conv_kernel_grad_ref, conv_ref, make_conv, make_dense,
                           np_var, q_ref, requires_tf, seeded_conv, seeded_dense)

from masking import (SignedSupermaskConv2D, SignedSupermaskDense, mask_report, masked_layers,
                     remaining_percent, straight_through_mask, ternary_mask)

# Keras' own convert_to_numpy(np.array(variable)) warns under NumPy 2; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


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
    layer, weights, scores = seeded_dense(7, 11, rng)
    x = rng.normal(size=(4, 11)).astype(np.float32)
    expected = x.astype(np.float64) @ (weights * q_ref(scores, TAU)).astype(np.float64)
    out = np_var(layer(x))
    assert out.shape == layer.compute_output_shape(x.shape) == (4, 7)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dense_activation_applied():
    rng = np.random.default_rng(4)
    layer, weights, scores = seeded_dense(5, 6, rng, activation="elu")
    x = rng.normal(size=(3, 6)).astype(np.float32)
    z = x.astype(np.float64) @ (weights * q_ref(scores, TAU))
    np.testing.assert_allclose(np_var(layer(x)), np.where(z > 0, z, np.expm1(z)), rtol=1e-5, atol=1e-5)


CONV_CASES = [(k, s, p) for k in (3, 1) for s in (1, 2) for p in ("same", "valid")]


@pytest.mark.parametrize("kernel_size, stride, padding", CONV_CASES)
def test_conv_forward_matches_numpy(kernel_size, stride, padding):
    rng = np.random.default_rng(5 + kernel_size + 10 * stride)
    shape = (kernel_size, kernel_size, 3, 4)
    layer, weights, scores = seeded_conv(4, 3, kernel_size, stride, padding, rng)
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


def test_bad_sizes_are_one_line_errors_naming_the_layer():
    dense = SignedSupermaskDense(5, name="dense_a")
    dense(np.zeros((2, 7), "float32"))
    with pytest.raises(ValueError, match="dense_a.*expected axis -1 of input shape to have value 7"):
        dense(np.zeros((2, 8), "float32"))
    with pytest.raises(ValueError, match=r"^dense_b: the input's last dimension must be known"):
        SignedSupermaskDense(5, name="dense_b").build((None, None))
    assert SignedSupermaskConv2D(4, kernel_size=np.int64(5)).kernel_size == (5, 5)
    with pytest.raises(ValueError, match=r"^conv_a: kernel_size must be a positive int or a pair of them, got '3'"):
        SignedSupermaskConv2D(4, kernel_size="3", name="conv_a")
    with pytest.raises(ValueError, match=r"^conv_b: strides must be"):
        SignedSupermaskConv2D(4, strides=(1, 0), name="conv_b")


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
    layer, weights, scores = seeded_dense(6, 9, rng)
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
    layer, weights, scores = seeded_conv(4, 3, kernel_size, stride, padding, rng)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    _, x_padded = conv_ref(x.astype(np.float64), np.zeros(shape), stride, padding)
    out_shape = layer.compute_output_shape(x.shape)
    upstream = rng.normal(size=out_shape).astype(np.float32)
    grad, _ = _tape_grad(layer, x, upstream)
    expected = conv_kernel_grad_ref(x_padded, upstream.astype(np.float64), shape, stride) * weights
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)
    hidden = np.abs(scores) <= TAU
    assert hidden.sum() >= 4 and np.all(grad[hidden] != 0)


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
