"""An experiment's results folder, ``<out>/<experiment>/``: claimed for one config (its config.yaml,
checked and written under the folder lock) and summarized after each run. Keras-free, so a command
line can check its input and claim its folders before the backend loads."""
import os
from pathlib import Path

from fileio import atomic_write_text, folder_lock
from training.config import ExperimentConfig, config_to_yaml, read_yaml_mapping, saved_config
from training.results import summarize_experiment
from training.schema import ConfigError, to_dict, without_keys_that_keep_results


def check_results_folder(config, out_root):
    """Check, writing nothing, that ``<out>/<experiment>/`` can take this config's runs
    (e.g. for a plan printed before training); ConfigError names the culprit."""
    out_root = Path(out_root)
    existing = next(folder for folder in (out_root, *out_root.absolute().parents) if folder.exists())
    if not existing.is_dir():
        blocker = f" ({existing} is a file)" if existing != out_root else ""
        raise ConfigError(f"--out {out_root}: not a directory{blocker}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_root}: cannot write there ({existing} is read-only)")
    saved = out_root / config.experiment / "config.yaml"
    if saved.exists():
        check_same_config(saved, config)


def claim_results_folder(config, out_root):
    """Create ``<out>/<experiment>/config.yaml``, or check that the one there was made by the same config.

    Check and write happen under the experiment lock and before any slow work, so of two jobs with
    different configs started together exactly one gets the folder. Returns the experiment folder."""
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"--out {out_root}: not a directory")
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
        differing = sorted(str(key) for key in set(previous) | set(current) if previous.get(key) != current.get(key))
        raise ConfigError(f"{saved}: results there were made with a different config (section "
                          f"{differing[0][:40]!r}); use --out or another experiment name")


def update_summary(experiment_dir):
    """Recompute summary.json from the run folders, under the lock: a concurrent job cannot drop a run."""
    with folder_lock(experiment_dir):
        return summarize_experiment(experiment_dir)
