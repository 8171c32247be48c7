"""The paper's reference numbers and the authors' own runs (SPEC §13), stored once, and the rule that
matches an experiment to a paper row.

Every number below is copied from the authors' README, whose tables copy the paper's main
tables (SPEC §8.1/§8.2). Brackets come from README @172d8ae; their meaning (min/max, a
5-95 % interval or a CI) is unconfirmed (SPEC §8.3). The "remaining weights" counts are the
README's K figures, computed from rounded parameter totals, so they are approximate (§4.4).
Each row also names the settings that define it (``signed_recipe``, SPEC §6.1), so that
of several experiments with the row's architecture the paper's setting is preferred to ablations.
"""
from dataclasses import dataclass, field
from typing import Optional

SOURCE = ("Koster, Grothe, Rettinger: Signing the Supermask, ICLR 2022, main table as copied into "
          "the authors' README (github.com/kosnil/signed_supermasks; means @5ed213a/HEAD, brackets "
          "@172d8ae); spec: docs/SPEC.md §8.1-8.2. Bracket meaning unconfirmed (SPEC §8.3).")


@dataclass(frozen=True)
class Interval:
    """A reported mean with its optional bracket [low, high]."""

    mean: float
    low: Optional[float] = None
    high: Optional[float] = None


def _signed_recipe(threshold_fraction, score_scaling="xavier"):
    """The paper's signed setting (SPEC §6.1): ELUS signed-constant W, uniform scores, threshold p."""
    return {"model.threshold_fraction": threshold_fraction, "init.weight.distribution": "signed_constant",
            "init.weight.scaling": "elus", "init.mask.distribution": "uniform", "init.mask.scaling": score_scaling}


CONV_RECIPE, RESNET_RECIPE = _signed_recipe(0.4), _signed_recipe(0.75)
# The baseline column is most likely the ELU-initialised baseline (SPEC §2.6, unconfirmed).
BASELINE_RECIPE = {"init.weight.distribution": "uniform", "init.weight.scaling": "elu"}


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's main table; accuracies and remaining weights in percent."""

    model: str
    dataset: str
    width_multiplier: float
    parameters: int                  # exact masked-weight count (SPEC §4)
    baseline_accuracy: Interval
    signed_accuracy: Interval
    remaining_percent: Interval
    remaining_count: int             # README "K" figure x 1000, approximate
    signed_recipe: dict = field(default_factory=lambda: CONV_RECIPE)
    note: str = ""


PAPER_ROWS = {
    "FCN": PaperRow("FCN", "mnist", 1.0, 266_200, Interval(97.43, 97.4, 97.5), Interval(97.48, 97.3, 97.7),
                    Interval(3.77, 3.7, 3.8), 10_100, note="README HEAD gives the baseline as 97.42"),
    "Conv2": PaperRow("Conv2", "cifar10", 1.0, 4_300_992, Interval(68.79, 68.4, 69.2), Interval(68.37, 67.7, 69.0),
                      Interval(0.60, 0.58, 0.62), 25_800),
    "Conv4": PaperRow("Conv4", "cifar10", 1.0, 2_425_024, Interval(74.50, 74.7, 75.3), Interval(77.40, 76.7, 78.3),
                      Interval(2.91, 2.9, 3.0), 69_800, note="baseline mean lies outside its own bracket (typo)"),
    "Conv6": PaperRow("Conv6", "cifar10", 1.0, 2_261_184, Interval(75.91, 75.4, 76.4), Interval(79.17, 78.1, 80.5),
                      Interval(2.36, 1.9, 2.6), 54_300),
    "Conv8": PaperRow("Conv8", "cifar10", 1.0, 5_275_840, Interval(72.24, 71.4, 73.0), Interval(80.91, 79.9, 81.7),
                      Interval(1.17, 1.1, 1.2), 62_000, note="baseline probably ran a ReLU head (SPEC B21)"),
    "ResNet20": PaperRow("ResNet20", "cifar10", 1.0, 248_624, Interval(84.91), Interval(81.68),
                         Interval(21.13), 52_800, RESNET_RECIPE),
    "ResNet20x2": PaperRow("ResNet20", "cifar10", 2.0, 992_352, Interval(86.80), Interval(84.42),
                           Interval(7.69), 76_900, RESNET_RECIPE),
    "ResNet20x3": PaperRow("ResNet20", "cifar10", 3.0, 2_231_184, Interval(87.32), Interval(84.89),
                           Interval(4.06), 89_300, RESNET_RECIPE),
    "ResNet56": PaperRow("ResNet56", "cifar100", 1.0, 834_992, Interval(68.04), Interval(60.01),
                         Interval(29.39), 247_000, RESNET_RECIPE),
    "ResNet110": PaperRow("ResNet110", "cifar100", 1.0, 1_705_904, Interval(62.70), Interval(46.42),
                          Interval(20.64), 351_000, _signed_recipe(0.75, score_scaling="elu")),
}

DATASET_LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def match_paper_row(model_name, width_multiplier, dataset):
    """The key of the paper row with this architecture, width and dataset, or None."""
    for key, row in PAPER_ROWS.items():
        if (row.model, row.dataset) == (model_name, dataset) and float(width_multiplier) == row.width_multiplier:
            return key
    return None


def recipe_mismatches(config, key, signed):
    """How many of the paper row's defining settings a raw config dict does not share (0 = the paper's setting)."""
    recipe = PAPER_ROWS[key].signed_recipe if signed else BASELINE_RECIPE
    mismatches = 0
    for dotted, expected in recipe.items():
        node = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        mismatches += node != expected
    return mismatches


def architecture_label(model_name, width_multiplier):
    """'ResNet20x2' for widened nets, as the paper names them."""
    if model_name is None:
        return "?"
    width = float(width_multiplier)
    return model_name if width == 1.0 else f"{model_name}x{width:g}"


@dataclass(frozen=True)
class AuthorsRun:
    """One run of the authors' own code (seed 7531) as SPEC §13 reports it, after every epoch, and the
    settings of the study experiment that repeats it (configs/studies/agreement.yaml)."""

    title: str
    section: str
    settings: str
    remaining_percent: tuple   # at initialization and after each epoch
    test_accuracy: tuple       # after each epoch, in %

    @property
    def epochs(self):
        return len(self.test_accuracy)


# Keyed by the agreement study's experiment names.
AUTHORS_RUNS = {
    "agreement_conv2": AuthorsRun(
        "Conv2 / CIFAR-10", "SPEC §13.2",
        "ELUS weights ±√(3/fan_in), Glorot-uniform scores, p = 0.4, SGDW lr 0.04 / wd 5e-4, momentum 0.9 "
        "Nesterov, batch 128, schedule B (×0.9 continuously per 10 × 391 steps), reshuffled every epoch",
        remaining_percent=(59.98, 51.33, 40.98, 28.55), test_accuracy=(52.82, 57.86, 62.15)),
    "agreement_resnet20": AuthorsRun(
        "ResNet20 / CIFAR-10", "SPEC §13.3",
        "the submitted ResNet20_Mask (real stem BN, frozen block BNs), ELUS weights, Glorot-uniform scores, "
        "p = 0.75, SGDW lr 0.3 / wd 3e-4 constant (the plateau rule first acts at epoch 10), no augmentation, "
        "reshuffled every epoch",
        remaining_percent=(24.95, 17.08, 13.52), test_accuracy=(40.58, 51.10)),
}
