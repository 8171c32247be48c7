"""Shared test setup: default to the TensorFlow backend and keep the repo root importable; tests never
read init files from the working tree's weights/ nor write into it or results/."""
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The default init.weights_dir (weights/) of every test and every process a test starts: an empty folder,
# so a user's own init files (e.g. from the README's main command) never change what a test sees.
_NO_INIT_FILES = tempfile.TemporaryDirectory(prefix="no-init-files-")
os.environ["SUPERMASK_WEIGHTS_DIR"] = _NO_INIT_FILES.name

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


def _tree_state(*folders):
    """{path: (size, mtime)} of every file under the working tree's ``folders``."""
    state = {}
    for folder in folders:
        for directory, _, names in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in names:
                path = os.path.join(directory, name)
                with_stat = os.stat(path)
                state[path] = (with_stat.st_size, with_stat.st_mtime_ns)
    return state


@pytest.fixture(scope="session", autouse=True)
def working_tree_results_untouched():
    """A test that writes into the working tree's weights/ or results/ fails the session."""
    before = _tree_state("weights", "results")
    yield
    changed = sorted(set(before.items()) ^ set(_tree_state("weights", "results").items()))
    assert not changed, f"tests changed the working tree's weights/ or results/: {changed[:5]}"


# Two logical CPU devices for JAX. Eigen stays single-threaded: with a multi-threaded Eigen pool XLA runs
# one device's all-reduce on a pool worker, and on a 2-core machine that worker can wait for a device
# that needs it (CI aborted once after 600 s: "Expected 2 threads to join the rendezvous, but only 1
# of them arrived"). The longer rendezvous timeout covers a busy machine's slow device thread.
JAX_TWO_CPU_DEVICES = ("--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false"
                       " --xla_cpu_collective_call_terminate_timeout_seconds=600")


def real_data_dir(*file_names):
    """The folder with the real datasets: $SUPERMASK_DATA_DIR or ../shared/datasets.

    A missing file fails the test wherever a data folder is there to hold it ($SUPERMASK_DATA_DIR set, or
    ../shared/datasets present, as in CI) and under $CI; it skips only on a machine with no data folder
    at all, so a wrong folder never turns the real-data tests into silent skips.
    """
    from pathlib import Path
    configured = os.environ.get("SUPERMASK_DATA_DIR")
    folder = Path(configured or Path(REPO_ROOT).parent / "shared" / "datasets")
    missing = [name for name in file_names if not (folder / name).exists()]
    if missing:
        if os.environ.get("CI") or configured or folder.is_dir():
            pytest.fail(f"real data {missing} not found in {folder} (the real-data tests need it)")
        pytest.skip(f"real data {missing} not found in {folder}: no data folder on this machine")
    return folder


def deny_writes_as_root(monkeypatch, folder):
    """Root may write into a 0o555 folder, so where the tests run as root (containers, CI) the folder
    answers as for anyone else: ``os.access`` denies writing, ``os.mkdir`` in it raises EACCES."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return
    import errno
    folder = os.path.abspath(folder)
    real_access, real_mkdir = os.access, os.mkdir

    def access(path, mode, **kwargs):
        if os.path.abspath(path) == folder and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    def mkdir(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "mkdir", mkdir)
