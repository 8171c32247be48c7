"""bench/agreement.py: the authors' docs/SPEC.md §13 numbers beside our seed range, and a tiny real run."""
import importlib.util
import json
from pathlib import Path

from conftest import real_data_dir

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("agreement", ROOT / "bench" / "agreement.py")
agreement = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agreement)


def history(remaining, accuracy):
    return {"remaining_percent": list(remaining), "test_accuracy": [a / 100 for a in accuracy]}


def test_authors_numbers_are_method_13():
    conv2, resnet = agreement.CASES["conv2"], agreement.CASES["resnet20"]
    assert conv2.section == "SPEC §13.2" and conv2.epochs == 3
    assert conv2.remaining_percent == (59.98, 51.33, 40.98, 28.55) and conv2.test_accuracy == (52.82, 57.86, 62.15)
    assert resnet.section == "SPEC §13.3" and resnet.epochs == 2
    assert resnet.remaining_percent == (24.95, 17.08, 13.52) and resnet.test_accuracy == (40.58, 51.10)


def test_case_configs_carry_the_stated_settings():
    conv2 = agreement.case_config("conv2", 3, smoke=False)
    assert (conv2.runs, conv2.training.epochs, conv2.training.schedule.kind, conv2.training.shuffle) == \
        (3, 3, "exp_continuous", True)
    assert (conv2.optimizer.lr, conv2.optimizer.wd, conv2.model.threshold_fraction) == (0.04, 5e-4, 0.4)
    resnet = agreement.case_config("resnet20", 3, smoke=False)
    assert (resnet.training.epochs, resnet.model.bn_mode, resnet.optimizer.lr, resnet.optimizer.wd) == \
        (2, "stem_only", 0.3, 3e-4)
    assert resnet.data.augment is False and resnet.data.train_limit is None


def test_table_puts_authors_beside_mean_min_max_and_flags_more_than_one_point_outside():
    histories = [history((60.0, 51.0, 41.0, 28.0), (52.0, 58.0, 60.0)),
                 history((59.9, 51.6, 40.0, 29.0), (53.0, 57.0, 60.5))]
    table, flagged = agreement.case_table("conv2", histories, "agreement_conv2")
    lines = table.splitlines()
    assert "| 0 (init) | – | – | 59.98 | 59.95 [59.90, 60.00] |" in lines
    assert "| 1 | 52.82 | 52.50 [52.00, 53.00] | 51.33 | 51.30 [51.00, 51.60] |" in lines
    assert "| 3 | 62.15 **!** | 60.25 [60.00, 60.50] | 28.55 | 28.50 [28.00, 29.00] |" in lines
    assert flagged == ["Conv2 / CIFAR-10 epoch 3 test accuracy: authors 62.15, ours 60.25 [60.00, 60.50]"]


def test_bad_case_is_exit_2(tmp_path, capsys):
    assert agreement.main(["--cases", "conv3", "--out", str(tmp_path / "a")]) == 2
    assert "conv3" in capsys.readouterr().err and not (tmp_path / "a").exists()


def test_smoke_run_trains_the_seeds_and_writes_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("cifar10_jpeg.npz")))
    out = tmp_path / "agreement"
    assert agreement.main(["--smoke", "--cases", "conv2", "--seeds", "2", "--out", str(out)]) == 0
    experiment = out / "agreement_conv2_smoke"
    for index in (0, 1):
        info = json.loads((experiment / f"run_{index}" / "run.json").read_text())
        assert info["status"] == "finished" and info["epochs_trained"] == 3 and info["seed"] == 7531 + index
    text = (out / "agreement.md").read_text()
    assert capsys.readouterr().out.endswith(text)
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 0 (init)", "| 1", "| 2", "| 3"]
    assert "2 finished seeds" in text and "not run" not in text
    init_remaining = rows[0].split(" | ")[4]
    assert 59 < float(init_remaining.split()[0]) < 61   # p = 0.4 on uniform scores keeps ~60 %, as the authors' 59.98
