"""NECROZMA's core window features (statistics, derivatives, spectrum, chaos), vectorised over windows.

Each function takes ``prices`` of shape (windows, n), every row one window of closes, and
returns ``{name: values}`` with one float64 value per window, NaN where upstream's feature
dict would lack the key. Formulas follow upstream's ``features_core.py`` (function names
are kept); numpy replaces scipy (``stats.skew``, ``kurtosis``, ``linregress``) with the
same definitions. Windows here have at most 30 prices (see ``MAX_LOOKBACK`` in
``necrozma.py``), so the DFA, Higuchi and entropy branches reduce to upstream's constants.
"""

from __future__ import annotations

import numpy as np

Features = dict[str, np.ndarray]


def lerp_percentile(rows: np.ndarray, counts: np.ndarray, q: float, start: np.ndarray | int = 0) -> np.ndarray:
    """numpy's linear percentile ``q`` of the ``counts[i]`` values from ``start[i]`` on of each sorted row.

    NaN for a row without values (which reads its last value instead).
    """
    quantile = q / 100
    n = counts.astype(np.float64)
    index = n * quantile + (1 + quantile * (1 - 1 - 1)) - 1
    index = np.clip(index, 0, np.maximum(n - 1, 0))
    below = np.floor(index).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(counts - 1, 0))
    gamma = index - below
    take = np.arange(len(rows))
    last = rows.shape[1] - 1
    a, b = rows[take, np.minimum(start + below, last)], rows[take, np.minimum(start + above, last)]
    diff = b - a
    out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return np.where(counts > 0, out, np.nan)


