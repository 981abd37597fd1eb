#!/usr/bin/env python3
r"""The two training objectives of CALM (Kim et al., ICCV 2021, Sec. 4.2), in log space.

With ``l_z = log p(y, z | x) = log g_yz + log p(z | x)`` for the true class ``y``:

- CALM_ML, the marginal likelihood: ``-log Σ_z exp(l_z)`` (a ``logsumexp``);
- CALM_EM, the expected complete-data log-likelihood with the posterior
  ``q_z = p(z | x, y) = softmax_z(l)`` held fixed (detached): ``-Σ_z q_z · l_z``.

Both take the :class:`~captum_cams.calm.head.CALMOutput` of a CALM model (its
``components``). Note (Fisher's identity): at the parameters where ``q`` is computed
the two gradients are equal, ``∇ -log Σ_z e^{l_z} = -Σ_z q_z ∇ l_z``; the losses differ
in value (the EM loss adds the posterior's entropy) but not in the first-order
update. The authors' code also detaches the normaliser of ``p(z | x)``; the identity
holds there too.
"""

from typing import Union

import torch
from torch import Tensor

from captum_cams.calm.head import CALMOutput

_REDUCTIONS = ("mean", "sum", "none")


def _checked(output: CALMOutput, target: Union[Tensor, int], reduction: str) -> Tensor:
    if not isinstance(output, CALMOutput):
        raise TypeError(
            f"output must be the CALMOutput of CALM.components(inputs); got {type(output).__name__}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")
    num, num_classes = output.log_conditional.shape[:2]
    if isinstance(target, bool):
        raise TypeError("target must be an int or a tensor of class indices; got bool")
    if isinstance(target, int):
        target = torch.full((num,), target, dtype=torch.long)
    if not isinstance(target, Tensor) or target.is_floating_point():
        raise TypeError("target must be an int or an integer tensor of class indices")
    target = target.reshape(-1).to(device=output.log_conditional.device, dtype=torch.long)
    if target.shape[0] != num:
        raise ValueError(f"target must hold one class per example ({num}); got {target.shape[0]}")
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise ValueError(f"target out of range [0, {num_classes}); got {target.tolist()}")
    return target


def _target_log_joint(output: CALMOutput, target: Tensor) -> Tensor:
    r"""``N x (h·w)``: ``log p(y_i, z | x_i)`` for each example's target."""
    index = target.reshape(-1, 1, 1, 1).expand(-1, 1, *output.log_conditional.shape[2:])
    log_g = output.log_conditional.gather(1, index)
    return (log_g + output.log_saliency).flatten(1)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def calm_ml_loss(output: CALMOutput, target: Union[Tensor, int], reduction: str = "mean") -> Tensor:
    r"""
    CALM_ML: the negative log marginal likelihood ``-log p(y | x) = -log Σ_z g_yz p(z|x)``.

    Computed as ``-logsumexp_z(log g_yz + log p(z | x))``: finite whenever one
    location has ``p(y, z | x) > 0``, also where the probabilities underflow.

    Args:
        output (CALMOutput): ``model.components(inputs)`` of a :class:`CALM` model.
        target (Tensor or int): ``(N,)`` true classes (or one class for all).
        reduction (str, optional): ``"mean"``, ``"sum"`` or ``"none"`` (``(N,)``).
                    Default: ``"mean"``.

    Returns:
        *Tensor*: the loss.

    Examples::

        >>> loss = calm_ml_loss(model.components(images), labels)
        >>> loss.backward()
    """
    target = _checked(output, target, reduction)
    log_joint = _target_log_joint(output, target)
    return _reduce(-torch.logsumexp(log_joint, dim=1), reduction)


def calm_em_loss(output: CALMOutput, target: Union[Tensor, int], reduction: str = "mean") -> Tensor:
    r"""
    CALM_EM: ``-Σ_z p(z | x, y) · log(g_yz p(z | x))`` with the posterior
    ``p(z | x, y) = p(y, z | x) / p(y | x)`` detached (the E-step), one M-step
    gradient per call.

    Locations with zero posterior contribute exactly zero (also where
    ``log p(y, z | x) = -inf``, e.g. ReLU attention that is zero there).

    Args:
        output (CALMOutput): ``model.components(inputs)`` of a :class:`CALM` model.
        target (Tensor or int): ``(N,)`` true classes (or one class for all).
        reduction (str, optional): ``"mean"``, ``"sum"`` or ``"none"`` (``(N,)``).
                    Default: ``"mean"``.

    Returns:
        *Tensor*: the loss.

    Examples::

        >>> loss = calm_em_loss(model.components(images), labels)
        >>> loss.backward()
    """
    target = _checked(output, target, reduction)
    log_joint = _target_log_joint(output, target)
    posterior = torch.softmax(log_joint.detach(), dim=1)
    terms = torch.where(posterior > 0, posterior * log_joint, torch.zeros_like(log_joint))
    return _reduce(-terms.sum(dim=1), reduction)
