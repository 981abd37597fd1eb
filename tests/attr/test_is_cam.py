#!/usr/bin/env python3
"""IS-CAM equals torchcam's ``ISCAM`` (torchvision ResNet-18, random weights from a fixed
seed, eval, at ``layer1``)."""

from typing import Tuple

import torch
import torch.nn as nn

from captum_cams import LayerISCam
from captum_cams._utils.maps import minmax_normalize

TARGETS = [3, 512]


def test_is_cam_equals_torchcam(small_resnet: Tuple[nn.Module, nn.Module, torch.Tensor]) -> None:
    from torchcam.methods import ISCAM

    model, layer, x = small_resnet
    targets = TARGETS
    ours = LayerISCam(model, layer).attribute(
        x, target=targets, num_samples=3, internal_batch_size=64
    )
    with ISCAM(
        model, target_layer=layer, batch_size=64, num_samples=3, input_shape=x.shape[1:]
    ) as peer:
        with torch.no_grad():
            scores = model(x)
        (peer_maps,) = peer(class_idx=targets, scores=scores)
    assert float(ours.amax()) > 0
    torch.testing.assert_close(minmax_normalize(ours)[:, 0], peer_maps, atol=1e-4, rtol=0)
