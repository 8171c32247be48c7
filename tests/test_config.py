"""The typed config schema and train.py's handling of bad input."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import ExperimentConfig, key_reference_markdown, load_config
from training.schema import ConfigError, from_dict

ROOT = Path(__file__).resolve().parents[1]
# Experiment configs; configs/studies/ holds study files (tests/test_study.py).
ALL_CONFIGS = sorted(path for path in (ROOT / "configs").rglob("*.yaml") if path.parent.name != "studies")
assert ALL_CONFIGS, "no configs/*.yaml found: the parametrized config tests would silently not run"


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
    ("training:\n  schedule:\n    kind: polynomial\n", "training.schedule.kind"),
    ("init:\n  weight: {distribution: laplace, scaling: he}\n", "init.weight.distribution"),
    ("bogus: 1\n", "bogus"),
    ("model:\n  name: Conv2\n", "data.dataset"),
    ("data:\n  augment: true\n", "data.augment"),
    ("model:\n  width_multiplier: 0.001\n", "model.width_multiplier"),
    ("training:\n  schedule:\n    patience: 2\n    kind: plateau\n", "training.schedule.patience"),
    ("training:\n  schedule:\n    decay_rate: 0\n", "training.schedule.decay_rate"),
    ("training:\n  schedule:\n    patience: 10\n", "training.schedule.patience"),
    ("training:\n  schedule:\n    kind: plateau\n    decay_epochs: 5\n", "training.schedule.decay_epochs"),
    ("init:\n  weight: signed_constant\n", "init.weight"),
    ("optimizer:\n  lr: 0.05\n  lr: 0.5\n", "key 'lr' given twice at line 3"),
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


def test_a_baseline_without_init_weight_gets_the_baseline_kernels(tmp_path):
    """As init_example.py's --baseline-init and the layer factory: uniform/elu, not the signed W."""
    path = write(tmp_path, "model: {name: Conv2, signed: false}\ndata: {dataset: cifar10}\n")
    assert str(load_config(path).init.weight) == "uniform/elu"
    assert str(load_config(path, ["model.signed=true"]).init.weight) == "signed_constant/elus"
    assert str(from_dict(ExperimentConfig, {"model": {"signed": False}}).init.weight) == "uniform/elu"


def test_an_initializer_mapping_naming_some_fields_keeps_the_others(tmp_path):
    path = write(tmp_path, "model: {name: FCN}\n")
    config = load_config(path, ["init.weight.factor=2", "init.mask.scaling=he"])
    assert (str(config.init.weight), str(config.init.mask)) == ("signed_constant/elus/2", "uniform/he")
    baseline = load_config(path, ["model.signed=false", "init.weight.factor=0.75"])
    assert str(baseline.init.weight) == "uniform/elu/0.75"


def test_an_initializer_in_init_example_text_form_is_read(tmp_path):
    path = write(tmp_path, "model: {name: FCN}\ninit: {mask: uniform/he/0.5}\n")
    config = load_config(path, ["init.weight=signed_constant/elus_sqrt6"])
    assert (str(config.init.weight), str(config.init.mask)) == ("signed_constant/elus_sqrt6", "uniform/he/0.5")


def test_a_schedule_key_of_another_kind_is_refused_only_when_changed(tmp_path):
    path = write(tmp_path, "training:\n  schedule: {kind: exp_staircase, patience: 15, decay_epochs: 5}\n")
    assert load_config(path).training.schedule.decay_epochs == 5
    with pytest.raises(ConfigError, match=r"training.schedule.patience: only for schedule kind plateau "
                                          r"\(kind is exp_staircase\)"):
        load_config(path, ["training.schedule.patience=3"])


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


def test_train_cli_rejects_a_data_folder_without_the_dataset_before_writing(tmp_path):
    (tmp_path / "data").mkdir()
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(ROOT / "configs" / "fcn_signed.yaml"),
                             "--out", str(out), "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: mnist.npz not found: expected {tmp_path / 'data' / 'mnist.npz'} in "
                                     f"Keras layout (set SUPERMASK_DATA_DIR or --data-dir to the folder that holds it)")
    assert not out.exists()


