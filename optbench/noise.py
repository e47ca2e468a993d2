"""Statistics of the gradient probes' raw draws: E||e||² with bootstrap CIs against σ²/m, z, slopes, pooled means."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from optbench.config import RUN_KEYS
from optbench.seeds import draw_seed, run_entropy
from optbench.stats import family_level, mean_ci, t_ci_around

SLOPE_FRACTION = 20      # fit the log-log slope over m ≤ n/20 (DESIGN.md); the exact curve bends above
BOOTSTRAP_BATCH = 500    # resamples scipy holds in memory at once (bounds the job's peak memory)
BOOTSTRAP_STREAM = 0     # seed stream of the bootstrap; the probe job's batch draws use stream m ≥ 1
CHECKPOINT_KEYS = [*RUN_KEYS, "step"]

# gradvar.csv: one row per probed checkpoint × m (after the identity, step and epoch columns)
MOMENT_COLUMNS = ["n", "m", "K", "sigma2", "grad_norm2", "empirical_mean", "empirical_se", "ci_low", "ci_high",
                  "pred_iid", "pred_fpc", "b_simple", "ratio_iid", "ratio_iid_low", "ratio_iid_high", "ratio_fpc",
                  "iid_in_ci", "fpc_in_ci", "ci_low_fw", "ci_high_fw", "iid_in_ci_fw", "fpc_in_ci_fw",
                  "confidence", "confidence_fw", "z", "z_dof", "z_low", "z_high", "z_low_fw", "z_high_fw",
                  "train_loss"]
# gradvar_slopes.csv: one row per probed checkpoint
SLOPE_COLUMNS = ["n", "m_max_fit", "fit_points", "slope", "slope_low", "slope_high", "slope_pred_iid",
                 "slope_pred_fpc", "confidence", "train_loss", "sigma2", "grad_norm2", "b_simple", "z_mean",
                 "iid_passes", "fpc_passes", "m_count"]


def predictions(sigma2: float, n: int, m: int) -> tuple[float, float]:
    """(σ²/m, σ²/m·(n−m)/(n−1)): the tutorial's prediction (with replacement) and the exact one."""
    iid = sigma2 / m
    return iid, iid * (n - m) / (n - 1) if n > 1 else 0.0


def z_dof(sigma2: float, pair_sum: float, pair_count: int) -> float:
    """ν = (tr Σ)²/tr(Σ²) with tr Σ = σ² and tr(Σ²) the mean of the pooled pair products; at least 1."""
    if pair_count <= 0 or not pair_sum > 0:
        return math.nan
    return max(1.0, sigma2**2 / (pair_sum / pair_count))


def unbiasedness(mean_error_sq: float, sq_errors: np.ndarray, n: int, m: int, sigma2: float, dof: float,
                 levels: tuple[float, ...]) -> dict:
    """z = ||ē||²·mK/(σ²·(n−m)/(n−1)), with E z = 1, and its sampling range at each confidence level.

    ē is the mean of the K draws whose ||e_k||² are `sq_errors`; `mean_error_sq` = ||ē||². Expanding
    ||ē||² over pairs of independent draws gives exactly
        Var z = Var||e||² / (K·E||e||²²) + 2(K−1)/(K·ν),   ν = (tr Σ)²/tr(Σ²) = `dof`,
    the first term carrying the heavy tails of small m, the second the Gaussian part (without
    replacement Σ_m = Σ·(n−m)/((n−1)m), so ν is the same at every m). The range is that of
    χ²_d/d with d = 2/Var z (moment-matched, Satterthwaite), reported as z_dof. z is NaN at m = n.
    """
    draws = len(sq_errors)
    _, pred_fpc = predictions(sigma2, n, m)
    row = {"z": math.nan, "z_dof": math.nan}
    if pred_fpc > 0 and draws > 1 and math.isfinite(dof):
        row["z"] = float(mean_error_sq) * draws / pred_fpc
        variance = np.var(sq_errors, ddof=1) / (draws * pred_fpc**2) + 2 * (draws - 1) / (draws * dof)
        row["z_dof"] = 2 / variance
    for suffix, level in zip(("", "_fw"), levels):
        low, high = (stats.chi2.ppf([(1 - level) / 2, (1 + level) / 2], row["z_dof"]) / row["z_dof"]
                     if math.isfinite(row["z_dof"]) else (math.nan, math.nan))
        row[f"z_low{suffix}"], row[f"z_high{suffix}"] = float(low), float(high)
    return row


