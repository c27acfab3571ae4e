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
from mlpot.ops import scatter_sum


def monomial_table(max_degree: int):
    """Exponents (M, 3) of the monomials x^a y^b z^c with a + b + c <= max_degree, and the matrix
    (M, max_degree + 1) with the multinomial weight n!/(a! b! c!) in column n = a + b + c, so that
    (Σ_m w_m m(u) m(v)) of degree n = (u · v)^n."""
    expo = [(a, b, n - a - b) for n in range(max_degree + 1) for a in range(n, -1, -1) for b in range(n - a, -1, -1)]
    deg = torch.zeros(len(expo), max_degree + 1, dtype=torch.float64)
    for m, (a, b, c) in enumerate(expo):
        deg[m, a + b + c] = math.factorial(a + b + c) / (math.factorial(a) * math.factorial(b) * math.factorial(c))
    return torch.tensor(expo, dtype=torch.long).reshape(-1, 3), deg


def _unit_powers(unit: torch.Tensor, max_degree: int) -> torch.Tensor:
    """û_a^n for n = 0 … max_degree: (P, 3, max_degree + 1)."""
    powers = [torch.ones_like(unit)]
    for _ in range(max_degree):
        powers.append(powers[-1] * unit)
    return torch.stack(powers, -1)


def angular_monomials(unit: torch.Tensor, expo: torch.Tensor, max_degree: int) -> torch.Tensor:
    """The monomials of the unit vectors (P, 3) with exponents ``expo`` (M, 3) of degree at most
    ``max_degree`` (a Python int, so that no device sync is needed): (P, M).

    For the whole table of :func:`monomial_table` (ACSF, Chebyshev, spherical Bessel), degree by degree: in its order
    the monomials of degree n are x·(all of degree n−1), then y·(the last n of degree n−1, those without x), then
    z·(the last one, z^(n−1)), so each degree is three products of one coordinate with columns already computed;
    forward and backward pass together 1.8x faster than gathering each coordinate's power per monomial (72 000 pairs,
    degree 4). A subset of the table (Gaussian–Legendre keeps only the degrees its P_l need; a subset is always
    shorter, so the row count tells) gathers the powers."""
    if expo.shape[0] == (max_degree + 1) * (max_degree + 2) * (max_degree + 3) // 6:
        x, y, z = unit[:, 0:1], unit[:, 1:2], unit[:, 2:3]
        prev = torch.ones_like(x)
        blocks = [prev]
        for n in range(1, max_degree + 1):
            prev = torch.cat([x * prev, y * prev[:, -n:], z * prev[:, -1:]], 1)
            blocks.append(prev)
        return torch.cat(blocks, 1)
    pw = _unit_powers(unit, max_degree)  # (P, 3, n_pow)
    return pw[:, 0].index_select(1, expo[:, 0]) * pw[:, 1].index_select(1, expo[:, 1]) * pw[:, 2].index_select(1, expo[:, 2])


def angular_monomials_with_grad(unit: torch.Tensor, r: torch.Tensor, expo: torch.Tensor, max_degree: int):
    """The monomials m(û) of :func:`angular_monomials` and their derivatives with respect to the
    pair vector v = r û, (P, M) and (P, M, 3). With ∂û_a/∂v_c = (δ_ac − û_a û_c)/r and Euler's
    identity Σ_a û_a ∂m/∂û_a = deg(m) m (m is homogeneous):  ∂m/∂v_c = (∂m/∂û_c − deg(m) m û_c) / r."""
    pw = _unit_powers(unit, max_degree)  # (P, 3, n_pow)
    factors = [pw[:, a].index_select(1, expo[:, a]) for a in range(3)]  # û_a^{e_a}, (P, M) each
    mono = factors[0] * factors[1] * factors[2]
    lower = (expo - 1).clamp(min=0)
    grads = []
    for c in range(3):
        d = pw[:, c].index_select(1, lower[:, c]) * expo[:, c].to(unit.dtype)  # ∂û_c^{e_c}/∂û_c
        others = [factors[a] for a in range(3) if a != c]
        grads.append(d * others[0] * others[1])
    dmono = torch.stack(grads, -1)  # ∂m/∂û_c, (P, M, 3)
    deg = expo.sum(1).to(unit.dtype)
    dmono = (dmono - (deg * mono)[..., None] * unit[:, None, :]) / r[:, None, None]
    return mono, dmono


