#!/usr/bin/env python3
r"""Pascal-VOC XML annotations (``torchvision.datasets.VOCDetection`` layout) for the
localisation metrics.

Files are parsed with :mod:`xml.etree.ElementTree` after a first pass with expat that
refuses any DTD (``<!DOCTYPE``) or entity declaration, so no entity is ever expanded
(no "billion laughs", no external entities). VOC annotations never need either.

Coordinates: VOC stores 1-based inclusive pixel coordinates. :func:`read_voc_boxes`
returns them as written; :func:`voc_boxes_to_tensor` and :func:`voc_ground_truth_mask`
convert them to the 0-based inclusive coordinates of :mod:`captum_cams.metrics`.
"""

import math
import os
import xml.etree.ElementTree as ET
from typing import List, NoReturn, Optional, Sequence, Tuple, Union
from xml.parsers import expat

import torch
from torch import Tensor

from captum_cams._utils.maps import boxes_to_masks

PathLike = Union[str, "os.PathLike[str]"]
VOCBox = Tuple[str, Tuple[float, float, float, float]]

#: The most pixels of a mask :func:`voc_ground_truth_mask` allocates by default (the
#: default decompression-bomb limit of PIL, ``PIL.Image.MAX_IMAGE_PIXELS``).
MAX_MASK_PIXELS = 89_478_485


class _Forbidden(Exception):
    pass


def _refuse(*_: object) -> NoReturn:
    raise _Forbidden()


def _parse(path: PathLike) -> ET.Element:
    with open(path, "rb") as handle:
        data = handle.read()
    checker = expat.ParserCreate()
    checker.StartDoctypeDeclHandler = _refuse
    checker.EntityDeclHandler = _refuse
    checker.UnparsedEntityDeclHandler = _refuse
    checker.ExternalEntityRefHandler = _refuse
    try:
        checker.Parse(data, True)
    except _Forbidden:
        raise ValueError(
            f"{os.fspath(path)}: DTD or entity declarations are not accepted in VOC annotations"
        ) from None
    except expat.ExpatError as exc:
        raise ValueError(f"{os.fspath(path)}: not well-formed XML ({exc})") from None
    return ET.fromstring(data)


def _number(node: Optional[ET.Element], what: str, path: PathLike) -> float:
    if node is None or node.text is None:
        raise ValueError(f"{os.fspath(path)}: missing {what}")
    try:
        return float(node.text.strip())
    except ValueError:
        raise ValueError(f"{os.fspath(path)}: {what} is not a number: {node.text!r}") from None


def read_voc_boxes(path: PathLike, include_difficult: bool = True) -> List[VOCBox]:
    r"""
    Reads the objects of one VOC annotation file.

    Args:
        path (str or PathLike): the ``.xml`` file.
        include_difficult (bool, optional): keep objects marked ``<difficult>1``.
                    Default: True

    Returns:
        *list*: ``(label_name, (xmin, ymin, xmax, ymax))`` per object, in file order,
        VOC's 1-based coordinates as floats.

    Examples::

        >>> read_voc_boxes("VOC2012/Annotations/2007_000027.xml")
        [('person', (174.0, 101.0, 349.0, 351.0))]
    """
    root = _parse(path)
    boxes: List[VOCBox] = []
    for obj in root.iter("object"):
        name_node = obj.find("name")
        if name_node is None or not (name_node.text or "").strip():
            raise ValueError(f"{os.fspath(path)}: an object has no name")
        difficult = obj.find("difficult")
        if (
            not include_difficult
            and difficult is not None
            and (difficult.text or "").strip() == "1"
        ):
            continue
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{os.fspath(path)}: object {name_node.text!r} has no bndbox")
        coords = tuple(
            _number(box.find(tag), f"bndbox/{tag}", path)
            for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        x1, y1, x2, y2 = coords
        boxes.append(((name_node.text or "").strip(), (x1, y1, x2, y2)))
    return boxes


def read_voc_size(path: PathLike) -> Tuple[int, int]:
    r"""
    The image size written in a VOC annotation's ``<size>``.

    Args:
        path (str or PathLike): the ``.xml`` file.

    Returns:
        *tuple[int, int]*: ``(H, W)``.

    Examples::

        >>> read_voc_size("VOC2012/Annotations/2007_000027.xml")
        (500, 486)
    """
    root = _parse(path)
    size = root.find("size")
    if size is None:
        raise ValueError(f"{os.fspath(path)}: missing size")
    height = _number(size.find("height"), "size/height", path)
    width = _number(size.find("width"), "size/width", path)
    for what, value in (("height", height), ("width", width)):
        if not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise ValueError(
                f"{os.fspath(path)}: size/{what} must be a positive whole number; got {value}"
            )
    return int(height), int(width)


def voc_boxes_to_tensor(boxes: Sequence[VOCBox], labels: Optional[Sequence[str]] = None) -> Tensor:
    r"""
    VOC boxes as a ``K x 4`` float64 tensor in 0-based inclusive pixel coordinates
    (VOC's values minus 1), optionally only those whose label is in ``labels``.

    Args:
        boxes (sequence of (str, tuple)): ``(label_name, (xmin, ymin, xmax, ymax))``
                    as :func:`read_voc_boxes` returns them.
        labels (sequence of str, optional): keep only these labels. Default: None (all).

    Returns:
        *Tensor*: ``K x 4`` float64 boxes ``(x1, y1, x2, y2)``, 0-based inclusive.

    Examples::

        >>> voc_boxes_to_tensor([("dog", (1.0, 1.0, 10.0, 20.0))])
        tensor([[ 0.,  0.,  9., 19.]], dtype=torch.float64)
    """
    kept = [coords for name, coords in boxes if labels is None or name in labels]
    if not kept:
        return torch.zeros(0, 4, dtype=torch.float64)
    return torch.tensor(kept, dtype=torch.float64) - 1


def voc_ground_truth_mask(
    path: PathLike,
    labels: Optional[Sequence[str]] = None,
    include_difficult: bool = True,
    max_pixels: Optional[int] = MAX_MASK_PIXELS,
) -> Tensor:
    r"""
    The union of an annotation's boxes as a ``1 x H x W`` bool mask at the size the
    file gives (for ``masks=`` of the localisation metrics; stack several with
    ``torch.stack``).

    Args:
        path (str or PathLike): the ``.xml`` file.
        labels (sequence of str, optional): only boxes of these labels. Default: None.
        include_difficult (bool, optional): keep objects marked ``<difficult>1``.
                    Default: True
        max_pixels (int, optional): the largest ``H·W`` accepted; a file declaring
                    a larger image is refused before its mask is allocated. None: no
                    limit. Default: :data:`MAX_MASK_PIXELS` (PIL's default
                    decompression-bomb limit, about 9459 x 9459).

    Returns:
        *Tensor*: ``1 x H x W`` bool mask.

    Raises:
        ValueError: the file is malformed, declares a size that is not positive
        or over ``max_pixels``, or a box outside the image; the message names
        the file.

    Examples::

        >>> mask = voc_ground_truth_mask("Annotations/2007_000027.xml", labels=["person"])
        >>> mask.shape
        torch.Size([1, 500, 486])
    """
    size = read_voc_size(path)
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ValueError(
            f"{os.fspath(path)}: declares a {size[0]}x{size[1]} image ({size[0] * size[1]} "
            f"pixels), over the limit of {max_pixels} pixels for a mask (max_pixels)"
        )
    boxes = voc_boxes_to_tensor(read_voc_boxes(path, include_difficult), labels)
    return boxes_to_masks([boxes], size, name=os.fspath(path))[0]
