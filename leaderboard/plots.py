"""PNG plots of the leaderboard, drawn with matplotlib's Agg canvas.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas instead of pyplot:
no global backend switch, no display needed, nothing left open between calls. Every title names
the scale and model, and every figure carries the scale note at its foot.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leaderboard.aggregate import START_METHOD, Board, RunSummary, Spectrum, domain_set, group_by, mean, mean_sd, spectra
from leaderboard.artifacts import Plot
from leaderboard.continual import NO_TRAINING_METHOD, REFERENCE_METHOD, retained_by_run
from leaderboard.tables import HEADLINE_PLOT, METRICS, scale_note, scope

KINDS = (HEADLINE_PLOT, "trajectory", "orderings", "benchmarks", "spectrum")
DPI = 100
Color = tuple[float, float, float, float]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def method_colors(runs: list[RunSummary]) -> dict[str, Color]:
    """One colour per method, the same in every plot of a model."""
    return {m: colormaps["tab10"](i % 10) for i, m in enumerate(sorted({r.method for r in runs}))}


def save(fig: Figure, path: Path, scale: str) -> None:
    # supxlabel (not fig.text) so the constrained layout makes room for it under the tick labels.
    fig.supxlabel(scale_note(scale), fontsize=8, style="italic")
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")


def saved_plot(fig: Figure, path: Path, model: str, scale: str, title: str, caption: str) -> Plot:
    """Write the figure (with its scale note) and describe it for the tables and the page."""
    save(fig, path, scale)
    return Plot(path.stem, path, model, scale, title, caption)


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
Point = tuple[float, float]


def safety_utility_plot(runs: list[RunSummary], model: str, scale: str, domains: str, path: Path) -> Plot:
    """Final composite safety against learning retained (left) and the final domain composite
    (right): one point per method, mean ± SD over its runs on both axes; the starting model and the
    no-training reference marked."""
    usable = [r for r in runs if r.usable and r.final is not None]
    retained = retained_by_run(usable)
    panels = (
        ("learning retained (% of Standard LoRA's held-out NLL gain)",
         lambda r: retained.get(r.run_id), 0.0,
         f"no learning retained: it needs domain_nll and a {REFERENCE_METHOD} run in the same ordering"),
        ("final domain composite (task metrics)",
         lambda r: r.value(r.n_steps, DOMAIN_COMPOSITE), mean_sd(r.value(0, DOMAIN_COMPOSITE) for r in usable)[0],
         "no domain benchmarks in these runs"),
    )
    colors = method_colors(runs)
    start_safety, _ = mean_sd(r.value(0) for r in usable)
    fig, axes = grid(len(panels), 2, 5.2, 4.2)
    for ax, (label, x_of, start_x, empty) in zip(axes, panels):
        drawn = 0
        for method, method_runs in sorted(group_by(usable, lambda r: r.method).items()):
            points = [(x, r.final) for r in method_runs if (x := x_of(r)) is not None]
            drawn += draw_method_point(ax, method, points, colors[method])
        if start_safety is not None and start_x is not None:
            ax.scatter([start_x], [start_safety], marker="*", s=180, color="grey", edgecolors="black",
                       linewidths=0.5, zorder=3, label=START_METHOD)
        if not drawn:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="grey")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("final composite safety", fontsize=8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    title = f"Safety against utility ({domains}) — {scope(model, scale)}"
    fig.suptitle(title, fontsize=10)
    caption = (
        f"One point per method: mean ± SD over its seeds and orderings (error bars on both axes). Learning retained = "
        f"a method's mean gain in held-out response NLL on each domain when trained, as % of {REFERENCE_METHOD}'s in the "
        f"same ordering; the star is the starting model (step 0, nothing learned); {NO_TRAINING_METHOD} (X) is the "
        f"built-in reference that learns nothing. Up and right is better. {scale_note(scale)}"
    )
    return saved_plot(fig, path, model, scale, title, caption)


def draw_method_point(ax: Axes, method: str, points: list[Point], color: Color) -> int:
    """A method's mean point with SD error bars on both axes; 0 when it has no point to draw."""
    if not points:
        return 0
    (x, x_sd), (y, y_sd) = mean_sd(p[0] for p in points), mean_sd(p[1] for p in points)
    reference = method == NO_TRAINING_METHOD
    ax.errorbar([x], [y], xerr=[x_sd or 0.0], yerr=[y_sd or 0.0], fmt="X" if reference else "o",
                color="black" if reference else color, markersize=8 if reference else 6, capsize=3,
                label=f"{method} (reference)" if reference else method, zorder=4)
    ax.annotate(method, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6)
    return 1


