#!/usr/bin/env python3
"""CALM (Kim et al., ICCV 2021): the probabilistic head, its losses, training and attributions."""

from captum_cams.calm.attribution import ATTRIBUTION_TYPES, CALMAttribution
from captum_cams.calm.head import CALM, CALMOutput, log_saliency_from_attention
from captum_cams.calm.losses import calm_em_loss, calm_ml_loss
from captum_cams.calm.training import (
    load_training_checkpoint,
    make_optimizer,
    save_training_checkpoint,
    train_calm,
)

__all__ = [
    "ATTRIBUTION_TYPES",
    "CALM",
    "CALMAttribution",
    "CALMOutput",
    "calm_em_loss",
    "calm_ml_loss",
    "load_training_checkpoint",
    "log_saliency_from_attention",
    "make_optimizer",
    "save_training_checkpoint",
    "train_calm",
]
