"""Per-element affine scaling of descriptor inputs, as n2p2 does it.

Every n2p2 scaling mode is affine, x = a * G + b per element and feature:
- ``minmax`` (scale_symmetry_functions): smin + (smax - smin) (G - Gmin) / (Gmax - Gmin)
- ``center`` (center_symmetry_functions): G - Gmean
- ``minmax_center`` (both keywords): smin + (smax - smin) (G - Gmean) / (Gmax - Gmin)
- ``sigma`` (scale_symmetry_functions_sigma): smin + (smax - smin) (G - Gmean) / Gsigma
- ``none``: G
The training-range min/max of every component is kept as well (extrapolation
monitoring, n2p2's warnings).
"""

from __future__ import annotations

import torch
from torch import nn

MODES = ("none", "minmax", "center", "minmax_center", "sigma")


def affine_from_stats(mode, gmin, gmax, gmean, gsigma, smin=0.0, smax=1.0):
    """(a, b) of x = a G + b for an n2p2 scaling mode; constant components get a = 0 (n2p2 too)."""
    if mode not in MODES:
        raise ValueError(f"unknown scaling mode '{mode}' (choose from {', '.join(MODES)})")
    one = torch.ones_like(gmin)
    if mode == "none":
        return one, torch.zeros_like(gmin)
    if mode == "center":
        return one, -gmean
    spread = gsigma if mode == "sigma" else gmax - gmin
    safe = torch.where(spread > 0, spread, one)
    a = torch.where(spread > 0, (smax - smin) / safe, torch.zeros_like(spread))
    ref = gmin if mode == "minmax" else gmean
    return a, smin - a * ref


class FeatureStatistics:
    """Per element and feature: min, max, mean and population standard deviation, accumulated over chunks of
    atoms in float64 (Chan, Golub and LeVeque's pairwise update of the mean and of the sum of squared
    deviations), so that the scaling statistics of a training split come from one streaming pass."""

    def __init__(self, n_elements: int, n_features: int):
        shape = (n_elements, n_features)
        self.count = torch.zeros(n_elements, dtype=torch.float64)
        self.mean, self.m2 = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        self.min = torch.full(shape, float("inf"), dtype=torch.float64)
        self.max = torch.full(shape, float("-inf"), dtype=torch.float64)

    @torch.no_grad()
    def update(self, G: torch.Tensor, species: torch.Tensor) -> "FeatureStatistics":
        G, species = G.detach().to("cpu", torch.float64), species.detach().to("cpu")
        for e in torch.unique(species).tolist():
            g = G[species == e]
            n_b = float(g.shape[0])
            mean_b = g.mean(0)
            m2_b = ((g - mean_b) ** 2).sum(0)
            n_a = float(self.count[e])
            n = n_a + n_b
            delta = mean_b - self.mean[e]
            self.mean[e] += delta * (n_b / n)
            self.m2[e] += m2_b + delta**2 * (n_a * n_b / n)
            self.count[e] = n
            self.min[e] = torch.minimum(self.min[e], g.min(0).values)
            self.max[e] = torch.maximum(self.max[e], g.max(0).values)
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gmin, gmax, gmean, gsigma); zeros for elements without atoms."""
        seen = (self.count > 0)[:, None]
        zero = torch.zeros_like(self.mean)
        sigma = (self.m2 / self.count.clamp(min=1)[:, None]).sqrt()
        return (torch.where(seen, self.min, zero), torch.where(seen, self.max, zero), torch.where(seen, self.mean, zero),
                torch.where(seen, sigma, zero))

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("count", "mean", "m2", "min", "max")}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStatistics":
        out = cls(*torch.tensor(d["mean"], dtype=torch.float64).shape)
        for k in ("count", "mean", "m2", "min", "max"):
            setattr(out, k, torch.tensor(d[k], dtype=torch.float64))
        return out


class FeatureScaler(nn.Module):
    """x = a[Z] * G + b[Z]; holds the statistics as buffers."""

    def __init__(self, n_elements: int, n_features: int, mode: str = "none", smin: float = 0.0, smax: float = 1.0):
        super().__init__()
        self.mode, self.smin, self.smax = mode, float(smin), float(smax)
        shape = (n_elements, n_features)
        for name in ("gmin", "gmax", "gmean", "gsigma", "b"):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("a", torch.ones(shape, dtype=torch.float64))

    def config(self) -> dict:
        """Plain-data constructor arguments; the statistics and (a, b) live in the buffers."""
        n_el, F = self.a.shape
        return {"n_elements": int(n_el), "n_features": int(F), "mode": self.mode, "smin": self.smin, "smax": self.smax}

    def set_stats(self, gmin, gmax, gmean, gsigma):
        for name, v in zip(("gmin", "gmax", "gmean", "gsigma"), (gmin, gmax, gmean, gsigma)):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=self.a.dtype))
        a, b = affine_from_stats(self.mode, self.gmin, self.gmax, self.gmean, self.gsigma, self.smin, self.smax)
        self.a.copy_(a)
        self.b.copy_(b)
        return self

    @torch.no_grad()
    def fit(self, G: torch.Tensor, species: torch.Tensor):
        """Statistics from training-set descriptors ``G`` (n_atoms, n_features); for data that does not fit
        in memory, feed :class:`FeatureStatistics` chunk by chunk and pass its ``result()`` to ``set_stats``."""
        n_el, F = self.a.shape
        return self.set_stats(*FeatureStatistics(n_el, F).update(G, species).result())

    def forward(self, G: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return G * self.a.to(G.dtype)[species] + self.b.to(G.dtype)[species]

    @torch.no_grad()
    def out_of_range(self, G: torch.Tensor, species: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Per atom: True where some component leaves [Gmin - tol*span, Gmax + tol*span]."""
        lo, hi = self.gmin.to(G.dtype)[species], self.gmax.to(G.dtype)[species]
        span = (hi - lo) * tol
        return ((G < lo - span) | (G > hi + span)).any(dim=-1)
