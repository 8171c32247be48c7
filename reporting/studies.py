"""The report of a study (training/study.py), by the hook its ``report:`` key names (training.study.REPORTS
says what each writes; docs/STUDY.md lists them). Every hook reads the runs through reporting.collect from
each experiment's folder (``folders``: name -> path, as training.study.results_folder names them), writes
through fileio and reporting.figures.save_figure, and returns (the report's text, the files written).

The tables of runs_table and mask_modes show each experiment's ``label`` and mark one whose finished runs
ran otherwise than the study defines it (the command line's --set): shorter, as report.py marks a run
shorter than its paper row (reporting/protocol.py), or with any other result-changing key named.
"""
import hashlib
import json
from pathlib import Path

from fileio import atomic_write_text
from reporting.collect import config_value, read_experiment
from reporting.paper import DATASET_LABELS
from reporting.protocol import compare_configs, compared_values
from reporting.tables import markdown_table, mean_range_text
from training.run_record import is_finite_number
from training.schema import shown
from training.study import results_folders, study_config

MODE_COLOURS = {"signed": "#2166ac", "binary": "#e08214", "signed_top_k": "#1b7837", "top_k": "#c0392b",
                "bernoulli": "#762a83"}


def finished_experiment(experiment_dir, name):
    """(the experiment read once from its folder, [(test accuracy %, remaining %)] of its finished runs);
    (None, []) without the folder."""
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        return None, []
    experiment = read_experiment(experiment_dir, name)
    return experiment, [(run.accuracy, run.remaining_percent) for run in experiment.finished]


def run_differently(study, name, experiment):
    """How the saved config of ``experiment`` (its finished runs) departs from the study's definition of
    experiment ``name``, i.e. the command line's --set: '2/100 ep, 2000 train images' where it plans fewer
    epochs, images or passes (reporting/protocol.py's LENGTH_KEYS), 'training.epochs=40' for any other
    result-changing key (a matched keep fraction is the experiment's own); '' when it ran as defined or
    without a readable config."""
    if not isinstance(experiment.config, dict):
        return ""
    defined = compared_values(study_config(study, name))
    if study.experiments[name].match_keep_fraction_of is not None:
        defined.pop("model.keep_fraction")
    check = compare_configs(experiment.config, defined, f"{study.path.stem}: {name}")
    other = [f"{key}={shown(ours, 30)}" for key, ours, _ in check.other]
    if len(other) > 3:
        other[3:] = [f"{len(other) - 3} more"]
    return ", ".join([check.marker, *other] if check.marker else other)


def listed_experiments(study, folders):
    """(entry, experiment, points, name cell) of every experiment with a finished run, in study order;
    the name cell says how it ran otherwise than the study defines it ('name (2/100 ep)')."""
    for name, entry in study.experiments.items():
        experiment, points = finished_experiment(folders[name], name)
        if points:
            marker = run_differently(study, name, experiment)
            yield entry, experiment, points, f"{name} ({marker})" if marker else name


def labelled(study):
    """Whether the tables get a label column: not where the study labels no experiment (it would be empty)."""
    return any(entry.label for entry in study.experiments.values())


def runs_table(study, folders):
    """One line per experiment with a finished run: its label, config and overrides (the study's ``set:``
    for all, then its own), runs, mean [min, max]."""
    rows, label = [], labelled(study)
    for entry, _, points, cell in listed_experiments(study, folders):
        rows.append([cell, *([entry.label or "–"] if label else []),
                     f"`{entry.config}` {' '.join([*study.set, *entry.set])}".rstrip(), str(len(points)),
                     mean_range_text([p[0] for p in points]), mean_range_text([p[1] for p in points])])
    header = ["experiment", *(["label"] if label else []), "config and overrides", "runs", "test accuracy %",
              "remaining %"]
    return markdown_table(header, rows) + "\n"


def mask_modes_table(study, folders):
    """Every experiment with a finished run: its label, mask mode and keep fraction (from its saved config)."""
    rows, label = [], labelled(study)
    for entry, experiment, points, cell in listed_experiments(study, folders):
        keep_fraction = config_value(experiment.config, "model", "keep_fraction")
        k = f"{100 * keep_fraction:.2f} %" if is_finite_number(keep_fraction) else "–"
        rows.append([cell, *([entry.label or "–"] if label else []), experiment.mask_mode, f"`{entry.config}`", k,
                     str(len(points)), mean_range_text([p[0] for p in points]),
                     mean_range_text([p[1] for p in points])])
    header = ["row", *(["label"] if label else []), "mode", "config", "k", "runs", "test accuracy %", "remaining %"]
    return markdown_table(header, rows) + "\n"


