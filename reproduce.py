"""Reproduce rows of the paper's main table in one command: print the plan, train every run, write the report.

    python reproduce.py --rows FCN,Conv2 --runs 3          # plan with time estimates, then train, then report
    python reproduce.py --table main --dry-run              # only the plan
    python reproduce.py --rows FCN --runs 2 --set training.epochs=10 --out /tmp/results --columns signed

Each paper row of ``reporting/paper.py`` (FCN, Conv2, ..., ResNet110) has two configs,
``configs/<row>_signed.yaml`` and ``configs/<row>_baseline.yaml`` (``--columns`` picks). The plan lists
every config with its runs and epochs and an estimated time on this machine, printed within seconds:
each config's FLOPs (counted from the config, training/estimates.py) times the seconds per FLOP of the
nearest config timed before: by ``--measure`` on this machine (cached in the calibration file), else
the recorded epoch times of runs under ``--out``, else those of the shipped runs in ``measured/``.
``--measure`` times every config first, from tiny real runs (2 epochs of ``--measure-steps`` batches,
then of 4 x, 16 x ... as many until the time per epoch at least doubles and reaches 3 s; thrown away):
their second epochs give the step time and the per-epoch overhead, the first epoch's extra time the
compilation. Its scratch folders live in the cache folder and a later --measure removes those of
killed processes.
Then every run trains in order through the normal run trainer (``train.py``'s path), so finished runs
are skipped and interrupted ones resume; a failed run is reported and the rest continue. Progress
lines give run k of N, the time elapsed and an estimate of the time remaining (the plan's estimate,
rescaled by how the runs trained so far compared with it). The end writes the report of the results
root (``report.py``).

Exit codes: 0 every run finished, 1 some run failed (or the report failed), 2 bad input (unknown row,
bad --set, a results folder of another config, an --out that cannot be written), with one line naming
the culprit and nothing written.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


ROOT = Path(__file__).resolve().parent
SHIPPED_RESULTS = ROOT / "measured"
COLUMNS = ("signed", "baseline")


def paper_rows():
    from reporting.paper import PAPER_ROWS
    return tuple(PAPER_ROWS)


TABLES = {"main": paper_rows}


def config_path(row, column):
    """The config of a paper row's column: configs/<row lower case>_<signed|baseline>.yaml."""
    return ROOT / "configs" / f"{row.lower()}_{column}.yaml"


@dataclass
class PlannedExperiment:
    """One config of the plan: which runs still train, and (once measured) what they cost."""

    row: str
    column: str
    path: Path
    config: object
    to_train: list
    epoch_seconds: Optional[float] = None
    compile_seconds: Optional[float] = None
    note: str = ""

    @property
    def epochs(self):
        return self.config.training.epochs

    @property
    def epochs_are_bound(self):
        """The plateau schedule stops by itself; its epochs are an upper bound."""
        return self.config.training.schedule.kind == "plateau"

    def run_estimate(self):
        """Estimated seconds of one run trained from scratch, or None when not measured."""
        if self.epoch_seconds is None:
            return None
        return self.compile_seconds + self.epochs * self.epoch_seconds


@dataclass
class Progress:
    """Elapsed time and an estimate of what is left, rescaled by how finished runs compared with the plan."""

    total: int
    started: float = field(default_factory=time.perf_counter)
    measured_seconds: float = 0.0
    estimated_seconds: float = 0.0

    def record(self, seconds, estimate):
        if estimate:
            self.measured_seconds += seconds
            self.estimated_seconds += estimate

    def remaining(self, estimates):
        """Text: the rescaled sum of the known estimates, plus how many runs have none."""
        known = [estimate for estimate in estimates if estimate is not None]
        scale = self.measured_seconds / self.estimated_seconds if self.estimated_seconds else 1.0
        untimed = len(estimates) - len(known)
        if untimed and not known:
            return "unknown"
        return clock(scale * sum(known)) + (f" + {untimed} runs not timed" if untimed else "")

    def line(self, index, label, estimates):
        elapsed = time.perf_counter() - self.started
        return (f"[reproduce] run {index} of {self.total}: {label} (elapsed {clock(elapsed)}, "
                f"estimated remaining {self.remaining(estimates)})")


def clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rows", help="comma-separated paper rows, e.g. FCN,Conv2 (see reporting/paper.py)")
    which.add_argument("--table", help=f"a whole table: {', '.join(TABLES)}")
    parser.add_argument("--columns", default=",".join(COLUMNS), help="signed, baseline or both (default both)")
    parser.add_argument("--runs", type=int, help="runs per config (default: each config's runs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override for every config, e.g. --set training.epochs=1 (repeatable)")
    parser.add_argument("--out", default="results", help="results root (default results/)")
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--measure", action="store_true",
                        help="time every config on this machine first (minutes; cached for later plans)")
    parser.add_argument("--measure-steps", type=int, default=2,
                        help="batches per epoch of --measure's shorter timing run (default 2; 0: no estimate)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop (within seconds)")
    parser.add_argument("--no-figures", action="store_true", help="report tables only")
    parser.add_argument("--verbose", action="store_true", help="Keras progress bars")
    return parser.parse_args(argv)


