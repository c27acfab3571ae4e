"""Spherical-Bessel power spectrum (Kocer, Mason, Erturk, JCP 150, 154102 (2019); AIP Adv. 10, 015021
(2020); as used by NeuralIL), docs/science.md §5.

    p_nl^{ab} = Σ_{j∈a} Σ_{k∈b} g_nl(r_ij) g_nl(r_ik) (2l + 1)/(4π) P_l(cos θ_jik),
                l = 0 … n_max, n = 0 … n_max − l, for every unordered pair of neighbour species a ≤ b
                (the double sum includes j = k, as in NeuralIL).

With ``coupled=True`` the radial channels of each l are coupled as in SOAP's power spectrum,

    p_{nn'l}^{ab} = Σ_{j∈a} Σ_{k∈b} g_nl(r_ij) g_n'l(r_ik) (2l + 1)/(4π) P_l(cos θ_jik),

n ≤ n' for a = b (the sum is symmetric in n, n'), every (n, n') for a < b: for one species
Σ_l (N_l (N_l + 1))/2 features with N_l = n_max − l + 1 (165 for n_max 8, against 45 uncoupled).

Radial functions: with u_{l,n} the n-th positive zero of j_l,

    f_nl(r) = sqrt(2 / (r_c³ (u_n² + u_{n+1}²))) [u_{n+1}/j_{l+1}(u_n) j_l(u_n r/r_c) − u_n/j_{l+1}(u_{n+1}) j_l(u_{n+1} r/r_c)]

vanish with their first derivative at r_c; g_nl are their orthonormalised combinations
(g_0 = f_0, g_n = (f_n + sqrt(e_n/d_{n−1}) g_{n−1}) / sqrt(d_n), d_0 = 1, d_n = 1 − e_n/d_{n−1},
e_n = u_{n−1}² u_{n+1}² / ((u_{n−1}² + u_n²)(u_n² + u_{n+1}²))). Feature order: species pair (a ≤ b),
then l, then n (NeuralIL's); coupled: species pair, then l, then (n, n') in row-major order.

P_l(cos θ) = Σ_k p_lk cos^k θ and the moment expansion of cos^k (``pairsum``) make the
double sum a product of per-atom sums: O(pairs), no triplets. Bessel functions are evaluated in
float64 (a power series below x = l + 1, upward recurrence above) whatever the model dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import spherical_jn

from mlpot.descriptors.pairsum import (
    PairSumDescriptor,
    angular_monomials,
    angular_monomials_with_grad,
    monomial_table,
    twice_differentiable,
)


def bessel_zeros(l_max: int, n_zeros: int) -> np.ndarray:
    """u[l, n]: the first ``n_zeros`` positive zeros of j_l, l = 0 … l_max (zeros of j_l interlace
    those of j_{l-1})."""
    n_total = n_zeros + l_max + 1
    z = np.zeros((l_max + 1, n_total))
    z[0] = np.pi * np.arange(1, n_total + 1)
    for l in range(1, l_max + 1):
        for n in range(n_total - l):
            z[l, n] = brentq(lambda x: spherical_jn(l, x), z[l - 1, n], z[l - 1, n + 1], xtol=1e-14, rtol=1e-15, maxiter=200)
    return z[:, :n_zeros]


def spherical_bessel(l_max: int, x: torch.Tensor) -> torch.Tensor:
    """j_0 … j_l_max at x > 0, (…, l_max + 1), in the dtype of x (use float64)."""
    order = torch.arange(l_max + 1, device=x.device)
    return spherical_bessel_orders(order, x[..., None].expand(*x.shape, l_max + 1))


def spherical_bessel_orders(order: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """j_{order[c]}(x[..., c]), one order per column, in the dtype of x (use float64): the power series
    j_l = x^l/(2l+1)!! Σ_k (−x²/2)^k / (k! (2l+3)(2l+5)…(2l+2k+1)) below x = l + 1, the upward
    recurrence above. The series is summed only for each column's own order (the descriptor needs one
    order per radial channel)."""
    l_max = int(order.max()) if order.numel() else 0
    xs = x.clamp(min=1e-6)
    j_prev, j_cur = torch.sin(xs) / xs, torch.sin(xs) / xs**2 - torch.cos(xs) / xs
    up = torch.where(order == 0, j_prev, j_cur)
    for l in range(1, l_max):
        j_prev, j_cur = j_cur, (2 * l + 1) / xs * j_cur - j_prev
        up = torch.where(order == l + 1, j_cur, up)
    lf = order.to(x.dtype)
    double_fact = torch.tensor([float(math.prod(range(1, 2 * l + 2, 2))) for l in range(l_max + 1)], dtype=x.dtype,
                               device=x.device).index_select(0, order)
    x2 = x * x
    term = x**lf / double_fact
    series = term
    for k in range(1, 16):
        term = -term * x2 / (2 * k * (2 * lf + 2 * k + 1))
        series = series + term
    return torch.where(x < lf + 1.0, series, up)


class SphericalBessel(PairSumDescriptor):
    def __init__(self, elements, n_max: int = 5, cutoff: float = 5.0, coupled: bool = False):
        super().__init__()
        self.coupled = bool(coupled)
        self.elements = list(elements)
        if n_max < 0 or cutoff <= 0:
            raise ValueError(f"spherical Bessel descriptor needs n_max >= 0 and cutoff > 0, got {n_max}, {cutoff}")
        self.n_max, self.cutoff = int(n_max), float(cutoff)
        n_el = len(self.elements)
        u = bessel_zeros(self.n_max + 1, self.n_max + 3)  # u[l, n] for n <= n_max - l + 2
        # f_nl coefficients and the orthonormalising transformation, per channel (n, l)
        chans, c1, c2, r1, r2 = [], [], [], [], []
        blocks = []
        for l in range(self.n_max + 1):
            n_l = self.n_max - l + 1
            for n in range(n_l):
                a, b = u[l, n], u[l, n + 1]
                norm = math.sqrt(2.0 / (a * a + b * b))
                chans.append((n, l))
                c1.append(norm * b / spherical_jn(l + 1, a))
                c2.append(norm * a / spherical_jn(l + 1, b))
                r1.append(a)
                r2.append(b)
            usq = u[l, : n_l + 1] ** 2
            T = np.eye(n_l)
            d1 = 1.0
            for n in range(1, n_l):
                e = usq[n - 1] * usq[n + 1] / ((usq[n - 1] + usq[n]) * (usq[n] + usq[n + 1]))
                d0, d1 = d1, 1.0 - e / d1
                T[n, n] /= math.sqrt(d1)
                T[n] += math.sqrt(e / (d1 * d0)) * T[n - 1]
            blocks.append(T)
        n_ch = len(chans)
        transform = np.zeros((n_ch, n_ch))
        o = 0
        for T in blocks:
            transform[o : o + len(T), o : o + len(T)] = T
            o += len(T)
        # per-pair entries: (channel, monomial) with the monomial degree k <= l, k ≡ l (mod 2)
        expo, deg = monomial_table(self.n_max)
        degree = expo.sum(1)
        weight = deg.sum(1)  # multinomial weight of each monomial
        ent_ch, ent_mono, ent_coef = [], [], []
        for c, (n, l) in enumerate(chans):
            leg = np.polynomial.legendre.leg2poly([0] * l + [1])  # P_l(x) = Σ_k leg[k] x^k
            for m in range(len(expo)):
                k = int(degree[m])
                if k <= l and (l - k) % 2 == 0 and leg[k] != 0.0:
                    ent_ch.append(c)
                    ent_mono.append(m)
                    ent_coef.append((2 * l + 1) / (4 * math.pi) * leg[k] * float(weight[m]))
        self.n_channels = n_ch
        pairs = [(a, b) for a in range(n_el) for b in range(a, n_el)]
        self.species_pairs = pairs  # as Python ints: the coupled combine loops over them without a device sync
        f64 = torch.float64
        if self.coupled:
            # product terms A[a, e1] A[b, e2] with e1 = (n, l, m), e2 = (n', l, m): the same l and monomial m
            by_ch_mono = {(ent_ch[e], ent_mono[e]): e for e in range(len(ent_ch))}
            coef_of = {(chans[ent_ch[e]][1], ent_mono[e]): ent_coef[e] for e in range(len(ent_ch))}
            blocks_terms = []
            for symmetric in (True, False):
                t1, t2, tf, tc = [], [], [], []
                n_feat = 0
                for l in range(self.n_max + 1):
                    chs = [c for c, (_, cl) in enumerate(chans) if cl == l]
                    monos = sorted(m for (cl, m) in coef_of if cl == l)
                    for x, c1_ in enumerate(chs):
                        for c2_ in chs[x if symmetric else 0 :]:
                            for m in monos:
                                t1.append(by_ch_mono[(c1_, m)])
                                t2.append(by_ch_mono[(c2_, m)])
                                tf.append(n_feat)
                                tc.append(coef_of[(l, m)])
                            n_feat += 1
                to_f = torch.zeros(len(t1), n_feat, dtype=f64)
                to_f[torch.arange(len(t1)), torch.tensor(tf)] = torch.tensor(tc, dtype=f64)
                blocks_terms.append((torch.tensor(t1), torch.tensor(t2), to_f))
            (s1, s2, s_to), (m1, m2, m_to) = blocks_terms
            self.register_buffer("sym_e1", s1, persistent=False)
            self.register_buffer("sym_e2", s2, persistent=False)
            self.register_buffer("sym_to_feature", s_to, persistent=False)
            self.register_buffer("mix_e1", m1, persistent=False)
            self.register_buffer("mix_e2", m2, persistent=False)
            self.register_buffer("mix_to_feature", m_to, persistent=False)
            self.n_features = sum(s_to.shape[1] if a == b else m_to.shape[1] for a, b in pairs)
        else:
            self.n_features = len(pairs) * n_ch
        self.n_features_per_element = [self.n_features] * n_el
        self.register_buffer("r1", torch.tensor(r1, dtype=f64), persistent=False)
        self.register_buffer("r2", torch.tensor(r2, dtype=f64), persistent=False)
        self.register_buffer("c1", torch.tensor(c1, dtype=f64), persistent=False)
        self.register_buffer("c2", torch.tensor(c2, dtype=f64), persistent=False)
        self.register_buffer("chan_l", torch.tensor([l for _, l in chans]), persistent=False)
        self.register_buffer("transform", torch.tensor(transform, dtype=f64), persistent=False)
        self.register_buffer("expo", expo, persistent=False)
        self.register_buffer("ent_ch", torch.tensor(ent_ch), persistent=False)
        self.register_buffer("ent_mono", torch.tensor(ent_mono), persistent=False)
        to_ch = torch.zeros(len(ent_ch), n_ch, dtype=f64)
        to_ch[torch.arange(len(ent_ch)), torch.tensor(ent_ch)] = torch.tensor(ent_coef, dtype=f64)
        self.register_buffer("to_channel", to_ch, persistent=False)
        self.register_buffer("pair_a", torch.tensor([a for a, _ in pairs]), persistent=False)
        self.register_buffer("pair_b", torch.tensor([b for _, b in pairs]), persistent=False)
        self.n_entries = len(ent_ch)

    def config(self) -> dict:
        return {"elements": list(self.elements), "n_max": self.n_max, "cutoff": self.cutoff, "coupled": self.coupled}

    def radial(self, r: torch.Tensor, derivative: bool = False):
        """g_nl(r) for every channel, (n, n_channels), zero beyond the cutoff; with ``derivative``
        also dg_nl/dr (from j_l'(z) = (l/z) j_l(z) − j_{l+1}(z)).

        Where autograd is on and ``r`` requires grad (the autograd force path), g is one node whose first and
        second derivatives are given in closed form (:func:`~mlpot.descriptors.pairsum.twice_differentiable`,
        j_l'' from Bessel's equation) instead of autograd through the float64 recurrences and series, which
        took most of the time and memory of a training step on the fly."""
        if not derivative and r.requires_grad and torch.is_grad_enabled():
            with torch.no_grad():
                g, dg, d2g = self._radial_derivatives(r.detach(), second=True)
            return twice_differentiable(r, g, dg, d2g)
        return self._radial_derivatives(r, second=False) if derivative else self._radial_values(r)

    def _radial_values(self, r: torch.Tensor) -> torch.Tensor:
        return self._radial_derivatives(r, second=None)

    def _radial_derivatives(self, r: torch.Tensor, second: bool | None):
        """g (second None), (g, dg) (second False) or (g, dg, d²g) (second True), each (n, n_channels)."""
        derivative = second is not None
        f64 = torch.float64  # Bessel zeros and normalisations in float64 whatever dtype the module was moved to
        c1, c2, r1, r2, transform = (t.to(f64) for t in (self.c1, self.c2, self.r1, self.r2, self.transform))
        x = r.to(f64)[:, None] / self.cutoff
        n_ch = self.chan_l.shape[0]
        z = x * torch.cat([r1, r2])
        order = self.chan_l.repeat(2)
        if derivative:
            j_all = spherical_bessel_orders(torch.cat([order, order + 1]), z.repeat(1, 2))
            j, j_next = j_all[:, : 2 * n_ch], j_all[:, 2 * n_ch :]
        else:
            j = spherical_bessel_orders(order, z)
        inside = x < 1.0
        f = (c1 * j[:, :n_ch] - c2 * j[:, n_ch:]) / self.cutoff**1.5
        g = (torch.where(inside, f, torch.zeros_like(f)) @ transform.T).to(r.dtype)
        if not derivative:
            return g
        lf, zc = order.to(z.dtype), z.clamp(min=1e-6)
        dj = lf / zc * j - j_next  # d j_l / dz
        df = (c1 * r1 * dj[:, :n_ch] - c2 * r2 * dj[:, n_ch:]) / self.cutoff**2.5
        dg = (torch.where(inside, df, torch.zeros_like(df)) @ transform.T).to(r.dtype)
        if not second:
            return g, dg
        d2j = -2.0 / zc * dj - (1.0 - lf * (lf + 1.0) / zc**2) * j  # Bessel's equation
        d2f = (c1 * r1**2 * d2j[:, :n_ch] - c2 * r2**2 * d2j[:, n_ch:]) / self.cutoff**3.5
        d2g = (torch.where(inside, d2f, torch.zeros_like(d2f)) @ transform.T).to(r.dtype)
        return g, dg, d2g

    def pair_terms(self, vec, r):
        """The element-independent part q (P, E) of the pair features (φ = onehot(z_j) ⊗ q)."""
        g = self.radial(r)
        mono = angular_monomials(vec / r[:, None], self.expo, self.n_max)
        return g.index_select(1, self.ent_ch) * mono.index_select(1, self.ent_mono)  # (P, E)

    def pair_features(self, vec, r, zj):
        q = self.pair_terms(vec, r)
        onehot = torch.nn.functional.one_hot(zj, len(self.elements)).to(vec.dtype)
        return (onehot[:, :, None] * q[:, None, :]).reshape(r.shape[0], -1)

    def pair_features_and_grad(self, vec, r, zj):
        """Closed form of the pair features' derivative (g'(r) û m + g ∂m/∂v), no AD."""
        unit = vec / r[:, None]
        g, dg = self.radial(r, derivative=True)
        mono, dmono = angular_monomials_with_grad(unit, r, self.expo, self.n_max)
        g, dg = g.index_select(1, self.ent_ch), dg.index_select(1, self.ent_ch)
        mono, dmono = mono.index_select(1, self.ent_mono), dmono.index_select(1, self.ent_mono)
        q = g * mono
        dq = (dg * mono)[..., None] * unit[:, None, :] + g[..., None] * dmono  # (P, E, 3)
        n_el = len(self.elements)
        onehot = torch.nn.functional.one_hot(zj, n_el).to(vec.dtype)
        phi = (onehot[:, :, None] * q[:, None, :]).reshape(r.shape[0], -1)
        dphi = (onehot[:, :, None, None] * dq[:, None]).reshape(r.shape[0], -1, 3)
        return phi, dphi

    def combine(self, A, species):
        A = A.view(A.shape[0], len(self.elements), self.n_entries)
        if self.coupled:
            out = []
            for a, b in self.species_pairs:
                e1, e2, to_f = ((self.sym_e1, self.sym_e2, self.sym_to_feature) if a == b else
                                (self.mix_e1, self.mix_e2, self.mix_to_feature))
                prod = A[:, a].index_select(1, e1) * A[:, b].index_select(1, e2)  # (n, terms)
                out.append(prod @ to_f.to(A.dtype))
            return torch.cat(out, 1)
        prod = A.index_select(1, self.pair_a) * A.index_select(1, self.pair_b)  # (n, pairs, E)
        return (prod @ self.to_channel.to(A.dtype)).reshape(A.shape[0], -1)


__all__ = ["SphericalBessel", "bessel_zeros", "spherical_bessel", "spherical_bessel_orders"]
