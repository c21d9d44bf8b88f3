"""Figures as a paper would print them: seaborn, labelled axes, saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
STRATEGY_ORDER = [
    "random",
    "random_category",
    "chrf_category",
    "chrf_all",
    "chrf_all_shuffled",
    "placebo_random_answer",
    "placebo_minority_answer",
]


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write stem.png (200 dpi) and stem.pdf; return both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(out[0], dpi=200, bbox_inches="tight")
    fig.savefig(out[1], bbox_inches="tight")
    plt.close(fig)
    return out


def _order(values: pd.Series) -> list[str]:
    present = list(dict.fromkeys(values))
    return [s for s in STRATEGY_ORDER if s in present] + [s for s in present if s not in STRATEGY_ORDER]


def panels(n: int, width: float = 7, height: float = 3.6) -> tuple[plt.Figure, list[plt.Axes]]:
    """n axes side by side (e.g. common questions beside the full set)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def no_data(ax: plt.Axes, title: str, why: str) -> plt.Axes:
    """A panel that says why it is empty, instead of an empty plot or a crash."""
    ax.set(title=title, xticks=[], yticks=[])
    ax.text(0.5, 0.5, why, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes, color="#555555")
    return ax


def title_of(fig: plt.Figure) -> str:
    """The figure's title: its suptitle, else its first axes' title."""
    return fig.get_suptitle() or next((ax.get_title() for ax in fig.axes if ax.get_title()), "")


def titled(fig: plt.Figure, title: str) -> plt.Figure:
    """A figure-level title (the paper's figure number and caption) above its panels."""
    fig.suptitle(title, fontsize=12)
    return fig


Points = Literal["strip", "none"]  # a box plot's values drawn over the boxes, or not


def hide_legend(ax: plt.Axes) -> None:
    """Remove a panel's legend (the next panel of the figure shows the same one)."""
    if ax.get_legend() is not None:
        ax.get_legend().remove()


def bars(
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None,
    title: str,
    ylabel: str,
    hue_order: list[str] | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Grouped bars; long category names (any label over 20 characters) get horizontal bars."""
    order = _order(frame[x]) if x == "strategy" else sorted(frame[x].unique())
    if hue_order is None and hue:
        hue_order = _order(frame[hue]) if hue == "strategy" else sorted(frame[hue].unique())
    horizontal = max(len(str(v)) for v in order) > 20
    if ax is None:
        fig, ax = plt.subplots(
            figsize=(8, 0.35 * len(order) * (len(hue_order or [1]) ** 0.5) + 1.5) if horizontal else (7, 3.6)
        )
    axes = dict(x=y, y=x) if horizontal else dict(x=x, y=y)
    sns.barplot(frame, **axes, hue=hue, order=order, hue_order=hue_order, ax=ax, errorbar=None)
    if horizontal:
        ax.set(title=title, xlabel=ylabel, ylabel="")
    else:
        ax.set(title=title, ylabel=ylabel, xlabel=x.replace("_", " "))
        ax.tick_params(axis="x", rotation=20)
    if hue:
        ax.legend(title=hue, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return ax.figure


def boxes(
    frame: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    ylabel: str,
    hue: str | None = None,
    ax: plt.Axes | None = None,
    points: Points = "strip",
) -> plt.Figure:
    """Boxes per x (and hue), with each value as a point over them unless `points` is none or a hue splits them."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    order = _order(frame[x]) if x == "strategy" else sorted(frame[x].unique())
    hue_order = (_order(frame[hue]) if hue == "strategy" else sorted(frame[hue].unique())) if hue else None
    sns.boxplot(
        frame,
        x=x,
        y=y,
        order=order,
        hue=hue,
        hue_order=hue_order,
        ax=ax,
        **({} if hue else {"color": "#9ecae1"}),
        fliersize=1.5,
    )
    if points == "strip" and not hue:
        sns.stripplot(frame, x=x, y=y, order=order, ax=ax, color="#08306b", size=2.5, alpha=0.5)
    ax.set(title=title, ylabel=ylabel, xlabel=x.replace("_", " "))
    ax.tick_params(axis="x", rotation=20)
    if hue:
        ax.legend(title=hue, fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return ax.figure


def histogram(frame: pd.DataFrame, x: str, hue: str, title: str, xlabel: str, weights: str | None = None) -> plt.Figure:
    """Percent per value of x within each hue; `weights` makes it an expected distribution."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.histplot(
        frame,
        x=x,
        hue=hue,
        hue_order=sorted(frame[hue].unique()),
        discrete=True,
        multiple="dodge",
        shrink=0.8,
        stat="percent",
        common_norm=False,
        weights=weights,
        ax=ax,
    )
    ax.set_xticks(range(int(frame[x].min()), int(frame[x].max()) + 1))
    ax.set(title=title, xlabel=xlabel, ylabel="% of misaligned probes")
    if ax.get_legend() is not None:  # beside the axes: inside, it covers the title or the bars
        sns.move_legend(
            ax, "upper left", bbox_to_anchor=(1.01, 1), title=hue, fontsize=8, ncols=1 + frame[hue].nunique() // 10
        )
    return fig


def heatmap(
    matrix: pd.DataFrame,
    title: str,
    label: str,
    fmt: str = ".0f",
    ax: plt.Axes | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> plt.Figure:
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.9 * matrix.shape[1] + 3), max(2.5, 0.45 * matrix.shape[0] + 1.5)))
    # annotations as large as a cell allows (the colour bar takes about a fifth of the axes): readable
    # when the page scales the figure down, never overlapping their neighbours
    cell_pt = 0.8 * ax.get_position().width * ax.figure.get_figwidth() * 72 / max(1, matrix.shape[1])
    sns.heatmap(
        matrix,
        annot=True,
        fmt=fmt,
        cmap="viridis",
        cbar_kws={"label": label},
        ax=ax,
        vmin=vmin,
        vmax=vmax,
        annot_kws={"size": max(6.0, min(12.0, cell_pt / 2.2))},
    )
    ax.grid(False)
    ax.tick_params(axis="y", rotation=0)  # row names read horizontally, beside the axis label
    ax.set_facecolor("#eeeeee")  # cells without data (e.g. a category a language has no probes in)
    ax.set(title=title)
    return ax.figure
