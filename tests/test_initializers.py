"""Initializers of docs/SPEC.md §2: fans, exact constants, bounds, variances, seeding, config."""
import math

import keras
import numpy as np
import pytest

from masking.fans import DISTRIBUTIONS, SCALINGS, compute_fans, layer_seed, target_variance
from masking.initializers import ScaledInitializer

DENSE = (300, 100)          # fan_in 300, fan_out 100
CONV = (3, 3, 16, 32)       # fan_in 3*3*16 = 144, fan_out 3*3*32 = 288

# scaling -> expected variance as a function of (fan_in, fan_out), written out independently
EXPECTED_VARIANCE = {
    "he": lambda n_in, n_out: 2.0 / n_in,
    "xavier": lambda n_in, n_out: 2.0 / (n_in + n_out),
    "elu": lambda n_in, n_out: 1.5 / n_in,
    "elus": lambda n_in, n_out: 3.0 / n_in,
    "elus_sqrt6": lambda n_in, n_out: 6.0 / n_in,
}


# --------------------------------------------------------------------------- fans (§2.1)

@pytest.mark.parametrize("shape, fans", [
    ((784, 300), (784, 300)),
    ((100, 10), (100, 10)),
    ((3, 3, 3, 64), (27, 576)),
    ((3, 3, 64, 128), (576, 1152)),
    ((1, 1, 16, 32), (16, 32)),
    ((5, 3, 4, 7), (60, 105)),
])
def test_compute_fans(shape, fans):
    assert compute_fans(shape) == fans


def test_compute_fans_matches_keras_convention():
    from keras.src.initializers.random_initializers import compute_fans as keras_fans
    for shape in [(784, 300), (3, 3, 64, 128), (1, 1, 16, 32)]:
        assert compute_fans(shape) == tuple(int(f) for f in keras_fans(shape))


@pytest.mark.parametrize("shape", [(), (5,)])
def test_compute_fans_rejects_degenerate_shapes(shape):
    with pytest.raises(ValueError):
        compute_fans(shape)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_target_variance(scaling, shape):
    n_in, n_out = compute_fans(shape)
    assert target_variance(shape, scaling) == pytest.approx(EXPECTED_VARIANCE[scaling](n_in, n_out), rel=1e-12)
    assert target_variance(shape, scaling, factor=2.5) == pytest.approx(
        2.5 * EXPECTED_VARIANCE[scaling](n_in, n_out), rel=1e-12)


def test_every_scaling_is_tested():
    assert set(SCALINGS) == set(EXPECTED_VARIANCE)
    assert set(DISTRIBUTIONS) == {"signed_constant", "constant", "uniform", "normal"}


# --------------------------------------------------------------------------- constants (§2.2, §2.4)

@pytest.mark.parametrize("distribution", ["constant", "signed_constant"])
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_constants_exact_magnitude(distribution, scaling, shape):
    """Both constants have |W| = sqrt(variance) everywhere; only signed_constant draws signs."""
    n_in, n_out = compute_fans(shape)
    c = np.float32(math.sqrt(EXPECTED_VARIANCE[scaling](n_in, n_out)))
    values = ScaledInitializer(distribution, scaling, seed=3).sample(shape)
    assert values.shape == shape and values.dtype == np.float32
    np.testing.assert_array_equal(np.abs(values), np.full(shape, c, dtype=np.float32))
    if distribution == "constant":
        assert (values > 0).all()
    else:
        assert (values > 0).any() and (values < 0).any()


@pytest.mark.parametrize("n_in, c", [(784, 0.0619), (300, 0.1), (100, 0.1732)])
def test_elus_constants_for_fcn_layers(n_in, c):
    """SPEC §4.3: c = sqrt(3/n_in) for the three FCN layers."""
    values = ScaledInitializer("signed_constant", "elus", seed=0).sample((n_in, 10))
    assert float(np.abs(values).max()) == pytest.approx(c, abs=5e-5)
    assert float(np.abs(values).max()) == pytest.approx(math.sqrt(3.0 / n_in), rel=1e-6)


def test_elus_on_conv_kernel_uses_k_k_cin():
    shape = (3, 3, 64, 128)
    values = ScaledInitializer("signed_constant", "elus", seed=0).sample(shape)
    np.testing.assert_array_equal(np.unique(np.abs(values)), [np.float32(math.sqrt(3.0 / (3 * 3 * 64)))])
    values6 = ScaledInitializer("signed_constant", "elus_sqrt6", seed=0).sample(shape)
    np.testing.assert_array_equal(np.unique(np.abs(values6)), [np.float32(math.sqrt(6.0 / (3 * 3 * 64)))])


def test_signed_constant_signs_balanced():
    values = ScaledInitializer("signed_constant", "elus", seed=11).sample((1000, 1000))
    fraction_positive = float(np.mean(values > 0))
    assert 0.48 <= fraction_positive <= 0.52
    assert not np.any(values == 0)


def test_signed_constant_he_with_factor_1p5_equals_elus():
    """The authors' config 'signed_constant, he, factor 1.5' (SPEC §2.4) is ELUS +-sqrt(3/n)."""
    a = ScaledInitializer("signed_constant", "he", factor=1.5, seed=4).sample(CONV)
    b = ScaledInitializer("signed_constant", "elus", seed=4).sample(CONV)
    np.testing.assert_allclose(a, b, rtol=1e-7)   # same seed: the same signs too


# --------------------------------------------------------------------------- uniform

