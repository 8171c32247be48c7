"""Read a results tree into plain records, tolerating every kind of partial result.

The run files are the truth: ``summary.json`` may be stale while runs still train, so the
report reads each ``run.json`` itself. A run is *finished* (run.json status finished with
final metrics), *running* (a checkpoint but no finished run.json, and no sign that its job ended), *unfinished*
(a checkpoint whose job on this host is gone, or only the history of a run that stopped training, as shipped in
measured/), *failed*, *corrupt*
(unreadable JSON or missing fields) or *empty* (a folder with neither). Nothing here raises
on bad files; problems end up in ``RunStatus.detail`` / ``Experiment.problems``.
"""
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fileio import UnreadableFileError, claim_path, read_json, run_folder_index
from reporting.paper import architecture_label, match_paper_row
from training.config import ExperimentConfig
from training.yaml_files import read_yaml_mapping
from training.results import run_folders
from training.run_state import CHECKPOINT, DamagedState, checkpoint_history, read_checkpoint_state
from training.run_record import RunRecord, is_finite_number
from training.schema import ConfigError, shown


@dataclass
class RunStatus:
    """One run folder as the report shows it; metrics in percent (accuracy converted from run.json's fraction)."""

    index: int
    path: Path
    status: str
    detail: str = ""
    accuracy: Optional[float] = None
    remaining_percent: Optional[float] = None
    remaining_count: Optional[int] = None
    history: Optional[dict] = None


@dataclass
class Experiment:
    """An experiment folder with its resolved config (raw YAML) and run records."""

    name: str
    path: Path
    config: Optional[dict]
    runs: list
    problems: list = field(default_factory=list)

    @property
    def model(self):
        return config_value(self.config, "model", "name")

    @property
    def dataset(self):
        return config_value(self.config, "data", "dataset")

    @property
    def width_multiplier(self):
        """NaN when the config holds no number, so that it matches no paper row."""
        width = config_value(self.config, "model", "width_multiplier", schema_default("model", "width_multiplier"))
        return float(width) if is_finite_number(width) else math.nan

    @property
    def signed(self):
        """False without a readable config, so nothing is drawn or matched as signed."""
        return self.config is not None and bool(config_value(self.config, "model", "signed",
                                                             schema_default("model", "signed")))

    @property
    def mask_mode(self):
        """The mask rule (model.mask_mode); configs from before the switch count at the schema's default."""
        return config_value(self.config, "model", "mask_mode", schema_default("model", "mask_mode"))

    @property
    def label(self):
        return architecture_label(self.model, self.width_multiplier)

    @property
    def paper_row(self):
        """Only the paper's own rule (signed) can fill a paper row; other mask modes go to the second table."""
        if not self.model or (self.signed and self.mask_mode != "signed"):
            return None
        return match_paper_row(self.model, self.width_multiplier, self.dataset)

    @property
    def finished(self):
        return [run for run in self.runs if run.status == "finished"]

    def status_counts(self):
        """{status: count} over the run folders plus 'missing' runs the config asked for."""
        counts = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        expected = (self.config or {}).get("runs")
        present = {run.index for run in self.runs}
        if isinstance(expected, int):   # counted, never listed: a hand-edited runs may be 10**12
            missing = expected - sum(1 for index in present if 0 <= index < expected)
            if missing > 0:
                counts["missing"] = missing
        return counts


def schema_default(section, key):
    """The schema's default of ``section.key`` (training/config.py), for saved configs written before the key."""
    return getattr(getattr(ExperimentConfig(), section), key)


def config_value(config, section, key, default=None):
    """config[section][key] of a raw YAML dict, ``default`` wherever the structure is missing or wrong."""
    node = config.get(section) if isinstance(config, dict) else None
    return node.get(key, default) if isinstance(node, dict) else default


def _read_json(path):
    """(payload, problem): payload None when the file is missing or unreadable."""
    try:
        return read_json(path), ""
    except UnreadableFileError as error:
        return None, error.brief


