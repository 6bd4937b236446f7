"""The departure token (scoring/departure.py) and the policy that keeps it (masking/policies.py: keep_departure)."""

import json

import numpy as np
import pytest

from robust_sft.masking.policies import MaskPolicy, apply_policy, departure_keep
from robust_sft.scoring.departure import departure_positions, first_departure, read_departures
from robust_sft.scoring.files import Scores


def scores_of(nlls: list[list[float]], answers: list[list[bool]]) -> Scores:
    return Scores(ids=[f"e{i}" for i in range(len(nlls))],
                  input_ids=[np.arange(len(n), dtype=np.int64) + 5 for n in nlls],
                  answer_mask=[np.array(a) for a in answers], token_nll=[np.array(n, dtype=np.float32) for n in nlls],
                  messages=[[] for _ in nlls], metadata={})


def test_first_departure_is_the_first_token_that_is_not_the_models_top1():
    assert first_departure(np.array([4, 7, 9, 2]), np.array([4, 7, 1, 2])) == 2
    assert first_departure(np.array([4, 7]), np.array([4, 7])) is None


def test_keep_departure_keeps_the_departure_token_and_masks_like_stm_elsewhere():
    # answer tokens 2-5; tau 2.5 masks nll > 0.916: tokens 3 and 5; the departure (token 3) stays trained
    nll = np.array([np.nan, 9.0, 0.1, 4.0, 0.2, 3.0], dtype=np.float32)
    answer = np.array([False, False, True, True, True, True])
    assert departure_keep(nll, answer, 3, 2.5).tolist() == [False, False, True, True, True, False]
    assert departure_keep(nll, answer, None, 2.5).tolist() == [False, False, True, False, True, False]
    scores = scores_of([nll.tolist(), nll.tolist()], [answer.tolist(), answer.tolist()])
    result = apply_policy(scores, MaskPolicy(kind="keep_departure", tau=2.5), departures=[3, None])
    assert result.report["masked_tokens"] == 1 + 2  # one token in the first example, two in the second
    with pytest.raises(ValueError, match="needs each example's departure token"):
        apply_policy(scores, MaskPolicy(kind="keep_departure", tau=2.5))


def test_a_departure_file_that_does_not_fit_its_scores_is_refused_naming_it(tmp_path):
    scores = scores_of([[np.nan, 0.1, 2.0]], [[False, True, True]])
    path = tmp_path / "gt.departure.json"
    path.write_text(json.dumps({"e0": 2}))
    assert read_departures(path, scores) == [2]
    for content, message in (({"other": 1}, "no departure for example 'e0'"),
                             ({"e0": 0}, "departure 0 is not one of its answer tokens"),
                             ([1, 2], "expected a JSON object")):
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            read_departures(path, scores)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="gt.departure.json: not a departure file"):
        read_departures(path, scores)


def test_departure_positions_agree_with_the_models_greedy_answer(tiny_model_dir):
    """The departure found in one forward pass is where the model's own greedy continuation leaves the GT."""
    import torch

    from robust_sft.models.loading import load_model

    model = load_model(tiny_model_dir, device="cpu")
    torch.manual_seed(0)
    prompt = [5, 9, 12]
    with torch.no_grad():  # the model's greedy continuation of the prompt, 6 tokens
        greedy = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                pad_token_id=0)[0, len(prompt):].tolist()
    answers = {"same": greedy, "late": greedy[:3] + [(greedy[3] + 1) % 50 + 3] + greedy[4:]}
    scores = Scores(ids=list(answers), input_ids=[np.array(prompt + a) for a in answers.values()],
                    answer_mask=[np.array([False] * 3 + [True] * 6)] * 2,
                    token_nll=[np.array([np.nan] * 3 + [1.0] * 6, dtype=np.float32)] * 2, messages=[[], []],
                    metadata={})
    assert departure_positions(model, scores, progress=False) == {"same": None, "late": 6}