class _GivenDerivatives(torch.autograd.Function):
    """y(r) (n, C) from tabulated y, y' and y'' (see :func:`twice_differentiable`)."""

    @staticmethod
    def forward(ctx, r, y, dy, d2y):
        ctx.save_for_backward(r, dy, d2y)
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        r, dy, d2y = ctx.saved_tensors
        slope = _GivenDerivatives.apply(r, dy, d2y, torch.zeros_like(d2y)) if d2y is not None else dy
        return (grad * slope).sum(-1), None, None, None


def twice_differentiable(r: torch.Tensor, y: torch.Tensor, dy: torch.Tensor, d2y: torch.Tensor) -> torch.Tensor:
    """A function of one scalar per row, y(r) (n, C), as one autograd node whose derivatives are given: dy/dr
    and d²y/dr² (n, C). Exact to second order (forces in a loss that is differentiated once more); a third
    derivative is taken as zero, which no mlpot path asks for. For radial functions whose autograd graph is
    costly (the spherical Bessel recurrences): one saved tensor per order instead of hundreds."""
    return _GivenDerivatives.apply(r, y, dy, d2y)


class PairSumDescriptor(nn.Module):
    """Base class. Subclasses set ``elements``, ``cutoff``, ``n_features``,
    ``n_features_per_element`` and define

    * ``pair_features(vec, r, zj) -> (P, D)``: a row-wise function of each pair (vector r_ij,
      its length, the neighbour's species index);
    * ``combine(A, species) -> (n_atoms, F)``: the descriptor of each atom from its sum A_i
      (row-wise in atoms as well).

    Where φ is a one-hot over the neighbour's element times an element-independent part q (P, E)
    (φ[p] = e_{z_j} ⊗ q[p], D = n_elements · E), subclasses also define ``pair_terms(vec, r) -> q``: the sums
    are then accumulated per (atom, neighbour element) row, without the n_elements-fold zeros of φ (memory
    and time of the autograd path).
    """

    def forward(self, positions, species, edge_index, shifts, cell, batch) -> torch.Tensor:
        return self.from_edges(edge_vectors(positions, edge_index, shifts, cell, batch), species, edge_index)

    def atom_sums(self, vec, species, edge_index) -> torch.Tensor:
        i, j = edge_index
        r = torch.linalg.norm(vec, dim=-1)
        zj = species.index_select(0, j)
        n_atoms, n_el = species.shape[0], len(self.elements)
        if hasattr(self, "pair_terms"):
            q = self.pair_terms(vec, r)
            return scatter_sum(q, i * n_el + zj, n_atoms * n_el).view(n_atoms, n_el * q.shape[1])
        phi = self.pair_features(vec, r, zj)
        return scatter_sum(phi, i, n_atoms)

    def from_edges(self, vec, species, edge_index) -> torch.Tensor:
        """Descriptors (n_atoms, n_features) from the pair vectors r_ij."""
        return self.combine(self.atom_sums(vec, species, edge_index), species)

    def pair_features_and_grad(self, vec, r, zj):
        """``pair_features`` and its derivative with respect to the pair vector, (P, D) and (P, D, 3).
        This default uses forward-mode AD (three JVPs); subclasses may give closed forms."""
        from torch.func import jvp

        def phi_of(v):
            return self.pair_features(v, torch.linalg.norm(v, dim=-1), zj)

        dphi = []
        for k in range(3):
            tangent = torch.zeros_like(vec)
            tangent[:, k] = 1.0
            phi, d = jvp(phi_of, (vec,), (tangent,))
            dphi.append(d)
        return phi, torch.stack(dphi, -1)

    def jacobian(self, vec, species, edge_index, max_bytes: int | None = None):
        """G (n_atoms, F) and J (n_pairs, F, 3), J[p, f] = ∂G[i(p), f]/∂r_p (see the module doc)."""
        vec = vec.detach()
        phi, dphi = self.pair_features_and_grad(vec, torch.linalg.norm(vec, dim=-1), species.index_select(0, edge_index[1]))
        return pair_sum_jacobian(phi, dphi, lambda a, rows: self.combine(a, species.index_select(0, rows)),
                                 edge_index[0], species.shape[0], max_bytes)


JACOBIAN_BYTES = 1 << 28  # the working memory of one chunk of centre atoms in pair_sum_jacobian (256 MiB)


