"""The experiment configuration: one typed schema for every YAML under ``configs/``.

Section names follow the authors' configs (``model``, ``init``, ``optimizer``,
``training``); ``docs/CONFIG.md`` is generated from the ``doc`` strings below
(``python -m training.config``). Authors' key names are given where they differ.
"""
import copy
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from masking.init_spec import (DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION, SIGNED_SCORE_INIT, SIGNED_WEIGHT_INIT,
                               InitSpec)
from models.registry import BN_MODES, KIND_LABELS, MODEL_FAMILIES, MODEL_NAMES, OPTION_KINDS
from training.schema import ConfigError, describe, from_dict, option, set_dotted, to_dict

SCHEDULES = ("exp_staircase", "exp_continuous", "plateau", "constant")


@dataclass
class ModelConfig:
    name: str = option("FCN", choices=MODEL_NAMES, doc="architecture")
    signed: bool = option(True, doc="true: signed supermask (only scores train); false: ordinary baseline")
    threshold_fraction: float = option(DEFAULT_THRESHOLD_FRACTION, minimum=0.0, maximum=0.999, doc="p in tau = p * max|S_0| per layer (authors: tanh_th)")
    width_multiplier: float = option(1.0, minimum=0.0, exclusive_minimum=True, doc="scales every layer width (authors: width_multiplier / filter_size_multi)")
    head_activation: str = option("elu", choices=("elu", "relu"), doc="Conv nets: activation of the two 256-unit dense layers (relu = authors' Conv8 baseline, METHOD B21)")
    bn_mode: Optional[str] = option(None, choices=BN_MODES, doc="ResNets: batch-norm mode; null = the authors' code for that model (METHOD B4)")
    extra_head: bool = option(False, doc="ResNets: the instance_2 ResNet110 extra ELU + dense head (METHOD B19)")
    projection_every: Optional[int] = option(None, minimum=1, doc="ResNets: a projection block every N blocks of a stage (9 = the authors' signed ResNet110 layout); null = only the first")


@dataclass
class InitSection:
    source: str = option("on_the_fly", choices=("on_the_fly", "files"), doc="on_the_fly: draw from the seed; files: load init_example.py pickles")
    weights_dir: str = option("weights", doc="root folder of the init_example.py pickles")
    weight: InitSpec = option(SIGNED_WEIGHT_INIT, doc="frozen weights W (baseline: its kernels)")
    mask: InitSpec = option(SIGNED_SCORE_INIT, doc="scores S")


@dataclass
class OptimizerConfig:
    name: str = option("sgdw", choices=("sgdw",), doc="SGD with decoupled weight decay (tfa SGDW)")
    lr: float = option(0.05, minimum=0.0, exclusive_minimum=True, doc="initial learning rate lr0")
    wd: float = option(5e-4, minimum=0.0, doc="decoupled weight decay in the authors' SGDW units; Keras weight_decay = wd / lr (METHOD §7)")
    momentum: float = option(0.9, minimum=0.0, maximum=1.0)
    nesterov: bool = option(True)


@dataclass
class ScheduleConfig:
    kind: str = option("exp_staircase", choices=SCHEDULES, doc="exp_staircase = METHOD §5.4 A; exp_continuous = B; plateau = C (ResNets)")
    decay_epochs: int = option(10, minimum=1, doc="A/B: epochs per decay period (authors: decay_steps)")
    decay_rate: Optional[float] = option(None, minimum=0.0, maximum=1.0, doc="A/B: factor per period; null = 0.96 for A, 0.9 for B")
    steps_per_epoch: Optional[int] = option(None, minimum=1, doc="A/B: steps counted per epoch; null = 390 for A (hard-coded by the authors), real batches for B")
    patience: int = option(15, minimum=2, doc="plateau: epochs without improvement")
    factor: float = option(0.2, minimum=0.0, maximum=1.0, exclusive_minimum=True, doc="plateau: lr multiplier per reduction")
    reductions: int = option(5, minimum=1, doc="plateau: stop training after this many reductions")
    cooldown: int = option(10, minimum=0, doc="plateau: epochs without checks after a reduction")
    start_epoch: int = option(10, minimum=0, doc="plateau: first epoch index that is checked")
    min_delta: float = option(1e-4, minimum=0.0, doc="plateau: improvement needed on the training loss")


