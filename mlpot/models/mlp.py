"""Per-element feed-forward networks and their activations."""

from __future__ import annotations

import math

import torch
from torch import nn


class ShiftedSoftplus(nn.Module):
    def forward(self, x):
        return nn.functional.softplus(x) - math.log(2.0)


class Swish(nn.Module):
    """s(x) = x / (1 + exp(-beta x)); beta = 1 is SiLU."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class Gaussian(nn.Module):
    def forward(self, x):
        return torch.exp(-0.5 * x * x)


class Cos(nn.Module):
    def forward(self, x):
        return torch.cos(x)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


ACTIVATIONS = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "shifted_softplus": ShiftedSoftplus,
    "ssp": ShiftedSoftplus,
    "swish": Swish,
    "silu": Swish,
    "logistic": nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "gaussian": Gaussian,
    "cos": Cos,
    "linear": nn.Identity,
    "one_minus_logistic": lambda: Lambda(lambda x: 1.0 - torch.sigmoid(x)),
    "exp_minus": lambda: Lambda(lambda x: torch.exp(-x)),
    "square": lambda: Lambda(lambda x: x * x),
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation '{name}' (choose from {', '.join(ACTIVATIONS)})") from None


class MLP(nn.Sequential):
    """Linear layers with an activation after each hidden layer and a linear output."""

    def __init__(self, n_in: int, hidden, activations="tanh", n_out: int = 1):
        hidden = list(hidden)
        acts = [activations] * len(hidden) if isinstance(activations, str) else list(activations)
        if len(acts) != len(hidden):
            raise ValueError(f"{len(acts)} activations for {len(hidden)} hidden layers")
        layers, width = [], n_in
        for h, a in zip(hidden, acts):
            layers += [nn.Linear(width, h), activation(a)]
            width = h
        layers.append(nn.Linear(width, n_out))
        super().__init__(*layers)


class ElementMLPs(nn.Module):
    """One MLP per element, applied to the atoms of that element (index_select / index_copy)."""

    def __init__(self, n_features_per_element, hidden, activations="tanh", n_out: int = 1):
        super().__init__()
        self.n_in = list(n_features_per_element)
        self.n_out = n_out
        self.nets = nn.ModuleList(MLP(n, hidden, activations, n_out) for n in self.n_in)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.n_out)
        for e, net in enumerate(self.nets):
            idx = torch.nonzero(species == e).squeeze(-1)
            if torch.jit.is_tracing() or idx.numel():  # a deployed model runs every element's net
                out = out.index_copy(0, idx, net(x.index_select(0, idx)[:, : self.n_in[e]]))
        return out
