"""Model building: a family by name (``build_model``) and the model an experiment config describes.

The families and their options come from ``models/registry.py``; this module turns them
into Keras models, with initial values drawn on the fly or loaded from init files.
"""
from pathlib import Path

from data.datasets import NUM_CLASSES
from masking.init_files import InitFileError, apply_init_file, init_file_path
from masking.init_spec import DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION
from models.conv import build_conv
from models.fcn import build_fcn
from models.layer_factory import LayerFactory
from models.registry import model_family
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


def build_experiment_model(config, seed):
    """The config's model with its initial values (on the fly from the seed, or from files)."""
    model_config = config.model
    options = {key: getattr(model_config, key) for key in model_family(model_config.name).options}
    model = build_model(model_config.name, signed=model_config.signed, seed=seed,
                        threshold_fraction=model_config.threshold_fraction, weight_init=config.init.weight,
                        score_init=config.init.mask, mask_mode=model_config.mask_mode,
                        keep_fraction=model_config.keep_fraction, width_multiplier=model_config.width_multiplier,
                        num_classes=NUM_CLASSES[config.data.dataset], **options)
    if config.init.source == "files":
        load_initial_files(model, config, seed - config.seed)
    return model


def load_initial_files(model, config, run_index):
    """Load the init_example.py pickles of this run; a missing one names the command that writes it."""
    if config.model.signed:
        kinds = (("weights", config.init.weight), ("scores", config.init.mask))
        init_flags = f"--weight-init {config.init.weight} --score-init {config.init.mask}"
    else:
        kinds = (("baseline", config.init.weight),)
        init_flags = f"--baseline-init {config.init.weight}"
    for kind, spec in kinds:
        path = init_file_path(config.init.weights_dir, config.model.name, kind, spec, run_index)
        if not Path(path).is_file():
            command = (f"python init_example.py --model {config.model.name} --runs {run_index + 1} {init_flags} "
                       f"--width-multiplier {config.model.width_multiplier:g} "
                       f"--num-classes {NUM_CLASSES[config.data.dataset]} --out {config.init.weights_dir}")
            raise InitFileError(f"{path}: missing init file; create it with: {command}")
        apply_init_file(model, path, kind)
