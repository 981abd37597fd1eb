#!/usr/bin/env python3
from captum_cams.kit.models.cifar_resnet import (  # noqa: F401
    CifarResNet,
    load_cifar_resnet,
    resnet20,
    resnet56,
)
from captum_cams.kit.models.embedded import (  # noqa: F401
    EMBEDDED_CLUTTERED_CHECKPOINT,
    EMBEDDED_DEFAULT_CHECKPOINT,
    ShapesNet,
    embedded_default_layer,
    load_embedded_cluttered,
    load_embedded_default,
)
from captum_cams.kit.models.mobilenet_v1 import (  # noqa: F401
    MobileNetV1,
    mobilenet_v1_075_192,
)

__all__ = [
    "CifarResNet",
    "EMBEDDED_CLUTTERED_CHECKPOINT",
    "EMBEDDED_DEFAULT_CHECKPOINT",
    "ShapesNet",
    "embedded_default_layer",
    "load_cifar_resnet",
    "load_embedded_cluttered",
    "load_embedded_default",
    "MobileNetV1",
    "mobilenet_v1_075_192",
    "resnet20",
    "resnet56",
]
