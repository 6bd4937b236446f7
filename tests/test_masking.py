import math

import numpy as np
import pytest

from robust_sft.masking.policies import (
    AUTO_TAU_FACTOR,
    IGNORE_INDEX,
    MaskPolicy,
    answer_aware_keep,
    apply_policy,
    auto_tau,
    dpf_keep,
    hindsight_keep,
    example_rng,
    labels_from_keep,
    lowest_keep,
    random_keep,
    ratio_to_tau,
    threshold_keep,
)
from robust_sft.scoring.files import Scores

NAN = float("nan")
# prompt (3 tokens) + answer (5 tokens); perplexities 1.1, 3.0, 2.4, 10, 1.0 on the answer
NLL = np.log(np.array([1, 1, 1, 1.1, 3.0, 2.4, 10.0, 1.0])).astype(np.float32)
NLL[0] = NAN
ANSWER = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)


def test_threshold_masks_tokens_above_tau_only():
    keep = threshold_keep(NLL, ANSWER, 2.5)
    assert keep.tolist() == [0, 0, 0, 1, 0, 1, 0, 1]
    assert threshold_keep(NLL, ANSWER, math.inf).tolist() == ANSWER.tolist()  # GT baseline
    assert threshold_keep(NLL, ANSWER, 2.4000001).tolist() == [0, 0, 0, 1, 0, 1, 0, 1]
    assert threshold_keep(NLL, ANSWER, 2.39).tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        threshold_keep(NLL, ANSWER, 0)


def test_lowest_masks_the_lowest_perplexity_answer_tokens():
    assert lowest_keep(NLL, ANSWER, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 0]
    assert lowest_keep(NLL, ANSWER, 0).tolist() == ANSWER.tolist()


def test_random_draws_only_answer_tokens_and_is_seeded_by_id():
    for seed in range(20):
        keep = random_keep(ANSWER, 2, example_rng(seed, "x"))
        assert (keep <= ANSWER).all() and (ANSWER & ~keep).sum() == 2
    a = random_keep(ANSWER, 2, example_rng(1, "x"))
    assert (a == random_keep(ANSWER, 2, example_rng(1, "x"))).all()
    draws = {tuple(random_keep(ANSWER, 2, example_rng(s, "x"))) for s in range(30)}
    assert len(draws) > 3  # really random across seeds


def test_dpf_masks_tokens_whose_perplexity_fell_by_more_than_the_factor():
    after = NLL.copy()
    after[4] = np.log(1.5)  # 3.0 -> 1.5: fell by 2x
    after[6] = np.log(8.0)  # 10 -> 8: fell by 1.25x
    assert dpf_keep(NLL, after, ANSWER, 1.5).tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    with pytest.raises(ValueError):
        dpf_keep(NLL, after[:-1], ANSWER, 1.5)


def test_labels_keep_ids_where_trained():
    ids = np.arange(10, 18)
    labels = labels_from_keep(ids, threshold_keep(NLL, ANSWER, 2.5))
    assert labels.tolist() == [IGNORE_INDEX] * 3 + [13, IGNORE_INDEX, 15, IGNORE_INDEX, 17]


def test_ratio_to_tau_masks_exactly_the_top_fraction():
    nlls = [np.log(np.array([1.0, 2.0, 3.0, 4.0])), np.log(np.array([5.0, 6.0, 7.0, 8.0, 9.0, 10.0]))]
    tau = ratio_to_tau(nlls, 0.3)
    all_nll = np.concatenate(nlls)
    assert (all_nll > math.log(tau)).sum() == 3
    assert ratio_to_tau(nlls, 0.0) == math.inf
    with pytest.raises(ValueError):
        ratio_to_tau(nlls, 1.5)


def make_scores(nlls: list[list[float]], answer_from: int = 1) -> Scores:
    token_nll = [np.array([NAN] + [math.log(p) for p in row], np.float32) for row in nlls]
    answer = [np.array([False] + [i + 1 >= answer_from for i in range(len(row))]) for row in nlls]
    return Scores(
        ids=[f"e{i}" for i in range(len(nlls))],
        input_ids=[np.arange(len(t)) + 100 for t in token_nll],
        answer_mask=answer, token_nll=token_nll, messages=[[] for _ in nlls], metadata={},
    )


