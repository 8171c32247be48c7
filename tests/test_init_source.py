"""init.source: auto uses each of a run's init files that exists and draws the others on the fly; every
run records which it used, file by file (log line, run.json with the files' SHA-256); a wrong file is an
error; init_example.py never replaces a file's content unless asked."""
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

import init_example
from masking import masked_layers
from masking.init_files import InitFileError, init_file_path, load_init_file
from models import build_experiment_model, resolve_initial_values
from training.config import load_config
from training.runner import RunTrainer

ROOT = Path(__file__).resolve().parents[1]
FCN_CONFIG = ROOT / "configs" / "fcn_signed.yaml"
TINY = ["data.train_limit=256", "data.test_limit=128", "training.epochs=1"]


@pytest.fixture(scope="module")
def fcn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(root)]) == 0
    return root


def copy_of(fcn_files, tmp_path):
    shutil.copytree(fcn_files, tmp_path / "weights")
    return tmp_path / "weights"


def scores_path(root, run=0):
    return init_file_path(root, "FCN", "scores", {"distribution": "uniform", "scaling": "xavier"}, run)


def rewrite(path, change):
    """Apply ``change`` to the file's payload and write it back (what a user's own script would do)."""
    payload = load_init_file(path)
    change(payload)
    Path(path).write_bytes(pickle.dumps(payload, protocol=4))


def variables(model):
    return [np.asarray(variable) for variable in model.variables]


def test_auto_is_the_default_and_draws_on_the_fly_without_files(tmp_path):
    config = load_config(FCN_CONFIG, [f"init.weights_dir={tmp_path}"])
    assert config.init.source == "auto"
    initial = resolve_initial_values(config, 0)
    assert initial.source == "on_the_fly" and initial.files == ()
    on_the_fly = load_config(FCN_CONFIG, ["init.source=on_the_fly"])
    for a, b in zip(variables(build_experiment_model(config, config.seed)),
                    variables(build_experiment_model(on_the_fly, on_the_fly.seed))):
        np.testing.assert_array_equal(a, b)


def test_auto_with_unedited_files_gives_the_on_the_fly_model(fcn_files):
    config = load_config(FCN_CONFIG, [f"init.weights_dir={fcn_files}"])
    initial = resolve_initial_values(config, 0)
    assert initial.source == "files" and [entry["kind"] for entry in initial.files] == ["weights", "scores"]
    on_the_fly = load_config(FCN_CONFIG, ["init.source=on_the_fly"])
    for a, b in zip(variables(build_experiment_model(config, config.seed)),
                    variables(build_experiment_model(on_the_fly, on_the_fly.seed))):
        np.testing.assert_array_equal(a, b)


