#!/usr/bin/env python3
"""Models, layers and image folders named on the command line, checked with one-line errors.

Every user mistake (an unknown model or weights name, a checkpoint that does not fit, a
layer that does not exist, a folder that is missing, a file that is not an image, an
image without its annotation) raises :class:`InputError` with one sentence that names
the argument; the command line prints it and exits with status 2. Checkpoints are read
with ``torch.load(..., weights_only=True)`` or safetensors, never with pickle.
"""

import contextlib
import difflib
import importlib
import importlib.util
import itertools
import math
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from captum_cams._utils.capture import LayerNotCalledError, capture_layer
from captum_cams.attr import find_cam_layer

#: File name endings read as images (as ``torchvision.datasets.ImageFolder`` reads).
IMAGE_EXTENSIONS: Tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip

#: ImageNet's channel statistics, for torchvision models without a weights enum.
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The model name of the embedded default: the package's CNN trained on the main
#: job's task (:class:`~captum_cams.kit.datasets.ClutteredShapes`).
EMBEDDED = "embedded"

#: The model name of the tutorials' CNN, trained on
#: :class:`~captum_cams.kit.datasets.GroundTruthShapes`.
EMBEDDED_SHAPES = "embedded-shapes"


class InputError(Exception):
    r"""
    A user error in the inputs: reported as one line and exit status 2.

    Examples::

        >>> try:
        ...     load_model("resnet19")
        ... except InputError as error:
        ...     print(error)  # --model: unknown model 'resnet19' (did you mean ...
    """


#: Single-channel modes of more than 8 bits: ``(largest value of the data, what it is)``.
_WIDE_MODES: Dict[str, Tuple[float, str]] = {
    "I;16": (65535.0, "16-bit"),
    "I;16L": (65535.0, "16-bit"),
    "I;16B": (65535.0, "16-bit"),
    "I;16N": (65535.0, "16-bit"),
    "I": (65535.0, "32-bit integer (read as 16-bit data)"),
    "F": (1.0, "32-bit float"),
}


def check_image_mode(picture: "object", name: str = "image") -> None:
    r"""
    Checks that an image's values can be scaled to ``[0, 1]`` without clipping.

    8-bit modes always can. ``I;16*`` always can (``/ 65535``). ``I`` (32-bit
    integers; PIL's mode for most 16-bit PNG and TIFF files) can when its values
    lie in ``[0, 65535]``, and ``F`` (32-bit float) when they are finite and lie in
    ``[0, 1]``:
    other ranges have no faithful scale, so they are refused rather than clipped.

    Args:
        picture (PIL.Image.Image): the image.
        name (str, optional): its name in error messages. Default: ``"image"``.

    Raises:
        InputError: a mode or a range that cannot be scaled faithfully.

    Examples::

        >>> check_image_mode(Image.open("scan_16bit.png"), "scan_16bit.png")
    """
    mode = picture.mode  # type: ignore[attr-defined]
    if mode not in _WIDE_MODES:
        if mode.startswith(("I;", "BGR;")):
            raise InputError(f"{name}: unsupported image mode {mode!r}")
        return
    if mode.startswith("I;16"):
        return
    import numpy as np

    largest, what = _WIDE_MODES[mode]
    values = np.asarray(picture)
    low, high = (values.min().item(), values.max().item()) if values.size else (0, 0)
    if not (0 <= low and high <= largest and bool(np.isfinite(values).all())):
        raise InputError(
            f"{name}: {what} image (mode {mode}) with values in [{low}, {high}], outside "
            f"[0, {largest:g}]: it cannot be scaled to [0, 1] without clipping; convert "
            "it to 8 or 16 bits first"
        )


def unit_pixels(picture: "object", name: str = "image") -> Tensor:
    r"""
    An image's pixels as a ``3 x H x W`` float32 tensor in ``[0, 1]``, never clipped.

    8-bit modes are converted to RGB by PIL and divided by 255; the wide
    single-channel modes are divided by their range (``I;16*`` and ``I``: 65535,
    ``F``: 1) after :func:`check_image_mode`, and repeated over 3 channels.

    Args:
        picture (PIL.Image.Image): the image.
        name (str, optional): its name in error messages. Default: ``"image"``.

    Returns:
        *Tensor* of **pixels**:
        - **pixels** (*Tensor*):
                    ``3 x H x W`` float32 values in ``[0, 1]``.

    Raises:
        InputError: see :func:`check_image_mode`.

    Examples::

        >>> unit_pixels(Image.open("scan_16bit.png")).max()
        tensor(1.)
    """
    import numpy as np

    check_image_mode(picture, name)
    mode = picture.mode  # type: ignore[attr-defined]
    if mode in _WIDE_MODES:
        values = np.asarray(picture).astype(np.float32) / np.float32(_WIDE_MODES[mode][0])
        gray = torch.from_numpy(np.ascontiguousarray(values))
        return gray.unsqueeze(0).expand(3, -1, -1).contiguous()
    rgb = picture.convert("RGB")  # type: ignore[attr-defined]
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return pixels.contiguous()


