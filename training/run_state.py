"""A run's own state on disk: the epoch checkpoint, and what to do with damaged files.

The checkpoint is ONE file, ``checkpoint.npz``: every model and optimizer variable keyed by
its Keras variable path, plus the run state (epochs done, history, callback states) as
UTF-8 JSON in the ``__state__`` array. It is written atomically, so a kill leaves either the
previous or the new epoch, never a mix. On resume it is cross-checked (epoch count against
the history, the config and the optimizer's step counter; every variable present with its
shape), and a file that fails any check is *damaged*: it is renamed to
``<name>.damaged-<UTC time>`` with one line saying why, and the run starts from scratch.

Keras-free (NumPy and the standard library), so ``train.py`` can use the damaged-file
policy before it imports Keras.
"""
import io
import json
import time
from pathlib import Path

import numpy as np

CHECKPOINT = "checkpoint.npz"
LEGACY_STATE = "checkpoint.json"  # the two-file checkpoint of earlier versions (positional keys)
FORMAT = "supermask-checkpoint/2"
STATE_KEY = "__state__"
# A run folder holds no hidden files but the temporaries of atomic writes (fileio.atomic_path:
# ``.<target>.<random><suffix>``; earlier versions ``.tmp-*``), so a hidden file at run start is
# what a killed write left.
STALE_PATTERN = ".*"


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
    path.rename(target)
    log(f"warning: {path}: {reason}; moved aside to {target.name}")
    return target


def remove_stale_temporaries(folder):
    """Delete what killed atomic writes left in ``folder``; returns the names removed."""
    removed = []
    for path in Path(folder).glob(STALE_PATTERN):
        if path.is_file():
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


def read_checkpoint(path):
    """(arrays, state) of a checkpoint file; DamagedState when it is not one."""
    arrays = _read_npz(path)
    return arrays, _pop_state(arrays)


def read_checkpoint_state(path):
    """Only the run state of a checkpoint file (cheap: the variables are not read)."""
    return _pop_state(_read_npz(path, only=(STATE_KEY,)))


def read_legacy_checkpoint(npz_path, json_path, model_paths, optimizer_paths):
    """The two-file checkpoint of earlier versions, converted to (arrays by path, state).

    Its variables are keyed by position; ``*_paths`` give today's order. Whether the two files
    belong to the same epoch is left to :func:`check_checkpoint` (the optimizer step counter).
    """
    positional = _read_npz(npz_path)
    try:
        legacy = json.loads(Path(json_path).read_text())
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedState(f"unreadable checkpoint.json ({type(error).__name__})") from None
    if not isinstance(legacy, dict) or not isinstance(legacy.get("history"), dict):
        raise DamagedState("checkpoint.json is not a run state")
    arrays = {}
    for prefix, paths in (("model", model_paths), ("optimizer", optimizer_paths)):
        keys = sorted(key for key in positional if key.startswith(prefix + "_"))
        if len(keys) != len(paths):
            raise DamagedState(f"checkpoint holds {len(keys)} {prefix} variables, the model has {len(paths)}")
        arrays.update(zip(paths, (positional[key] for key in keys)))
    history = legacy["history"]
    epochs = len(history.get("train_loss", ())) if isinstance(history.get("train_loss"), list) else -1
    return arrays, {"format": FORMAT, "epochs": epochs, "history": history,
                    "callbacks": {"plateau": legacy.get("plateau")}}


def check_checkpoint(arrays, state, variables, max_epochs, steps_per_epoch, per_epoch_keys, per_state_keys):
    """Raise DamagedState unless the checkpoint is consistent with itself and with this run.

    ``variables`` maps each variable path to its (shape, dtype); the entry ending in
    ``/iteration`` (the optimizer's step counter) must equal epochs x steps per epoch, which
    also proves that the arrays and the state were written for the same epoch.
    """
    epochs = state.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
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
        if not all(value is None or isinstance(value, (int, float)) for value in history[key]):
            raise DamagedState(f"checkpoint history {key!r} holds a non-number")
    missing = sorted(set(variables) - set(arrays))
    unknown = sorted(set(arrays) - set(variables))
    if missing or unknown:
        culprit = f"lacks variable {missing[0]!r}" if missing else f"holds unknown variable {unknown[0]!r}"
        raise DamagedState(f"checkpoint {culprit}")
    for path, (shape, dtype) in variables.items():
        if tuple(arrays[path].shape) != tuple(shape) or arrays[path].dtype != np.dtype(dtype):
            raise DamagedState(f"checkpoint variable {path!r} is {arrays[path].dtype}{list(arrays[path].shape)}, "
                               f"the model has {np.dtype(dtype)}{list(shape)}")
    for path in variables:
        if path.endswith("/iteration") and int(arrays[path]) != epochs * steps_per_epoch:
            raise DamagedState(f"checkpoint variables are from step {int(arrays[path])}, its state from "
                               f"epoch {epochs} (step {epochs * steps_per_epoch})")


def _read_npz(path, only=None):
    """The arrays of an .npz file (those named in ``only``, if given); any failure to read it
    (it is untrusted) is DamagedState."""
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            raise DamagedState("not an .npz archive")
        with stored:
            return {key: stored[key] for key in stored.files if only is None or key in only}
    except DamagedState:
        raise
    except Exception as error:  # noqa: BLE001 - truncated zips and bad headers raise many types
        raise DamagedState(f"unreadable checkpoint ({type(error).__name__}: {str(error)[:120]})") from None


def _pop_state(arrays):
    if STATE_KEY not in arrays:
        raise DamagedState("checkpoint without its run state")
    state = _decode_state(arrays.pop(STATE_KEY).tobytes())
    if state.get("format") != FORMAT:
        raise DamagedState(f"unknown checkpoint format {str(state.get('format'))[:60]!r}")
    return state


def _decode_state(raw):
    try:
        state = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise DamagedState("checkpoint run state is not JSON") from None
    if not isinstance(state, dict):
        raise DamagedState("checkpoint run state is not a mapping")
    return state