def test_a_file_without_options_counts_at_the_default_layout(fcn_files, tmp_path):
    """``options`` is optional in an init file (a user's own script may leave it out): the model's defaults."""
    root = copy_of(fcn_files, tmp_path)
    for kind in ("weights", "scores"):
        config = load_config(FCN_CONFIG, [f"init.weights_dir={root}"])
        spec = config.init.weight if kind == "weights" else config.init.mask
        rewrite(init_file_path(root, "FCN", kind, spec, 0), lambda payload: payload.pop("options"))
    from_files = build_experiment_model(config, config.seed)
    drawn = build_experiment_model(load_config(FCN_CONFIG, ["init.source=on_the_fly"]), config.seed)
    for a, b in zip(variables(from_files), variables(drawn)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_auto_uses_edited_files_and_records_them_in_run_json(fcn_files, tmp_path, capsys):
    root = copy_of(fcn_files, tmp_path)
    edited = scores_path(root)
    rewrite(edited, lambda payload: payload["layers"][0].update(values=-payload["layers"][0]["values"]))
    config = load_config(FCN_CONFIG, TINY + [f"init.weights_dir={root}"])
    from_files = variables(build_experiment_model(config, config.seed))
    drawn = variables(build_experiment_model(load_config(FCN_CONFIG, ["init.source=on_the_fly"]), config.seed))
    assert any(not np.array_equal(a, b) for a, b in zip(from_files, drawn))

    RunTrainer(config, 0, tmp_path / "results", data_dir=real_data_dir("mnist.npz"), verbose=False).run()
    record = json.loads((tmp_path / "results" / "fcn_signed" / "run_0" / "run.json").read_text())
    assert record["init"]["requested"] == "auto" and record["init"]["source"] == "files"
    scores = next(entry for entry in record["init"]["files"] if entry["kind"] == "scores")
    assert scores == {"kind": "scores", "path": str(edited),
                      "sha256": hashlib.sha256(Path(edited).read_bytes()).hexdigest()}
    log = capsys.readouterr().out
    assert sum(f"initial values (init.source auto): weights from {init_file_path(root, 'FCN', 'weights', config.init.weight, 0)}"
               in line and f"scores from {edited}" in line for line in log.splitlines()) == 1


@pytest.mark.slow
def test_run_json_records_an_on_the_fly_run(tmp_path):
    config = load_config(FCN_CONFIG, TINY + [f"init.weights_dir={tmp_path / 'none'}"])
    RunTrainer(config, 0, tmp_path, data_dir=real_data_dir("mnist.npz"), verbose=False).run()
    record = json.loads((tmp_path / "fcn_signed" / "run_0" / "run.json").read_text())
    assert record["init"] == {"requested": "auto", "source": "on_the_fly", "files": [], "drawn": ["weights", "scores"]}


@pytest.mark.parametrize("change, message", [
    (lambda payload: payload.update(model="Conv2"), "made for model 'Conv2', not 'FCN'"),
    (lambda payload: payload["layers"][0].update(values=np.zeros((784, 30), np.float32), shape=(784, 30)),
     r"\(784, 30\) does not match model layer"),
    (lambda payload: payload.update(initializer={"distribution": "normal", "scaling": "he", "factor": 1.0}),
     "made with initializer normal/he, the config asks for uniform/xavier"),
])
def test_a_wrong_file_under_auto_is_an_error_never_skipped(fcn_files, tmp_path, change, message):
    root = copy_of(fcn_files, tmp_path)
    rewrite(scores_path(root), change)
    config = load_config(FCN_CONFIG, [f"init.weights_dir={root}"])
    with pytest.raises(InitFileError, match=message) as error:
        build_experiment_model(config, config.seed)
    assert "(init.source auto; set init.source=on_the_fly, or init.weights_dir to a folder written by: " \
           "python init_example.py --model FCN --runs 1 " in str(error.value)


@pytest.mark.slow
def test_auto_resolves_each_file_on_its_own(fcn_files, tmp_path, capsys):
    """The README's main command writes FCN's default files; the closest config shares their scores
    file but not their weights file: the scores are loaded, the weights drawn, and both are said."""
    closest = ROOT / "configs" / "fcn_signed_closest_to_paper.yaml"
    config = load_config(closest, TINY + [f"init.weights_dir={fcn_files}"])
    scores = init_file_path(fcn_files, "FCN", "scores", config.init.mask, 0)
    initial = resolve_initial_values(config, 0)
    assert initial.source == "mixed" and initial.drawn == ("weights",)
    assert [(entry["kind"], entry["path"]) for entry in initial.files] == [("scores", str(scores))]
    on_the_fly = load_config(closest, ["init.source=on_the_fly"])
    for a, b in zip(variables(build_experiment_model(config, config.seed)),
                    variables(build_experiment_model(on_the_fly, on_the_fly.seed))):
        np.testing.assert_array_equal(a, b)

    RunTrainer(config, 0, tmp_path, data_dir=real_data_dir("mnist.npz"), verbose=False).run()
    record = json.loads((tmp_path / config.experiment / "run_0" / "run.json").read_text())
    assert record["init"] == {"requested": "auto", "source": "mixed", "drawn": ["weights"], "files": [
        {"kind": "scores", "path": str(scores), "sha256": hashlib.sha256(scores.read_bytes()).hexdigest()}]}
    assert f"scores from {scores} (sha256 " in capsys.readouterr().out


def test_an_edited_file_is_used_beside_a_drawn_one(fcn_files, tmp_path):
    root = copy_of(fcn_files, tmp_path)
    scores_path(root).unlink()
    weights = init_file_path(root, "FCN", "weights", {"distribution": "signed_constant", "scaling": "elus"}, 0)
    rewrite(weights, lambda payload: payload["layers"][0].update(values=-payload["layers"][0]["values"]))
    config = load_config(FCN_CONFIG, [f"init.weights_dir={root}"])
    model = build_experiment_model(config, config.seed)
    drawn = build_experiment_model(load_config(FCN_CONFIG, ["init.source=on_the_fly"]), config.seed)
    first, first_drawn = masked_layers(model)[0], masked_layers(drawn)[0]
    np.testing.assert_array_equal(np.asarray(first.frozen_kernel), -np.asarray(first_drawn.frozen_kernel))
    np.testing.assert_array_equal(np.asarray(first.scores), np.asarray(first_drawn.scores))


def test_a_file_of_another_seed_or_run_is_an_error_naming_both(fcn_files, tmp_path):
    root = copy_of(fcn_files, tmp_path)
    for kind, spec in (("weights", {"distribution": "signed_constant", "scaling": "elus"}),
                       ("scores", {"distribution": "uniform", "scaling": "xavier"})):
        shutil.copy(init_file_path(root, "FCN", kind, spec, 0), init_file_path(root, "FCN", kind, spec, 1))
    config = load_config(FCN_CONFIG, ["init.source=files", f"init.weights_dir={root}"])
    with pytest.raises(InitFileError, match=r"FCN_weights_1.pkl: holds the initial values of seed 7531 \(run 0\), "
                                            r"this is run 1 with seed 7532"):
        build_experiment_model(config, config.seed + 1)


def test_init_example_keeps_a_file_with_other_content_unless_asked(fcn_files, tmp_path, capsys):
    root = copy_of(fcn_files, tmp_path)
    edited = scores_path(root)
    rewrite(edited, lambda payload: payload["layers"][0].update(values=-payload["layers"][0]["values"]))
    before = edited.read_bytes()
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(root)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {edited}: exists with other content") \
        and "--overwrite" in errors[0], errors
    assert edited.read_bytes() == before
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(root), "--overwrite"]) == 0
    assert edited.read_bytes() == scores_path(fcn_files).read_bytes()
    assert "(replaced)" in capsys.readouterr().out


