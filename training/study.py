"""A study: a set of experiments (configs, overrides, seeds) and the report it produces, one YAML file
under ``configs/studies/``. ``reproduce.py STUDY`` plans, trains and reports it (training/study_run.py
trains, reporting/studies.py writes the report).

    description: what the study answers
    report: mask_modes            # the report hook (reporting/studies.py); none = no report of its own
    runs: 3                       # seeds per experiment (7531 + i) unless an experiment says otherwise
    set: [training.epochs=100]    # overrides of every experiment
    experiments:                  # trained in this order into <out>/<name>/
      signed_closest: {config: fcn_signed_closest_to_paper.yaml, label: "..."}
      top_k_matched: {config: fcn_signed_closest_to_paper.yaml, set: [model.mask_mode=top_k],
                      match_keep_fraction_of: signed_closest}

A study may start from another with ``base: other.yaml`` (experiments merge name by name, as config
sections do). Every key is checked (unknown keys, wrong types, an experiment's config and overrides);
errors are one line naming the study file and the key.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fileio import run_folder_name
from training.config import (MAX_RUNS, deep_merge, experiment_with_overrides, load_config, parse_override,
                             read_config_chain)
from training.experiment_folder import check_same_config, unfinished_runs
from training.results import run_folders, statistics
from training.run_record import RunRecord
from training.run_state import epochs_done
from training.schema import ConfigError, from_dict, option, shown

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
STUDIES = CONFIGS / "studies"
# Names of the report hooks of reporting/studies.py (tests check the two agree).
REPORTS = ("none", "paper", "mask_modes", "fcn_seeds", "agreement", "runs_table")
SIDES = ("signed", "baseline")


@dataclass
class StudyExperiment:
    config: str = option("", doc="the experiment's config file, relative to configs/")
    set: list[str] = option([], doc="dotted overrides, as train.py --set key=value")
    runs: Optional[int] = option(None, minimum=1, maximum=MAX_RUNS, doc="seeds; null = the study's runs, else the config's")
    label: str = option("", doc="what the experiment is, for the report")
    row: Optional[str] = option(None, doc="the paper row it fills or is compared with (reporting/paper.py)")
    side: Optional[str] = option(None, choices=SIDES, doc="the paper row's column it is compared with")
    match_keep_fraction_of: Optional[str] = option(None, doc="top-k modes: model.keep_fraction = that experiment's mean remaining % / 100, 4 decimals; trains after it")


@dataclass
class Study:
    description: str = option("")
    report: str = option("none", choices=REPORTS, doc="the report hook (reporting/studies.py)")
    out: Optional[str] = option(None, doc="default results root; null = results/<study file name>")
    runs: Optional[int] = option(None, minimum=1, maximum=MAX_RUNS, doc="seeds per experiment; null = each config's runs")
    set: list[str] = option([], doc="overrides of every experiment")
    experiments: dict[str, StudyExperiment] = option({}, doc="name -> experiment, trained in this order into <out>/<name>/")


@dataclass
class PlannedExperiment:
    """One experiment of a study as planned: its resolved config, which runs still train and (once
    estimated) what they cost. ``config`` is None while a matched keep fraction waits for its source."""

    name: str
    folder: str                                          # under the results root (results_folder)
    entry: StudyExperiment
    config_path: Path
    config: Optional[object]
    to_train: list
    runs: int
    resumes_after: dict = field(default_factory=dict)   # run index -> epochs its checkpoint has finished
    shipped: list = field(default_factory=list)          # run indices skipped: finished in the shipped folder
    epoch_seconds: Optional[float] = None
    compile_seconds: Optional[float] = None
    note: str = ""
    command_overrides: list = field(default_factory=list)   # the command line's --set, for every experiment
    overrides: list = field(default_factory=list)            # all of this experiment's, its folder last

    @property
    def epochs(self):
        return None if self.config is None else self.config.training.epochs

    @property
    def epochs_are_bound(self):
        """The plateau schedule stops by itself; its epochs are an upper bound."""
        return self.config is not None and self.config.training.schedule.kind == "plateau"

    def run_estimate(self, index=None):
        """Estimated seconds of one run, or None when not estimated: from scratch, or with ``index`` from
        where that run's checkpoint left it."""
        if self.epoch_seconds is None:
            return None
        left = max(self.epochs - self.resumes_after.get(index, 0), 0)
        return self.compile_seconds + left * self.epoch_seconds

    def estimate_to_train(self):
        """Estimated seconds of every run still to train (interrupted ones from their checkpoints), or None."""
        if self.epoch_seconds is None:
            return None
        return sum(self.run_estimate(index) for index in self.to_train)


