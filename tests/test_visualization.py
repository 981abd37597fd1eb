#!/usr/bin/env python3
import numpy as np
import pytest
import torch

from captum_cams.visualization import overlay, overlay_grid


def test_overlay_draws_the_upsampled_normalised_map() -> None:
    image = torch.rand(3, 16, 16)
    attribution = torch.tensor([[[0.0, 2.0], [4.0, 8.0]]])
    ax = overlay(image, attribution, title="m")
    heat = np.asarray(ax.get_images()[1].get_array())
    assert heat.shape == (16, 16)
    assert heat.min() == pytest.approx(0.0, abs=1e-6) and heat.max() == pytest.approx(1.0, abs=1e-6)
    assert heat[0, 0] < heat[-1, -1]  # the brightest corner stays where it was


def test_grid_shape_and_errors() -> None:
    images = torch.rand(2, 3, 8, 8)
    figure = overlay_grid(images, {"a": torch.rand(2, 1, 2, 2), "b": torch.rand(2, 1, 4, 4)})
    assert len(figure.axes) == 6
    with pytest.raises(ValueError, match="maps_by_method\\['a'\\]"):
        overlay_grid(images, {"a": torch.rand(3, 1, 2, 2)})
    with pytest.raises(ValueError, match="row_titles"):
        overlay_grid(images, {"a": torch.rand(2, 1, 2, 2)}, row_titles=["x"])
    with pytest.raises(ValueError, match="alpha"):
        overlay(images[0], torch.rand(1, 2, 2), alpha=2.0)
