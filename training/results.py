"""Result files of an experiment, all written atomically (``fileio.py``), and summary.json.

    results/<experiment>/config.yaml          resolved config
    results/<experiment>/summary.json         statistics over the finished runs
    results/<experiment>/run_<i>/run.json     status, seed, final metrics, versions, wall time
    results/<experiment>/run_<i>/history.json per-epoch metrics (remaining_percent has epochs + 1 entries)
    results/<experiment>/run_<i>/masks.npz    final ternary masks, int8, one array per masked layer
    results/<experiment>/run_<i>/model.weights.h5   final model variables (for export)
    results/<experiment>/run_<i>/checkpoint.npz     end-of-epoch state while the run is unfinished
"""
import math
from pathlib import Path

import numpy as np

from fileio import run_folder_index, run_folder_name, write_json
from training.run_record import FINAL_KEYS, RunRecord

HISTORY_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "remaining_percent",
                "learning_rate", "epoch_seconds", "mask_counts")


def run_dir(out_root, experiment, run_index):
    return Path(out_root) / experiment / run_folder_name(run_index)


def empty_history():
    return {key: [] for key in HISTORY_KEYS}


def statistics(values):
    """n, mean, sample std (ddof=1, 0 for one value), min, max, 5 %/95 % quantiles; None without values.

    ``None`` entries (unreadable metrics) are left out."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    return {"n": int(values.size), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()),
            "q05": float(np.quantile(values, 0.05)), "q95": float(np.quantile(values, 0.95))}


def _regularized_incomplete_beta(x, a, b):
    """I_x(a, b) by its continued fraction (modified Lentz), accurate to ~1e-12."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1.0) / (a + b + 2.0):   # the fraction converges fast only below the mean
        return 1.0 - _regularized_incomplete_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction


def t_cdf(t, df):
    """P(T <= t) of Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(probability, df):
    """The ``probability`` quantile of Student's t (bisection on t_cdf; no SciPy needed)."""
    if not 0.0 < probability < 1.0 or df <= 0:
        raise ValueError(f"t quantile needs 0 < probability < 1 and df > 0, got {probability}, {df}")
    if probability < 0.5:
        return -t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if t_cdf(middle, df) < probability else (low, middle)
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def interval_statistics(values):
    """``statistics`` plus the intervals one may print after a mean: ``min_max``, ``quantiles``
    (5 %/95 %), ``sd`` (mean +- one sd) and ``ci`` (95 % confidence interval of the mean,
    t-distribution with n - 1 degrees of freedom; None for one value), each a (low, high) pair."""
    stats = statistics(values)
    if stats is None:
        return None
    mean, std, n = stats["mean"], stats["std"], stats["n"]
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n) if n > 1 else None
    return {**stats, "min_max": (stats["min"], stats["max"]), "quantiles": (stats["q05"], stats["q95"]),
            "sd": (mean - std, mean + std), "ci": None if half is None else (mean - half, mean + half)}


INTERVALS = {"min_max": "[min, max]", "quantiles": "[5 %, 95 %] quantiles", "sd": "mean ± 1 sd",
             "ci": "95 % CI of the mean"}


def bracket_consistency(stats, paper_mean, paper_low, paper_high, resolution=0.1):
    """Which interval definition a published bracket [paper_low, paper_high] around ``paper_mean`` can be.

    Each definition's interval of ``stats`` (interval_statistics) is moved by the difference of the
    means, i.e. the paper is assumed to have had our spread. The rule: a definition is consistent when
    both moved ends lie within half a printed digit (``resolution`` / 2) of the printed ends, the range
    the paper's rounding leaves them. ``width_fits`` asks only about the spread, not the centring: the
    predicted width lies within ``resolution`` of the printed width (two rounded ends). Returns
    {definition: {predicted, width_ratio, consistent, width_fits}}; width_ratio = printed width /
    predicted width (1 = same width)."""
    verdicts = {}
    for name in INTERVALS:
        interval = stats.get(name)
        if interval is None:
            continue
        shift = paper_mean - stats["mean"]
        low, high = interval[0] + shift, interval[1] + shift
        tolerance = resolution / 2 + 1e-9
        verdicts[name] = {"predicted": (low, high),
                          "width_ratio": (paper_high - paper_low) / (high - low) if high > low else math.inf,
                          "consistent": abs(low - paper_low) <= tolerance and abs(high - paper_high) <= tolerance,
                          "width_fits": abs((high - low) - (paper_high - paper_low)) <= 2 * tolerance}
    return verdicts


def summarize_experiment(experiment_dir):
    """Recompute summary.json from every finished run under ``experiment_dir``."""
    experiment_dir = Path(experiment_dir)
    finished, unfinished, skipped = [], [], []
    for path in sorted(experiment_dir.glob("run_*/run.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        name = path.parent.name
        if run_folder_index(name) is None:
            skipped.append(f"{name}: not a run folder (run_<index>, no leading zeros)")
            continue
        try:
            record = RunRecord.read(path.parent)   # None: removed since listed, a run that has not started
        except ValueError as error:
            skipped.append(f"{name}: {str(error)[:200]}")
            continue
        (finished if record and record.finished else unfinished).append((name, record))
    summary = {
        "experiment": experiment_dir.name,
        "finished_runs": [name for name, _ in finished],
        "unfinished_runs": [name for name, _ in unfinished],
        "skipped": skipped,
        **{key: statistics([record.final[key] for _, record in finished]) for key in FINAL_KEYS},
    }
    write_json(experiment_dir / "summary.json", summary)
    return summary