def mask_modes_figure(study, folders, path):
    """Test accuracy vs remaining %, one point per run, colour per mode; False when nothing is finished."""
    from reporting.figures import label_log_axis, plt, save_figure

    rows, models = [], set()
    for name in study.experiments:
        experiment, points = finished_experiment(folders[name], name)
        if points:
            rows.append((name, experiment.mask_mode, points))
            models.add(f"{experiment.model} / {DATASET_LABELS.get(experiment.dataset, experiment.dataset)}")
    if not rows:
        return False
    fig, axis = plt.subplots(figsize=(6.4, 4.4))
    markers = "osD^v<>p"
    for index, (name, mode, points) in enumerate(rows):
        axis.scatter([p[1] for p in points], [p[0] for p in points], color=MODE_COLOURS.get(mode, "grey"),
                     marker=markers[index % len(markers)], label=f"{name} ({len(points)})", alpha=0.8)
    axis.set_xscale("log")
    label_log_axis(axis.xaxis)
    axis.set_xlabel("remaining weights % (log)")
    axis.set_ylabel("test accuracy %")
    axis.set_title(f"{', '.join(sorted(models))}: mask modes")
    axis.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def report_mask_modes(study, out_root, folders, draw=True, data_dir=None, tag=""):
    table, figure = (Path(out_root) / f"mask_modes{tag}{suffix}" for suffix in (".md", ".png"))
    text = mask_modes_table(study, folders)
    atomic_write_text(table, text)
    written = [table]
    if draw and mask_modes_figure(study, folders, figure):
        written.append(figure)
    return text, written


def report_runs_table(study, out_root, folders, draw=True, data_dir=None, tag=""):
    path = Path(out_root) / f"{study.path.stem}{tag}.md"
    text = runs_table(study, folders)
    atomic_write_text(path, text)
    return text, [path]


def report_paper(study, out_root, folders, draw=True, data_dir=None, tag=""):
    """report.py's report of every experiment under ``out_root`` (runs of any --set included, marked as
    report.py marks them, so it takes no tag); its tables are in the files, not printed."""
    from reporting.report import write_report

    written = write_report(out_root, data_dir=data_dir, draw=draw)
    return "", [written["md"], written["csv"], written["tex"], *written["figures"]]


def report_fcn_seeds(study, out_root, folders, draw=True, data_dir=None, tag=""):
    from reporting.brackets import write_seed_report

    return write_seed_report(study, out_root, folders, draw, tag)


def report_agreement(study, out_root, folders, draw=True, data_dir=None, tag=""):
    from reporting.agreement import write_agreement

    return write_agreement(study, out_root, folders, tag)


HOOKS = {"none": None, "paper": report_paper, "mask_modes": report_mask_modes, "fcn_seeds": report_fcn_seeds,
         "agreement": report_agreement, "runs_table": report_runs_table}


def write_study_report(study, out_root, draw=True, data_dir=None, overrides=()):
    """(text, written paths) of the study's report hook over the experiments' folders under ``out_root``
    (those of the command line's ``overrides``: training.study.results_folder); ("", []) without a hook.
    The report of runs with result-changing overrides carries their folders' suffix in its file names
    (``fcn_seeds+training.epochs=1.md``), so a smoke run's report never replaces the study's own."""
    hook = HOOKS[study.report]
    if hook is None:
        return "", []
    Path(out_root).mkdir(parents=True, exist_ok=True)
    folders = results_folders(study, overrides)
    paths = {name: Path(out_root) / folder for name, folder in folders.items()}
    return hook(study, out_root, paths, draw=draw, data_dir=data_dir, tag=report_tag(folders, overrides))


def report_tag(folders, overrides):
    """'' for the study's own runs; else the suffix their folders carry ('+training.epochs=1'), or, where
    the overrides change the experiments differently, '+' and a hash of the overrides."""
    suffixes = {folder[len(name):] for name, folder in folders.items() if folder != name}
    if len(suffixes) <= 1:
        return next(iter(suffixes), "")
    return "+" + hashlib.sha256(json.dumps(sorted(overrides)).encode()).hexdigest()[:8]