def error_table(sq_errors: dict[int, np.ndarray], n: int, sigma2: float, confidence: float, resamples: int,
                rng: np.random.Generator) -> pd.DataFrame:
    """One row per m: mean ||e||², its SE, BCa bootstrap CIs (per m and family-wise over the m's),
    both predictions, their ratios and whether each lies in each CI.

    ||e||² is heavy-tailed at small m, hence the bootstrap rather than a normal interval. The
    family is the m values of this checkpoint (Bonferroni at confidence_fw).
    """
    ms = sorted(sq_errors)
    data = np.stack([sq_errors[m] for m in ms])
    level_fw = family_level(confidence, len(ms))
    low, high, low_fw, high_fw = (np.full(len(ms), np.nan) for _ in range(4))
    spread = data.max(1) > data.min(1)  # a batch of all n samples has no spread for BCa to use
    if spread.any():
        result = stats.bootstrap((data[spread],), np.mean, axis=-1, vectorized=True, confidence_level=confidence,
                                 n_resamples=resamples, batch=BOOTSTRAP_BATCH, method="BCa", rng=rng)
        family = stats.bootstrap((data[spread],), np.mean, axis=-1, vectorized=True, confidence_level=level_fw,
                                 n_resamples=0, batch=BOOTSTRAP_BATCH, bootstrap_result=result, method="BCa",
                                 rng=rng)
        low[spread], high[spread] = result.confidence_interval
        low_fw[spread], high_fw[spread] = family.confidence_interval
    table = pd.DataFrame({"n": n, "m": ms, "K": data.shape[1], "empirical_mean": data.mean(1),
                          "empirical_se": data.std(1, ddof=1) / math.sqrt(data.shape[1]),
                          "ci_low": low, "ci_high": high, "ci_low_fw": low_fw, "ci_high_fw": high_fw,
                          "confidence": confidence, "confidence_fw": level_fw})
    table["pred_iid"], table["pred_fpc"] = zip(*(predictions(sigma2, n, m) for m in ms))
    for name in ("iid", "fpc"):
        prediction = table[f"pred_{name}"]
        table[f"ratio_{name}"] = table["empirical_mean"] / prediction.where(prediction > 0)
        table[f"{name}_in_ci"] = (table["ci_low"] <= prediction) & (prediction <= table["ci_high"])
        table[f"{name}_in_ci_fw"] = (table["ci_low_fw"] <= prediction) & (prediction <= table["ci_high_fw"])
    # measured ÷ σ²/m with its (per-m) CI: the tutorial's "m = 2 halves it, m = 100 divides it by 100"
    iid = table["pred_iid"].where(table["pred_iid"] > 0)
    table["ratio_iid_low"], table["ratio_iid_high"] = table["ci_low"] / iid, table["ci_high"] / iid
    return table


