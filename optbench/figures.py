"""The report's matplotlib figures (Agg backend), drawn from the analysis tables: one function per figure, each an SVG string.

Figures compute nothing: every median, band, best learning rate and fit they show is a column of a
table of the analysis stage (optbench.analysis); here they are only placed on axes."""
from __future__ import annotations

import html
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

# Text stays text (svg.fonttype none: small files, the browser's font); no timestamp and a fixed
# hash salt make the bytes reproducible.
STYLE = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,   # 8 pt: ≥ 10.5 CSS px at a figure's natural width (what the page shows at 1280 px)
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
RAMP = 0.85              # a colour map's upper end used: its lightest colours vanish on white
# Figures are shown at their natural size (at most the page width): 10.5 in is about 1000 CSS pixels,
# so 9 pt text reads as 12 px whatever the number of panels.
FULL_WIDTH = 10.5        # inches
# Every figure make() draws, by the stage whose tables it needs.
FIGURE_NAMES = {"spine": ("curves", "lr_grid", "lr_sensitivity", "trajectories", "early_stopping", "cost"),
                "analysis": ("scaling", "steps_to_target"), "gradvar": ("gradvar", "noise_scale")}
LOSS_LABEL = "loss (cross-entropy, nats per sample)"


def thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most `max_points` rows, evenly spaced in row order, keeping the first and last (what is drawn, not
    what is computed: checkpoints are log-spaced already)."""
    if len(frame) <= max_points:
        return frame
    index = np.unique(np.round(np.linspace(0, len(frame) - 1, max_points)).astype(int))
    return frame.iloc[index]


def short(value: float) -> str:
    """3 significant digits without exponents for ordinary sizes: 0.677, 12.5, 1024."""
    return f"{value:.0f}" if 100 <= abs(value) < 1e6 else f"{value:.3g}"


def ramp(name: str):
    """A sequential colour map cut at RAMP, so that its lightest colours, invisible on white, are never used
    (lines and colour bars alike)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(plt.get_cmap(name)(np.linspace(0.0, RAMP, 256)), name=f"{name}_ramp")


def batch_colors(batch_sizes) -> dict:
    """An ordered palette for an ordered variable: small batches dark, large ones light."""
    batch_sizes = sorted(batch_sizes)
    cmap = plt.get_cmap("viridis")
    return {b: cmap(x) for b, x in zip(batch_sizes, np.linspace(0.0, RAMP, max(len(batch_sizes), 1)))}


HOVER = "hover"  # gid prefix of the artists whose points carry hover texts


def hover(artist, labels) -> None:
    """Give `artist` hover texts: one per drawn point of a marker line (a list, in data order, finite
    points only: matplotlib skips NaN), or one for the whole artist (a string). to_svg writes each as an
    SVG <title>, which a browser shows on hover — exact values behind a point, with no script."""
    texts = artist.figure.__dict__.setdefault("_hover_texts", [])
    artist.set_gid(f"{HOVER}{len(texts)}")
    texts.append(labels)


def _add_titles(svg: str, texts: list) -> str:
    """Write the hover texts of hover() into the SVG: a <title> per <use> marker of the artist's group, or one
    <title> opening the group. Matplotlib draws a marker line as <g id=gid> holding one <use> per point."""
    for index, labels in enumerate(texts):
        start = svg.find(f'<g id="{HOVER}{index}">')
        if start < 0:
            continue
        head = svg.index(">", start) + 1
        if isinstance(labels, str):
            svg = svg[:head] + f"<title>{html.escape(labels)}</title>" + svg[head:]
            continue
        position = head
        for label in labels:
            use = svg.find("<use ", position)
            if use < 0:
                break
            end = svg.index("/>", use)
            element = svg[use:end] + f"><title>{html.escape(label)}</title></use>"
            svg = svg[:use] + element + svg[end + 2:]
            position = use + len(element)
    return svg


def to_svg(fig, name: str) -> str:
    """The figure as an SVG document whose element ids are prefixed by `name`, with its hover texts.

    Matplotlib numbers its groups figure_1, axes_1, … in every file: prefixing keeps ids unique when
    several SVGs are inlined in one HTML page.
    """
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    texts = fig.__dict__.get("_hover_texts", [])
    plt.close(fig)
    svg = _add_titles(buffer.getvalue(), texts)
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


def cell_rows(frame: pd.DataFrame, optimizer: str, batch_size=None) -> pd.DataFrame:
    mask = frame["optimizer"] == optimizer
    if batch_size is not None:
        mask &= frame["batch_size"] == batch_size
    return frame[mask]


