"""ResNet20/56/110: masked-parameter counts (docs/SPEC.md §4.2), topology, BN modes, training and saving."""
import keras
import numpy as np
import pytest

from masking import masked_layers
from models import MODEL_FAMILIES, LayerFactory, build_model
from models.resnet import BN_MODES, build_resnet, default_bn_mode

FROZEN_BN_SCALE = 1.0 / np.sqrt(1.0 + 1e-3)

# (family, width multiplier, classes) -> exact masked weights, SPEC §4.2.
PARAMETER_COUNTS = {
    ("ResNet20", 1.0, 10): 248_624,
    ("ResNet20", 1.5, 10): 558_600,
    ("ResNet20", 2.0, 10): 992_352,
    ("ResNet20", 2.5, 10): 1_549_880,
    ("ResNet20", 3.0, 10): 2_231_184,
    ("ResNet20", 3.5, 10): 3_036_264,
    ("ResNet56", 1.0, 10): 829_232,
    ("ResNet56", 1.0, 100): 834_992,
    ("ResNet110", 1.0, 10): 1_700_144,
    ("ResNet110", 1.0, 100): 1_705_904,
}


def masked_weight_count(model):
    return sum(int(np.prod(layer.frozen_kernel.shape)) for layer in masked_layers(model))


def baseline_kernel_count(model):
    return sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
               if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)))


def batch_norms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def resnet20(signed=True, **options):
    return build_resnet(LayerFactory(signed=signed), 20, "ResNet20", **options)


def random_batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 32, 32, 3)).astype("float32"), rng.integers(0, 10, size=(4,))


def train_one_step(model):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    model.train_on_batch(*random_batch())


def snapshot(model):
    return {variable.path: np.array(variable.numpy()) for variable in model.weights}


@pytest.mark.parametrize("family,width,classes", list(PARAMETER_COUNTS))
def test_parameter_counts_signed_and_baseline(family, width, classes):
    expected = PARAMETER_COUNTS[(family, width, classes)]
    signed = build_model(family, signed=True, width_multiplier=width, num_classes=classes)
    baseline = build_model(family, signed=False, width_multiplier=width, num_classes=classes)
    depth = int(family.removeprefix("ResNet"))
    assert masked_weight_count(signed) == expected
    assert len(masked_layers(signed)) == depth + 3  # + three 1x1 shortcut convs
    assert baseline_kernel_count(baseline) == expected
    assert not masked_layers(baseline)


def test_registry_names_and_datasets():
    assert {name: MODEL_FAMILIES[name].dataset for name in ("ResNet20", "ResNet56", "ResNet110")} == {
        "ResNet20": "cifar10", "ResNet56": "cifar100", "ResNet110": "cifar100"}
    assert build_model("ResNet56", signed=True).name == "ResNet56"


@pytest.mark.parametrize("signed", [True, False])
def test_topology_projection_blocks_and_spatial_sizes(signed):
    model = resnet20(signed)
    assert model.get_layer("stem_pool").output.shape[1:] == (32, 32, 16)
    for stage, (stride, size, filters) in enumerate(zip((1, 2, 2), (32, 16, 8), (16, 32, 64)), start=1):
        for conv in ("conv1", "shortcut_conv"):
            layer = model.get_layer(f"stage{stage}_block1_{conv}")
            assert tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (stride, stride)
        assert tuple(model.get_layer(f"stage{stage}_block1_conv2").kernel_size) == (3, 3)
        for block in (2, 3):
            assert tuple(model.get_layer(f"stage{stage}_block{block}_conv1").kernel_size) == (3, 3)
        assert model.get_layer(f"stage{stage}_block3_out").output.shape[1:] == (size, size, filters)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].name == "output"


def test_extra_head_variant_adds_one_masked_square_dense():
    model = build_resnet(LayerFactory(), 20, "ResNet20", num_classes=100, extra_head=True)
    fc, output = masked_layers(model)[-2:]
    assert fc.frozen_kernel.shape == (64, 100) and output.frozen_kernel.shape == (100, 100)
    assert masked_weight_count(model) == 248_624 - 640 + 6_400 + 10_000


def test_authors_resnet110_mask_variant_has_mid_stage_projection_blocks():
    model = build_resnet(LayerFactory(), 110, "ResNet110", num_classes=100, projection_every=9)
    assert masked_weight_count(model) == 1_705_904 - 7 * (16**2 + 32**2 + 64**2)
    assert tuple(model.get_layer("stage3_block10_shortcut_conv").strides) == (2, 2)
    assert model.get_layer("stage3_block18_out").output.shape[1:] == (2, 2, 64)


