"""An experiment's results folder, ``<out>/<experiment>/``: claimed for one config (its config.yaml,
checked and written under the folder lock) and summarized after each run. Keras-free, so a command
line can check its input and claim its folders before the backend loads."""
import os
import tempfile
from pathlib import Path

from fileio import atomic_write_text, folder_lock, run_folder_name
from training.config import ExperimentConfig, config_to_yaml, read_yaml_mapping, saved_config
from training.results import run_folders, summarize_experiment
from training.run_record import RunRecord
from training.run_state import CHECKPOINT, epochs_done
from training.schema import ConfigError, shown, to_dict, without_keys_that_keep_results


def check_results_folder(config, out_root):
    """Check, leaving nothing behind, that ``<out>/<experiment>/`` can take this config's runs (e.g. for a
    plan printed before training); ConfigError names the culprit. Writability is probed by making and
    removing a folder where the runs would go, since ``os.access`` says yes to root everywhere."""
    out_root = Path(out_root)
    experiment_dir = out_root / config.experiment
    existing = next(folder for folder in (experiment_dir, *experiment_dir.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out_root}: cannot write results there ({existing} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=existing))
    except OSError as error:
        reason = f"no folder can be made in {existing}: {error.strerror or error}"
        raise ConfigError(f"--out {out_root}: cannot write results there ({reason})") from None
    saved = experiment_dir / "config.yaml"
    if saved.exists():
        check_same_config(saved, config)


def claim_results_folder(config, out_root):
    """Create ``<out>/<experiment>/config.yaml``, or check that the one there was made by the same config.

    Check and write happen under the experiment lock and before any slow work, so of two jobs with
    different configs started together exactly one gets the folder. Returns the experiment folder."""
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root}: cannot write results there ({out_root} is a file, not a directory)")
    experiment_dir = out_root / config.experiment
    saved = experiment_dir / "config.yaml"
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(experiment_dir):
            if saved.exists():
                check_same_config(saved, config)
            else:
                atomic_write_text(saved, config_to_yaml(config))
    except OSError as error:
        raise ConfigError(f"--out {out_root}: cannot write results there "
                          f"({error.strerror or error}: {error.filename or experiment_dir})") from None
    return experiment_dir


def unfinished_runs(experiment_dir, run_indices):
    """The run indices among ``run_indices`` without a finished run.json in ``experiment_dir`` (a damaged
    one counts as unfinished): the runs a job will train."""
    return [index for index in run_indices
            if RunRecord.read_finished(Path(experiment_dir) / run_folder_name(index)) is None]


def check_same_config(saved, config):
    """Refuse to mix runs of different configs in one results folder (keys marked
    ``affects_results=False`` in the schema may differ)."""
    try:
        raw = read_yaml_mapping(saved)
        if not raw:
            raise ConfigError(f"{saved}: empty")
        previous = to_dict(saved_config(raw, saved))   # keys added to the schema since count at their default
    except ConfigError as error:
        raise ConfigError(f"{error}; this file records which config made the results there: restore it, "
                          f"or delete it if those runs may be overwritten") from None
    current = to_dict(config)
    previous, current = (without_keys_that_keep_results(ExperimentConfig, resolved)
                         for resolved in (previous, current))
    if previous != current:
        key, there, here = first_difference(previous, current)
        section = f"{key[:60]}: {shown(there)} there, {shown(here)} here"
        if not holds_results(saved.parent):
            raise ConfigError(f"{saved}: written for a different config ({section}) by a start that saved no "
                              f"epoch; delete it to train this config there, or use --out")
        raise ConfigError(f"{saved}: results there were made with a different config ({section}); "
                          f"use --out or another experiment name")


def first_difference(previous, current, prefix=""):
    """(dotted key, previous value, current value) of the first key, in sorted order, where two config dicts
    differ (descending into sections both have)."""
    for key in sorted(set(previous) | set(current), key=str):
        old, new = previous.get(key), current.get(key)
        if old != new:
            if isinstance(old, dict) and isinstance(new, dict):
                return first_difference(old, new, f"{prefix}{key}.")
            return f"{prefix}{key}", old, new
    return prefix.rstrip("."), previous, current


def holds_results(experiment_dir):
    """Whether any run folder holds something a run wrote after starting to train (an epoch's checkpoint,
    a history, a run record): a config.yaml alone was left by a start that stopped before its first epoch."""
    return any((folder / name).exists() for _, folder in run_folders(experiment_dir)
               for name in (CHECKPOINT, "history.json", "run.json"))


def update_summary(experiment_dir):
    """Recompute summary.json from the run folders, under the lock: a concurrent job cannot drop a run."""
    with folder_lock(experiment_dir):
        return summarize_experiment(experiment_dir)


def where_runs_stand(experiment_dir, run_indices):
    """One phrase for a stop in the middle (Ctrl-C, a failed write): the first unfinished run and the epoch
    its checkpoint resumes from (nothing on disk is changed by a stop: every write is atomic)."""
    for index in run_indices:
        folder = Path(experiment_dir) / run_folder_name(index)
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a run folder: move it away, then the same command starts the run"
        if RunRecord.read_finished(folder) is not None:
            continue
        epochs = epochs_done(folder)
        if epochs == 0:
            return f"{folder} has no saved epoch yet; the same command starts it again"
        return f"{folder} keeps its checkpoint of epoch {epochs}; the same command resumes from there"
    return "every run is finished and kept"
