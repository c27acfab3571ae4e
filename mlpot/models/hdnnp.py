"""The HDNNP head: E_i = s · NN_Z(x_i) + E0_Z, optionally with a linear readout: s · (NN_Z(x_i) + w_Z · x_i) + E0_Z."""

from __future__ import annotations

import torch
from torch import nn

from mlpot.models.mlp import ElementMLPs


class HDNNP(nn.Module):
    """Atomic energies from scaled descriptors.

    ``energy_scale`` (per element, default 1) multiplies the network output; it
    carries unit conversions (n2p2 import) or the spread of the training energies.
    ``e0`` holds per-element reference energies.
    ``linear``: add a linear readout w_Z · x_i of the scaled descriptors beside the network (MACE reads
    out its first layer linearly; a linear model in the descriptors is SNAP's). It starts at zero; the
    network then fits what the linear term leaves.
    """

    def __init__(self, n_features_per_element, hidden=(25, 25), activation="tanh", e0=None, energy_scale=None,
                 linear: bool = False):
        super().__init__()
        n_el = len(n_features_per_element)
        self.hidden = list(hidden)
        self.activation = activation
        self.nets = ElementMLPs(n_features_per_element, hidden, activation)
        self.linear = None
        if linear:
            self.linear = nn.Parameter(torch.zeros(n_el, max(n_features_per_element)))
            # columns beyond an element's own features (padding) never count
            mask = torch.zeros(n_el, max(n_features_per_element))
            for e, n in enumerate(n_features_per_element):
                mask[e, :n] = 1.0
            self.register_buffer("linear_mask", mask, persistent=False)
        self.register_buffer("e0", torch.zeros(n_el, dtype=torch.float64) if e0 is None else torch.as_tensor(e0, dtype=torch.float64))
        self.register_buffer(
            "energy_scale",
            torch.ones(n_el, dtype=torch.float64) if energy_scale is None else torch.as_tensor(energy_scale, dtype=torch.float64),
        )

    def config(self) -> dict:
        """Plain-data constructor arguments; ``e0``/``energy_scale`` and the weights live in the state dict."""
        act = self.activation if isinstance(self.activation, str) else list(self.activation)
        out = {"n_features_per_element": list(self.nets.n_in), "hidden": list(self.hidden), "activation": act}
        if self.linear is not None:
            out["linear"] = True
        return out

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        nn_out = self.nets(x, species).squeeze(-1)
        if self.linear is not None:
            w = (self.linear * self.linear_mask.to(self.linear.dtype)).index_select(0, species)
            nn_out = nn_out + (w * x).sum(-1)
        return nn_out * self.energy_scale.to(x.dtype)[species] + self.e0.to(x.dtype)[species]
