"""MNIST / CIFAR-10 / CIFAR-100 as standardized NumPy arrays (docs/SPEC.md §5.1).

Pure NumPy so that every Keras backend can train without TensorFlow. Sources, in
order: ``<data_dir>/<name>.npz`` in Keras layout; for CIFAR-10 also
``<data_dir>/cifar10_jpeg.npz`` (a JPEG re-encoding of CIFAR-10 with the original labels and split),
decoded once into ``SUPERMASK_CACHE_DIR`` (one file per container content); with no data dir, ``keras.datasets``
(needs internet on first use).
"""
import functools
import io
import os
from dataclasses import dataclass

import numpy as np

from fileio import file_sha256, write_npz

DATASET_NAMES = ("mnist", "cifar10", "cifar100")
DATA_DIR_ENV = "SUPERMASK_DATA_DIR"
CACHE_DIR_ENV = "SUPERMASK_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "signed_supermask")

NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}
INPUT_SHAPES = {"mnist": (784,), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3)}
# Image shapes (without N) accepted in a Keras-layout npz.
RAW_IMAGE_SHAPES = {"mnist": ((28, 28), (28, 28, 1)), "cifar10": ((32, 32, 3),), "cifar100": ((32, 32, 3),)}
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
KERAS_LAYOUT = "expected a Keras-layout npz with x_train, y_train, x_test, y_test"
JPEG_KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test")
JPEG_LAYOUT = "expected train_jpeg, train_offsets, y_train, test_jpeg, test_offsets, y_test"

# Images standardized per chunk: bounds the float32 temporaries to a few hundred MB.
STANDARDIZE_CHUNK = 4096


class DatasetError(ValueError):
    """A dataset file is missing or not in the expected layout; the message names both."""


@dataclass(frozen=True)
class Dataset:
    """Standardized train/test arrays; the arrays are read-only because they are shared via the cache."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple
    source: str


def resolve_data_dir(data_dir):
    """Explicit argument wins, then ``SUPERMASK_DATA_DIR``; ``None`` means use keras.datasets."""
    chosen = data_dir if data_dir else os.environ.get(DATA_DIR_ENV) or None
    return os.path.abspath(os.path.expanduser(chosen)) if chosen else None


def per_image_standardization(images):
    """``tf.image.per_image_standardization`` for every image along axis 0, in float32.

    Each image is reduced over all its remaining axes: (x - mean) / max(std, 1/sqrt(num_elements)).
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"per_image_standardization: images of shape {images.shape}; expected (N, ...) with N images")
    num_images = images.shape[0]
    flat = images.reshape(num_images, -1)
    min_stddev = np.float32(1.0 / np.sqrt(flat.shape[1]))
    standardized = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, num_images, STANDARDIZE_CHUNK):
        chunk = standardized[start:start + STANDARDIZE_CHUNK]
        chunk[...] = flat[start:start + STANDARDIZE_CHUNK]
        chunk -= chunk.mean(axis=1, keepdims=True, dtype=np.float32)
        stddev = np.sqrt(np.mean(np.square(chunk), axis=1, keepdims=True, dtype=np.float32))
        chunk /= np.maximum(stddev, min_stddev)
    return standardized.reshape(images.shape)


def load_dataset(name, data_dir=None, train_limit=None, test_limit=None):
    """Load ``name`` standardized; ``*_limit`` keeps the first N examples (smoke tests).

    Cached per process on the resolved arguments, so repeated calls are free.
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    for arg_name, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"{arg_name} must be a positive int or None, got {limit!r}")
    return _load_resolved(name, resolve_data_dir(data_dir), train_limit, test_limit)


def clear_dataset_cache():
    """Forget the in-memory datasets (tests that change files or env between loads)."""
    _load_resolved.cache_clear()


@functools.lru_cache(maxsize=8)
def _load_resolved(name, data_dir, train_limit, test_limit):
    """Read, validate, truncate and standardize; the one place that builds a ``Dataset``."""
    if data_dir is None:
        arrays, source = _load_from_keras(name), "keras.datasets"
    else:
        arrays, source = _load_from_dir(name, data_dir)
    label = source if data_dir else f"keras.datasets.{name}"
    x_train, y_train, x_test, y_test = _validate_keras_arrays(name, arrays, label)
    x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    x_test, y_test = x_test[:test_limit], y_test[:test_limit]
    flat_shape = (-1,) + INPUT_SHAPES[name]
    fields = {
        "x_train": per_image_standardization(x_train).reshape(flat_shape),
        "y_train": y_train.astype(np.int32),
        "x_test": per_image_standardization(x_test).reshape(flat_shape),
        "y_test": y_test.astype(np.int32),
    }
    for array in fields.values():
        array.setflags(write=False)
    return Dataset(name=name, num_classes=NUM_CLASSES[name], input_shape=INPUT_SHAPES[name], source=source,
                   **fields)


def _load_from_keras(name):
    """Online fallback; keras is imported lazily so the offline path never needs it."""
    try:
        import keras
        loader = getattr(keras.datasets, name).load_data
        (x_train, y_train), (x_test, y_test) = loader(label_mode="fine") if name == "cifar100" else loader()
    except Exception as error:
        raise DatasetError(f"keras.datasets.{name} could not be loaded ({type(error).__name__}: {error}); "
                           f"pass --data-dir or set {DATA_DIR_ENV} to a folder with {name}.npz") from error
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _load_from_dir(name, data_dir):
    """Return the Keras-layout arrays and the path they came from."""
    path = os.path.join(data_dir, f"{name}.npz")
    if name == "cifar10" and not os.path.exists(path):
        jpeg_path = os.path.join(data_dir, "cifar10_jpeg.npz")
        if os.path.exists(jpeg_path):
            path = _cached_cifar10_from_jpeg(jpeg_path)
    if not os.path.exists(path):
        raise DatasetError(f"{name}.npz not found: expected {path} in Keras layout "
                           f"(set {DATA_DIR_ENV} or --data-dir to the folder that holds it)")
    return _read_npz(path, KERAS_KEYS, KERAS_LAYOUT), path


def _read_npz(path, keys, layout):
    """Load every key eagerly so that a truncated or non-npz file fails here, with its full path."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in keys:
                if key not in archive.files:
                    raise DatasetError(f"{path}: missing key {key!r}; {layout}")
            return {key: archive[key] for key in keys}
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"{path}: cannot be read as npz ({type(error).__name__}: {error}); {layout}") from error


