"""The FCN row at the paper's protocol: N seeds (7531 + i) of three FCN configs, their statistics, and
which interval the paper's brackets can be (issue 14, docs/SPEC.md §8.3).

    KERAS_BACKEND=jax SUPERMASK_DATA_DIR=/path/to/datasets python bench/fcn_seeds.py   # 50 seeds each
    SUPERMASK_DATA_DIR=/path/to/datasets python bench/fcn_seeds.py --backend jax --jobs 2  # 2 seeds at a time
    python bench/fcn_seeds.py --report-only                   # statistics, bracket verdict, figure
    python bench/fcn_seeds.py --smoke --out /tmp/fcn_seeds    # 2 seeds, 1 epoch, 2000 examples

Training runs ``train.py`` per config into ``--out/<config>/run_<i>`` (``--backend`` runs it in a
child process with that KERAS_BACKEND); re-running skips finished runs and resumes an interrupted one.
The report (``--out/fcn_seeds.md`` and ``fcn_seeds.png``) gives for test accuracy and remaining %:
mean, sd, [min, max], [5 %, 95 %] quantiles and the 95 % confidence interval of the mean
(t-distribution), next to the paper's numbers, and judges the paper's brackets with
training.results.bracket_consistency. Exit code 0 when every config trained, 1 otherwise.
"""
import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import atomic_path, atomic_write_text, run_folder_index  # noqa: E402
from reporting.paper import PAPER_ROWS, Interval  # noqa: E402
from training.results import INTERVALS, bracket_consistency, interval_statistics, run_dir  # noqa: E402
from training.run_record import RunRecord  # noqa: E402

# config -> side of the paper's FCN row it is compared with; the first two are the ones whose spread
# judges the brackets (the closest setting for the signed column, the baseline for the baseline's).
CONFIGS = {"fcn_signed_closest_to_paper": "signed", "fcn_baseline": "baseline", "fcn_signed_schedule_b": "signed"}
JUDGED = ("fcn_signed_closest_to_paper", "fcn_baseline")
SMOKE = ["training.epochs=1", "data.train_limit=2000", "data.test_limit=500"]
METRICS = (("accuracy", "test accuracy %"), ("remaining_percent", "remaining %"))
# The paper prints its brackets with one decimal: each end is known to ± RESOLUTION / 2, a width to ± RESOLUTION.
RESOLUTION = 0.1
END_TOLERANCE, WIDTH_TOLERANCE = f"±{RESOLUTION / 2:g}", f"±{RESOLUTION:g}"


class JudgedBracket(NamedTuple):
    """One of the paper's brackets, the spread (n runs) that judges it, and the verdict per definition."""
    label: str
    paper: Interval
    verdicts: dict
    n: int


# A small FCN step is one core's work on CPU (JAX ran it no faster with two threads than with one), so
# with --jobs N each child trains on one thread and N seeds train side by side.
ONE_THREAD = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def train(configs, seeds, out, backend, overrides, jobs=1):
    """train.py per config (in a child process with KERAS_BACKEND=``backend`` when given, else in this
    one; with ``jobs`` > 1 one child per seed, ``jobs`` at a time); returns the configs that failed."""
    if jobs > 1:
        return train_side_by_side(configs, seeds, out, backend, overrides, jobs)
    failed = []
    for name in configs:
        arguments = train_arguments(name, out, overrides, "--runs", seeds)
        print(f"== {name}: {seeds} seeds -> {out / name}", flush=True)
        if backend:
            code = subprocess.run([sys.executable, str(ROOT / "train.py"), *arguments], cwd=ROOT,
                                  env=child_environment(backend)).returncode
        else:
            import train as train_script
            code = train_script.main(arguments)
        if code != 0:
            failed.append(name)
    return failed


def train_arguments(name, out, overrides, *runs):
    """train.py's arguments; the experiment is named, so the smoke overrides keep the results in <out>/<name>."""
    return [str(ROOT / "configs" / f"{name}.yaml"), *map(str, runs), "--out", str(out), "--quiet",
            *[item for override in [f"experiment={name}", *overrides] for item in ("--set", override)]]


def child_environment(backend, one_thread=False):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": backend, **(ONE_THREAD if one_thread else {})}


def train_side_by_side(configs, seeds, out, backend, overrides, jobs):
    """Every (config, seed) not finished yet as its own ``train.py --run-index`` child, ``jobs`` at a
    time (train.py's experiment lock makes concurrent runs of one experiment safe)."""
    pending = [(name, index) for name in configs for index in range(seeds)
               if RunRecord.read_finished(run_dir(out, name, index)) is None]
    print(f"== {len(pending)} runs to train, {jobs} at a time -> {out}", flush=True)
    running, failed = [], set()
    while pending or running:
        while pending and len(running) < jobs:
            name, index = pending.pop(0)
            command = [sys.executable, str(ROOT / "train.py"), *train_arguments(name, out, overrides, "--run-index", index)]
            running.append((name, subprocess.Popen(command, cwd=ROOT, env=child_environment(backend, one_thread=True))))
        time.sleep(1)
        for name, child in [entry for entry in running if entry[1].poll() is not None]:
            running.remove((name, child))
            if child.returncode != 0:
                failed.add(name)
    return [name for name in configs if name in failed]


