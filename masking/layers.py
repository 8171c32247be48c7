"""Signed-supermask layers: frozen weights W, trainable scores S, ternary mask q(S).

Forward (docs/SPEC.md §1.2):  W_eff = W * q(S), q(S) as in ``masking/mask_rule.py``; ``mask_mode``
picks the rule (default ``signed``, the paper's; ``binary``, ``signed_top_k``, ``top_k``, ``bernoulli``;
the bernoulli mask is drawn afresh in each training call, ``kernel`` is its deterministic rule).
Backward (SPEC §1.3): straight-through, dL/dS = dL/dW_eff * W, also inside the dead band.
tau = p * max|S| of the layer's initial scores (SPEC §1.4), fixed afterwards and stored as
a non-trainable weight so that it is saved and restored with the model.

The traced path (``call``, ``kernel``) uses only ``keras.ops``, so the layers run on every Keras backend;
NumPy only checks and assigns initial values.
"""
import numbers

import keras
import numpy as np
from keras import ops

from masking.init_spec import DEFAULT_THRESHOLD_FRACTION, SIGNED_SCORE_INIT, SIGNED_WEIGHT_INIT
from masking.initializers import ScaledInitializer
from masking.mask_rule import (SAMPLED_MODES, TOP_K_MODES, as_fraction, check_mask_mode, mask_counts,
                                mode_mask_numpy, sampled_bernoulli_mask, straight_through_mode_mask)


