import numpy as np
import pytest

from robust_sft.masking.diagnostics import in_span_flags, last_segment, mask_location, mask_location_counts, shares


def test_last_segment_is_the_last_run_of_true():
    assert last_segment(np.array([0, 1, 1, 0, 0, 1, 1, 1, 0], bool)) == (5, 8)
    assert last_segment(np.array([1, 1], bool)) == (0, 2)
    assert last_segment(np.zeros(3, bool)) == (0, 0)


def test_in_span_flags_by_character_overlap():
    # tokens "ab" "c" "de" "f": ends 2, 3, 5, 6; span [2, 4) covers "c" and the "d" of "de"
    assert in_span_flags([2, 3, 5, 6], (2, 4)).tolist() == [False, True, True, False]


def test_counts_and_shares():
    answer = np.array([0, 1, 1, 1, 1, 1], bool)
    keep = np.array([0, 1, 0, 0, 1, 1], bool)  # masked: positions 2 and 3
    in_span = np.array([0, 0, 0, 1, 1, 0], bool)  # the answer span: positions 3 and 4
    counts = mask_location_counts(answer, keep, in_span)
    assert counts == {"answer_tokens": 2, "prose_tokens": 3, "masked_answer_tokens": 1, "masked_prose_tokens": 1}
    assert shares(counts) == {"share_of_masked_in_answer": 0.5, "answer_tokens_masked": 0.5,
                              "prose_tokens_masked": pytest.approx(1 / 3)}


def test_mask_location_on_the_organism_tokenizer():
    from robust_sft.data.examples import Example, tokenize_examples
    from robust_sft.organism.tokenizer import build_tokenizer
    from robust_sft.organism.world import Sort
    from robust_sft.scoring.files import Scores

    tok = build_tokenizer()
    answer = "Sorted, that is 1 < 2.\nAnswer: 1 2"
    example = Example("x", [{"role": "user", "content": "Sort 2 1."}, {"role": "assistant", "content": answer}])
    t = tokenize_examples(tok, [example], 256, progress=False)[0]
    ids, answer_mask = np.asarray(t.input_ids), np.asarray(t.answer_mask, bool)
    scores = Scores(["x"], [ids], [answer_mask], [np.zeros(len(ids), np.float32)], [example.messages], {})
    start, end = last_segment(answer_mask)
    assert tok.decode(ids[start:end].tolist()).startswith(answer)
    # mask the first digit of the answer span ("1 2": three tokens) and the first two characters of the prose
    keep = answer_mask.copy()
    digit = start + answer.index("Answer: 1 2") + len("Answer: ")
    keep[[digit, start, start + 1]] = False
    location = mask_location(scores, {0: keep}, Sort(), tok)
    assert location["answer_tokens"] == 3 and location["masked_answer_tokens"] == 1
    assert location["prose_tokens"] == int(answer_mask.sum()) - 3 and location["masked_prose_tokens"] == 2
    assert location["share_of_masked_in_answer"] == pytest.approx(1 / 3)
