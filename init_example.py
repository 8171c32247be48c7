"""Write the initial weights and scores of every run as pickles, or inspect such a file.

    python init_example.py --model FCN --runs 5
    python init_example.py --model all --runs 5
    python init_example.py --inspect weights/FCN/weights/signed_constant_elus/FCN_weights_0.pkl

Per run r (seed = base seed + r, docs/SPEC.md §2.7) three files are written under
``weights/<model>/<kind>/<distribution>_<scaling>[_x<factor>]/<model>_<kind>_<r>.pkl``:
``weights`` (frozen W of the signed model), ``scores`` (its initial scores S) and
``baseline`` (the kernels of the ordinary model). ``train.py`` loads them; the
layout of a file is documented in ``masking/init_files.py``. A model layout other than the
default (--width-multiplier, --num-classes, --projection-every, --extra-head) is recorded in the
file and named in its folder: ``weights/ResNet20_width2/...`` (``--model ResNet20 --width-multiplier 2``),
which is where a config with that layout (``configs/resnet20x2_signed.yaml``) looks for it.
The same arguments always write the same bytes. A file that already holds the same values is left
as it is; one that holds other values (edited, or written with other options) is kept and the
command stops with an error, unless --overwrite is given.
"""
import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # one-line errors, not TensorFlow start-up logs
from fileio import atomic_write_bytes  # noqa: E402 (Keras-free, like every import here: --help needs no backend)
from masking.init_paths import InitFileError, init_file_path  # noqa: E402
from masking.init_spec import (BASELINE_WEIGHT_INIT, DEFAULT_SEED, SIGNED_SCORE_INIT,  # noqa: E402
                               SIGNED_WEIGHT_INIT, InitSpec)
from models.registry import MODEL_FAMILIES, MODEL_NAMES, NUM_CLASSES, layout_folder  # noqa: E402
from training.config import MAX_RUNS, MAX_WIDTH_MULTIPLIER  # noqa: E402
from training.device import BackendError, import_backend_quietly  # noqa: E402


