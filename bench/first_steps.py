"""The training loss of a config's first steps, per seed: does it train, or diverge before an epoch ends?

    python bench/first_steps.py configs/conv6_baseline.yaml --steps 40 --seeds 7531,7532
    python bench/first_steps.py configs/conv6_baseline.yaml --set optimizer.lr=0.005
    python bench/first_steps.py configs/conv6_baseline.yaml --loss clipped_probabilities

Steps run on the run's own epoch-1 batches (seed order, no augmentation). ``--loss clipped_probabilities``
computes the cross-entropy on the softmax output clipped to [1e-7, 1 - 1e-7] (SPEC B20's reading of the
authors' loss); the default is the trainer's loss, which Keras 3 evaluates on the softmax's logits.
Run before spending hours on a long run (docs/cifar_runs.md, "Baseline checks").
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402

from data import load_dataset  # noqa: E402
from data.pipeline import epoch_arrays  # noqa: E402
from training.config import load_config  # noqa: E402
from training.runner import compiled_model  # noqa: E402


def clipped_probability_loss(labels, probabilities):
    """Cross-entropy on clipped probabilities: ``probabilities * 1.0`` is a new tensor without Keras'
    logits shortcut, so Keras clips it instead of using the softmax's input."""
    return keras.losses.sparse_categorical_crossentropy(labels, probabilities * 1.0)


def first_losses(config, seed, steps, loss):
    dataset = load_dataset(config.data.dataset)
    model = compiled_model(config, seed, len(dataset.x_train))
    if loss == "clipped_probabilities":
        model.compile(optimizer=model.optimizer, loss=clipped_probability_loss)
    x, y = epoch_arrays(dataset.x_train, dataset.y_train, seed=seed, epoch=0,
                        shuffle=config.training.shuffle, augment=False)
    size = config.training.batch_size
    losses = []
    for step in range(steps):
        result = model.train_on_batch(x[step * size:(step + 1) * size], y[step * size:(step + 1) * size],
                                      return_dict=True)
        losses.append(float(result["loss"]))
        if not np.isfinite(losses[-1]):
            break
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", default="7531", help="comma-separated seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--loss", choices=("trainer", "clipped_probabilities"), default="trainer")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.set)
    for seed in (int(seed) for seed in args.seeds.split(",")):
        losses = first_losses(config, seed, args.steps, args.loss)
        verdict = "finite" if np.isfinite(losses[-1]) else f"non-finite at step {len(losses)}"
        shown = ", ".join(f"{value:.3g}" for value in losses[::5])
        print(f"{Path(args.config).stem} seed {seed} loss {args.loss}: {verdict}; every 5th step: {shown}", flush=True)


if __name__ == "__main__":
    main()
