#!/usr/bin/env python3
"""SS-CAM equals torchcam's ``SSCAM`` with the same noise draws (torchvision ResNet-18,
random weights from a fixed seed, eval, at ``layer1``), and leaves the global random
state alone."""

from typing import Tuple

import torch
import torch.nn as nn

from captum_cams import LayerSSCam
from captum_cams._utils.maps import minmax_normalize

TARGETS = [3, 512]


def test_ss_cam_equals_torchcam_with_the_same_noise(
    small_resnet: Tuple[nn.Module, nn.Module, torch.Tensor],
) -> None:
    from torchcam.methods import SSCAM

    model, layer, x = small_resnet
    targets = TARGETS
    ours = LayerSSCam(model, layer).attribute(
        x, target=targets, num_samples=2, seed=5, internal_batch_size=96
    )
    with SSCAM(
        model, target_layer=layer, batch_size=64, num_samples=2, std=2.0, input_shape=x.shape[1:]
    ) as peer:
        with torch.no_grad():
            scores = model(x)
        torch.manual_seed(5)  # torchcam draws from the global generator
        (peer_maps,) = peer(class_idx=targets, scores=scores)
    torch.testing.assert_close(minmax_normalize(ours)[:, 0], peer_maps, atol=1e-4, rtol=0)
    # another seed is another draw
    other = LayerSSCam(model, layer).attribute(x, target=targets, num_samples=2, seed=6)
    assert not torch.allclose(minmax_normalize(other), minmax_normalize(ours), atol=1e-3)


def test_ss_cam_leaves_the_global_random_state_alone(
    small_resnet: Tuple[nn.Module, nn.Module, torch.Tensor],
) -> None:
    model, layer, x = small_resnet
    state = torch.get_rng_state()
    LayerSSCam(model, layer).attribute(x[:1], target=1, num_samples=1, internal_batch_size=None)
    assert torch.equal(state, torch.get_rng_state())
