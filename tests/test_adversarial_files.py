"""Hostile and clumsy files and arguments (issue 13, causes 5, 6 and 8): init pickles, init_example.py,
report.py, export.py and dataset folders. Each test builds the hostile input itself."""
import errno
import json
import pickle
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_dir

import export
import init_example
import masking.init_files
import report
import reporting.report
from data import DatasetError, load_dataset
from masking.init_files import FORMAT, InitFileError, init_file_path, load_init_file
from models import build_experiment_model
from reporting.compact import write_compact
from training.config import ExperimentConfig, config_to_yaml, load_config
from training.schema import from_dict

ROOT = Path(__file__).resolve().parents[1]
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")
MEMORY_LIMIT = 2 << 30   # a regression that expands shared references dies here instead of eating the machine


def shared_reference_bomb(levels=6, fan_out=100):
    """A list whose repr has fan_out**levels items, pickled in a few KB (each level refers to the one below)."""
    value = [0.0] * fan_out
    for _ in range(levels):
        value = [value] * fan_out
    return value


def init_payload(**changes):
    payload = {"format": FORMAT, "model": "FCN", "kind": "weights",
               "initializer": {"distribution": "signed_constant", "scaling": "elus", "factor": 1.0},
               "seed": 7531, "run": 0, "options": {"width_multiplier": 1.0},
               "layers": [{"name": "dense", "shape": (4, 3), "values": np.zeros((4, 3), np.float32)}]}
    payload.update(changes)
    return payload


