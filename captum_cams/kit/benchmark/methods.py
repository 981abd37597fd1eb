#!/usr/bin/env python3
r"""The method registry: :data:`METHODS` maps a command-line name to a :class:`MethodSpec`
whose factory builds the Captum attribution from a :class:`MethodContext`."""

import itertools
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
)

import torch
import torch.nn as nn
from captum.attr._utils.attribution import Attribution

from captum_cams.attr import (
    LayerAblationCam,
    LayerCam,
    LayerEigenCam,
    LayerEigenGradCam,
    LayerGradCam,
    LayerGradCamElementWise,
    LayerGradCamPlusPlus,
    LayerHiResCam,
    LayerIntegratedGradCam,
    LayerISCam,
    LayerLibraCam,
    LayerLiftCam,
    LayerRelevanceCam,
    LayerScoreCam,
    LayerShapCam,
    LayerSmoothGradCamPlusPlus,
    LayerSSCam,
    LayerXGradCam,
    ReferenceLibrary,
)
from captum_cams.kit.benchmark.data import BenchmarkData, EmbeddedData
from captum_cams.kit.inputs import InputError
from captum_cams.tuning import ThresholdFineTuned

__all__ = [
    "DEFAULT_METHODS",
    "LIBRARY_IMAGES",
    "LIBRARY_NEEDED",
    "METHODS",
    "MethodContext",
    "MethodSpec",
    "libra_cam_with_library",
    "on_layer",
    "parse_names",
]

#: Images drawn for Libra-CAM's reference library in the benchmark.
LIBRARY_IMAGES = 200

#: Libra-CAM's one-line refusal when nothing of the model's task can give its library.
LIBRARY_NEEDED = (
    "Libra-CAM needs a reference library of images from your model's task (the paper "
    "uses training images): pass --library-data FOLDER (a few dozen images of other "
    "classes suffice), or leave libracam out of --methods"
)


def _reference_batches(context: "MethodContext", batch_size: int = 50) -> Iterator[Any]:
    r"""``(images, labels)`` batches for a reference library: ``library_data`` when
    given, the ground-truth dataset's training split on the embedded default (never the
    evaluated test images), else the benchmark's own images; images of a folder are
    labelled with the model's predictions."""
    if context.library_data is None and isinstance(context.data, EmbeddedData):
        dataset_class = type(context.data.dataset)
        train = dataset_class(LIBRARY_IMAGES, split="train", seed=context.seed)
        for start in range(0, len(train), batch_size):
            items = [train[i] for i in range(start, min(start + batch_size, len(train)))]
            yield (
                torch.stack([item[0] for item in items]).to(context.device),
                torch.tensor([int(item[1]) for item in items], dtype=torch.long),
            )
        return
    data = context.library_data if context.library_data is not None else context.data
    if data is None:
        raise InputError(LIBRARY_NEEDED)
    for start in range(0, min(len(data), LIBRARY_IMAGES), batch_size):
        images = data.load(range(start, min(start + batch_size, len(data), LIBRARY_IMAGES)))[0]
        images = images.to(context.device)
        # not a yield inside no_grad: the consumer's own no_grad would otherwise restore
        # the grad mode this generator disabled, and leave it off for the whole process
        with torch.no_grad():
            labels = context.model(images).argmax(dim=1).cpu()
        yield images, labels


class _LibraCamWithLibrary(LayerLibraCam):
    r"""Libra-CAM that says in one line which class its library cannot serve, and where
    the library came from, instead of failing deep inside."""

    source: str = ""

    def attribute(self, inputs: Any, target: Any = None, *args: Any, **kwargs: Any) -> Any:
        assert self.library is not None
        if isinstance(target, torch.Tensor) and kwargs.get("use_references", True):
            for label in target.flatten().tolist():
                if 0 <= label < len(self.library.class_indices) and (
                    self.library.class_indices[label].numel() == 0
                ):
                    raise InputError(
                        f"Libra-CAM: the reference library ({self.source}) holds no image "
                        f"of low probability (< {self.library.tau:g}) for class {label}: "
                        "pass --library-data with more images of other classes"
                    )
        return super().attribute(inputs, target, *args, **kwargs)


