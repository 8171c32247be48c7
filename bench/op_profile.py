"""Per-op profile of a training step, signed vs plain (TensorFlow only): where the extra time goes.

    python bench/op_profile.py --models ResNet110 --steps 10
    python bench/op_profile.py --models Conv2 --steps 20 --top 12 --json /tmp/op_profile.json

For each (model, variant), in its own subprocess: ``bench/step_time.py``'s model and optimizer,
one warm-up ``fit`` pass, then ``--steps`` batches under ``tf.profiler``; the trace is read back
with TensorFlow's own converter (``framework_op_stats``, the table TensorBoard's profile tab shows)
and summed by op type. Prints ms per step per op type for plain and signed and their difference,
largest difference first, so a signed step that costs more than its floor shows which ops pay.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fileio import write_json  # noqa: E402
from models.registry import MODEL_NAMES  # noqa: E402
from reporting.tables import markdown_table  # noqa: E402
from training.floor import floor_model  # noqa: E402


def op_type(name):
    """The op's type without oneDNN's rename: the same MatMul is `_MklMatMul` on an AVX-512 CPU, `MatMul` on AVX2."""
    for prefix in ("_MklNative", "_Mkl"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def profile(name, signed, steps, batch_size):
    """{op type: self-time ms per step} of one variant, plus the wall time per step (child process)."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as converter

    from training.runner import fit_feed

    model, x, y = floor_model(name, signed, steps * batch_size, jit_compile=False, metrics=())
    feed = fit_feed(x, y, batch_size)  # built once: the profiled pass holds the steps, not the copy
    model.fit(**feed, epochs=1, shuffle=False, verbose=0)  # warm-up / tracing
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        model.fit(**feed, epochs=1, shuffle=False, verbose=0)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        data, _ = converter.xspace_to_tools_data(traces, "framework_op_stats", {})
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    by_type = Counter()
    for row in table["rows"]:
        values = dict(zip(columns, (cell.get("v") for cell in row["c"])))
        if values["type"] != "IDLE":
            by_type[op_type(values["type"])] += values["total_self_time"] / 1000 / steps
    return {"model": name, "variant": "signed" if signed else "plain", "wall_ms": 1000 * wall / steps,
            "ops_ms": dict(by_type)}


def run_child(name, signed, steps, batch_size):
    command = [sys.executable, __file__, "--child", name, "signed" if signed else "plain",
               "--steps", str(steps), "--batch-size", str(batch_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table_lines(plain, signed, top):
    """Markdown rows: op type, plain and signed ms per step, difference; largest difference first."""
    types = set(plain["ops_ms"]) | set(signed["ops_ms"])
    diff = {op: signed["ops_ms"].get(op, 0.0) - plain["ops_ms"].get(op, 0.0) for op in types}
    rows = [[op, f"{plain['ops_ms'].get(op, 0.0):.2f}", f"{signed['ops_ms'].get(op, 0.0):.2f}", f"{diff[op]:+.2f}"]
            for op in sorted(types, key=lambda op: -abs(diff[op]))[:top]]
    table = markdown_table(["op type", "plain ms/step", "signed ms/step", "signed - plain"], rows)
    return [f"{signed['model']}: wall {plain['wall_ms']:.1f} ms/step plain, {signed['wall_ms']:.1f} signed; "
            f"op self-time {sum(plain['ops_ms'].values()):.1f} / {sum(signed['ops_ms'].values()):.1f} ms/step",
            *table.split("\n")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ResNet110"], choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=10, help="profiled batches")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--top", type=int, default=15, help="op types shown per model")
    parser.add_argument("--json", help="also write the per-op numbers to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(profile(args.child[0], args.child[1] == "signed", args.steps, args.batch_size)))
        return
    results = []
    for name in args.models:
        plain, signed = (run_child(name, variant, args.steps, args.batch_size) for variant in (False, True))
        results.append({"plain": plain, "signed": signed})
        print("\n".join(table_lines(plain, signed, args.top)) + "\n", flush=True)
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
