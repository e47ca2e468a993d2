"""Every results table's columns and dtypes, declared once, and the one reader and writer of their CSV files."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optbench.io import CorruptFileError, atomic_write_csv

STR, INT, FLOAT, BOOL = "str", "int", "float", "bool"
BOOLEANS = {"True": True, "False": False, "true": True, "false": False}

RUN = {"optimizer": STR, "batch_size": INT, "lr": FLOAT, "seed": INT}
IDENTITY = {"dataset": STR, "model": STR, **RUN}
CELL = {"optimizer": STR, "batch_size": INT}


@dataclass(frozen=True)
class TableSpec:
    """A table's file name stem, its columns in order with their dtypes, and the rule that writes it."""

    name: str
    columns: dict[str, str]
    producer: str
    order: tuple[str, ...] = ()   # sort key of combine(); rows keep their order within it (stable)


def _spec(name: str, producer: str, *parts: dict, order: tuple[str, ...] = ()) -> TableSpec:
    columns: dict[str, str] = {}
    for part in parts:
        columns.update(part)
    return TableSpec(name, columns, producer, order)


def _floats(*names: str) -> dict[str, str]:
    return {name: FLOAT for name in names}


def _ints(*names: str) -> dict[str, str]:
    return {name: INT for name in names}


def _ci(*names: str) -> dict[str, str]:
    """name, name_low, name_high: an estimate with its interval."""
    return {f"{name}{suffix}": FLOAT for name in names for suffix in ("", "_low", "_high")}


_CELL_LR_STARS = {f"{column}{suffix}": dtype for suffix in ("", "_train") for column, dtype in
                  (("lr_star_gmean", FLOAT), ("lr_star_low", FLOAT), ("lr_star_high", FLOAT),
                   ("lr_star_seeds", INT), ("n_censored", INT), ("censored_sides", STR))}
_BEST = {f"{column}{suffix}": dtype for suffix in ("", "_train") for column, dtype in
         (("grid_lr", FLOAT), ("score", FLOAT), ("lr_star", FLOAT), ("censored", BOOL), ("censor_side", STR),
          ("censor_note", STR))}
_MOMENTS = {**_ints("n", "m", "K"), **_floats("sigma2", "grad_norm2", "empirical_mean", "empirical_se", "ci_low",
                                               "ci_high", "pred_iid", "pred_fpc", "b_simple", "ratio_iid",
                                               "ratio_iid_low", "ratio_iid_high", "ratio_fpc"),
            "iid_in_ci": BOOL, "fpc_in_ci": BOOL, **_floats("ci_low_fw", "ci_high_fw"), "iid_in_ci_fw": BOOL,
            "fpc_in_ci_fw": BOOL, **_floats("confidence", "confidence_fw", "z", "z_dof", "z_low", "z_high",
                                            "z_low_fw", "z_high_fw", "train_loss")}
_SLOPES = {"n": INT, "m_max_fit": FLOAT, "fit_points": INT,
           **_floats("slope", "slope_low", "slope_high", "slope_pred_iid", "slope_pred_fpc", "confidence",
                     "train_loss", "sigma2", "grad_norm2", "b_simple", "z_mean"),
           **_ints("iid_passes", "fpc_passes", "m_count")}