@dataclass(frozen=True)
class Preprocess:
    r"""
    How an image file becomes the model's input, and a mask follows it.

    The image is resized so that its shorter side is ``resize`` (or to exactly
    ``resize x resize`` with ``square``), centre-cropped to ``crop``, scaled to
    ``[0, 1]`` and normalised with ``mean``/``std`` when given. Masks go through the
    same resize (nearest) and crop, so boxes stay on their objects.

    Args:
        resize (int): the shorter side after resizing (the side with ``square``).
        crop (int): the side of the centre crop.
        mean (tuple[float, ...], optional): per-channel mean. Default: None (none).
        std (tuple[float, ...], optional): per-channel std. Default: None.
        square (bool, optional): resize to a square, ignoring the aspect ratio.
                    Default: False.

    Examples::

        >>> prep = Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD)
        >>> prep.image(Image.open("dog.jpg")).shape
        torch.Size([3, 224, 224])
    """

    resize: int
    crop: int
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    square: bool = False

    def _geometry(self, tensor: Tensor, mode: str) -> Tensor:
        height, width = tensor.shape[-2:]
        if self.square:
            size = (self.resize, self.resize)
        elif height <= width:
            size = (self.resize, max(1, round(width * self.resize / height)))
        else:
            size = (max(1, round(height * self.resize / width)), self.resize)
        kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
        resized = F.interpolate(tensor.unsqueeze(0), size=size, mode=mode, **kwargs)[0]
        top = max(0, (size[0] - self.crop) // 2)
        left = max(0, (size[1] - self.crop) // 2)
        return resized[..., top : top + self.crop, left : left + self.crop]

    def image(self, picture: "object", name: str = "image") -> Tensor:
        r"""
        Args:
            picture (PIL.Image.Image): an image in any mode. 8-bit modes are
                        converted to RGB; single-channel 16-bit and 32-bit modes
                        (``I;16*``, ``I``, ``F``) are scaled to ``[0, 1]`` by their
                        range (see :func:`unit_pixels`) and repeated over 3 channels.
            name (str, optional): the image's name in error messages.
                        Default: ``"image"``.

        Returns:
            *Tensor* of **input**:
            - **input** (*Tensor*):
                        the ``3 x crop x crop`` float32 model input.

        Raises:
            InputError: a mode whose values cannot be scaled faithfully.

        Examples::

            >>> Preprocess(256, 224).image(Image.open("dog.jpg")).shape
            torch.Size([3, 224, 224])
        """
        pixels = unit_pixels(picture, name)
        tensor = self._geometry(pixels, "bilinear").clamp(0, 1)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean).reshape(-1, 1, 1)
            std = torch.tensor(self.std).reshape(-1, 1, 1)
            tensor = (tensor - mean) / std
        return tensor.contiguous()

    def mask(self, mask: Tensor) -> Tensor:
        r"""
        Args:
            mask (Tensor): ``1 x H x W`` bool mask at the image file's size.

        Returns:
            *Tensor* of **mask**:
            - **mask** (*Tensor*):
                        the ``1 x crop x crop`` bool mask under the same geometry.

        Examples::

            >>> Preprocess(256, 224).mask(torch.ones(1, 300, 400, dtype=torch.bool)).shape
            torch.Size([1, 224, 224])
        """
        return self._geometry(mask.to(torch.float32), "nearest") > 0.5


@dataclass
class LoadedModel:
    r"""A model named on the command line, with how its inputs are made.

    Args:
        model (nn.Module): the model, in eval mode.
        name (str): what the user called it.
        preprocess (Preprocess): how an image file becomes its input.
        classes (list[str], optional): class names by index, when known.
        default_layer (str, optional): the CAM layer when ``--layer`` is not given;
                    None: found by :func:`resolve_layer`.
        untrained (bool, optional): the weights are random (``--weights none``, or
                    a torchvision model without weights). Default: False.
        preprocess_origin (str, optional): where ``preprocess`` came from:
                    ``"weights"`` (a torchvision weights enum), ``"model"`` (the
                    package's own model, or a factory's attributes) or ``"default"``
                    (ImageNet's, assumed). Default: ``"default"``.

    Examples::

        >>> loaded = load_model("embedded")
        >>> loaded.name, loaded.default_layer
        ('embedded', 'features.2')
    """

    model: nn.Module
    name: str
    preprocess: Preprocess
    classes: Optional[List[str]] = None
    default_layer: Optional[str] = None
    untrained: bool = False
    preprocess_origin: str = "default"


def _closest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _read_state_dict(path: str) -> Dict[str, Tensor]:
    if not os.path.isfile(path):
        raise InputError(f"--weights: checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise InputError(
                "--weights: reading .safetensors needs `pip install safetensors`"
            ) from None
        try:
            return load_file(path)
        except Exception as error:  # the library's own error types vary by version
            raise InputError(
                f"--weights: not a readable safetensors file: {path} ({error})"
            ) from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights_only refusals all land here
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"--weights: cannot load {path} with weights_only=True ({first[:200]})"
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise InputError(f"--weights: {path} holds no state dict of tensors")
    return payload


def _load_into(model: nn.Module, path: str) -> None:
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise InputError(f"--weights: {path} does not fit the model ({detail[:200]})") from None


def looks_like_path(text: str) -> bool:
    r"""
    Args:
        text (str): a ``--weights`` value.

    Returns:
        *bool* of **is_path**:
        - **is_path** (*bool*):
                    True when it names a file rather than a weights enum.

    Examples::

        >>> looks_like_path("IMAGENET1K_V1"), looks_like_path("checkpoints/best.pt")
        (False, True)
    """
    return os.sep in text or text.endswith((".pt", ".pth", ".safetensors")) or os.path.isfile(text)


def load_model(name: str = EMBEDDED, weights: Optional[str] = None) -> LoadedModel:
    r"""
    Loads the embedded default, a torchvision classification model, or a model made
    by a function of the user's (``path/to/file.py:function`` or
    ``package.module:function``, see :func:`load_factory_model`).

    Args:
        name (str, optional): ``"embedded"`` (the package's CNN trained on the
                    main job's task, :class:`~captum_cams.kit.datasets.ClutteredShapes`),
                    ``"embedded-shapes"`` (the tutorials' CNN, trained on
                    :class:`~captum_cams.kit.datasets.GroundTruthShapes`), a torchvision
                    model name such as ``"resnet18"``, or ``"FILE.py:FUNCTION"`` /
                    ``"MODULE:FUNCTION"``. Default: ``"embedded"``.
        weights (str, optional): for torchvision, a weights enum name of that model
                    (``"IMAGENET1K_V1"``, ``"DEFAULT"``), ``"none"`` for random
                    weights, or a checkpoint path (a state dict, or a dict holding
                    one under ``"state_dict"``; ``.safetensors`` too). For the
                    embedded model, a checkpoint path replaces the shipped one; for a
                    function, a checkpoint loaded into the module it returns.
                    Default: None (the shipped checkpoint; for torchvision, no
                    weights; for a function, the module as it returns it).

    Returns:
        *LoadedModel* of **loaded**:
        - **loaded** (*LoadedModel*):
                    the model in eval mode and how to make its inputs.

    Raises:
        InputError: an unknown model or weights name, or a checkpoint that is
        missing, not loadable with ``weights_only=True`` or does not fit.

    Examples::

        >>> loaded = load_model("resnet18", "none")
        >>> loaded.preprocess.crop, loaded.untrained
        (224, True)
        >>> load_model("my_models.py:build", "my_weights.pt").name
        'my_models.py:build'
    """
    if is_factory_spec(name):
        return load_factory_model(name, weights)
    if name in (EMBEDDED, EMBEDDED_SHAPES):
        from captum_cams.kit.datasets import CLASSES, CLUTTERED_CLASSES
        from captum_cams.kit.models.embedded import (
            EMBEDDED_CLUTTERED_CHECKPOINT,
            EMBEDDED_DEFAULT_CHECKPOINT,
            architecture_of,
            embedded_default_layer,
            load_embedded_default,
        )

        shipped = EMBEDDED_CLUTTERED_CHECKPOINT if name == EMBEDDED else EMBEDDED_DEFAULT_CHECKPOINT
        model = load_embedded_default(shipped)  # the architecture, and the weights by default
        untrained = weights is not None and weights.lower() == "none"
        if untrained:
            model = architecture_of(model.meta)  # type: ignore[arg-type]
        elif weights is not None and weights.lower() != "default":
            if not os.path.isfile(weights):
                raise InputError(f"--weights: checkpoint not found: {weights}")
            _load_into(model, weights)
        model.eval()
        cam_layer = embedded_default_layer(model)
        layer_name = next(key for key, module in model.named_modules() if module is cam_layer)
        classes: Optional[List[str]] = list(CLUTTERED_CLASSES if name == EMBEDDED else CLASSES)
        return LoadedModel(
            model, name, Preprocess(64, 64, square=True), classes, layer_name, untrained, "model"
        )

    import torchvision.models as tvm

    available = sorted(tvm.list_models(module=tvm))
    if name not in available:
        raise InputError(
            f"--model: unknown model {name!r}{_closest(name, available)}; use 'embedded', "
            "'embedded-shapes' or a torchvision classification model name such as resnet18"
        )
    default_prep = Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD)
    if weights is None or weights.lower() == "none":
        model = tvm.get_model(name, weights=None).eval()
        return LoadedModel(model, name, default_prep, untrained=True)
    if looks_like_path(weights):
        model = tvm.get_model(name, weights=None)
        _load_into(model, weights)
        return LoadedModel(model.eval(), name, default_prep)
    enum = tvm.get_model_weights(name)
    members = list(enum.__members__)
    if weights not in members:
        raise InputError(
            f"--weights: {weights!r} is not a weights enum of {name}; choose from "
            f"{', '.join(members)}, 'none' or a checkpoint path"
        )
    chosen = enum[weights]
    try:
        model = tvm.get_model(name, weights=chosen)
    except Exception as error:  # no network, a broken download cache, ...
        raise InputError(f"--weights: cannot get {name} {weights} ({error})") from None
    transform = chosen.transforms()
    preprocess = Preprocess(
        int(transform.resize_size[0]),
        int(transform.crop_size[0]),
        tuple(transform.mean),
        tuple(transform.std),
    )
    classes = list(chosen.meta.get("categories") or []) or None
    return LoadedModel(model.eval(), name, preprocess, classes, preprocess_origin="weights")


