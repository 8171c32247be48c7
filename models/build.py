"""Model building: a family by name (``build_model``) and the model an experiment config describes.

The families and their options come from ``models/registry.py``; this module turns them
into Keras models, with initial values drawn on the fly or loaded from init files
(``init.source``: ``auto`` uses a run's files when they exist).
"""
import os
from dataclasses import dataclass
from pathlib import Path

from fileio import file_sha256
from masking.init_files import InitFileError, apply_init_file, init_file_path, load_init_file
from masking.init_spec import DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION, DEFAULT_WEIGHTS_DIR, InitSpec
from masking.messages import shown
from models.conv import build_conv
from models.fcn import build_fcn
from models.layer_factory import LayerFactory
from models.registry import NUM_CLASSES, default_layout, layout_folder, model_family
from models.resnet import build_resnet


def build_model(name, signed=True, *, seed=DEFAULT_SEED, threshold_fraction=DEFAULT_THRESHOLD_FRACTION,
                weight_init=None, score_init=None, mask_mode="signed", keep_fraction=None, **options):
    """An uncompiled Keras model ``name`` (FCN, Conv2/4/6/8, ResNet20/56/110).

    ``signed=False`` gives the baseline (ordinary trainable Dense/Conv2D, no biases).
    ``weight_init`` / ``score_init``: InitSpecs or their dicts (None: the paper's defaults).
    ``mask_mode`` / ``keep_fraction``: the mask rule of the masked layers (masking/mask_rule.py).
    ``options`` go to the family's builder: ``width_multiplier``, ``num_classes`` (default:
    that of the family's paper dataset), ``input_shape`` and the family's own options
    (``ModelFamily.options``, e.g. ``head_activation`` for Conv nets).
    """
    family = model_family(name)
    options.setdefault("num_classes", family.num_classes)
    factory = LayerFactory(signed=signed, seed=seed, threshold_fraction=threshold_fraction,
                           weight_init=weight_init, score_init=score_init, mask_mode=mask_mode,
                           keep_fraction=keep_fraction)
    if family.kind == "fcn":
        return build_fcn(factory, hidden_units=family.widths, **options)
    if family.kind == "conv":
        return build_conv(factory, stage_widths=family.widths, name=family.name, scale_head=family.scale_head,
                          **options)
    return build_resnet(factory, depth=family.depth, name=family.name, stage_widths=family.widths, **options)


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


def _creating_command(config, run_index):
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


def _missing_file(path, config, run_index):
    return InitFileError(f"{path}: missing init file; create it with: {_creating_command(config, run_index)}")


def resolve_initial_values(config, run_index):
    """The InitialValues of run ``run_index``, file by file: ``auto`` loads each of the run's files
    that exists and draws the others on the fly; under ``files`` a missing file names the command
    that writes it."""
    requested = config.init.source
    files = initial_value_files(config, run_index)
    if requested == "on_the_fly":
        return InitialValues(requested, "on_the_fly", drawn=tuple(kind for kind, _, _ in files))
    missing = [path for _, _, path in files if not Path(path).is_file()]
    if missing and requested == "files":
        raise _missing_file(missing[0], config, run_index)
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


def build_experiment_model(config, seed, initial_values=None):
    """The config's model with its initial values: drawn on the fly from the seed, or loaded from the
    files ``initial_values`` (default: resolve_initial_values of run ``seed - config.seed``) names."""
    model_config = config.model
    options = {key: getattr(model_config, key) for key in model_family(model_config.name).options}
    model = build_model(model_config.name, signed=model_config.signed, seed=seed,
                        threshold_fraction=model_config.threshold_fraction, weight_init=config.init.weight,
                        score_init=config.init.mask, mask_mode=model_config.mask_mode,
                        keep_fraction=model_config.keep_fraction, width_multiplier=model_config.width_multiplier,
                        num_classes=NUM_CLASSES[config.data.dataset], **options)
    if initial_values is None:
        initial_values = resolve_initial_values(config, seed - config.seed)
    load_initial_files(model, config, seed - config.seed, [entry["kind"] for entry in initial_values.files])
    return model


def load_initial_files(model, config, run_index, kinds=None):
    """Load the init_example.py pickles of this run (only those of ``kinds``, default all); a missing one
    names the command that writes it, a file of another model, shape, initializer, seed or run is an
    InitFileError that says how to go on."""
    seed = config.seed + run_index
    for kind, spec, path in initial_value_files(config, run_index):
        if kinds is not None and kind not in kinds:
            continue
        if not Path(path).is_file():
            raise _missing_file(path, config, run_index)
        try:
            payload = load_init_file(path)
            if (payload["seed"], payload["run"]) != (seed, run_index):
                raise InitFileError(f"{path}: holds the initial values of seed {payload['seed']} (run "
                                    f"{payload['run']}), this is run {run_index} with seed {seed}")
            layout = recorded_layout(payload, config.model.name)
            for option, wanted in file_layout(config).items():
                if layout.get(option) != wanted:
                    raise InitFileError(f"{path}: made for model.{option} {shown(layout.get(option))}, "
                                        f"the config asks for {shown(wanted)}")
            try:
                initializer = InitSpec.of(payload.get("initializer"))
            except (TypeError, ValueError):
                raise InitFileError(f"{path}: unreadable initializer {shown(payload.get('initializer'))}") from None
            if initializer != InitSpec.of(spec):
                raise InitFileError(f"{path}: made with initializer {initializer}, "
                                    f"the config asks for {InitSpec.of(spec)}")
            apply_init_file(model, path, kind, payload)
        except InitFileError as error:
            command = _creating_command(config, run_index).rsplit(" --out ", 1)[0]
            raise InitFileError(f"{error} (init.source {config.init.source}; set init.source=on_the_fly, or "
                                f"init.weights_dir to a folder written by: {command} --out FOLDER)") from None
