"""Where one training epoch's time goes: input arrays, fit, test evaluation, mask counts, checkpoint.

    SUPERMASK_DATA_DIR=../shared/datasets python bench/profile_epoch.py configs/fcn_signed.yaml
    KERAS_BACKEND=jax python bench/profile_epoch.py configs/fcn_signed.yaml --epochs 3

Runs the run trainer's own pieces in order, with and without XLA + steps_per_execution=50, and
prints the seconds of the last epoch (the first ones include compilation).
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
from fileio import write_npz  # noqa: E402
from training.runner import RunTrainer, _checkpoint_arrays, mask_statistics  # noqa: E402


def profile(config_path, overrides, epochs, scratch):
    config = load_config(config_path, overrides)
    data = load_dataset(config.data.dataset, config.data.dir, config.data.train_limit, config.data.test_limit)
    model = RunTrainer(config, 0, scratch)._compiled_model(len(data.x_train))
    seconds = {}
    for epoch in range(epochs):
        started = time.perf_counter()
        x, y = epoch_arrays(data.x_train, data.y_train, seed=config.seed, epoch=epoch,
                            shuffle=config.training.shuffle, augment=config.data.augment, repeat=config.data.repeat)
        seconds["input arrays"] = time.perf_counter() - started
        for name, step in (
                ("fit", lambda: model.fit(x, y, batch_size=config.training.batch_size, initial_epoch=epoch,
                                          epochs=epoch + 1, shuffle=False, verbose=0)),
                ("evaluate", lambda: model.evaluate(data.x_test, data.y_test,
                                                    batch_size=config.training.eval_batch_size, verbose=0)),
                ("mask counts", lambda: mask_statistics(model, config.model.signed)),
                ("checkpoint", lambda: write_npz(Path(scratch) / "checkpoint.npz", _checkpoint_arrays(model),
                                                 compressed=False))):
            started = time.perf_counter()
            step()
            seconds[name] = time.perf_counter() - started
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scratch", default="/tmp/profile_epoch")
    args = parser.parse_args()
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    for label, overrides in (("no XLA, 1 step per call", ["training.jit_compile=false",
                                                          "training.steps_per_execution=1"]),
                             ("XLA, 50 steps per call", ["training.jit_compile=true",
                                                         "training.steps_per_execution=50"])):
        seconds = profile(args.config, overrides, args.epochs, args.scratch)
        print(f"{label:<26} " + "  ".join(f"{name} {value:.3f}s" for name, value in seconds.items()))


if __name__ == "__main__":
    main()
