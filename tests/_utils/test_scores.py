#!/usr/bin/env python3
"""The one ``score`` parser: validation and the numbers it makes of model outputs."""

import math

import pytest
import torch

from captum_cams._utils.scores import SCORES, check_score, scores_of


def test_check_score_accepts_the_two_options_and_names_the_argument():
    assert SCORES == ("probability", "logit")
    assert check_score("probability") == "probability"
    assert check_score("logit") == "logit"
    with pytest.raises(ValueError, match="score must be 'probability' or 'logit'; got 'prob'"):
        check_score("prob")


def test_scores_of_is_the_softmax_over_classes_or_the_outputs():
    outputs = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]], dtype=torch.float64)
    assert scores_of(outputs, "logit") is outputs
    probabilities = scores_of(outputs, "probability")
    # e^0 : e^{ln 3} = 1 : 3, and equal logits share the probability
    expected = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(probabilities, expected, rtol=0, atol=1e-15)
    assert torch.equal(probabilities[1], expected[1])
