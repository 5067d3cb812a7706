"""PNG plots of the leaderboard, drawn with matplotlib's Agg canvas.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of pyplot:
no global backend switch, no display needed, nothing left open between calls. Every title names
the scale and model, and every figure carries the scale note at its foot.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leaderboard.aggregate import HEADLINE, Board
from leaderboard.artifacts import Plot
from leaderboard.columns import optional
from leaderboard.continual import NO_TRAINING_METHOD, REFERENCE_METHOD, START_METHOD, retained_by_run
from leaderboard.document import HEADLINE_PLOT
from leaderboard.tables import METRICS, scale_note, scope

KINDS = (HEADLINE_PLOT, "trajectory", "orderings", "benchmarks", "spectrum")
DPI = 100
Color = tuple[float, float, float, float]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def method_colors(runs: pd.DataFrame) -> dict[str, Color]:
    """One colour per method, the same in every plot of a model."""
    return {m: colormaps["tab10"](i % 10) for i, m in enumerate(sorted(runs["method"].unique()))}


def saved_plot(fig: Figure, path: Path, about: tuple[str, str, str], title: str, caption: str, ax: Axes | None = None) -> Plot:
    """Title the figure (or its one ``ax``) with the scale and model, put the scale note under it and
    after the caption, write it, and describe it for the tables and the page."""
    model, scale, _ = about
    title = f"{title} — {scope(model, scale)}"
    (fig.suptitle if ax is None else ax.set_title)(title, fontsize=10)
    # supxlabel (not fig.text) so the constrained layout makes room for it under the tick labels.
    fig.supxlabel(scale_note(scale), fontsize=8, style="italic")
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return Plot(path.stem, path, model, scale, title, f"{caption} {scale_note(scale)}")


def grid(count: int, max_cols: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, at most ``max_cols`` per row."""
    cols = min(max_cols, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return fig, axes[:count]


# --- the headline: safety against utility --------------------------------------------------------
DOMAIN_COMPOSITE = "composite/domain"


def safety_utility_plot(runs: pd.DataFrame, values: pd.DataFrame, about: tuple[str, str, str], path: Path) -> Plot:
    """Final composite safety against learning retained (left) and the final domain composite
    (right): one point per method, mean ± SD over its runs on both axes; the starting model and the
    no-training reference marked."""
    finished = runs[runs["usable"] & runs["final"].notna()].set_index("run_id")
    mine = values[values["run_id"].isin(finished.index)]
    domain = mine[mine["key"] == DOMAIN_COMPOSITE]
    panels = (
        ("learning retained (% of Standard LoRA's held-out NLL gain)",
         retained_by_run(finished.reset_index(), mine), 0.0,
         f"no learning retained: it needs domain_nll and a {REFERENCE_METHOD} run in the same ordering"),
        ("final domain composite (task metrics)", domain[domain["step"] == domain["n_steps"]].set_index("run_id")["value"],
         optional(domain.loc[domain["step"] == 0, "value"].mean()), "no domain benchmarks in these runs"),
    )
    start_safety = optional(mine.loc[(mine["key"] == HEADLINE) & (mine["step"] == 0), "value"].mean())
    fig, axes = grid(len(panels), 2, 5.2, 4.2)
    for ax, (label, x, start_x, empty) in zip(axes, panels, strict=False):
        points = finished[["method", "final"]].assign(x=x).dropna()
        draw_safety_panel(ax, points, method_colors(runs), (label, empty))
        draw_start(ax, start_x, start_safety)
    caption = (
        f"One point per method: mean ± SD over its seeds and orderings (error bars on both axes). Learning retained = "
        f"a method's mean gain in held-out response NLL on each domain when trained, as % of {REFERENCE_METHOD}'s in the "
        f"same ordering; the star is the starting model (step 0, nothing learned); {NO_TRAINING_METHOD} (X) is the "
        f"built-in reference that learns nothing. Up and right is better."
    )
    return saved_plot(fig, path, about, f"Safety against utility ({about[2]})", caption)


def draw_safety_panel(ax: Axes, points: pd.DataFrame, colors: dict[str, Color], text: tuple[str, str]) -> None:
    """One panel of the headline: every method's mean point (x, final) with SD error bars on both axes."""
    label, empty = text
    for method, found in points.groupby("method"):
        (x, y), (x_sd, y_sd) = found[["x", "final"]].mean(), found[["x", "final"]].std().fillna(0.0)
        reference = method == NO_TRAINING_METHOD
        ax.errorbar([x], [y], xerr=[x_sd], yerr=[y_sd], fmt="X" if reference else "o",
                    color="black" if reference else colors[method], markersize=8 if reference else 6, capsize=3,
                    label=f"{method} (reference)" if reference else method, zorder=4)
        ax.annotate(method, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6)
    if points.empty:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="grey")
    ax.set_xlabel(label, fontsize=8)
    ax.set_ylabel("final composite safety", fontsize=8)
    ax.grid(alpha=0.3)