def slope(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` per row, over the points of ``mask`` (all when None)."""
    mask = np.ones(y.shape, dtype=bool) if mask is None else mask
    count = mask.sum(axis=1)
    x, y = np.where(mask, x, 0.0), np.where(mask, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(mask, x - (x.sum(axis=1) / count)[:, None], 0.0)
        dy = np.where(mask, y - (y.sum(axis=1) / count)[:, None], 0.0)
        return (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)


def polyfit_slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``np.polyfit(x, row, 1)[0]`` of every row of ``y`` (one shared ``x``).

    The slope is a fixed weighting of each row (the first row of the pseudo-inverse of
    ``[x, 1]``), summed row by row, so a window's value does not depend on the other windows.
    """
    weights = np.linalg.pinv(np.vander(x, 2))[0]
    return (y * weights).sum(axis=1)


def statistical_features(prices: np.ndarray) -> Features:
    """``stat_*``: moments, quantiles, trend line and lag-1 autocorrelation of the closes."""
    n = prices.shape[1]
    mean = np.mean(prices, axis=1)
    std = np.std(prices, axis=1)
    centred = prices - mean[:, None]
    m2 = np.mean(centred ** 2, axis=1)
    m3 = np.mean(centred ** 2 * centred, axis=1)
    m4 = np.mean((centred ** 2) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = m2 <= (np.finfo(np.float64).eps * mean) ** 2
        skew = np.where(flat, np.nan, m3 / m2 ** 1.5)
        kurt = np.where(flat, np.nan, m4 / m2 ** 2 - 3)
    x = np.arange(n, dtype=np.float64)
    dx, dy = x - x.mean(), centred
    ssxm = np.mean(dx * dx)
    ssxym = (dy * dx).sum(axis=1) / n
    ssym = (dy * dy).sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where((ssym == 0), 0.0, np.clip(ssxym / np.sqrt(ssxm * ssym), -1.0, 1.0))
    a, b = prices[:, :-1], prices[:, 1:]
    da, db = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (da * db).sum(axis=1) / (n - 2)
        auto = np.clip(cov / np.sqrt((da * da).sum(axis=1) / (n - 2)) / np.sqrt((db * db).sum(axis=1) / (n - 2)),
                       -1, 1)
    percentiles = np.percentile(prices, [75, 25, 10, 90], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(mean != 0, std / np.abs(mean), np.nan)
    return {
        "stat_mean": mean, "stat_median": np.median(prices, axis=1), "stat_std": std,
        "stat_var": np.var(prices, axis=1), "stat_range": prices.max(axis=1) - prices.min(axis=1),
        "stat_iqr": percentiles[0] - percentiles[1], "stat_skewness": skew, "stat_kurtosis": kurt,
        "stat_min": prices.min(axis=1), "stat_max": prices.max(axis=1), "stat_q10": percentiles[2],
        "stat_q90": percentiles[3], "stat_cv": cv, "stat_trend_slope": ssxym / ssxm,
        "stat_trend_r2": r ** 2, "stat_autocorr_1": np.where(np.isnan(auto), 0.0, auto),
    }


def calculate_derivatives(prices: np.ndarray) -> Features:
    """``d1_*``..``d5_*``: repeated differences of the closes (price units)."""
    d1 = np.diff(prices, axis=1)
    d2 = np.diff(d1, axis=1)
    d3 = np.diff(d2, axis=1)
    d4 = np.diff(d3, axis=1)
    d5 = np.diff(d4, axis=1)
    return {
        "d1_mean": d1.mean(axis=1), "d1_std": d1.std(axis=1), "d1_current": d1[:, -1], "d1_max": d1.max(axis=1),
        "d1_min": d1.min(axis=1), "d1_abs_mean": np.abs(d1).mean(axis=1),
        "d1_positive_ratio": (d1 > 0).mean(axis=1),
        "d2_mean": d2.mean(axis=1), "d2_std": d2.std(axis=1), "d2_current": d2[:, -1],
        "d2_abs_mean": np.abs(d2).mean(axis=1),
        "d3_mean": d3.mean(axis=1), "d3_std": d3.std(axis=1), "d3_current": d3[:, -1],
        "d4_mean": d4.mean(axis=1), "d4_current": d4[:, -1],
        "d5_mean": d5.mean(axis=1), "d5_current": d5[:, -1],
    }


def spectral_features(prices: np.ndarray) -> Features:
    """``fft_*`` and ``spectral_*`` of the centred closes (windows of 16 prices or more)."""
    n = prices.shape[1]
    power = np.abs(np.fft.fft(prices - prices.mean(axis=1, keepdims=True), axis=1)) ** 2
    freqs = np.fft.fftfreq(n)[1:n // 2]
    power = power[:, 1:n // 2]
    total = power.sum(axis=1)
    keep = total != 0
    out: Features = {}
    top = np.argsort(power, axis=1)[:, ::-1][:, :5]
    rows = np.arange(len(power))
    for i in range(min(5, power.shape[1])):
        out[f"fft_freq_{i + 1}"] = freqs[top[:, i]]
        out[f"fft_power_{i + 1}"] = power[rows, top[:, i]]
    band = power.shape[1] // 4
    with np.errstate(invalid="ignore", divide="ignore"):
        if band > 0:
            for i in range(4):
                end = (i + 1) * band if i < 3 else power.shape[1]
                out[f"fft_band_{i + 1}_ratio"] = power[:, i * band:end].sum(axis=1) / total
        centroid = (freqs * power).sum(axis=1) / total
        out["spectral_centroid"] = centroid
        out["spectral_spread"] = np.sqrt((((freqs - centroid[:, None]) ** 2) * power).sum(axis=1) / total)
        out["spectral_flatness"] = np.exp(np.mean(np.log(power + 1e-10), axis=1)) / (power.mean(axis=1) + 1e-10)
        norm = power / (total + 1e-10)[:, None]
        out["spectral_entropy"] = -(norm * np.log2(norm + 1e-10)).sum(axis=1)
        rolloff = (np.cumsum(power, axis=1) < (0.85 * total)[:, None]).sum(axis=1)
    out["spectral_rolloff"] = np.where(rolloff < len(freqs), freqs[np.minimum(rolloff, len(freqs) - 1)], np.nan)
    return {name: np.where(keep, values, np.nan) for name, values in out.items()}


def lyapunov_exponent(prices: np.ndarray) -> np.ndarray:
    """Mean log divergence over lags 3, 5, 10, 15, 20 (windows of 30 prices or more; else 0)."""
    windows, n = prices.shape
    if n < 30:
        return np.zeros(windows)
    total, count = np.zeros(windows), np.zeros(windows)
    for i in range(n - 20):
        d0 = np.abs(prices[:, i] - prices[:, i + 1])
        for lag in (3, 5, 10, 15, 20):
            if i + lag + 1 < n:
                dt = np.abs(prices[:, i + lag] - prices[:, i + lag + 1])
                use = (d0 > 1e-10) & (dt > 1e-10)
                with np.errstate(invalid="ignore", divide="ignore"):
                    total += np.where(use, np.log(dt / d0) / lag, 0.0)
                count += use
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / count, 0.0)


def hurst_exponent(prices: np.ndarray) -> np.ndarray:
    """Slope of log std of lagged differences against log lag (windows of 20 prices or more; else 0.5)."""
    windows, n = prices.shape
    lags = np.arange(2, min(25, n // 2))
    if n < 20 or len(lags) < 2:
        return np.full(windows, 0.5)
    tau = np.stack([np.std(prices[:, lag:] - prices[:, :-lag], axis=1) for lag in lags], axis=1)
    tau = np.where(tau > 0, tau, 1e-10)
    return polyfit_slope(np.log(lags), np.log(tau))


def chaos_features(prices: np.ndarray) -> Features:
    """``lyapunov``, ``dfa_alpha`` (0.5 below 64 prices), ``hurst``, ``fractal_dim`` (1.0 below 40), regimes."""
    windows = len(prices)
    dfa = np.full(windows, 0.5)
    hurst = hurst_exponent(prices)
    return {
        "lyapunov": lyapunov_exponent(prices), "dfa_alpha": dfa, "hurst": hurst, "fractal_dim": np.ones(windows),
        "regime_dfa": np.select([dfa > 0.6, dfa < 0.4], [1.0, -1.0], 0.0),
        "regime_hurst": np.select([hurst > 0.55, hurst < 0.45], [1.0, -1.0], 0.0),
    }


def extract_core_features(prices: np.ndarray) -> Features:
    """Every core feature of windows of 10 prices or more (none below)."""
    n = prices.shape[1]
    if n < 10:
        return {}
    out = {**statistical_features(prices), **calculate_derivatives(prices)}
    if n >= 16:
        out.update(spectral_features(prices))
    out.update(chaos_features(prices))
    return out
