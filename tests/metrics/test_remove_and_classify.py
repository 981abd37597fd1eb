#!/usr/bin/env python3
"""Remove-and-classify: hand-computed erasures on pixel-linear models, seeding,
batching and errors."""

import pytest
import torch

from captum_cams.metrics import remove_and_classify


def test_map_erasure_by_hand(linear_model, x22, map22):
    # class 0 logit = sum of kept contributions [[0.1, 0.4], [0.9, 1.6]], class 1 = 1.5.
    # Erasing by the map (zero baseline): 1 pixel -> 1.4, 2 -> 0.5, 3 -> 0.1: all class 1.
    model = type(linear_model)(linear_model.weight.data, other=1.5)
    res = remove_and_classify(
        model, x22, map22, target=0, fractions=[0.25, 0.5, 0.75], baselines="zero"
    )
    assert res.correct.tolist() == [[0.0, 0.0, 0.0]]
    assert res.fractions.tolist() == [0.25, 0.5, 0.75]
    # erasing the least important pixels instead (reversed map): 2.9, 2.5, 1.6 -> kept
    rev = remove_and_classify(
        model, x22, -map22, target=0, fractions=[0.25, 0.5, 0.75], baselines="zero"
    )
    assert rev.correct.tolist() == [[1.0, 1.0, 1.0]]


def test_random_erasure_by_hand(pixel_linear):
    # all contributions 1, class 1 logit 2.5: any 1 erased pixel keeps class 0 (3 > 2.5),
    # any 2 erased pixels flip it (2 < 2.5), whatever the random pixels are
    model = pixel_linear(torch.ones(1, 2, 2, dtype=torch.float64), other=2.5)
    x = torch.ones(4, 1, 2, 2, dtype=torch.float64)
    maps = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    res = remove_and_classify(model, x, maps, target=0, fractions=[0.25, 0.5], baselines="zero")
    assert res.random_correct.tolist() == [[1.0, 0.0]] * 4
    assert res.random_accuracy.tolist() == [1.0, 0.0]
    assert res.accuracy.tolist() == [1.0, 0.0]
    assert res.accuracy_difference.tolist() == [0.0, 0.0]
    # the paper's ratio A_k / A_k^r: 1 / 1, then 0 / 0 (undefined: NaN)
    assert res.relative_accuracy[0].item() == 1.0 and torch.isnan(res.relative_accuracy[1])


def test_relative_accuracy_is_the_papers_ratio(linear_model, x22, map22):
    model = type(linear_model)(linear_model.weight.data, other=1.5)
    x = x22.repeat(5, 1, 1, 1)
    maps = map22.repeat(5, 1, 1, 1)
    res = remove_and_classify(model, x, maps, target=0, fractions=[0.25], baselines="zero", seed=3)
    # the map always erases the 1.6 pixel (wrong); a random pixel is wrong only if it is 1.6
    assert res.accuracy.tolist() == [0.0]
    assert torch.equal(res.accuracy_difference, res.accuracy - res.random_accuracy)
    assert torch.equal(res.random_accuracy, res.random_correct.mean(0))
    # each of the 5 random draws erases the 1.6 pixel with chance 1/4; A_k = 0, so the
    # ratio is 0 wherever some random erasure kept the class
    kept = int(res.random_correct.sum())
    assert 0 < kept <= 5
    assert res.random_accuracy.item() == kept / 5
    assert res.relative_accuracy.tolist() == [0.0]
    # a map as good as random: the reversed map erases the 0.1 pixel, which never flips
    rev = remove_and_classify(model, x, -maps, target=0, fractions=[0.25], baselines="zero", seed=3)
    assert rev.accuracy.item() == 1.0
    assert rev.relative_accuracy.item() == pytest.approx(5 / kept)


def test_seed_batching_and_safety(cnn, make_batch):
    x, maps = make_batch(n=3)
    x.requires_grad_(True)
    before = x.detach().clone()
    state = torch.get_rng_state()
    runs = [
        remove_and_classify(cnn, x, maps, max_examples_per_batch=b, seed=7) for b in (1, 2, None)
    ]
    for r in runs:
        assert r.correct.shape == (3, 9) and r.correct.grad_fn is None
        assert torch.equal(r.correct, runs[-1].correct)
        assert torch.equal(r.random_correct, runs[-1].random_correct)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x.detach(), before)


def test_errors(cnn, make_batch):
    x, maps = make_batch(n=3)
    with pytest.raises(ValueError, match="fractions"):
        remove_and_classify(cnn, x, maps, fractions=[0.0])
    with pytest.raises(ValueError, match="baselines"):
        remove_and_classify(cnn, x, maps, baselines="mean")
    with pytest.raises(TypeError, match="seed"):
        remove_and_classify(cnn, x, maps, seed=1.5)
    with pytest.raises(ValueError, match="attributions must hold one map per example"):
        remove_and_classify(cnn, x, maps[:1])