def test_apply_policy_counts_masked_tokens_and_drops_empty_examples():
    scores = make_scores([[1.0, 5.0, 1.2], [9.0, 9.0], [2.0, 2.6, 1.1, 30.0]])
    result = apply_policy(scores, MaskPolicy(kind="threshold", tau=2.5))
    assert result.keep_examples == [0, 2]  # example 1 has only high-ppl tokens
    assert result.report["masked_tokens"] == 5 and result.report["answer_tokens"] == 9
    assert result.report["n_dropped_no_trainable_token"] == 1
    assert result.labels[0].tolist() == [IGNORE_INDEX, 101, IGNORE_INDEX, 103]
    gt = apply_policy(scores, MaskPolicy(kind="none"))
    assert gt.report["masked_tokens"] == 0 and gt.keep_examples == [0, 1, 2]


def test_random_and_lowest_mask_the_same_count_per_example_as_stm():
    scores = make_scores([[1.0, 5.0, 1.2, 1.3], [9.0, 1.1, 1.05], [2.0, 2.6, 1.1, 30.0]])
    stm = apply_policy(scores, MaskPolicy(kind="threshold", tau=2.5))
    for kind in ("random", "lowest"):
        other = apply_policy(scores, MaskPolicy(kind=kind, tau=2.5, seed=3))
        assert other.report["masked_tokens"] == stm.report["masked_tokens"]
        for a, b in zip(stm.labels, other.labels):
            assert (a == IGNORE_INDEX).sum() == (b == IGNORE_INDEX).sum()
    lowest = apply_policy(scores, MaskPolicy(kind="lowest", tau=2.5))
    assert lowest.labels[1].tolist() == [IGNORE_INDEX, 101, 102, IGNORE_INDEX]  # 1.05 masked, 9.0 kept


def test_ratio_policy_reports_the_equivalent_tau():
    scores = make_scores([[1.0, 5.0, 1.2, 1.3], [9.0, 1.1, 1.05, 2.0]])
    result = apply_policy(scores, MaskPolicy(kind="ratio", ratio=0.25))
    assert result.report["masked_tokens"] == 2
    assert 2.0 < result.report["tau"] < 5.0


def test_dpf_policies_need_a_matching_second_file():
    scores = make_scores([[1.0, 5.0, 1.2]])
    with pytest.raises(ValueError, match="needs a second score file"):
        apply_policy(scores, MaskPolicy(kind="dpf"))
    after = make_scores([[1.0, 1.0, 1.2]])
    result = apply_policy(scores, MaskPolicy(kind="dpf", dpf_tau=1.5), after)
    assert result.report["masked_tokens"] == 1
    both = apply_policy(scores, MaskPolicy(kind="stm_dpf", tau=1.1, dpf_tau=1.5), after)
    assert both.report["masked_tokens"] == 2  # 5.0 by both, 1.2 by STM
    with pytest.raises(ValueError, match="same examples"):
        apply_policy(scores, MaskPolicy(kind="dpf"), make_scores([[1.0, 1.0, 1.2], [1.0]]))


def test_unknown_policy_is_rejected():
    with pytest.raises(ValueError, match="mask must be one of none, threshold"):
        MaskPolicy(kind="magic")
    with pytest.raises(ValueError, match="needs `ratio`"):
        MaskPolicy(kind="ratio")


# --------------------------------------------------------------------------------------------- tau auto


def test_auto_tau_is_ten_times_the_median_answer_token_perplexity():
    nlls = [np.log(np.array([1.0, 2.0, NAN], np.float32)), np.log(np.array([3.0, 50.0, 60.0], np.float32))]
    assert AUTO_TAU_FACTOR == 10
    assert auto_tau(nlls) == pytest.approx(10 * 3.0, rel=1e-6)  # median of 1, 2, 3, 50, 60 (NaN ignored)
    # all tokens certain: tau 10, never below (a slightly negative float32 NLL counts as 0)
    assert auto_tau([np.array([0.0, -1e-5, 0.0], np.float32)]) == pytest.approx(10.0)
    # scale-free: every token ten times less likely moves tau ten times
    assert auto_tau([n + math.log(10) for n in nlls]) == pytest.approx(10 * auto_tau(nlls), rel=1e-5)
    with pytest.raises(ValueError, match="at least one scored answer token"):
        auto_tau([np.array([NAN], np.float32)])


