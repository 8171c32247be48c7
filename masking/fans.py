"""Fans, target variances and per-layer seeds of the initializers (NumPy only, no Keras).

Kept free of Keras so that config validation can name the valid choices without
importing a deep-learning backend.
"""
import math

import numpy as np

DISTRIBUTIONS = ("signed_constant", "constant", "uniform", "normal")

# scaling name -> (gain, which fan): variance = factor * gain / fan
VARIANCE_RULES = {
    "he": (2.0, "in"),
    "xavier": (2.0, "in+out"),
    "elu": (1.5, "in"),
    "elus": (3.0, "in"),
    "elus_sqrt6": (6.0, "in"),
}
SCALINGS = tuple(VARIANCE_RULES)


def compute_fans(shape):
    """Keras fan convention: dense (in, out); conv (k, k, c_in, c_out) -> k*k*c_in, k*k*c_out."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) >= 3:
        receptive_field = math.prod(shape[:-2])
        return receptive_field * shape[-2], receptive_field * shape[-1]
    raise ValueError(f"cannot compute fans of a kernel with shape {shape}; expected 2-D or conv kernel")


def target_variance(shape, scaling, factor=1.0):
    """Variance the initializer aims for, e.g. 3/fan_in for ``elus``."""
    if scaling not in VARIANCE_RULES:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    gain, fan = VARIANCE_RULES[scaling]
    fan_in, fan_out = compute_fans(shape)
    denominator = fan_in if fan == "in" else (fan_in + fan_out)
    return factor * gain / denominator


def layer_seed(seed, layer_index, stream):
    """Independent, reproducible seed per (run seed, layer, stream: weights, scores or mask samples)."""
    return int(np.random.SeedSequence([int(seed), int(layer_index), int(stream)]).generate_state(1)[0])
