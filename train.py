"""Train the runs of one experiment config; finished runs are skipped, interrupted ones resume.

    python train.py configs/fcn_signed.yaml
    python train.py configs/fcn_signed.yaml --runs 3 --set training.epochs=10 --out /tmp/results
    python train.py configs/conv2_signed.yaml --run-index 4        # one seed per cluster job
    SUPERMASK_DATA_DIR=/path/to/datasets python train.py configs/fcn_signed.yaml

Exit codes: 0 done, 1 training failed (e.g. non-finite loss), 2 invalid input (config, data or
init files) or results that cannot be written (full disk, read-only folder, a file in the way), with
one line naming the culprit and where the run stands; 130 interrupted (Ctrl-C), 143 stopped by SIGTERM
(a cluster's scancel, preemption or time limit), each with one line saying where the same command resumes.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment YAML under configs/")
    parser.add_argument("--runs", type=int, help="number of runs (overrides the config's runs)")
    parser.add_argument("--run-index", type=int, help="train only this run (seed = config seed + index)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. --set optimizer.lr=0.01 (repeatable)")
    parser.add_argument("--out", default="results", help="results root (default results/)")
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    parser.add_argument("--tensorboard", action="store_true", help="same as --set training.tensorboard=true")
    args = parser.parse_args(argv)
    from training.config import MAX_RUNS
    if args.runs is not None and not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be between 1 and {MAX_RUNS}")
    if args.run_index is not None and not 0 <= args.run_index < MAX_RUNS:
        parser.error(f"--run-index must be between 0 and {MAX_RUNS - 1}")
    if args.run_index is not None and args.runs is not None and args.run_index >= args.runs:
        parser.error(f"--run-index {args.run_index} is not one of --runs {args.runs}'s runs 0-{args.runs - 1}")
    return args


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the stop Ctrl-C makes: the same one line, every write atomic."""


def _terminated(signum, frame):
    raise Terminated


def main(argv=None):
    args = parse_args(argv)
    # Validate and claim the results folder before importing Keras: bad input fails fast, with nothing
    # written, and a job with another config cannot slip into the folder while this one starts up.
    from data import DatasetError, check_offline_file, resolve_data_dir
    from fileio import LockError
    from masking.init_paths import InitFileError
    from models.initial_values import check_init_files
    from training.config import experiment_with_overrides, load_config
    from training.device import BackendError, check_backend_name
    from training.experiment_folder import claim_results_folder, unfinished_runs, where_runs_stand
    from training.schema import ConfigError

    try:
        check_backend_name()
        config = load_config(args.config, args.overrides)
        data_dir = resolve_data_dir(args.data_dir or config.data.dir)
        if data_dir is not None:
            named_by = None if args.data_dir or not config.data.dir else f"data.dir in {args.config}"
            check_offline_file(config.data.dataset, data_dir, named_by)   # keys and shapes: no folder for a bad file
        experiment = experiment_with_overrides(args.config, args.overrides, config)
        if experiment != config.experiment:
            print(f"results: {Path(args.out) / experiment} (--set changes results: a folder of its own, "
                  f"never {config.experiment}'s)", flush=True)
            config.experiment = experiment
        if args.runs is not None:
            config.runs = args.runs
        if args.tensorboard:
            config.training.tensorboard = True
        run_indices = [args.run_index] if args.run_index is not None else list(range(config.runs))
        check_init_files(config, unfinished_runs(Path(args.out) / config.experiment, run_indices))
        experiment_dir = claim_results_folder(config, args.out)
    except (BackendError, ConfigError, DatasetError, InitFileError, LockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from training.study_run import STUDY_CHILD_ENV
    # A study's child leaves saying where its run stands to reproduce.py, which stops it with SIGTERM.
    previous = None if os.environ.get(STUDY_CHILD_ENV) else signal.signal(signal.SIGTERM, _terminated)
    try:
        return train_runs(config, args, experiment_dir, run_indices)
    except KeyboardInterrupt as stop:   # also while the backend loads: every write is atomic, nothing is half-written
        print(f"interrupted: {where_runs_stand(experiment_dir, run_indices)}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def train_runs(config, args, experiment_dir, run_indices):
    """Train ``run_indices`` of ``config`` in the claimed ``experiment_dir``; the exit code."""
    from fileio import LockError, run_claim
    from training.device import import_backend_quietly
    from training.experiment_folder import update_summary, where_runs_stand
    from training.schema import ConfigError
    print(import_backend_quietly(), flush=True)
    from data import DatasetError
    from masking.init_files import InitFileError
    from training.runner import RunTrainer, TrainingError

    try:
        for run_index in run_indices:
            with run_claim(experiment_dir, run_index):
                RunTrainer(config, run_index, args.out, data_dir=args.data_dir or config.data.dir,
                           verbose=False if args.quiet else None).run()
            summary = update_summary(experiment_dir)
    except (ConfigError, DatasetError, InitFileError, LockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:   # atomic writes name the file they were writing (fileio.atomic_path)
        print(f"error: {error.filename or ''}: {error.strerror or error}; "
              f"{where_runs_stand(experiment_dir, run_indices)}", file=sys.stderr)
        return 2
    for reason in summary["skipped"]:
        print(f"warning: {experiment_dir}: skipped {reason}", file=sys.stderr)
    if summary["test_accuracy"]:
        print(summary_line(config.experiment, summary))
    return 0


def summary_line(experiment, summary):
    """The last line of a command: the finished runs' mean test accuracy and remaining %, with [min, max]
    once there are several runs."""
    runs = len(summary["finished_runs"])

    def value(stats, scale=1):
        spread = f" [{scale * stats['min']:.2f}, {scale * stats['max']:.2f}]" if runs > 1 else ""
        return f"{scale * stats['mean']:.2f} %{spread}"

    return (f"{experiment}: {runs} finished run{'s' if runs != 1 else ''}, test accuracy "
            f"{value(summary['test_accuracy'], 100)}, remaining {value(summary['remaining_percent'])}")


if __name__ == "__main__":
    sys.exit(main())
