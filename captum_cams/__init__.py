#!/usr/bin/env python3
"""captum_cams: class-activation-map attribution methods and metrics for Captum.

The public API is re-exported flat, like ``captum.attr``::

    from captum_cams import LayerGradCamPlusPlus, LayerScoreCam
"""

from captum_cams.attr import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerShapCam,
    LayerXGradCam,
)
from captum_cams.tuning import (
    ActivationFineTuner,
    TFTMasks,
    TFTResult,
    ThresholdFineTuned,
    TunerNetwork,
    generate_tft_masks,
    threshold_fine_tuning,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationFineTuner",
    "LayerAblationCam",
    "LayerCam",
    "LayerGradCam",
    "LayerGradCamPlusPlus",
    "LayerIntegratedGradCam",
    "LayerLiftCam",
    "LayerScoreCam",
    "LayerShapCam",
    "LayerXGradCam",
    "TFTMasks",
    "TFTResult",
    "ThresholdFineTuned",
    "TunerNetwork",
    "generate_tft_masks",
    "threshold_fine_tuning",
]