def libra_cam_with_library(context: "MethodContext") -> Attribution:
    r"""
    Libra-CAM with a reference library built for the benchmark's model and layer.

    The library (R = 30; τ = 1e-4 as in the paper, or ``data.reference_tau``, 0.02 on
    the main job's embedded model, whose label smoothing keeps every probability above
    about 0.0125) comes from the first :data:`LIBRARY_IMAGES` images of, in order:
    ``context.library_data`` (``--library-data``); the ground-truth dataset's training
    split on the embedded default; ``context.data`` (``--data``), labelled with the
    model's predictions. Without any of them (``explain`` on a model of its own) it is
    refused with :data:`LIBRARY_NEEDED`, never built from another task's images. A
    target class the library holds no reference for is refused in one line when
    attributing.

    Args:
        context (MethodContext): the model, layer, data, device and seed.

    Returns:
        *LayerLibraCam*: ready to attribute.

    Raises:
        InputError: no source of references, or none of its images qualifies as a
        reference for any class.

    Examples::

        >>> METHODS["libracam"] = MethodSpec("Libra-CAM", libra_cam_with_library)
    """
    batches = _reference_batches(context)
    first = next(batches)
    with torch.no_grad():
        num_classes = int(context.model(first[0][:1]).shape[1])
    source_data = context.library_data if context.library_data is not None else context.data
    tau = getattr(source_data, "reference_tau", 1e-4)
    try:
        library = ReferenceLibrary.build(
            context.model,
            context.layer,
            itertools.chain([first], batches),
            num_classes=num_classes,
            tau=tau,
            progress=False,
        )
    except ValueError as error:
        if "no input qualified" not in str(error):
            raise
        raise InputError(
            f"Libra-CAM: no image of its library source qualified as a reference (softmax "
            f"below {tau:g} for some class): pass --library-data with images of other classes"
        ) from None
    attribution = _LibraCamWithLibrary(context.model, context.layer, library=library)
    if isinstance(source_data, EmbeddedData) and context.library_data is None:
        attribution.source = f"{LIBRARY_IMAGES} training images of the embedded task"
    else:
        assert source_data is not None  # _reference_batches refused a missing source
        what = "--library-data" if context.library_data is not None else "--data"
        attribution.source = f"the first {min(len(source_data), LIBRARY_IMAGES)} images of {what}"
    return attribution


class MethodContext(NamedTuple):
    r"""
    What a method's factory gets.

    Attributes:
        model (nn.Module): the model, on the benchmark's device, in eval mode.
        layer (nn.Module): the CAM layer.
        data (BenchmarkData or None): the benchmark's images (e.g. to build a
                    reference library); for ``explain``, the embedded task's data
                    on the embedded models, else None.
        device (torch.device): where the model lives.
        seed (int): the run's seed.
        library_data (BenchmarkData or None): images to build Libra-CAM's reference
                    library from (``--library-data``); None: from ``data``.

    Examples::

        >>> context = MethodContext(model, model.layer4, data, torch.device("cpu"), seed=0)
        >>> cam = METHODS["gradcam"].build(context)
    """

    model: nn.Module
    layer: nn.Module
    data: Optional[BenchmarkData]
    device: torch.device
    seed: int
    library_data: Optional[BenchmarkData] = None


@dataclass(frozen=True)
class MethodSpec:
    r"""
    One method of the benchmark.

    Args:
        title (str): the name in tables and figures.
        build (Callable[[MethodContext], Attribution]): makes the attribution.
        paper (str, optional): the paper's link. Default: ``""``.
        attribute_kwargs (dict, optional): extra ``attribute`` arguments.
                    Default: none.
        seeded (bool, optional): pass ``seed=`` (the run's seed plus the batch
                    index) to ``attribute``, for sampling methods. Default: False.
        many_passes (bool, optional): one ``attribute`` call runs many forward
                    passes per image (Score-CAM, Ablation-CAM, ...): ``explain``
                    then attributes image by image so its progress bar moves.
                    Default: False.
        in_default_set (bool, optional): run when no method is named (the main
                    job's set, :data:`DEFAULT_METHODS`); the others run when named.
                    Default: True.

    Examples::

        >>> METHODS["gradcam"] = MethodSpec("Grad-CAM", on_layer(LayerGradCam))
    """

    title: str
    build: Callable[[MethodContext], Attribution]
    paper: str = ""
    attribute_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = False
    many_passes: bool = False
    in_default_set: bool = True


def on_layer(cls: Callable[[nn.Module, nn.Module], Attribution]) -> Callable[[MethodContext], Any]:
    r"""
    A factory for a Captum-style layer attribution class ``cls(model, layer)``.

    Args:
        cls (type): e.g. :class:`~captum_cams.attr.LayerGradCam`.

    Returns:
        *Callable[[MethodContext], Attribution]*: builds ``cls(context.model, context.layer)``.

    Examples::

        >>> MethodSpec("Layer-CAM", on_layer(LayerCam))
    """
    return lambda context: cls(context.model, context.layer)


