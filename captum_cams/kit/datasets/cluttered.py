#!/usr/bin/env python3
r"""The main job's ground-truth task: part-based objects among decoys, with interventions.

:class:`ClutteredShapes` is a harder sibling of
:class:`~captum_cams.kit.datasets.GroundTruthShapes`, built so that a trained model's
confidence depends on how much evidence an image holds (it is accurate but not
saturated), and so that the model's own reliance on every region of an image can be
*measured* rather than assumed:

- **Classes share parts.** The class is the subset of three *class parts* (``horn``,
  ``tail``, ``stripe``) the object has: 8 classes, from ``plain`` (none) to
  ``horn+tail+stripe``. Neighbouring classes differ in one part.
- **A nuisance part.** The fourth part, ``spot``, is drawn on half the objects at
  random, independently of the class: it never decides the class, so a model that
  learned the task provably ignores it (its measured reliance is about 0).
- **Graded evidence.** Every class part has a random size (horn height, tail length,
  stripe width) and the dark markings (stripe, spot) a random contrast, so some
  parts are faint.
- **Decoys.** Three to six distractors away from the object: discs and squares, and
  part look-alikes — triangles and bars in the body colour (a horn or tail that is
  not attached), dark bands — drawn independently of the class.
- **Occlusion and noise.** On about a third of the images a grey patch covers part of
  the object (never more than 40 % of a class part); pixel noise is stronger.

Every region that can be removed — the four parts and each distractor — has a *slot*
(:data:`REGION_NAMES`): ``region_masks`` (its visible pixels) and ``regions_present``
in the annotation, and :meth:`ClutteredShapes.interventions` renders the same image
with one region left out (a removed horn or tail shows the background behind it, a
removed stripe or spot the body colour, a removed distractor what lies under it).
Nothing else changes: every random draw is made before anything is painted, and the
same draws are used with or without a region. As in :mod:`.ground_truth`, an item is
a pure, bit-reproducible function of ``(seed, split, index)``.
"""

from typing import Any, Dict, FrozenSet, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_cams.kit.datasets.ground_truth import (
    SPLITS,
    _background,
    _Canvas,
    _colour,
    _mask_box,
    _SeededImages,
)

#: The parts, in slot order: three class parts, then the nuisance part.
CLUTTERED_PART_NAMES: Tuple[str, ...] = ("horn", "tail", "stripe", "spot")

#: The slot of the part that never decides the class (drawn at random).
NUISANCE_PART: int = 3

#: The class parts of every class, in label order (all subsets of horn, tail, stripe).
CLUTTERED_CLASS_PARTS: Tuple[Tuple[int, ...], ...] = (
    (),
    (0,),
    (1,),
    (2,),
    (0, 1),
    (0, 2),
    (1, 2),
    (0, 1, 2),
)

#: Class names, in label order.
CLUTTERED_CLASSES: Tuple[str, ...] = tuple(
    "+".join(CLUTTERED_PART_NAMES[p] for p in parts) or "plain" for parts in CLUTTERED_CLASS_PARTS
)

#: The most decoys drawn away from the object.
_MAX_DECOYS = 6

#: The most distractors an image holds (up to six decoys and one loose part).
MAX_DISTRACTORS: int = _MAX_DECOYS + 1

#: Names of the removable regions, in slot order: the parts, then the distractors.
REGION_NAMES: Tuple[str, ...] = CLUTTERED_PART_NAMES + tuple(
    f"distractor{i}" for i in range(MAX_DISTRACTORS)
)

NUM_REGIONS: int = len(REGION_NAMES)

_SALT = 0xC1077E  # its own random streams, apart from GroundTruthShapes'

#: The most of a class part's pixels the occluding patch may cover.
_MAX_OCCLUDED_SHARE = 0.4


