"""Signed-supermask layers, initializers and mask read-outs (Keras 3, backend-agnostic).

Names are imported lazily (PEP 562) so that the NumPy-only modules (``masking.fans``,
``masking.init_spec``, ``masking.mask_rule``), which config validation and reports use, can
be imported without loading Keras and its backend.
"""
from masking.lazy import lazy_exports

_EXPORTS = {
    "masking.fans": ("DISTRIBUTIONS", "SCALINGS", "compute_fans", "layer_seed"),
    "masking.init_spec": ("BASELINE_WEIGHT_INIT", "DEFAULT_SEED", "DEFAULT_THRESHOLD_FRACTION", "InitSpec",
                          "SIGNED_SCORE_INIT", "SIGNED_WEIGHT_INIT"),
    "masking.initializers": ("ScaledInitializer",),
    "masking.mask_rule": ("MASK_MODES", "SAMPLED_MODES", "TOP_K_MODES", "kept_count", "mask_counts",
                          "masked_weights", "mode_mask", "mode_mask_numpy", "sampled_bernoulli_mask",
                          "straight_through_mask", "straight_through_mode_mask", "ternary_mask", "ternary_mask_numpy"),
    "masking.layers": ("MASKED_LAYER_TYPES", "SignedSupermaskConv2D", "SignedSupermaskDense", "iter_layers",
                       "mask_report", "masked_layers", "remaining_percent"),
}
__getattr__, __all__ = lazy_exports("masking", _EXPORTS)
