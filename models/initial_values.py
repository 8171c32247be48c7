"""Where a run's initial values come from (``init.source``): its init_example.py files, or drawn on the fly
from the seed. Keras-free, so train.py can find a missing file before it claims a results folder."""
import os
from dataclasses import dataclass
from pathlib import Path

from fileio import file_sha256
from masking.init_paths import InitFileError, init_file_path
from masking.init_spec import DEFAULT_SEED, DEFAULT_WEIGHTS_DIR
from models.registry import NUM_CLASSES, default_layout, layout_folder, model_family


@dataclass(frozen=True)
class InitialValues:
    """Where a run's initial values come from, file by file: ``files`` lists {kind, path, sha256} of
    the init files loaded, ``drawn`` the kinds drawn on the fly from the seed; ``source`` sums it up
    (``files``, ``on_the_fly``, or ``mixed`` when ``init.source: auto`` found only some files)."""

    requested: str
    source: str
    files: tuple = ()
    drawn: tuple = ()

    def to_json(self):
        return {"requested": self.requested, "source": self.source, "files": [dict(entry) for entry in self.files],
                "drawn": list(self.drawn)}

    def describe(self):
        parts = [f"{entry['kind']} from {entry['path']} (sha256 {entry['sha256'][:12]})" for entry in self.files]
        parts += [f"{kind} drawn on the fly from the seed" for kind in self.drawn]
        return f"initial values (init.source {self.requested}): {', '.join(parts)}"


def weights_root(config):
    """The folder of init files: ``init.weights_dir``; at its default, $SUPERMASK_WEIGHTS_DIR when set."""
    if config.init.weights_dir == DEFAULT_WEIGHTS_DIR:
        return os.environ.get("SUPERMASK_WEIGHTS_DIR") or DEFAULT_WEIGHTS_DIR
    return config.init.weights_dir


def initial_value_files(config, run_index):
    """[(kind, InitSpec, path)] of the init_example.py files of this run (signed: weights and scores)."""
    kinds = ((("weights", config.init.weight), ("scores", config.init.mask)) if config.model.signed
             else (("baseline", config.init.weight),))
    folder = layout_folder(config.model.name, file_layout(config), config.seed)
    return [(kind, spec, init_file_path(weights_root(config), folder, kind, spec, run_index)) for kind, spec in kinds]


def file_layout(config):
    """The model options that decide which layers an init file covers, as the config asks for them."""
    layout = {"width_multiplier": config.model.width_multiplier, "num_classes": NUM_CLASSES[config.data.dataset]}
    if model_family(config.model.name).kind == "resnet":
        layout.update(projection_every=config.model.projection_every, extra_head=config.model.extra_head)
    return layout


def recorded_layout(payload, model_name):
    """The same options as an init file records them (init_example.py writes only the ones it was given)."""
    return {**default_layout(model_name), **payload.get("options", {})}


def creating_command(config, run_index):
    if config.model.signed:
        init_flags = f"--weight-init {config.init.weight} --score-init {config.init.mask}"
    else:
        init_flags = f"--baseline-init {config.init.weight}"
    # init_example.py's flag of each layout option: an option's value, a bare flag for true, nothing when unset.
    layout_flags = [f"--{option.replace('_', '-')}" + ("" if value is True else f" {value:g}")
                    for option, value in file_layout(config).items() if value is not None and value is not False]
    seed_flag = "" if config.seed == DEFAULT_SEED else f" --seed {config.seed}"
    return (f"python init_example.py --model {config.model.name} --runs {run_index + 1}{seed_flag} {init_flags} "
            f"{' '.join(layout_flags)} --out {weights_root(config)}")


def missing_file_error(path, config, run_index):
    return InitFileError(f"{path}: missing init file; create it with: {creating_command(config, run_index)}")


def check_init_files(config, run_indices):
    """Under ``init.source: files``, a missing file of any of ``run_indices`` is an InitFileError that names
    the command writing it; other sources draw what is missing."""
    if config.init.source != "files":
        return
    for run_index in run_indices:
        for _, _, path in initial_value_files(config, run_index):
            if not Path(path).is_file():
                raise missing_file_error(path, config, run_index)


def resolve_initial_values(config, run_index):
    """The InitialValues of run ``run_index``, file by file: ``auto`` loads each of the run's files
    that exists and draws the others on the fly; under ``files`` a missing file names the command
    that writes it."""
    requested = config.init.source
    files = initial_value_files(config, run_index)
    if requested == "on_the_fly":
        return InitialValues(requested, "on_the_fly", drawn=tuple(kind for kind, _, _ in files))
    check_init_files(config, [run_index])
    missing = [path for _, _, path in files if not Path(path).is_file()]
    entries = []
    for kind, _, path in files:
        if path in missing:
            continue
        try:
            digest = file_sha256(path)
        except OSError as error:
            raise InitFileError(f"{path}: unreadable init file ({error.strerror or error})") from None
        entries.append({"kind": kind, "path": str(path), "sha256": digest})
    drawn = tuple(kind for kind, _, path in files if path in missing)
    source = "files" if not drawn else "on_the_fly" if not entries else "mixed"
    return InitialValues(requested, source, tuple(entries), drawn)
