"""Epoch-by-epoch agreement with the authors' own code on the real CIFAR-10 (docs/SPEC.md §13.2, §13.3).

    SUPERMASK_DATA_DIR=/path/to/datasets python bench/agreement.py --out results/agreement
    python bench/agreement.py --cases conv2 --seeds 3 --out /tmp/agreement
    python bench/agreement.py --table-only --out results/agreement     # the table from finished runs
    python bench/agreement.py --smoke --out /tmp/agreement_smoke       # tiny data: tests the script only

SPEC §13 ran the authors' published pipeline for a few epochs (Conv2: 3, ResNet20: 2) with seed
7531 and gives its test accuracy and remaining % after every epoch. Each case below is our config with
the settings stated there, trained for the same epochs with ``--seeds`` seeds (7531, 7532, ...)
through the normal run trainer into ``<out>/agreement_<case>/`` (resumable: finished runs are
skipped). The script prints, and writes to ``<out>/agreement.md``, per epoch the authors' value beside
our mean [min, max]; a value outside our range by more than 1 point is flagged.
Exit codes: 0 every run finished, 1 a run failed, 2 bad input.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE_POINTS = 1.0
SMOKE_OVERRIDES = ("data.train_limit=128", "data.test_limit=128")


@dataclass(frozen=True)
class AuthorsRun:
    """One run of the authors' code as SPEC §13 reports it, and the config that reproduces its settings."""

    title: str
    section: str
    config: str
    overrides: tuple
    settings: str
    remaining_percent: tuple   # at initialization and after each epoch
    test_accuracy: tuple       # after each epoch, in %

    @property
    def epochs(self):
        return len(self.test_accuracy)


CASES = {
    "conv2": AuthorsRun(
        "Conv2 / CIFAR-10", "SPEC §13.2", "conv2_signed.yaml",
        ("model.threshold_fraction=0.4", "init.weight.distribution=signed_constant", "init.weight.scaling=elus",
         "init.mask.distribution=uniform", "init.mask.scaling=xavier", "optimizer.lr=0.04", "optimizer.wd=5e-4",
         "optimizer.momentum=0.9", "optimizer.nesterov=true", "training.batch_size=128", "training.shuffle=true",
         "training.schedule.kind=exp_continuous", "training.schedule.decay_epochs=10"),
        "ELUS weights ±√(3/fan_in), Glorot-uniform scores, p = 0.4, SGDW lr 0.04 / wd 5e-4, momentum 0.9 "
        "Nesterov, batch 128, schedule B (×0.9 continuously per 10 × 391 steps), reshuffled every epoch",
        remaining_percent=(59.98, 51.33, 40.98, 28.55), test_accuracy=(52.82, 57.86, 62.15)),
    "resnet20": AuthorsRun(
        "ResNet20 / CIFAR-10", "SPEC §13.3", "resnet20_signed.yaml",
        ("model.threshold_fraction=0.75", "model.bn_mode=stem_only", "init.weight.distribution=signed_constant",
         "init.weight.scaling=elus", "init.mask.distribution=uniform", "init.mask.scaling=xavier",
         "optimizer.lr=0.3", "optimizer.wd=3e-4", "training.batch_size=128", "training.shuffle=true",
         "training.schedule.kind=plateau", "data.augment=false"),
        "the submitted ResNet20_Mask (real stem BN, frozen block BNs), ELUS weights, Glorot-uniform scores, "
        "p = 0.75, SGDW lr 0.3 / wd 3e-4 constant (the plateau rule first acts at epoch 10), no augmentation, "
        "reshuffled every epoch",
        remaining_percent=(24.95, 17.08, 13.52), test_accuracy=(40.58, 51.10)),
}


def experiment_name(case, smoke):
    return f"agreement_{case}" + ("_smoke" if smoke else "")


def case_config(case, seeds, smoke):
    from training.config import load_config

    authors = CASES[case]
    overrides = [*authors.overrides, f"experiment={experiment_name(case, smoke)}",
                 f"training.epochs={authors.epochs}", f"runs={seeds}", *(SMOKE_OVERRIDES if smoke else ())]
    return load_config(ROOT / "configs" / authors.config, overrides)


