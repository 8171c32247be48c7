"""Export a finished signed-supermask run, or evaluate a saved run or export.

    python export.py results/<exp>/run_<i> [--out DIR]
        writes DIR/<exp>_run<i>.keras: a plain Keras model (Dense/Conv2D kernels W * q(S), other
            variables such as BN copied), loadable with keras.models.load_model alone;
        and DIR/<exp>_run<i>.compact.npz: 2-bit masks plus what regenerates W (reporting/compact.py);
        both are read back and checked against the run (identical kernels, same predictions).
        DIR defaults to <run>/export, or exports/ for a run shipped in measured/. Baseline runs get
        only the .keras file. A signed run needs no model.weights.h5: config.yaml, run.json and
        masks.npz (plus extra_state.npz where the model has BN) rebuild it, W drawn again from its seed:
            python export.py measured/conv2_signed/run_0
    python export.py evaluate PATH [--data-dir DIR] [--test-limit N] [--dataset NAME]
        PATH is a run folder, a .keras file or a .compact.npz file; prints test accuracy and
        remaining weights % (recomputed), next to the values the run recorded when known (a .keras
        file knows them, and its run's test limit, only inside that run's export/ folder).

Exit codes: 0 done, 1 a read-back check failed, 2 invalid input (one line naming the culprit).
"""
import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from training.device import BackendError, import_backend_quietly  # noqa: E402

try:
    import_backend_quietly()  # the backend's C++ start-up lines escape its log level; the device does not matter
except BackendError as backend_error:
    print(f"error: {backend_error}", file=sys.stderr)
    sys.exit(2)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from data import DATASET_NAMES  # noqa: E402
from fileio import atomic_path  # noqa: E402
from masking import masked_layers  # noqa: E402
from reporting.compact import read_compact, write_compact  # noqa: E402
from reporting.runmodel import (dataset_of, effective_kernel, export_stem, load_run,  # noqa: E402
                                measure_test_accuracy, model_remaining_percent, plain_model,
                                without_repository_initializers)
from training.config import load_saved_config  # noqa: E402
from training.run_record import RunRecord  # noqa: E402
from training.schema import ConfigError, brief  # noqa: E402

CHECK_SAMPLES = 64
SHIPPED_RESULTS = Path(__file__).resolve().parent / "measured"


def default_out_dir(run_directory):
    """<run>/export; measured/ holds only what the repository ships, so a shipped run's exports go to exports/."""
    if SHIPPED_RESULTS in Path(run_directory).resolve().parents:
        return Path(os.path.relpath(SHIPPED_RESULTS.parent / "exports"))
    return Path(run_directory) / "export"


def eager_predict(model, inputs):
    """One eager call: cheaper than ``predict`` for a single check batch."""
    return keras.ops.convert_to_numpy(model(inputs, training=False))


def export_run(run_directory, out_dir=None):
    """Write and verify the exports of one run; returns {'keras', 'compact', 'sizes', 'max_difference', ...}."""
    run = load_run(run_directory)
    out_dir = Path(out_dir) if out_dir else default_out_dir(run.directory)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"--out {out_dir}: cannot create the folder ({error.strerror})") from None
    inputs = np.random.default_rng(0).standard_normal((CHECK_SAMPLES,) + tuple(run.model.input_shape[1:]))
    inputs = inputs.astype(np.float32)
    reference = eager_predict(run.model, inputs)
    keras_path = out_dir / f"{run.stem}.keras"
    signed = run.config.model.signed
    plain = plain_model(run.config, run.seed, run.model) if signed else without_repository_initializers(run.model)
    with atomic_path(keras_path) as temporary:
        plain.save(temporary)
    reloaded = keras.models.load_model(keras_path, compile=False)
    result = {"keras": keras_path, "compact": None, "sizes": None,
              "max_difference": float(np.max(np.abs(eager_predict(reloaded, inputs) - reference)))}
    if not signed:
        return result
    compact_path = out_dir / f"{run.stem}.compact.npz"
    result["sizes"] = write_compact(compact_path, run.model, run.config, run.seed, run.record.final)
    rebuilt, _, _ = read_compact(compact_path)
    kernels_equal = all(np.array_equal(effective_kernel(a), effective_kernel(b))
                        for a, b in zip(masked_layers(run.model), masked_layers(rebuilt)))
    result.update(compact=compact_path, compact_kernels_equal=kernels_equal,
                  compact_difference=float(np.max(np.abs(eager_predict(rebuilt, inputs) - reference))))
    return result