def is_factory_spec(name: str) -> bool:
    r"""
    Args:
        name (str): a ``--model`` value.

    Returns:
        *bool* of **is_factory**:
        - **is_factory** (*bool*):
                    True for ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION`` (a name with
                    a colon; torchvision's and the embedded names have none).

    Examples::

        >>> is_factory_spec("nets/mine.py:build"), is_factory_spec("resnet18")
        (True, False)
    """
    return ":" in name


#: The attributes a model factory (or the module it returns) may carry to say how its
#: inputs are made, as torchvision's weights do: ``input_size`` (the side of the
#: square centre crop), ``resize_size`` (the shorter side before cropping), ``mean``,
#: ``std`` (per channel, on ``[0, 1]`` pixels) and ``categories`` (class names).
FACTORY_ATTRIBUTES: Tuple[str, ...] = ("input_size", "resize_size", "mean", "std", "categories")


@contextlib.contextmanager
def _first_on_sys_path(folder: str) -> Iterator[None]:
    r"""``folder`` first on ``sys.path`` (as ``python file.py`` or ``python -m`` put it),
    so the user's file can import its neighbours; restored afterwards."""
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:  # the user's code took it out itself
            pass


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line[:200]}" if line else type(error).__name__


_FACTORY_MODULES = itertools.count()