def final_values(experiment_dir):
    """{metric: [values of the finished runs]} (accuracy in %), in run order."""
    values = {metric: [] for metric, _ in METRICS}
    runs = sorted((index, path) for path in Path(experiment_dir).glob("run_*")
                  if (index := run_folder_index(path.name)) is not None)
    for _, path in runs:
        record = RunRecord.read_finished(path)
        if record is not None:
            values["accuracy"].append(100 * record.final["test_accuracy"])
            values["remaining_percent"].append(record.final["remaining_percent"])
    return values


def paper_interval(side, metric):
    row = PAPER_ROWS["FCN"]
    if metric == "accuracy":
        return row.signed_accuracy if side == "signed" else row.baseline_accuracy
    return row.remaining_percent if side == "signed" else None


def _pair(interval, digits=2):
    return "–" if interval is None else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def statistics_table(results):
    lines = ["| config | metric | n | mean | sd | [min, max] | [5 %, 95 %] | 95 % CI of mean | paper |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (side, stats_by_metric) in results.items():
        for metric, label in METRICS:
            stats, paper = stats_by_metric[metric], paper_interval(side, metric)
            if stats is None or (metric == "remaining_percent" and side == "baseline"):
                continue
            paper_text = "–" if paper is None else f"{paper.mean:.2f} [{paper.low}, {paper.high}]"
            lines.append(f"| {name} | {label} | {stats['n']} | {stats['mean']:.3f} | {stats['std']:.3f} | "
                         f"{_pair(stats['min_max'])} | {_pair(stats['quantiles'])} | {_pair(stats['ci'])} | "
                         f"{paper_text} |")
    return lines


def bracket_verdicts(results):
    """A JudgedBracket for every bracket the JUDGED configs can judge."""
    judged = []
    for name in JUDGED:
        if name not in results:
            continue
        side, stats_by_metric = results[name]
        for metric, label in METRICS:
            paper, stats = paper_interval(side, metric), stats_by_metric[metric]
            if paper is None or paper.low is None or stats is None:
                continue
            judged.append(JudgedBracket(f"{side} {label} (spread of {name}, n={stats['n']})", paper,
                                        bracket_consistency(stats, paper.mean, paper.low, paper.high, RESOLUTION),
                                        stats["n"]))
    return judged


def conclusion(judged):
    """One paragraph: the definitions consistent with every judged bracket, and how sure that is."""
    if not judged:
        return "No bracket could be judged (no finished runs of " + ", ".join(JUDGED) + ")."
    fitting = fitting_every_bracket(judged, "consistent")
    # Closeness in width, whatever the rounding says: mean |log(printed width / predicted width)|.
    misfit = {name: sum(abs(math.log(b.verdicts[name]["width_ratio"])) for b in judged) / len(judged)
              for name in INTERVALS
              if all(name in b.verdicts and 0 < b.verdicts[name]["width_ratio"] < math.inf for b in judged)}
    ranked = sorted(misfit, key=misfit.get)
    closest = "" if not ranked else (
        f" Closest in width: {INTERVALS[ranked[0]]} (printed widths off by a factor {math.exp(misfit[ranked[0]]):.2f} "
        "on average" + (f"; next {INTERVALS[ranked[1]]}, {math.exp(misfit[ranked[1]]):.2f}" if len(ranked) > 1 else "")
        + ").")
    smallest_n = min(bracket.n for bracket in judged)
    certainty = ("" if smallest_n >= 30 else
                 f" The smallest sample has only {smallest_n} run{'s' if smallest_n > 1 else ''}: its measured spread, "
                 "hence this verdict, is rough.")
    caveat = (" This assumes the paper's runs had the seed-to-seed spread measured here; the printed brackets "
              f"have one decimal, so each end is known only to {END_TOLERANCE}.")
    width = width_reading(judged)
    if not fitting:
        counts = ", ".join(f"{label} {sum(bool(b.verdicts.get(name, {}).get('consistent')) for b in judged)}"
                           for name, label in INTERVALS.items())
        return ("None of " + ", ".join(INTERVALS.values()) + f" is consistent with all {len(judged)} brackets "
                f"(rule: both ends within {END_TOLERANCE} of the printed ends; brackets fitted: {counts})."
                + width + closest + caveat + certainty)
    names = " and ".join(INTERVALS[name] for name in fitting)
    return (f"The paper's brackets are consistent with {names} (all {len(judged)} brackets; rule: both ends "
            f"within {END_TOLERANCE} of the printed ends)." + width + closest + caveat + certainty)


def fitting_every_bracket(judged, test):
    """The interval definitions that pass ``test`` ("consistent" or "width_fits") for every judged bracket."""
    return [name for name in INTERVALS if all(b.verdicts.get(name, {}).get(test) for b in judged)]


def width_reading(judged):
    """The spread alone: which definitions give every bracket's width within the tolerance its two rounded ends allow."""
    fitting = [INTERVALS[name] for name in fitting_every_bracket(judged, "width_fits")]
    verdict = (" and ".join(fitting) + f" fit{'s' if len(fitting) == 1 else ''} all {len(judged)}" if fitting
               else f"no definition fits all {len(judged)}")
    return (f" By width alone (the spread, not the centring; a printed width is known only to {WIDTH_TOLERANCE}): "
            f"{verdict} brackets.")


def markdown(results):
    lines = ["# FCN at the paper's protocol: seeds, spread and the paper's brackets", "",
             "Statistics over finished runs (final epoch). CI: t-distribution, n − 1 degrees of freedom.", ""]
    lines += statistics_table(results) + ["", "## What the paper's brackets can be", "",
                                          "Each definition's interval of our runs, moved to the paper's mean; "
                                          f"✓ = both ends within {END_TOLERANCE} of the printed ends; ratio = "
                                          f"printed width / predicted width; width ✓ = predicted width within "
                                          f"{WIDTH_TOLERANCE} of the printed width.", ""]
    judged = bracket_verdicts(results)
    header = "| bracket | paper | " + " | ".join(INTERVALS.values()) + " |"
    lines += [header, "|---|---|" + "---|" * len(INTERVALS)]
    for label, paper, verdicts, _ in judged:
        cells = [f"{_pair(v['predicted'])} ×{v['width_ratio']:.2f} {'✓' if v['consistent'] else '✗'}, "
                 f"width {'✓' if v['width_fits'] else '✗'}"
                 if (v := verdicts.get(name)) else "–" for name in INTERVALS]
        lines.append(f"| {label} | {paper.mean:.2f} [{paper.low}, {paper.high}] | " + " | ".join(cells) + " |")
    lines += ["", conclusion(judged), "", "![FCN seeds](fcn_seeds.png)", ""]
    return "\n".join(lines)


def draw(results, path):
    """A strip plot per config and metric: the runs, our intervals, and the paper's bracket."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(len(results), 2, figsize=(10, 2.6 * len(results)), squeeze=False)
    jitter = np.random.default_rng(0)
    for row, (name, (side, stats_by_metric)) in enumerate(results.items()):
        for column, (metric, label) in enumerate(METRICS):
            axis, stats = axes[row][column], stats_by_metric[metric]
            axis.set_title(f"{name}: {label}", fontsize=9)
            axis.set_yticks([])
            if stats is None or (metric == "remaining_percent" and side == "baseline"):
                axis.text(0.5, 0.5, "no runs" if stats is None else "baseline: no mask", ha="center",
                          transform=axis.transAxes)
                axis.set_xticks([])
                continue
            values = stats["values"]
            axis.scatter(values, jitter.uniform(-0.25, 0.25, len(values)), s=12, alpha=0.6, color="tab:blue")
            for level, (key, color) in enumerate((("min_max", "gray"), ("quantiles", "tab:green"),
                                                  ("ci", "tab:red")), start=1):
                if stats[key] is not None:
                    axis.plot(stats[key], [-0.5 - 0.25 * level] * 2, color=color, lw=2, label=INTERVALS[key])
            axis.axvline(stats["mean"], color="tab:blue", lw=1)
            paper = paper_interval(side, metric)
            if paper is not None:
                axis.axvline(paper.mean, color="black", ls="--", lw=1, label="paper mean")
                if paper.low is not None:
                    axis.axvspan(paper.low, paper.high, color="orange", alpha=0.2, label="paper bracket")
            axis.set_ylim(-1.5, 0.5)
            axis.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)


def report(configs, out):
    results = {}
    for name in configs:
        values = final_values(out / name)
        stats_by_metric = {}
        for metric, _ in METRICS:
            stats = interval_statistics(values[metric])
            stats_by_metric[metric] = None if stats is None else {**stats, "values": values[metric]}
        results[name] = (CONFIGS[name], stats_by_metric)
    text = markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "fcn_seeds.md", text)
    draw(results, out / "fcn_seeds.png")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="seeds per config (default 50, as the paper)")
    parser.add_argument("--out", default=str(ROOT / "results" / "fcn_seeds"), help="results root")
    parser.add_argument("--configs", nargs="*", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), help="KERAS_BACKEND for training")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds trained side by side, each on one thread (needs --backend; 2 on 2 cores)")
    parser.add_argument("--report-only", action="store_true", help="only statistics, verdict and figure")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 1 epoch, 2000 training examples")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.jobs < 1 or (args.jobs > 1 and not args.backend):
        parser.error("--jobs must be >= 1, and --jobs > 1 needs --backend (one child process per seed)")
    out = Path(args.out)
    failed = []
    if not args.report_only:
        failed = train(args.configs, 2 if args.smoke else args.seeds, out, args.backend, SMOKE if args.smoke else [],
                       args.jobs)
    print(report(args.configs, out))
    if failed:
        print(f"error: training failed for {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
