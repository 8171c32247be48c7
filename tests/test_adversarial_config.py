"""Hostile and clumsy config input and shared results folders (issue 13, causes 3, 5 and 6).

Each test builds the hostile file itself. Bad input must give one line naming the file and the
key, exit code 2 and nothing written."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import deny_writes_as_root

import init_example
import train
from training.config import load_config
from training.experiment_folder import claim_results_folder
from training.schema import ConfigError, from_dict, shown

ROOT = Path(__file__).resolve().parents[1]

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi")) + "description: *i\n"


def refused(capsys, tmp_path, config, *args, key=None):
    """train.main's exit code and stderr line for a config that must be refused before anything is written."""
    out = tmp_path / "results"
    code = train.main([str(config), "--out", str(out), *args])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not out.exists()
    if key is not None:
        assert Path(config).name in lines[0] and key in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_billion_laughs_is_refused_quickly_within_bounded_memory(tmp_path):
    config = tmp_path / "laughs.yaml"
    config.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1024
    limit = 1 << 30  # 1 GiB of address space: expanding the aliases needs far more
    script = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
              f"sys.path.insert(0, {str(ROOT)!r}); import train; "
              f"sys.exit(train.main([{str(config)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert time.monotonic() - started < 30
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "laughs.yaml" in lines[0] and "aliases" in lines[0] and len(lines[0]) < 300
    assert not (tmp_path / "out").exists()


def test_error_messages_show_values_abbreviated():
    """A value built from shared references (2^40 leaves) must not be printed whole, or even walked."""
    value = ["x" * 1000]
    for _ in range(40):
        value = [value, value]
    started = time.monotonic()
    with pytest.raises(ConfigError) as error:
        from_dict(train_config_class(), {"description": value})
    # Walking the 2^40 leaves would take hours; 10 s leaves room for a busy machine.
    assert time.monotonic() - started < 10 and len(str(error.value)) < 200 and "description" in str(error.value)
    assert len(shown("y" * 10**6)) <= 80 and len(shown(10**5000 if sys.version_info < (3, 11) else 10**4000)) <= 80


def train_config_class():
    from training.config import ExperimentConfig
    return ExperimentConfig


@pytest.mark.parametrize("text, key", [
    ("description: " + "[" * 2000 + "]" * 2000 + "\n", "nested deeper"),
    ("training:\n  epochs: .inf\n", "training.epochs"),
    ("training:\n  epochs: -.inf\n", "training.epochs"),
    ("training:\n  epochs: .nan\n", "training.epochs"),
    ("training:\n  epochs: 1e400\n", "training.epochs"),
    ("training:\n  batch_size: 1.0e400\n", "training.batch_size"),
    ("runs: '.nan'\n", "runs"),
    ("optimizer:\n  lr: .nan\n", "optimizer.lr"),
    ("optimizer:\n  lr: .inf\n", "optimizer.lr"),
    ("optimizer:\n  wd: 1e999\n", "optimizer.wd"),
    ("model:\n  threshold_fraction: .nan\n", "model.threshold_fraction"),
    ("optimizer:\n  momentum: " + "9" * 400 + "\n", "optimizer.momentum"),
    ("training:\n  epochs: " + "9" * 5000 + "\n", "not valid YAML"),
    ("model:\n  width_multiplier: 65\n", "model.width_multiplier"),
    ("model:\n  width_multiplier: 0.005\n", "model.width_multiplier"),
    ("model: {name: ResNet20, width_multiplier: 0.05}\ndata: {dataset: cifar10}\n", "model.width_multiplier"),
    ("model:\n  width_multiplier: .inf\n", "model.width_multiplier"),
    ("description: !!python/object/apply:os.system ['echo hacked']\n", "python/object"),
    ("[1, 2, 3]\n", "top level"),
    ("just a string\n", "top level"),
    ("{1: x, b: y}\n", "unknown key"),
], ids=lambda value: value[:30])
def test_hostile_values_are_one_line_errors(capsys, tmp_path, text, key):
    config = tmp_path / "hostile.yaml"
    config.write_text(text)
    refused(capsys, tmp_path, config, key=key)


@pytest.mark.parametrize("text", ["[1, 2, 3]\n", "42\n", "just a string\n"])
def test_top_level_list_or_scalar_with_set_is_one_line_error(capsys, tmp_path, text):
    config = tmp_path / "flat.yaml"
    config.write_text(text)
    refused(capsys, tmp_path, config, "--set", "training.epochs=1", key="top level")


@pytest.mark.parametrize("override, key", [
    ("training.epochs=[1, 2", "not valid YAML"),
    ("description=!!python/object/apply:os.system ['echo hacked']", "python/object"),
    ("description=!!python/name:os.system", "python/name"),
    ("training.epochs=.inf", "training.epochs"),
    ("optimizer.lr=.nan", "optimizer.lr"),
    ("model.width_multiplier=1e6", "model.width_multiplier"),
    ("model.threshold_fraction.x=1", "model.threshold_fraction: expected a number"),
    ("training.epochs.x=1", "epochs is not a section"),
    ("description=&a [*a]", "alias"),
])
def test_bad_set_values_are_one_line_errors(capsys, tmp_path, override, key):
    config = tmp_path / "ok.yaml"
    config.write_text("training: {epochs: 2}\n")
    line = refused(capsys, tmp_path, config, "--set", override, key=key)
    assert "Traceback" not in line


