"""Test accuracy of finished bernoulli-mode runs with sampled masks, as Zhou et al. evaluated them.

    python bench/sampled_eval.py results/mask_modes/bernoulli_zhou --draws 10 --data-dir /path/to/datasets

A ``bernoulli`` run records its test accuracy with the deterministic mask S > 0 (docs/mask_modes.md).
Zhou et al. draw the mask at test time too and average 10 draws. For every finished run of the given
experiment folders this rebuilds the trained model (``model.weights.h5``), evaluates the test split
``--draws`` times with a fresh Bernoulli(sigmoid(S)) mask for every batch, and prints the recorded
S > 0 accuracy, the sampled accuracies' mean [min, max] and the expected share of ones (mean sigmoid(S), Zhou et al.'s count) beside the S > 0 count. Models with
batch normalization are refused: a training-mode call would also switch BN to batch statistics.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fileio import write_json  # noqa: E402
from training.results import run_folders  # noqa: E402


def sampled_accuracies(model, x_test, y_test, draws, batch_size=1000):
    """Test accuracy (fraction) of each of ``draws`` passes over the test split, every batch with a fresh
    mask drawn from Bernoulli(sigmoid(S)) (a training-mode call; as Zhou et al.'s evaluation, which
    draws once per evaluated batch)."""
    import keras
    import numpy as np

    from masking import SAMPLED_MODES, iter_layers, masked_layers

    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in iter_layers(model)):
        raise ValueError(f"model {model.name}: has batch normalization; sampled evaluation needs a model without it")
    layers = masked_layers(model)
    if not layers or any(layer.mask_mode not in SAMPLED_MODES for layer in layers):
        raise ValueError(f"model {model.name}: sampled evaluation is for mask_mode bernoulli")
    accuracies = []
    for _ in range(draws):
        correct = 0
        for start in range(0, len(y_test), batch_size):
            logits = keras.ops.convert_to_numpy(model(x_test[start:start + batch_size], training=True))
            correct += int(np.sum(np.argmax(logits, axis=-1) == y_test[start:start + batch_size]))
        accuracies.append(correct / len(y_test))
    return accuracies


def evaluate_run(run_directory, draws, data_dir=None):
    import keras
    import numpy as np

    from data import load_dataset
    from masking import masked_layers
    from reporting.runmodel import load_run

    run = load_run(run_directory)
    data = load_dataset(run.config.data.dataset, data_dir or run.config.data.dir, train_limit=1,
                        test_limit=run.config.data.test_limit)
    scores = [keras.ops.convert_to_numpy(layer.scores).astype(np.float64) for layer in masked_layers(run.model)]
    expected_ones = sum(float(np.sum(1 / (1 + np.exp(-values)))) for values in scores)
    accuracies = sampled_accuracies(run.model, data.x_test, data.y_test, draws)
    return {"run": str(run_directory), "threshold_accuracy": 100 * run.record.final["test_accuracy"],
            "sampled_accuracy": [100 * a for a in accuracies],
            "threshold_remaining_percent": run.record.final["remaining_percent"],
            "expected_remaining_percent": 100 * expected_ones / sum(values.size for values in scores)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="experiment folders of bernoulli runs")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    for experiment in map(Path, args.experiments):
        for _, run in run_folders(experiment):
            if not (run / "model.weights.h5").is_file():
                continue
            result = evaluate_run(run, args.draws, args.data_dir)
            sampled = result["sampled_accuracy"]
            print(f"{run}: S > 0 test acc {result['threshold_accuracy']:.2f} %, sampled ({len(sampled)} draws) "
                  f"{sum(sampled) / len(sampled):.2f} [{min(sampled):.2f}, {max(sampled):.2f}] %; remaining "
                  f"S > 0 {result['threshold_remaining_percent']:.2f} %, expected {result['expected_remaining_percent']:.2f} %",
                  flush=True)
            results.append(result)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
