"""Stage 10 and 30's tables completed from the few columns a test sets: every other declared
column gets a neutral value, so a test states only what it is about."""

from typing import Iterable

import pandas as pd

from culturealign import selfalign_tables
from culturealign.tables import Column

NEUTRAL = {"str": "", "int": 0, "float": 0.0, "bool": False}
SPECIFIC = {"mode": "exact", "label": "a", "category": "A", "draws": 1, "human_a": 0.5}


def complete(frame: pd.DataFrame, columns: Iterable[Column]) -> pd.DataFrame:
    """The frame with every required declared column it lacks: a side's p per order from its
    order-averaged p, the rest neutral."""
    frame = frame.copy()
    for c in columns:
        if c.name in frame or c.optional or c.dtype in ("list", "lists"):
            continue
        side = c.name.replace("_ab", "").replace("_ba", "")
        if c.name.startswith("p_majority_") and side != c.name and side in frame:
            frame[c.name] = frame[side]
        elif c.name == "qid":
            frame[c.name] = frame["probe_id"]
        else:
            frame[c.name] = SPECIFIC.get(c.name, NEUTRAL[c.dtype])
    return frame


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in measurement completed to every measured column of the zero-shot table."""
    return complete(frame, (selfalign_tables.PROBE, *selfalign_tables.MEASURED))


def results(frame: pd.DataFrame) -> pd.DataFrame:
    """Stage 30's measurements (self_alignment.csv) completed."""
    return complete(frame, selfalign_tables.SELF_ALIGNMENT.columns)


def outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Stage 30's outcomes (outcomes.csv) completed."""
    return complete(frame, selfalign_tables.OUTCOMES.columns)