def study_path(name):
    """A study file: a path as given, else configs/studies/<name>(.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return STUDIES / f"{name}.yaml"


def load_study(path):
    """Read (with its ``base:`` chain) and validate a study file; ConfigError names the file and key."""
    path = study_path(path)
    if not path.is_file():
        known = ", ".join(sorted(study.stem for study in STUDIES.glob("*.yaml")))
        raise ConfigError(f"{path}: no such study file (the studies of configs/studies/: {known})")
    raw = {}
    least = "a study names at least one experiment (experiments: {name: {config: fcn_signed.yaml}})"
    for _, own_keys in reversed(read_config_chain(path, least)):
        raw = deep_merge(raw, own_keys)
    try:
        study = from_dict(Study, raw)
        if not study.experiments:
            raise ConfigError("experiments: a study names at least one experiment", "experiments")
        names = list(study.experiments)
        for position, (name, entry) in enumerate(study.experiments.items()):
            if not entry.config:
                raise ConfigError(f"experiments.{name}.config: missing", f"experiments.{name}.config")
            config_path = (CONFIGS / entry.config).resolve()
            if CONFIGS.resolve() not in config_path.parents:
                raise ConfigError(f"experiments.{name}.config: {entry.config}: not a path under configs/",
                                  f"experiments.{name}.config")
            if not config_path.is_file():
                raise ConfigError(f"experiments.{name}.config: {entry.config}: no such file under configs/",
                                  f"experiments.{name}.config")
            source = entry.match_keep_fraction_of
            if source is not None and source not in names[:position]:
                raise ConfigError(f"experiments.{name}.match_keep_fraction_of: {shown(source)} is no experiment "
                                  "listed before it", f"experiments.{name}.match_keep_fraction_of")
    except ConfigError as error:
        hint = (f"; it reads as an experiment config: python train.py {path}"
                if error.key in ("model", "data", "training", "optimizer", "init", "seed") else "")
        raise ConfigError(f"{path}: {error}{hint}", error.key) from None
    study.path = path
    study.out = study.out or str(Path("results") / path.stem)
    return study


def results_folder(study, name, overrides=()):
    """The folder of experiment ``name`` under the results root: ``name``, or, where the command line's
    ``overrides`` change its results, the name train.py gives such a run (training.config.
    experiment_with_overrides: ``name+training.epochs=1``). So a shortened run never lands in the plain
    experiment's folder, and an experiment that is a plain config (paper_main's) trains where ``train.py
    <its config> --set ...`` does: either command resumes the other's runs. The study's own ``set:``
    entries define the experiment and name no folder (the plain config here is the study's experiment);
    a matched keep fraction counts as a placeholder, so the folder is known before k is."""
    if not overrides:
        return name
    if any(parse_override(text)[0] == "experiment" for text in overrides):
        raise ConfigError("--set experiment=...: a study names each experiment's folder itself; use --out",
                          "experiment")
    entry = study.experiments[name]
    matched = ["model.keep_fraction=1"] if entry.match_keep_fraction_of is not None else []
    config_path = CONFIGS / entry.config
    try:
        plain = load_config(config_path, [*study.set, *entry.set, *matched, f"experiment={name}"])
        changed = load_config(config_path, [*study.set, *entry.set, *overrides, *matched, f"experiment={name}"])
    except ConfigError as error:
        raise ConfigError(f"{study.path}: experiments.{name}: {error}", error.key) from None
    return experiment_with_overrides(config_path, overrides, changed, plain=plain)


def results_folders(study, overrides=()):
    """{experiment name: its folder under the results root} (results_folder), in study order."""
    return {name: results_folder(study, name, overrides) for name in study.experiments}


def matched_keep_fraction(out_root, source):
    """The mean remaining % of the finished runs in folder ``source`` as a fraction (4 decimals), or None
    before one finished."""
    remaining = [record.final["remaining_percent"] for _, record in finished_records(Path(out_root) / source)]
    stats = statistics(remaining)
    return None if stats is None else round(stats["mean"] / 100, 4)


def finished_records(experiment_dir):
    """[(run index, RunRecord)] of the finished runs of one experiment folder, by index."""
    found = []
    for index, folder in run_folders(experiment_dir):
        try:
            record = RunRecord.read_finished(folder)
        except ValueError:   # a damaged run.json: not finished
            record = None
        if record is not None:
            found.append((index, record))
    return found


def experiment_overrides(study, name, out_root, folder, overrides=()):
    """The --set overrides of one experiment (the study's, its own, the command line's, its ``folder`` as
    results_folder named it), or None while its matched keep fraction waits for a finished run of its source."""
    entry = study.experiments[name]
    sets = [*study.set, *entry.set, *overrides]
    if entry.match_keep_fraction_of is not None:
        source = results_folder(study, entry.match_keep_fraction_of, overrides)
        keep_fraction = matched_keep_fraction(out_root, source)
        if keep_fraction is None:
            return None
        sets.append(f"model.keep_fraction={keep_fraction}")
    return [*sets, f"experiment={folder}"]


def shipped_run_finished(shipped_root, folder, index, config):
    """Whether ``<shipped_root>/<folder>/run_<index>`` holds a finished run of this same config: a run
    trained on another machine and shipped (bench/ship_results.py), whose checkpoint is gone with it."""
    experiment_dir = Path(shipped_root) / folder
    if config is None or not (experiment_dir / "config.yaml").is_file():
        return False
    try:
        check_same_config(experiment_dir / "config.yaml", config)
    except ConfigError:   # shipped from another config: this one still has to train
        return False
    try:
        return RunRecord.read_finished(experiment_dir / run_folder_name(index)) is not None
    except ValueError:   # a damaged run.json: not finished
        return False


def plan_experiment(study, name, out_root, runs=None, overrides=(), shipped_root=None):
    """A PlannedExperiment of one experiment of ``study``; ConfigError names the study, experiment and key.
    With ``shipped_root`` (e.g. measured/), runs finished there with the same config are skipped too."""
    entry = study.experiments[name]
    config_path = CONFIGS / entry.config
    folder = results_folder(study, name, overrides)
    sets = experiment_overrides(study, name, out_root, folder, overrides)
    config, note = None, ""
    if sets is None:
        note = f"keep_fraction waits for a finished run of {entry.match_keep_fraction_of}"
        sets = [*study.set, *entry.set, *overrides, "model.keep_fraction=1", f"experiment={folder}"]
    try:
        checked = load_config(config_path, sets)
    except ConfigError as error:
        raise ConfigError(f"{study.path}: experiments.{name}: {error}", error.key) from None
    count = runs or entry.runs or study.runs or checked.runs
    checked.runs = count
    if not note:
        config = checked
    folders = {index: Path(out_root) / folder / run_folder_name(index) for index in range(count)}
    to_train = unfinished_runs(Path(out_root) / folder, range(count))
    shipped = [index for index in to_train
               if shipped_root is not None and shipped_run_finished(shipped_root, folder, index, config)]
    to_train = [index for index in to_train if index not in shipped]
    resumes_after = {index: done for index in to_train if (done := epochs_done(folders[index]))}
    return PlannedExperiment(name, folder, entry, config_path, config, to_train, count, resumes_after, shipped,
                             note=note, command_overrides=list(overrides), overrides=sets)


def plan_study(study, out_root, runs=None, overrides=(), only=None, shipped_root=None):
    """Every selected experiment of ``study``, validated (nothing written)."""
    names = list(study.experiments)
    unknown = [name for name in only or () if name not in names]
    if unknown:
        raise ConfigError(f"--only: {shown(unknown[0])} is no experiment of {study.path}; choose from {', '.join(names)}")
    return [plan_experiment(study, name, out_root, runs, overrides, shipped_root)
            for name in names if not only or name in only]


def resolved(planned, study, out_root):
    """``planned`` with its config once its matched keep fraction is known (planned again); None while not."""
    if planned.config is not None:
        return planned
    again = plan_experiment(study, planned.name, out_root, planned.runs, planned.command_overrides)
    return again if again.config is not None else None
