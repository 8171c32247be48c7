"""reporting/intervals.py and reporting/brackets.py: interval statistics (t quantile, CI of the mean,
bracket rule) against hand-computed values, the bracket verdict, and the FCN seed study on tiny runs."""
import math

import pytest
from conftest import real_data_dir

from reporting import brackets
from reporting.intervals import bracket_consistency, interval_statistics, t_quantile
from reporting.studies import write_study_report
from training.study import load_study, plan_study
from training.study_run import run_study

SMOKE = ["training.epochs=1", "data.train_limit=2000", "data.test_limit=500"]


@pytest.mark.parametrize("probability, df, expected", [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 9, 2.2622), (0.975, 49, 2.0096),
    (0.95, 10, 1.8125), (0.975, 10**6, 1.9600), (0.5, 3, 0.0)])
def test_t_quantile_matches_the_printed_table(probability, df, expected):
    assert t_quantile(probability, df) == pytest.approx(expected, abs=5e-5)
    assert t_quantile(1 - probability, df) == pytest.approx(-expected, abs=5e-5)


def test_t_quantile_refuses_impossible_arguments():
    with pytest.raises(ValueError, match="0 < probability < 1"):
        t_quantile(1.0, 5)


def test_interval_statistics_match_hand_computation():
    stats = interval_statistics([97.0, 97.5, 98.0])
    half = 4.302653 * 0.5 / math.sqrt(3)          # t_{0.975, 2} * sd / sqrt(n) = 1.24207
    assert stats["ci"] == pytest.approx((97.5 - half, 97.5 + half), abs=1e-5)
    assert stats["min_max"] == (97.0, 98.0) and stats["sd"] == pytest.approx((97.0, 98.0))
    assert stats["quantiles"] == pytest.approx((97.05, 97.95))
    assert interval_statistics([3.0])["ci"] is None and interval_statistics([]) is None


def test_bracket_rule_moves_our_interval_to_the_paper_mean_and_allows_half_a_digit():
    stats = {"mean": 97.0, "min_max": (96.8, 97.2), "quantiles": (96.9, 97.1), "sd": (96.94, 97.06),
             "ci": (96.99, 97.01)}
    verdicts = bracket_consistency(stats, 97.48, 97.3, 97.7)
    assert verdicts["min_max"]["predicted"] == pytest.approx((97.28, 97.68))
    assert verdicts["min_max"]["consistent"] and verdicts["min_max"]["width_ratio"] == pytest.approx(1.0)
    assert not verdicts["quantiles"]["consistent"]          # (97.38, 97.58): 0.08 and 0.12 off
    assert verdicts["ci"]["width_ratio"] == pytest.approx(20.0) and not verdicts["ci"]["consistent"]
    # Width alone: 0.4 printed, so 0.3–0.5 fits whatever the centring; 0.2 (quantiles) does not.
    assert verdicts["min_max"]["width_fits"] and not verdicts["quantiles"]["width_fits"]
    off_centre = bracket_consistency({"mean": 97.0, "quantiles": (96.7, 97.02)}, 97.48, 97.3, 97.7)["quantiles"]
    assert off_centre["width_fits"] and not off_centre["consistent"]       # width 0.32, ends 0.12 and 0.2 off


def test_conclusion_separates_the_ends_rule_from_the_width_alone():
    spread = {"mean": 97.0, "min_max": (96.6, 97.4), "quantiles": (96.82, 97.18), "sd": (96.85, 97.15),
              "ci": (96.98, 97.02)}
    judged = [brackets.JudgedBracket("signed test accuracy % (spread of a, n=50)", None,
                                      bracket_consistency(spread, 97.48, 97.3, 97.7), 50),
              brackets.JudgedBracket("baseline test accuracy % (spread of b, n=50)", None,
                                      bracket_consistency(spread, 97.43, 97.3, 97.6), 50)]
    text = brackets.conclusion(judged)
    assert text.startswith("The paper's brackets are consistent with [5 %, 95 %] quantiles (all 2 brackets")
    assert "By width alone (the spread, not the centring; a printed width is known only to ±0.1): " \
           "[5 %, 95 %] quantiles and mean ± 1 sd fit all 2 brackets." in text
    assert "The smallest sample" not in text                  # 50 runs each
    few = [judged[0], judged[1]._replace(n=3)]
    assert "The smallest sample has only 3 runs" in brackets.conclusion(few)


@pytest.mark.slow
def test_the_seed_study_trains_two_seeds_and_writes_table_verdict_and_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERMASK_DATA_DIR", str(real_data_dir("mnist.npz")))
    configs = ["fcn_signed_closest_to_paper", "fcn_baseline"]
    study = load_study("fcn_seeds")
    plan = plan_study(study, tmp_path, runs=2, overrides=SMOKE, only=configs)
    assert run_study(plan, study, tmp_path) == []
    for planned in plan:   # SMOKE's --set: folders of their own
        assert sorted(path.name for path in (tmp_path / planned.folder).glob("run_*/run.json")) == ["run.json"] * 2
    _, (report, figure) = write_study_report(study, tmp_path, overrides=SMOKE)
    assert report.name == f"fcn_seeds{plan[0].folder[len(plan[0].name):]}.md"   # named as the --set runs' folders
    text = report.read_text()
    shorter = "1/100 ep, 2000 train images, 500 test images"   # than the protocol: compared with nothing
    assert f"| fcn_signed_closest_to_paper ({shorter}) | test accuracy % | 2 |" in text
    assert "| fcn_baseline (1/50 ep, " in text and "97.43 [97.4, 97.5]" not in text
    assert "No bracket could be judged" in text
    assert figure.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "fcn_seeds.md").exists()
