"""Descriptors built from per-atom sums of per-pair functions: G_i = Φ(A_i, Z_i), A_i = Σ_j φ(r_ij, Z_j).

Radial expansions are linear in A; angular ones become quadratic forms of A through the
moment expansion (``angular_monomials``): cos^n θ_jik = Σ_m w_m m(û_ij) m(û_ik) over the
monomials m of degree n of the unit pair vectors. So the cost is O(pairs), with no triplets,
and the pair Jacobian needed by the training cache has one generic form,

    ∂G_i/∂r_p = (∂Φ/∂A)(A_i) · (∂φ/∂r)(r_p)          for every pair p centred on i,

where ∂φ/∂r comes from forward-mode AD (three tangents) and ∂Φ/∂A from one batched
vector-Jacobian product. Subclasses define ``pair_features`` and ``combine``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlpot.descriptors.geometry import edge_vectors


def monomial_table(max_degree: int):
    """Exponents (M, 3) of the monomials x^a y^b z^c with a + b + c <= max_degree, and the matrix
    (M, max_degree + 1) with the multinomial weight n!/(a! b! c!) in column n = a + b + c, so that
    (Σ_m w_m m(u) m(v)) of degree n = (u · v)^n."""
    expo = [(a, b, n - a - b) for n in range(max_degree + 1) for a in range(n, -1, -1) for b in range(n - a, -1, -1)]
    deg = torch.zeros(len(expo), max_degree + 1, dtype=torch.float64)
    for m, (a, b, c) in enumerate(expo):
        deg[m, a + b + c] = math.factorial(a + b + c) / (math.factorial(a) * math.factorial(b) * math.factorial(c))
    return torch.tensor(expo, dtype=torch.long).reshape(-1, 3), deg


def angular_monomials(unit: torch.Tensor, expo: torch.Tensor, max_degree: int) -> torch.Tensor:
    """The monomials of the unit vectors (P, 3) with exponents ``expo`` (M, 3) of degree at most
    ``max_degree`` (a Python int, so that no device sync is needed): (P, M)."""
    powers = [torch.ones_like(unit)]
    for _ in range(max_degree):
        powers.append(powers[-1] * unit)
    pw = torch.stack(powers, -1)  # (P, 3, n_pow)
    return pw[:, 0].index_select(1, expo[:, 0]) * pw[:, 1].index_select(1, expo[:, 1]) * pw[:, 2].index_select(1, expo[:, 2])


class PairSumDescriptor(nn.Module):
    """Base class. Subclasses set ``elements``, ``cutoff``, ``n_features``,
    ``n_features_per_element`` and define

    * ``pair_features(vec, r, zj) -> (P, D)``: a row-wise function of each pair (vector r_ij,
      its length, the neighbour's species index);
    * ``combine(A, species) -> (n_atoms, F)``: the descriptor of each atom from its sum A_i
      (row-wise in atoms as well).
    """

    def forward(self, positions, species, edge_index, shifts, cell, batch) -> torch.Tensor:
        return self.from_edges(edge_vectors(positions, edge_index, shifts, cell, batch), species, edge_index)

    def atom_sums(self, vec, species, edge_index) -> torch.Tensor:
        i, j = edge_index
        phi = self.pair_features(vec, torch.linalg.norm(vec, dim=-1), species.index_select(0, j))
        return vec.new_zeros(species.shape[0], phi.shape[1]).index_add(0, i, phi)

    def from_edges(self, vec, species, edge_index) -> torch.Tensor:
        """Descriptors (n_atoms, n_features) from the pair vectors r_ij."""
        return self.combine(self.atom_sums(vec, species, edge_index), species)

    def jacobian(self, vec, species, edge_index, chunk: int = 4096):
        """G (n_atoms, F) and J (n_pairs, F, 3), J[p, f] = ∂G[i(p), f]/∂r_p (see the module doc)."""
        from torch.func import jvp, vjp, vmap

        vec = vec.detach()
        i, j = edge_index
        zj = species.index_select(0, j)

        def phi_of(v):
            return self.pair_features(v, torch.linalg.norm(v, dim=-1), zj)

        dphi = []
        for k in range(3):
            tangent = torch.zeros_like(vec)
            tangent[:, k] = 1.0
            phi, d = jvp(phi_of, (vec,), (tangent,))
            dphi.append(d)
        dphi = torch.stack(dphi, -1)  # (P, D, 3)
        A = vec.new_zeros(species.shape[0], phi.shape[1]).index_add(0, i, phi)
        G, pullback = vjp(lambda a: self.combine(a, species), A)
        F = G.shape[1]
        eye = torch.eye(F, dtype=G.dtype, device=G.device)[:, None, :].expand(F, G.shape[0], F)
        (dG_dA,) = vmap(pullback)(eye)  # (F, n_atoms, D)
        dG_dA = dG_dA.permute(1, 0, 2)  # (n_atoms, F, D)
        J = vec.new_empty(vec.shape[0], F, 3)
        for s in range(0, vec.shape[0], chunk):
            sl = slice(s, s + chunk)
            J[sl] = torch.bmm(dG_dA.index_select(0, i[sl]), dphi[sl])
        return G.detach(), J
