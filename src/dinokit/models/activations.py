"""`hidden_act` names → activation modules, with the formulas of transformers' `ACT2FN` table, so that a
config that names one gives the numbers transformers gives."""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Activation(nn.Module):
    """An element-wise function with a name (the module has no parameters, so checkpoints are unaffected)."""

    def __init__(self, name: str, fn):
        super().__init__()
        self.name, self.fn = name, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def _tanh_gelu(x):  # "gelu_new", "gelu_accurate", "gelu_python_tanh": the tanh formula written out
    return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0))))


def _laplace(x, mu=0.707107, sigma=0.282095):
    return 0.5 * (1.0 + torch.erf((x - mu).div(sigma * math.sqrt(2.0))))


_FUNCTIONS = {
    "gelu": F.gelu,
    "gelu_10": lambda x: torch.clip(F.gelu(x), -10, 10),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu_new": _tanh_gelu,
    "gelu_python": lambda x: x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "gelu_python_tanh": lambda x: x * 0.5 * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_accurate": _tanh_gelu,
    "hardswish": F.hardswish,
    "laplace": _laplace,
    "leaky_relu": F.leaky_relu,
    "linear": lambda x: x,
    "mish": F.mish,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "relu2": lambda x: torch.square(F.relu(x)),
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
    "sqrtsoftplus": lambda x: F.softplus(x).sqrt(),
    "swish": F.silu,
    "tanh": torch.tanh,
}
ACTIVATIONS = tuple(_FUNCTIONS)


def activation(name: str) -> nn.Module:
    """The module for a `hidden_act` name; plain `nn.GELU` for "gelu" (the released models)."""
    if name == "gelu":
        return nn.GELU()
    try:
        return Activation(name, _FUNCTIONS[name])
    except KeyError:
        learned = " (it has learned parameters, which no DINOv2 checkpoint carries)" if name in ("prelu", "xielu") else ""
        raise ValueError(f"hidden_act {name!r} is not supported{learned}; expected one of {', '.join(ACTIVATIONS)}") from None
