"""Self-Alignment's figures (the paper's Figures 2-8 and 10, and two beyond it): the data they are
drawn from, prepared once, and one drawing function per figure. Stems, numbers and captions are
registered in `figure_registry` (docs/tables.md)."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import pandas as pd

from . import figure_registry, plots
from .figure_registry import SUMMARY
from .figure_registry import Figure as Registered
from .selfalign_summary import (
    common_probes,
    common_questions,
    error_sizes,
    misaligned_matrix,
    served_rows,
    simulated_error_reductions,
)

OMITTED_COMMON = (
    "The panel on WVS questions common to the languages is omitted: no question was measured in every language."
)
SAME_QUESTIONS = "Every language measured the same WVS questions, so one panel shows them all."
# Figures 3-4 pool the improved probes' error reductions over this many simulated runs; each run
# adds a row per improved probe, so this is kept apart from (and below) Table 1's simulation_runs.
# The caption states the number.
FIGURE_RUNS = 50
Drawn = tuple[plt.Figure, str] | None  # a figure and a note for its caption, or None without the data it needs


@dataclass(frozen=True)
class SummaryData:
    """What the summary's figures are drawn from: Table 1, the outcomes, the zero-shot misalignment,
    soft alignment and order gaps, and the same-probe and same-question subsets derived once."""

    t1: pd.DataFrame
    outcomes: pd.DataFrame
    misalignment: pd.DataFrame
    soft: pd.DataFrame
    gaps: pd.DataFrame
    same: pd.DataFrame  # served rows on each language's common probes
    compared: set[str]  # WVS questions every language measured with self-alignment (Figures 4-5)
    shared: set[str]  # WVS questions every language measured zero-shot (Figure 7)
    error_reductions: pd.DataFrame
    simulation_runs: int  # the simulated runs of the protocol behind error_reductions

    @property
    def runs_note(self) -> str:
        return f"{self.simulation_runs} simulated runs of the protocol, pooled"


def prepare(
    t1: pd.DataFrame,
    outcomes: pd.DataFrame,
    misalignment: pd.DataFrame,
    soft: pd.DataFrame,
    gaps: pd.DataFrame,
    seed: int = 0,
) -> SummaryData:
    """The summary tables and the subsets every comparison across languages is drawn on."""
    served = served_rows(outcomes)
    common_by_run = {key: common_probes(g) for key, g in outcomes.groupby(["model", "lang"])}
    same = served[
        [pid in common_by_run[(m, l)] for m, l, pid in zip(served["model"], served["lang"], served["probe_id"])]
    ]
    return SummaryData(
        t1,
        outcomes,
        misalignment,
        soft,
        gaps,
        same,
        compared=common_questions(same, ["lang"]),
        shared=common_questions(misalignment, ["lang"]),
        error_reductions=simulated_error_reductions(outcomes, runs=FIGURE_RUNS, seed=seed),
        simulation_runs=FIGURE_RUNS,
    )


def improved_pct(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """% improved (expected) of the summed P(misaligned) per group."""
    g = frame.groupby(by)[["improved", "misaligned"]].sum()
    return (100 * g["improved"] / g["misaligned"]).rename("improved").reset_index()


def common_and_full(
    draw, title: str, common: pd.DataFrame, full: pd.DataFrame, n_common: int, n_full: int, **kw
) -> tuple[Any, str]:
    """The comparison on the questions every language measured, beside the one on all probes, and
    a caption note. With no question common to the languages that panel is omitted (an empty panel
    shows nothing), and with every question common the two panels are one; the note says which."""
    if common.empty or n_common == n_full:
        fig, axes = plots.panels(1, **kw)
        draw(full, axes[0], f"all probes ({n_full} questions)")
        return plots.titled(fig, title), OMITTED_COMMON if common.empty else SAME_QUESTIONS
    fig, axes = plots.panels(2, **kw)
    draw(common, axes[0], f"{n_common} WVS questions common to the languages")
    plots.hide_legend(axes[0])
    draw(full, axes[1], f"all probes ({n_full} questions)")
    return plots.titled(fig, title), ""


def improved_by_strategy(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 2: % improved per condition and language."""
    fig = plots.bars(data.t1, "strategy", "improved", "lang", "", "% of misaligned probes improved (expected)")
    return plots.titled(fig, spec.title), ""


