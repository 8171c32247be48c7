"""Run a study: print its plan, train every run, write its report. A study is a YAML file under
``configs/studies/`` (training/study.py): its experiments (configs, overrides, seeds) and its report.

    python reproduce.py --rows FCN,Conv2 --runs 3          # rows of the paper's main table: plan, train, report
    python reproduce.py --table main --dry-run              # the whole main table (paper_main), only the plan
    python reproduce.py --rows FCN --runs 2 --set training.epochs=10 --out /tmp/results --columns signed
    python reproduce.py mask_modes                          # configs/studies/mask_modes.yaml into results/mask_modes/
    python reproduce.py fcn_seeds --backend jax --jobs 2    # two seeds at a time, each its own train.py process
    python reproduce.py agreement --report-only --out measured   # only the report of the finished runs

``--rows`` and ``--columns`` pick the experiments of the paper's rows and columns (signed, baseline) of
a study (default ``paper_main``, whose rows are ``reporting/paper.py``'s), ``--only`` experiments by
name. The plan lists every experiment with its results folder, runs and epochs and an estimated time on
this machine (under ``--backend``'s backend; with ``--jobs`` the wall time of that many runs side by
side), printed within seconds: each config's FLOPs (counted from the config, training/estimates.py) times the
seconds per FLOP of the nearest config timed before: by ``--measure`` on this machine (cached in the
calibration file) or the recorded epoch times of runs under ``--out``; a model kind not timed here takes
the shipped runs' timings of its kind in ``measured/`` (training/estimates.py). ``--measure`` times every config first, from tiny real runs (2 epochs of
``--measure-steps`` batches, then of 4 x, 16 x ... as many until the time per epoch at least doubles and
reaches 3 s; thrown away): their second epochs give the step time and the per-epoch overhead, the first
epoch's extra time the compilation (training/timing.py). Its scratch folders live in the cache folder and
a later --measure removes those of killed processes.
Then every run trains in plan order (training/study_run.py: in this process, or with ``--jobs`` /
``--backend`` as ``train.py --run-index`` children), so finished runs are skipped (with ``--skip-shipped``
also those shipped to ``measured/`` from another machine, same config) and interrupted ones
resume; a failed run is reported and the rest continue. Progress lines give run k of N, the time
elapsed and an estimate of the time remaining (the plan's estimate, rescaled by how the runs trained so
far compared with it). The end writes the study's report (reporting/studies.py) and names its files.
A ``--set`` that changes results trains into folders of their own, named as train.py names them
(``fcn_signed+training.epochs=1``; training/study.py, results_folder).

Exit codes: 0 every run finished, 1 some run failed (or the report failed), 2 bad input (unknown study,
row or experiment, bad --set, a results folder of another config, an --out that cannot be written), with
one line naming the culprit and nothing written; 130 interrupted (Ctrl-C; children stopped too), with
one line saying where the runs stand and that the same command resumes.
"""
import argparse
import glob
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Keras-free: the plan comes without the backend
from training.study_run import StudyInterrupted, clock, wall_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parent
SHIPPED_RESULTS = ROOT / "measured"
COLUMNS = ("signed", "baseline")
TABLES = {"main": "paper_main"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", help="a study under configs/studies/ (name or path); with --rows or "
                                                  "--table: paper_main")
    parser.add_argument("--rows", help="comma-separated paper rows, e.g. FCN,Conv2 (see reporting/paper.py)")
    parser.add_argument("--table", help=f"a whole table: {', '.join(TABLES)}")
    parser.add_argument("--columns", default=",".join(COLUMNS), help="signed, baseline or both (default both)")
    parser.add_argument("--only", help="comma-separated experiment names of the study (default: all)")
    parser.add_argument("--runs", type=int, help="runs per experiment (default: the study's, else each config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override for every experiment, e.g. --set training.epochs=1 (repeatable)")
    parser.add_argument("--out", help="results root (default: the study's, e.g. results/ for paper_main)")
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained side by side, each a train.py process "
                                                            "on one thread (default 1: in this process)")
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"),
                        help="KERAS_BACKEND of this command: of its train.py child processes (one per run), "
                             "of --measure and of the calibration the estimate reads")
    parser.add_argument("--measure", action="store_true",
                        help="time every config on this machine first (minutes; cached for later plans)")
    parser.add_argument("--measure-steps", type=int, default=2,
                        help="batches per epoch of --measure's shorter timing run (default 2; 0: no estimate)")
    parser.add_argument("--skip-shipped", action="store_true",
                        help="also skip runs finished in measured/ with the same config (shipped from another "
                             "machine, e.g. a queue restarted on a fresh one)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop (within seconds)")
    parser.add_argument("--report-only", action="store_true", help="no training: the report of the finished runs")
    parser.add_argument("--no-figures", action="store_true", help="report tables only")
    parser.add_argument("--verbose", action="store_true", help="Keras progress bars")
    args = parser.parse_args(argv)
    if args.study is None and args.rows is None and args.table is None:
        parser.error("name a study (e.g. mask_modes), or --rows / --table of the paper's main table")
    return args


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


