"""The placebos of Self-Alignment's stage 30: the answers they put in the chrF++-across
demonstrations, the country-swap placebo's country, and how many demonstration answers a
condition flips away from the target country's majority answers. docs/protocol.md describes them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

PLACEBO_RANDOM = "placebo_random_answer"  # chrF++-across demonstrations, each filled with a random option (seeded)
PLACEBO_MINORITY = "placebo_minority_answer"  # chrF++-across demonstrations filled with the country's minority answer
PLACEBO_COUNTRY = (
    "placebo_country_swap"  # chrF++-across demonstrations answered with another country's majority answers
)
RANDOM_OTHER = "random_other"  # swap_country: per probe, a seeded random other country, fixed before the probe is seen
ADVERSARIAL = "adversarial_most_different"  # per probe, the country that differs most on its demonstrations
SWAP_CHOICES = (RANDOM_OTHER, ADVERSARIAL)


def check_swap_country(swap_country: str, countries: list[str], target: str) -> None:
    """Refuse a swap country that is not one of SWAP_CHOICES or another country with WVS answer shares,
    before any model loads, naming the parameter and the allowed values."""
    from .demos import DemoError

    allowed = [c for c in countries if c != target]
    if swap_country not in SWAP_CHOICES and swap_country not in allowed:
        raise DemoError(
            f"parameter `swap_country` must be {' or '.join(SWAP_CHOICES)} or a country with WVS answer shares other "
            f"than {target}: {', '.join(allowed)}; got {swap_country!r}"
        )


def country_labels(probes: pd.DataFrame, countries: list[str], wvs_shares: pd.DataFrame | None = None) -> pd.DataFrame:
    """Majority label ('a', 'b' or missing) of every probe for every country: probe_id x country.
    What the country-swap placebo answers its demonstrations with."""
    from .probes import majority_labels

    table = pd.concat(
        [majority_labels(probes, c, wvs_shares)[["probe_id", "label"]].assign(country=c) for c in countries]
    )
    return table.pivot(index="probe_id", columns="country", values="label")


def swap_country_of(probe_id: str, target: str, countries: Sequence[str], seed: int) -> str:
    """random_other's country for one probe: drawn from the other countries with a seed of the run
    and the probe's id only, so it is fixed before the probe or its demonstrations are seen."""
    others = sorted(c for c in countries if c != target)
    return others[int(np.random.default_rng([seed, _probe_seed(probe_id), 2]).integers(len(others)))]


def swap_choice(
    demo_rows: pd.DataFrame, labels: pd.DataFrame, swap_country: str = RANDOM_OTHER, probe_id: str = "", seed: int = 0
) -> tuple[str, list[str]]:
    """The country-swap placebo's country and the answers it puts in the demonstrations.

    random_other: a seeded random other country per probe (`swap_country_of`). A stated country
    otherwise. adversarial_most_different (a stress test, not a placebo): among countries that
    label every demonstration, the one whose majority answers differ from the target country's on
    most of them (ties: alphabetical). A demonstration the chosen country does not label keeps the
    target's majority answer."""
    target = demo_rows["country"].iloc[0] if "country" in demo_rows else None
    sub = labels.reindex(demo_rows["probe_id"]).drop(columns=[target], errors="ignore")
    if swap_country == ADVERSARIAL:
        complete = sub.loc[:, sub.notna().all(axis=0)] if sub.notna().all(axis=0).any() else sub
        differ = complete.ne(demo_rows["label"].to_numpy(), axis=0).where(complete.notna(), False).sum(axis=0)
        country = sorted(differ.index, key=lambda c: (-int(differ[c]), c))[0]
    elif swap_country == RANDOM_OTHER:
        country = swap_country_of(probe_id, str(target), list(labels.columns), seed)
    else:
        country = swap_country
    chosen = sub[country].to_numpy() if country in sub else [None] * len(demo_rows)
    answers = [
        getattr(d, f"option_{lab}") if lab in ("a", "b") else d.majority_option
        for d, lab in zip(demo_rows.itertuples(index=False), chosen)
    ]
    return country, answers


def flip_rate(demo_rows: pd.DataFrame, answers: list[str] | None) -> float:
    """Share of demonstration answers that differ from the target country's majority answers."""
    if not answers:
        return 0.0
    return float(np.mean([a != m for a, m in zip(answers, demo_rows["majority_option"])]))


def _probe_seed(probe_id: str) -> int:
    return int.from_bytes(probe_id.encode()[:8], "little")


def placebo_answers(probe, demo_rows: pd.DataFrame, condition: str, seed: int, draw: int = 0) -> list[str] | None:
    """The answers a placebo puts in its demonstrations: a seeded random option per
    demonstration, or the minority option; None (the majority answers) for every other condition."""
    if condition == PLACEBO_MINORITY:
        return [
            d.option_b if d.majority_option == d.option_a else d.option_a for d in demo_rows.itertuples(index=False)
        ]
    if condition == PLACEBO_RANDOM:
        rng = np.random.default_rng([seed, _probe_seed(probe.probe_id), draw, 1])
        return [
            (d.option_a, d.option_b)[int(i)]
            for d, i in zip(demo_rows.itertuples(index=False), rng.integers(0, 2, len(demo_rows)))
        ]
    return None
