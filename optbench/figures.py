"""The report's matplotlib figures (Agg backend): one function per figure, each returning an SVG string."""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, NullLocator  # noqa: E402

from optbench.config import RUN_KEYS, optimizer_label  # noqa: E402
from optbench.report import seed_bands, thin  # noqa: E402

# Text stays text (svg.fonttype none: small files, the browser's font); no timestamp and a fixed
# hash salt make the bytes reproducible.
STYLE = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
}
MAX_POINTS = 60          # points per drawn curve: checkpoints are log-spaced already
# Figures are shown at their natural size (at most the page width): 10.5 in is about 1000 CSS pixels,
# so 9 pt text reads as 12 px whatever the number of panels.
FULL_WIDTH = 10.5        # inches
# Every figure make() draws, by the stage whose tables it needs.
FIGURE_NAMES = {"spine": ("curves", "lr_grid", "lr_sensitivity", "trajectories", "early_stopping", "cost"),
                "analysis": ("scaling", "steps_to_target"), "gradvar": ("gradvar", "noise_scale")}
LOSS_LABEL = "loss (cross-entropy, nats per sample)"


def short(value: float) -> str:
    """3 significant digits without exponents for ordinary sizes: 0.677, 12.5, 1024."""
    return f"{value:.0f}" if 100 <= abs(value) < 1e6 else f"{value:.3g}"


def batch_colors(batch_sizes) -> dict:
    """An ordered palette for an ordered variable: small batches dark, large ones light."""
    batch_sizes = sorted(batch_sizes)
    cmap = plt.get_cmap("viridis")
    return {b: cmap(x) for b, x in zip(batch_sizes, np.linspace(0.0, 0.85, max(len(batch_sizes), 1)))}


def to_svg(fig, name: str) -> str:
    """The figure as an SVG document whose element ids are prefixed by `name`.

    Matplotlib numbers its groups figure_1, axes_1, … in every file: prefixing keeps ids unique when
    several SVGs are inlined in one HTML page.
    """
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = re.sub(r'(\sid=")', rf"\1{name}-", svg)
    svg = re.sub(r'(href="#)', rf"\1{name}-", svg)
    return re.sub(r"(url\(#)", rf"\1{name}-", svg)


def empty_figure(name: str, message: str) -> str:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 1.0))
        ax.axis("off")
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        return to_svg(fig, name)


def panel_grid(rows: int, cols: int, height: float = 3.0, width: float = FULL_WIDTH, **kwargs):
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kwargs)
    return fig, axes


class PlainLogFormatter(LogFormatter):
    """Log-axis labels as 0.02, 0.5, 3 rather than 2×10⁻². Which ticks get a label is matplotlib's call,
    thinned to every k-th when a short axis would get more than five."""

    MAX_LABELS = 5

    def __init__(self):
        super().__init__(labelOnlyBase=False, minor_thresholds=(1.5, 0.4))
        self.shown: set | None = None

    def set_locs(self, locs=None):
        super().set_locs(locs)
        low, high = sorted(self.axis.get_view_interval())
        decide = super().__call__  # matplotlib's own choice of labelled ticks
        labelled = [loc for loc in (locs if locs is not None else []) if low <= loc <= high and decide(loc)]
        step = -(-len(labelled) // self.MAX_LABELS) if labelled else 1
        self.shown = set(labelled[::step]) if step > 1 else None

    def __call__(self, x, pos=None):
        if not super().__call__(x, pos) or (self.shown is not None and x not in self.shown):
            return ""
        return f"{x:g}"


def plain_log(ax, which: str = "y") -> None:
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter())


