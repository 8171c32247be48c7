"""The report's figures (docs/SPEC.md §10), drawn with matplotlib's Agg backend (no display needed).

Each function writes one PNG and returns False instead of drawing an empty plot when the
results hold nothing to show, so that the report can say why a figure is missing.
"""
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

from fileio import atomic_path  # noqa: E402
from masking.mask_rule import mask_counts  # noqa: E402
from reporting.collect import config_value  # noqa: E402
from reporting.npz import CheckedNpzReader  # noqa: E402
from reporting.paper import PAPER_ROWS, Interval, architecture_label  # noqa: E402
from training.run_record import is_finite_number  # noqa: E402

# Bounds on what a figure reads from a results folder (the widest FCN here has 300 hidden units;
# Conv8's masks are 5.3 MB): a small compressed file cannot make a figure take gigabytes.
MASK_FILE_BYTES = 64 << 20
FIGURE1_MAX_UNITS = 4096
MASK_PARTS = ("kept", "hidden", "inverted")
MASK_COLOURS = ListedColormap(["#c0392b", "#f4f4f4", "#2166ac"])   # -1 inverted, 0 hidden, +1 kept
MASK_NORM = BoundaryNorm([-1.5, -0.5, 0.5, 1.5], MASK_COLOURS.N)
FRACTION_PARTS = (("kept", "kept (+1)", "#2166ac"), ("inverted", "inverted (−1)", "#c0392b"),
                  ("hidden", "hidden (0)", "#bdbdbd"))