def test_init_example_same_values_same_bytes_and_identical_files_untouched(fcn_files, tmp_path, capsys):
    """The command an error message suggests spells the default layout out (--width-multiplier 1
    --num-classes 10): it must write the bytes the plain command wrote, and leave existing files alone."""
    root = copy_of(fcn_files, tmp_path)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*.pkl")}
    explicit = ["--width-multiplier", "1", "--num-classes", "10", "--weight-init", "signed_constant/elus"]
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(root), *explicit]) == 0
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*.pkl")} == stamps
    assert capsys.readouterr().out.count("(unchanged)") == 3
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(tmp_path / "again"), *explicit]) == 0
    for path in fcn_files.rglob("*.pkl"):
        assert (tmp_path / "again" / path.relative_to(fcn_files)).read_bytes() == path.read_bytes(), path


@pytest.mark.slow
def test_cli_wrong_file_is_one_line_exit_2_and_files_missing_names_the_command(fcn_files, tmp_path):
    root = copy_of(fcn_files, tmp_path)
    rewrite(scores_path(root), lambda payload: payload.update(model="Conv2"))
    data_dir = str(real_data_dir("mnist.npz"))
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SUPERMASK_DATA_DIR": data_dir}
    for case, (overrides, expected) in enumerate( (([f"init.weights_dir={root}"], "made for model 'Conv2'"),
                                ([f"init.weights_dir={tmp_path / 'none'}", "init.source=files"],
                                 "missing init file; create it with: python init_example.py --model FCN --runs 1"))):
        result = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), str(FCN_CONFIG), "--runs", "1", "--out", str(tmp_path / f"out{case}"),
             "--quiet", *[item for override in TINY + overrides for item in ("--set", override)]],
            cwd=ROOT, env=environment, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr[-2000:]
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1 and expected in error_lines[0], result.stderr[-2000:]
    # The missing file is found before a results folder is claimed and before the backend loads.
    assert not (tmp_path / "out1").exists() and "device:" not in result.stdout


