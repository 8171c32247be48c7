"""The table of docs/cifar_runs.md's gap section is current: every row's last epoch, best epoch and
last-10-epoch mean ± sd equal what its shipped history in measured/ says (the README's own table is
checked by test_readme_numbers.py)."""
import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gap_rows():
    """[(experiment, cells)] of the table under '## The gap to the paper' (the run's name in backticks)."""
    text = (ROOT / "docs" / "cifar_runs.md").read_text(encoding="utf-8")
    section = text.split("## The gap to the paper", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and "`" in line.split("|")[1]:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.append((re.search(r"`(\w+)`", cells[0]).group(1), cells))
    return rows


ROWS = gap_rows()


def test_the_gap_table_has_the_finished_rows():
    assert {"conv2_signed", "conv2_baseline", "conv4_signed", "conv4_baseline", "resnet20_signed"} <= \
           {name for name, _ in ROWS}


@pytest.mark.parametrize("name,cells", ROWS, ids=[name for name, _ in ROWS])
def test_gap_row_equals_the_shipped_history(name, cells):
    history = json.loads((ROOT / "measured" / name / "run_0" / "history.json").read_text())
    accuracy = [100 * value for value in history["test_accuracy"]]
    # remaining_percent starts with the initial masks' value: entry i is the one after epoch i
    remaining = history.get("remaining_percent") if "signed" in name else None
    last, best, level = cells[1], cells[2], cells[3]
    expected_last = f"{accuracy[-1]:.2f}" + (f" @ {remaining[-1]:.2f} %" if remaining else "")
    assert last == expected_last, name
    best_epoch = max(range(len(accuracy)), key=accuracy.__getitem__) + 1
    expected_best = f"{accuracy[best_epoch - 1]:.2f} (ep. {best_epoch})"
    if remaining:
        expected_best += f" @ {remaining[best_epoch]:.2f} %"
    assert best == expected_best, name
    last_ten = accuracy[-10:]
    assert level == f"{statistics.mean(last_ten):.2f} ± {statistics.stdev(last_ten):.2f}", name