def slug(name):
    """A file-name-safe version of an experiment name ('fcn_study/port_A' -> 'fcn_study__port_A')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.replace("/", "__"))


def save_figure(figure, path, tight=True):
    """The one way figures are saved: PNG at 120 dpi, atomically, and the figure closed (``tight``:
    cropped to what is drawn)."""
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=120, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        plt.close(figure)
    return True


def label_log_axis(axis):
    """Plain-number labels at 1, 2, 5 × 10^k on a log-scaled axis (matplotlib's minor labels overlap)."""
    axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def _per_epoch(series_list):
    """Mean, min and max per epoch index over runs of possibly different lengths (plateau stops)."""
    length = max(len(series) for series in series_list)
    columns = [[s[i] for s in series_list if i < len(s)] for i in range(length)]
    return (np.array([np.mean(c) for c in columns]), np.array([np.min(c) for c in columns]),
            np.array([np.max(c) for c in columns]))


def _numbers(series):
    """A non-empty list of finite numbers (a history is a file: it may hold nulls or text)."""
    return isinstance(series, list) and bool(series) and all(is_finite_number(value) for value in series)


def _histories(runs):
    return [run.history for run in runs if run.history
            and run.history.get("test_accuracy") and run.history.get("remaining_percent")]


def plot_training_curves(experiment, path):
    """Test accuracy and remaining % per epoch: mean over finished runs with a min-max band, or, while
    no run has finished, the shipped histories of unfinished ones (a long run's curve so far)."""
    kind = "finished"
    histories = _histories(experiment.finished)
    if not histories:
        kind = "unfinished"
        histories = _histories(run for run in experiment.runs if run.status == "unfinished")
    if not histories:
        return False
    row = PAPER_ROWS.get(experiment.paper_row)
    accuracy = [[100 * v for v in h["test_accuracy"]] for h in histories]
    remaining = [h["remaining_percent"] for h in histories]
    figure, (accuracy_axis, remaining_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    if not experiment.signed and all(_numbers(h.get("train_accuracy")) for h in histories):
        # a baseline keeps every weight: its training accuracy says more (how far it overfits)
        train_accuracy = [[100 * v for v in h["train_accuracy"]] for h in histories]
        second_panel = (remaining_axis, train_accuracy, 1, "training accuracy %", None)
    else:
        second_panel = (remaining_axis, remaining, 0, "remaining weights %",
                        row and experiment.signed and row.remaining_percent.mean)
    panels = ((accuracy_axis, accuracy, 1, "test accuracy %",
               row and (row.signed_accuracy if experiment.signed else row.baseline_accuracy).mean),
              second_panel)
    for axis, series, first_epoch, label, paper_value in panels:
        mean, low, high = _per_epoch(series)
        epochs = np.arange(first_epoch, first_epoch + len(mean))
        axis.fill_between(epochs, low, high, alpha=0.25, color="#1f77b4", label="min–max over runs")
        axis.plot(epochs, mean, color="#1f77b4", marker="o" if len(mean) < 30 else None, label="mean")
        if paper_value:
            axis.axhline(paper_value, color="#d62728", linestyle="--", label=f"paper {paper_value:g}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch (0 = at initialization)" if first_epoch == 0 else "epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if experiment.signed and max(map(max, remaining)) > 20 * min(map(min, remaining)):   # sparsity spans decades
        remaining_axis.set_yscale("log")
        label_log_axis(remaining_axis.yaxis)
    figure.suptitle(f"{experiment.name}: {experiment.label}, {len(histories)} {kind} run{'s' if len(histories) > 1 else ''}"
                    + (f" (stopped at epoch {max(map(len, accuracy))} of {config_value(experiment.config, 'training', 'epochs') or '?'})"
                       if kind == "unfinished" else ""))
    return save_figure(figure, path)


def plot_accuracy_vs_remaining(experiments, path):
    """One point per finished run (baselines at 100 %), a colour per architecture, paper values as stars."""
    labels = sorted({e.label for e in experiments if e.finished})
    if not labels:
        return False
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    figure, axis = plt.subplots(figsize=(8, 5))
    for experiment in experiments:
        runs = experiment.finished
        if not runs:
            continue
        colour = colours[experiment.label]
        axis.scatter([r.remaining_percent for r in runs], [r.accuracy for r in runs], color=colour, s=22,
                     marker="o" if experiment.signed else "x", alpha=0.8)
    for row in PAPER_ROWS.values():
        label = architecture_label(row.model, row.width_multiplier)
        if label not in colours:
            continue
        signed, remaining = row.signed_accuracy, row.remaining_percent
        axis.errorbar(remaining.mean, signed.mean, fmt="*", markersize=14, color=colours[label], markeredgecolor="k",
                      yerr=None if signed.low is None else [[signed.mean - signed.low], [signed.high - signed.mean]],
                      xerr=None if remaining.low is None else [[remaining.mean - remaining.low],
                                                               [remaining.high - remaining.mean]])
        axis.scatter(100, row.baseline_accuracy.mean, marker="D", s=50, facecolors="none", edgecolors=colours[label])
    handles = [plt.Line2D([], [], color=colours[label], marker="o", linestyle="", label=label) for label in labels]
    handles += [plt.Line2D([], [], color="grey", marker=m, linestyle="", markerfacecolor=f, label=text)
                for m, f, text in (("o", "grey", "signed run"), ("x", "grey", "baseline run"),
                                   ("*", "grey", "paper, signed"), ("D", "none", "paper, baseline"))]
    axis.legend(handles=handles, fontsize=8, loc="best")
    axis.set_xscale("log")
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.set_xlabel("remaining weights % (log scale)")
    axis.set_ylabel("final test accuracy %")
    axis.grid(alpha=0.3, which="both")
    axis.set_title("Accuracy vs remaining weights")
    return save_figure(figure, path)


def plot_cifar_rows(tables, path):
    """The measured CIFAR paper rows: ours (mean, [min, max] over runs) beside the paper's point and bracket,
    signed at its remaining %, baseline at 100 %, a dotted line from each of ours to the paper's. Cells planned
    shorter than their row's protocol are left out (they are no measurement of the row)."""
    cells = [(key, side, summary) for key, sides in tables.main.items() if PAPER_ROWS[key].dataset != "mnist"
             for side, summary in sides.items() if summary and summary.accuracy and not summary.shorter]
    if not cells:
        return False
    keys = [key for key in PAPER_ROWS if any(cell[0] == key for cell in cells)]
    colours = {key: plt.get_cmap("tab10")(i % 10) for i, key in enumerate(keys)}
    figure, axis = plt.subplots(figsize=(8, 5))
    labelled = []
    for key, side, summary in cells:
        row, colour, signed = PAPER_ROWS[key], colours[key], side == "signed"
        paper_accuracy = row.signed_accuracy if signed else row.baseline_accuracy
        paper_remaining = row.remaining_percent if signed else Interval(100.0)
        accuracy = summary.accuracy
        remaining = summary.remaining_percent if signed else {"mean": 100.0, "min": 100.0, "max": 100.0}
        for interval, position, vertical in ((paper_accuracy, paper_remaining.mean, True),
                                             (paper_remaining, paper_accuracy.mean, False)):
            if interval.low is not None:   # the bracket as printed (Conv4's baseline mean lies outside its own)
                ends = ([position] * 2, [interval.low, interval.high])
                axis.plot(*(ends if vertical else ends[::-1]), color=colour, linewidth=1.2, alpha=0.6)
        axis.plot([remaining["mean"], paper_remaining.mean], [accuracy["mean"], paper_accuracy.mean], color=colour,
                  linestyle=":", linewidth=0.9)
        axis.errorbar(remaining["mean"], accuracy["mean"], fmt="o" if signed else "s", color=colour, markersize=7,
                      yerr=[[accuracy["mean"] - accuracy["min"]], [accuracy["max"] - accuracy["mean"]]],
                      xerr=[[remaining["mean"] - remaining["min"]], [remaining["max"] - remaining["mean"]]])
        axis.plot(paper_remaining.mean, paper_accuracy.mean, marker="*" if signed else "D", linestyle="",
                  markersize=13 if signed else 8, color=colour, markerfacecolor="none", markeredgewidth=1.3)
        # a label whose point sits next to one labelled before goes one line lower (Conv4 and Conv6 signed)
        point = (remaining["mean"], accuracy["mean"])
        crowded = sum(1 for x, y in labelled if abs(math.log10(x / point[0])) < 0.12 and abs(y - point[1]) < 1.0)
        labelled.append(point)
        axis.annotate(f"{key} n={accuracy['n']}", point, textcoords="offset points",
                      xytext=(6, -10 - 9 * crowded), fontsize=7, color=colour)
    handles = [plt.Line2D([], [], color=colours[key], marker="o", linestyle="", label=key) for key in keys]
    handles += [plt.Line2D([], [], color="grey", marker=marker, linestyle="", markerfacecolor=face, label=text)
                for marker, face, text in (("o", "grey", "ours, signed (bar: min–max over runs)"),
                                           ("s", "grey", "ours, baseline (100 % of the weights)"),
                                           ("*", "none", "paper, signed (lines: its bracket)"),
                                           ("D", "none", "paper, baseline"))]
    axis.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_xscale("log")
    axis.margins(x=0.15, y=0.08)
    label_log_axis(axis.xaxis)
    axis.set_xlabel("remaining weights % (log scale)")
    axis.set_ylabel("final test accuracy %")
    axis.grid(alpha=0.3, which="both")
    axis.set_title("CIFAR paper rows: ours beside the paper (dotted: ours → paper)")
    return save_figure(figure, path)


def layer_fractions(run):
    """[(layer, {kept, hidden, inverted})] of a finished run: masks.npz, else history's last mask_counts."""
    try:
        with CheckedNpzReader(run.path / "masks.npz") as masks:
            declared = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in masks.headers.values())
            if declared > MASK_FILE_BYTES:
                raise ValueError(f"masks.npz declares {declared:,} bytes")
            return [(name, mask_counts(masks.read(name, dtype=np.int8))) for name in masks.headers]
    except ValueError:
        counts = ((run.history or {}).get("mask_counts") or [{}])[-1]
        layers = counts.items() if isinstance(counts, dict) else []
        parts = [(name, {key: layer.get(key) for key in MASK_PARTS})
                 for name, layer in layers if isinstance(layer, dict)]
        return [(name, layer) for name, layer in parts
                if all(isinstance(count, int) and count >= 0 for count in layer.values()) and sum(layer.values()) > 0]


def plot_layer_fractions(experiment, path):
    """Stacked bars of kept / inverted / hidden fractions per masked layer of the first finished run."""
    run = experiment.finished[0] if experiment.signed and experiment.finished else None
    layers = layer_fractions(run) if run else []
    if not layers:
        return False
    totals = np.array([sum(counts.values()) for _, counts in layers], dtype=float)
    figure, axis = plt.subplots(figsize=(min(30.0, max(6.0, 0.45 * len(layers) + 2)), 4.2))
    positions, bottom = np.arange(len(layers)), np.zeros(len(layers))
    for key, label, colour in FRACTION_PARTS:
        fraction = np.array([counts.get(key, 0) for _, counts in layers]) / totals
        axis.bar(positions, fraction, bottom=bottom, color=colour, label=label)
        bottom += fraction
    axis.set_xticks(positions, [f"{name}\n{int(total):,}" for (name, _), total in zip(layers, totals)],
                    rotation=90 if len(layers) > 8 else 0, fontsize=7 if len(layers) > 8 else 8)
    axis.set_ylabel("fraction of the layer's weights")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.set_title(f"{experiment.name} run_{run.index}: mask per layer (label: layer, weights)")
    return save_figure(figure, path)


def first_layer_mask(run):
    """The first masked layer's ternary mask (784 x hidden) of an FCN run, or None."""
    try:
        with CheckedNpzReader(run.path / "masks.npz") as masks:
            name = next(iter(masks.headers), None)
            shape = masks.headers[name][0] if name else ()
            if len(shape) != 2 or shape[0] != 784 or not 0 < shape[1] <= FIGURE1_MAX_UNITS:
                return None
            return masks.read(name, dtype=np.int8)
    except ValueError:
        return None


def plot_figure1(mask, digit, path, title):
    """The paper's Figure 1: a flattened digit (784 pixels) above the first-layer mask (784 x hidden)."""
    digit = np.asarray(digit, dtype=float).reshape(-1)
    if digit.size != mask.shape[0]:
        raise ValueError(f"figure 1: digit has {digit.size} pixels but the mask has {mask.shape[0]} inputs")
    figure, (digit_axis, mask_axis) = plt.subplots(2, 1, figsize=(16, 6.5), sharex=True,
                                                   gridspec_kw={"height_ratios": [1, 6], "hspace": 0.05})
    digit_axis.imshow(digit[None, :], aspect="auto", cmap="viridis_r", interpolation="nearest")
    digit_axis.set_yticks([])
    digit_axis.set_ylabel("digit", rotation=0, ha="right", va="center")
    image = mask_axis.imshow(mask.T, aspect="auto", cmap=MASK_COLOURS, norm=MASK_NORM, interpolation="nearest")
    mask_axis.set_xlabel("input pixel (28 × 28, row-major)")
    mask_axis.set_ylabel(f"hidden unit (of {mask.shape[1]})")
    colourbar = figure.colorbar(image, ax=[digit_axis, mask_axis], ticks=[-1, 0, 1], fraction=0.02, pad=0.01)
    colourbar.ax.set_yticklabels(["−1 inverted", "0 hidden", "+1 kept"])
    digit_axis.set_title(title)
    return save_figure(figure, path)


def mnist_eight(data_dir=None):
    """The first MNIST test image of an 8, standardized and flattened row-major (784,)."""
    from data import load_dataset

    data = load_dataset("mnist", data_dir, train_limit=1)
    return np.asarray(data.x_test[int(np.flatnonzero(data.y_test == 8)[0])]).reshape(-1)
