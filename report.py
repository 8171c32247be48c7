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
import os
import sys
from pathlib import Path

from reporting.collect import find_experiments
from reporting.report import write_report

OWN_RESULTS = Path("results")   # train.py's default --out, in the current folder
REPOSITORY = Path(__file__).resolve().parent


def in_repository(relative):
    """A folder of the repository's own (measured/, reports/measured/), as seen from the current folder, so
    that report.py finds the shipped runs wherever it is started."""
    return Path(os.path.relpath(REPOSITORY / relative))


def default_root():
    """results/ once it holds an experiment; before that (a fresh clone) the runs the repository ships."""
    if OWN_RESULTS.is_dir() and find_experiments(OWN_RESULTS):
        return OWN_RESULTS
    return in_repository("measured")


def default_out(root):
    """The results root itself, except for the shipped measured/: its report goes to reports/measured/."""
    return in_repository("reports/measured") if root.resolve() == (REPOSITORY / "measured") else root


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
            measured = in_repository("measured")
            shipped = "" if root == measured else f"; the shipped runs: python report.py {measured}"
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
