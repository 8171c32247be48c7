"""The experiment configuration: one typed schema for every YAML under ``configs/``.

Section names follow the authors' configs (``model``, ``init``, ``optimizer``,
``training``); ``docs/CONFIG.md`` is generated from the ``doc`` strings below
(``python -m training.config``; "SPEC §n" there cites docs/SPEC.md). Authors' key names are given where they differ.
A config may name another with ``base: other.yaml`` and then holds only what differs.
"""
import copy
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from masking.init_spec import (DEFAULT_SEED, DEFAULT_THRESHOLD_FRACTION, DEFAULT_WEIGHTS_DIR, SIGNED_SCORE_INIT,
                               SIGNED_WEIGHT_INIT, InitSpec, default_weight_init)
from masking.mask_rule import MASK_MODES, check_mask_mode
from models.registry import BN_MODES, KIND_LABELS, MODEL_FAMILIES, MODEL_NAMES, OPTION_KINDS
from training.schema import (ConfigError, default_text, describe, from_dict, meaning_text, option, set_dotted, shown,
                             to_dict, without_keys_that_keep_results)
from training.yaml_files import parse_yaml, read_yaml_mapping

SCHEDULES = ("exp_staircase", "exp_continuous", "plateau", "constant", "cosine")
_EXPONENTIAL, _PLATEAU = ("exp_staircase", "exp_continuous"), ("plateau",)
SCHEDULE_KEY_KINDS = {"decay_epochs": _EXPONENTIAL, "decay_rate": _EXPONENTIAL, "steps_per_epoch": _EXPONENTIAL,
                      "patience": _PLATEAU, "factor": _PLATEAU, "reductions": _PLATEAU, "cooldown": _PLATEAU,
                      "start_epoch": _PLATEAU, "min_delta": _PLATEAU}   # training.schedule.<key>: the kinds it acts in
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policy names
MAX_WIDTH_MULTIPLIER = 64
# Integer bounds (docs/reliability.md, Bounds): runs and repeat size loops and arrays; lr and wd keep
# Keras' weight_decay = wd / lr finite in float32 (at most 1e12).
MAX_RUNS = 10_000
MAX_REPEAT = 32
MIN_LR = 1e-12
MAX_WD = 1.0


@dataclass
class ModelConfig:
    name: str = option("FCN", choices=MODEL_NAMES, doc="architecture")
    signed: bool = option(True, doc="true: signed supermask (only scores train); false: ordinary baseline")
    threshold_fraction: float = option(DEFAULT_THRESHOLD_FRACTION, minimum=0.0, maximum=0.999, doc="p in tau = p * max|S_0| per layer (authors: tanh_th)")
    width_multiplier: float = option(1.0, minimum=0.0, maximum=MAX_WIDTH_MULTIPLIER, exclusive_minimum=True, doc="scales every layer width (authors: width_multiplier / filter_size_multi); every layer must keep at least one unit")
    head_activation: str = option("elu", choices=("elu", "relu"), doc="Conv nets: activation of the two 256-unit dense layers (relu = authors' Conv8 baseline, SPEC B21)")
    bn_mode: Optional[str] = option(None, choices=BN_MODES, doc="ResNets: batch-norm mode; null = the authors' code for that model (SPEC B4)")
    extra_head: bool = option(False, doc="ResNets: the instance_2 ResNet110 extra ELU + dense head (SPEC B19)")
    projection_every: Optional[int] = option(None, minimum=1, doc="ResNets: a projection block every N blocks of a stage (9 = the authors' signed ResNet110 layout); null = only the first")
    mask_mode: str = option("signed", choices=MASK_MODES, doc="mask rule (masking/mask_rule.py): signed = the paper's +1/0/-1 by tau; binary = 1 where S > tau; signed_top_k = the fraction keep_fraction of largest abs(S) per layer with sign(S); top_k = edge-popup, the fraction keep_fraction of largest S per layer; bernoulli = Zhou et al.'s mask drawn from sigmoid(S) each training step, S > 0 when evaluating")
    keep_fraction: Optional[float] = option(None, minimum=0.0, maximum=1.0, exclusive_minimum=True, doc="top-k modes only: fraction k of each layer's weights kept, ceil(k * n) entries")


