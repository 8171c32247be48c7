"""Data path: standardization, npz validation, JPEG cache, per-epoch arrays, and the real datasets."""
import hashlib
import io
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

from data import (Dataset, DatasetError, augment_pad_flip_crop, clear_dataset_cache, epoch_arrays, epoch_order,
                  load_dataset, per_image_standardization, resolve_data_dir)
from data import datasets as datasets_module



@pytest.fixture(autouse=True)
def fresh_dataset_cache():
    """Each test sees the files it wrote, not a dataset cached by an earlier test."""
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def reference_standardization(images):
    """Straight from the tf.image.per_image_standardization docs, one image at a time, in float64."""
    result = []
    for image in np.asarray(images, dtype=np.float64):
        adjusted_stddev = max(image.std(), 1.0 / np.sqrt(image.size))
        result.append((image - image.mean()) / adjusted_stddev)
    return np.stack(result)


def keras_layout(name="mnist", num_train=6, num_test=4, seed=0):
    rng = np.random.default_rng(seed)
    image_shape = (28, 28) if name == "mnist" else (32, 32, 3)
    num_classes = 100 if name == "cifar100" else 10
    return {
        "x_train": rng.integers(0, 256, (num_train,) + image_shape, dtype=np.uint8),
        "y_train": rng.integers(0, num_classes, num_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (num_test,) + image_shape, dtype=np.uint8),
        "y_test": rng.integers(0, num_classes, num_test).astype(np.uint8),
    }


def write_npz(folder, file_name, arrays):
    np.savez(folder / file_name, **arrays)
    return folder


def write_jpeg_container(path, train_count=5):
    """A tiny cifar10_jpeg.npz in the layout of /work/shared/datasets; returns the source images."""
    from PIL import Image

    rng = np.random.default_rng(1)
    fields, originals = {}, {}
    for split, count in (("train", train_count), ("test", 3)):
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        encoded = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=100, subsampling=0)
            encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        fields[f"{split}_jpeg"] = np.concatenate(encoded)
        fields[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(blob) for blob in encoded])]).astype(np.int64)
        fields[f"y_{split}"] = rng.integers(0, 10, count).astype(np.uint8)
        originals[split] = images
    np.savez(path, **fields)
    return originals


def decode_jpeg_directly(container_path, split, index):
    from PIL import Image

    with np.load(container_path) as container:
        offsets = container[f"{split}_offsets"]
        blob = container[f"{split}_jpeg"][offsets[index]:offsets[index + 1]].tobytes()
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))


# --- per-image standardization ---------------------------------------------------------------

def test_standardization_matches_reference_including_flat_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    images[1] = 17.0                                         # std 0: divided by 1/sqrt(N), all zeros
    images[2] = 50.0 + 0.01 * rng.integers(0, 2, (8, 8, 3))  # std < 1/sqrt(N): the floor is what divides
    standardized = per_image_standardization(images)
    assert standardized.dtype == np.float32 and standardized.shape == images.shape
    np.testing.assert_allclose(standardized, reference_standardization(images), rtol=1e-4, atol=1e-4)
    assert not standardized[1].any()
    np.testing.assert_allclose(standardized[2], (images[2] - images[2].mean()) * np.sqrt(images[2].size), atol=1e-3)


