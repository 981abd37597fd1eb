#!/usr/bin/env python3
"""The project's own ground-truth dataset: synthetic "creatures" made of parts.

Every image holds one object on a textured background with a few small distractor
shapes. The object is a coloured elliptical *body* plus a subset of four *parts*,
each drawn at a fixed place relative to the body:

=========  ============================================================
part       where and how it is drawn
=========  ============================================================
``horn``   a triangle standing on top of the body, in the body colour
``tail``   a bar leaving the body to the right, in the body colour
``stripe`` a dark horizontal band across the lower half of the body
``spot``   a dark disc in the upper-left quarter of the body
=========  ============================================================

The class of an image is the set of parts its object has (see
:data:`CLASS_PARTS`), so classes differ from each other in one, two or three
parts; this makes the dataset a small analogue of the CUB part benchmark that
CALM (Kim et al., ICCV 2021) uses for counterfactual attributions. Body colour,
size, aspect and position, background and distractors are drawn independently
of the class, so only the parts decide it.

Every item is a pure function of ``(seed, split, index)``: nothing is stored,
and an item is bit-identical on every machine and in every process. Random
numbers come from NumPy's PCG64 seeded through a ``SeedSequence`` (uniform and
integer variates only), and the drawing uses only IEEE-exact arithmetic
(``+ - * /``, comparisons, ``sqrt``), no transcendental functions and no BLAS,
so neither the CPU's vector units nor the thread count can change a bit.
"""

import colorsys
import operator
from typing import Any, Dict, List, NamedTuple, Sequence, Set, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

#: Names of the parts, in the order of ``part_masks`` and ``parts_present``.
PART_NAMES: Tuple[str, ...] = ("horn", "tail", "stripe", "spot")

#: The part indices of every class, in label order.
CLASS_PARTS: Tuple[Tuple[int, ...], ...] = (
    (0,),
    (1,),
    (2,),
    (3,),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 3),
    (0, 1, 2),
    (0, 1, 2, 3),
)

#: Class names, in label order: the names of the class's parts joined by ``+``.
CLASSES: Tuple[str, ...] = tuple("+".join(PART_NAMES[p] for p in parts) for parts in CLASS_PARTS)

NUM_CLASSES: int = len(CLASSES)
NUM_PARTS: int = len(PART_NAMES)

#: Split names and the code each contributes to the per-item seed.
SPLITS: Dict[str, int] = {"train": 0, "val": 1, "test": 2}

# Mixed into every per-item seed so that these images do not share a random
# stream with anything else seeded by (seed, split, index).
_SALT = 0x5A17E5


def _check_label(label: Any, name: str) -> int:
    if isinstance(label, Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = int(label.item())
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"{name} must be an int class index; got {type(label).__name__}")
    if not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"{name} must be a class index in [0, {NUM_CLASSES}); got {int(label)}")
    return int(label)


def class_parts(label: int) -> Set[int]:
    r"""
    The indices (into :data:`PART_NAMES`) of the parts that objects of a class have.

    Args:
        label (int): a class index in ``[0, len(CLASSES))``.

    Returns:
        *set[int]*: the part indices of that class (a fresh set; changing it
        changes nothing here).

    Examples::

        >>> sorted(class_parts(4))  # "horn+tail"
        [0, 1]
    """
    return set(CLASS_PARTS[_check_label(label, "label")])