def split_names(text, allowed, what):
    """'fcn, Conv2' -> ['FCN', 'Conv2'] (case-insensitive); an unknown name is a ValueError naming it."""
    by_lower = {name.lower(): name for name in allowed}
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no {what} given")
    for name in names:
        if name.lower() not in by_lower:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(by_lower[name.lower()] for name in names))


def selected_rows(args):
    if args.table is not None:
        if args.table not in TABLES:
            raise ValueError(f"--table: unknown table {args.table!r}; choose from {', '.join(TABLES)}")
        return list(TABLES[args.table]())
    return split_names(args.rows, paper_rows(), "--rows row")


def finished_run(out_root, experiment, index):
    """Whether run.json says finished (a missing or unreadable one means: still to train)."""
    from fileio import run_folder_name
    from training.run_record import RunRecord

    return RunRecord.read_finished(Path(out_root) / experiment / run_folder_name(index)) is not None


def build_plan(rows, columns, runs, overrides, out_root):
    """Every config of the selected rows, validated; ConfigError names the culprit."""
    from train import check_results_folder
    from training.config import load_config

    plan = []
    for row in rows:
        for column in columns:
            path = config_path(row, column)
            config = load_config(path, overrides)
            if runs is not None:
                config.runs = runs
            check_results_folder(config, out_root)
            to_train = [i for i in range(config.runs) if not finished_run(out_root, config.experiment, i)]
            plan.append(PlannedExperiment(row, column, path, config, to_train))
    return plan


def measure_plan(plan, steps, data_dir):
    """Fill in each experiment's estimate by timing it; a config that cannot be timed keeps a note instead.
    Every timing is added to this machine's calibration, for later plans."""
    from training.estimates import record_calibration
    from training.timing import measure

    pending = [experiment for experiment in plan if experiment.to_train]
    if not pending:
        return
    print(f"timing {len(pending)} configs (scratch runs of 2 epochs of {steps}, {4 * steps}, ... batches) ...",
          flush=True)
    for position, experiment in enumerate(pending, start=1):
        started = time.perf_counter()
        try:
            experiment.epoch_seconds, experiment.compile_seconds = measure(experiment.config, steps, data_dir)
            result = f"{experiment.epoch_seconds:.1f} s per epoch"
            record_calibration(experiment.config, experiment.epoch_seconds, experiment.compile_seconds)
        except OSError as error:
            result = f"calibration not saved ({error.strerror or error}: {error.filename})"
        except Exception as error:  # a config that cannot train fails again, and is reported, when it runs
            experiment.note = f"not timed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
            result = experiment.note
        print(f"  timed {position}/{len(pending)} {experiment.config.experiment}: {result} "
              f"(took {time.perf_counter() - started:.0f} s)", flush=True)


def estimate_plan(plan, out_root):
    """Fill in each experiment's estimate from FLOPs and earlier timings (training/estimates.py), no training:
    this machine's calibration and the runs under ``out_root``, else the shipped runs."""
    from training.estimates import estimate, read_calibration, recorded_timings

    timings = read_calibration() + (recorded_timings(out_root) if Path(out_root).is_dir() else [])
    where = "timed here" if timings else f"recorded in {SHIPPED_RESULTS.name}/, on another machine"
    timings = timings or recorded_timings(SHIPPED_RESULTS)
    for experiment in plan:
        found = estimate(experiment.config, timings)
        if found is None:
            experiment.note = "no estimate: no config was timed (reproduce.py --measure times them)"
            continue
        experiment.epoch_seconds, experiment.compile_seconds, nearest = found
        if nearest["experiment"] != experiment.config.experiment:
            experiment.note = f"estimate scaled by FLOPs from {nearest['experiment']} ({where})"