_CHECKPOINT = {**IDENTITY, "step": INT, "epoch": FLOAT}

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in [
    # per-run files (results/runs/...)
    # tutorial_avg_loss: the tutorial's test_loop "Avg loss" (mean of batch-of-64 mean losses; optbench.evaluate)
    _spec("eval", "evaluate", {"step": INT, "epoch": FLOAT, "split": STR, "loss": FLOAT, "accuracy": FLOAT,
                               "has_weights": BOOL, "tutorial_avg_loss": FLOAT}),
    _spec("log", "train", {"step": INT, "epoch": FLOAT, "loss": FLOAT}),
    # aggregate
    _spec("runs", "aggregate", IDENTITY, {"step": INT, "epoch": FLOAT, "split": STR, "loss": FLOAT,
                                          "accuracy": FLOAT, "status": STR, "has_weights": BOOL,
                                          "tutorial_avg_loss": FLOAT}),
    _spec("run_status", "aggregate", IDENTITY, {"status": STR, "reason": STR, "diverged_step": FLOAT},
          _ints("steps_per_epoch", "total_steps", "steps_done"), {"train_seconds": FLOAT, "device": STR,
                                                                  "threads": INT, "n_train": INT, "bundle": STR}),
    _spec("minibatch", "aggregate", IDENTITY, {"step": INT, "epoch": FLOAT, "loss": FLOAT, "loss_max": FLOAT}),
    # each run's test split at its last checkpoint, as the tutorial's test_loop prints it after the last epoch
    _spec("test_loop", "aggregate", IDENTITY, {"step": INT, "epoch": FLOAT, "accuracy": FLOAT,
                                               "tutorial_avg_loss": FLOAT, "loss": FLOAT}),
    # gradient probes (grad_variance jobs, then aggregate_gradvar)
    _spec("probe_moments", "aggregate_gradvar", _CHECKPOINT, _ints("n", "m", "K"),
          _floats("sigma2", "grad_norm2", "train_loss", "mean_error_sq", "pair_sum"), {"pair_count": INT},
          order=(*RUN, "step", "m")),
    _spec("probe_draws", "aggregate_gradvar", RUN, {"step": INT, "m": INT, "draw": INT, "sq_error": FLOAT},
          order=(*RUN, "step", "m", "draw")),
    # layers keep their order within a checkpoint (input to output)
    _spec("gradvar_layers", "aggregate_gradvar", _CHECKPOINT, {"layer": STR, "kind": STR, "params": INT},
          _floats("sigma2", "grad_norm2", "sigma2_share", "b_simple"), order=(*RUN, "step")),
    # Hessian probes: per checkpoint GᵀHG beside σ² and ‖G‖², and eᵀHe of each draw e = g_B − G
    _spec("probe_hessian", "aggregate_gradvar", _CHECKPOINT, _ints("n", "m", "draws"),
          _floats("g_h_g", "sigma2", "grad_norm2"), order=(*RUN, "step")),
    _spec("probe_hessian_draws", "aggregate_gradvar", RUN, {"step": INT, "draw": INT, "e_h_e": FLOAT},
          order=(*RUN, "step", "draw")),
    # analysis
    _spec("noise_scale_hessian", "analyze_probes", _CHECKPOINT, _ints("n", "m", "draws"), _ci("trace_h_sigma"),
          {"g_h_g": FLOAT}, _ci("b_noise"), {"b_simple": FLOAT, "curvature": STR, "confidence": FLOAT}),
    _spec("lr_noise_scale", "analyze", {"optimizer": STR, "form": STR, "confidence": FLOAT, "seeds": INT},
          _ints("batch_size_min", "batch_size_max"), _ci("b_noise"), _ints("b_noise_censored", "b_noise_beyond"),
          {"lr_max": FLOAT, "lr_censored": INT}, _ci("cv_gain")),
    _spec("lr_form_curves", "analyze", {"optimizer": STR, "form": STR}, _floats("batch_size", "lr")),
    _spec("critical_batch", "analyze", {"optimizer": STR, "estimate": STR, "kind": STR},
          _floats("value", "low", "high"), {"note": STR}),
    _spec("malladi", "analyze", {"k": INT, "batch_size": INT, "lr": FLOAT, "seed": INT, "kind": STR},
          _floats("full", "lr_only"), _ci("gain"), {"seeds": FLOAT}, _ci("floor"), {"floor_pairs": FLOAT},
          {"confidence": FLOAT}),
    _spec("gradvar", "analyze_probes", _CHECKPOINT, _MOMENTS),
    _spec("gradvar_slopes", "analyze_probes", _CHECKPOINT, _SLOPES),
    _spec("noise_pooled", "analyze_probes", {"quantity": STR, "m": INT, "checkpoints": INT},
          _floats("mean", "ci_low", "ci_high", "confidence")),
    _spec("lr_scores", "analyze", RUN, {"status": STR},
          _floats("score", "chosen_step", "chosen_epoch", "test_loss", "test_accuracy", "val_min", "val_min_epoch",
                  "val_final", "initial_train", "train_mid", "train_objective", "train_rise", "final_epoch",
                  "steps_per_epoch", "val_gap"), {"oscillates": BOOL},
          _floats("train_drop", "train_late_drop"), {"near_best": BOOL},
          _floats("target_loss", "steps_to_target", "epochs_to_target")),
    _spec("best_lr", "analyze", CELL, {"seed": INT, "metric": STR}, _BEST),
    _spec("best_lr_cells", "analyze", CELL, {"confidence": FLOAT, "grid_lrs": INT, "grid_lr": FLOAT,
                                             "censored": BOOL, "censor_side": STR, "censor_note": STR},
          _ci("score", "test_accuracy"), {"n_seeds": INT, "stop_epoch": FLOAT}, _CELL_LR_STARS),
    _spec("training_drop", "analyze", CELL, {"confidence": FLOAT, "lr": FLOAT, "grid_seeds": INT},
          _ci("drop"), {"drop_seeds": INT}, _ci("late_drop"), {"late_drop_seeds": INT}),
    _spec("lr_summary", "analyze", CELL, {"lr": FLOAT}, _ints("seeds", "seeds_trained"),
          _floats("score_median", "val_min_epoch_median", "val_gap_median")),
    _spec("curve_bands", "analyze", CELL, {"lr": FLOAT, "split": STR, "step": INT},
          _floats("epoch", "median", "low", "high"), {"seeds": INT}),
    _spec("lr_widths", "analyze", CELL, {"seed": INT},
          _floats("best_lr", "threshold", "lr_low", "lr_high", "width_decades"),
          {"censored_low": BOOL, "censored_high": BOOL}),
    _spec("lr_width_contrasts", "analyze", {"first": STR, "second": STR, "batch_size": INT, "confidence": FLOAT},
          _ci("difference"), {"n_seeds": INT, "first_censored": BOOL, "second_censored": BOOL}),
    _spec("lr_sensitivity", "analyze", CELL, _floats("tolerance", "confidence"),
          _ints("n_seeds", "width_seeds", "n_lrs"), {"grid_decades": FLOAT}, _ci("width"),
          {"width_censored_low": BOOL, "width_censored_high": BOOL, "runs": INT, "diverged_runs": INT,
           "diverged_fraction": FLOAT, "oscillating_runs": INT, "best_lr": FLOAT, "nonfinite_runs": INT,
           "no_progress_runs": INT},
          _ints("below_lrs", "below_pairs", "below_slower", "above_lrs", "above_unstable", "above_diverged"),
          _floats("nonconverging_lr", "nonconverging_factor", "grid_factor_above", "too_large_lr"),
          {"too_large_unstable": BOOL}),
    _spec("lr_picks", "analyze", CELL, {"label": STR, "lr": FLOAT, "diverged": BOOL}),
    _spec("hyperparameter_importance", "analyze", {"scope": STR, "factor": STR, "share": FLOAT, "runs": INT,
                                                   "diverged_runs": INT}),
    _spec("scaling", "analyze", {"optimizer": STR, "objective": STR, "kind": STR},
          _ints("m_low", "m_high", "n_batch_sizes", "n_seeds", "grid_seeds"), {"confidence": FLOAT},
          _ci("alpha"), {"intercept": FLOAT, "censored": INT, "censored_m": STR, "censored_sides": STR,
                         "contains_linear": BOOL, "contains_sqrt": BOOL}),
    _spec("trajectories", "analyze", RUN, {"k": INT, "rule": STR, "scaled_batch_size": INT, "scaled_lr": FLOAT,
                                           "on_grid": BOOL, "base_is_best": BOOL, "scaled_status": STR,
                                           "distance": FLOAT}),
    _spec("trajectory_summary", "analyze", {"optimizer": STR},
          _ints("k", "base_runs", "pairs", "linear_closer", "sqrt_closer", "ties"),
          _floats("median_linear", "median_sqrt", "min_linear", "max_linear", "min_sqrt", "max_sqrt",
                  "median_difference"), {"closer": STR}),
    _spec("steps_per_seed", "analyze", CELL, {"seed": INT}, _floats("lr", "steps", "epochs")),
    _spec("steps_to_target", "analyze", CELL, {"target_loss": FLOAT, "lr": FLOAT, "reached": BOOL, "n_seeds": INT,
                                               "confidence": FLOAT}, _ci("steps", "epochs"),
          _floats("perfect_scaling_steps", "efficiency")),
    # per optimizer at its own target, and at one target common to all (what compares them)
    *[_spec(name, "analyze", {"optimizer": STR}, _floats("target_loss", "confidence"),
            _ints("batch_sizes", "batch_sizes_reached", "n_seeds"), _ci("knee"),
            _ints("knee_seeds", "knee_infinite"), _floats("efficiency_first", "efficiency_last"),
            _ci("efficiency_gap"), {"efficiency_seeds": INT, "b_simple": FLOAT, "b_simple_probes": INT,
                                    "b_simple_epoch": FLOAT}) for name in ("batch_scaling", "batch_scaling_common")],
    _spec("early_stopping", "analyze", RUN, {"status": STR, "at_best_lr": BOOL, "stop_step": INT},
          _floats("stop_epoch", "final_epoch", "val_stop", "val_final", "train_stop", "train_final", "test_stop",
                  "test_final", "test_gain"), {"overfits": BOOL}),
    _spec("stopping_cells", "analyze", CELL, {"confidence": FLOAT, "runs": INT},
          _floats("stop_epoch", "final_epoch", "val_stop", "val_final"), _ci("test_gain"), {"overfit_runs": INT}),
    _spec("stopping_overall", "analyze", {"confidence": FLOAT, "runs": INT}, _floats("stop_epoch", "final_epoch"),
          _ci("test_gain"), {"overfit_runs": INT}),
    _spec("cost", "analyze", {"rule": STR, "jobs": INT},
          _floats("total_s", "median_s", "max_s", "cpu_s", "peak_rss_mb", "loop_s")),
    _spec("cost_cells", "analyze", CELL, {"runs": INT},
          _floats("loop_seconds", "run_seconds_median", "ms_per_step_median")),
    _spec("claims", "analyze", {name: STR for name in ("claim_id", "claim_text", "verdict", "domain", "headline",
                                                       "finding", "reason", "evidence", "rule", "anchor")}),
]}