def counterfactual_pairs(
    num_differing_parts: int, only_present: bool = False
) -> List[Tuple[int, int]]:
    r"""
    Class pairs whose part sets differ in exactly ``num_differing_parts`` parts.

    "Differ" means the symmetric difference of :func:`class_parts`. The pairs are
    *ordered* ``(y, y_other)``, both orders included, because the counterfactual
    attribution ``p(y, z) - p(y_other, z)`` of an image of class ``y`` is not
    symmetric: its ground truth (:func:`counterfactual_mask`) holds only the parts
    that ``y`` has and ``y_other`` lacks. Keep ``a < b`` for unordered pairs.

    Args:
        num_differing_parts (int): the size of the symmetric difference, ``>= 0``.
        only_present (bool, optional): keep only pairs whose differing parts are
                    all parts of ``y`` (``class_parts(y_other)`` is a subset of
                    ``class_parts(y)``), so that on an image of class ``y`` the
                    counterfactual mask shows all ``num_differing_parts`` parts
                    and is never empty. Default: False.

    Returns:
        *list[tuple[int, int]]*: the pairs, sorted; empty when there are none.

    Examples::

        >>> (9, 0) in counterfactual_pairs(3, only_present=True)
        True
    """
    if (
        isinstance(num_differing_parts, bool)
        or not isinstance(num_differing_parts, int)
        or num_differing_parts < 0
    ):
        raise ValueError(
            f"num_differing_parts must be a non-negative int; got {num_differing_parts!r}"
        )
    pairs = []
    for y, parts in enumerate(CLASS_PARTS):
        for y_other, other_parts in enumerate(CLASS_PARTS):
            if y == y_other:
                continue
            if len(set(parts) ^ set(other_parts)) != num_differing_parts:
                continue
            if only_present and not set(other_parts) <= set(parts):
                continue
            pairs.append((y, y_other))
    return pairs


def counterfactual_mask(
    annotation: Dict[str, Tensor],
    label: Union[int, Sequence[int], Tensor],
    other_label: Union[int, Sequence[int], Tensor],
) -> Tensor:
    r"""
    Ground truth for the counterfactual attribution ``p(y, z) - p(y', z)``.

    The mask is the union of the part masks of the parts that class ``label``
    has and class ``other_label`` lacks: ``class_parts(label) -
    class_parts(other_label)``. These are the pixels where the evidence for
    ``label`` over ``other_label`` lies (CALM, Table 1). Parts that only
    ``other_label`` has are not drawn in the image and have no pixels, so they
    contribute nothing; the mask is therefore empty when ``class_parts(label)`` is
    a subset of ``class_parts(other_label)``, and it is never the body. Body
    pixels that a part covers belong to that part's mask (the stripe and the
    spot lie inside the body; the horn and the tail outside it).

    ``label`` must be the class of the annotated image: its parts must be the
    annotation's ``parts_present``; a mismatch is a ``ValueError``.

    Args:
        annotation (dict): an annotation from :class:`GroundTruthShapes`, either
                    one item's (``part_masks`` of shape ``P x H x W``) or a
                    DataLoader batch of them (``N x P x H x W``).
        label (int, list[int] or Tensor): the image's class; one per example for
                    a batch (an int is used for every example).
        other_label (int, list[int] or Tensor): the class compared against;
                    one per example for a batch (an int is used for every example).

    Returns:
        *Tensor*: a bool mask of shape ``1 x H x W`` (``N x 1 x H x W`` for a batch).

    Examples::

        >>> data = GroundTruthShapes(10, split="test", return_annotations=True)
        >>> image, label, annotation = data[0]
        >>> other = counterfactual_pairs(1)[0][1]  # any other class works
        >>> counterfactual_mask(annotation, label, other).shape
        torch.Size([1, 64, 64])
    """
    if not isinstance(annotation, dict) or "part_masks" not in annotation:
        raise TypeError("annotation must be a dict with 'part_masks' and 'parts_present'")
    part_masks = annotation["part_masks"]
    present = annotation["parts_present"]
    batched = part_masks.dim() == 4
    if not batched and part_masks.dim() != 3:
        raise ValueError(
            "annotation['part_masks'] must be P x H x W or N x P x H x W; got shape "
            f"{tuple(part_masks.shape)}"
        )
    if not batched:
        part_masks, present = part_masks.unsqueeze(0), present.unsqueeze(0)
    num = part_masks.shape[0]

    def per_example(value: Any, name: str) -> List[int]:
        if isinstance(value, Tensor) and value.dim() > 0:
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            if not batched or len(value) != num:
                raise ValueError(
                    f"{name} must be an int or hold one class per example ({num}); "
                    f"got {len(value)} values"
                )
            return [_check_label(v, name) for v in value]
        return [_check_label(value, name)] * num

    labels = per_example(label, "label")
    others = per_example(other_label, "other_label")
    keep = torch.zeros(num, NUM_PARTS, dtype=torch.bool)
    for i, (y, y_other) in enumerate(zip(labels, others)):
        expected = torch.zeros(NUM_PARTS, dtype=torch.bool)
        expected[list(CLASS_PARTS[y])] = True
        if not torch.equal(present[i].to(torch.bool).cpu(), expected):
            raise ValueError(
                f"label {y} ({CLASSES[y]}) is not the class of the annotated image "
                f"(its parts_present are {present[i].tolist()})"
            )
        keep[i, sorted(set(CLASS_PARTS[y]) - set(CLASS_PARTS[y_other]))] = True
    keep = keep.to(part_masks.device)[:, :, None, None]
    mask = (part_masks.to(torch.bool) & keep).any(dim=1, keepdim=True)
    return mask if batched else mask[0]


