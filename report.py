"""Summarize every experiment under a results root next to the paper's numbers.

    python report.py                       # reads results/, writes results/report.{md,csv,tex} + fig_*.png
                                           # (on a fresh clone, before any run of one's own: measured/)
    python report.py measured              # the runs this repository ships, always: writes reports/measured/
    python report.py /tmp/rep_results --out /tmp/report --data-dir /path/to/datasets
    python report.py results/ --no-figures

Reads each run's run.json directly (summary.json may be stale), so partial results (runs
still training, failed or corrupt runs, experiments without finished runs) are shown as such.
Figure 1 needs an MNIST test "8" (``--data-dir`` or $SUPERMASK_DATA_DIR); without it the
figure is skipped with a note in the report. The report of the shipped measured/ runs goes to
reports/measured/ (measured/ holds only what the repository ships; results/ is one's own).
Exit codes: 0 written, 2 no such results root or an unwritable --out.
"""
import argparse
import sys
from pathlib import Path

from fileio import atomic_write_text
from reporting import figures
from reporting.collect import find_experiments
from reporting.tables import build_tables, csv_text, latex_report, markdown_report


def draw_figures(experiments, tables, out_dir, digit_source):
    """Write every figure; return (caption, file name) pairs and notes on skipped figures."""
    written, notes, digit = [], [], None
    if figures.plot_accuracy_vs_remaining(experiments, out_dir / "fig_accuracy_vs_remaining.png"):
        written.append(("Accuracy vs remaining weights, all runs", "fig_accuracy_vs_remaining.png"))
    else:
        notes.append("accuracy vs remaining weights: no finished runs")
    if figures.plot_cifar_rows(tables, out_dir / "fig_cifar_rows.png"):
        written.append(("CIFAR paper rows: ours beside the paper's points and brackets", "fig_cifar_rows.png"))
    else:
        notes.append("CIFAR paper rows: no finished CIFAR run of a paper row's protocol")
    for experiment in experiments:
        slug = figures.slug(experiment.name)
        if figures.plot_training_curves(experiment, out_dir / f"fig_curves_{slug}.png"):
            written.append((f"Training curves: {experiment.name}", f"fig_curves_{slug}.png"))
        else:
            notes.append(f"training curves of {experiment.name}: no run with a readable history.json")
        if not experiment.signed:
            continue
        if figures.plot_layer_fractions(experiment, out_dir / f"fig_layers_{slug}.png"):
            written.append((f"Mask per layer: {experiment.name}", f"fig_layers_{slug}.png"))
        else:
            notes.append(f"mask per layer of {experiment.name}: no finished run with masks")
        mask = figures.first_layer_mask(experiment.finished[0]) if experiment.model == "FCN" and experiment.finished \
            else None
        if mask is None:
            continue
        if digit is None and digit_source is not None:
            try:
                digit = digit_source()
            except Exception as error:  # any failure to get the digit only costs this figure
                notes.append(f"Figure 1 skipped: MNIST digit unavailable ({type(error).__name__}: {error})")
                digit_source = None      # tried once: one note, not one per FCN experiment
        if digit is None:
            continue
        title = f"Figure 1: {experiment.name} run_{experiment.finished[0].index}, first-layer mask under an MNIST 8"
        figures.plot_figure1(mask, digit, out_dir / f"fig_figure1_{slug}.png", title)
        written.append((f"Figure 1 (digit vs first-layer mask): {experiment.name}", f"fig_figure1_{slug}.png"))
    return written, notes


def write_report(root, out_dir=None, data_dir=None, digit_source=None, draw=True):
    """Write report.md/.csv/.tex (and the figures) for ``root``; returns the written paths."""
    root = Path(root)
    experiments = find_experiments(root)
    out_dir = Path(out_dir) if out_dir else root
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(experiments)
    written, notes = [], ["figures disabled (--no-figures)"]
    if draw:
        source = digit_source or (lambda: figures.mnist_eight(data_dir))
        written, notes = draw_figures(experiments, tables, out_dir, source)
    paths = {"md": out_dir / "report.md", "csv": out_dir / "report.csv", "tex": out_dir / "report.tex"}
    atomic_write_text(paths["md"], markdown_report(tables, experiments, written, notes))
    atomic_write_text(paths["csv"], csv_text(tables))
    atomic_write_text(paths["tex"], latex_report(tables))
    return {**paths, "figures": [out_dir / name for _, name in written], "notes": notes}


OWN_RESULTS, SHIPPED_RESULTS, SHIPPED_REPORT = Path("results"), Path("measured"), Path("reports") / "measured"


def default_root():
    """results/ once it holds an experiment; before that (a fresh clone) the runs the repository ships."""
    if OWN_RESULTS.is_dir() and find_experiments(OWN_RESULTS):
        return OWN_RESULTS
    return SHIPPED_RESULTS


def default_out(root):
    """The results root itself, except for the shipped measured/: its report goes to reports/measured/."""
    return SHIPPED_REPORT if root.resolve() == SHIPPED_RESULTS.resolve() else root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", help="results root (default results/, or the shipped measured/ "
                                                "while results/ holds no experiment)")
    parser.add_argument("--out", help="where to write the report (default: the results root; reports/measured/ "
                                      "for measured/)")
    parser.add_argument("--data-dir", help="folder with mnist.npz for Figure 1 (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    root = out = None
    try:
        root = Path(args.root) if args.root else default_root()
        out = Path(args.out) if args.out else default_out(root)
        if not args.root:
            shipped = "" if root == SHIPPED_RESULTS else f"; the shipped runs: python report.py {SHIPPED_RESULTS}"
            print(f"reading {root}/{shipped}")
        written = write_report(root, out, args.data_dir, draw=not args.no_figures)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:   # --out not a folder, read-only, full: say so, keep what was there
        print(f"error: {'--out ' if args.out else ''}{out or root}: cannot write {error.filename or ''} "
              f"({error.strerror or type(error).__name__})", file=sys.stderr)
        return 2
    print(f"wrote {written['md']}, {written['csv'].name}, {written['tex'].name} and {len(written['figures'])} figures")
    for note in written["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
