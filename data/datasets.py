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
import sys
from dataclasses import dataclass

import numpy as np

from fileio import NpzReader, file_sha256, write_npz
from models.registry import NUM_CLASSES

DATASET_NAMES = ("mnist", "cifar10", "cifar100")
DATA_DIR_ENV = "SUPERMASK_DATA_DIR"
CACHE_DIR_ENV = "SUPERMASK_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "signed_supermask")

INPUT_SHAPES = {"mnist": (784,), "cifar10": (32, 32, 3), "cifar100": (32, 32, 3)}
# Image shapes (without N) accepted in a Keras-layout npz.
RAW_IMAGE_SHAPES = {"mnist": ((28, 28), (28, 28, 1)), "cifar10": ((32, 32, 3),), "cifar100": ((32, 32, 3),)}
KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")
KERAS_LAYOUT = "expected a Keras-layout npz with x_train, y_train, x_test, y_test"
JPEG_KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test")
JPEG_LAYOUT = "expected train_jpeg, train_offsets, y_train, test_jpeg, test_offsets, y_test"

# Images standardized per chunk: bounds the float32 temporaries to a few hundred MB.
STANDARDIZE_CHUNK = 4096
# Bounds checked from the .npy headers before any array is read (the real sets hold 10,000-60,000 images
# per split and about 1 KB of JPEG per CIFAR image): a small file declaring more is refused, not read.
MAX_IMAGES = 1_000_000
MAX_JPEG_BYTES_PER_IMAGE = 64 << 10


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
    limits = {"train": train_limit, "test": test_limit}
    if data_dir is None:
        arrays, source, label = _load_from_keras(name), "keras.datasets", f"keras.datasets.{name}"
        _check_layout(name, {key: (array.shape, array.dtype) for key, array in arrays.items()}, label)
    else:
        arrays, source = _load_from_dir(name, data_dir, limits)
        label = source
    for split in ("train", "test"):
        _check_labels(name, arrays[f"y_{split}"], f"y_{split}", label)
        arrays[f"x_{split}"] = arrays[f"x_{split}"][:limits[split]]
        arrays[f"y_{split}"] = _flat_labels(arrays[f"y_{split}"])[:limits[split]]
    flat_shape = (-1,) + INPUT_SHAPES[name]
    fields = {
        "x_train": per_image_standardization(arrays["x_train"]).reshape(flat_shape),
        "y_train": arrays["y_train"].astype(np.int32),
        "x_test": per_image_standardization(arrays["x_test"]).reshape(flat_shape),
        "y_test": arrays["y_test"].astype(np.int32),
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
        cause = str(error).splitlines()[0][:100] if str(error) else ""
        raise DatasetError(f"keras.datasets.{name} could not be loaded: pass --data-dir or set {DATA_DIR_ENV} to a "
                           f"folder with {_offline_files(name)} ({type(error).__name__}: {cause})") from error
    return {"x_train": np.asarray(x_train), "y_train": np.asarray(y_train), "x_test": np.asarray(x_test),
            "y_test": np.asarray(y_test)}


def _offline_files(name):
    """The file names a data folder may hold for ``name``, as an error message lists them."""
    return f"{name}.npz or cifar10_jpeg.npz" if name == "cifar10" else f"{name}.npz"


def offline_file(name, data_dir, named_by=None):
    """The file of ``name`` in the (resolved) ``data_dir``: ``<name>.npz``, for CIFAR-10 else
    ``cifar10_jpeg.npz``; a DatasetError naming the expected path when neither is there (cheap: train.py
    checks it before it writes anything), and ``named_by`` (e.g. a config's data.dir) when that named the
    folder."""
    path = os.path.join(data_dir, f"{name}.npz")
    jpeg_path = os.path.join(data_dir, "cifar10_jpeg.npz")
    if name == "cifar10" and not os.path.exists(path) and os.path.exists(jpeg_path):
        return jpeg_path
    if not os.path.exists(path):
        also = f" (or {jpeg_path})" if name == "cifar10" else ""
        fix = (f"{named_by} names this folder, before {DATA_DIR_ENV}: correct it, or give --data-dir" if named_by
               else f"set {DATA_DIR_ENV} or --data-dir to the folder that holds it")
        raise DatasetError(f"{_offline_files(name)} not found: expected {path} in Keras layout{also} ({fix})")
    return path


def check_offline_file(name, data_dir, named_by=None):
    """offline_file, with the file's keys and array headers checked (no array is read): train.py finds a
    damaged or foreign file before it claims a results folder."""
    path = offline_file(name, data_dir, named_by)
    if path.endswith("cifar10_jpeg.npz"):
        _read_npz(path, JPEG_KEYS, JPEG_LAYOUT, lambda archive: None)
    else:
        _read_npz(path, KERAS_KEYS, KERAS_LAYOUT, lambda archive: _check_layout(
            name, {key: archive.headers[key][:2] for key in KERAS_KEYS}, path))
    return path


def _load_from_dir(name, data_dir, limits):
    """The Keras-layout arrays (images only up to ``limits[split]``) and the path they came from."""
    path = offline_file(name, data_dir)
    if path.endswith("cifar10_jpeg.npz"):
        jpeg_path = path
        path, decoded = _cached_cifar10_from_jpeg(jpeg_path)
        if decoded is not None:   # the cache could not be written: use the decode in memory
            return decoded, jpeg_path

    def read(archive):
        _check_layout(name, {key: archive.headers[key][:2] for key in KERAS_KEYS}, path)
        return {key: archive.read(key, rows=limits[key[2:]] if key.startswith("x_") else None) for key in KERAS_KEYS}
    return _read_npz(path, KERAS_KEYS, KERAS_LAYOUT, read), path


def _read_npz(path, keys, layout, read):
    """``read(NpzReader)`` once every key is present; a file that is no such npz (truncated, a FIFO, not a
    zip, object arrays) fails here, with its full path. Shapes are checked by ``read`` from the headers."""
    try:
        with NpzReader(path) as archive:
            for key in keys:
                if key not in archive.headers:
                    raise DatasetError(f"{path}: missing key {key!r}; {layout}")
            return read(archive)
    except DatasetError:
        raise
    except Exception as error:
        raise DatasetError(f"{path}: cannot be read as npz ({type(error).__name__}: {error}); {layout}") from error


def _image_count(shape, key, label):
    if len(shape) < 1 or shape[0] > MAX_IMAGES:
        raise DatasetError(f"{label}: {key} declares shape {tuple(shape)[:8]}; expected at most {MAX_IMAGES:,} "
                           "entries along its first axis")
    return shape[0]


def _check_layout(name, declared, label):
    """Image shape/dtype, label shape/dtype and counts from (shape, dtype) per key, before reading data."""
    allowed = " or ".join(str((("N",) + shape)).replace("'", "") for shape in RAW_IMAGE_SHAPES[name])
    for split in ("train", "test"):
        (image_shape, image_dtype), (label_shape, label_dtype) = declared[f"x_{split}"], declared[f"y_{split}"]
        image_shape, label_shape = tuple(image_shape), tuple(label_shape)
        if image_shape[1:] not in RAW_IMAGE_SHAPES[name] or image_shape[0] == 0 or image_dtype != np.uint8:
            raise DatasetError(f"{label}: x_{split} is {image_dtype} {image_shape}; expected uint8 images {allowed}")
        images = _image_count(image_shape, f"x_{split}", label)
        _check_label_layout(label_shape, label_dtype, f"y_{split}", label)
        if label_shape[0] != images:
            raise DatasetError(f"{label}: x_{split} has {images} images but y_{split} has {label_shape[0]} labels")


def _check_label_layout(shape, dtype, key, label):
    shape = tuple(shape)
    if shape[1:] not in ((), (1,)) or len(shape) < 1 or not np.issubdtype(dtype, np.integer):
        raise DatasetError(f"{label}: {key} is {dtype} {shape[:8]}; expected integer labels (N,) or (N, 1)")
    _image_count(shape, key, label)


def _flat_labels(labels):
    return labels[:, 0] if labels.ndim == 2 else labels


def _check_labels(name, labels, key, label):
    """Every label in 0..classes-1 (all of them, also those a limit leaves out)."""
    labels = _flat_labels(labels)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= NUM_CLASSES[name]:
        raise DatasetError(f"{label}: {key} holds labels {low}..{high}; expected 0..{NUM_CLASSES[name] - 1}")


def _cached_cifar10_from_jpeg(jpeg_path):
    """Decode the whole JPEG container once into the cache dir: (cached npz path, None). The name carries
    the container's SHA-256, so another container is never served a stale decode. When the cache cannot
    be written (read-only, a file in the way, a full disk) one warning says so and the decode is
    returned instead: (None, arrays)."""
    cache_dir = os.path.abspath(os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR))
    try:
        digest = file_sha256(jpeg_path)
    except OSError as error:
        raise DatasetError(f"{jpeg_path}: cannot be read ({error.strerror or error}); {JPEG_LAYOUT}") from None
    cache_path = os.path.join(cache_dir, f"cifar10-{digest[:16]}.npz")
    if os.path.isfile(cache_path):
        return cache_path, None
    decoded = _read_npz(jpeg_path, JPEG_KEYS, JPEG_LAYOUT, lambda container: _decode_container(jpeg_path, container))
    try:
        write_npz(cache_path, decoded, compressed=False)   # atomic: concurrent or killed runs never see half a file
    except OSError as error:
        print(f"warning: {CACHE_DIR_ENV} {cache_dir}: cannot cache the decoded {os.path.basename(jpeg_path)} "
              f"({error.strerror or error}: {error.filename}); using it from memory", file=sys.stderr, flush=True)
        return None, decoded
    return cache_path, None