class _Canvas:
    """Pixel-centre coordinates of an image and painting of boolean shapes."""

    def __init__(self, size: int) -> None:
        centres = np.arange(size, dtype=np.float64) + 0.5
        self.size = size
        self.y = centres[:, None]
        self.x = centres[None, :]

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        dx = (self.x - cx) / rx
        dy = (self.y - cy) / ry
        return dx * dx + dy * dy <= 1.0

    def rect(self, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
        return (self.x >= x1) & (self.x < x2) & (self.y >= y1) & (self.y < y2)

    def triangle(self, points: Sequence[Tuple[float, float]]) -> np.ndarray:
        # Inside when on the same side of all three edges (either orientation).
        sides = []
        for (ax, ay), (bx, by) in zip(points, list(points[1:]) + [points[0]]):
            sides.append((bx - ax) * (self.y - ay) - (by - ay) * (self.x - ax))
        return ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | (
            (sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0)
        )


def _colour(rng: np.random.Generator, s_low: float, v_low: float) -> np.ndarray:
    hue, sat, val = rng.random(), rng.uniform(s_low, 1.0), rng.uniform(v_low, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float64)


def _background(rng: np.random.Generator, canvas: _Canvas) -> np.ndarray:
    size = canvas.size
    # A smooth, grey-ish colour field: a 4 x 4 grid upsampled bilinearly by hand
    # (element-wise, so the result does not depend on BLAS).
    grid = rng.uniform(0.3, 0.65) + rng.uniform(-0.12, 0.12, size=(4, 4, 3))
    pos = (np.arange(size, dtype=np.float64) + 0.5) * (3.0 / size)
    low = np.minimum(np.floor(pos).astype(np.int64), 2)
    frac = pos - low
    wy, wx = frac[:, None, None], frac[None, :, None]
    ly, lx = low[:, None], low[None, :]
    field = (
        grid[ly, lx] * (1 - wy) * (1 - wx)
        + grid[ly + 1, lx] * wy * (1 - wx)
        + grid[ly, lx + 1] * (1 - wy) * wx
        + grid[ly + 1, lx + 1] * wy * wx
    )
    # A faint oriented stripe texture: a triangle wave along a random direction.
    dx, dy = rng.uniform(-1.0, 1.0, size=2)
    norm = np.sqrt(dx * dx + dy * dy) + 1e-9
    period = rng.uniform(5.0, 11.0) * size / 64.0
    phase = np.mod((canvas.x * dx + canvas.y * dy) / norm / period, 1.0)
    wave = np.abs(2.0 * phase - 1.0) - 0.5
    return field + rng.uniform(0.03, 0.08) * wave[:, :, None]


def _render(
    seed: int, split_code: int, index: int, size: int
) -> Tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    r"""Draws one item: image ``H x W x 3`` (float64), label, object mask, part masks."""
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([_SALT, seed, split_code, index]))
    )
    canvas = _Canvas(size)
    scale = size / 64.0
    label = int(rng.integers(NUM_CLASSES))
    parts = CLASS_PARTS[label]
    image = _background(rng, canvas)

    # Object geometry, relative to the body's centre (cx, cy) and radii (rx, ry).
    rx = rng.uniform(8.0, 12.0) * scale
    ry = rx * rng.uniform(0.85, 1.1)
    left, right = rx, 1.9 * rx  # extent left and right of cx (tail included)
    top, bottom = ry + 0.8 * rx, ry  # extent above and below cy (horn included)
    margin = 1.0 * scale
    cx = rng.uniform(left + margin, size - right - margin)
    cy = rng.uniform(top + margin, size - bottom - margin)
    body = canvas.ellipse(cx, cy, rx, ry)
    horn = (
        canvas.triangle(
            [
                (cx - 0.38 * rx, cy - 0.6 * ry),
                (cx + 0.38 * rx, cy - 0.6 * ry),
                (cx, cy - ry - 0.8 * rx),
            ]
        )
        & ~body
    )
    tail_half = max(0.16 * rx, 1.0)
    tail = canvas.rect(cx + 0.8 * rx, cy - tail_half, cx + 1.9 * rx, cy + tail_half) & ~body
    stripe = canvas.rect(0.0, cy + 0.2 * ry, float(size), cy + 0.55 * ry) & body
    spot = canvas.ellipse(cx - 0.3 * rx, cy - 0.3 * ry, 0.3 * rx, 0.3 * rx) & body
    shapes = (horn, tail, stripe, spot)
    part_masks = np.zeros((NUM_PARTS, size, size), dtype=bool)
    for p in parts:
        part_masks[p] = shapes[p]
    obj = body | part_masks[0] | part_masks[1]
    x_lo, x_hi = cx - left - 3 * scale, cx + right + 3 * scale
    y_lo, y_hi = cy - top - 3 * scale, cy + bottom + 3 * scale

    # Distractors: small discs, squares, triangles and bars in random colours
    # (half of them in the body colour), drawn away from the object so they never
    # touch it; they are drawn independently of the label.
    body_colour = _colour(rng, 0.55, 0.75)
    for _ in range(int(rng.integers(2, 5))):
        kind = int(rng.integers(4))
        extent = rng.uniform(3.0, 7.0) * scale
        same = rng.random() < 0.5
        colour = body_colour if same else _colour(rng, 0.0, 0.1)
        for _try in range(20):
            dx0, dy0 = rng.uniform(0.0, size - extent, size=2)
            if dx0 + extent <= x_lo or dx0 >= x_hi or dy0 + extent <= y_lo or dy0 >= y_hi:
                break
        else:
            continue
        if kind == 0:
            half = extent / 2
            shape = canvas.ellipse(dx0 + half, dy0 + half, half, half)
        elif kind == 1:
            shape = canvas.rect(dx0, dy0, dx0 + extent, dy0 + extent)
        elif kind == 2:
            shape = canvas.triangle(
                [(dx0, dy0 + extent), (dx0 + extent, dy0 + extent), (dx0 + extent / 2, dy0)]
            )
        else:
            thick = max(extent / 3.5, 1.0)
            shape = canvas.rect(dx0, dy0, dx0 + extent, dy0 + thick)
        image[shape] = colour

    image[obj] = body_colour
    marking = body_colour * 0.25
    image[part_masks[2] | part_masks[3]] = marking
    # Uniform pixel noise (std 0.03): unlike normal variates it needs no log/exp.
    image = image + rng.uniform(-0.052, 0.052, size=image.shape)
    image = np.clip(image, 0.0, 1.0)
    return image, label, obj, part_masks