def test_standardization_is_independent_of_chunking(monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    whole = per_image_standardization(images)
    monkeypatch.setattr(datasets_module, "STANDARDIZE_CHUNK", 3)
    np.testing.assert_array_equal(per_image_standardization(images), whole)


def test_standardization_equals_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    cifar_like = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    mnist_like = rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    mnist_like[0] = 0
    for images in (cifar_like, mnist_like):
        expected = tf.image.per_image_standardization(images).numpy()
        np.testing.assert_allclose(per_image_standardization(images), expected, rtol=1e-5, atol=1e-5)


# --- loading and validating npz files ----------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_load_keras_layout_npz(tmp_path, name):
    arrays = keras_layout(name)
    dataset = load_dataset(name, data_dir=write_npz(tmp_path, f"{name}.npz", arrays))
    assert isinstance(dataset, Dataset) and dataset.source == str(tmp_path / f"{name}.npz")
    assert dataset.input_shape == ((784,) if name == "mnist" else (32, 32, 3))
    assert dataset.num_classes == (100 if name == "cifar100" else 10)
    assert dataset.x_train.shape == (6,) + dataset.input_shape and dataset.x_train.dtype == np.float32
    assert dataset.y_test.dtype == np.int32
    np.testing.assert_array_equal(dataset.y_train, arrays["y_train"])
    expected = reference_standardization(arrays["x_train"]).reshape(dataset.x_train.shape)
    np.testing.assert_allclose(dataset.x_train, expected, rtol=1e-4, atol=1e-4)


def test_channel_axis_column_labels_and_limits(tmp_path):
    arrays = keras_layout("mnist")
    variant = dict(arrays, x_train=arrays["x_train"][..., None], y_train=arrays["y_train"][:, None].astype(np.int64))
    dataset = load_dataset("mnist", data_dir=write_npz(tmp_path, "mnist.npz", variant), train_limit=3, test_limit=99)
    assert dataset.x_train.shape == (3, 784) and dataset.y_train.shape == (3,) and len(dataset.x_test) == 4
    np.testing.assert_array_equal(dataset.x_train.reshape(-1, 28, 28), per_image_standardization(arrays["x_train"][:3]))
    np.testing.assert_array_equal(dataset.y_train, arrays["y_train"][:3])
    with pytest.raises(ValueError, match="train_limit"):
        load_dataset("mnist", data_dir=tmp_path, train_limit=0)


def test_loads_are_cached_and_read_only(tmp_path):
    data_dir = write_npz(tmp_path, "mnist.npz", keras_layout("mnist"))
    dataset = load_dataset("mnist", data_dir=str(data_dir))
    assert load_dataset("mnist", data_dir=data_dir) is dataset
    with pytest.raises(ValueError):
        dataset.x_train[0, 0] = 1.0


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SUPERMASK_DATA_DIR", raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == str(tmp_path)
    assert resolve_data_dir(tmp_path / "explicit") == str(tmp_path / "explicit")


MALFORMED = {
    "missing key": (lambda a: {k: v for k, v in a.items() if k != "y_test"}, "missing key 'y_test'"),
    "image shape": (lambda a: dict(a, x_train=a["x_train"][:, :27]), "x_train is uint8 (6, 27, 28)"),
    "image dtype": (lambda a: dict(a, x_test=a["x_test"].astype(np.float32)), "x_test is float32"),
    "label range": (lambda a: dict(a, y_train=np.full(6, 10)), "labels 10..10; expected 0..9"),
    "label shape": (lambda a: dict(a, y_test=np.zeros((4, 2), np.int64)), "y_test is int64 (4, 2)"),
    "float labels": (lambda a: dict(a, y_test=np.zeros(4)), "y_test is float64"),
    "length mismatch": (lambda a: dict(a, y_train=a["y_train"][:5]), "6 images but y_train has 5 labels"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_npz_names_file_and_problem(tmp_path, case):
    corrupt, expected_text = MALFORMED[case]
    data_dir = write_npz(tmp_path, "mnist.npz", corrupt(keras_layout("mnist")))
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=data_dir)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'mnist.npz'}: ") and expected_text in message and "\n" not in message


def test_missing_unreadable_or_unknown(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar100", data_dir=tmp_path)
    assert str(tmp_path / "cifar100.npz") in str(error.value) and "SUPERMASK_DATA_DIR" in str(error.value)
    with pytest.raises(DatasetError, match=r"^cifar10\.npz or cifar10_jpeg\.npz not found: .*cifar10_jpeg\.npz\)"):
        load_dataset("cifar10", data_dir=tmp_path)   # the JPEG file the project also reads is named too
    (tmp_path / "cifar100.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(tmp_path / 'cifar100.npz'))}: cannot be read as npz"):
        load_dataset("cifar100", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'"):
        load_dataset("svhn", data_dir=tmp_path)


def fake_keras(load_data, name="mnist"):
    module = types.ModuleType("keras")
    module.datasets = types.SimpleNamespace(**{name: types.SimpleNamespace(load_data=load_data)})
    return module


def test_keras_fallback_without_data_dir(monkeypatch):
    arrays = keras_layout("mnist")
    monkeypatch.delenv("SUPERMASK_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "keras", fake_keras(
        lambda: ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))))
    dataset = load_dataset("mnist")
    assert dataset.source == "keras.datasets" and dataset.x_test.shape == (4, 784)
    clear_dataset_cache()
    monkeypatch.setitem(sys.modules, "keras", fake_keras(lambda: open("/no/network")))
    with pytest.raises(DatasetError, match=r"^keras.datasets.mnist could not be loaded: pass --data-dir or set "
                                           r"SUPERMASK_DATA_DIR to a folder with mnist.npz \(FileNotFoundError: "):
        load_dataset("mnist")   # the advice first: a plan's note keeps a message's start
    monkeypatch.setitem(sys.modules, "keras", fake_keras(lambda: open("/no/network"), name="cifar10"))
    with pytest.raises(DatasetError, match="a folder with cifar10.npz or cifar10_jpeg.npz \\(FileNotFoundError"):
        load_dataset("cifar10")