def _import_target(target: str, spec: str) -> Tuple[Any, str]:
    r"""The module named by ``target`` (a ``.py`` file or a dotted module) and the folder
    put first on ``sys.path`` for it."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"--model: file not found: {target}")
        folder = str(path.resolve().parent)
        module_name = f"_captum_cams_model_{next(_FACTORY_MODULES)}_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise InputError(f"--model: cannot import {target} as a Python file")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses, pickle and fx look modules up here
        try:
            with _first_on_sys_path(folder):
                loader_spec.loader.exec_module(module)
        except (Exception, SystemExit) as error:
            sys.modules.pop(module_name, None)
            raise InputError(f"--model: importing {target} failed ({_first_line(error)})") from None
        return module, folder
    folder = os.getcwd()
    try:
        with _first_on_sys_path(folder):
            return importlib.import_module(target), folder
    except ModuleNotFoundError as error:
        if error.name is not None and (target == error.name or target.startswith(error.name + ".")):
            raise InputError(
                f"--model: no module named {error.name!r} (in {spec}); give a file as "
                "path/to/file.py:FUNCTION, or run from the folder that holds the package"
            ) from None
        raise InputError(f"--model: importing {target} failed ({_first_line(error)})") from None
    except (Exception, SystemExit) as error:
        raise InputError(f"--model: importing {target} failed ({_first_line(error)})") from None


def _factory_attribute(model: nn.Module, factory: Any, name: str) -> Any:
    r"""
    ``name`` on the returned module, else on the factory, else None. Only plain values
    count: a tensor (a model that normalises its inputs itself may hold ``mean`` and
    ``std`` buffers), a submodule or a method is not a preprocessing setting.
    """
    for owner in (model, factory):
        value = getattr(owner, name, None)
        if isinstance(value, (int, float, str, list, tuple)) and not isinstance(value, bool):
            return value
    return None


def _factory_preprocess(model: nn.Module, factory: Any, spec: str) -> Tuple[Preprocess, bool]:
    r"""The preprocessing the factory's attributes give, and whether they gave any."""
    size = _factory_attribute(model, factory, "input_size")
    resize = _factory_attribute(model, factory, "resize_size")
    mean = _factory_attribute(model, factory, "mean")
    std = _factory_attribute(model, factory, "std")
    if size is None and resize is None and mean is None and std is None:
        return Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD), False
    where = f"--model: {spec}'s attribute"
    crop = _positive_size(size, f"{where} input_size") if size is not None else 224
    side = _positive_size(resize, f"{where} resize_size") if resize is not None else None
    means = _channel_values(mean, f"{where} mean") if mean is not None else IMAGENET_MEAN
    stds = _channel_values(std, f"{where} std", positive=True) if std is not None else IMAGENET_STD
    return with_preprocess_options(Preprocess(256, 224, means, stds), crop, side), True


