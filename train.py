"""Train the runs of one experiment config; finished runs are skipped, interrupted ones resume.

    python train.py configs/fcn_signed.yaml
    python train.py configs/fcn_signed.yaml --runs 3 --set training.epochs=10 --out /tmp/results
    python train.py configs/conv2_signed.yaml --run-index 4        # one seed per cluster job
    SUPERMASK_DATA_DIR=../shared/datasets python train.py configs/fcn_signed.yaml

Exit codes: 0 done, 1 training failed (e.g. non-finite loss), 2 invalid input
(config, data or init files), with one line naming the culprit.
"""
import argparse
import os
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
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.run_index is not None and args.run_index < 0:
        parser.error("--run-index must be >= 0")
    return args


# Keys that change speed or bookkeeping, not what a run computes: a run may resume under other values.
NOT_COMPARED = {"": ("runs", "description"), "training": ("jit_compile", "steps_per_execution", "eval_batch_size",
                                                          "distribution"), "data": ("dir",)}


def merged(defaults, values):
    """``values`` laid over ``defaults``, section by section."""
    result = dict(defaults)
    for key, value in values.items():
        both_sections = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        result[key] = merged(defaults[key], value) if both_sections else value
    return result


def check_results_folder(config, out_root):
    """Refuse to mix runs of different configs in one results folder."""
    import yaml
    from training.config import ExperimentConfig, config_to_yaml
    from training.schema import ConfigError, from_dict, to_dict

    saved = Path(out_root) / config.experiment / "config.yaml"
    if not saved.exists():
        return
    # Keys added to the schema after those results were written count at their default.
    previous = merged(to_dict(from_dict(ExperimentConfig, {})), yaml.safe_load(saved.read_text()))
    current = yaml.safe_load(config_to_yaml(config))
    for resolved in (previous, current):
        for section, keys in NOT_COMPARED.items():
            for key in keys:
                (resolved.get(section, {}) if section else resolved).pop(key, None)
    if previous != current:
        differing = sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))
        raise ConfigError(f"{saved}: results there were made with a different config (section "
                          f"{differing[0]!r}); use --out or another experiment name")


def main(argv=None):
    args = parse_args(argv)
    # Validate before importing Keras: bad input fails fast, with nothing written.
    from training.config import config_to_yaml, load_config
    from training.schema import ConfigError

    try:
        config = load_config(args.config, args.overrides)
        if args.runs is not None:
            config.runs = args.runs
        check_results_folder(config, args.out)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from data import DatasetError
    from fileio import atomic_write_bytes
    from masking.init_files import InitFileError
    from training.results import summarize_experiment
    from training.runner import RunTrainer, TrainingError

    run_indices = [args.run_index] if args.run_index is not None else list(range(config.runs))
    experiment_dir = os.path.join(args.out, config.experiment)
    atomic_write_bytes(os.path.join(experiment_dir, "config.yaml"), config_to_yaml(config).encode())
    try:
        for run_index in run_indices:
            RunTrainer(config, run_index, args.out, data_dir=args.data_dir or config.data.dir,
                       verbose=False if args.quiet else None).run()
            summary = summarize_experiment(experiment_dir)
    except (ConfigError, DatasetError, InitFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for reason in summary["skipped"]:
        print(f"warning: {experiment_dir}: skipped {reason}", file=sys.stderr)
    accuracy, remaining = summary["test_accuracy"], summary["remaining_percent"]
    if accuracy:
        print(f"{config.experiment}: {len(summary['finished_runs'])} finished runs, test accuracy "
              f"{100 * accuracy['mean']:.2f} % [{100 * accuracy['min']:.2f}, {100 * accuracy['max']:.2f}], "
              f"remaining {remaining['mean']:.2f} % [{remaining['min']:.2f}, {remaining['max']:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
