#!/usr/bin/env python3
r"""Seeds of the methods' and metrics' own random generators (SS-CAM's and Smooth
Grad-CAM++'s noise, ROAD's imputation noise): a generator of their own, so the global
random state is left alone."""

from typing import Optional

import torch


def check_seed(seed: object) -> None:
    r"""
    ``seed`` must be an int or None.

    Args:
        seed (object): the ``seed`` argument as the user gave it.

    Returns:
        None; raises ``TypeError`` naming ``seed`` otherwise.

    Examples::

        >>> check_seed(0)
        >>> check_seed(True)
        Traceback (most recent call last):
        TypeError: seed must be an int or None; got bool
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None; got {type(seed).__name__}")


def seeded_generator(device: torch.device, seed: Optional[int]) -> torch.Generator:
    r"""
    A generator of its own on ``device``, seeded with ``seed``.

    Args:
        device (torch.device): where the draws are made.
        seed (int, optional): the seed; None draws fresh entropy.

    Returns:
        *torch.Generator*: the generator.

    Examples::

        >>> generator = seeded_generator(torch.device("cpu"), 0)
        >>> torch.randn(2, generator=generator).shape
        torch.Size([2])
    """
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


__all__ = ["check_seed", "seeded_generator"]
