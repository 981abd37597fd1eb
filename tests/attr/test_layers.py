#!/usr/bin/env python3
"""find_cam_layer: the last spatial map the target depends on at two positions or
more — ResNet's layer4, a ViT's last norm1 (pytorch-grad-cam's choice, where the
class token's head makes the later tokens blank), the last block with average
pooling, Swin's channels-last norm, a Hugging Face ResNet through the adapter."""

import warnings

import pytest
import torch
import torch.nn as nn

import captum_cams as cc

timm = pytest.importorskip("timm")

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _vit(**options: object) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, depth=2, embed_dim=16, num_heads=2, num_classes=10, **options
    ).eval()


def _found_maps_are_not_blank(model: nn.Module, found: cc.CamLayer) -> None:
    cam = cc.LayerGradCam(model, found.layer, reshape_transform=found.reshape_transform)
    maps = cam.attribute(X, relu_attributions=False)
    assert maps.shape[:2] == (2, 1) and maps.shape[2] * maps.shape[3] > 1
    assert bool((maps.flatten(1).abs().amax(dim=1) > 0).all())


def test_resnet_layer4_with_nothing_to_reshape() -> None:
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    found = cc.find_cam_layer(resnet, torch.randn(1, 3, 64, 64))
    assert found.name == "layer4" and found.layer is resnet.layer4
    assert found.reshape_transform is None and found.shape == (1, 512, 2, 2)
    assert all(p.grad is None and p.requires_grad for p in resnet.parameters())
    assert all(not m._forward_hooks for m in resnet.modules())


def test_vit_with_a_class_token_head_gets_the_last_norm1() -> None:
    vit = _vit()
    found = cc.find_cam_layer(vit, X)
    # the last block's output and the final norm reach the head through the class
    # token only: their patch tokens would give blank maps
    assert found.name == "blocks.1.norm1" and found.shape == (2, 17, 16)
    assert found.reshape_transform.keywords == {"num_prefix_tokens": 1, "grid_size": (4, 4)}
    _found_maps_are_not_blank(vit, found)
    blank = cc.LayerGradCam(vit, vit.norm, reshape_transform=cc.vit_reshape_transform)
    assert not blank.attribute(X, target=1).any()  # what the gradient test avoids


def test_vit_with_average_pooling_and_register_tokens_gets_its_last_block() -> None:
    vit = _vit(global_pool="avg", reg_tokens=2)
    found = cc.find_cam_layer(vit, X)
    assert found.name == "blocks" and found.shape == (2, 19, 16)  # CLS + 2 registers + 16
    assert found.reshape_transform.keywords == {"num_prefix_tokens": 3, "grid_size": (4, 4)}
    _found_maps_are_not_blank(vit, found)


def test_swin_gets_its_channels_last_norm_with_the_swin_transform() -> None:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(
        img_size=32, patch_size=4, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
        window_size=4, num_classes=5,
    ).eval()  # fmt: skip
    found = cc.find_cam_layer(swin, X)
    assert found.name == "norm" and found.shape == (2, 4, 4, 16)
    assert found.reshape_transform is cc.swin_reshape_transform
    _found_maps_are_not_blank(swin, found)
    assert cc.find_cam_layer(swin, X, allow_reshape=False).reshape_transform is None


def test_hugging_face_resnet_through_the_adapter() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10
    )
    hf = transformers.ResNetForImageClassification(config).eval()
    model = cc.OutputAdapter(hf)
    found = cc.find_cam_layer(model, X)
    assert found.name == "model.resnet.encoder.stages.1"
    assert found.layer is hf.resnet.encoder.stages[1] and found.reshape_transform is None
    with pytest.raises(TypeError, match="OutputAdapter"):
        cc.find_cam_layer(hf, X)


def test_a_model_whose_output_ignores_its_input_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    nn.init.zeros_(model[-1].weight)
    with pytest.raises(ValueError, match="name the layer yourself"):
        cc.find_cam_layer(model, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.init.ones_(model[-1].weight)
        assert cc.find_cam_layer(model, X).name == "1"  # the ReLU, which finishes last
