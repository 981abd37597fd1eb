#!/usr/bin/env python3
"""captum_cams: class-activation-map attribution methods and metrics for Captum.

The public API is re-exported flat, like ``captum.attr``::

    from captum_cams import LayerGradCamPlusPlus, LayerScoreCam

How many modified copies go through the model per pass, when a method or metric is
called with ``internal_batch_size=None`` / ``max_examples_per_batch=None`` (the
default), follows the pass budget: :func:`pass_budget`, :func:`set_pass_budget`,
:func:`get_pass_budget` (see ``docs/speed.md``).
"""

from captum_cams._utils.batching import get_pass_budget, pass_budget, set_pass_budget
from captum_cams.attr import (
    CamLayer,
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
    MultiLayerCam,
    OutputAdapter,
    ReferenceLibrary,
    find_cam_layer,
    fuse_maps,
    swin_reshape_transform,
    vit_reshape_transform,
)
from captum_cams.calm import CALM, CALMAttribution
from captum_cams.tuning import (
    ActivationFineTuner,
    TFTMasks,
    TFTResult,
    ThresholdFineTuned,
    TunerNetwork,
    generate_tft_masks,
    reference_filtering,
    threshold_calibration,
    threshold_fine_tuning,
)

__version__ = "0.1.0"

__all__ = [
    "ActivationFineTuner",
    "CALM",
    "CALMAttribution",
    "CamLayer",
    "LayerAblationCam",
    "LayerCam",
    "LayerEigenCam",
    "LayerEigenGradCam",
    "LayerGradCam",
    "LayerGradCamElementWise",
    "LayerGradCamPlusPlus",
    "LayerHiResCam",
    "LayerISCam",
    "LayerIntegratedGradCam",
    "LayerLibraCam",
    "LayerLiftCam",
    "LayerRelevanceCam",
    "LayerScoreCam",
    "LayerSSCam",
    "LayerShapCam",
    "LayerSmoothGradCamPlusPlus",
    "LayerXGradCam",
    "OutputAdapter",
    "MultiLayerCam",
    "ReferenceLibrary",
    "TFTMasks",
    "TFTResult",
    "ThresholdFineTuned",
    "TunerNetwork",
    "fuse_maps",
    "generate_tft_masks",
    "get_pass_budget",
    "pass_budget",
    "reference_filtering",
    "set_pass_budget",
    "threshold_calibration",
    "threshold_fine_tuning",
    "find_cam_layer",
    "swin_reshape_transform",
    "vit_reshape_transform",
]