@pytest.mark.parametrize("override, blamed", [
    ("training.lr=0.1", "--set training.lr over "),          # a key the section lacks
    ("optimizer.lr=abc", "--set optimizer.lr over "),        # a value of the wrong type
    ("training={epochs: -1}", "--set training over "),       # a section set whole: its key blames that --set
    ("trainig.epochs=3", "--set trainig.epochs over "),      # a mistyped section above the key
    ("experiments=1", "--set experiments over "),            # no "it reads as a study": the file is no study
])
def test_an_error_in_a_set_value_blames_the_set_not_the_file(capsys, tmp_path, override, blamed):
    config = tmp_path / "ok.yaml"
    config.write_text("training: {epochs: 2}\n")
    line = refused(capsys, tmp_path, config, "--set", override)
    assert line.startswith(f"error: {blamed}{config}: ") and "reads as a study" not in line, line


def test_non_utf8_directory_and_oversized_configs_are_one_line_errors(capsys, tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("description: café\n".encode("latin-1"))
    assert "UTF-8" in refused(capsys, tmp_path, latin, key="latin.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert "directory" in refused(capsys, tmp_path, folder, key="folder.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("description: '" + "x" * (2 << 20) + "'\n")
    assert "MiB" in refused(capsys, tmp_path, big, key="big.yaml")


def test_bad_out_is_one_line_error_and_nothing_written(capsys, tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text("training: {epochs: 1}\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for out in (a_file, a_file / "below"):
        assert train.main([str(config), "--out", str(out)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "--out" in lines[0] and "directory" in lines[0], lines
    assert a_file.read_text() == "keep me"


def test_read_only_out_is_one_line_error(capsys, tmp_path, monkeypatch):
    config = tmp_path / "ok.yaml"
    config.write_text("training: {epochs: 1}\n")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    deny_writes_as_root(monkeypatch, read_only)
    assert train.main([str(config), "--out", str(read_only)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--out" in lines[0] and not any(read_only.iterdir())


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "---\n"])
def test_an_empty_config_file_is_refused_it_must_name_a_model(capsys, tmp_path, text):
    config = tmp_path / "empty.yaml"
    config.write_text(text)
    line = refused(capsys, tmp_path, config, key="empty file")
    assert "names at least its model" in line


def test_an_empty_saved_experiment_config_gets_the_damaged_config_message(capsys, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("training: {epochs: 1}\n")
    out = tmp_path / "results"
    saved = claim_results_folder(load_config(config), out) / "config.yaml"
    saved.write_text("")
    assert train.main([str(config), "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {saved}: empty; this file records which config made "
                                                   f"the results there: restore it"), lines
    assert saved.read_text() == ""


@pytest.mark.parametrize("backend, message", [("jaxx", "not a backend this project trains on"),
                                              ("numpy", "not a backend this project trains on")])
def test_a_mistyped_keras_backend_is_one_line_error_and_nothing_written(capsys, tmp_path, monkeypatch, backend,
                                                                        message):
    import reproduce
    monkeypatch.setenv("KERAS_BACKEND", backend)
    assert message in refused(capsys, tmp_path, ROOT / "configs" / "fcn_signed.yaml")
    assert reproduce.main(["--rows", "FCN", "--dry-run", "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert init_example.main(["--model", "Conv2", "--runs", "1", "--out", str(tmp_path / "w")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_init_example_answers_help_whatever_the_backend():
    """Its options need no Keras: --help works before a broken KERAS_BACKEND is reported."""
    result = subprocess.run([sys.executable, str(ROOT / "init_example.py"), "--help"], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jaxx"}, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: init_example.py"), result.stderr


def test_a_backend_that_is_not_installed_is_named(monkeypatch):
    from training import device
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setattr(device.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(device.BackendError, match="KERAS_BACKEND=torch: the torch package is not installed"):
        device.check_backend_name()


@pytest.mark.parametrize("content, culprit", [(b"not a zip", "cannot be read as npz"),
                                               ("y_train", "missing key 'y_train'")])
def test_a_damaged_dataset_is_found_before_a_folder_is_claimed_or_the_backend_loads(capsys, tmp_path, content,
                                                                                     culprit):
    import numpy as np
    data = tmp_path / "data"
    data.mkdir()
    if isinstance(content, bytes):
        (data / "mnist.npz").write_bytes(content)
    else:   # a Keras-layout file that lacks one key
        arrays = {"x_train": np.zeros((2, 28, 28), np.uint8), "y_train": np.zeros(2, np.uint8),
                  "x_test": np.zeros((2, 28, 28), np.uint8), "y_test": np.zeros(2, np.uint8)}
        np.savez(data / "mnist.npz", **{key: value for key, value in arrays.items() if key != content})
    out = tmp_path / "results"
    code = train.main([str(ROOT / "configs" / "fcn_signed.yaml"), "--out", str(out), "--data-dir", str(data)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "mnist.npz" in lines[0] and culprit in lines[0], lines
    assert not out.exists() and "device:" not in captured.out


def test_a_study_given_to_train_py_names_the_command_that_runs_it(capsys, tmp_path):
    line = refused(capsys, tmp_path, ROOT / "configs" / "studies" / "paper_main.yaml")
    assert line.endswith("it reads as a study: python reproduce.py " + str(ROOT / "configs" / "studies" / "paper_main.yaml"))


def test_a_missing_init_file_of_a_run_still_to_train_is_found_before_the_backend_loads(capsys, tmp_path):
    """Also in a folder another job claimed (one seed per cluster job: train.py --run-index)."""
    out, config_path = tmp_path / "results", ROOT / "configs" / "fcn_signed.yaml"
    sets = ["init.source=files", f"init.weights_dir={tmp_path / 'none'}"]
    claim_results_folder(load_config(config_path, sets), out)
    code = train.main([str(config_path), "--out", str(out), "--run-index", "1",
                       *[item for override in sets for item in ("--set", override)]])
    captured = capsys.readouterr()
    assert code == 2 and "FCN_weights_1.pkl: missing init file" in captured.err and "device:" not in captured.out
