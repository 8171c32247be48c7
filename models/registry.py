"""The model families of the paper as one table (no Keras).

Config validation, model building, reports, the step-time bench and the export all read
this table: the name, the paper's dataset (hence the default number of classes), the
widths and depth, and which ``model.*`` options apply to the family.
"""
from dataclasses import dataclass
from typing import Optional

from masking.init_spec import DEFAULT_SEED

NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}
BN_MODES = ("none", "frozen", "stem_only", "full")
# Family-specific config options (model.<key>) and the builder kind they belong to.
OPTION_KINDS = {"head_activation": "conv", "bn_mode": "resnet", "extra_head": "resnet",
                "projection_every": "resnet"}
KIND_LABELS = {"fcn": "the FCN", "conv": "Conv nets", "resnet": "ResNets"}
KIND_DATASETS = {"fcn": ("mnist",), "conv": ("cifar10", "cifar100"), "resnet": ("cifar10", "cifar100")}


@dataclass(frozen=True)
class ModelFamily:
    """One named architecture of the paper."""

    name: str
    kind: str                     # the builder: fcn (models/fcn.py), conv (models/conv.py), resnet (models/resnet.py)
    dataset: str                  # the paper's dataset for this family
    widths: tuple                 # FCN: hidden units; Conv: filters per stage; ResNet: filters per stage
    depth: Optional[int] = None   # ResNets: 6n + 2 layers
    scale_head: bool = True       # False: width_multiplier leaves the 256-unit head alone (authors' Conv8)

    @property
    def num_classes(self):
        """The default output width: the classes of the paper's dataset."""
        return NUM_CLASSES[self.dataset]

    @property
    def options(self):
        """The ``model.*`` config keys that apply to this family."""
        return tuple(key for key, kind in OPTION_KINDS.items() if kind == self.kind)

    @property
    def datasets(self):
        """The datasets this family's input layer takes."""
        return KIND_DATASETS[self.kind]

    @property
    def narrowest_layer(self):
        """Units of the family's narrowest layer at width_multiplier 1 (config validation needs it)."""
        head = CONV_HEAD_UNITS if self.kind == "conv" and self.scale_head else ()
        return min(self.widths + head)

    def width_multiplier_problem(self, multiplier):
        """Why ``multiplier`` cannot build this family (it leaves the narrowest layer no unit), or None."""
        narrowest = self.narrowest_layer
        if int(narrowest * multiplier) >= 1:
            return None
        return (f"{multiplier:g} leaves no unit in the narrowest {self.name} layer ({narrowest} units); "
                f"use >= {1 / narrowest:g}")

    def default_bn_mode(self, signed):
        """ResNets: what the authors' submitted code ran (baselines real BN; signed ResNet20 a real
        stem BN only; signed ResNet56/110 frozen BNs everywhere). None for the other families."""
        if self.kind != "resnet":
            return None
        return default_bn_mode(self.depth, signed)


def default_bn_mode(depth, signed):
    """The authors' BN layout of a ResNet of ``depth`` (see ModelFamily.default_bn_mode)."""
    if not signed:
        return "full"
    return "stem_only" if depth == 20 else "frozen"


CONV_HEAD_UNITS = (256, 256)
RESNET_STAGE_WIDTHS = (16, 32, 64)

MODEL_FAMILIES = {family.name: family for family in (
    ModelFamily("FCN", "fcn", "mnist", (300, 100)),
    ModelFamily("Conv2", "conv", "cifar10", (64,)),
    ModelFamily("Conv4", "conv", "cifar10", (64, 128)),
    ModelFamily("Conv6", "conv", "cifar10", (64, 128, 256)),
    ModelFamily("Conv8", "conv", "cifar10", (64, 128, 256, 512), scale_head=False),
    ModelFamily("ResNet20", "resnet", "cifar10", RESNET_STAGE_WIDTHS, depth=20),
    # The ResNet56/110 headline rows are CIFAR-100, so they default to 100 classes.
    ModelFamily("ResNet56", "resnet", "cifar100", RESNET_STAGE_WIDTHS, depth=56),
    ModelFamily("ResNet110", "resnet", "cifar100", RESNET_STAGE_WIDTHS, depth=110),
)}
MODEL_NAMES = tuple(MODEL_FAMILIES)


def model_family(name):
    """The family called ``name``; a ValueError lists the valid names."""
    if name not in MODEL_FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return MODEL_FAMILIES[name]


# The options that decide which layers (and shapes) an init file covers, and their names in its folder.
LAYOUT_TAGS = {"width_multiplier": "width", "num_classes": "classes", "projection_every": "projection",
               "extra_head": "extrahead"}


def default_layout(name):
    """The layout options of family ``name`` at their defaults."""
    return {"width_multiplier": 1.0, "num_classes": model_family(name).num_classes, "projection_every": None,
            "extra_head": False}


def layout_folder(name, layout, base_seed=DEFAULT_SEED):
    """The init files' folder of model ``name`` with ``layout`` and base seed: the name for the default
    layout and seed, else the name and every option that differs (``ResNet20_width2``, ``ResNet56_classes10``,
    ``ResNet110_projection9``, ``FCN_seed100``), so files of two layouts or seeds never share a path (and
    ``--set seed=100`` under init.source auto draws its values instead of stopping on seed 7531's files)."""
    defaults = default_layout(name)
    tags = [LAYOUT_TAGS[option] + ("" if value is True else f"{value:g}")
            for option, value in layout.items() if value != defaults[option]]
    if base_seed != DEFAULT_SEED:
        tags.append(f"seed{base_seed}")
    return "_".join([name, *tags])
