#!/usr/bin/env python3
"""OutputAdapter: one tensor out of any output; a Hugging Face ResNet through it works
with every method, and Ablation-CAM evaluates only its head; a plain function warns;
ReferenceLibrary.build takes any forward_func and names the real problem."""

import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

import pytest
import torch
import torch.nn as nn
from torch import Tensor

import captum_cams as cc

transformers = pytest.importorskip("transformers")


def _hf_resnet(num_labels: int = 10) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=num_labels
    )
    return transformers.ResNetForImageClassification(config).eval()


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


class Returns(nn.Module):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> Any:
        return self.value


def test_adapter_picks_logits_first_tensor_key_index_or_function() -> None:
    a, b = torch.ones(1, 2), torch.zeros(1, 3)
    hf_like = transformers.modeling_outputs.ImageClassifierOutputWithNoAttention(logits=b)
    assert cc.OutputAdapter(Returns(hf_like))(X) is b
    assert cc.OutputAdapter(Returns(OrderedDict(out=a, aux=b)))(X) is a
    assert cc.OutputAdapter(Returns({"aux": a, "logits": b}))(X) is b
    assert cc.OutputAdapter(Returns((None, a, b)))(X) is a
    assert cc.OutputAdapter(Returns((a, b)), select=1)(X) is b
    assert cc.OutputAdapter(Returns({"out": a, "aux": b}), select="aux")(X) is b
    assert cc.OutputAdapter(Returns(hf_like), select="logits")(X) is b
    assert torch.equal(cc.OutputAdapter(Returns((a, b)), select=lambda o: o[0] * 2)(X), 2 * a)
    assert cc.OutputAdapter(Returns(a))(X) is a
    with pytest.raises(TypeError, match="holds no tensor.*select="):
        cc.OutputAdapter(Returns((None, "text")))(X)
    with pytest.raises(TypeError, match="select='pooled'.*no such key"):
        cc.OutputAdapter(Returns({"out": a}), select="pooled")(X)
    with pytest.raises(TypeError, match="select=.*not a tensor"):
        cc.OutputAdapter(Returns({"out": a}), select=lambda o: o.keys())(X)
    with pytest.raises(TypeError, match="select must be"):
        cc.OutputAdapter(Returns(a), select=1.5)  # type: ignore[arg-type]


def test_a_model_output_that_is_not_a_tensor_names_the_adapter() -> None:
    hf = _hf_resnet()
    layer = hf.resnet.encoder.stages[-1]
    with pytest.raises(TypeError, match=r"ImageClassifierOutputWithNoAttention.*OutputAdapter"):
        cc.LayerGradCam(hf, layer).attribute(X, target=1)
    loader = [(X, torch.tensor([0, 1]))]
    with pytest.raises(TypeError, match=r"ImageClassifierOutputWithNoAttention.*OutputAdapter"):
        cc.ReferenceLibrary.build(hf, layer, loader, 10, tau=0.5, progress=False)


def _methods(hf: nn.Module, forward_func: Any) -> Dict[str, Tuple[Any, Dict[str, Any]]]:
    layer = hf.resnet.encoder.stages[-1]
    library = cc.ReferenceLibrary.build(
        forward_func, layer, [(X, torch.tensor([0, 1]))], 10, tau=0.5, progress=False
    )
    return {
        "Grad-CAM": (cc.LayerGradCam(forward_func, layer), {"relu_attributions": True}),
        "Grad-CAM++": (cc.LayerGradCamPlusPlus(forward_func, layer), {}),
        "XGrad-CAM": (cc.LayerXGradCam(forward_func, layer), {}),
        "Layer-CAM": (cc.LayerCam(forward_func, layer), {}),
        "Score-CAM": (cc.LayerScoreCam(forward_func, layer), {}),
        "Ablation-CAM": (cc.LayerAblationCam(forward_func, layer), {}),
        "LIFT-CAM": (cc.LayerLiftCam(forward_func, layer), {}),
        "SHAP-CAM": (cc.LayerShapCam(forward_func, layer), {"num_permutations": 2}),
        "IG-CAM": (cc.LayerIntegratedGradCam(forward_func, layer), {"n_steps": 3}),
        "Libra-CAM": (cc.LayerLibraCam(forward_func, layer, library=library), {}),
    }


