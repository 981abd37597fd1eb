#!/usr/bin/env python3
r"""The benchmark's images: a :class:`BenchmarkData` loads a batch by global index;
:class:`EmbeddedData` is the ground-truth dataset's test split, :class:`FolderData` image
files with optional Pascal-VOC boxes."""

import os
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from captum_cams.kit.inputs import (
    InputError,
    Preprocess,
    annotation_mask,
    check_image_file,
    open_image,
)

__all__ = ["BenchmarkData", "DataBatch", "EmbeddedData", "FolderData"]


class DataBatch(NamedTuple):
    r"""
    One batch of a :class:`BenchmarkData`, as :meth:`BenchmarkData.load` returns it.

    Attributes:
        images (Tensor): ``N x C x H x W`` inputs of the model.
        labels (Tensor or None): ``(N,)`` true classes, if known.
        masks (Tensor or None): ``N x 1 x H x W`` bool object masks (boxes), if any.
        part_masks (Tensor or None): ``N x P x H x W`` bool ground-truth part masks
                    (outlined in the overlay figure), if any.
        extras (dict[str, Tensor]): more per-example ground truth by name, handed to
                    the metrics as :attr:`MetricInputs.extras`; first dimension ``N``.

    Examples::

        >>> data = EmbeddedData(num_images=8)
        >>> batch = as_data_batch(data.load(range(4)))
        >>> batch.images.shape, batch.labels
    """

    images: Tensor
    labels: Optional[Tensor]
    masks: Optional[Tensor]
    part_masks: Optional[Tensor] = None
    extras: Dict[str, Tensor] = {}


def as_data_batch(loaded: Any) -> DataBatch:
    r"""
    A :class:`DataBatch` from what :meth:`BenchmarkData.load` returned: a
    :class:`DataBatch`, or the older ``(images, labels, masks)`` triple.

    Args:
        loaded (DataBatch or tuple): the loaded batch.

    Returns:
        *DataBatch*: the batch, ``part_masks`` None and ``extras`` empty for a triple.

    Examples::

        >>> as_data_batch((images, None, None)).extras
        {}
    """
    if isinstance(loaded, DataBatch):
        return loaded
    if isinstance(loaded, tuple) and len(loaded) == 3:
        return DataBatch(*loaded)
    raise TypeError(
        "BenchmarkData.load must return a DataBatch (or images, labels, masks); got "
        f"{type(loaded).__name__}"
    )