def _validate_keras_arrays(name, arrays, label):
    """Check image shape/dtype, label shape/range and lengths; return (x_train, y_train, x_test, y_test)."""
    allowed = " or ".join(str((("N",) + shape)).replace("'", "") for shape in RAW_IMAGE_SHAPES[name])
    checked = []
    for split in ("train", "test"):
        images, labels = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if images.shape[1:] not in RAW_IMAGE_SHAPES[name] or images.shape[0] == 0 or images.dtype != np.uint8:
            raise DatasetError(f"{label}: x_{split} is {images.dtype} {images.shape}; expected uint8 images {allowed}")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"{label}: y_{split} is {labels.dtype} {labels.shape}; "
                               "expected integer labels (N,) or (N, 1)")
        if len(labels) != len(images):
            raise DatasetError(f"{label}: x_{split} has {len(images)} images but y_{split} has {len(labels)} labels")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= NUM_CLASSES[name]:
            raise DatasetError(f"{label}: y_{split} holds labels {low}..{high}; expected 0..{NUM_CLASSES[name] - 1}")
        checked += [images, labels]
    return tuple(checked)


def _cached_cifar10_from_jpeg(jpeg_path):
    """Decode the whole JPEG container once into the cache dir and return the cached npz path. The
    name carries the container's SHA-256, so another container is never served a stale decode."""
    cache_dir = os.path.abspath(os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR))
    cache_path = os.path.join(cache_dir, f"cifar10-{file_sha256(jpeg_path)[:16]}.npz")
    if os.path.exists(cache_path):
        return cache_path
    container = _read_npz(jpeg_path, JPEG_KEYS, JPEG_LAYOUT)
    decoded = {}
    for split in ("train", "test"):
        decoded[f"x_{split}"] = _decode_jpegs(jpeg_path, split, container[f"{split}_jpeg"],
                                              container[f"{split}_offsets"], len(container[f"y_{split}"]))
        decoded[f"y_{split}"] = container[f"y_{split}"]
    os.makedirs(cache_dir, exist_ok=True)
    write_npz(cache_path, decoded, compressed=False)   # atomic: concurrent or killed runs never see half a file
    return cache_path


def _decode_jpegs(jpeg_path, split, blob, offsets, num_images):
    """JPEG bytes ``blob[offsets[i]:offsets[i+1]]`` -> (N, 32, 32, 3) uint8, checked against the container."""
    from PIL import Image

    if blob.ndim != 1 or offsets.shape != (num_images + 1,) or offsets[0] != 0 or offsets[-1] != len(blob) \
            or np.any(np.diff(offsets) <= 0):
        raise DatasetError(f"{jpeg_path}: {split}_offsets {offsets.shape} do not split {split}_jpeg "
                           f"({blob.shape}) into {num_images} images; {JPEG_LAYOUT}")
    images = np.empty((num_images, 32, 32, 3), dtype=np.uint8)
    blob_bytes = memoryview(blob)
    for index in range(num_images):
        with Image.open(io.BytesIO(blob_bytes[offsets[index]:offsets[index + 1]])) as image:
            pixels = np.asarray(image.convert("RGB"))
        if pixels.shape != (32, 32, 3):
            raise DatasetError(f"{jpeg_path}: {split} image {index} decodes to {pixels.shape}; expected (32, 32, 3)")
        images[index] = pixels
    return images


