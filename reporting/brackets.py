"""The FCN seed study's report (``report: fcn_seeds``): per experiment and metric the seed statistics
beside the paper's numbers, which interval the paper's brackets can be (reporting/intervals.py), and a
strip plot, as ``<out>/fcn_seeds.md`` and ``fcn_seeds.png``. The first experiment of each side (signed,
baseline) judges that side's brackets. An experiment shorter than its paper row's protocol (e.g. with
``--set training.epochs=1``; reporting/protocol.py, as report.py marks it) is marked and compared with
nothing of the paper's."""
import math
from pathlib import Path
from typing import NamedTuple, Optional

from fileio import atomic_write_text
from reporting.intervals import INTERVALS, bracket_consistency, interval_statistics
from reporting.paper import PAPER_ROWS, Interval
from reporting.protocol import ProtocolCheck, check_protocol
from reporting.studies import finished_experiment
from reporting.tables import markdown_table

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


def paper_interval(side, metric):
    row = PAPER_ROWS["FCN"]
    if metric == "accuracy":
        return row.signed_accuracy if side == "signed" else row.baseline_accuracy
    return row.remaining_percent if side == "signed" else None


def _pair(interval, digits=2):
    return "–" if interval is None else f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


class SeedResult(NamedTuple):
    """An experiment's side, its statistics per metric (None without finished runs), and its protocol
    check against the paper row's config (None without a readable config or a row)."""
    side: str
    stats_by_metric: dict
    protocol: Optional[ProtocolCheck]

    @property
    def shorter(self):
        return bool(self.protocol and self.protocol.shorter)

    def label(self, name):
        """The experiment's name, with its shorter protocol ('1/100 ep') as report.py marks it."""
        return f"{name} ({self.protocol.marker})" if self.shorter else name


def statistics_table(results):
    rows = []
    for name, result in results.items():
        side, stats_by_metric = result.side, result.stats_by_metric
        for metric, label in METRICS:
            stats, paper = stats_by_metric[metric], paper_interval(side, metric)
            if stats is None or (metric == "remaining_percent" and side == "baseline"):
                continue
            paper_text = "–" if paper is None else f"{paper.mean:.2f} [{paper.low}, {paper.high}]"
            if result.shorter:   # no measurement of the paper's row: not put beside its numbers
                paper_text = "– (shorter than the protocol)"
            rows.append([result.label(name), label, str(stats["n"]), f"{stats['mean']:.3f}", f"{stats['std']:.3f}",
                         _pair(stats["min_max"]), _pair(stats["quantiles"]), _pair(stats["ci"]), paper_text])
    header = ["config", "metric", "n", "mean", "sd", "[min, max]", "[5 %, 95 %]", "95 % CI of mean", "paper"]
    return markdown_table(header, rows).split("\n")


def bracket_verdicts(results, judged_names):
    """A JudgedBracket for every bracket the ``judged_names`` experiments can judge (none of a shorter one)."""
    judged = []
    for name in judged_names:
        if name not in results or results[name].shorter:
            continue
        side, stats_by_metric = results[name].side, results[name].stats_by_metric
        for metric, label in METRICS:
            paper, stats = paper_interval(side, metric), stats_by_metric[metric]
            if paper is None or paper.low is None or stats is None:
                continue
            judged.append(JudgedBracket(f"{side} {label} (spread of {name}, n={stats['n']})", paper,
                                        bracket_consistency(stats, paper.mean, paper.low, paper.high, RESOLUTION),
                                        stats["n"]))
    return judged


def conclusion(judged, judged_names=()):
    """One paragraph: the definitions consistent with every judged bracket, and how sure that is."""
    if not judged:
        return ("No bracket could be judged (no finished runs of " + ", ".join(judged_names)
                + " at the paper's protocol).")
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


