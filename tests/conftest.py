"""Shared test setup: default to the TensorFlow backend and keep the repo root importable."""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


def real_data_dir(*file_names):
    """The folder with the real datasets: $SUPERMASK_DATA_DIR or ../shared/datasets.

    Skips when the files are absent, except under CI, where a missing dataset fails.
    """
    from pathlib import Path
    folder = Path(os.environ.get("SUPERMASK_DATA_DIR") or Path(REPO_ROOT).parent / "shared" / "datasets")
    missing = [name for name in file_names if not (folder / name).exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"real data {missing} not found in {folder} (required in CI)")
        pytest.skip(f"real data {missing} not found in {folder}")
    return folder
