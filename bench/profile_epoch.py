"""Where one training epoch's time goes: input arrays, fit, test evaluation, mask counts, checkpoint.

    SUPERMASK_DATA_DIR=/path/to/datasets python bench/profile_epoch.py configs/fcn_signed.yaml
    KERAS_BACKEND=jax python bench/profile_epoch.py configs/fcn_signed.yaml --epochs 3
    python bench/profile_epoch.py configs/resnet20_signed.yaml --settings no-xla --set data.train_limit=10240
    python bench/profile_epoch.py configs/conv2_signed.yaml --settings no-xla --epochs 1 --interleaved 20

Runs the run trainer's own pieces in order, with and without XLA + steps_per_execution=50 (or the
settings named by --settings; ``config`` = the config's own), and prints the seconds of the last epoch (the first ones include
compilation) and fit's milliseconds per training step, to set beside ``bench/step_time.py``'s floor.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import epoch_arrays, load_dataset  # noqa: E402
from training.config import load_config  # noqa: E402
from training.callbacks import EpochCheckpoint, mask_statistics  # noqa: E402
from training.runner import compiled_model, fit_feed  # noqa: E402


SETTINGS = {"config": ("the config's own settings", []),
            "no-xla": ("no XLA, 1 step per call", ["training.jit_compile=false", "training.steps_per_execution=1"]),
            "xla": ("XLA, 50 steps per call", ["training.jit_compile=true", "training.steps_per_execution=50"])}


def interleaved_steps(model, x, y, batch_size, steps, rounds=4):
    """Median ms per training step of ``fit`` on the epoch's first ``steps`` batches fed as the run
    trainer feeds them, the same arrays through Keras' own array pipeline, and random normal images
    of the same shape, alternated ``rounds`` times in this process: the machine's speed drifts
    between minutes, so only interleaved timings compare."""
    import numpy as np

    count = steps * batch_size
    real_x, real_y = x[:count], y[:count]
    random_x = np.random.default_rng(0).normal(size=real_x.shape).astype(real_x.dtype)
    feeds = {"real data": lambda: fit_feed(real_x, real_y, batch_size),
             "real data, Keras' array pipeline": lambda: {"x": real_x, "y": real_y, "batch_size": batch_size},
             "random data": lambda: fit_feed(random_x, real_y, batch_size)}
    timings = {name: [] for name in feeds}
    for _ in range(rounds):
        for name, feed in feeds.items():
            started = time.perf_counter()
            model.fit(**feed(), epochs=1, shuffle=False, verbose=0)
            timings[name].append(1000 * (time.perf_counter() - started) / steps)
    return {name: sorted(values)[len(values) // 2] for name, values in timings.items()}


def profile(config_path, overrides, epochs, scratch, interleaved=0):
    config = load_config(config_path, overrides)
    data = load_dataset(config.data.dataset, config.data.dir, config.data.train_limit, config.data.test_limit)
    model = compiled_model(config, config.seed, len(data.x_train))
    checkpoint = EpochCheckpoint(Path(scratch) / "checkpoint.npz", history={})
    checkpoint.set_model(model)
    seconds = {}
    for epoch in range(epochs):
        started = time.perf_counter()
        x, y = epoch_arrays(data.x_train, data.y_train, seed=config.seed, epoch=epoch,
                            shuffle=config.training.shuffle, augment=config.data.augment, repeat=config.data.repeat)
        seconds["input arrays"] = time.perf_counter() - started
        for name, step in (
                ("fit", lambda: model.fit(**fit_feed(x, y, config.training.batch_size), initial_epoch=epoch,
                                          epochs=epoch + 1, shuffle=False, verbose=0)),
                ("evaluate", lambda: model.evaluate(**fit_feed(data.x_test, data.y_test,
                                                               config.training.eval_batch_size), verbose=0)),
                ("mask counts", lambda: mask_statistics(model, config.model.signed)),
                ("checkpoint", lambda: checkpoint.on_epoch_end(epoch))):
            started = time.perf_counter()
            step()
            seconds[name] = time.perf_counter() - started
    steps = -(-len(x) // config.training.batch_size)
    if interleaved:
        seconds.update(interleaved_steps(model, x, y, config.training.batch_size, interleaved))
    return seconds, 1000 * seconds["fit"] / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scratch", default="/tmp/profile_epoch")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["no-xla", "xla"],
                        help="config = as the run trains (e.g. TensorFlow on CPU: no XLA, 50 steps per call)")
    parser.add_argument("--interleaved", type=int, default=0, metavar="STEPS",
                        help="afterwards, time STEPS-step fits alternately: the trainer's feed, Keras' array pipeline, random images")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as train.py's --set (e.g. data.train_limit=10240)")
    args = parser.parse_args()
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    for setting in args.settings:
        label, overrides = SETTINGS[setting]
        seconds, fit_step_ms = profile(args.config, overrides + args.set, args.epochs, args.scratch, args.interleaved)
        print(f"{label:<26} " + "  ".join(f"{name} {value:.3f}{'ms/step' if 'data' in name else 's'}"
                                          for name, value in seconds.items())
              + f"  (fit {fit_step_ms:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
