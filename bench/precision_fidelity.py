"""Does ``training.precision: mixed_bfloat16`` change the results? One experiment trained in both
precisions (one results folder each, same seeds), compared seed spread against seed spread.

    # train (resumable; finished runs are skipped), then compare:
    python train.py configs/fcn_signed_schedule_b.yaml --runs 10 --quiet --out /tmp/bf16_fidelity/float32
    python train.py configs/fcn_signed_schedule_b.yaml --runs 10 --quiet --out /tmp/bf16_fidelity/mixed_bfloat16 \\
        --set training.precision=mixed_bfloat16
    python bench/precision_fidelity.py /tmp/bf16_fidelity/float32/fcn_signed_schedule_b \\
        /tmp/bf16_fidelity/mixed_bfloat16/fcn_signed_schedule_b --out /tmp/bf16_fidelity/fcn.md

Prints (``--out``: also writes) Markdown: for the final test accuracy and remaining %, each precision's
n, mean, sd and [min, max], the difference of the means with Welch's two-sided unequal-variance t-test,
and whether every value of the second folder lies inside the first folder's seed range; then epoch by
epoch both folders' mean [min, max] (the agreement table's format; every 10th epoch when there are more
than 10). The precision of each folder is read from its config.yaml. Exit codes: 0 done, 2 a folder
without two finished runs (one line naming it).
"""
import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import atomic_write_text  # noqa: E402
from reporting.collect import config_value, read_experiment, schema_default  # noqa: E402
from reporting.intervals import t_cdf  # noqa: E402
from reporting.tables import markdown_table, mean_range_text  # noqa: E402
from training.results import statistics  # noqa: E402

METRICS = (("test accuracy %", "accuracy"), ("remaining %", "remaining_percent"))


def welch_test(reference, other):
    """(difference of means other - reference, t, degrees of freedom, two-sided p) of Welch's t-test;
    both samples need two values. Two constant samples give t = 0, p = 1 when equal, else t = inf, p = 0."""
    a, b = statistics(reference), statistics(other)
    difference = b["mean"] - a["mean"]
    var_a, var_b = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    if var_a + var_b == 0.0:
        return difference, (0.0 if difference == 0 else math.copysign(math.inf, difference)), math.nan, \
            float(difference == 0)
    t = difference / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (a["n"] - 1) + var_b ** 2 / (b["n"] - 1))
    return difference, t, df, 2.0 * t_cdf(-abs(t), df)


def read_side(folder):
    """(training.precision, finished runs) of one experiment folder; ValueError naming it without two finished runs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not an experiment folder")
    experiment = read_experiment(folder, folder.name)
    runs = experiment.finished
    if len(runs) < 2:
        raise ValueError(f"{folder}: {len(runs)} finished run(s); the comparison needs at least 2 per folder")
    return config_value(experiment.config, "training", "precision", schema_default("training", "precision")), runs


def final_table(reference, other):
    (label_a, runs_a), (label_b, runs_b) = reference, other
    rows = []
    for title, key in METRICS:
        values_a, values_b = [getattr(run, key) for run in runs_a], [getattr(run, key) for run in runs_b]
        cells = [title]
        for values in (values_a, values_b):
            stats = statistics(values)
            cells.append(f"{stats['n']}, {stats['mean']:.2f} ± {stats['std']:.2f} [{stats['min']:.2f}, {stats['max']:.2f}]")
        difference, t, df, p = welch_test(values_a, values_b)
        cells.append(f"{difference:+.2f} (t = {t:.2f}, df = {df:.1f}, p = {p:.3g})")
        cells.append("yes" if min(values_a) <= min(values_b) and max(values_b) <= max(values_a) else "no")
        rows.append(cells)
    header = ["metric", f"{label_a}: n, mean ± sd [min, max]", f"{label_b}: n, mean ± sd [min, max]",
              "difference (Welch t, df, two-sided p)", "all of the second inside the first's range"]
    return markdown_table(header, rows).split("\n")


def epoch_table(reference, other):
    """Per epoch (0 = at initialization) both folders' test accuracy and remaining %, mean [min, max]."""
    (label_a, runs_a), (label_b, runs_b) = reference, other
    histories = [[run.history for run in runs if run.history] for runs in (runs_a, runs_b)]
    epochs = min((len(h["test_accuracy"]) for side in histories for h in side), default=0)
    shown = range(epochs + 1) if epochs <= 10 else sorted({*range(0, epochs + 1, 10), epochs})
    rows = []
    for epoch in shown:
        cells = [f"{epoch} (init)" if epoch == 0 else str(epoch)]
        cells += ["–" if epoch == 0 else mean_range_text([100 * h["test_accuracy"][epoch - 1] for h in side])
                  for side in histories]
        cells += [mean_range_text([h["remaining_percent"][epoch] for h in side]) for side in histories]
        rows.append(cells)
    header = ["after epoch", f"{label_a} test acc %", f"{label_b} test acc %", f"{label_a} remaining %",
              f"{label_b} remaining %"]
    return markdown_table(header, rows).split("\n")


def report(reference_folder, other_folder):
    reference, other = read_side(reference_folder), read_side(other_folder)
    if reference[0] == other[0]:  # same precision: tell the columns apart by folder
        reference, other = ((f"{side[0]} ({folder})", side[1]) for side, folder in
                            ((reference, reference_folder), (other, other_folder)))
    return "\n".join(["### Final values", "", *final_table(reference, other), "", "### Epoch by epoch", "",
                      *epoch_table(reference, other)]) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="experiment folder of the reference precision (float32)")
    parser.add_argument("other", help="experiment folder of the same config in the other precision")
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args(argv)
    try:
        text = report(args.reference, args.other)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
