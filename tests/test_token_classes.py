"""The token classifier and the first-difference helper of masking/diagnostics.py (pure functions)."""

import pytest

from robust_sft.masking.diagnostics import TOKEN_CLASSES, first_difference, token_classes


def test_mbpp_style_answer_tokens():
    # Token texts as SmolLM2's tokenizer splits a CRLF, tab-indented MBPP answer.
    texts = ["```", "python", "\n", "def", " f", "(x", "):", " ", "\r\n\t\t", "\t", "return", " x", "\r\n",
             "\t", "pass", "\n", "```", "<|im_end|>"]
    eot = [False] * (len(texts) - 1) + [True]
    assert token_classes(texts, eot) == [
        "fence", "fence", "other_whitespace", "code", "code", "code", "code", "other_whitespace",
        "carriage_return", "indentation", "code", "code", "carriage_return",
        "indentation", "code", "other_whitespace", "fence", "end_of_turn"]


def test_indentation_only_at_the_start_of_a_line():
    texts = ["x", "  ", "=", "\n    ", "y", "\n", "    ", "z", "   ", "\n\n"]
    assert token_classes(texts) == ["code", "other_whitespace", "code", "indentation", "code", "other_whitespace",
                                    "indentation", "code", "other_whitespace", "other_whitespace"]


def test_fence_is_the_line_starting_with_a_backtick_not_inline_code():
    texts = ["Use", " `", "x", "`", ".", "\n", "```", "\n", "a", "\n", "  ", "```"]
    assert token_classes(texts) == ["code", "code", "code", "code", "code", "other_whitespace", "fence",
                                    "other_whitespace", "code", "other_whitespace", "indentation", "fence"]


def test_every_class_is_known_and_flags_must_match():
    assert set(token_classes(["a", "\r", " ", "\t", "```"], [False, False, False, False, True])) <= set(TOKEN_CLASSES)
    assert token_classes([]) == []
    with pytest.raises(ValueError):
        token_classes(["a", "b"], [False])


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 4]) == 2
    assert first_difference([5], [6, 7]) == 0
    assert first_difference([1, 2], [1, 2, 3]) == 2
    assert first_difference([1, 2, 3], [1, 2]) == 2
    assert first_difference([1, 2], [1, 2]) is None
    assert first_difference([], []) is None
    assert first_difference([], [1]) == 0
    assert first_difference("abc", "abd") == 2