@dataclass
class InitSection:
    # A folder may mix sources under auto (run.json records each run's source and file hashes), and unedited
    # files give bit-identical values, so folders written with on_the_fly accept auto runs.
    source: str = option("auto", choices=("auto", "on_the_fly", "files"), doc="auto: each of the run's init_example.py pickles under weights_dir that exists, the others drawn on the fly (run.json says which); on_the_fly: draw from the seed; files: load the pickles (missing = error)", affects_results=False)
    weights_dir: str = option(DEFAULT_WEIGHTS_DIR, doc="root folder of the init_example.py pickles; left at weights, $SUPERMASK_WEIGHTS_DIR replaces it when set (the tests point it at an empty folder)")
    # Defaults that depend on model.signed, and partial mappings: ExperimentConfig.dependent_defaults.
    weight: InitSpec = option(SIGNED_WEIGHT_INIT, doc="frozen weights W (baseline: its kernels)")
    mask: InitSpec = option(SIGNED_SCORE_INIT, doc="scores S")


@dataclass
class OptimizerConfig:
    """SGD with decoupled weight decay (the authors' tfa SGDW), the only optimizer of the paper."""

    lr: float = option(0.05, minimum=MIN_LR, doc="initial learning rate lr0")
    wd: float = option(5e-4, minimum=0.0, maximum=MAX_WD, doc="decoupled weight decay in the authors' SGDW units; Keras weight_decay = wd / lr (SPEC §7)")
    momentum: float = option(0.9, minimum=0.0, maximum=1.0)
    nesterov: bool = option(True)


@dataclass
class ScheduleConfig:
    kind: str = option("exp_staircase", choices=SCHEDULES, doc="exp_staircase = SPEC §5.4 A; exp_continuous = B; plateau = C (ResNets); constant = lr0 throughout; cosine = lr0 * (1 + cos(pi * epoch / epochs)) / 2, set once per epoch (edge-popup)")
    decay_epochs: int = option(10, minimum=1, doc="A/B: epochs per decay period (authors: decay_steps)")
    decay_rate: Optional[float] = option(None, minimum=0.0, maximum=1.0, exclusive_minimum=True, doc="A/B: factor per period; null = 0.96 for A, 0.9 for B")
    steps_per_epoch: Optional[int] = option(None, minimum=1, doc="A/B: steps counted per epoch; null = 390 for A (hard-coded by the authors), real batches for B")
    patience: int = option(15, minimum=3, doc="plateau: epochs without improvement (its window of earlier losses holds patience - 2 epochs)")
    factor: float = option(0.2, minimum=0.0, maximum=1.0, exclusive_minimum=True, doc="plateau: lr multiplier per reduction")
    reductions: int = option(5, minimum=1, doc="plateau: stop training after this many reductions")
    cooldown: int = option(10, minimum=0, doc="plateau: epochs without checks after a reduction")
    start_epoch: int = option(10, minimum=0, doc="plateau: first epoch index that is checked")
    min_delta: float = option(1e-4, minimum=0.0, doc="plateau: improvement needed on the training loss")

    def validate(self, prefix=""):
        """A key of another schedule kind, changed from its default, would change nothing but the
        results folder's name: refused, as model options of another family are."""
        defaults = ScheduleConfig(kind=self.kind)
        for key, kinds in SCHEDULE_KEY_KINDS.items():
            if self.kind not in kinds and getattr(self, key) != getattr(defaults, key):
                raise ConfigError(f"{prefix}{key}: only for schedule kind {' or '.join(kinds)} (kind is {self.kind})",
                                  f"{prefix}{key}")


@dataclass
class TrainingConfig:
    epochs: int = option(100, minimum=1, doc="epochs (plateau: upper bound)")
    batch_size: int = option(128, minimum=1)
    eval_batch_size: int = option(1000, minimum=1, doc="batch size for test evaluation", affects_results=False)
    shuffle: bool = option(False, doc="reshuffle the training set every epoch (authors: MNIST no, CIFAR yes)")
    schedule: ScheduleConfig = option(ScheduleConfig())
    jit_compile: Optional[bool] = option(None, doc="XLA compilation of the train step; null = always on JAX, Keras 'auto' on TensorFlow (XLA only with a GPU), off on torch", affects_results=False)
    steps_per_execution: int = option(50, minimum=1, doc="train steps per compiled call (fewer host round trips); always 1 on torch", affects_results=False)
    distribution: str = option("none", choices=("none", "mirrored", "data_parallel"), doc="mirrored: tf.distribute (TensorFlow); data_parallel: keras.distribution (JAX)", affects_results=False)
    tensorboard: bool = option(False, doc="per-epoch scalars in each run folder's tensorboard/ (tensorboard --logdir results/)", affects_results=False)
    precision: str = option("float32", choices=PRECISIONS, doc="mixed_bfloat16: layers compute in bfloat16 (Keras dtype policy); scores, thresholds, optimizer state, mask, softmax and loss stay float32 (docs/precision.md); the paper rows keep float32")


