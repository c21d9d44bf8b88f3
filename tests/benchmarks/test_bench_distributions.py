from benchmarks.bench_distributions import distinct_prefix_tokens, question_first


def test_an_unbounded_prefix_cache_computes_each_shared_prefix_once():
    assert distinct_prefix_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]) == 5
    assert distinct_prefix_tokens([]) == 0


def test_question_first_moves_the_persona_line_before_the_answer_cue():
    text = "You are from Kenya.\n\nQuestion: q?\nOptions: 1, 2\nAnswer:"
    assert question_first(text, "You are from Kenya.") == "Question: q?\nOptions: 1, 2\nYou are from Kenya.\nAnswer:"
