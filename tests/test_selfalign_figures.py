"""The Self-Alignment figures: each registered one drawn, numbered, captioned, as PNG and PDF."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from culturealign import figure_registry, selfalign, selfalign_figures, selfalign_summary
from test_selfalign_summary import synthetic_results


@pytest.fixture(scope="module")
def outcomes():
    parts = []
    for lang, n, unserved in (("en", 40, 3), ("de", 30, 0)):
        out = selfalign.outcomes(synthetic_results(lang, n, seed=len(lang) + n, unserved=unserved))
        parts.append(out.assign(model="m", lang=lang))
    return pd.concat(parts, ignore_index=True)


def test_figures_carry_the_papers_numbers_and_are_png_and_pdf(outcomes, tmp_path):
    t1 = selfalign_summary.table1(outcomes, runs=100)
    misalignment = pd.concat(
        [
            selfalign.misalignment(
                pd.DataFrame(
                    {
                        "probe_id": [f"{lang}{i}" for i in range(n)],
                        "qid": [f"Q{i}" for i in range(n)],
                        "category": "A",
                        "p_majority": np.linspace(0.3, 1, n),
                    }
                )
            ).assign(model="m", lang=lang)
            for lang, n in (("en", 40), ("de", 30))
        ]
    )
    assert selfalign_summary.common_questions(misalignment, ["lang"]) == {f"Q{i}" for i in range(30)}
    matrix = selfalign_summary.misaligned_matrix(misalignment, {"Q0"})
    assert matrix.loc["m", "en"] == pytest.approx(100 * (1 - 0.3**10))
    zero = pd.DataFrame(
        {
            "model": "m",
            "lang": "en",
            "probe_id": ["a"],
            "p_majority_ab": [0.9],
            "p_majority_ba": [0.5],
            "p_a": [0.5],
            "human_a": [0.7],
        }
    )
    soft = selfalign_summary.soft_alignment(outcomes, zero)
    made = selfalign_figures.figures(
        t1, outcomes, misalignment, soft, selfalign_summary.order_gaps(zero, outcomes), tmp_path
    )
    assert {
        "fig2_improved_by_strategy",
        "fig3_error_reduction_by_strategy",
        "fig4_error_reduction_by_model",
        "fig5_improved_by_model",
        "fig6_error_sizes",
        "fig7_misaligned_heatmap",
        "fig8_improved_by_category",
        "fig10_improved_by_category_language",
        "extra_soft_alignment",
        "extra_order_sensitivity",
    } == set(made)
    for paths in made.values():
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 5000 for p in paths)
    sizes = selfalign_summary.error_sizes(misalignment)
    per_lang = sizes.groupby("lang")["weight"].sum()
    assert per_lang["en"] == pytest.approx(misalignment.loc[misalignment["lang"] == "en", "p_misaligned"].sum())


def test_figures_say_so_when_no_question_is_common_to_the_languages(outcomes, tmp_path):
    # the quick tour: a couple of probes per language, no WVS question measured in every language
    disjoint = outcomes.assign(qid=outcomes["lang"] + outcomes["qid"])
    misalignment = pd.concat(
        [
            selfalign.misalignment(
                pd.DataFrame(
                    {
                        "probe_id": [f"{lang}{i}" for i in range(3)],
                        "qid": [f"{lang}Q{i}" for i in range(3)],
                        "category": "A",
                        "p_majority": [0.3, 0.6, 0.9],
                    }
                )
            ).assign(model="m", lang=lang)
            for lang in ("en", "de")
        ]
    )
    assert not selfalign_summary.common_questions(misalignment, ["lang"])
    made = selfalign_figures.figures(
        selfalign_summary.table1(disjoint, runs=50), disjoint, misalignment, pd.DataFrame(), pd.DataFrame(), tmp_path
    )
    assert {"fig4_error_reduction_by_model", "fig5_improved_by_model", "fig7_misaligned_heatmap"} <= set(made)
    assert all(p.stat().st_size > 5000 for paths in made.values() for p in paths)
    captions = json.loads((tmp_path / "captions.json").read_text())  # each caption says what it left out
    for name in ("fig4_error_reduction_by_model", "fig5_improved_by_model", "fig7_misaligned_heatmap"):
        assert captions[name].startswith("Figure ") and "omitted" in captions[name]
    assert "omitted" not in captions["fig2_improved_by_strategy"]


def test_every_summary_figure_is_registered_once_with_a_function_that_draws_it():
    stems = [f.stem for f in figure_registry.FIGURES]
    assert len(stems) == len(set(stems))
    for spec in figure_registry.drawn_by(figure_registry.SUMMARY):
        assert callable(selfalign_figures.drawing_function(spec)), spec.stem
    assert figure_registry.headline("self-alignment").stem == "fig2_improved_by_strategy"
    with pytest.raises(KeyError, match="fig2_improved_by_strategy"):
        figure_registry.figure("fig99")


def test_no_common_question_omits_that_panel_and_says_why():
    drawn = []

    def draw(frame, ax, title):
        drawn.append(title)
        ax.bar(frame["x"], frame["y"])
        ax.set_title(title)

    full = pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})
    fig, note = selfalign_figures.common_and_full(draw, "Figure 5. t", full.iloc[0:0], full, 0, 7)
    assert len(fig.axes) == 1 and drawn == ["all probes (7 questions)"] and "omitted" in note
    plt.close(fig)
    fig, note = selfalign_figures.common_and_full(draw, "Figure 5. t", full, full, 2, 7)
    assert len(fig.axes) == 2 and note == ""
    plt.close(fig)
    # every question common: one panel
    fig, note = selfalign_figures.common_and_full(draw, "Figure 5. t", full, full, 7, 7)
    assert len(fig.axes) == 1 and "same WVS questions" in note
    plt.close(fig)
