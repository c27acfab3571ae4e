"""Cutoff functions f_c(r), the single place they are defined (docs/science.md §2).

With an inner radius ``alpha`` (n2p2's cutoff parameter), f_c = 1 for
r < alpha*r_c and x = (r - alpha*r_c) / (r_c - alpha*r_c) above it; the tanh
variants ignore alpha, as in n2p2.
All functions are 0 for r >= r_c, and smooth there.
"""

from __future__ import annotations

import math

import torch

# name -> n2p2's cutoff_type number
N2P2_CUTOFF_TYPES = {
    0: "hard",
    1: "cos",
    2: "tanh",  # n2p2 "tanhu": tanh^3(1 - r/rc)
    3: "tanh_norm",  # n2p2 "tanh": normalised so that f_c(0) = 1
    4: "exp",
    5: "poly1",
    6: "poly2",
    7: "poly3",
    8: "poly4",
}
ALIASES = {"cosine": "cos", "polynomial": "poly2", "tanhu": "tanh"}
NAMES = tuple(N2P2_CUTOFF_TYPES.values())


def canonical(name: str | int) -> str:
    """Canonical cutoff name from a name, an alias or an n2p2 cutoff_type number."""
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        return N2P2_CUTOFF_TYPES[int(name)]
    name = ALIASES.get(name.lower(), name.lower())
    if name not in NAMES:
        raise ValueError(f"unknown cutoff function '{name}' (choose from {', '.join(NAMES)})")
    return name


def _core(x: torch.Tensor, name: str) -> torch.Tensor:
    """f(x) on x in [0, 1)."""
    if name == "cos":
        return 0.5 * (torch.cos(math.pi * x) + 1.0)
    if name == "poly1":
        return (2.0 * x - 3.0) * x * x + 1.0
    if name == "poly2":
        return ((15.0 - 6.0 * x) * x - 10.0) * x**3 + 1.0
    if name == "poly3":
        return (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x**4 + 1.0
    if name == "poly4":
        return (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x**5 + 1.0
    if name == "tanh":
        return torch.tanh(1.0 - x) ** 3
    if name == "tanh_norm":
        return torch.tanh(1.0 - x) ** 3 / math.tanh(1.0) ** 3
    if name == "exp":
        return torch.exp(1.0 - 1.0 / (1.0 - x * x))
    if name == "hard":
        return torch.ones_like(x)
    raise ValueError(f"unknown cutoff function '{name}'")


def cutoff_function(r: torch.Tensor, rc, name: str = "cos", alpha: float = 0.0) -> torch.Tensor:
    """f_c(r) for cutoff radius ``rc`` (a float or a tensor broadcasting with r)."""
    name = canonical(name)
    rc = torch.as_tensor(rc, dtype=r.dtype, device=r.device)
    # n2p2's tanh variants ignore the inner radius
    inner = alpha * rc if name not in ("tanh", "tanh_norm") else 0.0 * rc
    inside = r < rc
    # keep x in [0, 1) everywhere so that no NaN leaks into gradients through torch.where
    x = ((r - inner) / (rc - inner)).clamp(min=0.0)
    x = torch.where(inside, x, torch.zeros_like(x))
    f = _core(x, name)
    return torch.where(inside, f, torch.zeros_like(f))