@dataclass
class DataConfig:
    dataset: str = option("mnist", choices=("mnist", "cifar10", "cifar100"))
    dir: Optional[str] = option(None, doc="folder of Keras-layout .npz files; null = --data-dir, $SUPERMASK_DATA_DIR or keras.datasets", affects_results=False)
    train_limit: Optional[int] = option(None, minimum=1, doc="use only the first N training images (smoke tests)")
    test_limit: Optional[int] = option(None, minimum=1, doc="use only the first N test images")
    augment: bool = option(False, doc="pad-4 / flip / crop training augmentation (authors: CIFAR-100 only)")
    repeat: int = option(1, minimum=1, maximum=MAX_REPEAT, doc="passes over the training set per epoch (authors: 7 for CIFAR-100)")


@dataclass
class ExperimentConfig:
    experiment: Optional[str] = option(None, doc="`results/<experiment>/`; null = the config file's name")
    description: str = option("", doc="free text: which paper row, where the values come from", affects_results=False)
    runs: int = option(1, minimum=1, maximum=MAX_RUNS, doc="number of runs; run i uses seed + i (authors: no_experiments)", affects_results=False)
    seed: int = option(DEFAULT_SEED, minimum=0, doc="base seed (SPEC §2.7)")
    model: ModelConfig = option(ModelConfig())
    init: InitSection = option(InitSection())
    optimizer: OptimizerConfig = option(OptimizerConfig())
    training: TrainingConfig = option(TrainingConfig())
    data: DataConfig = option(DataConfig())

    @staticmethod
    def dependent_defaults(data, prefix=""):
        """``data`` with init.weight and init.mask filled in from their defaults: a baseline's kernels default
        to BASELINE_WEIGHT_INIT (uniform/elu, as init_example.py's --baseline-init), not the signed W, and a
        mapping that names some fields (``--set init.weight.factor=2``) keeps the default's others. The
        text form of init_example.py's flags (``--set init.weight=signed_constant/elus``) is read too."""
        model, init = data.get("model"), data.get("init", {})
        if not isinstance(init, dict) or (model is not None and not isinstance(model, dict)):
            return data   # from_dict names the section that is not a mapping
        signed = (model or {}).get("signed") is not False
        defaults = {"weight": default_weight_init(signed), "mask": SIGNED_SCORE_INIT}
        filled = dict(init)
        for key, default in defaults.items():
            if key not in init:
                filled[key] = default.to_dict()
            elif isinstance(init[key], dict):
                filled[key] = {**default.to_dict(), **init[key]}
            elif isinstance(init[key], str):
                try:
                    filled[key] = InitSpec.parse(init[key]).to_dict()
                except ValueError as error:
                    raise ConfigError(f"{prefix}init.{key}: {error}", f"{prefix}init.{key}") from None
        return {**data, "init": filled}

    def validate(self, prefix=""):
        """The family's own options, datasets and narrowest layer, from the model registry (models/registry.py);
        the mask mode's keep_fraction."""
        self._validate_mask_mode(prefix)
        family, defaults = MODEL_FAMILIES[self.model.name], ModelConfig()
        for key, kind in OPTION_KINDS.items():
            if kind != family.kind and getattr(self.model, key) != getattr(defaults, key):
                raise ConfigError(f"{prefix}model.{key}: only for {KIND_LABELS[kind]} (model.name is {family.name})",
                                  f"{prefix}model.{key}")
        problem = family.width_multiplier_problem(self.model.width_multiplier)
        if problem:
            raise ConfigError(f"{prefix}model.width_multiplier: {problem}", f"{prefix}model.width_multiplier")
        if self.data.augment and self.data.dataset == "mnist":
            raise ConfigError(f"{prefix}data.augment: pad/flip/crop needs image data (cifar10, cifar100), "
                              f"got mnist", f"{prefix}data.augment")
        if self.data.dataset not in family.datasets:
            raise ConfigError(f"{prefix}data.dataset: {family.name} takes {' or '.join(family.datasets)}, "
                              f"got {self.data.dataset}", f"{prefix}data.dataset")

    def _validate_mask_mode(self, prefix):
        mode = self.model.mask_mode   # one of MASK_MODES (the schema's choices): what is left is keep_fraction's
        try:
            check_mask_mode(mode, self.model.keep_fraction, where=f"{prefix}model.keep_fraction")
        except ValueError as error:
            raise ConfigError(str(error), f"{prefix}model.keep_fraction") from None
        if mode != "signed" and not self.model.signed:
            raise ConfigError(f"{prefix}model.mask_mode: {mode} needs model.signed true (a baseline has no mask)",
                              f"{prefix}model.mask_mode")