def _mask_box(mask: np.ndarray) -> Tensor:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return torch.tensor([cols[0], rows[0], cols[-1], rows[-1]], dtype=torch.float32)


class _SeededImages(Dataset):
    r"""Items that are pure functions of ``(seed, split, index)``: the argument checks,
    length, repr and index resolution shared by the project's rendered datasets."""

    #: the class names by label, set by each dataset
    classes: Tuple[str, ...]

    def __init__(
        self,
        num_samples: int,
        split: str = "train",
        seed: int = 0,
        image_size: int = 64,
        return_annotations: bool = False,
    ) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative int; got {num_samples!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}; got {split!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an int >= 32; got {image_size!r}")
        self.num_samples = num_samples
        self.split = split
        self.seed = seed
        self.image_size = image_size
        self.return_annotations = bool(return_annotations)

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, split={self.split!r}, "
            f"seed={self.seed}, image_size={self.image_size}, "
            f"return_annotations={self.return_annotations})"
        )

    def _resolve_index(self, index: Any) -> int:
        try:
            position = operator.index(index)
        except TypeError:
            raise TypeError(f"index must be an int; got {type(index).__name__}") from None
        if not -self.num_samples <= position < self.num_samples:
            raise IndexError(
                f"index {position} is out of range for a dataset of {self.num_samples} items"
            )
        return position % self.num_samples


