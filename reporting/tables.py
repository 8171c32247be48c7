"""The report's tables: experiments next to the paper's numbers, as Markdown, CSV and LaTeX.

The main table has one row per paper architecture, baseline and signed side by side, like
the paper's main table. An experiment fills a side when its resolved config has the row's
model, width and dataset; when several match, the one closest to the paper's setting
(``recipe_mismatches``: init families, threshold), then the longest planned training, then
with most finished runs, then the shallowest folder, then the first name fills it. The others go to the second table, next to
every experiment that matches no paper row (study variants).
"""
import csv
import io
from dataclasses import dataclass
from typing import Optional

from reporting.paper import DATASET_LABELS, PAPER_ROWS, SOURCE, recipe_mismatches
from reporting.protocol import ProtocolCheck, check_own_config, check_protocol
from training.results import statistics

SIDES = ("baseline", "signed")
DASH = "–"


@dataclass
class Summary:
    """An experiment with its statistics over finished runs (percent; counts in weights)."""

    experiment: object
    accuracy: dict
    remaining_percent: dict
    remaining_count: dict
    protocol: Optional[ProtocolCheck] = None   # against the paper row's config; None without a row
    note: int = 0                              # its number in the report's protocol notes (0: none)

    @classmethod
    def of(cls, experiment):
        finished = experiment.finished
        summary = cls(experiment, statistics([r.accuracy for r in finished]),
                      statistics([r.remaining_percent for r in finished]),
                      statistics([r.remaining_count for r in finished]))
        if experiment.paper_row:
            summary.protocol = check_protocol(experiment.config, experiment.paper_row, summary.side)
        elif experiment.config is not None:
            summary.protocol = check_own_config(experiment.config, experiment.name)
        return summary

    @property
    def shorter(self):
        """Planned shorter than its paper row's protocol: shown with a marker, without Δ."""
        return bool(self.protocol and self.protocol.shorter)

    @property
    def side(self):
        """baseline, signed, or the mask mode of a masked run with another rule (binary, top_k, ...)."""
        if self.experiment.config is None:
            return "?"
        return self.experiment.mask_mode if self.experiment.signed else "baseline"


@dataclass
class ReportTables:
    main: dict      # paper row key -> {side: Summary or None}
    others: list    # Summaries that fill no main-table cell

    def placed(self):
        """Every Summary in table order: the main table's rows (baseline, signed), then the others."""
        return [s for sides in self.main.values() for s in (sides["baseline"], sides["signed"]) if s] + self.others


def build_tables(experiments):
    candidates = {(key, side): [] for key in PAPER_ROWS for side in SIDES}
    others = []
    for experiment in experiments:
        summary = Summary.of(experiment)
        key = experiment.paper_row
        (candidates[(key, summary.side)] if key else others).append(summary)
    main = {key: {} for key in PAPER_ROWS}
    for (key, side), summaries in candidates.items():
        summaries.sort(key=lambda s: (recipe_mismatches(s.experiment.config, key, side == "signed"), s.shorter,
                                      -planned_epochs(s.experiment), -len(s.experiment.finished),
                                      s.experiment.name.count("/"), s.experiment.name))
        main[key][side] = summaries[0] if summaries else None
        others.extend(summaries[1:])
    others.sort(key=lambda s: s.experiment.name)
    tables = ReportTables(main, others)
    noted = [s for s in tables.placed() if s.protocol and s.protocol.noted]
    for number, summary in enumerate(noted, start=1):
        summary.note = number
    return tables


def planned_epochs(experiment):
    """The epochs its config asks for: a short check (e.g. the agreement study's 3 epochs) never fills a
    paper row ahead of a full-length run, even one still training."""
    training = (experiment.config or {}).get("training")
    epochs = training.get("epochs") if isinstance(training, dict) else None
    return epochs if isinstance(epochs, int) else 0


def paper_values(key, side):
    """(accuracy Interval, remaining % Interval or None, remaining count or None) of a paper cell."""
    row = PAPER_ROWS[key]
    if side == "baseline":
        return row.baseline_accuracy, None, None
    return row.signed_accuracy, row.remaining_percent, row.remaining_count


