"""Hostile files that cost memory, nesting or time (issue 27, causes 1, 4, 9 and 13): every reader checks
what a file declares (size, nesting, .npy headers, types) before it trusts or loads it. Each test builds
its hostile input itself; "peak" is the most memory NumPy and Python allocated meanwhile (tracemalloc)."""
import contextlib
import io
import os
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_data import keras_layout, write_jpeg_container

from data import DatasetError, clear_dataset_cache, load_dataset
from data import datasets as datasets_module
from fileio import MAX_JSON_BYTES, UnreadableFileError, read_json
from training.run_record import RunRecord
from training.run_state import DamagedState, check_checkpoint, checkpoint_bytes, read_checkpoint

MB = 1 << 20
DEEP_JSON = "[" * 100_000 + "]" * 100_000   # 200 KB


@pytest.fixture(autouse=True)
def fresh_dataset_cache():
    clear_dataset_cache()
    yield
    clear_dataset_cache()


def peak_bytes(function, *args, **kwargs):
    """(result or raised exception, the peak of traced allocations while ``function`` ran)."""
    tracemalloc.start()
    try:
        try:
            result = function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - the caller checks what was raised
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def npz_with_declared(path, members, mode="w"):
    """An .npz whose members are {name: (shape, dtype, data bytes or None = zeros for the whole shape)}:
    zeros are streamed into a deflated member, so a file of a few hundred KB declares hundreds of MB."""
    with zipfile.ZipFile(path, mode, compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, (shape, dtype, data) in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                              "fortran_order": False, "shape": shape})
                if data is not None:
                    member.write(data)
                    continue
                left, chunk = int(np.prod(shape)) * np.dtype(dtype).itemsize, bytes(8 * MB)
                while left > 0:
                    member.write(chunk[:left])
                    left -= len(chunk)
    return path


# Cause 1: deeply nested JSON is an unreadable file, named, never a RecursionError.

def test_deeply_nested_json_is_one_line_error_naming_the_file(tmp_path):
    (tmp_path / "run.json").write_text(DEEP_JSON)
    with pytest.raises(UnreadableFileError, match=r"run\.json: unreadable \(ValueError: nested too deeply\)"):
        read_json(tmp_path / "run.json")
    assert RunRecord.read_finished(tmp_path) is None   # a run still to train; the trainer sets the file aside


def test_deeply_nested_checkpoint_state_is_damaged(tmp_path):
    state = np.frombuffer(DEEP_JSON.encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, __state__=state)
    with pytest.raises(DamagedState, match="run state is not JSON"):
        read_checkpoint(io.BytesIO(buffer.getvalue()))


# Cause 4: small files that declare gigabytes are refused from their headers, or read only as far as needed.

def test_checkpoint_with_a_huge_extra_entry_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(checkpoint_bytes({"model/w": np.zeros(3, np.float32)}, {"epochs": 1, "history": {}}))
    npz_with_declared(path, {"model/extra": ((256 * MB,), "uint8", None)}, mode="a")
    assert path.stat().st_size < 2 * MB
    raised, peak = peak_bytes(read_checkpoint, path, {"model/w": ((3,), "float32")})
    assert isinstance(raised, DamagedState) and "holds unknown variable 'model/extra'" in str(raised)
    assert peak < 32 * MB, f"read {peak / MB:.0f} MB of a 256 MB entry it refuses"


def test_json_larger_than_the_bound_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "run.json"
    with open(path, "wb") as sparse:
        sparse.truncate(MAX_JSON_BYTES + 1)
    raised, peak = peak_bytes(read_json, path)
    assert isinstance(raised, UnreadableFileError) and f"larger than {MAX_JSON_BYTES >> 20} MiB" in str(raised)
    assert str(path) in str(raised) and peak < 1 * MB, f"read {peak / MB:.0f} MB of a file it refuses"


def test_mnist_declaring_millions_of_images_is_refused_from_its_header(tmp_path):
    arrays = keras_layout("mnist")
    npz_with_declared(tmp_path / "mnist.npz", {
        "x_train": ((3_000_000, 28, 28), "uint8", b""), "y_train": ((3_000_000,), "uint8", b""),
        **{key: (arrays[key].shape, arrays[key].dtype, arrays[key].tobytes()) for key in ("x_test", "y_test")}})
    with pytest.raises(DatasetError, match=r"mnist\.npz: x_train declares shape \(3000000, 28, 28\); expected at most "
                                           r"1,000,000"):
        load_dataset("mnist", data_dir=tmp_path, train_limit=2000)


def test_train_limit_reads_only_the_images_it_keeps(tmp_path):
    count = 400_000   # 314 MB of images declared in a file of about 300 KB
    arrays = keras_layout("mnist")
    npz_with_declared(tmp_path / "mnist.npz", {
        "x_train": ((count, 28, 28), "uint8", None), "y_train": ((count,), "uint8", None),
        **{key: (arrays[key].shape, arrays[key].dtype, arrays[key].tobytes()) for key in ("x_test", "y_test")}})
    dataset, peak = peak_bytes(load_dataset, "mnist", data_dir=tmp_path, train_limit=2000)
    assert not isinstance(dataset, Exception), dataset
    assert dataset.x_train.shape == (2000, 784) and peak < 64 * MB, f"peak {peak / MB:.0f} MB"