def _positive_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive integer; got {value!r}")
    return value


def _channel_values(values: Any, what: str, positive: bool = False) -> Tuple[float, ...]:
    r"""Per-channel numbers (one is repeated for 3 channels), finite (and > 0)."""
    if isinstance(values, Tensor):
        values = values.flatten().tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values] * 3
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be 3 numbers (or one); got {values!r}") from None
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{what} must be 3 finite numbers (or one); got {values!r}")
    if positive and not all(v > 0 for v in numbers):
        raise InputError(f"{what} must be positive; got {values!r}")
    return numbers


def parse_channel_values(text: str, option: str, positive: bool = False) -> Tuple[float, ...]:
    r"""
    Per-channel numbers from the command line: ``"0.5"`` or ``"0.485,0.456,0.406"``.

    Args:
        text (str): the option's value.
        option (str): the option, for errors (``"--mean"``).
        positive (bool, optional): every number must be above 0. Default: False.

    Returns:
        *tuple[float, float, float]* of **values**:
        - **values** (*tuple[float, float, float]*):
                    one number per channel.

    Raises:
        InputError: not 1 or 3 finite numbers, or not positive when required.

    Examples::

        >>> parse_channel_values("0.5", "--mean")
        (0.5, 0.5, 0.5)
    """
    parts = [part.strip() for part in text.split(",")]
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise InputError(
            f"{option}: not numbers: {text!r} (give 0.5 or 0.485,0.456,0.406)"
        ) from None
    return _channel_values(numbers, option, positive)


