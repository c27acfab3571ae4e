"""The Chebyshev descriptor of Artrith, Urban and Ceder (PRB 96, 014112 (2017); aenet), docs/science.md §4.

    radial   c_n = Σ_j       T_n(2 r_ij / R_r − 1) f_c(r_ij; R_r),                n = 0 … N_r
    angular  c_n = Σ_{j<k}   T_n(cos θ_jik) f_c(r_ij; R_a) f_c(r_ik; R_a),       n = 0 … N_a

With more than one species a second copy follows in which each neighbour j is weighted by its
species weight w_j (pairs w_j, triplets w_j w_k); by default aenet's "typespin" weights
(…, −2, −1, [0,] 1, 2, …: zero only for an odd number of species). The feature order is aenet's:
[radial, angular] then [weighted radial, weighted angular], so the length is
(N_r + 1 + N_a + 1) for one species and twice that for any number of species above one.

The angular sums are computed from per-pair monomials of the unit vectors (``pairsum``):
T_n(x) = Σ_m t_nm x^m and Σ_{j<k} h_j h_k cos^m θ_jik = ½ (Σ_mono w (Σ_j h_j mono_j)² − Σ_j h_j²).
"""

from __future__ import annotations

import torch

from mlpot.descriptors.cutoff import canonical, cutoff_function
from mlpot.descriptors.pairsum import PairSumDescriptor, angular_monomials, monomial_table


def typespin(n_species: int) -> list[float]:
    """aenet's default species weights: centred integers, skipping 0 for an even count."""
    out, s = [], -(n_species // 2)
    for _ in range(n_species):
        if s == 0 and n_species % 2 == 0:
            s += 1
        out.append(float(s))
        s += 1
    return out


def chebyshev_coefficients(order: int) -> torch.Tensor:
    """t (order + 1, order + 1) with T_n(x) = Σ_m t[n, m] x^m."""
    t = torch.zeros(order + 1, order + 1, dtype=torch.float64)
    t[0, 0] = 1.0
    if order >= 1:
        t[1, 1] = 1.0
    for n in range(2, order + 1):
        t[n, 1:] = 2.0 * t[n - 1, :-1]
        t[n] -= t[n - 2]
    return t


def chebyshev_values(x: torch.Tensor, order: int) -> torch.Tensor:
    """T_0(x) … T_order(x) by the recursion, (n, order + 1)."""
    out = [torch.ones_like(x), x]
    for _ in range(2, order + 1):
        out.append(2.0 * x * out[-1] - out[-2])
    return torch.stack(out[: order + 1], dim=-1)


class Chebyshev(PairSumDescriptor):
    def __init__(self, elements, radial_order: int = 10, radial_cutoff: float = 6.0, angular_order: int = 4,
                 angular_cutoff: float = 4.0, cutoff_function: str = "cos", weights=None):
        super().__init__()
        self.elements = list(elements)
        if radial_order < 0 or angular_order < 0:
            raise ValueError(f"Chebyshev orders must be >= 0, got radial {radial_order}, angular {angular_order}")
        if radial_cutoff <= 0 or angular_cutoff <= 0:
            raise ValueError(f"Chebyshev cutoffs must be > 0, got radial {radial_cutoff}, angular {angular_cutoff}")
        self.radial_order, self.angular_order = int(radial_order), int(angular_order)
        self.radial_cutoff, self.angular_cutoff = float(radial_cutoff), float(angular_cutoff)
        self.cutoff_function = canonical(cutoff_function)
        n_el = len(self.elements)
        self.weighted = n_el > 1
        w = typespin(n_el) if weights is None else [float(x) for x in weights]
        if len(w) != n_el:
            raise ValueError(f"Chebyshev weights: {len(w)} given for {n_el} elements {self.elements}")
        self.weights = w
        self.n_copies = 2 if self.weighted else 1
        self.n_features = self.n_copies * (self.radial_order + 1 + self.angular_order + 1)
        self.n_features_per_element = [self.n_features] * n_el
        self.cutoff = max(self.radial_cutoff, self.angular_cutoff)
        expo, deg = monomial_table(self.angular_order)
        self.register_buffer("species_weight", torch.tensor(w, dtype=torch.float64), persistent=False)
        self.register_buffer("expo", expo, persistent=False)
        self.register_buffer("deg", deg, persistent=False)
        self.register_buffer("cheb", chebyshev_coefficients(self.angular_order), persistent=False)

    def config(self) -> dict:
        return {"elements": list(self.elements), "radial_order": self.radial_order,
                "radial_cutoff": self.radial_cutoff, "angular_order": self.angular_order,
                "angular_cutoff": self.angular_cutoff, "cutoff_function": self.cutoff_function,
                "weights": list(self.weights)}

    def pair_features(self, vec, r, zj):
        dt = vec.dtype
        fr = cutoff_function(r, self.radial_cutoff, self.cutoff_function)
        rad = chebyshev_values(2.0 * r / self.radial_cutoff - 1.0, self.radial_order) * fr[:, None]
        fa = cutoff_function(r, self.angular_cutoff, self.cutoff_function)
        h = fa[:, None]
        if self.weighted:
            w = self.species_weight.to(dt).index_select(0, zj)
            rad = torch.cat([rad, rad * w[:, None]], 1)
            h = torch.stack([fa, fa * w], 1)
        mono = angular_monomials(vec / r[:, None], self.expo, self.angular_order)
        q = (h[:, :, None] * mono[:, None, :]).reshape(r.shape[0], -1)
        return torch.cat([rad, q, h * h], 1)

    def combine(self, A, species):
        dt, U = A.dtype, self.n_copies
        nr, M = self.radial_order + 1, self.expo.shape[0]
        rad = A[:, : U * nr].reshape(-1, U, nr)
        Q = A[:, U * nr : U * nr + U * M].reshape(-1, U, M)
        D = A[:, U * nr + U * M :]
        S = 0.5 * ((Q * Q) @ self.deg.to(dt) - D[:, :, None])  # Σ_{j<k} h_j h_k cos^m θ: (n, U, N_a + 1)
        ang = S @ self.cheb.to(dt).T
        return torch.cat([rad, ang], 2).reshape(A.shape[0], -1)


__all__ = ["Chebyshev", "typespin", "chebyshev_coefficients", "chebyshev_values"]
