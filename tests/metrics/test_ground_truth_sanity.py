#!/usr/bin/env python3
"""The ground truth of the embedded default is meaningful for localisation metrics.

Grad-CAM of the embedded model must put far more of its energy in the object's box
than the box's share of the image; a random map must put about that share.
"""

import torch

from captum_cams import LayerGradCam
from captum_cams.kit.datasets import make_batch
from captum_cams.kit.models import embedded_default_layer, load_embedded_default
from captum_cams.metrics import boxes_to_masks, energy_pointing_game


def test_grad_cam_energy_is_well_above_box_area_and_random_is_near_it() -> None:
    model = load_embedded_default()
    images, labels, _, boxes = make_batch(64, split="test", seed=0)
    maps = LayerGradCam(model, embedded_default_layer(model)).attribute(images, target=labels)
    box_masks = boxes_to_masks(boxes, images.shape[-2:])
    area_fraction = box_masks.flatten(1).float().mean(1)

    grad_cam_energy = energy_pointing_game(maps, box_masks)
    random_maps = torch.rand(maps.shape, generator=torch.Generator().manual_seed(0))
    random_energy = energy_pointing_game(random_maps, box_masks)

    assert float(grad_cam_energy.mean()) > 2 * float(area_fraction.mean())
    assert float(grad_cam_energy.mean()) > float(area_fraction.mean()) + 0.2
    assert abs(float(random_energy.mean()) - float(area_fraction.mean())) < 0.05
