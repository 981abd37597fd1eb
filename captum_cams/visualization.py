#!/usr/bin/env python3
"""Figures for class-activation maps, next to ``captum.attr.visualization``.

Everything takes torch tensors as the rest of the package produces them (images
``C x H x W`` in ``[0, 1]``, maps ``1 x h x w`` at any resolution) and returns
matplotlib objects.

The figures are drawn on explicit :class:`matplotlib.figure.Figure` objects, never
through ``pyplot``: importing this module and drawing leave the user's matplotlib
backend and pyplot's list of open figures as they were, and nothing opens a window.
A figure returned here shows itself in Jupyter (as the last expression of a cell, or
with ``display``) whatever the backend, and is saved with :func:`save_figure`.

Maps are drawn with ``inferno`` by default: a perceptually uniform colour map whose
lightness rises monotonically from black (the map's minimum) to pale yellow (its
maximum), so a map reads the same in greyscale and to colour-blind readers, and its
dark low end shares no hue with the objects under it (``jet``'s blue "low" hides blue
objects; ``viridis``'s low end is blue-violet too).
"""

import io
import os
import re
import textwrap
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath
from torch import Tensor

from captum_cams._utils.files import atomic_path
from captum_cams._utils.maps import as_maps, minmax_normalize, upsample
from captum_cams._utils.text import count_of

__all__ = [
    "DEFAULT_CMAP",
    "METHOD_COLORS",
    "METHOD_MARKERS",
    "NotebookFigure",
    "method_styles",
    "overlay",
    "overlay_grid",
    "plot_curves",
    "plot_threshold_sweep",
    "plot_rpi_curves",
    "save_figure",
]

#: The colour map of the maps (see the module docstring for the choice).
DEFAULT_CMAP = "inferno"

#: Line colours of the methods: one for each of the benchmark's registry methods, in
#: registry order (:data:`captum_cams.kit.benchmark.METHODS`); any other method gets a
#: colour-and-marker pair no registry method has, chosen by its name.
METHOD_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#000000",
    "#393b79", "#e7298a", "#66a61e", "#e6ab02", "#843c39", "#1b7f79", "#fc8d62", "#9e9ac8",
    "#a6761d", "#7570b3", "#d95f02", "#1b9e77", "#666666", "#b15928",
)  # fmt: skip
#: Line markers of the methods, as :data:`METHOD_COLORS`: one for each registry
#: method, then more for the others.
METHOD_MARKERS = (
    "o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "p",
    "h", "d", "8", "H", "1", "2", "3", "4", "+", "x",
)  # fmt: skip
_FIXED = 19

#: The registry's methods by their figure titles and their registry names, to their
#: index in :data:`METHOD_COLORS` / :data:`METHOD_MARKERS` (names compared in
#: lower case, without spaces or hyphens). A method keeps its look in every figure.
_FIXED_STYLES: Dict[str, int] = {
    "gradcam": 0,
    "gradcam++": 1,
    "xgradcam": 2,
    "layercam": 3,
    "ablationcam": 4,
    "scorecam": 5,
    "liftcam": 6,
    "shapcam": 7,
    "integratedgradcam": 8,
    "igcam": 8,
    "gradcam+tft": 9,
    "tft": 9,
    "libracam": 10,
    "hirescam": 11,
    "gradcamelementwise": 12,
    "gradcamew": 12,
    "eigencam": 13,
    "eigengradcam": 14,
    "sscam": 15,
    "iscam": 16,
    "smoothgradcam++": 17,
    "relevancecam": 18,
}

#: Font sizes (points) of the figures: legible in a paper at the figure's size.
_TITLE_SIZE = 9.0
_LABEL_SIZE = 8.0
_SMALLEST_SIZE = 5.5


