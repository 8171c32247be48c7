"""NumPy references and small constructors shared by the layer tests."""
import keras
import numpy as np
import pytest
from keras import ops

from masking import SignedSupermaskConv2D, SignedSupermaskDense

requires_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                 reason="gradient reference uses tf.GradientTape")
TAU = np.float32(0.5)
ABOVE_TAU = np.nextafter(TAU, np.float32(1.0))      # smallest float32 > 0.5


def q_ref(scores, tau):
    return np.where(scores > tau, 1.0, np.where(scores < -tau, -1.0, 0.0)).astype(np.float32)


def band_scores(shape, rng):
    """Scores with max|S| = 1 exactly (so p = 0.5 gives tau = 0.5 exactly) and many entries at
    exactly +-tau, just above it, and strictly inside the dead band."""
    size = int(np.prod(shape))
    assert size >= 12
    values = rng.uniform(-1.0, 1.0, size=size).astype(np.float32)
    special = np.array([1.0, -1.0, TAU, -TAU, TAU, -TAU, ABOVE_TAU, -ABOVE_TAU, 0.0, 0.25, -0.25, 0.49],
                       dtype=np.float32)
    positions = rng.permutation(size)[:len(special)]
    values[positions] = special
    return values.reshape(shape)


def conv_ref(x, w, stride, padding):
    """Direct (shift-and-sum) 2-D cross-correlation, channels last, TF 'same'/'valid' semantics.

    Returns the output and the padded input (also used for the kernel gradient)."""
    n, h, wd, _ = x.shape
    kh, kw, _, _ = w.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        pad_h = max((oh - 1) * stride + kh - h, 0)
        pad_w = max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, w.shape[-1]), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            out += np.einsum("nhwc,co->nhwo", patch, w[i, j])
    return out, x


def conv_kernel_grad_ref(x_padded, upstream, kernel_shape, stride):
    """dL/dW_eff[i, j, c, o] = sum_{n, h, w} x_pad[n, h*s + i, w*s + j, c] * G[n, h, w, o]."""
    kh, kw, _, _ = kernel_shape
    _, oh, ow, _ = upstream.shape
    grad = np.zeros(kernel_shape, dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x_padded[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
            grad[i, j] = np.einsum("nhwc,nhwo->co", patch, upstream)
    return grad


def make_dense(units, in_dim, p=0.5, **kwargs):
    layer = SignedSupermaskDense(units, threshold_fraction=p, **kwargs)
    layer.build((None, in_dim))
    return layer


def seeded_dense(units, in_dim, rng, **kwargs):
    """A built dense layer with normal weights and band scores from ``rng``: (layer, weights, scores)."""
    layer = make_dense(units, in_dim, **kwargs)
    weights = rng.normal(size=(in_dim, units)).astype(np.float32)
    scores = band_scores((in_dim, units), rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    return layer, weights, scores


def make_conv(filters, in_ch, kernel_size, stride, padding, p=0.5, **kwargs):
    layer = SignedSupermaskConv2D(filters, kernel_size, strides=stride, padding=padding, threshold_fraction=p,
                                  **kwargs)
    layer.build((None, 9, 8, in_ch))
    return layer


def seeded_conv(filters, in_ch, kernel_size, stride, padding, rng):
    """A built conv layer with normal weights and band scores from ``rng``: (layer, weights, scores)."""
    layer = make_conv(filters, in_ch, kernel_size, stride, padding)
    shape = (kernel_size, kernel_size, in_ch, filters)
    weights = rng.normal(size=shape).astype(np.float32)
    scores = band_scores(shape, rng)
    layer.set_initial_values(frozen_kernel=weights, scores=scores)
    return layer, weights, scores


def np_var(variable):
    return np.array(ops.convert_to_numpy(variable))
