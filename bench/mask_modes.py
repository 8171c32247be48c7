"""Does inverting help? The mask modes side by side on FCN / MNIST (issue 12, item 3).

    KERAS_BACKEND=jax SUPERMASK_DATA_DIR=/path/to/datasets python bench/mask_modes.py --out results/mask_modes
    python bench/mask_modes.py --out results/mask_modes --table-only      # table and figure from what is finished
    python bench/mask_modes.py --out /tmp/mm --smoke                      # 1 seed, 1 epoch, 1,024 images

Rows (3 seeds and 100 epochs each unless --runs / --epochs say otherwise), in the order they run:

    signed_closest        configs/fcn_signed_closest_to_paper.yaml (the paper's rule, closest setting)
    signed_port           configs/fcn_signed.yaml (faithful port of the authors' config)
    binary_closest        the closest setting with model.mask_mode=binary
    binary_port           the port's setting with model.mask_mode=binary
    signed_top_k_matched  the closest setting, signed_top_k, k = signed_closest's mean remaining %
    top_k_matched         the closest setting, top_k, k = signed_closest's mean remaining %
    top_k_10 / top_k_50   configs/mask_modes/fcn_top_k.yaml (edge-popup's own recipe), k = 10 % / 50 %
    bernoulli_zhou        configs/mask_modes/fcn_bernoulli.yaml (Zhou et al.'s sampled mask and optimizer)

Each row is a normal experiment trained by ``train.py`` (RunTrainer) into ``<out>/<row>/``, so
re-running resumes: finished runs are skipped, interrupted ones resume at their last epoch. The
matched k is read from signed_closest's summary.json (rounded to 4 decimals), so the matched rows
run after it; if it has no finished run yet they are skipped with a note. Writes
``<out>/mask_modes.md`` (the Markdown table: mean [min, max] test accuracy and remaining %) and
``<out>/mask_modes.png`` (test accuracy vs remaining %, one point per run, per mode), atomically.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import atomic_write_bytes  # noqa: E402

CLOSEST, PORT = "fcn_signed_closest_to_paper.yaml", "fcn_signed.yaml"
EDGE_POPUP, ZHOU = "mask_modes/fcn_top_k.yaml", "mask_modes/fcn_bernoulli.yaml"
MATCHED = "matched"   # keep_fraction placeholder: signed_closest's mean remaining %
ROWS = {  # name -> (config under configs/, mask mode, keep_fraction, what the row is)
    "signed_closest": (CLOSEST, "signed", None, "signed, closest setting to the paper's row"),
    "signed_port": (PORT, "signed", None, "signed, faithful port of the authors' config"),
    "binary_closest": (CLOSEST, "binary", None, "binary (keep/hide), closest setting"),
    "binary_port": (PORT, "binary", None, "binary (keep/hide), port setting"),
    "signed_top_k_matched": (CLOSEST, "signed_top_k", MATCHED, "signed top-k, k = signed_closest's remaining %"),
    "top_k_matched": (CLOSEST, "top_k", MATCHED, "top-k (edge-popup rule), k = signed_closest's remaining %"),
    "top_k_10": (EDGE_POPUP, "top_k", 0.1, "edge-popup recipe, k = 10 %"),
    "top_k_50": (EDGE_POPUP, "top_k", 0.5, "edge-popup recipe, k = 50 %"),
    "bernoulli_zhou": (ZHOU, "bernoulli", None, "Bernoulli mask, Zhou et al.'s recipe (evaluated at S > 0)"),
}
MODE_COLOURS = {"signed": "#2166ac", "binary": "#e08214", "signed_top_k": "#1b7837", "top_k": "#c0392b",
                "bernoulli": "#762a83"}
SMOKE = ["data.train_limit=1024", "data.test_limit=500"]


def read_summary(out, row):
    path = Path(out) / row / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def matched_keep_fraction(out):
    """signed_closest's mean remaining % as a fraction (4 decimals), or None before it has a finished run."""
    summary = read_summary(out, "signed_closest")
    remaining = summary and summary.get("remaining_percent")
    return None if not remaining else round(remaining["mean"] / 100, 4)


