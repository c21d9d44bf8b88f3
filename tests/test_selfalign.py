"""Self-alignment conditions, draws and outcomes, with a stand-in for the model's measurement."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from tests.probe_data import toy_probes

from culturealign import demos, metrics, placebos, prompts, selfalign
from selfalign_rows import measured, results

FAKE_LM = SimpleNamespace(spec=SimpleNamespace(chat=False, answer_primer=False), tokenizer=None)
PLAIN = prompts.PromptFormat.of(FAKE_LM)


def toy_zero(frame: pd.DataFrame) -> pd.DataFrame:
    p = np.linspace(0.3, 0.999, len(frame))
    return frame.assign(
        p_majority=p,
        p_majority_ab=np.clip(p + 0.1, 0, 1),
        p_majority_ba=np.clip(p - 0.1, 0, 1),
        p_a=np.where(frame["label"] == "a", p, 1 - p),
        p_other=0.0,
        mode="exact",
        misaligned=p < 0.95,
    )


def fake_measure(record: list):
    """p(majority) rises with each demonstration answered with a majority option (all labels 'a')."""

    def measure(lm, probes, texts, lang, seed, how, desc, draw_seed=None):
        record.extend(texts)
        hits = np.array([t.count("Answer: important\n") + t.count("Answer: trust\n") for t in texts])
        p = 0.3 + 0.1 * hits
        return measured(
            pd.DataFrame(
                {
                    "probe_id": probes["probe_id"].to_numpy(),
                    "p_a": np.where(probes["label"] == "a", p, 1 - p),
                    "p_other": 0.0,
                    "p_majority": p,
                    "p_majority_ab": p + 0.05,
                    "p_majority_ba": p - 0.05,
                }
            )
        )

    return measure


@pytest.fixture
def run(monkeypatch):
    texts: list[str] = []
    monkeypatch.setattr(selfalign, "measure", fake_measure(texts))
    frame = toy_probes("a" * 9)
    zero = toy_zero(frame)
    choices = demos.choose_all(frame, list(demos.STRATEGIES), seed=0)
    swap = pd.DataFrame({"DEU": ["b"] * 9, "FRA": ["a"] * 9}, index=frame["probe_id"])  # DEU differs everywhere
    results = selfalign.self_aligned(
        FAKE_LM,
        zero,
        frame,
        choices,
        "en",
        0,
        selfalign.Remeasurement(
            list(selfalign.conditions()),
            draws=2,
            selected=pd.Series(True, index=zero.index),
            swap_labels=swap,
            swap_country=placebos.ADVERSARIAL,
        ),
    )
    return frame, zero, results, texts


def test_unknown_names_draws_and_combination_are_refused_with_the_allowed_values():
    with pytest.raises(demos.DemoError, match="'nearest'.*placebo_random_answer"):
        selfalign.check_conditions(["chrf_all", "nearest"])
    with pytest.raises(demos.DemoError, match="`draws`.*>= 1, got 0"):
        selfalign.check_conditions(["random"], draws=0)
    with pytest.raises(demos.DemoError, match="`draws`.*>= 1, got -1"):
        selfalign.check_draws(-1)  # a library caller's guard; stage 30's parameter layer checks the bound
    with pytest.raises(demos.DemoError, match="per_draw, per_prompt, got 'twice'"):
        selfalign.check_conditions(["random"], combination="twice")
    with pytest.raises(demos.DemoError, match="placebo_minority_answer"):
        plan = selfalign.Remeasurement(["placebo"])
        selfalign.self_aligned(None, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), "en", 0, plan)


def test_placebo_answers_are_the_minority_or_a_seeded_random_option():
    frame = toy_probes().set_index("probe_id", drop=False)
    rows = frame.loc[["p1", "p2", "p3", "p4", "p5"]]
    minority = selfalign.placebo_answers(frame.loc["p0"], rows, selfalign.PLACEBO_MINORITY, seed=0)
    assert minority == [o for o in rows["option_a"].where(rows["label"] == "b", rows["option_b"])]
    assert all(m != j for m, j in zip(minority, rows["majority_option"]))
    random = selfalign.placebo_answers(frame.loc["p0"], rows, selfalign.PLACEBO_RANDOM, seed=0)
    assert random == selfalign.placebo_answers(frame.loc["p0"], rows, selfalign.PLACEBO_RANDOM, seed=0)
    assert set(random) <= {"important", "unimportant"}
    draws = {
        tuple(selfalign.placebo_answers(frame.loc["p0"], rows, selfalign.PLACEBO_RANDOM, seed=0, draw=d))
        for d in range(8)
    }
    assert len(draws) > 1
    assert selfalign.placebo_answers(frame.loc["p0"], rows, "chrf_all", seed=0) is None


def test_every_condition_and_draw_is_measured_and_unserved_probes_are_reported(run):
    frame, zero, results, texts = run
    counts = results.groupby("strategy")["draw"].nunique().to_dict()
    assert counts == {
        "random": 2,
        "random_category": 2,
        "chrf_category": 1,
        "chrf_all": 1,
        "chrf_all_shuffled": 2,
        "placebo_random_answer": 2,
        "placebo_minority_answer": 1,
        "placebo_country_swap": 1,
        "zero_shot_retest": 1,
    }
    unserved = results[results["p_majority_after"].isna()]
    assert set(unserved["strategy"]) == {"random_category", "chrf_category"}
    assert set(unserved["probe_id"]) == {"p6", "p7", "p8"} and unserved["reason"].str.contains("category 'B'").all()
    by = results.set_index(["probe_id", "strategy", "draw"])
    assert by.loc[("p0", "random", 0), "demo_ids"] != by.loc[("p0", "random", 1), "demo_ids"]
    assert by.loc[("p0", "chrf_all_shuffled", 1), "demo_ids"] == by.loc[("p0", "chrf_all", 0), "demo_ids"]
    # the fake model counts majority answers shown: 5 for the real demonstrations, 0 for the minority placebo
    assert np.allclose(results.loc[results["strategy"] == "chrf_all", "p_majority_after"], 0.8)
    assert np.allclose(results.loc[results["strategy"] == "placebo_minority_answer", "p_majority_after"], 0.3)
    swapped = results[(results["strategy"] == "placebo_country_swap") & results["p_majority_after"].notna()]
    assert (swapped["swap_country"] == "DEU").all() and np.allclose(swapped["p_majority_after"], 0.3)
    assert results.loc[results["strategy"] == "placebo_random_answer", "p_majority_after"].between(0.3, 0.8).all()
    assert {"p_majority_before", "p_majority_ab_before", "p_majority_ab_after", "qid", "human_a"} <= set(
        results.columns
    )
    assert len(texts) == results["p_majority_after"].notna().sum()


def test_outcomes_follow_the_protocol_and_mix_the_draws(run):
    _, zero, results, _ = run
    per_draw = selfalign.outcomes(results, "per_draw")
    row = per_draw.set_index(["probe_id", "strategy"]).loc[("p0", "chrf_all")]
    expected = metrics.protocol_outcomes(0.3, 0.8)
    assert row["misaligned"] == pytest.approx(expected["misaligned"]) and row["improved"] == pytest.approx(
        expected["improved"]
    )
    assert row["delta"] == pytest.approx(0.5) and row["components_per_draw"] == [[pytest.approx(0.8)]]
    per_prompt = selfalign.outcomes(results, "per_prompt").set_index(["probe_id", "strategy"])
    assert per_prompt.loc[("p0", "chrf_all"), "components_before"] == [
        pytest.approx(0.4),
        pytest.approx(0.2),
    ]
    mixed = per_prompt.loc[("p0", "random")]
    mixture = selfalign.after_mixture("random", mixed["components_per_draw"])
    assert mixed["draws"] == 2 and len(mixture) == 4  # 2 draws x 2 orders
    assert per_prompt.loc[("p0", "chrf_all"), "misaligned"] == pytest.approx(1 - (0.4**10 + 0.2**10) / 2)
    assert not per_draw.set_index(["probe_id", "strategy"]).loc[("p7", "chrf_category"), "served"]
    old = selfalign.outcomes(results, "per_draw", rule="rounded")
    assert set(old["misaligned"].dropna()) <= {0.0, 1.0} and (old["rule"] == "rounded").all()


def test_misalignment_selects_every_probe_the_protocol_could_flag():
    zero = toy_zero(toy_probes())
    zero.loc[0, ["p_majority", "p_majority_ab", "p_majority_ba"]] = [0.96, 0.96, 0.96]
    zero.loc[1, ["p_majority", "p_majority_ab", "p_majority_ba"]] = [0.99995, 0.99995, 0.99995]
    table = selfalign.misalignment(zero)
    assert table.loc[0, "p_misaligned"] == pytest.approx(1 - 0.96**10) and table.loc[0, "remeasured"]
    assert not table.loc[1, "remeasured"]  # P(misaligned) = 0.0005 < 1e-3
    old = selfalign.misalignment(zero, rule="rounded")
    assert not old.loc[0, "remeasured"]  # the old rule: 9.6 rounds to 10, never misaligned


def test_explanations_only_where_the_majority_answer_is_most_likely_after():
    outcomes = pd.DataFrame(
        {
            "probe_id": ["p0", "p1", "p2", "p3", "p4"],
            "strategy": ["chrf_all"] * 4 + ["random"],
            "label": ["a", "b", "a", "b", "a"],
            "p_a_after": [0.7, 0.2, 0.4, 0.9, 0.9],
            "improved": [0.3, 0.6, 0.9, 0.9, 0.9],
        }
    )
    chosen = selfalign.explanation_candidates(outcomes, "chrf_all")
    assert chosen["probe_id"].tolist() == ["p1", "p0"]  # p2, p3: the minority answer is more likely; p4: other strategy


def test_explanation_request_shows_the_majority_answer_after_the_self_aligned_prompt():
    frame = toy_probes().set_index("probe_id", drop=False)
    text = selfalign.explanation_request(PLAIN, frame.loc["p1"], frame.loc[["p0", "p2"]], "en", 0)
    prompt = selfalign.demonstration_prompt(PLAIN, frame.loc["p1"], frame.loc[["p0", "p2"]], "en", 0)
    assert text.startswith(prompt.rstrip(" ")) and f" {frame.at['p1', 'majority_option']}." in text[len(prompt) - 1 :]


def test_unknown_order_pairing_is_refused_with_the_allowed_values():
    with pytest.raises(demos.DemoError, match="`order_pairing` must be one of independent, same_order, got 'shared'"):
        selfalign.check_conditions(["random"], pairing="shared")


def _redrawn(strategy: str, after: list[float], before: float = 0.5) -> pd.DataFrame:
    return results(
        pd.DataFrame(
            {
                "probe_id": "p0",
                "strategy": strategy,
                "draw": range(len(after)),
                "reason": "",
                "qid": "Q0",
                "category": "A",
                "label": "a",
                "human_a": 0.6,
                "p_majority_before": before,
                "p_majority_after": after,
            }
        )
    )


def test_the_shuffled_condition_is_reshuffled_per_response_as_the_paper_ran_it():
    after = [0.2, 0.6, 0.95]
    row = selfalign.outcomes(_redrawn(selfalign.SHUFFLED, after)).iloc[0]
    mixture = selfalign.after_mixture(selfalign.SHUFFLED, row["components_per_draw"])
    assert mixture == [pytest.approx(np.mean(after))]  # one binomial, not a mixture
    # simulation: every response of the after prompt gets its own permutation (one of the R draws)
    rng = np.random.default_rng(4)
    runs = 200_000
    k = rng.binomial(10, 0.5, runs)
    k2 = (rng.random((runs, 10)) < np.array(after)[rng.integers(0, 3, (runs, 10))]).sum(axis=1)
    assert row["improved"] == pytest.approx(((k < 10) & (k2 > k)).mean(), abs=0.004)
    assert row["same"] == pytest.approx(((k < 10) & (k2 == k)).mean(), abs=0.004)
    fixed = selfalign.outcomes(_redrawn("random", after)).iloc[0]  # random demonstrations: one choice per prompt
    assert len(selfalign.after_mixture("random", fixed["components_per_draw"])) == 3 and fixed["same"] != pytest.approx(
        row["same"], abs=0.01
    )


def test_outcomes_carry_the_no_effect_reference_of_each_probe(run):
    _, _, results, _ = run
    for pairing in selfalign.PAIRINGS:
        table = selfalign.outcomes(results, "per_prompt", pairing=pairing).set_index(["probe_id", "strategy"])
        row = table.loc[("p0", "chrf_all")]
        before = row["components_before"]
        null = metrics.paired_outcomes(before, before, pairing)
        assert [row[f"{k}_no_effect"] for k in metrics.OUTCOMES] == [pytest.approx(null[k]) for k in metrics.OUTCOMES]
        assert (table["order_pairing"] == pairing).all()


def test_sampled_mode_selects_on_one_set_of_draws_and_takes_the_baseline_from_fresh_ones():
    zero = toy_zero(toy_probes())
    zero["p_majority_selection"] = zero["p_majority_ab_selection"] = zero["p_majority_ba_selection"] = 1.0
    zero.loc[0, ["p_majority_selection", "p_majority_ab_selection", "p_majority_ba_selection"]] = 0.9
    table = selfalign.misalignment(zero)
    assert table["remeasured"].tolist() == [True] + [False] * 8  # selected on the selecting draws
    assert table.loc[0, "components"] == [pytest.approx(zero.loc[0, "p_majority"])]  # baseline: fresh draws
    assert (table["selected_on"] == "selection draws").all()


def test_zero_shot_in_sampled_mode_measures_a_fresh_baseline(monkeypatch):
    seeds = []

    def measure(lm, probes, texts, lang, seed, how, desc, draw_seed=None):
        seeds.append(seed if draw_seed is None else draw_seed)
        p = np.full(len(probes), 0.9 if draw_seed is None else 0.6)
        return measured(
            pd.DataFrame(
                {
                    "probe_id": probes["probe_id"].to_numpy(),
                    "p_a": p,
                    "p_other": 0.0,
                    "p_majority": p,
                    "p_majority_ab": p,
                    "p_majority_ba": p,
                    "mode": "sampled (10 draws)",
                    "count": 9,
                }
            )
        )

    monkeypatch.setattr(selfalign, "measure", measure)
    zero = selfalign.zero_shot(FAKE_LM, toy_probes(), "en", 3, selfalign.Measuring())
    assert seeds == [3, 4]
    assert (zero["p_majority_selection"] == 0.9).all() and (zero["p_majority"] == 0.6).all()
    assert zero["p_misaligned"].tolist() == pytest.approx([1 - 0.9**10] * 9)  # selection: the selecting draws


def test_country_swap_answers_with_the_country_that_differs_most_on_the_demonstrations():
    frame = toy_probes("ababababa").assign(country="USA").set_index("probe_id", drop=False)
    rows = frame.loc[["p1", "p2", "p3", "p4", "p5"]]  # USA labels b a b a b
    labels = pd.DataFrame(
        {
            "USA": list("ababababa"),
            "ARG": list("abaaaaaaa"),
            "DEU": list("aaaaaaaaa"),
            "CHN": list("bbbbbbbbb"),
            "FRA": [None, "a", "a", "a", "a", "a", "a", "a", "a"],
        },
        index=frame["probe_id"],
    )
    # differences from USA on p1..p5: ARG 2 (p1, p3), DEU 3, CHN 2, FRA 3: DEU and FRA tie, DEU first alphabetically
    country, answers = placebos.swap_choice(rows, labels, placebos.ADVERSARIAL)
    assert country == "DEU" and answers == ["important"] * 5
    country, answers = placebos.swap_choice(rows, labels, "CHN")
    assert country == "CHN" and answers == ["unimportant"] * 5
    partial = labels.assign(
        DEU=[None] * 2 + ["a"] * 7, FRA=[None] * 2 + ["a"] * 7
    )  # p1 unlabelled: keeps the USA answer
    country, answers = placebos.swap_choice(rows, partial.drop(columns=["ARG", "CHN"]), placebos.ADVERSARIAL)
    assert country == "DEU" and answers[0] == rows["majority_option"].iloc[0]
    with pytest.raises(
        demos.DemoError,
        match="`swap_country` must be random_other or adversarial_most_different or a country.*ARG, DEU; got 'XXX'",
    ):
        placebos.check_swap_country("XXX", ["ARG", "USA", "DEU"], "USA")
    placebos.check_swap_country("DEU", ["ARG", "USA", "DEU"], "USA")


def test_country_labels_come_from_the_wvs_figures():
    from culturealign import probes

    en = probes.load_probes("en").head(12)
    table = placebos.country_labels(en, ["USA", "DEU"])
    usa = probes.majority_labels(en, "USA").set_index("probe_id")["label"]
    assert list(table.columns) == ["DEU", "USA"] and table["USA"].reindex(usa.index).equals(usa)


def test_the_condition_table_names_every_condition_once_with_its_role():
    table = selfalign.condition_table()
    assert tuple(table.index) == selfalign.conditions()
    assert (table["role"] == "strategy (paper)").sum() == 4 and (table["role"] == "placebo").sum() == 3
    assert bool(table.loc["random", "drawn R times"]) and not bool(table.loc["chrf_all", "drawn R times"])