class _SignedSupermaskBase(keras.layers.Layer):
    """Shared variables, threshold handling and read-outs of the masked layers."""

    def __init__(self, threshold_fraction=DEFAULT_THRESHOLD_FRACTION, weight_initializer=None, score_initializer=None,
                 activation=None, mask_mode="signed", keep_fraction=None, sample_seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= as_fraction(threshold_fraction) < 1.0:
            raise ValueError(f"{self.name}: threshold_fraction must be in [0, 1), got {threshold_fraction}")
        check_mask_mode(mask_mode, keep_fraction, f"layer {self.name}")
        self.threshold_fraction = float(threshold_fraction)
        self.mask_mode = mask_mode
        self.keep_fraction = float(keep_fraction) if mask_mode in TOP_K_MODES else None
        self.weight_initializer = keras.initializers.get(
            weight_initializer or ScaledInitializer.from_spec(SIGNED_WEIGHT_INIT))
        self.score_initializer = keras.initializers.get(
            score_initializer or ScaledInitializer.from_spec(SIGNED_SCORE_INIT))
        self.activation = keras.activations.get(activation)
        self.sample_seed = None if sample_seed is None else int(sample_seed)

    def _build_masked_kernel(self, kernel_shape):
        self.frozen_kernel = self.add_weight(
            name="frozen_kernel", shape=kernel_shape, initializer=self.weight_initializer, trainable=False,
            autocast=False)
        self.scores = self.add_weight(
            name="scores", shape=kernel_shape, initializer=self.score_initializer, trainable=True, autocast=False)
        self.threshold = self.add_weight(
            name="threshold", shape=(), initializer="zeros", trainable=False, autocast=False)
        self.reset_threshold()
        if self.mask_mode in SAMPLED_MODES:   # its state is a layer variable: checkpoints resume the draws
            self.sample_generator = keras.random.SeedGenerator(self.sample_seed, name="sample_generator")

    def reset_threshold(self):
        """tau = p * max|S| of the current scores; call only right after (re)initializing S.
        (Stored in every mode so that all modes have the same variables; the top-k modes ignore it.)"""
        scores = ops.convert_to_tensor(self.scores)
        self.threshold.assign(self.threshold_fraction * ops.max(ops.abs(scores)))

    def set_initial_values(self, frozen_kernel=None, scores=None):
        """Load initial W and/or S (e.g. from ``init_example.py`` pickles); S resets tau."""
        for variable, values, label in ((self.frozen_kernel, frozen_kernel, "weights"),
                                        (self.scores, scores, "scores")):
            if values is None:
                continue
            if tuple(np.shape(values)) != tuple(variable.shape):
                raise ValueError(f"layer {self.name}: {label} shape {tuple(np.shape(values))} "
                                 f"does not match the layer's {tuple(variable.shape)}")
            variable.assign(np.asarray(values, dtype="float32"))
        if scores is not None:
            self.reset_threshold()

    @property
    def kernel(self):
        """Effective kernel W * q(S), differentiable w.r.t. the scores (straight-through).

        The mask is computed from the float32 variables (no autocast), so it agrees with
        ``ternary_mask()`` under mixed precision; only the product is cast."""
        return self._masked_kernel(
            straight_through_mode_mask(self.scores, self.threshold, self.mask_mode, self.keep_fraction))

    def training_kernel(self, training):
        """The kernel a call uses: a fresh Bernoulli draw while training a sampled mode, else ``kernel``."""
        if training and self.mask_mode in SAMPLED_MODES:
            return self._masked_kernel(sampled_bernoulli_mask(self.scores, self.sample_generator))
        return self.kernel

    def _masked_kernel(self, mask):
        return ops.cast(ops.convert_to_tensor(self.frozen_kernel) * mask, self.compute_dtype)

    def ternary_mask(self):
        """The current mask as an int8 NumPy array (-1/0/+1; binary and top_k give only 0/+1)."""
        return mode_mask_numpy(ops.convert_to_numpy(self.scores), ops.convert_to_numpy(self.threshold),
                               self.mask_mode, self.keep_fraction)

    def mask_counts(self):
        """Counts of kept (+1), hidden (0) and inverted (-1) weights."""
        return mask_counts(self.ternary_mask())

    def get_config(self):
        config = super().get_config()
        config.update({
            "threshold_fraction": self.threshold_fraction,
            "weight_initializer": keras.initializers.serialize(self.weight_initializer),
            "score_initializer": keras.initializers.serialize(self.score_initializer),
            "activation": keras.activations.serialize(self.activation),
            "mask_mode": self.mask_mode,
            "keep_fraction": self.keep_fraction,
            "sample_seed": self.sample_seed,
        })
        return config


@keras.saving.register_keras_serializable(package="signed_supermask")
class SignedSupermaskDense(_SignedSupermaskBase):
    """Dense layer without bias whose kernel is W * q(S)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_units = _known_size(input_shape[-1], self.name, "the input's last dimension")
        self._build_masked_kernel((in_units, self.units))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: in_units})

    def call(self, inputs, training=None):
        return self.activation(ops.matmul(inputs, self.training_kernel(training)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="signed_supermask")
class SignedSupermaskConv2D(_SignedSupermaskBase):
    """2-D convolution (channels last) without bias whose kernel is W * q(S)."""

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "valid"):
            raise ValueError(f"{self.name}: padding must be 'same' or 'valid', got {padding!r}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size", self.name)
        self.strides = _pair(strides, "strides", self.name)
        self.padding = padding
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = _known_size(input_shape[-1], self.name, "the input's channels")
        self._build_masked_kernel(self.kernel_size + (channels, self.filters))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def call(self, inputs, training=None):
        outputs = ops.conv(inputs, self.training_kernel(training), strides=self.strides, padding=self.padding,
                           data_format="channels_last")
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, kernel, stride in zip(input_shape[1:3], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // stride))
            else:
                spatial.append((size - kernel) // stride + 1)
        return (input_shape[0], *spatial, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding}


def _pair(value, name, layer_name):
    values = (value, value) if isinstance(value, numbers.Integral) else tuple(value) \
        if isinstance(value, (tuple, list)) else ()
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in values):
        raise ValueError(f"{layer_name}: {name} must be a positive int or a pair of them, got {value!r}")
    return tuple(int(v) for v in values)


def _known_size(size, layer_name, what):
    """The built kernel needs the input's size: a one-line error naming the layer when it is unknown."""
    if size is None:
        raise ValueError(f"{layer_name}: {what} must be known to build the kernel, got None")
    return int(size)


MASKED_LAYER_TYPES = (SignedSupermaskDense, SignedSupermaskConv2D)


def iter_layers(model):
    """Every layer of a model, depth first, including layers nested in sub-models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)


def masked_layers(model):
    """All signed-supermask layers of a model, in order, including nested ones."""
    return [layer for layer in iter_layers(model) if isinstance(layer, MASKED_LAYER_TYPES)]


def mask_report(model):
    """Per-layer +1/0/-1 counts keyed by layer name."""
    return {layer.name: layer.mask_counts() for layer in masked_layers(model)}


def remaining_percent(model, report=None):
    """Global share of non-hidden weights over all masked layers (SPEC §1.6).

    Pass the ``mask_report`` already computed for this model to avoid counting twice."""
    counts = list((report if report is not None else mask_report(model)).values())
    if not counts:
        raise ValueError(f"model {model.name} has no signed-supermask layers")
    active = sum(c["kept"] + c["inverted"] for c in counts)
    total = sum(c["kept"] + c["hidden"] + c["inverted"] for c in counts)
    return 100.0 * active / total