def row_overrides(name, out, epochs=None, smoke=False):
    """The --set overrides of one row, or None when its matched k is not known yet."""
    _, mode, keep_fraction, _ = ROWS[name]
    if keep_fraction == MATCHED:
        keep_fraction = matched_keep_fraction(out)
        if keep_fraction is None:
            return None
    sets = [f"experiment={name}"]
    if mode != "signed":
        sets.append(f"model.mask_mode={mode}")
    if keep_fraction is not None:
        sets.append(f"model.keep_fraction={keep_fraction}")
    if epochs:
        sets.append(f"training.epochs={epochs}")
    return sets + (SMOKE if smoke else [])


def train_row(name, out, runs, epochs, smoke, data_dir):
    sets = row_overrides(name, out, epochs, smoke)
    if sets is None:
        print(f"[mask_modes] {name}: skipped, signed_closest has no finished run to match k to", flush=True)
        return
    command = [sys.executable, str(ROOT / "train.py"), str(ROOT / "configs" / ROWS[name][0]), "--runs", str(runs),
               "--out", str(out), "--quiet"] + (["--data-dir", str(data_dir)] if data_dir else [])
    for item in sets:
        command += ["--set", item]
    print(f"[mask_modes] {name}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def finished_runs(out, row):
    """[(test accuracy %, remaining %)] of the row's finished runs."""
    from reporting.collect import read_experiment

    folder = Path(out) / row
    if not folder.is_dir():
        return []
    return [(run.accuracy, run.remaining_percent) for run in read_experiment(folder, row).finished]


def table(out):
    """The Markdown table of every row with a finished run."""
    from reporting.tables import mean_range_text

    lines = ["| row | mode | config | k | runs | test accuracy % | remaining % |", "|---|---|---|---|---|---|---|"]
    for name, (config, mode, keep_fraction, _) in ROWS.items():
        points = finished_runs(out, name)
        if not points:
            continue
        if keep_fraction == MATCHED:
            keep_fraction = matched_keep_fraction(out)
        k = "–" if keep_fraction is None else f"{100 * keep_fraction:.2f} %"
        accuracies, remaining = [p[0] for p in points], [p[1] for p in points]
        lines.append(f"| {name} | {mode} | `{config}` | {k} | {len(points)} | {mean_range_text(accuracies)} | "
                     f"{mean_range_text(remaining)} |")
    return "\n".join(lines) + "\n"


def figure(out, path):
    """Test accuracy vs remaining %, one point per run, colour per mode; False when nothing is finished."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fileio import atomic_path
    from reporting.figures import label_log_axis

    rows = [(name, ROWS[name][1], finished_runs(out, name)) for name in ROWS]
    rows = [row for row in rows if row[2]]
    if not rows:
        return False
    fig, axis = plt.subplots(figsize=(6.4, 4.4))
    markers = "osD^v<>p"
    for index, (name, mode, points) in enumerate(rows):
        axis.scatter([p[1] for p in points], [p[0] for p in points], color=MODE_COLOURS[mode],
                     marker=markers[index % len(markers)], label=f"{name} ({len(points)})", alpha=0.8)
    axis.set_xscale("log")
    label_log_axis(axis.xaxis)
    axis.set_xlabel("remaining weights % (log)")
    axis.set_ylabel("test accuracy %")
    axis.set_title("FCN / MNIST: mask modes")
    axis.legend(fontsize=7, loc="lower right")
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "results" / "mask_modes"), help="results root of the rows")
    parser.add_argument("--runs", type=int, help="seeds per row (default 3; --smoke: 1)")
    parser.add_argument("--epochs", type=int, help="training.epochs (default: the config's 100; --smoke: 1)")
    parser.add_argument("--only", nargs="*", choices=list(ROWS), help="rows to train (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny check: 1 seed, 1 epoch, 1,024 training images")
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--table-only", action="store_true", help="only write the table and figure")
    args = parser.parse_args(argv)
    out = Path(args.out)
    runs = args.runs or (1 if args.smoke else 3)
    epochs = args.epochs or (1 if args.smoke else None)
    if not args.table_only:
        for name in ROWS:
            if not args.only or name in args.only:
                train_row(name, out, runs, epochs, args.smoke, args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = table(out)
    atomic_write_bytes(out / "mask_modes.md", text.encode())
    drawn = figure(out, out / "mask_modes.png")
    print(text + (f"figure: {out / 'mask_modes.png'}" if drawn else "figure: no finished runs yet"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
