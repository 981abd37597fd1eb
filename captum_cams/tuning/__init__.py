#!/usr/bin/env python3
"""Fine-tuning of class-activation maps: threshold fine-tuning (TFT), activation
fine-tuning (AFT: TFT masks of a training set, a tuner network and its trainer), and
Libra-CAM's reference filtering and threshold calibration for any method's maps."""

from captum_cams.tuning.activation_fine_tuning import ActivationFineTuner, TunerNetwork
from captum_cams.tuning.reference_filtering import FilteringResult, reference_filtering
from captum_cams.tuning.tft_masks import TFTMasks, generate_tft_masks
from captum_cams.tuning.threshold_calibration import (
    DEFAULT_CALIBRATION_THRESHOLDS,
    CalibrationResult,
    threshold_calibration,
)
from captum_cams.tuning.threshold_fine_tuning import (
    DEFAULT_TFT_THRESHOLDS,
    TFTResult,
    ThresholdFineTuned,
    threshold_fine_tuning,
)

__all__ = [
    "ActivationFineTuner",
    "CalibrationResult",
    "DEFAULT_CALIBRATION_THRESHOLDS",
    "FilteringResult",
    "reference_filtering",
    "threshold_calibration",
    "DEFAULT_TFT_THRESHOLDS",
    "TFTMasks",
    "TFTResult",
    "ThresholdFineTuned",
    "TunerNetwork",
    "generate_tft_masks",
    "threshold_fine_tuning",
]