def log2_axis(ax) -> None:
    """Batch sizes are powers of two: a base-2 log x axis labelled with plain numbers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def batch_size_axis(ax) -> None:
    """log2 batch size across, log loss-like quantity up."""
    log2_axis(ax)
    plain_log(ax)
    ax.set_xlabel("batch size")


def ordered(values, order) -> list:
    """`values` in the config's order (`order`), unknown ones after, each once."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def curves(runs: pd.DataFrame, best: pd.DataFrame, order=()) -> str:
    """Train and validation loss vs epoch at each cell's best grid LR: median across seeds, min–max band."""
    name = "curves"
    cells = best.dropna(subset=["lr"])
    if cells.empty:
        return empty_figure(name, "no learning rate trained without diverging: nothing to draw")
    optimizers = ordered(cells["optimizer"], order)
    colors = batch_colors(cells["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), 2, height=3.0, sharey=True, sharex=True)
        for row, optimizer in enumerate(optimizers):
            mine = cells[cells["optimizer"] == optimizer]
            for col, split in enumerate(("train", "val")):
                ax = axes[row, col]
                bands = seed_bands(runs, split, mine)
                for batch_size, band in bands.groupby("batch_size"):
                    band = thin(band.sort_values("step"), MAX_POINTS)
                    ax.fill_between(band["epoch"], band["low"], band["high"], color=colors[batch_size], alpha=0.2,
                                    linewidth=0)
                    ax.plot(band["epoch"], band["median"], color=colors[batch_size],
                            label=f"B = {batch_size}, lr {band['lr'].iloc[0]:g}")
                plain_log(ax)
                ax.set_title(f"{optimizer_label(optimizer)}: {'training' if split == 'train' else 'validation'} loss")
                if row == len(optimizers) - 1:
                    ax.set_xlabel("epoch")
                if col == 0:
                    ax.set_ylabel(LOSS_LABEL)
            axes[row, 1].legend(loc="upper right", title="batch size, best lr")
        return to_svg(fig, name)


def lr_grid(runs: pd.DataFrame, split: str = "val", order=()) -> str:
    """Small multiples: validation loss vs epoch for every learning rate (colour), one panel per cell."""
    name = "lr_grid"
    optimizers = ordered(runs["optimizer"], order)
    batch_sizes = sorted(runs["batch_size"].unique())
    bands = seed_bands(runs, split)
    initial = bands[bands["step"] == 0]["median"].median()
    finite = bands["median"].dropna()
    low = finite.min() * 0.9 if len(finite) else 0.1
    high = initial * 1.5 if np.isfinite(initial) else None
    cmap = plt.get_cmap("plasma")
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), len(batch_sizes), height=2.3, sharey=True, sharex=True,
                               width=min(2.0 * len(batch_sizes) + 1.2, FULL_WIDTH + 0.5))
        for row, optimizer in enumerate(optimizers):
            lrs = sorted(runs.loc[runs["optimizer"] == optimizer, "lr"].unique())
            norm = LogNorm(min(lrs), max(lrs)) if len(lrs) > 1 else LogNorm(lrs[0] / 2, lrs[0] * 2)
            for col, batch_size in enumerate(batch_sizes):
                ax = axes[row, col]
                cell = bands[(bands["optimizer"] == optimizer) & (bands["batch_size"] == batch_size)]
                for lr, band in cell.groupby("lr"):
                    band = thin(band.sort_values("step"), MAX_POINTS)
                    color = cmap(0.9 * norm(lr))
                    ax.plot(band["epoch"], band["median"], color=color, linewidth=1.0)
                    if band["median"].isna().any() and band["median"].notna().any():
                        last = band[band["median"].notna()].iloc[-1]
                        ax.plot([last["epoch"]], [min(last["median"], high or np.inf)], "x", color=color,
                                markersize=6, mew=1.5, clip_on=False)
                plain_log(ax)
                ax.set_ylim(low, high)
                ax.set_title(f"{optimizer_label(optimizer)}, B = {batch_size}", fontsize=9)
                if row == len(optimizers) - 1:
                    ax.set_xlabel("epoch")
                if col == 0:
                    ax.set_ylabel(f"{'validation' if split == 'val' else 'training'} loss (nats)")
            bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[row]), pad=0.01,
                               fraction=0.04, aspect=15)
            bar.set_label(f"{optimizer_label(optimizer)} learning rate")
            bar.ax.yaxis.set_major_formatter(PlainLogFormatter())
            bar.ax.yaxis.set_minor_formatter(PlainLogFormatter())
        return to_svg(fig, name)


