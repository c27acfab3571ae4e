"""SANNP features (Huang et al. PRB 99, 064103 (2019); PWMLFF feature types 1 and 2), docs/science.md §6.

Smooth cosine bumps on a radial grid g_0 < g_1 < … < g_{n+1} (log-spaced by default, denser at short
range; or linear): bump k = 1 … n lives on [g_{k−1}, g_{k+1}],

    φ_k(r) = ½ [cos(2π(x − ½)) + 1],   x = (r − g_{k−1}) / (g_{k+1} − g_{k−1}),   0 outside,

so that every distance inside the grid falls in two neighbouring bumps (PWMLFF's ``iflag_ftype`` 1),
φ and φ' vanish at both ends and the last bump ends at the cutoff. Features of atom i:

* pair (type 1):      P_{a,k}       = Σ_{j ∈ a} φ_k(r_ij)                         k = 1 … n_pair
* three-atom (type 2): T_{(a,k)(b,l),m} = Σ_{j ∈ a, k' ∈ b, j ≠ k'} φ_k(r_ij) φ_l(r_ik') ψ_m(r_jk')

with ψ the bumps of a second grid for the third side r_jk' (up to ``jk_cutoff``), φ in the triangle
term on its own grid up to ``three_body_cutoff``, and (a, k) ≤ (b, l) (the term is symmetric in
them), as PWMLFF keeps k1 ≤ k2 for equal species. Feature order: pair block (neighbour species,
bump), then the triangle block ((a,k) ≤ (b,l) row-major, then m). Length for one element:
n_pair + n3(n3 + 1)/2 · n_jk; defaults 24 + 28 · 10 = 304.

Cost: O(triplets), fully vectorised: with M_p = Σ_{q ≠ p} φ̃(q) ⊗ ψ(|r_q − r_p|) (index_adds over
the triplets of only the two non-zero ψ_m of each triangle, ``active_bumps``), T_i = Σ_{p ∈ i} φ̃(p) ⊗ M_p. The pair Jacobian the training cache needs is analytic:
∂S_uv/∂r_p = A_p[u,v] + A_p[v,u], A_p[u,v] = φ̃'_u(p) r̂_p M_p[v] + φ̃_u(p) N_p[v],
N_p = Σ_{q ≠ p} φ̃(q) ⊗ ψ'(d_pq) (r_p − r_q)/d_pq.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlpot.descriptors.geometry import edge_vectors, triplets

GRIDS = ("log", "linear")


def grid_edges(r_min: float, r_max: float, n: int, kind: str = "log") -> torch.Tensor:
    """The n + 2 grid points g_0 = r_min … g_{n+1} = r_max of n bumps (float64)."""
    if kind not in GRIDS:
        raise ValueError(f"SANNP grid must be one of {GRIDS}, got {kind!r}")
    if not (0 < r_min < r_max) or n < 1:
        raise ValueError(f"SANNP grid needs 0 < r_min < r_max and n >= 1, got r_min={r_min}, r_max={r_max}, n={n}")
    t = torch.arange(n + 2, dtype=torch.float64) / (n + 1)
    if kind == "log":
        return r_min * (r_max / r_min) ** t
    return r_min + (r_max - r_min) * t


def bumps(r: torch.Tensor, edges: torch.Tensor, derivative: bool = False):
    """φ_k(r) for k = 1 … n on ``edges`` (n + 2 points): (P, n); with ``derivative`` also dφ_k/dr."""
    lo, hi = edges[:-2].to(r.dtype), edges[2:].to(r.dtype)
    width = hi - lo
    x = (r[:, None] - lo) / width
    inside = (x > 0) & (x < 1)
    arg = 2.0 * math.pi * (x.clamp(0.0, 1.0) - 0.5)
    phi = torch.where(inside, 0.5 * (torch.cos(arg) + 1.0), torch.zeros_like(x))
    if not derivative:
        return phi
    dphi = torch.where(inside, -math.pi * torch.sin(arg) / width, torch.zeros_like(x))
    return phi, dphi


def active_bumps(r: torch.Tensor, edges: torch.Tensor):
    """The (at most) two bumps that are non-zero at each r: indices (P, 2) into the n bumps (clamped),
    values and derivatives (P, 2), zero where a slot has no bump. Bump k spans [g_k, g_{k+2}] (0-based),
    so r in [g_m, g_{m+1}) lies in bumps m − 1 and m."""
    n = edges.shape[0] - 2
    e = edges.to(r.dtype)
    m = torch.searchsorted(e, r.detach().contiguous(), right=True) - 1  # g_m <= r < g_{m+1}
    k = torch.stack([m - 1, m], 1)
    valid = (k >= 0) & (k < n)
    kc = k.clamp(0, n - 1)
    lo, hi = e.index_select(0, kc.reshape(-1)).view_as(kc), e.index_select(0, kc.reshape(-1) + 2).view_as(kc)
    width = hi - lo
    x = (r[:, None] - lo) / width
    valid = valid & (x > 0) & (x < 1)
    arg = 2.0 * math.pi * (x.clamp(0.0, 1.0) - 0.5)
    val = torch.where(valid, 0.5 * (torch.cos(arg) + 1.0), torch.zeros_like(x))
    dval = torch.where(valid, -math.pi * torch.sin(arg) / width, torch.zeros_like(x))
    return kc, val, dval


class SANNP(nn.Module):
    """SANNP pair and triangle features (see the module doc); same interface as :class:`ACSF`."""

    def __init__(self, elements, cutoff: float = 6.0, n_pair: int = 24, three_body_cutoff: float | None = None,
                 n_three: int = 7, n_jk: int = 10, jk_cutoff: float | None = None, r_min: float = 1.0,
                 grid: str = "log"):
        super().__init__()
        self.elements = list(elements)
        self.cutoff = float(cutoff)
        self.three_body_cutoff = float(three_body_cutoff) if three_body_cutoff else self.cutoff
        if self.three_body_cutoff > self.cutoff:
            raise ValueError(f"three_body_cutoff {self.three_body_cutoff} must not exceed the cutoff {self.cutoff}")
        self.jk_cutoff = float(jk_cutoff) if jk_cutoff else 2.0 * self.three_body_cutoff
        self.n_pair, self.n_three, self.n_jk = int(n_pair), int(n_three), int(n_jk)
        self.r_min, self.grid = float(r_min), grid
        n_el = len(self.elements)
        self.register_buffer("edges2", grid_edges(self.r_min, self.cutoff, self.n_pair, grid), persistent=False)
        self.register_buffer("edges3", grid_edges(self.r_min, self.three_body_cutoff, self.n_three, grid),
                             persistent=False)
        self.register_buffer("edges_jk", grid_edges(self.r_min, self.jk_cutoff, self.n_jk, grid), persistent=False)
        self.n_u = n_el * self.n_three  # index u = (neighbour species, bump)
        iu, iv = torch.triu_indices(self.n_u, self.n_u)
        self.register_buffer("iu", iu, persistent=False)
        self.register_buffer("iv", iv, persistent=False)
        self.n_pair_features = n_el * self.n_pair
        self.n_features = self.n_pair_features + iu.shape[0] * self.n_jk
        self.n_features_per_element = [self.n_features] * n_el

    def config(self) -> dict:
        return {"elements": list(self.elements), "cutoff": self.cutoff, "n_pair": self.n_pair,
                "three_body_cutoff": self.three_body_cutoff, "n_three": self.n_three, "n_jk": self.n_jk,
                "jk_cutoff": self.jk_cutoff, "r_min": self.r_min, "grid": self.grid}

    # -- pieces -----------------------------------------------------------------------------------
    def _onehot(self, zj, dtype):
        return torch.nn.functional.one_hot(zj, len(self.elements)).to(dtype)

    def _triplets(self, r, i, n_atoms):
        """Unordered pairs of pairs (p, q) with a common centre, both within the three-body cutoff."""
        return triplets(i, n_atoms, mask=r < self.three_body_cutoff)

    def forward(self, positions, species, edge_index, shifts, cell, batch) -> torch.Tensor:
        return self.from_edges(edge_vectors(positions, edge_index, shifts, cell, batch), species, edge_index)

    def from_edges(self, vec, species, edge_index) -> torch.Tensor:
        """Descriptors (n_atoms, n_features) from the pair vectors r_ij (edges sorted by centre)."""
        i, j = edge_index
        n_atoms, dt = species.shape[0], vec.dtype
        r = torch.linalg.norm(vec, dim=-1)
        onehot = self._onehot(species.index_select(0, j), dt)
        pair = (onehot[:, :, None] * bumps(r, self.edges2)[:, None, :]).reshape(-1, self.n_pair_features)
        G2 = vec.new_zeros(n_atoms, self.n_pair_features).index_add(0, i, pair)
        ft = (onehot[:, :, None] * bumps(r, self.edges3)[:, None, :]).reshape(-1, self.n_u)  # φ̃(p)
        p, q = self._triplets(r, i, n_atoms)
        d = torch.linalg.norm(vec.index_select(0, q) - vec.index_select(0, p), dim=-1)
        c, psi, _ = active_bumps(d, self.edges_jk)  # the two non-zero ψ_m of each triangle
        C = self.n_jk
        M = vec.new_zeros(vec.shape[0] * C, self.n_u)  # rows (pair, m)
        fq, fp = ft.index_select(0, q), ft.index_select(0, p)
        for s in range(2):
            M = M.index_add(0, p * C + c[:, s], fq * psi[:, s, None])
            M = M.index_add(0, q * C + c[:, s], fp * psi[:, s, None])
        M = M.view(-1, C, self.n_u).transpose(1, 2)  # (P, U, C)
        S = vec.new_zeros(n_atoms, self.n_u, self.n_u * self.n_jk)
        S = S.index_add(0, i, ft[:, :, None] * M.reshape(-1, 1, self.n_u * self.n_jk))
        G3 = S.view(n_atoms, self.n_u, self.n_u, self.n_jk)[:, self.iu, self.iv].reshape(n_atoms, -1)
        return torch.cat([G2, G3], 1)

    @torch.no_grad()
    def jacobian(self, vec, species, edge_index, chunk: int = 2048, triplet_chunk: int = 65536):
        """G (n_atoms, F) and J (n_pairs, F, 3), J[p, f] = ∂G[i(p), f]/∂r_p (analytic, see the module doc)."""
        vec = vec.detach()
        i, j = edge_index
        n_atoms, n_pairs, dt = species.shape[0], vec.shape[0], vec.dtype
        U, C = self.n_u, self.n_jk
        r = torch.linalg.norm(vec, dim=-1)
        unit = vec / r.clamp(min=1e-12)[:, None]
        onehot = self._onehot(species.index_select(0, j), dt)
        b2, db2 = bumps(r, self.edges2, derivative=True)
        pair = (onehot[:, :, None] * b2[:, None, :]).reshape(-1, self.n_pair_features)
        G2 = vec.new_zeros(n_atoms, self.n_pair_features).index_add(0, i, pair)
        dpair = (onehot[:, :, None] * db2[:, None, :]).reshape(-1, self.n_pair_features)
        b3, db3 = bumps(r, self.edges3, derivative=True)
        ft = (onehot[:, :, None] * b3[:, None, :]).reshape(-1, U)
        dft = (onehot[:, :, None] * db3[:, None, :]).reshape(-1, U)
        p, q = self._triplets(r, i, n_atoms)
        M = vec.new_zeros(n_pairs * C, U)  # rows (pair, m): only the two non-zero ψ_m of each triangle
        N = vec.new_zeros(n_pairs * C, U, 3)
        for s in range(0, p.shape[0], triplet_chunk):
            ps, qs = p[s : s + triplet_chunk], q[s : s + triplet_chunk]
            diff = vec.index_select(0, qs) - vec.index_select(0, ps)  # r_q − r_p
            d = torch.linalg.norm(diff, dim=-1)
            c, psi, dpsi = active_bumps(d, self.edges_jk)
            grad_p = -diff / d.clamp(min=1e-12)[:, None]  # ∂d/∂r_p; ∂d/∂r_q = −grad_p
            fq, fp = ft.index_select(0, qs), ft.index_select(0, ps)
            for t in range(2):
                rows_p, rows_q = ps * C + c[:, t], qs * C + c[:, t]
                M.index_add_(0, rows_p, fq * psi[:, t, None])
                M.index_add_(0, rows_q, fp * psi[:, t, None])
                g = dpsi[:, t, None] * grad_p  # (T, 3)
                N.index_add_(0, rows_p, fq[:, :, None] * g[:, None, :])
                N.index_add_(0, rows_q, fp[:, :, None] * -g[:, None, :])
        M = M.view(n_pairs, C, U).transpose(1, 2).reshape(n_pairs, U * C)
        N = N.view(n_pairs, C, U, 3).transpose(1, 2).reshape(n_pairs, U * C, 3)
        S = vec.new_zeros(n_atoms, U, U * C).index_add(0, i, ft[:, :, None] * M[:, None, :])
        G3 = S.view(n_atoms, U, U, C)[:, self.iu, self.iv].reshape(n_atoms, -1)
        G = torch.cat([G2, G3], 1)
        J = vec.new_empty(n_pairs, self.n_features, 3)
        J[:, : self.n_pair_features] = dpair[:, :, None] * unit[:, None, :]
        M, N = M.view(n_pairs, U, C), N.view(n_pairs, U, C, 3)
        for s in range(0, n_pairs, chunk):
            sl = slice(s, s + chunk)
            A = (dft[sl, :, None, None, None] * M[sl, None, :, :, None] * unit[sl, None, None, None, :]
                 + ft[sl, :, None, None, None] * N[sl, None])  # (c, U, U, C, 3)
            J[sl, self.n_pair_features :] = (A[:, self.iu, self.iv] + A[:, self.iv, self.iu]).reshape(
                A.shape[0], -1, 3)
        return G, J


def build_sannp(elements, cutoff: float = 6.0, **kw) -> SANNP:
    return SANNP(elements, cutoff=cutoff, **kw)


__all__ = ["SANNP", "active_bumps", "bumps", "grid_edges", "build_sannp"]