def draw_start(ax: Axes, x: float | None, safety: float | None) -> None:
    """The starting model's star (where both of its coordinates are known), then the legend."""
    if x is not None and safety is not None:
        ax.scatter([x], [safety], marker="*", s=180, color="grey", edgecolors="black", linewidths=0.5, zorder=3,
                   label=START_METHOD)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="best")


# --- composite trajectory ----------------------------------------------------------------------
def trajectory_plot(runs: pd.DataFrame, values: pd.DataFrame, about: tuple[str, str, str], path: Path) -> Plot:
    """Composite safety per step, one panel per ordering, mean line with a ±1 SD seed band."""
    headline = values[(values["key"] == HEADLINE) & (values["step"] <= values["n_steps"])]
    bands = headline.groupby(["ordering", "method", "step"])["value"].agg(["mean", "std"]).fillna({"std": 0.0})
    colors = method_colors(runs)
    orderings = sorted(runs.loc[runs["usable"], "ordering"].unique())
    fig, axes = grid(len(orderings), 3, 4.6, 3.4)
    for ax, ordering in zip(axes, orderings, strict=False):
        steps = ordering.split(">")
        for method, band in (bands.loc[ordering].groupby(level="method") if ordering in bands.index else []):
            x, y, sd = band.index.get_level_values("step"), band["mean"].to_numpy(), band["std"].to_numpy()
            ax.plot(x, y, marker="o", color=colors[method], label=method, linewidth=1.5, markersize=3)
            ax.fill_between(x, y - sd, y + sd, color=colors[method], alpha=0.18, linewidth=0)
        ax.set_xticks(range(len(steps) + 1), ["start", *steps], fontsize=8)
        ax.set_title(f"ordering {ordering}", fontsize=9)
        ax.set_ylabel("composite safety")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    caption = "Mean over seeds per method, band ±1 SD; failed runs excluded."
    return saved_plot(fig, path, about, "Composite safety per step", caption)


# --- ordering strip plot -----------------------------------------------------------------------
def ordering_plot(runs: pd.DataFrame, values: pd.DataFrame, about: tuple[str, str, str], path: Path) -> Plot:
    """Final composite of every run, one column per method, coloured by ordering."""
    usable = runs[runs["usable"]]
    means = usable.groupby("method")["final"].mean().reindex(sorted(runs["method"].unique())).fillna(-math.inf)
    methods = list(means.sort_values(ascending=False, kind="stable").index)
    fig = Figure(figsize=(max(5.0, 1.4 * len(methods) + 2.5), 4.4), layout="constrained")
    ax = fig.subplots()
    orderings = sorted(runs["ordering"].unique())
    for i, ordering in enumerate(orderings):
        # Fixed side-by-side offsets instead of random jitter, so re-renders are identical.
        offset = (i - (len(orderings) - 1) / 2) * 0.6 / len(orderings)
        found = usable[(usable["ordering"] == ordering) & usable["final"].notna()]
        ax.scatter([methods.index(m) + offset for m in found["method"]], found["final"], s=24, color=colormaps["Dark2"](i % 8),
                   label=ordering, edgecolors="black", linewidths=0.3)
    failed = runs[runs["status"] == "failed"].groupby("method").size()
    ax.set_xticks(range(len(methods)), [f"{m}\n({failed[m]} failed)" if m in failed else m for m in methods], fontsize=8)
    start = values.loc[(values["key"] == HEADLINE) & (values["step"] == 0), "value"]
    if len(start):
        ax.axhline(start.mean(), color="grey", linestyle="--", linewidth=1, label="starting model")
    ax.set_ylabel("final composite safety")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, title="ordering", title_fontsize=7)
    caption = "One point per finished run; failed runs are counted under the method name."
    return saved_plot(fig, path, about, f"Final composite by ordering ({about[2]})", caption, ax)


