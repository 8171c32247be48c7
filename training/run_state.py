"""A run's own state on disk: the epoch checkpoint, and what to do with damaged files.

The checkpoint is ONE file, ``checkpoint.npz``: every model and optimizer variable keyed by
its Keras variable path, plus the run state (epochs done, history, callback states) as
UTF-8 JSON in the ``__state__`` array. It is written atomically, so a kill leaves either the
previous or the new epoch, never a mix. On resume it is cross-checked (every variable present
with its shape and dtype, from the .npy headers before any array is read, so a file declaring
gigabytes costs nothing; epoch count against the history, the config and the optimizer's step
counter; history entries of the right types), and a file that fails any check is *damaged*: it is renamed to
``<name>.damaged-<UTC time>`` with one line saying why, and the run starts from scratch.

Keras-free (NumPy and the standard library), so ``train.py`` can use the damaged-file
policy before it imports Keras.
"""
import errno
import io
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from fileio import MAX_JSON_BYTES, NpzReader, atomic_path, is_atomic_temporary, parse_json

CHECKPOINT = "checkpoint.npz"
FORMAT = "supermask-checkpoint/2"
STATE_KEY = "__state__"


class DamagedState(ValueError):
    """A run-state file that cannot be trusted (message says why, without the path)."""


def set_aside(path, reason, log=print):
    """Rename a damaged file to ``<name>.damaged-<UTC time>`` and say so in one line."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    suffix = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged-{stamp}-{suffix}")
        suffix += 1
    try:
        path.rename(target)
    except OSError as error:
        raise type(error)(error.errno, f"cannot move this damaged file aside ({reason[:120]}): "
                          f"{error.strerror}", str(path)) from None
    log(f"warning: {path}: {reason}; moved aside to {target.name}")
    return target


def remove_stale_temporaries(folder):
    """Delete what killed atomic writes left in ``folder``; returns the names removed."""
    removed = []
    for path in Path(folder).glob(".*"):
        if path.is_file() and is_atomic_temporary(path.name):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return sorted(removed)


def checkpoint_bytes(arrays, state):
    """The checkpoint file's content: ``arrays`` (variable path -> array) and the JSON ``state``."""
    if STATE_KEY in arrays:
        raise ValueError(f"variable path {STATE_KEY!r} is reserved for the run state")
    text = json.dumps({"format": FORMAT, **state}, allow_nan=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{STATE_KEY: np.frombuffer(text.encode(), dtype=np.uint8)}, **arrays)
    return buffer.getvalue()


def read_checkpoint(path, variables=None):
    """(arrays, state) of a checkpoint file (a path or a binary file object); DamagedState when it is
    not one. With ``variables`` (variable path -> (shape, dtype)) its names, shapes and dtypes are
    checked against them before any variable is read."""
    def load(reader):
        state = _read_state(reader)
        names = [name for name in reader.headers if name != STATE_KEY]
        if variables is not None:
            check_variables({name: reader.headers[name][:2] for name in names}, variables)
        return {name: reader.read(name) for name in names}, state
    return _with_reader(path, load)


def read_checkpoint_state(path):
    """Only the run state of a checkpoint file (cheap: the variables are not read)."""
    return _with_reader(path, _read_state)


def epochs_done(run_folder):
    """Epochs an interrupted run has finished (its checkpoint's count): 0 without a readable checkpoint
    (a damaged one is set aside, and the run starts over, only when it trains)."""
    epochs = _readable_checkpoint_state(run_folder).get("epochs")
    return epochs if is_epoch_count(epochs) else 0


def checkpoint_history(run_folder):
    """The per-epoch history in an interrupted run's checkpoint: None without a readable one (a run still
    training has no history.json yet; this is what it has recorded so far)."""
    history = _readable_checkpoint_state(run_folder).get("history")
    return history if isinstance(history, dict) else None


def _readable_checkpoint_state(run_folder):
    """The run state of ``run_folder``'s checkpoint, {} when there is none or it cannot be read."""
    try:
        return read_checkpoint_state(Path(run_folder) / CHECKPOINT)
    except (OSError, DamagedState):
        return {}


def check_variables(stored, variables):
    """DamagedState unless ``stored`` (name -> (shape, dtype)) holds exactly ``variables``' names,
    each with its shape and dtype; an integer of another width passes (the optimizer's step counter is
    int64 on TensorFlow, int32 on JAX and torch), so a run resumes on another Keras backend."""
    missing = sorted(set(variables) - set(stored))
    unknown = sorted(set(stored) - set(variables))
    if missing or unknown:
        culprit = f"lacks variable {missing[0]!r}" if missing else f"holds unknown variable {unknown[0][:80]!r}"
        raise DamagedState(f"checkpoint {culprit}")
    for path, (shape, dtype) in variables.items():
        stored_shape, stored_dtype = stored[path]
        both_integer = np.issubdtype(stored_dtype, np.integer) and np.issubdtype(np.dtype(dtype), np.integer)
        if tuple(stored_shape) != tuple(shape) or (stored_dtype != np.dtype(dtype) and not both_integer):
            raise DamagedState(f"checkpoint variable {path!r} is {stored_dtype}{list(stored_shape)[:8]}, "
                               f"the model has {np.dtype(dtype)}{list(shape)}")


