"""Every ResNet config trains a few steps on tiny synthetic data through the real training path."""
from pathlib import Path

import keras
import numpy as np
import pytest

from data import Dataset
from training.config import load_config
from training.runner import compiled_model

ROOT = Path(__file__).resolve().parents[1]
RESNET_CONFIGS = sorted((ROOT / "configs").glob("resnet*.yaml"))
assert RESNET_CONFIGS, "no configs/resnet*.yaml found: the parametrized tests would silently not run"


def synthetic(num_classes, count=8):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=count).astype("int32")
    return Dataset("synthetic", images, labels, images, labels, num_classes, (32, 32, 3), "test")


@pytest.mark.slow
@pytest.mark.parametrize("path", RESNET_CONFIGS, ids=lambda p: p.stem)
def test_resnet_config_trains_and_changes_only_scores_and_bn(path, tmp_path):
    config = load_config(path, ["training.batch_size=4", "data.repeat=1"])
    data = synthetic(100 if config.data.dataset == "cifar100" else 10)
    model = compiled_model(config, config.seed, len(data.x_train))
    before = {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in model.variables}
    history = model.fit(data.x_train, data.y_train, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    real_bn_statistics = {v.path for layer in model.layers
                          if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
                          for v in (layer.moving_mean, layer.moving_variance)}
    trainable = {v.path for v in model.trainable_variables}
    allowed = ("scores", "gamma", "beta") if config.model.signed else ("kernel", "gamma", "beta")
    assert all(path.endswith(allowed) for path in trainable), sorted(trainable)
    for variable in model.variables:
        if variable.path in trainable or variable.path in real_bn_statistics:
            continue  # frozen weights, thresholds and frozen BN statistics must stay bit-identical
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), before[variable.path],
                                      err_msg=variable.path)
    changed = [v.path for v in model.trainable_variables
               if not np.array_equal(keras.ops.convert_to_numpy(v), before[v.path])]
    assert any(path.endswith(allowed[0]) for path in changed), "no scores (or baseline kernels) changed"
