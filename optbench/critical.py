"""The critical batch size four ways: Hessian B_noise from the probes, B_noise fitted to lr*(B), the steps knee, B_simple.

McCandlish et al. 2018 define the noise scale B_noise = tr(HΣ)/(GᵀHG) and its Hessian-free stand-in
B_simple = tr(Σ)/GᵀG, and predict SGD's best step ε_opt(B) = ε_max/(1 + B_noise/B); Li et al. 2024
give Adam's ε_opt(B) = ε_max/(½(√(B_noise/B) + √(B/B_noise))), whose B_noise is the batch size of the
peak of a sign-gradient model — another quantity, labelled apart. Here each is estimated from the
tables of the probes and the runs; nothing here touches a model.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from optbench.config import RUN_KEYS
from optbench.seeds import draw_seed, run_entropy
from optbench.stats import geometric_ci, mean_ci

HESSIAN_STREAM = 10**6 + 1   # seed stream of the Hessian estimates' bootstrap (the draws use streams m ≥ 1)
FORMS = {"mccandlish": "ε_max/(1 + B_noise/B)", "surge": "ε_max/(½(√(B_noise/B) + √(B/B_noise)))"}
SEARCH = 1000.0              # B_noise is searched from B_min/SEARCH to B_max·SEARCH; at a bound it is censored


# ---------------------------------------------------------------------------------------------
# B_noise with the Hessian, from the probes' eᵀHe draws

def without_replacement_factor(n: int, m: int) -> float:
    """E[eᵀHe] = tr(HΣ)·(n−m)/(m(n−1)) for e = g_B − G over batches of m drawn without replacement
    (Cov(g_B) = Σ/m·(n−m)/(n−1)); this is that factor."""
    return (n - m) / (m * (n - 1))


def hessian_noise_scale(checkpoints: pd.DataFrame, draws: pd.DataFrame, confidence: float, resamples: int,
                        seed: int) -> pd.DataFrame:
    """noise_scale_hessian.csv: per probed checkpoint, tr(HΣ) = mean(eᵀHe)·m(n−1)/(n−m) with a BCa
    bootstrap CI over the draws, GᵀHG (exact: G and H are the full-batch ones), B_noise = tr(HΣ)/GᵀHG
    with the CI of tr(HΣ) carried through, and B_simple = tr(Σ)/GᵀG at the same checkpoint.

    The model is not convex: where GᵀHG ≤ 0 (curvature along G is not positive) or tr(HΣ) ≤ 0,
    B_noise is undefined — `curvature` says which — and the value is left empty rather than
    reported with a sign that has no meaning as a batch size.
    """
    columns = ["dataset", "model", *RUN_KEYS, "step", "epoch", "n", "m", "draws", "trace_h_sigma",
               "trace_h_sigma_low", "trace_h_sigma_high", "g_h_g", "b_noise", "b_noise_low", "b_noise_high",
               "b_simple", "curvature", "confidence"]
    rows = []
    by_checkpoint = {key: frame for key, frame in draws.groupby([*RUN_KEYS, "step"], sort=False)}
    for row in checkpoints.itertuples(index=False):
        key = tuple(getattr(row, k) for k in (*RUN_KEYS, "step"))
        values = by_checkpoint[key].sort_values("draw")["e_h_e"].to_numpy(float)
        scale = 1 / without_replacement_factor(int(row.n), int(row.m))
        trace = float(values.mean()) * scale
        low = high = math.nan
        if len(values) > 2 and values.max() > values.min():
            rng = np.random.default_rng(draw_seed([int(seed), run_entropy(row._asdict()), int(row.step)],
                                                  HESSIAN_STREAM))
            interval = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples,
                                       method="BCa", rng=rng).confidence_interval
            low, high = interval.low * scale, interval.high * scale
        curvature = "positive" if row.g_h_g > 0 and trace > 0 else (
            "nonpositive GᵀHG" if row.g_h_g <= 0 else "nonpositive tr(HΣ)")
        noise = [v / row.g_h_g if curvature == "positive" and np.isfinite(v) and v > 0 else math.nan
                 for v in (trace, low, high)]
        rows.append({"dataset": row.dataset, "model": row.model, **{k: getattr(row, k) for k in RUN_KEYS},
                     "step": row.step, "epoch": row.epoch, "n": row.n, "m": row.m, "draws": len(values),
                     "trace_h_sigma": trace, "trace_h_sigma_low": low, "trace_h_sigma_high": high,
                     "g_h_g": row.g_h_g, "b_noise": noise[0], "b_noise_low": noise[1], "b_noise_high": noise[2],
                     "b_simple": row.sigma2 / row.grad_norm2 if row.grad_norm2 > 0 else math.inf,
                     "curvature": curvature, "confidence": confidence})
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# B_noise fitted to the best learning rate against the batch size

def lr_form(form: str, batch_sizes, b_noise: float) -> np.ndarray:
    """The shape of ε_opt(B)/ε_max under `form` (mccandlish or surge) at `batch_sizes`."""
    b = np.asarray(batch_sizes, dtype=float)
    if form == "mccandlish":
        return 1 / (1 + b_noise / b)
    if form == "surge":
        return 1 / (0.5 * (np.sqrt(b_noise / b) + np.sqrt(b / b_noise)))
    raise ValueError(f"unknown lr*(B) form '{form}'; expected one of {sorted(FORMS)}")


def fit_lr_form(batch_sizes, lrs, form: str) -> tuple[float, float, bool]:
    """(B_noise, ε_max, censored) of ε_opt(B) = ε_max·shape(B; B_noise), least squares in log lr* (ε_max
    in closed form for each B_noise; B_noise by a log-grid search refined by a bounded minimiser).
    `censored`: the best B_noise is at a search bound, B_min/1000 or 1000·B_max — the grid does not show
    it (the value returned is that bound, so the fitted curve still predicts)."""
    b = np.asarray(batch_sizes, dtype=float)
    y = np.log(np.asarray(lrs, dtype=float))
    if len(b) < 2 or not np.isfinite(y).all():
        return math.nan, math.nan, True

    def sse(log_noise):
        residual = y - np.log(lr_form(form, b, math.exp(log_noise)))
        return float(((residual - residual.mean()) ** 2).sum())

    grid = np.linspace(math.log(b.min() / SEARCH), math.log(b.max() * SEARCH), 600)
    errors = np.array([sse(v) for v in grid])
    i = int(errors.argmin())
    censored = i in (0, len(grid) - 1)
    log_noise = grid[i] if censored else optimize.minimize_scalar(
        sse, bounds=(grid[i - 1], grid[i + 1]), method="bounded").x
    noise = math.exp(log_noise)
    return noise, float(math.exp((y - np.log(lr_form(form, b, noise))).mean())), censored


def predict_lr(form: str, b_noise: float, lr_max: float, batch_sizes) -> np.ndarray:
    return lr_max * lr_form(form, batch_sizes, b_noise)


def held_out_errors(batch_sizes, lrs, form: str) -> tuple[float, float]:
    """Leave-one-batch-size-out squared error in log lr* of `form` and of the single power law (mean over the
    held-out batch sizes, each predicted from the others): how the two laws, both with two parameters,
    are compared."""
    b, y = np.asarray(batch_sizes, dtype=float), np.log(np.asarray(lrs, dtype=float))
    if len(b) < 4:
        return math.nan, math.nan
    form_errors, power_errors = [], []
    for i in range(len(b)):
        keep = np.arange(len(b)) != i
        noise, top, _ = fit_lr_form(b[keep], np.exp(y[keep]), form)
        form_errors.append((y[i] - math.log(predict_lr(form, noise, top, b[i:i + 1])[0])) ** 2)
        coefficients = np.polyfit(np.log(b[keep]), y[keep], 1)
        power_errors.append((y[i] - float(np.polyval(coefficients, math.log(b[i])))) ** 2)
    return float(np.mean(form_errors)), float(np.mean(power_errors))


def lr_noise_scale(best: pd.DataFrame, forms: dict[str, str], confidence: float) -> pd.DataFrame:
    """lr_noise_scale.csv: per optimizer (its form by optimizer type: mccandlish for SGD, surge for Adam),
    B_noise and ε_max fitted per seed to the refined lr* on the training objective (best_lr.csv), their
    geometric mean and CI across seeds, how many seeds put B_noise beyond the grid (censored: 0 or inf),
    and the held-out comparison with the single power law (per seed; mean difference power − form with
    its t CI: > 0 means the form predicts held-out batch sizes better). Censored lr* are counted."""
    rows = []
    for optimizer, frame in best.groupby("optimizer", sort=False):
        form = forms.get(optimizer)
        if form is None:
            continue
        fits, cv = [], []
        for _, seed in frame.groupby("seed"):
            seed = seed[np.isfinite(seed["lr_star_train"])].sort_values("batch_size")
            if seed["batch_size"].nunique() < 3:
                continue
            noise, top, censored = fit_lr_form(seed["batch_size"], seed["lr_star_train"], form)
            fits.append((math.inf if censored and noise > seed["batch_size"].max() else
                         0.0 if censored else noise, top))
            form_error, power_error = held_out_errors(seed["batch_size"], seed["lr_star_train"], form)
            cv.append(power_error - form_error)
        noises = np.asarray([f[0] for f in fits], dtype=float)
        inside = noises[np.isfinite(noises) & (noises > 0)]
        noise = geometric_ci(inside, confidence)
        top = geometric_ci([f[1] for f in fits], confidence)
        gain = mean_ci(cv, confidence)
        sizes = sorted(frame["batch_size"].unique())
        rows.append({"optimizer": optimizer, "form": form, "confidence": confidence, "seeds": len(fits),
                     "batch_size_min": sizes[0], "batch_size_max": sizes[-1],
                     "b_noise": noise[0], "b_noise_low": noise[1], "b_noise_high": noise[2],
                     "b_noise_censored": int(len(noises) - len(inside)),
                     "b_noise_beyond": int((noises == math.inf).sum()), "lr_max": top[0],
                     "lr_censored": int(frame["censored_train"].astype(bool).sum()),
                     "cv_gain": gain[0], "cv_gain_low": gain[1], "cv_gain_high": gain[2]})
    return pd.DataFrame(rows, columns=["optimizer", "form", "confidence", "seeds", "batch_size_min", "batch_size_max",
                                       "b_noise", "b_noise_low", "b_noise_high", "b_noise_censored",
                                       "b_noise_beyond", "lr_max", "lr_censored", "cv_gain", "cv_gain_low",
                                       "cv_gain_high"])


def lr_form_curves(lr_fit: pd.DataFrame, points: int = 60) -> pd.DataFrame:
    """lr_form_curves.csv: the fitted laws of lr_noise_scale.csv evaluated on a log grid of batch sizes over
    the grid's range (×½ to ×2), for the figure to draw: each optimizer's form with its geometric-mean
    parameters."""
    rows = []
    for row in lr_fit.itertuples():
        if not (np.isfinite(row.b_noise) and np.isfinite(row.lr_max)):
            continue
        sizes = np.geomspace(row.batch_size_min / 2, row.batch_size_max * 2, points)
        rows += [{"optimizer": row.optimizer, "form": row.form, "batch_size": float(b), "lr": float(lr)}
                 for b, lr in zip(sizes, predict_lr(row.form, row.b_noise, row.lr_max, sizes))]
    return pd.DataFrame(rows, columns=["optimizer", "form", "batch_size", "lr"])


# ---------------------------------------------------------------------------------------------
# The four estimates side by side

def critical_batch_sizes(batch_scaling: pd.DataFrame, hessian: pd.DataFrame | None, lr_fit: pd.DataFrame,
                         runs: pd.DataFrame) -> pd.DataFrame:
    """critical_batch.csv: per optimizer, one row per estimate with its CI — B_simple and the Hessian B_noise
    at the probe checkpoint whose validation loss is nearest the target (the same rule for both), the
    lr*-fit B_noise (McCandlish's for SGD, Li et al.'s surge peak for Adam: `kind` names which) and the
    steps-to-target knee B_crit."""
    rows = []
    targets = batch_scaling.set_index("optimizer")["target_loss"].to_dict()
    for row in batch_scaling.itertuples():
        rows.append({"optimizer": row.optimizer, "estimate": "B_crit (steps knee)", "kind": "knee",
                     "value": row.knee, "low": row.knee_low, "high": row.knee_high, "note": ""})
        if row.b_simple_probes:
            rows.append({"optimizer": row.optimizer, "estimate": "B_simple = tr(Σ)/GᵀG", "kind": "simple",
                         "value": row.b_simple, "low": math.nan, "high": math.nan,
                         "note": f"epoch {row.b_simple_epoch:.3g}, exact at that checkpoint"})
    if hessian is not None and len(hessian):
        val = runs[runs["split"] == "val"][[*RUN_KEYS, "step", "loss"]]
        probes = hessian.merge(val, on=[*RUN_KEYS, "step"], how="left")
        for optimizer, frame in probes.groupby("optimizer", sort=False):
            target = targets.get(optimizer, math.nan)
            frame = frame[np.isfinite(frame["loss"])]
            if frame.empty or not np.isfinite(target):
                continue
            pick = frame.loc[(frame["loss"] - target).abs().idxmin()]
            note = f"epoch {pick['epoch']:.3g}" + ("" if pick["curvature"] == "positive" else
                                                   f"; undefined: {pick['curvature']}")
            rows.append({"optimizer": optimizer, "estimate": "B_noise = tr(HΣ)/GᵀHG (Hessian)", "kind": "hessian",
                         "value": pick["b_noise"], "low": pick["b_noise_low"], "high": pick["b_noise_high"],
                         "note": note})
    for row in lr_fit.itertuples():
        label = ("B_noise from lr* (McCandlish ε_max/(1 + B_noise/B))" if row.form == "mccandlish" else
                 "B_noise from lr* (Li et al. surge peak — a sign-gradient quantity)")
        note = (f"{row.b_noise_censored} of {row.seeds} seeds beyond the grid" if row.b_noise_censored else "")
        rows.append({"optimizer": row.optimizer, "estimate": label, "kind": f"lr_{row.form}", "value": row.b_noise,
                     "low": row.b_noise_low, "high": row.b_noise_high, "note": note})
    return pd.DataFrame(rows, columns=["optimizer", "estimate", "kind", "value", "low", "high", "note"])


# ---------------------------------------------------------------------------------------------
# Malladi et al. 2022: the full square-root rule against lr ×√k alone

def malladi_distances(runs: pd.DataFrame, variants: list[dict], points: int, confidence: float) -> pd.DataFrame:
    """malladi.csv: per scaled batch size (base ÷ k) and seed, the RMS distance (nats) of the training-loss
    curve against epochs from the base run (same seed): `full` for the run scaled by the full rule (lr ÷√k,
    1−β1 and 1−β2 ÷k, ε ×√k: the variant run), `lr_only` for lr ÷√k alone (the grid run), and per k the
    paired difference lr_only − full (> 0: the full rule stays closer) with its t CI across seeds, beside the
    noise floor — the mean distance between base runs of different seeds. `variants`: config.malladi_variants."""
    from optbench.analysis import curve_distance

    train = runs[runs["split"] == "train"].sort_values([*RUN_KEYS, "step"])
    curves = {key: frame for key, frame in train.groupby(RUN_KEYS, sort=False)}
    rows = []
    for variant in variants:
        base = {s: curves.get((variant["optimizer"], variant["base_batch_size"], variant["base_lr"], s))
                for s in sorted({k[3] for k in curves})}
        base = {s: c for s, c in base.items() if c is not None}
        seeds = sorted(base)
        floor = [curve_distance(base[a], base[b], points) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
        floor_ci = mean_ci(floor, confidence)
        paired = []
        for seed in seeds:
            full = curves.get((variant["name"], variant["batch_size"], variant["lr"], seed))
            alone = curves.get((variant["optimizer"], variant["batch_size"], variant["lr"], seed))
            if full is None or alone is None:
                continue
            d_full, d_lr = curve_distance(base[seed], full, points), curve_distance(base[seed], alone, points)
            paired.append(d_lr - d_full if np.isfinite(d_lr - d_full) else math.nan)
            rows.append({"k": variant["k"], "batch_size": variant["batch_size"], "lr": variant["lr"], "seed": seed,
                         "full": d_full, "lr_only": d_lr, "kind": "seed"})
        gain = mean_ci(paired, confidence)
        rows.append({"k": variant["k"], "batch_size": variant["batch_size"], "lr": variant["lr"], "seed": -1,
                     "full": math.nan, "lr_only": math.nan, "kind": "summary", "gain": gain[0], "gain_low": gain[1],
                     "gain_high": gain[2], "seeds": gain[3], "floor": floor_ci[0], "floor_low": floor_ci[1],
                     "floor_high": floor_ci[2], "floor_pairs": floor_ci[3], "confidence": confidence})
    columns = ["k", "batch_size", "lr", "seed", "kind", "full", "lr_only", "gain", "gain_low", "gain_high", "seeds",
               "floor", "floor_low", "floor_high", "floor_pairs", "confidence"]
    return pd.DataFrame(rows).reindex(columns=columns)