def test_a_config_data_dir_without_the_dataset_is_blamed_on_that_key(tmp_path, capsys, monkeypatch):
    """data.dir comes before SUPERMASK_DATA_DIR, so the error must not advise setting the variable alone."""
    import train

    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(tmp_path))
    config = tmp_path / "mine.yaml"
    config.write_text(f"base: {ROOT / 'configs' / 'fcn_signed.yaml'}\ndata:\n  dir: {tmp_path / 'data'}\n")
    assert train.main([str(config), "--out", str(tmp_path / "results")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: mnist.npz not found: expected {tmp_path / 'data' / 'mnist.npz'} in Keras layout (data.dir in "
        f"{config} names this folder, before SUPERMASK_DATA_DIR: correct it, or give --data-dir)")
    assert not (tmp_path / "results").exists()


def test_train_cli_rejects_missing_config(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_config_reference_doc_is_current():
    assert (ROOT / "docs" / "CONFIG.md").read_text() == key_reference_markdown(), \
        "regenerate with: python -m training.config > docs/CONFIG.md"


def test_base_chain_merges_section_by_section_and_names_the_child(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "description: root\nmodel:\n  threshold_fraction: 0.3\n  width_multiplier: 2.0\n"
                    "optimizer: {lr: 0.02, wd: 1e-4}\n", "root.yaml")
    write(tmp_path, "base: root.yaml\nexperiment: middle_folder\nmodel:\n  threshold_fraction: 0.5\n", "middle.yaml")
    child = write(tmp_path, "# child\nbase: ../middle.yaml\noptimizer: {lr: 0.07}\n", "sub/child.yaml")
    config = load_config(child, ["model.signed=false"])
    assert config.experiment == "child" and config.description == "root"
    assert (config.model.threshold_fraction, config.model.width_multiplier, config.model.signed) == (0.5, 2.0, False)
    assert (config.optimizer.lr, config.optimizer.wd) == (0.07, 1e-4)


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, r"b\.yaml: base: cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"),
    ({"a.yaml": "base: a.yaml\n"}, r"a\.yaml: base: cycle"),
    ({"a.yaml": "base: gone.yaml\n"}, r"a\.yaml: base: .*gone\.yaml: no such config file"),
    ({"a.yaml": "base: [1]\n"}, r"a\.yaml: base: expected a config file name"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "model: {threshold_fraction: 7}\n"},
     r"b\.yaml: model\.threshold_fraction: must be <= 0\.999"),
])
def test_bad_bases_are_one_line_errors_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path, text, name)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(tmp_path / "a.yaml")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, expected", [
    ("ablations/conv2_high_threshold.yaml", {"model.name": "Conv2", "model.threshold_fraction": 0.6,
                                             "optimizer.lr": 0.01, "optimizer.wd": 5e-4, "runs": 50,
                                             "training.schedule.kind": "exp_staircase",
                                             "training.schedule.decay_epochs": 5, "training.epochs": 100}),
    ("ablations/fcn_unihe_mask_xavier.yaml", {"init.weight.distribution": "uniform", "init.weight.scaling": "he",
                                              "init.mask.scaling": "xavier", "training.jit_compile": True}),
    ("resnet20x3_5_baseline.yaml", {"model.width_multiplier": 3.5, "model.signed": False, "training.epochs": 110,
                                    "training.schedule.kind": "plateau", "training.schedule.factor": 0.2}),
    ("fcn_signed_closest_to_paper.yaml", {"init.weight.scaling": "elus_sqrt6", "optimizer.wd": 1.3e-4,
                                          "training.schedule.kind": "exp_continuous", "optimizer.lr": 0.05}),
    ("resnet110_signed_var.yaml", {"runs": 2, "model.extra_head": True, "model.projection_every": 9,
                                   "init.weight.factor": 1.3, "init.mask.scaling": "elu", "data.repeat": 7}),
])
def test_override_only_configs_resolve_to_the_expected_values(name, expected):
    config = load_config(ROOT / "configs" / name)
    for key, value in expected.items():
        actual = config
        for part in key.split("."):
            actual = getattr(actual, part)
        assert actual == value, key


