"""The HDNNP head: E_i = s · NN_Z(x_i) + E0_Z."""

from __future__ import annotations

import torch
from torch import nn

from mlpot.models.mlp import ElementMLPs


class HDNNP(nn.Module):
    """Atomic energies from scaled descriptors.

    ``energy_scale`` (per element, default 1) multiplies the network output; it
    carries unit conversions (n2p2 import) or the spread of the training energies.
    ``e0`` holds per-element reference energies.
    """

    def __init__(self, n_features_per_element, hidden=(25, 25), activation="tanh", e0=None, energy_scale=None):
        super().__init__()
        n_el = len(n_features_per_element)
        self.hidden = list(hidden)
        self.activation = activation
        self.nets = ElementMLPs(n_features_per_element, hidden, activation)
        self.register_buffer("e0", torch.zeros(n_el, dtype=torch.float64) if e0 is None else torch.as_tensor(e0, dtype=torch.float64))
        self.register_buffer(
            "energy_scale",
            torch.ones(n_el, dtype=torch.float64) if energy_scale is None else torch.as_tensor(energy_scale, dtype=torch.float64),
        )

    def config(self) -> dict:
        """Plain-data constructor arguments; ``e0``/``energy_scale`` and the weights live in the state dict."""
        act = self.activation if isinstance(self.activation, str) else list(self.activation)
        return {"n_features_per_element": list(self.nets.n_in), "hidden": list(self.hidden), "activation": act}

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        nn_out = self.nets(x, species).squeeze(-1)
        return nn_out * self.energy_scale.to(x.dtype)[species] + self.e0.to(x.dtype)[species]