def pair_sum_jacobian(phi, dphi, combine, center, n_atoms: int, max_bytes: int | None = None, mode: str = "jvp"):
    """G = combine(A) with A_i = Σ_{p: center(p)=i} φ_p, and J (n_pairs, F, 3), J[p] = ∂G_i/∂r_p.

    φ (P, D) and ∂φ/∂r (P, D, 3) are per pair; ``combine(A_rows, rows)`` maps the per-atom sums of the atoms
    ``rows`` (n, D) to their descriptors (n, F), row by row. J_p = (∂G_i/∂A_i) (∂φ_p/∂r_p) with i = center(p),
    for centre atoms only, a chunk of atoms at a time (about ``max_bytes`` of working memory, default
    ``JACOBIAN_BYTES``, whatever F and D):

    * ``mode="jvp"`` (default): forward-mode derivatives of ``combine`` at A_i along each of its pairs'
      ∂φ_p/∂r_p (3 per pair, pairs padded to the largest neighbour count): 3K passes of ``combine``'s cost;
    * ``mode="vjp"``: the (F, D) matrix ∂G_i/∂A_i from F reverse-mode passes, then one batched product with
      all the atom's ∂φ_p: F passes plus F·D·3K multiply-adds per atom (measured 3-10x slower).
    """
    from torch.func import jvp, vjp, vmap

    if mode not in ("jvp", "vjp"):
        raise ValueError(f"mode must be 'jvp' or 'vjp', got {mode!r}")
    i = center
    n_pairs = phi.shape[0]
    A = phi.new_zeros(n_atoms, phi.shape[1]).index_add(0, i, phi)
    rows_all = torch.arange(n_atoms, device=phi.device)
    G = combine(A, rows_all).detach()
    F, D = G.shape[1], phi.shape[1]
    J = phi.new_zeros(n_pairs, F, 3)
    if n_pairs == 0:
        return G, J
    order = torch.argsort(i, stable=True)  # pairs grouped by their centre atom
    counts = torch.bincount(i, minlength=n_atoms)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n_pairs, device=phi.device) - start.index_select(0, i.index_select(0, order))
    centres = torch.nonzero(counts).squeeze(1)  # ascending
    K = int(counts.max())
    if mode == "jvp":  # tangents, outputs and combine's intermediates, 3K of each per atom
        per_atom = 3 * K * (3 * D + 3 * F) * phi.element_size()
    else:  # ∂G/∂A, the pullback's batch, padded ∂φ and the product
        per_atom = F * (3 * D + 6 * K) * phi.element_size()
    chunk = max(1, int((max_bytes or JACOBIAN_BYTES) // max(per_atom, 1)))
    for c0 in range(0, centres.shape[0], chunk):
        rows = centres[c0 : c0 + chunk]
        n = rows.shape[0]
        first, last = int(rows[0]), int(rows[-1])
        p0, p1 = int(start[first]), int(start[last] + counts[last])
        sel = order[p0:p1]  # this chunk's pairs
        local = torch.full((n_atoms,), -1, dtype=torch.long, device=phi.device)
        local[rows] = torch.arange(n, device=phi.device)
        row = local.index_select(0, i.index_select(0, sel))
        col = slot[p0:p1]
        A_rows = A.index_select(0, rows)

        def f(a, rows=rows):
            return combine(a, rows)

        if mode == "jvp":
            tangents = phi.new_zeros(K, 3, n, D)
            tangents[col, :, row] = dphi.index_select(0, sel).transpose(1, 2)  # (P_c, 3, D)
            dG = vmap(lambda t: jvp(f, (A_rows,), (t,))[1])(tangents.view(K * 3, n, D))  # (3K, n, F)
            J[sel] = dG.view(K, 3, n, F)[col, :, row].transpose(1, 2)
        else:
            _, pullback = vjp(f, A_rows)
            eye = torch.eye(F, dtype=G.dtype, device=G.device)[:, None, :].expand(F, n, F)
            (dG_dA,) = vmap(pullback)(eye)  # (F, n, D)
            pad = phi.new_zeros(n, K, D, 3)
            pad[row, col] = dphi.index_select(0, sel)
            out = torch.bmm(dG_dA.permute(1, 0, 2), pad.permute(0, 2, 1, 3).reshape(n, D, K * 3))  # (n, F, K·3)
            J[sel] = out.view(n, F, K, 3).permute(0, 2, 1, 3)[row, col]
    return G, J
