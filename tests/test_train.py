"""End-to-end training on real data: results layout, skip/resume, determinism, failures, backends."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

import init_example
from data import Dataset, load_dataset
from masking.init_files import InitFileError
from training.config import load_config
from training.run_state import read_checkpoint_state
from training.runner import RunTrainer, TrainingError, build_experiment_model, execution_settings, fit_feed

ROOT = Path(__file__).resolve().parents[1]
FCN_CONFIG = ROOT / "configs" / "fcn_signed.yaml"
# An explicit experiment name keeps these overridden runs in <out>/fcn_signed (train.py otherwise gives
# a run with result-changing --set overrides a folder of its own, e.g. fcn_signed+training.epochs=2).
SMALL_FCN = ["experiment=fcn_signed", "data.train_limit=3000", "data.test_limit=1000", "training.epochs=2"]


def train_cli(*args, env=None, **kwargs):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, **kwargs)


def overrides_args(overrides):
    return [item for override in overrides for item in ("--set", override)]


def read_masks(path):
    with np.load(path) as masks:
        return {name: masks[name] for name in masks.files}


@pytest.mark.slow
def test_fcn_run_writes_complete_results_and_skips_when_finished(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    result = train_cli(FCN_CONFIG, "--runs", 2, "--out", tmp_path, "--data-dir", data_dir, "--quiet",
                       *overrides_args(SMALL_FCN))
    assert result.returncode == 0, result.stderr[-2000:]
    experiment = tmp_path / "fcn_signed"
    for run in (0, 1):
        run_dir = experiment / f"run_{run}"
        assert {"run.json", "history.json", "masks.npz", "model.weights.h5", "config.yaml"} <= \
            {p.name for p in run_dir.iterdir()}
        assert not (run_dir / "checkpoint.npz").exists()
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished" and info["seed"] == 7531 + run and info["epochs_trained"] == 2
        assert {"keras", "backend", "numpy"} <= set(info["versions"]) and info["training_seconds"] > 0
        history = json.loads((run_dir / "history.json").read_text())
        assert len(history["test_accuracy"]) == 2 and len(history["remaining_percent"]) == 3
        assert 58 < history["remaining_percent"][0] < 62
        assert history["remaining_percent"][-1] < history["remaining_percent"][1] < history["remaining_percent"][0]
        assert history["test_accuracy"][-1] > 0.8  # far above chance after 2 short epochs
        assert set(history["mask_counts"][-1]) == {"dense_1", "dense_2", "output"}
        masks = read_masks(run_dir / "masks.npz")
        assert masks["dense_1"].shape == (784, 300) and masks["dense_1"].dtype == np.int8
        nonzero = sum(int(np.count_nonzero(m)) for m in masks.values())
        assert 100 * nonzero / 266200 == pytest.approx(info["final"]["remaining_percent"])
    summary = json.loads((experiment / "summary.json").read_text())
    accuracies = [json.loads((experiment / f"run_{r}" / "run.json").read_text())["final"]["test_accuracy"]
                  for r in (0, 1)]
    assert summary["finished_runs"] == ["run_0", "run_1"]
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["test_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary["test_accuracy"]["min"] == pytest.approx(min(accuracies))
    assert (experiment / "config.yaml").exists()

    before = (experiment / "run_0" / "run.json").stat().st_mtime_ns
    again = train_cli(FCN_CONFIG, "--runs", 2, "--out", tmp_path, "--data-dir", data_dir, "--quiet",
                      *overrides_args(SMALL_FCN))
    assert again.returncode == 0 and again.stdout.count("already finished, skipped") == 2
    assert (experiment / "run_0" / "run.json").stat().st_mtime_ns == before

    changed = train_cli(FCN_CONFIG, "--out", tmp_path, "--data-dir", data_dir,
                        *overrides_args(SMALL_FCN + ["optimizer.lr=0.1"]))
    assert changed.returncode == 2 and "different config" in changed.stderr


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_same_masks_as_an_uninterrupted_run(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    args = ["--data-dir", data_dir, "--quiet", *overrides_args(
        ["experiment=fcn_signed", "data.train_limit=12000", "data.test_limit=500", "training.epochs=5",
         "training.shuffle=true"])]
    reference = train_cli(FCN_CONFIG, "--runs", 1, "--out", tmp_path / "reference", *args)
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "killed"
    run_dir = out / "fcn_signed" / "run_0"
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), str(FCN_CONFIG), "--runs", "1",
                                "--out", str(out), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        state = run_dir / "checkpoint.npz"
        if state.exists() and read_checkpoint_state(state)["epochs"] >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "run.json").exists(), "run finished before it could be killed"

    resumed = train_cli(FCN_CONFIG, "--runs", 1, "--out", out, *args)
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stdout
    expected = read_masks(tmp_path / "reference" / "fcn_signed" / "run_0" / "masks.npz")
    actual = read_masks(run_dir / "masks.npz")
    assert all(np.array_equal(expected[name], actual[name]) for name in expected)
    history = json.loads((run_dir / "history.json").read_text())
    reference_history = json.loads((tmp_path / "reference" / "fcn_signed" / "run_0" / "history.json").read_text())
    assert history["test_accuracy"] == reference_history["test_accuracy"]


@pytest.mark.slow
def test_same_config_and_seed_give_identical_masks(tmp_path):
    data_dir = real_data_dir("mnist.npz")
    config = load_config(FCN_CONFIG, ["data.train_limit=2000", "data.test_limit=200", "training.epochs=1"])
    first = RunTrainer(config, 0, tmp_path / "a", data_dir=data_dir, verbose=False).run()
    second = RunTrainer(config, 0, tmp_path / "b", data_dir=data_dir, verbose=False).run()
    masks_a = read_masks(tmp_path / "a" / "fcn_signed" / "run_0" / "masks.npz")
    masks_b = read_masks(tmp_path / "b" / "fcn_signed" / "run_0" / "masks.npz")
    assert all(np.array_equal(masks_a[name], masks_b[name]) for name in masks_a)
    assert first["final"] == second["final"]


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_message_and_keeps_history(tmp_path, monkeypatch):
    real = load_dataset("mnist", real_data_dir("mnist.npz"), 512, 128)
    poisoned = real.x_train.copy()
    poisoned[:] = np.nan
    fake = Dataset(**{**real.__dict__, "x_train": poisoned})
    monkeypatch.setattr("training.runner.load_dataset", lambda *args, **kwargs: fake)
    config = load_config(FCN_CONFIG, ["training.epochs=3"])
    with pytest.raises(TrainingError, match="training loss became nan in epoch 1"):
        RunTrainer(config, 0, tmp_path, verbose=False).run()
    run_dir = tmp_path / "fcn_signed" / "run_0"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert len(json.loads((run_dir / "history.json").read_text())["train_loss"]) == 1


@pytest.mark.slow
def test_init_files_give_the_same_model_as_on_the_fly_initialization(tmp_path):
    assert init_example.main(["--model", "FCN", "--runs", "2", "--out", str(tmp_path)]) == 0
    for signed in ("true", "false"):
        common = [f"model.signed={signed}"]
        if signed == "false":
            common += ["init.weight.distribution=uniform", "init.weight.scaling=elu"]
        from_files = load_config(FCN_CONFIG, common + ["init.source=files", f"init.weights_dir={tmp_path}"])
        on_the_fly = load_config(FCN_CONFIG, common)
        model_a = build_experiment_model(from_files, from_files.seed + 1)
        model_b = build_experiment_model(on_the_fly, on_the_fly.seed + 1)
        for a, b in zip(model_a.variables, model_b.variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    missing = load_config(FCN_CONFIG, ["init.source=files", f"init.weights_dir={tmp_path}"])
    with pytest.raises(InitFileError, match="python init_example.py --model FCN --runs 8"):
        build_experiment_model(missing, missing.seed + 7)


def test_fit_feed_gives_the_arrays_batches_in_order_on_a_cpu_and_the_arrays_themselves_elsewhere(monkeypatch):
    x = np.arange(70, dtype="float32").reshape(35, 2)
    y = np.arange(35, dtype="int32")
    batches = list(fit_feed(x, y, 16)["x"].as_numpy_iterator())         # the test backend is TensorFlow
    assert [len(batch_y) for _, batch_y in batches] == [16, 16, 3]
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x) and np.array_equal(np.concatenate([b[1] for b in batches]), y)
    validation = fit_feed(x, y, 16, validation=True)
    assert list(validation) == ["validation_data"] and len(list(validation["validation_data"])) == 3
    import tensorflow as tf
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["a GPU"] if kind == "GPU" else [])
    assert fit_feed(x, y, 16) == {"x": x, "y": y, "batch_size": 16}          # a GPU keeps Keras' pipeline
    monkeypatch.undo()
    monkeypatch.setattr("keras.backend.backend", lambda: "jax")
    assert fit_feed(x, y, 16) == {"x": x, "y": y, "batch_size": 16}
    assert fit_feed(x, y, 16, validation=True) == {"validation_data": (x, y), "validation_batch_size": 16}


@pytest.mark.slow
def test_conv2_on_real_cifar10(tmp_path):
    data_dir = real_data_dir("cifar10_jpeg.npz")
    config = load_config(ROOT / "configs" / "conv2_signed.yaml",
                         ["data.train_limit=1024", "data.test_limit=256", "training.epochs=1"])
    info = RunTrainer(config, 0, tmp_path, data_dir=data_dir, verbose=False).run()
    history = json.loads((tmp_path / "conv2_signed" / "run_0" / "history.json").read_text())
    assert info["status"] == "finished" and np.isfinite(history["train_loss"][0])
    assert history["remaining_percent"][-1] < history["remaining_percent"][0]
    # It learns: chance is 0.10 (sd 0.019 on 256 images); this run gives 0.2109 on TensorFlow, JAX and torch,
    # and scrambled labels or a misaligned image decode would stay near chance.
    assert info["final"]["test_accuracy"] > 0.15


@pytest.mark.parametrize("backend, distribution, expected", [
    ("tensorflow", "none", ("auto", 50)), ("jax", "none", (True, 50)), ("torch", "none", (False, 1)),
    ("tensorflow", "mirrored", (False, 1))])
def test_execution_settings_fit_what_each_backend_accepts(monkeypatch, backend, distribution, expected):
    """Unset jit_compile (Conv2's config) per backend; Keras' torch trainer refuses steps_per_execution > 1
    and mirrored fails with XLA or several steps."""
    import keras
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    config = load_config(ROOT / "configs" / "conv2_signed.yaml", [f"training.distribution={distribution}"])
    assert config.training.jit_compile is None and config.training.steps_per_execution == 50
    assert execution_settings(config.training) == expected


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_jax_and_torch_backends_train_without_tensorflow(tmp_path, backend):
    """CI installs jax; torch (a CPU wheel of about 200 MB) is optional, so its case runs where it is
    installed (it once failed at the first step: Keras' torch trainer refuses steps_per_execution > 1)."""
    if importlib.util.find_spec(backend) is None and not (backend == "jax" and os.environ.get("CI")):
        pytest.skip(f"{backend} not installed")
    data_dir = real_data_dir("mnist.npz")
    result = train_cli(FCN_CONFIG, "--runs", 1, "--out", tmp_path, "--data-dir", data_dir, "--quiet", "--tensorboard",
                       *overrides_args(["experiment=fcn_signed", "data.train_limit=2000", "data.test_limit=500",
                                        "training.epochs=2"]), env={"KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "fcn_signed" / "run_0" / "run.json").read_text())
    assert info["versions"]["backend"] == backend and backend in info["versions"]
    assert "tensorflow" not in info["versions"], "the data path and TensorBoard scalars must not import TensorFlow"
    assert len(list((tmp_path / "fcn_signed" / "run_0" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert info["final"]["test_accuracy"] > 0.6  # chance is 0.1


def test_the_summary_line_gives_a_spread_only_over_several_runs():
    """The README quotes the main command's last line; one run has no [min, max] to show."""
    import train
    from training.results import statistics

    def summary(accuracies, remaining):
        return {"finished_runs": list(range(len(accuracies))), "test_accuracy": statistics(accuracies),
                "remaining_percent": statistics(remaining)}

    assert train.summary_line("fcn_signed", summary([0.9558], [2.1195])) == \
        "fcn_signed: 1 finished run, test accuracy 95.58 %, remaining 2.12 %"
    assert train.summary_line("fcn_signed", summary([0.95, 0.96], [2.0, 2.2])) == \
        "fcn_signed: 2 finished runs, test accuracy 95.50 % [95.00, 96.00], remaining 2.10 % [2.00, 2.20]"


def test_cli_run_index_trains_that_run_alone_and_a_training_error_exits_1(tmp_path, monkeypatch, capsys):
    import train
    trained = []

    def record(self):
        trained.append((self.run_index, self.seed))
        if self.run_index == 4:
            raise TrainingError(f"{self.directory}: non-finite training loss nan in epoch 3")

    monkeypatch.setattr(RunTrainer, "run", record)
    out = tmp_path / "results"
    assert train.main([str(FCN_CONFIG), "--run-index", "3", "--out", str(out)]) == 0
    assert trained == [(3, 7531 + 3)]
    capsys.readouterr()
    assert train.main([str(FCN_CONFIG), "--run-index", "4", "--out", str(out)]) == 1
    assert trained[-1] == (4, 7531 + 4)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].endswith("run_4: non-finite training loss nan in epoch 3"), errors
    with pytest.raises(SystemExit) as refused:   # a run outside the --runs given with it
        train.main([str(FCN_CONFIG), "--run-index", "3", "--runs", "2", "--out", str(out)])
    assert refused.value.code == 2 and "--run-index 3 is not one of --runs 2's runs 0-1" in capsys.readouterr().err


def test_result_changing_overrides_get_a_results_folder_of_their_own(tmp_path, monkeypatch, capsys):
    """`--set training.epochs=2` then the plain config: both train, each in its own folder (issue: the
    second used to stop with "results there were made with a different config")."""
    import train
    from training.config import load_saved_config
    monkeypatch.setattr(RunTrainer, "run", lambda self: None)
    baseline, out = ROOT / "configs" / "fcn_baseline.yaml", tmp_path / "results"
    short = out / "fcn_baseline+training.epochs=2"
    assert train.main([str(baseline), "--out", str(out), "--set", "training.epochs=2"]) == 0
    assert f"results: {short} (--set changes results" in capsys.readouterr().out
    assert train.main([str(baseline), "--out", str(out)]) == 0
    assert "results: " not in capsys.readouterr().out
    assert load_saved_config(short / "config.yaml").training.epochs == 2
    assert load_saved_config(out / "fcn_baseline" / "config.yaml").training.epochs == load_config(baseline).training.epochs
    # The same overrides find their folder again; keys that keep results (and --runs) keep the plain folder.
    assert train.main([str(baseline), "--out", str(out), "--set", "training.epochs=2.0", "--runs", "2"]) == 0
    assert train.main([str(baseline), "--out", str(out), "--set", "training.eval_batch_size=500"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["fcn_baseline", short.name]
    # A name given with --set experiment is used as given, so results of other configs are still refused there.
    assert train.main([str(baseline), "--out", str(out), "--set", "experiment=fcn_baseline",
                       "--set", "training.epochs=3"]) == 2
    assert "written for a different config (training.epochs: 50 there, 3 here) by a start that saved no epoch" in capsys.readouterr().err


def test_a_run_another_job_is_training_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    import train
    from fileio import run_claim
    trained = []
    monkeypatch.setattr(RunTrainer, "run", lambda self: trained.append(self.run_index))
    out = tmp_path / "results"
    (out / "fcn_signed").mkdir(parents=True)
    with run_claim(out / "fcn_signed", 3):       # another job training run 3 (flock: per open file)
        assert train.main([str(FCN_CONFIG), "--run-index", "3", "--out", str(out)]) == 2
        assert train.main([str(FCN_CONFIG), "--run-index", "4", "--out", str(out)]) == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors == [f"error: {out / 'fcn_signed' / 'run_3'}: already being trained by pid {os.getpid()} on "
                      f"{os.uname().nodename}; the same command skips or resumes it once that job ends"]
    assert trained == [4]
    assert train.main([str(FCN_CONFIG), "--run-index", "3", "--out", str(out)]) == 0 and trained == [4, 3]


def test_a_held_folder_lock_says_whom_it_waits_for_and_gives_up_after_the_bound(tmp_path, monkeypatch, capsys):
    import threading

    import train
    from fileio import folder_lock
    monkeypatch.setattr(RunTrainer, "run", lambda self: None)
    monkeypatch.setenv("SUPERMASK_LOCK_WAIT", "0.5")
    out = tmp_path / "results"
    experiment = out / "fcn_signed"
    experiment.mkdir(parents=True)
    with folder_lock(experiment):
        started = time.monotonic()
        assert train.main([str(FCN_CONFIG), "--out", str(out)]) == 2
        assert time.monotonic() - started < 10
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    holder = f"pid {os.getpid()} on {os.uname().nodename}"
    assert lines[0] == f"waiting for {experiment / '.lock'}, held by {holder} (at most 0.5 s)"
    assert len(lines) == 2 and lines[1].startswith(f"error: {experiment / '.lock'}: held by {holder} for more "
                                                   f"than 0.5 s") and "SUPERMASK_LOCK_WAIT" in lines[1], lines
    assert not (experiment / "config.yaml").exists()

    monkeypatch.setenv("SUPERMASK_LOCK_WAIT", "60")   # a lock released while train.py waits is taken then
    taken = threading.Event()

    def other_job():
        with folder_lock(experiment):
            taken.set()
            time.sleep(0.5)

    holder_thread = threading.Thread(target=other_job)
    holder_thread.start()
    assert taken.wait(10)
    assert train.main([str(FCN_CONFIG), "--out", str(out)]) == 0
    holder_thread.join()
    monkeypatch.setenv("SUPERMASK_LOCK_WAIT", "soon")
    assert train.main([str(FCN_CONFIG), "--out", str(out)]) == 2
    assert "SUPERMASK_LOCK_WAIT: expected a number of seconds >= 0, got 'soon'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cpu_run_prints_one_device_line_and_no_backend_start_up_noise(tmp_path):
    """TensorFlow's C++ start-up lines (``E0000 ... failed call to cuInit``, ``I0000 ...``) escape its log
    level; a user sees one line about the device instead."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), str(FCN_CONFIG), "--runs", "1", "--quiet",
                             "--out", str(tmp_path), "--data-dir", str(real_data_dir("mnist.npz")),
                             *overrides_args(["data.train_limit=256", "data.test_limit=128", "training.epochs=1"])],
                            cwd=ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cuInit" not in result.stderr and not re.search(r"^[IWEF]\d{4} ", result.stderr, re.MULTILINE), \
        result.stderr[-2000:]
    devices = [line for line in result.stdout.splitlines() if line.startswith("device: ")]
    assert len(devices) == 1 and re.fullmatch(r"device: (CPU \(\d+ cores, |GPU \(.+; )tensorflow\)", devices[0]), \
        devices


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "init_example.py", "export.py", "reproduce.py", "report.py"])
def test_every_command_starts_without_backend_start_up_noise(script):
    """The commands the README names print their own lines only: export.py once began with TensorFlow's
    ``I0000 ... oneDNN`` and ``Could not find cuda drivers`` lines."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]
    assert not re.search(r"^[IWEF]\d{4} |absl::InitializeLog", result.stderr, re.MULTILINE), result.stderr[-2000:]
