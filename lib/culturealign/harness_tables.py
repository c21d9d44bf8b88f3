"""The lm-evaluation-harness runs' tables in summary/ (`harness.write_summaries`, which `make
report` calls), declared once: each column's type, unit and meaning (docs/tables.md,
docs/measurement.md). The metrics are the ones the harness tasks report."""

from __future__ import annotations

from . import harness_utils
from .tables import Column, Table, Unit

SELFALIGN_METRICS = ("p_majority", "aligned")  # what a Self-Alignment task reports per prompt
WVS_METRICS = tuple(f"{d}{s}" for d in harness_utils.DISTANCES for s in ("", "_floor"))  # per WVS question

RUN = (
    Column("run", "str", "", "the model folder a harness run evaluated"),
    Column("task", "str", "", "the lm-evaluation-harness task"),
)
PROVENANCE = (
    Column("limit", "float", "", "the run's --limit: documents per task it stopped at (empty: every document)"),
    Column("date", "str", "", "when the harness run started", "date (UTC)"),
    Column("results", "str", "", "the run's results JSON, under <outputs>/harness", "results file"),
)
MEASURED: dict[str, tuple[Unit, str, str]] = {  # metric -> unit, header, meaning
    "p_majority": (
        "probability", "P(majority), per prompt",
        "harness: mean over prompts (each option order one) of P(majority option)",
    ),
    "aligned": ("share", "aligned, per prompt", "harness: share of prompts whose majority option is the more probable"),
    "w1": (
        "distance", "W1",
        "Wasserstein-1 to the human distribution on the ordered scale, / (k-1); mean over questions",
    ),
    "jsd": ("distance", "JSD", "Jensen-Shannon distance (base 2) to the human distribution; mean over questions"),
    "tv": ("distance", "TV", "total variation distance to the human distribution; mean over questions"),
    "w1_floor": (
        "distance", "W1 of the average",
        "W1 of the all-countries average distribution: no knowledge of the country",
    ),
    "jsd_floor": ("distance", "JSD of the average", "JSD of the all-countries average distribution"),
    "tv_floor": ("distance", "TV of the average", "TV of the all-countries average distribution"),
}  # fmt: skip


def with_error(metric: str) -> tuple[Column, Column]:
    """A harness metric and its standard error."""
    unit, header, meaning = MEASURED[metric]
    return (
        Column(metric, "float", unit, meaning, header),
        Column(f"{metric}_stderr", "float", unit, "the harness's standard error", f"{header}: SE"),
    )


def interval(name: str, unit: Unit, header: str, meaning: str, how: str) -> tuple[Column, ...]:
    """A number with its 95% interval (`how`: which interval, of what)."""
    return (
        Column(name, "float", unit, meaning, header),
        Column(f"{name}_low", "float", unit, f"{how}: low end", f"{header}: low"),
        Column(f"{name}_high", "float", unit, f"{how}: high end", f"{header}: high"),
    )


SELFALIGN = Table(
    "harness_selfalign.csv",
    "harness run and Self-Alignment task (one language): the harness's per-prompt means and, from its "
    "logged samples, the project's per-probe numbers",
    (
        *RUN,
        Column("lang", "str", "", "the task's probe language", "language"),
        Column("country", "str", "", "the country the language's labels come from"),
        Column("probes", "int", "count", "probes the run scored (both orders of each)"),
        Column("prompts", "int", "count", "documents the run scored: each probe once per option order"),
        *interval(
            "probe_p_majority", "probability", "P(majority)",
            "mean over probes of P(majority option), both orders averaged",
            "bootstrap 95% interval of the mean over probes",
        ),
        *interval(
            "probe_aligned", "share", "aligned share", "share of probes whose order-averaged P(majority) exceeds 1/2",
            "Wilson 95% interval of the aligned share",
        ),
        *(c for m in SELFALIGN_METRICS for c in with_error(m)),
        *PROVENANCE,
    ),
)  # fmt: skip
WVS = Table(
    "harness_wvs.csv",
    "harness run and WVS country: the distances of the model's answers to the country's, beside the floor's",
    (
        *RUN,
        Column("country", "str", "", "WVS country (ISO3) whose answers are the reference"),
        Column("questions", "int", "count", "WVS questions with the country's shares"),
        *(c for m in WVS_METRICS for c in with_error(m)),
        *PROVENANCE,
    ),
)
SUMMARIES = (SELFALIGN, WVS)  # what harness.write_summaries writes
