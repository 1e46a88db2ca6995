"""Initialization helpers shared by the models."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomize_batch_norm"]


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm random running statistics and affine parameters (fresh ones
    are the identity, which would let a wrong batch-norm folding go unnoticed). Variances
    stay near 1 so activations keep their scale through deep networks."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                module.weight.copy_(0.75 + 0.5 * torch.rand(size, generator=generator))
                module.bias.copy_(0.1 * torch.randn(size, generator=generator))
    return model
