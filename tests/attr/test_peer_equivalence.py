#!/usr/bin/env python3
"""Each baseline equals its peer implementation on torchvision models (random weights).

pytorch-grad-cam for Grad-CAM++, XGrad-CAM, Layer-CAM and Ablation-CAM; torchcam for
Score-CAM. Both sides are compared at layer resolution after min-max normalisation,
to 1e-4 (max abs), on a batch of 3 with 3 different targets.

The peers' Ablation-CAM and Score-CAM run one whole-model forward per channel and
example, so those cases use 32 x 32 inputs and a layer with fewer channels, whose
maps are 4 x 4 (ResNet-18 ``layer2``, 128 channels) and 16 x 16 (VGG-11's second
block, 128 channels), instead of the last block at 64 x 64 (512 channels; 2 x 2 and
4 x 4 maps): the same equality, on larger maps, at a fraction of the cost.
"""

from typing import Callable, Dict, Tuple

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import AblationCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerGradCamPlusPlus,
    LayerScoreCam,
    LayerXGradCam,
)
from captum_cams._utils.maps import minmax_normalize

TARGETS = [3, 17, 512]


def _resnet18() -> Tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    return model, model.layer4


def _vgg11() -> Tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(2)
    model = torchvision.models.vgg11(weights=None).eval()
    return model, model.features[-2]  # the last conv block's ReLU: 4 x 4 at 64 x 64


def _resnet18_layer2() -> Tuple[torch.nn.Module, torch.nn.Module]:
    model, _ = _resnet18()
    return model, model.layer2  # 128 channels, 4 x 4 at 32 x 32


def _vgg11_block1() -> Tuple[torch.nn.Module, torch.nn.Module]:
    model, _ = _vgg11()
    # the first block's ReLU: 64 channels, 32 x 32 at 32 x 32 (at this size VGG's
    # 25088 x 4096 classifier costs most of a forward, so fewer channels is what counts;
    # ResNet-18's layer2 case covers the upsampling of a coarser map)
    return model, model.features[1]


ModelFactory = Callable[[], Tuple[torch.nn.Module, torch.nn.Module]]
MODELS: Dict[str, ModelFactory] = {"resnet18": _resnet18, "vgg11": _vgg11}
#: The setups of the methods whose peers run one whole-model forward per channel.
PERTURBATION_MODELS: Dict[str, ModelFactory] = {
    "resnet18": _resnet18_layer2,
    "vgg11": _vgg11_block1,
}
#: Methods compared on ``PERTURBATION_MODELS`` at 32 x 32.
PERTURBATION_METHODS = ("ablationcam", "scorecam")

PAIRS = {
    "gradcam++": (LayerGradCamPlusPlus, GradCAMPlusPlus),
    "xgradcam": (LayerXGradCam, XGradCAM),
    "layercam": (LayerCam, LayerCAM),
    "ablationcam": (LayerAblationCam, AblationCAM),
}


def _inputs(size: int = 64) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(3))


def _setup(model_name: str, method: str) -> Tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    if method in PERTURBATION_METHODS:
        # 32 x 32 and fewer channels keep the peers' K forwards per example fast
        model, layer = PERTURBATION_MODELS[model_name]()
        return model, layer, _inputs(32)
    model, layer = MODELS[model_name]()
    return model, layer, _inputs()


def _peer_at_layer_resolution(peer_class, model, layer, inputs) -> np.ndarray:  # type: ignore[no-untyped-def]
    with peer_class(model=model, target_layers=[layer]) as peer:
        # None: no resize, so the peer's map stays at layer resolution (still mm-scaled)
        peer.get_target_width_height = lambda _inputs: None
        return peer(input_tensor=inputs, targets=[ClassifierOutputTarget(t) for t in TARGETS])


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("method", sorted(PAIRS))
def test_equals_pytorch_grad_cam(model_name: str, method: str) -> None:
    model, layer, inputs = _setup(model_name, method)
    ours_class, peer_class = PAIRS[method]
    ours = minmax_normalize(ours_class(model, layer).attribute(inputs, target=TARGETS))
    peer = _peer_at_layer_resolution(peer_class, model, layer, inputs)
    assert ours.shape[-2:] == peer.shape[-2:]
    assert float(ours.amax()) > 0  # not a degenerate all-zero comparison
    np.testing.assert_allclose(ours[:, 0].detach().numpy(), peer, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_score_cam_equals_torchcam(model_name: str) -> None:
    from torchcam.methods import ScoreCAM

    model, layer, inputs = _setup(model_name, "scorecam")
    ours = minmax_normalize(LayerScoreCam(model, layer).attribute(inputs, target=TARGETS))
    with ScoreCAM(model, target_layer=layer, batch_size=64, input_shape=inputs.shape[1:]) as peer:
        with torch.no_grad():
            scores = model(inputs)
        (peer_maps,) = peer(class_idx=TARGETS, scores=scores)
    assert float(ours.amax()) > 0
    torch.testing.assert_close(ours[:, 0], peer_maps, atol=1e-4, rtol=0)
