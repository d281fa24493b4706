"""NECROZMA's advanced and candle window features, vectorised over windows.

Phase space, recurrence (RQA), direction patterns and crystals, photon and Z-crystal
features of upstream's ``features_advanced.py``, and the OHLC features of its
``analyzer.py``. Same conventions as ``features_core``: rows are windows, NaN is "absent".
``pips`` are the differences of the closes in pips.
"""

from __future__ import annotations

import numpy as np

from pipeline.analyses.features_core import Features, lerp_percentile, polyfit_slope, slope


def run_counts(flags: np.ndarray) -> np.ndarray:
    """Counts of runs of True of each length (column = length) per window, over the last axis of ``flags``.

    ``flags`` has shape (windows, ..., m); runs never continue from one row of the last axis to the next.
    """
    windows, m = flags.shape[0], flags.shape[-1]
    rows = flags.reshape(windows, -1, m)
    padded = np.zeros((windows, rows.shape[1], m + 2), dtype=np.int8)
    padded[:, :, 1:-1] = rows
    step = np.diff(padded, axis=2).ravel()
    start = np.flatnonzero(step == 1)
    length = np.flatnonzero(step == -1) - start
    window = start // (rows.shape[1] * (m + 1))
    return np.bincount(window * (m + 1) + length, minlength=windows * (m + 1)).reshape(windows, m + 1)


def _longest(counts: np.ndarray) -> np.ndarray:
    lengths = np.arange(counts.shape[1])
    return np.where(counts > 0, lengths, 0).max(axis=1).astype(np.float64)


def _mean_length(counts: np.ndarray) -> np.ndarray:
    lengths = np.arange(counts.shape[1])
    number = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(number > 0, (counts * lengths).sum(axis=1) / number, 0.0)


def _autocorrelation(pips: np.ndarray) -> np.ndarray:
    """``np.correlate(c, c, 'full')`` from lag 0 on, of the centred pips, per window."""
    centred = pips - pips.mean(axis=1, keepdims=True)
    k = pips.shape[1]
    return np.stack([(centred[:, :k - lag] * centred[:, lag:]).sum(axis=1) for lag in range(k)], axis=1)


