"""Mask modes (issue 12): binary, signed_top_k, top_k, bernoulli against a NumPy reference, exact k per
layer, gradients, the Bernoulli draws, serialization, config validation, the cosine schedule and a tiny
real run per mode."""
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import real_data_dir
from layer_helpers import np_var, requires_tf

import export
from masking import (SignedSupermaskDense, kept_count, masked_layers, mode_mask, mode_mask_numpy,
                     straight_through_mode_mask)
from models import build_model
from reporting.collect import find_experiments
from reporting.tables import build_tables
from training.config import load_config
from training.runner import RunTrainer
from training.schema import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
MODE_CONFIGS = sorted((ROOT / "configs" / "mask_modes").glob("*.yaml"))
NEW_MODES = (("binary", None), ("signed_top_k", 0.3), ("top_k", 0.3), ("bernoulli", None))
TINY = ["data.train_limit=2048", "data.test_limit=200", "training.epochs=1", "runs=1"]


def reference_mask(scores, tau, mode, k):
    """Written from the rule's definition, element by element (no shared code with masking/)."""
    flat = [float(v) for v in np.asarray(scores, dtype=np.float32).reshape(-1)]
    if mode == "signed":
        out = [1 if v > tau else -1 if v < -tau else 0 for v in flat]
    elif mode == "binary":
        out = [1 if v > tau else 0 for v in flat]
    elif mode == "bernoulli":   # the evaluation rule: sigmoid(S) > 1/2
        out = [1 if v > 0 else 0 for v in flat]
    else:
        count = math.ceil(round(k * len(flat), 9))
        key = (lambda i: (-abs(flat[i]), i)) if mode == "signed_top_k" else (lambda i: (-flat[i], i))
        chosen = set(sorted(range(len(flat)), key=key)[:count])
        sign = (lambda v: -1 if v < 0 else 1) if mode == "signed_top_k" else (lambda v: 1)
        out = [sign(flat[i]) if i in chosen else 0 for i in range(len(flat))]
    return np.array(out, dtype=np.int8).reshape(np.shape(scores))