# --- per-benchmark bars --------------------------------------------------------------------------
def benchmark_plot(runs: pd.DataFrame, values: pd.DataFrame, about: tuple[str, str, str], path: Path) -> Plot | None:
    """Final-step value of each benchmark per method (starting model first), ±1 SD over runs."""
    domains = about[2]
    final = values[values["step"] == values["n_steps"]].groupby(["key", "method"])["value"].agg(["mean", "std"])
    start = values[values["step"] == 0].groupby("key")["value"].agg(["mean", "std"])
    keys = [(k, label) for k, label in METRICS if k in final.index.get_level_values("key")]
    if not keys:
        return None
    colors = method_colors(runs)
    methods = sorted(values["method"].unique())
    fig, axes = grid(len(keys), 4, 3.3, 2.9)
    for ax, (key, label) in zip(axes, keys, strict=False):
        bars = [("start", start.reindex([key]).iloc[0], (0.6, 0.6, 0.6, 1.0))]
        bars += [(m, final.reindex([(key, m)]).iloc[0], colors[m]) for m in methods]
        for x, (_, (value, sd), color) in enumerate(bars):
            if math.isnan(value):
                # Say so where the bar would be: an absent number must not look like a zero.
                ax.text(x, 0, "missing", rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
            else:
                ax.bar(x, value, yerr=0.0 if math.isnan(sd) else sd, color=color, capsize=2)
        ax.set_xticks(range(len(bars)), [name for name, *_ in bars], rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{label} ({key})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    caption = (f"Mean ± SD over every ordering and seed of {domains}; 'start' is step 0; 'missing' marks a method "
               "with no number for that benchmark.")
    return saved_plot(fig, path, about, f"Benchmarks at the final step ({domains})", caption)


# --- Fisher spectrum -----------------------------------------------------------------------------
DATA_KINDS = (("safety", "tab:red"), ("random", "tab:blue"))


def logged(spectra: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The entries with eigenvalues on ``kind`` data: layer, eigenvalues, trace (tr(F) > 0, else NaN), k90."""
    found = spectra[spectra[f"eigenvalues_{kind}"].map(len) > 0]
    trace = found[f"trace_{kind}"].astype(float)
    return pd.DataFrame({"layer": found["layer"], "eigenvalues": found[f"eigenvalues_{kind}"],
                         "trace": trace.where(trace > 0), "k90": found[f"k90_{kind}"].astype(float)})


def spectrum_plot(spectra: pd.DataFrame, about: tuple[str, str, str], path: Path) -> Plot | None:
    """Share of tr(F) in the top k eigenvectors, safety vs random data: first a summary panel (the
    mean over layers), then one panel per layer; dashed lines mark the table's k90."""
    kinds = {kind: logged(spectra, kind) for kind, _ in DATA_KINDS}
    layers = sorted(set().union(*(set(found["layer"]) for found in kinds.values())))
    if not layers:
        return None
    # Normalising by tr(F) (as k90 is defined) needs the trace; older step files lack it.
    by_trace = all(found["trace"].notna().all() for found in kinds.values())
    curves = {layer: {kind: cumulative_mass(*found.loc[found["layer"] == layer, ["eigenvalues", "trace"]].T.values, by_trace)
                      for kind, found in kinds.items()} for layer in layers}
    summary = {kind: mean_curve([c[kind] for c in curves.values() if c[kind] is not None]) for kind in kinds}
    fig, axes = grid(len(layers) + 1, 3, 3.6, 2.9)
    draw_mass(axes[0], summary, {kind: optional(found["k90"].mean()) for kind, found in kinds.items()},
              f"mean over {len(layers)} layers", by_trace)
    for ax, layer in zip(axes[1:], layers, strict=False):
        k90 = {kind: optional(found.loc[found["layer"] == layer, "k90"].mean()) for kind, found in kinds.items()}
        draw_mass(ax, curves[layer], k90, layer, by_trace)
    norm = "tr(F), as the table's k90" if by_trace else "the sum of the logged top eigenvalues (tr(F) not logged by these runs)"
    caption = (
        f"Share of the Fisher information in the top k eigenvectors, normalised by {norm}; mean over logged runs "
        f"and steps. First panel: mean over layers. Dotted: 90%; dashed: k90 from the table."
    )
    return saved_plot(fig, path, about, f"Fisher spectrum, {about[2]}", caption)


def draw_mass(ax: Axes, curves: dict[str, np.ndarray | None], k90: dict[str, float | None], title: str, by_trace: bool) -> None:
    right = 1
    for kind, color in DATA_KINDS:
        curve, rank = curves.get(kind), k90.get(kind)
        if curve is not None:
            ax.plot(range(1, len(curve) + 1), curve, color=color, label=f"{kind} data")
            right = max(right, len(curve))
        if rank is not None and by_trace:  # k90 is on the trace's scale: meaningless against another normaliser
            ax.axvline(rank, color=color, linestyle="--", linewidth=1, label=f"k90 {kind} = {rank:.3g}")
            right = max(right, int(rank) + 1)
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0.5, right + 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("eigenvectors kept", fontsize=8)
    ax.set_ylabel("share of tr(F)" if by_trace else "share of top-k mass", fontsize=8)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def cumulative_mass(eigenvalues: Iterable[list[float]], traces: Iterable[float], by_trace: bool) -> np.ndarray | None:
    """Mean cumulative eigenvalue share over spectra cut to their common length, each divided by
    its tr(F) (``by_trace``) or else by its own top-k sum."""
    curves = []
    for values, trace in zip(eigenvalues, traces, strict=False):
        top = np.sort(np.abs(np.asarray(values, dtype=float)))[::-1]
        total = trace if by_trace and trace > 0 else top.sum()
        if total > 0:
            curves.append(np.cumsum(top) / total)
    return mean_curve(curves)


def mean_curve(curves: list[np.ndarray]) -> np.ndarray | None:
    if not curves:
        return None
    length = min(len(c) for c in curves)
    return np.mean([c[:length] for c in curves], axis=0)


# --- all plots -----------------------------------------------------------------------------------
def write_plots(board: Board, folder: Path) -> list[Plot]:
    """Draw every plot the results support into ``folder``; plots from an earlier render are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        for stale in folder.glob(f"{kind}__*.png"):
            stale.unlink()
    plots: list[Plot | None] = []
    for about, runs in board.current.groupby(["model", "scale", "domain_set"]):
        values = board.frames["values"][board.frames["values"]["run_id"].isin(runs["run_id"])]
        stem = "__".join(slug(part) for part in about)
        drawn = [(HEADLINE_PLOT, safety_utility_plot), ("trajectory", trajectory_plot), ("orderings", ordering_plot)]
        plots += [draw(runs, values, about, folder / f"{kind}__{stem}.png") for kind, draw in drawn if runs["usable"].any()]
        plots.append(benchmark_plot(runs, values, about, folder / f"benchmarks__{stem}.png"))
    for about, spectra in board.frames["spectra"].groupby(["model", "scale", "method"]):
        plots.append(spectrum_plot(spectra, about, folder / f"spectrum__{'__'.join(slug(part) for part in about)}.png"))
    return [plot for plot in plots if plot is not None]