def test_configs_with_a_base_name_only_what_differs():
    """Override-only: no key repeats its base's value (every ablation has a base)."""
    from training.config import read_config_chain
    derived = [path for path in ALL_CONFIGS if len(read_config_chain(path)) > 1]
    assert {path.parent.name for path in ALL_CONFIGS if path not in derived} == {"configs"}
    assert len(derived) >= 50

    def leaves(raw, prefix=""):
        for key, value in raw.items():
            yield from leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]

    for path in derived:
        chain = read_config_chain(path)
        base = vars(load_config(chain[1][0]))
        for key, value in leaves(chain[0][1]):
            if key == "description":
                continue
            inherited = base
            for part in key.split("."):
                inherited = getattr(inherited, part) if not isinstance(inherited, dict) else inherited[part]
            assert inherited != (float(value) if isinstance(inherited, float) else value), f"{path.name}: {key}"


def test_keys_that_keep_results_are_marked_in_the_schema():
    from training.schema import describe
    unmarked = {key for key, *_, affects_results in describe(ExperimentConfig) if not affects_results}
    assert unmarked == {"description", "runs", "training.eval_batch_size", "training.jit_compile",
                        "training.steps_per_execution", "training.distribution", "training.tensorboard", "data.dir",
                        "init.source"}
    assert "| `training.steps_per_execution` | `50` | no |" in key_reference_markdown()


def test_optimizer_name_is_gone_from_configs_and_saved_configs(tmp_path):
    from training.config import load_saved_config
    old = write(tmp_path, "optimizer:\n  name: sgdw\n  lr: 0.02\n", "config.yaml")
    with pytest.raises(ConfigError, match=r"config\.yaml: optimizer\.name: unknown key"):
        load_config(old)
    with pytest.raises(ConfigError, match=r"config\.yaml: optimizer\.name: unknown key"):
        load_saved_config(old)     # the retired key has no reader left (measured/ is re-shipped without it)
    assert load_saved_config(write(tmp_path, "optimizer:\n  lr: 0.02\n", "config.yaml")).optimizer.lr == 0.02
    with pytest.raises(ConfigError, match="optimizer.name: unknown key"):
        load_saved_config(write(tmp_path, "optimizer:\n  name: adam\n", "config.yaml"))


def test_narrowest_layer_of_the_registry_matches_the_built_models():
    """The width check reads models/registry.py; the built models must agree with it."""
    import keras
    from models import build_model
    from models.registry import MODEL_FAMILIES

    for name, family in MODEL_FAMILIES.items():
        model = build_model(name, signed=False, num_classes=100)
        widths = [layer.units if hasattr(layer, "units") else layer.filters for layer in model.layers
                  if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))][:-1]
        assert min(widths) == family.narrowest_layer, name


def test_a_shortened_folder_name_keeps_the_method_keys_before_the_run_length_keys():
    """Too long for every key: the mask mode and keep fraction stay readable, the limits go into the hash
    (a walk-through found `fcn_signed+data.test_limit=500+data.train_limit=2000+model.keep_fraction=0.3+<hash>`)."""
    from reporting.protocol import LENGTH_KEYS
    from training.config import MAX_EXPERIMENT_NAME, RUN_LENGTH_KEYS, experiment_with_overrides
    assert set(RUN_LENGTH_KEYS) == set(LENGTH_KEYS)
    path = ROOT / "configs" / "fcn_signed.yaml"
    overrides = ["data.train_limit=2000", "data.test_limit=500", "training.epochs=2", "model.mask_mode=top_k",
                 "model.keep_fraction=0.3"]
    name = experiment_with_overrides(path, overrides, load_config(path, overrides))
    assert name.startswith("fcn_signed+model.keep_fraction=0.3+model.mask_mode=top_k+") and len(name) <= MAX_EXPERIMENT_NAME
    assert re.fullmatch(r"fcn_signed\+model\.keep_fraction=0\.3\+model\.mask_mode=top_k(\+data\.[a-z_]+=\d+)*\+[0-9a-f]{8}", name)
    fitting = ["data.train_limit=2000", "training.epochs=2"]   # short enough: every key, in key order, no hash
    assert experiment_with_overrides(path, fitting, load_config(path, fitting)) == \
        "fcn_signed+data.train_limit=2000+training.epochs=2"