class NotebookFigure(Figure):
    r"""
    A :class:`matplotlib.figure.Figure` that Jupyter displays as a PNG by itself
    (IPython's ``_repr_png_``): a figure made without ``pyplot`` has no backend to show
    it, and this package never picks one for the user. Everything else is matplotlib's
    ``Figure``; the functions of this module return one.

    Args:
        *args, **kwargs: those of :class:`matplotlib.figure.Figure` (``figsize``,
                    ``dpi``, ``layout``, ...).

    Examples::

        >>> figure = overlay_grid(images, {"Grad-CAM": maps})
        >>> figure            # the last expression of a notebook cell: drawn inline
        >>> figure = NotebookFigure(figsize=(6, 3), layout="constrained")
        >>> left, right = figure.subplots(1, 2)   # draw with plot_curves(..., ax=left)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Agg draws it (``canvas.draw()``, ``buffer_rgba()``, PNG output) as under
        # pyplot's default backend; no backend is selected for that
        FigureCanvasAgg(self)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _normal_name(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def method_styles(names: Sequence[str]) -> Dict[str, Dict[str, str]]:
    r"""
    A colour and a marker for every method that depend on its name alone: a method
    looks the same in every figure, whatever the other methods drawn.

    The benchmark's registry methods (by title, e.g. ``"Libra-CAM"``, or registry name,
    ``"libracam"``) have fixed, distinct colours and markers. Any other name gets a
    colour and marker of its own, chosen from a hash of the name (the same in every
    process) among the pairs the registry does not use. Should two names of one figure
    draw the same pair, the later name in sorted order takes the next free pair, so no
    two methods of a figure ever look alike (for up to 399 methods).

    Args:
        names (sequence of str): the methods of the figure.

    Returns:
        *dict[str, dict[str, str]]*: per name, ``{"color": ..., "marker": ...}`` for
        ``Axes.plot``.

    Examples::

        >>> method_styles(["Grad-CAM", "Libra-CAM"])["Libra-CAM"]
        {'color': '#000000', 'marker': 'p'}
    """
    colors, markers = len(METHOD_COLORS), len(METHOD_MARKERS)
    pairs: Dict[str, Tuple[int, int]] = {}
    for name in names:
        fixed = _FIXED_STYLES.get(_normal_name(name))
        if fixed is not None:
            pairs[name] = (fixed, fixed)
    used = set(pairs.values())
    # the pairs of the colours no registry method has, then the rest
    free = [(c, m) for c in range(_FIXED, colors) for m in range(markers)]
    free += [(c, m) for c in range(_FIXED) for m in range(markers) if m != c]
    free += [(c, c) for c in range(_FIXED)]  # a registry method's own, when it is absent
    for name in sorted(set(names) - set(pairs)):
        start = zlib.crc32(_normal_name(name).encode("utf-8")) % ((colors - _FIXED) * markers)
        for step in range(len(free)):
            pair = free[(start + step) % len(free)]
            if pair not in used:
                break
        pairs[name] = pair
        used.add(pair)
    return {
        name: {"color": METHOD_COLORS[pairs[name][0]], "marker": METHOD_MARKERS[pairs[name][1]]}
        for name in names
    }


def _plot_method(
    ax: Axes, xs: np.ndarray, ys: np.ndarray, name: str, style: Dict[str, str]
) -> None:
    ax.plot(xs, ys, markersize=4, linewidth=1.2, label=name, **style)  # type: ignore[arg-type]


def _legend_outside(ax: Axes) -> None:
    ax.legend(fontsize=_LABEL_SIZE, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _image_to_numpy(image: Tensor) -> np.ndarray:
    if image.dim() != 3:
        raise ValueError(f"image must be C x H x W; got shape {tuple(image.shape)}")
    array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:  # e.g. a normalised image: rescale for display only
        array = (array - low) / (high - low + 1e-12)
    return array if array.shape[2] == 3 else array[:, :, 0]


#: Where a label may break: after a space or a separator of file and class names.
_BREAK_AFTER = re.compile(r"(?<=[\s_\-/.,:;)])")
_TEXT_TO_PATH = TextToPath()


def _text_width(text: str, size: float) -> float:
    # the width in points of one line in matplotlib's default font, measured without
    # drawing anything
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return float(width)


def _fit_label(text: str, room: float, size: float, max_lines: int = 3) -> Tuple[str, float]:
    r"""
    ``text`` broken into lines no wider than ``room`` points, only after spaces and
    the separators of file names (``_ - / . , : ;``), never inside a word. Each
    paragraph (``\n``) may take ``max_lines`` lines; where that is not enough the font
    shrinks, down to ``_SMALLEST_SIZE``. A piece too long even then keeps its two ends
    around "…".
    """
    paragraphs = str(text).split("\n")
    for current in np.arange(size, _SMALLEST_SIZE - 1e-9, -0.5):
        lines: List[str] = []
        fits = True
        for paragraph in paragraphs:
            wrapped = _greedy_lines(paragraph, room, float(current))
            fits &= len(wrapped) <= max_lines
            fits &= all(_text_width(line, current) <= room for line in wrapped)
            lines += wrapped
        if fits:
            return "\n".join(lines), float(current)
    lines = []
    for paragraph in paragraphs:
        for line in _greedy_lines(paragraph, room, _SMALLEST_SIZE):
            whole, keep = line, len(line)
            while keep > 2 and _text_width(line, _SMALLEST_SIZE) > room:
                keep -= 1  # one unbreakable piece: its start and its end around "…"
                line = whole[: (keep + 1) // 2] + "…" + whole[len(whole) - keep // 2 :]
            lines.append(line)
    return "\n".join(lines), _SMALLEST_SIZE


def _greedy_lines(paragraph: str, room: float, size: float) -> List[str]:
    lines: List[str] = []
    line = ""
    for piece in _BREAK_AFTER.split(paragraph):
        if line and _text_width((line + piece).rstrip(), size) > room:
            lines.append(line.rstrip())
            line = piece.lstrip()
        else:
            line += piece
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def _lines_height(text: str, size: float) -> float:
    # inches taken across the lines of a label (line spacing 1.2) and its padding
    return (text.count("\n") + 1) * size * 1.2 / 72 + 0.1


def _caption(figure: Figure, text: str, width_inches: float) -> None:
    # below everything, wrapped at spaces to the figure's width; the layout makes room
    # about 0.5 em per character on average: an English sentence, not a worst case
    wrapped = textwrap.fill(
        text,
        width=max(30, int(width_inches * 72 / (_LABEL_SIZE * 0.5))),
        break_long_words=False,
        break_on_hyphens=False,
    )
    figure.supxlabel(wrapped, fontsize=_LABEL_SIZE, ha="center", linespacing=1.3)


def _interpolation(ax: Axes, pixels: np.ndarray) -> str:
    # an image enlarged on the axes is shown as its pixels (sharp, and a PNG a fraction
    # of the size of a smoothed one); a shrunk one is smoothed, against aliasing
    box = ax.get_position().transformed(ax.figure.transFigure)
    return "nearest" if min(box.width, box.height) >= max(pixels.shape[:2]) else "antialiased"


def overlay(
    image: Tensor,
    attribution: Tensor,
    ax: Optional[Axes] = None,
    alpha: float = 0.5,
    cmap: str = DEFAULT_CMAP,
    title: Optional[str] = None,
    interpolation: Optional[str] = None,
) -> Axes:
    r"""
    Draws a map, upsampled to the image and min-max scaled, over the image.

    Args:
        image (Tensor): ``C x H x W`` image (values outside ``[0, 1]`` are rescaled
                    for display).
        attribution (Tensor): ``1 x h x w`` or ``h x w`` map at any resolution.
        ax (Axes, optional): where to draw. Default: the axes of a new
                    :class:`NotebookFigure` (``ax.figure``).
        alpha (float, optional): opacity of the map. Default: 0.5.
        cmap (str, optional): matplotlib colour map. Default: ``"inferno"``
                    (:data:`DEFAULT_CMAP`).
        title (str, optional): the axes' title. Default: None.
        interpolation (str, optional): matplotlib's ``imshow`` interpolation. Default:
                    None: ``"nearest"`` where the image is enlarged on the axes (its
                    pixels shown as they are, sharp, and a PNG a fraction of the size),
                    ``"antialiased"`` where it is shrunk (no aliasing).

    Returns:
        *Axes*: the axes drawn on.

    Examples::

        >>> maps = LayerGradCamPlusPlus(model, layer).attribute(images, target=labels)
        >>> overlay(images[0], maps[0]).figure
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if ax is None:
        ax = NotebookFigure(figsize=(3, 3), layout="constrained").subplots()
    pixels = _image_to_numpy(image)
    maps = as_maps(attribution.detach().reshape(1, 1, *attribution.shape[-2:]).float().cpu())
    heat = minmax_normalize(upsample(maps, tuple(image.shape[-2:])))[0, 0].numpy()
    interpolation = interpolation or _interpolation(ax, pixels)
    ax.imshow(pixels, cmap=None if pixels.ndim == 3 else "gray", interpolation=interpolation)
    ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation=interpolation)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=_TITLE_SIZE)
    return ax