# the grad_variance job's outputs (per probe run) → the tables aggregate_gradvar combines them into
PROBE_TABLES = {"moments": "probe_moments", "draws": "probe_draws", "layers": "gradvar_layers",
                "hessian": "probe_hessian", "hessian_draws": "probe_hessian_draws"}


def _problem(path: Path, spec: TableSpec, what: str) -> CorruptFileError:
    return CorruptFileError(f"table '{path}' ({spec.name}, written by rule {spec.producer}) {what}. "
                            "Delete it and rerun snakemake to recompute it.", path=path)


def _convert(values: pd.Series, dtype: str) -> pd.Series:
    """One column as its declared dtype; ValueError names what does not fit."""
    if dtype == STR:
        return values.fillna("").astype(str)
    if dtype == BOOL:
        mapped = values.astype(str).map(BOOLEANS)
        if mapped.isna().any():
            raise ValueError(f"non-boolean values {sorted(set(values[mapped.isna()].astype(str)))[:3]}")
        return mapped.astype(bool)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise ValueError(f"non-numeric values {sorted(set(values[bad].astype(str)))[:3]}")
    if dtype == INT:
        if numbers.isna().any() or not (numbers == numbers.round()).all():
            raise ValueError("missing or fractional values where integers are expected")
        return numbers.astype("int64")
    return numbers.astype(float)