def test_each_layout_has_its_own_folder_and_the_command_a_missing_file_names_writes_it(tmp_path):
    """Files of the default layout never stand in for another layout's (``init_example.py --model all`` then
    ``resnet20x2_signed.yaml`` or ``resnet56_cifar10_*``): each layout looks in its own folder."""
    root = tmp_path / "weights"
    assert init_example.main(["--model", "ResNet20", "--runs", "1", "--out", str(root)]) == 0
    overrides = ["model.projection_every=1", "model.extra_head=true", f"init.weights_dir={root}"]
    config = load_config(ROOT / "configs" / "resnet20_signed.yaml", overrides)
    assert resolve_initial_values(config, 0).source == "on_the_fly"      # the default layout's files: not its own
    files = load_config(ROOT / "configs" / "resnet20_signed.yaml", overrides + ["init.source=files"])
    with pytest.raises(InitFileError, match="missing init file; create it with: ") as error:
        build_experiment_model(files, files.seed)
    path, command = str(error.value).split(": missing init file; create it with: python init_example.py ")
    assert "/ResNet20_projection1_extrahead/weights/" in path and "--projection-every 1 --extra-head" in command
    assert init_example.main(command.split()) == 0 and Path(path).is_file()
    assert resolve_initial_values(config, 0).source == "files"
    on_the_fly = load_config(ROOT / "configs" / "resnet20_signed.yaml", overrides + ["init.source=on_the_fly"])
    for a, b in zip(variables(build_experiment_model(config, config.seed)),
                    variables(build_experiment_model(on_the_fly, on_the_fly.seed))):
        np.testing.assert_array_equal(a, b)
    assert sorted(folder.name for folder in root.iterdir()) == ["ResNet20", "ResNet20_projection1_extrahead"]


def test_layout_folders_name_every_option_that_differs_from_the_default():
    from models.registry import layout_folder
    assert layout_folder("ResNet20", {"width_multiplier": 1.0, "num_classes": 10}) == "ResNet20"
    assert layout_folder("ResNet20", {"width_multiplier": 2.0, "num_classes": 10}) == "ResNet20_width2"
    assert layout_folder("ResNet56", {"width_multiplier": 1.0, "num_classes": 10}) == "ResNet56_classes10"
    assert layout_folder("ResNet110", {"num_classes": 100, "projection_every": 9, "extra_head": False}) == \
        "ResNet110_projection9"
    assert layout_folder("Conv2", {"width_multiplier": 1.5, "num_classes": 10}) == "Conv2_width1.5"
    assert layout_folder("Conv2", {"width_multiplier": 1.5, "num_classes": 10}, 100) == "Conv2_width1.5_seed100"


def test_another_base_seed_draws_under_auto_and_its_command_writes_its_own_files(fcn_files, tmp_path):
    """seed 7531's files do not stop a --set seed=100 run; under init.source files the printed command
    (with --seed) writes the files that run then loads."""
    root = copy_of(fcn_files, tmp_path)
    auto = load_config(FCN_CONFIG, [f"init.weights_dir={root}", "seed=100"])
    assert resolve_initial_values(auto, 0).source == "on_the_fly"
    drawn = variables(build_experiment_model(auto, auto.seed))
    files = load_config(FCN_CONFIG, [f"init.weights_dir={root}", "seed=100", "init.source=files"])
    with pytest.raises(InitFileError) as error:
        resolve_initial_values(files, 0)
    path, command = str(error.value).split(": missing init file; create it with: python init_example.py ")
    assert "/FCN_seed100/weights/" in path and "--seed 100 " in command
    assert init_example.main(command.split()) == 0 and Path(path).is_file()
    for a, b in zip(variables(build_experiment_model(files, files.seed)), drawn):
        np.testing.assert_array_equal(a, b)
    assert sorted(folder.name for folder in root.iterdir()) == ["FCN", "FCN_seed100"]


def test_init_example_refuses_a_width_that_leaves_a_layer_empty(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        init_example.main(["--model", "FCN", "--width-multiplier", "0.001", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and ("--width-multiplier: 0.001 leaves no unit in the narrowest FCN layer "
                                          "(100 units); use >= 0.01") in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_init_example_refuses_resnet_options_for_other_models(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        init_example.main(["--model", "Conv2", "--extra-head", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "--extra-head: applies to ResNets only, not Conv2" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_default_weights_dir_of_the_tests_is_empty_whatever_the_working_tree_holds(fcn_files, tmp_path,
                                                                                       monkeypatch):
    """The README's main command writes weights/FCN/... in the working tree: tests must not see it
    (conftest points $SUPERMASK_WEIGHTS_DIR, which replaces the default weights/, at an empty folder)."""
    shutil.copytree(fcn_files, tmp_path / "weights")
    monkeypatch.chdir(tmp_path)
    assert resolve_initial_values(load_config(FCN_CONFIG), 0).source == "on_the_fly"
    monkeypatch.setenv("SUPERMASK_WEIGHTS_DIR", str(fcn_files))
    assert resolve_initial_values(load_config(FCN_CONFIG), 0).source == "files"
    explicit = load_config(FCN_CONFIG, [f"init.weights_dir={tmp_path / 'none'}"])
    assert resolve_initial_values(explicit, 0).source == "on_the_fly"
