"""Training-step cost of a signed supermask vs the same network trained normally (the floor).

    python bench/step_time.py                                   # FCN, Conv2, Conv4 on this backend
    KERAS_BACKEND=jax python bench/step_time.py --models FCN Conv2 Conv4 ResNet20
    python bench/step_time.py --jit-compile true --steps-per-execution 50
    python bench/step_time.py --models FCN Conv2 --precision float32,mixed_bfloat16   # bfloat16 beside float32

Each (model, variant) is measured in a fresh subprocess so that peak memory is its
own: ``model.fit`` over ``--steps`` batches of 128 random images (in memory),
repeated ``--repeats`` times after one warm-up pass; the median gives the step
time. "plain" is ``build_model(name, signed=False)``: identical layer shapes with
ordinary trainable kernels (ResNets: with the signed model's BN layout). ``--precision`` lists
Keras dtype policies (``training.precision``); each model is measured in each of them, one after
the other, and with two a second table gives bfloat16 / float32 ratios. Prints machine, versions
and Markdown tables; ``--json`` rows are one per (model, precision).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import write_json  # noqa: E402  (Keras-free; the child imports Keras itself)
from models.registry import MODEL_NAMES  # noqa: E402
from training.floor import floor_model  # noqa: E402  (imports Keras only when called)


def measure(name, signed, steps, repeats, jit_compile, steps_per_execution, batch_size, precision="float32"):
    """Median seconds per training step of one model variant (runs in the child process), fed as
    the run trainer feeds ``fit``."""
    import keras

    from training.runner import fit_feed

    model, x, y = floor_model(name, signed, steps * batch_size, jit_compile, steps_per_execution,
                              precision=precision)
    feed = fit_feed(x, y, batch_size)  # built once: the timed passes measure the steps, not the copy
    model.fit(**feed, epochs=1, shuffle=False, verbose=0)  # warm-up / compile
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(**feed, epochs=1, shuffle=False, verbose=0)
        timings.append((time.perf_counter() - started) / steps)
    step = statistics.median(timings)
    return {"model": name, "variant": "signed" if signed else "plain", "precision": precision, "step_ms": 1000 * step,
            "images_per_s": batch_size / step, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "backend": keras.backend.backend(), "keras": keras.__version__}


def run_child(args, name, signed, precision):
    command = [sys.executable, __file__, "--child", name, "signed" if signed else "plain",
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--jit-compile", args.jit_compile,
               "--steps-per-execution", str(args.steps_per_execution), "--batch-size", str(args.batch_size),
               "--precision", precision]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def precision_list(text):
    """``--precision``: comma-separated training.precision values, each once."""
    from training.config import PRECISIONS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PRECISIONS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct names from {', '.join(PRECISIONS)}")
    return names


def precision_table(rows, precisions):
    """Markdown lines: per model, plain and signed ms/step in each precision and their ratio to the first."""
    from reporting.tables import markdown_table

    first, others = precisions[0], precisions[1:]
    header = ["model"] + [f"{variant} {p} ms" for variant in ("plain", "signed") for p in precisions]
    header += [f"{variant} {p} / {first}" for variant in ("plain", "signed") for p in others]
    header += [f"signed/plain {p}" for p in precisions]
    table = []
    for name in dict.fromkeys(row["model"] for row in rows):
        by_precision = {row["precision"]: row for row in rows if row["model"] == name}
        cells = [name] + [f"{by_precision[p][variant]['step_ms']:.2f}" for variant in ("plain", "signed")
                          for p in precisions]
        cells += [f"{by_precision[p][variant]['step_ms'] / by_precision[first][variant]['step_ms']:.3f}"
                  for variant in ("plain", "signed") for p in others]
        cells += [f"{by_precision[p]['ratio']:.3f}" for p in precisions]
        table.append(cells)
    return markdown_table(header, table).split("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["FCN", "Conv2", "Conv4"], choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=50, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--precision", type=precision_list, default=["float32"],
                        help="comma-separated training.precision values to measure (first = the reference)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(args.child[0], args.child[1] == "signed", args.steps, args.repeats, args.jit_compile,
                         args.steps_per_execution, args.batch_size, args.precision[0])
        print(json.dumps(result))
        return
    rows = []
    for name in args.models:
        for precision in args.precision:
            plain, signed = run_child(args, name, False, precision), run_child(args, name, True, precision)
            rows.append({"model": name, "precision": precision, "plain": plain, "signed": signed,
                         "ratio": signed["step_ms"] / plain["step_ms"]})
            print(f"{name} {precision}: plain {plain['step_ms']:.2f}, signed {signed['step_ms']:.2f} ms/step",
                  file=sys.stderr, flush=True)
            if args.json:  # after every row: a run cut short keeps what it measured
                write_json(args.json, rows)
    backend = rows[0]["signed"]["backend"] if rows else "?"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; python "
          f"{platform.python_version()}; keras {rows[0]['signed']['keras'] if rows else '?'} ({backend}); "
          f"jit_compile={args.jit_compile}, steps_per_execution={args.steps_per_execution}, batch {args.batch_size}")
    from reporting.tables import markdown_table
    print(markdown_table(["model", "precision", "plain ms/step", "signed ms/step", "ratio", "signed images/s",
                          "peak RSS plain / signed MB"],
                         [[row["model"], row["precision"], f"{row['plain']['step_ms']:.2f}", f"{row['signed']['step_ms']:.2f}",
                           f"{row['ratio']:.3f}", f"{row['signed']['images_per_s']:.0f}",
                           f"{row['plain']['peak_rss_mb']:.0f} / {row['signed']['peak_rss_mb']:.0f}"] for row in rows]))
    if len(args.precision) > 1:
        print("\n".join(["", *precision_table(rows, args.precision)]))


if __name__ == "__main__":
    main()