# read_table: the dtypes pandas parses itself (the others are read as strings and converted), and the
# spellings of a missing value
NUMERIC_DTYPES = {INT: "int64", FLOAT: "float64"}
NA_VALUES = ["", "nan", "NaN"]


def read_table(path: str | Path, name: str) -> pd.DataFrame:
    """The table at `path` as declared in TABLES[name]: exactly its columns, each of its dtype
    (booleans parsed here, once; floats round-trip exactly). A damaged file raises CorruptFileError
    naming it, the rule that writes it and what to do.

    First parsed with the declared numeric dtypes (pandas' C parser: ~7× faster than strings then
    to_numeric over the 366 log.csv files aggregate reads, the serial tail of every run); any file
    that parse refuses, or whose columns differ, is read again value by value, which names the bad
    column. Where the typed parse succeeds it gives what the checked one would (tested).
    """
    path, spec = Path(path), TABLES[name]
    if not path.exists():
        raise FileNotFoundError(f"table '{path}' ({name}) does not exist; rerun snakemake to produce it")
    frame = _parse_typed(path, spec)
    return frame if frame is not None else _read_checked(path, spec)


def read_tables(paths: list, name: str) -> list[pd.DataFrame]:
    """read_table of each path, the same frames and the same errors, from one parse of all their rows.

    pandas pays ~2–3 ms a call whatever the size: aggregate's reads of the default grid's 366 eval.csv and
    366 log.csv took 1.6 s file by file, 0.5 s as two parses (issue 14). The rows are parsed together only
    where that cannot change a value: every file has the first file's header, which names the declared
    columns, and plain rows (one per line: no quote, carriage return or blank line, the last line
    ended); the typed parse reads each row by itself (declared dtypes, no inference). Anything else, or a
    parse or conversion that fails, goes to read_table file by file, which names the file and what is wrong.
    """
    paths, spec = [Path(p) for p in paths], TABLES[name]
    if not paths or not all(path.exists() for path in paths):
        return [read_table(path, name) for path in paths]
    blobs = [path.read_bytes() for path in paths]
    header = blobs[0].partition(b"\n")[0] + b"\n"
    bodies = [blob[len(header):] for blob in blobs]
    plain = sorted(header.decode("utf-8", "replace").rstrip("\n").split(",")) == sorted(spec.columns) and all(
        blob.startswith(header) and _plain_rows(body) for blob, body in zip(blobs, bodies))
    if plain:
        frame = _parse_typed(header + b"".join(bodies), spec)
        counts = [body.count(b"\n") for body in bodies]
        if frame is not None and len(frame) == sum(counts):
            ends = np.cumsum(counts)
            return [frame.iloc[end - count:end].reset_index(drop=True) for end, count in zip(ends, counts)]
    return [read_table(path, name) for path in paths]


