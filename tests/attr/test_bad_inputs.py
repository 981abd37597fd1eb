#!/usr/bin/env python3
"""Bad inputs through every CAM method: one clear error naming the argument, hooks
released and the model as it was (NaN/±Inf, dtype, channels, extra-argument batch)."""

from typing import Dict, List

import pytest
import torch
import torch.nn as nn

from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerEigenCam,
    LayerEigenGradCam,
    LayerGradCam,
    LayerGradCamElementWise,
    LayerGradCamPlusPlus,
    LayerHiResCam,
    LayerIntegratedGradCam,
    LayerISCam,
    LayerLiftCam,
    LayerRelevanceCam,
    LayerScoreCam,
    LayerShapCam,
    LayerSmoothGradCamPlusPlus,
    LayerSSCam,
    LayerXGradCam,
)

METHODS: List[type] = [
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerXGradCam,
    LayerCam,
    LayerAblationCam,
    LayerScoreCam,
    LayerLiftCam,
    LayerShapCam,
    LayerIntegratedGradCam,
    LayerHiResCam,
    LayerGradCamElementWise,
    LayerEigenCam,
    LayerEigenGradCam,
    LayerSSCam,
    LayerISCam,
    LayerSmoothGradCamPlusPlus,
    LayerRelevanceCam,
]
IDS = [m.__name__ for m in METHODS]


class ScaledNet(nn.Module):
    """Scales each image by its own factor (an extra forward argument), then conv-ReLU x2
    (the CAM layer is the second) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = x * scale.reshape(-1, 1, 1, 1)
        return self.fc(self.flatten(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))))


def _model() -> ScaledNet:
    torch.manual_seed(0)
    return ScaledNet().eval()


def _images(n: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 6, 6, generator=torch.Generator().manual_seed(3))


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _attribute(method: type, model: nn.Module, inputs: torch.Tensor, scale: object) -> object:
    cam = method(model, model.relu2)
    if method is LayerIntegratedGradCam:
        return cam.attribute(inputs, target=1, additional_forward_args=(scale,), n_steps=3)
    return cam.attribute(inputs, target=1, additional_forward_args=(scale,))


POISON = {
    "nan": float("nan"),
    "+inf": float("inf"),
    "-inf": float("-inf"),
}
PLACES = {
    "first": lambda x, v: x.__setitem__((0, 0, 0, 0), v),
    "last": lambda x, v: x.__setitem__((-1, -1, -1, -1), v),
    "all": lambda x, v: x.fill_(v),
}


def _check_untouched(model: nn.Module, before: Dict[str, torch.Tensor]) -> None:
    assert _hooks(model) == 0
    assert not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@pytest.mark.parametrize("poison", sorted(POISON))
@pytest.mark.parametrize("place", sorted(PLACES))
def test_non_finite_inputs_are_refused_by_name(method: type, poison: str, place: str) -> None:
    model = _model()
    before = _state(model)
    images = _images()
    PLACES[place](images, POISON[poison])
    label = {"nan": "NaN", "+inf": r"\+Inf", "-inf": "-Inf"}[poison]
    with pytest.raises(ValueError, match=rf"^inputs contains {label} .*must be finite"):
        _attribute(method, model, images, torch.ones(2))
    _check_untouched(model, before)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_the_models_own_error_on_another_dtype_passes_unchanged(
    method: type, dtype: torch.dtype
) -> None:
    # the methods do not guess from PyTorch's messages: the model's error reaches the
    # user as the model raised it, and the model is left as it was
    model = _model()
    before = _state(model)
    with pytest.raises(RuntimeError) as error:
        _attribute(method, model, _images().to(dtype), torch.ones(2, dtype=dtype))
    assert type(error.value) is RuntimeError and error.value.__cause__ is None
    # PyTorch's own text, e.g. "Input type (double) and bias type (float) should be the same"
    assert "type" in str(error.value)
    _check_untouched(model, before)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@pytest.mark.parametrize("channels", [1, 4])
def test_the_models_own_error_on_another_channel_count_passes_unchanged(
    method: type, channels: int
) -> None:
    model = _model()
    before = _state(model)
    with pytest.raises(RuntimeError, match=r"to have 3 channels, but got \d+ channels") as error:
        _attribute(method, model, _images(channels=channels), torch.ones(2))
    assert type(error.value) is RuntimeError and error.value.__cause__ is None
    _check_untouched(model, before)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
@pytest.mark.parametrize("rows", [3, 5])
def test_extra_arguments_of_another_batch_are_named(method: type, rows: int) -> None:
    model = _model()
    before = _state(model)
    with pytest.raises(
        ValueError, match=rf"^additional_forward_args\[0\] has {rows} rows .* inputs has 2"
    ):
        _attribute(method, model, _images(), torch.ones(rows))
    _check_untouched(model, before)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_well_formed_extra_arguments_still_work(method: type) -> None:
    model = _model()
    maps = _attribute(method, model, _images(), torch.tensor([1.0, 2.0]))
    assert isinstance(maps, torch.Tensor) and bool(torch.isfinite(maps).all())


@pytest.mark.parametrize(
    "method", [LayerAblationCam, LayerLiftCam, LayerShapCam], ids=lambda m: m.__name__
)
@pytest.mark.parametrize("value", [3e38, -3e38])
def test_finite_inputs_that_overflow_the_model_do_not_blame_the_head(
    method: type, value: float
) -> None:
    model = _model()
    before = _state(model)
    images = torch.full((2, 3, 6, 6), value)  # finite, but the layers overflow to ±Inf/NaN
    with pytest.raises(ValueError, match="model's output for these inputs contains NaN or Inf"):
        _attribute(method, model, images, torch.ones(2))
    _check_untouched(model, before)