def with_preprocess_options(
    preprocess: Preprocess,
    input_size: Optional[int] = None,
    resize: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Preprocess:
    r"""
    ``preprocess`` with the given parts replaced (``--input-size``, ``--resize``,
    ``--mean``, ``--std``).

    A new ``input_size`` without ``resize`` resizes the shorter side to
    ``round(input_size · 256 / 224)`` first, torchvision's ratio (192 → 219); the
    resize must not be smaller than the crop.

    Args:
        preprocess (Preprocess): the model's preprocessing.
        input_size (int, optional): the side of the centre crop. Default: None.
        resize (int, optional): the shorter side before cropping. Default: None.
        mean (sequence of float, optional): per-channel mean. Default: None.
        std (sequence of float, optional): per-channel std. Default: None.

    Returns:
        *Preprocess* of **preprocess**:
        - **preprocess** (*Preprocess*):
                    the new preprocessing.

    Raises:
        InputError: a size below 1 or a resize smaller than the crop.

    Examples::

        >>> with_preprocess_options(Preprocess(256, 224), input_size=192).resize
        219
    """
    crop = preprocess.crop if input_size is None else _positive_size(input_size, "--input-size")
    if resize is not None:
        side = _positive_size(resize, "--resize")
    elif input_size is not None and not preprocess.square:
        side = int(round(crop * 256 / 224))
    elif input_size is not None:
        side = crop
    else:
        side = preprocess.resize
    if side < crop:
        raise InputError(
            f"--resize: {side} is smaller than the input size {crop} (the shorter side is "
            "resized, then the centre crop taken)"
        )
    return replace(
        preprocess,
        resize=side,
        crop=crop,
        mean=preprocess.mean if mean is None else tuple(mean),
        std=preprocess.std if std is None else tuple(std),
    )


def load_factory_model(spec: str, weights: Optional[str] = None) -> LoadedModel:
    r"""
    A model made by a function of the user's: ``path/to/file.py:FUNCTION`` or
    ``package.module:FUNCTION``.

    The function is called with no arguments and must return an ``nn.Module`` (a
    classifier returning ``N x classes`` logits). ``weights`` is then a checkpoint
    loaded into it with ``weights_only=True`` (a state dict, or a dict holding one under
    ``"state_dict"``; ``.safetensors`` too), ``"none"`` (the module as returned, said
    to be untrained) or None (the module as returned: the function may load its own
    weights). A file's folder, or for a module the working directory, is first on
    ``sys.path`` while it is imported and called, as ``python file.py`` would have it.

    Preprocessing and class names come from attributes of the returned module or of
    the function (:data:`FACTORY_ATTRIBUTES`): ``input_size``, ``resize_size``,
    ``mean``, ``std``, ``categories``; without any, ImageNet's (resize 256, crop 224,
    ImageNet's mean and std) is assumed and ``preprocess_origin`` is ``"default"``.

    Args:
        spec (str): ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION``.
        weights (str, optional): a checkpoint path, ``"none"`` or None. Default: None.

    Returns:
        *LoadedModel* of **loaded**:
        - **loaded** (*LoadedModel*):
                    the module in eval mode, its preprocessing and class names.

    Raises:
        InputError: the file or module is missing or fails to import, the name is not
        a function of it, the call fails or returns no ``nn.Module``, an attribute is
        malformed, or the checkpoint is missing, unsafe or does not fit.

    Examples::

        >>> # my_models.py:  def build(): return torchvision.models.resnet18(num_classes=10)
        >>> loaded = load_factory_model("my_models.py:build", "checkpoints/best.pt")
        >>> loaded.preprocess.crop, loaded.preprocess_origin
        (224, 'default')
    """
    target, _, attribute = spec.rpartition(":")
    if not target or not attribute.strip():
        raise InputError(
            f"--model: {spec!r} names no function: give path/to/file.py:FUNCTION or "
            "package.module:FUNCTION"
        )
    attribute = attribute.strip()
    module, folder = _import_target(target, spec)
    if not hasattr(module, attribute):
        defined = sorted(
            key
            for key, value in vars(module).items()
            if callable(value) and not key.startswith("_") and not isinstance(value, type(os))
        )
        shown = f" (it defines: {', '.join(defined[:12])})" if defined else ""
        raise InputError(f"--model: {target} has no attribute {attribute!r}{shown}")
    factory = getattr(module, attribute)
    if not callable(factory):
        raise InputError(
            f"--model: {spec} is a {type(factory).__name__}, not a function returning a model"
        )
    if weights is not None and weights.lower() not in ("none",) and not looks_like_path(weights):
        raise InputError(
            f"--weights: {weights!r} is neither a checkpoint file nor 'none' (a --model "
            "FUNCTION takes a checkpoint of the module it returns)"
        )
    try:
        with _first_on_sys_path(folder):
            model = factory()
    except (Exception, SystemExit) as error:
        raise InputError(
            f"--model: {spec}() raised {_first_line(error)} (it is called with no arguments)"
        ) from None
    if not isinstance(model, nn.Module):
        raise InputError(
            f"--model: {spec}() returned a {type(model).__name__}, not a torch.nn.Module"
        )
    untrained = weights is not None and weights.lower() == "none"
    if weights is not None and not untrained:
        _load_into(model, weights)
    preprocess, given = _factory_preprocess(model, factory, spec)
    categories = _factory_attribute(model, factory, "categories")
    classes: Optional[List[str]] = None
    if categories is not None:
        if isinstance(categories, str) or not all(isinstance(c, str) for c in categories):
            raise InputError(f"--model: {spec}'s attribute categories must be a list of names")
        classes = list(categories)
    origin = "model" if given else "default"
    return LoadedModel(model.eval(), spec, preprocess, classes, None, untrained, origin)


def read_labels(path: str) -> List[str]:
    r"""
    Class names from a text file, one per line (line ``i`` names class ``i``).

    Args:
        path (str): the ``--labels`` file (UTF-8).

    Returns:
        *list[str]* of **names**:
        - **names** (*list[str]*):
                    the names, stripped; trailing empty lines are ignored.

    Raises:
        InputError: the file is missing or unreadable, holds no name, or has an empty
        line between names.

    Examples::

        >>> read_labels("imagenet_classes.txt")[:2]
        ['tench', 'goldfish']
    """
    if not os.path.isfile(path):
        raise InputError(f"--labels: file not found: {path}")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--labels: cannot read {path} ({_first_line(error)})") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InputError(f"--labels: {path} holds no class name (one name per line)")
    if "" in names:
        raise InputError(
            f"--labels: line {names.index('') + 1} of {path} is empty (one name per line)"
        )
    return names


def check_model_output(loaded: LoadedModel, sample: Tensor) -> int:
    r"""
    Runs the model once on ``sample`` and returns its number of classes.

    Args:
        loaded (LoadedModel): the model.
        sample (Tensor): one input of the model's size (zeros will do).

    Returns:
        *int* of **num_classes**:
        - **num_classes** (*int*):
                    the number of outputs.

    Raises:
        InputError: the model fails on an input of that size, or does not return
        ``N x classes`` logits.

    Examples::

        >>> check_model_output(load_model("resnet18", "none"), torch.zeros(1, 3, 224, 224))
        1000
    """
    try:
        with torch.no_grad():
            output = loaded.model(sample)
    except Exception as error:  # the user's model: any error is a mismatch of our input
        shape = " x ".join(str(d) for d in sample.shape)
        raise InputError(
            f"--model: {loaded.name} fails on a {shape} input ({_first_line(error)}); give "
            "its input size with --input-size"
        ) from None
    if not isinstance(output, Tensor) or output.dim() != 2:
        what = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise InputError(
            f"--model: {loaded.name} returns {what}, not N x classes logits (a classifier)"
        )
    return int(output.shape[1])


def resolve_layer(model: nn.Module, name: Optional[str], sample: Tensor) -> Tuple[str, nn.Module]:
    r"""
    The CAM layer by its dotted module name, or the last feature map when None.

    Without a name, the layer is :func:`~captum_cams.find_cam_layer`'s: the module
    that finishes last among those whose output is an ``N x C x h x w`` map that the
    predicted class depends on at two positions or more (pooling layers left out):
    e.g. ``layer4`` of a ResNet, ``features`` of a VGG.

    Args:
        model (nn.Module): the model.
        name (str, optional): a name of ``model.named_modules()``, e.g.
                    ``"layer4"`` or ``"features.29"``. Default: None.
        sample (Tensor): one input batch, to check the layer's output.

    Returns:
        *tuple[str, nn.Module]* of **name** and **layer**:
        - **name** (*str*):
                    the layer's name in ``model.named_modules()``.
        - **layer** (*nn.Module*):
                    the module.

    Raises:
        InputError: the name is not a module of the model, or the module's output
        is not a 4-D feature map.

    Examples::

        >>> resolve_layer(model, "layer4", torch.zeros(1, 3, 224, 224))[0]
        'layer4'
    """
    modules = dict(model.named_modules())
    if name is not None and name not in modules:
        top = [key for key in modules if key and "." not in key]
        raise InputError(
            f"--layer: no module named {name!r} in the model{_closest(name, list(modules))}; "
            f"its top-level modules are {', '.join(top)}"
        )
    if name is not None:
        return name, _named_feature_map(model, name, modules[name], sample)
    try:
        found = find_cam_layer(model, sample, allow_reshape=False)
    except ValueError:
        raise InputError(
            "--layer: the model has no 4-D feature map; name a layer with --layer"
        ) from None
    return found.name, found.layer


def _is_feature_map(shape: Tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] * shape[3] > 1


def _named_feature_map(model: nn.Module, name: str, module: nn.Module, sample: Tensor) -> nn.Module:
    r"""``module`` if its output on ``sample`` is a feature map (captured as the CAMs do)."""
    try:
        with torch.no_grad():
            layer_tensors, _ = capture_layer(model, sample, module)
    except LayerNotCalledError:
        layer_tensors = ()
    except AttributeError as error:  # Captum copies tensors only: not (Tensor, None), a dict
        raise InputError(
            f"--layer: {name!r} does not output tensors only ({error}); choose a "
            "convolutional layer"
        ) from None
    if len(layer_tensors) == 1 and _is_feature_map(tuple(layer_tensors[0].shape)):
        return module
    if len(layer_tensors) == 1:
        described = str(tuple(layer_tensors[0].shape))
    else:
        described = f"{len(layer_tensors)} tensors" if layer_tensors else "no tensor"
    raise InputError(
        f"--layer: {name!r} outputs {described}, not an N x C x h x w feature map; choose a "
        "convolutional layer"
    )


def list_images(folder: str, option: str = "--data") -> List[Path]:
    r"""
    The image files under a folder (an ``ImageFolder`` tree or a flat folder), sorted.

    Args:
        folder (str): the ``--data`` folder.
        option (str, optional): the option named in errors. Default: ``"--data"``.

    Returns:
        *list[Path]* of **files**:
        - **files** (*list[Path]*):
                    files with an image extension, recursively, in sorted order.

    Raises:
        InputError: the folder is missing or holds no image file.

    Examples::

        >>> list_images("imagenet_val_subset")[:2]
        [PosixPath('imagenet_val_subset/n01440764/ILSVRC2012_val_00000293.JPEG'), ...]
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{option}: folder not found: {folder}")
    files = sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise InputError(
            f"{option}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}"
        )
    return files


def open_image(path: "os.PathLike[str] | str") -> "object":
    r"""
    Opens an image file, fully read.

    Args:
        path (str or PathLike): the file.

    Returns:
        *PIL.Image.Image* of **image**:
        - **image** (*PIL.Image.Image*):
                    the decoded image.

    Raises:
        InputError: the file is missing, is not a readable image, has more pixels
        than PIL's decompression-bomb limit (checked from the header, before
        decoding), or has a mode whose values cannot be scaled faithfully, see
        :func:`check_image_mode`.

    Examples::

        >>> open_image("dog.jpg").size
        (500, 375)
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise InputError(f"image not found: {os.fspath(path)}")
    try:
        with _quiet_bomb_warning(), Image.open(path) as image:
            _check_pixel_count(image, path)
            image.load()
            check_image_mode(image, os.fspath(path))
            return image.copy()
    except Image.DecompressionBombError:
        raise InputError(_too_many_pixels(path, None)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"not a readable image: {os.fspath(path)} ({error})") from None