def lr_sensitivity(scores: pd.DataFrame, metric: str, best: pd.DataFrame | None = None,
                   refined: pd.DataFrame | None = None, order=()) -> str:
    """The selection metric vs learning rate: each seed a point, the seed median a line, one colour
    per batch size; diverged runs drawn as × on the panel's top edge; ★ marks the best grid lr;
    `refined` (optimizer, batch_size, lr rows) adds a tick per seed's refined lr* on the bottom edge."""
    name = "lr_sensitivity"
    optimizers = ordered(scores["optimizer"], order)
    batch_sizes = sorted(scores["batch_size"].unique())
    colors = batch_colors(batch_sizes)
    usable = (scores["status"] == "ok") & np.isfinite(scores["score"])
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.6, sharey=True)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            lrs = sorted(scores.loc[scores["optimizer"] == optimizer, "lr"].unique())
            # a small horizontal dodge per batch size keeps the seed points of one lr apart
            spacing = np.exp(np.median(np.diff(np.log(lrs)))) if len(lrs) > 1 else 2.0
            dodge = {b: spacing ** (0.3 * (i - (len(batch_sizes) - 1) / 2) / max(len(batch_sizes), 1))
                     for i, b in enumerate(batch_sizes)}
            for batch_size in batch_sizes:
                color = colors[batch_size]
                cell = scores[(scores["optimizer"] == optimizer) & (scores["batch_size"] == batch_size)]
                ok = cell[usable.loc[cell.index]]
                gone = cell[~usable.loc[cell.index]]
                median = ok.groupby("lr")["score"].median()
                ax.plot(median.index * dodge[batch_size], median.values, color=color, label=f"B = {batch_size}")
                ax.plot(ok["lr"] * dodge[batch_size], ok["score"], "o", color=color, markersize=3, alpha=0.8)
                if len(gone):
                    ax.plot(gone["lr"] * dodge[batch_size], np.full(len(gone), 0.97), "x", color=color,
                            markersize=6, mew=1.5, transform=ax.get_xaxis_transform(), clip_on=False)
                pick = best[(best["optimizer"] == optimizer) & (best["batch_size"] == batch_size)].dropna(
                    subset=["lr"]) if best is not None else []
                if len(pick):
                    lr = pick["lr"].iloc[0]
                    ax.plot([lr * dodge[batch_size]], [median.get(lr, np.nan)], "*", color=color, markersize=11,
                            markeredgecolor="black", markeredgewidth=0.6)
                if refined is not None and len(refined):
                    mark = refined[(refined["optimizer"] == optimizer) & (refined["batch_size"] == batch_size)]
                    ax.plot(mark["lr"], np.full(len(mark), 0.02), "|", color=color, markersize=9, mew=1.5,
                            transform=ax.get_xaxis_transform(), clip_on=False)
            plain_log(ax, "x")
            plain_log(ax)
            ax.set_xlabel("learning rate")
            ax.set_title(optimizer_label(optimizer))
            if col == 0:
                ax.set_ylabel(f"{metric.replace('_', ' ')} (nats)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        extra = [(plt.Line2D([], [], linestyle="none", marker="o", color="grey", markersize=3), "one seed"),
                 (plt.Line2D([], [], linestyle="none", marker="x", color="black", mew=1.5), "diverged (top edge)"),
                 (plt.Line2D([], [], linestyle="none", marker="*", color="grey", markeredgecolor="black",
                             markersize=10), "best grid lr")]
        if refined is not None and len(refined):
            extra.append((plt.Line2D([], [], linestyle="none", marker="|", color="black", markersize=9, mew=1.5),
                          "refined lr* per seed"))
        handles += [h for h, _ in extra]
        labels += [label for _, label in extra]
        fig.legend(handles, labels, loc="outside right upper")
        return to_svg(fig, name)


