#!/usr/bin/env python3
"""The shared ImageNet folder: a real trained ImageNet CNN and 1,000 real photos.

The folder lives beside the project (``../shared/data/imagenet``), never inside it. It
holds ``mobilenet_v1_075_192.pth`` (see :mod:`captum_cams.kit.models.mobilenet_v1`) and
``photos/NNN_<wnid>_<name>.jpg``, one photo per ImageNet-1k class, ``NNN`` the class
index in torchvision's order. Its place is taken from, in order: an explicit argument,
the environment variable ``CAPTUM_CAMS_IMAGENET``, ``../shared/data/imagenet`` from the
working directory, and the same path from the repository root of this package.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from captum_cams.kit.datasets._shared import PathLike, find_shared_folder

if TYPE_CHECKING:  # torchvision is imported where it is used (see datasets.cifar10)
    import torchvision.transforms as T

#: The normalisation of TF-slim's MobileNets: inputs in [-1, 1].
IMAGENET_MOBILENET_MEAN = (0.5, 0.5, 0.5)
IMAGENET_MOBILENET_STD = (0.5, 0.5, 0.5)
#: The shared network's input size and the resize before its centre crop.
IMAGENET_MOBILENET_SIZE = 192
IMAGENET_MOBILENET_RESIZE = 219
#: The shared network's state dict, in the folder.
IMAGENET_MOBILENET_FILE = "mobilenet_v1_075_192.pth"
ENV_VAR = "CAPTUM_CAMS_IMAGENET"


def find_imagenet_root(root: Optional[PathLike] = None) -> Optional[Path]:
    r"""
    Finds the shared ImageNet folder, or returns None when it is absent.

    Args:
        root (str or PathLike, optional): an explicit folder; checked alone when given.
                    Default: None.

    Returns:
        *Path* or *None*: a folder that holds ``photos/``.

    Examples::

        >>> root = find_imagenet_root()
        >>> root is None or (root / "photos").is_dir()
        True
    """
    return find_shared_folder("imagenet", ENV_VAR, "photos", root)


def imagenet_root(root: Optional[PathLike] = None) -> Path:
    r"""
    Like :func:`find_imagenet_root`, but raises a clear error when the folder is absent.

    Args:
        root (str or PathLike, optional): an explicit folder. Default: found as above.

    Returns:
        *Path*: a folder that holds ``photos/``.

    Raises:
        FileNotFoundError: no such folder.

    Examples::

        >>> weights = imagenet_root() / IMAGENET_MOBILENET_FILE
    """
    found = find_imagenet_root(root)
    if found is None:
        where = f" at {root}" if root is not None else ""
        raise FileNotFoundError(
            f"ImageNet folder not found{where}: set {ENV_VAR} or place shared/data/imagenet "
            "beside the project"
        )
    return found


def imagenet_mobilenet_transform() -> "T.Compose":
    r"""
    The shared MobileNetV1's preprocessing: ``Resize(219)``, ``CenterCrop(192)``,
    ``ToTensor()``, ``Normalize(0.5, 0.5)``.

    Returns:
        *torchvision.transforms.Compose*: from a PIL image to a ``3 x 192 x 192`` tensor.

    Examples::

        >>> imagenet_mobilenet_transform()(Image.new("RGB", (300, 256))).shape
        torch.Size([3, 192, 192])
    """
    import torchvision.transforms as T

    return T.Compose(
        [
            T.Resize(IMAGENET_MOBILENET_RESIZE),
            T.CenterCrop(IMAGENET_MOBILENET_SIZE),
            T.ToTensor(),
            T.Normalize(IMAGENET_MOBILENET_MEAN, IMAGENET_MOBILENET_STD),
        ]
    )


def _parse_photo_name(path: Path) -> Tuple[int, str]:
    index, _, name = path.stem.split("_", 2)
    return int(index), name.replace("_", " ")


class ImageNetPhotos(torch.utils.data.Dataset):
    r"""
    The shared folder's photos: items ``(image, class index)``.

    Args:
        root (str or PathLike, optional): the ImageNet folder. Default: found as in
                    :func:`find_imagenet_root`.
        transform (Callable, optional): from a PIL image to a tensor.
                    Default: :func:`imagenet_mobilenet_transform`.
        indices (sequence of int, optional): which photos (positions in class order).
                    Default: all 1,000.

    Attributes:
        files (list[Path]): the photos, in class order.
        labels (list[int]): the class index of each photo.
        class_names (list[str]): all 1,000 class names, by class index, from the file
                    names (``"great white shark"``).

    Examples::

        >>> photos = ImageNetPhotos(indices=range(8))
        >>> image, label = photos[1]
        >>> image.shape, photos.class_names[label]
        (torch.Size([3, 192, 192]), 'goldfish')
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        transform: Optional[Callable[..., Tensor]] = None,
        indices: Optional[Sequence[int]] = None,
    ) -> None:
        folder = imagenet_root(root) / "photos"
        every = sorted(folder.glob("*.jpg"))
        if not every:
            raise FileNotFoundError(f"no photos in {folder}")
        parsed = [_parse_photo_name(path) for path in every]
        self.class_names: List[str] = [name for _, name in sorted(parsed)]
        chosen = range(len(every)) if indices is None else list(indices)
        self.files: List[Path] = [every[i] for i in chosen]
        self.labels: List[int] = [parsed[i][0] for i in chosen]
        self.transform = imagenet_mobilenet_transform() if transform is None else transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        from PIL import Image

        with Image.open(self.files[index]) as picture:
            image = self.transform(picture.convert("RGB"))
        return image, self.labels[index]


__all__ = [
    "IMAGENET_MOBILENET_FILE",
    "IMAGENET_MOBILENET_MEAN",
    "IMAGENET_MOBILENET_RESIZE",
    "IMAGENET_MOBILENET_SIZE",
    "IMAGENET_MOBILENET_STD",
    "ImageNetPhotos",
    "find_imagenet_root",
    "imagenet_mobilenet_transform",
    "imagenet_root",
]
