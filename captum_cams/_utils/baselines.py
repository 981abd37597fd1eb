#!/usr/bin/env python3
r"""The ``baselines`` option, parsed and validated in one place.

What removed or integrated-from pixels become is given the same way everywhere: None
(zeros), a number (a constant image), a tensor, and where a caller allows them
named baselines such as ``"zero"`` and ``"blur"`` (the perturbation metrics, TFT,
threshold calibration, reference filtering). :func:`parse_baselines` checks the
option and says which of these it is; the callers then build their tensor from it:
:func:`captum_cams._utils.masking.make_baseline` (one baseline broadcast to the
inputs) and Integrated Grad-CAM's path starts (``B`` baselines per example).
"""

import math
from typing import Sequence, Union

import torch
from torch import Tensor

from captum_cams._utils.guards import check_finite

#: What ``baselines`` may be: None, a named baseline, a number or a tensor.
BaselineLike = Union[None, str, float, int, Tensor]


def parse_baselines(
    baselines: BaselineLike,
    name: str = "baselines",
    names: Sequence[str] = ("zero", "blur"),
    finite: bool = False,
) -> Union[None, str, float, Tensor]:
    r"""
    Checks a ``baselines`` option and returns it in a normal form.

    Args:
        baselines (None, str, float, int or Tensor): the option as given.
        name (str, optional): the argument name used in error messages.
                    Default: ``"baselines"``
        names (sequence of str, optional): the named baselines the caller knows;
                    empty: none (a string is then a type error). Default:
                    ``("zero", "blur")``
        finite (bool, optional): refuse non-finite numbers and tensors holding
                    ±Inf (NaN is always refused in a tensor). Default: False

    Returns:
        None for None, the name for a named baseline, a ``float`` for a number,
        the detached tensor for a tensor.

    Examples::

        >>> parse_baselines("blur"), parse_baselines(2), parse_baselines(None)
        ('blur', 2.0, None)
    """
    kinds = ", ".join(f"'{n}'" for n in names) if names else "None"
    expected = f"{name} must be {kinds}, a number or a tensor"
    if baselines is None:
        return None
    if isinstance(baselines, str) and names:
        if baselines in names:
            return baselines
        raise ValueError(f"{expected}; got {baselines!r}")
    if isinstance(baselines, bool):
        raise TypeError(f"{expected}; got bool")
    if isinstance(baselines, (int, float)):
        if finite and not math.isfinite(baselines):
            raise ValueError(f"{name} must be a finite number; got {baselines!r}")
        return float(baselines)
    if isinstance(baselines, Tensor):
        if finite:
            return check_finite(baselines.detach(), name)
        if torch.isnan(baselines).any():
            raise ValueError(f"{name} contains NaN")
        return baselines.detach()
    raise TypeError(f"{expected}; got {type(baselines).__name__}")
