"""Every figure the project draws, registered once: its file stem, the paper's figure number, its
caption and the function that draws it. The summary titles and saves figures from here; the
report finds, orders, captions and places them from here (docs/tables.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SUMMARY = "summary"  # drawn by the cross-run summary into <outputs>/summary/

Section = Literal["", "self-alignment", "culturespa"]  # the report's headline section a figure illustrates


@dataclass(frozen=True)
class Figure:
    """One figure: `stem` names its PNG and PDF; `number` is the paper's figure number ("" beyond
    the papers); `draw` is the dotted path of the function that draws it; `stage` is where its
    files are written (SUMMARY, or the stage folder of each run); `headline` is the report section
    it stands beside ("" for the collapsed list)."""

    stem: str
    number: str
    caption: str
    draw: str
    stage: str = SUMMARY
    headline: Section = ""

    @property
    def title(self) -> str:
        """The caption with its figure number, as printed above the figure and below it in the report."""
        return f"Figure {self.number}. {self.caption}" if self.number else self.caption


_SA = "culturealign.selfalign_figures"
FIGURES: tuple[Figure, ...] = (
    Figure(
        "fig2_improved_by_strategy",
        "2",
        "Misaligned probes improved by self-alignment, per strategy and control",
        f"{_SA}.improved_by_strategy",
        headline="self-alignment",
    ),
    Figure(
        "fig3_error_reduction_by_strategy",
        "3",
        "Error-rate reduction of improved probes, over simulated runs of the protocol",
        f"{_SA}.error_reduction_by_strategy",
    ),
    Figure(
        "fig4_error_reduction_by_model",
        "4",
        "Error-rate reduction per model, over simulated runs of the protocol",
        f"{_SA}.error_reduction_by_model",
    ),
    Figure("fig5_improved_by_model", "5", "Misaligned probes improved, per model", f"{_SA}.improved_by_model"),
    Figure("fig6_error_sizes", "6", "Size of zero-shot errors (expected distribution)", f"{_SA}.error_size_histogram"),
    Figure("fig7_misaligned_heatmap", "7", "Zero-shot misaligned probes (expected %)", f"{_SA}.misaligned_heatmap"),
    Figure(
        "fig8_improved_by_category", "8", "Improved probes per WVS category (counts)", f"{_SA}.improved_by_category"
    ),
    Figure(
        "fig10_improved_by_category_language",
        "10",
        "Improved probes per category and language (chrF++ across)",
        f"{_SA}.improved_by_category_language",
    ),
    Figure(
        "extra_soft_alignment",
        "",
        "Beyond the paper: distance to human answer shares (common probes)",
        f"{_SA}.soft_alignment_bars",
    ),
    Figure("extra_order_sensitivity", "", "Beyond the paper: order sensitivity", f"{_SA}.order_sensitivity_boxes"),
    Figure(
        "fig_alignment",
        "",
        "CultureSPA: expected score per culture and method",
        "culturealign.plots.heatmap",
        "95_culture_eval",
        headline="culturespa",
    ),
    Figure(
        "fig_alignment_one_run",
        "",
        "CultureSPA: score of one run per culture and method",
        "culturealign.plots.heatmap",
        "95_culture_eval",
    ),
    Figure(
        "fig_countries",
        "",
        "Distributions: distance to each country's answer distribution",
        "culturealign.distributional_stats.figure_countries",
        "97_distributions",
    ),
    Figure(
        "fig_identifiability",
        "",
        "Distributions: which country each persona answers like",
        "culturealign.distributional_stats.figure_identifiability",
        "97_distributions",
    ),
    Figure(
        "fig_map",
        "",
        "Distributions: countries and personas on one map of their distances",
        "culturealign.distributional_stats.figure_map",
        "97_distributions",
    ),
    Figure(
        "fig_elicitation",
        "",
        "Distributions: distance and parse rate by way of asking",
        "culturealign.distributional_stats.figure_elicitation",
        "97_distributions",
    ),
)
BY_STEM = {figure.stem: figure for figure in FIGURES}


def figure(stem: str) -> Figure:
    """The registered figure of a stem; a KeyError names the registered ones."""
    if stem not in BY_STEM:
        known = ", ".join(BY_STEM)
        raise KeyError(f"figure {stem!r} is not registered in figure_registry.FIGURES; registered: {known}")
    return BY_STEM[stem]


def drawn_by(stage: str) -> tuple[Figure, ...]:
    """The figures a stage (or SUMMARY) writes, in the papers' order."""
    return tuple(f for f in FIGURES if f.stage == stage)


def headline(section: Section) -> Figure | None:
    """The figure that stands beside a headline section of the report, if one is registered."""
    return next((f for f in FIGURES if f.headline == section), None)