# --- composite trajectory ----------------------------------------------------------------------
def trajectory_plot(runs: list[RunSummary], model: str, scale: str, path: Path) -> Plot:
    """Composite safety per step, one panel per ordering, mean line with a ±1 SD seed band."""
    by_ordering = group_by([r for r in runs if r.usable], lambda r: r.ordering)
    colors = method_colors(runs)
    fig, axes = grid(len(by_ordering), 3, 4.6, 3.4)
    for ax, (ordering, ordering_runs) in zip(axes, sorted(by_ordering.items())):
        steps = ordering.split(">")
        for method, method_runs in sorted(group_by(ordering_runs, lambda r: r.method).items()):
            draw_band(ax, method_runs, len(steps), method, colors[method])
        ax.set_xticks(range(len(steps) + 1), ["start", *steps], fontsize=8)
        ax.set_title(f"ordering {ordering}", fontsize=9)
        ax.set_ylabel("composite safety")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    title = f"Composite safety per step — {scope(model, scale)}"
    fig.suptitle(title, fontsize=10)
    caption = f"Mean over seeds per method, band ±1 SD; failed runs excluded. {scale_note(scale)}"
    return saved_plot(fig, path, model, scale, title, caption)


def draw_band(ax: Axes, runs: list[RunSummary], n_steps: int, method: str, color: Color) -> None:
    stats = [mean_sd(r.value(step) for r in runs) for step in range(n_steps + 1)]
    points = [(step, m, sd or 0.0) for step, (m, sd) in enumerate(stats) if m is not None]
    if not points:
        return
    x, y, sd = (np.array(v, dtype=float) for v in zip(*points))
    ax.plot(x, y, marker="o", color=color, label=method, linewidth=1.5, markersize=3)
    ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.18, linewidth=0)


# --- ordering strip plot -----------------------------------------------------------------------
def ordering_plot(runs: list[RunSummary], model: str, scale: str, domains: str, path: Path) -> Plot:
    """Final composite of every run, one column per method, coloured by ordering."""
    orderings = sorted({r.ordering for r in runs})
    by_method = group_by(runs, lambda r: r.method)
    methods = sorted(by_method, key=lambda m: final_mean(by_method[m]), reverse=True)
    fig = Figure(figsize=(max(5.0, 1.4 * len(methods) + 2.5), 4.4), layout="constrained")
    ax = fig.subplots()
    for i, ordering in enumerate(orderings):
        # Fixed side-by-side offsets instead of random jitter, so re-renders are identical.
        offset = (i - (len(orderings) - 1) / 2) * 0.6 / len(orderings)
        points = [
            (x + offset, r.final)
            for x, method in enumerate(methods)
            for r in by_method[method]
            if r.usable and r.ordering == ordering and r.final is not None
        ]
        xs, ys = zip(*points) if points else ((), ())
        color = colormaps["Dark2"](i % 8)
        ax.scatter(xs, ys, s=24, color=color, label=ordering, edgecolors="black", linewidths=0.3)
    ax.set_xticks(range(len(methods)), [tick_label(m, by_method[m]) for m in methods], fontsize=8)
    start, _ = mean_sd(r.value(0) for r in runs if r.usable)
    if start is not None:
        ax.axhline(start, color="grey", linestyle="--", linewidth=1, label="starting model")
    ax.set_ylabel("final composite safety")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, title="ordering", title_fontsize=7)
    title = f"Final composite by ordering ({domains}) — {scope(model, scale)}"
    ax.set_title(title, fontsize=10)
    caption = f"One point per finished run; failed runs are counted under the method name. {scale_note(scale)}"
    return saved_plot(fig, path, model, scale, title, caption)


def final_mean(runs: list[RunSummary]) -> float:
    """Sort key: mean final composite, methods without one last."""
    value, _ = mean_sd(r.final for r in runs if r.usable)
    return float("-inf") if value is None else value


def tick_label(method: str, runs: list[RunSummary]) -> str:
    failed = sum(1 for r in runs if r.status == "failed")
    return f"{method}\n({failed} failed)" if failed else method


