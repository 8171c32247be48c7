"""Training-step cost of a signed supermask vs the same network trained normally (the floor).

    python bench/step_time.py                                   # FCN, Conv2, Conv4 on this backend
    KERAS_BACKEND=jax python bench/step_time.py --models FCN Conv2 Conv4 ResNet20
    python bench/step_time.py --jit-compile true --steps-per-execution 50

Each (model, variant) is measured in a fresh subprocess so that peak memory is its
own: ``model.fit`` over ``--steps`` batches of 128 random images (in memory),
repeated ``--repeats`` times after one warm-up pass; the median gives the step
time. "plain" is ``build_model(name, signed=False)``: identical layer shapes with
ordinary trainable kernels (ResNets: with the signed model's BN layout). Prints machine,
versions and a Markdown table.
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

from fileio import atomic_write_text  # noqa: E402  (Keras-free; the child imports Keras itself)
from models.registry import MODEL_NAMES  # noqa: E402


def floor_model(name, signed, images, jit_compile="auto", steps_per_execution=1, metrics=("accuracy",)):
    """(compiled model, random images, random labels) of the benchmark: ``build_model(name, signed)`` with
    the signed model's BN layout on both variants, plain SGD, ``images`` N(0, 1) images in memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from models import build_model, model_family

    # The floor has the signed model's BN layout (baselines default to real BN everywhere).
    bn_mode = model_family(name).default_bn_mode(signed=True)
    model = build_model(name, signed=signed, **({"bn_mode": bn_mode} if bn_mode else {}))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(images, *model.input_shape[1:])).astype("float32")
    y = rng.integers(0, model.output_shape[-1], size=images).astype("int32")
    jit = {"true": True, "false": False}.get(jit_compile, jit_compile)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=list(metrics),
                  jit_compile=jit, steps_per_execution=steps_per_execution)
    return model, x, y


def measure(name, signed, steps, repeats, jit_compile, steps_per_execution, batch_size):
    """Median seconds per training step of one model variant (runs in the child process), fed as
    the run trainer feeds ``fit``."""
    import keras

    from training.runner import fit_feed

    model, x, y = floor_model(name, signed, steps * batch_size, jit_compile, steps_per_execution)
    feed = fit_feed(x, y, batch_size)  # built once: the timed passes measure the steps, not the copy
    model.fit(**feed, epochs=1, shuffle=False, verbose=0)  # warm-up / compile
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(**feed, epochs=1, shuffle=False, verbose=0)
        timings.append((time.perf_counter() - started) / steps)
    step = statistics.median(timings)
    return {"model": name, "variant": "signed" if signed else "plain", "step_ms": 1000 * step,
            "images_per_s": batch_size / step, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "backend": keras.backend.backend(), "keras": keras.__version__}


def run_child(args, name, signed):
    command = [sys.executable, __file__, "--child", name, "signed" if signed else "plain",
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--jit-compile", args.jit_compile,
               "--steps-per-execution", str(args.steps_per_execution), "--batch-size", str(args.batch_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["FCN", "Conv2", "Conv4"], choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=50, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--jit-compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(args.child[0], args.child[1] == "signed", args.steps, args.repeats, args.jit_compile,
                         args.steps_per_execution, args.batch_size)
        print(json.dumps(result))
        return
    rows = []
    for name in args.models:
        plain, signed = run_child(args, name, False), run_child(args, name, True)
        rows.append({"model": name, "plain": plain, "signed": signed, "ratio": signed["step_ms"] / plain["step_ms"]})
    backend = rows[0]["signed"]["backend"] if rows else "?"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; python "
          f"{platform.python_version()}; keras {rows[0]['signed']['keras'] if rows else '?'} ({backend}); "
          f"jit_compile={args.jit_compile}, steps_per_execution={args.steps_per_execution}, batch {args.batch_size}")
    print("| model | plain ms/step | signed ms/step | ratio | signed images/s | peak RSS plain / signed MB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['plain']['step_ms']:.2f} | {row['signed']['step_ms']:.2f} | "
              f"{row['ratio']:.3f} | {row['signed']['images_per_s']:.0f} | "
              f"{row['plain']['peak_rss_mb']:.0f} / {row['signed']['peak_rss_mb']:.0f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
