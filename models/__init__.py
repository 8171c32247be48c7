"""Model families of the paper; ``build_model(name, signed=True, **options)`` is the entry point."""
from dataclasses import dataclass
from functools import partial
from typing import Callable

from models.conv import CONV_STAGE_WIDTHS, build_conv
from models.fcn import build_fcn
from models.resnet import build_resnet
from models.layer_factory import (BASELINE_WEIGHT_INIT, SIGNED_SCORE_INIT, SIGNED_WEIGHT_INIT, InitSpec,
                                  LayerFactory)


@dataclass(frozen=True)
class ModelFamily:
    """How to build one named architecture and which dataset it was made for."""

    build: Callable
    dataset: str


DATASET_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}

MODEL_FAMILIES = {
    "FCN": ModelFamily(build_fcn, "mnist"),
    **{name: ModelFamily(partial(build_conv, stage_widths=widths, name=name,
                                 scale_head=(name != "Conv8")), "cifar10")
       for name, widths in CONV_STAGE_WIDTHS.items()},
    # ResNet56/110 headline rows are CIFAR-100, so build_model defaults them to 100 classes.
    "ResNet20": ModelFamily(partial(build_resnet, depth=20, name="ResNet20"), "cifar10"),
    "ResNet56": ModelFamily(partial(build_resnet, depth=56, name="ResNet56"), "cifar100"),
    "ResNet110": ModelFamily(partial(build_resnet, depth=110, name="ResNet110"), "cifar100"),
}


def _as_init_spec(value, label):
    if value is None or isinstance(value, InitSpec):
        return value
    if isinstance(value, dict):
        return InitSpec(**value)
    raise ValueError(f"{label} must be an InitSpec or a dict with distribution/scaling/factor, got {value!r}")


def build_model(name, signed=True, *, seed=7531, threshold_fraction=0.4, weight_init=None, score_init=None,
                **options):
    """An uncompiled Keras model ``name`` (FCN, Conv2/4/6/8, ...).

    ``signed=False`` gives the baseline (ordinary trainable Dense/Conv2D, no biases).
    ``options`` go to the family's builder: ``width_multiplier``, ``num_classes`` (default:
    that of the family's paper dataset),
    ``input_shape`` and family-specific ones (e.g. ``head_activation`` for Conv nets).
    """
    if name not in MODEL_FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_FAMILIES)}")
    options.setdefault("num_classes", DATASET_CLASSES[MODEL_FAMILIES[name].dataset])
    factory = LayerFactory(signed=signed, seed=seed, threshold_fraction=threshold_fraction,
                           weight_init=_as_init_spec(weight_init, "weight_init"),
                           score_init=_as_init_spec(score_init, "score_init"))
    return MODEL_FAMILIES[name].build(factory, **options)


__all__ = ["DATASET_CLASSES", "MODEL_FAMILIES", "ModelFamily", "build_model", "InitSpec", "LayerFactory",
           "SIGNED_WEIGHT_INIT", "SIGNED_SCORE_INIT", "BASELINE_WEIGHT_INIT"]