class BenchmarkData:
    r"""
    Images to benchmark on, loaded a batch at a time by global index.

    Subclasses give ``__len__``, :meth:`load` and :meth:`names`; ``has_boxes`` says
    whether :meth:`load` returns ground-truth masks for the localisation metrics, and
    ``provides`` names the entries of :attr:`DataBatch.extras` that :meth:`load` and
    :meth:`ground_truth` fill (the metrics' :attr:`MetricSpec.needs`).

    Examples::

        >>> class Tensors(BenchmarkData):
        ...     def __init__(self, images): self.images = images
        ...     def __len__(self): return len(self.images)
        ...     def load(self, indices): return DataBatch(self.images[list(indices)], None, None)
        ...     def names(self, indices): return [f"#{i}" for i in indices]
    """

    has_boxes: bool = False
    provides: Tuple[str, ...] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, indices: Sequence[int]) -> DataBatch:
        r"""
        Args:
            indices (sequence of int): global item indices.

        Returns:
            *DataBatch*: images, labels, masks, part masks and extras of the items
            (``labels``, ``masks`` and ``part_masks`` may be None).
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

    def ground_truth(self, model: nn.Module, batch: DataBatch, target: Tensor) -> Dict[str, Tensor]:
        r"""
        Ground truth that depends on the model, e.g. its measured reliance on each part.

        The runner calls it once per batch, after the explained class is known and
        under ``torch.no_grad()``, and merges the result into the batch's
        :attr:`DataBatch.extras`. The default has none.

        Args:
            model (nn.Module): the model, in eval mode.
            batch (DataBatch): the batch, on the model's device.
            target (Tensor): ``(N,)`` the explained classes.

        Returns:
            *dict[str, Tensor]*: per-example tensors by name (first dimension ``N``).
        """
        return {}


#: Libra-CAM's reference bound τ on the main job's embedded model (trained with label
#: smoothing 0.1: no probability falls below about 0.0125); the paper's 1e-4 elsewhere.
EMBEDDED_REFERENCE_TAU = 0.02


class EmbeddedData(BenchmarkData):
    r"""
    The test split (seed 0) of one of the project's ground-truth datasets, with object
    boxes and part masks. Items are rendered when loaded, so any count costs nothing
    up front.

    ``task="cluttered"`` (the main job's) is :class:`~captum_cams.kit.datasets.ClutteredShapes`,
    which also provides model-grounded truth: the masks of every removable region
    (``extras["region_masks"]``, ``N x R x H x W``) and, from :meth:`ground_truth`, the
    model's measured reliance on each (``extras["reliance"]``, ``N x R``: the drop of
    the target probability when the renderer leaves the region out, see
    :func:`~captum_cams.metrics.intervention_reliance`). ``task="shapes"`` is
    :class:`~captum_cams.kit.datasets.GroundTruthShapes` (the tutorials' data).

    Args:
        num_images (int): how many items.
        task (str, optional): ``"cluttered"`` or ``"shapes"``. Default: ``"cluttered"``.

    Examples::

        >>> batch = EmbeddedData(8).load(range(4))
        >>> batch.masks.shape, batch.extras["region_masks"].shape
        (torch.Size([4, 1, 64, 64]), torch.Size([4, 11, 64, 64]))
    """

    has_boxes = True

    def __init__(self, num_images: int, task: str = "cluttered") -> None:
        from captum_cams.kit.datasets import ClutteredShapes, GroundTruthShapes

        tasks = {"cluttered": ClutteredShapes, "shapes": GroundTruthShapes}
        if task not in tasks:
            raise InputError(f"task must be one of {', '.join(tasks)}; got {task!r}")
        self.task = task
        self.dataset = tasks[task](num_images, split="test", seed=0, return_annotations=True)
        self.reference_tau = EMBEDDED_REFERENCE_TAU if task == "cluttered" else 1e-4
        self._labels: Dict[int, int] = {}  # of the last batch loaded, for names()

    @property
    def provides(self) -> Tuple[str, ...]:  # type: ignore[override]
        return ("region_masks", "reliance") if self.task == "cluttered" else ()

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, indices: Sequence[int]) -> DataBatch:
        from captum_cams.metrics import boxes_to_masks

        items = [self.dataset[i] for i in indices]
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([int(item[1]) for item in items], dtype=torch.long)
        boxes = torch.stack([item[2]["box"] for item in items])
        parts = torch.stack([item[2]["part_masks"] for item in items])
        self._labels = {int(i): int(label) for i, label in zip(indices, labels)}
        extras: Dict[str, Tensor] = {}
        if self.task == "cluttered":
            extras["region_masks"] = torch.stack([item[2]["region_masks"] for item in items])
            extras["interventions"] = torch.stack(
                [self.dataset.interventions(int(i)) for i in indices]  # type: ignore[attr-defined]
            )
        masks = boxes_to_masks(boxes, tuple(images.shape[-2:]))
        return DataBatch(images, labels, masks, parts, extras)

    def ground_truth(self, model: nn.Module, batch: DataBatch, target: Tensor) -> Dict[str, Tensor]:
        if self.task != "cluttered":
            return {}
        from captum_cams.metrics import intervention_reliance

        reliance = intervention_reliance(
            model, batch.images, batch.extras["interventions"], target, max_examples_per_batch=256
        )
        return {"reliance": reliance}

    def names(self, indices: Sequence[int]) -> List[str]:
        classes = self.dataset.classes
        labels = [
            self._labels[i] if i in self._labels else int(self.dataset[i][1]) for i in indices
        ]
        return [f"#{i} {classes[label]}" for i, label in zip(indices, labels)]


class FolderData(BenchmarkData):
    r"""
    Image files (an ``ImageFolder`` tree or a flat folder), optionally with
    Pascal-VOC annotations ``<annotations>/<image stem>.xml`` for the box metrics.

    Args:
        files (list[Path]): the image files, e.g. from
                    :func:`captum_cams.kit.inputs.list_images`.
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

    def load(self, indices: Sequence[int]) -> DataBatch:
        images, masks = [], []
        for index in indices:
            picture = open_image(self.files[index])
            images.append(self.preprocess.image(picture))
            if self.annotations is not None:
                width, height = picture.size  # type: ignore[attr-defined]
                mask = annotation_mask(self.annotations, self.files[index], (height, width))
                masks.append(self.preprocess.mask(mask))
        return DataBatch(torch.stack(images), None, torch.stack(masks) if masks else None)

    def names(self, indices: Sequence[int]) -> List[str]:
        return [
            os.path.relpath(self.files[i], self.root) if self.root else self.files[i].name
            for i in indices
        ]