def _plain_rows(body: bytes) -> bool:
    """Rows that a line count splits as the parser does: no quoting, no \\r, no blank line, the last one ended."""
    return (not body or body.endswith(b"\n")) and b'"' not in body and b"\r" not in body \
        and b"\n\n" not in body and not body.startswith(b"\n")


def _parse_typed(source: Path | bytes, spec: TableSpec) -> pd.DataFrame | None:
    """The typed parse of a CSV file or its bytes, the columns converted; None where either fails (or
    the columns are not the declared ones), for _read_checked to say what."""
    typed = {column: NUMERIC_DTYPES.get(dtype, str) for column, dtype in spec.columns.items()}
    try:  # pandas' ParserError and EmptyDataError are ValueErrors
        frame = pd.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source, dtype=typed,
                            keep_default_na=False, na_values=NA_VALUES)
        if sorted(frame.columns) != sorted(spec.columns):
            return None
        return pd.DataFrame({column: frame[column] if dtype in NUMERIC_DTYPES else _convert(frame[column], dtype)
                             for column, dtype in spec.columns.items()}, columns=list(spec.columns))
    except (ValueError, TypeError, OverflowError):
        return None


def _read_checked(path: Path, spec) -> pd.DataFrame:
    """read_table value by value: every column read as strings and converted, the first bad one named."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=NA_VALUES)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise _problem(path, spec, f"cannot be parsed ({type(error).__name__}: {error})") from None
    missing = [c for c in spec.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in spec.columns]
    if missing or extra:
        raise _problem(path, spec, f"has columns that do not match its declaration (missing {missing}, "
                                   f"unexpected {extra})")
    converted = {}
    for column, dtype in spec.columns.items():
        try:
            converted[column] = _convert(frame[column], dtype)
        except ValueError as error:
            raise _problem(path, spec, f"has a bad column '{column}' ({dtype}): {error}") from None
    return pd.DataFrame(converted, columns=list(spec.columns))


def conform(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` with exactly the declared columns, in order, each of its dtype; a missing or extra
    column is a programming error (ValueError naming it), not a damaged file."""
    spec = TABLES[name]
    missing = [c for c in spec.columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in spec.columns]
    if missing or extra:
        raise ValueError(f"table {name}: columns do not match its declaration (missing {missing}, "
                         f"unexpected {extra})")
    out = {}
    for column, dtype in spec.columns.items():
        values = frame[column]
        try:
            if dtype == BOOL:
                out[column] = values.astype(bool)
            elif dtype == INT:
                out[column] = pd.to_numeric(values).astype("int64")
            elif dtype == FLOAT:
                out[column] = pd.to_numeric(values).astype(float)
            else:
                out[column] = values.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                         else str(v))
        except (ValueError, TypeError) as error:
            raise ValueError(f"table {name}: column '{column}' is not {dtype}: {error}") from None
    return pd.DataFrame(out, columns=list(spec.columns), index=frame.index)


