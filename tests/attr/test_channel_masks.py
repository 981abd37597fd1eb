#!/usr/bin/env python3
"""The Score-CAM family's channel masks: up(mm(A_k)) per (example, channel) pair, constant
channels scored once per example, and the checks of seed and noise level."""

import pytest
import torch
import torch.nn.functional as F

from captum_cams.attr._channel_masks import channel_masks, channel_scores, check_stdevs

F64 = torch.float64


def test_masks_are_the_upsampled_min_max_normalised_channels() -> None:
    activations = torch.randn(2, 3, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    examples, channels = torch.tensor([1, 0, 1]), torch.tensor([2, 0, 0])
    masks = channel_masks(activations, examples, channels, (8, 8))
    assert masks.shape == (3, 1, 8, 8)
    for row, (n, k) in enumerate(zip(examples.tolist(), channels.tolist())):
        a = activations[n, k]
        normalised = (a - a.min()) / (a.max() - a.min())
        expected = F.interpolate(
            normalised[None, None], (8, 8), mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(masks[row], expected[0], rtol=1e-12, atol=1e-15)


def test_constant_channels_are_scored_once_per_example() -> None:
    activations = torch.randn(2, 4, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    activations[0, 1] = 0.0
    activations[0, 3] = 2.5  # constant too: the same zero mask
    activations[1, 2] = -1.0
    asked = []

    def pair_scores(examples: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        asked.extend(zip(examples.tolist(), channels.tolist()))
        return (10 * examples + channels).to(F64)

    scores = channel_scores(activations, pair_scores)
    assert scores.shape == (2, 4)
    constant_zero = [pair for pair in asked if pair in {(0, 1), (0, 3)}]
    assert len(constant_zero) == 1  # one evaluation serves both constant channels
    assert scores[0, 1] == scores[0, 3] == 10 * 0 + constant_zero[0][1]
    for n, k in [(0, 0), (0, 2), (1, 0), (1, 1), (1, 3)]:
        assert scores[n, k] == 10 * n + k


def test_stdevs_are_checked_by_name() -> None:
    assert check_stdevs(0) == 0.0
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="stdevs must be a finite number >= 0"):
            check_stdevs(bad)
    with pytest.raises(TypeError, match="stdevs must be a number"):
        check_stdevs("1")