#: The methods the benchmark and ``explain`` know, by command-line name.
METHODS: Dict[str, MethodSpec] = {
    # LayerGradCam has Captum's default relu_attributions=False; Grad-CAM's map is ReLU'd
    "gradcam": MethodSpec(
        "Grad-CAM",
        on_layer(LayerGradCam),
        "https://arxiv.org/abs/1610.02391",
        attribute_kwargs={"relu_attributions": True},
    ),
    "gradcam++": MethodSpec(
        "Grad-CAM++", on_layer(LayerGradCamPlusPlus), "https://arxiv.org/abs/1710.11063"
    ),
    "xgradcam": MethodSpec(
        "XGrad-CAM", on_layer(LayerXGradCam), "https://arxiv.org/abs/2008.02312"
    ),
    "layercam": MethodSpec(
        "Layer-CAM", on_layer(LayerCam), "https://doi.org/10.1109/TIP.2021.3089943"
    ),
    "ablationcam": MethodSpec(
        "Ablation-CAM",
        on_layer(LayerAblationCam),
        "https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_"
        "Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_"
        "paper.html",
        many_passes=True,
    ),
    "scorecam": MethodSpec(
        "Score-CAM", on_layer(LayerScoreCam), "https://arxiv.org/abs/1910.01279", many_passes=True
    ),
    "liftcam": MethodSpec("LIFT-CAM", on_layer(LayerLiftCam), "https://arxiv.org/abs/2102.05228"),
    "shapcam": MethodSpec(
        "SHAP-CAM",
        on_layer(LayerShapCam),
        "https://arxiv.org/abs/2102.05228",
        seeded=True,
        many_passes=True,
    ),
    "igcam": MethodSpec(
        "Integrated Grad-CAM",
        on_layer(LayerIntegratedGradCam),
        "https://arxiv.org/abs/2102.07805",
        many_passes=True,
    ),
    "tft": MethodSpec(
        "Grad-CAM + TFT",
        lambda c: ThresholdFineTuned(LayerGradCam(c.model, c.layer)),
        "https://doi.org/10.3390/app122412961",
        attribute_kwargs={"relu_attributions": True},
        many_passes=True,
    ),
    "libracam": MethodSpec(
        "Libra-CAM",
        lambda c: libra_cam_with_library(c),
        "https://www.ijcai.org/proceedings/2022/0442",
        many_passes=True,
    ),
    # the peers' methods: outside the main job's default set (its time), run when named
    "hirescam": MethodSpec(
        "HiResCAM", on_layer(LayerHiResCam), "https://arxiv.org/abs/2011.08891",
        in_default_set=False,
    ),
    "gradcamelementwise": MethodSpec(
        "Grad-CAM element-wise", on_layer(LayerGradCamElementWise),
        "https://github.com/jacobgil/pytorch-grad-cam", in_default_set=False,
    ),
    "eigencam": MethodSpec(
        "Eigen-CAM", on_layer(LayerEigenCam), "https://arxiv.org/abs/2008.00299",
        in_default_set=False,
    ),
    "eigengradcam": MethodSpec(
        "Eigen-Grad-CAM", on_layer(LayerEigenGradCam), "https://arxiv.org/abs/2008.00299",
        in_default_set=False,
    ),
    "sscam": MethodSpec(
        "SS-CAM", on_layer(LayerSSCam), "https://arxiv.org/abs/2006.14255",
        seeded=True, many_passes=True, in_default_set=False,
    ),
    "iscam": MethodSpec(
        "IS-CAM", on_layer(LayerISCam), "https://arxiv.org/abs/2010.03023",
        many_passes=True, in_default_set=False,
    ),
    "smoothgradcam++": MethodSpec(
        "Smooth Grad-CAM++", on_layer(LayerSmoothGradCamPlusPlus),
        "https://arxiv.org/abs/1908.01224", seeded=True, in_default_set=False,
    ),
    "relevancecam": MethodSpec(
        "Relevance-CAM", on_layer(LayerRelevanceCam),
        "https://openaccess.thecvf.com/content/CVPR2021/html/Lee_Relevance-CAM_Your_Model_"
        "Already_Knows_Where_To_Look_CVPR_2021_paper.html",
        in_default_set=False,
    ),
}  # fmt: skip

#: The methods run when none is named: the main job's set, within its time.
DEFAULT_METHODS: List[str] = [name for name, spec in METHODS.items() if spec.in_default_set]


def parse_names(text: Optional[str], known: Mapping[str, Any], option: str) -> List[str]:
    r"""
    A comma-separated list of registry names, checked.

    Args:
        text (str, optional): e.g. ``"gradcam,scorecam"``; None: the registry's default
                    set (the names whose spec has ``in_default_set``; every name for
                    a registry without that flag); ``"all"``: every name.
        known (dict): the registry.
        option (str): the option's name for the error, e.g. ``"--methods"``.

    Returns:
        *list[str]*: the names, in the order given, without repeats.

    Raises:
        InputError: an unknown or empty list.

    Examples::

        >>> parse_names("gradcam, scorecam", METHODS, "--methods")
        ['gradcam', 'scorecam']
    """
    if text is None:
        return [name for name, spec in known.items() if getattr(spec, "in_default_set", True)]
    if text.strip().lower() == "all":
        return list(known)
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = "unknown " + ", ".join(unknown) if unknown else "none given"
        raise InputError(f"{option}: {what}; choose from {', '.join(known)}")
    return names
