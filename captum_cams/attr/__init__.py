#!/usr/bin/env python3
"""Class-activation-map attributions, each a Captum ``LayerAttribution``."""

from captum_cams.attr._adapters import OutputAdapter
from captum_cams.attr._base import CamBase, CamContext
from captum_cams.attr._head import LayerHead, split_head
from captum_cams.attr._layers import CamLayer, find_cam_layer
from captum_cams.attr._reshape import swin_reshape_transform, vit_reshape_transform
from captum_cams.attr.ablation_cam import LayerAblationCam
from captum_cams.attr.eigen_cam import LayerEigenCam
from captum_cams.attr.eigen_grad_cam import LayerEigenGradCam
from captum_cams.attr.grad_cam import LayerGradCam
from captum_cams.attr.grad_cam_element_wise import LayerGradCamElementWise
from captum_cams.attr.grad_cam_plus_plus import LayerGradCamPlusPlus
from captum_cams.attr.hires_cam import LayerHiResCam
from captum_cams.attr.integrated_grad_cam import LayerIntegratedGradCam
from captum_cams.attr.is_cam import LayerISCam
from captum_cams.attr.layer_cam import LayerCam
from captum_cams.attr.libra_cam import LayerLibraCam, LibraCamDetails
from captum_cams.attr.lift_cam import LayerLiftCam
from captum_cams.attr.multi_layer import MultiLayerCam, fuse_maps
from captum_cams.attr.reference_library import ReferenceLibrary
from captum_cams.attr.relevance_cam import LayerRelevanceCam
from captum_cams.attr.score_cam import LayerScoreCam
from captum_cams.attr.shap_cam import LayerShapCam
from captum_cams.attr.smooth_grad_cam_plus_plus import LayerSmoothGradCamPlusPlus
from captum_cams.attr.ss_cam import LayerSSCam
from captum_cams.attr.xgrad_cam import LayerXGradCam

__all__ = [
    "CamBase",
    "CamLayer",
    "CamContext",
    "LayerAblationCam",
    "LayerCam",
    "LayerEigenCam",
    "LayerEigenGradCam",
    "LayerGradCam",
    "LayerGradCamElementWise",
    "LayerGradCamPlusPlus",
    "LayerHead",
    "LayerHiResCam",
    "LayerISCam",
    "LayerIntegratedGradCam",
    "LayerLibraCam",
    "LayerLiftCam",
    "LayerScoreCam",
    "LayerRelevanceCam",
    "LayerSSCam",
    "LayerShapCam",
    "LayerSmoothGradCamPlusPlus",
    "LayerXGradCam",
    "LibraCamDetails",
    "OutputAdapter",
    "ReferenceLibrary",
    "find_cam_layer",
    "MultiLayerCam",
    "fuse_maps",
    "split_head",
    "swin_reshape_transform",
    "vit_reshape_transform",
]
