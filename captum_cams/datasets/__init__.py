#!/usr/bin/env python3
from captum_cams.datasets.ground_truth import (  # noqa: F401
    CLASS_PARTS,
    CLASSES,
    GroundTruthBatch,
    GroundTruthShapes,
    NUM_CLASSES,
    NUM_PARTS,
    PART_NAMES,
    class_parts,
    counterfactual_mask,
    counterfactual_pairs,
    make_batch,
)

__all__ = [
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
