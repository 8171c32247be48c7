"""The README's "The layers in your own model" snippet runs as printed (so it cannot drift), outside
the clone, with only what pyproject.toml installs on the path."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import real_data_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## The layers in your own model"
# Top-level names the repository uses for its pipeline: generic enough to shadow other projects' packages.
NEVER_INSTALLED = ("data", "models", "training", "reporting", "bench", "fileio")

# Run after the snippet, in its namespace: what the snippet promises.
CHECKS = """
from masking import masked_layers
assert [type(layer).__name__ for layer in masked_layers(reloaded)] == \\
    ["SignedSupermaskConv2D", "SignedSupermaskDense", "SignedSupermaskDense"]
assert remaining_percent(reloaded) == remaining_percent(model)
for original, loaded in zip(masked_layers(model), masked_layers(reloaded)):
    np.testing.assert_array_equal(original.ternary_mask(), loaded.ternary_mask())
import importlib.util
print("importable pipeline packages:", [name for name in %r if importlib.util.find_spec(name)])
print("accuracy", accuracy)
""" % (NEVER_INSTALLED,)


def readme_snippet():
    """The first ```python block of the section."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start:end if end != -1 else None], flags=re.DOTALL)
    assert blocks, f"no ```python block under {SECTION!r} in README.md"
    return blocks[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip install (no network, no dependencies) of a copy of the project holding only what pyproject.toml
    names, into a --target folder: the build writes nothing into the clone."""
    pytest.importorskip("setuptools", reason="pip builds pyproject.toml with setuptools (requirements-dev.txt)")
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert not set(packages) & set(NEVER_INSTALLED), packages
    tmp_path = tmp_path_factory.mktemp("install")
    source, site = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in packages:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith(".dist-info")) == sorted(packages)
    return site


@pytest.mark.slow
def test_readme_layers_snippet_trains_saves_and_reloads_outside_the_clone(installed, tmp_path):
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(installed), "SUPERMASK_DATA_DIR": str(real_data_dir("mnist.npz"))}
    result = subprocess.run([sys.executable, "-c", readme_snippet() + CHECKS], cwd=elsewhere, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / "my_signed_model.keras").is_file()
    assert "importable pipeline packages: []" in result.stdout
    before, after = re.findall(r"remaining[^\d]*([\d.]+) %", result.stdout)
    assert 55 < float(before) < 65           # p = 0.4 on uniform scores keeps about 60 %
    assert float(after) < float(before)      # weight decay on the scores hides weights
    accuracy = float(re.search(r"^accuracy ([\d.]+)$", result.stdout, flags=re.MULTILINE).group(1))
    assert accuracy > 0.5                    # far above chance (10 %) after 3 epochs on 2048 images


@pytest.mark.slow
def test_every_module_of_the_installed_package_imports_on_its_own(installed, tmp_path):
    modules = sorted(f"masking.{path.stem}" for path in (installed / "masking").glob("*.py") if path.stem != "__init__")
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    result = subprocess.run([sys.executable, "-c", code, *modules], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(installed)}, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