# Cause 9: every field of the CIFAR-10 JPEG container is checked before anything is decoded or cached.

def corrupt_container(path, **changes):
    with np.load(path) as container:
        fields = dict(container)
    for key, change in changes.items():
        fields[key] = change(fields[key])
    np.savez(path, **fields)


def garbled_second_image(blob, offsets_path):
    with np.load(offsets_path) as container:
        start, end = container["train_offsets"][1:3]
    blob = blob.copy()
    blob[start + 2:end] = 7   # keeps the JPEG start marker, destroys the rest
    return blob


CONTAINER_CASES = {
    "corrupt JPEG": (lambda path: {"train_jpeg": lambda blob: garbled_second_image(blob, path)},
                     "train image 1 is no readable JPEG"),
    "0-d labels": (lambda path: {"y_train": lambda labels: np.int64(3)}, "y_train is int64 ()"),
    "float offsets": (lambda path: {"train_offsets": lambda offsets: offsets.astype(np.float64)},
                      "train_offsets float64 (6,) do not split train_jpeg"),
    "negative labels": (lambda path: {"y_test": lambda labels: labels.astype(np.int64) - 10},
                        "y_test holds labels -"),
}


@pytest.mark.parametrize("case", sorted(CONTAINER_CASES))
def test_bad_jpeg_container_is_named_and_nothing_is_cached(tmp_path, monkeypatch, case):
    container = tmp_path / "cifar10_jpeg.npz"
    write_jpeg_container(container)
    changes, expected = CONTAINER_CASES[case]
    corrupt_container(container, **changes(container))
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"{container}: ") and expected in message and "\n" not in message, message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("case", ["a file in the way", "read-only"])
def test_unwritable_cache_dir_warns_once_and_decodes_in_memory(tmp_path, monkeypatch, capsys, case):
    write_jpeg_container(tmp_path / "cifar10_jpeg.npz")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    monkeypatch.setenv("SUPERMASK_CACHE_DIR", str(blocker / "cache" if case == "a file in the way" else tmp_path))
    if case == "read-only":
        def read_only(path, arrays, compressed=True):
            raise OSError(30, "Read-only file system", str(path))
        monkeypatch.setattr(datasets_module, "write_npz", read_only)
    dataset = load_dataset("cifar10", data_dir=tmp_path, train_limit=2)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "SUPERMASK_CACHE_DIR" in warnings[0] and "using it from memory" in warnings[0]
    assert dataset.x_train.shape == (2, 32, 32, 3) and dataset.source == str(tmp_path / "cifar10_jpeg.npz")


# Cause 13: a checkpoint's history holds the right types, not only the right number of entries.

def checkpoint_state(**history_changes):
    history = {"train_loss": [0.5], "remaining_percent": [60.0, 55.0],
               "mask_counts": [{"dense": {"kept": 1, "hidden": 1, "inverted": 1}}] * 2}
    history.update(history_changes)
    return {"epochs": 1, "history": history}


@pytest.mark.parametrize("changes,key", [
    ({"remaining_percent": [60.0, "55"]}, "remaining_percent"),
    ({"remaining_percent": [60.0, True]}, "remaining_percent"),
    ({"mask_counts": [{}, {"dense": "3 kept"}]}, "mask_counts"),
    ({"mask_counts": [{}, {"dense": {"kept": "1", "hidden": 1, "inverted": 1}}]}, "mask_counts"),
    ({"mask_counts": [{}, ["dense"]]}, "mask_counts"),
])
def test_checkpoint_history_of_the_wrong_type_is_damaged(changes, key):
    keys = (("train_loss",), ("remaining_percent", "mask_counts"))
    with pytest.raises(DamagedState, match=f"history '{key}' holds a value of the wrong type"):
        check_checkpoint({}, checkpoint_state(**changes), {}, 2, 5, *keys)
    check_checkpoint({}, checkpoint_state(), {}, 2, 5, *keys)


@contextlib.contextmanager
def rescued_after(fifo, seconds):
    """Unblock a reader stuck on ``fifo`` after ``seconds`` (a writer opens and closes it), so that a
    regression fails the test instead of hanging it."""
    done = threading.Event()

    def rescue():
        if done.wait(seconds):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:   # ENXIO: no reader waiting (yet)
                time.sleep(0.05)

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_fifo_as_json_or_dataset_is_refused_at_once(tmp_path):
    """Not promised before: a FIFO blocked its reader forever; now every reader refuses it with one line."""
    for name, load, error_type, expected in (
            ("run.json", lambda: read_json(tmp_path / "run.json"), UnreadableFileError, "not a regular file"),
            ("mnist.npz", lambda: load_dataset("mnist", data_dir=tmp_path), DatasetError,
             "mnist.npz: cannot be read as npz (NotARegularFileError")):
        os.mkfifo(tmp_path / name)
        started = time.perf_counter()
        with rescued_after(tmp_path / name, 3), pytest.raises(error_type) as error:
            load()
        assert expected in str(error.value) and time.perf_counter() - started < 2