def slope_fit(sq_errors: dict[int, np.ndarray], n: int, confidence: float, resamples: int,
              rng: np.random.Generator) -> dict:
    """Least-squares slope of log E||e||² on log m over m ≤ n/20, with a BCa bootstrap CI that
    resamples the draws of every m independently. The tutorial predicts −1; slope_pred_fpc is the
    same fit through the exact predictions (slightly steeper: the exact curve bends to
    −1 − m/(n−m))."""
    ms = [m for m in sorted(sq_errors) if m <= n / SLOPE_FRACTION]
    row: dict = {"m_max_fit": n / SLOPE_FRACTION, "fit_points": len(ms), "slope": math.nan, "slope_low": math.nan,
                 "slope_high": math.nan, "slope_pred_iid": -1.0, "slope_pred_fpc": math.nan, "confidence": confidence}
    if len(ms) >= 3:
        log_m = np.log(np.asarray(ms, dtype=float))
        centred = log_m - log_m.mean()

        def slope(*samples, axis=-1):
            log_means = np.log(np.stack([s.mean(axis=axis) for s in samples], axis=-1))
            return (log_means * centred).sum(-1) / (centred**2).sum()

        samples = [sq_errors[m] for m in ms]
        row["slope"] = float(slope(*samples))
        result = stats.bootstrap(samples, slope, vectorized=True, confidence_level=confidence,
                                 n_resamples=resamples, batch=BOOTSTRAP_BATCH, method="BCa", rng=rng)
        row["slope_low"], row["slope_high"] = map(float, result.confidence_interval)
        log_fpc = np.log([predictions(1.0, n, m)[1] for m in ms])
        row["slope_pred_fpc"] = float((log_fpc * centred).sum() / (centred**2).sum())
    return row


def checkpoint_statistics(moments: pd.DataFrame, sq_errors: dict[int, np.ndarray], confidence: float,
                          resamples: int, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """Every statistic of one probed checkpoint from its raw measurements.

    `moments`: the probe job's rows of this checkpoint (one per m: n, K, sigma2, grad_norm2,
    train_loss, mean_error_sq, pair_sum, pair_count); `sq_errors`: m → the K draws of ||g_B − ∇f||².
    Returns the per-m rows of gradvar.csv and the checkpoint's row of gradvar_slopes.csv. `rng` is
    used in a fixed order (per-m bootstrap, then the slope's), so the numbers are reproducible.
    """
    first = moments.iloc[0]
    n, sigma2, grad_norm2 = int(first["n"]), float(first["sigma2"]), float(first["grad_norm2"])
    dof = z_dof(sigma2, float(moments["pair_sum"].sum()), int(moments["pair_count"].sum()))
    levels = (confidence, family_level(confidence, len(sq_errors)))
    by_m = moments.set_index("m")
    z_rows = [unbiasedness(by_m.loc[m, "mean_error_sq"], sq_errors[m], n, m, sigma2, dof, levels)
              for m in sorted(sq_errors)]
    table = pd.concat([error_table(sq_errors, n, sigma2, confidence, resamples, rng), pd.DataFrame(z_rows)], axis=1)
    noise = {"train_loss": float(first["train_loss"]), "sigma2": sigma2, "grad_norm2": grad_norm2,
             "b_simple": sigma2 / grad_norm2 if grad_norm2 > 0 else math.inf}
    slope = {"n": n, **slope_fit(sq_errors, n, confidence, resamples, rng), **noise,
             "z_mean": float(table["z"].mean()), "iid_passes": int(table["iid_in_ci_fw"].sum()),
             "fpc_passes": int(table["fpc_in_ci_fw"].sum()), "m_count": len(table)}
    return table.assign(**noise), slope


def analyze_noise(moments: pd.DataFrame, draws: pd.DataFrame, confidence: float, resamples: int,
                  seed: int, workers: int = 1) -> dict[str, pd.DataFrame]:
    """gradvar.csv and gradvar_slopes.csv from the probe tables (probe_moments.csv, probe_draws.csv).

    The bootstrap of each checkpoint is seeded by (grad_variance.seed, run, step), a stream the
    probe job's mini-batch draws never use, so the checkpoints are independent: `workers` threads take
    them in parallel (numpy releases the GIL in the resampling) and the numbers do not depend on how many.
    """
    from concurrent.futures import ThreadPoolExecutor

    identity = [c for c in moments.columns if c in ("dataset", "model", *RUN_KEYS)]
    draws_by = {key: frame for key, frame in draws.groupby(CHECKPOINT_KEYS, sort=False)}
    groups = list(moments.sort_values([*CHECKPOINT_KEYS, "m"], kind="stable").groupby(CHECKPOINT_KEYS, sort=False))

    def one(item):
        key, rows = item
        sq_errors = {int(m): frame.sort_values("draw")["sq_error"].to_numpy(float)
                     for m, frame in draws_by[key].groupby("m", sort=True)}
        where = {name: rows[name].iloc[0] for name in (*identity, "step", "epoch")}
        entropy = [int(seed), run_entropy(dict(zip(RUN_KEYS, key))), int(key[-1])]
        rng = np.random.default_rng(draw_seed(entropy, BOOTSTRAP_STREAM))
        table, slope = checkpoint_statistics(rows, sq_errors, confidence, resamples, rng)
        return table.assign(**where), {**where, **slope}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, groups))
    head = [*identity, "step", "epoch"]
    if not results:
        return {"gradvar": pd.DataFrame(columns=[*head, *MOMENT_COLUMNS]),
                "gradvar_slopes": pd.DataFrame(columns=[*head, *SLOPE_COLUMNS])}
    return {"gradvar": pd.concat([r[0] for r in results], ignore_index=True)[[*head, *MOMENT_COLUMNS]],
            "gradvar_slopes": pd.DataFrame([r[1] for r in results])[[*head, *SLOPE_COLUMNS]]}