def tied_scores(shape, seed):
    """Scores with many exact ties (values on a coarse grid, +-tau and 0 included)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-8, 9, size=shape) / 16).astype(np.float32)


@pytest.mark.parametrize("mode,k", [("signed", None), ("binary", None), ("bernoulli", None), ("signed_top_k", 0.3),
                                    ("signed_top_k", 0.55),
                                    ("top_k", 0.1), ("top_k", 0.3), ("top_k", 1.0), ("signed_top_k", 1 / 7)])
@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 3), (3, 3, 2, 5)])
def test_forward_values_match_the_reference_with_ties(mode, k, shape):
    scores = tied_scores(shape, seed=sum(shape))
    expected = reference_mask(scores, 0.25, mode, k)
    np.testing.assert_array_equal(mode_mask_numpy(scores, np.float32(0.25), mode, k), expected)
    np.testing.assert_array_equal(np_var(mode_mask(scores, np.float32(0.25), mode, k)), expected)
    np.testing.assert_array_equal(np_var(straight_through_mode_mask(scores, np.float32(0.25), mode, k)), expected)


def test_kept_count_is_ceil_of_k_n_on_the_decimal_value():
    assert kept_count(0.1, 30) == 3          # 0.1 * 30 is 3.0000000000000004 in floats
    assert kept_count(0.3, 7) == 3           # 2.1 -> 3
    assert kept_count(0.5, 9) == 5
    assert kept_count(1e-6, 10) == 1         # never an empty layer
    assert kept_count(1.0, 11) == 11


def test_ties_go_to_the_lower_index():
    scores = np.zeros(10, dtype=np.float32)
    np.testing.assert_array_equal(np_var(mode_mask(scores, 0.0, "top_k", 0.3)), [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.array([-1, 1, -1, 1, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(np_var(mode_mask(scores, 0.0, "signed_top_k", 0.6)), [-1, 1, -1, 0, 0])


@pytest.mark.parametrize("k", [0.1, 0.25, 0.5, 0.8, 1.0])
def test_top_k_handles_signed_zeros_tiny_and_extreme_values(k):
    """(Denormals are left out: TensorFlow and XLA flush them to zero on CPU.)"""
    special = np.array([-0.0, 0.0, 1e-30, -1e-30, 3.4e38, -3.4e38, 1.0, -1.0, 1e-30, -0.0, 2.5, -2.5],
                       dtype=np.float32)
    scores = np.concatenate([special, tied_scores((28,), 9)])
    for mode in ("top_k", "signed_top_k"):
        expected = reference_mask(scores, 0.0, mode, k)
        np.testing.assert_array_equal(np_var(mode_mask(scores, 0.0, mode, k)), expected)
        np.testing.assert_array_equal(mode_mask_numpy(scores, 0.0, mode, k), expected)


@pytest.mark.parametrize("mode,k", NEW_MODES)
def test_exact_k_per_layer_in_a_built_model(mode, k):
    model = build_model("FCN", mask_mode=mode, keep_fraction=k)
    for layer in masked_layers(model):
        mask = layer.ternary_mask()
        n = mask.size
        if k is not None:
            assert np.count_nonzero(mask) == math.ceil(round(k * n, 9)), layer.name
        if mode != "signed_top_k":
            assert mask.min() >= 0
        scores = np_var(layer.scores)
        np.testing.assert_array_equal(mask, reference_mask(scores, float(np_var(layer.threshold)), mode, k))
        np.testing.assert_array_equal(np_var(layer.kernel), np_var(layer.frozen_kernel) * mask)


@requires_tf
@pytest.mark.parametrize("mode,k", NEW_MODES + (("signed", None),))
def test_gradient_is_straight_through_to_the_scores(mode, k):
    import tensorflow as tf
    rng = np.random.default_rng(3)
    layer = SignedSupermaskDense(5, threshold_fraction=0.5, mask_mode=mode, keep_fraction=k)
    layer.build((None, 6))
    weights = rng.normal(size=(6, 5)).astype(np.float32)
    layer.set_initial_values(frozen_kernel=weights, scores=tied_scores((6, 5), 4))
    x = rng.normal(size=(8, 6)).astype(np.float32)
    upstream = rng.normal(size=(8, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * upstream)
    (gradient,) = tape.gradient(loss, [layer.scores])
    np.testing.assert_allclose(gradient.numpy(), (x.T @ upstream) * weights, rtol=1e-5, atol=1e-6)


def bernoulli_layer(sample_seed, scores):
    layer = SignedSupermaskDense(scores.shape[1], mask_mode="bernoulli", sample_seed=sample_seed)
    layer.build((None, scores.shape[0]))
    layer.set_initial_values(frozen_kernel=np.ones(scores.shape, np.float32), scores=scores)
    return layer


def test_bernoulli_draws_follow_sigmoid_of_the_scores_and_evaluation_is_deterministic():
    scores = np.linspace(-3, 3, 40 * 25, dtype=np.float32).reshape(40, 25)
    layer = bernoulli_layer(11, scores)
    draws = np.stack([np_var(layer.training_kernel(True)) for _ in range(400)])   # W = 1: the kernel is the mask
    assert set(np.unique(draws)) <= {0.0, 1.0}
    probability = 1 / (1 + np.exp(-scores.astype(np.float64)))
    # 400 draws per entry: the frequency's standard error is at most 0.025; 5 sigma over all 1,000 entries
    assert np.abs(draws.mean(axis=0) - probability).max() < 0.125
    assert abs(draws.mean() - probability.mean()) < 0.01
    np.testing.assert_array_equal(np_var(layer.training_kernel(False)), (scores > 0).astype(np.float32))
    np.testing.assert_array_equal(np_var(layer.kernel), np_var(layer.training_kernel(None)))
    np.testing.assert_array_equal(layer.ternary_mask(), (scores > 0).astype(np.int8))


def test_bernoulli_draws_are_reproducible_from_the_seed_and_resume_from_the_generator_state():
    scores = np.zeros((30, 20), np.float32)              # p = 1/2 everywhere
    first, second, other = (bernoulli_layer(seed, scores) for seed in (5, 5, 6))
    draws = [np_var(first.training_kernel(True)) for _ in range(3)]
    np.testing.assert_array_equal(draws[0], np_var(second.training_kernel(True)))
    assert not np.array_equal(draws[0], draws[1])        # a fresh mask every training call
    assert not np.array_equal(draws[0], np_var(other.training_kernel(True)))
    (state,) = [v for v in first.non_trainable_variables if "sample_generator" in v.path]
    assert state.path == f"{first.name}/sample_generator/seed_generator_state"
    resumed = bernoulli_layer(5, scores)                 # a restored checkpoint: the same seed state
    resumed.non_trainable_variables[-1].assign(np_var(second.non_trainable_variables[-1]))
    np.testing.assert_array_equal(np_var(resumed.training_kernel(True)), draws[1])


def test_other_modes_have_no_sample_generator():
    model = build_model("FCN", mask_mode="signed")
    assert not any("sample_generator" in v.path for v in model.variables)
    seeds = [layer.sample_seed for layer in masked_layers(build_model("FCN", mask_mode="bernoulli"))]
    assert None not in seeds and len(set(seeds)) == len(seeds)


@requires_tf
def test_bernoulli_gradient_is_the_sigmoid_slope_times_the_straight_through_gradient():
    import tensorflow as tf
    rng = np.random.default_rng(8)
    scores = rng.normal(size=(6, 5)).astype(np.float32)
    layer = bernoulli_layer(3, scores)
    weights = rng.normal(size=(6, 5)).astype(np.float32)
    layer.set_initial_values(frozen_kernel=weights)
    x, upstream = rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=(8, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * upstream)
    (gradient,) = tape.gradient(loss, [layer.scores])
    sigmoid = 1 / (1 + np.exp(-scores))
    np.testing.assert_allclose(gradient.numpy(), (x.T @ upstream) * weights * sigmoid * (1 - sigmoid),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode,k", NEW_MODES)
def test_config_round_trip_and_saved_model(mode, k, tmp_path):
    layer = SignedSupermaskDense(4, mask_mode=mode, keep_fraction=k, name="masked")
    config = layer.get_config()
    assert (config["mask_mode"], config["keep_fraction"]) == (mode, k)
    clone = SignedSupermaskDense.from_config(config)
    assert (clone.mask_mode, clone.keep_fraction) == (mode, k)
    model = build_model("FCN", mask_mode=mode, keep_fraction=k)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert len(masked_layers(loaded)) == len(masked_layers(model)) == 3
    for original, reloaded in zip(masked_layers(model), masked_layers(loaded)):
        assert (reloaded.mask_mode, reloaded.keep_fraction) == (mode, k)
        np.testing.assert_array_equal(reloaded.ternary_mask(), original.ternary_mask())


@pytest.mark.parametrize("mode,k,message", [
    ("top_k", None, "needs keep_fraction"), ("binary", 0.5, "only for mask_mode"), ("signed", 0.5, "only for"),
    ("top_k", 0.0, "needs keep_fraction"), ("top_k", 1.5, "needs keep_fraction"), ("bernoulli", 0.5, "only for"),
    ("popup", None, "unknown"), ("top_k", "half", "needs keep_fraction in \\(0, 1\\], got 'half'")])
def test_layer_refuses_bad_mode_arguments(mode, k, message):
    with pytest.raises(ValueError, match=message):
        SignedSupermaskDense(4, mask_mode=mode, keep_fraction=k)


@pytest.mark.parametrize("p", ["abc", None, 1.0, -0.1])
def test_layer_refuses_a_threshold_fraction_that_is_no_fraction_naming_the_layer(p):
    with pytest.raises(ValueError, match=r"^probe: threshold_fraction must be in \[0, 1\), got "):
        SignedSupermaskDense(4, threshold_fraction=p, name="probe")


@pytest.mark.parametrize("overrides,key", [
    (["model.mask_mode=top_k"], "model.keep_fraction"),
    (["model.keep_fraction=0.5"], "model.keep_fraction"),
    (["model.mask_mode=binary", "model.keep_fraction=0.5"], "model.keep_fraction"),
    (["model.mask_mode=top_k", "model.keep_fraction=0"], "model.keep_fraction"),
    (["model.mask_mode=top_k", "model.keep_fraction=1.01"], "model.keep_fraction"),
    (["model.mask_mode=binary", "model.signed=false"], "model.mask_mode"),
    (["model.mask_mode=popup"], "model.mask_mode")])
def test_config_validation_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "configs" / "fcn_signed.yaml", overrides)
    assert error.value.key == key and "fcn_signed.yaml" in str(error.value)


def test_mode_configs_are_complete_and_name_their_sources():
    stems = {path.stem for path in MODE_CONFIGS}
    assert stems == {f"{m}_{mode}" for m in ("fcn", "conv2", "conv4", "conv6", "conv8")
                     for mode in ("binary", "signed_top_k", "top_k", "bernoulli")}
    for path in MODE_CONFIGS:
        config, text = load_config(path), path.read_text()
        assert config.model.mask_mode == path.stem.split("_", 1)[1]
        assert "base: ../" in text and ("Values" in text)
    top_k = load_config(ROOT / "configs" / "mask_modes" / "conv4_top_k.yaml")
    assert (str(top_k.init.weight), top_k.training.schedule.kind, top_k.optimizer.lr) == (
        "signed_constant/he", "cosine", 0.1)
    assert top_k.init.mask.distribution == "uniform" and abs(top_k.init.mask.factor - 1 / 6) < 1e-15


def test_cosine_schedule_is_set_once_per_epoch():
    from training.optim import learning_rate_schedule
    config = load_config(ROOT / "configs" / "mask_modes" / "fcn_top_k.yaml", ["training.epochs=4"])
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 9, 10, 19, 20, 39)]
    expected = [0.1 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in (0, 0, 1, 1, 2, 3)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One tiny real MNIST run (1 epoch, 256 images) of each FCN mode config."""
    data_dir = str(real_data_dir("mnist.npz"))
    out = tmp_path_factory.mktemp("mask_mode_runs")
    runs = {}
    for mode in ("binary", "signed_top_k", "top_k", "bernoulli"):
        config = load_config(ROOT / "configs" / "mask_modes" / f"fcn_{mode}.yaml", TINY)
        runs[mode] = (config, RunTrainer(config, 0, out, data_dir=data_dir, verbose=False).run())
    return out, runs


