#!/usr/bin/env python3
"""CAM evaluation metrics in the style of ``captum.metrics``.

Perturbation metrics take ``(forward_func, inputs, attributions, target,
additional_forward_args, max_examples_per_batch, ...)`` and return one value per
example; localisation metrics take ``(attributions, masks)``. All of them build
their masked inputs with the shared :mod:`captum_cams._utils.masking` module.
"""

from captum_cams._utils.masking import gaussian_blur
from captum_cams.metrics.confidence import (
    ConfidenceScores,
    ThresholdSweep,
    api_apd_auc,
    average_drop,
    average_drop_in_deletion,
    average_probability_increase,
    confidence_scores,
    drop_rate,
    increase_in_confidence,
    relative_probability_increase,
    threshold_sweep,
)
from captum_cams.metrics.insertion_deletion import (
    InsertionDeletionResult,
    deletion_auc,
    insertion_auc,
)
from captum_cams.metrics.localization import (
    BoxAccuracyResult,
    bbox_score,
    box_accuracy,
    boxes_to_masks,
    energy_pointing_game,
    mean_pixel_average_precision,
    pixel_average_precision,
    pointing_game,
)
from captum_cams.metrics.reliance import (
    ignored_region_mass,
    intervention_reliance,
    reliance_rank_correlation,
)
from captum_cams.metrics.remove_and_classify import (
    RemoveAndClassifyResult,
    remove_and_classify,
)
from captum_cams.metrics.remove_and_debias import ROADResult, noisy_linear_imputation, road
from captum_cams.metrics.sanity import (
    CascadingRandomizationResult,
    cascading_randomization,
    coefficient_cosine_similarity,
    spearman_correlation,
)

__all__ = [
    "intervention_reliance",
    "reliance_rank_correlation",
    "ignored_region_mass",
    "confidence_scores",
    "ConfidenceScores",
    "average_drop",
    "increase_in_confidence",
    "average_probability_increase",
    "drop_rate",
    "average_drop_in_deletion",
    "relative_probability_increase",
    "threshold_sweep",
    "ThresholdSweep",
    "api_apd_auc",
    "insertion_auc",
    "deletion_auc",
    "InsertionDeletionResult",
    "energy_pointing_game",
    "bbox_score",
    "pointing_game",
    "pixel_average_precision",
    "mean_pixel_average_precision",
    "boxes_to_masks",
    "box_accuracy",
    "BoxAccuracyResult",
    "remove_and_classify",
    "RemoveAndClassifyResult",
    "cascading_randomization",
    "CascadingRandomizationResult",
    "coefficient_cosine_similarity",
    "spearman_correlation",
    "gaussian_blur",
    "road",
    "ROADResult",
    "noisy_linear_imputation",
]
