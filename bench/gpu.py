"""The GPU session's measurements in one script and one JSON file: step times of Conv2-8 and ResNet20
in float32 and mixed_bfloat16, and a 100-epoch Conv2 signed run (float32 unless ``--run-precision``).

    # on a GPU machine with JAX (docs/gpu.md), from the project root:
    KERAS_BACKEND=jax python bench/gpu.py --data-dir .devdata --out $OUT/gpu.json
    python bench/gpu.py --smoke --out /tmp/gpu.json     # CPU check of the script: 2 steps, 1 short epoch

Parts, in order, each written to the JSON as soon as it is done (a run cut short keeps what it had):
``environment`` (backend, versions, devices, whether a GPU is used), ``flops`` (bench/flops.py's counts,
to set measured step times against), ``step_times``
(``bench/step_time.py`` for each model, plain and signed, in each ``--precision``, one row per model and
precision; XLA on (off in ``--smoke``), ``--steps-per-execution`` steps per call; one model that fails is recorded
and the others continue), ``conv2_run`` (``train.py configs/conv2_signed.yaml --runs 1`` for ``--epochs`` epochs
in ``--run-precision`` into a scratch folder; final accuracy, remaining %, per-epoch seconds). Without a GPU the script stops with exit 2 unless ``--smoke`` or ``--allow-cpu``.
Exit codes: 0 all parts done, 1 a part failed, 2 no GPU or bad input.
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import read_json, write_json  # noqa: E402
from training.config import PRECISIONS  # noqa: E402

STEP_MODELS = ("Conv2", "Conv4", "Conv6", "Conv8", "ResNet20")
# Smoke mode: XLA off too, since compiling for a CPU costs more than the smoke run itself.
SMOKE = {"steps": 2, "repeats": 1, "epochs": 1, "jit_compile": "false",
         "overrides": ("data.train_limit=256", "data.test_limit=256")}


def environment():
    """Backend, versions and accelerator devices, as the backend itself sees them."""
    import keras

    backend = keras.backend.backend()
    devices = []
    if backend == "jax":
        import jax
        devices = [f"{device.platform}:{device.device_kind}" for device in jax.devices()]
    elif backend == "tensorflow":
        import tensorflow as tf
        devices = [f"gpu:{device.name}" for device in tf.config.list_physical_devices("GPU")] or ["cpu"]
    elif backend == "torch":
        import torch
        devices = [f"gpu:{torch.cuda.get_device_name(0)}"] if torch.cuda.is_available() else ["cpu"]
    return {"backend": backend, "keras": keras.__version__, "python": platform.python_version(),
            "devices": devices, "gpu": any(d.startswith(("gpu", "cuda")) for d in devices),
            "cpus": os.cpu_count(), "machine": platform.node()}


def step_times(models, steps, repeats, steps_per_execution, jit_compile, precisions=("float32",)):
    """bench/step_time.py per model (one subprocess each, so one failure stays one failure): one row per
    model and precision, ``wall_seconds`` that of the model's subprocess."""
    results = []
    for name in models:
        with tempfile.TemporaryDirectory() as scratch:
            table = Path(scratch) / "steps.json"
            command = [sys.executable, str(ROOT / "bench" / "step_time.py"), "--models", name, "--steps", str(steps),
                       "--repeats", str(repeats), "--jit-compile", jit_compile,
                       "--steps-per-execution", str(steps_per_execution), "--precision", ",".join(precisions),
                       "--json", str(table)]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0 or not table.exists():
                rows = [{"model": name, "error": (done.stderr or done.stdout).strip()[-1500:], "wall_seconds": seconds}]
            else:
                rows = [{**row, "wall_seconds": seconds} for row in read_json(table)]
        results += rows
        for row in rows:
            print(f"[gpu] {name}: " + (f"{row['precision']}: plain {row['plain']['step_ms']:.2f} ms, signed "
                                       f"{row['signed']['step_ms']:.2f} ms per step" if "error" not in row
                                       else f"failed: {row['error'][-300:]}"), flush=True)
    return results