def parse_init(text):
    """``InitSpec.parse`` with argparse's error type, so that a bad spec is a usage error naming it."""
    try:
        return InitSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def bounded_number(kind, minimum, maximum=math.inf):
    """An argparse type: a finite ``kind`` (int or float) in [minimum, maximum], else a usage error naming it."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text[:40]!r}") from None
        if not (minimum <= value <= maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum < math.inf else f">= {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text[:40]}")
        return value
    return parse


class ExistingFileError(Exception):
    """An init file that already exists with other content, and --overwrite was not given."""


def write_run_files(model_name, run, base_seed, out, weight_init, score_init, baseline_init, options, overwrite=False):
    """Build the signed and baseline models for run ``run`` (seed ``base_seed + run``) and pickle their
    initial values: [(path, what happened: written, unchanged or replaced)]."""
    from masking.init_files import encode_init_payload, init_payload
    from models import build_model

    seed = base_seed + run
    signed = build_model(model_name, signed=True, seed=seed, weight_init=weight_init, score_init=score_init,
                         **options)
    baseline = build_model(model_name, signed=False, seed=seed, weight_init=baseline_init, **options)
    done = []
    for model, kind, spec in ((signed, "weights", weight_init), (signed, "scores", score_init),
                              (baseline, "baseline", baseline_init)):
        path = init_file_path(out, layout_folder(model_name, options, base_seed), kind, spec, run)
        payload = init_payload(model, kind, spec, seed, run, options)
        outcome = "written"
        if path.exists():
            outcome = "unchanged" if _holds(path, payload) else "replaced"
            if outcome == "replaced" and not overwrite:
                raise ExistingFileError(f"{path}: exists with other content (edited, or written with other "
                                        f"options); kept. Pass --overwrite to replace it, or use another --out")
        if outcome != "unchanged":
            atomic_write_bytes(path, encode_init_payload(payload))
        done.append((path, outcome))
    return done


def _holds(path, payload):
    """Whether the file at ``path`` is a readable init file with the same content as ``payload``."""
    from masking.init_files import load_init_file, same_init_content

    try:
        return same_init_content(load_init_file(path), payload)
    except InitFileError:
        return False


def inspect(path):
    from masking.init_files import load_init_file

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
    parser.add_argument("--runs", type=bounded_number(int, 1, MAX_RUNS), default=5,
                        help="number of runs (seeds) to write (default 5: runs 0-4)")
    parser.add_argument("--seed", type=bounded_number(int, 0), default=DEFAULT_SEED,
                        help="base seed; run r uses seed + r")
    parser.add_argument("--weight-init", type=parse_init, default=SIGNED_WEIGHT_INIT,
                        help=f"signed model weights, distribution/scaling[/factor] (default {SIGNED_WEIGHT_INIT})")
    parser.add_argument("--score-init", type=parse_init, default=SIGNED_SCORE_INIT,
                        help=f"scores, distribution/scaling[/factor] (default {SIGNED_SCORE_INIT})")
    parser.add_argument("--baseline-init", type=parse_init, default=BASELINE_WEIGHT_INIT,
                        help=f"baseline kernels (default {BASELINE_WEIGHT_INIT})")
    parser.add_argument("--width-multiplier", type=bounded_number(float, 1e-6, MAX_WIDTH_MULTIPLIER), default=1.0)
    parser.add_argument("--num-classes", type=bounded_number(int, 1, max(NUM_CLASSES.values())), default=None,
                        help="default: the model's paper dataset")
    parser.add_argument("--projection-every", type=bounded_number(int, 1), default=None,
                        help="ResNets: a projection block every N blocks of a stage (model.projection_every)")
    parser.add_argument("--extra-head", action="store_true",
                        help="ResNets: the extra ELU + dense head (model.extra_head)")
    parser.add_argument("--out", default="weights", help="output folder (default weights/)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files that exist with other content (default: keep them and stop)")
    parser.add_argument("--inspect", metavar="FILE", help="print a file's metadata and array shapes, then exit")
    args = parser.parse_args(argv)
    try:
        import_backend_quietly()  # the backend's C++ start-up lines escape its log level; the device does not matter
    except BackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.inspect:
        try:
            inspect(args.inspect)
        except (InitFileError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}")
    for name in names:
        for flag, value in (("--projection-every", args.projection_every), ("--extra-head", args.extra_head)):
            if value and MODEL_FAMILIES[name].kind != "resnet":
                parser.error(f"argument {flag}: applies to ResNets only, not {name}")
        problem = MODEL_FAMILIES[name].width_multiplier_problem(args.width_multiplier)
        if problem:
            parser.error(f"argument --width-multiplier: {problem}")
    try:
        write_all(names, args)
    except ExistingFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: --out {args.out}: cannot write {error.filename or args.out} "
              f"({error.strerror or type(error).__name__})", file=sys.stderr)
        return 2
    return 0


def layout_options(name, args):
    """Every layout option of model ``name``, defaults included: the file records the same options
    however they were given (``--width-multiplier 1`` or nothing), so the same values give the same bytes."""
    options = {"width_multiplier": float(args.width_multiplier),
               "num_classes": args.num_classes or MODEL_FAMILIES[name].num_classes}
    if MODEL_FAMILIES[name].kind == "resnet":
        options.update(projection_every=args.projection_every, extra_head=bool(args.extra_head))
    return options


def write_all(names, args):
    for name in names:
        options = layout_options(name, args)
        for run in range(args.runs):
            done = write_run_files(name, run, args.seed, args.out, args.weight_init, args.score_init,
                                   args.baseline_init, options, args.overwrite)
            print(f"{name} run {run} (seed {args.seed + run}): "
                  + ", ".join(f"{path}" + ("" if outcome == "written" else f" ({outcome})") for path, outcome in done))


if __name__ == "__main__":
    sys.exit(main())
