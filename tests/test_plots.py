"""Figures are legible: legends beside the data, never over a title; no panel without data."""

import matplotlib.pyplot as plt
import pandas as pd

from culturealign import plots, selfalign_figures


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_histogram_legend_sits_beside_the_axes_not_over_title_or_bars():
    frame = pd.DataFrame(
        {"errors": list(range(1, 11)) * 14, "lang": [l for l in "abcdefghijklmn" for _ in range(10)], "weight": 1.0}
    )
    fig = plots.titled(plots.histogram(frame, "errors", "lang", "", "errors", weights="weight"), "Figure 6. A title")
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the plotting area: covers no bar
    title = next(t for t in fig.texts if t.get_text() == "Figure 6. A title")
    assert not _overlaps(legend, title.get_window_extent(renderer))
    plt.close(fig)


def test_title_of_reads_the_suptitle_or_the_axes_title():
    fig, ax = plt.subplots()
    ax.set_title("axes title")
    assert plots.title_of(fig) == "axes title"
    assert plots.title_of(plots.titled(fig, "Figure 2. x")) == "Figure 2. x"
    plt.close(fig)


def test_the_first_of_two_panels_drops_its_legend_and_boxes_draw_points_only_when_asked():
    frame = pd.DataFrame({"x": ["a", "a", "b", "b"], "y": [1.0, 2.0, 3.0, 4.0], "h": ["p", "q", "p", "q"]})

    def draw(data, ax, title):
        plots.bars(data, "x", "y", "h", title, "y", ax=ax)

    fig, _ = selfalign_figures.common_and_full(draw, "Figure 5. t", frame, frame, 2, 7)
    assert fig.axes[0].get_legend() is None and fig.axes[1].get_legend() is not None
    plt.close(fig)
    strip = plots.boxes(frame, "x", "y", "t", "y")
    bare = plots.boxes(frame, "x", "y", "t", "y", points="none")
    assert len(strip.axes[0].collections) > len(bare.axes[0].collections)  # the strip plot's points
    plt.close("all")