def conv2_run(epochs, overrides, data_dir):
    """One Conv2 signed run through train.py; the run's own numbers, the heavy files left behind."""
    scratch = tempfile.mkdtemp(prefix="gpu-conv2-")
    command = [sys.executable, str(ROOT / "train.py"), str(ROOT / "configs" / "conv2_signed.yaml"), "--runs", "1",
               "--out", scratch, "--quiet", "--set", "experiment=conv2_signed", "--set", f"training.epochs={epochs}"]
    for override in overrides:
        command += ["--set", override]
    if data_dir:
        command += ["--data-dir", data_dir]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        run_folder = Path(scratch) / "conv2_signed" / "run_0"
        if done.returncode != 0:
            return {"error": (done.stderr or done.stdout).strip()[-1500:], "exit_code": done.returncode,
                    "wall_seconds": wall}
        info = read_json(run_folder / "run.json")
        history = read_json(run_folder / "history.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = history["epoch_seconds"]
    return {"command": " ".join(command[1:]).replace(scratch, "<scratch>"), "epochs": info["epochs_trained"],
            "precision": info["precision"], "final": info["final"], "training_seconds": info["training_seconds"],
            "wall_seconds": wall,
            "first_epoch_seconds": seconds[0], "median_epoch_seconds": statistics.median(seconds),
            "test_accuracy": history["test_accuracy"], "remaining_percent": history["remaining_percent"],
            "epoch_seconds": seconds}


def flop_counts(models):
    """Forward FLOPs per image of each benchmarked model (signed build; masks add only element-wise work)."""
    from models.flops import forward_macs
    from models import build_model

    return {name: 2 * forward_macs(build_model(name, signed=True)) for name in models}


def summary(payload):
    from reporting.tables import markdown_table

    rows, flops = [], payload.get("flops", {})
    for row in payload.get("step_times", []):
        if "error" in row:
            rows.append([row["model"], "failed", "", "", "", "", ""])
            continue
        forward = flops.get(row["model"])
        rate = forward and 3 * forward * row["signed"]["images_per_s"] / 1e12
        rows.append([row["model"], row["precision"], f"{row['plain']['step_ms']:.2f}", f"{row['signed']['step_ms']:.2f}",
                     f"{row['signed']['images_per_s']:,.0f}", f"{forward / 1e9 if forward else float('nan'):.3f}",
                     f"{rate or float('nan'):.2f}"])
    header = ["model", "precision", "plain ms/step", "signed ms/step", "signed images/s", "forward GFLOP/image",
              "signed TFLOP/s"]
    lines = [markdown_table(header, rows)]
    run = payload.get("conv2_run")
    if run and "error" not in run:
        lines.append(f"\nConv2 signed, {run['epochs']} epochs, {run['precision']}: test accuracy {100 * run['final']['test_accuracy']:.2f} %, "
                     f"remaining {run['final']['remaining_percent']:.2f} %, {run['training_seconds']:.0f} s training "
                     f"(median epoch {run['median_epoch_seconds']:.2f} s, first {run['first_epoch_seconds']:.1f} s)")
    elif run:
        lines.append(f"\nConv2 signed run failed: {run['error'][-300:]}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else ROOT / "bench" / "logs" / "gpu.json"
    parser.add_argument("--out", default=str(default_out), help="JSON file (default $OUT/gpu.json if $OUT is set)")
    parser.add_argument("--models", default=",".join(STEP_MODELS), help="models for the step-time part")
    parser.add_argument("--steps", type=int, default=50, help="batches per timed pass (step_time.py)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per model and variant")
    parser.add_argument("--steps-per-execution", type=int, default=50, help="train steps per compiled call")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the Conv2 signed run")
    parser.add_argument("--parts", default="steps,run", help="steps, run or both")
    parser.add_argument("--precision", default="float32,mixed_bfloat16", help="precisions of the step-time part")
    parser.add_argument("--run-precision", default="float32", help="training.precision of the Conv2 run")
    parser.add_argument("--data-dir", help="folder with cifar10.npz or cifar10_jpeg.npz (else $SUPERMASK_DATA_DIR)")
    parser.add_argument("--smoke", action="store_true", help="tiny everything: checks the script on a CPU")
    parser.add_argument("--allow-cpu", action="store_true", help="run the full script without a GPU")
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    precisions = [name.strip() for name in args.precision.split(",") if name.strip()]
    if (not models or not set(models) <= set(STEP_MODELS) or not parts or not parts <= {"steps", "run"}
            or not precisions or not set(precisions) | {args.run_precision} <= set(PRECISIONS)):
        print(f"error: --models from {', '.join(STEP_MODELS)}; --parts from steps, run; --precision and "
              f"--run-precision from {', '.join(PRECISIONS)}", file=sys.stderr)
        return 2
    steps, repeats, epochs, jit_compile, overrides = args.steps, args.repeats, args.epochs, "true", ()
    if args.smoke:
        steps, repeats, epochs = SMOKE["steps"], SMOKE["repeats"], SMOKE["epochs"]
        jit_compile, overrides = SMOKE["jit_compile"], SMOKE["overrides"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    payload = {"script": "bench/gpu.py", "smoke": args.smoke, "environment": environment(),
               "settings": {"steps": steps, "repeats": repeats, "steps_per_execution": args.steps_per_execution,
                            "jit_compile": jit_compile, "epochs": epochs, "overrides": list(overrides),
                            "precisions": precisions, "run_precision": args.run_precision}}
    print(f"[gpu] {payload['environment']}", flush=True)
    if not payload["environment"]["gpu"] and not (args.smoke or args.allow_cpu):
        print("error: no GPU visible to the backend (use --allow-cpu or --smoke to run anyway)", file=sys.stderr)
        return 2
    payload["flops"] = flop_counts(models)
    write_json(out, payload)
    if "steps" in parts:
        payload["step_times"] = step_times(models, steps, repeats, min(args.steps_per_execution, steps), jit_compile,
                                           precisions)
        write_json(out, payload)
    if "run" in parts:
        payload["conv2_run"] = conv2_run(epochs, (*overrides, f"training.precision={args.run_precision}"),
                                         args.data_dir)
        write_json(out, payload)
    payload["wall_seconds"] = time.perf_counter() - started
    write_json(out, payload)
    print(summary(payload), flush=True)
    print(f"[gpu] wrote {out}", flush=True)
    failed = any("error" in row for row in payload.get("step_times", [])) or "error" in payload.get("conv2_run", {})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