class GroundTruthShapes(_SeededImages):
    r"""
    Synthetic images of part-based objects with exact object and part masks.

    Each item is a 64 x 64 (``image_size``) RGB image in ``[0, 1]``: a textured
    background, two to four small distractor shapes and one object, a coloured
    body plus the parts of its class (see the module docstring,
    :attr:`classes`, :attr:`part_names` and :func:`class_parts`). Items are
    generated on the fly from ``(seed, split, index)``; two datasets with the same
    arguments hold bit-identical items, and the splits of one seed never share an
    image (each split has its own per-item seeds).

    Args:
        num_samples (int): the number of items, ``>= 0``.
        split (str, optional): ``"train"``, ``"val"`` or ``"test"``. Default: ``"train"``.
        seed (int, optional): the dataset seed, ``>= 0``. Default: 0.
        image_size (int, optional): height and width in pixels, ``>= 32``; the
                    object scales with it. Default: 64.
        return_annotations (bool, optional): also return each item's annotation.
                    Default: False.

    Items:
        ``(image, label)``: a ``float32`` tensor ``3 x H x W`` and an int, or, with
        ``return_annotations=True``, ``(image, label, annotation)`` where
        ``annotation`` is a dict of tensors (so the default collate of a
        ``DataLoader`` stacks it):

        - ``"mask"``: ``1 x H x W`` bool, the object's pixels (body and parts).
        - ``"box"``: ``float32`` ``(x1, y1, x2, y2)``, tight around ``"mask"``, in
          0-based pixel indices with **inclusive** ``x2, y2`` (the package's one
          box convention, as ``torchvision.ops.masks_to_boxes`` and
          :func:`captum_cams.metrics.boxes_to_masks`): the box covers
          ``mask[:, y1:y2 + 1, x1:x2 + 1]``.
        - ``"part_masks"``: ``P x H x W`` bool, one mask per entry of
          :attr:`part_names`, all-False for parts the object does not have. Part
          masks are disjoint and lie inside ``"mask"``.
        - ``"parts_present"``: ``P`` bool, which parts the object has.

    Examples::

        >>> data = GroundTruthShapes(1000, split="test", return_annotations=True)
        >>> image, label, annotation = data[0]
        >>> image.shape, GroundTruthShapes.classes[label]
        (torch.Size([3, 64, 64]), ...)
        >>> loader = torch.utils.data.DataLoader(data, batch_size=32)
        >>> images, labels, annotations = next(iter(loader))
        >>> annotations["mask"].shape
        torch.Size([32, 1, 64, 64])
    """

    #: Class names, in label order.
    classes: Tuple[str, ...] = CLASSES
    #: Part names, in the order of ``part_masks`` and ``parts_present``.
    part_names: Tuple[str, ...] = PART_NAMES
    #: Part indices of every class, in label order.
    class_part_indices: Tuple[Tuple[int, ...], ...] = CLASS_PARTS

    class_parts = staticmethod(class_parts)
    counterfactual_pairs = staticmethod(counterfactual_pairs)
    counterfactual_mask = staticmethod(counterfactual_mask)

    def __getitem__(
        self, index: int
    ) -> Union[Tuple[Tensor, int], Tuple[Tensor, int, Dict[str, Tensor]]]:
        position = self._resolve_index(index)
        image, label, obj, part_masks = _render(
            self.seed, SPLITS[self.split], position, self.image_size
        )
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))
        if not self.return_annotations:
            return tensor, label
        annotation = {
            "mask": torch.from_numpy(obj[None].copy()),
            "box": _mask_box(obj),
            "part_masks": torch.from_numpy(part_masks),
            "parts_present": torch.from_numpy(part_masks.any(axis=(1, 2))),
        }
        return tensor, label, annotation


