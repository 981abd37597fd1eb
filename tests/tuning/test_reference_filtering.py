#!/usr/bin/env python3
"""Libra-CAM's reference filtering as a metrics-style function: kept maps, scores, γ
and the averaged map equal a direct one-forward-at-a-time loop; equal candidates are
all kept; chunking changes nothing; arguments are checked."""

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_cams import reference_filtering


def _normalised(maps: Tensor) -> Tensor:
    up = F.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False)
    flat = up.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-7)).reshape(up.shape)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_equals_direct_recomputation(score: str, small_cnn: Callable[[], nn.Module]) -> None:
    model = small_cnn()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    candidates = torch.rand(3, 6, 4, 4, dtype=torch.float64)
    target = [1, 4, 0]
    result = reference_filtering(
        model, x, candidates, target=target, max_examples_per_batch=5, score=score
    )
    for i in range(3):
        maps = [_normalised(candidates[i : i + 1, r : r + 1]) for r in range(6)]
        scores = []
        for m in maps:
            with torch.no_grad():
                logits = model(x[i : i + 1] * m)[0]
            value = (
                torch.softmax(logits, 0)[target[i]] if score == "probability" else logits[target[i]]
            )
            scores.append(float(value))
        s = torch.tensor(scores, dtype=torch.float64)
        gamma = s.mean() + s.std(correction=0)
        keep = s >= gamma
        if not keep.any():
            keep[:] = True
        expected = torch.cat([maps[r] for r in range(6) if keep[r]]).mean(0)
        torch.testing.assert_close(result.scores[i], s)
        torch.testing.assert_close(result.thresholds[i], gamma)
        assert torch.equal(result.kept[i], keep)
        assert 1 <= int(keep.sum()) < 6  # the mean + std rule keeps some, not all
        torch.testing.assert_close(result.filtered_maps[i], expected, rtol=0, atol=1e-12)


def test_authors_rule_equals_direct_recomputation(small_cnn: Callable[[], nn.Module]) -> None:
    # the authors' code: increases d = S - f_c(x); keep d >= mean(P) - std(P) of the
    # positive ones P; all when none is positive
    model = small_cnn()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    candidates = torch.rand(4, 7, 4, 4, dtype=torch.float64)
    target = [1, 4, 0, 2]
    result = reference_filtering(model, x, candidates, target=target, rule="authors")
    for i in range(4):
        maps = [_normalised(candidates[i : i + 1, r : r + 1]) for r in range(7)]
        with torch.no_grad():
            p0 = torch.softmax(model(x[i : i + 1])[0], 0)[target[i]]
            s = torch.stack([torch.softmax(model(x[i : i + 1] * m)[0], 0)[target[i]] for m in maps])
        d = s - p0
        positive = d[d > 0]
        if positive.numel():
            keep = d >= positive.mean() - positive.std(correction=0)
        else:
            keep = torch.ones(7, dtype=torch.bool)
        expected = torch.cat([maps[r] for r in range(7) if keep[r]]).mean(0)
        assert torch.equal(result.kept[i], keep)
        torch.testing.assert_close(result.filtered_maps[i], expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="rule"):
        reference_filtering(model, x, candidates, rule="official")


def test_equal_candidates_are_all_kept_and_chunking_changes_nothing(
    small_cnn: Callable[[], nn.Module],
) -> None:
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    one = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    result = reference_filtering(model, x, one.expand(2, 4, 4, 4))
    assert result.kept.all()
    torch.testing.assert_close(result.filtered_maps, _normalised(one))
    candidates = torch.rand(2, 5, 4, 4, dtype=torch.float64)
    whole = reference_filtering(model, x, candidates)
    chunked = reference_filtering(model, x, candidates, max_examples_per_batch=3)
    assert torch.equal(whole.kept, chunked.kept)
    torch.testing.assert_close(whole.filtered_maps, chunked.filtered_maps)


def test_argument_errors(small_cnn: Callable[[], nn.Module]) -> None:
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="attributions"):
        reference_filtering(model, x, torch.rand(2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="attributions"):
        reference_filtering(model, x, torch.rand(3, 2, 4, 4, dtype=torch.float64))
    bad = torch.rand(2, 2, 4, 4, dtype=torch.float64)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        reference_filtering(model, x, bad)
    with pytest.raises(ValueError, match="score"):
        reference_filtering(model, x, torch.rand(2, 2, 4, 4), score="p")
