"""Gaussian × Legendre local structural parameters (LSPs) of the PINN papers, docs/science.md §7:
Pun, Batra, Ramprasad, Mishin, Nat. Commun. 10, 2339 (2019); Pun, Yamakov, Hickman, Glaessgen,
Mishin, Phys. Rev. Materials 4, 113807 (2020). The science notes named the papers but not the
fingerprint formula; the form used here is the one the authors document for their LAMMPS
``pair_style pinn`` (feature vector "Kind II", Eqs. 9b, 10b, 12 of that page), which is the
papers' definition written out for several elements::

    G_{s,l}^{βγ}(i) = asinh Γ_{s,l}^{βγ}(i),
    Γ_{s,l}^{βγ}(i) = Δ + Σ_{j∈β} Σ_{k∈γ} P_l(cos θ_jik) f_s(r_ij) f_s(r_ik),
    f_s(r)          = (1 / r0_s) exp(−(r − r0_s)² / σ_s²) f_c(r).

* The double sum runs over all ordered neighbour pairs **including j = k** (cos θ_jii = 1), as
  the authors state; so for one element Γ_{s,0} = (Σ_j f_s(r_ij))² and Γ_{s,l} ≥ 0 for every l
  (it is a power spectrum: Γ_{s,l} = 4π/(2l+1) Σ_m |Σ_j f_s(r_ij) Y_lm(r̂_ij)|²).
* The 1/r0 prefactor and the asinh ("sinh⁻¹") compression are the papers'; Δ is their constant
  shift (0 by default, so an atom without neighbours has G = 0). ``transform="none"`` gives Γ.
* f_c defaults to the PINN cutoff (r_c − r)⁴ / (d⁴ + (r_c − r)⁴) (docs/science.md §7, the same
  function as the BOP's); any cutoff of :mod:`mlpot.descriptors.cutoff` can be chosen instead.
  The authors' LAMMPS code takes the LSP cutoff as 1.5 × the BOP r_c; here it is the descriptor
  ``cutoff`` (which also sets the neighbour list, so it must be ≥ the PINN head's r_c).
* Several elements: one block per unordered pair of neighbour elements β ≤ γ (j ∈ β, k ∈ γ),
  whatever the element of the centre atom i — the authors' "Kind II" vector, and the same
  layout as the spherical-Bessel descriptor (:mod:`mlpot.descriptors.bessel`). Γ^{βγ} = Γ^{γβ},
  so β ≤ γ loses nothing. Feature order: element pair (β ≤ γ), then s (r0), then l — the
  authors' ordering (their Eqs. 14, 15b).

Pun et al. used l ∈ {0, 1, 2, 4, 6}, σ = 1 Å and a grid of r0 from about 1.5 Å to the cutoff
(``conf/descriptor/gaussian_legendre.yaml``).

Computation (``pairsum``): P_l(x) = Σ_k p_lk x^k and cos^k θ_jik = Σ_{m of degree k} w_m m(û_ij) m(û_ik)
over the monomials m of the unit pair vectors, so Γ is a quadratic form of the per-atom sums
Q_{β,s,m}(i) = Σ_{j∈β} f_s(r_ij) m(û_ij): O(pairs), no triplets, and the j = k terms come out of
the expansion exactly. Only the monomial degrees some P_l needs are kept (l ≡ k mod 2, k ≤ l).
"""

from __future__ import annotations

import numpy as np
import torch

from mlpot.descriptors.cutoff import canonical, cutoff_function
from mlpot.descriptors.pairsum import PairSumDescriptor, angular_monomials, monomial_table

TRANSFORMS = ("asinh", "none")


def pinn_cutoff(r: torch.Tensor, rc: float, d: float) -> torch.Tensor:
    """f_c(r) = (r_c − r)⁴ / (d⁴ + (r_c − r)⁴) for r < r_c, else 0 (docs/science.md §7; the same function
    as :func:`mlpot.models.bop.bop_cutoff`, not imported from there: models import descriptors)."""
    t = torch.clamp(rc - r, min=0.0) ** 4
    return t / (d**4 + t)


