"""Write the initial weights and scores of every run as pickles, or inspect such a file.

    python init_example.py --model FCN --runs 5
    python init_example.py --model all --runs 5
    python init_example.py --inspect weights/FCN/weights/signed_constant_elus/FCN_weights_0.pkl

Per run r (seed = base seed + r, METHOD §2.7) three files are written under
``weights/<model>/<kind>/<distribution>_<scaling>/<model>_<kind>_<r>.pkl``:
``weights`` (frozen W of the signed model), ``scores`` (its initial scores S) and
``baseline`` (the kernels of the ordinary model). ``train.py`` loads them; the
layout of a file is documented in ``masking/init_files.py``.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # one-line errors, not TensorFlow start-up logs

from masking.init_files import InitFileError, init_file_path, load_init_file, save_init_file
from masking.init_spec import BASELINE_WEIGHT_INIT, DEFAULT_SEED, SIGNED_SCORE_INIT, SIGNED_WEIGHT_INIT, InitSpec
from models import MODEL_NAMES, build_model


def parse_init(text):
    """``InitSpec.parse`` with argparse's error type, so that a bad spec is a usage error naming it."""
    try:
        return InitSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def write_run_files(model_name, run, seed, out, weight_init, score_init, baseline_init, options):
    """Build the signed and baseline models for one run and pickle their initial values."""
    signed = build_model(model_name, signed=True, seed=seed, weight_init=weight_init, score_init=score_init,
                         **options)
    baseline = build_model(model_name, signed=False, seed=seed, weight_init=baseline_init, **options)
    written = []
    for model, kind, spec in ((signed, "weights", weight_init), (signed, "scores", score_init),
                              (baseline, "baseline", baseline_init)):
        path = init_file_path(out, model_name, kind, spec, run)
        save_init_file(path, model, kind, spec, seed, run, options)
        written.append(path)
    return written


def inspect(path):
    payload = load_init_file(path)
    print(f"file:        {path}")
    for key in ("model", "kind", "initializer", "seed", "run", "options"):
        print(f"{key + ':':<13}{payload.get(key)}")
    for entry in payload["layers"]:
        values = entry["values"]
        print(f"  {entry['name']:<24} {str(tuple(entry['shape'])):<22} {values.dtype}  "
              f"min {values.min():+.5f}  max {values.max():+.5f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="FCN", help=f"one of {', '.join(MODEL_NAMES)}, or 'all'")
    parser.add_argument("--runs", type=int, default=5, help="number of runs (seeds) to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="base seed; run r uses seed + r")
    parser.add_argument("--weight-init", type=parse_init, default=SIGNED_WEIGHT_INIT,
                        help=f"signed model weights, distribution/scaling[/factor] (default {SIGNED_WEIGHT_INIT})")
    parser.add_argument("--score-init", type=parse_init, default=SIGNED_SCORE_INIT,
                        help=f"scores, distribution/scaling[/factor] (default {SIGNED_SCORE_INIT})")
    parser.add_argument("--baseline-init", type=parse_init, default=BASELINE_WEIGHT_INIT,
                        help=f"baseline kernels (default {BASELINE_WEIGHT_INIT})")
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=None, help="default: the model's paper dataset")
    parser.add_argument("--out", default="weights", help="output folder (default weights/)")
    parser.add_argument("--inspect", metavar="FILE", help="print a file's metadata and array shapes, then exit")
    args = parser.parse_args(argv)

    if args.inspect:
        try:
            inspect(args.inspect)
        except InitFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown or args.runs < 1:
        parser.error(f"unknown model {unknown[0]!r}" if unknown else "--runs must be >= 1")
    for name in names:
        options = {"width_multiplier": args.width_multiplier}
        if args.num_classes:
            options["num_classes"] = args.num_classes
        for run in range(args.runs):
            paths = write_run_files(name, run, args.seed + run, args.out, args.weight_init, args.score_init,
                                    args.baseline_init, options)
            print(f"{name} run {run} (seed {args.seed + run}): " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
