"""Creates a model's Dense/Conv2D layers, masked (signed supermask) or ordinary (baseline).

Builders ask the factory for layers and never care which variant they get, so every
architecture exists in both variants from one definition. Each layer gets its own
seeds, derived from the run seed and the layer's position (``masking.layer_seed``).
"""
import keras

from masking import (DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION, SAMPLED_MODES, SIGNED_SCORE_INIT, InitSpec,
                     ScaledInitializer, SignedSupermaskConv2D, SignedSupermaskDense, layer_seed)
from masking.init_spec import default_weight_init

WEIGHT_STREAM, SCORE_STREAM, SAMPLE_STREAM = 0, 1, 2


class LayerFactory:
    """Hands out the layers of one model; ``signed`` picks masked or ordinary layers.

    ``weight_init`` / ``score_init`` are InitSpecs (or their dicts); None picks the paper's
    default for the variant. ``mask_mode`` / ``keep_fraction``: the masked layers' rule
    (``masking/mask_rule.py``)."""

    def __init__(self, signed=True, seed=DEFAULT_SEED, threshold_fraction=DEFAULT_THRESHOLD_FRACTION,
                 weight_init=None, score_init=None, mask_mode="signed", keep_fraction=None):
        self.signed = signed
        self.mask_options = {"mask_mode": mask_mode, "keep_fraction": keep_fraction}
        self.seed = int(seed)
        self.threshold_fraction = threshold_fraction
        self.weight_init = InitSpec.of(weight_init or default_weight_init(signed), "weight_init")
        self.score_init = InitSpec.of(score_init or SIGNED_SCORE_INIT, "score_init")
        self._layer_count = 0

    def _next_layer_settings(self):
        """The next layer's weight and score initializers and its mask options (seeded by its position)."""
        index = self._layer_count
        self._layer_count += 1
        options = dict(self.mask_options)
        if options["mask_mode"] in SAMPLED_MODES:
            options["sample_seed"] = layer_seed(self.seed, index, SAMPLE_STREAM)
        return (ScaledInitializer.from_spec(self.weight_init, layer_seed(self.seed, index, WEIGHT_STREAM)),
                ScaledInitializer.from_spec(self.score_init, layer_seed(self.seed, index, SCORE_STREAM)), options)

    def dense(self, units, activation=None, name=None):
        """A softmax (output) layer computes in float32 under any global dtype policy, so that under
        mixed precision the probabilities and the loss on them stay float32 (Keras' advice)."""
        weight_init, score_init, mask_options = self._next_layer_settings()
        dtype = "float32" if activation == "softmax" else None
        if not self.signed:
            return keras.layers.Dense(units, activation=activation, use_bias=False,
                                      kernel_initializer=weight_init, name=name, dtype=dtype)
        return SignedSupermaskDense(units, activation=activation, threshold_fraction=self.threshold_fraction,
                                    weight_initializer=weight_init, score_initializer=score_init, name=name,
                                    dtype=dtype, **mask_options)

    def conv(self, filters, kernel_size=3, strides=1, activation=None, name=None):
        weight_init, score_init, mask_options = self._next_layer_settings()
        if not self.signed:
            return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                       activation=activation, use_bias=False,
                                       kernel_initializer=weight_init, name=name)
        return SignedSupermaskConv2D(filters, kernel_size, strides=strides, padding="same",
                                     activation=activation, threshold_fraction=self.threshold_fraction,
                                     weight_initializer=weight_init, score_initializer=score_init, name=name,
                                     **mask_options)