def curves(bands: pd.DataFrame, cells: pd.DataFrame, order=()) -> str:
    """Train and validation loss vs epoch at each cell's best grid LR (best_lr_cells): median across
    seeds, min–max band (curve_bands). Each split has its own loss axis, so the validation minimum and
    any rise after it are not squashed by the training curve's descent."""
    name = "curves"
    cells = cells.dropna(subset=["grid_lr"])
    if cells.empty:
        return empty_figure(name, "no learning rate trained without diverging: nothing to draw")
    optimizers = ordered(cells["optimizer"], order)
    colors = batch_colors(cells["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), 2, height=3.0, sharex=True)
        for row, optimizer in enumerate(optimizers):
            for col, split in enumerate(("train", "val")):
                ax = axes[row, col]
                for best in cell_rows(cells, optimizer).itertuples():
                    band = bands[(bands["optimizer"] == optimizer) & (bands["batch_size"] == best.batch_size)
                                 & np.isclose(bands["lr"], best.grid_lr, rtol=1e-9) & (bands["split"] == split)]
                    band = thin(band.sort_values("step"), MAX_POINTS)
                    ax.fill_between(band["epoch"], band["low"], band["high"], color=colors[best.batch_size],
                                    alpha=0.2, linewidth=0)
                    ax.plot(band["epoch"], band["median"], color=colors[best.batch_size],
                            label=f"B = {best.batch_size}, lr {best.grid_lr:g}")
                plain_log(ax)
                ax.set_title(f"{optimizer_label(optimizer)}: {'training' if split == 'train' else 'validation'} loss")
                if row == len(optimizers) - 1:
                    ax.set_xlabel("epoch")
                ax.set_ylabel(LOSS_LABEL if col == 0 else "validation loss (nats)")
            axes[row, 1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="batch size, best lr")
        return to_svg(fig, name)


def lr_grid(bands: pd.DataFrame, split: str = "val", order=()) -> str:
    """Small multiples: validation loss vs epoch for every learning rate (colour), one panel per cell."""
    name = "lr_grid"
    bands = bands[bands["split"] == split]
    optimizers = ordered(bands["optimizer"], order)
    batch_sizes = sorted(bands["batch_size"].unique())
    initial = bands[bands["step"] == 0]["median"].median()
    finite = bands["median"].dropna()
    low = finite.min() * 0.9 if len(finite) else 0.1
    high = initial * 1.5 if np.isfinite(initial) else None
    cmap = ramp("plasma")
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), len(batch_sizes), height=2.3, sharey=True, sharex=True,
                               width=min(2.0 * len(batch_sizes) + 1.2, FULL_WIDTH + 0.5))
        for row, optimizer in enumerate(optimizers):
            lrs = sorted(bands.loc[bands["optimizer"] == optimizer, "lr"].unique())
            norm = LogNorm(min(lrs), max(lrs)) if len(lrs) > 1 else LogNorm(lrs[0] / 2, lrs[0] * 2)
            for col, batch_size in enumerate(batch_sizes):
                ax = axes[row, col]
                for lr, band in cell_rows(bands, optimizer, batch_size).groupby("lr"):
                    band = thin(band.sort_values("step"), MAX_POINTS)
                    color = cmap(norm(lr))
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


