"""FCN/MNIST study: the faithful port (schedules A and B) and the search for the paper's row.

    KERAS_BACKEND=jax SUPERMASK_DATA_DIR=/path/to/datasets python bench/fcn_study.py
    python bench/fcn_study.py --table-only          # print the table from finished results

Each variant is a config (``fcn_signed`` or ``fcn_baseline``) plus dotted overrides, trained with
``train.py`` into ``results/fcn_study/<variant>/`` (resumable: re-running skips
finished runs). Prints a Markdown table of mean final test accuracy and remaining %.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B = ["training.schedule.kind=exp_continuous"]
SQRT6 = ["init.weight.scaling=elus_sqrt6"]
CANDIDATE, PROBE = 3, 1  # seeds: candidates for the paper row get 3, one-at-a-time probes 1
VARIANTS = {  # name -> (config, overrides, seeds), in the order they run
    "port_A": ("fcn_signed", [], CANDIDATE),
    "port_B": ("fcn_signed", B, CANDIDATE),
    "B_sqrt6_wd1.5e-4": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.5e-4"], CANDIDATE),
    "B_sqrt6_wd1e-4": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1e-4"], CANDIDATE),
    "B_sqrt6_wd1.25e-4": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.25e-4"], CANDIDATE),
    "baseline": ("fcn_baseline", [], CANDIDATE),
    "A_sqrt6_wd1.25e-4": ("fcn_signed", SQRT6 + ["optimizer.wd=1.25e-4"], PROBE),
    "B_sqrt3_wd1.25e-4": ("fcn_signed", B + ["optimizer.wd=1.25e-4"], PROBE),
    "B_sqrt6_wd1.25e-4_shuffle": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.25e-4", "training.shuffle=true"], PROBE),
    "B_sqrt6_wd1.25e-4_decay5": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.25e-4",
                                                             "training.schedule.decay_epochs=5"], PROBE),
    "B_sqrt6_wd1.25e-4_scores_he": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.25e-4", "init.mask.scaling=he"], PROBE),
    "B_sqrt3_p0.15": ("fcn_signed", B + ["model.threshold_fraction=0.15"], PROBE),
    "B_sqrt6_wd1.3e-4": ("fcn_signed", B + SQRT6 + ["optimizer.wd=1.3e-4"], CANDIDATE),
}


def table(out):
    lines = ["| variant | overrides | runs | test acc % mean [min, max] | remaining % mean [min, max] |",
             "|---|---|---|---|---|"]
    for name, (config, overrides, seeds) in VARIANTS.items():
        summary_path = out / name / "summary.json"
        if not summary_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        acc, rem = summary["test_accuracy"], summary["remaining_percent"]
        if not acc:
            continue
        lines.append(f"| {name} | {config}.yaml {' '.join(overrides)} | {len(summary['finished_runs'])} | "
                     f"{100 * acc['mean']:.2f} [{100 * acc['min']:.2f}, {100 * acc['max']:.2f}] | "
                     f"{rem['mean']:.2f} [{rem['min']:.2f}, {rem['max']:.2f}] |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, help="seeds per variant (default: 3 for candidates, 1 for probes)")
    parser.add_argument("--epochs", type=int, help="override training.epochs (default: the config's)")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "results" / "fcn_study"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        for name, (config, overrides, seeds) in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            sets = [f"experiment={name}", *overrides] + ([f"training.epochs={args.epochs}"] if args.epochs else [])
            command = [sys.executable, str(ROOT / "train.py"), str(ROOT / "configs" / f"{config}.yaml"),
                       "--runs", str(args.runs or seeds), "--out", str(out), "--quiet"]
            for item in sets:
                command += ["--set", item]
            subprocess.run(command, check=True, cwd=ROOT)
    print(table(out))


if __name__ == "__main__":
    main()
