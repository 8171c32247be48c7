"""The report of a results root: report.md/.csv/.tex beside the paper's numbers, and the figures
(report.py is its command line; a study's ``report: paper`` writes it too)."""
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


def stale_figure_notes(out_dir, drawn):
    """A note naming the fig_*.png files in ``out_dir`` that this report did not draw (left by an earlier
    report, e.g. of an experiment since removed); they are kept, never deleted, and report.md does not show them."""
    stale = sorted(path.name for path in Path(out_dir).glob("fig_*.png") if path.name not in drawn)
    if not stale:
        return []
    shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
    return [f"{len(stale)} figure(s) in {out_dir} are from an earlier report, not this one (kept): {shown}"]


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
        notes += stale_figure_notes(out_dir, {name for _, name in written})
    paths = {"md": out_dir / "report.md", "csv": out_dir / "report.csv", "tex": out_dir / "report.tex"}
    atomic_write_text(paths["md"], markdown_report(tables, experiments, written, notes))
    atomic_write_text(paths["csv"], csv_text(tables))
    atomic_write_text(paths["tex"], latex_report(tables))
    return {**paths, "figures": [out_dir / name for _, name in written], "notes": notes}
