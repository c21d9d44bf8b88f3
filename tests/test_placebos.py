"""The country-swap placebo: a country fixed before the probe is seen, its flip rate, and the
adversarial variant kept under a name that says so."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from tests.probe_data import toy_probes

from culturealign import placebos, prompts, scoring, selfalign

COUNTRIES = [f"C{i:02d}" for i in range(20)] + ["USA"]


def simulated_labels(probe_ids: list[str], agree: float, seed: int) -> pd.DataFrame:
    """Every country's majority label per probe: the target USA answers 'a'; every other country
    agrees with it on a probe with probability `agree`, independently."""
    rng = np.random.default_rng(seed)
    table = {c: np.where(rng.random(len(probe_ids)) < agree, "a", "b") for c in COUNTRIES}
    table["USA"] = np.array(["a"] * len(probe_ids))
    return pd.DataFrame(table, index=probe_ids)


def test_random_other_is_fixed_by_the_seed_and_probe_alone_and_never_the_target():
    chosen = [placebos.swap_country_of(f"p{i}", "USA", COUNTRIES, seed=3) for i in range(2000)]
    assert "USA" not in chosen
    assert chosen == [placebos.swap_country_of(f"p{i}", "USA", COUNTRIES[::-1], seed=3) for i in range(2000)]
    counts = pd.Series(chosen).value_counts()
    assert len(counts) == 20 and counts.max() < 2 * counts.min()  # uniform over the 20 others, 100 expected each


def test_random_other_flips_the_base_disagreement_rate_and_the_adversarial_variant_far_more():
    """Simulated labels (every other country disagrees with the target on 30% of probes): the
    random country flips 30% of the demonstration answers within Monte-Carlo error, because it
    is drawn without looking at them; adversarial_most_different flips far more."""
    frame = toy_probes("a" * 9).assign(country="USA")
    rows = frame.iloc[1:6]
    rates = {placebos.RANDOM_OTHER: [], placebos.ADVERSARIAL: []}
    for trial in range(200):
        labels = simulated_labels(list(frame["probe_id"]), agree=0.7, seed=trial)
        for variant in rates:
            _, answers = placebos.swap_choice(rows, labels, variant, probe_id=f"q{trial}", seed=0)
            rates[variant].append(placebos.flip_rate(rows, answers))
    random_rate, adversarial_rate = np.mean(rates[placebos.RANDOM_OTHER]), np.mean(rates[placebos.ADVERSARIAL])
    standard_error = np.std(rates[placebos.RANDOM_OTHER]) / np.sqrt(200)
    assert random_rate == pytest.approx(0.3, abs=3 * standard_error)
    assert adversarial_rate > 0.6  # the most different of 20 countries on 5 answers


def test_flip_rate_counts_answers_that_differ_from_the_majority():
    frame = toy_probes("a" * 9)
    rows = frame.iloc[1:6]
    assert placebos.flip_rate(rows, None) == 0.0
    minority = placebos.placebo_answers(frame.iloc[0], rows, placebos.PLACEBO_MINORITY, seed=0)
    assert placebos.flip_rate(rows, minority) == 1.0


def test_a_different_swap_country_is_a_different_prompt_and_cache_key():
    """The prompt carries the swap country's answers, and the score cache is keyed by the exact
    prompt: a changed country never reuses a result measured for another."""
    frame = toy_probes("a" * 9).assign(country="USA")
    rows, target = frame.iloc[1:6], frame.iloc[0]
    labels = pd.DataFrame({"USA": ["a"] * 9, "DEU": ["b"] * 9, "FRA": ["a"] * 9}, index=frame["probe_id"])
    fmt = prompts.PromptFormat.of(
        SimpleNamespace(spec=SimpleNamespace(chat=False, answer_primer=False), tokenizer=None)
    )
    lm = SimpleNamespace(
        spec=SimpleNamespace(name="m", engine="e", decoding=lambda: {}), weights_hash="h", dtype="float32"
    )
    keys = set()
    for country in ("DEU", "FRA"):
        _, answers = placebos.swap_choice(rows, labels, country)
        text = selfalign.demonstration_prompt(fmt, target, rows, "en", 0, selfalign.DemoFilling(answers))
        keys.add(scoring.item_key(lm, "exact", text, [target.option_a, target.option_b]))
    assert len(keys) == 2