@pytest.mark.slow
def test_data_path_needs_neither_tensorflow_nor_keras(tmp_path):
    """Runs in a fresh interpreter where importing tensorflow or keras fails, as on a JAX/torch-only install."""
    write_npz(tmp_path, "mnist.npz", keras_layout("mnist"))
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from data import load_dataset, epoch_arrays\n"
        f"dataset = load_dataset('mnist', data_dir={str(tmp_path)!r})\n"
        "epoch_arrays(dataset.x_train, dataset.y_train, seed=0, epoch=0, shuffle=True, augment=False)\n"
    )
    repo_root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], cwd=repo_root, check=True, timeout=60)


# --- CIFAR-10 from the JPEG container ----------------------------------------------------------

def test_jpeg_container_is_decoded_once_into_cache(tmp_path, monkeypatch):
    data_dir, cache_dir = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    originals = write_jpeg_container(data_dir / "cifar10_jpeg.npz")
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(cache_dir))
    dataset = load_dataset("cifar10", data_dir=data_dir, train_limit=2)
    digest = hashlib.sha256((data_dir / "cifar10_jpeg.npz").read_bytes()).hexdigest()[:16]
    assert dataset.source == str(cache_dir / f"cifar10-{digest}.npz") and len(dataset.x_train) == 2
    assert sorted(os.listdir(cache_dir)) == [f"cifar10-{digest}.npz"]
    with np.load(cache_dir / f"cifar10-{digest}.npz") as cached:
        assert cached["x_train"].shape == (5, 32, 32, 3) and cached["x_test"].shape == (3, 32, 32, 3)
        expected = decode_jpeg_directly(data_dir / "cifar10_jpeg.npz", "test", 2)
        np.testing.assert_array_equal(cached["x_test"][2], expected)
        assert np.abs(cached["x_train"].astype(int) - originals["train"]).mean() < 3  # lossy, but the same images
    clear_dataset_cache()
    with monkeypatch.context() as patched:
        patched.setattr(datasets_module, "_decode_jpegs", lambda *args: pytest.fail("cache was not reused"))
        assert len(load_dataset("cifar10", data_dir=data_dir).x_train) == 5
    # Another container under the same name is decoded afresh, never served the old decode.
    write_jpeg_container(data_dir / "cifar10_jpeg.npz", train_count=4)
    clear_dataset_cache()
    assert len(load_dataset("cifar10", data_dir=data_dir).x_train) == 4
    assert len(os.listdir(cache_dir)) == 2


def test_inconsistent_jpeg_container_and_keras_layout_precedence(tmp_path, monkeypatch):
    write_jpeg_container(tmp_path / "cifar10_jpeg.npz")
    with np.load(tmp_path / "cifar10_jpeg.npz") as container:
        np.savez(tmp_path / "cifar10_jpeg.npz", **dict(container, train_offsets=container["train_offsets"][:-1]))
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(tmp_path / 'cifar10_jpeg.npz'))}: train_offsets"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")
    write_npz(tmp_path, "cifar10.npz", keras_layout("cifar10"))  # a Keras-layout file is used as is
    assert load_dataset("cifar10", data_dir=tmp_path).source == str(tmp_path / "cifar10.npz")


