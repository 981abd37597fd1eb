#!/usr/bin/env python3
r"""The ``score`` option, in one place: which number of the model's outputs a
method or metric uses as the target score.

``"probability"``: the softmax over classes (dimension 1); ``"logit"``: the outputs
as they are. :func:`check_score` validates the option, :func:`scores_of` turns
outputs into scores. Used by the CAM core (gradient of the score), Score-CAM,
Libra-CAM, TFT, threshold calibration, reference filtering and every perturbation
metric.
"""

from typing import Any, Tuple

import torch
from torch import Tensor

from captum_cams._utils.guards import check_choice

#: The values ``score`` accepts.
SCORES: Tuple[str, ...] = ("probability", "logit")


def check_score(score: Any) -> str:
    r"""Checks the ``score`` option: ``"probability"`` (softmax) or ``"logit"``."""
    return check_choice(score, SCORES, "score")


def scores_of(outputs: Tensor, score: str) -> Tensor:
    r"""
    The scores of ``N x num_classes`` outputs: their softmax over dimension 1 for
    ``"probability"``, the outputs themselves for ``"logit"`` (a checked ``score``).

    Examples::

        >>> scores_of(torch.tensor([[0.0, 0.0]]), "probability")
        tensor([[0.5000, 0.5000]])
    """
    if score == "probability":
        return torch.softmax(outputs, dim=1)
    return outputs