def deep_merge(base, override):
    """``override`` laid over ``base``: sections merge key by key, any other value is replaced."""
    result = dict(base)
    for key, value in override.items():
        both_sections = isinstance(value, dict) and isinstance(base.get(key), dict)
        result[key] = deep_merge(base[key], value) if both_sections else value
    return result


def read_config_chain(path, least="a config names at least its model (model: {name: FCN})"):
    """[(file, its own keys)] from ``path`` down its ``base:`` chain; a missing base or a cycle is refused,
    an empty file is an error that says what the file names ``least``."""
    chain = []
    while True:
        raw = read_yaml_mapping(path)
        if not raw:
            raise ConfigError(f"{path}: empty file; {least}")
        chain.append((path, raw))
        base = raw.pop("base", None)
        if base is None:
            return chain
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{path}: base: expected a config file name, got {shown(base)}", "base")
        target = path.parent / base
        if not target.is_file() and not target.is_dir():
            raise ConfigError(f"{path}: base: {target}: no such config file", "base")
        seen = [file.resolve() for file, _ in chain]
        if target.resolve() in seen:
            cycle = " -> ".join(str(file) for file, _ in chain[seen.index(target.resolve()):])
            raise ConfigError(f"{path}: base: cycle {cycle} -> {target}", "base")
        path = target


def parse_override(text):
    """'optimizer.lr=0.01' -> ('optimizer.lr', 0.01); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {shown(text)}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except ValueError as error:
        raise ConfigError(f"--set {shown(key.strip(), 40)}: {error}", key.strip()) from None
    return key.strip(), value


def _names_key(raw, dotted_key):
    node = raw
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def load_config(path, overrides=()):
    """Read (with its ``base:`` chain), override and validate a YAML config; errors name the file and key."""
    path = Path(path)
    chain = read_config_chain(path)
    raw = {}
    for index, (_, own_keys) in reversed(list(enumerate(chain))):
        if index:  # a base's experiment name is the base's own results folder: never inherited
            own_keys = {key: value for key, value in own_keys.items() if key != "experiment"}
        raw = deep_merge(raw, own_keys)
    raw = copy.deepcopy(raw)
    parsed = []
    try:
        for override in overrides:
            parsed.append(parse_override(override))
            set_dotted(raw, *parsed[-1])
        config = from_dict(ExperimentConfig, raw)
    except ConfigError as error:
        blamed = _file_naming(error.key, chain, parsed)
        hint = (f"; it reads as a study: python reproduce.py {path}"
                if error.key == "experiments" and not str(blamed).startswith("--set") else "")
        raise ConfigError(f"{blamed}: {error}{hint}", error.key) from None
    if config.experiment is None:
        config.experiment = path.stem
    check_experiment_name(config.experiment, path)
    return config


def saved_config(raw, where):
    """The config a results folder or an export recorded (``raw``, its mapping), read by today's schema: keys
    the schema gained since count at their defaults; a ConfigError names ``where`` and the key. The one
    reader of saved configs (config.yaml of a results folder, a compact file's meta)."""
    try:
        return from_dict(ExperimentConfig, raw)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}", error.key) from None


def load_saved_config(path):
    """The config a results folder was made with (its ``config.yaml``)."""
    return saved_config(read_yaml_mapping(Path(path)), path)


def _file_naming(key, chain, overrides):
    """What to blame for ``key``: the --set that sets it (over the config), else the nearest file of the base
    chain that sets it, else the config itself."""
    if key is None:
        return chain[0][0]
    set_key = next((set_key for set_key, _ in reversed(overrides)   # the key, a section above it or below it
                    if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + ".")), None)
    if set_key is not None:
        return f"--set {set_key} over {chain[0][0]}"
    return next((file for file, own_keys in chain if _names_key(own_keys, key)), chain[0][0])


MAX_EXPERIMENT_NAME = 100
# Keys that only make a run shorter (reporting/protocol.py marks them): a name too long for every key
# keeps the keys that change the method first.
RUN_LENGTH_KEYS = ("training.epochs", "data.train_limit", "data.test_limit", "data.repeat")