# ----------------------------------------------------------------------------- cell formatting

def format_mean_range(stats, scale=1.0, suffix="", digits=2):
    """'mean [min, max]' of a ``statistics`` result (a dash without values)."""
    if stats is None:
        return DASH
    mean, low, high = (f"{stats[k] / scale:.{digits}f}{suffix}" for k in ("mean", "min", "max"))
    return f"{mean} [{low}, {high}]"


def mean_range_text(values):
    """'mean [min, max]' of a list of numbers, two decimals."""
    return format_mean_range(statistics(values))


def format_stats(stats, scale=1.0, suffix="", digits=2):
    if stats is None:
        return DASH
    return f"{format_mean_range(stats, scale, suffix, digits)} sd {stats['std'] / scale:.{digits}f}{suffix}"


def _as_written(value):
    """97.3 -> '97.3', 69.0 -> '69.0', 0.58 -> '0.58': the bracket as the paper prints it."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def format_interval(interval):
    if interval is None:
        return DASH
    bracket = f" [{_as_written(interval.low)}, {_as_written(interval.high)}]" if interval.low is not None else ""
    return f"{interval.mean:.2f}{bracket}"


def format_difference(stats, reference, scale=1.0, digits=2, suffix=""):
    if stats is None or reference is None:
        return DASH
    difference = round((stats["mean"] - reference) / scale, digits) + 0.0   # + 0.0 turns -0.0 into 0.0
    return f"{difference:+.{digits}f}{suffix}"


def format_runs(experiment):
    counts = experiment.status_counts()
    flags = [f"{counts[s]} {s}" for s in ("running", "unfinished", "failed", "corrupt", "empty", "missing") if counts.get(s)]
    finished = counts.get("finished", 0)
    return f"{finished} ({', '.join(flags)})" if flags else str(finished)


def _side_cells(summary, key, side):
    """Experiment, runs, ours/paper/diff for accuracy (and remaining % and count when signed)."""
    accuracy, remaining, count = paper_values(key, side) if key else (None, None, None)
    if summary is None:
        cells = [DASH, DASH, DASH, format_interval(accuracy), DASH]
        if side == "signed":
            cells += [DASH, format_interval(remaining), DASH, DASH, _thousands(count), DASH]
        return cells
    # a shorter protocol than the row's is not compared with the paper: no Δ
    references = (None, None, None) if summary.shorter else (accuracy and accuracy.mean,
                                                              remaining and remaining.mean, count)
    cells = [experiment_cell(summary), format_runs(summary.experiment), format_stats(summary.accuracy),
             format_interval(accuracy), format_difference(summary.accuracy, references[0])]
    if side == "signed":
        cells += [format_stats(summary.remaining_percent), format_interval(remaining),
                  format_difference(summary.remaining_percent, references[1]),
                  format_stats(summary.remaining_count, scale=1000, suffix="K", digits=1), _thousands(count),
                  format_difference(summary.remaining_count, references[2], scale=1000, digits=1, suffix="K")]
    return cells


def experiment_cell(summary):
    """The experiment's name, with its shorter protocol ('2/100 ep') and the number of its protocol note."""
    marker = summary.protocol.marker if summary.protocol else ""
    return (summary.experiment.name + (f" ({marker})" if marker else "")
            + (f" [note {summary.note}]" if summary.note else ""))


def _thousands(count):
    return DASH if count is None else f"{count / 1000:.1f}K"


def interval_cell(key, sides):
    """Which interval the row prints: ours [min, max] (with each side's number of runs), and the
    paper's bracket (its kind unstated) or, for rows the paper gives without one, its mean only."""
    runs = [f"{side} n={summary.accuracy['n']}" for side, summary in sides.items()
            if summary is not None and summary.accuracy is not None]
    ours = f"ours [min, max] ({', '.join(runs)})" if runs else "ours –"
    paper = ("paper bracket of unstated kind" if PAPER_ROWS[key].signed_accuracy.low is not None
             else "paper mean only")
    return f"{ours}; {paper}"


