"""The PINN head: per-element networks predict per-atom parameters of the analytic BOP.

docs/science.md §7 (Pun, Batra, Ramprasad, Mishin 2019, 2020)::

    p_i = p⁰ + δp_i,    E_i = E_i^BOP(p_i; geometry) + e0_Z(i)

with p = (A, α, B, β, h, σ, a, λ) (:mod:`mlpot.models.bop`). Parameters are kept in their
physical range by construction: each parameter is T(u) of an unconstrained u, with T the
identity for A, B, h, σ and softplus for α, β, a, λ (> 0); p⁰ = T(u⁰) per element and
p_i = T(u⁰_Z + δu_i), where δu_i = NN_Z(x_i) comes from per-element networks on the (scaled)
descriptor x_i. So δp_i = T(u⁰ + δu_i) − T(u⁰); the networks' last layers start at zero, so an
untrained PINN is the plain BOP with p⁰.

Training is two-stage (``mlpot.training.baseline``): stage 1 fits u⁰ and e0 with the networks
off; stage 2 trains the networks (u⁰, e0 frozen unless ``train_p0``) with the penalty
``delta_penalty · mean_i Σ_k (δp_ik)²`` added to the loss.

The head needs the pair geometry: :class:`~mlpot.models.Potential` passes ``vec`` (r_ij) and
``edge_index`` to heads with ``needs_geometry = True``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlpot.errors import ParameterRangeError
from mlpot.models.bop import PARAMETERS, POSITIVE, bop_energies
from mlpot.models.mlp import ElementMLPs

# A generic starting point for stage 1 (transition metals, Å and eV); stage 1 refits it.
DEFAULT_P0 = {"A": 9.0, "alpha": 3.0, "B": 5.0, "beta": 1.5, "h": -0.3, "sigma": 1.0, "a": 0.1, "lambda": 1.5}
_POSITIVE_MASK = [name in POSITIVE for name in PARAMETERS]


def _softplus(u: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(u, torch.zeros_like(u))


def _inverse_softplus(p: torch.Tensor) -> torch.Tensor:
    return p + torch.log(-torch.expm1(-p))


class PINN(nn.Module):
    """Atomic energies of the BOP whose parameters the networks correct per atom.

    ``n_features_per_element``: descriptor sizes (as for the HDNNP); ``hidden``/``activation``:
    the per-element networks (8 outputs); ``cutoff``/``d``: r_c and d of the BOP cutoff
    (``cutoff`` must not exceed the descriptor's, which sets the neighbour list); ``p0``: a dict
    of the 8 parameters for every element, or a list of such dicts (one per element); missing
    names take :data:`DEFAULT_P0`; ``e0``: per-element energy offsets (eV);
    ``delta_penalty``: weight of the |δp|² penalty (stage 2); ``train_p0``: keep u⁰ and e0
    trainable in stage 2; ``baseline``: stage-1 settings (epochs, lr, batch_size: keyword arguments of
    :func:`mlpot.training.baseline.fit_baseline`, run by ``mlpot-train``); ``{"epochs": 0}`` keeps p⁰
    and only sets e0.
    """

    needs_geometry = True

    def __init__(self, n_features_per_element, hidden=(20, 20), activation="tanh", cutoff: float = 5.0,
                 d: float = 1.5, p0=None, e0=None, delta_penalty: float = 1e-3, train_p0: bool = False,
                 baseline: dict | None = None):
        super().__init__()
        n_el = len(n_features_per_element)
        self.hidden, self.activation = list(hidden), activation
        self.cutoff, self.d = float(cutoff), float(d)
        if not (self.cutoff > 0 and self.d > 0):
            raise ParameterRangeError(f"PINN: cutoff ({cutoff}) and d ({d}) must be > 0")
        self.delta_penalty, self.train_p0 = float(delta_penalty), bool(train_p0)
        self.baseline = dict(baseline or {})
        self.p0_config = self._p0_table(p0, n_el)
        p0_t = torch.tensor([[row[name] for name in PARAMETERS] for row in self.p0_config], dtype=torch.float64)
        self.nets = ElementMLPs(n_features_per_element, hidden, activation, n_out=len(PARAMETERS))
        for net in self.nets.nets:  # δp = 0 at the start: the untrained PINN is the plain BOP
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
        self.register_buffer("positive", torch.tensor(_POSITIVE_MASK), persistent=False)
        self.u0 = nn.Parameter(self._raw(p0_t))
        e0 = torch.zeros(n_el, dtype=torch.float64) if e0 is None else torch.as_tensor(e0, dtype=torch.float64)
        if e0.shape != (n_el,):
            raise ValueError(f"PINN: e0 must have one value per element ({n_el}), got shape {tuple(e0.shape)}")
        self.e0 = nn.Parameter(e0.clone())

    @staticmethod
    def _p0_table(p0, n_el: int) -> list[dict]:
        rows = [p0] * n_el if p0 is None or isinstance(p0, dict) or hasattr(p0, "keys") else list(p0)
        if len(rows) != n_el:
            raise ValueError(f"PINN: p0 must be one dict or one dict per element ({n_el}), got {len(rows)}")
        table = []
        for e, row in enumerate(rows):
            row = dict(row or {})
            unknown = set(row) - set(PARAMETERS)
            if unknown:
                raise ValueError(f"PINN: unknown p0 parameter(s) {sorted(unknown)} (known: {', '.join(PARAMETERS)})")
            full = {name: float(row.get(name, DEFAULT_P0[name])) for name in PARAMETERS}
            for name, value in full.items():
                if not math.isfinite(value) or (name in POSITIVE and value <= 0):
                    rule = "must be finite" if not math.isfinite(value) else "must be > 0"
                    raise ParameterRangeError(f"PINN p0 of element {e}: {name} = {value:.6g} {rule}")
            table.append(full)
        return table

    # -- parameter transforms ------------------------------------------------------------------
    def _raw(self, p: torch.Tensor) -> torch.Tensor:
        mask = torch.tensor(_POSITIVE_MASK, device=p.device)
        return torch.where(mask, _inverse_softplus(torch.where(mask, p, torch.ones_like(p))), p)

    def transform(self, u: torch.Tensor) -> torch.Tensor:
        """Physical parameters T(u): softplus for α, β, a, λ, identity for the rest."""
        return torch.where(self.positive.to(u.device), _softplus(u), u)

    def p0(self) -> torch.Tensor:
        """The baseline parameters p⁰ (n_elements, 8)."""
        return self.transform(self.u0)

    def atom_parameters(self, x: torch.Tensor, species: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(p_i, δp_i), both (n_atoms, 8), from scaled descriptors ``x``."""
        u0 = self.u0.to(x.dtype)
        base = self.transform(u0)[species]
        p = self.transform(u0[species] + self.nets(x, species))
        return p, p - base

    def penalty(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta_penalty · mean_i Σ_k δp_ik²`` (0 for no atoms)."""
        if delta.numel() == 0:
            return delta.new_zeros(())
        return self.delta_penalty * (delta**2).sum(-1).mean()

    # -- export ---------------------------------------------------------------------------------
    def config(self) -> dict:
        """Plain-data constructor arguments; u⁰ (the fitted p⁰), e0 and the weights live in the state dict."""
        act = self.activation if isinstance(self.activation, str) else list(self.activation)
        return {"n_features_per_element": list(self.nets.n_in), "hidden": list(self.hidden), "activation": act,
                "cutoff": self.cutoff, "d": self.d, "p0": [dict(r) for r in self.p0_config],
                "delta_penalty": self.delta_penalty, "train_p0": self.train_p0, "baseline": dict(self.baseline)}

    def forward(self, x: torch.Tensor, species: torch.Tensor, vec: torch.Tensor | None = None,
                edge_index: torch.Tensor | None = None, return_delta: bool = False):
        if vec is None or edge_index is None:
            raise TypeError("the PINN head needs the pair geometry: call it with vec= and edge_index=")
        p, delta = self.atom_parameters(x, species)
        atomic = bop_energies(vec, edge_index, p, species.shape[0], self.cutoff, self.d) + self.e0.to(x.dtype)[species]
        return (atomic, delta) if return_delta else atomic


__all__ = ["DEFAULT_P0", "PINN"]
