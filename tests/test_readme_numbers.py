"""The README's results table is current: every measured cell (accuracy, remaining %, seeds, signed minus
baseline, remaining count, and an unfinished run's epoch) equals what the shipped files in measured/ say,
and every paper cell the paper's numbers in reporting/paper.py."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "measured"
NUMBER = r"[−-]?[\d,]+\.?\d*"


def table_rows():
    """{paper row: cells} of the README's results table (the one whose header starts with 'paper row')."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| paper row |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().replace("**", "") for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


ROWS = table_rows()


def number(text):
    return float(text.replace("−", "-").replace(",", ""))


def experiment_folder(name, details):
    """measured/<name>/ or measured/<study>/<name>/ among the folders the row's details cell names."""
    for folder in re.findall(r"`measured/([\w/]+?)/?`", details):
        for candidate in (MEASURED / folder, MEASURED / folder / name):
            if candidate.name == name and candidate.is_dir():
                return candidate
    raise AssertionError(f"no shipped folder of {name} named in {details!r}")


def summary(folder):
    stats = json.loads((folder / "summary.json").read_text())
    return (100 * stats["test_accuracy"]["mean"], stats["remaining_percent"]["mean"],
            stats["test_accuracy"]["n"], stats["remaining_count"]["mean"])


def seeds(text):
    found = re.search(r"\((\d+) seeds?\)", text)
    return int(found.group(1)) if found else None


def columns(cells):
    """(signed name, baseline name) from the config cell: its first backticked names of each side; a row
    that names no baseline (a variant of the row above) shares its architecture's ``<arch>_baseline``."""
    names = re.findall(r"`(\w+)`", cells[1])
    signed = next(name for name in names if "signed" in name)
    baseline = next((name for name in names if "baseline" in name), signed.split("_")[0] + "_baseline")
    return signed, baseline


def test_the_table_has_every_paper_row():
    assert {"FCN / MNIST", "Conv2 / CIFAR-10", "Conv4 / CIFAR-10", "Conv6 / CIFAR-10",
            "Conv8 / CIFAR-10", "ResNet20 / CIFAR-10"} <= set(ROWS)


@pytest.mark.parametrize("row", sorted(ROWS))
def test_finished_cells_equal_the_shipped_summaries(row):
    cells = ROWS[row]
    signed_name, baseline_name = columns(cells)
    signed_cell, baseline_cell, difference, count = cells[3], cells[5], cells[6], cells[7]
    signed = baseline = None
    finished = re.fullmatch(rf"({NUMBER}) @ ({NUMBER}) \(\d+ seeds?\)", signed_cell)
    if finished:
        signed = summary(experiment_folder(signed_name, cells[8]))
        assert (f"{signed[0]:.2f}", f"{signed[1]:.2f}", signed[2]) == \
               (finished.group(1), finished.group(2), seeds(signed_cell)), row
        assert number(count.split("/")[0]) == round(signed[3]), row
    if re.fullmatch(rf"{NUMBER} \(\d+ seeds?\)", baseline_cell):
        baseline = summary(experiment_folder(baseline_name, cells[8]))
        assert (f"{baseline[0]:.2f}", baseline[2]) == (baseline_cell.split()[0], seeds(baseline_cell)), row
    ours = difference.split("/")[0].strip()
    if signed is not None and baseline is not None:
        assert number(ours) == pytest.approx(signed[0] - baseline[0], abs=0.006), row
    else:
        assert ours == "–", row


PARTIAL = rf"({NUMBER})(?: @ ({NUMBER}))? at epoch (\d+) of \d+"
UNFINISHED = [(row, column) for row, cells in ROWS.items() for column in (3, 5) if re.search(PARTIAL, cells[column])]


@pytest.mark.parametrize("row,column", UNFINISHED)
def test_unfinished_cells_equal_the_shipped_history_at_their_epoch(row, column):
    cells = ROWS[row]
    name = columns(cells)[column == 5]
    accuracy, remaining, epoch = re.search(PARTIAL, cells[column]).groups()
    history = json.loads((experiment_folder(name, cells[8]) / "run_0" / "history.json").read_text())
    epoch = int(epoch)
    assert len(history["test_accuracy"]) >= epoch, row
    assert f"{100 * history['test_accuracy'][epoch - 1]:.2f}" == accuracy, row
    if remaining is not None:   # remaining_percent starts with the initial masks' (one entry more)
        after_epoch = history["remaining_percent"][epoch - len(history["test_accuracy"]) - 1]
        assert f"{after_epoch:.2f}" == remaining, row


FINISHED_SIGNED, FINISHED_BASELINE = rf"{NUMBER} @ {NUMBER} \(\d+ seeds?\)", rf"{NUMBER} \(\d+ seeds?\)"


@pytest.mark.parametrize("row", sorted(ROWS))
def test_every_result_cell_is_checked_or_says_it_has_no_number(row):
    """A cell of ours that is neither finished nor unfinished in the forms above would escape both tests."""
    for column, finished in ((3, FINISHED_SIGNED), (5, FINISHED_BASELINE)):
        cell = ROWS[row][column]
        assert (re.fullmatch(finished, cell) or re.search(PARTIAL, cell) or cell == "–"
                or re.match(r"not (yet )?measured", cell)), (row, cell)


def interval(text):
    """(mean, low, high) of 'mean [low, high]' or (mean, None, None) of 'mean'."""
    found = re.match(rf"({NUMBER})(?: \[({NUMBER}), ({NUMBER})\])?", text)
    return tuple(None if value is None else number(value) for value in found.groups())


def as_printed(reported):
    return reported.mean, reported.low, reported.high


@pytest.mark.parametrize("row", sorted(ROWS))
def test_paper_cells_equal_the_papers_numbers(row):
    from reporting.paper import PAPER_ROWS

    cells = ROWS[row]
    paper = PAPER_ROWS[re.split(r"[ ,/]", row)[0]]
    signed_accuracy, signed_remaining = cells[2].split(" @ ")
    assert interval(signed_accuracy) == as_printed(paper.signed_accuracy), row
    assert interval(signed_remaining) == as_printed(paper.remaining_percent), row
    assert interval(cells[4]) == as_printed(paper.baseline_accuracy), row
    difference = paper.signed_accuracy.mean - paper.baseline_accuracy.mean
    assert number(cells[6].split("/")[1]) == pytest.approx(difference, abs=0.006), row
    assert number(cells[7].split("/")[1].replace("K", "")) * 1000 == pytest.approx(paper.remaining_count, abs=50), row


def test_the_main_commands_quoted_last_line_is_the_shipped_runs():
    """The set-up section quotes what the main command ends with; measured/main_command/ holds that run."""
    import train

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"It ends with `(fcn_signed: [^`]+)`", readme).group(1)
    shipped = json.loads((MEASURED / "main_command" / "fcn_signed" / "summary.json").read_text())
    assert quoted == train.summary_line("fcn_signed", shipped)   # the summary train.py printed the line from
    assert "`measured/main_command/fcn_signed/`" in readme
