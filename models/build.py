"""Model building: a family by name (``build_model``) and the model an experiment config describes.

The families and their options come from ``models/registry.py``; this module turns them
into Keras models, with initial values drawn on the fly or loaded from init files
(``init.source``: ``auto`` uses a run's files when they exist).
"""
from pathlib import Path

from masking.init_files import InitFileError, apply_init_file, load_init_file
from masking.init_spec import DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION, InitSpec
from masking.messages import shown
from models.conv import build_conv
from models.fcn import build_fcn
from models.layer_factory import LayerFactory
from models.initial_values import (creating_command, file_layout, initial_value_files, missing_file_error,
                                   recorded_layout, resolve_initial_values)
from models.registry import NUM_CLASSES, model_family
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
            raise missing_file_error(path, config, run_index)
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
            command = creating_command(config, run_index).rsplit(" --out ", 1)[0]
            raise InitFileError(f"{error} (init.source {config.init.source}; set init.source=on_the_fly, or "
                                f"init.weights_dir to a folder written by: {command} --out FOLDER)") from None