def read_run(path, index, planned_epochs=None):
    """A RunStatus for ``path`` (never raises)."""
    try:
        record = RunRecord.read(path)
    except UnreadableFileError as error:
        return RunStatus(index, path, "corrupt", error.brief)
    except ValueError as error:   # RunRecordError: JSON, but not a run record
        return RunStatus(index, path, "corrupt", str(error))
    if record is None:
        try:
            epochs = read_checkpoint_state(path / CHECKPOINT)["epochs"]
        except (DamagedState, KeyError) as damage:   # none, or damaged
            if not (path / CHECKPOINT).exists():
                return _stopped_run(path, index, planned_epochs)
            return RunStatus(index, path, "corrupt", f"{CHECKPOINT} unreadable ({str(damage)[:120]}); the same "
                             "command sets it aside and trains the run again")
        ended = ended_job(path.parent, index)
        if ended is None:
            return RunStatus(index, path, "running", f"after epoch {epochs}/{planned_epochs or '?'}")
        history = checkpoint_history(path)
        return RunStatus(index, path, "unfinished", f"stopped after epoch {epochs}/{planned_epochs or '?'} "
                         f"(its job, {ended}, ended; the same command resumes it)",
                         history=history if _plottable(history) else None)
    if not record.finished:
        return RunStatus(index, path, "failed" if record.status == "failed" else "corrupt",
                         str(record.reason)[:160] if record.reason else f"status {shown(record.status)}")
    history, problem = _read_json(path / "history.json")
    if history is not None and not _plottable(history):
        history, problem = None, "history.json lacks numeric test_accuracy / remaining_percent lists"
    final = record.final
    return RunStatus(index, path, "finished", problem, accuracy=100.0 * final["test_accuracy"],
                     remaining_percent=float(final["remaining_percent"]),
                     remaining_count=int(final["remaining_count"]), history=history)


def ended_job(experiment_dir, index):
    """"pid N" when the run's claim names a job on this host that no longer exists (killed or interrupted),
    else None: still running, on another host, or never claimed (then it counts as running)."""
    try:
        holder = claim_path(experiment_dir, index).read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None
    if len(holder) != 4 or holder[0] != "pid" or not holder[1].isdigit() or holder[3] != socket.gethostname():
        return None
    try:
        os.kill(int(holder[1]), 0)
    except ProcessLookupError:
        return f"pid {holder[1]}"
    except (PermissionError, OverflowError):   # alive under another user; a pid beyond the platform's range
        return None
    return None


def _stopped_run(path, index, planned_epochs):
    """A run without run.json or checkpoint: a shipped run that was still training (measured/) has
    its history so far; a folder with neither is empty."""
    history, problem = _read_json(path / "history.json")
    if isinstance(history, dict) and isinstance(history.get("train_loss"), list):
        return RunStatus(index, path, "unfinished",
                         f"stopped after epoch {len(history['train_loss'])}/{planned_epochs or '?'}",
                         history=history if _plottable(history) else None)
    return RunStatus(index, path, "empty", problem or "no run.json and no checkpoint")


def _plottable(history):
    """The per-epoch series the figures draw: lists of finite numbers."""
    return isinstance(history, dict) and all(
        isinstance(history.get(key), list) and all(is_finite_number(v) for v in history[key])
        for key in ("test_accuracy", "remaining_percent"))


def _read_config(directory):
    """The experiment's resolved config: its own config.yaml, else the first readable run's."""
    candidates = [directory / "config.yaml"] + sorted(directory.glob("run_*/config.yaml"))
    problems = []
    for path in candidates:
        if not path.exists():
            continue
        try:   # bounded YAML: a results folder is as untrusted as any file
            return read_yaml_mapping(path), problems
        except ConfigError as error:
            problems.append(f"{path.relative_to(directory)} unreadable ({str(error).removeprefix(f'{path}: ')})")
    return None, problems + ["no readable config.yaml: cannot match a paper row"]


def read_experiment(directory, name):
    config, problems = _read_config(directory)
    epochs = config_value(config, "training", "epochs")
    runs = [read_run(path, index, epochs) for index, path in run_folders(directory)]
    return Experiment(name, directory, config, runs, problems)


def _is_experiment_dir(directory):
    return (directory / "config.yaml").is_file() or bool(run_folders(directory))


def find_experiments(root):
    """Every experiment folder under ``root`` (nested studies too), sorted by relative name."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: results root is not a directory")
    if run_folder_index(root.name) is not None and any((root / name).is_file()
                                                       for name in ("run.json", "history.json", CHECKPOINT)):
        raise ValueError(f"{root}: a run folder; give the results root that holds its experiment, "
                         f"e.g. {root.absolute().parent.parent}")
    experiments = []
    for directory in sorted([root] + [path for path in root.rglob("*") if path.is_dir()]):
        if any(run_folder_index(part) is not None for part in directory.relative_to(root).parts):
            continue
        if _is_experiment_dir(directory):
            name = directory.relative_to(root).as_posix() if directory != root else directory.name
            experiments.append(read_experiment(directory, name))
    return experiments
