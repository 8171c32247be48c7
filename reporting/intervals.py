"""What an interval printed after a mean can be: Student's t (no SciPy), the intervals of a sample, and
which of them a published bracket is consistent with (docs/SPEC.md §8.3; the FCN seed study)."""
import math

from training.results import statistics


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
