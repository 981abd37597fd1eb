#!/usr/bin/env python3
"""The shared CIFAR-10 folder: real photos for tests, benchmarks and tutorials.

The folder lives beside the project (``../shared/data/cifar10``), never inside it.
Its place is taken from, in order: an explicit argument, the environment variable
``CAPTUM_CAMS_CIFAR10``, ``../shared/data/cifar10`` from the working directory, and
the same path from the repository root of this package.
"""

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from captum_cams.kit.datasets._shared import PathLike, find_shared_folder

if TYPE_CHECKING:  # torchvision is imported where it is used: importing it imports
    # torch._dynamo (about 3 s), which nothing else of captum_cams.kit.datasets needs
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

#: The normalisation the shared checkpoints were trained with.
CIFAR10_MEAN = (0.485, 0.456, 0.406)
CIFAR10_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
ENV_VAR = "CAPTUM_CAMS_CIFAR10"


def find_cifar10_root(root: Optional[PathLike] = None) -> Optional[Path]:
    r"""
    Finds the shared CIFAR-10 folder, or returns None when it is absent.

    Args:
        root (str or PathLike, optional): an explicit folder; checked alone when given.
                    Default: None.

    Returns:
        *Path* or *None*: a folder that holds ``test/``.

    Examples::

        >>> root = find_cifar10_root()
        >>> root is None or (root / "test").is_dir()
        True
    """
    return find_shared_folder("cifar10", ENV_VAR, "test", root)


def cifar10_root(root: Optional[PathLike] = None) -> Path:
    r"""
    Like :func:`find_cifar10_root`, but raises a clear error when the folder is absent.

    Args:
        root (str or PathLike, optional): an explicit folder; checked alone when given.
                    Default: None.

    Returns:
        *Path*: a folder that holds ``test/``.

    Raises:
        FileNotFoundError: no such folder.

    Examples::

        >>> from captum_cams.kit.models import load_cifar_resnet
        >>> model = load_cifar_resnet(cifar10_root() / "resnet20-12fca82f.th")
    """
    found = find_cifar10_root(root)
    if found is None:
        raise FileNotFoundError(
            "CIFAR-10 folder not found"
            + (f" at {os.fspath(root)}" if root is not None else "")
            + f": set {ENV_VAR} or place shared/data/cifar10 beside the project"
        )
    return found


def cifar10_transform() -> "T.Compose":
    r"""
    ``ToTensor()`` then the checkpoints' ``Normalize``.

    Returns:
        *torchvision.transforms.Compose*: the transform of the CIFAR-10 test images.

    Examples::

        >>> cifar10_transform()(Image.new("RGB", (32, 32))).shape
        torch.Size([3, 32, 32])
    """
    import torchvision.transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def cifar10_test_set(root: Optional[PathLike] = None) -> "ImageFolder":
    r"""
    The 10,000 test JPEGs as an ``ImageFolder`` with the checkpoints' preprocessing.

    Args:
        root (str or PathLike, optional): the CIFAR-10 folder. Default: found as above.

    Returns:
        *ImageFolder*: items ``(image 3x32x32, label)``; labels in :data:`CIFAR10_CLASSES` order.

    Examples::

        >>> image, label = cifar10_test_set()[0]
        >>> image.shape, CIFAR10_CLASSES[label]
    """
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(cifar10_root(root) / "test"), transform=cifar10_transform())


def cifar10_train_set(
    root: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None
) -> "ImageFolder":
    r"""
    The 50,000 training JPEGs, extracted once from ``train.tar.gz`` into a cache.

    Extraction goes to a temporary folder that is renamed into place, so an
    interrupted run never leaves a half-extracted cache.

    Args:
        root (str or PathLike, optional): the CIFAR-10 folder. Default: found as above.
        cache_dir (str or PathLike, optional): where ``train/`` is extracted.
                    Default: ``~/.cache/captum_cams/cifar10``.

    Returns:
        *ImageFolder*: items ``(image 3x32x32, label)``.

    Examples::

        >>> train = cifar10_train_set()
        >>> len(train)
        50000
    """
    archive = cifar10_root(root) / "train.tar.gz"
    cache = (
        Path(cache_dir)
        if cache_dir is not None
        else Path.home() / ".cache" / "captum_cams" / "cifar10"
    )
    target = cache / "train"
    if not target.is_dir():
        if not archive.is_file():
            raise FileNotFoundError(f"training archive not found: {archive}")
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".train-", dir=cache))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            extracted = staging / "train"
            if not extracted.is_dir():
                raise ValueError(f"{archive} holds no train/ folder")
            try:
                os.replace(extracted, target)
            except OSError:
                if not target.is_dir():  # another process finished first otherwise
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(target), transform=cifar10_transform())