def test_tau_auto_masks_tokens_ten_times_less_likely_than_the_median_and_says_why():
    scores = make_scores([[1.0, 1.5, 200.0], [4.0, 19.0, 101.0, 50.0]])  # median ppl 19 -> tau 190
    result = apply_policy(scores, MaskPolicy(kind="threshold", tau="auto"))
    assert result.report["tau"] == pytest.approx(190.0, rel=1e-5)
    assert result.report["masked_tokens"] == 1  # 200 only: 101 is not ten times less likely than 19
    assert result.report["tau_rule"].startswith("auto: 10 x the median answer-token perplexity")
    fixed = apply_policy(scores, MaskPolicy(kind="threshold", tau=2.5))
    assert fixed.report["tau_rule"] == "fixed" and fixed.report["tau"] == 2.5
    with pytest.raises(ValueError, match="greater than 1 .* or 'auto'"):
        MaskPolicy(tau="automatic")


# --------------------------------------------------------------------------------------------- answer-aware


SPAN = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)  # the checker reads answer tokens 4 and 5 (ppl 3.0 and 2.4)


def test_answer_aware_never_masks_a_span_token_and_masks_high_tokens_elsewhere():
    keep = answer_aware_keep(NLL, ANSWER, SPAN, 2.5)
    assert keep.tolist() == [0, 0, 0, 1, 1, 1, 0, 1]  # 3.0 kept in the span; 10 masked outside it
    rng = np.random.default_rng(0)
    for _ in range(50):
        nll = rng.exponential(1.5, 40).astype(np.float32)
        answer = rng.random(40) < 0.8
        span = rng.random(40) < 0.3
        keep = answer_aware_keep(nll, answer, span, 2.5)
        assert not (answer & span & ~keep).any()  # no span token masked
        assert not (answer & ~span & keep & (nll > math.log(2.5))).any()  # no high token kept outside the span
        assert (keep == (answer & (span | (nll <= math.log(2.5))))).all()
        assert not (keep & ~answer).any()


def test_answer_aware_policy_needs_spans_and_reports_what_it_kept():
    scores = make_scores([[1.0, 5.0, 9.0], [30.0, 1.1]])
    spans = [np.array([0, 0, 0, 1], bool), None]  # the checker reads the 9.0; the second example has no span
    result = apply_policy(scores, MaskPolicy(kind="answer_aware", tau=2.5), spans=spans)
    assert result.labels[0].tolist() == [IGNORE_INDEX, 101, IGNORE_INDEX, 103]  # 5.0 masked, 9.0 kept (span)
    assert result.labels[1].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 102]  # no span: as STM
    assert result.report["kept_above_tau"] == 1 and result.report["examples_with_answer_span"] == 1
    with pytest.raises(ValueError, match="answer_aware needs the answer span of each example"):
        apply_policy(scores, MaskPolicy(kind="answer_aware"))


# --------------------------------------------------------------------------------------------- hindsight


def test_hindsight_keeps_tokens_the_hint_explains_and_masks_those_it_does_not():
    hinted = NLL.copy()
    hinted[4] = np.log(1.2)  # 3.0 without the hint, 1.2 with it: content, kept
    hinted[6] = np.log(8.0)  # 10 without, 8 with: still above tau, style, masked
    hinted[5] = np.log(4.0)  # 2.4 without: kept whatever the hint does
    assert hindsight_keep(NLL, hinted, ANSWER, 2.5).tolist() == [0, 0, 0, 1, 1, 1, 0, 1]
    hinted[3] = NAN  # no hinted score: the plain decision stands
    assert hindsight_keep(NLL, hinted, ANSWER, 2.5).tolist() == [0, 0, 0, 1, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="disagree on the length"):
        hindsight_keep(NLL, hinted[:-1], ANSWER, 2.5)


def test_hindsight_policy_needs_the_hinted_nll_and_reports_the_tokens_it_rescued():
    scores = make_scores([[1.0, 5.0, 9.0], [30.0, 1.1]])
    hinted = [np.log(np.array([1, 1.0, 2.0, 9.0], np.float32)), np.log(np.array([1, 40.0, 1.1], np.float32))]
    result = apply_policy(scores, MaskPolicy(kind="hindsight", tau=2.5), hinted=hinted)
    assert result.labels[0].tolist() == [IGNORE_INDEX, 101, 102, IGNORE_INDEX]  # 5.0 -> 2.0 rescued, 9 stays
    assert result.labels[1].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 102]
    assert result.report["kept_above_tau"] == 1 and result.report["masked_tokens"] == 2
    with pytest.raises(ValueError, match="hindsight needs the same answers scored with a hint"):
        apply_policy(scores, MaskPolicy(kind="hindsight"))
