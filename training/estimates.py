"""Time estimates for a plan, without training and without Keras: FLOPs counted from the config,
scaled by the seconds per FLOP of the nearest configs (by FLOPs per image) timed before.

Timings come, in this order, from this machine's calibration (``reproduce.py --measure`` stores every
config it times in ``<SUPERMASK_CACHE_DIR>/calibration.json``, keyed by host, CPU count and backend)
and from the recorded epoch times (``history.json`` ``epoch_seconds``, or a running run's checkpoint) of
runs under the results root, and of the shipped runs in ``measured/`` (another machine). FLOPs scale an
epoch well only within a model kind (FCN, Conv, ResNet): small models are bound by per-step latency, and
an FCN timing put Conv4's epoch at 3.2 times its measured 212 s; nor across very different epoch sizes, where
fixed per-epoch costs dominate the small one. So a timing here of the config's kind and an epoch of
comparable size in images (COMPARABLE_EPOCH) comes first, then a shipped one, then one of the kind of any
size (here, then shipped), then the nearest of any kind.
"""
import math
import os
import socket
import statistics
import time
from pathlib import Path

from data.datasets import CACHE_DIR_ENV, DEFAULT_CACHE_DIR, INPUT_SHAPES, NUM_CLASSES
from fileio import UnreadableFileError, read_json, write_json
from models.registry import CONV_HEAD_UNITS, MODEL_FAMILIES
from training.results import run_folders
from training.run_state import checkpoint_history

TRAIN_EXAMPLES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
TEST_EXAMPLES = {"mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}
TRAINING_FORWARDS = 3   # a training step costs about 3 forwards (forward + backward for activations and weights)
CALIBRATION_FILE = "calibration.json"
# Epochs within this factor of each other in images scale well; a much smaller one (a smoke run of 512 images)
# is dominated by per-epoch costs (evaluation, checkpoint) and scaled up put Conv2's epoch at 4x its time.
COMPARABLE_EPOCH = 4.0


def config_forward_macs(config):
    """Multiply-adds of one image's forward pass through every conv and dense layer of the config's
    model (as models.flops.forward_macs counts them on the built Keras model; a test keeps the two equal)."""
    family, model = MODEL_FAMILIES[config.model.name], config.model
    classes = NUM_CLASSES[config.data.dataset]

    def width(units):
        return int(units * model.width_multiplier)

    if family.kind == "fcn":
        sizes = [math.prod(INPUT_SHAPES[config.data.dataset])] + [width(units) for units in family.widths] + [classes]
        return sum(a * b for a, b in zip(sizes, sizes[1:]))
    side, channels, total = INPUT_SHAPES[config.data.dataset][0], INPUT_SHAPES[config.data.dataset][2], 0
    if family.kind == "conv":
        for stage_width in family.widths:
            filters = width(stage_width)
            total += side * side * 9 * (channels * filters + filters * filters)
            side, channels = math.ceil(side / 2), filters
        sizes = [side * side * channels] + [width(u) if family.scale_head else u for u in CONV_HEAD_UNITS] + [classes]
        return total + sum(a * b for a, b in zip(sizes, sizes[1:]))
    blocks = (family.depth - 2) // 6
    every = model.projection_every or blocks
    channels = width(family.widths[0])
    total = side * side * 9 * 3 * channels   # stem conv; its 3x3/1 max-pool keeps the size
    for stage_width, stride in zip(family.widths, (1, 2, 2)):
        filters = width(stage_width)
        for block in range(blocks):
            if block % every == 0:   # projection: strided 1x1, 3x3, and a strided 1x1 shortcut
                side = math.ceil(side / stride)
                total += side * side * (2 * channels * filters + 9 * filters * filters)
            else:
                total += side * side * 2 * 9 * filters * filters
            channels = filters
    head = [channels] + ([classes] if model.extra_head else []) + [classes]
    return total + sum(a * b for a, b in zip(head, head[1:]))


def epoch_flops(config):
    """FLOPs of one epoch: training (3 forwards per image, data.repeat passes) and one test pass."""
    dataset = config.data.dataset
    train = min(config.data.train_limit or TRAIN_EXAMPLES[dataset], TRAIN_EXAMPLES[dataset])
    test = min(config.data.test_limit or TEST_EXAMPLES[dataset], TEST_EXAMPLES[dataset])
    return 2 * config_forward_macs(config) * (TRAINING_FORWARDS * train * config.data.repeat + test)


def epoch_images(flops, forward_macs):
    """Images an epoch passes through the model (a training image counted as TRAINING_FORWARDS), from its FLOPs."""
    return flops / (2 * forward_macs)


def machine_key():
    """This machine as the calibration knows it: host, CPU count and Keras backend."""
    return f"{socket.gethostname()}|{os.cpu_count()} CPUs|{os.environ.get('KERAS_BACKEND', 'tensorflow')}"


def calibration_path():
    return Path(os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)) / CALIBRATION_FILE


def read_calibration():
    """This machine's timed configs: [{experiment, forward_macs, epoch_flops, epoch_seconds, compile_seconds}];
    an unreadable or foreign file counts as empty (it is a cache)."""
    try:
        machines = read_json(calibration_path()) or {}
    except UnreadableFileError:
        return []
    entries = machines.get(machine_key()) if isinstance(machines, dict) else None
    return [entry for entry in entries if _is_timing(entry)] if isinstance(entries, list) else []