def _decode_container(jpeg_path, container):
    """The container's splits decoded, every field checked (from the headers, then the labels) first."""
    decoded = {}
    for split in ("train", "test"):
        blob_shape, blob_dtype = container.headers[f"{split}_jpeg"][:2]
        label_shape, label_dtype = container.headers[f"y_{split}"][:2]
        offsets_shape, offsets_dtype = container.headers[f"{split}_offsets"][:2]
        _check_label_layout(label_shape, label_dtype, f"y_{split}", jpeg_path)
        num_images = label_shape[0]
        if (len(blob_shape) != 1 or blob_dtype != np.uint8 or blob_shape[0] > num_images * MAX_JPEG_BYTES_PER_IMAGE
                or tuple(offsets_shape) != (num_images + 1,) or not np.issubdtype(offsets_dtype, np.integer)):
            raise DatasetError(f"{jpeg_path}: {split}_offsets {offsets_dtype} {tuple(offsets_shape)[:8]} do not split "
                               f"{split}_jpeg ({blob_dtype} {tuple(blob_shape)[:8]}) into {num_images} images of at "
                               f"most {MAX_JPEG_BYTES_PER_IMAGE >> 10} KiB; {JPEG_LAYOUT}")
        labels = container.read(f"y_{split}")
        _check_labels("cifar10", labels, f"y_{split}", jpeg_path)
        decoded[f"x_{split}"] = _decode_jpegs(jpeg_path, split, container.read(f"{split}_jpeg"),
                                              container.read(f"{split}_offsets"), num_images)
        decoded[f"y_{split}"] = labels
    return decoded


