from culturealign import models, scoring
from culturealign.engines import gemini


def test_api_sampling_builds_requests_and_parses_replies(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    lm = models.load_model(models.spec_for("gemini-1.5-pro"))
    replies = iter(["Important.", " unimportant", "I cannot say"] * 2)
    sent = []

    def fake_post(url, body, retries=3):
        sent.append((url, body))
        return {"candidates": [{"content": {"parts": [{"text": next(replies)}]}}]}

    monkeypatch.setattr(gemini, "post", fake_post)
    counts = scoring.sample_counts(lm, ["Religion is _ to me. Answer: "], [["important", "unimportant"]], n=3)
    assert counts.iloc[0]["counts"] == [1, 1] and counts.iloc[0]["invalid"] == 1
    url, body = sent[0]
    assert "gemini-1.5-pro:generateContent?key=k" in url
    assert body["generationConfig"]["temperature"] == 1.0 and body["contents"][0]["parts"][0]["text"].endswith(
        "Answer:"
    )