def record_calibration(config, epoch_seconds, compile_seconds):
    """Add (or replace) this config's timing in this machine's calibration (written atomically)."""
    path = calibration_path()
    try:
        machines = read_json(path) or {}
    except UnreadableFileError:
        machines = {}
    machines = machines if isinstance(machines, dict) else {}
    entry = timing_entry(config, epoch_seconds, compile_seconds,
                         measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    kept = [old for old in read_calibration() if (old["experiment"], old["epoch_flops"]) !=
            (entry["experiment"], entry["epoch_flops"])]
    machines[machine_key()] = kept + [entry]
    write_json(path, machines)


def recorded_timings(root):
    """The timings of the experiments directly under ``root`` that recorded epoch times: per experiment
    with a readable config.yaml, the median epoch_seconds over its runs' history.json files (a running
    run's checkpoint when it has none yet) leaving out each run's first epoch where it has a later one, and
    as compile time the median over its runs of how much longer the first epoch took than that run's
    median (the first epoch compiles the steps)."""
    from training.config import load_saved_config
    from training.schema import ConfigError

    timings = []
    for experiment in sorted(Path(root).glob("*/config.yaml")):
        seconds, first_epoch_extra = [], []
        for _, run in run_folders(experiment.parent):
            try:
                history = read_json(run / "history.json")
            except UnreadableFileError:
                continue
            if history is None:   # a run still training: the epochs its checkpoint recorded so far
                history = checkpoint_history(run)
            values = history.get("epoch_seconds") if isinstance(history, dict) else None
            values = [value for value in values or () if isinstance(value, (int, float)) and value > 0]
            seconds += values[1:] or values   # the first epoch also compiles: an epoch's time only without a later one
            if len(values) > 1:
                first_epoch_extra.append(max(0.0, values[0] - statistics.median(values[1:])))
        try:
            config = load_saved_config(experiment)
        except ConfigError:
            continue
        if seconds:
            compile_seconds = statistics.median(first_epoch_extra) if first_epoch_extra else 0.0
            timings.append(timing_entry(config, statistics.median(seconds), compile_seconds,
                                        epochs_recorded=len(seconds)))
    return timings


def timing_entry(config, epoch_seconds, compile_seconds, **extra):
    """What a timing records of its config: enough to pick the nearest one and to scale it."""
    return {"experiment": config.experiment, "kind": MODEL_FAMILIES[config.model.name].kind,
            "signed": config.model.signed, "forward_macs": config_forward_macs(config),
            "epoch_flops": epoch_flops(config), "epoch_seconds": float(epoch_seconds),
            "compile_seconds": float(compile_seconds), **extra}


def estimate(config, timings):
    """(epoch seconds, compile seconds, the timing it came from) for ``config`` from the nearest timed
    config (the same experiment, else the same model kind (FCN, Conv, ResNet) and variant (signed or
    baseline) nearest in FLOPs per image, ties to the one timed over more epochs), scaled by the epoch
    FLOPs; None without timings."""
    if not timings:
        return None
    macs, kind = config_forward_macs(config), MODEL_FAMILIES[config.model.name].kind
    nearest = min(timings, key=lambda timing: (timing["experiment"] != config.experiment, timing.get("kind") != kind,
                                               abs(math.log(timing["forward_macs"] / macs)),
                                               timing.get("signed") != config.model.signed,
                                               -timing.get("epochs_recorded", math.inf)))
    scale = epoch_flops(config) / nearest["epoch_flops"]
    return nearest["epoch_seconds"] * scale, nearest["compile_seconds"], nearest


def estimate_from(config, here, shipped):
    """(epoch seconds, compile seconds, the timing, True if it is shipped) from the timings ``here`` and the
    ``shipped`` ones, preferring the config's model kind, then an epoch of comparable size, over the
    machine (module docstring); None without timings."""
    kind = MODEL_FAMILIES[config.model.name].kind
    images = epoch_images(epoch_flops(config), config_forward_macs(config))

    def usable(timing, of_kind, comparable):
        size = epoch_images(timing["epoch_flops"], timing["forward_macs"])
        return (timing.get("kind") == kind or not of_kind) and (
            not comparable or abs(math.log(size / images)) <= math.log(COMPARABLE_EPOCH))

    for of_kind, comparable in ((True, True), (True, False), (False, False)):
        for timings, is_shipped in ((here, False), (shipped, True)):
            found = estimate(config, [timing for timing in timings if usable(timing, of_kind, comparable)])
            if found is not None:
                return (*found, is_shipped)
    return None


def _is_timing(entry):
    numbers = ("forward_macs", "epoch_flops", "epoch_seconds", "compile_seconds")
    return isinstance(entry, dict) and isinstance(entry.get("experiment"), str) and all(
        isinstance(entry.get(key), (int, float)) and not isinstance(entry.get(key), bool) and
        math.isfinite(entry[key]) and entry[key] >= 0 for key in numbers) and entry["forward_macs"] > 0 \
        and entry["epoch_flops"] > 0
