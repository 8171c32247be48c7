"""The typed config schema and train.py's handling of bad input."""
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import ExperimentConfig, key_reference_markdown, load_config
from training.schema import ConfigError, from_dict

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert config.experiment == path.stem
    assert config.description, f"{path.name} should say what it reproduces"
    assert path.read_text().startswith("#"), f"{path.name} needs a provenance comment"


def test_yaml_string_numbers_are_coerced(tmp_path):
    # PyYAML reads 5e-4 (no dot) as a string; the schema must turn it into a float.
    config = load_config(write(tmp_path, "optimizer:\n  wd: 5e-4\n  lr: '0.04'\nruns: '3'\n"))
    assert config.optimizer.wd == pytest.approx(5e-4) and isinstance(config.optimizer.wd, float)
    assert config.optimizer.lr == pytest.approx(0.04)
    assert config.runs == 3 and isinstance(config.runs, int)


@pytest.mark.parametrize("text, key", [
    ("optimizer:\n  learning_rate: 0.1\n", "optimizer.learning_rate"),
    ("training:\n  epochs: ten\n", "training.epochs"),
    ("training:\n  epochs: 0\n", "training.epochs"),
    ("training:\n  epochs: 2.5\n", "training.epochs"),
    ("model:\n  name: VGG16\n", "model.name"),
    ("model:\n  threshold_fraction: 1.5\n", "model.threshold_fraction"),
    ("model:\n  signed: 'yes'\n", "model.signed"),
    ("training:\n  schedule:\n    kind: cosine\n", "training.schedule.kind"),
    ("init:\n  weight: {distribution: laplace, scaling: he}\n", "init.weight.distribution"),
    ("bogus: 1\n", "bogus"),
    ("model:\n  name: Conv2\n", "data.dataset"),
])
def test_invalid_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    message = str(error.value)
    assert key in message and "exp.yaml" in message and "\n" not in message


def test_dotted_overrides(tmp_path):
    path = write(tmp_path, "optimizer:\n  lr: 0.05\n")
    config = load_config(path, ["optimizer.lr=0.01", "training.epochs=1", "training.schedule.kind=exp_continuous",
                                "experiment=other"])
    assert config.optimizer.lr == 0.01 and config.training.epochs == 1
    assert config.training.schedule.kind == "exp_continuous" and config.experiment == "other"
    with pytest.raises(ConfigError, match="optimizer.nope"):
        load_config(path, ["optimizer.nope=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["optimizer.lr"])


def test_defaults_are_the_faithful_fcn_values():
    config = from_dict(ExperimentConfig, {})
    assert (config.model.name, config.model.threshold_fraction, config.optimizer.lr, config.optimizer.wd) == \
        ("FCN", 0.4, 0.05, 5e-4)
    assert (config.init.weight.distribution, config.init.weight.scaling) == ("signed_constant", "elus")
    assert (config.training.batch_size, config.training.schedule.kind) == (128, "exp_staircase")


def test_key_reference_lists_every_leaf_key():
    table = key_reference_markdown()
    for key in ("model.threshold_fraction", "optimizer.wd", "training.schedule.patience", "data.repeat"):
        assert f"`{key}`" in table


def test_train_cli_rejects_bad_config_with_exit_2_and_writes_nothing(tmp_path):
    config = write(tmp_path, "training:\n  epochs: -3\n")
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(config), "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "training.epochs" in lines[-1] and "Traceback" not in result.stderr
    assert not out.exists()


def test_train_cli_rejects_missing_config(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_config_reference_doc_is_current():
    assert (ROOT / "docs" / "CONFIG.md").read_text() == key_reference_markdown(), \
        "regenerate with: python -m training.config > docs/CONFIG.md"
