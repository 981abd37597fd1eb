#!/usr/bin/env python3
"""Cascading randomisation (deep copy, order, hand-computed Spearman values, RNG left
alone) and the coefficient cosine similarity."""

import math

import pytest
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from captum_cams.metrics import (
    cascading_randomization,
    coefficient_cosine_similarity,
    spearman_correlation,
)


class Knob(nn.Module):
    """A layer whose reset_parameters sets known values."""

    def __init__(self, values, reset_to) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(values, dtype=torch.float64))
        self.reset_to = reset_to

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.tensor(self.reset_to, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x


class TwoKnobs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Knob([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 2.0])
        self.second = Knob([1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0])

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1).sum(1, keepdim=True)
        return torch.cat([s, -s], 1)


def knob_map(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    # map = first.weight * second.weight, as a 2 x 2 map per example
    w = (model.first.weight * model.second.weight).reshape(1, 1, 2, 2)
    return w.expand(x.shape[0], 1, 2, 2)


def test_cascading_randomization_by_hand():
    model = TwoKnobs()
    x = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    res = cascading_randomization(model, knob_map, x)
    # default order: reverse registration, 'second' (output side) first
    assert res.layers == ["second", "first"]
    # step 1: second -> -1: map -[1, 2, 3, 4], Spearman -1
    # step 2: first -> [1, 1, 2, 2]: map -[1, 1, 2, 2]; ranks [3.5, 3.5, 1.5, 1.5] vs
    # [1, 2, 3, 4]: centred (1, 1, -1, -1) . (-1.5, -.5, .5, 1.5) = -4, norms 2 and sqrt(5)
    expected = [-1.0, -2 / math.sqrt(5)]
    assert res.correlations.tolist() == [pytest.approx(expected, rel=1e-12)] * 2
    assert res.original_maps[0, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    # the user's model and the global RNG are untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert torch.equal(torch.get_rng_state(), rng)


def test_cascading_on_a_cnn_uses_a_copy(cnn, make_batch):
    from captum.attr import LayerGradCam

    x, _ = make_batch(n=2)
    seen = []

    def gradcam(model, inputs, target):
        seen.append(model)
        return LayerGradCam(model, model[2]).attribute(inputs, target=target)

    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    res = cascading_randomization(cnn, gradcam, x, target=[1, 2], seed=3)
    assert res.layers == ["6", "2", "0"]
    assert res.correlations.shape == (2, 3)
    assert all(m is not cnn for m in seen)
    for k, v in cnn.state_dict().items():
        assert torch.equal(v, state[k])
    assert all(p.grad is None for p in cnn.parameters())
    again = cascading_randomization(cnn, gradcam, x, target=[1, 2], seed=3)
    assert torch.equal(res.correlations, again.correlations)
    only = cascading_randomization(cnn, gradcam, x, target=[1, 2], layers=["6"])
    assert only.layers == ["6"]


def test_spearman_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 20), generator=gen).double()  # many ties
    b = torch.rand(3, 20, generator=gen, dtype=torch.float64)
    got = spearman_correlation(a, b)
    for i in range(3):
        assert got[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-12)
    assert spearman_correlation(torch.ones(1, 4), b[:1, :4]).item() == 0.0


def test_cascading_errors(cnn, make_batch):
    x, _ = make_batch(n=2)
    f = lambda m, i, t: i.sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="layers: 'nope'"):
        cascading_randomization(cnn, f, x, layers=["nope"])
    with pytest.raises(ValueError, match="layers: module '1' has no reset_parameters"):
        cascading_randomization(cnn, f, x, layers=["1"])
    with pytest.raises(TypeError, match="model"):
        cascading_randomization(lambda t: t, f, x)


def test_coefficient_cosine_similarity():
    w = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    ref = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-2.0, -4.0]], dtype=torch.float64)
    assert coefficient_cosine_similarity(w, ref).tolist() == pytest.approx(
        [1 / math.sqrt(2), 0.0, -1.0]
    )
    g = coefficient_cosine_similarity(w.requires_grad_(), ref)
    assert g.grad_fn is None
    with pytest.raises(ValueError, match="same shape"):
        coefficient_cosine_similarity(w, ref[:, :1])
    with pytest.raises(ValueError, match="reference_weights contains NaN"):
        coefficient_cosine_similarity(w, ref * float("nan"))
    with pytest.raises(ValueError, match="weights must be N x K"):
        coefficient_cosine_similarity(w[0], ref)