def _decode_jpegs(jpeg_path, split, blob, offsets, num_images):
    """JPEG bytes ``blob[offsets[i]:offsets[i+1]]`` -> (N, 32, 32, 3) uint8, checked against the container."""
    from PIL import Image

    if offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) <= 0):
        raise DatasetError(f"{jpeg_path}: {split}_offsets {offsets.shape} do not split {split}_jpeg "
                           f"({blob.shape}) into {num_images} images; {JPEG_LAYOUT}")
    images = np.empty((num_images, 32, 32, 3), dtype=np.uint8)
    blob_bytes = memoryview(blob)
    for index in range(num_images):
        try:
            with Image.open(io.BytesIO(blob_bytes[offsets[index]:offsets[index + 1]])) as image:
                if image.size != (32, 32):   # from the header, before decoding the pixels
                    raise DatasetError(f"{jpeg_path}: {split} image {index} is {image.size[0]}x{image.size[1]} "
                                       "pixels; expected 32x32")
                pixels = np.asarray(image.convert("RGB"))
        except DatasetError:
            raise
        except Exception as error:  # PIL raises many types for a corrupt JPEG
            raise DatasetError(f"{jpeg_path}: {split} image {index} is no readable JPEG "
                               f"({type(error).__name__}: {str(error)[:100]})") from None
        images[index] = pixels
    return images
