#!/usr/bin/env python3
"""The methods with their own chunked evaluation loops (TFT and its sweep, Libra-CAM's
filtering and calibration, Integrated Grad-CAM, Score-CAM, Ablation-CAM) give on a
CUDA device the maps they give on the CPU, on the tuning tests' small float64 CNN.
Skipped without a GPU."""

from typing import Callable, Dict

import pytest
import torch
from torch import Tensor, nn

from captum_cams import (
    LayerAblationCam,
    LayerGradCam,
    LayerIntegratedGradCam,
    LayerLibraCam,
    LayerScoreCam,
    ReferenceLibrary,
    ThresholdFineTuned,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _library(model: nn.Module) -> ReferenceLibrary:
    with torch.no_grad():
        noise = torch.randn(
            4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        activations = model[:4](noise)
    return ReferenceLibrary(activations, [torch.arange(4)] * 5, tau=1.0, max_per_class=4)


RUNS: Dict[str, Callable[[nn.Module, Tensor], Tensor]] = {
    "tft": lambda m, x: ThresholdFineTuned(LayerGradCam(m, m[2])).attribute(
        x, target=[0, 1, 2], max_examples_per_batch=7
    ),
    "integrated-grad-cam": lambda m, x: LayerIntegratedGradCam(m, m[2]).attribute(
        x, target=[0, 1, 2], n_steps=5, internal_batch_size=4
    ),
    "score-cam": lambda m, x: LayerScoreCam(m, m[2]).attribute(
        x, target=[0, 1, 2], internal_batch_size=5
    ),
    "ablation-cam": lambda m, x: LayerAblationCam(m, m[2]).attribute(
        x, target=[0, 1, 2], internal_batch_size=5
    ),
    "libra-cam": lambda m, x: LayerLibraCam(m, m[3], library=_library(m)).attribute(
        x, target=[0, 1, 2], internal_batch_size=5
    ),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_cuda_equals_cpu(name: str, small_cnn: Callable[[], nn.Module]) -> None:
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    on_cpu = RUNS[name](small_cnn(), x)
    on_gpu = RUNS[name](small_cnn().cuda(), x.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-9, atol=1e-12)