def train_case(config, out, data_dir):
    """Train every seed of one case; returns the failures (run index, reason)."""
    from train import claim_results_folder, update_summary
    from training.runner import RunTrainer

    experiment_dir = claim_results_folder(config, out)
    failures = []
    for index in range(config.runs):
        try:
            RunTrainer(config, index, out, data_dir=data_dir or config.data.dir, verbose=False).run()
        except Exception as error:  # report it and keep the other seeds
            failures.append((index, f"{type(error).__name__}: {error}"))
            print(f"[agreement] {config.experiment} run {index} failed: {failures[-1][1]}", flush=True)
        update_summary(experiment_dir)
    return failures


def read_histories(experiment_dir):
    """history.json of every finished run of an experiment, in run order."""
    from reporting.collect import read_experiment

    if not Path(experiment_dir).is_dir():
        return []
    experiment = read_experiment(Path(experiment_dir), Path(experiment_dir).name)
    return [run.history for run in experiment.finished if run.history is not None]


def outside(authors_value, values):
    return authors_value < min(values) - TOLERANCE_POINTS or authors_value > max(values) + TOLERANCE_POINTS


def case_table(case, histories, experiment):
    """Markdown: per epoch the authors' value beside our mean [min, max]; '**!**' marks > 1 point outside."""
    from reporting.tables import mean_range_text

    authors = CASES[case]
    lines = [f"### {authors.title} ({authors.section})", "",
             f"Settings: {authors.settings}. Authors: one run, seed 7531. Ours: `{experiment}`, "
             f"{len(histories)} finished seeds, mean [min, max]; **!** = the authors' value lies more than "
             f"{TOLERANCE_POINTS:g} point outside our range.", "",
             "| after epoch | authors test acc % | ours test acc % | authors remaining % | ours remaining % |",
             "|---|---|---|---|---|"]
    flagged = []
    for epoch in range(authors.epochs + 1):
        remaining = [h["remaining_percent"][epoch] for h in histories if len(h["remaining_percent"]) > epoch]
        accuracy = [100 * h["test_accuracy"][epoch - 1] for h in histories
                    if epoch and len(h["test_accuracy"]) >= epoch]
        cells = [f"{epoch} (init)" if epoch == 0 else str(epoch)]
        for authors_value, ours, label in (
                (authors.test_accuracy[epoch - 1] if epoch else None, accuracy, "test accuracy"),
                (authors.remaining_percent[epoch], remaining, "remaining %")):
            if authors_value is None:
                cells += ["–", "–"]
                continue
            mark = ""
            if ours and outside(authors_value, ours):
                mark = " **!**"
                flagged.append(f"{authors.title} epoch {epoch} {label}: authors {authors_value:.2f}, ours {mean_range_text(ours)}")
            cells += [f"{authors_value:.2f}{mark}", mean_range_text(ours) if ours else "not run"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), flagged


def report(cases, out, smoke):
    sections, flagged = ["## Agreement with the authors' code, epoch by epoch", ""], []
    for case in cases:
        experiment = experiment_name(case, smoke)
        table, marks = case_table(case, read_histories(Path(out) / experiment), experiment)
        sections += [table, ""]
        flagged += marks
    sections.append("More than 1 point outside our seed range: " + ("; ".join(flagged) if flagged else "none."))
    return "\n".join(sections) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per case (7531 + i)")
    parser.add_argument("--out", default=str(ROOT / "results" / "agreement"), help="results folder")
    parser.add_argument("--data-dir", help="folder with cifar10 (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--smoke", action="store_true", help=f"tiny data ({', '.join(SMOKE_OVERRIDES)}): tests only")
    parser.add_argument("--table-only", action="store_true", help="no training, only the table")
    args = parser.parse_args(argv)

    from train import check_results_folder
    from training.schema import ConfigError
    cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    try:
        unknown = [name for name in cases if name not in CASES]
        if unknown or not cases:
            raise ValueError(f"--cases: unknown case {unknown[0] if unknown else '(none)'!r}; "
                             f"choose from {', '.join(CASES)}")
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        configs = [case_config(case, args.seeds, args.smoke) for case in cases]
        for config in configs if not args.table_only else ():  # the table only reads finished runs
            check_results_folder(config, args.out)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures = []
    if not args.table_only:
        for config in configs:
            failures += train_case(config, args.out, args.data_dir)
    from fileio import atomic_write_text
    text = report(cases, args.out, args.smoke)
    atomic_write_text(Path(args.out) / "agreement.md", text)
    print(text, end="")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
