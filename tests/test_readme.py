"""The README is a reference: it types no measured figure and narrates no history; its links resolve."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A measured figure: a time, a rate or speed-up, a result percentage (a 95% interval names a level, not a result).
MEASURED = [
    (re.compile(r"\b\d+(?:[.,]\d+)?\s*(?:min(?:ute)?s?|h(?:ours?)?|s(?:ec(?:ond)?s?)?)\b(?!-)", re.IGNORECASE), "time"),
    (re.compile(r"\b\d+(?:\.\d+)?\s*(?:tokens|prompts|items|probes)?\s*/\s*s\b", re.IGNORECASE), "rate"),
    (re.compile(r"\b\d+(?:\.\d+)?x\b"), "speed-up"),
    (re.compile(r"\b(?!95%)\d+(?:\.\d+)?\s?%"), "percentage"),
]
HISTORY = re.compile(r"\b(now|previously|no longer|used to|were fixed|is fixed|old rule|this session)\b", re.IGNORECASE)
OWN_DOCS = ["README.md", "docs/measurement.md", "docs/scaling.md", "docs/data.md"]
ELSEWHERE = {"docs/protocol.md"}  # the statistics page, written and tested with the statistics (issue 25)


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`]*`", "", text)


def measured_figures(text: str) -> list[str]:
    return [f"{kind}: {m.group(0)!r}" for pattern, kind in MEASURED for m in pattern.finditer(prose(text))]


@pytest.mark.parametrize(
    "text, found",
    [
        ("`make quick` took 18 minutes 37 here.", True),
        ("a bare forward 576 tokens/s and 1.18x faster", True),
        ("improved 61.3% of misaligned probes", True),
        ("```bash\nmake test   # 36-40 minutes\n```\nthe 95% interval", False),
        ("see `results/quick/RESULTS.md` for the time", False),
    ],
)
def test_the_check_catches_typed_figures_and_spares_code(text, found):
    assert bool(measured_figures(text)) is found


@pytest.mark.parametrize("name", OWN_DOCS)
def test_reference_text_types_no_measured_figure_and_narrates_no_history(name):
    text = (REPO / name).read_text(encoding="utf-8")
    assert not measured_figures(text), f"{name} types measured figures; link to results/ or docs/benchmarks.md instead"
    assert not HISTORY.findall(prose(text)), f"{name} narrates history: {HISTORY.findall(prose(text))}"


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    for target in set(re.findall(r"\]\(([^)#]+)\)", text)) - ELSEWHERE:
        assert (REPO / target).exists(), target
    for heading in (
        "## Start",
        "## Results",
        "## One stage, one model, one language",
        "## Another model, a GPU, vLLM",
        "## Layout",
        "## Data terms",
    ):
        assert heading in text