def selected_names(study, args):
    """The experiment names ``--rows``, ``--columns`` and ``--only`` pick from ``study`` (None: all)."""
    entries = study.experiments
    if args.only is not None:
        return split_names(args.only, list(entries), "--only experiment")
    columns = split_names(args.columns, COLUMNS, "--columns column")
    rows = None
    if args.rows is not None:
        known = sorted({entry.row for entry in entries.values() if entry.row})
        if not known:
            raise ValueError(f"--rows: {study.path.stem} gives its experiments no paper row; pick them with --only "
                             f"({', '.join(entries)})")
        rows = split_names(args.rows, known, "--rows row")
    if rows is None and len(columns) == len(COLUMNS):
        return None
    return [name for name, entry in entries.items()
            if (rows is None or entry.row in rows) and (entry.side is None or entry.side in columns)]


def load_selected_study(args):
    """(study, results root, plan) of the command line; ConfigError / ValueError name the culprit."""
    from models.initial_values import check_init_files
    from training.experiment_folder import check_results_folder
    from training.study import load_study, plan_study

    name = args.study
    if args.table is not None:
        if args.table not in TABLES:
            raise ValueError(f"--table: unknown table {args.table!r}; choose from {', '.join(TABLES)}")
        name = TABLES[args.table]
    study = load_study(name or TABLES["main"])
    out = Path(args.out or study.out)
    plan = plan_study(study, out, args.runs, args.overrides, selected_names(study, args),
                      SHIPPED_RESULTS if args.skip_shipped else None)
    for planned in plan if not args.report_only else ():   # a report only reads
        if planned.config is not None:
            check_results_folder(planned.config, out)
            check_init_files(planned.config, planned.to_train)   # init.source: files, a run's file missing
    return study, out, plan


def check_report_has_runs(study, out, plan):
    """--report-only over a root that holds none of the study's experiment folders would write a report of
    nothing, and one over a parent of the study's own folder (``measured/`` for ``measured/fcn_seeds/``) a
    report of the few folders that happen to share names with it: a ValueError naming where to look."""
    def present(root):
        return sum((root / planned.folder).is_dir() for planned in plan)

    nested = out / study.path.stem
    if present(nested) > present(out):
        raise ValueError(f"--report-only: study {study.path.stem}'s runs are under --out {nested}, "
                         f"not {out} ({present(nested)} of its {len(plan)} experiment folders there)")
    if not present(out):
        looked = ", ".join(str(out / planned.folder) for planned in plan[:2]) + (", ..." if len(plan) > 2 else "")
        with_keys = sorted(path.name for planned in plan for path in out.glob(f"{glob.escape(planned.folder)}+*")
                           if path.is_dir())
        hint = (f"; {out} holds folders of runs trained with --set ({with_keys[0]}{', ...' if len(with_keys) > 1 else ''}): "
                f"give the same --set to report them" if with_keys else "")
        raise ValueError(f"--report-only: no experiment folder of study {study.path.stem} under {out} "
                         f"(looked for {looked}){hint}")