MAIN_CAPTION = ("Ours vs. the paper. Ours: mean [min, max] sd over the finished runs (final epoch); the "
                "'intervals' column gives each row's interval and number of runs. Paper: mean [bracket] as printed; "
                "the paper does not say whether a bracket is a min-max range, a percentile range or a confidence "
                "interval (docs/SPEC.md §8.3); rows without a bracket print the paper's mean only.")

MAIN_HEADER = ["Model", "Data", "intervals", "Baseline experiment", "runs", "acc %", "paper", "Δ",
               "Signed experiment", "runs", "acc %", "paper", "Δ", "remaining %", "paper", "Δ",
               "remaining weights", "paper", "Δ"]
OTHER_HEADER = ["Experiment", "Model", "Data", "kind", "runs", "acc %", "remaining %", "remaining weights",
                "paper row", "Δ acc", "Δ remaining %"]


def main_rows(tables):
    rows = []
    for key, sides in tables.main.items():
        row = PAPER_ROWS[key]
        rows.append([key, DATASET_LABELS[row.dataset], interval_cell(key, sides)]
                    + _side_cells(sides["baseline"], key, "baseline")
                    + _side_cells(sides["signed"], key, "signed"))
    return rows


def other_rows(tables):
    rows = []
    for summary in tables.others:
        experiment, key, side = summary.experiment, summary.experiment.paper_row, summary.side
        accuracy, remaining, _ = paper_values(key, side) if key and not summary.shorter else (None, None, None)
        dataset = DATASET_LABELS.get(experiment.dataset, experiment.dataset or "?")
        rows.append([experiment_cell(summary), experiment.label, dataset, side, format_runs(experiment),
                     format_stats(summary.accuracy), format_stats(summary.remaining_percent),
                     format_stats(summary.remaining_count, scale=1000, suffix="K", digits=1), key or DASH,
                     format_difference(summary.accuracy, accuracy and accuracy.mean),
                     format_difference(summary.remaining_percent, remaining and remaining.mean)])
    return rows


# ----------------------------------------------------------------------------- CSV

CSV_STATS = ("mean", "std", "min", "max")


def csv_text(tables):
    """One line per experiment with raw numbers (accuracy and remaining in %, counts in weights)."""
    placed = [(s, key, "main") for key, sides in tables.main.items() for s in sides.values() if s]
    placed += [(s, s.experiment.paper_row, "other") for s in tables.others]
    fields = ["experiment", "table", "paper_row", "kind", "model", "width_multiplier", "dataset",
              "runs_finished", "runs_running", "runs_unfinished", "runs_failed", "runs_corrupt", "runs_empty", "runs_missing"]
    for metric in ("accuracy", "remaining_percent", "remaining_count"):
        fields += [f"{metric}_{stat}" for stat in CSV_STATS] + [f"paper_{metric}", f"diff_{metric}"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields + ["protocol", "problems"], lineterminator="\n")
    writer.writeheader()
    for summary, key, table in sorted(placed, key=lambda item: item[0].experiment.name):
        experiment = summary.experiment
        counts = experiment.status_counts()
        record = {"experiment": experiment.name, "table": table, "paper_row": key or "", "kind": summary.side,
                  "model": experiment.model or "", "width_multiplier": experiment.width_multiplier,
                  "dataset": experiment.dataset or "",
                  **{f"runs_{s}": counts.get(s, 0) for s in ("finished", "running", "unfinished", "failed", "corrupt", "empty",
                                                             "missing")},
                  "protocol": summary.protocol.note() if summary.protocol and summary.protocol.noted else "",
                  "problems": "; ".join(problem_lines(experiment))}
        accuracy, remaining, count = paper_values(key, summary.side) if key else (None, None, None)
        references = {"accuracy": accuracy and accuracy.mean, "remaining_percent": remaining and remaining.mean,
                      "remaining_count": count}
        for metric in ("accuracy", "remaining_percent", "remaining_count"):
            stats = getattr(summary, metric)
            for stat in CSV_STATS:
                record[f"{metric}_{stat}"] = "" if stats is None else f"{stats[stat]:.6g}"
            reference = references[metric]
            record[f"paper_{metric}"] = "" if reference is None else reference
            compared = stats is not None and reference is not None and not summary.shorter
            record[f"diff_{metric}"] = f"{stats['mean'] - reference:.6g}" if compared else ""
        writer.writerow(record)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- Markdown / LaTeX