def cost(status: pd.DataFrame, order=()) -> str:
    """Training time per run and per step vs batch size, per optimizer (from run_status.csv)."""
    name = "cost"
    frame = status[status["steps_done"] > 0].assign(
        ms_per_step=lambda f: 1000 * f["train_seconds"] / f["steps_done"])
    batch_sizes = sorted(frame["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, 2, height=3.0, width=FULL_WIDTH * 0.8)
        for optimizer in ordered(frame["optimizer"], order):
            mine = frame[frame["optimizer"] == optimizer]
            for ax, column in zip(axes[0], ("train_seconds", "ms_per_step")):
                median = mine.groupby("batch_size")[column].median()
                line, = ax.plot(median.index, median.values, "-", label=optimizer_label(optimizer))
                ax.plot(mine["batch_size"], mine[column], "o", color=line.get_color(), markersize=2.5, alpha=0.5)
        for ax, label in zip(axes[0], ("training time per run (s)", "training time per step (ms)")):
            ax.set_xscale("log")
            ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
            ax.xaxis.set_minor_locator(NullLocator())
            plain_log(ax)
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
        axes[0, 0].legend()
        return to_svg(fig, name)


def trajectory_picks(scores: pd.DataFrame, best: pd.DataFrame, optimizer: str, batch_size: int) -> dict:
    """The learning rates that show claim C9 in one cell: the smallest, the best, the largest whose
    seeds all finished, and the smallest that diverged (label → lr, in that order)."""
    cell = scores[(scores["optimizer"] == optimizer) & (scores["batch_size"] == batch_size)]
    ok = cell.groupby("lr")["status"].agg(lambda s: bool((s == "ok").all()))
    picks = {"smallest lr": ok.index.min()}
    chosen = best[(best["optimizer"] == optimizer) & (best["batch_size"] == batch_size)]["lr"].dropna()
    if len(chosen):
        picks["best lr"] = float(chosen.iloc[0])
    if ok.any():
        picks["largest lr that trained"] = ok[ok].index.max()
    if (~ok).any():
        picks["smallest lr that diverged"] = ok[~ok].index.min()
    unique: dict = {}
    for label, lr in picks.items():  # one line per lr, under its first label
        if lr not in unique.values():
            unique[label] = lr
    return unique


def trajectories(minibatch: pd.DataFrame, scores: pd.DataFrame, best: pd.DataFrame, order=()) -> str:
    """Mini-batch training loss (window means, first seed) at the smallest, best, largest trained and
    first diverged learning rate of each optimizer, at the middle batch size of the grid."""
    name = "trajectories"
    optimizers = ordered(scores["optimizer"], order)
    batch_sizes = sorted(scores["batch_size"].unique())
    batch_size = batch_sizes[len(batch_sizes) // 2]
    seed = min(scores["seed"])
    colors = {"smallest lr": "tab:blue", "best lr": "tab:green", "largest lr that trained": "tab:orange",
              "smallest lr that diverged": "tab:red"}
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.2, sharey=True)
        first_window = minibatch.loc[minibatch["step"] == minibatch.groupby(RUN_KEYS)["step"].transform("min"), "loss"]
        top = 3 * float(first_window[np.isfinite(first_window)].median())
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            for label, lr in trajectory_picks(scores, best, optimizer, batch_size).items():
                run = minibatch[(minibatch["optimizer"] == optimizer) & (minibatch["batch_size"] == batch_size)
                                & (minibatch["lr"] == lr) & (minibatch["seed"] == seed)].sort_values("step")
                run = thin(run, 200)
                finite = run[np.isfinite(run["loss"])]
                ax.plot(finite["epoch"], finite["loss"], color=colors[label], linewidth=0.9,
                        label=f"{label}: {lr:g}")
                status = scores[(scores["optimizer"] == optimizer) & (scores["batch_size"] == batch_size)
                                & (scores["lr"] == lr) & (scores["seed"] == seed)]["status"]
                if len(finite) and (status != "ok").any():
                    ax.plot([finite["epoch"].iloc[-1]], [min(finite["loss"].iloc[-1], top)], "x",
                            color=colors[label], markersize=7, mew=1.5, clip_on=False)
            plain_log(ax)
            # A diverging run climbs to 1e30 and more: cap the axis a little above the initial loss so the
            # other curves stay readable; the capped curve leaves through the top edge, ✕ where it stopped.
            ax.set_ylim(top=top)
            ax.set_title(f"{optimizer_label(optimizer)}, B = {batch_size}, seed {seed}")
            ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("mini-batch training loss (nats)")
            ax.legend(fontsize=7)
        return to_svg(fig, name)


def early_stopping(scores_min: pd.DataFrame, scores_final: pd.DataFrame, order=()) -> str:
    """Per learning rate: the epoch of the lowest validation loss (left) and how much higher the final
    validation loss is (right); median over seeds that trained, dots per seed, a colour per batch size."""
    name = "early_stopping"
    keys = ["optimizer", "batch_size", "lr", "seed"]
    frame = scores_min.merge(scores_final[keys + ["score", "epoch"]], on=keys, suffixes=("", "_final"))
    frame = frame[(frame["status"] == "ok") & np.isfinite(frame["score"]) & np.isfinite(frame["score_final"])]
    frame = frame.assign(gap=frame["score_final"] - frame["score"])
    optimizers = ordered(scores_min["optimizer"], order)
    colors = batch_colors(scores_min["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), 2, height=2.6)
        for row, optimizer in enumerate(optimizers):
            mine = frame[frame["optimizer"] == optimizer]
            for batch_size, cell in mine.groupby("batch_size"):
                for ax, column in zip(axes[row], ("epoch", "gap")):
                    median = cell.groupby("lr")[column].median()
                    ax.plot(median.index, median.values, color=colors[batch_size], label=f"B = {batch_size}")
                    ax.plot(cell["lr"], cell[column], "o", color=colors[batch_size], markersize=2.5, alpha=0.7)
            for ax in axes[row]:
                plain_log(ax, "x")
                ax.set_xlabel(f"{optimizer_label(optimizer)} learning rate")
            axes[row, 0].axhline(mine["epoch_final"].max() if len(mine) else 0, color="grey", linestyle=":",
                                 linewidth=0.8)
            axes[row, 0].set_ylabel("epoch of min validation loss")
            axes[row, 1].set_ylabel("final − min validation loss (nats)")
            axes[row, 1].axhline(0, color="grey", linewidth=0.8)
            axes[row, 0].set_title(f"{optimizer_label(optimizer)}: when the validation loss bottoms out")
            axes[row, 1].set_title(f"{optimizer_label(optimizer)}: what training to the end costs")
        axes[0, 1].legend(fontsize=7)
        return to_svg(fig, name)


def scaling(best_train: pd.DataFrame | None, best_val: pd.DataFrame | None, fits: dict | None = None,
            order=()) -> str:
    """lr* against batch size per optimizer, log-log: per-seed refined lr* on the training objective
    (filled) and on the selection metric (hollow), their geometric means, and the two candidate rules
    (slope 1: linear; slope ½: square root) through the smallest batch size's mean."""
    name = "scaling"
    frames = [f for f in (best_train, best_val) if f is not None and len(f)]
    if not frames:
        return empty_figure(name, "best_lr.csv has no refined learning rates to draw")
    optimizers = ordered(pd.concat(frames)["optimizer"], order)
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.4, sharex=True)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            for frame, label, filled in ((best_train, "training objective", True), (best_val, "selection metric",
                                                                                      False)):
                if frame is None or frame.empty:
                    continue
                mine = frame[frame["optimizer"] == optimizer]
                if mine.empty:
                    continue
                color = "tab:blue" if filled else "tab:grey"
                face = color if filled else "none"
                ok = mine[~mine["censored"]]
                ax.plot(ok["batch_size"], ok["lr"], "o", markersize=4, color=color, markerfacecolor=face, alpha=0.8)
                cut = mine[mine["censored"]]
                ax.plot(cut["batch_size"], cut["lr"], "^", markersize=5, color="tab:red", markerfacecolor=face)
                geo = np.exp(np.log(mine["lr"]).groupby(mine["batch_size"]).mean())
                ax.plot(geo.index, geo.values, "-", color=color, label=f"lr* on the {label} (geometric mean)")
                if filled and len(geo):
                    b0, lr0 = geo.index[0], geo.iloc[0]
                    sizes = np.array(sorted(mine["batch_size"].unique()), dtype=float)
                    ax.plot(sizes, lr0 * sizes / b0, ":", color="black", label="linear rule (slope 1)")
                    ax.plot(sizes, lr0 * np.sqrt(sizes / b0), "--", color="black", linewidth=0.9,
                            label="square-root rule (slope ½)")
            fit = (fits or {}).get(optimizer)
            title = optimizer_label(optimizer)
            if fit and np.isfinite(fit[0]):
                title += f": α = {fit[0]:.2f} [{fit[1]:.2f}, {fit[2]:.2f}]"
            ax.set_title(title)
            batch_size_axis(ax)
            if col == 0:
                ax.set_ylabel("best learning rate lr*")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        handles.append(plt.Line2D([], [], linestyle="none", marker="^", color="tab:red"))
        labels.append("censored (optimum at the grid edge)")
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
        return to_svg(fig, name)


def steps_to_target(steps: pd.DataFrame, order=()) -> str:
    """Steps to the target validation loss against batch size per optimizer (log-log; geometric mean
    over seeds at the fastest LR, 95 % CI bars), perfect scaling from the smallest batch size
    (dotted), the fitted knee B_crit with its CI (solid line, band) and B_simple near the target
    (dashed), all from steps_to_target.csv."""
    name = "steps_to_target"
    if steps.empty:
        return empty_figure(name, "steps_to_target.csv is empty")
    optimizers = ordered(steps["optimizer"], order)
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.4, sharey=True)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            mine = steps[steps["optimizer"] == optimizer].sort_values("batch_size")
            reached = mine[np.isfinite(mine["steps"])]
            error = np.vstack([reached["steps"] - reached["steps_low"], reached["steps_high"] - reached["steps"]])
            ax.errorbar(reached["batch_size"], reached["steps"], yerr=np.where(np.isfinite(error), error, 0),
                        fmt="o-", color="tab:blue", markersize=4, capsize=2, label="steps to target, 95% CI")
            ax.plot(mine["batch_size"], mine["perfect_scaling_steps"], ":", color="black",
                    label="perfect scaling (steps ∝ 1/B)")
            missed = mine[~np.isfinite(mine["steps"])]
            if len(missed):
                ax.plot(missed["batch_size"], np.full(len(missed), 0.97), "x", color="tab:red", mew=1.5,
                        transform=ax.get_xaxis_transform(), clip_on=False, label="target not reached")
            first = mine.iloc[0]
            title = f"{optimizer_label(optimizer)}: target {short(first['target_loss'])} nats"
            if np.isfinite(first["knee"]):
                ax.axvline(first["knee"], color="tab:green", linewidth=1.2, label="knee B_crit (fit), 95% CI")
                low, high = first["knee_low"], first["knee_high"]
                if np.isfinite(low) and np.isfinite(high):
                    ax.axvspan(low, high, color="tab:green", alpha=0.12, linewidth=0)
                title += f", B_crit {short(first['knee'])}"
            elif first["knee"] == np.inf:
                title += ", no knee (perfect scaling)"
            if np.isfinite(first.get("b_simple", np.nan)):
                ax.axvline(first["b_simple"], color="tab:purple", linestyle="--", linewidth=1.2,
                           label="B_simple near the target")
                title += f", B_simple {short(first['b_simple'])}"
            ax.set_title(title, fontsize=9)
            batch_size_axis(ax)
            if col == 0:
                ax.set_ylabel("optimizer steps to the target")
        handles, labels = {}, {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=3)
        return to_svg(fig, name)


def matching(frame: pd.DataFrame, row, keys: list[str]) -> pd.DataFrame:
    """The rows of `frame` whose `keys` equal those of `row`."""
    mask = np.ones(len(frame), dtype=bool)
    for key in keys:
        mask &= (frame[key] == row[key]).to_numpy()
    return frame[mask]


def run_label(row) -> str:
    return f"{optimizer_label(row['optimizer'])}, B = {row['batch_size']}, lr {row['lr']:g}, seed {row['seed']}"


def probe_checkpoints(moments: pd.DataFrame, per_run: int) -> pd.DataFrame:
    """(run, step) pairs to draw: at most `per_run` checkpoints per probe run, spread evenly, ends kept."""
    keys = [*RUN_KEYS, "step"]
    pairs = moments[keys + ["epoch"]].drop_duplicates(keys).sort_values(keys)
    return pd.concat([thin(group, per_run) for _, group in pairs.groupby(RUN_KEYS, sort=False)])


def gradvar(moments: pd.DataFrame, slopes: pd.DataFrame | None = None, per_run: int = 4) -> str:
    """E||g_B − ∇f||² against m with its bootstrap CI, beside σ²/m (dashed) and the exact
    σ²/m·(n−m)/(n−1) (solid); below, both as ratios to σ²/m. One column per probed checkpoint."""
    name = "gradvar"
    if moments.empty:
        return empty_figure(name, "no probed checkpoint")
    picks = probe_checkpoints(moments, per_run)
    runs = picks[RUN_KEYS].drop_duplicates()
    cols = int(picks.groupby(RUN_KEYS).size().max())
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(min(max(2.6 * cols + 0.6, 7.0), FULL_WIDTH), 3.6 * len(runs) + 0.4))
        grid = fig.add_gridspec(2 * len(runs), cols, height_ratios=[2.2, 1.0] * len(runs))
        for row, (_, run) in enumerate(runs.iterrows()):
            mine = matching(picks, run, RUN_KEYS)
            for col, (_, pick) in enumerate(mine.iterrows()):
                top = fig.add_subplot(grid[2 * row, col])
                bottom = fig.add_subplot(grid[2 * row + 1, col], sharex=top)
                rows = matching(moments, pick, [*RUN_KEYS, "step"]).sort_values("m")
                m = rows["m"].to_numpy(float)
                mean = rows["empirical_mean"].to_numpy(float)
                error = np.vstack([mean - rows["ci_low"], rows["ci_high"] - mean])
                n = float(rows["n"].iloc[0])
                top.errorbar(m, mean, yerr=np.where(np.isfinite(error), error, 0), fmt="o", markersize=3,
                             color="black", elinewidth=1, capsize=2, label="measured, 95% CI")
                top.plot(m, rows["pred_iid"], "--", color="tab:blue", label="σ²/m (tutorial)")
                top.plot(m, rows["pred_fpc"], "-", color="tab:red", linewidth=1, label="σ²/m·(n−m)/(n−1)")
                iid = rows["pred_iid"].to_numpy(float)
                bottom.errorbar(m, mean / iid, yerr=np.where(np.isfinite(error), error, 0) / iid, fmt="o",
                                markersize=3, color="black", elinewidth=1, capsize=2)
                bottom.axhline(1.0, linestyle="--", color="tab:blue")
                bottom.plot(m, (n - m) / (n - 1), "-", color="tab:red", linewidth=1)
                for ax in (top, bottom):
                    ax.axvline(n / 20, linestyle=":", color="grey", linewidth=0.8)
                    log2_axis(ax)
                plain_log(top)
                top.tick_params(labelbottom=False)
                title = f"epoch {pick['epoch']:.3g}"
                if slopes is not None and len(slopes):
                    fit = matching(slopes, pick, [*RUN_KEYS, "step"])
                    if len(fit) and np.isfinite(fit["slope"].iloc[0]):
                        f = fit.iloc[0]
                        title += f"\nslope {f['slope']:.3f} [{f['slope_low']:.3f}, {f['slope_high']:.3f}]"
                top.set_title(title, fontsize=8)
                bottom.set_xlabel("mini-batch size m")
                if col == 0:
                    top.set_ylabel(f"{run_label(run)}\nE‖g_B − ∇f‖²", fontsize=8)
                    bottom.set_ylabel("÷ σ²/m")
        handles, labels = fig.axes[0].get_legend_handles_labels()
        handles.append(plt.Line2D([], [], linestyle=":", color="grey"))
        labels.append("m = n/20 (slope fitted left of it)")
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        return to_svg(fig, name)


def noise_scale(noise: pd.DataFrame) -> str:
    """B_simple = σ²/‖∇f‖² across training per probe run (left), and σ² and ‖∇f‖² themselves (right)."""
    name = "noise_scale"
    if noise.empty:
        return empty_figure(name, "no probed checkpoint")
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, 2, height=3.0, width=FULL_WIDTH * 0.9)
        left, right = axes[0]
        for _, run_rows in noise.groupby(RUN_KEYS, sort=False):
            run_rows = run_rows.sort_values("step")
            label = run_label(run_rows.iloc[0])
            line, = left.plot(run_rows["epoch"], run_rows["b_simple"], "o-", markersize=3, label=label)
            left.axhline(run_rows["batch_size"].iloc[0], color=line.get_color(), linestyle=":", linewidth=0.8)
            right.plot(run_rows["epoch"], run_rows["sigma2"], "o-", markersize=3, color=line.get_color())
            right.plot(run_rows["epoch"], run_rows["grad_norm2"], "s--", markersize=3, color=line.get_color())
        plain_log(left)
        plain_log(right)
        left.set_ylabel("B_simple = σ²/‖∇f‖² (samples)")
        right.set_ylabel("squared gradient norm")
        for ax in (left, right):
            ax.set_xlabel("epoch")
        left.legend(title="probe run (dotted: its batch size)", fontsize=7)
        right.legend([plt.Line2D([], [], marker="o", color="grey"), plt.Line2D([], [], marker="s", linestyle="--",
                                                                               color="grey")],
                     ["σ² (per-sample gradient variance)", "‖∇f‖² (full gradient)"])
        return to_svg(fig, name)