def markdown(results, judged_names):
    lines = ["# FCN at the paper's protocol: seeds, spread and the paper's brackets", "",
             "Statistics over finished runs (final epoch). CI: t-distribution, n − 1 degrees of freedom.", ""]
    lines += statistics_table(results)
    for name, result in results.items():
        if result.shorter:
            lines += ["", f"{result.label(name)}: shorter than the paper's protocol ({result.protocol.reference}), "
                          "so neither put beside the paper's numbers nor judging its brackets."]
    lines += ["", "## What the paper's brackets can be", "",
              "Each definition's interval of our runs, moved to the paper's mean; "
              f"✓ = both ends within {END_TOLERANCE} of the printed ends; ratio = "
              f"printed width / predicted width; width ✓ = predicted width within "
              f"{WIDTH_TOLERANCE} of the printed width.", ""]
    judged = bracket_verdicts(results, judged_names)
    rows = []
    for label, paper, verdicts, _ in judged:
        cells = [f"{_pair(v['predicted'])} ×{v['width_ratio']:.2f} {'✓' if v['consistent'] else '✗'}, "
                 f"width {'✓' if v['width_fits'] else '✗'}"
                 if (v := verdicts.get(name)) else "–" for name in INTERVALS]
        rows.append([label, f"{paper.mean:.2f} [{paper.low}, {paper.high}]", *cells])
    lines += [markdown_table(["bracket", "paper", *INTERVALS.values()], rows), "", conclusion(judged, judged_names), "", "![FCN seeds](fcn_seeds.png)", ""]
    return "\n".join(lines)


def draw_seeds(results, path):
    """A strip plot per config and metric: the runs, our intervals, and the paper's bracket."""
    import numpy as np

    from reporting.figures import plt, save_figure

    figure, axes = plt.subplots(len(results), 2, figsize=(10, 2.6 * len(results)), squeeze=False)
    jitter = np.random.default_rng(0)
    for row, (name, result) in enumerate(results.items()):
        side, stats_by_metric = result.side, result.stats_by_metric
        for column, (metric, label) in enumerate(METRICS):
            axis, stats = axes[row][column], stats_by_metric[metric]
            axis.set_title(f"{result.label(name)}: {label}", fontsize=9)
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
            paper = None if result.shorter else paper_interval(side, metric)
            if paper is not None:
                axis.axvline(paper.mean, color="black", ls="--", lw=1, label="paper mean")
                if paper.low is not None:
                    axis.axvspan(paper.low, paper.high, color="orange", alpha=0.2, label="paper bracket")
            axis.set_ylim(-1.5, 0.5)
            axis.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    save_figure(figure, path, tight=False)


def judged_experiments(study):
    """The first experiment of each side: the ones whose spread judges the paper's brackets."""
    first = {}
    for name, entry in study.experiments.items():
        first.setdefault(entry.side, name)
    return tuple(name for side, name in first.items() if side is not None)


def seed_results(study, folders):
    """{experiment: SeedResult}, in study order, from each experiment's folder (``folders``)."""
    results = {}
    for name, entry in study.experiments.items():
        experiment, points = finished_experiment(folders[name], name)
        values = {"accuracy": [p[0] for p in points], "remaining_percent": [p[1] for p in points]}
        stats_by_metric = {}
        for metric, _ in METRICS:
            stats = interval_statistics(values[metric])
            stats_by_metric[metric] = None if stats is None else {**stats, "values": values[metric]}
        config = experiment.config if points else None
        protocol = check_protocol(config, entry.row, entry.side) if config is not None and entry.row else None
        results[name] = SeedResult(entry.side, stats_by_metric, protocol)
    return results


def write_seed_report(study, out_root, folders, draw=True, tag=""):
    table, figure = (Path(out_root) / f"fcn_seeds{tag}{suffix}" for suffix in (".md", ".png"))
    results = seed_results(study, folders)
    text = markdown(results, judged_experiments(study))
    atomic_write_text(table, text)
    written = [table]
    if draw:
        draw_seeds(results, figure)
        written.append(figure)
    return text, written
