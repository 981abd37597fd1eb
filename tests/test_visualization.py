#!/usr/bin/env python3
"""Figures: overlays, grids, curves that are the examples' means, files saved whole."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from captum_cams.visualization import (
    method_styles,
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
    assert len(figure.axes) == 7  # 2 x 3 cells and one shared colour bar
    assert len(overlay_grid(images, {"a": torch.rand(2, 1, 2, 2)}, colorbar=False).axes) == 4
    with pytest.raises(ValueError, match="maps_by_method\\['a'\\]"):
        overlay_grid(images, {"a": torch.rand(3, 1, 2, 2)})
    with pytest.raises(ValueError, match="row_titles"):
        overlay_grid(images, {"a": torch.rand(2, 1, 2, 2)}, row_titles=["x"])
    with pytest.raises(ValueError, match="outlines must be 2 x P x 8 x 8"):
        overlay_grid(images, {"a": torch.rand(2, 1, 2, 2)}, outlines=torch.zeros(2, 1, 4, 4))
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
    assert len(figure.get_axes()) == 5  # and the colour bar
    save_figure(figure, tmp_path / "deep" / "grid.png")
    plt.close(figure)
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["grid.png"]
    assert (tmp_path / "deep" / "grid.png").stat().st_size > 1000


def test_sixteen_methods_have_sixteen_colours_and_markers() -> None:
    names = [f"method {i}" for i in range(16)]
    styles = method_styles(names)
    assert len({style["color"] for style in styles.values()}) == 16
    assert len({style["marker"] for style in styles.values()}) == 16
    many = method_styles([str(i) for i in range(200)])
    assert len({(s["color"], s["marker"]) for s in many.values()}) == 200
    # the curves use them, and the legend sits outside the data (right of the axes)
    grid = torch.linspace(0, 1, 5)
    ax = plot_curves(grid, {name: torch.rand(5) for name in names})
    drawn = {(line.get_color(), line.get_marker()) for line in ax.get_lines()}
    assert drawn == {(s["color"], s["marker"]) for s in styles.values()}
    ax.figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1
    plt.close(ax.figure)


def test_grid_with_part_outlines_renders(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 32, 32) * 0.2  # dark, so the white outlines stand out
    parts = torch.zeros(2, 3, 32, 32, dtype=torch.bool)
    parts[0, 0, 4:12, 4:12] = True
    parts[1, 2, 20:30, 10:20] = True  # part 1 absent everywhere: no outline, no warning
    maps = {"a": torch.rand(2, 1, 4, 4), "b": torch.rand(2, 1, 8, 8)}
    figure = overlay_grid(images, maps, row_titles=["x", "y"], outlines=parts)
    cells = figure.get_axes()[:6]
    assert all(len(ax.collections) == 1 for ax in cells)  # one contour per present part
    # the contour at level 0.5 of a square of pixels 4..11 runs half a pixel outside it
    vertices = np.concatenate([path.vertices for path in cells[1].collections[0].get_paths()])
    np.testing.assert_allclose(vertices.min(0), [3.5, 3.5], atol=0.01)
    np.testing.assert_allclose(vertices.max(0), [11.5, 11.5], atol=0.01)
    save_figure(figure, tmp_path / "outlined.png")
    plt.close(figure)
    plain = overlay_grid(images, maps, row_titles=["x", "y"])
    save_figure(plain, tmp_path / "plain.png")
    plt.close(plain)
    outlined = plt.imread(tmp_path / "outlined.png")
    assert outlined.shape == plt.imread(tmp_path / "plain.png").shape
    assert not np.array_equal(outlined, plt.imread(tmp_path / "plain.png"))


def test_long_labels_stay_inside_the_figure() -> None:
    maps = {"Integrated Grad-CAM": torch.rand(2, 1, 2, 2), "Grad-CAM + TFT": torch.rand(2, 1, 2, 2)}
    titles = ["a_very_long_photo_file_name_from_a_camera_" * 2 + ".jpg: class 281", "b: class 3"]
    figure = overlay_grid(torch.rand(2, 3, 8, 8), maps, row_titles=titles)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = figure.bbox
    for ax in figure.axes:
        for text in (ax.yaxis.label, ax.title):
            if text.get_text():
                box = text.get_window_extent(renderer)
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1, text.get_text()
                assert frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()
    plt.close(figure)