def evaluate_path(path, data_dir=None, test_limit=None, dataset=None):
    """Recompute test accuracy and remaining % of a run folder, .keras or .compact.npz file."""
    path, recorded, config = Path(path), None, None
    if path.is_dir():
        run = load_run(path)
        model, config, recorded = run.model, run.config, run.record.final
    elif path.name.endswith(".npz"):
        model, config, meta = read_compact(path)
        recorded = meta.get("recorded")
    elif path.suffix == ".keras":
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as error:  # Keras raises many types, with pages of text, for a foreign or damaged file
            raise ValueError(f"{path}: not a loadable .keras model ({brief(error)})") from None
        config, recorded = exporting_run(path)
    else:
        raise ValueError(f"{path}: expected a run folder, a .keras or a .compact.npz file")
    dataset = dataset or (config.data.dataset if config else dataset_of(model))
    if test_limit is None and config is not None:
        test_limit = config.data.test_limit
    accuracy, images = measure_test_accuracy(model, dataset, data_dir or (config and config.data.dir), test_limit)
    return {"accuracy": accuracy, "images": images, "dataset": dataset,
            "remaining_percent": model_remaining_percent(model), "recorded": recorded}


def exporting_run(keras_path):
    """(config, recorded final metrics) of the finished run a .keras file was exported from, when it lies in
    that run's export/ folder under the run's export name; (None, None) otherwise: the file itself carries
    no run record, so its evaluation takes the whole test set unless told --test-limit."""
    folder = keras_path.parent.parent
    record = RunRecord.read_finished(folder) if keras_path.parent.name == "export" else None
    if record is None:
        return None, None
    try:
        config = load_saved_config(folder / "config.yaml")
    except ConfigError:
        return None, None
    if keras_path.stem != export_stem(config.experiment, record.run_index):
        return None, None
    return config, record.final


# How the compact file holds each masked layer's W (reporting/compact.py's weight records).
WEIGHT_KINDS = {"initializer": "regenerated from its initializer and seed", "signed_constant":
                "stored as signs and one magnitude", "float32": "stored as float32"}


def weights_text(kinds):
    """'W of 3 layers regenerated from its initializer and seed' for the record kinds of the masked layers."""
    return "; ".join(f"W of {count} layer{'s' if count != 1 else ''} {WEIGHT_KINDS.get(kind, kind)}"
                     for kind, count in Counter(kinds).items())


def _print_export(result):
    print(f"wrote {result['keras']} (plain Keras; max |prediction difference| after reload "
          f"{result['max_difference']:.3g})")
    sizes = result["sizes"]
    if not sizes:
        print("baseline run: no compact file (it stores masks of a signed model)")
    else:
        print(f"wrote {result['compact']} ({weights_text(sizes['kinds'])}; identical kernels on read-back: "
              f"{result['compact_kernels_equal']}, max |prediction difference| {result['compact_difference']:.3g})")
        print(f"size: dense float32 {sizes['dense_bytes']:,} B, compact {sizes['compact_bytes']:,} B, "
              f"ratio {sizes['ratio']:.1f}x")


def _evaluate_command(parser, argv):
    parser.prog += " evaluate"
    parser.add_argument("path", help="run folder, .keras or .compact.npz")
    parser.add_argument("--data-dir", help="folder of Keras-layout .npz files (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--test-limit", type=int, help="first N test images (default: the run's data.test_limit)")
    parser.add_argument("--dataset", choices=DATASET_NAMES, help="override the dataset")
    args = parser.parse_args(argv)
    try:
        result = evaluate_path(args.path, args.data_dir, args.test_limit, args.dataset)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    recorded = result["recorded"]
    if recorded:
        note = f" (recorded: {100 * recorded['test_accuracy']:.2f} %, {recorded['remaining_percent']:.2f} %)"
    elif args.test_limit is None and Path(args.path).suffix == ".keras":
        note = (" (a .keras file apart from its run's export/ folder has no recorded values: all test images; "
                "--test-limit N for a run's data.test_limit)")
    else:
        note = ""
    print(f"{args.path}: test accuracy {100 * result['accuracy']:.2f} % on {result['images']} {result['dataset']} "
          f"test images, remaining weights {result['remaining_percent']:.2f} %{note}")
    return 0


def _export_command(parser, argv):
    parser.add_argument("run", help="results/<experiment>/run_<i>")
    parser.add_argument("--out", help="output folder (default <run>/export)")
    args = parser.parse_args(argv)
    try:
        result = export_run(args.run, args.out)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_export(result)
    checks_pass = result["max_difference"] <= 1e-6 and (
        result["sizes"] is None or (result["compact_kernels_equal"] and result["compact_difference"] == 0.0))
    if not checks_pass:
        print("error: a read-back check failed (see above)", file=sys.stderr)
    return 0 if checks_pass else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if argv[:1] == ["evaluate"]:
        return _evaluate_command(parser, argv[1:])
    return _export_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
