#!/usr/bin/env python3
"""Data: the shared CIFAR-10 folder, the project's ground-truth dataset, VOC boxes."""

from captum_cams.datasets.cifar10 import (  # noqa: F401
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    cifar10_root,
    cifar10_test_set,
    cifar10_train_set,
    cifar10_transform,
    find_cifar10_root,
)
from captum_cams.datasets.cluttered import (  # noqa: F401
    CLUTTERED_CLASS_PARTS,
    CLUTTERED_CLASSES,
    REGION_NAMES,
    ClutteredShapes,
)
from captum_cams.datasets.ground_truth import (  # noqa: F401
    CLASS_PARTS,
    CLASSES,
    NUM_CLASSES,
    NUM_PARTS,
    PART_NAMES,
    GroundTruthBatch,
    GroundTruthShapes,
    class_parts,
    counterfactual_mask,
    counterfactual_pairs,
    make_batch,
)
from captum_cams.datasets.voc import (  # noqa: F401
    read_voc_boxes,
    read_voc_size,
    voc_boxes_to_tensor,
    voc_ground_truth_mask,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "cifar10_root",
    "cifar10_test_set",
    "cifar10_train_set",
    "cifar10_transform",
    "find_cifar10_root",
    "read_voc_boxes",
    "read_voc_size",
    "voc_boxes_to_tensor",
    "voc_ground_truth_mask",
    "CLUTTERED_CLASS_PARTS",
    "CLUTTERED_CLASSES",
    "ClutteredShapes",
    "REGION_NAMES",
    "CLASS_PARTS",
    "CLASSES",
    "GroundTruthBatch",
    "GroundTruthShapes",
    "NUM_CLASSES",
    "NUM_PARTS",
    "PART_NAMES",
    "class_parts",
    "counterfactual_mask",
    "counterfactual_pairs",
    "make_batch",
]