@dataclass
class TrainingConfig:
    epochs: int = option(100, minimum=1, doc="epochs (plateau: upper bound)")
    batch_size: int = option(128, minimum=1)
    eval_batch_size: int = option(1000, minimum=1, doc="batch size for test evaluation (does not change results)")
    shuffle: bool = option(False, doc="reshuffle the training set every epoch (authors: MNIST no, CIFAR yes)")
    schedule: ScheduleConfig = option(ScheduleConfig())
    jit_compile: Optional[bool] = option(None, doc="XLA compilation of the train step; null = always on JAX, Keras 'auto' on TensorFlow (XLA only with a GPU), off on torch")
    steps_per_execution: int = option(50, minimum=1, doc="train steps per compiled call (fewer host round trips; results unchanged)")
    distribution: str = option("none", choices=("none", "mirrored", "data_parallel"), doc="mirrored: tf.distribute (TensorFlow); data_parallel: keras.distribution (JAX)")


@dataclass
class DataConfig:
    dataset: str = option("mnist", choices=("mnist", "cifar10", "cifar100"))
    dir: Optional[str] = option(None, doc="folder of Keras-layout .npz files; null = --data-dir, $SUPERMASK_DATA_DIR or keras.datasets")
    train_limit: Optional[int] = option(None, minimum=1, doc="use only the first N training images (smoke tests)")
    test_limit: Optional[int] = option(None, minimum=1, doc="use only the first N test images")
    augment: bool = option(False, doc="pad-4 / flip / crop training augmentation (authors: CIFAR-100 only)")
    repeat: int = option(1, minimum=1, doc="passes over the training set per epoch (authors: 7 for CIFAR-100)")


@dataclass
class ExperimentConfig:
    experiment: Optional[str] = option(None, doc="results/<experiment>/; null = the config file's name")
    description: str = option("", doc="free text: which paper row, where the values come from")
    runs: int = option(1, minimum=1, doc="number of runs; run i uses seed + i (authors: no_experiments)")
    seed: int = option(DEFAULT_SEED, minimum=0, doc="base seed (METHOD §2.7)")
    model: ModelConfig = option(ModelConfig())
    init: InitSection = option(InitSection())
    optimizer: OptimizerConfig = option(OptimizerConfig())
    training: TrainingConfig = option(TrainingConfig())
    data: DataConfig = option(DataConfig())

    def validate(self, prefix=""):
        """The family's own options and datasets, from the model registry (models/registry.py)."""
        family, defaults = MODEL_FAMILIES[self.model.name], ModelConfig()
        for key, kind in OPTION_KINDS.items():
            if kind != family.kind and getattr(self.model, key) != getattr(defaults, key):
                raise ConfigError(f"{prefix}model.{key}: only for {KIND_LABELS[kind]} (model.name is {family.name})")
        if self.data.dataset not in family.datasets:
            raise ConfigError(f"{prefix}data.dataset: {family.name} takes {' or '.join(family.datasets)}, "
                              f"got {self.data.dataset}")


def parse_override(text):
    """'optimizer.lr=0.01' -> ('optimizer.lr', 0.01); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(path, overrides=()):
    """Read, override and validate a YAML config; errors name the file and key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    raw = copy.deepcopy(raw)
    try:
        for override in overrides:
            set_dotted(raw, *parse_override(override))
        config = from_dict(ExperimentConfig, raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    if config.experiment is None:
        config.experiment = path.stem
    check_experiment_name(config.experiment, path)
    return config


def check_experiment_name(name, path):
    """Results go to <out>/<experiment>/, so the name must be one plain folder name, never a path."""
    if (not name or name in (".", "..") or name != name.strip() or any(c in name for c in "/\\\0")
            or os.path.isabs(name)):
        raise ConfigError(f"{path}: experiment: {name[:80]!r} is not a plain folder name "
                          f"(no '/', '\\', '..' or empty names; results go to <out>/<experiment>/)")


def config_to_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def key_reference_markdown():
    """The table of every config key, for docs/CONFIG.md."""
    lines = ["# Config keys", "",
             "Generated by `python -m training.config > docs/CONFIG.md` from the schema in `training/config.py`.",
             "Every key can be set in the YAML or on the command line: `--set section.key=value`.", "",
             "| key | default | meaning |", "|---|---|---|"]
    for key, default, doc, choices in describe(ExperimentConfig):
        meaning = doc + (f" (one of: {', '.join(map(str, choices))})" if choices and "|" not in doc else "")
        lines.append(f"| `{key}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(key_reference_markdown())