def lr_sensitivity(scores: pd.DataFrame, summary: pd.DataFrame, cells: pd.DataFrame, metric: str,
                   refined: pd.DataFrame | None = None, order=()) -> str:
    """The selection metric vs learning rate: each seed a point (lr_scores), the seed median a line
    (lr_summary), one colour per batch size; diverged runs drawn as × on the panel's top edge; ★
    marks the best grid lr (best_lr_cells); `refined` (best_lr.csv) adds a tick per seed's refined
    lr* on the bottom edge. Legend outside the axes."""
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
                cell = cell_rows(scores, optimizer, batch_size)
                ok, gone = cell[usable.loc[cell.index]], cell[~usable.loc[cell.index]]
                median = cell_rows(summary, optimizer, batch_size).dropna(subset=["score_median"])
                ax.plot(median["lr"] * dodge[batch_size], median["score_median"], color=color,
                        label=f"B = {batch_size}")
                dots, = ax.plot(ok["lr"] * dodge[batch_size], ok["score"], "o", color=color, markersize=3, alpha=0.8)
                hover(dots, [f"{optimizer_label(optimizer)} B={batch_size} lr {r.lr:g} seed {r.seed}: "
                             f"{metric} {r.score:.4g} nats" for r in ok.itertuples()])
                if len(gone):
                    ax.plot(gone["lr"] * dodge[batch_size], np.full(len(gone), 0.97), "x", color=color,
                            markersize=6, mew=1.5, transform=ax.get_xaxis_transform(), clip_on=False)
                for best in cell_rows(cells, optimizer, batch_size).dropna(subset=["grid_lr"]).itertuples():
                    at = median[np.isclose(median["lr"], best.grid_lr, rtol=1e-9)]["score_median"]
                    ax.plot([best.grid_lr * dodge[batch_size]], [at.iloc[0] if len(at) else np.nan], "*",
                            color=color, markersize=11, markeredgecolor="black", markeredgewidth=0.6)
                if refined is not None and len(refined):
                    mark = cell_rows(refined, optimizer, batch_size)
                    ax.plot(mark["lr_star"], np.full(len(mark), 0.02), "|", color=color, markersize=9, mew=1.5,
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


def cost(status: pd.DataFrame, cells: pd.DataFrame, order=()) -> str:
    """Left: training-loop time per run against batch size (a bundled run's share of its bundle's loop
    time; dots are runs, line the median, cost_cells). Right: the loop time of each optimizer ×
    batch size's runs together — what its bundles spent training."""
    name = "cost"
    frame = status[status["steps_done"] > 0]
    batch_sizes = sorted(frame["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, 2, height=3.0, width=FULL_WIDTH * 0.8)
        for optimizer in ordered(frame["optimizer"], order):
            mine, summary = cell_rows(frame, optimizer), cell_rows(cells, optimizer)
            line, = axes[0, 0].plot(summary["batch_size"], summary["run_seconds_median"], "-",
                                    label=optimizer_label(optimizer))
            dots, = axes[0, 0].plot(mine["batch_size"], mine["train_seconds"], "o", color=line.get_color(),
                                    markersize=2.5, alpha=0.5)
            hover(dots, [f"{run_label(r._asdict())}: {r.train_seconds:.3g} s" for r in mine.itertuples()])
            axes[0, 1].plot(summary["batch_size"], summary["loop_seconds"], "o-", color=line.get_color(),
                            label=optimizer_label(optimizer))
        for ax, label in zip(axes[0], ("training-loop time per run (s, its share of a bundle)",
                                       "training-loop time of all the runs (s)")):
            ax.set_xscale("log")
            ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
            ax.xaxis.set_minor_locator(NullLocator())
            plain_log(ax)
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
        axes[0, 0].legend()
        return to_svg(fig, name)


def trajectories(minibatch: pd.DataFrame, picks: pd.DataFrame, order=()) -> str:
    """Mini-batch training loss (window means, first seed) at the learning rates lr_picks.csv names —
    the smallest, best, largest trained and first diverged — of each optimizer, at the grid's middle
    batch size; × where a diverged run stopped."""
    name = "trajectories"
    optimizers = ordered(picks["optimizer"], order)
    batch_sizes = sorted(picks["batch_size"].unique())
    batch_size = batch_sizes[len(batch_sizes) // 2]
    seed = min(minibatch["seed"])
    colors = {"smallest lr": "tab:blue", "best lr": "tab:green", "largest lr that trained": "tab:orange",
              "smallest lr that diverged": "tab:red"}
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.2, sharey=True)
        first_window = minibatch.loc[minibatch["step"] == minibatch.groupby(RUN_KEYS)["step"].transform("min"), "loss"]
        top = 3 * float(first_window[np.isfinite(first_window)].median())
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            for pick in cell_rows(picks, optimizer, batch_size).itertuples():
                run = minibatch[(minibatch["optimizer"] == optimizer) & (minibatch["batch_size"] == batch_size)
                                & np.isclose(minibatch["lr"], pick.lr, rtol=1e-9) & (minibatch["seed"] == seed)]
                run = thin(run.sort_values("step"), 200)
                finite = run[np.isfinite(run["loss"])]
                ax.plot(finite["epoch"], finite["loss"], color=colors[pick.label], linewidth=0.9,
                        label=f"{pick.label}: {pick.lr:g}")
                if len(finite) and pick.diverged:
                    ax.plot([finite["epoch"].iloc[-1]], [min(finite["loss"].iloc[-1], top)], "x",
                            color=colors[pick.label], markersize=7, mew=1.5, clip_on=False)
            plain_log(ax)
            # A diverging run climbs to 1e30 and more: cap the axis a little above the initial loss so the
            # other curves stay readable; the capped curve leaves through the top edge, ✕ where it stopped.
            ax.set_ylim(top=top)
            ax.set_title(f"{optimizer_label(optimizer)}, B = {batch_size}, seed {seed}")
            ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("mini-batch training loss (nats)")
            ax.legend(fontsize=8, loc="lower left")
        return to_svg(fig, name)


def early_stopping(scores: pd.DataFrame, summary: pd.DataFrame, order=()) -> str:
    """Per learning rate: the epoch of the lowest validation loss (left) and how much higher the final
    validation loss is (right), from lr_scores (dots: seeds that trained) and lr_summary (lines: their
    median), a colour per batch size."""
    name = "early_stopping"
    frame = scores[(scores["status"] == "ok") & np.isfinite(scores["val_gap"])]
    optimizers = ordered(scores["optimizer"], order)
    colors = batch_colors(scores["batch_size"].unique())
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(len(optimizers), 2, height=2.6)
        for row, optimizer in enumerate(optimizers):
            mine = cell_rows(frame, optimizer)
            for batch_size, cell in mine.groupby("batch_size"):
                lines = cell_rows(summary, optimizer, batch_size)
                for ax, column in zip(axes[row], ("val_min_epoch", "val_gap")):
                    ax.plot(lines["lr"], lines[f"{column}_median"], color=colors[batch_size], label=f"B = {batch_size}")
                    dots, = ax.plot(cell["lr"], cell[column], "o", color=colors[batch_size], markersize=2.5, alpha=0.7)
                    hover(dots, [f"B={batch_size} lr {r.lr:g} seed {r.seed}: {getattr(r, column):.3g}"
                                 for r in cell.itertuples()])
            for ax in axes[row]:
                plain_log(ax, "x")
                ax.set_xlabel(f"{optimizer_label(optimizer)} learning rate")
            axes[row, 0].axhline(mine["final_epoch"].max() if len(mine) else 0, color="grey", linestyle=":",
                                 linewidth=0.8)
            axes[row, 0].set_ylabel("epoch of min validation loss")
            axes[row, 1].set_ylabel("final − min validation loss (nats)")
            axes[row, 1].axhline(0, color="grey", linewidth=0.8)
            axes[row, 0].set_title(f"{optimizer_label(optimizer)}: when the validation loss bottoms out")
            axes[row, 1].set_title(f"{optimizer_label(optimizer)}: what training to the end costs")
            axes[row, 1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, name)


def scaling(best: pd.DataFrame, cells: pd.DataFrame, fits: pd.DataFrame, order=()) -> str:
    """lr* against batch size per optimizer, log-log: per-seed refined lr* on the training objective
    (filled) and on the selection metric (hollow) from best_lr.csv, their geometric means
    (best_lr_cells), and the two candidate rules (slope 1: linear; slope ½: square root) through the
    smallest batch size's mean; the fitted α (scaling.csv) in the title."""
    name = "scaling"
    if best.empty:
        return empty_figure(name, "best_lr.csv has no refined learning rates to draw")
    optimizers = ordered(best["optimizer"], order)
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.4, sharex=True)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            mine, means = cell_rows(best, optimizer), cell_rows(cells, optimizer).sort_values("batch_size")
            for suffix, label, filled in (("_train", "training objective", True), ("", "selection metric", False)):
                color = "tab:blue" if filled else "tab:grey"
                face = color if filled else "none"
                seeds = mine[np.isfinite(mine[f"lr_star{suffix}"])]
                ok, cut = seeds[~seeds[f"censored{suffix}"]], seeds[seeds[f"censored{suffix}"]]
                dots, = ax.plot(ok["batch_size"], ok[f"lr_star{suffix}"], "o", markersize=4, color=color,
                                markerfacecolor=face, alpha=0.8)
                hover(dots, [f"B={r.batch_size} seed {r.seed}: lr* ({label}) {getattr(r, 'lr_star' + suffix):.4g}"
                             for r in ok.itertuples()])
                marks, = ax.plot(cut["batch_size"], cut[f"lr_star{suffix}"], "^", markersize=5, color="tab:red",
                                 markerfacecolor=face)
                hover(marks, [f"B={r.batch_size} seed {r.seed}: lr* ({label}) {getattr(r, 'lr_star' + suffix):.4g}, "
                              "censored by the grid" for r in cut.itertuples()])
                geo = means.dropna(subset=[f"lr_star_gmean{suffix}"])
                ax.plot(geo["batch_size"], geo[f"lr_star_gmean{suffix}"], "-", color=color,
                        label=f"lr* on the {label} (geometric mean)")
                if filled and len(geo):
                    b0, lr0 = geo["batch_size"].iloc[0], geo[f"lr_star_gmean{suffix}"].iloc[0]
                    sizes = geo["batch_size"].to_numpy(float)
                    ax.plot(sizes, lr0 * sizes / b0, ":", color="black", label="linear rule (slope 1)")
                    ax.plot(sizes, lr0 * np.sqrt(sizes / b0), "--", color="black", linewidth=0.9,
                            label="square-root rule (slope ½)")
            fit = fits[(fits["optimizer"] == optimizer) & (fits["objective"] == "train") & (fits["kind"] == "fit")]
            title = optimizer_label(optimizer)
            if len(fit) and np.isfinite(fit["alpha"].iloc[0]):
                f = fit.iloc[0]
                title += f": α = {f['alpha']:.2f} [{f['alpha_low']:.2f}, {f['alpha_high']:.2f}]"
            ax.set_title(title)
            batch_size_axis(ax)
            if col == 0:
                ax.set_ylabel("best learning rate lr*")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        handles.append(plt.Line2D([], [], linestyle="none", marker="^", color="tab:red"))
        labels.append("censored (optimum at the grid edge)")
        fig.legend(handles, labels, loc="outside lower center", ncols=3)
        return to_svg(fig, name)


def steps_to_target(steps: pd.DataFrame, scaling_table: pd.DataFrame, confidence: float, order=()) -> str:
    """Steps to the target validation loss against batch size per optimizer (log-log; geometric mean
    over seeds at the fastest LR with its CI, steps_to_target.csv), perfect scaling from the smallest
    batch size (dotted), the fitted knee B_crit with its CI (solid line, band) and B_simple near the
    target (dashed), from batch_scaling.csv."""
    name = "steps_to_target"
    if steps.empty:
        return empty_figure(name, "steps_to_target.csv is empty")
    optimizers = ordered(steps["optimizer"], order)
    knees = scaling_table.set_index("optimizer")
    level = f"{100 * confidence:g} % CI"
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.4, sharey=True)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            mine = cell_rows(steps, optimizer).sort_values("batch_size")
            reached = mine[np.isfinite(mine["steps"])]
            error = np.vstack([reached["steps"] - reached["steps_low"], reached["steps_high"] - reached["steps"]])
            bars = ax.errorbar(reached["batch_size"], reached["steps"], yerr=np.where(np.isfinite(error), error, 0),
                               fmt="o-", color="tab:blue", markersize=4, capsize=2, label=f"steps to target, {level}")
            hover(bars.lines[0], [f"B={r.batch_size}: {r.steps:.4g} steps [{r.steps_low:.4g}, {r.steps_high:.4g}] "
                                  f"at lr {r.lr:g}" for r in reached.itertuples()])
            ax.plot(mine["batch_size"], mine["perfect_scaling_steps"], ":", color="black",
                    label="perfect scaling (steps ∝ 1/B)")
            missed = mine[~np.isfinite(mine["steps"])]
            if len(missed):
                ax.plot(missed["batch_size"], np.full(len(missed), 0.97), "x", color="tab:red", mew=1.5,
                        transform=ax.get_xaxis_transform(), clip_on=False, label="target not reached")
            knee = knees.loc[optimizer] if optimizer in knees.index else None
            title = f"{optimizer_label(optimizer)}: target {short(mine['target_loss'].iloc[0])} nats"
            if knee is not None and np.isfinite(knee["knee"]):
                ax.axvline(knee["knee"], color="tab:green", linewidth=1.2, label=f"knee B_crit (fit), {level}")
                if np.isfinite(knee["knee_low"]) and np.isfinite(knee["knee_high"]):
                    ax.axvspan(knee["knee_low"], knee["knee_high"], color="tab:green", alpha=0.12, linewidth=0)
                title += f", B_crit {short(knee['knee'])}"
            elif knee is not None and knee["knee"] == np.inf:
                title += ", no knee (perfect scaling)"
            if knee is not None and np.isfinite(knee["b_simple"]):
                ax.axvline(knee["b_simple"], color="tab:purple", linestyle="--", linewidth=1.2,
                           label="B_simple near the target")
                title += f", B_simple {short(knee['b_simple'])}"
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


def gradvar(moments: pd.DataFrame, slopes: pd.DataFrame, per_run: int = 4) -> str:
    """E||g_B − ∇f||² against m with its bootstrap CI, beside σ²/m (dashed) and the exact
    σ²/m·(n−m)/(n−1) (solid); below, both as ratios to σ²/m (gradvar.csv). One column per probed
    checkpoint; the slope fit (gradvar_slopes.csv) in each title."""
    name = "gradvar"
    if moments.empty:
        return empty_figure(name, "no probed checkpoint")
    picks = probe_checkpoints(moments, per_run)
    runs = picks[RUN_KEYS].drop_duplicates()
    cols = int(picks.groupby(RUN_KEYS).size().max())
    level = f"{100 * moments['confidence'].iloc[0]:g} % CI"
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
                bars = top.errorbar(m, mean, yerr=np.where(np.isfinite(error), error, 0), fmt="o", markersize=3,
                                    color="black", elinewidth=1, capsize=2, label=f"measured, {level}")
                hover(bars.lines[0], [f"m = {r.m}: {r.empirical_mean:.4g} [{r.ci_low:.4g}, {r.ci_high:.4g}]; σ²/m "
                                      f"{r.pred_iid:.4g}, exact {r.pred_fpc:.4g}" for r in rows.itertuples()])
                top.plot(m, rows["pred_iid"], "--", color="tab:blue", label="σ²/m (tutorial)")
                top.plot(m, rows["pred_fpc"], "-", color="tab:red", linewidth=1, label="σ²/m·(n−m)/(n−1)")
                ratio = rows["ratio_iid"].to_numpy(float)
                ratio_error = np.vstack([ratio - rows["ratio_iid_low"], rows["ratio_iid_high"] - ratio])
                bottom.errorbar(m, ratio, yerr=np.where(np.isfinite(ratio_error), ratio_error, 0), fmt="o",
                                markersize=3, color="black", elinewidth=1, capsize=2)
                bottom.axhline(1.0, linestyle="--", color="tab:blue")
                bottom.plot(m, (n - m) / (n - 1), "-", color="tab:red", linewidth=1)
                for ax in (top, bottom):
                    ax.axvline(n / 20, linestyle=":", color="grey", linewidth=0.8)
                    log2_axis(ax)
                plain_log(top)
                top.tick_params(labelbottom=False)
                title = f"epoch {pick['epoch']:.3g}"
                fit = matching(slopes, pick, [*RUN_KEYS, "step"])
                if len(fit) and np.isfinite(fit["slope"].iloc[0]):
                    f = fit.iloc[0]
                    title += f"\nslope {f['slope']:.3f} [{f['slope_low']:.3f}, {f['slope_high']:.3f}]"
                top.set_title(title, fontsize=9)
                bottom.set_xlabel("mini-batch size m")
                if col == 0:
                    top.set_ylabel(f"{run_label(run)}\nE‖g_B − ∇f‖²", fontsize=9)
                    bottom.set_ylabel("÷ σ²/m")
        handles, labels = fig.axes[0].get_legend_handles_labels()
        handles.append(plt.Line2D([], [], linestyle=":", color="grey"))
        labels.append("m = n/20 (slope fitted left of it)")
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        return to_svg(fig, name)


def noise_scale(slopes: pd.DataFrame) -> str:
    """B_simple = σ²/‖∇f‖² across training per probe run (left), and σ² and ‖∇f‖² themselves (right),
    one row per probed checkpoint of gradvar_slopes.csv. Legends outside the axes."""
    name = "noise_scale"
    if slopes.empty:
        return empty_figure(name, "no probed checkpoint")
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, 2, height=3.0, width=FULL_WIDTH * 0.9)
        left, right = axes[0]
        for _, run_rows in slopes.sort_values([*RUN_KEYS, "step"]).groupby(RUN_KEYS, sort=False):
            label = run_label(run_rows.iloc[0])
            line, = left.plot(run_rows["epoch"], run_rows["b_simple"], "o-", markersize=3, label=label)
            hover(line, [f"{label}, epoch {r.epoch:.3g}: B_simple {r.b_simple:.4g}" for r in run_rows.itertuples()])
            left.axhline(run_rows["batch_size"].iloc[0], color=line.get_color(), linestyle=":", linewidth=0.8)
            right.plot(run_rows["epoch"], run_rows["sigma2"], "o-", markersize=3, color=line.get_color())
            right.plot(run_rows["epoch"], run_rows["grad_norm2"], "s--", markersize=3, color=line.get_color())
        plain_log(left)
        plain_log(right)
        left.set_ylabel("B_simple = σ²/‖∇f‖² (samples)")
        right.set_ylabel("squared gradient norm")
        for ax in (left, right):
            ax.set_xlabel("epoch")
        handles, labels = left.get_legend_handles_labels()
        handles += [plt.Line2D([], [], marker="o", color="grey"), plt.Line2D([], [], marker="s", linestyle="--",
                                                                             color="grey")]
        labels += ["σ² (per-sample gradient variance)", "‖∇f‖² (full gradient)"]
        fig.legend(handles, labels, loc="outside lower center", ncols=2,
                   title="probe runs (dotted: their batch size)")
        return to_svg(fig, name)


