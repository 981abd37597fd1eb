#!/usr/bin/env python3
"""Argument guards: the target without a forward, parameter flags around a capture."""

import pytest
import torch
import torch.nn as nn

from captum_cams._utils.guards import format_target, parameters_without_grad, target_indices


def test_format_target_agrees_with_target_indices() -> None:
    outputs = torch.randn(3, 5)
    for target in (2, [0, 4, 1], torch.tensor([1, 1, 3]), torch.tensor(4), torch.tensor([2])):
        torch.testing.assert_close(
            format_target(target, 3, torch.device("cpu")), target_indices(target, outputs)
        )
    with pytest.raises(ValueError, match="one int per example"):
        format_target([1, 2], 3, torch.device("cpu"))
    with pytest.raises(TypeError, match="integer tensor"):
        format_target(torch.tensor([1.0, 2.0, 0.0]), 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a target"):
        format_target(None, 3, torch.device("cpu"))


def test_parameters_without_grad_restores_mixed_flags_on_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError, match="inside"):
        with parameters_without_grad(model):
            assert not any(p.requires_grad for p in model.parameters())
            raise RuntimeError("inside")
    assert [p.requires_grad for p in model.parameters()] == before
    with parameters_without_grad(len):  # not a module: left alone, no error
        pass