class _Scene:
    """Every random draw of one item, and the painting of it with regions left out."""

    def __init__(self, seed: int, split_code: int, index: int, size: int) -> None:
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([_SALT, seed, split_code, index]))
        )
        canvas = _Canvas(size)
        scale = size / 64.0
        self.size = size
        self.label = int(rng.integers(len(CLUTTERED_CLASS_PARTS)))
        parts = set(CLUTTERED_CLASS_PARTS[self.label])
        if rng.random() < 0.5:
            parts.add(NUISANCE_PART)
        self.background = _background(rng, canvas)

        rx = rng.uniform(7.0, 12.0) * scale
        ry = rx * rng.uniform(0.8, 1.15)
        horn_height = rng.uniform(0.45, 0.9) * rx
        tail_length = rng.uniform(0.6, 1.1) * rx
        stripe_width = rng.uniform(0.22, 0.4) * ry
        left, right = rx, 0.8 * rx + tail_length
        top, bottom = ry + horn_height, ry
        margin = 1.0 * scale
        cx = rng.uniform(left + margin, size - right - margin)
        cy = rng.uniform(top + margin, size - bottom - margin)
        body = canvas.ellipse(cx, cy, rx, ry)
        half_base = 0.38 * rx
        horn = (
            canvas.triangle(
                [
                    (cx - half_base, cy - 0.6 * ry),
                    (cx + half_base, cy - 0.6 * ry),
                    (cx, cy - ry - horn_height),
                ]
            )
            & ~body
        )
        tail_half = max(0.16 * rx, 1.0)
        tail = (
            canvas.rect(cx + 0.8 * rx, cy - tail_half, cx + 0.8 * rx + tail_length, cy + tail_half)
            & ~body
        )
        stripe_top = cy + 0.18 * ry
        stripe = canvas.rect(0.0, stripe_top, float(size), stripe_top + stripe_width) & body
        spot = canvas.ellipse(cx - 0.3 * rx, cy - 0.3 * ry, 0.28 * rx, 0.28 * rx) & body
        shapes = (horn, tail, stripe, spot)
        self.body_colour = _colour(rng, 0.5, 0.65)
        darkness = rng.uniform(0.15, 0.6, size=2)  # stripe, spot: marking = colour * darkness
        self.part_colours = [
            self.body_colour,
            self.body_colour,
            self.body_colour * darkness[0],
            self.body_colour * darkness[1],
        ]
        self.body = body
        self.parts = [shapes[p] if p in parts else np.zeros_like(body) for p in range(4)]
        x_lo, x_hi = cx - left - 3 * scale, cx + right + 3 * scale
        y_lo, y_hi = cy - top - 3 * scale, cy + bottom + 3 * scale

        # Decoys: placed away from the object (they never touch it).
        self.distractors: List[Tuple[np.ndarray, np.ndarray]] = []
        for _ in range(int(rng.integers(3, _MAX_DECOYS + 1))):
            kind = int(rng.integers(5))
            extent = rng.uniform(4.0, 9.0) * scale
            same = rng.random() < 0.6
            colour = self.body_colour if same else _colour(rng, 0.0, 0.1)
            dark = self.body_colour * rng.uniform(0.15, 0.6)
            placed = False
            for _try in range(20):
                dx0, dy0 = rng.uniform(0.0, size - extent, size=2)
                if dx0 + extent <= x_lo or dx0 >= x_hi or dy0 + extent <= y_lo or dy0 >= y_hi:
                    placed = True
                    break
            if not placed:
                continue
            if kind == 0:
                half = extent / 2
                shape = canvas.ellipse(dx0 + half, dy0 + half, half, half)
            elif kind == 1:
                shape = canvas.rect(dx0, dy0, dx0 + 0.8 * extent, dy0 + 0.8 * extent)
            elif kind == 2:  # a horn look-alike
                shape = canvas.triangle(
                    [
                        (dx0, dy0 + extent),
                        (dx0 + 0.8 * extent, dy0 + extent),
                        (dx0 + 0.4 * extent, dy0),
                    ]
                )
            elif kind == 3:  # a tail look-alike
                shape = canvas.rect(dx0, dy0, dx0 + extent, dy0 + max(extent / 3.5, 1.0))
            else:  # a stripe look-alike: a dark band
                shape = canvas.rect(dx0, dy0, dx0 + extent, dy0 + max(extent / 3.0, 1.0))
                colour = dark
            self.distractors.append((shape, colour))

        # A loose part: with probability one half, one more look-alike of a part (a
        # horn, a tail or a band) floats 2-4 pixels from the body, never touching it: a
        # decoy the model must tell from an attached part.
        if rng.random() < 0.5:
            kind = int(rng.integers(3))
            gap = rng.uniform(2.0, 4.0) * scale
            length = rng.uniform(0.5, 0.9) * rx
            side = rng.random() < 0.5
            if kind == 0:  # a horn above (or below) the body, detached
                tip = length if side else -length
                base_y = cy - ry - gap if side else cy + ry + gap
                shape = canvas.triangle(
                    [(cx - half_base, base_y), (cx + half_base, base_y), (cx, base_y - tip)]
                )
            elif kind == 1:  # a tail to the left (or right) of the body, detached
                start = cx - rx - gap - length if side else cx + rx + gap
                shape = canvas.rect(start, cy - tail_half, start + length, cy + tail_half)
            else:  # a dark band below (or above) the body
                band_y = cy + ry + gap if side else cy - ry - gap - stripe_width
                shape = canvas.rect(cx - 0.7 * rx, band_y, cx + 0.7 * rx, band_y + stripe_width)
            colour = self.body_colour * darkness[0] if kind == 2 else self.body_colour
            grown = canvas.ellipse(cx, cy, rx + 1.5 * scale, ry + 1.5 * scale)
            taken = grown | horn | tail
            if not (shape & taken).any() and shape.any():
                self.distractors.append((shape, colour))

        # Occlusion: a grey patch over part of the object, never hiding much of a class part.
        self.occluder = np.zeros_like(body)
        self.occluder_colour = np.full(3, rng.uniform(0.35, 0.65))
        if rng.random() < 0.35:
            for _try in range(10):
                w, h = rng.uniform(4.0, 9.0, size=2) * scale
                ox = rng.uniform(cx - rx - w / 2, cx + rx - w / 2)
                oy = rng.uniform(cy - ry - h / 2, cy + ry - h / 2)
                patch = canvas.rect(ox, oy, ox + w, oy + h)
                covered = [
                    (patch & self.parts[p]).sum() / max(self.parts[p].sum(), 1)
                    for p in CLUTTERED_CLASS_PARTS[self.label]
                ]
                if max(covered, default=0.0) <= _MAX_OCCLUDED_SHARE:
                    self.occluder = patch
                    break
        self.noise = rng.uniform(-0.08, 0.08, size=self.background.shape)

    def paint(self, omit: FrozenSet[int] = frozenset()) -> np.ndarray:
        r"""The image ``H x W x 3`` in ``[0, 1]`` with the regions in ``omit`` left out."""
        image = self.background.copy()
        for slot, (shape, colour) in enumerate(self.distractors):
            if len(CLUTTERED_PART_NAMES) + slot not in omit:
                image[shape] = colour
        image[self.body] = self.body_colour
        for p in (0, 1, 2, 3):  # horn, tail outside the body; stripe, spot inside
            if p not in omit:
                image[self.parts[p]] = self.part_colours[p]
        image[self.occluder] = self.occluder_colour
        return np.clip(image + self.noise, 0.0, 1.0)

    def region_masks(self) -> np.ndarray:
        r"""``R x H x W`` bool: the visible pixels of every region (empty when absent)."""
        masks = np.zeros((NUM_REGIONS, self.size, self.size), dtype=bool)
        hidden = self.occluder.copy()
        for p in (3, 2, 1, 0):  # painted horn, tail, stripe, spot, then the occluder
            masks[p] = self.parts[p] & ~hidden
            hidden = hidden | self.parts[p]
        covered = self.body | self.occluder
        for slot in range(len(self.distractors) - 1, -1, -1):  # later ones are on top
            shape = self.distractors[slot][0]
            masks[len(CLUTTERED_PART_NAMES) + slot] = shape & ~covered
            covered = covered | shape
        return masks

    def object_mask(self) -> np.ndarray:
        return (self.body | self.parts[0] | self.parts[1]) & ~self.occluder