@pytest.mark.slow
def test_tiny_real_run_per_mode_records_masks_of_its_rule(tiny_runs):
    out, runs = tiny_runs
    for mode, (config, record) in runs.items():
        assert record["status"] == "finished"
        assert 0.3 < record["final"]["test_accuracy"] <= 1.0, mode     # above chance after 16 batches
        with np.load(out / config.experiment / "run_0" / "masks.npz") as masks:
            layers = {name: masks[name] for name in masks.files}
        total = sum(m.size for m in layers.values())
        active = sum(np.count_nonzero(m) for m in layers.values())
        assert record["final"]["remaining_percent"] == pytest.approx(100 * active / total)
        if mode != "signed_top_k":
            assert all(m.min() >= 0 for m in layers.values()), mode
        if mode in ("signed_top_k", "top_k"):
            k = config.model.keep_fraction
            assert all(np.count_nonzero(m) == kept_count(k, m.size) for m in layers.values()), mode


@pytest.mark.slow
def test_tiny_runs_export_to_both_formats_and_report(tiny_runs, tmp_path):
    out, runs = tiny_runs
    for mode, (config, _) in runs.items():
        result = export.export_run(out / config.experiment / "run_0", tmp_path / mode)
        assert result["max_difference"] <= 1e-6, mode
        assert result["compact_kernels_equal"] and result["compact_difference"] == 0.0, mode
    tables = build_tables(find_experiments(out))
    sides = {summary.experiment.name: summary.side for summary in tables.others}
    assert sides == {f"fcn_{mode}": mode for mode in runs}
    assert all(cell is None for cells in tables.main.values() for cell in cells.values())


@pytest.mark.slow
def test_sampled_evaluation_of_a_bernoulli_run_and_refusal_of_other_modes(tiny_runs, monkeypatch):
    """bench/sampled_eval.py: Zhou et al.'s test-time sampling on a tiny real bernoulli run."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sampled_eval", ROOT / "bench" / "sampled_eval.py")
    sampled_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sampled_eval)
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    out, runs = tiny_runs
    result = sampled_eval.evaluate_run(out / runs["bernoulli"][0].experiment / "run_0", draws=2)
    # Sampled nets learn (67 and 70 % here; chance 10 %): a sampler drawing the wrong masks would not.
    assert len(result["sampled_accuracy"]) == 2 and all(30 < a <= 100 for a in result["sampled_accuracy"])
    assert result["threshold_accuracy"] == pytest.approx(100 * runs["bernoulli"][1]["final"]["test_accuracy"])
    assert 30 < result["expected_remaining_percent"] < 70      # scores start near 0: p near 1/2
    with pytest.raises(ValueError, match="for mask_mode bernoulli"):
        sampled_eval.evaluate_run(out / runs["binary"][0].experiment / "run_0", draws=1)