@pytest.mark.parametrize("depth", [21, 2, 19, "20"])
def test_invalid_depth_raises(depth):
    with pytest.raises(ValueError, match=str(depth)):
        build_resnet(LayerFactory(), depth, "bad")


def test_invalid_bn_mode_raises():
    with pytest.raises(ValueError, match="batchnorm"):
        resnet20(bn_mode="batchnorm")


def test_default_bn_modes():
    assert [default_bn_mode(depth, True) for depth in (20, 56, 110)] == ["stem_only", "frozen", "frozen"]
    assert [default_bn_mode(depth, False) for depth in (20, 56, 110)] == ["full"] * 3
    assert [bn.name for bn in batch_norms(resnet20(width_multiplier=2)) if bn.trainable] == ["stem_bn"]
    assert all(bn.trainable for bn in batch_norms(resnet20(signed=False)))
    signed56 = build_model("ResNet56", signed=True)
    assert batch_norms(signed56) and not any(bn.trainable for bn in batch_norms(signed56))


def test_bn_mode_none_has_no_batch_norm():
    assert not batch_norms(resnet20(bn_mode="none"))


@pytest.mark.parametrize("bn_mode", [mode for mode in BN_MODES if mode != "none"])
def test_every_bn_mode_places_one_bn_per_conv(bn_mode):
    model = resnet20(bn_mode=bn_mode)
    assert len(batch_norms(model)) == len(masked_layers(model)) - 1  # every conv, not the dense


def test_frozen_bn_is_a_fixed_scaling_and_never_updates():
    model = resnet20(bn_mode="frozen")
    layers = batch_norms(model)
    assert not any(bn.trainable for bn in layers) and not any(bn.trainable_weights for bn in layers)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 16)).astype("float32")
    stem_bn = model.get_layer("stem_bn")
    np.testing.assert_allclose(stem_bn(x, training=True), x * FROZEN_BN_SCALE, rtol=1e-6)
    before = snapshot(model)
    train_one_step(model)
    after = snapshot(model)
    for bn in layers:
        for variable in bn.weights:
            np.testing.assert_array_equal(after[variable.path], before[variable.path])
        np.testing.assert_array_equal(after[bn.moving_mean.path], 0.0)
        np.testing.assert_array_equal(after[bn.moving_variance.path], 1.0)


def test_full_bn_trains_gamma_beta_and_updates_moving_statistics():
    model = resnet20(bn_mode="full")
    layers = batch_norms(model)
    assert all({v.path for v in (bn.gamma, bn.beta)} <= {v.path for v in model.trainable_weights} for bn in layers)
    before = snapshot(model)
    train_one_step(model)
    after = snapshot(model)
    for bn in layers:
        assert not np.array_equal(after[bn.moving_mean.path], before[bn.moving_mean.path]), bn.name
        assert not np.array_equal(after[bn.moving_variance.path], before[bn.moving_variance.path]), bn.name


def test_signed_training_step_changes_only_scores_and_trainable_bn():
    model = resnet20()  # default: stem_only
    stem_bn = model.get_layer("stem_bn")
    trained = {layer.scores.path for layer in masked_layers(model)} | {stem_bn.gamma.path, stem_bn.beta.path}
    assert {variable.path for variable in model.trainable_weights} == trained
    updated_stats = {stem_bn.moving_mean.path, stem_bn.moving_variance.path}
    before = snapshot(model)
    train_one_step(model)
    after = snapshot(model)
    for path, value in before.items():
        if path in trained | updated_stats:
            assert not np.array_equal(after[path], value), f"{path} did not change"
        else:
            np.testing.assert_array_equal(after[path], value, err_msg=f"{path} changed")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' own saving code
def test_keras_save_load_round_trip_gives_identical_predictions(tmp_path):
    model = resnet20()
    train_one_step(model)  # non-trivial stem BN statistics must survive the round trip
    images, _ = random_batch(seed=3)
    expected = model.predict(images, verbose=0)
    path = tmp_path / "resnet20.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored.predict(images, verbose=0), expected)
    assert [bn.name for bn in batch_norms(restored) if bn.trainable] == ["stem_bn"]
    assert len(masked_layers(restored)) == 23


def test_a_full_bn_baseline_counts_its_kernels_as_the_signed_model_masks_them():
    from masking import mask_report
    from training.callbacks import mask_statistics

    baseline = build_model("ResNet20", signed=False, bn_mode="full")
    signed = build_model("ResNet20", signed=True)
    masked_total = sum(sum(counts.values()) for counts in mask_report(signed).values())
    trainable = sum(int(np.prod(v.shape)) for v in baseline.trainable_variables)
    assert mask_statistics(baseline, signed=False)[:2] == (100.0, masked_total)
    assert trainable > masked_total          # gamma and beta of every BN are not weights a mask could hide
