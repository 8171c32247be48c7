"""The mask rule q(S), written once in NumPy and once in keras.ops, side by side.

    q = +1 if S > tau,  -1 if S < -tau,  0 otherwise (|S| == tau is hidden)   (METHOD §1.2)

The NumPy form (read-outs, reports, exports) needs no Keras; the keras.ops form (the forward
pass) imports Keras only when called, so that this module stays importable without it.
"""
import numpy as np


def ternary_mask_numpy(scores, threshold):
    """q(S) as an int8 NumPy array."""
    scores = np.asarray(scores)
    threshold = np.asarray(threshold, dtype=scores.dtype)
    return (scores > threshold).astype(np.int8) - (scores < -threshold).astype(np.int8)


def mask_counts(mask):
    """Counts of kept (+1), hidden (0) and inverted (-1) entries of a ternary mask."""
    mask = np.asarray(mask)
    kept, inverted = int(np.count_nonzero(mask == 1)), int(np.count_nonzero(mask == -1))
    return {"kept": kept, "hidden": int(mask.size) - kept - inverted, "inverted": inverted}


def masked_weights(weights, mask):
    """W * q(S) in float32, as the forward pass computes it (multiplying by -1/0/+1 is exact)."""
    return np.asarray(weights, dtype=np.float32) * np.asarray(mask).astype(np.float32)


def ternary_mask(scores, threshold):
    """q(S) as a tensor of the scores' dtype (keras.ops, any backend)."""
    from keras import ops

    scores = ops.convert_to_tensor(scores)
    threshold = ops.convert_to_tensor(threshold, dtype=scores.dtype)
    return ops.cast(ops.greater(scores, threshold), scores.dtype) - ops.cast(
        ops.less(scores, -threshold), scores.dtype)


def straight_through_mask(scores, threshold):
    """Equals q(S) exactly in the forward pass; its gradient w.r.t. S is the identity.

    ``S - stop_gradient(S)`` is exactly zero, so adding it keeps q(S) bit-exact
    (the authors' ``q + S - sg(S)`` can round to 0.99999994).
    """
    from keras import ops

    scores = ops.convert_to_tensor(scores)
    mask = ops.stop_gradient(ternary_mask(scores, threshold))
    return mask + (scores - ops.stop_gradient(scores))