def error_reduction_by_strategy(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 3: error-rate reductions of the improved probes per condition."""
    er = data.error_reductions
    fig = plots.boxes(er, "strategy", "error_reduction", "", "(d_orig - d_corr) / d_orig", points="none")
    return plots.titled(fig, spec.title), data.runs_note


def error_reduction_by_model(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 4: error-rate reductions per model, on the common questions beside all probes."""

    def draw(frame, ax, title):
        ylabel = "(d_orig - d_corr) / d_orig"
        return plots.boxes(frame, "model", "error_reduction", title, ylabel, hue="strategy", ax=ax, points="none")

    er, same = data.error_reductions, data.same
    common = er[er["qid"].isin(data.compared)]
    fig, note = common_and_full(draw, spec.title, common, er, len(data.compared), same["qid"].nunique())
    return fig, ". ".join(filter(None, [data.runs_note, note]))


def improved_by_model(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 5: % improved per model and condition, on the common questions beside all probes."""

    def draw(frame, ax, title):
        return plots.bars(frame, "model", "improved", "strategy", title, "% improved (expected)", ax=ax)

    same = data.same
    common = improved_pct(same[same["qid"].isin(data.compared)], ["model", "strategy"])
    full = improved_pct(same, ["model", "strategy"])
    return common_and_full(draw, spec.title, common, full, len(data.compared), same["qid"].nunique())


def error_size_histogram(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 6: expected distribution of zero-shot misaligned responses out of 10, per language."""
    if data.misalignment.empty:
        return None
    sizes = error_sizes(data.misalignment)
    fig = plots.histogram(sizes, "errors", "lang", "", "misaligned responses out of 10 (d_orig)", weights="weight")
    return plots.titled(fig, spec.title), ""


def misaligned_heatmap(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 7: expected % misaligned, model x language, on the common questions beside all probes."""
    mis = data.misalignment
    if mis.empty:
        return None

    def draw(matrix, ax, title):
        return plots.heatmap(matrix, title, "% misaligned (expected)", ax=ax, vmin=0, vmax=100)

    common, full = misaligned_matrix(mis, data.shared), misaligned_matrix(mis)
    width = max(5.5, 0.5 * mis["lang"].nunique() + 1.5)
    return common_and_full(draw, spec.title, common, full, len(data.shared), mis["qid"].nunique(), width=width)


def improved_by_category(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 8: expected count of improved probes per WVS category and condition."""
    counts = data.same.groupby(["category", "strategy"])["improved"].sum().reset_index()
    fig = plots.bars(counts, "category", "improved", "strategy", "", "improved probes (expected count)")
    return plots.titled(fig, spec.title), ""


def improved_by_category_language(data: SummaryData, spec: Registered) -> Drawn:
    """Figure 10: % improved per category and language under chrF++ across categories."""
    chrf = data.same[data.same["strategy"] == "chrf_all"]
    if chrf.empty:
        return None
    matrix = improved_pct(chrf, ["category", "lang"]).pivot_table(index="category", columns="lang", values="improved")
    fig = plots.heatmap(matrix, "", "% improved (expected)", vmin=0, vmax=100)
    return plots.titled(fig, spec.title), ""


def soft_alignment_bars(data: SummaryData, spec: Registered) -> Drawn:
    """Beyond the paper: distance to the human answer shares, zero-shot and self-aligned, per language."""
    if data.soft.empty:
        return None
    long = data.soft.melt(
        id_vars=["model", "lang"], value_vars=["zero_shot", "self_aligned"], var_name="setting", value_name="distance"
    )
    order = ["zero_shot", "self_aligned"]
    return plots.bars(long, "lang", "distance", "setting", spec.title, "total variation distance", order), ""


def order_sensitivity_boxes(data: SummaryData, spec: Registered) -> Drawn:
    """Beyond the paper: |p(A,B) - p(B,A)| per language, zero-shot and chrF++ across."""
    if data.gaps.empty:
        return None
    shown = data.gaps[data.gaps["condition"].isin(["zero_shot", "chrf_all"])]
    ylabel = "|p(A,B) - p(B,A)| of the majority answer"
    return plots.boxes(shown, "lang", "gap", spec.title, ylabel, hue="condition", points="none"), ""


def drawing_function(spec: Registered) -> Callable[[SummaryData, Registered], Drawn]:
    """The function the registry names for a figure."""
    module, name = spec.draw.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def figures(
    t1: pd.DataFrame,
    outcomes: pd.DataFrame,
    misalignment: pd.DataFrame,
    soft: pd.DataFrame,
    gaps: pd.DataFrame,
    out: Path,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Every registered summary figure the data allows, as PNG and PDF under `out`, and
    captions.json beside them: each figure's registered title and why a panel is omitted."""
    data = prepare(t1, outcomes, misalignment, soft, gaps, seed)
    saved, captions = {}, {}
    for spec in figure_registry.drawn_by(SUMMARY):
        drawn = drawing_function(spec)(data, spec)
        if drawn is None:
            continue
        fig, note = drawn
        captions[spec.stem] = ". ".join(filter(None, [spec.title.rstrip("."), note]))
        saved[spec.stem] = plots.save(fig, out / spec.stem)
    out.mkdir(parents=True, exist_ok=True)
    (out / "captions.json").write_text(json.dumps(captions, indent=1), encoding="utf-8")
    return saved
