#!/usr/bin/env python3
"""Argument guards: the target without a forward, parameter flags around a capture."""

import pytest
import torch
import torch.nn as nn

from captum_cams._utils.guards import (
    check_finite,
    check_image_batch,
    describe_forward_failure,
    explained_forward_errors,
    format_target,
    parameters_without_grad,
    target_indices,
)


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


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize(
    "values, found",
    [
        ([float("nan"), 0.0], "NaN"),
        ([float("inf"), 0.0], r"\+Inf"),
        ([-float("inf"), 0.0], "-Inf"),
        ([float("inf"), -float("inf")], r"\+Inf and -Inf"),
    ],
)
def test_check_finite_names_the_argument_and_what_it_holds(
    dtype: torch.dtype, values: list, found: str
) -> None:
    tensor = torch.tensor(values, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^my_arg contains {found} \(\d of 2 values\)"):
        check_finite(tensor, "my_arg")
    batch = torch.zeros(1, 1, 1, 2, dtype=dtype)
    batch[0, 0, 0] = tensor
    with pytest.raises(ValueError, match=rf"^images contains {found}"):
        check_image_batch(batch, "images")


def test_check_finite_passes_finite_and_integer_tensors() -> None:
    for tensor in (torch.zeros(3), torch.arange(4), torch.tensor([1e38], dtype=torch.float32)):
        assert check_finite(tensor, "x") is tensor


def test_forward_failures_of_other_causes_are_not_explained() -> None:
    model = torch.nn.Conv2d(3, 2, 1)
    x = torch.zeros(2, 3, 4, 4)
    assert describe_forward_failure(model, x, (torch.zeros(2), 5), RuntimeError("boom")) is None
    with pytest.raises(RuntimeError, match="^boom$"):
        with explained_forward_errors(model, x, (torch.zeros(1),)):
            raise RuntimeError("boom")
    with pytest.raises(KeyError):  # only RuntimeError is looked at
        with explained_forward_errors(model, x.double()):
            raise KeyError("k")
