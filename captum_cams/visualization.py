#!/usr/bin/env python3
"""Figures for class-activation maps, next to ``captum.attr.visualization``.

Everything takes torch tensors as the rest of the package produces them (images
``C x H x W`` in ``[0, 1]``, maps ``1 x h x w`` at any resolution) and returns
matplotlib objects; nothing here opens a window.
"""

import os
import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from captum_cams._utils.files import atomic_path
from captum_cams._utils.maps import as_maps, minmax_normalize, upsample  # noqa: E402

__all__ = [
    "METHOD_COLORS",
    "METHOD_MARKERS",
    "method_styles",
    "overlay",
    "overlay_grid",
    "plot_curves",
    "plot_threshold_sweep",
    "plot_rpi_curves",
    "save_figure",
]


#: Line colours of the methods, in order: matplotlib's ``tab10``, black, then the light
#: shades of ``tab20`` (20 colours, so 20 methods never share one).
METHOD_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)  # fmt: skip
#: Line markers of the methods, in order (as many as :data:`METHOD_COLORS`).
METHOD_MARKERS = (
    "o", "s", "^", "v", "D", "P", "X", "*", "<", ">",
    "p", "h", "d", "8", "H", "1", "2", "3", "4", "+",
)  # fmt: skip


def method_styles(names: Sequence[str]) -> Dict[str, Dict[str, str]]:
    r"""
    A colour and a marker for every method, both distinct for up to 20 methods and
    the (colour, marker) pair distinct for up to 400: no two methods look alike.

    Args:
        names (sequence of str): the methods, in the figure's order.

    Returns:
        *dict[str, dict[str, str]]*: per name, ``{"color": ..., "marker": ...}`` for
        ``Axes.plot``.

    Examples::

        >>> method_styles(["Grad-CAM", "Libra-CAM"])["Libra-CAM"]
        {'color': '#ff7f0e', 'marker': 's'}
    """
    count = len(METHOD_COLORS)
    return {
        name: {
            "color": METHOD_COLORS[i % count],
            "marker": METHOD_MARKERS[(i + i // count) % count],
        }
        for i, name in enumerate(names)
    }


def _plot_method(
    ax: Axes, xs: np.ndarray, ys: np.ndarray, name: str, style: Dict[str, str]
) -> None:
    ax.plot(xs, ys, markersize=4, linewidth=1.2, label=name, **style)  # type: ignore[arg-type]


def _legend_outside(ax: Axes) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _image_to_numpy(image: Tensor) -> np.ndarray:
    if image.dim() != 3:
        raise ValueError(f"image must be C x H x W; got shape {tuple(image.shape)}")
    array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:  # e.g. a normalised image: rescale for display only
        array = (array - low) / (high - low + 1e-12)
    return array if array.shape[2] == 3 else array[:, :, 0]


def overlay(
    image: Tensor,
    attribution: Tensor,
    ax: Optional[Axes] = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: Optional[str] = None,
) -> Axes:
    r"""
    Draws a map, upsampled to the image and min-max scaled, over the image.

    Args:
        image (Tensor): ``C x H x W`` image (values outside ``[0, 1]`` are rescaled
                    for display).
        attribution (Tensor): ``1 x h x w`` or ``h x w`` map at any resolution.
        ax (Axes, optional): where to draw. Default: a new figure's axes.
        alpha (float, optional): opacity of the map. Default: 0.5.
        cmap (str, optional): matplotlib colour map. Default: ``"jet"``.
        title (str, optional): the axes' title. Default: None.

    Returns:
        *Axes*: the axes drawn on.

    Examples::

        >>> maps = LayerGradCamPlusPlus(model, layer).attribute(images, target=labels)
        >>> overlay(images[0], maps[0])
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    pixels = _image_to_numpy(image)
    maps = as_maps(attribution.detach().reshape(1, 1, *attribution.shape[-2:]).float().cpu())
    heat = minmax_normalize(upsample(maps, tuple(image.shape[-2:])))[0, 0].numpy()
    ax.imshow(pixels, cmap=None if pixels.ndim == 3 else "gray")
    ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _draw_outlines(ax: Axes, masks: np.ndarray) -> None:
    for mask in masks:  # one contour per part; parts the object lacks are empty
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors="white", linewidths=0.9)


def overlay_grid(
    images: Tensor,
    maps_by_method: Dict[str, Tensor],
    row_titles: Optional[Sequence[str]] = None,
    cell_size: float = 2.0,
    outlines: Optional[Tensor] = None,
    colorbar: bool = True,
    cmap: str = "jet",
) -> Figure:
    r"""
    A grid of images (rows) by methods (columns, after the plain image), optionally
    with the ground-truth part outlines drawn on every cell, and one colour bar shared
    by all maps (each map is min-max scaled to ``[0, 1]`` on its image).

    The figure uses matplotlib's constrained layout, so titles and labels are never
    clipped; save it with :func:`save_figure` (tight bounding box).

    Args:
        images (Tensor): ``N x C x H x W`` images.
        maps_by_method (dict[str, Tensor]): method name to its ``N x 1 x h x w`` maps.
        row_titles (list[str], optional): one label per image, e.g. the class.
                    Default: None.
        cell_size (float, optional): inches per cell. Default: 2.0.
        outlines (Tensor, optional): ``N x P x H x W`` bool masks (e.g. the parts of
                    :class:`~captum_cams.datasets.GroundTruthShapes`, or ``N x 1 x H x W``
                    boxes), outlined in white on every cell. Default: None.
        colorbar (bool, optional): add the shared colour bar. Default: True.
        cmap (str, optional): matplotlib colour map of the maps. Default: ``"jet"``.

    Returns:
        *Figure*: the grid; save it with :func:`save_figure`.

    Examples::

        >>> fig = overlay_grid(images, {"Grad-CAM++": maps_pp, "Score-CAM": maps_sc},
        ...                    outlines=annotations["part_masks"])
        >>> save_figure(fig, "grid.png")
    """
    if images.dim() != 4:
        raise ValueError(f"images must be N x C x H x W; got shape {tuple(images.shape)}")
    count = images.shape[0]
    for name, maps in maps_by_method.items():
        if maps.shape[0] != count:
            raise ValueError(
                f"maps_by_method[{name!r}] has {maps.shape[0]} maps for {count} images"
            )
    if row_titles is not None and len(row_titles) != count:
        raise ValueError(f"row_titles must have {count} entries; got {len(row_titles)}")
    masks = None
    if outlines is not None:
        size = tuple(images.shape[-2:])
        if outlines.dim() != 4 or outlines.shape[0] != count or tuple(outlines.shape[-2:]) != size:
            raise ValueError(
                f"outlines must be {count} x P x {size[0]} x {size[1]} masks (one set per "
                f"image, at the images' size); got shape {tuple(outlines.shape)}"
            )
        masks = outlines.detach().bool().cpu().numpy()
    columns = 1 + len(maps_by_method)
    extra = 0.8 if colorbar and maps_by_method else 0.0
    figure, axes = plt.subplots(
        count,
        columns,
        figsize=(cell_size * columns + extra, cell_size * count + 0.3),
        squeeze=False,
        layout="constrained",
    )
    for row in range(count):
        axes[row, 0].imshow(_image_to_numpy(images[row]))
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        if row_titles is not None:
            # wrapped to the cell's height, so long file names never run into the next row
            label = textwrap.fill(str(row_titles[row]), width=max(10, int(cell_size * 12)))
            axes[row, 0].set_ylabel(label, fontsize=8)
        if row == 0:
            axes[row, 0].set_title("input", fontsize=9)
        for column, (name, maps) in enumerate(maps_by_method.items(), start=1):
            overlay(
                images[row],
                maps[row],
                ax=axes[row, column],
                cmap=cmap,
                title=name if row == 0 else None,
            )
        if masks is not None:
            for column in range(columns):
                _draw_outlines(axes[row, column], masks[row])
    if extra:
        bar = figure.colorbar(
            ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap),
            ax=axes,
            shrink=min(1.0, 3.0 / count) if count > 3 else 1.0,
            aspect=25,
        )
        bar.set_label("map, min-max scaled per image", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return figure


def _mean_curve(curve: Tensor, name: str, length: int) -> np.ndarray:
    values = curve.detach().double().cpu()
    if values.dim() == 2:
        values = values.mean(0)
    if values.dim() != 1 or values.shape[0] != length:
        raise ValueError(
            f"{name} must be a curve of {length} points (or N x {length}); "
            f"got shape {tuple(curve.shape)}"
        )
    return values.numpy()


def plot_curves(
    grid: Tensor,
    curves_by_method: Dict[str, Tensor],
    ax: Optional[Axes] = None,
    xlabel: str = "threshold",
    ylabel: str = "",
    title: Optional[str] = None,
    legend: bool = True,
) -> Axes:
    r"""
    One line per method over a common grid (e.g. thresholds); ``N x T`` curves are
    averaged over their examples first.

    Args:
        grid (Tensor): ``(T,)`` abscissae.
        curves_by_method (dict[str, Tensor]): method name to a ``(T,)`` or ``N x T``
                    curve.
        ax (Axes, optional): where to draw. Default: a new figure's axes.
        xlabel (str, optional): x-axis label. Default: ``"threshold"``.
        ylabel (str, optional): y-axis label. Default: ``""``.
        title (str, optional): the axes' title. Default: None.
        legend (bool, optional): a legend outside the axes, on the right.
                    Default: True.

    Returns:
        *Axes*: the axes drawn on; every method has its own colour and marker
        (:func:`method_styles`).

    Examples::

        >>> sweep = threshold_sweep(model, images, maps, target=labels)
        >>> plot_curves(sweep.thresholds, {"Grad-CAM": sweep.api}, ylabel="API")
    """
    xs = grid.detach().double().cpu().reshape(-1).numpy()
    if not curves_by_method:
        raise ValueError("curves_by_method must hold at least one curve")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    styles = method_styles(list(curves_by_method))
    for name, curve in curves_by_method.items():
        values = _mean_curve(curve, f"curves_by_method[{name!r}]", len(xs))
        _plot_method(ax, xs, values, name, styles[name])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if legend:
        _legend_outside(ax)
    return ax


def plot_threshold_sweep(
    thresholds: Tensor,
    api_by_method: Dict[str, Tensor],
    apd_by_method: Dict[str, Tensor],
) -> Figure:
    r"""
    The threshold-sweep figure (Libra-CAM's Fig. 1): API and APD against the
    threshold, and API against APD, one line per method.

    Args:
        thresholds (Tensor): ``(T,)`` the sweep's thresholds
                    (:attr:`ThresholdSweep.thresholds`).
        api_by_method (dict[str, Tensor]): ``(T,)`` or ``N x T`` API curves.
        apd_by_method (dict[str, Tensor]): the APD curves, same keys.

    Returns:
        *Figure*: three panels.

    Examples::

        >>> sweep = threshold_sweep(model, images, maps, target=labels)
        >>> plot_threshold_sweep(sweep.thresholds, {"Grad-CAM": sweep.api}, {"Grad-CAM": sweep.apd})
    """
    if set(api_by_method) != set(apd_by_method):
        raise ValueError("api_by_method and apd_by_method must have the same methods")
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    plot_curves(thresholds, api_by_method, axes[0], "threshold", "API", "API ↑", legend=False)
    plot_curves(thresholds, apd_by_method, axes[1], "threshold", "APD", "APD ↓", legend=False)
    length = thresholds.reshape(-1).shape[0]
    styles = method_styles(list(api_by_method))
    for name in api_by_method:
        api = _mean_curve(api_by_method[name], f"api_by_method[{name!r}]", length)
        apd = _mean_curve(apd_by_method[name], f"apd_by_method[{name!r}]", length)
        _plot_method(axes[2], apd, api, name, styles[name])
    axes[2].set_xlabel("APD")
    axes[2].set_ylabel("API")
    axes[2].set_title("API against APD", fontsize=10)
    axes[2].grid(alpha=0.3)
    _legend_outside(axes[2])  # one legend for the three panels, outside the data
    return figure


def plot_rpi_curves(grid: Tensor, rpi_by_method: Dict[str, Tensor]) -> Figure:
    r"""
    TFT's relative-probability-increase curves against the threshold, one line per
    method (from :attr:`TFTResult.rpi_curves` and :attr:`TFTResult.grid`).

    Args:
        grid (Tensor): ``(T,)`` the candidate thresholds.
        rpi_by_method (dict[str, Tensor]): ``(T,)`` or ``N x T`` RPI curves.

    Returns:
        *Figure*: one panel.

    Examples::

        >>> result = threshold_fine_tuning(model, images, maps, target=labels)
        >>> plot_rpi_curves(result.grid, {"Grad-CAM": result.rpi_curves})
    """
    figure, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    plot_curves(grid, rpi_by_method, ax, "threshold τ", "RPI", "TFT: RPI(τ) ↑")
    return figure


def save_figure(figure: Figure, path: Union[str, "os.PathLike[str]"], dpi: int = 100) -> None:
    r"""
    Saves a figure atomically: to a temporary file in the same folder, then
    ``os.replace``, so no half-written image is ever left behind. The bounding box is
    tight around everything drawn (legends outside the axes, long labels), so nothing
    is clipped.

    Args:
        figure (Figure): the figure.
        path (str or PathLike): the image file; its suffix picks the format.
        dpi (int, optional): resolution. Default: 100.

    Examples::

        >>> save_figure(overlay_grid(images, maps), "out/grid.png")
    """
    image_format = Path(path).suffix.lstrip(".") or None  # the temporary name ends in .tmp
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format=image_format, bbox_inches="tight")
