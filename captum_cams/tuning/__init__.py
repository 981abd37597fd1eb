#!/usr/bin/env python3
"""Fine-tuning of class-activation maps: threshold fine-tuning (TFT)."""

from captum_cams.tuning.threshold_fine_tuning import (
    DEFAULT_TFT_THRESHOLDS,
    TFTResult,
    ThresholdFineTuned,
    threshold_fine_tuning,
)

__all__ = [
    "DEFAULT_TFT_THRESHOLDS",
    "TFTResult",
    "ThresholdFineTuned",
    "threshold_fine_tuning",
]