@pytest.mark.parametrize("scaling, bound", [
    ("he", lambda n_in, n_out: math.sqrt(6.0 / n_in)),
    ("xavier", lambda n_in, n_out: math.sqrt(6.0 / (n_in + n_out))),
    ("elu", lambda n_in, n_out: math.sqrt(4.5 / n_in)),
    ("elus", lambda n_in, n_out: math.sqrt(9.0 / n_in)),
])
@pytest.mark.parametrize("shape", [(500, 400), (3, 3, 64, 96)])
def test_uniform_bounds(scaling, bound, shape):
    n_in, n_out = compute_fans(shape)
    b = bound(n_in, n_out)
    values = ScaledInitializer("uniform", scaling, seed=5).sample(shape)
    assert values.dtype == np.float32
    assert np.abs(values).max() <= np.float32(b)
    assert values.max() >= 0.99 * b and values.min() <= -0.99 * b
    assert abs(float(values.mean())) < 0.02 * b
    assert float(values.var()) == pytest.approx(b * b / 3.0, rel=0.03)


def test_uniform_he_factor_075_equals_elu_uniform():
    """'uniform he f=sqrt(0.75)' baselines (SPEC §2.6) == ELU-uniform; our factor multiplies the variance."""
    shape = (400, 300)
    a = ScaledInitializer("uniform", "he", factor=0.75, seed=9).sample(shape)
    b = ScaledInitializer("uniform", "elu", seed=9).sample(shape)
    np.testing.assert_allclose(a, b, rtol=1e-6)


# --------------------------------------------------------------------------- normal

@pytest.mark.parametrize("scaling", ["he", "xavier", "elu"])
@pytest.mark.parametrize("shape", [(1000, 500), (3, 3, 128, 256)])
def test_normal_std(scaling, shape):
    std = math.sqrt(target_variance(shape, scaling))
    values = ScaledInitializer("normal", scaling, seed=6).sample(shape)
    assert float(values.std()) == pytest.approx(std, rel=0.03)
    assert abs(float(values.mean())) < 0.02 * std


# --------------------------------------------------------------------------- factor

@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_factor_multiplies_variance(distribution):
    shape = (600, 400)
    base = ScaledInitializer(distribution, "he", factor=1.0, seed=8).sample(shape)
    scaled = ScaledInitializer(distribution, "he", factor=4.0, seed=8).sample(shape)
    # same seed: the draws are the same, only scaled by sqrt(4) = 2
    np.testing.assert_allclose(scaled, 2.0 * base, rtol=1e-6)
    assert float(scaled.var() + scaled.mean() ** 2) == pytest.approx(
        4.0 * float(base.var() + base.mean() ** 2), rel=1e-5)


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_non_positive_factor_rejected(factor):
    with pytest.raises(ValueError):
        ScaledInitializer("uniform", "he", factor=factor)


# --------------------------------------------------------------------------- seeds

@pytest.mark.parametrize("distribution", ["signed_constant", "uniform", "normal"])
def test_seed_reproducible(distribution):
    a = ScaledInitializer(distribution, "xavier", seed=123).sample(CONV)
    b = ScaledInitializer(distribution, "xavier", seed=123).sample(CONV)
    c = ScaledInitializer(distribution, "xavier", seed=124).sample(CONV)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_call_returns_float32_tensor_equal_to_sample():
    init = ScaledInitializer("uniform", "xavier", seed=2)
    tensor = init(DENSE)
    assert keras.backend.standardize_dtype(tensor.dtype) == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tensor), init.sample(DENSE))


def test_layer_seed_deterministic_and_distinct():
    seeds = {(s, i, k): layer_seed(s, i, k) for s in (0, 1, 7531, 7532) for i in range(40) for k in (0, 1)}
    assert len(set(seeds.values())) == len(seeds)
    for key, value in seeds.items():
        assert layer_seed(*key) == value
        assert isinstance(value, int) and 0 <= value < 2 ** 32
    # weights and scores of a layer, and consecutive layers, get independent streams
    w = ScaledInitializer("uniform", "xavier", seed=layer_seed(7531, 0, 0)).sample(DENSE)
    s = ScaledInitializer("uniform", "xavier", seed=layer_seed(7531, 0, 1)).sample(DENSE)
    nxt = ScaledInitializer("uniform", "xavier", seed=layer_seed(7531, 1, 0)).sample(DENSE)
    assert abs(np.corrcoef(w.ravel(), s.ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(w.ravel(), nxt.ravel())[0, 1]) < 0.02


# --------------------------------------------------------------------------- errors and config

def test_unknown_distribution_rejected():
    with pytest.raises(ValueError, match="distribution"):
        ScaledInitializer("laplace", "he")


def test_unknown_scaling_rejected():
    with pytest.raises(ValueError, match="scaling"):
        ScaledInitializer("uniform", "lecun")
    with pytest.raises(ValueError, match="scaling"):
        target_variance(DENSE, "lecun")


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_get_config_round_trip(distribution):
    init = ScaledInitializer(distribution, "elus", factor=1.3, seed=42)
    config = init.get_config()
    assert config == {"distribution": distribution, "scaling": "elus", "factor": 1.3, "seed": 42}
    clone = ScaledInitializer.from_config(config)
    assert clone.get_config() == config
    np.testing.assert_array_equal(clone.sample(CONV), init.sample(CONV))


def test_keras_serialize_round_trip():
    init = ScaledInitializer("signed_constant", "elus", seed=7)
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(restored, ScaledInitializer)
    assert restored.get_config() == init.get_config()
    np.testing.assert_array_equal(restored.sample(DENSE), init.sample(DENSE))


def test_an_unseeded_initializer_follows_keras_set_random_seed():
    initializer = ScaledInitializer("normal", "he")
    draws = []
    for _ in range(2):
        keras.utils.set_random_seed(11)
        draws.append(initializer.sample((8, 4)))
    np.testing.assert_array_equal(*draws)
    assert not np.array_equal(initializer.sample((8, 4)), draws[0])   # unseeded: each call draws anew
