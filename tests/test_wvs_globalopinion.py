"""GlobalOpinionQA items mapped to WVS question ids by text and answer labels."""

import json

from culturealign import wvs_globalopinion

FAKE_QUESTIONS = {  # made-up wording, shaped like questions.json
    "Q64": {
        "question": "How much confidence do you have in the lighthouses: "
        "a great deal, quite a lot, not very much, or none at all?",
        "options": ["A great deal", "Quite a lot", "Not very much", "None at all"],
    },
    "Q65": {
        "question": "How much confidence do you have in the bakers: "
        "a great deal, quite a lot, not very much, or none at all?",
        "options": ["A great deal", "Quite a lot", "Not very much", "None at all"],
    },
    "Q7": {
        "question": "Do you consider patience to be especially important for children to learn at home?",
        "options": ["Yes", "No"],
    },
    "Q177": {
        "question": "Do you think juggling can always be justified, never be justified? 1 means 'Never justifiable'",
        "options": [str(n) for n in range(1, 11)],
    },
    "Q178": {
        "question": "Do you think knitting can always be justified, never be justified? 1 means 'Never justifiable'",
        "options": [str(n) for n in range(1, 11)],
    },
}
NS = ["Don't know", "No answer", "Other missing; Multiple answers Mail (EVS)"]


def _opinion(country, question, options, distribution):
    return {"country": country, "question": question, "options": options, "distribution": distribution}


def test_globalopinion_items_map_by_text_and_labels_and_bad_records_are_reported(tmp_path):
    confidence = "For each organisation, how much confidence do you have in it?\n\n"
    scale = ["Never justifiable", *map(str, range(2, 10)), "Always justifiable"]
    records = [
        _opinion(
            "Malaysia",
            confidence + "Lighthouses",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.1, 0.2, 0.3, 0.2, 0.1, 0.1, 0.0],
        ),
        _opinion(
            "Malaysia",
            "Children should learn...\n\nPatience",
            ["Not mentioned", "Important", *NS],
            [0.3, 0.6, 0.1, 0.0, 0.0],
        ),
        _opinion("Malaysia", "Justifiable?\n\nJuggling", list(reversed(scale)) + NS, [0.1] * 10 + [0, 0, 0]),
        _opinion("Malaysia", "Do you like the moon?", ["Yes", "No", "DK/Refused"], [0.5, 0.4, 0.1]),  # Pew: not WVS
        _opinion(
            "Malaysia",
            confidence + "Submarines",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.1, 0.2, 0.3, 0.2, 0.1, 0.1, 0.0],
        ),
        _opinion(
            "Atlantis",
            confidence + "Bakers",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.25] * 4 + [0] * 3,
        ),
        _opinion(
            "Malaysia",
            confidence + "Bakers",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [1.5] + [0] * 6,
        ),
        _opinion(
            "Malaysia",
            confidence + "The lighthouses",
            ["A great deal", "Quite a lot", "Not very much", "None at all", *NS],
            [0.25] * 4 + [0] * 3,
        ),
    ]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(records))
    shares, problems, unmapped = wvs_globalopinion.load_globalopinion(path, FAKE_QUESTIONS)
    q64 = shares[shares["qid"] == "Q64"].set_index("code")["share"]
    assert q64.round(6).to_dict() == {
        "1": 0.125,
        "2": 0.25,
        "3": 0.375,
        "4": 0.25,
    }  # 'Don't know' dropped, renormalised
    q7 = shares[shares["qid"] == "Q7"].set_index("code")["share"]
    assert q7.round(6).to_dict() == {"2": round(0.3 / 0.9, 6), "1": round(0.6 / 0.9, 6)}  # labels, not positions
    assert shares.loc[shares["qid"] == "Q177", "code"].tolist() == [str(n) for n in range(10, 0, -1)]  # reversed scale
    assert set(shares["country"]) == {"MYS"}
    assert unmapped["item"].tolist() == ["Submarines"] and "matches no WVS question" in unmapped["reason"].iloc[0]
    reasons = [str(p) for p in problems]
    assert len(reasons) == 3, reasons
    assert "eval.json record 6: country name 'Atlantis'" in reasons[0]
    assert "eval.json record 7: share 1.5 of option 'A great deal' is outside 0-1" in reasons[1]
    assert "eval.json record 8: second record for MYS Q64 in this file (first is record 1)" in reasons[2]