def critical_batch(estimates: pd.DataFrame, order=()) -> str:
    """The critical batch size four ways, per optimizer (critical_batch.csv): B_simple and the Hessian B_noise
    near the target, B_noise fitted to lr*(B) and the steps knee B_crit, each with its CI, on one log axis."""
    name = "critical_batch"
    shown = estimates[np.isfinite(estimates["value"]) & (estimates["value"] > 0) & (estimates["value"] < np.inf)]
    if shown.empty:
        return empty_figure(name, "no critical-batch estimate is defined")
    optimizers = ordered(shown["optimizer"], order)
    kinds = ["simple", "hessian", "lr_mccandlish", "lr_surge", "knee"]
    markers = {"simple": "o", "hessian": "D", "lr_mccandlish": "s", "lr_surge": "v", "knee": "^"}
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(FULL_WIDTH * 0.75, 0.9 + 0.55 * len(optimizers) * len(kinds) / 2))
        labels = {}
        for i, optimizer in enumerate(optimizers):
            mine = cell_rows(shown, optimizer)
            for j, kind in enumerate(kinds):
                row = mine[mine["kind"] == kind]
                if row.empty:
                    continue
                row = row.iloc[0]
                y = i + (j - 2) * 0.14
                error = None
                if np.isfinite(row["low"]) and np.isfinite(row["high"]):
                    error = [[row["value"] - row["low"]], [row["high"] - row["value"]]]
                bars = ax.errorbar([row["value"]], [y], xerr=error, fmt=markers[kind], color=plt.get_cmap("tab10")(j),
                                   capsize=3, markersize=6, label=row["estimate"] if kind not in labels else None)
                labels[kind] = True
                interval = f" [{row['low']:.3g}, {row['high']:.3g}]" if error else ""
                hover(bars.lines[0], [f"{optimizer_label(optimizer)}: {row['estimate']} {row['value']:.3g}{interval}"])
        ax.set_yticks(range(len(optimizers)), [optimizer_label(o) for o in optimizers])
        ax.set_ylim(-0.6, len(optimizers) - 0.4)
        ax.invert_yaxis()
        plain_log(ax, "x")
        ax.set_xlabel("batch size (samples)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, name)


def lr_forms(best: pd.DataFrame, curves: pd.DataFrame, order=()) -> str:
    """lr* on the training objective against batch size (per seed, best_lr.csv) with the laws fitted to it
    (lr_form_curves.csv): McCandlish's ε_max/(1 + B_noise/B) for SGD, Li et al.'s surge for Adam."""
    name = "lr_forms"
    optimizers = ordered(best["optimizer"], order)
    with plt.rc_context(STYLE):
        fig, axes = panel_grid(1, len(optimizers), height=3.2)
        for col, optimizer in enumerate(optimizers):
            ax = axes[0, col]
            mine = cell_rows(best, optimizer)
            mine = mine[np.isfinite(mine["lr_star_train"])]
            dots, = ax.plot(mine["batch_size"], mine["lr_star_train"], "o", color="tab:blue", markersize=4,
                            label="lr* per seed (training objective)")
            hover(dots, [f"B={r.batch_size} seed {r.seed}: lr* {r.lr_star_train:.4g}" for r in mine.itertuples()])
            for form, frame in cell_rows(curves, optimizer).groupby("form"):
                label = {"mccandlish": "ε_max/(1 + B_noise/B)", "surge": "surge: ε_max/(½(√(B_n/B)+√(B/B_n)))"}[form]
                ax.plot(frame["batch_size"], frame["lr"], "-", color="tab:green", label=label)
            ax.set_title(optimizer_label(optimizer))
            batch_size_axis(ax)
            if col == 0:
                ax.set_ylabel("best learning rate lr*")
            ax.legend(loc="upper left", fontsize=8)
        return to_svg(fig, name)


def sweep(scores: pd.DataFrame, importance: pd.DataFrame, metric: str, order=()) -> str:
    """The grid as a sweep tool shows it. Left: parallel coordinates, one line per run through optimizer,
    batch size, learning rate and seed to its selection metric (log axes where the grid is geometric),
    coloured by the metric; diverged runs dashed grey, ending at the top. Right: the share of the
    metric's variance each hyperparameter explains on its own (hyperparameter_importance.csv)."""
    name = "sweep"
    if scores.empty:
        return empty_figure(name, "no runs")
    optimizers = ordered(scores["optimizer"], order)
    ok = scores[(scores["status"] == "ok") & np.isfinite(scores["score"])]

    def position(values, log=True):
        values = np.log(values.astype(float)) if log else values.astype(float)
        low, high = float(values.min()), float(values.max())
        return (values - low) / (high - low) if high > low else values * 0 + 0.5

    axes_of = {"optimizer": scores["optimizer"].map({o: i / max(len(optimizers) - 1, 1) for i, o in
                                                     enumerate(optimizers)}),
               "batch size": position(scores["batch_size"]), "learning rate": position(scores["lr"]),
               "seed": position(scores["seed"], log=False),
               f"{metric} (nats)": position(scores["score"].where(np.isfinite(scores["score"]), np.nan)).fillna(1.0)}
    names = list(axes_of)
    cmap, norm = ramp("viridis"), LogNorm(ok["score"].min(), ok["score"].max()) if len(ok) else None
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.8), width_ratios=[2.6, 1])
        for index, run in scores.reset_index(drop=True).iterrows():
            ys = [axes_of[axis].iloc[index] for axis in names]
            diverged = not (run["status"] == "ok" and np.isfinite(run["score"]))
            line, = left.plot(range(len(names)), ys, color="0.6" if diverged else cmap(norm(run["score"])),
                              linewidth=0.6, alpha=0.5 if diverged else 0.8, linestyle="--" if diverged else "-")
            hover(line, f"{run_label(run)}: {metric} " + ("diverged" if diverged else f"{run['score']:.4g} nats"))
        for i, axis in enumerate(names):
            left.axvline(i, color="black", linewidth=0.8)
            column = {"optimizer": "optimizer", "batch size": "batch_size", "learning rate": "lr", "seed": "seed"}
            if axis in column:
                for value in sorted(scores[column[axis]].unique(), key=lambda v: (str(type(v)), v)):
                    y = axes_of[axis][scores[column[axis]] == value].iloc[0]
                    shown = optimizer_label(value) if axis == "optimizer" else f"{value:g}"
                    if axis != "learning rate" or value in (scores["lr"].min(), scores["lr"].max()):
                        left.text(i - 0.04, y, shown, ha="right", va="center", fontsize=8)
            elif len(ok):  # the metric's axis: its ends
                for value, y in ((ok["score"].min(), 0.0), (ok["score"].max(), 1.0)):
                    left.text(i + 0.04, y, f"{value:.3g}", ha="left", va="center", fontsize=8)
        left.set_xticks(range(len(names)), names)
        left.set_yticks([])
        left.spines[["left", "bottom"]].set_visible(False)
        left.grid(False)
        left.set_xlim(-0.5, len(names) - 0.6)
        if norm is not None:
            bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=left, pad=0.01, fraction=0.03)
            bar.set_label(f"{metric} (nats; dashed grey: diverged)")
            bar.ax.yaxis.set_major_formatter(PlainLogFormatter())
            bar.ax.yaxis.set_minor_formatter(PlainLogFormatter())
        scopes = ["all", *[o for o in optimizers if o in set(importance["scope"])]]
        labels = {"optimizer": "optimizer", "batch_size": "batch size", "lr": "learning rate", "seed": "seed",
                  "rest": "interactions + noise"}
        factors = ["optimizer", "batch_size", "lr", "seed", "rest"]  # "lr" of all runs: within each optimizer
        for j, scope in enumerate(scopes):
            mine = importance[importance["scope"] == scope].set_index("factor")["share"]
            start = 0.0
            for k, factor in enumerate(factors):
                share = float(mine.get(factor, 0.0)) if np.isfinite(mine.get(factor, np.nan)) else 0.0
                bars = right.barh(j, share, left=start, color=plt.get_cmap("tab10")(k),
                                  label=labels[factor] if j == 0 else None)
                hover(bars.patches[0], f"{scope}: {labels[factor]} {100 * share:.0f} %")
                start += share
        right.set_yticks(range(len(scopes)), ["all runs" if s == "all" else optimizer_label(s) for s in scopes])
        right.invert_yaxis()
        right.set_xlim(0, 1)
        right.set_xlabel("share of the variance of log metric")
        right.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncols=2)
        right.set_title("what moves the metric", fontsize=9)
        return to_svg(fig, name)