def write_pickle(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


def limited_run(command, timeout=300):
    """Run ``command`` with at most MEMORY_LIMIT of address space and a timeout: (exit code, stderr lines
    without TF's C++ start-up lines, stdout)."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                            preexec_fn=limit_memory)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not NATIVE_LOG.match(line)]
    return result.returncode, lines, result.stdout


def error_lines(text):
    return [line for line in text.splitlines() if "error" in line]


# Cause 5: a small pickle of shared references must be refused fast, in bounded memory, with a short message.

BOMBS = {
    "layers": lambda bomb: init_payload(layers=bomb),
    "layer entry": lambda bomb: init_payload(layers=[bomb]),
    "values": lambda bomb: init_payload(layers=[{"name": "dense", "shape": (4, 3), "values": bomb}]),
    "shape": lambda bomb: init_payload(layers=[{"name": "dense", "shape": bomb, "values": np.zeros(3)}]),
    "options": lambda bomb: init_payload(options={"width_multiplier": bomb}),
    "model": lambda bomb: init_payload(model=bomb),
    "format": lambda bomb: init_payload(format=bomb),
    "object array": lambda bomb: init_payload(layers=[{"name": "dense", "shape": (2,), "values": object_array(bomb)}]),
}


def object_array(item):
    """A 1-D object array holding ``item`` twice (np.array([item, item]) would expand the nested lists)."""
    array = np.empty(2, dtype=object)
    array[0] = array[1] = item
    return array

LOAD_EVERY_BOMB = """
import sys
from masking.init_files import InitFileError, load_init_file
for path in sys.argv[1:]:
    try:
        load_init_file(path)
        print("ACCEPTED", path)
    except InitFileError as error:
        print(error)
"""


@pytest.mark.slow
def test_shared_reference_pickles_are_refused_fast_in_bounded_memory(tmp_path):
    paths = [str(write_pickle(tmp_path / f"bomb_{name.replace(' ', '_')}.pkl", make(shared_reference_bomb())))
             for name, make in sorted(BOMBS.items())]
    assert all(Path(path).stat().st_size < 10_000 for path in paths)
    code, errors, output = limited_run([sys.executable, "-c", LOAD_EVERY_BOMB, *paths])
    assert code == 0, errors[-5:]
    messages = output.splitlines()
    assert len(messages) == len(paths)
    for path, message in zip(paths, messages):
        assert message.startswith(f"{path}: ") and len(message) < 400, message


@pytest.mark.slow
def test_inspect_and_train_refuse_a_shared_reference_init_file(tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text(f"experiment: bomb\nmodel: {{name: FCN}}\ntraining: {{epochs: 1}}\n"
                      f"init: {{source: files, weights_dir: {json.dumps(str(tmp_path / 'weights'))}}}\n"
                      "data: {dataset: mnist, train_limit: 64, test_limit: 64}\n")
    resolved = load_config(config)
    bomb = write_pickle(init_file_path(tmp_path / "weights", "FCN", "weights", resolved.init.weight, 0),
                        init_payload(layers=[shared_reference_bomb()]))
    scores = init_file_path(tmp_path / "weights", "FCN", "scores", resolved.init.mask, 0)
    scores.parent.mkdir(parents=True, exist_ok=True)
    scores.write_bytes(bomb.read_bytes())  # a complete set, so that train.py reads the weights file first
    code, lines, _ = limited_run([sys.executable, "init_example.py", "--inspect", str(bomb)])
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {bomb}: layer 0"), lines
    code, lines, _ = limited_run([sys.executable, "train.py", str(config), "--out", str(tmp_path / "results"),
                                  "--data-dir", str(real_data_dir("mnist.npz")),
                                  "--quiet"])
    assert code == 2 and len(lines) == 1 and str(bomb) in lines[0], lines


def test_pickle_size_limits_name_the_file(tmp_path, monkeypatch):
    many = write_pickle(tmp_path / "many.pkl", init_payload(options={f"k{i}": i for i in range(120_000)}))
    with pytest.raises(InitFileError, match=r"many\.pkl: .*more than 200000 pickle opcodes"):
        load_init_file(many)

    class HugeEmptyArray:   # _reconstruct allocates the array before any data arrives
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct
            return _reconstruct, (np.ndarray, (1 << 40,), b"b")

    huge = write_pickle(tmp_path / "huge.pkl", init_payload(layers=[HugeEmptyArray()]))
    with pytest.raises(InitFileError, match=r"huge\.pkl: .*arrays larger than \d+ bytes in all"):
        load_init_file(huge)
    monkeypatch.setattr(masking.init_files, "MAX_FILE_BYTES", 100)
    with pytest.raises(InitFileError, match=r"many\.pkl: refused init file \(\d+ bytes, more than 100\)"):
        load_init_file(many)


# Cause 6: malformed init files, bad init_example.py arguments, unwritable --out, tampered exports.

MALFORMED_LAYERS = {
    "layers not a list": ({"layers": {"dense": np.zeros(3)}}, "layers must be a non-empty list"),
    "empty layers": ({"layers": []}, "layers must be a non-empty list"),
    "layer not a dict": ({"layers": ["dense"]}, "layer 0: expected a dict with a name"),
    "shape a string": ({"layers": [{"name": "dense", "shape": "4,3", "values": np.zeros((4, 3))}]},
                       r"layer 0 \('dense'\): shape must be a tuple of positive sizes, got '4,3'"),
    "shape of floats": ({"layers": [{"name": "dense", "shape": (4.0, 3), "values": np.zeros((4, 3))}]},
                        r"layer 0 \('dense'\): shape must be a tuple"),
    "string array": ({"layers": [{"name": "dense", "shape": (2,), "values": np.array(["a", "b"])}]},
                     r"layer 0 \('dense'\): values must be a float array, got <U1 array"),
    "values a list": ({"layers": [{"name": "dense", "shape": (2,), "values": [0.0, 1.0]}]},
                      r"layer 0 \('dense'\): values must be a float array, got \[0.0, 1.0\]"),
    "shape mismatch": ({"layers": [{"name": "dense", "shape": (3, 4), "values": np.zeros((4, 3))}]},
                       r"layer 0 \('dense'\): values have shape \(4, 3\), the entry says \(3, 4\)"),
    "seed a string": ({"seed": "7531"}, "seed must be an integer"),
    "initializer a list": ({"initializer": ["uniform"]}, "initializer must map names to plain values"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_LAYERS))
def test_malformed_init_files_name_the_file_and_layer(tmp_path, case, capsys):
    changes, expected = MALFORMED_LAYERS[case]
    path = write_pickle(tmp_path / "bad.pkl", init_payload(**changes))
    with pytest.raises(InitFileError, match=rf"^{re.escape(str(path))}: {expected}"):
        load_init_file(path)
    assert init_example.main(["--inspect", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ")


@pytest.mark.parametrize("arguments, culprit", [
    (["--runs", "0"], "--runs"), (["--runs", "-2"], "--runs"), (["--runs", "x"], "--runs"),
    (["--num-classes", "0"], "--num-classes"), (["--num-classes", "-10"], "--num-classes"),
    (["--width-multiplier", "0"], "--width-multiplier"), (["--width-multiplier", "-1"], "--width-multiplier"),
    (["--width-multiplier", "nan"], "--width-multiplier"), (["--width-multiplier", "1e9"], "--width-multiplier"),
    (["--width-multiplier", "0.001"], "--width-multiplier"), (["--seed", "-1"], "--seed")])
def test_init_example_refuses_bad_numbers_before_writing(tmp_path, capsys, arguments, culprit):
    with pytest.raises(SystemExit) as exit_info:
        init_example.main(arguments + ["--out", str(tmp_path / "weights")])
    lines = error_lines(capsys.readouterr().err)
    assert exit_info.value.code == 2 and len(lines) == 1 and f"argument {culprit}:" in lines[0]
    assert not (tmp_path / "weights").exists()


def no_space_left(path, data):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("case", ["file as --out", "file as parent", "full disk"])
def test_init_example_unwritable_out_exits_2(tmp_path, capsys, monkeypatch, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = {"file as --out": blocker, "file as parent": blocker / "weights"}.get(case, tmp_path / "weights")
    if case == "full disk":
        monkeypatch.setattr(init_example, "atomic_write_bytes", no_space_left)
    assert init_example.main(["--model", "FCN", "--runs", "1", "--out", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: --out {out}: cannot write")
    assert blocker.read_text() == "a file, not a folder" and not list((tmp_path / "weights").rglob("*.pkl"))


@pytest.mark.parametrize("case", ["file as --out", "file as parent", "full disk"])
def test_report_unwritable_out_exits_2(tmp_path, capsys, monkeypatch, case):
    (tmp_path / "results").mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = {"file as --out": blocker, "file as parent": blocker / "report"}.get(case, tmp_path / "report")
    if case == "full disk":
        monkeypatch.setattr(reporting.report, "atomic_write_text", no_space_left)
    assert report.main([str(tmp_path / "results"), "--out", str(out), "--no-figures"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: --out {out}: cannot write")
    assert blocker.read_text() == "a file, not a folder" and not list(tmp_path.rglob("report.md"))


def test_report_unwritable_default_root_names_it(tmp_path, capsys, monkeypatch):
    from test_report import write_config, write_finished_run
    write_config(tmp_path / "results" / "fcn_signed", "FCN", "mnist", runs=1)
    write_finished_run(tmp_path / "results" / "fcn_signed", 0, 0.97, 3.7, 9000)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reporting.report, "atomic_write_text", no_space_left)
    assert report.main(["--no-figures"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: results: cannot write"), lines


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A finished-looking signed FCN run folder and its compact file, made without training."""
    config = from_dict(ExperimentConfig, {"experiment": "tiny", "model": {"name": "FCN"},
                                          "data": {"dataset": "mnist", "test_limit": 64}})
    run = tmp_path_factory.mktemp("results") / "tiny" / "run_0"
    run.mkdir(parents=True)
    model = build_experiment_model(config, config.seed)
    model.save_weights(run / "model.weights.h5")
    (run / "config.yaml").write_text(config_to_yaml(config))
    final = {"test_accuracy": 0.1, "remaining_percent": 50.0, "remaining_count": 100}
    (run / "run.json").write_text(json.dumps({"status": "finished", "run_index": 0, "seed": config.seed,
                                              "final": final}))
    compact = run.parent / "tiny_run0.compact.npz"
    write_compact(compact, model, config, config.seed, final)
    with np.load(compact) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return run, arrays


def tampered_run(run, tmp_path, name, text):
    copy = tmp_path / "run_0"
    shutil.copytree(run, copy)
    target = copy / name
    if isinstance(text, str):
        target.write_text(text)
    else:
        target.write_bytes(text)
    return copy, target


@pytest.mark.parametrize("name, text, expected", [
    ("run.json", "[1, 2]", "run.json is not a run record"),
    ("run.json", json.dumps({"status": "finished"}), "lacks final.test_accuracy"),
    ("run.json", json.dumps({"status": "finished", "seed": [1], "final": {
        "test_accuracy": 0.1, "remaining_percent": 1.0, "remaining_count": 1}}), "seed must be an integer"),
    ("model.weights.h5", b"not an h5 file", "cannot be loaded into the"),
])
def test_export_refuses_a_tampered_run_in_one_line(untrained_run, tmp_path, capsys, name, text, expected):
    run, path = tampered_run(untrained_run[0], tmp_path, name, text)
    assert export.main([str(run), "--out", str(tmp_path / "export")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and expected in lines[0], lines
    assert not (tmp_path / "export").exists()


def meta_with(arrays, **changes):
    meta = json.loads(arrays["meta"].tobytes().decode())
    meta.update(changes)
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


COMPACT_TAMPERING = {
    "meta a list": (lambda a: dict(a, meta=np.frombuffer(b"[1, 2]", np.uint8)), "meta is not a JSON object"),
    "meta not JSON": (lambda a: dict(a, meta=np.frombuffer(b"\xff{", np.uint8)), "meta is not a JSON document"),
    "missing mask": (lambda a: {k: v for k, v in a.items() if k != "mask_1"}, "layer 1 (.*): missing entry 'mask_1'"),
    "short mask": (lambda a: dict(a, mask_0=a["mask_0"][:10]), r"entry 'mask_0' has shape \(10,\), expected \(58800,\)"),
    "wrong-shape meta": (lambda a: dict(a, meta=meta_with(a, layers=[
        dict(record, shape=[3, 3]) for record in json.loads(a["meta"].tobytes())["layers"]])),
        r"layer 0 \(.*\): meta shape \[3, 3\], the model's is \(784, 300\)"),
    "layers not a list": (lambda a: dict(a, meta=meta_with(a, layers={"dense": 1})), "meta layers is missing"),
    "config not YAML": (lambda a: dict(a, meta=meta_with(a, config="model: [unclosed")), "meta config: not valid"),
    "not an npz": (None, "not a readable .npz file"),
}


@pytest.mark.parametrize("case", sorted(COMPACT_TAMPERING))
def test_evaluate_refuses_a_tampered_compact_file_in_one_line(untrained_run, tmp_path, capsys, case):
    tamper, expected = COMPACT_TAMPERING[case]
    path = tmp_path / "tampered.compact.npz"
    if tamper is None:
        path.write_bytes(b"PK\x03\x04 truncated")
    else:
        np.savez(path, **tamper(untrained_run[1]))
    assert export.main(["evaluate", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and re.match(rf"error: {re.escape(str(path))}: {expected}", lines[0]), lines


# Cause 8: a data error names the folder, not only the file name.

def test_dataset_errors_name_the_full_path(tmp_path):
    folder = tmp_path / "one of several data folders"
    folder.mkdir()
    np.savez(folder / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError) as error:
        load_dataset("mnist", data_dir=folder)
    assert str(error.value).startswith(f"{folder / 'mnist.npz'}: missing key 'y_train'")