def is_epoch_count(value):
    """A checkpoint's finished-epoch count: a positive int (a JSON ``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def earlier_sessions(state):
    """The sessions a checkpoint's state records, each ``{from_epoch, versions}``: the epoch it started at and
    the libraries it trained with. A checkpoint of an older version (or an unreadable entry) records none, so
    its epochs count as one session from epoch 0 whose versions are unknown (None)."""
    sessions = state.get("sessions")
    if (isinstance(sessions, list) and sessions
            and all(isinstance(entry, dict) and isinstance(entry.get("from_epoch"), int) for entry in sessions)
            and sessions[0]["from_epoch"] == 0):
        return sessions
    return [{"from_epoch": 0, "versions": None}]


def resumed_sessions(sessions):
    """What run.json records of the sessions: all of them when the run was resumed (its backend or library
    versions may differ between sessions), None for a run trained in one go (its ``versions`` say it all)."""
    return sessions if len(sessions) > 1 else None


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_mask_counts(value):
    """One epoch's per-layer counts: {layer name: {kept, hidden, inverted: int >= 0}} ({} for baselines)."""
    return isinstance(value, dict) and all(
        isinstance(layer, str) and isinstance(counts, dict) and set(counts) == set(MASK_COUNT_KINDS)
        and all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts.values())
        for layer, counts in value.items())


MASK_COUNT_KINDS = ("kept", "hidden", "inverted")
# What each entry of a per-state history key must be; per-epoch keys hold numbers or None.
STATE_ENTRY_CHECKS = {"remaining_percent": lambda value: is_number(value) and math.isfinite(value),
                      "mask_counts": is_mask_counts}


def check_checkpoint(arrays, state, variables, max_epochs, steps_per_epoch, per_epoch_keys, per_state_keys):
    """Raise DamagedState unless the checkpoint is consistent with itself and with this run.

    ``variables`` maps each variable path to its (shape, dtype) (the readers have checked the arrays
    against it); the entry ending in ``/iteration`` (the optimizer's step counter) must equal
    epochs x steps per epoch, which also proves that the arrays and the state were written for the same epoch.
    """
    epochs = state.get("epochs")
    if not is_epoch_count(epochs):
        raise DamagedState(f"checkpoint claims {str(epochs)[:30]} epochs")
    if epochs > max_epochs:
        raise DamagedState(f"checkpoint claims {epochs} epochs, the config trains {max_epochs}")
    history = state.get("history")
    if not isinstance(history, dict):
        raise DamagedState("checkpoint without a history")
    for keys, expected in ((per_epoch_keys, epochs), (per_state_keys, epochs + 1)):
        for key in keys:
            if not isinstance(history.get(key), list) or len(history[key]) != expected:
                raise DamagedState(f"checkpoint history {key!r} does not have {expected} entries "
                                   f"for its {epochs} epochs")
    for key in per_epoch_keys:
        if not all(value is None or is_number(value) for value in history[key]):
            raise DamagedState(f"checkpoint history {key!r} holds a non-number")
    for key in per_state_keys:
        valid = STATE_ENTRY_CHECKS.get(key, lambda value: True)
        if not all(valid(value) for value in history[key]):
            raise DamagedState(f"checkpoint history {key!r} holds a value of the wrong type")
    for path in variables:
        if path.endswith("/iteration") and int(arrays[path]) != epochs * steps_per_epoch:
            raise DamagedState(f"checkpoint variables are from step {int(arrays[path])}, its state from "
                               f"epoch {epochs} (step {epochs * steps_per_epoch})")


def _with_reader(path, use):
    """``use(reader)`` on the checkpoint's NpzReader; any failure to read it (it is untrusted) is DamagedState."""
    try:
        with NpzReader(path) as reader:
            return use(reader)
    except DamagedState:
        raise
    except Exception as error:  # noqa: BLE001 - truncated zips and bad headers raise many types
        raise DamagedState(f"unreadable checkpoint ({type(error).__name__}: {str(error)[:120]})") from None


def _read_state(reader):
    if STATE_KEY not in reader.headers:
        raise DamagedState("checkpoint without its run state")
    shape, dtype, _ = reader.headers[STATE_KEY]
    if dtype != np.uint8 or len(shape) != 1 or reader.nbytes(STATE_KEY) > MAX_JSON_BYTES:
        raise DamagedState(f"checkpoint run state is {dtype}{list(shape)[:8]}, not JSON text of at most "
                           f"{MAX_JSON_BYTES >> 20} MiB")
    state = _decode_state(reader.read(STATE_KEY).tobytes())
    if state.get("format") != FORMAT:
        raise DamagedState(f"unknown checkpoint format {str(state.get('format'))[:60]!r}")
    return state


def _decode_state(raw):
    try:
        state = parse_json(raw.decode())
    except ValueError:   # UnicodeDecodeError, JSONDecodeError, nesting
        raise DamagedState("checkpoint run state is not JSON") from None
    if not isinstance(state, dict):
        raise DamagedState("checkpoint run state is not a mapping")
    return state


def save_weights_atomically(model, path):
    """A Keras model's variables; the temporary file keeps the .weights.h5 suffix Keras insists on. A disk
    without room for them is refused before HDF5 starts: HDF5 failing mid-write on a full disk left an open
    file that crashed the process at exit."""
    optimizer = getattr(model, "optimizer", None)   # Keras saves its slots too
    variables = [*model.variables, *(optimizer.variables if optimizer is not None else ())]
    needed = sum(math.prod(variable.shape) * np.dtype(variable.dtype).itemsize for variable in variables)
    needed += 65536 + 4096 * len(variables)   # HDF5's own structures: about 2 KB per variable measured
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else needed
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (about {needed / 1e6:.1f} MB needed, "
                                    f"{free / 1e6:.1f} MB free)", str(path))
    with atomic_path(path) as temporary:
        model.save_weights(temporary, overwrite=True)
