#!/usr/bin/env python3
"""Figures: overlays, grids, curves that are the examples' means, files saved whole."""

import json
import os
import subprocess
import sys
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


REGISTRY_TITLES = [
    "Grad-CAM", "Grad-CAM++", "XGrad-CAM", "Layer-CAM", "Ablation-CAM", "Score-CAM",
    "LIFT-CAM", "SHAP-CAM", "Integrated Grad-CAM", "Grad-CAM + TFT", "Libra-CAM",
]  # fmt: skip


def test_a_method_keeps_its_style_whatever_the_other_methods() -> None:
    from captum_cams.kit.benchmark import METHODS

    everything = method_styles(REGISTRY_TITLES)
    pairs = {(s["color"], s["marker"]) for s in everything.values()}
    assert len({s["color"] for s in everything.values()}) == len(REGISTRY_TITLES)
    assert len({s["marker"] for s in everything.values()}) == len(REGISTRY_TITLES)
    assert everything["Libra-CAM"] == {"color": "#000000", "marker": "p"}
    # alone, in other company, reversed, by registry name: the same look
    for subset in (["Libra-CAM"], ["Grad-CAM", "Libra-CAM"], REGISTRY_TITLES[::-1]):
        assert all(method_styles(subset)[name] == everything[name] for name in subset)
    assert [method_styles([key])[key] for key in METHODS if METHODS[key].title in everything] == [
        everything[METHODS[key].title] for key in METHODS if METHODS[key].title in everything
    ]
    # a method the palette does not know: its own look, never a registry method's, the
    # same with or without other methods
    new = method_styles(["Eigen-CAM"])["Eigen-CAM"]
    assert (new["color"], new["marker"]) not in pairs
    assert new["color"] not in {s["color"] for s in everything.values()}
    assert method_styles([*REGISTRY_TITLES, "Eigen-CAM"])["Eigen-CAM"] == new
    assert method_styles(["Eigen-CAM", "HiRes-CAM", "FullGrad"])["Eigen-CAM"] == new


def test_no_two_methods_of_a_figure_look_alike() -> None:
    for names in ([f"method {i}" for i in range(16)], [str(i) for i in range(399)]):
        styles = method_styles(names)
        assert len({(s["color"], s["marker"]) for s in styles.values()}) == len(names)
    with_registry = method_styles([*REGISTRY_TITLES, *(f"m{i}" for i in range(100))])
    assert len({(s["color"], s["marker"]) for s in with_registry.values()}) == 111


def test_curves_use_the_styles_and_keep_the_legend_outside() -> None:
    names = [*REGISTRY_TITLES, "a new method"]
    styles = method_styles(names)
    grid = torch.linspace(0, 1, 5)
    ax = plot_curves(grid, {name: torch.rand(5) for name in names})
    drawn = {(line.get_color(), line.get_marker()) for line in ax.get_lines()}
    assert drawn == {(s["color"], s["marker"]) for s in styles.values()}
    ax.figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1


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


def _label_lines_break_only_after_separators(original: str, label: str) -> None:
    # walk through the original: every line break of the label falls on one of the
    # original's new lines, on a space, or right after a separator of file names
    position = 0
    for line in label.split("\n"):
        start = original.index(line, position)
        assert original[position:start].strip() == "", (original, label)
        if start > 0:
            assert original[start - 1] in " \n_-/.,:;)", (original, label)
        position = start + len(line)
    assert position == len(original.rstrip()), (original, label)


def test_file_and_class_names_are_never_broken_inside_a_word() -> None:
    titles = [
        "207_n02099601_golden_retriever.JPEG: golden retriever",
        "a_very_long_photo_file_name_from_a_camera_" * 3 + ".jpg\nclass 281",
        "IMG" + "0123456789" * 6,  # no place to break at all
    ]
    maps = {"Grad-CAM": torch.rand(3, 1, 2, 2)}
    figure = overlay_grid(torch.rand(3, 3, 8, 8), maps, row_titles=titles)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for row, title in enumerate(titles):
        ax = figure.axes[2 * row]
        label = ax.yaxis.label
        if row < 2:
            _label_lines_break_only_after_separators(title, label.get_text())
        else:  # too long for the cell even in the smallest font: its two ends, around "…"
            text = label.get_text()
            assert "\n" not in text and "…" in text
            start, end = text.split("…")
            assert title.startswith(start) and title.endswith(end) and len(start) > 10
        # the (vertical) label stays beside its own image, clear of the rows above/below
        box, cell = label.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert cell.y0 - 1 <= box.y0 and box.y1 <= cell.y1 + 1, (title, box, cell)
    figure.clear()


def test_fit_label_breaks_then_shrinks() -> None:
    from captum_cams.visualization import _fit_label

    assert _fit_label("cat.jpg: tabby", 200.0, 8.0) == ("cat.jpg: tabby", 8.0)
    name = "golden_retriever_photo_number_0001.jpg"
    text, size = _fit_label(name, 100.0, 8.0)  # three lines are room enough
    assert size == 8.0 and text.count("\n") in (1, 2)
    _label_lines_break_only_after_separators(name, text)
    text, size = _fit_label(name * 2, 150.0, 8.0, max_lines=2)  # not in two lines at 8 pt
    assert size < 8.0 and text.count("\n") == 1
    _label_lines_break_only_after_separators(name * 2, text)


