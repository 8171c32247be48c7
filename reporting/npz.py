""".npz files from outside (masks.npz, extra_state.npz, compact exports), read header first.

An .npz is a zip of .npy members, each naming its dtype and shape in a small header. A 300 KB
compressed member can declare gigabytes of zeros, and a damaged one fails inside zlib; so the
reader looks at every member's header before any data is read, the caller says which shape and
dtype it expects (or how many bytes it will take), and every failure is one ValueError naming
the file and the entry.
"""
import zipfile
import zlib

import numpy as np

import fileio

# No file this project writes comes near: Conv8's masks are 5.3 MB, a float32 compact layer 21 MB.
MAX_ENTRY_BYTES = 256 << 20
# zlib.error: damaged compressed data; BadZipFile: a member whose CRC does not match
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class CheckedNpzReader:
    """``with CheckedNpzReader(path) as npz: npz.headers[name] -> (shape, dtype); npz.read(name, shape, dtype)``:
    fileio.NpzReader with the checks and the one-line errors that name the file and the entry."""

    def __init__(self, path):
        self.path = path
        try:
            self._archive = fileio.NpzReader(path)
        except _READ_ERRORS as error:
            raise ValueError(f"{path}: not a readable .npz file ({_reason(error)})") from None
        self.headers = {name: (tuple(shape), dtype) for name, (shape, dtype, _) in self._archive.headers.items()}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._archive.close()

    def read(self, name, shape=None, dtype=None, max_bytes=MAX_ENTRY_BYTES):
        """The array ``name`` once its header shows ``shape`` / ``dtype`` (None: any) within ``max_bytes``."""
        if name not in self.headers:
            raise ValueError(f"{self.path}: no entry {name!r}")
        stored_shape, stored_dtype = self.headers[name]
        if shape is not None and stored_shape != tuple(shape):
            raise ValueError(f"{self.path}: entry {name!r} has shape {stored_shape}, expected {tuple(shape)}")
        if dtype is not None and stored_dtype != np.dtype(dtype):
            raise ValueError(f"{self.path}: entry {name!r} is {stored_dtype}, expected {np.dtype(dtype)}")
        size = self._archive.nbytes(name)
        if size > max_bytes:
            raise ValueError(f"{self.path}: entry {name!r} declares {stored_shape} {stored_dtype} "
                             f"({size:,} bytes), more than the {max_bytes:,} this reader takes")
        try:
            return self._archive.read(name)
        except _READ_ERRORS as error:
            raise ValueError(f"{self.path}: entry {name!r}: damaged data ({_reason(error)})") from None


def _reason(error):
    return f"{type(error).__name__}: {error}"[:120] if str(error) else type(error).__name__


def read_npz(path, shapes=None, dtype=None, max_bytes=MAX_ENTRY_BYTES):
    """{name: array} of every entry (``shapes``: {name: shape} the file must hold exactly, else any)."""
    with CheckedNpzReader(path) as npz:
        if shapes is not None and sorted(npz.headers) != sorted(shapes):
            missing, extra = sorted(set(shapes) - set(npz.headers)), sorted(set(npz.headers) - set(shapes))
            raise ValueError(f"{path}: entries do not match the model"
                             + (f"; missing {', '.join(missing[:3])}" if missing else "")
                             + (f"; unexpected {', '.join(extra[:3])}" if extra else ""))
        return {name: npz.read(name, shapes and shapes[name], dtype, max_bytes) for name in npz.headers}