def measure_plan(plan, steps, data_dir):
    """Fill in each experiment's estimate by timing it; a config that cannot be timed keeps a note instead.
    Every timing is added to this machine's calibration, for later plans."""
    from training.device import import_backend_quietly, quiet_retracing_of_new_models
    from training.estimates import record_calibration

    pending = [experiment for experiment in plan if experiment.to_train and experiment.config is not None]
    if not pending:
        return
    import_backend_quietly()   # without the backend's start-up noise; training prints the device line
    quiet_retracing_of_new_models()
    from training.timing import measure
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
            experiment.note = f"not timed: {type(error).__name__}: {str(error).splitlines()[0][:240]}"
            result = experiment.note
        print(f"  timed {position}/{len(pending)} {experiment.name}: {result} "
              f"(took {time.perf_counter() - started:.0f} s)", flush=True)


def estimate_plan(plan, out_root):
    """Fill in each experiment's estimate from FLOPs and earlier timings (training/estimates.py), no training:
    this machine's calibration and the runs under ``out_root``, and the shipped runs for model kinds
    not timed here."""
    from training.estimates import estimate_from, read_calibration, recorded_timings

    here = read_calibration() + (recorded_timings(out_root) if Path(out_root).is_dir() else [])
    shipped = recorded_timings(SHIPPED_RESULTS)
    for experiment in plan:
        if experiment.config is None:   # a matched keep fraction not known yet
            continue
        found = estimate_from(experiment.config, here, shipped)
        if found is None:
            experiment.note = "no estimate: no config was timed (reproduce.py --measure times them)"
            continue
        experiment.epoch_seconds, experiment.compile_seconds, nearest, is_shipped = found
        experiment.timed_elsewhere = is_shipped
        where = f"recorded in {SHIPPED_RESULTS.name}/, on another machine" if is_shipped else "timed here"
        if nearest["experiment"] != experiment.config.experiment:
            experiment.note = f"estimate scaled by FLOPs from {nearest['experiment']} ({where})"
        elif is_shipped:
            experiment.note = f"estimate from {nearest['experiment']} ({where})"