def test_every_method_works_on_a_hugging_face_resnet_through_the_adapter() -> None:
    hf = _hf_resnet()
    model = cc.OutputAdapter(hf)
    with torch.no_grad():
        target = model(X).argmax(dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no whole-model fallback, nothing saturated
        for name, (cam, options) in _methods(hf, model).items():
            maps = cam.attribute(X, target=target, **options)
            size = X.shape[-2:] if name == "Libra-CAM" else (4, 4)
            assert maps.shape == (2, 1, *size), name
            assert torch.isfinite(maps).all() and (maps.flatten(1).amax(1) > 0).all(), name
    assert all(p.grad is None and p.requires_grad for p in hf.parameters())
    assert not any(m.training for m in hf.modules())


class CallCounter:
    def __init__(self, module: nn.Module) -> None:
        self.rows: List[int] = []
        module.register_forward_hook(lambda _m, inputs, _o: self.rows.append(len(inputs[0])))


def test_ablation_cam_costs_head_passes_only_through_the_adapter() -> None:
    hf = _hf_resnet()
    layer = hf.resnet.encoder.stages[-1]
    stem, classifier = CallCounter(hf.resnet.embedder), CallCounter(hf.classifier)
    cam = cc.LayerAblationCam(cc.OutputAdapter(hf), layer)
    assert cam.head.source == "fx"
    maps = cam.attribute(X, target=[3, 5], internal_batch_size=8)
    channels = 16
    assert stem.rows == [2]  # the one capture; no ablation re-runs the network
    # the capture, the head's one check on the 2 examples, then 2 x 16 ablated rows in
    # chunks of 8
    assert classifier.rows == [2, 2] + [8] * (2 * channels // 8)
    reference = cc.LayerAblationCam(lambda x: hf(x).logits, layer)
    with pytest.warns(RuntimeWarning, match=r"function.*OutputAdapter.*head="):
        slow = reference.attribute(X, target=[3, 5], internal_batch_size=8)
    torch.testing.assert_close(slow, maps)
    assert stem.rows[1:] == [2] + [8] * (2 * channels // 8)  # whole-model passes


def test_reference_library_takes_a_function_a_module_or_the_adapter() -> None:
    hf = _hf_resnet()
    layer = hf.resnet.encoder.stages[-1]
    loader = [(X, torch.tensor([0, 1])), (X.flip(-1), torch.tensor([1, 0]))]
    libraries = [
        cc.ReferenceLibrary.build(f, layer, loader, 10, tau=0.5, progress=False)
        for f in (cc.OutputAdapter(hf), lambda x: hf(x).logits)
    ]
    assert libraries[0].num_entries > 0
    assert torch.equal(libraries[0].activations, libraries[1].activations)
    assert all(torch.equal(a, b) for a, b in zip(*(lib.class_indices for lib in libraries)))
    with pytest.raises(ValueError, match=r"num_classes is 7 but the model returns 10"):
        cc.ReferenceLibrary.build(cc.OutputAdapter(hf), layer, loader, 7, progress=False)
    with pytest.raises(ValueError, match=r"N x num_classes logits; got shape \(2, 16, 4, 4\)"):
        cc.ReferenceLibrary.build(
            cc.OutputAdapter(hf.resnet, select="last_hidden_state"), layer, loader, 10,
            progress=False,
        )  # fmt: skip


def test_libra_cam_is_not_blank_on_a_class_of_probability_1e_9() -> None:
    hf = _hf_resnet()
    model = cc.OutputAdapter(hf)
    with torch.no_grad():
        hf.classifier[1].weight.mul_(14.0)  # logit gaps of ~20: p of the least class < 1e-8
        probabilities = model(X).softmax(dim=1)
    target = probabilities.argmin(dim=1)
    p = probabilities.gather(1, target[:, None]).squeeze(1)
    assert bool((p < 1e-8).all()) and bool((p > 1e-14).all()), p
    layer = hf.resnet.encoder.stages[-1]
    cam = cc.LayerLibraCam(model, layer)
    maps, details = cam.attribute(X, target=target, use_references=False, return_details=True)
    # the raw base maps are the size of the probability's gradient: an absolute floor of
    # 1e-7 in the min-max scaling made them (and every calibrated map) blank
    assert float(details.first_order.abs().max()) < 1e-7
    assert bool((maps.flatten(1).amax(dim=1) > 0).all())
    assert bool((details.base_maps.flatten(1).amax(dim=1) > 0.5).all())