def _draw_outlines(ax: Axes, masks: np.ndarray, color: str) -> None:
    for mask in masks:  # one contour per part; parts the object lacks are empty
        if mask.any():
            ax.contour(mask.astype(np.float32), levels=[0.5], colors=color, linewidths=1.0)


def overlay_grid(
    images: Tensor,
    maps_by_method: Dict[str, Tensor],
    row_titles: Optional[Sequence[str]] = None,
    cell_size: float = 1.6,
    outlines: Optional[Tensor] = None,
    colorbar: bool = True,
    cmap: str = DEFAULT_CMAP,
    outline_color: str = "#00e5ff",
    caption: Optional[str] = None,
) -> Figure:
    r"""
    A grid of images (rows) by methods (columns, after the plain image), optionally
    with outlines (ground-truth parts or boxes) drawn on every cell, and one colour
    bar beside the grid, shared by all maps (each map is min-max scaled to ``[0, 1]``
    on its image).

    Row titles (file names, class names) and column titles are broken only between
    words or after the separators of file names, never inside a word, and set in a
    smaller font when long; nothing is clipped. Save the figure with
    :func:`save_figure`.

    Args:
        images (Tensor): ``N x C x H x W`` images.
        maps_by_method (dict[str, Tensor]): method name to its ``N x 1 x h x w`` maps.
        row_titles (list[str], optional): one label per image, e.g.
                    ``"cat.jpg\ntabby cat"`` (a new line starts a new line).
                    Default: None.
        cell_size (float, optional): inches per cell. Default: 1.6.
        outlines (Tensor, optional): ``N x P x H x W`` bool masks (e.g. the parts of
                    :class:`~captum_cams.kit.datasets.GroundTruthShapes`, or ``N x 1 x H x W``
                    boxes), outlined on every cell. Say what they are in ``caption``.
                    Default: None.
        colorbar (bool, optional): add the shared colour bar. Default: True.
        cmap (str, optional): matplotlib colour map of the maps. Default: ``"inferno"``.
        outline_color (str, optional): colour of the outlines; cyan is absent from
                    ``inferno``, so it stands out on every map value. Default:
                    ``"#00e5ff"``.
        caption (str, optional): a line of text under the grid, e.g. what the outlines
                    are. Default: None.

    Returns:
        *NotebookFigure*: the grid.

    Examples::

        >>> fig = overlay_grid(images, {"Grad-CAM++": maps_pp, "Score-CAM": maps_sc},
        ...                    outlines=annotations["part_masks"],
        ...                    caption="outlines: the object's parts")
        >>> save_figure(fig, "grid.png")
    """
    if images.dim() != 4:
        raise ValueError(f"images must be N x C x H x W; got shape {tuple(images.shape)}")
    count = images.shape[0]
    for name, maps in maps_by_method.items():
        if maps.shape[0] != count:
            raise ValueError(
                f"maps_by_method[{name!r}] has {count_of(maps.shape[0], 'map')} for "
                f"{count_of(count, 'image')}"
            )
    if row_titles is not None and len(row_titles) != count:
        raise ValueError(f"row_titles must have {count} entries; got {len(row_titles)}")
    if cell_size <= 0:
        raise ValueError(f"cell_size must be positive; got {cell_size}")
    masks = None
    if outlines is not None:
        image_size = tuple(images.shape[-2:])
        if (
            outlines.dim() != 4
            or outlines.shape[0] != count
            or tuple(outlines.shape[-2:]) != image_size
        ):
            raise ValueError(
                f"outlines must be {count} x P x {image_size[0]} x {image_size[1]} masks (one "
                f"set per image, at the images' size); got shape {tuple(outlines.shape)}"
            )
        masks = outlines.detach().bool().cpu().numpy()
    columns = 1 + len(maps_by_method)
    has_bar = colorbar and bool(maps_by_method)
    room = cell_size * 72 * 0.92  # points along a cell's side, less a margin
    labels = [_fit_label(str(t), room, _LABEL_SIZE) for t in row_titles or []]
    titles = [_fit_label(name, room, _TITLE_SIZE, max_lines=2) for name in maps_by_method]
    # room for the row labels, titles, colour bar and caption outside the cells, so the
    # cells keep their size; "compressed" lays out grids of fixed-aspect images tightly
    left = max([_lines_height(text, size) for text, size in labels], default=0.0)
    top = max([_lines_height(text, size) for text, size in titles], default=0.15)
    width = cell_size * columns + left + (1.0 if has_bar else 0.0) + 0.1
    height = cell_size * count + top + (0.6 if caption else 0.0) + 0.1
    figure = NotebookFigure(figsize=(width, height), layout="compressed")
    axes = figure.subplots(count, columns, squeeze=False)
    for row in range(count):
        pixels = _image_to_numpy(images[row])
        axes[row, 0].imshow(pixels, interpolation=_interpolation(axes[row, 0], pixels))
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        if labels:
            axes[row, 0].set_ylabel(labels[row][0], fontsize=labels[row][1], parse_math=False)
        if row == 0:
            axes[row, 0].set_title("input", fontsize=_TITLE_SIZE)
        for column, maps in enumerate(maps_by_method.values(), start=1):
            overlay(images[row], maps[row], ax=axes[row, column], cmap=cmap)
            if row == 0:
                title, size = titles[column - 1]
                axes[row, column].set_title(title, fontsize=size, parse_math=False)
        if masks is not None:
            for column in range(columns):
                _draw_outlines(axes[row, column], masks[row], outline_color)
    if has_bar:
        shrink = min(1.0, 2.5 / count) if count > 2 else 1.0
        bar = figure.colorbar(
            ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap),
            ax=axes,
            shrink=shrink,
            aspect=18 if count > 2 else 12,
            pad=0.02,
        )
        bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
        bar.set_ticklabels(["0 (min)", "0.25", "0.5", "0.75", "1 (max)"])
        length = cell_size * count * shrink * 72 * 0.9  # points along the bar
        text, size = _fit_label("map value, min-max scaled per image", length, _LABEL_SIZE, 2)
        bar.set_label(text, fontsize=size)
        bar.ax.tick_params(labelsize=_LABEL_SIZE - 1)
    if caption:
        _caption(figure, caption, width)
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
        ax (Axes, optional): where to draw. Default: the axes of a new
                    :class:`NotebookFigure` (``ax.figure``).
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
        >>> plot_curves(sweep.thresholds, {"Grad-CAM": sweep.api}, ylabel="API").figure
    """
    xs = grid.detach().double().cpu().reshape(-1).numpy()
    if not curves_by_method:
        raise ValueError("curves_by_method must hold at least one curve")
    if ax is None:
        ax = NotebookFigure(figsize=(4.5, 3), layout="constrained").subplots()
    styles = method_styles(list(curves_by_method))
    for name, curve in curves_by_method.items():
        values = _mean_curve(curve, f"curves_by_method[{name!r}]", len(xs))
        _plot_method(ax, xs, values, name, styles[name])
    ax.set_xlabel(xlabel, fontsize=_LABEL_SIZE + 1)
    ax.set_ylabel(ylabel, fontsize=_LABEL_SIZE + 1)
    if title:
        ax.set_title(title, fontsize=_TITLE_SIZE + 1, pad=14)  # clear of a 1e-5 offset text
    ax.grid(alpha=0.3)
    if legend:
        _legend_outside(ax)
    return ax


def plot_threshold_sweep(
    thresholds: Tensor,
    api_by_method: Dict[str, Tensor],
    apd_by_method: Dict[str, Tensor],
    binary: bool = False,
) -> Figure:
    r"""
    The threshold-sweep figure (Libra-CAM's Fig. 1): API and APD against the
    threshold, and API against APD, one line per method, with a caption saying what
    is thresholded and which way the threshold runs along each curve.

    API (average probability increase) is the mean of ``max(o − y, 0) / y`` and APD
    (average probability drop) the mean of ``max(y − o, 0) / y``, where ``y`` is the
    model's probability of the class on the image and ``o`` on the image masked by the
    map thresholded at ``t`` (:func:`~captum_cams.metrics.threshold_sweep`).

    Args:
        thresholds (Tensor): ``(T,)`` the sweep's thresholds
                    (:attr:`ThresholdSweep.thresholds`).
        api_by_method (dict[str, Tensor]): ``(T,)`` or ``N x T`` API curves.
        apd_by_method (dict[str, Tensor]): the APD curves, same keys.
        binary (bool, optional): the sweep used binary masks (``binary=True`` of
                    :func:`~captum_cams.metrics.threshold_sweep`), not the soft ones;
                    only the caption changes. Default: False.

    Returns:
        *NotebookFigure*: three panels and a caption; the third panel rings each
        curve's ``t = 0`` end.

    Examples::

        >>> sweep = threshold_sweep(model, images, maps, target=labels)
        >>> plot_threshold_sweep(sweep.thresholds, {"Grad-CAM": sweep.api}, {"Grad-CAM": sweep.apd})
    """
    if set(api_by_method) != set(apd_by_method):
        raise ValueError("api_by_method and apd_by_method must have the same methods")
    figure = NotebookFigure(figsize=(13, 4.4), layout="constrained")
    axes = figure.subplots(1, 3)
    xlabel = "threshold t"
    plot_curves(
        thresholds, api_by_method, axes[0], xlabel, "API (fraction of y)",
        "API: average probability increase ↑", legend=False,
    )  # fmt: skip
    plot_curves(
        thresholds, apd_by_method, axes[1], xlabel, "APD (fraction of y)",
        "APD: average probability drop ↓", legend=False,
    )  # fmt: skip
    length = thresholds.reshape(-1).shape[0]
    styles = method_styles(list(api_by_method))
    for name in api_by_method:
        api = _mean_curve(api_by_method[name], f"api_by_method[{name!r}]", length)
        apd = _mean_curve(apd_by_method[name], f"apd_by_method[{name!r}]", length)
        _plot_method(axes[2], apd, api, name, styles[name])
        axes[2].scatter(  # a ring around the curve's t = 0 end
            apd[:1], api[:1], s=100, facecolors="none", edgecolors=styles[name]["color"],
            linewidths=1.2, zorder=3,
        )  # fmt: skip
    axes[2].set_xlabel("APD (fraction of y)", fontsize=_LABEL_SIZE + 1)
    axes[2].set_ylabel("API (fraction of y)", fontsize=_LABEL_SIZE + 1)
    axes[2].set_title("API against APD (area under it ↑)", fontsize=_TITLE_SIZE + 1, pad=14)
    axes[2].grid(alpha=0.3)
    _legend_outside(axes[2])  # one legend for the three panels, outside the data
    kept = (
        "the image is kept where the map ≥ t and set to the baseline (zeros) elsewhere"
        if binary
        else "the image is multiplied by the map where the map ≥ t and by 0 elsewhere"
    )
    first, last = float(thresholds.reshape(-1)[0]), float(thresholds.reshape(-1)[-1])
    _caption(
        figure,
        f"y: the model's probability of the explained class on the image; o: on the masked "
        f"image. Each map is min-max scaled to [0, 1] and thresholded at t: {kept}. The "
        f"threshold t runs from {first:g} (the whole map kept) to {last:g} (only its top "
        f"pixels kept): left to right in the first two panels, and from the ringed end of "
        f"each curve in the third. Curves are means over the images.",
        13,
    )
    return figure


def plot_rpi_curves(grid: Tensor, rpi_by_method: Dict[str, Tensor]) -> Figure:
    r"""
    TFT's relative-probability-increase curves against the threshold, one line per
    method (from :attr:`TFTResult.rpi_curves` and :attr:`TFTResult.grid`), with a
    caption saying what is thresholded.

    Args:
        grid (Tensor): ``(T,)`` the candidate thresholds.
        rpi_by_method (dict[str, Tensor]): ``(T,)`` or ``N x T`` RPI curves.

    Returns:
        *NotebookFigure*: one panel and a caption.

    Examples::

        >>> result = threshold_fine_tuning(model, images, maps, target=labels)
        >>> plot_rpi_curves(result.grid, {"Grad-CAM": result.rpi_curves})
    """
    figure = NotebookFigure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    plot_curves(
        grid, rpi_by_method, ax, "threshold τ", "RPI (fraction of y)",
        "TFT: relative probability increase RPI(τ) ↑",
    )  # fmt: skip
    _caption(
        figure,
        "RPI = max(ŷ − y, 0) / y, mean over the images; y: the model's probability of the "
        "explained class on the image, ŷ: on the image kept where the min-max scaled map "
        "≥ τ (zeros elsewhere). TFT keeps, per image, the map above the τ of highest RPI.",
        7,
    )
    return figure


def save_figure(figure: Figure, path: Union[str, "os.PathLike[str]"], dpi: int = 100) -> None:
    r"""
    Saves a figure atomically: to a temporary file in the same folder, then
    ``os.replace``, so no half-written image is ever left behind. The bounding box is
    tight around everything drawn (legends outside the axes, long labels), so nothing
    is clipped; PNGs are written with the strongest lossless compression.

    Args:
        figure (Figure): the figure.
        path (str or PathLike): the image file; its suffix picks the format.
        dpi (int, optional): resolution. Default: 100.

    Examples::

        >>> save_figure(overlay_grid(images, maps), "out/grid.png")
    """
    image_format = Path(path).suffix.lstrip(".").lower() or None  # the temporary ends in .tmp
    options: Dict[str, Any] = {"pil_kwargs": {"optimize": False}} if image_format == "png" else {}
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format=image_format, bbox_inches="tight", **options)
