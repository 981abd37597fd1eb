#!/usr/bin/env python3
"""Figures: overlays, grids, curves that are the examples' means, files saved whole."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from captum_cams.visualization import (
    overlay,
    overlay_grid,
    plot_curves,
    plot_rpi_curves,
    plot_threshold_sweep,
    save_figure,
)


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


def test_curves_are_means_over_examples() -> None:
    grid = torch.tensor([0.0, 0.5, 1.0])
    curves = torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, 6.0]])
    ax = plot_curves(grid, {"a": curves, "b": torch.tensor([1.0, 1.0, 1.0])}, ylabel="API")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_allclose(lines[0].get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 2.0, 4.0])
    plt.close(ax.figure)
    with pytest.raises(ValueError, match=r"curves_by_method\['a'\] must be a curve of 3 points"):
        plot_curves(grid, {"a": torch.zeros(4)})


def test_sweep_and_rpi_figures() -> None:
    thresholds = torch.linspace(0, 1, 11)
    api = {"m": torch.rand(5, 11), "n": torch.rand(5, 11)}
    apd = {"m": torch.rand(5, 11), "n": torch.rand(5, 11)}
    figure = plot_threshold_sweep(thresholds, api, apd)
    axes = figure.get_axes()
    assert len(axes) == 3 and all(len(ax.get_lines()) == 2 for ax in axes)
    np.testing.assert_allclose(axes[2].get_lines()[0].get_xdata(), apd["m"].double().mean(0))
    np.testing.assert_allclose(axes[2].get_lines()[0].get_ydata(), api["m"].double().mean(0))
    plt.close(figure)
    with pytest.raises(ValueError, match="same methods"):
        plot_threshold_sweep(thresholds, api, {"m": apd["m"]})
    figure = plot_rpi_curves(torch.linspace(0.1, 1, 10), {"Grad-CAM": torch.rand(3, 10)})
    assert len(figure.get_axes()[0].get_lines()) == 1
    plt.close(figure)


def test_overlay_and_atomic_save(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 16, 16)
    maps = torch.zeros(2, 1, 4, 4)
    maps[:, :, 0, 0] = 1.0
    ax = overlay(images[0], maps[0])
    heat = ax.get_images()[1].get_array()
    assert heat.shape == (16, 16) and float(heat.max()) == 1.0 and float(heat[15, 15]) == 0.0
    plt.close(ax.figure)
    figure = overlay_grid(images, {"m": maps}, row_titles=["a", "b"])
    assert len(figure.get_axes()) == 4
    save_figure(figure, tmp_path / "deep" / "grid.png")
    plt.close(figure)
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["grid.png"]
    assert (tmp_path / "deep" / "grid.png").stat().st_size > 1000