class GaussianLegendre(PairSumDescriptor):
    """Pun et al.'s Gaussian × Legendre fingerprints (see the module doc).

    ``r0``: Gaussian centres r0_s (Å, > 0); ``sigma``: one width for all (Å) or one per r0;
    ``l``: Legendre orders (distinct, ≥ 0); ``cutoff``: r_c (Å); ``cutoff_function``: ``"pinn"``
    (with width ``d``, Å) or a name of :mod:`mlpot.descriptors.cutoff`; ``shift``: Δ;
    ``transform``: ``"asinh"`` (the papers') or ``"none"``.
    """

    def __init__(self, elements, r0=(1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5), sigma=1.0, l=(0, 1, 2, 4, 6),
                 cutoff: float = 5.0, cutoff_function: str = "pinn", d: float = 1.5, shift: float = 0.0,
                 transform: str = "asinh"):
        super().__init__()
        self.elements = list(elements)
        r0 = [float(x) for x in (r0 if isinstance(r0, (list, tuple)) else [r0])]
        sig = [float(x) for x in (sigma if isinstance(sigma, (list, tuple)) else [sigma] * len(r0))]
        ls = [int(x) for x in (l if isinstance(l, (list, tuple)) else [l])]
        if not r0 or any(not x > 0 for x in r0):
            raise ValueError(f"Gaussian-Legendre descriptor: r0 must be a non-empty list of values > 0, got {r0}")
        if len(sig) != len(r0) or any(not s > 0 for s in sig):
            raise ValueError(f"Gaussian-Legendre descriptor: sigma must be > 0, one value or one per r0 "
                             f"({len(r0)}), got {sigma}")
        if not ls or any(x < 0 for x in ls) or len(set(ls)) != len(ls):
            raise ValueError(f"Gaussian-Legendre descriptor: l must be distinct integers >= 0, got {l}")
        if not cutoff > 0 or not d > 0:
            raise ValueError(f"Gaussian-Legendre descriptor needs cutoff > 0 and d > 0, got {cutoff}, {d}")
        if transform not in TRANSFORMS:
            raise ValueError(f"Gaussian-Legendre descriptor: unknown transform '{transform}' "
                             f"(choose from {', '.join(TRANSFORMS)})")
        self.r0, self.sigma, self.l = r0, sig, ls
        self.cutoff, self.d, self.shift, self.transform = float(cutoff), float(d), float(shift), transform
        self.cutoff_function = "pinn" if cutoff_function == "pinn" else canonical(cutoff_function)
        n_el, S, L = len(self.elements), len(r0), len(ls)

        # monomials of the degrees some P_l needs, and W[m, c] = p_{l_c, deg m} · (multinomial weight of m)
        self.max_degree = max(ls)
        expo, deg = monomial_table(self.max_degree)
        degree, weight = expo.sum(1), deg.sum(1)
        coef = np.zeros((L, self.max_degree + 1))
        for c, order in enumerate(ls):
            p = np.polynomial.legendre.leg2poly([0] * order + [1])  # P_l(x) = Σ_k p[k] x^k
            coef[c, : len(p)] = p
        keep = [m for m in range(len(expo)) if np.any(coef[:, int(degree[m])] != 0.0)]
        W = torch.tensor([[coef[c, int(degree[m])] * float(weight[m]) for c in range(L)] for m in keep],
                         dtype=torch.float64)
        self.n_monomials = len(keep)
        pairs = [(a, b) for a in range(n_el) for b in range(a, n_el)]
        self.n_features = len(pairs) * S * L
        self.n_features_per_element = [self.n_features] * n_el
        f64 = torch.float64
        self.register_buffer("expo", expo[keep], persistent=False)
        self.register_buffer("legendre", W, persistent=False)
        self.register_buffer("centres", torch.tensor(r0, dtype=f64), persistent=False)
        self.register_buffer("widths", torch.tensor(sig, dtype=f64), persistent=False)
        self.register_buffer("pair_a", torch.tensor([a for a, _ in pairs]), persistent=False)
        self.register_buffer("pair_b", torch.tensor([b for _, b in pairs]), persistent=False)

    def config(self) -> dict:
        return {"elements": list(self.elements), "r0": list(self.r0), "sigma": list(self.sigma), "l": list(self.l),
                "cutoff": self.cutoff, "cutoff_function": self.cutoff_function, "d": self.d, "shift": self.shift,
                "transform": self.transform}

    def fc(self, r: torch.Tensor) -> torch.Tensor:
        if self.cutoff_function == "pinn":
            return pinn_cutoff(r, self.cutoff, self.d)
        return cutoff_function(r, self.cutoff, self.cutoff_function)

    def radial(self, r: torch.Tensor) -> torch.Tensor:
        """f_s(r) = exp(−(r − r0_s)²/σ_s²) f_c(r) / r0_s, (n, S)."""
        r0, sig = self.centres.to(r.dtype), self.widths.to(r.dtype)
        return torch.exp(-(((r[:, None] - r0) / sig) ** 2)) / r0 * self.fc(r)[:, None]

    def pair_terms(self, vec, r):
        """The element-independent part q (P, S·M) of the pair features (φ = onehot(z_j) ⊗ q)."""
        mono = angular_monomials(vec / r[:, None], self.expo, self.max_degree)  # (P, M)
        return (self.radial(r)[:, :, None] * mono[:, None, :]).reshape(r.shape[0], -1)  # (P, S·M)

    def pair_features(self, vec, r, zj):
        q = self.pair_terms(vec, r).view(r.shape[0], len(self.r0), -1)  # (P, S, M)
        onehot = torch.nn.functional.one_hot(zj, len(self.elements)).to(vec.dtype)
        return (onehot[:, :, None, None] * q[:, None]).reshape(r.shape[0], -1)

    def combine(self, A, species):
        A = A.view(A.shape[0], len(self.elements), len(self.r0), self.n_monomials)
        prod = A.index_select(1, self.pair_a) * A.index_select(1, self.pair_b)  # (n, pairs, S, M)
        gamma = prod @ self.legendre.to(A.dtype) + self.shift  # (n, pairs, S, L)
        if self.transform == "asinh":
            gamma = torch.asinh(gamma)
        return gamma.reshape(A.shape[0], -1)


__all__ = ["GaussianLegendre", "pinn_cutoff"]