def test_grid_uses_inferno_one_tight_labelled_colour_bar_and_a_caption() -> None:
    images = torch.rand(3, 3, 16, 16)
    figure = overlay_grid(images, {"a": torch.rand(3, 1, 4, 4)}, caption="outlines: the parts")
    cells, bar = figure.axes[:-1], figure.axes[-1]
    assert {im.get_cmap().name for ax in cells[1::2] for im in ax.get_images()[1:]} == {"inferno"}
    assert "min-max scaled per image" in bar.get_ylabel()
    assert [t.get_text() for t in bar.get_yticklabels()][0::4] == ["0 (min)", "1 (max)"]
    assert figure._supxlabel is not None  # type: ignore[attr-defined]
    assert figure._supxlabel.get_text() == "outlines: the parts"  # type: ignore[attr-defined]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    # the bar sits right of the last column, with a gap under a fifth of a cell
    last = cells[-1].get_window_extent(renderer)
    gap = bar.get_window_extent(renderer).x0 - last.x1
    assert 0 <= gap < 0.2 * last.width, gap


def test_small_images_are_drawn_as_their_pixels_and_large_ones_smoothed() -> None:
    small = overlay_grid(torch.rand(1, 3, 32, 32), {"a": torch.rand(1, 1, 4, 4)})
    large = overlay_grid(torch.rand(1, 3, 400, 400), {"a": torch.rand(1, 1, 4, 4)})
    assert {im.get_interpolation() for ax in small.axes[:2] for im in ax.get_images()} == {
        "nearest"
    }
    assert {im.get_interpolation() for ax in large.axes[:2] for im in ax.get_images()} == {
        "antialiased"
    }


def test_threshold_sweep_spells_out_its_quantities_and_direction() -> None:
    thresholds = torch.linspace(0, 1, 11)
    api, apd = {"Grad-CAM": torch.rand(4, 11)}, {"Grad-CAM": torch.rand(4, 11)}
    figure = plot_threshold_sweep(thresholds, api, apd)
    titles = [ax.get_title() for ax in figure.axes]
    assert "average probability increase" in titles[0] and "average probability drop" in titles[1]
    caption = figure._supxlabel.get_text().replace("\n", " ")  # type: ignore[attr-defined]
    assert "thresholded at t" in caption and "from 0 (the whole map kept) to 1" in caption
    # the ring marks each curve's t = 0 end in the API-against-APD panel
    ring = figure.axes[2].collections[0].get_offsets()
    np.testing.assert_allclose(
        ring,
        [[apd["Grad-CAM"][:, 0].double().mean(), api["Grad-CAM"][:, 0].double().mean()]],
        rtol=1e-6,
    )
    rpi = plot_rpi_curves(torch.linspace(0.1, 1, 10), {"Grad-CAM": torch.rand(3, 10)})
    assert "relative probability increase" in rpi.axes[0].get_title()


def test_a_figure_shows_itself_in_jupyter_as_a_png() -> None:
    figure = overlay_grid(torch.rand(1, 3, 8, 8), {"a": torch.rand(1, 1, 2, 2)})
    png = figure._repr_png_()  # type: ignore[attr-defined]
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


_BACKEND_PROBE = """
import json, sys
import matplotlib
before = matplotlib.get_backend()
import captum_cams
import captum_cams.visualization as visualization
import captum_cams.kit.benchmark
import matplotlib.pyplot as plt
import torch
figure = visualization.overlay_grid(torch.rand(2, 3, 8, 8), {"a": torch.rand(2, 1, 2, 2)})
visualization.save_figure(figure, sys.argv[1])
visualization.plot_curves(torch.linspace(0, 1, 3), {"a": torch.rand(3)})
print(json.dumps({
    "before": before, "after": matplotlib.get_backend(), "pyplot_figures": plt.get_fignums(),
    "styles": visualization.method_styles(["Eigen-CAM", "Grad-CAM", "another method"]),
}))
"""


def test_importing_and_drawing_leave_the_users_backend(tmp_path: Path) -> None:
    # a fresh interpreter, so the import is the first one, with Jupyter's backend (any
    # other would do); a random hash seed, so the methods' styles are shown not to
    # depend on Python's string hashing
    backend = "module://matplotlib_inline.backend_inline"
    environment = {**os.environ, "MPLBACKEND": backend, "PYTHONHASHSEED": "random"}
    root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _BACKEND_PROBE, str(tmp_path / "grid.png")],
        capture_output=True, text=True, env=environment, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["before"] == report["after"] == backend
    assert report["pyplot_figures"] == []  # nothing left in pyplot's state
    assert report["styles"] == method_styles(["Eigen-CAM", "Grad-CAM", "another method"])
    assert (tmp_path / "grid.png").stat().st_size > 1000