POOLED_COLUMNS = ["quantity", "m", "checkpoints", "mean", "ci_low", "ci_high", "confidence"]
# What noise_pooled.csv pools over checkpoints, per m: z (unbiasedness, C4), measured ÷ the exact
# prediction (C5, exact form) and measured ÷ σ²/m (C5, the tutorial's literal form).
POOLED = ("z", "ratio_fpc", "ratio_iid")


def pooled_means(gradvar: pd.DataFrame, column: str, confidence: float) -> pd.DataFrame:
    """Per m: the mean over probed checkpoints of `column`, with a t CI at the family-wise level
    1 − (1 − confidence)/M (Bonferroni over the M values of m); no interval when the values do not vary.

    Each checkpoint's value is an unbiased estimate of 1 under the claim, from draws independent of
    every other checkpoint's, so their mean is an average of independent replicates: its t interval
    holds by the CLT over checkpoints even where one checkpoint's ||e||² is too heavy-tailed for
    its own bootstrap CI to reach the nominal coverage (measured: 91 % for 95 % at K = 200).
    """
    rows = gradvar[["m", column]].dropna()
    level = family_level(confidence, rows["m"].nunique())
    table = []
    for m, values in rows.groupby("m")[column]:
        mean, low, high, count = t_ci_around(values, level)
        table.append({"quantity": column, "m": m, "checkpoints": count, "mean": mean, "ci_low": low,
                      "ci_high": high, "confidence": level})
    return pd.DataFrame(table, columns=POOLED_COLUMNS)


def halving_ratio(gradvar: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per probed checkpoint E||e||² at m = 2 over E||e||² at m = 1 (the tutorial's "batch size 2
    halves it"; exactly (n−2)/(2(n−1)) without replacement): its mean over checkpoints and t CI."""
    keys = [c for c in CHECKPOINT_KEYS if c in gradvar.columns]
    wide = gradvar[gradvar["m"].isin([1, 2])].pivot_table(index=keys, columns="m", values="empirical_mean")
    ratio = wide[2] / wide[1] if {1, 2} <= set(wide.columns) else pd.Series(dtype=float)
    mean, low, high, count = mean_ci(ratio, confidence)
    return pd.DataFrame([{"quantity": "halving", "m": 2, "checkpoints": count, "mean": mean, "ci_low": low,
                          "ci_high": high, "confidence": confidence}], columns=POOLED_COLUMNS)


def noise_pooled(gradvar: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """noise_pooled.csv: the pooled means of POOLED per m (family-wise CIs) and the halving ratio."""
    parts = [pooled_means(gradvar, column, confidence) for column in POOLED] + [halving_ratio(gradvar, confidence)]
    return pd.concat(parts, ignore_index=True)