def problem_lines(experiment):
    """Human-readable status of every run that is not cleanly finished."""
    lines = list(experiment.problems)
    for run in experiment.runs:
        if run.status != "finished":
            lines.append(f"run_{run.index} {run.status}: {run.detail}")
        elif run.detail:
            lines.append(f"run_{run.index}: {run.detail}")
    counts = experiment.status_counts()
    if counts.get("missing"):
        lines.append(f"{counts['missing']} of {experiment.config['runs']} planned runs have no folder yet")
    return lines


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(tables, experiments, figures, notes):
    """The whole report.md; ``figures`` are (caption, file name) pairs next to it."""
    parts = ["# Signed Supermask reproduction: results", "",
             f"Experiments: {len(experiments)}. Accuracy and remaining weights: mean [min, max] sd over finished "
             "runs, final epoch. Δ = ours − paper (means).", "",
             f"Paper numbers: {SOURCE}", "",
             "An experiment belongs to a paper row when its config has the row's model, width multiplier and "
             "dataset; of several, the one closest to the paper's setting (init families, threshold), then the "
             "longest planned training, then the one with most finished runs fills the main table.", "",
             "## Paper architectures", "", markdown_table(MAIN_HEADER, main_rows(tables)), "",
             f"Table: {MAIN_CAPTION}", "",
             "## Other experiments (study variants, extra candidates for a paper row)", "",
             markdown_table(OTHER_HEADER, other_rows(tables)) if tables.others else "none", ""]
    protocol = [f"{s.note}. **{s.experiment.name}** {s.protocol.note()}." for s in tables.placed() if s.note]
    parts += ["## Protocol notes", "", "Each experiment that fills a paper row is compared with that row's config "
              "(the protocol); one planned shorter (fewer epochs, images or passes) is marked and gets no Δ.", ""]
    parts += (protocol or ["every experiment ran its paper row's protocol"]) + [""]
    notes_by_row = [f"- {key}: {row.note}" for key, row in PAPER_ROWS.items() if row.note]
    parts += ["Notes on the paper's numbers:", ""] + notes_by_row + [""]
    status = [f"- **{e.name}**: " + "; ".join(problem_lines(e)) for e in experiments if problem_lines(e)]
    parts += ["## Run status", ""] + (status or ["all runs finished"]) + [""]
    parts += ["## Figures", ""] + [f"- {note}" for note in notes] + [""]
    for caption, file_name in figures:
        parts += [f"### {caption}", "", f"![{caption}]({file_name})", ""]
    return "\n".join(parts)


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "Δ": r"$\Delta$", "–": "--", "−": "-"}


def latex_escape(text):
    return "".join(LATEX_SPECIALS.get(char, char) for char in str(text))


def latex_table(header, rows, caption):
    lines = [r"\begin{table}[ht]", r"\centering\scriptsize", r"\resizebox{\textwidth}{!}{%",
             r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
             " & ".join(latex_escape(cell) for cell in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{latex_escape(caption)}}}", r"\end{table}"]
    return "\n".join(lines)


def latex_report(tables):
    """Table fragments for \\input (needs booktabs and graphicx)."""
    parts = ["% generated by report.py; needs \\usepackage{booktabs,graphicx}",
             latex_table(MAIN_HEADER, main_rows(tables), MAIN_CAPTION + " " + SOURCE)]
    if tables.others:
        parts.append(latex_table(OTHER_HEADER, other_rows(tables), "Other experiments."))
    return "\n\n".join(parts) + "\n"
