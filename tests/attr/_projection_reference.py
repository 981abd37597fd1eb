#!/usr/bin/env python3
"""pytorch-grad-cam's ``get_2d_projection_with_sign_correction``, computed with NumPy's
SVD: the reference of the Eigen methods' projection."""

import numpy as np
import torch
from torch import Tensor


def numpy_projection(terms: Tensor) -> Tensor:
    r"""Per example: ``h·w x K`` rows centred over the rows, projected on the first
    right-singular vector, negated when ``|min| > |max|``; ``N x 1 x h x w`` float64."""
    out = []
    for example in terms.detach().double().numpy():
        channels, height, width = example.shape
        rows = example.reshape(channels, -1).T
        centred = rows - rows.mean(axis=0)
        _, _, right = np.linalg.svd(centred, full_matrices=True)
        projection = centred @ right[0]
        if abs(projection.min()) > abs(projection.max()):
            projection = -projection
        out.append(projection.reshape(1, height, width))
    return torch.from_numpy(np.stack(out))