def _to_tensor(image: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32))


class ClutteredShapes(_SeededImages):
    r"""
    Part-based objects among decoys, with the masks of every removable region and
    renderings with each region left out (see the module docstring).

    Items are 64 x 64 (``image_size``) RGB images in ``[0, 1]``. With
    ``return_annotations=True`` an item is ``(image, label, annotation)`` where the
    annotation holds ``"mask"`` (``1 x H x W`` bool, the visible object), ``"box"``
    (``x1, y1, x2, y2``, 0-based, inclusive, around ``"mask"``), ``"part_masks"``
    (``4 x H x W``, the visible parts), ``"region_masks"`` (``R x H x W``, the visible
    pixels of each slot of :data:`REGION_NAMES`) and ``"regions_present"`` (``R``
    bool, the slots with at least one visible pixel).

    Args:
        num_samples (int): the number of items, ``>= 0``.
        split (str, optional): ``"train"``, ``"val"`` or ``"test"``. Default: ``"train"``.
        seed (int, optional): the dataset seed, ``>= 0``. Default: 0.
        image_size (int, optional): height and width, ``>= 32``. Default: 64.
        return_annotations (bool, optional): also return the annotation. Default: False.

    Examples::

        >>> data = ClutteredShapes(100, split="test", return_annotations=True)
        >>> image, label, annotation = data[0]
        >>> ClutteredShapes.classes[label], annotation["region_masks"].shape
        ('horn+stripe', torch.Size([11, 64, 64]))
        >>> without = data.interventions(0)  # one image per region slot
        >>> without.shape
        torch.Size([11, 3, 64, 64])
    """

    #: Class names, in label order.
    classes: Tuple[str, ...] = CLUTTERED_CLASSES
    #: Part names, in slot order.
    part_names: Tuple[str, ...] = CLUTTERED_PART_NAMES
    #: Region names, in slot order.
    region_names: Tuple[str, ...] = REGION_NAMES

    def _scene(self, index: Any) -> _Scene:
        position = self._resolve_index(index)
        return _Scene(self.seed, SPLITS[self.split], position, self.image_size)

    def __getitem__(
        self, index: int
    ) -> Union[Tuple[Tensor, int], Tuple[Tensor, int, Dict[str, Tensor]]]:
        scene = self._scene(index)
        image = _to_tensor(scene.paint())
        if not self.return_annotations:
            return image, scene.label
        regions = scene.region_masks()
        obj = scene.object_mask()
        annotation = {
            "mask": torch.from_numpy(obj[None].copy()),
            "box": _mask_box(obj),
            "part_masks": torch.from_numpy(regions[: len(CLUTTERED_PART_NAMES)].copy()),
            "region_masks": torch.from_numpy(regions),
            "regions_present": torch.from_numpy(regions.any(axis=(1, 2))),
        }
        return image, scene.label, annotation

    def interventions(self, index: int, slots: Sequence[int] = tuple(range(NUM_REGIONS))) -> Tensor:
        r"""
        The item's image rendered once per slot with that region left out.

        A slot whose region is absent gives the unchanged image.

        Args:
            index (int): the item.
            slots (sequence of int, optional): region slots (indices into
                        :data:`REGION_NAMES`). Default: every slot.

        Returns:
            *Tensor*: ``len(slots) x 3 x H x W`` float32 images.

        Examples::

            >>> data = ClutteredShapes(10)
            >>> data.interventions(3, slots=[0]).shape
            torch.Size([1, 3, 64, 64])
        """
        scene = self._scene(index)
        images = []
        for slot in slots:
            if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)):
                raise TypeError(f"slots must hold ints; got {type(slot).__name__}")
            if not 0 <= int(slot) < NUM_REGIONS:
                raise ValueError(f"slots must lie in [0, {NUM_REGIONS}); got {int(slot)}")
            images.append(_to_tensor(scene.paint(frozenset([int(slot)]))))
        if not images:
            return torch.empty(0, 3, self.image_size, self.image_size)
        return torch.stack(images)
