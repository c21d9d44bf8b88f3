"""Stage 90 and 95's further tables, declared once: the adapters' training record (stage 90), the
parsing check and the culture x method tables of stage 95, whose columns are the methods that
answered (docs/tables.md). The answers and scores they derive from are in culturespa_tables."""

from __future__ import annotations

from collections.abc import Sequence

from .culturespa import REPLY_PARSING
from .culturespa_tables import CULTURE, NUMBER, SCORE
from .tables import Column, Table

TRAINED = "(trained adapters only)"
TRAINING = Table(
    "training.csv",
    "adapter and training seed: how its training went",
    (
        Column(
            "adapter", "str", "", "the adapter: joint or a culture (ISO3); further training seeds as <name>__seed<s>"
        ),
        Column("seed", "int", "", "the training seed"),
        Column("examples", "int", "count", "CRQPC training pairs"),
        Column("status", "str", "", "trained, already trained (a finished adapter found), or skipped: the reason"),
        Column("resumed", "bool", "", f"whether training resumed from a checkpoint {TRAINED}", optional=True),
        Column("steps", "int", "count", f"optimizer steps {TRAINED}", optional=True),
        Column("warmup_steps", "int", "count", f"learning-rate warm-up steps {TRAINED}", optional=True),
        Column(
            "effective_batch",
            "int",
            "count",
            f"examples per optimizer step: batch size x accumulation {TRAINED}",
            optional=True,
        ),
        Column("train_loss", "float", "", f"mean training loss over the steps {TRAINED}", optional=True),
        Column("seconds", "float", "", f"training time in seconds {TRAINED}", optional=True),
        Column("adapter_dir", "str", "", "where the adapter is saved (trained or already trained)", optional=True),
    ),
)

PARSING_CHECK = Table(
    "parsing_check.csv",
    "culture-unaware prompt of a WVS question: one free reply read by both parsing rules",
    (
        Column("id", "str", "", "WVS question id"),
        Column("reply", "str", "", "the sampled free reply"),
        *(
            Column(rule, "int", "", f"the answer code rule {rule} reads: {how}; empty: none")
            for rule, how in REPLY_PARSING.items()
        ),
        Column("differ", "bool", "", "whether the two rules read the reply differently"),
    ),
)

# culture x method tables of stage 95: what a row holds and what each method's cell is
METHOD_TABLES = {
    "score_table.csv": ("one run", f"{SCORE}, on the method's valid replies, one run"),
    "expected_table.csv": ("expected", "mean score over simulated runs of the authors' protocol"),
    "common_table.csv": (
        "one run, then expected",
        "the score (one run's, then the expected) on the questions every method of the culture answered validly",
    ),
}


def method_table(file: str, methods: Sequence[str]) -> Table:
    """score_table.csv, expected_table.csv or common_table.csv (stage 95): per culture (or mean over
    cultures) one column per method of `methods`. A method no run answered has no column."""
    if file not in METHOD_TABLES:
        raise KeyError(f"no culture x method table {file!r}; declared: {', '.join(METHOD_TABLES)}")
    number, value = METHOD_TABLES[file]
    return Table(
        file,
        f"culture (or a mean over cultures) and number ({number}): each method's score",
        (CULTURE, *(Column(m, "float", "%", f"{m}: {value}", optional=True) for m in methods), NUMBER),
    )