def _too_many_pixels(path: "os.PathLike[str] | str", size: Optional[Tuple[int, int]]) -> str:
    from PIL import Image

    shown = f" is {size[0]}x{size[1]} pixels," if size is not None else ""
    return (
        f"image {os.fspath(path)}{shown} over PIL's decompression-bomb limit of "
        f"{Image.MAX_IMAGE_PIXELS} pixels: refused before decoding (raise "
        "PIL.Image.MAX_IMAGE_PIXELS if the image is genuine)"
    )


@contextlib.contextmanager
def _quiet_bomb_warning() -> Iterator[None]:
    r"""PIL's warning for images over its limit: the limit is enforced here instead."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _check_pixel_count(image: "object", path: "os.PathLike[str] | str") -> None:
    r"""Refuses, from the header, an image over PIL's decompression-bomb limit."""
    from PIL import Image

    width, height = image.size  # type: ignore[attr-defined]
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise InputError(_too_many_pixels(path, (width, height)))


def check_image_file(path: "os.PathLike[str] | str") -> None:
    r"""
    Checks that a file is an image from its header alone (cheap: nothing decoded).

    Args:
        path (str or PathLike): the file.

    Raises:
        InputError: the file is missing, is not an image, or has more pixels than
        PIL's decompression-bomb limit.

    Examples::

        >>> check_image_file("dog.jpg")
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise InputError(f"image not found: {os.fspath(path)}")
    try:
        with _quiet_bomb_warning(), Image.open(path) as image:
            _check_pixel_count(image, path)
            image.verify()
    except Image.DecompressionBombError:
        raise InputError(_too_many_pixels(path, None)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"not a readable image: {os.fspath(path)} ({error})") from None


def annotation_mask(folder: str, image_path: Path, image_size: Tuple[int, int]) -> Tensor:
    r"""
    The union of an image's Pascal-VOC boxes as a ``1 x H x W`` bool mask.

    The annotation is ``<folder>/<image stem>.xml`` (VOC's ``Annotations`` folder).

    Args:
        folder (str): the ``--annotations`` folder.
        image_path (Path): the image file.
        image_size (tuple[int, int]): the image file's ``(H, W)``.

    Returns:
        *Tensor* of **mask**:
        - **mask** (*Tensor*):
                    ``1 x H x W`` bool mask at the image file's size.

    Raises:
        InputError: the annotation is missing, malformed, has no box or gives
        another image size.

    Examples::

        >>> annotation_mask("VOC2012/Annotations", Path("JPEGImages/2007_000027.jpg"), (500, 486))
    """
    from captum_cams.kit.datasets.voc import read_voc_size, voc_ground_truth_mask

    xml = Path(folder) / f"{image_path.stem}.xml"
    if not xml.is_file():
        raise InputError(f"--annotations: no annotation {xml} for image {image_path}")
    try:
        declared = read_voc_size(xml)  # compared before any mask is allocated
        if tuple(declared) != tuple(image_size):
            raise InputError(
                f"--annotations: {xml} is for a {declared[0]}x{declared[1]} image but "
                f"{image_path} is {image_size[0]}x{image_size[1]}"
            )
        mask = voc_ground_truth_mask(xml)
    except ValueError as error:
        raise InputError(f"--annotations: {error}") from None
    if not bool(mask.any()):
        raise InputError(f"--annotations: {xml} has no object box")
    return mask


def check_device(text: str) -> torch.device:
    r"""
    Args:
        text (str): ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.

    Returns:
        *torch.device* of **device**:
        - **device** (*torch.device*):
                    the device; ``"auto"`` is CUDA (this process's
                    ``LOCAL_RANK`` under torchrun) when available, else the CPU.

    Raises:
        InputError: an unknown device, or one this machine does not have.

    Examples::

        >>> check_device("cpu")
        device(type='cpu')
    """
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise InputError(
            f"--device: not a device: {text!r} (use cpu, cuda, cuda:0, auto)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device: {text} asked for but CUDA is not available here")
        index = device.index
        if index is None:
            index = int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device: {text}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device: mps asked for but it is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device: unsupported device type {device.type!r}")
    return device