# --- per-epoch arrays --------------------------------------------------------------------------

def test_epoch_order_is_deterministic_per_seed_and_epoch():
    order = epoch_order(1000, seed=3, epoch=5, shuffle=True)
    np.testing.assert_array_equal(order, epoch_order(1000, seed=3, epoch=5, shuffle=True))
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    assert not np.array_equal(order, epoch_order(1000, seed=3, epoch=6, shuffle=True))
    assert not np.array_equal(order, epoch_order(1000, seed=4, epoch=5, shuffle=True))
    np.testing.assert_array_equal(epoch_order(7, seed=3, epoch=5, shuffle=False), np.arange(7))
    with pytest.raises(ValueError, match="seed"):
        epoch_order(10, seed=-1, epoch=0, shuffle=True)


def pad_flip_crop_candidates(image, pad):
    """Every output the augmentation may produce for ``image``: pad, optional flip, any crop."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2))
    candidates = {}
    for flipped in (False, True):
        source = padded[:, ::-1] if flipped else padded
        for row in range(2 * pad + 1):
            for col in range(2 * pad + 1):
                candidates[(flipped, row, col)] = source[row:row + height, col:col + width]
    return candidates


def test_augmentation_outputs_are_padded_flipped_crops():
    images = (np.arange(300 * 6 * 5 * 2, dtype=np.float32) + 1).reshape(300, 6, 5, 2)  # unique non-zero pixels
    augmented = augment_pad_flip_crop(images, np.random.default_rng(0), pad=2)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    seen = set()
    for image, output in zip(images, augmented):
        matches = [key for key, crop in pad_flip_crop_candidates(image, 2).items() if np.array_equal(crop, output)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 2 * 5 * 5  # every flip and offset occurs
    np.testing.assert_array_equal(images.ravel()[:3], [1, 2, 3])  # input untouched


def labelled_images(num_examples=50):
    """Images whose pixels encode their index, so labels can be checked after shuffling."""
    x = np.broadcast_to(np.arange(num_examples, dtype=np.float32)[:, None, None, None] + 1,
                        (num_examples, 10, 10, 3)).copy()
    return x, np.arange(num_examples, dtype=np.int32)


def test_epoch_arrays_repeat_reshuffles_every_pass():
    x, y = labelled_images()
    epoch_x, epoch_y = epoch_arrays(x, y, seed=1, epoch=2, shuffle=True, augment=False, repeat=3)
    assert epoch_x.shape == (150, 10, 10, 3) and epoch_y.shape == (150,)
    np.testing.assert_array_equal(epoch_x[:, 0, 0, 0], epoch_y + 1)
    passes = epoch_y.reshape(3, 50)
    assert all(np.array_equal(np.sort(order), y) for order in passes)
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[1], passes[2])
    np.testing.assert_array_equal(passes[0], epoch_order(50, seed=1, epoch=2, shuffle=True))
    same_epoch = epoch_arrays(x, y, seed=1, epoch=2, shuffle=True, augment=False, repeat=3)
    np.testing.assert_array_equal(same_epoch[0], epoch_x)
    assert not np.array_equal(epoch_arrays(x, y, seed=1, epoch=3, shuffle=True, augment=False, repeat=3)[1], epoch_y)
    unshuffled_x, unshuffled_y = epoch_arrays(x, y, seed=0, epoch=0, shuffle=False, augment=False, repeat=2)
    np.testing.assert_array_equal(unshuffled_x, np.concatenate([x, x]))
    np.testing.assert_array_equal(unshuffled_y, np.concatenate([y, y]))


def test_epoch_arrays_augments_every_pass_independently():
    x, y = labelled_images()
    epoch_x, epoch_y = epoch_arrays(x, y, seed=5, epoch=1, shuffle=True, augment=True, repeat=2)
    rng = np.random.default_rng([5, 1])  # the documented recipe: per pass, permutation then augmentation
    for pass_x, pass_y in zip(np.split(epoch_x, 2), np.split(epoch_y, 2)):
        order = rng.permutation(50)
        np.testing.assert_array_equal(pass_y, order)
        np.testing.assert_array_equal(pass_x, augment_pad_flip_crop(x[order], rng))
    centre = epoch_x[:, 4, 4, 0]  # pixel (4, 4) of a 10x10 image survives any 4-px shift: labels still match
    np.testing.assert_array_equal(centre, epoch_y + 1)
    assert np.any(epoch_x == 0)  # some padding shows
    first, second = (pass_x[np.argsort(pass_y)] for pass_x, pass_y in zip(np.split(epoch_x, 2), np.split(epoch_y, 2)))
    assert not np.array_equal(first, second)  # same images, different crops


def test_epoch_arrays_rejects_mismatched_inputs():
    x, y = labelled_images()
    with pytest.raises(ValueError, match=r"x \(50, 10, 10, 3\) and y \(49,\)"):
        epoch_arrays(x, y[:49], seed=0, epoch=0, shuffle=True, augment=False)
    with pytest.raises(ValueError, match="repeat"):
        epoch_arrays(x, y, seed=0, epoch=0, shuffle=True, augment=False, repeat=0)


# --- the real datasets -------------------------------------------------------------------------

def test_real_mnist():
    dataset = load_dataset("mnist", data_dir=real_data_dir("mnist.npz"))
    assert dataset.x_train.shape == (60000, 784) and dataset.x_test.shape == (10000, 784)
    assert dataset.y_train.shape == (60000,) and dataset.y_test.shape == (10000,)
    assert set(np.unique(dataset.y_train)) == set(range(10)) == set(np.unique(dataset.y_test))
    assert np.abs(dataset.x_train.mean(axis=1)).max() < 1e-5
    np.testing.assert_allclose(dataset.x_test.std(axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_real_cifar10_through_jpeg_cache(tmp_path, monkeypatch):
    """The only test that decodes the full JPEG container (seconds to ~30 s, depending on the CPU)."""
    jpeg_path = real_data_dir("cifar10_jpeg.npz") / "cifar10_jpeg.npz"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cifar10_jpeg.npz").symlink_to(jpeg_path)  # guarantees the JPEG path, not a cifar10.npz
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_dataset("cifar10", data_dir=data_dir, train_limit=64, test_limit=32)
    assert dataset.x_train.shape == (64, 32, 32, 3) and dataset.x_test.shape == (32, 32, 32, 3)
    assert dataset.y_train.min() >= 0 and dataset.y_train.max() <= 9
    assert np.abs(dataset.x_train.mean(axis=(1, 2, 3))).max() < 1e-5
    assert Path(dataset.source).parent == tmp_path / "cache"
    with np.load(dataset.source) as cached:
        assert cached["x_train"].shape == (50000, 32, 32, 3) and cached["x_test"].shape == (10000, 32, 32, 3)
        np.testing.assert_array_equal(cached["x_train"][49999], decode_jpeg_directly(jpeg_path, "train", 49999))
        with np.load(jpeg_path) as container:
            np.testing.assert_array_equal(cached["y_test"], container["y_test"])


def test_a_missing_dataset_fails_wherever_a_data_folder_is_there(tmp_path, monkeypatch):
    """The real-data tests never turn into silent skips on a machine that has (or names) a data folder."""
    import conftest
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"\['nothing.npz'\] not found"):
        conftest.real_data_dir("nothing.npz")
    monkeypatch.delenv("SUPERMASK_DATA_DIR")
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    monkeypatch.setattr(conftest, "REPO_ROOT", str(tmp_path / "clone"))
    with pytest.raises(pytest.fail.Exception):
        conftest.real_data_dir("nothing.npz")
    monkeypatch.setattr(conftest, "REPO_ROOT", str(tmp_path / "elsewhere" / "clone"))
    with pytest.raises(pytest.skip.Exception, match="no data folder"):
        conftest.real_data_dir("nothing.npz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        conftest.real_data_dir("nothing.npz")
