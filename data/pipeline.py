"""Per-epoch training arrays: shuffling, repeat and CIFAR-100 augmentation (docs/SPEC.md §5.1).

Everything random in an epoch comes from ``np.random.default_rng([seed, epoch])``, so a run
resumed at an epoch boundary sees exactly the batches the uninterrupted run would have seen.
"""
import numpy as np


def epoch_order(num_examples, seed, epoch, shuffle):
    """The example order of ``epoch``: a permutation fixed by (seed, epoch), or ``arange`` without shuffling.

    Equals the order of the first pass of ``epoch_arrays`` with the same arguments.
    """
    _check_count("num_examples", num_examples, minimum=0)
    return _pass_order(_epoch_rng(seed, epoch), num_examples, shuffle)


def augment_pad_flip_crop(images, rng, pad=4):
    """Zero-pad ``pad`` px on each side, flip horizontally with p=1/2, crop back to the input size.

    ``images`` is (N, H, W, ...) and already standardized, so the padding is zeros after standardization.
    """
    images = np.asarray(images)
    if images.ndim < 3:
        raise ValueError(f"augment_pad_flip_crop: images of shape {images.shape}; expected (N, H, W, ...)")
    _check_count("pad", pad, minimum=0)
    augmented = np.zeros_like(images)
    _pad_flip_crop_into(augmented, images, np.arange(len(images)), rng, pad)
    return augmented


def epoch_arrays(x, y, *, seed, epoch, shuffle, augment, repeat=1):
    """Training arrays for one epoch: ``repeat`` passes, each with its own order and augmentation draw.

    Returns fresh arrays of length ``repeat * len(x)``, or ``x`` and ``y`` themselves when
    the epoch is one unshuffled, unaugmented pass (no 190 MB copy of MNIST per epoch);
    ``x`` and ``y`` are never modified.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
        raise ValueError(f"epoch_arrays: x {x.shape} and y {y.shape} must have the same number of examples")
    if not shuffle and not augment and repeat == 1:
        return x, y
    _check_count("repeat", repeat, minimum=1)
    if augment and x.ndim < 3:
        raise ValueError(f"epoch_arrays: augment needs images (N, H, W, ...), got x {x.shape}")
    rng = _epoch_rng(seed, epoch)
    num_examples = len(x)
    allocate = np.zeros if augment else np.empty
    epoch_x = allocate((repeat * num_examples,) + x.shape[1:], dtype=x.dtype)
    epoch_y = np.empty((repeat * num_examples,) + y.shape[1:], dtype=y.dtype)
    for pass_index in range(repeat):
        window = slice(pass_index * num_examples, (pass_index + 1) * num_examples)
        order = _pass_order(rng, num_examples, shuffle)
        if augment:
            _pad_flip_crop_into(epoch_x[window], x, order, rng, pad=4)
        else:
            np.take(x, order, axis=0, out=epoch_x[window])
        np.take(y, order, axis=0, out=epoch_y[window])
    return epoch_x, epoch_y


def _epoch_rng(seed, epoch):
    """One generator per (seed, epoch); independent of how many epochs ran before."""
    _check_count("seed", seed, minimum=0)
    _check_count("epoch", epoch, minimum=0)
    return np.random.default_rng([seed, epoch])


def _pass_order(rng, num_examples, shuffle):
    return rng.permutation(num_examples) if shuffle else np.arange(num_examples)


def _pad_flip_crop_into(out, images, order, rng, pad):
    """Write the augmented ``images[order]`` into the zero-filled ``out`` without a padded copy.

    Images are grouped by crop offset (at most (2*pad+1)^2 * 2 groups), so the loop never runs per image.
    Flipping the padded image and cropping at column offset dx equals cropping the unflipped one at
    2*pad - dx and flipping the crop, which is what is done here.
    """
    num_images, height, width = len(order), images.shape[1], images.shape[2]
    flips = rng.random(num_images) < 0.5
    row_offsets = rng.integers(0, 2 * pad + 1, size=num_images)
    col_offsets = rng.integers(0, 2 * pad + 1, size=num_images)
    col_offsets = np.where(flips, 2 * pad - col_offsets, col_offsets)
    group_keys = (row_offsets * (2 * pad + 1) + col_offsets) * 2 + flips
    for key in np.unique(group_keys):
        members = np.flatnonzero(group_keys == key)
        row_shift, col_shift = row_offsets[members[0]] - pad, col_offsets[members[0]] - pad
        src_rows, dst_rows = _shifted_window(height, row_shift)
        src_cols, dst_cols = _shifted_window(width, col_shift)
        crops = images[order[members], src_rows, src_cols]
        if flips[members[0]]:
            out[members, dst_rows, width - dst_cols.stop:width - dst_cols.start] = crops[:, :, ::-1]
        else:
            out[members, dst_rows, dst_cols] = crops


def _shifted_window(size, shift):
    """Source and destination slices of a crop whose window starts ``shift`` px into the image."""
    return slice(max(0, shift), min(size, size + shift)), slice(max(0, -shift), min(size, size - shift))


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
