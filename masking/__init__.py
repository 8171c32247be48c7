"""Signed-supermask layers, initializers and mask read-outs (Keras 3, backend-agnostic)."""
from masking.initializers import DISTRIBUTIONS, SCALINGS, ScaledInitializer, compute_fans, layer_seed
from masking.layers import (MASKED_LAYER_TYPES, SignedSupermaskConv2D, SignedSupermaskDense, iter_layers, mask_report,
                            masked_layers, remaining_percent, straight_through_mask, ternary_mask)

__all__ = [
    "DISTRIBUTIONS", "SCALINGS", "ScaledInitializer", "compute_fans", "layer_seed",
    "MASKED_LAYER_TYPES", "SignedSupermaskConv2D", "SignedSupermaskDense", "iter_layers", "mask_report",
    "masked_layers", "remaining_percent", "straight_through_mask", "ternary_mask",
]
