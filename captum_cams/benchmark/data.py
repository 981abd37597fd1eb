#!/usr/bin/env python3
r"""The benchmark's images: a :class:`BenchmarkData` loads a batch by global index;
:class:`EmbeddedData` is the ground-truth dataset's test split, :class:`FolderData` image
files with optional Pascal-VOC boxes."""

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from captum_cams._utils.inputs import (
    InputError,
    Preprocess,
    annotation_mask,
    check_image_file,
    open_image,
)

__all__ = ["BenchmarkData", "EmbeddedData", "FolderData"]


class BenchmarkData:
    r"""
    Images to benchmark on, loaded a batch at a time by global index.

    Subclasses give ``__len__``, :meth:`load` and :meth:`names`; ``has_boxes`` says
    whether :meth:`load` returns ground-truth masks for the localisation metrics.

    Examples::

        >>> class Tensors(BenchmarkData):
        ...     def __init__(self, images): self.images = images
        ...     def __len__(self): return len(self.images)
        ...     def load(self, indices): return self.images[list(indices)], None, None
        ...     def names(self, indices): return [f"#{i}" for i in indices]
    """

    has_boxes: bool = False

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        r"""
        Args:
            indices (sequence of int): global item indices.

        Returns:
            *tuple*: ``(images N x C x H x W, labels (N,) or None, masks N x 1 x H x W
            bool or None)``.
        """
        raise NotImplementedError

    def names(self, indices: Sequence[int]) -> List[str]:
        r"""
        Args:
            indices (sequence of int): global item indices.

        Returns:
            *list[str]*: a short name per item (a file path, or a class name).
        """
        raise NotImplementedError


class EmbeddedData(BenchmarkData):
    r"""
    The test split of the project's ground-truth dataset (seed 0), with object boxes.

    Args:
        num_images (int): how many items.

    Examples::

        >>> images, labels, masks = EmbeddedData(8).load(range(4))
        >>> masks.shape
        torch.Size([4, 1, 64, 64])
    """

    has_boxes = True

    def __init__(self, num_images: int) -> None:
        from captum_cams.datasets import GroundTruthShapes

        self.dataset = GroundTruthShapes(num_images, split="test", seed=0, return_annotations=True)

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        from captum_cams.metrics import boxes_to_masks

        items = [self.dataset[i] for i in indices]
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
        boxes = torch.stack([item[2]["box"] for item in items])  # type: ignore[misc]
        return images, labels, boxes_to_masks(boxes, tuple(images.shape[-2:]))

    def names(self, indices: Sequence[int]) -> List[str]:
        from captum_cams.datasets import CLASSES

        return [f"#{i} {CLASSES[int(self.dataset[i][1])]}" for i in indices]


class FolderData(BenchmarkData):
    r"""
    Image files (an ``ImageFolder`` tree or a flat folder), optionally with
    Pascal-VOC annotations ``<annotations>/<image stem>.xml`` for the box metrics.

    Args:
        files (list[Path]): the image files, e.g. from
                    :func:`captum_cams._utils.inputs.list_images`.
        preprocess (Preprocess): how a file becomes the model's input.
        annotations (str, optional): the VOC ``Annotations`` folder. Default: None.
        root (str, optional): names are given relative to this folder. Default: None.

    Examples::

        >>> data = FolderData(list_images("val"), Preprocess(256, 224), "Annotations")
    """

    def __init__(
        self,
        files: Sequence[Path],
        preprocess: Preprocess,
        annotations: Optional[str] = None,
        root: Optional[str] = None,
    ) -> None:
        self.files = list(files)
        self.preprocess = preprocess
        self.annotations = annotations
        self.root = root
        self.has_boxes = annotations is not None
        for path in self.files:  # every bad file is found before any work starts
            check_image_file(path)
            if annotations is not None and not (Path(annotations) / f"{path.stem}.xml").is_file():
                raise InputError(
                    f"--annotations: no annotation {Path(annotations) / (path.stem + '.xml')} "
                    f"for image {path}"
                )

    def __len__(self) -> int:
        return len(self.files)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        images, masks = [], []
        for index in indices:
            picture = open_image(self.files[index])
            images.append(self.preprocess.image(picture))
            if self.annotations is not None:
                width, height = picture.size  # type: ignore[attr-defined]
                mask = annotation_mask(self.annotations, self.files[index], (height, width))
                masks.append(self.preprocess.mask(mask))
        return torch.stack(images), None, torch.stack(masks) if masks else None

    def names(self, indices: Sequence[int]) -> List[str]:
        return [
            os.path.relpath(self.files[i], self.root) if self.root else self.files[i].name
            for i in indices
        ]