def make(name: str, tables: dict[str, pd.DataFrame], config: dict) -> str:
    """Figure `name` drawn from the workflow's tables (the registry the figure rules call)."""
    from optbench.report import best_grid_lrs, selection_scores

    metric = config["selection"]["metric"]
    order = config["grid"]["optimizers"]
    if name in ("curves", "lr_sensitivity"):
        scores = selection_scores(tables["runs"], metric)
        best = best_grid_lrs(scores)
        if name == "curves":
            return curves(tables["runs"], best, order)
        return lr_sensitivity(scores, metric, best, refined_lrs(tables.get("best_lr")), order)
    if name == "lr_grid":
        return lr_grid(tables["runs"], order=order)
    if name == "trajectories":
        scores = selection_scores(tables["runs"], metric)
        return trajectories(tables["minibatch"], scores, best_grid_lrs(scores), order)
    if name == "early_stopping":
        return early_stopping(selection_scores(tables["runs"], "min_val_loss"),
                              selection_scores(tables["runs"], "final_val_loss"), order)
    if name == "cost":
        return cost(tables["status"], order)
    if name == "scaling":
        from optbench.report import scaling_fits, seed_lr_stars

        best = tables["best_lr"]
        return scaling(seed_lr_stars(best, "train"), seed_lr_stars(best, "val"), scaling_fits(tables["scaling"]),
                       order)
    if name == "steps_to_target":
        return steps_to_target(tables["steps_to_target"], order)
    if name == "gradvar":
        return gradvar(tables["gradvar"], tables.get("gradvar_slopes"))
    if name == "noise_scale":
        return noise_scale(noise_by_checkpoint(tables["gradvar"]))
    raise KeyError(f"no figure called '{name}'")


def refined_lrs(best_lr: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per-seed refined lr* on the selection metric from the analysis stage's best_lr.csv."""
    from optbench.report import seed_lr_stars

    return seed_lr_stars(best_lr, "val")


def noise_by_checkpoint(moments: pd.DataFrame) -> pd.DataFrame:
    """One row per probed run × checkpoint (σ², ‖∇f‖² and B_simple repeat over the m rows)."""
    return moments.drop_duplicates([*RUN_KEYS, "step"]).sort_values([*RUN_KEYS, "step"])
