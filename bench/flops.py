"""Time estimates per paper row from FLOPs: conv/dense multiply-adds counted on the built Keras models.

    python bench/flops.py                          # Markdown table at the assumed 10 TFLOP/s
    python bench/flops.py --tflops 25 --json /tmp/flops.json

Forward FLOPs per image = 2 x the multiply-adds of every conv (H_out x W_out x k x k x C_in x C_out)
and dense layer (in x out) of the row's config model; element-wise work (mask, ELU, BN, pooling) is
left out. A training step costs about 3 forwards (forward + backward for activations and weights),
so one run costs epochs x (3 x forward x training images x data.repeat + forward x test images).
Dividing by an assumed sustained throughput gives a time: an ESTIMATE, not a measurement. Small
models are bound by per-step latency rather than FLOPs, so their estimates are lower bounds.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.flops import forward_macs  # noqa: E402

ASSUMED_TFLOPS = 10.0   # sustained fp32/TF32 on one H100/H200 for batch-128 32x32 convs: a guess, ~2-15 % of peak
TRAIN_EXAMPLES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
TEST_EXAMPLES = 10_000
TRAINING_FORWARDS = 3


def row_estimates(rows, tflops):
    """Per paper row and column: forward FLOPs per image, epochs, runs, FLOPs and estimated seconds per run."""
    from training.config import load_config
    from training.runner import build_experiment_model
    from training.study import CONFIGS, load_study

    results, experiments = [], load_study("paper_main").experiments.values()
    for row in rows:
        for entry in [entry for entry in experiments if entry.row == row]:
            column, config = entry.side, load_config(CONFIGS / entry.config)
            forward = 2 * forward_macs(build_experiment_model(config, config.seed))
            dataset = config.data.dataset
            per_epoch = forward * (TRAINING_FORWARDS * TRAIN_EXAMPLES[dataset] * config.data.repeat + TEST_EXAMPLES)
            run_flops = config.training.epochs * per_epoch
            results.append({"row": row, "column": column, "config": Path(entry.config).name,
                            "forward_flops_per_image": forward, "epochs": config.training.epochs,
                            "epochs_are_bound": config.training.schedule.kind == "plateau",
                            "runs": config.runs, "flops_per_run": run_flops,
                            "estimated_seconds_per_run": run_flops / (tflops * 1e12)})
    return results


def markdown(results, tflops):
    from reporting.tables import markdown_table

    rows = []
    for item in results:
        bound = "≤ " if item["epochs_are_bound"] else ""
        seconds = item["estimated_seconds_per_run"]
        rows.append([item["row"], item["column"], f"{item['forward_flops_per_image'] / 1e6:,.1f}",
                     f"{bound}{item['epochs']}", f"{item['flops_per_run'] / 1e15:.2f}", f"{bound}{duration(seconds)}",
                     f"{bound}{duration(seconds * item['runs'])} ({item['runs']} runs)"])
    header = ["row", "column", "forward MFLOP/image", "epochs", "PFLOP per run", "est. per run", "est. all runs"]
    return (markdown_table(header, rows) + f"\n\nEstimates at an assumed sustained {tflops:g} TFLOP/s (not measured); "
            "see bench/flops.py.")


def duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", help="comma-separated paper rows (default: all of reporting/paper.py)")
    parser.add_argument("--tflops", type=float, default=ASSUMED_TFLOPS, help="assumed sustained TFLOP/s")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    from reporting.paper import PAPER_ROWS
    rows = [row.strip() for row in args.rows.split(",")] if args.rows else list(PAPER_ROWS)
    unknown = [row for row in rows if row not in PAPER_ROWS]
    if unknown or args.tflops <= 0:
        print(f"error: {'unknown row ' + repr(unknown[0]) if unknown else '--tflops must be > 0'}", file=sys.stderr)
        return 2
    results = row_estimates(rows, args.tflops)
    print(markdown(results, args.tflops))
    if args.json:
        from fileio import write_json
        write_json(args.json, {"assumed_tflops": args.tflops, "rows": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