def make(name: str, tables: dict[str, pd.DataFrame], config: dict) -> str:
    """Figure `name` drawn from the workflow's tables (keyed by table name; the registry the figure rules call)."""
    order = config["grid"]["optimizers"]
    t = tables
    draw = {
        "curves": lambda: curves(t["curve_bands"], t["best_lr_cells"], order),
        "lr_grid": lambda: lr_grid(t["curve_bands"], order=order),
        "critical_batch": lambda: critical_batch(t["critical_batch"], order),
        "lr_forms": lambda: lr_forms(t["best_lr"], t["lr_form_curves"], order),
        "sweep": lambda: sweep(t["lr_scores"], t["hyperparameter_importance"], config["selection"]["metric"], order),
        "lr_sensitivity": lambda: lr_sensitivity(t["lr_scores"], t["lr_summary"], t["best_lr_cells"],
                                                 config["selection"]["metric"], t["best_lr"], order),
        "trajectories": lambda: trajectories(t["minibatch"], t["lr_picks"], order),
        "early_stopping": lambda: early_stopping(t["lr_scores"], t["lr_summary"], order),
        "cost": lambda: cost(t["run_status"], t["cost_cells"], order),
        "scaling": lambda: scaling(t["best_lr"], t["best_lr_cells"], t["scaling"], order),
        "steps_to_target": lambda: steps_to_target(t["steps_to_target"], t["batch_scaling"],
                                                   config["analysis"]["confidence"], order),
        "gradvar": lambda: gradvar(t["gradvar"], t["gradvar_slopes"]),
        "noise_scale": lambda: noise_scale(t["gradvar_slopes"]),
    }
    if name not in draw:
        raise KeyError(f"no figure called '{name}'")
    return draw[name]()
