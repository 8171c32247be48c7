"""Copy the small files of an experiment's runs into the tracked measured/ folder.

    python bench/ship_results.py /work/longruns/results/conv2_signed [--dest measured]

Shipped: the experiment's config.yaml and summary.json, and per run config.yaml, run.json,
history.json, masks.npz and extra_state.npz (with them export.py rebuilds a signed run's trained
model, training/signed_state.py); never weights, checkpoints or TensorBoard files. A run still
training ships its history so far (from its checkpoint), so the epochs reached are on record.
Shipping merges: runs already at the destination stay (a second seed trained in another folder joins
the first), the experiment's config.yaml is written only where the destination has none, and
summary.json is recomputed over every finished run there. A run that started over (its checkpoint lost
with a machine) does not replace a longer history shipped before it until it has caught up.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fileio import atomic_write_bytes, write_json  # noqa: E402
from training.results import run_folders, summarize_experiment  # noqa: E402
from training.run_state import checkpoint_history  # noqa: E402

RUN_FILES = ("config.yaml", "run.json", "history.json", "masks.npz", "extra_state.npz")


def ship(experiment_dir, dest_root, warn=None):
    """Ship one experiment folder; returns the paths written. An unfinished run whose history is shorter
    than the one already shipped for it (a run started over, e.g. on a new machine) is left out, with a
    line to ``warn`` (default stderr), so that no shipped epoch is lost."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    experiment_dir = Path(experiment_dir)
    target = Path(dest_root) / experiment_dir.name
    copied = []
    if (experiment_dir / "config.yaml").is_file() and not (target / "config.yaml").is_file():
        copied.append(_copy(experiment_dir / "config.yaml", target / "config.yaml"))
    for _, run in run_folders(experiment_dir):
        history = None if (run / "history.json").is_file() else checkpoint_history(run)
        shipped_epochs = _epochs(target / run.name / "history.json")
        if history is not None and len(history.get("train_loss", ())) < shipped_epochs:
            warn(f"{run}: not shipped: {len(history.get('train_loss', ()))} epochs so far, "
                 f"{target / run.name / 'history.json'} already holds {shipped_epochs}")
            continue
        for name in RUN_FILES:
            if (run / name).is_file():
                copied.append(_copy(run / name, target / run.name / name))
        if history is not None:
            write_json(target / run.name / "history.json", history)
            copied.append(target / run.name / "history.json")
    if any(target.glob("run_*/run.json")):
        summarize_experiment(target)
        copied.append(target / "summary.json")
    return copied


def _epochs(history_file):
    """Epochs in a shipped history.json (0 when there is none or it cannot be read)."""
    try:
        return len(json.loads(history_file.read_text()).get("train_loss", ()))
    except (OSError, ValueError, AttributeError):
        return 0


def _copy(source, destination):
    atomic_write_bytes(destination, source.read_bytes())
    return destination


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="experiment folders (results/<experiment>)")
    parser.add_argument("--dest", default="measured", help="tracked folder of measured results")
    args = parser.parse_args(argv)
    for experiment in args.experiments:
        if not Path(experiment).is_dir():
            print(f"error: {experiment}: not an experiment folder", file=sys.stderr)
            return 2
        for path in ship(experiment, args.dest):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
