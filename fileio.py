"""Every file the project writes, written atomically; JSON read in one way; the run-folder name rule.

A writer fills a temporary file next to the target and renames it over the target, so a reader
(a report, a resumed run, another cluster job) never sees half a file, and a crash leaves the
previous version in place. NumPy and the standard library only: no Keras, so that reports and
config validation import this without a deep-learning backend.
"""
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

RUN_FOLDER = re.compile(r"run_(0|[1-9][0-9]*)")


def run_folder_name(run_index):
    """'run_<i>': the folder of run ``i`` of an experiment."""
    return f"run_{int(run_index)}"


def run_folder_index(name):
    """The run index of a folder named ``run_<i>`` (no leading zeros: ``run_00`` is not run 0), else None."""
    match = RUN_FOLDER.fullmatch(name)
    return int(match.group(1)) if match else None


def umask_file_mode():
    """The mode open() gives a new file (0o666 less the umask); mkstemp's 0o600 would hide results
    from the other users of a shared cluster."""
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` (same suffixes, for writers that infer the format
    from the name) and rename it over ``path`` once the block succeeds; on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, umask_file_mode())
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def atomic_write_bytes(path, data):
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json_value(value):
    """NaN and infinities become null: strict JSON readers reject Python's bare ``NaN`` token."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(item) for item in value]
    return value


def write_json(path, payload):
    text = json.dumps(strict_json_value(payload), indent=1, sort_keys=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


class UnreadableFileError(ValueError):
    """A file that exists but cannot be read or parsed; ``brief`` says so in a few words."""

    def __init__(self, path, error):
        self.path, self.reason = Path(path), type(error).__name__
        self.brief = f"{self.path.name} unreadable ({self.reason})"
        super().__init__(f"{path}: unreadable ({self.reason}: {error})")


def read_json(path):
    """The parsed JSON of ``path``, or None when there is no such file; UnreadableFileError otherwise."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnreadableFileError(path, error) from None


def file_sha256(path):
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_npz(path, arrays, compressed=True):
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        (np.savez_compressed if compressed else np.savez)(stream, **arrays)


def save_weights_atomically(model, path):
    """A Keras model's variables; the temporary file keeps the .weights.h5 suffix Keras insists on."""
    with atomic_path(path) as temporary:
        model.save_weights(temporary, overwrite=True)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def folder_lock(directory):
    """Exclusive hold on a folder (flock on its .lock file) while a job reads and then writes a file
    that other jobs sharing the folder also write (an experiment's config.yaml and summary.json)."""
    handle = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock
