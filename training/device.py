"""One clear line about the device a run uses, instead of the backend's start-up noise.

TensorFlow writes its start-up lines from C++ straight to file descriptor 2 before its own log
level applies (``TF_CPP_MIN_LOG_LEVEL`` does not reach them): on a machine without a GPU every
run printed ``E0000 ... failed call to cuInit: INTERNAL: CUDA error`` and a few ``I0000`` lines.
``import_backend_quietly`` imports Keras and lists the devices (the two moments those lines
appear) with descriptor 2 captured, passes on every captured line that is not known noise, and
returns the one line to print instead, e.g. ``device: CPU (2 cores, tensorflow)``.
"""
import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile

# Start-up lines that say nothing a user can act on (no GPU here, CPU features, log set-up).
START_UP_NOISE = re.compile(
    r"cuInit|Could not find cuda drivers|oneDNN custom operations|All log messages before absl::InitializeLog"
    r"|cpu_feature_guard|rebuild TensorFlow with the appropriate compiler flags|Unable to register cu\w+ factory"
    r"|computation placer already registered|TF-TRT Warning")


@contextlib.contextmanager
def native_stderr_filtered():
    """Capture descriptor 2 for the block, then write back every captured line that is not START_UP_NOISE
    (Python warnings and errors from the block included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                    if line.strip() and not START_UP_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


TRAINING_BACKENDS = ("tensorflow", "jax", "torch")


class BackendError(ValueError):
    """KERAS_BACKEND names no backend this project trains on, or one that is not installed."""


def check_backend_name():
    """Refuse a KERAS_BACKEND that Keras would fail on with a page of traceback (checked before it loads)."""
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        return
    if name not in TRAINING_BACKENDS:
        raise BackendError(f"KERAS_BACKEND={name[:40]!r}: not a backend this project trains on; "
                           f"choose one of {', '.join(TRAINING_BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise BackendError(f"KERAS_BACKEND={name}: the {name} package is not installed")


def import_backend_quietly():
    """Import Keras with its backend and find the devices without start-up noise; the device line."""
    check_backend_name()
    with native_stderr_filtered():
        import keras

        backend = keras.backend.backend()
        accelerators = _accelerator_names(backend)
    if accelerators:
        return f"device: GPU ({', '.join(accelerators)}; {backend})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"device: CPU ({cores} cores, {backend})"


class _RetracingOfNewModels(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. A process that trains several models
    one after another (reproduce.py's timing runs and in-process studies) gets it for each new model's
    train function: expected, and its advice (define @tf.function outside the loop) does not apply."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_of_new_models():
    """Install _RetracingOfNewModels on TensorFlow's logger (once; other backends have no such warning)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(existing, _RetracingOfNewModels) for existing in logger.filters):
        logger.addFilter(_RetracingOfNewModels())


# /proc/cpuinfo flags of CPUs that compute bfloat16 natively (x86: AVX512_BF16, AMX; ARM: BF16).
NATIVE_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def native_bfloat16_cpu(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU computes bfloat16 natively, from the flags of ``cpuinfo``; None where it cannot be
    told (no such file: not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as file:
            flags = {word for line in file if line.lower().startswith(("flags", "features"))
                     for word in line.split(":", 1)[-1].split()}
    except OSError:
        return None
    return bool(flags & NATIVE_BFLOAT16_FLAGS)


def emulated_bfloat16_note(precision, cpuinfo="/proc/cpuinfo"):
    """A warning for ``training.precision: mixed_bfloat16`` where no GPU runs it and the CPU has no native
    bfloat16: the backend emulates it, several times slower than float32 (docs/precision.md); None otherwise."""
    if precision != "mixed_bfloat16" or native_bfloat16_cpu(cpuinfo) is not False:
        return None
    import keras

    if _accelerator_names(keras.backend.backend()):
        return None
    return ("warning: training.precision mixed_bfloat16 on a CPU without native bfloat16 (no avx512_bf16, "
            "amx_bf16 or bf16 flag in /proc/cpuinfo): it is emulated, and Conv2 steps took 9-10 times as long as "
            "in float32 on such a CPU (docs/precision.md); --set training.precision=float32 is faster here")


def _accelerator_names(backend):
    """The names of the GPUs the backend will use (empty on a CPU-only machine)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                for gpu in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [getattr(device, "device_kind", str(device)) for device in jax.devices() if device.platform != "cpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return []
