"""The agreement study's report (``report: agreement``): per epoch the authors' own run (SPEC §13,
reporting/paper.AUTHORS_RUNS) beside our seeds' mean [min, max], as ``<out>/agreement.md``; a value of
the authors' more than TOLERANCE_POINTS outside our range is flagged."""
from pathlib import Path

from fileio import atomic_write_text
from reporting.collect import read_experiment
from reporting.paper import AUTHORS_RUNS
from reporting.tables import markdown_table, mean_range_text

TOLERANCE_POINTS = 1.0


def read_histories(experiment_dir):
    """history.json of every finished run of an experiment, in run order."""
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        return []
    experiment = read_experiment(experiment_dir, experiment_dir.name)
    return [run.history for run in experiment.finished if run.history is not None]


def outside(authors_value, values):
    return authors_value < min(values) - TOLERANCE_POINTS or authors_value > max(values) + TOLERANCE_POINTS


def case_table(name, histories):
    """Markdown: per epoch the authors' value beside our mean [min, max]; '**!**' marks > 1 point outside."""
    authors = AUTHORS_RUNS[name]
    lines = [f"### {authors.title} ({authors.section})", "",
             f"Settings: {authors.settings}. Authors: one run, seed 7531. Ours: `{name}`, "
             f"{len(histories)} finished seeds, mean [min, max]; **!** = the authors' value lies more than "
             f"{TOLERANCE_POINTS:g} point outside our range.", ""]
    rows, flagged = [], []
    for epoch in range(authors.epochs + 1):
        remaining = [h["remaining_percent"][epoch] for h in histories if len(h["remaining_percent"]) > epoch]
        accuracy = [100 * h["test_accuracy"][epoch - 1] for h in histories
                    if epoch and len(h["test_accuracy"]) >= epoch]
        cells = [f"{epoch} (init)" if epoch == 0 else str(epoch)]
        for authors_value, ours, label in (
                (authors.test_accuracy[epoch - 1] if epoch else None, accuracy, "test accuracy"),
                (authors.remaining_percent[epoch], remaining, "remaining %")):
            if authors_value is None:
                cells += ["–", "–"]
                continue
            mark = ""
            if ours and outside(authors_value, ours):
                mark = " **!**"
                flagged.append(f"{authors.title} epoch {epoch} {label}: authors {authors_value:.2f}, "
                               f"ours {mean_range_text(ours)}")
            cells += [f"{authors_value:.2f}{mark}", mean_range_text(ours) if ours else "not run"]
        rows.append(cells)
    header = ["after epoch", "authors test acc %", "ours test acc %", "authors remaining %", "ours remaining %"]
    return "\n".join(lines) + "\n" + markdown_table(header, rows), flagged


def agreement_text(folders):
    """The report of ``folders`` (experiment name -> its results folder), one table per experiment."""
    sections, flagged = ["## Agreement with the authors' code, epoch by epoch", ""], []
    for name, folder in folders.items():
        table, marks = case_table(name, read_histories(folder))
        sections += [table, ""]
        flagged += marks
    sections.append("More than 1 point outside our seed range: " + ("; ".join(flagged) if flagged else "none."))
    return "\n".join(sections) + "\n"


def write_agreement(study, out_root, folders, tag=""):
    unknown = [name for name in study.experiments if name not in AUTHORS_RUNS]
    if unknown:
        raise ValueError(f"{study.path}: experiments.{unknown[0]}: no run of the authors' of that name "
                         f"(reporting/paper.AUTHORS_RUNS: {', '.join(AUTHORS_RUNS)})")
    text = agreement_text(folders)
    path = Path(out_root) / f"agreement{tag}.md"
    atomic_write_text(path, text)
    return text, [path]
