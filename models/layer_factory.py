"""Creates a model's Dense/Conv2D layers, masked (signed supermask) or ordinary (baseline).

Builders ask the factory for layers and never care which variant they get, so every
architecture exists in both variants from one definition. Each layer gets its own
seeds, derived from the run seed and the layer's position (``masking.layer_seed``).
"""
from dataclasses import asdict, dataclass

import keras

from masking import ScaledInitializer, SignedSupermaskConv2D, SignedSupermaskDense, layer_seed

WEIGHT_STREAM, SCORE_STREAM = 0, 1


@dataclass(frozen=True)
class InitSpec:
    """An initializer family: distribution, scaling and variance factor (METHOD §2)."""

    distribution: str
    scaling: str
    factor: float = 1.0

    def initializer(self, seed):
        return ScaledInitializer(self.distribution, self.scaling, self.factor, seed=seed)

    def to_dict(self):
        return asdict(self)


SIGNED_WEIGHT_INIT = InitSpec("signed_constant", "elus")   # ELUS +-sqrt(3/fan_in), METHOD B1
SIGNED_SCORE_INIT = InitSpec("uniform", "xavier")          # Glorot-uniform scores
BASELINE_WEIGHT_INIT = InitSpec("uniform", "elu")          # U(+-sqrt(4.5/fan_in)), METHOD §2.6


class LayerFactory:
    """Hands out the layers of one model; ``signed`` picks masked or ordinary layers."""

    def __init__(self, signed=True, seed=7531, threshold_fraction=0.4, weight_init=None, score_init=None):
        self.signed = signed
        self.seed = int(seed)
        self.threshold_fraction = threshold_fraction
        self.weight_init = weight_init or (SIGNED_WEIGHT_INIT if signed else BASELINE_WEIGHT_INIT)
        self.score_init = score_init or SIGNED_SCORE_INIT
        self._layer_count = 0

    def _initializers(self):
        index = self._layer_count
        self._layer_count += 1
        return (self.weight_init.initializer(layer_seed(self.seed, index, WEIGHT_STREAM)),
                self.score_init.initializer(layer_seed(self.seed, index, SCORE_STREAM)))

    def dense(self, units, activation=None, name=None):
        weight_init, score_init = self._initializers()
        if not self.signed:
            return keras.layers.Dense(units, activation=activation, use_bias=False,
                                      kernel_initializer=weight_init, name=name)
        return SignedSupermaskDense(units, activation=activation, threshold_fraction=self.threshold_fraction,
                                    weight_initializer=weight_init, score_initializer=score_init, name=name)

    def conv(self, filters, kernel_size=3, strides=1, activation=None, name=None):
        weight_init, score_init = self._initializers()
        if not self.signed:
            return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                       activation=activation, use_bias=False,
                                       kernel_initializer=weight_init, name=name)
        return SignedSupermaskConv2D(filters, kernel_size, strides=strides, padding="same",
                                     activation=activation, threshold_fraction=self.threshold_fraction,
                                     weight_initializer=weight_init, score_initializer=score_init, name=name)
