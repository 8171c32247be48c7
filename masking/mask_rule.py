"""The mask rules q(S), each written once in NumPy and once in keras.ops, side by side.

``model.mask_mode`` picks the rule (all per layer, all with a straight-through gradient to S):

    signed        q = +1 if S > tau, -1 if S < -tau, 0 otherwise   (the paper, docs/SPEC.md §1.2; |S| == tau hidden)
    binary        q = 1 if S > tau, 0 otherwise                     (the authors' binary_supermask, SPEC §1.5)
    signed_top_k  the kept_count(k, n) entries of largest |S| get sign(S) (S == 0 counts as +1), the rest 0
    top_k         the kept_count(k, n) entries of largest S get 1, the rest 0  (edge-popup, Ramanujan et al. 2020)
    bernoulli     training: q ~ Bernoulli(sigmoid(S)), drawn afresh each step, gradient d sigmoid(S)/dS
                  (Zhou et al. 2019's supermask); evaluation and every read-out: q = 1 if S > 0, i.e.
                  sigmoid(S) > 1/2 (the most likely mask; our choice, Zhou et al.'s rule is not checked)

Top-k is exact per layer: kept_count = ceil(k * n) on the decimal value of k (k = 0.1, n = 30 keeps
3, not the 4 that float arithmetic would give), at least 1; among equal values the lower flat
index (C order) is kept first, so the choice is unique and the same on every backend (denormal
scores, |S| < 1.2e-38, may count as 0: TensorFlow and XLA flush them to zero on CPU).

The NumPy form (read-outs, reports, exports) needs no Keras; the keras.ops form (the forward
pass) imports Keras only when called, so that this module stays importable without it.
"""
import math
from fractions import Fraction

import numpy as np

MASK_MODES = ("signed", "binary", "signed_top_k", "top_k", "bernoulli")
TOP_K_MODES = ("signed_top_k", "top_k")
SAMPLED_MODES = ("bernoulli",)   # a random mask while training, the deterministic rule otherwise


def as_fraction(value):
    """``value`` as a float, NaN for what is no number (so a range check rejects it with its own message)."""
    try:
        return math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return math.nan


def check_mask_mode(mask_mode, keep_fraction, where="mask"):
    """A ValueError naming the problem unless ``keep_fraction`` is in (0, 1] for a top-k mode and None otherwise."""
    if mask_mode not in MASK_MODES:
        raise ValueError(f"{where}: unknown mask_mode {mask_mode!r}; choose one of {', '.join(MASK_MODES)}")
    if mask_mode in TOP_K_MODES:
        if not 0.0 < as_fraction(keep_fraction) <= 1.0:
            raise ValueError(f"{where}: mask_mode {mask_mode} needs keep_fraction in (0, 1], got {keep_fraction!r}")
    elif keep_fraction is not None:
        raise ValueError(f"{where}: keep_fraction is only for mask_mode {' or '.join(TOP_K_MODES)}, "
                         f"not {mask_mode}")


def kept_count(keep_fraction, size):
    """Entries a top-k layer of ``size`` weights keeps: ceil(k * size) on k's decimal value, at least 1."""
    return max(1, math.ceil(Fraction(repr(float(keep_fraction))) * int(size)))


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


def top_k_indicator_numpy(values, count):
    """Boolean array: True at the ``count`` largest entries, ties to the lower flat index."""
    values = np.asarray(values)
    order = np.argsort(-values.reshape(-1), kind="stable")
    keep = np.zeros(values.size, dtype=bool)
    keep[order[:count]] = True
    return keep.reshape(values.shape)


def mode_mask_numpy(scores, threshold, mask_mode="signed", keep_fraction=None):
    """The mask of any mode as an int8 NumPy array (``threshold`` is unused by the top-k modes)."""
    scores = np.asarray(scores)
    if mask_mode == "signed":
        return ternary_mask_numpy(scores, threshold)
    if mask_mode == "binary":
        return (scores > np.asarray(threshold, dtype=scores.dtype)).astype(np.int8)
    if mask_mode == "bernoulli":
        return (scores > 0).astype(np.int8)
    count = kept_count(keep_fraction, scores.size)
    if mask_mode == "top_k":
        return top_k_indicator_numpy(scores, count).astype(np.int8)
    if mask_mode == "signed_top_k":
        signs = np.where(scores < 0, -1, 1).astype(np.int8)
        return top_k_indicator_numpy(np.abs(scores), count).astype(np.int8) * signs
    raise ValueError(f"unknown mask_mode {mask_mode!r}")