# --- per-benchmark bars --------------------------------------------------------------------------
def benchmark_plot(runs: list[RunSummary], model: str, scale: str, domains: str, path: Path) -> Plot | None:
    """Final-step value of each benchmark per method (starting model first), ±1 SD over runs."""
    usable = [r for r in runs if r.usable]
    keys = [(k, label) for k, label in METRICS if any(r.value(r.n_steps, k) is not None for r in usable)]
    if not keys:
        return None
    colors = method_colors(runs)
    by_method = group_by(usable, lambda r: r.method)
    fig, axes = grid(len(keys), 4, 3.3, 2.9)
    for ax, (key, label) in zip(axes, keys):
        bars = [("start", mean_sd(r.value(0, key) for r in usable), (0.6, 0.6, 0.6, 1.0))]
        bars += [(m, mean_sd(r.value(r.n_steps, key) for r in rs), colors[m]) for m, rs in sorted(by_method.items())]
        for x, (_, (value, sd), color) in enumerate(bars):
            if value is None:
                # Say so where the bar would be: an absent number must not look like a zero.
                ax.text(x, 0, "missing", rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
            else:
                ax.bar(x, value, yerr=sd or 0.0, color=color, capsize=2)
        ax.set_xticks(range(len(bars)), [name for name, *_ in bars], rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{label} ({key})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    title = f"Benchmarks at the final step ({domains}) — {scope(model, scale)}"
    fig.suptitle(title, fontsize=10)
    caption = (
        f"Mean ± SD over every ordering and seed of {domains}; 'start' is step 0; 'missing' marks a method "
        f"with no number for that benchmark. {scale_note(scale)}"
    )
    return saved_plot(fig, path, model, scale, title, caption)


# --- Fisher spectrum -----------------------------------------------------------------------------
DATA_KINDS = (("safety", "tab:red"), ("random", "tab:blue"))


def spectrum_plot(runs: list[RunSummary], model: str, scale: str, method: str, path: Path) -> Plot | None:
    """Share of tr(F) in the top k eigenvectors, safety vs random data: first a summary panel (the
    mean over layers), then one panel per layer; dashed lines mark the table's k90."""
    layers = spectra(runs, model, scale, method)
    if not layers:
        return None
    # Normalising by tr(F) (as k90 is defined) needs the trace; older step files lack it.
    by_trace = all(s.trace is not None for kinds in layers.values() for found in kinds.values() for s in found)
    curves = {layer: {kind: cumulative_mass(kinds[kind], by_trace) for kind, _ in DATA_KINDS} for layer, kinds in layers.items()}
    fig, axes = grid(len(layers) + 1, 3, 3.6, 2.9)
    summary = {kind: mean_curve([c[kind] for c in curves.values() if c[kind] is not None]) for kind, _ in DATA_KINDS}
    summary_k90 = {kind: mean(s.k90 for kinds in layers.values() for s in kinds[kind]) for kind, _ in DATA_KINDS}
    draw_mass(axes[0], summary, summary_k90, f"mean over {len(layers)} layers", by_trace)
    for ax, layer in zip(axes[1:], sorted(layers)):
        draw_mass(ax, curves[layer], {kind: mean(s.k90 for s in layers[layer][kind]) for kind, _ in DATA_KINDS}, layer, by_trace)
    title = f"Fisher spectrum, {method} — {scope(model, scale)}"
    fig.suptitle(title, fontsize=10)
    norm = "tr(F), as the table's k90" if by_trace else "the sum of the logged top eigenvalues (tr(F) not logged by these runs)"
    caption = (
        f"Share of the Fisher information in the top k eigenvectors, normalised by {norm}; mean over logged runs "
        f"and steps. First panel: mean over layers. Dotted: 90%; dashed: k90 from the table. {scale_note(scale)}"
    )
    return saved_plot(fig, path, model, scale, title, caption)


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


def cumulative_mass(found: list[Spectrum], by_trace: bool) -> np.ndarray | None:
    """Mean cumulative eigenvalue share over spectra cut to their common length, each divided by
    its tr(F) (``by_trace``) or else by its own top-k sum."""
    curves = []
    for spectrum in found:
        top = np.sort(np.abs(np.asarray(spectrum.eigenvalues, dtype=float)))[::-1]
        total = spectrum.trace if by_trace and spectrum.trace else top.sum()
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
    for (model, scale, domains), runs in sorted(group_by(board.current, lambda r: (r.model, r.scale, domain_set(r))).items()):
        stem = f"{slug(model)}__{slug(scale)}__{slug(domains)}"
        if any(r.usable for r in runs):
            plots.append(safety_utility_plot(runs, model, scale, domains, folder / f"{HEADLINE_PLOT}__{stem}.png"))
            plots.append(trajectory_plot(runs, model, scale, folder / f"trajectory__{stem}.png"))
            plots.append(ordering_plot(runs, model, scale, domains, folder / f"orderings__{stem}.png"))
        plots.append(benchmark_plot(runs, model, scale, domains, folder / f"benchmarks__{stem}.png"))
    for model, scale, method in sorted({(r.model, r.scale, r.method) for r in board.current if r.fisher}):
        path = folder / f"spectrum__{slug(model)}__{slug(scale)}__{slug(method)}.png"
        plots.append(spectrum_plot(board.current, model, scale, method, path))
    return [plot for plot in plots if plot is not None]