def experiment_with_overrides(path, overrides, config, plain=None):
    """The results folder name of ``config`` (read from ``path`` with ``overrides``; ``plain``: the config
    without them, default read from ``path``): the config's own
    experiment when the overrides change no result-changing key (or name the experiment themselves),
    else that name followed by the changed keys, e.g. ``fcn_baseline+training.epochs=2``: a run with
    such overrides never takes the plain config's folder. A name with other characters than letters,
    digits and ``._=,@-``, or longer than MAX_EXPERIMENT_NAME, is shortened and ends in a hash: it keeps
    whole keys while they fit, those of RUN_LENGTH_KEYS last."""
    if not overrides or any(parse_override(text)[0] == "experiment" for text in overrides):
        return config.experiment
    changed = _changed_keys(load_config(path) if plain is None else plain, config)
    if not changed:
        return config.experiment
    parts = [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in changed]
    safe = [re.sub(r"[^A-Za-z0-9._=,@-]", "_", part) for part in parts]
    name = "+".join([config.experiment, *safe])
    if safe != parts or len(name) > MAX_EXPERIMENT_NAME:
        name = config.experiment
        by_kind = sorted(zip(changed, safe), key=lambda pair: pair[0][0] in RUN_LENGTH_KEYS)
        for _, part in by_kind:   # whole keys while they fit, then a hash of all of them
            if len(name) + len(part) + 10 > MAX_EXPERIMENT_NAME:
                break
            name += f"+{part}"
        name += "+" + hashlib.sha256(json.dumps(changed).encode()).hexdigest()[:8]
    return name


def _changed_keys(plain, config):
    """[(dotted key, value in ``config``)] of the result-changing keys where ``config`` differs from ``plain``."""
    def leaves(data, prefix=""):
        for key, value in data.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    def compared(instance):
        return dict(leaves(without_keys_that_keep_results(ExperimentConfig, to_dict(instance))))

    before, after = compared(plain), compared(config)
    return [(key, after[key]) for key in sorted(after) if key != "experiment" and before.get(key) != after[key]]


def check_experiment_name(name, path):
    """Results go to <out>/<experiment>/, so the name must be one plain folder name, never a path."""
    if (not name or name in (".", "..") or name != name.strip() or any(c in name for c in "/\\\0")
            or os.path.isabs(name)):
        raise ConfigError(f"{path}: experiment: {shown(name)} is not a plain folder name "
                          f"(no '/', '\\', '..' or empty names; results go to <out>/<experiment>/)")


def config_to_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def key_reference_markdown():
    """The table of every config key, for docs/CONFIG.md."""
    lines = ["# Config keys", "",
             "Generated by `python -m training.config > docs/CONFIG.md` from the schema in `training/config.py`.",
             "Every key can be set in the YAML or on the command line: `--set section.key=value`. \"SPEC §n\" cites [docs/SPEC.md](SPEC.md).", "",
             "`base: other.yaml` (a path relative to the file) makes a config start from another one: the",
             "file then names only the keys it changes, section by section (`model: {threshold_fraction: 0.6}`",
             "keeps the base's other `model` keys). Bases may have bases; a cycle or a missing base is an error.",
             "`experiment` still defaults to the name of the file given to `train.py`, not to the base's.", "",
             "`init.weight` defaults to `signed_constant/elus` for a signed model and to `uniform/elu` (the",
             "baseline's kernels) when `model.signed` is false; an `init.weight` or `init.mask` that names only",
             "some of its fields (`--set init.weight.factor=2`) keeps the default's others.", "",
             "Keys marked *no* under \"changes results\" only change speed or bookkeeping: a results folder",
             "made under other values of them counts as made by the same config (train.py resumes there).",
             "Runs whose `--set` values change results go to a folder of their own, named after them",
             "(`results/fcn_baseline+training.epochs=2/`; train.py prints it), so `results/<experiment>/` keeps",
             "the plain config's runs. A name over 100 characters keeps whole keys while they fit, the method's",
             "before the run length's (epochs, image limits), and ends in a hash of all; its config.yaml has",
             "them all, and `--set experiment=NAME` names the folder yourself.", "",
             "| key | default | changes results | meaning |", "|---|---|---|---|"]
    for key, default, doc, choices, affects_results in describe(ExperimentConfig):
        lines.append(f"| `{key}` | `{default_text(default)}` | {'yes' if affects_results else 'no'} | "
                     f"{meaning_text(doc, choices)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(key_reference_markdown())