def combine(frames: list[pd.DataFrame], name: str) -> pd.DataFrame:
    """Concatenate parts of table `name` (conformed), sorted stably by its declared order."""
    spec = TABLES[name]
    parts = [conform(frame, name) for frame in frames if len(frame)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=_EMPTY[t]) for c, t in spec.columns.items()})
    return pd.concat(parts, ignore_index=True).sort_values(list(spec.order), kind="stable").reset_index(drop=True)


_EMPTY = {STR: object, INT: "int64", FLOAT: float, BOOL: bool}


def read_benchmarks(paths: dict[str, list[str]]) -> pd.DataFrame:
    """Snakemake's benchmark TSVs per rule (rule → files; a file that does not exist is skipped), one row
    per job: rule, job (the file's stem), s (wall seconds), cpu_time (s), max_rss (MB)."""
    frames = [pd.read_csv(path, sep="\t").assign(rule=rule, job=Path(path).stem)
              for rule, files in paths.items() for path in files if Path(path).exists()]
    if not frames:
        return pd.DataFrame(columns=["rule", "job", "s", "max_rss", "cpu_time"])
    frame = pd.concat(frames, ignore_index=True)
    for column in ("s", "max_rss", "cpu_time"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame[["rule", "job", "s", "max_rss", "cpu_time"]]


def write_table(frame: pd.DataFrame, path: str | Path, name: str) -> pd.DataFrame:
    """Write `frame` as TABLES[name] (conformed first), atomically; returns what was written."""
    table = conform(frame, name)
    atomic_write_csv(table, path)
    return table