def plan_text(plan, out_root):
    """The plan as Markdown: one line per config, then the total."""
    lines = ["| row | column | config | runs (to train) | epochs | s/epoch | est. per run | est. to train |",
             "|---|---|---|---|---|---|---|---|"]
    total, unknown = 0.0, 0
    for experiment in plan:
        per_run = experiment.run_estimate()
        to_train = len(experiment.to_train)
        if per_run is None and to_train:
            unknown += 1
        total += (per_run or 0.0) * to_train
        bound = "≤ " if experiment.epochs_are_bound else ""
        lines.append(
            f"| {experiment.row} | {experiment.column} | {experiment.path.relative_to(ROOT)} | "
            f"{experiment.config.runs} ({to_train}) | {bound}{experiment.epochs} | "
            f"{f'{experiment.epoch_seconds:.1f}' if experiment.epoch_seconds is not None else '?'} | "
            f"{f'{bound}{clock(per_run)}' if per_run is not None else '?'} | "
            f"{f'{bound}{clock(per_run * to_train)}' if per_run is not None else '?'} |")
    runs = sum(experiment.config.runs for experiment in plan)
    to_train = sum(len(experiment.to_train) for experiment in plan)
    lines += ["", f"plan: {len(plan)} configs, {runs} runs, {to_train} to train ({runs - to_train} finished "
                  f"already, skipped), results in {out_root}"]
    machine = f"{os.cpu_count()} CPUs, KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}"
    if unknown == sum(1 for experiment in plan if experiment.to_train) and unknown:
        lines.append(f"estimated time to train: unknown (no config timed; --measure-steps 0?) ({machine})")
    else:
        lines.append(f"estimated time to train: {clock(total)}" + (f" plus {unknown} configs not timed" if unknown else "")
                     + f" on this machine ({machine}); an estimate from FLOPs and earlier timings "
                       "(--measure times this machine)")
    lines += [f"note: {experiment.config.experiment}: {experiment.note}" for experiment in plan if experiment.note]
    return "\n".join(lines)


def train_all(plan, args):
    """Train every run in plan order; returns the failures as (experiment, run index, reason)."""
    from train import claim_results_folder, update_summary
    from training.runner import RunTrainer
    from training.schema import ConfigError

    jobs = [(experiment, index) for experiment in plan for index in range(experiment.config.runs)]
    progress, failures, refused = Progress(len(jobs)), [], {}

    def fail(position, experiment_name, index, reason):
        failures.append((experiment_name, index, reason))
        print(f"[reproduce] run {position} of {len(jobs)} failed: {experiment_name} run {index}: {reason}", flush=True)

    for position, (experiment, index) in enumerate(jobs, start=1):
        config = experiment.config
        experiment_dir = Path(args.out) / config.experiment
        if index == 0:
            try:   # checked when planning; another job may have taken the folder since
                claim_results_folder(config, args.out)
            except ConfigError as error:
                refused[config.experiment] = f"ConfigError: {error}"
        if config.experiment in refused:
            fail(position, config.experiment, index, refused[config.experiment])
            continue
        estimates = [planned.run_estimate() for planned, run_index in jobs[position - 1:]
                     if run_index in planned.to_train]
        print(progress.line(position, f"{config.experiment} run {index}", estimates), flush=True)
        started = time.perf_counter()
        try:
            RunTrainer(config, index, args.out, data_dir=args.data_dir or config.data.dir,
                       verbose=args.verbose).run()
        except Exception as error:  # one failed run must not stop the others
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            fail(position, config.experiment, index, reason)
        else:
            if index in experiment.to_train:
                progress.record(time.perf_counter() - started, experiment.run_estimate())
        try:
            update_summary(experiment_dir)
        except OSError as error:
            print(f"[reproduce] warning: summary of {experiment_dir} not written: {error}", flush=True)
    print(f"[reproduce] {len(jobs) - len(failures)} of {len(jobs)} runs finished, {len(failures)} failed "
          f"(elapsed {clock(time.perf_counter() - progress.started)})", flush=True)
    for experiment, index, reason in failures:
        print(f"[reproduce] failed: {experiment} run {index}: {reason}", flush=True)
    return failures


def main(argv=None):
    args = parse_args(argv)
    from training.schema import ConfigError

    try:
        from training.config import MAX_RUNS
        if args.runs is not None and not 1 <= args.runs <= MAX_RUNS:
            raise ValueError(f"--runs must be between 1 and {MAX_RUNS}, got {args.runs}")
        if args.measure_steps < 0:
            raise ValueError(f"--measure-steps must be >= 0, got {args.measure_steps}")
        columns = split_names(args.columns, COLUMNS, "--columns column")
        plan = build_plan(selected_rows(args), columns, args.runs, args.overrides, args.out)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.measure_steps and args.measure:
        measure_plan(plan, args.measure_steps, args.data_dir)
    elif args.measure_steps:
        estimate_plan(plan, args.out)
    print(plan_text(plan, args.out), flush=True)
    if args.dry_run:
        return 0
    failures = train_all(plan, args)
    from report import write_report
    try:
        written = write_report(args.out, data_dir=args.data_dir, draw=not args.no_figures)
    except Exception as error:  # the runs are done; a report that fails is one more failure to report
        print(f"error: report of {args.out} not written: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"[reproduce] report: {written['md']} (+ .csv, .tex, {len(written['figures'])} figures)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