def top_k_indicator(values, count):
    """keras.ops twin of ``top_k_indicator_numpy`` (values' dtype, 1 = kept).

    The count-th largest value v is found exactly by a radix select on order-preserving int32 keys
    of the float32 bits (32 counting passes; a full sort of a 4M-weight layer is ~20x slower on a
    CPU). Everything above v is kept, and of the entries equal to v the first ones (by flat index)
    until ``count`` is reached."""
    from keras import ops

    values = ops.convert_to_tensor(values)
    flat = ops.reshape(values, (-1,))
    keys = _order_preserving_keys(flat)

    def at_least(key):
        return ops.greater_equal(ops.sum(ops.cast(ops.greater_equal(keys, key), "int32")), count)

    # The largest key t with count(keys >= t) >= count, decided bit by bit: sign first, then bits 30..0.
    cutoff = ops.where(at_least(ops.cast(0, "int32")), ops.cast(0, "int32"), ops.cast(-(1 << 31), "int32"))
    for bit in range(30, -1, -1):
        candidate = ops.bitwise_or(cutoff, ops.cast(1 << bit, "int32"))
        cutoff = ops.where(at_least(candidate), candidate, cutoff)
    above = ops.greater(keys, cutoff)
    at_cutoff = ops.equal(keys, cutoff)
    still_needed = count - ops.sum(ops.cast(above, "int32"))
    rank_at_cutoff = ops.cumsum(ops.cast(at_cutoff, "int32"))
    keep = ops.logical_or(above, ops.logical_and(at_cutoff, ops.less_equal(rank_at_cutoff, still_needed)))
    return ops.reshape(ops.cast(keep, values.dtype), ops.shape(values))


def _order_preserving_keys(flat):
    """int32 keys with key(a) < key(b) iff a < b for float32 a, b (-0.0 and +0.0 share a key)."""
    from keras import ops

    flat = ops.where(ops.equal(flat, 0), ops.zeros_like(flat), ops.cast(flat, "float32"))
    bits = ops.view(flat, "int32")
    return ops.where(ops.less(bits, 0), ops.bitwise_xor(bits, ops.cast(0x7FFFFFFF, "int32")), bits)


def mode_mask(scores, threshold, mask_mode="signed", keep_fraction=None):
    """The mask of any mode as a tensor of the scores' dtype (keras.ops, any backend)."""
    from keras import ops

    scores = ops.convert_to_tensor(scores)
    if mask_mode == "signed":
        return ternary_mask(scores, threshold)
    if mask_mode == "binary":
        return ops.cast(ops.greater(scores, ops.convert_to_tensor(threshold, dtype=scores.dtype)), scores.dtype)
    if mask_mode == "bernoulli":
        return ops.cast(ops.greater(scores, 0), scores.dtype)
    count = kept_count(keep_fraction, math.prod(scores.shape))
    if mask_mode == "top_k":
        return top_k_indicator(scores, count)
    if mask_mode == "signed_top_k":
        signs = ops.where(ops.less(scores, 0), ops.cast(-1, scores.dtype), ops.cast(1, scores.dtype))
        kept = ops.greater(top_k_indicator(ops.abs(scores), count), 0)
        return ops.where(kept, signs, ops.zeros_like(scores))   # +0.0 where hidden, never -0.0
    raise ValueError(f"unknown mask_mode {mask_mode!r}")


def straight_through_mode_mask(scores, threshold, mask_mode="signed", keep_fraction=None):
    """Equals the mode's mask exactly in the forward pass; its gradient w.r.t. S is the identity
    (as ``straight_through_mask`` for the signed rule, which this calls unchanged)."""
    from keras import ops

    if mask_mode == "signed":
        return straight_through_mask(scores, threshold)
    scores = ops.convert_to_tensor(scores)
    hard = ops.stop_gradient(mode_mask(scores, threshold, mask_mode, keep_fraction))
    return hard + (scores - ops.stop_gradient(scores))


def sampled_bernoulli_mask(scores, seed):
    """A 0/1 mask drawn from Bernoulli(sigmoid(S)) (``seed``: a keras.random.SeedGenerator, advanced
    by the draw). Forward: the sample exactly; gradient w.r.t. S: d sigmoid(S)/dS (straight-through
    from the sample to its probability, as Zhou et al. 2019)."""
    from keras import ops, random

    scores = ops.convert_to_tensor(scores)
    probability = ops.sigmoid(scores)
    sample = ops.cast(ops.less(random.uniform(ops.shape(scores), seed=seed, dtype=scores.dtype), probability),
                      scores.dtype)
    return ops.stop_gradient(sample) + (probability - ops.stop_gradient(probability))
