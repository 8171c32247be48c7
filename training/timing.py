"""``reproduce.py --measure``: a config's epoch and compile seconds on this machine, from tiny real runs.

The runs train in a scratch folder of the cache folder, ``reproduce-timing-<host>-<pid>``, removed
afterwards; one left by a killed process is removed by the next measurement on that host.
"""
import contextlib
import copy
import io
import math
import os
import shutil
import socket

from fileio import read_json
from training.estimates import TEST_EXAMPLES, TRAIN_EXAMPLES, calibration_path

SCRATCH_PREFIX = "reproduce-timing-"
# A test forward pass costs about a third of a training step (forward + backward ~ 3 forwards).
FORWARD_SHARE = 1 / 3
# The longer timing epoch must last at least this long, or noise decides the step time.
MIN_TIMED_SECONDS = 3.0


def scratch_folder():
    """This process's scratch folder for timing runs, ``<cache>/reproduce-timing-<host>-<pid>``; the
    folders of this host's processes that no longer exist (killed while timing) are removed first."""
    cache, host = calibration_path().parent, socket.gethostname()
    for stale in cache.glob(f"{SCRATCH_PREFIX}{host}-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return cache / f"{SCRATCH_PREFIX}{host}-{os.getpid()}"


def process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


def timed_epochs(config, train_limit, data_dir):
    """Seconds of the two epochs of a scratch run of ``config`` on ``train_limit`` images (one test batch)."""
    from training.runner import RunTrainer

    timing = copy.deepcopy(config)
    timing.experiment, timing.training.epochs = "timing", 2
    timing.data.train_limit = train_limit
    tests = config.data.test_limit or TEST_EXAMPLES[config.data.dataset]
    timing.data.test_limit = min(config.training.batch_size, tests)
    scratch = scratch_folder()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            RunTrainer(timing, 0, scratch, data_dir=data_dir or config.data.dir, verbose=False).run()
        history = read_json(scratch / "timing" / "run_0" / "history.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return history["epoch_seconds"][:2]


def measure(config, steps, data_dir):
    """(seconds per epoch, compile seconds) of ``config`` on this machine.

    Scratch runs of ``steps`` and of 4 x, 16 x, ... as many batches per epoch, until the longer one's
    second epoch takes at least twice the shorter one's and ``MIN_TIMED_SECONDS`` (fast models are
    dominated by per-epoch overhead, and short times by noise): the difference of the second epochs
    gives the step time, the rest of an epoch (fit set-up, a test batch, mask counts, checkpoint) the
    per-epoch overhead, the longer run's first
    epoch's extra time the compilation. A run that covers the whole (limited) training set times a
    real epoch directly.
    """
    batch, repeat, dataset = config.training.batch_size, config.data.repeat, config.data.dataset
    examples = min(config.data.train_limit or TRAIN_EXAMPLES[dataset], TRAIN_EXAMPLES[dataset])
    tests = min(config.data.test_limit or TEST_EXAMPLES[dataset], TEST_EXAMPLES[dataset])
    real_steps = math.ceil(examples * repeat / batch)
    short_limit = min(steps * batch, examples)
    short_steps = math.ceil(short_limit * repeat / batch)
    short_first, short_second = timed_epochs(config, short_limit, data_dir)
    long_limit, long_first, long_second = short_limit, short_first, short_second
    while long_limit < examples and long_second < max(2 * short_second, MIN_TIMED_SECONDS):
        long_limit = min(4 * long_limit, examples)
        long_first, long_second = timed_epochs(config, long_limit, data_dir)
    long_steps = math.ceil(long_limit * repeat / batch)
    if long_steps > short_steps:
        step = max((long_second - short_second) / (long_steps - short_steps), 0.0)
    else:  # one run covered the whole (limited) training set: no overhead to separate
        step = long_second / long_steps
    epoch = max(long_second - long_steps * step, 0.0) + real_steps * step
    test_batches_left = max(tests - min(batch, tests), 0) / batch
    return epoch + test_batches_left * step * FORWARD_SHARE, max(long_first - long_second, 0.0)