class GroundTruthBatch(NamedTuple):
    r"""
    Stacked items of :class:`GroundTruthShapes`, as returned by :func:`make_batch`.

    Attributes:
        images (Tensor): ``N x 3 x H x W`` float32 images in ``[0, 1]``.
        labels (Tensor): ``N`` long class labels.
        masks (Tensor): ``N x 1 x H x W`` bool object masks.
        boxes (Tensor): ``N x 4`` float32 boxes ``(x1, y1, x2, y2)``, 0-based,
                    ``x2, y2`` inclusive.

    Examples::

        >>> batch = make_batch(4, split="test", seed=0)
        >>> batch.images.shape, batch.boxes[0]
    """

    #: ``N x 3 x H x W`` float32 images in ``[0, 1]``.
    images: Tensor
    #: ``N`` long class labels.
    labels: Tensor
    #: ``N x 1 x H x W`` bool object masks.
    masks: Tensor
    #: ``N x 4`` float32 boxes ``(x1, y1, x2, y2)``, 0-based, ``x2, y2`` inclusive.
    boxes: Tensor


def make_batch(
    num: int, split: str = "test", seed: int = 0, image_size: int = 64
) -> GroundTruthBatch:
    r"""
    The first ``num`` items of a :class:`GroundTruthShapes` split, stacked.

    Handy in tests and benchmarks. For the part masks, iterate the dataset with
    ``return_annotations=True``.

    Args:
        num (int): the number of items, ``>= 0``.
        split (str, optional): ``"train"``, ``"val"`` or ``"test"``. Default: ``"test"``.
        seed (int, optional): the dataset seed. Default: 0.
        image_size (int, optional): height and width in pixels. Default: 64.

    Returns:
        *GroundTruthBatch*: a named tuple ``(images, labels, masks, boxes)`` of
        shapes ``N x 3 x H x W`` (float32), ``N`` (long), ``N x 1 x H x W`` (bool)
        and ``N x 4`` (float32, 0-based, ``x2, y2`` inclusive).

    Examples::

        >>> images, labels, masks, boxes = make_batch(8)
        >>> images.shape, boxes.shape
        (torch.Size([8, 3, 64, 64]), torch.Size([8, 4]))
    """
    data = GroundTruthShapes(
        num, split=split, seed=seed, image_size=image_size, return_annotations=True
    )
    images = torch.empty(num, 3, image_size, image_size)
    labels = torch.empty(num, dtype=torch.long)
    masks = torch.empty(num, 1, image_size, image_size, dtype=torch.bool)
    boxes = torch.empty(num, 4)
    for i in range(num):
        image, label, annotation = data[i]  # type: ignore[misc]  # annotations on
        images[i], labels[i] = image, label
        masks[i], boxes[i] = annotation["mask"], annotation["box"]
    return GroundTruthBatch(images, labels, masks, boxes)