def phase_space_reconstruction(prices: np.ndarray) -> Features:
    """Distances of the 3-D delay embedding, correlation dimension, attractor spread and trajectory.

    Point ``a`` of the embedding is ``prices[a:a + 3]``, so the squared distance of points ``a, b`` is the
    sum of the squared price differences ``(a + j, b + j)``, j = 0, 1, 2, taken from the transposed prices
    (one contiguous row per price). The distances stay pair-major, so that their per-window sums add the
    pairs one by one (numpy sums a contiguous row pairwise, which rounds otherwise). They are sorted once
    for their percentiles, median, minimum and maximum.
    """
    points = prices.shape[1] - 2
    first, second = np.triu_indices(points, 1)
    columns = np.ascontiguousarray(prices.T)
    gaps = [columns[first + j] - columns[second + j] for j in range(3)]
    distances = np.sqrt((gaps[0] * gaps[0] + gaps[1] * gaps[1]) + gaps[2] * gaps[2]).T
    ordered, counts = np.sort(distances, axis=1), (distances > 0).sum(axis=1)
    zeros = (distances == 0).sum(axis=1)
    radii = np.stack([lerp_percentile(ordered, counts, q, zeros) for q in (10, 25, 50, 75, 90)], axis=1)
    below = np.stack([(distances < radii[:, [i]]).mean(axis=1) for i in range(5)], axis=1)
    valid = (below > 0) & (below < 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dimension = slope(np.log(radii), np.log(below), valid)
    pairs, middle = len(first), len(first) // 2
    median = (ordered[:, middle - 1] + ordered[:, middle]) / 2 if pairs % 2 == 0 else ordered[:, middle]
    vectors = np.stack([prices[:, j:points + j] for j in range(3)], axis=2)
    centroid = vectors.mean(axis=1)
    from_centre = np.sqrt(((vectors - centroid[:, None]) ** 2).sum(axis=2))
    steps = np.sqrt((np.diff(vectors, axis=1) ** 2).sum(axis=2))
    return {
        "phase_dist_mean": distances.mean(axis=1), "phase_dist_std": distances.std(axis=1),
        "phase_dist_max": ordered[:, -1], "phase_dist_min": ordered[:, 0], "phase_dist_median": median,
        "correlation_dimension": np.where(valid.sum(axis=1) >= 2, dimension, np.nan),
        "attractor_centroid_norm": np.sqrt((centroid * centroid).sum(axis=1)),
        "attractor_spread": from_centre.mean(axis=1), "attractor_spread_std": from_centre.std(axis=1),
        "trajectory_length_mean": steps.mean(axis=1), "trajectory_length_total": steps.sum(axis=1),
    }


def _histogram_entropy(counts: np.ndarray) -> np.ndarray:
    """Entropy of ``np.histogram(lengths, bins=min(20, max))`` of the line lengths counted in ``counts``."""
    windows, top = counts.shape
    present = counts > 0
    lengths = np.arange(top, dtype=np.float64)
    low = np.where(present, lengths, top).min(axis=1)  # rows without lines get (top, 0): their result is unused
    high = np.maximum(np.where(present, lengths, 0).max(axis=1), 1)
    bins = np.minimum(20, high).astype(np.int64)
    first, last = np.where(low == high, low - 0.5, low), np.where(low == high, high + 0.5, high)
    edges = np.arange(21)[None, :] * ((last - first) / bins)[:, None] + first[:, None]
    edges[np.arange(windows), bins] = last
    hist = np.zeros((windows, 21))
    rows = np.arange(windows)
    for length in range(2, top):
        index = np.clip((((length - first) / (last - first)) * bins).astype(np.int64), 0, bins - 1)
        index[(length < edges[rows, index]) & (index > 0)] -= 1
        index[(length >= edges[rows, index + 1]) & (index != bins - 1)] += 1
        np.add.at(hist, (rows, index), counts[:, length])
    total = hist.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = hist / total
        return -np.where(hist > 0, probs * np.log2(np.where(hist > 0, probs, 1.0)), 0.0).sum(axis=1)


def recurrence_features(pips: np.ndarray) -> Features:
    """RQA of the pips' recurrence plot (threshold 0.1 std): rate, determinism, laminarity and lines.

    The plot is symmetric, so its vertical lines are those of its rows, and its diagonal lines off the
    main one are those of the upper diagonals, twice: diagonal ``k`` compares the pips ``k`` apart.
    """
    windows, n = pips.shape
    threshold = 0.1 * np.std(pips, axis=1)
    threshold = np.where(threshold == 0, 0.01, threshold)[:, None]
    plot = np.abs(pips[:, :, None] - pips[:, None, :]) <= threshold[:, :, None]
    total = plot.sum(axis=(1, 2)).astype(np.float64)
    diagonals = np.zeros((windows, n * (n - 1) // 2 + n - 1), dtype=bool)  # one False after each diagonal
    begin = 0
    for offset in range(1, n):
        diagonals[:, begin:begin + n - offset] = np.abs(pips[:, :-offset] - pips[:, offset:]) <= threshold
        begin += n - offset + 1
    diagonal = run_counts(diagonals)[:, :n + 1] * 2
    diagonal[:, :2] = 0
    vertical = run_counts(plot)
    vertical[:, :2] = 0
    lengths = np.arange(n + 1)
    has_diagonal, has_vertical = diagonal.sum(axis=1) > 0, vertical.sum(axis=1) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        det = np.minimum((diagonal * lengths).sum(axis=1) / (total - n + 1), 1.0)
        lam = np.minimum((vertical * lengths).sum(axis=1) / total, 1.0)
        ratio = det / (lam + 1e-10)
    out = {
        "recurrence_rate": total / (n * n),
        "determinism": det, "avg_diagonal_length": _mean_length(diagonal), "max_diagonal_length": _longest(diagonal),
        "entropy_diagonal": _histogram_entropy(diagonal) if has_diagonal.any() else np.full(windows, np.nan),
        "laminarity": lam, "trapping_time": _mean_length(vertical), "max_vertical_length": _longest(vertical),
        "det_lam_ratio": ratio,
    }
    absent = {"determinism": ~has_diagonal, "avg_diagonal_length": ~has_diagonal,
              "max_diagonal_length": ~has_diagonal, "entropy_diagonal": ~has_diagonal,
              "laminarity": ~has_vertical, "trapping_time": ~has_vertical, "max_vertical_length": ~has_vertical,
              "det_lam_ratio": ~(has_diagonal & has_vertical)}
    return {name: np.where(absent.get(name, False), np.nan, values) for name, values in out.items()}


def detect_patterns(pips: np.ndarray) -> Features:
    """Direction streaks, crystal counts (symmetry, staircase, reversal, acceleration) and volatility runs."""
    sign = np.sign(pips)
    size = np.abs(pips)
    up, down = run_counts(sign > 0), run_counts(sign < 0)
    ups, downs = (sign > 0).sum(axis=1), (sign < 0).sum(axis=1)
    a, b, c = pips[:, :-2], pips[:, 1:-1], pips[:, 2:]
    sa, sb, sc = sign[:, :-2], sign[:, 1:-1], sign[:, 2:]
    neighbours = np.abs(a) + np.abs(c)
    symmetry = ((neighbours > 0) & (np.abs(a + c) < 0.5 * neighbours)).sum(axis=1)
    staircase = ((sc == sb) & (sb == sa) & (np.abs(c) > 0) & (np.abs(c - b) < 0.3 * np.abs(c))).sum(axis=1)
    reversal = ((sign[:, 1:] != sign[:, :-1]) & (size[:, :-1] > 0) & (size[:, 1:] > 1.5 * size[:, :-1])).sum(axis=1)
    same = sc == sb
    acceleration = ((np.abs(c) > np.abs(b)) & (np.abs(b) > np.abs(a)) & same).sum(axis=1)
    deceleration = ((np.abs(c) < np.abs(b)) & (np.abs(b) < np.abs(a)) & same).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        up_ratio = np.where(ups + downs > 0, ups / (ups + downs), 0.5)
    out = {
        "pattern_max_up_streak": _longest(up), "pattern_max_down_streak": _longest(down),
        "pattern_avg_up_streak": _mean_length(up), "pattern_avg_down_streak": _mean_length(down),
        "pattern_up_ratio": up_ratio, "crystal_symmetry": symmetry, "crystal_staircase": staircase,
        "crystal_reversal": reversal, "crystal_acceleration": acceleration, "crystal_deceleration": deceleration,
        "crystal_total": symmetry + staircase + reversal + acceleration + deceleration,
    }
    if pips.shape[1] > 4:
        high = size > np.percentile(size, 75, axis=1, keepdims=True)
        out["pattern_vol_clusters"] = (high[:, 1:] & high[:, :-1]).sum(axis=1)
        out["pattern_max_calm_period"] = _longest(run_counts(size < np.percentile(size, 25, axis=1, keepdims=True)))
    return {name: values.astype(np.float64) for name, values in out.items()}


def photon_features(prices: np.ndarray, pips: np.ndarray) -> Features:
    """Energy, efficiency, intensity, wave/particle split, coherence and dispersion of the pips."""
    k = pips.shape[1]
    size = np.abs(pips)
    energy = size.sum(axis=1)
    out = {
        "photon_energy_total": energy, "photon_energy_mean": size.mean(axis=1),
        "photon_energy_std": size.std(axis=1), "photon_energy_max": size.max(axis=1),
        "photon_efficiency": np.abs(pips.sum(axis=1)) / (energy + 1e-10), "light_intensity": pips.std(axis=1),
    }
    if k >= 10:
        first, second = pips[:, :k // 2].std(axis=1), pips[:, k // 2:].std(axis=1)
        out["light_intensity_trend"] = second - first
        out["light_intensity_ratio"] = second / (first + 1e-10)
    wave = np.abs(prices[:, -1] - prices[:, 0]) * 10000
    particle = energy - wave
    out["wave_component"] = wave
    out["particle_component"] = np.maximum(0, particle)
    out["wave_particle_ratio"] = wave / (wave + np.abs(particle) + 1e-10)
    if k > 5:
        auto = _autocorrelation(pips)
        coherent = auto[:, 0] != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = auto / auto[:, [0]]
        out["quantum_coherence_lag1"] = np.where(coherent, norm[:, 1], np.nan)
        out["quantum_coherence_lag2"] = np.where(coherent, norm[:, 2], np.nan)
        decay = np.full(len(pips), np.nan)
        decay[coherent] = polyfit_slope(np.arange(5.0), norm[coherent, :5])
        out["quantum_coherence_decay"] = decay
    out["photon_dispersion"] = size.std(axis=1)
    out["photon_dispersion_asymmetry"] = _masked_std(pips, pips > 0) - _masked_std(size, pips < 0)
    return out


def _masked_std(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``np.std`` of the values of ``mask`` per row (NaN when none)."""
    count = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(mask, values, 0.0).sum(axis=1) / count
        return np.sqrt(np.where(mask, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)


def z_crystal_features(pips: np.ndarray) -> Features:
    """Z-power, autocorrelation resonance, volatility charge, prism bands and burst compression."""
    windows, k = pips.shape
    size = np.abs(pips)
    cumulative = np.cumsum(size, axis=1)
    out = {"z_power_total": cumulative[:, -1],
           "z_power_acceleration": np.diff(np.diff(cumulative, axis=1), axis=1).mean(axis=1)}
    auto = _autocorrelation(pips)
    coherent = auto[:, 0] != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = auto / auto[:, [0]]
    middle = norm[:, 2:k - 1]
    peaks = (middle > norm[:, 1:k - 2]) & (middle > norm[:, 3:k]) & (middle > 0.1) & coherent[:, None]
    found = peaks.any(axis=1)
    strongest = np.argmax(np.where(peaks, middle, -np.inf), axis=1)
    out["z_crystal_resonance_period"] = np.where(found, strongest + 2.0, np.nan)
    out["z_crystal_resonance_strength"] = np.where(found, middle[np.arange(windows), strongest], np.nan)
    out["z_crystal_resonance_count"] = np.where(found, peaks.sum(axis=1), np.nan)
    if k >= 20:
        recent, history = pips[:, -5:].std(axis=1), pips[:, :-5].std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(history > 0, recent / history, np.nan)
        out["z_move_charge_ratio"] = ratio
        out["z_move_ready"] = np.where(history > 0, (ratio < 0.5).astype(np.float64), np.nan)
    p10, p25, p50, p75, p90 = np.percentile(size, [10, 25, 50, 75, 90], axis=1)[:, :, None]
    bands = [size <= p10, (size > p10) & (size <= p25), (size > p25) & (size <= p50),
             (size > p50) & (size <= p75), (size > p75) & (size <= p90), size > p90]
    names = ("infrared", "red", "yellow", "green", "blue", "ultraviolet")
    shares = np.stack([band.sum(axis=1) / k for band in bands], axis=1)
    out.update({f"prism_{name}": shares[:, i] for i, name in enumerate(names)})
    out["prism_entropy"] = -np.where(shares > 0, shares * np.log2(shares + 1e-10), 0.0).sum(axis=1)
    compression = _longest(run_counts(size < p25))
    out["ultra_burst_compression"] = np.where(compression > 0, compression, np.nan)
    out["ultra_burst_potential"] = np.where(compression > 0, compression * pips.std(axis=1), np.nan)
    return out


def extract_advanced_features(prices: np.ndarray, pips: np.ndarray) -> Features:
    """Every advanced feature of windows of 15 prices or more (none below)."""
    if prices.shape[1] < 15:
        return {}
    out = phase_space_reconstruction(prices)
    if pips.shape[1] >= 20:
        out.update(recurrence_features(pips))
    out.update(detect_patterns(pips))
    out.update(photon_features(prices, pips))
    out.update(z_crystal_features(pips))
    return out


def extract_ohlc_features(window: dict[str, np.ndarray], scale: float) -> Features:
    """``ohlc_*``: bodies, ranges, direction shares, wicks, trend efficiency, tick volume and spread."""
    body, ranges, close = window["body_pips"], window["range_pips"], window["close"]
    upper, lower = window["upper_wick"] * scale, window["lower_wick"] * scale
    volume, spread = window["ticks"].astype(np.float64), window["spread_avg"]
    n = body.shape[1]
    upper_mean, lower_mean = upper.mean(axis=1), lower.mean(axis=1)
    return {
        "ohlc_body_mean": body.mean(axis=1), "ohlc_body_std": body.std(axis=1), "ohlc_body_sum": body.sum(axis=1),
        "ohlc_range_mean": ranges.mean(axis=1), "ohlc_range_std": ranges.std(axis=1),
        "ohlc_range_max": ranges.max(axis=1),
        "ohlc_up_ratio": (body > 0).sum(axis=1) / n, "ohlc_down_ratio": (body < 0).sum(axis=1) / n,
        "ohlc_upper_wick_mean": upper_mean, "ohlc_lower_wick_mean": lower_mean,
        "ohlc_wick_ratio": upper_mean / (lower_mean + 1e-10),
        "ohlc_trend_efficiency": np.abs((close[:, -1] - close[:, 0]) * scale)
        / (np.abs(np.diff(close, axis=1)).sum(axis=1) * scale + 1e-10),
        "ohlc_volume_mean": volume.mean(axis=1),
        "ohlc_volume_trend": volume[:, -3:].mean(axis=1) / (volume[:, :-3].mean(axis=1) + 1e-10)
        if n > 3 else np.ones(len(body)),
        "ohlc_spread_mean": spread.mean(axis=1), "ohlc_spread_std": spread.std(axis=1),
    }
