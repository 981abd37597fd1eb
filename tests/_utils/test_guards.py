#!/usr/bin/env python3
"""Argument guards: the target without a forward, parameter flags around a capture."""

import pytest
import torch
import torch.nn as nn

from captum_cams._utils.guards import (
    check_additional_forward_args,
    check_finite,
    check_image_batch,
    format_target,
    parameters_without_grad,
    preserved_model_state,
    submodules,
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
    # finite values whose sum overflows: the quick sum is not finite, the exact check passes
    large = torch.full((4,), 3e38, dtype=torch.float32)
    assert not torch.isfinite(large.sum())
    assert check_finite(large, "x") is large
    large[2] = float("nan")
    with pytest.raises(ValueError, match=r"^x contains NaN \(1 of 4 values\)"):
        check_finite(large, "x")


def test_submodules_are_the_modules_each_once() -> None:
    shared = nn.Linear(2, 2)
    inner = nn.Sequential(shared, nn.ReLU())
    model = nn.Sequential(inner, shared, nn.Sequential(inner), nn.Identity())
    found = submodules(model)
    assert found[0] is model
    assert len(found) == len({id(m) for m in found})
    assert {id(m) for m in found} == {id(m) for m in model.modules()}


def test_preserved_model_state_restores_modes_flags_grads_and_buffers() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Linear(1, 1)).eval()
    model[2].weight.requires_grad_(False)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    grad = model[0].weight.grad
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="inside"):
        with preserved_model_state(model):
            model.train()
            model(torch.randn(3, 1, 2, 1))  # batch norm updates its running statistics
            for param in model.parameters():
                param.requires_grad_(not param.requires_grad)
                param.grad = None
            raise RuntimeError("inside")
    assert not any(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
    assert model[0].weight.grad is grad and model[1].weight.grad is None
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_additional_forward_args_follow_captums_rows_rule() -> None:
    # one row per example, or one row for all; scalars and non-tensors pass
    check_additional_forward_args((torch.zeros(2, 5), torch.zeros(1, 3), torch.tensor(4.0), 7), 2)
    check_additional_forward_args(None, 2)
    with pytest.raises(
        ValueError, match=r"^additional_forward_args\[1\] has 3 rows \(shape \(3, 4\)\)"
    ):
        check_additional_forward_args((torch.zeros(2), torch.zeros(3, 4)), 2)
