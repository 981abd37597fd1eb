#!/usr/bin/env python3
r"""Relevance-CAM's conservation on every architecture of ``architectures.py``.

For each network (random weights from ``torch.manual_seed(0)``, eval, float32, the
registry's layer and input size, 2 random images, the first image's predicted class for
both), the largest relative gap ``|sum_k w_k - (y_c - b_c)| / |y_c|`` over the two
images, where ``w`` are Relevance-CAM's channel weights, ``y_c`` the target logit and
``b_c`` the output layer's bias (0 when the last rule site is not a linear layer). Where
every rule is exact the gap is rounding; Captum's stabiliser (1e-9 in every
denominator) makes it large where the logits themselves are tiny.

Run ``PYTHONPATH=. python benchmarks/relevance_conservation.py``.
"""

import importlib.util
import warnings
from pathlib import Path

import torch

from captum_cams import LayerRelevanceCam


def main() -> None:
    path = Path(__file__).resolve().parent / "architectures.py"
    spec = importlib.util.spec_from_file_location("architectures", path)
    assert spec is not None and spec.loader is not None
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    torch.set_num_threads(1)
    for arch in registry.ARCHITECTURES + registry._timm_architectures():
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's init_weights notices
            model = arch.build().eval()
        layer = model.get_submodule(arch.layer)
        x = torch.randn(2, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(1))
        try:
            cam = LayerRelevanceCam(model, layer)
        except ValueError as error:
            print(f"{arch.name:34s} refused: {str(error)[:90]}")
            continue
        with torch.no_grad():
            outputs = model(x)
        target = outputs[:1].argmax(dim=1).expand(2)
        _, weights = cam.attribute(x, target, return_weights=True)
        site = cam.relevance_head.output_site
        logits = outputs[torch.arange(2), target]
        bias = torch.zeros(2)
        if isinstance(site, torch.nn.Linear) and site.bias is not None:
            bias = site.bias.detach()[target]
        gap = ((weights.sum(dim=1) - (logits - bias)).abs() / logits.abs()).max()
        print(
            f"{arch.name:34s} output {type(site).__name__:7s} |logit| ~ "
            f"{float(logits.abs().mean()):.1e}  gap {float(gap):.1e}"
        )


if __name__ == "__main__":
    main()
