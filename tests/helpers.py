"""Assertions shared by the study tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

from explainlab.cli import run
from explainlab.errors import ConfigValueError


def assert_run_refuses(compose: Callable, overrides: Sequence[str], key: str) -> None:
    """Running the composed config fails with a ConfigValueError that names `key`."""
    with pytest.raises(ConfigValueError, match=re.escape(key)):
        run(compose(list(overrides)))


def with_bn_statistics(net: nn.Module, seed: int = 0, *, bias: bool = True) -> nn.Module:
    """Give every batch norm running statistics and affine parameters far from the identity (in place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if bias:
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net
