"""Every file the project writes, written atomically; JSON read in one way; the run-folder name rule.

A writer fills a temporary file next to the target and renames it over the target, so a reader
(a report, a resumed run, another cluster job) never sees half a file, and a crash leaves the
previous version in place. NumPy and the standard library only: no Keras, so that reports and
config validation import this without a deep-learning backend.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

RUN_FOLDER = re.compile(r"run_(0|[1-9][0-9]*)")
# The largest JSON file a reader loads: the project's largest (a long ResNet110 history.json) are a few MB.
MAX_JSON_BYTES = 64 << 20


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


class NotAFolderError(NotADirectoryError):
    """A file (or other non-folder) stands where a folder must be."""

    def __init__(self, path):
        super().__init__(errno.ENOTDIR, "not a folder (a file is in the way)", str(path))


def make_folder(path):
    """``mkdir -p path``; a file in the way (at ``path`` or above it) is a NotAFolderError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((parent for parent in (path, *path.parents) if parent.exists() and not parent.is_dir()), path)
        raise NotAFolderError(blocker) from None
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` (same suffixes, for writers that infer the format
    from the name) and rename it over ``path`` once the block succeeds; on failure it is removed.

    An OSError (full disk, read-only folder, a folder where the file goes) names ``path``, not the
    temporary, so the one line a user sees says which file could not be written."""
    path = Path(path)
    temporary = None
    try:
        make_folder(path.parent)
        suffix = "".join(path.suffixes) or ".tmp"
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(handle)
        yield Path(temporary)
        os.chmod(temporary, umask_file_mode())
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except NotAFolderError:
        raise
    except OSError as error:
        reason = " ".join((error.strerror or str(error)).split())   # HDF5's messages span lines
        raise type(error)(error.errno, reason, str(path)) from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def _sync_folder(folder):
    """Make a rename in ``folder`` durable (a power loss could otherwise undo it); a file system that
    cannot sync folders is left as it is."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def is_atomic_temporary(name):
    """Whether a file ``name`` is what a killed ``atomic_path`` write left: ``.<target>.<random><target's
    suffixes>`` (earlier versions: ``.tmp-*``). Other hidden files (a cluster's ``.nfs*``) are not."""
    if name.startswith(".tmp-"):
        return True
    stem = name[1:] if name.startswith(".") else ""
    for index, character in enumerate(stem):
        if character != "." or not index:
            continue
        target, rest = stem[:index], stem[index + 1:]
        random_part = re.match(r"[a-z0-9_]+", rest)
        suffix = "".join(Path(target).suffixes) or ".tmp"
        if random_part and rest[random_part.end():] == suffix:
            return True
    return False


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
        detail = error.strerror if isinstance(error, OSError) and error.strerror else error
        super().__init__(f"{path}: unreadable ({self.reason}: {detail})")


class NotARegularFileError(OSError):
    """A FIFO, socket or device where a file is expected: reading it could block forever or never end."""

    def __init__(self, path):
        super().__init__(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))


def open_regular(path):
    """``open(path, "rb")`` for regular files only: a FIFO is refused at once (O_NONBLOCK), never waited on;
    a directory is an IsADirectoryError."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(handle).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(path)
        os.set_blocking(handle, True)
        return os.fdopen(handle, "rb")
    except BaseException:
        os.close(handle)
        raise


def read_bounded(path, limit):
    """The bytes of regular file ``path``; a ValueError when it holds more than ``limit`` bytes (refused from
    its size before any byte is read; a file that grows while it is read is read no further than the limit)."""
    with open_regular(path) as stream:
        if os.fstat(stream.fileno()).st_size > limit:
            raise ValueError(f"larger than {limit >> 20} MiB")
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit >> 20} MiB")
    return data


def parse_json(data):
    """The value of JSON text or bytes; a ValueError (never a RecursionError) for anything else."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path):
    """The parsed JSON of ``path``, or None when there is no such file; UnreadableFileError otherwise
    (also for files over MAX_JSON_BYTES, nested too deeply, not regular files, or holding a bare ``null``,
    which no file of this project is and which would otherwise read as a missing file)."""
    try:
        value = parse_json(read_bounded(path, MAX_JSON_BYTES))
    except (FileNotFoundError, NotADirectoryError):   # NotADirectoryError: a file where a folder of the path is
        return None
    except (OSError, ValueError) as error:   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UnreadableFileError(path, error) from None
    if value is None:
        raise UnreadableFileError(path, ValueError("holds JSON null, not a document"))
    return value


def file_sha256(path):
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open_regular(path) as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NpzReader:
    """An .npz archive read member by member: every member's shape and dtype come from its .npy header
    before any data is read, so a caller can refuse a member of the wrong name or size, or read only
    its first rows, without the archive's declared sizes costing memory. Any failure is an OSError
    or ValueError (zipfile's errors included); object arrays are refused (no pickles)."""

    def __init__(self, source):
        """``source``: a path, or a binary file object positioned at the archive's start."""
        self._stream = source if hasattr(source, "read") else open_regular(source)
        try:
            self._archive = zipfile.ZipFile(self._stream)
            self.headers = {}
            for info in self._archive.infolist():
                name = info.filename.removesuffix(".npy")
                if name == info.filename or name in self.headers:
                    raise ValueError(f"member {info.filename[:60]!r} is not one .npy array")
                with self._archive.open(info) as member:
                    self.headers[name] = self._header(member)
        except zipfile.BadZipFile as error:
            self.close()
            raise ValueError(f"not an .npz archive ({error})") from None
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _header(member):
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(member)
        if dtype.hasobject:
            raise ValueError("an object array (pickled Python objects are not read)")
        return shape, dtype, fortran_order

    def nbytes(self, name, rows=None):
        shape, dtype, _ = self.headers[name]
        if rows is not None and shape:
            shape = (min(rows, shape[0]),) + shape[1:]
        return math.prod(shape) * dtype.itemsize

    def read(self, name, rows=None):
        """Member ``name`` (only its first ``rows`` along axis 0, when given) as a writable array."""
        shape, dtype, fortran_order = self.headers[name]
        if rows is not None and shape and not fortran_order:
            shape = (min(rows, shape[0]),) + shape[1:]
        with self._archive.open(f"{name}.npy") as member:
            self._header(member)
            buffer = bytearray(math.prod(shape) * dtype.itemsize)
            view, filled = memoryview(buffer), 0
            while filled < len(buffer):
                count = member.readinto(view[filled:])
                if not count:
                    raise ValueError(f"member {name!r} is truncated")
                filled += count
        array = np.frombuffer(buffer, dtype=dtype)
        if fortran_order:
            array = array.reshape(shape[::-1]).transpose()
            return array[:rows] if rows is not None else array
        return array.reshape(shape)

    def close(self):
        if getattr(self, "_archive", None) is not None:
            self._archive.close()
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_npz(path, arrays, compressed=True):
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        (np.savez_compressed if compressed else np.savez)(stream, **arrays)


LOCK_FILE = ".lock"
LOCK_WAIT_SECONDS = 600   # default bound on waiting for another job's folder lock ($SUPERMASK_LOCK_WAIT)


class LockError(RuntimeError):
    """A folder or run held by another job for too long, or a bad $SUPERMASK_LOCK_WAIT (one line)."""


def lock_wait_seconds():
    """How long folder_lock waits for another job: $SUPERMASK_LOCK_WAIT seconds, else LOCK_WAIT_SECONDS."""
    text = os.environ.get("SUPERMASK_LOCK_WAIT", "").strip()
    if not text:
        return LOCK_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise LockError(f"SUPERMASK_LOCK_WAIT: expected a number of seconds >= 0, got {text[:40]!r}")
    return seconds


def _holder(handle):
    """Who holds a lock file, as its holder wrote it ("pid N on HOST"), for messages."""
    text = os.pread(handle, 200, 0).decode("utf-8", "replace").strip()
    return text or "another process"


def _mark_holder(handle):
    """Write "pid N on HOST" into a lock file just taken; the lock does not depend on it (best effort)."""
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:   # a full disk must not stop the job that holds the lock
        pass


@contextlib.contextmanager
def folder_lock(directory):
    """Exclusive hold on a folder (flock on its .lock file) while a job reads and then writes a file
    that other jobs sharing the folder also write (an experiment's config.yaml and summary.json).
    Held by another job, it says whom it waits for (once) and gives up with a LockError after
    lock_wait_seconds(); a holder that dies releases it (the kernel drops its flock)."""
    path = os.path.join(directory, LOCK_FILE)
    wait = lock_wait_seconds()
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline, said = time.monotonic() + wait, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(f"{path}: held by {_holder(handle)} for more than {wait:g} s; let that job "
                                    f"finish or stop it, or wait longer ($SUPERMASK_LOCK_WAIT seconds)") from None
                if not said:
                    print(f"waiting for {path}, held by {_holder(handle)} (at most {wait:g} s)",
                          file=sys.stderr, flush=True)
                    said = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        _mark_holder(handle)
        yield
    finally:
        os.close(handle)  # releases the lock


def claim_path(experiment_dir, run_index):
    return Path(experiment_dir) / f".{run_folder_name(run_index)}.claim"



@contextlib.contextmanager
def run_claim(experiment_dir, run_index):
    """Exclusive claim on one run while a job trains it: a second job on the same run stops at once with a
    LockError naming the holder, instead of training the run twice side by side. The claim is a hidden
    file beside the run folders (``.run_<i>.claim``), which readers of run folders never look at."""
    path = claim_path(experiment_dir, run_index)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(f"{Path(experiment_dir) / run_folder_name(run_index)}: already being trained by "
                            f"{_holder(handle)}; the same command skips or resumes it once that job ends") from None
        _mark_holder(handle)
        yield
    finally:
        os.close(handle)
