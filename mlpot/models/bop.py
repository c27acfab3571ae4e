"""The analytic bond-order potential (BOP) of the PINN method, with per-atom parameters.

docs/science.md §7; Pun, Batra, Ramprasad, Mishin, Nat. Commun. 10, 2339 (2019) and
Pun, Yamakov, Hickman, Glaessgen, Mishin, Phys. Rev. Materials 4, 113807 (2020).
Every parameter belongs to the centre atom i, p_i = (A, α, B, β, h, σ, a, λ)_i::

    E_i  = ½ Σ_j [exp(A_i − α_i r_ij) − S_ij b_ij exp(B_i − β_i r_ij)] f_c(r_ij)  −  σ_i (Σ_j S_ij b_ij f_c(r_ij))^½
    b_ij = (1 + z_ij)^−½
    z_ij = Σ_{k≠j} a_i S_ik f_c(r_ik) (cos θ_jik − h_i)²
    S_ij = Π_{k≠j} S_ijk,   S_ijk = 1 − f_c(r_ik + r_jk − r_ij) exp(−λ_i (r_ik + r_jk − r_ij))
    f_c(r) = (r_c − r)⁴ / (d⁴ + (r_c − r)⁴)  for r < r_c,  0 otherwise

j and k run over the neighbours of i closer than r_c (a full neighbour list sorted by
centre; periodic images are distinct neighbours), cos θ_jik = r_ij·r_ik / (r_ij r_ik) and
r_jk = |r_ik − r_ij|. Restricting the screening atoms k to neighbours of i is what the
authors' LAMMPS ``pair_style pinn`` does (k from the neighbour list of i).

Physical range: α, β, a, λ ≥ 0 (a ≥ 0 keeps z_ij ≥ 0 and b_ij real; λ ≥ 0 keeps
0 < S_ijk ≤ 1, since f_c(x) ≤ f_c(0) < 1); A, B, h, σ are free. :func:`check_parameters`
reports values outside it. The square root of the promotion term is taken as 0 (with a
zero gradient) for an atom without neighbours.

Vectorised over pairs and triplets (:func:`mlpot.descriptors.geometry.triplets`, each
unordered pair of neighbours once); the product for S_ij is a sum of logarithms.
"""

from __future__ import annotations

import torch

from mlpot.descriptors.geometry import triplets
from mlpot.errors import ParameterRangeError

PARAMETERS = ("A", "alpha", "B", "beta", "h", "sigma", "a", "lambda")
POSITIVE = ("alpha", "beta", "a", "lambda")
INDEX = {name: k for k, name in enumerate(PARAMETERS)}


def bop_cutoff(r: torch.Tensor, rc: float, d: float) -> torch.Tensor:
    """f_c(r) = (r_c − r)⁴ / (d⁴ + (r_c − r)⁴) for r < r_c, else 0 (smooth to the third derivative)."""
    t = torch.clamp(rc - r, min=0.0) ** 4
    return t / (d**4 + t)


def check_parameters(params: torch.Tensor, where: str = "BOP parameters") -> None:
    """Raise :class:`~mlpot.errors.ParameterRangeError` if any value is non-finite or a
    parameter that must be ≥ 0 (α, β, a, λ) is negative; the message names parameter and row."""
    params = params.detach()
    if params.ndim != 2 or params.shape[1] != len(PARAMETERS):
        raise ParameterRangeError(f"{where}: expected shape (n, {len(PARAMETERS)}), got {tuple(params.shape)}")
    bad = ~torch.isfinite(params)
    for name in POSITIVE:
        bad[:, INDEX[name]] |= params[:, INDEX[name]] < 0
    if bad.any():
        row, col = (int(x) for x in torch.nonzero(bad)[0])
        name = PARAMETERS[col]
        rule = "must be finite" if not torch.isfinite(params[row, col]) else "must be >= 0"
        raise ParameterRangeError(f"{where}: {name} = {float(params[row, col]):.6g} at row {row} {rule}")


def bop_energies(vec: torch.Tensor, edge_index: torch.Tensor, params: torch.Tensor, n_atoms: int,
                 rc: float, d: float) -> torch.Tensor:
    """Atomic energies E_i (n_atoms,) of the BOP.

    vec (n_pairs, 3): r_ij = r_j − r_i of a full neighbour list sorted by centre i;
    edge_index (2, n_pairs); params (n_atoms, 8) in the order of :data:`PARAMETERS`.
    Differentiable in ``vec`` and ``params`` (forces and stress by autograd).
    """
    centre = edge_index[0]
    r_all = torch.linalg.norm(vec, dim=-1)
    keep = torch.nonzero(r_all < rc).squeeze(-1)  # pairs beyond r_c contribute nothing
    v, r, i = vec[keep], r_all[keep], centre[keep]
    fc = bop_cutoff(r, rc, d)
    p = params[i]  # parameters of the centre atom of each pair
    A, alpha, B, beta, h, sigma, a, lam = p.unbind(-1)

    # triplets (t1, t2): two different neighbours of the same centre, each unordered pair once
    t1, t2 = triplets(i, n_atoms)
    v1, v2, r1, r2 = v[t1], v[t2], r[t1], r[t2]
    r12 = torch.linalg.norm(v2 - v1, dim=-1)  # r_jk
    lam_t = lam[t1]
    # screening of pair t1 by atom k = t2, and of pair t2 by k = t1
    x1 = r2 + r12 - r1
    x2 = r1 + r12 - r2
    log_s1 = torch.log1p(-bop_cutoff(x1, rc, d) * torch.exp(-lam_t * x1))
    log_s2 = torch.log1p(-bop_cutoff(x2, rc, d) * torch.exp(-lam_t * x2))
    S = torch.exp(r.new_zeros(r.shape).index_add(0, t1, log_s1).index_add(0, t2, log_s2))

    cos = (v1 * v2).sum(-1) / (r1 * r2)
    ang = a[t1] * (cos - h[t1]) ** 2
    z = r.new_zeros(r.shape).index_add(0, t1, ang * S[t2] * fc[t2]).index_add(0, t2, ang * S[t1] * fc[t1])
    b = torch.rsqrt(1.0 + z)

    bond = S * b * fc
    pair = 0.5 * (torch.exp(A - alpha * r) * fc - bond * torch.exp(B - beta * r))
    energy = params.new_zeros(n_atoms).index_add(0, i, pair)
    rho = params.new_zeros(n_atoms).index_add(0, i, bond)
    positive = rho > 0
    root = torch.where(positive, torch.sqrt(torch.where(positive, rho, torch.ones_like(rho))), torch.zeros_like(rho))
    return energy - params[:, INDEX["sigma"]] * root


__all__ = ["PARAMETERS", "POSITIVE", "bop_cutoff", "bop_energies", "check_parameters"]
