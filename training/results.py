"""Result files of an experiment, all written atomically (temporary file + rename).

    results/<experiment>/config.yaml          resolved config
    results/<experiment>/summary.json         statistics over the finished runs
    results/<experiment>/run_<i>/run.json     status, seed, final metrics, versions, wall time
    results/<experiment>/run_<i>/history.json per-epoch metrics (remaining_percent has epochs + 1 entries)
    results/<experiment>/run_<i>/masks.npz    final ternary masks, int8, one array per masked layer
    results/<experiment>/run_<i>/model.weights.h5   final model variables (for export)
    results/<experiment>/run_<i>/checkpoint.npz     end-of-epoch state while the run is unfinished
"""
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from masking.init_files import atomic_write_bytes, umask_file_mode

RUN_FOLDER = re.compile(r"run_(0|[1-9][0-9]*)")
HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "remaining_percent",
                "learning_rate", "epoch_seconds", "mask_counts")


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
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: corrupt JSON ({error})") from None


def write_npz(path, arrays, compressed=True):
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def save_weights_atomically(model, path):
    """Keras needs the .weights.h5 suffix, so the temporary file keeps it."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".weights.h5")
    os.close(handle)
    try:
        model.save_weights(temporary, overwrite=True)
        os.chmod(temporary, umask_file_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def run_dir(out_root, experiment, run_index):
    return Path(out_root) / experiment / f"run_{run_index}"


def empty_history():
    return {key: [] for key in HISTORY_KEYS}


def statistics(values):
    """n, mean, sample std (ddof=1, 0 for one value), min, max, 5 %/95 % quantiles; None without values.

    ``None`` entries (unreadable metrics) are left out."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    return {"n": int(values.size), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()),
            "q05": float(np.quantile(values, 0.05)), "q95": float(np.quantile(values, 0.95))}


def summarize_experiment(experiment_dir):
    """Recompute summary.json from every finished run under ``experiment_dir``."""
    experiment_dir = Path(experiment_dir)
    finished, unfinished, skipped = [], [], []
    for path in sorted(experiment_dir.glob("run_*/run.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        name = path.parent.name
        if not RUN_FOLDER.fullmatch(name):
            skipped.append(f"{name}: not a run folder (run_<index>, no leading zeros)")
            continue
        info, problem = _read_run_record(path)
        if problem:
            skipped.append(f"{name}: {problem}")
            continue
        (finished if info and info.get("status") == "finished" else unfinished).append((name, info))
    accuracy = [info["final"]["test_accuracy"] for _, info in finished]
    remaining = [info["final"]["remaining_percent"] for _, info in finished]
    summary = {
        "experiment": experiment_dir.name,
        "finished_runs": [name for name, _ in finished],
        "unfinished_runs": [name for name, _ in unfinished],
        "skipped": skipped,
        "test_accuracy": statistics(accuracy),
        "remaining_percent": statistics(remaining),
        "remaining_count": statistics([info["final"]["remaining_count"] for _, info in finished]),
    }
    write_json(experiment_dir / "summary.json", summary)
    return summary


def _read_run_record(path):
    """(run.json's content, None), or (None, why it cannot be counted in a summary)."""
    try:
        info = read_json(path)
    except ValueError as error:
        return None, str(error)[:200]
    if info is None:  # removed since the folder was listed: a run that has not started
        return None, None
    if not isinstance(info, dict):
        return None, "run.json is not a run record"
    if info.get("status") == "finished":
        final = info.get("final")
        if not isinstance(final, dict) or not all(
                isinstance(final.get(key), (int, float)) and is_finite(final[key])
                for key in ("test_accuracy", "remaining_percent", "remaining_count")):
            return None, "run.json is not a run record (finished without finite final metrics)"
    return info, None


def is_finite(value):
    return value is not None and math.isfinite(value)
