"""Result files of an experiment, all written atomically (``fileio.py``), and summary.json.

    results/<experiment>/config.yaml          resolved config
    results/<experiment>/summary.json         statistics over the finished runs
    results/<experiment>/run_<i>/run.json     status, seed, final metrics, versions (per session if resumed), wall time
    results/<experiment>/run_<i>/history.json per-epoch metrics (remaining_percent has epochs + 1 entries)
    results/<experiment>/run_<i>/masks.npz    final ternary masks, int8, one array per masked layer
    results/<experiment>/run_<i>/extra_state.npz   variables outside the masked layers (the ResNets' BN)
    results/<experiment>/run_<i>/tensorboard/ per-epoch scalars (--tensorboard)
    results/<experiment>/run_<i>/model.weights.h5   final model variables (for export)
    results/<experiment>/run_<i>/checkpoint.npz     end-of-epoch state while the run is unfinished
    results/<experiment>/.lock, .run_<i>.claim     the folder lock and run claims of concurrent jobs (fileio.py)
"""
from pathlib import Path

import numpy as np

from fileio import run_folder_index, run_folder_name, write_json
from training.run_record import FINAL_KEYS, RunRecord

HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "remaining_percent",
                "learning_rate", "epoch_seconds", "mask_counts")


def run_dir(out_root, experiment, run_index):
    return Path(out_root) / experiment / run_folder_name(run_index)


def run_folders(experiment_dir):
    """[(run index, folder)] of every run folder (run_<index>) of an experiment, by index: the one
    enumeration of run folders."""
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        return []
    found = [(run_folder_index(child.name), child) for child in experiment_dir.iterdir() if child.is_dir()]
    return sorted((index, child) for index, child in found if index is not None)


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
    """Recompute summary.json from every finished run under ``experiment_dir``; ``unfinished_runs`` lists
    the other run folders (failed, training, or killed with a checkpoint to resume)."""
    experiment_dir = Path(experiment_dir)
    finished, unfinished = [], []
    skipped = [f"{path.parent.name}: not a run folder (run_<index>, no leading zeros)"
               for path in sorted(experiment_dir.glob("run_*/run.json")) if run_folder_index(path.parent.name) is None]
    for _, folder in run_folders(experiment_dir):
        name = folder.name
        if not (folder / "run.json").exists():   # training, or killed: its checkpoint resumes it
            unfinished.append((name, None))
            continue
        try:
            record = RunRecord.read(folder)   # None: removed since listed
        except ValueError as error:
            skipped.append(f"{name}: {str(error)[:200]}")
            continue
        (finished if record and record.finished else unfinished).append((name, record))
    summary = {
        "experiment": experiment_dir.name,
        "finished_runs": [name for name, _ in finished],
        "unfinished_runs": [name for name, _ in unfinished],
        "skipped": skipped,
        **{key: statistics([record.final[key] for _, record in finished]) for key in FINAL_KEYS},
    }
    write_json(experiment_dir / "summary.json", summary)
    return summary