def counted(number, noun):
    """'1 config', '3 configs'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def epoch_seconds_text(seconds):
    """'93.1', '0.042' for an epoch of a few images (it read 0.0), '?' when not estimated."""
    if seconds is None:
        return "?"
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2g}"


def plan_text(plan, out_root, jobs=1):
    """The plan as Markdown: one line per experiment (its results folder), then the total: the wall time
    of the runs still to train, ``jobs`` at a time."""
    from reporting.tables import markdown_table

    rows, run_seconds, unknown = [], [], 0
    for experiment in plan:
        per_run, left = experiment.run_estimate(), experiment.estimate_to_train()
        to_train = len(experiment.to_train)
        if per_run is None and to_train:
            unknown += 1
        if left is not None:
            run_seconds += [experiment.run_estimate(index) for index in experiment.to_train]
        bound = "≤ " if experiment.epochs_are_bound else ""
        resumed = "".join(f", run {index} resumes after epoch {done}" for index, done in experiment.resumes_after.items())
        resumed += "".join(f", run {index} shipped in {SHIPPED_RESULTS.name}/" for index in experiment.shipped)
        rows.append([experiment.folder, experiment.config_path.relative_to(ROOT).as_posix(),
                     f"{experiment.runs} ({to_train}{resumed})", f"{bound}{experiment.epochs or '?'}",
                     epoch_seconds_text(experiment.epoch_seconds),
                     f"{bound}{clock(per_run)}" if per_run is not None else "?",
                     f"{bound}{clock(left)}" if left is not None else "?"])
    header = ["experiment", "config", "runs (to train)", "epochs", "s/epoch", "est. per run", "est. to train"]
    lines = [markdown_table(header, rows)]
    runs = sum(experiment.runs for experiment in plan)
    to_train = sum(len(experiment.to_train) for experiment in plan)
    lines += ["", f"plan: {counted(len(plan), 'config')}, {counted(runs, 'run')}, {to_train} to train "
                  f"({runs - to_train} finished already, skipped), results under {out_root}/"]
    if any(experiment.folder != experiment.name for experiment in plan):
        lines.append("--set changes results: each experiment trains into a folder of its own, named as train.py "
                     "names it (experiment+key=value)")
    machine = f"{os.cpu_count()} CPUs, KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}"
    if unknown == sum(1 for experiment in plan if experiment.to_train) and unknown:
        why = "see the notes below" if any(experiment.note for experiment in plan) else "--measure-steps 0"
        lines.append(f"estimated time to train: unknown (no config timed: {why}) ({machine})")
    else:
        side_by_side = "" if jobs == 1 else (
            f" with {jobs} runs side by side ({clock(sum(run_seconds))} one after another; assumes a run beside "
            "others takes as long as one timed alone)")
        lines.append(f"estimated time to train: {clock(wall_seconds(run_seconds, jobs))}{side_by_side}"
                     + (f" plus {unknown} configs not timed" if unknown else "")
                     + f" on this machine ({machine}); an estimate from FLOPs and earlier timings "
                       "(--measure times this machine)")
        if any(experiment.timed_elsewhere for experiment in plan if experiment.to_train):
            lines.append("caution: some estimates come from runs timed on other machines (measured/README.md "
                         "names their CPUs); a CPU of another generation can take several times as long "
                         "(Conv8: 2.6 x on a Zen 3 against a Zen 4); --measure times this one")
    lines += [f"note: {experiment.name}: {experiment.note}" for experiment in plan if experiment.note]
    return "\n".join(lines)


def report_line(written):
    """'report: results/agreement.md', or the first file written and the others beside it (figures counted
    when there are several)."""
    if not written:
        return ""
    figures = [path.name for path in written[1:] if path.suffix == ".png"]
    others = [path.name for path in written[1:] if path.suffix != ".png"]
    others += figures if len(figures) == 1 else [f"{len(figures)} figures"] if figures else []
    return f"report: {written[0]}" + (f" (+ {', '.join(others)})" if others else "")


def interrupted_lines(in_flight):
    """Where the runs stand after Ctrl-C, one ``interrupted:`` line in train.py's words per run that was
    training."""
    from training.experiment_folder import where_runs_stand

    if not in_flight:
        return ["interrupted: no run was training; the same command goes on with the next run"]
    return [f"interrupted: {where_runs_stand(folder, [index])}" for folder, index in in_flight]


def main(argv=None):
    args = parse_args(argv)
    if args.backend:   # before anything imports Keras: --measure, the calibration and the children agree
        os.environ["KERAS_BACKEND"] = args.backend
    try:
        return run(args)
    except StudyInterrupted as stop:
        print("\n".join(interrupted_lines(stop.in_flight)), file=sys.stderr)
    except KeyboardInterrupt:   # while planning, timing or reporting: every write is atomic
        print("interrupted: no run was training; the same command goes on where the runs stand", file=sys.stderr)
    return 130


def run(args):
    """Check the input, time or estimate, print the plan, train (unless --dry-run or --report-only), report;
    the exit code."""
    from training.device import check_backend_name
    from training.schema import ConfigError

    try:
        check_backend_name()
        from training.config import MAX_RUNS
        if args.runs is not None and not 1 <= args.runs <= MAX_RUNS:
            raise ValueError(f"--runs must be between 1 and {MAX_RUNS}, got {args.runs}")
        if args.measure_steps < 0:
            raise ValueError(f"--measure-steps must be >= 0, got {args.measure_steps}")
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        study, out, plan = load_selected_study(args)
        if args.report_only:
            check_report_has_runs(study, out, plan)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures = []
    if not args.report_only:
        if args.measure_steps and args.measure:
            measure_plan(plan, args.measure_steps, args.data_dir)
        elif args.measure_steps:
            estimate_plan(plan, out)
        print(plan_text(plan, out, args.jobs), flush=True)
        if args.dry_run:
            return 0
        from training.study_run import run_study
        failures = run_study(plan, study, out, args.jobs, args.backend, args.data_dir, args.verbose,
                             log=lambda line: print(line, flush=True))
    from reporting.studies import write_study_report
    try:
        text, written = write_study_report(study, out, draw=not args.no_figures, data_dir=args.data_dir,
                                           overrides=args.overrides)
    except Exception as error:  # the runs are done; a report that fails is one more failure to report
        print(f"error: report of {out} not written: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for part in (text, report_line(written)):
        if part:
            print(part, end="" if part.endswith("\n") else "\n", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:   # the plan piped into `head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
